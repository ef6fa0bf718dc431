"""The hardening cases of issue 15 that are not model files, as a table: input, what Inspector
said, exit code, bytes of the files concerned before and after (and for the image bomb, time and
peak memory of refusing it).

    python tests/reliability/hardening_table.py [--keep DIR]

Every command runs as a user would run it (``python -m inspector ...`` in a fresh process). The
full-disk rows need root on Linux (a small tmpfs is mounted) and are skipped otherwise. Model
files have their own table: ``python tests/reliability/hostile_models.py``.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sqlite3
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

import cv2
import numpy as np

from inspector.core.migrations import SCHEMA_VERSION
from inspector.core.store import Project

ROWS: list[dict] = []


def run(*argv: str, cwd: Path | None = None) -> tuple[int, str]:
    done = subprocess.run([sys.executable, "-m", "inspector", *argv], capture_output=True, text=True, timeout=300,
                          cwd=cwd)
    text = (done.stderr.strip() or done.stdout.strip()).splitlines()
    return done.returncode, (text[-1] if text else "") + ("  [TRACEBACK]" if "Traceback" in done.stderr else "")


def fingerprint(*paths: Path) -> str:
    parts = []
    for path in paths:
        if path.exists():
            data = path.read_bytes()
            parts.append(f"{path.name}={len(data)}B/{hashlib.sha256(data).hexdigest()[:8]}")
        else:
            parts.append(f"{path.name}=absent")
    return " ".join(parts)


def row(case: str, command: str, code, message: str, before: str = "", after: str = "") -> None:
    ROWS.append({"case": case, "command": command, "exit": code, "message": message, "before": before,
                 "after": after})


def build(path: Path, images: Path, n: int = 30) -> None:
    images.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        cv2.imwrite(str(images / f"part_{i:03d}.png"), rng.integers(0, 255, (32, 32), dtype=np.uint8))
    subprocess.run([sys.executable, "-m", "inspector", "new", str(path), "--images", str(images), "--quiet",
                    "--workers", "1"], check=True, capture_output=True)
    with Project.open(path) as p:
        for name in ("ok", "scratch", "crack"):
            p.add_class(name)


# --------------------------------------------------------------------------- 1. one file, many names


def many_names(work: Path) -> None:
    path = work / "names" / "line.inspector"
    build(path, work / "names" / "images")
    other = work / "names" / "elsewhere"
    other.mkdir()
    (other / "sym.inspector").symlink_to(path)
    os.link(path, other / "hard.inspector")
    holder = subprocess.Popen([sys.executable, "-c",
                               "import sys, time; from inspector.core.store import Project; p = Project.open(sys.argv[1]);"
                               " print('open', flush=True); time.sleep(120)", str(path)], stdout=subprocess.PIPE, text=True)
    try:
        holder.stdout.readline()
        before = fingerprint(path)
        for name in ("hard.inspector", "sym.inspector"):
            code, message = run("label", str(other / name), "part_001.png", "ok")
            row(f"open elsewhere, second opener by {'hard' if name.startswith('hard') else 'symbolic'} link",
                f"label {name} part_001.png ok", code, message, before, fingerprint(path))
    finally:
        holder.kill()  # as a crash would: its lock files stay until the next writer ends cleanly
        holder.wait()
    code, message = run("label", str(other / "hard.inspector"), "part_001.png", "ok")
    row("after the holder was killed", "label hard.inspector part_001.png ok", code, message)
    leftovers = sorted(p.name for p in (work / "names").rglob("*.lock"))
    identity = Path(tempfile.gettempdir()) / "inspector-locks"
    st = os.stat(path)
    left = (identity / f"{st.st_dev:x}-{st.st_ino:x}.lock").exists()
    row("lock files after a clean exit", "(after the command above)", "-",
        f"beside the project: {leftovers or 'none'}; identity lock left: {left}")


# --------------------------------------------------------------------------- 6. refused files with a log


def with_log(path: Path, statement: str) -> Path:
    db = sqlite3.connect(str(path))
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA wal_autocheckpoint = 0")
    db.execute(statement)
    db.commit()
    copy = path.with_name("crashed-" + path.name)
    copy.write_bytes(path.read_bytes())
    copy.with_name(copy.name + "-wal").write_bytes(path.with_name(path.name + "-wal").read_bytes())
    db.close()
    return copy


def refused_with_log(work: Path) -> None:
    folder = work / "refused"
    folder.mkdir()
    foreign = folder / "other.inspector"
    db = sqlite3.connect(str(foreign))
    db.execute("CREATE TABLE images (id INTEGER PRIMARY KEY)")
    db.commit()
    db.close()
    foreign = with_log(foreign, "CREATE TABLE label_events (id INTEGER PRIMARY KEY)")
    newer_source = folder / "newer.inspector"
    build(newer_source, folder / "images")
    newer = with_log(newer_source, f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    for label, path in (("foreign SQLite file + -wal", foreign), ("newer project version + -wal", newer)):
        wal = path.with_name(path.name + "-wal")
        for command in (["info", str(path)], ["scan", str(path), "--quiet"]):
            before = fingerprint(path, wal)
            code, message = run(*command)
            row(label, " ".join([command[0], path.name]), code, message, before, fingerprint(path, wal))


# --------------------------------------------------------------------------- 5. full disk


def full_disk(work: Path) -> None:
    if os.name != "posix" or os.geteuid() != 0:
        row("full disk", "-", "-", "skipped: mounting a tmpfs needs root on Linux")
        return
    for free_kb in (0, 12):
        mount = Path(tempfile.mkdtemp(prefix="inspector-full-"))
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)], check=True)
        try:
            path = mount / "line.inspector"
            build(path, work / f"full-images-{free_kb}")
            ballast = mount / "ballast"
            with open(ballast, "wb", buffering=0) as handle:
                try:
                    while True:
                        handle.write(b"\0" * 4096)
                except OSError:
                    pass  # full
            os.truncate(ballast, max(0, ballast.stat().st_size - free_kb * 1024))
            for command in (["label", str(path), "part_003.png", "ok"], ["info", str(path)],
                            ["scan", str(path), "--quiet"]):
                before = fingerprint(path)
                code, message = run(*command)
                row(f"full disk, {free_kb} KB free", command[0], code, message, before, fingerprint(path))
            ballast.unlink()
            with Project.open(path) as p:
                row(f"full disk, {free_kb} KB free", "space freed, open", 0, f"integrity {p.integrity_check()}")
        finally:
            subprocess.run(["umount", str(mount)], check=False)
            os.rmdir(mount)


# --------------------------------------------------------------------------- 3. image bomb and crashing reader


def png_bomb(path: Path, width: int, height: int) -> Path:
    """A real PNG (all zero pixels) of ``width`` x ``height`` 16-bit RGBA: about 2 MB on disk."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    compressor = zlib.compressobj(9)
    line = b"\0" * (1 + width * 8)
    parts = [compressor.compress(line * 64) for _ in range(height // 64)]
    parts.append(compressor.compress(line * (height % 64)))
    parts.append(compressor.flush())
    ihdr = struct.pack(">IIBBBBB", width, height, 16, 6, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", b"".join(parts)) + chunk(b"IEND", b""))
    return path


_MEASURE_DECODE = """
import sys, time, tracemalloc
from inspector.core import images
data = images.read_bytes(sys.argv[1])
tracemalloc.start()
started = time.perf_counter()
try:
    images.decode(data, sys.argv[1]); message = "decoded"
except images.ImageError as exc:
    message = str(exc)
print(f"{time.perf_counter() - started:.3f}|{tracemalloc.get_traced_memory()[1] / 1024**2:.1f}|{message}")
"""


def image_bomb(work: Path) -> None:
    folder = work / "bomb"
    images = folder / "images"
    images.mkdir(parents=True)
    bomb = png_bomb(images / "bomb.png", 16_000, 16_000)
    done = subprocess.run([sys.executable, "-c", _MEASURE_DECODE, str(bomb)], capture_output=True, text=True)
    seconds, peak, message = done.stdout.strip().split("|", 2)
    row("PNG 16,000 x 16,000 16-bit RGBA", f"decode ({bomb.stat().st_size / 1024**2:.1f} MB file)", "-",
        f"{message}  [refused in {seconds} s, peak {peak} MB]")
    path = folder / "bomb.inspector"
    subprocess.run([sys.executable, "-m", "inspector", "new", str(path), "--images", str(images), "--quiet"],
                   capture_output=True)
    with Project.open(path, read_only=True) as p:
        problems = [(r.path, r.error) for r in p.problem_files()]
    row("PNG 16,000 x 16,000 16-bit RGBA", "new + scan", 0, f"problem files: {problems}")


SITE = """
import os, signal
import inspector.core.images as _images
_decode = _images.decode
def decode(data, name=""):
    if b"KILL-THE-READER" in bytes(data[-64:]):
        os.kill(os.getpid(), signal.SIGKILL)
    return _decode(data, name)
_images.decode = decode
"""


def crashing_reader(work: Path) -> None:
    if os.name != "posix":
        row("reader killed (SIGKILL)", "-", "-", "skipped: POSIX only")
        return
    folder = work / "crash"
    images = folder / "images"
    images.mkdir(parents=True)
    rng = np.random.default_rng(1)
    for i in range(40):
        ok, data = cv2.imencode(".png", rng.integers(0, 255, (32, 32), dtype=np.uint8))
        (images / f"part_{i:03d}.png").write_bytes(data.tobytes() + (b"KILL-THE-READER" if i == 17 else b""))
    site = folder / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(SITE)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")])))
    path = folder / "crash.inspector"
    for step in ("new", "scan"):
        argv = ["new", str(path), "--images", str(images)] if step == "new" else ["scan", str(path)]
        done = subprocess.run([sys.executable, "-m", "inspector", *argv, "--quiet", "--workers", "2"], capture_output=True,
                              text=True, env=env, timeout=600)
        with Project.open(path, read_only=True) as p:
            problems = [(r.path, r.error) for r in p.problem_files()]
            usable = len(p.image_ids())
        last = (done.stderr.strip() or done.stdout.strip()).splitlines()
        row("a reader killed by one file (SIGKILL)", step + " --workers 2", done.returncode,
            f"{last[-1] if last else ''}; usable {usable}, problems {problems}"
            + ("  [TRACEBACK]" if "Traceback" in done.stderr else ""))


# --------------------------------------------------------------------------- 4 and 7. labels and classes


def labels_and_classes(work: Path) -> None:
    folder = work / "labels"
    path = folder / "line.inspector"
    build(path, folder / "images", n=6)
    with Project.open(path) as p:
        evil = p.add_class("=cmd|' /C calc'!A0")
        p.add_label(1, evil)
        p.add_label(2, p.add_class("."))
        p.add_label(3, p.add_class(".."))
    out = folder / "labels.csv"
    code, message = run("export-labels", str(path), str(out))
    cell = [line for line in out.read_text().splitlines() if "cmd" in line][0]
    row("class named =cmd|' /C calc'!A0", "export-labels OUT.csv", code, f"row written: {cell}")
    fresh = folder / "fresh.inspector"
    subprocess.run([sys.executable, "-m", "inspector", "new", str(fresh), "--images", str(folder / "images"),
                    "--quiet"], capture_output=True)
    code, message = run("import-labels", str(fresh), str(out), "--create-classes")
    with Project.open(fresh, read_only=True) as p:
        names = [c.name for c in p.classes()]
    row("... imported back", "import-labels --create-classes", code, f"{message}; classes {names}")
    before = fingerprint(path)
    code, message = run("label", str(path), "part_004.png", "scrach")
    row("typo in a class name", "label ... scrach", code, message, before, fingerprint(path))
    typo = folder / "typo.csv"
    typo.write_text("path,label\npart_004.png,scrach\npart_005.png,dent\n")
    code, message = run("import-labels", str(path), str(typo))
    row("unknown classes in a label file", "import-labels", code, message, before, fingerprint(path))
    nul = folder / "nul.csv"
    nul.write_text("path,label\npart_004.png,bad\x00name\n")
    code, message = run("import-labels", str(path), str(nul), "--create-classes")
    row("NUL byte in a class name", "import-labels --create-classes", code, message, before, fingerprint(path))
    code, message = run("export-labels", str(path), "--folder", str(folder / "by-class"))
    made = sorted(d.name for d in (folder / "by-class").iterdir())
    row("classes '.' and '..' (and the =cmd one)", "export-labels --folder", code, f"folders: {made}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep", type=Path, default=None, help="keep the files here")
    args = parser.parse_args(argv)
    work = args.keep or Path(tempfile.mkdtemp(prefix="inspector-hardening-"))
    work.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    try:
        for step in (many_names, refused_with_log, full_disk, image_bomb, crashing_reader, labels_and_classes):
            step(work)
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    print(f"issue 15 hardening cases ({time.monotonic() - started:.0f} s, load {os.getloadavg()[0]:.2f})")
    for r in ROWS:
        print(f"- {r['case']} | {r['command']} | exit {r['exit']} | {r['message']}"
              + (f" | before {r['before']} | after {r['after']}" if r["before"] else ""))
    bad = [r for r in ROWS if "TRACEBACK" in str(r["message"]) or (r["before"] and r["before"] != r["after"])]
    print(f"{len(bad)} rows with a traceback or changed bytes")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
