"""Gallery at 100,000 images: build time, first screen, scrolling stalls, filters, memory.

Run:  .venv/bin/python tests/benchmarks/bench_gallery.py [--images 100000]

Builds a synthetic project in a temporary folder: 100,000 image entries that are symbolic links
to 256 drawn 200 x 200 PNGs (so every thumbnail is a real read + decode + resize), random
64-dimensional features, 5,000 labels and random class probabilities. Prints figures; asserts
nothing about time. UI stalls are measured by a 5 ms QTimer heartbeat: the longest gap between
two beats is the longest time the UI thread could not respond.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import psutil  # noqa: E402
from PySide6.QtCore import QTimer  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from inspector.core.store import ImageAnalysis, Project  # noqa: E402


def build_project(folder: Path, n: int, n_classes: int = 6, dim: int = 64):
    rng = np.random.default_rng(0)
    sources = folder / "sources"
    sources.mkdir()
    for k in range(256):
        image = rng.normal(128, 25, (200, 200)).clip(0, 255).astype(np.uint8)
        cv2.circle(image, (int(rng.integers(20, 180)), int(rng.integers(20, 180))), int(rng.integers(5, 30)), 250, -1)
        cv2.imwrite(str(sources / f"s{k:03d}.png"), image)
    root = folder / "images"
    root.mkdir()
    new = []
    for i in range(n):
        sub = root / f"d{i // 1000:03d}"
        if i % 1000 == 0:
            sub.mkdir()
        link = sub / f"img_{i:06d}.png"
        link.symlink_to(sources / f"s{i % 256:03d}.png")
        new.append((link.relative_to(root).as_posix(), 5000, 0))
    project = Project.create(folder / "bench.inspector", root)
    project.record_scan(new, [], [], [])
    pending = project.pending_analysis("texture", 1)
    features = rng.normal(0, 1, (len(pending), dim)).astype(np.float32)
    project.save_analyses(
        [ImageAnalysis(image_id, f"{image_id:032x}", 200, 200, 8, 1, None, "", features[r])
         for r, (image_id, _) in enumerate(pending)],
        "texture", 1)
    class_ids = [project.add_class(f"class {c}") for c in range(n_classes)]
    ids = project.image_ids()
    labelled = rng.choice(len(ids), 5000, replace=False)
    project.add_labels_bulk([(int(ids[r]), class_ids[r % n_classes]) for r in labelled])
    project.set_setting("app.retrain_every", 10**9)
    proba = rng.dirichlet(np.full(n_classes, 0.3), size=len(ids)).astype(np.float32)
    return project, ids, class_ids, proba


class Heartbeat:
    """A 5 ms timer on the UI thread; the longest gap between beats is the longest stall."""

    def __init__(self) -> None:
        self.timer = QTimer()
        self.timer.setInterval(5)
        self.timer.timeout.connect(self._beat)
        self.last = None
        self.longest = 0.0
        self.gaps: list[float] = []

    def _beat(self) -> None:
        now = time.perf_counter()
        if self.last is not None:
            self.longest = max(self.longest, now - self.last)
            self.gaps.append(now - self.last)
        self.last = now

    def start(self) -> None:
        self.last, self.longest, self.gaps = None, 0.0, []
        self.timer.start()

    def stop(self) -> float:
        self.timer.stop()
        return self.longest * 1000

    def over(self, ms: float) -> int:
        """How many beats came more than ``ms`` late."""
        return sum(g * 1000 > ms for g in self.gaps)


def pump(app, seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        app.processEvents()
        time.sleep(0.001)


def wait_for(app, condition, timeout: float) -> float:
    start = time.perf_counter()
    while not condition():
        if time.perf_counter() - start > timeout:
            return float("nan")
        app.processEvents()
        time.sleep(0.001)
    return time.perf_counter() - start


def screen_ready(view) -> bool:
    rows = view.visible_rows()
    if not rows:
        return False
    ids = view.model.image_ids[view.model.shown[rows.start:rows.stop]]
    return all(view.loader.thumbnail(int(i)) is not None or view.loader.failure(int(i)) for i in ids)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=100_000)
    parser.add_argument("--pages", type=int, default=50)
    args = parser.parse_args()
    app = QApplication.instance() or QApplication(sys.argv[:1])
    process = psutil.Process()

    from inspector.ui.gallery import GalleryFilter, GalleryView
    from inspector.ui.session import ProjectSession

    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        project, ids, class_ids, proba = build_project(Path(tmp), args.images)
        print(f"synthetic project: {len(ids):,} images built in {time.perf_counter() - t:.1f} s")
        session = ProjectSession(project)
        session.image_ids, session.features = project.feature_matrix("texture", 1)
        session.extractor = ("texture", 1)
        session.probabilities, session.class_ids = proba, np.asarray(sorted(class_ids), np.int64)
        session.latest_labels()  # the session loads these when the project opens, not the gallery
        rss_before = process.memory_info().rss

        beat = Heartbeat()
        beat.start()
        t = time.perf_counter()
        view = GalleryView(session, disk_cache=False)
        view.resize(1280, 800)
        built = time.perf_counter() - t
        view.show()
        first = wait_for(app, lambda: view.visible_rows() and len(view.visible_rows()) > 0, 30)
        layout_done = wait_for(app, lambda: view.list.verticalScrollBar().maximum() > 0, 30)
        thumbs = wait_for(app, lambda: screen_ready(view), 60)
        stall_open = beat.stop()
        cells = len(view.visible_rows())
        print(f"build GalleryView: {built * 1000:.0f} ms; first cells laid out after {first * 1000:.0f} ms more; "
              f"first screen ({cells} cells) of thumbnails decoded after {(first + layout_done + thumbs) * 1000:.0f} ms; "
              f"longest UI stall while opening {stall_open:.0f} ms ({beat.over(50)} stalls over 50 ms)")

        bar = view.list.verticalScrollBar()
        wait_for(app, lambda: bar.maximum() >= bar.pageStep() * (args.pages + 1), 60)
        beat.start()
        t = time.perf_counter()
        for _ in range(args.pages):
            bar.setValue(bar.value() + bar.pageStep())
            pump(app, 0.03)  # a fast scroll: a new page every 30 ms
        scrolled = time.perf_counter() - t
        settle = wait_for(app, lambda: screen_ready(view), 60)
        stall_scroll = beat.stop()
        print(f"scroll {args.pages} pages (one per 30 ms): {scrolled:.2f} s, last screen complete {settle * 1000:.0f} ms "
              f"later; longest UI stall {stall_scroll:.0f} ms ({beat.over(50)} over 50 ms); thumbnails decoded in all: {view.loader.decoded:,} "
              f"(visible-only loading: a full decode would be {len(ids):,})")

        for spec in (GalleryFilter("unlabelled"), GalleryFilter("label", class_ids[0]),
                     GalleryFilter("prediction", class_ids[1]), GalleryFilter("margin"),
                     GalleryFilter("entropy"), GalleryFilter("suspected")):
            beat.start()
            t = time.perf_counter()
            view.set_filter(spec)
            applied = time.perf_counter() - t
            shown = wait_for(app, lambda: not view.sorting, 60)  # margin/entropy/suspected sort in a worker
            pump(app, 0.2)
            print(f"filter {spec.kind:<10}: {applied * 1000:6.0f} ms on the UI thread, shown after "
                  f"{(applied + shown) * 1000:4.0f} ms -> {view.count_label.text()[:40]}; longest stall {beat.stop():.0f} ms")

        beat.start()
        t = time.perf_counter()
        view.find_similar(int(ids[12345 % len(ids)]))
        similar = wait_for(app, lambda: view.filter.kind == "similar", 60)
        print(f"find similar (first time, incl. standardisation, worker): {similar * 1000:.0f} ms; "
              f"longest UI stall {beat.stop():.0f} ms")
        beat.start()
        view.find_similar(int(ids[777]))
        t = time.perf_counter()
        view.similar_to = None
        similar = wait_for(app, lambda: view.similar_to == int(ids[777]), 60)
        print(f"find similar (again): {similar * 1000:.0f} ms; longest UI stall {beat.stop():.0f} ms")

        beat.start()
        t = time.perf_counter()
        session.label_images([int(i) for i in ids[:50]], class_ids[2])
        pump(app, 0.1)
        print(f"bulk label 50 + refresh: {(time.perf_counter() - t) * 1000:.0f} ms; longest stall {beat.stop():.0f} ms")

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"memory: peak RSS {peak:.0f} MB; gallery added {(process.memory_info().rss - rss_before) / 2**20:.0f} MB "
              f"over the loaded session ({len(view.loader._cache):,} thumbnails cached)")
        view.loader.shutdown()
        view.close()
        session.closed = True
        project.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
