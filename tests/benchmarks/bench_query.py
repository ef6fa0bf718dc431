"""How long one learning step takes on a large pool: retrain + score + choose 10.

100,000 x 512 float32 pool, 6 classes, 1,000 labels. The default strategy's step (warm-started
retrain after 10 new labels, float32 matmul scoring, argpartition shortlist, spreading on the
shortlist only) is timed next to a naive baseline in the same run (a fresh scikit-learn pipeline,
predict_proba on the whole pool in float64, full sort). Median of 5; prints, never asserts.

    .venv/bin/python tests/benchmarks/bench_query.py [--pool 100000] [--dim 512] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from inspector.core.learning.models import fit_model, make_model
from inspector.core.learning.strategies import DEFAULT_STRATEGY, get_strategy, margins


def make_pool(n, d, k=6, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 0.35, (k, d)).astype(np.float32)
    y = rng.integers(0, k, n)
    X = centres[y] + rng.standard_normal((n, d), dtype=np.float32)
    return X, y


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pool", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--labels", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    X, y = make_pool(args.pool, args.dim)
    classes = np.arange(6)
    rng = np.random.default_rng(1)
    order = rng.permutation(args.pool)
    labelled = order[: args.labels]
    before = order[: args.labels - 10]  # the previous version knew all but the 10 newest labels
    previous = fit_model(X[before], y[before], classes)
    mask = np.zeros(args.pool, bool)
    mask[labelled] = True
    print(f"pool {args.pool} x {args.dim} float32, {args.labels} labels, 6 classes, choose 10; median of {args.repeats}")

    rows = {}

    def record(name, parts):
        rows.setdefault(name, []).append(parts)

    strategy = get_strategy(DEFAULT_STRATEGY)
    for rep in range(args.repeats):
        # default: warm-started retrain, float32 scoring, shortlist + spread
        model, t_fit = timed(lambda: fit_model(X[labelled], y[labelled], classes, warm_start_from=previous))
        proba, t_score = timed(lambda: model.predict_proba(X))
        sel, t_select = timed(lambda: strategy(model, X, mask, 10, rep, proba=proba))
        assert len(sel) == 10
        record(DEFAULT_STRATEGY, (t_fit, t_score, t_select))

        # naive: fresh pipeline, float64 predict_proba on everything, full sort
        def naive_fit():
            return make_model("logistic").fit(X[labelled], y[labelled])

        pipe, n_fit = timed(naive_fit)
        p64, n_score = timed(lambda: pipe.predict_proba(X))

        def naive_select():
            m = margins(p64)
            m[mask] = np.inf
            return np.argsort(m)[:10]

        _, n_select = timed(naive_select)
        record("naive margin (sklearn, full sort)", (n_fit, n_score, n_select))

        for name, kw in (("committee", {}), ("expected_change", {})):
            m2, f2 = timed(lambda: fit_model(X[labelled], y[labelled], classes, warm_start_from=previous))
            p2, s2 = timed(lambda: m2.predict_proba(X))
            _, c2 = timed(lambda: get_strategy(name)(m2, X, mask, 10, rep, proba=p2, **kw))
            record(name, (f2, s2, c2))

    print(f"{'step':36s} {'train':>8s} {'score':>8s} {'select':>8s} {'total':>8s}  (seconds, median)")
    for name, parts in rows.items():
        parts = np.array(parts)
        med = np.median(parts, axis=0)
        total = statistics.median(parts.sum(axis=1))
        print(f"{name:36s} {med[0]:8.3f} {med[1]:8.3f} {med[2]:8.3f} {total:8.3f}")
    print("targets: default <= 0.3 s and faster than naive; committee and expected_change <= 1 s")


if __name__ == "__main__":
    main()
