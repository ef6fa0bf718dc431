"""Long labelling session: thousands of labels with retraining in the background, as in the app.

    python tests/reliability/long_session.py                 # 5,000 labels, retrain every 50
    python tests/reliability/long_session.py --labels 1000 --images 3000 --dim 551

A synthetic project (random class-dependent feature vectors saved through the store, no image
files) is labelled one image at a time, taking the learner's queue head like an inspector
pressing keys. Every ``--retrain-every`` labels a retrain (snapshot, fit, select, commit) starts
on a background thread unless one is still running. Prints resident memory at the start and the
end, and the 95th percentile of the add_label call and of the whole "next image + label" path
for the first and the last 500 labels. Checks at the end that every label is in the file.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil

from inspector.core.features import get_extractor
from inspector.core.store import ImageAnalysis, Project


def build_synthetic_project(path: Path, n_images: int, dim: int, n_classes: int, seed: int) -> dict[int, int]:
    """Images with features but no files; returns each image's true class index."""
    extractor = get_extractor("texture")
    rng = np.random.default_rng(seed)
    (path.parent / "images").mkdir(exist_ok=True)
    truth: dict[int, int] = {}
    centres = rng.normal(0, 1.0, (n_classes, dim))
    with Project.create(path, path.parent / "images") as p:
        p.record_scan([(f"part_{i:06d}.png", 1000 + i, i) for i in range(n_images)], [], [], [])
        ids = sorted(v[0] for v in p.scan_state().values())
        # mostly OK parts, like a production line
        weights = np.array([0.7] + [0.3 / (n_classes - 1)] * (n_classes - 1))
        cls = rng.choice(n_classes, size=n_images, p=weights)
        X = (centres[cls] + rng.normal(0, 1.5, (n_images, dim))).astype(np.float32)
        for start in range(0, n_images, 2000):
            batch = ids[start : start + 2000]
            p.save_analyses([ImageAnalysis(i, f"hash{i}", 200, 200, 8, 1, features=X[k + start])
                             for k, i in enumerate(batch)], extractor.name, extractor.version)
        for c in range(n_classes):
            p.add_class("ok" if c == 0 else f"defect {c}")
        truth = {int(i): int(c) for i, c in zip(ids, cls)}
    return truth


def rss_mb() -> float:
    return psutil.Process().memory_info().rss / 1024**2


def run_long_session(n_labels: int = 5000, retrain_every: int = 50, n_images: int = 6000, dim: int = 64,
                     n_classes: int = 4, seed: int = 0, workdir: Path | None = None,
                     wait_when_busy: bool = False) -> dict:
    """Run the session; returns the figures and the checks' outcomes.

    A retrain due while the previous one still runs is skipped, as the app coalesces them; with
    ``wait_when_busy`` the labelling waits for it and then starts the next, so the number of
    retrains does not depend on how fast this machine trains (labels still arrive during each)."""
    from inspector.core.learning import learner

    own = workdir is None
    workdir = Path(tempfile.mkdtemp(prefix="inspector-long-")) if own else Path(workdir)
    try:
        path = workdir / "long.inspector"
        truth = build_synthetic_project(path, n_images, dim, n_classes, seed)
        rng = np.random.default_rng(seed + 1)
        given: dict[int, int] = {}
        label_ms: list[float] = []
        path_ms: list[float] = []
        retrains = {"started": 0, "skipped_busy": 0, "errors": []}
        worker: threading.Thread | None = None
        with Project.open(path) as project:
            class_ids = [c.id for c in project.classes()]

            def retrain() -> None:
                try:
                    snapshot = learner.take_snapshot(project)
                    fitted = learner.fit(snapshot)
                    selection = learner.select(snapshot, fitted)
                    learner.commit(project, snapshot, fitted, selection)
                except Exception as exc:  # noqa: BLE001 - collected and reported as a failure
                    retrains["errors"].append(f"{type(exc).__name__}: {exc}")

            unlabelled = set(truth)
            rss_start = rss_mb()
            started = time.perf_counter()
            for k in range(n_labels):
                t0 = time.perf_counter()
                queue = project.queue()
                image_id = next((e.image_id for e in queue if e.image_id in unlabelled), None)
                if image_id is None:
                    image_id = int(rng.choice(sorted(unlabelled))) if len(unlabelled) < 2000 else \
                        int(rng.choice(list(unlabelled)))
                class_id = class_ids[truth[image_id]] if rng.random() > 0.03 else int(rng.choice(class_ids))
                t1 = time.perf_counter()
                project.add_label(image_id, class_id, annotator="long-session")
                t2 = time.perf_counter()
                label_ms.append((t2 - t1) * 1000)
                path_ms.append((t2 - t0) * 1000)
                given[image_id] = class_id
                unlabelled.discard(image_id)
                if (k + 1) % retrain_every == 0:
                    if worker is not None and worker.is_alive() and wait_when_busy:
                        worker.join()
                    if worker is not None and worker.is_alive():
                        retrains["skipped_busy"] += 1
                    else:
                        worker = threading.Thread(target=retrain, daemon=True)
                        worker.start()
                        retrains["started"] += 1
            if worker is not None:
                worker.join()
            elapsed = time.perf_counter() - started
            rss_end = rss_mb()
            latest = project.latest_labels()
            lost = sum(1 for i, c in given.items() if latest.get(i) != c)
            queued_labelled = sum(1 for e in project.queue() if e.image_id in given)
            versions = len(project.model_versions())
            integrity = project.integrity_check()
        window = min(500, max(1, n_labels // 2))
        return {
            "labels": n_labels, "images": n_images, "dim": dim, "seconds": elapsed,
            "retrains_started": retrains["started"], "retrains_skipped_busy": retrains["skipped_busy"],
            "retrain_errors": retrains["errors"], "model_versions": versions,
            "rss_start_mb": rss_start, "rss_end_mb": rss_end,
            "add_label_p95_start_ms": float(np.percentile(label_ms[:window], 95)),
            "add_label_p95_end_ms": float(np.percentile(label_ms[-window:], 95)),
            "path_p95_start_ms": float(np.percentile(path_ms[:window], 95)),
            "path_p95_end_ms": float(np.percentile(path_ms[-window:], 95)),
            "window": window, "lost": lost, "queued_labelled": queued_labelled, "integrity": integrity,
        }
    finally:
        if own:
            shutil.rmtree(workdir, ignore_errors=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--labels", type=int, default=5000)
    parser.add_argument("--retrain-every", type=int, default=50)
    parser.add_argument("--images", type=int, default=6000)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    r = run_long_session(args.labels, args.retrain_every, args.images, args.dim, seed=args.seed)
    w = r["window"]
    print(f"long session: {r['labels']} labels on {r['images']} images x {r['dim']} features in {r['seconds']:.0f} s")
    print(f"retrains started {r['retrains_started']} (skipped while one was running: {r['retrains_skipped_busy']}), "
          f"model versions {r['model_versions']}, retrain errors {len(r['retrain_errors'])}")
    print(f"RSS start {r['rss_start_mb']:.0f} MB, end {r['rss_end_mb']:.0f} MB "
          f"(growth {r['rss_end_mb'] - r['rss_start_mb']:+.0f} MB)")
    print(f"add_label p95: first {w} {r['add_label_p95_start_ms']:.2f} ms, last {w} {r['add_label_p95_end_ms']:.2f} ms")
    print(f"queue head + add_label p95: first {w} {r['path_p95_start_ms']:.2f} ms, "
          f"last {w} {r['path_p95_end_ms']:.2f} ms")
    print(f"labels lost {r['lost']}, labelled images still queued {r['queued_labelled']}, integrity {r['integrity']}")
    for error in r["retrain_errors"][:5]:
        print("  !", error)
    ok = r["lost"] == 0 and r["queued_labelled"] == 0 and r["integrity"] == "ok" and not r["retrain_errors"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
