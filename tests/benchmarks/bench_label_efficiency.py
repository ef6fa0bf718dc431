"""Label efficiency of the strategies, measured by replaying active learning on real data.

1. NEU (6 balanced classes x 300): simulate with 5 seeds, budget 300, batch 10, 30 % test split,
   every registered strategy (random included); prints the table and the audit-interval coverage.
2. Imbalanced: NEU features subsampled so one class is the OK majority (~80 %) and the other five
   are rare (2-5 % each). Headline: macro-F1; and how many labels until every class has been seen,
   cold start + default versus random (median over seeds).

Prints figures; asserts nothing. Features are cached under --out between runs.

    .venv/bin/python tests/benchmarks/bench_label_efficiency.py [--neu DIR] [--out DIR] [--seeds 5]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from inspector.cli.common import terminal_progress
from inspector.cli.learning_cmds import print_table
from inspector.core.learning.simulate import SimulationSettings, folder_dataset, simulate, write_outputs
from inspector.core.learning.strategies import DEFAULT_STRATEGY, strategy_names

REPO = Path(__file__).resolve().parents[2]
#: images per class in the imbalanced set: one majority class, five rare ones (2-5 % each)
IMBALANCED_COUNTS = (300, 19, 15, 13, 11, 8)


def imbalanced_subset(X, y, seed: int):
    """Rows of (X, y) with IMBALANCED_COUNTS images per class; the majority class varies by seed."""
    rng = np.random.default_rng(seed)
    n_classes = int(y.max()) + 1
    order = np.roll(np.arange(n_classes), -seed)  # which class plays 'OK' changes with the seed
    rows = []
    for count, c in zip(IMBALANCED_COUNTS, order):
        rows.append(rng.choice(np.flatnonzero(y == c), count, replace=False))
    rows = np.concatenate(rows)
    y_new = np.empty(len(rows), np.int64)  # relabel: 0 = majority, 1.. = rare, by rarity
    start = 0
    for k, count in enumerate(IMBALANCED_COUNTS):
        y_new[start:start + count] = k
        start += count
    return X[rows], y_new


def main() -> int:
    parser = argparse.ArgumentParser()
    default_data = Path(os.environ.get("INSPECTOR_TEST_DATA", REPO.parent / "shared" / "datasets"))
    parser.add_argument("--neu", type=Path, default=default_data / "neu")
    parser.add_argument("--out", type=Path, default=Path("/tmp/inspector_bench_label_efficiency"))
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--strategies", default=",".join(n for n in strategy_names() if n not in ("random", "cold_start")))
    parser.add_argument("--skip-neu", action="store_true")
    args = parser.parse_args()
    if not args.neu.is_dir():
        print(f"NEU not found at {args.neu}; set INSPECTOR_TEST_DATA", file=sys.stderr)
        return 1
    with terminal_progress("NEU features") as progress:
        X, y, class_names, _ = folder_dataset(args.neu, progress=progress, cache=args.out / "neu_features.npz")
    strategies = list(dict.fromkeys([DEFAULT_STRATEGY] + args.strategies.split(",")))  # default always compared

    if not args.skip_neu:
        settings = SimulationSettings(strategies=strategies, budget=300, batch=10, initial=10, seeds=args.seeds,
                                      test_fraction=0.3)
        start = time.perf_counter()
        with terminal_progress("Simulating NEU") as progress:
            summary = simulate(X, y, class_names, settings, progress=progress)
        write_outputs(summary, args.out / "neu")
        print(f"\n== NEU: {len(y)} images, {len(class_names)} classes ({time.perf_counter() - start:.0f} s) ==")
        print_table(summary)
        d = summary["strategies"][DEFAULT_STRATEGY]
        counts = d["label_counts"]
        at80 = d["accuracy_mean"][counts.index(80)]
        first99 = next((c for c, a in zip(counts, d["accuracy_mean"]) if a >= 0.99), None)
        singles = {n: s["area_under_accuracy_curve"] for n, s in summary["strategies"].items() if n != DEFAULT_STRATEGY}
        best_other = max(singles, key=singles.get)
        print(f"default: accuracy at 80 labels {at80:.4f}; first reaches 99 % at {first99} labels; "
              f"AUC {d['area_under_accuracy_curve']:.4f} vs best other {best_other} {singles[best_other]:.4f} "
              f"and random {singles['random']:.4f}")
        print(f"outputs in {args.out / 'neu'}")

    # ---------------------------------------------------------------- imbalanced
    names = ["majority"] + [f"rare{k}" for k in range(1, len(IMBALANCED_COUNTS))]
    share = np.array(IMBALANCED_COUNTS) / sum(IMBALANCED_COUNTS)
    print(f"\n== Imbalanced (NEU features): counts {IMBALANCED_COUNTS}, shares "
          + ", ".join(f"{s:.1%}" for s in share) + " ==")
    seen = {DEFAULT_STRATEGY: [], "random": []}
    curves = {DEFAULT_STRATEGY: [], "random": []}
    cover = []
    for seed in range(args.seeds):
        Xi, yi = imbalanced_subset(X, y, seed)
        pool = int(round(len(yi) * 0.7))
        settings = SimulationSettings(strategies=[DEFAULT_STRATEGY], budget=min(250, pool), batch=10, initial=10,
                                      seeds=1, test_fraction=0.3, first_seed=seed)
        s = simulate(Xi, yi, names, settings)
        for name in seen:
            v = s["strategies"][name]["labels_until_every_class_seen_per_seed"][0]
            seen[name].append(v if v is not None else float("inf"))
            curves[name].append(s["strategies"][name]["macro_f1_mean"])
        counts = s["label_counts"]
        cover.append(s["all_labels"]["macro_f1"])
    for name in seen:
        f1 = np.mean(curves[name], axis=0)
        marks = [c for c in (20, 50, 100, 150, 200) if c in counts]
        print(f"{name:18s} labels until every class seen: median {np.median(seen[name]):.0f} "
              f"(per seed {seen[name]}); macro-F1 " + " ".join(f"@{c}:{f1[counts.index(c)]:.3f}" for c in marks))
    ratio = np.median(seen[DEFAULT_STRATEGY]) / np.median(seen["random"])
    print(f"default needs {ratio:.2f} x the labels random needs to see every class (target <= 0.33); "
          f"all-labels macro-F1 {np.mean(cover):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
