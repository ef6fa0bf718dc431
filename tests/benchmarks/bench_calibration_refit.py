"""Refit the calibration offline on stored replays: why a seed is off, and what another fit would do.

``bench_confidence.py --dump DIR`` stores, per data set, seed and label count, what the product's
calibration saw (the labels, their out-of-sample raw probabilities, audit flags, selection
probabilities and pool sizes, the prior) and the raw classifier's probabilities on the held-out
half. This script refits the calibration on exactly those inputs (no replay, seconds per data
set) and scores it on the held-out half, so calibration variants are compared on the very same
labels:

- per seed (``--diagnose``): the direction of the error per confidence bin (held-out accuracy
  minus mean confidence: > 0 under-confident), the fitted temperature, per-class biases,
  shrinkage and its floor, the weights' effective size, and the labels' weighted out-of-sample
  accuracy and mean calibrated confidence beside the held-out ones;
- per variant (``--variants``): the held-out ECE with its sampling floor and debiased figure
  (calibration.ece_sampling_noise), mean / worst over the seeds, and the per-seed ECEs.

Variants (comma-separated; ``product`` is the calibration as shipped):
``floor:K``      the fitted shrinkage floor K / (n + k) instead of 1 / (n + k) (``floor:seen``:
                 k / (n + k), one pseudo-label per seen class as without a fit);
``penalty:F``    the per-class bias penalty F times the product's;
``brier``        temperature and bias fitted on the weighted Brier score instead of the log-loss;
``tonly``        temperature and shrinkage only (no per-class bias);
``select``       temperature-only or temperature + bias, whichever has the lower weighted
                 log-loss in a 5-fold cross-validation of the calibration over the labels;
``identity``     the raw probabilities with the shrinkage floor only (no temperature or bias);
``select3``      as ``select`` among identity, temperature-only and temperature + bias.

    .venv/bin/python tests/benchmarks/bench_calibration_refit.py DUMP_DIR [--datasets elpv]
        [--at 50,100] [--variants product,tonly,select] [--diagnose]

Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from inspector.core.learning import calibration as cal
from inspector.core.learning.calibration import ece_sampling_noise, effective_size, fit_calibration, shrink_floor


def load_dumps(folder: Path, datasets: list[str], counts: list[str]) -> dict:
    """{(data set, label count): {seed: arrays}} from bench_confidence.py --dump files."""
    found: dict = {}
    for path in sorted(folder.glob("*.npz")):
        m = re.fullmatch(r"(.+)_s(\d+)_(\w+)\.npz", path.name)
        if not m or m.group(1) not in datasets or m.group(3) not in counts:
            continue
        with np.load(path) as d:
            found.setdefault((m.group(1), m.group(3)), {})[int(m.group(2))] = {k: d[k] for k in d.files}
    return found


def weights_of(d: dict):
    return cal.calibration_weights(d["audit"], d["q"], d["pool"])


@contextmanager
def patched(name: str, value):
    """Swap one attribute of the calibration module for a variant's fit."""
    old = getattr(cal, name)
    setattr(cal, name, value)
    try:
        yield
    finally:
        setattr(cal, name, old)


def _brier_fit(z, target, w, temperature):
    """Temperature and bias on the weighted Brier score (bounded per part: a heavy weight on a
    confidently wrong prediction costs at most 2, not an unbounded log-loss), same penalty."""
    from scipy.optimize import minimize

    n, k = z.shape
    weights = np.ones(n) if w is None else np.asarray(w, np.float64)
    lam = cal.bias_penalty(weights.sum() ** 2 / max(float((weights ** 2).sum()), 1e-12))
    weights = weights / weights.sum()
    onehot = np.zeros((n, k))
    onehot[np.arange(n), target] = 1.0

    def loss(theta):
        s = z * np.exp(theta[0]) + theta[1:]
        s -= s.max(axis=1, keepdims=True)
        q = np.exp(s)
        q /= q.sum(axis=1, keepdims=True)
        return float(weights @ ((q - onehot) ** 2).sum(axis=1)) + lam * float(theta[1:] @ theta[1:])

    start = np.concatenate([[-np.log(temperature)], np.zeros(k)])
    bounds = [(-np.log(cal._TEMPERATURES[-1]), -np.log(cal._TEMPERATURES[0]))] + [(-10.0, 10.0)] * k
    found = minimize(loss, start, method="L-BFGS-B", bounds=bounds)
    if not np.all(np.isfinite(found.x)) or found.fun > loss(start):
        return temperature, np.zeros(k)
    return float(np.exp(-found.x[0])), found.x[1:] - found.x[1:].mean()


def _fit_kind(kind: str, y, classes, oof, prior, w):
    """``identity``: the raw probabilities with the shrinkage floor only; ``tonly``: temperature
    and shrinkage; ``bias``: the product's temperature, bias and shrinkage."""
    if kind == "identity":
        with patched("_TEMPERATURES", np.array([1.0])), patched("_SHRINKS", np.zeros(0)), \
                patched("MIN_FOR_BIAS", np.inf):
            return fit_calibration(y, classes, oof, prior=prior, weights=w)
    if kind == "tonly":
        with patched("MIN_FOR_BIAS", np.inf):
            return fit_calibration(y, classes, oof, prior=prior, weights=w)
    return fit_calibration(y, classes, oof, prior=prior, weights=w)


def select_by_cross_validation(d: dict, classes: np.ndarray, kinds=("tonly", "bias"), folds: int = 5, seed: int = 0):
    """Of the calibration ``kinds`` (:func:`_fit_kind`), the one with the lower weighted log-loss on
    held-out folds of the labels' out-of-sample predictions; then fitted on all of them."""
    y, oof, prior, w = d["y"], d["oof"], d["prior"], weights_of(d)
    cols = np.searchsorted(classes, y)
    rng = np.random.default_rng(seed)
    fold = rng.permutation(len(y)) % folds
    scores = {kind: 0.0 for kind in kinds}
    for f in range(folds):
        train, test = fold != f, fold == f
        wt = None if w is None else w[train]
        for kind in kinds:
            c = _fit_kind(kind, y[train], classes, oof[train], prior, wt)
            scores[kind] += (cal._nll(c.apply(oof[test]), cols[test], None if w is None else w[test])
                             * (float(test.sum()) if w is None else float(w[test].sum())))
    best = min(kinds, key=lambda k: scores[k])
    return _fit_kind(best, y, classes, oof, prior, w)


def refit(variant: str, d: dict, classes: np.ndarray):
    y, oof, prior, w = d["y"], d["oof"], d["prior"], weights_of(d)
    if variant == "product":
        return fit_calibration(y, classes, oof, prior=prior, weights=w)
    if variant == "tonly":
        with patched("MIN_FOR_BIAS", np.inf):
            return fit_calibration(y, classes, oof, prior=prior, weights=w)
    if variant == "select":
        return select_by_cross_validation(d, classes)
    if variant == "select3":
        return select_by_cross_validation(d, classes, ("identity", "tonly", "bias"))
    if variant == "identity":
        return _fit_kind("identity", y, classes, oof, prior, w)
    if variant == "brier":
        with patched("_fit_temperature_and_bias", _brier_fit):
            return fit_calibration(y, classes, oof, prior=prior, weights=w)
    if variant.startswith("floor:"):
        word = variant.split(":")[1]

        def floor(n, seen, fitted=False):
            k = max(int(seen), 1)
            pseudo = k if not fitted or word == "seen" else float(word)
            return pseudo / (max(int(n), 0) + k)

        with patched("shrink_floor", floor):
            return fit_calibration(y, classes, oof, prior=prior, weights=w)
    if variant.startswith("penalty:"):
        f = float(variant.split(":")[1])
        base = cal.bias_penalty
        with patched("bias_penalty", lambda n: f * base(n)):
            return fit_calibration(y, classes, oof, prior=prior, weights=w)
    raise ValueError(f"unknown variant {variant!r}")


def diagnose(name: str, at: str, seed: int, d: dict, classes: np.ndarray) -> tuple[float, float, float]:
    """Print one seed's diagnosis; returns (the labels' weighted out-of-sample accuracy minus the
    held-out accuracy, held-out mean confidence minus accuracy, the calibration's level_se)."""
    c = refit("product", d, classes)
    w = weights_of(d)
    y, oof = d["y"], d["oof"]
    cols = np.searchsorted(classes, y)
    raw_t, yt = d["raw_test"], d["y_test"]
    cal_t = c.apply(raw_t)
    cal_o = c.apply(oof)
    acc_o = float(np.average(np.argmax(cal_o, axis=1) == cols, weights=w))
    conf_o = float(np.average(cal_o.max(axis=1), weights=w))
    acc_t = float(np.mean(np.argmax(cal_t, axis=1) == np.searchsorted(classes, yt)))
    conf_t = float(cal_t.max(axis=1).mean())
    noise = ece_sampling_noise(yt, cal_t, classes, random_state=seed)
    bins = cal.reliability(yt, cal_t, classes)["bins"]
    gaps = " ".join(f"{b['low']:.1f}:{b['accuracy'] - b['confidence']:+.2f}({b['n']})" for b in bins if b["n"])
    n_eff = effective_size(w, len(y))
    print(f"   {name} {at:>3} s{seed}: ECE {noise['ece']:.3f} (floor {noise['floor']:.3f}, debiased "
          f"{noise['debiased']:+.3f}); held-out acc {acc_t:.3f} conf {conf_t:.3f} ({'under' if acc_t > conf_t else 'over'}-"
          f"confident by {abs(acc_t - conf_t):.3f}); labels (weighted, out of sample) acc {acc_o:.3f} conf {conf_o:.3f}")
    print(f"      T {c.temperature:.2f}, bias {np.round(c.bias, 2).tolist()}, shrink {c.shrink:.3f} (floor "
          f"{shrink_floor(len(y), len(np.unique(y)), fitted=True):.3f}), n_eff {n_eff:.1f} of {len(y)}, prior "
          f"{np.round(c.prior, 2).tolist()}, label mix {np.bincount(cols, minlength=len(classes)).tolist()}")
    print(f"      per bin (low edge: accuracy - confidence (parts)): {gaps}")
    return acc_o - acc_t, conf_t - acc_t, c.level_se


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("dump", type=Path)
    parser.add_argument("--datasets", default="elpv")
    parser.add_argument("--at", default="50,100")
    parser.add_argument("--variants", default="product")
    parser.add_argument("--diagnose", action="store_true")
    args = parser.parse_args()
    datasets = args.datasets.split(",")
    counts = args.at.split(",")
    variants = args.variants.split(",")
    dumps = load_dumps(args.dump, datasets, counts)
    if not dumps:
        print(f"no dumps for {args.datasets} at {args.at} in {args.dump}")
        return 1
    print(f"load: {os.getloadavg()[0]:.1f} (1 min)")
    for (name, at), seeds in sorted(dumps.items(), key=lambda kv: (kv[0][0], int(kv[0][1]) if kv[0][1].isdigit() else 10**9)):
        classes = np.arange(len(next(iter(seeds.values()))["prior"]))
        print(f"\n== {name}, {at} labels, {len(seeds)} seeds")
        if args.diagnose:
            found = np.array([diagnose(name, at, seed, d, classes) for seed, d in sorted(seeds.items())], np.float64)
            if len(found) > 2:
                # does the held-out level error follow what the labels said of the level?
                print(f"   held-out level error (mean confidence - accuracy) against the labels' own (their weighted "
                      f"out-of-sample accuracy - held-out accuracy): correlation {np.corrcoef(found[:, 0], found[:, 1])[0, 1]:.2f}; "
                      f"spread of the labels' error over the seeds {found[:, 0].std():.3f}, the calibration's level_se "
                      f"{np.nanmean(found[:, 2]):.3f} (mean); mean |held-out level error| {np.abs(found[:, 1]).mean():.3f}")
        base = None
        for v in variants:
            rows = []
            for seed, d in sorted(seeds.items()):
                c = refit(v, d, classes)
                rows.append(ece_sampling_noise(d["y_test"], c.apply(d["raw_test"]), classes, random_state=seed))
            ece = np.array([r["ece"] for r in rows])
            floor = np.array([r["floor"] for r in rows])
            deb = np.array([r["debiased"] for r in rows])
            # paired with the first variant on the same seeds: the change beside the seeds' own spread
            paired = ""
            if base is None:
                base = ece
            elif len(ece) > 1:
                diff = ece - base
                paired = f"; vs {variants[0]} {diff.mean():+.4f} +- {diff.std(ddof=1) / np.sqrt(len(diff)):.4f} (paired s.e.)"
            print(f"   {v:>12}: ECE {ece.mean():.4f} / {ece.max():.3f} (floor {floor.mean():.3f}; debiased "
                  f"{deb.mean():.3f} / {deb.max():.3f}){paired}; per seed {' '.join(f'{e:.3f}' for e in ece)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
