"""Does the per-project choice of feature extractor pick the better one?

    python tests/benchmarks/bench_extractor_choice.py [--data DIR] [--extractors texture cnn texture+cnn]
        [--labels 250] [--audit-share 0.1] [--seeds 3] [--large-n 600] [--efficiency-seeds 3]
        [--skip-efficiency] [--skip-all-labels] [--skip-choice] [--efficiency-extractor NAME]
        [--efficiency-also NAME...]
        [--only neu,elpv,large] [--cache DIR] [--workers N]

Label efficiency alone, from cached features (about 10 minutes on 2 busy cores):

    nice -n 5 python tests/benchmarks/bench_extractor_choice.py --only elpv --skip-choice

For each data set (NEU 6 classes; ELPV 4 classes; a generated set of 500 x 1,250 px parts with
small defects, judged defect vs OK):

* truth: every image labelled, 5-fold stratified cross-validated macro-F1 per extractor with the
  project's default model (the same protocol as the issue's table);
* the choice a project would make (:func:`inspector.core.extractor_choice.compare_on_features`):
  - after ``--labels`` labels chosen by the default strategy on the features a project starts
    with (the default extractor), ``--audit-share`` of every batch a random audit pick, repeated
    for ``--seeds`` seeds (the comparison uses the audit labels when there are 30 or more, else
    optimistic cross-validation, as in the product);
  - with every image labelled (10 % of them random audit labels);
  printed as: chosen extractor, whether its lead is certain (paired 95 % interval excludes 0),
  whether it matches the truth's best, and its regret (truth's best macro-F1 minus the chosen
  one's truth: when the truth's extractors are within noise of each other any pick is fine).
* label efficiency on ELPV (unless ``--skip-efficiency``): macro-F1 area under the learning curve
  to 300 labels (``inspector simulate``'s replay, same splits) for the default strategy with the
  chosen extractor (``--efficiency-extractor``, else the one chosen on ELPV, else the default
  extractor when ``--skip-choice`` skips the choice), random sampling on the same features, and
  the default strategy and random sampling on texture.

Features are cached per data set and extractor in ``--cache`` (default /tmp/inspector_bench_choice).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np


def load(dataset: str, args) -> tuple[Path, str]:
    """(image folder, how classes are judged: 'folders' or 'defect-vs-ok')."""
    if dataset == "neu":
        return args.data / "neu", "folders"
    if dataset == "elpv":
        return args.data / "elpv", "folders"
    root = args.cache / f"large-{args.large_n}"
    if not (root / "manifest.csv").exists():
        from inspector.core.demo import write_small_defect_set

        start = time.perf_counter()
        # long parts (500 x 1,250 px), 13 % defective, a defect covers ~0.4 % of the part: thin, small
        summary = write_small_defect_set(root, n_images=args.large_n, random_state=0, size=(500, 1250),
                                         ok_fraction=0.87, defect_area=0.004, overwrite=True)
        print(f"  generated {args.large_n} parts of 500 x 1,250 px in {time.perf_counter() - start:.0f} s: "
              f"{summary['counts']}")
    return root, "defect-vs-ok"


def features(root: Path, name: str, tag: str, args) -> tuple[np.ndarray, np.ndarray, list[str]]:
    from inspector.core.features import get_extractor

    parts = getattr(get_extractor(name), "parts", None)
    if parts:  # a combination is its parts side by side (as the product composes it from stored parts)
        got = [features_with_paths(root, p.name, tag, args) for p in parts]
        if all(g[3] == got[0][3] for g in got):
            return np.hstack([g[0] for g in got]), got[0][1], got[0][2]
    X, y, class_names, _ = features_with_paths(root, name, tag, args)
    return X, y, class_names


def features_with_paths(root: Path, name: str, tag: str, args):
    from inspector.core.learning.simulate import folder_dataset

    start = time.perf_counter()
    cache = args.cache / f"{tag}-{name.replace('+', '_')}.npz"
    fresh = not cache.exists()
    X, y, class_names, paths = folder_dataset(root, workers=args.workers, cache=cache, extractor=name)
    if fresh:
        print(f"  {name}: {len(y)} images in {time.perf_counter() - start:.0f} s ({X.shape[1]} dims)")
    return X, y, class_names, paths


def truth_scores(X: np.ndarray, y: np.ndarray) -> float:
    """Every label, 5-fold stratified cross-validated macro-F1 with the project's default model."""
    from sklearn.model_selection import StratifiedKFold

    from inspector.core.learning.metrics import macro_f1
    from inspector.core.learning.models import fit_model

    classes = np.unique(y)
    pred = np.empty_like(y)
    for train, test in StratifiedKFold(5, shuffle=True, random_state=0).split(X, y):
        pred[test] = fit_model(X[train], y[train], classes, random_state=0).predict(X[test])
    return macro_f1(y, pred)


def project_labels(X: np.ndarray, n_labels: int, audit_share: float, y: np.ndarray, seed: int,
                   batch: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Rows a project would have labelled with the default strategy (starting features ``X``),
    and which of them were random audit picks."""
    from inspector.core.learning.models import fit_model
    from inspector.core.learning.strategies import DEFAULT_STRATEGY, get_strategy

    strategy = get_strategy(DEFAULT_STRATEGY)
    rng = np.random.default_rng([seed, 31])
    classes = np.unique(y)
    order: list[int] = []
    audit: list[int] = []
    model = None
    while len(order) < n_labels:
        want = min(batch, n_labels - len(order))
        sel = strategy(model, X, np.asarray(order, np.int64), want, rng, audit_share=audit_share)
        order.extend(sel.indices.tolist())
        audit.extend(sel.indices[sel.audit].tolist())
        rows = np.asarray(order, np.int64)
        model = fit_model(X[rows], y[rows], classes, random_state=seed, warm_start_from=model)
    rows = np.asarray(order, np.int64)
    return rows, np.isin(rows, np.asarray(audit, np.int64))


def describe(result) -> str:
    sure = ("switch advised" if result.switch_advised else "certain" if result.decided and result.best == result.current
            else "not certain")
    basis = "audit" if result.basis == "audit" else "CV, optimistic"
    scores = ", ".join(f"{s.name} {s.macro_f1:.3f}" for s in result.scores)
    if result.gain_over_current is not None:
        lead = (f"lead over {result.current} {result.gain_over_current:+.3f} "
                f"[{result.gain_over_current_ci[0]:+.3f}, {result.gain_over_current_ci[1]:+.3f}]")
    else:
        lead = (f"lead over {result.runner_up} {result.difference:+.3f} "
                f"[{result.difference_ci[0]:+.3f}, {result.difference_ci[1]:+.3f}]")
    return f"chose {result.best:12s} ({sure}; {lead}; {basis}, {result.n_audit} audit) | {scores}"


def main(argv=None) -> int:
    from inspector.core.extractor_choice import compare_on_features
    from inspector.core.features import default_extractor, extractor_names

    default_data = Path(os.environ.get("INSPECTOR_TEST_DATA", Path(__file__).resolve().parents[3] / "shared" / "datasets"))
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=default_data)
    parser.add_argument("--extractors", nargs="+", default=None, help="default: every available extractor")
    parser.add_argument("--labels", type=int, default=250)
    parser.add_argument("--audit-share", type=float, default=0.1)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--large-n", type=int, default=600)
    parser.add_argument("--efficiency-seeds", type=int, default=3)
    parser.add_argument("--skip-efficiency", action="store_true")
    parser.add_argument("--skip-all-labels", action="store_true", help="skip the comparison with every image labelled")
    parser.add_argument("--skip-choice", action="store_true",
                        help="no truth and no choice per data set (only the label efficiency on ELPV)")
    parser.add_argument("--efficiency-extractor", default=None,
                        help="features for the label efficiency (default: the one chosen on ELPV, else the default)")
    parser.add_argument("--efficiency-also", nargs="*", default=[],
                        help="more extractors whose label efficiency to show beside the chosen one and texture")
    parser.add_argument("--only", default="neu,elpv,large")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/inspector_bench_choice"))
    parser.add_argument("--workers", type=int, default=None)
    args = parser.parse_args(argv)
    args.cache.mkdir(parents=True, exist_ok=True)
    names = args.extractors or extractor_names()
    start_with = default_extractor().name
    if args.skip_choice:
        names = list(dict.fromkeys([args.efficiency_extractor or start_with, *args.efficiency_also, "texture"]))
    print(f"extractors {names}; projects start on {start_with}; load: {os.getloadavg()[0]:.1f} (1 min)")
    if len(names) < 2 and not args.skip_choice:
        print("only one extractor: nothing to choose")
        return 1
    chosen_on: dict[str, str] = {}
    cached: dict[str, dict] = {}
    for dataset in args.only.split(","):
        root, judged = load(dataset, args)
        if not root.is_dir():
            print(f"{dataset}: {root} not found, skipped")
            continue
        print(f"\n{dataset} ({root}, judged {judged})")
        Xs = {}
        y = None
        for name in names:
            X, y_, class_names = features(root, name, dataset, args)
            if judged == "defect-vs-ok":
                ok = class_names.index("ok")
                y_ = (y_ != ok).astype(np.int64)
            Xs[name] = X
            y = y_
        cached[dataset] = {"X": Xs, "y": y}
        if args.skip_choice:
            continue
        truth = {name: truth_scores(X, y) for name, X in Xs.items()}
        best_truth = max(truth, key=truth.get)
        print("  truth (every label, 5-fold macro-F1): "
              + ", ".join(f"{n} {v:.3f}" for n, v in sorted(truth.items(), key=lambda kv: -kv[1]))
              + f"  -> best {best_truth}")
        picks = []
        careful = []  # the product's advice: switch only when the lead is certain, else stay
        for seed in range(args.seeds):
            rows, is_audit = project_labels(Xs[start_with], min(args.labels, len(y) - 1), args.audit_share, y, seed)
            result = compare_on_features({n: X[rows] for n, X in Xs.items()}, y[rows], is_audit, random_state=seed,
                                         current=start_with)
            picks.append(result.best)
            careful.append(result.best if result.switch_advised else start_with)
            mark = "OK " if result.best == best_truth else "   "
            print(f"  {mark}{len(rows)} labels, seed {seed}: {describe(result)}; "
                  f"regret {truth[best_truth] - truth[result.best]:.3f}")
        all_best = "-"
        if not args.skip_all_labels:
            rng = np.random.default_rng(0)
            audit_all = rng.random(len(y)) < args.audit_share
            result = compare_on_features(Xs, y, audit_all, current=start_with)
            all_best = result.best
            mark = "OK " if result.best == best_truth else "   "
            print(f"  {mark}all {len(y)} labels: {describe(result)}; "
                  f"regret {truth[best_truth] - truth[result.best]:.3f}")
        majority = Counter(picks).most_common(1)[0][0]
        chosen_on[dataset] = majority
        regrets = [truth[best_truth] - truth[p] for p in picks]
        careful_regrets = [truth[best_truth] - truth[p] for p in careful]
        print(f"  SUMMARY {dataset}: truth best {best_truth}; chosen at {args.labels} labels "
              f"{Counter(picks).most_common()} ({sum(p == best_truth for p in picks)}/{len(picks)} match, "
              f"mean regret {np.mean(regrets):.3f} macro-F1 against the truth's best, worst {max(regrets):.3f}; "
              f"staying on {start_with} would lose {truth[best_truth] - truth[start_with]:.3f}); "
              f"all labels chose {all_best}")
        print(f"  SUMMARY {dataset}, switching only when the lead over {start_with} is certain (the advice): {Counter(careful).most_common()}, "
              f"mean regret {np.mean(careful_regrets):.3f}, worst {max(careful_regrets):.3f}")

    if not args.skip_efficiency and "elpv" in cached:
        from inspector.core.learning.simulate import SimulationSettings, simulate
        from inspector.core.learning.strategies import DEFAULT_STRATEGY

        chosen = args.efficiency_extractor or chosen_on.get("elpv", start_with)
        print(f"\nELPV label efficiency to 300 labels ({args.efficiency_seeds} seeds, test fraction 0.3): "
              f"macro-F1 area under the curve")
        Xs, y = cached["elpv"]["X"], cached["elpv"]["y"]
        rows = []
        for name in dict.fromkeys([chosen, *args.efficiency_also, "texture"]):
            if name not in Xs:
                continue
            # no accuracy-estimator scoring along the way (it costs extra fits and is not part of the curve)
            settings = SimulationSettings(strategies=[DEFAULT_STRATEGY], budget=300, seeds=args.efficiency_seeds,
                                          estimator_counts=())
            t0 = time.perf_counter()
            summary = simulate(Xs[name], y, [str(c) for c in np.unique(y)], settings)
            for strategy in (DEFAULT_STRATEGY, "random"):
                s = summary["strategies"][strategy]
                rows.append((name, strategy, s["area_under_macro_f1_curve"], s["macro_f1_mean"][-1]))
            print(f"  ({name}: {time.perf_counter() - t0:.0f} s; all labels macro-F1 "
                  f"{summary['all_labels']['macro_f1']:.3f})")
        print(f"  {'features':14s} {'strategy':18s} {'F1-AUC':>7s} {'F1@300':>7s}")
        for name, strategy, auc, last in rows:
            tag = " (chosen)" if name == chosen else ""
            print(f"  {name + tag:14s} {strategy:18s} {auc:7.4f} {last:7.3f}")
    print(f"\nload at the end: {os.getloadavg()[0]:.1f} (1 min)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
