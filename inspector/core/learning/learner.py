"""The project-level learning loop: train a model version, refill the queue, predict.

The loop is split so the desktop app can run the slow part off the UI thread:

1. :func:`take_snapshot` (store reads, quick) copies what the learner needs: features, latest
   labels, audit labels, classes, settings.
2. :func:`fit` and :func:`select` are pure: they touch only the snapshot, never the store, so a
   worker thread can run them while the inspector keeps labelling.
3. :func:`commit` (store writes, quick) records the model version and replaces the queue. The
   store drops images labelled in the meantime when it writes the queue, and ``commit`` also
   re-reads the latest labels first, so a label given during a retrain is never lost and its
   image is never queued again.

:func:`retrain` runs the three steps in one go (the CLI does this).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from inspector.core.errors import UserError
from inspector.core.learning import estimators, metrics, routing
from inspector.core.learning.acceptance import acceptable_class_ids
from inspector.core.learning.calibration import calibrate_model, reliability
from inspector.core.learning.novelty import feature_blocks, fit_novelty
from inspector.core.learning.models import DEFAULT_KIND, MODEL_KINDS, TrainedModel, fit_model
from inspector.core.learning.standardise import standardisation
from inspector.core.learning.strategies import (
    DEFAULT_AUDIT_SHARE,
    DEFAULT_PICK_SAMPLING,
    DEFAULT_STRATEGY,
    Selection,
    get_strategy,
)
from inspector.core.progress import CancelToken, check

#: project settings keys the learner reads (values are JSON)
SETTING_KIND = "learner.model_kind"
SETTING_STRATEGY = "learner.strategy"
SETTING_QUEUE_SIZE = "learner.queue_size"
SETTING_AUDIT_SHARE = "learner.audit_share"
SETTING_SEED = "learner.random_state"
SETTING_PICK_SAMPLING = "learner.pick_sampling"

DEFAULT_QUEUE_SIZE = 20
#: images whose predictions are remembered with each version, to measure how much the next
#: version changes its mind (a stopping signal that needs no labels)
PREDICTION_SAMPLE = 500


@dataclass(frozen=True)
class LearnerSettings:
    kind: str = DEFAULT_KIND
    strategy: str = DEFAULT_STRATEGY
    queue_size: int = DEFAULT_QUEUE_SIZE
    audit_share: float = DEFAULT_AUDIT_SHARE
    random_state: int = 0
    #: share of each batch's probability spread beyond the strategy's own picks, so every pick
    #: has a known selection probability and the accuracy estimate can use it (0: top-k picks)
    pick_sampling: float = DEFAULT_PICK_SAMPLING

    @classmethod
    def from_project(cls, project) -> "LearnerSettings":
        """Read the learner's settings from the project (defaults where unset)."""
        s = cls(
            kind=project.get_setting(SETTING_KIND, DEFAULT_KIND),
            strategy=project.get_setting(SETTING_STRATEGY, DEFAULT_STRATEGY),
            queue_size=int(project.get_setting(SETTING_QUEUE_SIZE, DEFAULT_QUEUE_SIZE)),
            audit_share=float(project.get_setting(SETTING_AUDIT_SHARE, DEFAULT_AUDIT_SHARE)),
            random_state=int(project.get_setting(SETTING_SEED, 0)),
            pick_sampling=float(project.get_setting(SETTING_PICK_SAMPLING, DEFAULT_PICK_SAMPLING)),
        )
        s.validate()
        return s

    def validate(self) -> None:
        if self.kind not in MODEL_KINDS:
            raise UserError(f"unknown model kind {self.kind!r}; choose one of {', '.join(MODEL_KINDS)}")
        get_strategy(self.strategy)
        if self.queue_size < 1:
            raise UserError("queue size must be at least 1")
        if not 0.0 <= self.audit_share <= 1.0:
            raise UserError("audit share must be between 0 and 1")
        if not 0.0 <= self.pick_sampling <= 1.0:
            raise UserError("pick sampling share must be between 0 and 1")

    def as_dict(self) -> dict:
        return {"kind": self.kind, "strategy": self.strategy, "queue_size": self.queue_size,
                "audit_share": self.audit_share, "random_state": self.random_state,
                "pick_sampling": self.pick_sampling}


@dataclass
class Snapshot:
    """Everything the learner needs, copied out of the project at one moment."""

    image_ids: np.ndarray  # int64[n], rows of X
    X: np.ndarray  # float32[n, d]
    labels: dict  # image_id -> class_id (latest class labels)
    audit_ids: set  # image ids whose latest class label was an audit pick
    settled_ids: set  # image ids with any latest event other than 'cleared' (labelled, skipped, unsure)
    classes: np.ndarray  # every live class id, sorted
    class_names: dict  # class_id -> name
    settings: LearnerSettings
    extractor: tuple  # (name, version)
    previous_version: Optional[int] = None
    previous_sample: Optional[dict] = None  # {"ids": [...], "pred": [...]} from the last version
    #: image_id -> (label event id, selection probability or None, pool size or None)
    picks: dict = field(default_factory=dict)
    _row: dict = field(default=None, repr=False)
    acceptable: set = field(default_factory=set)  # class ids of acceptable parts (acceptance.py)
    escape_target: float = routing.DEFAULT_ESCAPE_TARGET

    def acceptable_columns(self) -> np.ndarray:
        """Boolean mask over ``classes``: True for acceptable classes."""
        return np.array([int(c) in self.acceptable for c in self.classes.tolist()], bool)

    def row_of(self) -> dict:
        if self._row is None:
            self._row = {int(i): r for r, i in enumerate(self.image_ids.tolist())}
        return self._row

    def pick_probabilities(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(selection probability, pool size at the draw) of each labelled snapshot row's pick,
        NaN for labels whose pick was not drawn with a recorded probability."""
        q = np.full(len(rows), np.nan)
        pool = np.full(len(rows), np.nan)
        for n, i in enumerate(self.image_ids[np.asarray(rows, np.int64)].tolist()):
            _, prob, size = self.picks.get(int(i), (0, None, None))
            if prob is not None and size is not None:
                q[n], pool[n] = prob, size
        return q, pool

    def labelled_rows(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(rows, class ids, audit flags) of labelled images that have features, in the order
        they were labelled (the accuracy estimators weight draws in that order)."""
        row = self.row_of()
        order = sorted(self.labels, key=lambda i: (self.picks.get(i, (0,))[0], i))
        items = [(row[i], self.labels[i], i in self.audit_ids) for i in order if i in row]
        if not items:
            return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, bool)
        r, c, a = zip(*items)
        return np.asarray(r, np.int64), np.asarray(c, np.int64), np.asarray(a, bool)


def take_snapshot(project, settings: Optional[LearnerSettings] = None, extractor=None,
                  features: Optional[tuple[np.ndarray, np.ndarray]] = None) -> Snapshot:
    """Copy features, labels, classes and settings out of ``project`` (reads only).

    ``extractor`` is (name, version); default: the project's own extractor. ``features`` is
    ``(image_ids, X)`` of that extractor already in memory (the desktop app keeps them loaded):
    given, the feature matrix is not read from the project again.
    Raises UserError when the project has no features yet.
    """
    if extractor is None:
        from inspector.core.extractor_choice import project_extractor_key

        extractor = project_extractor_key(project)
    settings = settings or LearnerSettings.from_project(project)
    image_ids, X = features if features is not None else project.feature_matrix(*extractor)
    if len(image_ids) == 0:
        raise UserError(f"no image features from extractor {extractor[0]} v{extractor[1]} yet: "
                        "scan the project's images first (inspector scan PROJECT)")
    events = project.latest_label_events()
    from inspector.core.agreement import training_labels

    labels = training_labels(project, project.latest_labels())  # unresolved disagreements wait for review
    audit = project.audit_labels()
    picks = {i: (p.event_id, p.selection_probability, p.pool_size) for i, p in project.pick_records().items()}
    classes = project.classes()
    last = project.latest_model_version()
    return Snapshot(
        image_ids=np.asarray(image_ids, np.int64),
        X=np.asarray(X, np.float32),
        labels=dict(labels),
        audit_ids={i for i in audit if labels.get(i) == audit[i]},
        # images out in a labelling pack are being labelled elsewhere: not queued here as well
        settled_ids={i for i, e in events.items() if e.kind != "cleared"} | set(project.handed_out_images()),
        classes=np.asarray(sorted(c.id for c in classes), np.int64),
        class_names={c.id: c.name for c in classes},
        settings=settings,
        extractor=tuple(extractor),
        previous_version=None if last is None else last.version,
        previous_sample=None if last is None else (last.metrics or {}).get("prediction_sample"),
        picks=picks,
        acceptable=acceptable_class_ids(project),
        escape_target=routing.escape_target(project),
    )


def estimate_accuracy(snapshot: Snapshot, rows: np.ndarray, y: np.ndarray, is_audit: np.ndarray, shadow,
                      threshold: Optional[float] = None, crossfit: Optional[np.ndarray] = None,
                      current_proba: Optional[np.ndarray] = None, scorers: Optional[list] = None,
                      calibration=None) -> dict:
    """Every accuracy estimator on out-of-sample predictions; the one shown first (see estimators).

    Returns ``{"method", "method_words", "estimate", "interval", "n", "n_audit", "n_labels",
    "estimators": {name: the same shape}, "classes": estimators.class_estimates(...)}`` (per-class
    recall and precision, macro-F1 and, with acceptable classes, the escape rate at ``threshold``).
    ``crossfit``: calibrated out-of-fold probabilities of the labelled rows (the calibration's
    basis) and ``current_proba``: the current model's calibrated probabilities on every snapshot
    row; with both, the ``difference`` estimator (estimators.difference_accuracy) is computed too.
    ``scorers`` (calibration.calibrate_model's) and the current model's ``calibration``: the models
    behind ``crossfit``, for the difference estimate's model gap.
    """
    s = snapshot.settings
    proba, proba_unl = estimators.out_of_sample(snapshot.X, rows, y, is_audit, snapshot.classes, s.kind,
                                                random_state=s.random_state, shadow=shadow)
    q, pool = snapshot.pick_probabilities(rows)
    current_unl = None
    scorer_mean = current_mean = None
    if crossfit is not None and current_proba is not None:
        mask = np.ones(snapshot.X.shape[0], bool)
        mask[rows] = False
        current_unl = np.asarray(current_proba, np.float64)[mask]
        crossfit = np.asarray(crossfit, np.float64)
        if scorers and calibration is not None:
            scorer_mean, current_mean = estimators.scorer_confidence(
                scorers, calibration, snapshot.X, np.flatnonzero(mask), len(rows), current_unl,
                random_state=s.random_state)
    else:
        crossfit = None
    scored = estimators.Scored(y, proba, snapshot.classes, is_audit, q, pool, proba_unl, crossfit, current_unl,
                               scorer_mean, current_mean)
    found = estimators.accuracy_estimates(scored)
    shown = estimators.choose(list(found.values()))
    passed_l = passed_u = None
    if snapshot.acceptable and threshold is not None:
        # novelty is left out here: counting novel parts as passed can only add escapes
        columns = snapshot.acceptable_columns()
        passed_l = routing.route(proba, columns, threshold, None)[0] == routing.PASS
        passed_u = (routing.route(proba_unl, columns, threshold, None)[0] == routing.PASS if len(proba_unl)
                    else np.zeros(0, bool))
    per_class = None
    if shown.method == "difference":
        # the per-class figures by the same estimator as the accuracy shown; the decision rule
        # judges labelled rows on their cross-fitted probabilities
        passed_cl = passed_cu = None
        if snapshot.acceptable and threshold is not None:
            columns = snapshot.acceptable_columns()
            passed_cl = routing.route(crossfit, columns, threshold, None)[0] == routing.PASS
            passed_cu = (routing.route(current_unl, columns, threshold, None)[0] == routing.PASS
                         if len(current_unl) else np.zeros(0, bool))
        per_class = estimators.class_difference_estimates(scored, snapshot.acceptable, passed_cl, passed_cu,
                                                          random_state=s.random_state)
    if per_class is None:
        per_class = estimators.class_estimates(scored, snapshot.acceptable, passed_l, passed_u,
                                               random_state=s.random_state)
    return {**shown.as_dict(), "n_audit": int(is_audit.sum()), "n_labels": int(len(rows)),
            "estimators": {k: e.as_dict() for k, e in found.items()}, "classes": per_class}


@dataclass
class FitResult:
    """A trained model with the honest metrics recorded for its version (pure data)."""

    model: Optional[TrainedModel]
    n_labels: int
    metrics: dict
    proba: Optional[np.ndarray]  # float32[n, classes] over every snapshot row (calibrated), or None
    #: raw out-of-fold probabilities of the labelled rows (cross-validation), the calibration's
    #: basis; rows in the order of ``snapshot.labelled_rows()``; None with too few labels
    oof_proba: Optional[np.ndarray] = None


def fit(snapshot: Snapshot, cross_validate: bool = False, cancel: Optional[CancelToken] = None) -> FitResult:
    """Train on the snapshot's labels and estimate accuracy from its audit labels (pure).

    With no labels the result has no model (the next selection is a cold start). The audit
    estimate uses a second model trained without the audit labels, so it is not flattered by
    having seen them. ``cross_validate`` adds the optimistic cross-validation figure.
    """
    s = snapshot.settings
    rows, y, is_audit = snapshot.labelled_rows()
    counts = {str(c): int(np.sum(y == c)) for c in snapshot.classes}
    result_metrics: dict = {"class_counts": counts, "n_audit": int(is_audit.sum())}
    if len(rows) == 0:
        return FitResult(None, 0, result_metrics, None)
    check(cancel)
    # always a fresh fit: the cross-fitted models behind the calibration and the estimates are fresh
    # fits too, so they describe this model (a warm start would stop near the previous optimum)
    model = fit_model(snapshot.X[rows], y, snapshot.classes, kind=s.kind, random_state=s.random_state)
    check(cancel)
    # calibration on out-of-fold predictions: every consumer of model.predict_proba sees it
    q, pool = snapshot.pick_probabilities(rows)
    scorers: list = []
    oof = calibrate_model(model, snapshot.X[rows], y, cancel=cancel, X_pool=snapshot.X, is_audit=is_audit,
                          selection_probability=q, pool_size=pool, scorers=scorers)
    check(cancel)
    pool_mean, pool_scale = standardisation(snapshot.X)
    blocks = feature_blocks(snapshot.extractor[0] if snapshot.extractor else None, snapshot.X.shape[1])
    acceptable_columns = snapshot.acceptable_columns()
    model.novelty = fit_novelty(snapshot.X[rows], pool_mean, pool_scale, y=y, random_state=s.random_state,
                                classes=snapshot.classes, blocks=blocks, acceptable=acceptable_columns)
    proba = model.predict_proba(snapshot.X)
    names = snapshot.class_names
    oof_calibrated = None if oof is None else model.calibration.apply(oof)
    if oof_calibrated is not None:
        unlabelled = np.ones(len(proba), bool)
        unlabelled[rows] = False
        threshold = routing.choose_threshold(y, oof_calibrated, snapshot.classes, acceptable_columns,
                                             snapshot.escape_target, names,
                                             pool_proba=proba[unlabelled] if unlabelled.any() else None)
    else:
        threshold = routing.choose_threshold(y[:0], np.zeros((0, len(snapshot.classes))), snapshot.classes,
                                             acceptable_columns, snapshot.escape_target, names)
    result_metrics["review_threshold"] = threshold
    calibration_info = model.calibration.to_dict()
    if oof_calibrated is not None:
        calibration_info["reliability"] = {**reliability(y, oof_calibrated, snapshot.classes),
                                           "basis": "cross-validation over the labels (actively chosen: harder than "
                                                    "a random part)"}
        calibration_info["reliability_raw"] = reliability(y, oof, snapshot.classes)
    result_metrics["calibration"] = calibration_info
    if is_audit.any():
        train = ~is_audit
        if train.sum() > 0:
            shadow = fit_model(snapshot.X[rows[train]], y[train], snapshot.classes, kind=s.kind,
                               random_state=s.random_state)
            # the shadow borrows the main model's calibration (two numbers and the prior; the
            # audit labels weigh in them only through their out-of-fold predictions)
            shadow.calibration = model.calibration
            audit_proba = shadow.predict_proba(snapshot.X[rows[is_audit]])
            audit_pred = snapshot.classes[np.argmax(audit_proba, axis=1)]
            result_metrics["audit"] = metrics.audit_estimate(y[is_audit], audit_pred, snapshot.classes.tolist(),
                                                             random_state=s.random_state)
            audit_reliability = reliability(y[is_audit], audit_proba, snapshot.classes)
            audit_reliability["basis"] = "random audit labels, predicted by a model trained without them"
            result_metrics["calibration"]["reliability_audit"] = audit_reliability
            if snapshot.acceptable:
                shadow_novelty = fit_novelty(snapshot.X[rows[train]], pool_mean, pool_scale, y=y[train],
                                             random_state=s.random_state, classes=snapshot.classes,
                                             blocks=blocks, acceptable=acceptable_columns)
                novel = (shadow_novelty.is_novel(snapshot.X[rows[is_audit]], audit_proba) if shadow_novelty is not None
                         else None)
                path, review, _ = routing.route(audit_proba, acceptable_columns, threshold["value"], novel)
                result_metrics["escape"] = metrics.escape_estimate(y[is_audit], path == routing.PASS, review,
                                                                   snapshot.acceptable)
                result_metrics["escape"]["threshold"] = threshold["value"]
            check(cancel)
            result_metrics["estimate"] = estimate_accuracy(
                snapshot, rows, y, is_audit, shadow, threshold=threshold.get("value"),
                crossfit=oof_calibrated, current_proba=proba, scorers=scorers, calibration=model.calibration)
    if "estimate" not in result_metrics:
        result_metrics["estimate"] = {**estimators.none_estimate(int(is_audit.sum())).as_dict(),
                                      "n_audit": int(is_audit.sum()), "n_labels": len(rows), "estimators": {}}
    if cross_validate:
        result_metrics["cross_validation"] = metrics.optimistic_cross_validation(
            snapshot.X[rows], y, kind=s.kind, random_state=s.random_state)
    # remember predictions on a fixed sample of images to see how much the next version changes
    pred = snapshot.classes[np.argmax(proba, axis=1)]
    ids = snapshot.image_ids
    if snapshot.previous_sample:
        prev_ids = np.asarray(snapshot.previous_sample["ids"], np.int64)
        prev_pred = np.asarray(snapshot.previous_sample["pred"], np.int64)
        row = snapshot.row_of()
        keep = np.array([int(i) in row for i in prev_ids], bool)
        if keep.any():
            now = pred[[row[int(i)] for i in prev_ids[keep]]]
            result_metrics["prediction_change"] = metrics.prediction_change(prev_pred[keep], now)
    rng = np.random.default_rng(s.random_state)
    sample = np.sort(rng.choice(len(ids), size=min(PREDICTION_SAMPLE, len(ids)), replace=False))
    result_metrics["prediction_sample"] = {"ids": ids[sample].tolist(), "pred": pred[sample].tolist()}
    return FitResult(model, len(rows), result_metrics, proba, oof)


def select(snapshot: Snapshot, fitted: FitResult, n: Optional[int] = None, strategy: Optional[str] = None,
           random_state=None) -> Selection:
    """Choose the next ``n`` images to label (pure). Indices are snapshot rows.

    Images already labelled, skipped or marked unsure are never chosen.
    """
    s = snapshot.settings
    name = strategy or s.strategy
    n = s.queue_size if n is None else int(n)
    settled = np.zeros(len(snapshot.image_ids), bool)
    row = snapshot.row_of()
    for i in snapshot.settled_ids:
        r = row.get(int(i))
        if r is not None:
            settled[r] = True
    seed = random_state if random_state is not None else [s.random_state, len(snapshot.labels)]
    return get_strategy(name)(fitted.model, snapshot.X, settled, n, seed, audit_share=s.audit_share,
                              proba=fitted.proba, pick_sampling=s.pick_sampling)


def commit(project, snapshot: Snapshot, fitted: FitResult, selection: Optional[Selection],
           record_version: bool = True) -> Optional[int]:
    """Record the model version (when one was trained) and replace the queue; returns the version.

    Images labelled since the snapshot are left out of the queue. ``record_version=False`` only
    replaces the queue, chosen with a model the project already has (a queue refill between
    retrains); its entries name the project's latest version.
    """
    from inspector.core.store import QueueEntry

    version = None if record_version else snapshot.previous_version
    if fitted.model is not None and record_version:
        version = project.add_model_version(
            fitted.model.kind,
            {**snapshot.settings.as_dict(), "extractor": list(snapshot.extractor)},
            fitted.n_labels,
            fitted.metrics,
        )
    if selection is None:
        return version
    settled_now = {i for i, e in project.latest_label_events().items() if e.kind != "cleared"}
    entries = []
    for pos, (r, score, reason, audit, prob, pool) in enumerate(zip(
            selection.indices, selection.scores, selection.reasons, selection.audit, selection.probabilities,
            selection.pool_sizes)):
        image_id = int(snapshot.image_ids[r])
        if image_id in settled_now:
            continue
        entries.append(QueueEntry(image_id, pos, selection.name, None if np.isnan(score) else float(score),
                                  reason, version, bool(audit),
                                  None if np.isnan(prob) else float(prob), None if np.isnan(pool) else int(pool)))
    project.replace_queue(entries)
    return version


def record_label(project, image_id: int, class_id: Optional[int] = None, kind: str = "class",
                 annotator: str = "", source: str = "human", audit: Optional[bool] = None) -> bool:
    """Record a label for ``image_id``, carrying the audit flag of its queue entry.

    The honest accuracy estimate needs to know which labels answered audit picks, so every
    labelling path (app, CLI) goes through here. ``audit`` None: the flag of the image's queue
    entry now (the CLI); a bool: the flag of the entry the image was shown with (the app shows
    an image before the learner may replace the queue; an undo restores the flag it had).
    Durable when it returns (the store commits before returning). Returns whether the image was
    an audit pick.
    """
    if audit is None:
        entry = project.queue_entry(image_id)
        audit = bool(entry is not None and entry.audit)
    audit = bool(audit)
    project.add_label(image_id, class_id, kind=kind, annotator=annotator, source=source, audit=audit)
    return audit


@dataclass
class RetrainResult:
    version: Optional[int]
    n_labels: int
    metrics: dict
    queued: int
    model: Optional[TrainedModel]
    snapshot: Snapshot
    proba: Optional[np.ndarray] = None  # calibrated probabilities over every snapshot row, or None


def retrain(project, settings: Optional[LearnerSettings] = None, n: Optional[int] = None,
            strategy: Optional[str] = None, cross_validate: bool = False,
            cancel: Optional[CancelToken] = None, extractor=None,
            features: Optional[tuple[np.ndarray, np.ndarray]] = None) -> RetrainResult:
    """Snapshot, fit, select and commit in one call: the one retrain of the CLI, scripts and the
    desktop app (whose worker passes the ``features`` it holds in memory; see take_snapshot)."""
    snapshot = take_snapshot(project, settings, extractor=extractor, features=features)
    fitted = fit(snapshot, cross_validate=cross_validate, cancel=cancel)
    check(cancel)
    selection = select(snapshot, fitted, n=n, strategy=strategy)
    check(cancel)
    version = commit(project, snapshot, fitted, selection)
    return RetrainResult(version, fitted.n_labels, fitted.metrics, len(project.queue()), fitted.model, snapshot,
                         fitted.proba)


@dataclass
class Predictions:
    """Model output for every image with features (for the gallery)."""

    image_ids: np.ndarray
    classes: np.ndarray  # column order of proba
    proba: np.ndarray
    predicted: np.ndarray  # class id per image
    confidence: np.ndarray  # top probability per image
    margin: np.ndarray  # gap between the top two probabilities (small = uncertain)


def predictions(snapshot: Snapshot, fitted: FitResult) -> Optional[Predictions]:
    """Probabilities over every class for every image of the snapshot; None without a model."""
    from inspector.core.learning.strategies import margins

    if fitted.model is None:
        return None
    proba = fitted.proba if fitted.proba is not None else fitted.model.predict_proba(snapshot.X)
    top = np.argmax(proba, axis=1)
    return Predictions(snapshot.image_ids, snapshot.classes, proba, snapshot.classes[top],
                       proba[np.arange(len(top)), top], margins(proba))


def evaluation(project, extractor=None) -> dict:
    """Honest report for the quality engineer; trains a fresh model, writes nothing.

    Stable keys (other features build on them, e.g. stopping rules):

    - ``estimate``: the estimated accuracy (0..1) of the model on images like the project's, or
      None when there is nothing to estimate from yet;
    - ``interval``: ``[low, high]``, its 95 % interval, or None;
    - ``method``: in words, how the estimate was made (``method_key``: 'weighted', 'ppi',
      'audit' or 'none'; see :mod:`inspector.core.learning.estimators`);
    - ``n_audit``: random audit labels; ``n_labels``: every class label with features.

    Also: ``estimators`` (every estimator's figure, the shown one among them),
    ``audit_estimate`` (confusion, per-class recall and macro-F1 on the audit labels),
    ``learning_curve``, ``stopping`` and ``cross_validation_optimistic`` (labelled as such).
    """
    snapshot = take_snapshot(project, extractor=extractor)
    fitted = fit(snapshot, cross_validate=True)
    curve = metrics.learning_curve(project.model_versions())
    names = snapshot.class_names
    audit = fitted.metrics.get("audit")
    if audit:
        audit = dict(audit)
        audit["classes"] = [names.get(c, str(c)) for c in audit["classes"]]
        audit["per_class_recall"] = {names.get(int(k), k): v for k, v in audit["per_class_recall"].items()}
    shown = fitted.metrics.get("estimate") or {}
    per_class = shown.get("classes")
    if per_class:
        per_class = {**per_class, "per_class": {names.get(int(k), k): v for k, v in per_class["per_class"].items()}}
    return {
        "classes_estimate": per_class,
        "estimate": shown.get("estimate"),
        "interval": shown.get("interval"),
        "lower_bound": shown.get("lower_bound"),  # one-sided 95 %: what a target on accuracy is judged on
        "method": shown.get("method_words", estimators.METHOD_WORDS["none"]),
        "method_key": shown.get("method", "none"),
        "estimators": shown.get("estimators", {}),
        "n_labels": fitted.n_labels,
        "n_audit": fitted.metrics.get("n_audit", 0),
        "class_counts": {names.get(int(k), k): v for k, v in fitted.metrics["class_counts"].items()},
        "audit_estimate": audit,
        "learning_curve": curve,
        "stopping": metrics.plateau_signal(curve, class_names=names),
        "cross_validation_optimistic": fitted.metrics.get("cross_validation"),
        "escape_estimate": fitted.metrics.get("escape"),
        "review_threshold": fitted.metrics.get("review_threshold"),
        "calibration": fitted.metrics.get("calibration"),
        "acceptable_classes": [names.get(int(c), str(c)) for c in snapshot.classes if int(c) in snapshot.acceptable],
    }
