"""Cold start + the default strategy find rare classes long before random labelling does.

Synthetic features shaped like an inspection line: a broad cluster of OK parts (88 %) and four
rare defect classes (3 % each) planted away from it in a few feature dimensions. Replayed with
simulate (the same loop as ``inspector simulate``); the benchmark counterpart on drawn images is
the generated section of tests/benchmarks/bench_label_efficiency.py.
"""

import numpy as np

from inspector.core.learning.simulate import SimulationSettings, simulate
from inspector.core.learning.strategies import DEFAULT_STRATEGY


def imbalanced_features(seed=0, n_ok=440, n_rare=(15, 15, 15, 15), dim=24):
    rng = np.random.default_rng(seed)
    X = [rng.normal(0, 1, (n_ok, dim))]
    y = [np.zeros(n_ok, np.int64)]
    for k, n in enumerate(n_rare, start=1):
        centre = np.zeros(dim)
        centre[rng.choice(dim, 3, replace=False)] = rng.choice([-1, 1], 3) * 3.5  # a few features move
        X.append(centre + rng.normal(0, 1, (n, dim)))
        y.append(np.full(n, k, np.int64))
    return np.vstack(X).astype(np.float32), np.concatenate(y)


def test_default_sees_every_rare_class_well_before_random():
    X, y = imbalanced_features()
    settings = SimulationSettings(strategies=[DEFAULT_STRATEGY], budget=120, batch=10, initial=10, seeds=5,
                                  test_fraction=0.3)
    summary = simulate(X, y, ["ok", "a", "b", "c", "d"], settings)

    def median_seen(name):
        per_seed = summary["strategies"][name]["labels_until_every_class_seen_per_seed"]
        return float(np.median([v if v is not None else np.inf for v in per_seed]))

    default, random = median_seen(DEFAULT_STRATEGY), median_seen("random")
    assert default <= 30, (default, random)
    assert default <= random / 3, (default, random)
