"""Classifiers the learner trains, and the trained-model wrapper the strategies read.

``make_model`` builds a scikit-learn pipeline; :class:`TrainedModel` remembers the project's full
class list so probabilities always have one column per class, even for classes that have no
labels yet (their probability is 0 until they are labelled).
"""

from __future__ import annotations

import logging
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from inspector.core.errors import UserError

#: rows predicted at a time when predicting a subset of a large pool (bounds the copy)
PREDICT_BLOCK_ROWS = 8192

log = logging.getLogger("inspector.learning")

MODEL_KINDS = ("logistic", "svm", "forest")
DEFAULT_KIND = "logistic"


def make_model(kind: str = DEFAULT_KIND, random_state: int | None = 0, **params: Any) -> Pipeline:
    """Return an unfitted scikit-learn Pipeline (scaler + classifier) for ``kind``.

    ``params`` override the classifier's constructor arguments. Class imbalance is handled with
    ``class_weight="balanced"`` for every kind. Raises :class:`UserError` for an unknown kind.
    """
    if kind == "logistic":
        options = dict(C=1.0, class_weight="balanced", max_iter=300, tol=1e-3, random_state=random_state)
        options.update(params)
        classifier = LogisticRegression(**options)
    elif kind == "svm":
        # SVC(probability=True) is deprecated in scikit-learn 1.9 and its internal 5-fold Platt
        # calibration fails with few labels per class; a softmax over one-vs-rest decision values
        # gives usable (uncalibrated) probabilities from the first labels on
        options = dict(C=10.0, gamma="scale", class_weight="balanced", random_state=random_state)
        options.update(params)
        classifier = SoftmaxSVC(**options)
    elif kind == "forest":
        options = dict(n_estimators=200, class_weight="balanced", n_jobs=1, random_state=random_state)
        options.update(params)
        classifier = RandomForestClassifier(**options)
    else:
        raise UserError(f"unknown model kind {kind!r}; choose one of {', '.join(MODEL_KINDS)}")
    return Pipeline([("scale", StandardScaler()), ("classify", classifier)])


def _stable_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=1, keepdims=True)
    return z


@dataclass
class TrainedModel:
    """A fitted classifier over the project's full class list.

    ``classes`` is every class id of the project in column order; ``seen_classes`` the ones that
    had at least one label. With a single seen class the model predicts it with certainty (no
    estimator is fitted). ``X_train_``/``y_train_`` keep references to the training data so
    committee strategies can refit replicas.
    """

    kind: str
    classes: np.ndarray
    seen_classes: np.ndarray
    estimator: Optional[Pipeline]
    version: int | None = None
    random_state: int | None = 0
    params: dict = field(default_factory=dict)
    X_train_: Optional[np.ndarray] = None
    y_train_: Optional[np.ndarray] = None
    # linear fast path (logistic only): scores = X @ coef_.T + intercept_ in float32, scaler folded in
    coef_: Optional[np.ndarray] = None
    intercept_: Optional[np.ndarray] = None
    _columns: np.ndarray = field(default=None, repr=False)
    #: fitted on out-of-sample predictions by the learner (calibration.py); None: raw probabilities
    calibration: Optional[Any] = None
    #: how unlike the labelled images an image is (novelty.py); fitted by the learner, or None
    novelty: Optional[Any] = None
    #: convergence warnings scikit-learn gave while fitting (the model is usable; see fit_model)
    fit_warnings: list = field(default_factory=list)

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    @property
    def unseen_classes(self) -> np.ndarray:
        return np.setdiff1d(self.classes, self.seen_classes)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Return float32 probabilities of shape (n, len(classes)), calibrated when the learner
        fitted a calibration (every model the app, the CLI and the model file use); unseen classes
        get 0 (or only their prior share when a single class has been seen)."""
        out = self.raw_proba(X)
        if self.calibration is not None:
            out = self.calibration.apply(out)
        return out

    def raw_proba(self, X: np.ndarray, rows: Optional[np.ndarray] = None) -> np.ndarray:
        """The classifier's own probabilities, before calibration (float32, unseen classes 0), of
        every row of ``X`` or only of ``rows`` (taken a block at a time: ``X[rows]`` of a large
        pool would be a second copy of nearly all its features)."""
        if rows is not None:
            rows = np.asarray(rows)
            rows = np.flatnonzero(rows) if rows.dtype == bool else rows.astype(np.int64, copy=False)
            out = np.empty((len(rows), self.n_classes), dtype=np.float32)
            for start in range(0, len(rows), PREDICT_BLOCK_ROWS):
                part = rows[start:start + PREDICT_BLOCK_ROWS]
                out[start:start + len(part)] = self.raw_proba(X[part])
            return out
        X = np.asarray(X)
        out = np.zeros((X.shape[0], self.n_classes), dtype=np.float32)
        if self.estimator is None:
            out[:, self._columns[0]] = 1.0
            return out
        if self.coef_ is not None:
            z = X.astype(np.float32, copy=False) @ self.coef_.T
            z += self.intercept_
            if z.shape[1] == 1:  # binary logistic: one logit
                z = np.hstack([-z, z]) * 0.5
            out[:, self._columns] = _stable_softmax(z)
            return out
        out[:, self._columns] = self.estimator.predict_proba(X)
        return out

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Return the predicted class id for each row (the most probable calibrated class)."""
        return self.classes[np.argmax(self.predict_proba(X), axis=1)]

    def scaled(self, X: np.ndarray) -> np.ndarray:
        """Return ``X`` in the standardised space the classifier sees (float32)."""
        if self.estimator is None:
            return np.asarray(X, dtype=np.float32)
        scaler = self.estimator.named_steps["scale"]
        return ((np.asarray(X, dtype=np.float32) - scaler.mean_.astype(np.float32)) / scaler.scale_.astype(np.float32))


def fit_model(
    X: np.ndarray,
    y: np.ndarray,
    classes: Sequence[int] | np.ndarray,
    kind: str = DEFAULT_KIND,
    random_state: int | None = 0,
    version: int | None = None,
    warm_start_from: Optional[TrainedModel] = None,
    **params: Any,
) -> TrainedModel:
    """Fit a model of ``kind`` on labelled rows ``X``/``y`` (class ids) and return a TrainedModel.

    ``classes`` is the project's full class list (labels outside it raise ``UserError``). A
    previous logistic model can seed the optimiser (``warm_start_from``), which makes a retrain
    after a few new labels much faster. Raises ``UserError`` when there are no labels.
    """
    X = np.asarray(X)
    y = np.asarray(y)
    classes = np.asarray(classes)
    if len(y) == 0:
        raise UserError("no labels yet: label a few images before training")
    unknown = np.setdiff1d(y, classes)
    if len(unknown):
        raise UserError(f"labels use unknown class ids {unknown.tolist()}")
    seen = np.unique(y)
    columns = np.searchsorted(classes, seen) if np.all(np.diff(classes) > 0) else np.array(
        [int(np.flatnonzero(classes == c)[0]) for c in seen]
    )
    model = TrainedModel(kind=kind, classes=classes, seen_classes=seen, estimator=None, version=version,
                         random_state=random_state, params=dict(params), X_train_=X, y_train_=y, _columns=columns)
    if len(seen) < 2:
        return model
    pipeline = make_model(kind, random_state=random_state, **params)
    if (
        kind == "logistic"
        and warm_start_from is not None
        and warm_start_from.coef_ is not None
        and np.array_equal(warm_start_from.seen_classes, seen)
        and len(seen) > 2
    ):
        pipeline.set_params(classify__warm_start=True)
        scaler = pipeline.named_steps["scale"].fit(X)
        clf = pipeline.named_steps["classify"]
        # unfold the previous model's folded weights into this scaler's space
        clf.coef_ = (warm_start_from.coef_.astype(np.float64) * scaler.scale_)
        clf.intercept_ = warm_start_from.intercept_.astype(np.float64) + clf.coef_ @ (scaler.mean_ / scaler.scale_)
        with _recorded_fit_warnings(model):
            clf.fit(scaler.transform(X), y)
    else:
        with _recorded_fit_warnings(model):
            pipeline.fit(X, y)
    model.estimator = pipeline
    if kind == "logistic":
        scaler = pipeline.named_steps["scale"]
        clf = pipeline.named_steps["classify"]
        coef = clf.coef_ / scaler.scale_
        model.coef_ = coef.astype(np.float32)
        model.intercept_ = (clf.intercept_ - coef @ scaler.mean_).astype(np.float32)
    return model


@contextmanager
def _recorded_fit_warnings(model: TrainedModel):
    """scikit-learn's convergence warnings during a fit belong to the model, not on the user's
    terminal: the optimiser stopped at its iteration limit, the model is still usable (every
    retrain continues from it). They are kept in ``model.fit_warnings`` and logged;
    any other warning goes where it went."""
    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        yield
    for item in caught:
        if issubclass(item.category, ConvergenceWarning):
            text = str(item.message).strip().splitlines()[0]
            model.fit_warnings.append(text)
            log.info("%s model: %s", model.kind, text)
        else:
            warnings.showwarning(item.message, item.category, item.filename, item.lineno)


class SoftmaxSVC(ClassifierMixin, BaseEstimator):
    """Support vector classifier whose probabilities are a softmax of one-vs-rest decision values."""

    def __init__(self, C=10.0, gamma="scale", kernel="rbf", class_weight="balanced", random_state=None,
                 temperature=0.5):
        self.C = C
        self.gamma = gamma
        self.kernel = kernel
        self.class_weight = class_weight
        self.random_state = random_state
        self.temperature = temperature

    def fit(self, X, y):
        self.svc_ = SVC(C=self.C, gamma=self.gamma, kernel=self.kernel, class_weight=self.class_weight,
                        decision_function_shape="ovr", random_state=self.random_state).fit(X, y)
        self.classes_ = self.svc_.classes_
        return self

    def decision_function(self, X):
        return self.svc_.decision_function(X)

    def predict_proba(self, X):
        d = np.asarray(self.svc_.decision_function(X), dtype=np.float64)
        if d.ndim == 1:
            d = np.stack([-d, d], axis=1)
        return _stable_softmax(d / self.temperature)

    def predict(self, X):
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]
