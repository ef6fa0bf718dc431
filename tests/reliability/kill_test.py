"""Kill test: no acknowledged label is ever lost, the project file is never corrupted.

A child process labels images through the app's code path (``Project.add_label``) and prints an
acknowledgement after each call returns; in some runs a background thread retrains the learner
(``learner.retrain``) or re-reads changed images (``ingest.scan_folder`` + ``analyse_pending``)
at the same time. The parent kills the child with SIGKILL at a random moment, then checks that
the project opens, ``PRAGMA integrity_check`` is 'ok' and every acknowledged label is present.

    python tests/reliability/kill_test.py --kills 200 --seed 1

prints the number of kills (and how many hit a retrain or an extraction), acknowledged labels and
labels lost (must be 0). POSIX only (fork + SIGKILL).

With ``--names`` (the default) the same project file is also reached through a symbolic link and a
hard link: each child opens it by a random one of its names, a second "intruder" child tries to
open it by another name while the first is labelling (it must be refused: the project is open),
and the check after each kill opens it by a random name too. A writer killed while using one
name leaves its log beside that name; the next writer, whatever name it was given, must use it.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from inspector.core.store import Project

CLASSES = ("ok", "scratch", "crack", "stain")
MODES = ("label", "retrain", "extract")


@dataclass
class KillStats:
    kills: int = 0
    kills_during: dict = field(default_factory=lambda: {"retrain": 0, "extract": 0})
    runs: dict = field(default_factory=lambda: {m: 0 for m in MODES})
    acknowledged: int = 0
    lost: int = 0
    lost_examples: list = field(default_factory=list)
    integrity_failures: list = field(default_factory=list)
    open_failures: list = field(default_factory=list)
    child_errors: list = field(default_factory=list)
    opened_by: dict = field(default_factory=dict)  # name kind -> children that opened by it
    intruders: int = 0
    intruders_refused: int = 0
    intruders_admitted: list = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.lost or self.integrity_failures or self.open_failures or self.child_errors
                    or self.intruders_admitted)

    def lines(self) -> list[str]:
        return [
            f"kills                 {self.kills}  (runs: " + ", ".join(f"{m} {n}" for m, n in self.runs.items()) + ")",
            f"kills during retrain  {self.kills_during['retrain']}",
            f"kills during extract  {self.kills_during['extract']}",
            f"acknowledged labels   {self.acknowledged}",
            f"labels lost           {self.lost}",
            f"integrity failures    {len(self.integrity_failures)}",
            f"open failures         {len(self.open_failures)}",
            f"child errors          {len(self.child_errors)}",
            "opened by name        " + (", ".join(f"{k} {n}" for k, n in sorted(self.opened_by.items())) or "-"),
            f"second openers        {self.intruders} (refused {self.intruders_refused}, "
            f"admitted {len(self.intruders_admitted)})",
        ]


def build_project(workdir: Path, n_images: int, seed: int) -> Path:
    """A project over ``n_images`` small drawn images, with features read and classes made."""
    from inspector.core.ingest import scan_project

    rng = np.random.default_rng(seed)
    images = workdir / "images"
    images.mkdir(parents=True)
    for i in range(n_images):
        img = rng.normal(120 + 20 * (i % 4), 20, (48, 48)).clip(0, 255).astype(np.uint8)
        if i % 4:
            cv2.line(img, (0, i % 48), (47, (i * 7) % 48), 250, 1 + i % 3)
        cv2.imwrite(str(images / f"part_{i:04d}.png"), img)
    path = workdir / "kill.inspector"
    with Project.create(path, images) as project:
        scan_project(project, workers=1)  # in-process: the same extractor code as the children
        for name in CLASSES:
            project.add_class(name)
        project.set_setting("learner.queue_size", 10)
    return path


def project_names(path: Path) -> dict[str, Path]:
    """The project file by three names: itself, a symbolic link and a hard link in another folder."""
    other = path.parent / "elsewhere"
    other.mkdir(exist_ok=True)
    symlink, hardlink = other / "symlinked.inspector", other / "hardlinked.inspector"
    if not symlink.is_symlink():
        symlink.symlink_to(path)
    if not hardlink.exists():
        os.link(path, hardlink)
    return {"path": path, "symlink": symlink, "hardlink": hardlink}


def _intruder(project_path: Path, out_fd: int) -> None:
    """A second opener while the first labels: must be refused. Runs in a forked child."""
    code = 0
    try:
        from inspector.core.errors import ProjectError

        try:
            project = Project.open(project_path)
        except ProjectError as exc:
            os.write(out_fd, f"REFUSED {exc}\n".encode())
        else:
            image_id = sorted(v[0] for v in project.scan_state().values())[0]
            event_id = project.add_label(image_id, project.classes()[0].id, annotator="intruder")
            os.write(out_fd, f"ADMITTED {event_id}\n".encode())
            project.close()
    except BaseException:
        os.write(out_fd, ("ERROR " + traceback.format_exc().replace("\n", " | ") + "\n").encode())
        code = 1
    finally:
        os._exit(code)


def run_intruder(project_path: Path) -> str:
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_fd)
        _intruder(project_path, write_fd)
    os.close(write_fd)
    chunks = []
    while chunk := os.read(read_fd, 65536):
        chunks.append(chunk)
    os.close(read_fd)
    os.waitpid(pid, 0)
    return b"".join(chunks).decode(errors="replace").strip()


# ---------------------------------------------------------------------------------- child side
def _child(project_path: Path, mode: str, seed: int, out_fd: int) -> None:
    """Runs in the forked child; never returns (os._exit)."""
    write_lock = threading.Lock()

    def say(line: str) -> None:
        with write_lock:
            os.write(out_fd, (line + "\n").encode())

    code = 0
    try:
        rng = random.Random(seed)
        project = Project.open(project_path)
        image_ids = sorted(v[0] for v in project.scan_state().values())
        class_ids = [c.id for c in project.classes()]
        stop = threading.Event()

        def background() -> None:
            try:
                if mode == "retrain":
                    from inspector.core.learning import learner

                    while not stop.is_set():
                        say("PHASE retrain 1")
                        learner.retrain(project)
                        say("PHASE retrain 0")
                elif mode == "extract":
                    from inspector.core.ingest import analyse_pending, scan_folder

                    root = project.image_root
                    files = sorted(root.glob("*.png"))
                    while not stop.is_set():
                        for path in rng.sample(files, min(40, len(files))):
                            st = path.stat()
                            os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
                        say("PHASE extract 1")
                        scan_folder(project)
                        analyse_pending(project, workers=1, batch_seconds=0.1)
                        say("PHASE extract 0")
            except BaseException:  # report, so the parent counts it as a failure
                say("ERROR " + traceback.format_exc().replace("\n", " | "))

        if mode != "label":
            threading.Thread(target=background, daemon=True).start()
        say("READY")
        while True:
            image_id = rng.choice(image_ids)
            roll = rng.random()
            if roll < 0.85:
                class_id, kind = rng.choice(class_ids), "class"
            else:
                class_id, kind = None, ("skip" if roll < 0.93 else "unsure")
            event_id = project.add_label(image_id, class_id, kind=kind, annotator="kill-test",
                                         audit=rng.random() < 0.1)
            say(f"ACK {event_id} {image_id} {class_id if class_id is not None else '-'} {kind}")
            if rng.random() < 0.3:
                time.sleep(rng.random() * 0.01)  # an inspector's rhythm, roughly
    except BaseException:
        say("ERROR " + traceback.format_exc().replace("\n", " | "))
        code = 1
    finally:
        os._exit(code)


# ---------------------------------------------------------------------------------- parent side
class _Reader(threading.Thread):
    """Collects the child's complete lines as they arrive."""

    def __init__(self, fd: int) -> None:
        super().__init__(daemon=True)
        self.fd = fd
        self.lines: list[str] = []
        self.state = {"retrain": False, "extract": False}
        self.phase_seen = threading.Event()
        self.ready = threading.Event()
        self._buffer = b""

    def run(self) -> None:
        while True:
            chunk = os.read(self.fd, 65536)
            if not chunk:
                break
            self._buffer += chunk
            *complete, self._buffer = self._buffer.split(b"\n")
            for raw in complete:
                line = raw.decode(errors="replace")
                self.lines.append(line)
                if line == "READY":
                    self.ready.set()
                elif line.startswith("PHASE "):
                    self.on_phase(line.split()[1:])
        os.close(self.fd)  # an incomplete last line (killed mid-write) is ignored: never acknowledged

    def on_phase(self, words: list[str]) -> None:
        """`PHASE <name> <1|0>`: a background job started or ended in the child."""
        name, on = words[0], words[1] == "1"
        self.state[name] = on
        if on:
            self.phase_seen.set()


def start_child(child, *args, reader_class=None) -> tuple[int, "_Reader"]:
    """Fork a child that runs ``child(*args, out_fd)`` and never returns; a reader thread
    collects the lines it writes. Returns (pid, reader)."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_fd)
        child(*args, write_fd)
    os.close(write_fd)
    reader = (reader_class or _Reader)(read_fd)
    reader.start()
    return pid, reader


def kill_child(pid: int, reader: "_Reader") -> int:
    """SIGKILL the child (unless it already ended), reap it and wait for its last lines.
    Returns its wait status."""
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass  # it already exited on its own: the caller reports that from the status
    _, status = os.waitpid(pid, 0)
    reader.join(30)
    return status


def one_kill(project_path: Path, mode: str, rng: random.Random, stats: KillStats, acked: dict,
             names: dict[str, Path] | None = None) -> None:
    check_path = project_path
    intruder_path = None
    if names:
        kind = rng.choice(sorted(names))
        stats.opened_by[kind] = stats.opened_by.get(kind, 0) + 1
        project_path = names[kind]
        intruder_path = names[rng.choice(sorted(set(names) - {kind}))]
        check_path = names[rng.choice(sorted(names))]
    pid, reader = start_child(_child, project_path, mode, rng.randrange(2**31))
    try:
        if not reader.ready.wait(60):
            stats.child_errors.append(f"{mode}: child not ready in 60 s")
        elif mode == "label":
            time.sleep(rng.uniform(0.02, 0.8))
        else:
            if not reader.phase_seen.wait(60):
                stats.child_errors.append(f"{mode}: background work did not start in 60 s")
            time.sleep(rng.uniform(0.0, 0.8))
        during = {name: on for name, on in reader.state.items()}
        if intruder_path is not None and reader.ready.is_set():
            answer = run_intruder(intruder_path)
            stats.intruders += 1
            if answer.startswith("REFUSED") and "already open" in answer:
                stats.intruders_refused += 1
            elif answer.startswith("ADMITTED"):
                stats.intruders_admitted.append(f"{intruder_path.name}: {answer}")
            else:
                stats.child_errors.append(f"intruder by {intruder_path.name}: {answer[:2000]}")
    finally:
        status = kill_child(pid, reader)
    stats.kills += 1
    stats.runs[mode] += 1
    for name, on in during.items():
        stats.kills_during[name] += on
    if not (os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL):
        stats.child_errors.append(f"{mode}: child ended by itself (status {status})")
    for line in reader.lines:
        if line.startswith("ERROR"):
            stats.child_errors.append(f"{mode}: {line[:2000]}")
        elif line.startswith("ACK "):
            _, event_id, image_id, class_id, kind = line.split()
            acked[int(event_id)] = (int(image_id), None if class_id == "-" else int(class_id), kind)
    verify(check_path, stats, acked)


def verify(project_path: Path, stats: KillStats, acked: dict) -> None:
    """The project opens, is intact, and holds every label ever acknowledged."""
    try:
        project = Project.open(project_path)
    except Exception as exc:  # noqa: BLE001 - any failure to open is the finding we report
        stats.open_failures.append(f"{type(exc).__name__}: {exc}")
        return
    with project:
        check = project.integrity_check()
        if check != "ok":
            stats.integrity_failures.append(check)
        by_image: dict[int, list[int]] = {}
        for event_id, (image_id, _, _) in acked.items():
            by_image.setdefault(image_id, []).append(event_id)
        present = {}
        for image_id in by_image:
            for event in project.label_history(image_id):
                present[event.id] = (event.image_id, event.class_id, event.kind)
    missing = [e for e, facts in acked.items() if present.get(e) != facts]
    stats.acknowledged = len(acked)
    stats.lost = len(missing)
    if missing:
        stats.lost_examples = missing[:10]


def run_kill_test(kills: int, seed: int, n_images: int = 300, workdir: Path | None = None,
                  progress=None, names: bool = False) -> KillStats:
    """Build a project, kill ``kills`` children, return the figures."""
    if os.name != "posix":
        raise RuntimeError("the kill test needs fork and SIGKILL (POSIX)")
    own_dir = workdir is None
    workdir = Path(tempfile.mkdtemp(prefix="inspector-kill-")) if own_dir else Path(workdir)
    try:
        project_path = build_project(workdir, n_images, seed)
        by_name = project_names(project_path) if names else None
        # import (and warm) in the parent, so each forked child starts working at once
        from inspector.core import ingest
        from inspector.core.learning import learner  # noqa: F401

        ingest._extractor()
        rng = random.Random(seed)
        stats = KillStats()
        acked: dict = {}
        for k in range(kills):
            mode = MODES[k % len(MODES)] if k < len(MODES) else rng.choice(MODES)
            one_kill(project_path, mode, rng, stats, acked, by_name)
            if progress:
                progress(k + 1, kills, stats)
            if not stats.ok and len(stats.child_errors) + len(stats.open_failures) > 5:
                break  # something is systematically wrong: stop and report
        return stats
    finally:
        if own_dir:
            shutil.rmtree(workdir, ignore_errors=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--names", action=argparse.BooleanOptionalAction, default=True,
                        help="open the project by its path, a symbolic link and a hard link, with a second "
                             "opener each time (default; --no-names: by its path only)")
    args = parser.parse_args(argv)
    started = time.monotonic()

    def progress(done, total, stats):
        if done % 20 == 0 or done == total:
            print(f"  {done}/{total} kills, {stats.acknowledged} acknowledged, {stats.lost} lost "
                  f"({time.monotonic() - started:.0f} s)", flush=True)

    stats = run_kill_test(args.kills, args.seed, args.images, progress=progress, names=args.names)
    print(f"kill test, seed {args.seed}, {args.images} images, {'three names' if args.names else 'one name'}, "
          f"{time.monotonic() - started:.0f} s")
    for line in stats.lines():
        print(line)
    for item in (stats.integrity_failures + stats.open_failures + stats.child_errors + stats.intruders_admitted)[:10]:
        print("  !", item[:500])
    if stats.lost_examples:
        print("  lost event ids (first 10):", stats.lost_examples)
    return 0 if stats.ok else 1


if __name__ == "__main__":
    sys.exit(main())
