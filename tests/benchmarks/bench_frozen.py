"""Benchmark of the packaged (PyInstaller) build in dist/: folder size and start-up times.

    .venv/bin/python tests/benchmarks/bench_frozen.py                  # dist/inspector, offscreen
    .venv/bin/python tests/benchmarks/bench_frozen.py --runs 5 --app-args gui --demo
    .venv/bin/python tests/benchmarks/bench_frozen.py --platform xcb   # a real display (DISPLAY set)
    .venv/bin/python tests/benchmarks/bench_frozen.py --archive        # + the download: .tar.xz and .zip sizes

Prints:
* the folder size and file count (target: at most 400 MB); with ``--archive`` the size of the
  download IT fetches (the folder as .tar.xz and as .zip);
* ``--version`` time (bootloader + Python + the command line, no Qt) - median of the runs;
* start-to-window: wall time from starting the executable until its first top-level window is
  exposed (target: at most 3 s), median of the runs. The executable is started with
  ``INSPECTOR_EXIT_WHEN_SHOWN=1``: the packaged entry point then prints "window shown after …"
  when the first window is exposed and quits (see inspector/selftest.py,
  install_exit_when_shown); the clock here runs from before the process starts until that line
  arrives;
* the ``--self-test`` time, once (unless --no-self-test).

Each run uses fresh, empty settings folders (HOME and XDG folders in a temporary folder), so no
run benefits from recent-project lists or caches written by an earlier one; the file-system
cache is warm after the first run (the first run is printed separately as "first").
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SIZE_TARGET_MB = 400
WINDOW_TARGET_S = 3.0


def folder_size(path: Path) -> tuple[int, int]:
    total = count = 0
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            p = Path(dirpath) / name
            if not p.is_symlink():
                total += p.stat().st_size
                count += 1
    return total, count


def clean_env(scratch: Path, platform: str) -> dict:
    env = dict(os.environ)
    home = scratch / "home"
    home.mkdir(parents=True, exist_ok=True)
    env.update(HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"), XDG_DATA_HOME=str(home / ".local/share"),
               XDG_CACHE_HOME=str(home / ".cache"), XDG_STATE_HOME=str(home / ".local/state"),
               TMPDIR=str(scratch))
    if platform:
        env["QT_QPA_PLATFORM"] = platform
    return env


def time_version(exe: Path, platform: str) -> float:
    with tempfile.TemporaryDirectory(prefix="bench-frozen-") as scratch:
        t0 = time.perf_counter()
        done = subprocess.run([str(exe), "--version"], capture_output=True, text=True,
                              env=clean_env(Path(scratch), platform), timeout=120)
        elapsed = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"{exe} --version failed ({done.returncode}): {done.stderr.strip()}")
    return elapsed


def time_window(exe: Path, app_args: list[str], platform: str, timeout: float) -> tuple[float, str, str]:
    """Seconds from start until the 'window shown' line; that line; a note about the exit."""
    with tempfile.TemporaryDirectory(prefix="bench-frozen-") as scratch:
        env = clean_env(Path(scratch), platform)
        env["INSPECTOR_EXIT_WHEN_SHOWN"] = "1"
        t0 = time.perf_counter()
        proc = subprocess.Popen([str(exe), *app_args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=env, cwd=scratch)
        shown: dict = {}
        stderr_lines: list[str] = []
        seen = threading.Event()

        def read_stdout() -> None:
            for line in proc.stdout:
                if line.startswith("window shown after") and "t" not in shown:
                    shown["t"] = time.perf_counter() - t0
                    shown["line"] = line.strip()
                    seen.set()

        def read_stderr() -> None:
            stderr_lines.extend(proc.stderr)

        readers = [threading.Thread(target=read_stdout, daemon=True), threading.Thread(target=read_stderr, daemon=True)]
        for r in readers:
            r.start()
        deadline = t0 + timeout
        while not seen.is_set() and proc.poll() is None and time.perf_counter() < deadline:
            seen.wait(0.05)
        note = ""
        if seen.is_set():
            # the app closes its window itself; give it time to shut down cleanly
            try:
                proc.wait(timeout=20)
                note = f"exit code {proc.returncode} after {time.perf_counter() - t0:.1f} s"
            except subprocess.TimeoutExpired:
                note = "DID NOT EXIT within 20 s of closing its window (killed)"
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        for r in readers:
            r.join(timeout=5)
    if "t" not in shown:
        raise SystemExit(f"{exe} {' '.join(app_args)} showed no window within {timeout:.0f} s "
                         f"(exit {proc.returncode}); stderr: {''.join(stderr_lines)[-800:]}")
    if "DID NOT EXIT" in note or proc.returncode:
        tail = "".join(stderr_lines).strip()[-300:]
        note += f"; stderr: {tail}" if tail else ""
    return shown["t"], shown["line"], note


def time_self_test(exe: Path, platform: str) -> tuple[float, str]:
    with tempfile.TemporaryDirectory(prefix="bench-frozen-") as scratch:
        t0 = time.perf_counter()
        done = subprocess.run([str(exe), "--self-test"], capture_output=True, text=True, encoding="utf-8",
                              env=clean_env(Path(scratch), platform or "offscreen"), timeout=900)
        elapsed = time.perf_counter() - t0
    last = (done.stdout.strip().splitlines() or [""])[-1]
    if done.returncode != 0:
        raise SystemExit(f"frozen --self-test failed ({done.returncode}): {last}\n{done.stderr[-2000:]}")
    return elapsed, last


def archive_sizes(dist: Path) -> list[tuple[str, int, float]]:
    """``(suffix, bytes, seconds)`` of the folder packed as IT would fetch it: .tar.xz (xz preset 6,
    Linux/macOS) and .zip (deflate, Windows)."""
    import shutil

    sizes = []
    with tempfile.TemporaryDirectory(prefix="bench-archive-") as scratch:
        for fmt, suffix in (("xztar", ".tar.xz"), ("zip", ".zip")):
            t0 = time.perf_counter()
            packed = shutil.make_archive(str(Path(scratch) / "inspector"), fmt, root_dir=dist.parent,
                                         base_dir=dist.name)
            sizes.append((suffix, Path(packed).stat().st_size, time.perf_counter() - t0))
            Path(packed).unlink()
    return sizes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dist", type=Path, default=ROOT / "dist" / "inspector", help="the one-folder build")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--platform", default="offscreen",
                        help="QT_QPA_PLATFORM for the window runs ('' keeps the environment's)")
    parser.add_argument("--app-args", nargs=argparse.REMAINDER, default=["gui"],
                        help="arguments that open the window (default: gui)")
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument("--no-self-test", action="store_true")
    parser.add_argument("--archive", action="store_true",
                        help="also pack the folder as .tar.xz and .zip and print their sizes (the download IT fetches)")
    args = parser.parse_args()

    exe = args.dist / ("inspector.exe" if sys.platform.startswith("win") else "inspector")
    if not exe.is_file():
        raise SystemExit(f"no frozen build at {exe}: run bash packaging/build.sh first")

    size, files = folder_size(args.dist)
    print(f"frozen build      {args.dist}")
    print(f"folder size       {size / 1e6:.1f} MB ({size / 2**20:.1f} MiB), {files} files "
          f"(target <= {SIZE_TARGET_MB} MB: {'ok' if size / 1e6 <= SIZE_TARGET_MB else 'OVER'})")
    if args.archive:
        for suffix, packed, seconds in archive_sizes(args.dist):
            print(f"download {suffix:<8} {packed / 1e6:.1f} MB ({packed / 2**20:.1f} MiB), "
                  f"{packed / size:.0%} of the folder, packed in {seconds:.0f} s")
    print(f"cpu cores         {os.cpu_count()}; load average {os.getloadavg()[0]:.2f}" if hasattr(os, "getloadavg")
          else f"cpu cores         {os.cpu_count()}")

    versions = [time_version(exe, args.platform) for _ in range(args.runs)]
    print(f"--version         median {statistics.median(versions):.2f} s  "
          f"(runs: {', '.join(f'{v:.2f}' for v in versions)})")

    windows = []
    for i in range(args.runs):
        seconds, line, note = time_window(exe, args.app_args, args.platform, args.timeout)
        windows.append(seconds)
        print(f"  run {i + 1}: {' '.join(args.app_args)} -> window after {seconds:.2f} s  [{line}; {note}]")
    median = statistics.median(windows)
    print(f"start-to-window   median {median:.2f} s over {args.runs} runs, first {windows[0]:.2f} s "
          f"({' '.join(args.app_args)}, QT_QPA_PLATFORM={args.platform or os.environ.get('QT_QPA_PLATFORM', '')}; "
          f"target <= {WINDOW_TARGET_S:.0f} s: {'ok' if median <= WINDOW_TARGET_S else 'OVER'})")

    if not args.no_self_test:
        seconds, last = time_self_test(exe, args.platform)
        print(f"--self-test       {seconds:.1f} s wall  [{last}]")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
