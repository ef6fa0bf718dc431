"""The shared feature standardisation against the inline copy it replaced in the query strategies.

Fits the scaling on a sample of rows (the strategies' cold-start and diversity path: at most 5,000
rows) and maps a block of the pool, the old inline float32 code and
:mod:`inspector.core.learning.standardise` interleaved in the same run; prints medians, their
ratio and the largest difference in z-scores. Prints, never asserts.

    .venv/bin/python tests/benchmarks/bench_standardise.py [--rows 5000] [--dim 512] [--map 20000] [--repeats 15]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np

from inspector.core.learning.standardise import standardisation, standardiser


def inline_before(rows: np.ndarray):
    """The strategies' own copy before the shared helper (kept here only as the baseline)."""
    mean = rows.mean(axis=0).astype(np.float32)
    std = rows.std(axis=0).astype(np.float32)
    std[std < 1e-6] = 1.0
    return lambda A: (np.asarray(A, dtype=np.float32) - mean) / std


def shared(rows: np.ndarray):
    return standardiser(*standardisation(rows, min_std=1e-6))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=5000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--map", type=int, default=20000)
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    pool = rng.normal(3, 2, (args.map, args.dim)).astype(np.float32)
    rows = pool[rng.choice(args.map, min(args.rows, args.map), replace=False)]
    times = {"inline (before)": [], "shared helper": []}
    for _ in range(args.repeats):
        for name, make in (("inline (before)", inline_before), ("shared helper", shared)):
            start = time.perf_counter()
            make(rows)(pool)
            times[name].append(time.perf_counter() - start)
    for name, values in times.items():
        print(f"{name:16s} median {statistics.median(values) * 1000:7.1f} ms "
              f"(fit on {len(rows)} x {args.dim}, map {args.map} rows)")
    ratio = statistics.median(times["shared helper"]) / statistics.median(times["inline (before)"])
    print(f"shared / inline: {ratio:.2f}")
    z_before, z_after = inline_before(rows)(pool[:1000]), shared(rows)(pool[:1000])
    print(f"largest z-score difference: {float(np.abs(z_before - z_after).max()):.2e}")
    print(f"load average: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
