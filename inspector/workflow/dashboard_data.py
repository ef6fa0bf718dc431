"""What the dashboard draws, computed off the UI thread: label and prediction counts, the
learning curve, the latest version's honest estimate and per-class precision, the stopping
rules, the agreement between inspectors and a two-dimensional map of the feature space.
The dashboard view only draws a :class:`DashboardData`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from inspector.core.learning import metrics
from inspector.core.learning.standardise import standardisation, standardiser

#: at most this many points are drawn on the feature map (a random, fixed subsample)
MAP_POINTS = 20_000


@dataclass
class FeatureMap:
    rows: np.ndarray  # rows of the session's arrays that are drawn
    xy: np.ndarray  # float32[len(rows), 2]
    explained: tuple[float, float]  # share of variance along each axis
    n_total: int


@dataclass
class DashboardData:
    classes: list  # ClassRecord, in key order
    labelled: dict  # class_id -> count of labelled images
    predicted: dict  # class_id -> count of images the model assigns to it (empty without a model)
    curve: list  # metrics.learning_curve points
    stopping: dict  # metrics.plateau_signal
    audit: Optional[dict]  # the latest version's audit estimate (metrics.audit_estimate), or None
    n_audit: int  # audit labels behind the latest version
    estimate: Optional[dict] = None  # the latest version's shown accuracy estimate (learner.estimate_accuracy)
    precision: dict = field(default_factory=dict)  # class_id -> {"n", "precision", "ci"}
    cross_validation: Optional[dict] = None  # optimistic figures, when recorded
    model_version: Optional[int] = None
    n_labels_trained: int = 0
    feature_map: Optional[FeatureMap] = None
    goals: Optional[object] = None  # stopping.GoalStatus against the latest version (None: no rule set)
    labels_needed: Optional[dict] = None  # stopping.labels_still_needed, when a target is set
    latest_metrics: dict = field(default_factory=dict)  # the latest version's metrics (confidence panel)
    team: Optional[dict] = None  # agreement between inspectors (inspector.core.agreement), when several labelled


def precision_from_confusion(confusion: np.ndarray, classes: list) -> dict:
    """Per-class precision with Wilson 95 % intervals from a confusion matrix (rows true,
    columns predicted). Returns ``class -> {"n": predicted count, "precision", "ci"}`` (None when
    the class was never predicted); the figures are :func:`metrics.per_class_precision_recall`'s."""
    return {r["class"]: {"n": r["n_predicted"], "precision": r["precision"],
                         "ci": list(r["precision_ci"]) if r["precision_ci"] else None}
            for r in metrics.per_class_precision_recall(confusion, classes)}


def feature_map(features: np.ndarray, limit: int = MAP_POINTS, random_state: int = 0) -> Optional[FeatureMap]:
    """Two principal components of the standardised features of at most ``limit`` images
    (a fixed random subsample). Returns None for fewer than three images."""
    n = len(features)
    if n < 3 or features.ndim != 2 or features.shape[1] == 0:
        return None
    rows = np.arange(n)
    if n > limit:
        rows = np.sort(np.random.default_rng(random_state).choice(n, limit, replace=False))
    sample = features[rows]
    z = standardiser(*standardisation(sample), dtype=np.float64)(sample)
    # eigenvectors of the d x d covariance: cheaper than an SVD of the n x d matrix
    eigenvalues, eigenvectors = np.linalg.eigh(z.T @ z / max(len(z) - 1, 1))
    order = np.argsort(eigenvalues)[::-1][:2]
    axes = eigenvectors[:, order]
    if axes.shape[1] < 2:
        axes = np.column_stack([axes, np.zeros(len(axes))])
    xy = (z @ axes).astype(np.float32)
    total = float(eigenvalues.clip(min=0).sum()) or 1.0
    explained = tuple(float(max(eigenvalues[i], 0) / total) for i in order) + (0.0,) * (2 - len(order))
    return FeatureMap(rows.astype(np.int64), xy, explained[:2], n)


def compute_dashboard(project, classes: list, labels: dict, probabilities: Optional[np.ndarray],
                      class_ids: np.ndarray, features: np.ndarray, previous_map: Optional[FeatureMap],
                      goals: tuple = (None, None)) -> DashboardData:
    """Everything the dashboard draws (runs in a worker; reads model versions from the store).

    ``previous_map`` is reused when given (the features did not change)."""
    labelled = {c.id: 0 for c in classes}
    for class_id in labels.values():
        if class_id in labelled:
            labelled[class_id] += 1
    predicted: dict = {}
    if probabilities is not None and len(probabilities):
        winners = np.asarray(class_ids, np.int64)[np.argmax(probabilities, axis=1)]
        ids, counts = np.unique(winners, return_counts=True)
        predicted = {c.id: 0 for c in classes}
        predicted.update({int(i): int(k) for i, k in zip(ids, counts) if int(i) in predicted})
    # its own connection: a long read of the versions never holds the UI thread's connection
    reader = project.worker_connection() if hasattr(project, "worker_connection") else project
    try:
        versions = reader.model_versions()
    finally:
        if reader is not project:
            reader.close()
    curve = metrics.learning_curve(versions)
    latest = versions[-1] if versions else None
    latest_metrics = (latest.metrics or {}) if latest else {}
    audit = latest_metrics.get("audit")
    data = DashboardData(
        classes=list(classes), labelled=labelled, predicted=predicted, curve=curve,
        stopping=metrics.plateau_signal(curve, class_names={c.id: c.name for c in classes}), audit=audit,
        n_audit=int((audit or {}).get("n_audit") or latest_metrics.get("n_audit") or 0),
        cross_validation=latest_metrics.get("cross_validation"),
        estimate=latest_metrics.get("estimate"),
        model_version=latest.version if latest else None,
        n_labels_trained=latest.n_labels if latest else 0,
        latest_metrics=latest_metrics,
    )
    target, budget = goals
    if target is not None or budget is not None:
        from inspector.core.learning import stopping

        data.goals = stopping.goal_status(target, budget, len(labels), latest_metrics)
        if target is not None and not data.goals.target_shown:
            data.labels_needed = stopping.labels_still_needed(curve, target)
    if audit and audit.get("confusion") is not None:
        data.precision = precision_from_confusion(np.asarray(audit["confusion"]), list(audit.get("classes", [])))
    data.feature_map = previous_map if previous_map is not None else feature_map(features)
    from inspector.core.agreement import team_summary

    data.team = team_summary(project)
    return data
