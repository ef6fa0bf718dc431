"""Benchmark of the labelling workstation, driving the real main window (offscreen).

Prints, for a 1,000-image project (real files, real extraction) and a 100,000-image project
(synthetic features written straight into the project file; only the queued images exist):
  * key press -> next image painted, p50 / p95 (target p95 <= 50 ms)
  * longest UI-thread stall during extraction and during a retrain (5 ms heartbeat; target <= 100 ms)
  * time from opening the project to the first image painted (target <= 2 s at 100,000)
  * peak resident memory (target <= 1.5 GB at 100,000)

Run:  .venv/bin/python tests/benchmarks/bench_ui.py            (both sizes, ~3-5 minutes)
      .venv/bin/python tests/benchmarks/bench_ui.py 1000        (one size)
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

N_KEYS = 40


class Heartbeat:
    """A 5 ms timer on the UI thread; the longest gap between its ticks is the longest stall."""

    def __init__(self) -> None:
        import psutil
        from PySide6.QtCore import QTimer

        self.proc = psutil.Process()
        self.peak_rss = 0
        self.timer = QTimer()
        self.timer.setInterval(5)
        self.timer.timeout.connect(self._tick)
        self.reset()
        self.timer.start()

    def reset(self) -> None:
        self.last = time.perf_counter()
        self.longest = 0.0

    def _tick(self) -> None:
        now = time.perf_counter()
        self.longest = max(self.longest, now - self.last)
        self.last = now
        self.peak_rss = max(self.peak_rss, self.proc.memory_info().rss)


def pump(app, until, timeout=600.0):
    start = time.perf_counter()
    while not until():
        app.processEvents()
        time.sleep(0.001)
        if time.perf_counter() - start > timeout:
            raise TimeoutError("benchmark step did not finish")


def make_images(root: Path, n: int, start: int = 0) -> list[str]:
    import cv2
    import numpy as np

    rng = np.random.default_rng(start)
    root.mkdir(parents=True, exist_ok=True)
    names = []
    for i in range(start, start + n):
        image = rng.normal(120, 14, (200, 200)).clip(0, 255).astype(np.uint8)
        if i % 4 == 0:
            cv2.line(image, (20, 30 + i % 120), (180, 150), 235, 2)
        name = f"part_{i:06d}.png"
        cv2.imwrite(str(root / name), image)
        names.append(name)
    return names


def build_large_project(path: Path, root: Path, n: int) -> None:
    """A project of ``n`` images with synthetic features; only the first queued 200 files exist."""
    import numpy as np

    from inspector.core.extractor_choice import start_project_with
    from inspector.core.features import default_extractor
    from inspector.core.store import ImageAnalysis, Project, QueueEntry

    ex = default_extractor()
    make_images(root, 200)
    project = Project.create(path, root)
    # the project must say which extractor its vectors come from: without the setting it counts as
    # a 0.1 project (texture), and the app would start extracting 100,000 files that do not exist
    start_project_with(project, ex.name)
    rng = np.random.default_rng(0)
    paths = [(f"part_{i:06d}.png", 1000, 0) for i in range(n)]
    project.record_scan(paths, [], [], [], [])
    ids = project.scan_state()
    ordered = sorted(v[0] for v in ids.values())
    centres = rng.normal(0, 1, (6, ex.dim)).astype(np.float32)
    for lo in range(0, n, 5000):
        batch = ordered[lo:lo + 5000]
        X = centres[rng.integers(0, 6, len(batch))] + rng.normal(0, 0.7, (len(batch), ex.dim)).astype(np.float32)
        project.save_analyses([ImageAnalysis(i, f"h{i}", 200, 200, 8, 1, None, "", X[k]) for k, i in enumerate(batch)],
                              ex.name, ex.version)
    for name in ("ok", "scratch", "crack"):
        project.add_class(name)
    project.replace_queue([QueueEntry(i, p, "cold_start", None, "cold start: representative", None)
                           for p, i in enumerate(ordered[:200])])
    project.close()


def run_size(n: int) -> None:
    import numpy as np
    from PySide6.QtCore import QSettings, Qt
    from PySide6.QtTest import QTest

    from inspector.ui.app import application

    tmp = Path(tempfile.mkdtemp(prefix="bench_ui_"))
    QSettings.setDefaultFormat(QSettings.Format.IniFormat)
    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(tmp / "settings"))
    app = application()
    app.setOrganizationName("InspectorBench")
    app._inspector_testing = True
    from inspector.ui.main_window import MainWindow

    beat = Heartbeat()
    window = MainWindow()
    window.resize(1400, 900)
    window.show()
    app.processEvents()
    root = tmp / "images"
    project_path = tmp / "bench.inspector"
    figures: dict[str, str] = {}
    if n <= 5000:
        t = time.perf_counter()
        make_images(root, n)
        print(f"[{n}] wrote images in {time.perf_counter() - t:.1f} s", flush=True)
        beat.reset()
        t = time.perf_counter()
        window.new_project_from_folder(str(root), str(project_path))  # the file is created in a worker
        pump(app, lambda: window.session is not None)
        session = window.session
        view = window.label_view
        pump(app, lambda: view.current is not None and view._prepared is not None)
        figures["first image during extraction (cold start)"] = f"{time.perf_counter() - t:.2f} s"
        pump(app, lambda: not session.extracting())
        figures["extraction"] = f"{time.perf_counter() - t:.1f} s"
        figures["longest UI stall during extraction"] = f"{beat.longest * 1000:.0f} ms"
        pump(app, lambda: not session.busy())
        for name in ("ok", "scratch", "crack"):
            session.project.add_class(name)
        session.notify_classes_changed()
        window.close_project()
    else:
        t = time.perf_counter()
        build_large_project(project_path, root, n)
        print(f"[{n}] built the project file in {time.perf_counter() - t:.1f} s", flush=True)

    # open -> first image painted
    beat.reset()
    painted = {"ok": False}
    t = time.perf_counter()
    window.open_project(str(project_path))  # the file is opened in a worker
    pump(app, lambda: window.session is not None)
    session, view = window.session, window.label_view
    view.canvas.painted.connect(lambda: painted.__setitem__("ok", view._prepared is not None))
    pump(app, lambda: painted["ok"])
    figures["open project -> first image painted"] = f"{time.perf_counter() - t:.2f} s"
    pump(app, lambda: len(session.image_ids) == n and not session.busy())
    figures["open -> features in memory"] = f"{time.perf_counter() - t:.2f} s"
    figures["longest UI stall while opening (feature load)"] = f"{beat.longest * 1000:.0f} ms"
    session.set_retrain_every(10_000)  # retrain measured separately below

    # key press -> next image painted
    latencies = []
    for k in range(N_KEYS):
        pump(app, lambda: view.current is not None)
        for _ in range(30):  # let prefetch finish as it would between a person's key presses
            app.processEvents()
            time.sleep(0.002)
        before = view.current
        painted["ok"] = False
        t = time.perf_counter()
        QTest.keyClick(view, Qt.Key.Key_1 if k % 3 else Qt.Key.Key_2)
        pump(app, lambda: view.current != before and view._prepared is not None
             and view._prepared.image_id == view.current and painted["ok"])
        latencies.append(time.perf_counter() - t)
    lat = np.array(latencies) * 1000
    figures["key -> next image painted p50 / p95 / max"] = (
        f"{np.percentile(lat, 50):.1f} / {np.percentile(lat, 95):.1f} / {lat.max():.1f} ms ({N_KEYS} keys)")

    # a label write alone (durable commit on the UI thread)
    t = time.perf_counter()
    ids = [int(i) for i in session.image_ids[-20:]]
    for i in ids:
        session.project.add_label(i, session.classes()[0].id)
    figures["durable label write (fsync)"] = f"{(time.perf_counter() - t) / len(ids) * 1000:.1f} ms each"

    # retrain in the background while the UI keeps ticking (after the refills the key presses
    # asked for, so this measures one whole retrain)
    pump(app, lambda: not session.busy() and session.pending_labels() == 0)
    beat.reset()
    t = time.perf_counter()
    session.start_retrain()
    pump(app, lambda: not session.retraining())
    figures["retrain (fit + select + write queue)"] = f"{time.perf_counter() - t:.1f} s"
    figures["longest UI stall during retrain"] = f"{beat.longest * 1000:.0f} ms"
    figures["peak resident memory"] = f"{beat.peak_rss / 1024 ** 2:.0f} MB"
    window.close()
    print(f"\n== bench_ui, {n:,} images ==")
    for key, value in figures.items():
        print(f"  {key:<48} {value}")
    sys.stdout.flush()


def main() -> None:
    sizes = [int(a) for a in sys.argv[1:]] or [1000, 100_000]
    if len(sizes) == 1:
        run_size(sizes[0])
        return
    for n in sizes:  # one process per size so peak memory is per size
        subprocess.run([sys.executable, __file__, str(n)], check=False)


if __name__ == "__main__":
    main()
