"""Calibrated probabilities: a confidence of 90 % should be right about 9 times in 10.

A classifier's raw probabilities are too sure of themselves, worst of all with few labels (a
logistic model trained on five images separates them perfectly and says 100 %). The learner
therefore wraps every trained model with a :class:`Calibration` fitted on predictions for images
the predicting model did **not** train on (out-of-fold cross-validation over the labels, which
include the random audit labels):

1. **Temperature**: the raw log-probabilities are divided by a temperature ``T`` before the
   softmax (``T > 1`` softens over-confident models). One number, so it cannot over-fit and it
   never changes which class is predicted.
2. **Shrinkage toward the class prior**: the tempered probabilities are mixed with the labels'
   own class frequencies, ``p = (1 - s) * p_T + s * prior``. ``s`` is fitted together with ``T``
   but never falls below a floor that fades as labels come (:func:`shrink_floor`), so no number
   of labels, and certainly not 5, ever shows 100 %.

With too few labels for cross-validation (fewer than :data:`MIN_FOR_TEMPERATURE`) the
temperature stays 1 and the shrinkage is ``k / (n + k)`` (one pseudo-label per seen class).
A model that has seen a single class mixes its certainty with a uniform prior over every class
of the project. Both steps are plain arithmetic on the probabilities, so the model file stores
three small things (temperature, shrinkage, prior) and the exported predictor applies the very
same :func:`apply_calibration`.

:func:`reliability` bins predictions by confidence for a reliability diagram and gives the
expected calibration error (ECE).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np

_EPS = 1e-6
#: temperatures and shrinkages tried when fitting (log-spaced temperatures)
_TEMPERATURES = np.geomspace(0.25, 16.0, 49)
_SHRINKS = np.linspace(0.0, 0.6, 61)
#: fewer out-of-fold predictions than this: the temperature is not fitted (stays 1)
MIN_FOR_TEMPERATURE = 10
#: fewer out-of-fold predictions than this: the temperature may only soften (T >= 1)
MIN_FOR_SHARPENING = 30
#: reliability diagram bins
RELIABILITY_BINS = 10


@dataclass
class Calibration:
    """Temperature and shrinkage toward the class prior, applied to a model's probabilities.

    ``prior`` has one entry per column of the model's probabilities (the project's classes);
    classes without labels get 0 there when at least two classes were seen.
    """

    temperature: float = 1.0
    shrink: float = 0.0
    prior: np.ndarray = field(default_factory=lambda: np.zeros(0))
    n_labels: int = 0
    n_out_of_fold: int = 0
    basis: str = ""
    nll_before: Optional[float] = None
    nll_after: Optional[float] = None

    def apply(self, proba: np.ndarray) -> np.ndarray:
        """Calibrated copy of ``proba`` (rows sum to 1); same dtype as given."""
        return apply_calibration(proba, self.temperature, self.shrink, self.prior)

    def to_dict(self) -> dict:
        """JSON-ready description (model files, model-version metrics)."""
        return {"temperature": float(self.temperature), "shrink": float(self.shrink),
                "prior": [float(v) for v in np.asarray(self.prior).tolist()], "n_labels": int(self.n_labels),
                "n_out_of_fold": int(self.n_out_of_fold), "basis": self.basis,
                "nll_before": self.nll_before, "nll_after": self.nll_after,
                "method": "temperature on log-probabilities, then (1 - shrink) * p + shrink * prior"}

    @classmethod
    def from_dict(cls, d: dict, n_columns: int) -> "Calibration":
        """Rebuild from :meth:`to_dict`; raises ValueError when the numbers are not usable."""
        temperature, shrink = float(d["temperature"]), float(d["shrink"])
        prior = np.asarray(d["prior"], dtype=np.float64)
        if not (np.isfinite(temperature) and temperature > 0):
            raise ValueError("temperature must be a positive number")
        if not (np.isfinite(shrink) and 0.0 <= shrink <= 1.0):
            raise ValueError("shrinkage must be between 0 and 1")
        if prior.shape != (n_columns,) or not np.all(np.isfinite(prior)) or prior.min() < 0 \
                or abs(prior.sum() - 1.0) > 1e-6:
            raise ValueError("prior must be one probability per class, summing to 1")
        return cls(temperature, shrink, prior, int(d.get("n_labels", 0)), int(d.get("n_out_of_fold", 0)),
                   str(d.get("basis", "")), d.get("nll_before"), d.get("nll_after"))


def apply_calibration(proba: np.ndarray, temperature: float, shrink: float, prior: np.ndarray) -> np.ndarray:
    """``(1 - shrink) * softmax(log p / temperature) + shrink * prior``, row-wise.

    Columns whose raw probability is exactly 0 for every row (classes the model has no labels
    for) stay out of the softmax; they only receive their prior share.
    """
    proba = np.asarray(proba)
    dtype = proba.dtype if proba.dtype in (np.float32, np.float64) else np.float64
    if proba.size == 0:
        return proba.astype(dtype, copy=True)
    p = proba.astype(np.float64)
    live = p.max(axis=0) > 0 if len(p) else np.ones(p.shape[1], bool)
    out = np.zeros_like(p)
    if temperature != 1.0 and live.sum() > 1:
        z = np.log(np.clip(p[:, live], _EPS, 1.0)) / float(temperature)
        z -= z.max(axis=1, keepdims=True)
        np.exp(z, out=z)
        z /= z.sum(axis=1, keepdims=True)
        out[:, live] = z
    else:
        out[:] = p
    if shrink > 0:
        out *= 1.0 - float(shrink)
        out += float(shrink) * np.asarray(prior, np.float64)[None, :]
    return out.astype(dtype, copy=False)


def shrink_floor(n_labels: int, n_seen: int, fitted: bool = False) -> float:
    """Smallest shrinkage toward the prior for ``n`` labels over ``k`` seen classes.

    Without a fit on out-of-sample predictions: ``k / (n + k)`` (one pseudo-label per class: 5
    labels of 2 classes can show at most about 78 %). With a fit the out-of-sample predictions
    speak, and the floor is one pseudo-label in all, ``1 / (n + k)``, only so that no finite
    number of labels ever shows 100 %.
    """
    k = max(int(n_seen), 1)
    n = max(int(n_labels), 0)
    return (1.0 if fitted else k) / (n + k)


def class_prior(y: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """Label frequencies over ``classes`` (Laplace-smoothed over the seen classes).

    With a single seen class the prior is uniform over every class: the labels say nothing yet
    about how the other classes look, only that they exist.
    """
    classes = np.asarray(classes)
    y = np.asarray(y)
    counts = np.array([np.sum(y == c) for c in classes], np.float64)
    seen = counts > 0
    if seen.sum() < 2:
        return np.full(len(classes), 1.0 / max(len(classes), 1))
    prior = np.where(seen, counts + 1.0, 0.0)
    return prior / prior.sum()


def _nll(p: np.ndarray, cols: np.ndarray) -> float:
    return float(-np.mean(np.log(np.clip(p[np.arange(len(cols)), cols], 1e-12, 1.0))))


def fit_calibration(y: np.ndarray, classes: np.ndarray, oof_proba: Optional[np.ndarray] = None,
                    basis: str = "cross-validation over the labels") -> Calibration:
    """Fit temperature and shrinkage on out-of-fold probabilities ``oof_proba`` for labels ``y``.

    ``classes`` is the model's column order; ``y`` every label the model trains on (its prior and
    the floor of the shrinkage come from them). ``oof_proba`` rows are the predictions for ``y``
    by models not trained on them (None when there are too few labels for cross-validation).
    """
    y = np.asarray(y)
    classes = np.asarray(classes)
    prior = class_prior(y, classes)
    n_seen = len(np.unique(y))
    floor = shrink_floor(len(y), n_seen)
    if n_seen < 2:
        return Calibration(1.0, floor, prior, len(y), 0, "a single class seen: certainty mixed with every class")
    if oof_proba is None or len(oof_proba) < MIN_FOR_TEMPERATURE:
        return Calibration(1.0, floor, prior, len(y), 0 if oof_proba is None else len(oof_proba),
                           "too few labels to fit a temperature: shrinkage toward the class prior only")
    index = {int(c): j for j, c in enumerate(classes.tolist())}
    cols = np.array([index[int(c)] for c in y.tolist()], np.int64)
    p = np.asarray(oof_proba, np.float64)
    # the softmax runs over classes that have labels (out-of-fold rows may miss a rare class)
    seen_cols = prior > 0
    z = np.log(np.clip(p[:, seen_cols], _EPS, 1.0))
    target = np.searchsorted(np.flatnonzero(seen_cols), cols)
    valid = seen_cols[cols]
    z, target = z[valid], target[valid]
    prior_seen = prior[seen_cols]
    before = _nll(p[valid], cols[valid])
    floor = shrink_floor(len(y), n_seen, fitted=True)
    best = (np.inf, 1.0, floor)
    rows = np.arange(len(target))
    # a handful of out-of-fold predictions may soften the model but never sharpen it
    temperatures = _TEMPERATURES if len(target) >= MIN_FOR_SHARPENING else _TEMPERATURES[_TEMPERATURES >= 1.0]
    for t in temperatures:
        zt = z / t
        zt = zt - zt.max(axis=1, keepdims=True)
        e = np.exp(zt)
        q = e[rows, target] / e.sum(axis=1)
        for s in _SHRINKS:
            if s < floor - 1e-12:
                continue
            nll = -np.mean(np.log(np.clip((1 - s) * q + s * prior_seen[target], 1e-12, 1.0)))
            if nll < best[0] - 1e-12:
                best = (nll, float(t), float(s))
    _, temperature, shrink = best
    if floor > shrink:
        shrink = floor
    after = _nll(apply_calibration(p[valid], temperature, shrink, prior), cols[valid])
    return Calibration(temperature, shrink, prior, len(y), int(valid.sum()), basis, before, after)


def out_of_fold_proba(X: np.ndarray, y: np.ndarray, classes: np.ndarray, kind: str, random_state,
                      folds: int = 5, cancel=None) -> Optional[np.ndarray]:
    """Raw (uncalibrated) probabilities for every labelled row from models that did not train on it.

    Stratified folds when every class has enough labels, plain shuffled folds otherwise (a class
    with one label then gets out-of-fold predictions that never saw it: honest about what one
    label is worth). None with fewer than 4 labels or fewer than 2 classes.
    """
    from sklearn.model_selection import KFold, StratifiedKFold

    from inspector.core.learning.models import fit_model
    from inspector.core.progress import check

    y = np.asarray(y)
    _, counts = np.unique(y, return_counts=True)
    if len(counts) < 2 or len(y) < 4:
        return None
    k = int(min(folds, len(y) // 2))
    if counts.min() >= k:
        splitter = StratifiedKFold(k, shuffle=True, random_state=random_state).split(X, y)
    else:
        splitter = KFold(k, shuffle=True, random_state=random_state).split(X)
    proba = np.zeros((len(y), len(classes)), np.float64)
    for train, test in splitter:
        check(cancel)
        model = fit_model(X[train], y[train], classes, kind=kind, random_state=random_state)
        proba[test] = model.predict_proba(X[test])
    return proba


def reliability(y_true: np.ndarray, proba: np.ndarray, classes: np.ndarray, bins: int = RELIABILITY_BINS) -> dict:
    """Reliability of the top-class confidence: per equal-width bin, mean confidence, accuracy, count.

    Returns ``{"bins": [{"low", "high", "n", "confidence", "accuracy"}], "ece", "n"}``; the
    expected calibration error is the count-weighted mean of |accuracy - confidence|. None for
    ``ece`` when there are no predictions.
    """
    proba = np.asarray(proba, np.float64)
    y_true = np.asarray(y_true)
    n = len(y_true)
    out = {"bins": [], "ece": None, "n": int(n)}
    if n == 0:
        return out
    top = np.argmax(proba, axis=1)
    confidence = proba[np.arange(n), top]
    correct = np.asarray(classes)[top] == y_true
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    ece = 0.0
    for b in range(bins):
        rows = which == b
        m = int(rows.sum())
        entry = {"low": float(edges[b]), "high": float(edges[b + 1]), "n": m, "confidence": None, "accuracy": None}
        if m:
            entry["confidence"] = float(confidence[rows].mean())
            entry["accuracy"] = float(correct[rows].mean())
            ece += m / n * abs(entry["accuracy"] - entry["confidence"])
        out["bins"].append(entry)
    out["ece"] = float(ece)
    return out


def expected_calibration_error(y_true: np.ndarray, proba: np.ndarray, classes: np.ndarray,
                               bins: int = RELIABILITY_BINS) -> Optional[float]:
    """The ECE of :func:`reliability` alone."""
    return reliability(y_true, proba, classes, bins)["ece"]


def calibrate_model(model, X: np.ndarray, y: np.ndarray, folds: int = 5, cancel=None,
                    oof_proba: Optional[np.ndarray] = None) -> Optional[np.ndarray]:
    """Fit ``model.calibration`` on out-of-fold predictions over its own labels ``X``/``y``.

    ``model`` is the TrainedModel fitted on ``X``/``y``. Returns the out-of-fold raw
    probabilities (None when there were too few labels), which callers reuse for thresholds and
    reliability diagrams (apply ``model.calibration`` to them).
    """
    if oof_proba is None:
        oof_proba = out_of_fold_proba(X, y, model.classes, model.kind, model.random_state, folds=folds, cancel=cancel)
    model.calibration = fit_calibration(y, model.classes, oof_proba)
    return oof_proba
