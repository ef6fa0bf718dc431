"""Label efficiency of the strategies, measured by replaying active learning on real data.

1. NEU (6 balanced classes x 300): simulate with 5 seeds, budget 300, batch 10, 30 % test split,
   every registered strategy (random included); prints the table and the audit-interval coverage.
2. Imbalanced: NEU features subsampled so one class is the OK majority (~80 %) and the other five
   are rare (2-5 % each). Headline: macro-F1; and how many labels until every class has been seen,
   cold start + default versus random (median over seeds).
3. Generated (``--generated``, on by default; ``--no-generated`` skips it): an imbalanced inspection
   set drawn with inspector.core.demo - 85 % OK parts and four defect classes at 5 / 4 / 3.5 /
   2.5 %, defects covering ~0.5-1 % of a ~480 x 640 part whose size, brightness, grain and
   brushing vary - featurised with ingest.analyse_files on every core (feature matrix cached as
   .npy under --out). Same replay (cold start + default vs random, budget 200, batch 10); headline:
   labels until every class is seen (median over seeds, target default <= 0.33 x random) and
   macro-F1.

Prints figures; asserts nothing. Features are cached under --out between runs.

    .venv/bin/python tests/benchmarks/bench_label_efficiency.py [--neu DIR] [--out DIR] [--seeds 5]
        [--no-generated | --generated-only] [--generated-images 1200]
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
    parser.add_argument("--generated", action=argparse.BooleanOptionalAction, default=True,
                        help="also run the generated imbalanced inspection set (default on)")
    parser.add_argument("--generated-images", type=int, default=1200)
    parser.add_argument("--generated-only", action="store_true", help="skip both NEU sections")
    args = parser.parse_args()
    if args.generated_only:
        return generated_section(args)
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
    if args.generated:
        return generated_section(args)
    return 0


# ---------------------------------------------------------------- generated imbalanced inspection set
#: class -> share of the generated set (85 % OK, four rare defect classes at 2.5-5 %)
GENERATED_SHARES = {"ok": 0.85, "scratch": 0.05, "stain": 0.04, "inclusion": 0.035, "crack": 0.025}
GENERATED_SIZE = (480, 640)  # (height, width) before jitter
GENERATED_SIZE_JITTER = 0.15  # each side varies by up to 15 %
GENERATED_DEFECT_AREA = 0.0075  # x uniform(0.85, 1.15)^2 in render_part: ~0.54-0.99 % of the part


def generated_counts(n_images: int) -> dict:
    """Images per class for ``n_images`` (every rare class gets at least 3)."""
    counts = {c: max(3, int(round(s * n_images))) for c, s in GENERATED_SHARES.items() if c != "ok"}
    counts = {"ok": n_images - sum(counts.values()), **counts}
    return counts


def generated_dataset(out: Path, n_images: int, seed: int = 0, workers=None, extractor=None):
    """Draw the generated imbalanced set under ``out`` and return (X, y, class names).

    One write_demo_dataset call per class (its own folder and seed) gives uneven rare shares;
    features come from ingest.analyse_files on every core and are cached as .npy files keyed by
    the set's parameters and the extractor's name and version.
    """
    from inspector.core.demo import write_demo_dataset
    from inspector.core.features import default_extractor, get_extractor
    from inspector.core.ingest import analyse_files

    extractor = default_extractor() if extractor is None else get_extractor(extractor)
    counts = generated_counts(n_images)
    names = list(counts)
    tag = (f"gen{n_images}_s{seed}_{GENERATED_SIZE[0]}x{GENERATED_SIZE[1]}_j{GENERATED_SIZE_JITTER}"
           f"_a{GENERATED_DEFECT_AREA}_{extractor.name}v{extractor.version}")
    x_path, y_path = out / f"{tag}_X.npy", out / f"{tag}_y.npy"
    if x_path.exists() and y_path.exists():
        return np.load(x_path), np.load(y_path), names
    root = out / tag
    files, labels = [], []
    started = time.perf_counter()
    with terminal_progress("Drawing generated parts") as progress:
        done = 0
        for k, name in enumerate(names):
            folder = root / name
            if (folder / "truth.csv").exists():  # drawn by an earlier, interrupted run
                rel = [line.split(",", 1)[0] for line in (folder / "truth.csv").read_text().splitlines()[1:]]
            else:
                summary = write_demo_dataset(
                    folder, counts[name], size=GENERATED_SIZE, size_jitter=GENERATED_SIZE_JITTER,
                    ok_fraction=1.0 if name == "ok" else 0.0, defect_area=GENERATED_DEFECT_AREA,
                    defect_classes=("scratch",) if name == "ok" else (name,), random_state=seed * 1000 + k,
                    overwrite=True)
                rel = summary["files"]
            files += [folder / r for r in rel]
            labels += [k] * len(rel)
            done += len(rel)
            progress(done, n_images, name)
    drawn = time.perf_counter() - started
    features = [None] * len(files)
    with terminal_progress("Generated features") as progress:
        for result in analyse_files(files, workers=workers, progress=progress, extractor=extractor.name):
            features[result.index] = result.features
    keep = [i for i, f in enumerate(features) if f is not None]
    X = np.stack([features[i] for i in keep]).astype(np.float32)
    y = np.asarray(labels, dtype=np.int64)[keep]
    print(f"generated {len(files)} images in {drawn:.0f} s, features in {time.perf_counter() - started - drawn:.0f} s "
          f"({len(files) - len(keep)} unreadable)")
    np.save(x_path, X)
    np.save(y_path, y)
    return X, y, names


def generated_section(args) -> int:
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    X, y, names = generated_dataset(out, args.generated_images)
    counts = np.bincount(y, minlength=len(names))
    print(f"\n== Generated imbalanced inspection set: {len(y)} parts ~{GENERATED_SIZE[0]}x{GENERATED_SIZE[1]} "
          f"(+-{GENERATED_SIZE_JITTER:.0%}), defects ~{GENERATED_DEFECT_AREA:.2%} of the part; "
          + ", ".join(f"{n} {c} ({c / len(y):.1%})" for n, c in zip(names, counts)) + " ==")
    pool = int(len(y) * 0.7)
    settings = SimulationSettings(strategies=[DEFAULT_STRATEGY], budget=min(200, pool), batch=10, initial=10,
                                  seeds=args.seeds, test_fraction=0.3)
    start = time.perf_counter()
    with terminal_progress("Simulating generated set") as progress:
        summary = simulate(X, y, names, settings, progress=progress)
    write_outputs(summary, out / "generated")
    print(f"({time.perf_counter() - start:.0f} s; cold start + {DEFAULT_STRATEGY} vs random, {args.seeds} seeds, "
          f"budget {settings.budget}, batch 10, 30 % stratified test split per seed)")
    label_counts = summary["label_counts"]
    marks = [c for c in (20, 50, 100, 200) if c in label_counts]
    print(f"{'strategy':18s} {'every class seen: median':>25s}  per seed            "
          + " ".join(f"{'F1@' + str(c):>7s}" for c in marks) + "  AUC(F1)  acc@" + str(marks[-1]))
    medians = {}
    for name in (DEFAULT_STRATEGY, "random"):
        s = summary["strategies"][name]
        per_seed = [v if v is not None else float("inf") for v in s["labels_until_every_class_seen_per_seed"]]
        medians[name] = float(np.median(per_seed))
        f1 = s["macro_f1_mean"]
        print(f"{name:18s} {medians[name]:>25.0f}  {str([int(v) if np.isfinite(v) else None for v in per_seed]):20s}"
              + " ".join(f"{f1[label_counts.index(c)]:7.3f}" for c in marks)
              + f"  {s['area_under_macro_f1_curve']:.3f}    {s['accuracy_mean'][label_counts.index(marks[-1])]:.3f}")
    ratio = medians[DEFAULT_STRATEGY] / medians["random"]
    print(f"default needs {ratio:.2f} x the labels random needs to see every class (target <= 0.33: "
          f"{'met' if ratio <= 0.33 else 'NOT met'})")
    print(f"all labels ({summary['all_labels']['per_seed'][0]['n_labels']}): macro-F1 "
          f"{summary['all_labels']['macro_f1']:.3f}, accuracy {summary['all_labels']['accuracy']:.3f}")
    for name in (DEFAULT_STRATEGY, "random"):
        cov = summary["strategies"][name].get("audit_coverage")
        if cov and cov["points"]:
            big = cov["covers_audit_model_10plus"]
            print(f"audit interval coverage ({name}): {cov['covers_audit_model']:.0%} of {cov['points']} points "
                  f"(audit model), {cov['covers_current_model']:.0%} (current model); with >= 10 audit labels "
                  + (f"{big:.0%} of {cov['points_with_10plus_audit_labels']}" if big is not None else "none"))
    print(f"outputs in {out / 'generated'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
