"""How narrow can an accuracy interval be at n labels? The floor any estimator that checks the model
against n labels faces, for a data set and the product's own model.

For each seed: a stratified pool / test split as the replays use, n labels drawn at random from the
pool, the product's model fitted and calibrated on them as the app does, and its calibrated
probability of being right, f, on every unlabelled image of the pool. A label tells whether the
model was right, a Bernoulli(f) outcome, so the difference (control-variate) estimator's variance is
at least

- ``E[f (1 - f)] / n`` with labels drawn at random, and
- ``(E[sqrt(f (1 - f))])^2 / n`` with the variance-optimal draw (each image drawn in proportion to
  sqrt(f (1 - f)), active statistical inference's optimal sampling; no design does better);
- the same with an **oracle** calibration: the model's own scores calibrated on the unlabelled
  pool's true classes in sample (isotonic), which overfits toward sharper probabilities and so
  gives an optimistic floor.

Prints, per label count, the test accuracy, those variances, the 95 % interval widths they imply
(2 x 1.96 sd) and the mean |error| of an unbiased normal estimate (0.8 sd), beside issue 14's
targets (width 0.15 / 0.08 and mean |error| 0.04 / 0.02 at 100 / 300 labels). Asserts nothing.

    .venv/bin/python tests/benchmarks/bench_interval_floor.py --datasets elpv --extractor texture --seeds 10
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from inspector.core.learning.calibration import calibrate_model, forget_out_of_fold_memory  # noqa: E402
from inspector.core.learning.estimators import Z95, predicted_correctness  # noqa: E402
from inspector.core.learning.models import fit_model  # noqa: E402
from inspector.core.learning.simulate import stratified_split  # noqa: E402

#: mean |error| of an unbiased normal estimate, in standard deviations: sqrt(2 / pi)
MEAN_ABS_PER_SD = float(np.sqrt(2.0 / np.pi))


def floors(X: np.ndarray, y: np.ndarray, classes: np.ndarray, n: int, seed: int) -> dict:
    """One seed's floors at ``n`` random labels (see the module docstring)."""
    from sklearn.isotonic import IsotonicRegression

    pool, test = stratified_split(y, 0.3, seed)
    rng = np.random.default_rng([seed, n])
    labelled = rng.choice(pool, n, replace=False)
    unlabelled = np.setdiff1d(pool, labelled)
    forget_out_of_fold_memory()
    model = fit_model(X[labelled], y[labelled], classes, random_state=seed)
    calibrate_model(model, X[labelled], y[labelled], X_pool=X[pool], reuse=False)
    proba = np.asarray(model.predict_proba(X[unlabelled]), np.float64)
    f = predicted_correctness(proba)
    right = (classes[np.argmax(proba, axis=1)] == y[unlabelled]).astype(np.float64)
    oracle = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit_transform(proba.max(axis=1), right)
    return {"test_accuracy": float(np.mean(model.predict(X[test]) == y[test])),
            "random_draw": float(np.mean(f * (1 - f))),
            "optimal_draw": float(np.mean(np.sqrt(f * (1 - f)))) ** 2,
            "oracle_optimal_draw": float(np.mean(np.sqrt(oracle * (1 - oracle)))) ** 2}


def main() -> int:
    from bench_estimators import load

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", default="elpv")
    parser.add_argument("--extractor", default=None, help="feature extractor (default: the one new projects use)")
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--counts", default="100,300")
    parser.add_argument("--generated-images", type=int, default=1200)
    parser.add_argument("--out", type=Path, default=Path("/tmp/inspector_bench_estimators"),
                        help="feature cache, shared with bench_estimators.py")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for dataset in args.datasets.split(","):
        X, y, names = load(dataset, args)
        classes = np.arange(len(names))
        print(f"== {dataset}, {args.extractor or 'default'} features, {args.seeds} seeds, random labels, the "
              f"product's model and calibration")
        print(f"  {'labels':>6s} {'test acc':>8s} | {'variance x n':>12s} {'width':>6s} {'mean|err|':>9s} "
              f"| per draw: random, optimal, oracle-calibrated optimal")
        for n in (int(c) for c in args.counts.split(",")):
            rows = [floors(X, y, classes, n, seed) for seed in range(args.seeds)]
            accuracy = np.mean([r["test_accuracy"] for r in rows])
            for key in ("random_draw", "optimal_draw", "oracle_optimal_draw"):
                variance = float(np.mean([r[key] for r in rows]))
                sd = np.sqrt(variance / n)
                print(f"  {n:6d} {accuracy:8.3f} | {variance:12.3f} {2 * Z95 * sd:6.3f} {MEAN_ABS_PER_SD * sd:9.3f} "
                      f"| {key.replace('_', ' ')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
