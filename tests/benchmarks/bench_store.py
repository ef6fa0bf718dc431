"""Benchmark: load every feature vector of a large project into one numpy array.

    python tests/benchmarks/bench_store.py [--images 100000] [--dim 512] [--repeats 5] [--keep DIR]

Builds a project file with ``--images`` images x ``--dim`` float32 features through the store's
own methods (record_scan, then save_analyses in batches with synthetic hashes), then times
``Project.feature_matrix`` (median of ``--repeats``; the first, cold-cache read is printed too).
Target: at most 1 s for 100,000 x 512. Prints figures; asserts nothing about time.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from inspector.core.store import ImageAnalysis, Project

EXTRACTOR = ("texture", 1)


def build(path: Path, n_images: int, dim: int, batch: int = 10_000) -> float:
    """Write the project; returns seconds taken."""
    (path.parent / "images").mkdir(exist_ok=True)
    started = time.perf_counter()
    rng = np.random.default_rng(0)
    with Project.create(path, path.parent / "images") as p:
        p.record_scan([(f"line/part_{i:07d}.png", 40_000 + i, i) for i in range(n_images)], [], [], [])
        ids = sorted(v[0] for v in p.scan_state().values())
        for start in range(0, n_images, batch):
            chunk = ids[start : start + batch]
            X = rng.standard_normal((len(chunk), dim), dtype=np.float32)
            p.save_analyses([ImageAnalysis(i, f"{i:032x}", 200, 200, 8, 1, features=X[k])
                             for k, i in enumerate(chunk)], *EXTRACTOR)
    return time.perf_counter() - started


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--keep", metavar="DIR", help="build (or reuse) the project in DIR instead of a temporary folder")
    args = parser.parse_args(argv)
    folder = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="inspector-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"bench_{args.images}x{args.dim}.inspector"
    try:
        if not path.exists():
            seconds = build(path, args.images, args.dim)
            print(f"built {path.name}: {args.images} images x {args.dim} float32 in {seconds:.1f} s, "
                  f"{path.stat().st_size / 1024**2:.0f} MB")
        times = []
        with Project.open(path, read_only=True) as p:
            for _ in range(args.repeats + 1):
                t0 = time.perf_counter()
                ids, X = p.feature_matrix(*EXTRACTOR)
                times.append(time.perf_counter() - t0)
                assert X.shape == (args.images, args.dim) and X.dtype == np.float32 and len(ids) == args.images
                del ids, X
        print(f"feature_matrix {args.images} x {args.dim}: first (cold) {times[0]:.3f} s, "
              f"median of {args.repeats} {statistics.median(times[1:]):.3f} s "
              f"(min {min(times[1:]):.3f}, max {max(times[1:]):.3f}); target <= 1 s")
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
