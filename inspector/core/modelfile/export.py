"""Training for export: train on a project's current labels, estimate honestly, choose the review
threshold, and write the model file.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional

import numpy as np

from inspector.core.errors import UserError
from inspector.core.modelfile.container import ModelFileError, write_container
from inspector.core.modelfile.predictors import model_arrays
from inspector.core.progress import CancelToken, ProgressCallback, check, report
from inspector.core.version import __version__

#: below this many audit labels the reject threshold comes from cross-validation instead
MIN_AUDIT_FOR_THRESHOLD = 30

# --------------------------------------------------------------------------- training for export


@dataclass
class HeldOut:
    """Predictions of images the predicting model was not trained on, for thresholds and reports."""

    basis: str  # "audit" or "cross-validation"
    y_true: np.ndarray
    proba: np.ndarray  # over every class column
    classes: np.ndarray


def cross_validated_proba(X: np.ndarray, y: np.ndarray, classes: np.ndarray, kind: str, random_state: int,
                          folds: int = 5, cancel: Optional[CancelToken] = None) -> Optional[np.ndarray]:
    """Out-of-fold probabilities for every labelled row, or None with too few labels per class."""
    from sklearn.model_selection import StratifiedKFold

    from inspector.core.learning.models import fit_model

    _, counts = np.unique(y, return_counts=True)
    k = int(min(folds, counts.min())) if len(counts) > 1 else 0
    if k < 2:
        return None
    proba = np.zeros((len(y), len(classes)), np.float64)
    for train, test in StratifiedKFold(k, shuffle=True, random_state=random_state).split(X, y):
        check(cancel)
        proba[test] = fit_model(X[train], y[train], classes, kind=kind, random_state=random_state).predict_proba(X[test])
    return proba


def recommend_threshold(y_true: np.ndarray, proba: np.ndarray, classes: np.ndarray) -> dict:
    """The confidence below which held-out errors concentrate (best Youden separation).

    Returns ``{"value", "errors_caught", "review_share", "n", "n_errors", "explanation"}``; value
    is 0 (route nothing) when the held-out predictions hold no errors.
    """
    confidence = proba.max(axis=1)
    wrong = classes[np.argmax(proba, axis=1)] != y_true
    n, n_wrong = len(y_true), int(wrong.sum())
    result = {"value": 0.0, "errors_caught": None, "review_share": 0.0, "n": int(n), "n_errors": n_wrong}
    if n == 0 or n_wrong == 0 or n_wrong == n:
        result["explanation"] = ("no threshold: the held-out predictions have no errors to separate"
                                 if n_wrong == 0 else "no threshold: too few correct held-out predictions")
        return result
    # A threshold t routes every image with confidence < t to review. Choose t that maximises
    # (share of errors routed) - (share of correct predictions routed).
    candidates = np.unique(confidence)
    candidates = np.append(candidates, np.nextafter(candidates[-1], 2.0))
    caught = np.searchsorted(np.sort(confidence[wrong]), candidates, side="left") / n_wrong
    bothered = np.searchsorted(np.sort(confidence[~wrong]), candidates, side="left") / (n - n_wrong)
    best = int(np.argmax(caught - bothered))
    value = float(candidates[best])
    result.update(value=value, errors_caught=float(caught[best]), review_share=float(np.mean(confidence < value)))
    # Alternatives for an engineer who weighs review work and missed errors differently: the
    # lowest threshold that catches at least each share of the held-out errors.
    result["alternatives"] = []
    for share in (0.5, 0.8, 0.9, 1.0):
        at = int(np.argmax(caught >= share - 1e-12))
        result["alternatives"].append({"catch_errors": share, "value": float(candidates[at]),
                                       "errors_caught": float(caught[at]),
                                       "review_share": float(np.mean(confidence < candidates[at]))})
    result["explanation"] = (
        f"Images whose confidence is below {value:.3f} are routed to a person. On {n} held-out predictions this "
        f"threshold sent {result['review_share']:.0%} of images to review and caught {result['errors_caught']:.0%} "
        f"of the {n_wrong} errors: it is where errors concentrate most compared with correct predictions "
        "(largest gap between the share of errors and the share of correct predictions below it).")
    return result


@dataclass
class ExportTraining:
    """The model trained for export and everything the file says about it."""

    model: Any  # TrainedModel
    snapshot: Any  # learner.Snapshot
    metrics: dict
    held_out: Optional[HeldOut]
    threshold: dict
    cross_validation: dict
    model_version: Optional[int]


def train_for_export(project, progress: Optional[ProgressCallback] = None,
                     cancel: Optional[CancelToken] = None, escape_target: Optional[float] = None,
                     review_threshold: Optional[float] = None) -> ExportTraining:
    """Train on every current class label with the project's learner settings; estimate honestly.

    Returns an :class:`ExportTraining`. The audit estimate comes from a model trained without the
    audit labels (as in the app); cross-validation on all labels is kept as an optimistic figure
    and is also what the calibration and the escape-safe review threshold are fitted on
    (:mod:`inspector.core.learning.routing`). ``escape_target`` overrides the project's target;
    ``review_threshold`` is an engineer's explicit threshold, used even when the labels do not
    show the target (the file records that it was set by hand and what the labels say about it).
    Raises :class:`UserError` when there are no features or fewer than two labelled classes.
    """
    from inspector.core.learning import learner, metrics, routing

    report(progress, 0, 4, "reading labels and features")
    snapshot = learner.take_snapshot(project)
    if escape_target is not None:
        if not 0.0 < escape_target < 1.0:
            raise UserError("the escape target must be between 0 and 1 (e.g. 0.01 for 1 %)")
        snapshot.escape_target = float(escape_target)
    if review_threshold is not None and not 0.0 <= review_threshold <= 1.0:
        raise UserError("the review threshold must be between 0 and 1")
    rows, y, is_audit = snapshot.labelled_rows()
    if len(np.unique(y)) < 2:
        raise UserError("label images of at least two classes before exporting a model")
    check(cancel)
    report(progress, 1, 4, "training and calibrating the model on every label")
    fitted = learner.fit(snapshot, cancel=cancel)
    check(cancel)
    report(progress, 2, 4, "cross-validating (optimistic figure)")
    cv_proba = None if fitted.oof_proba is None else fitted.model.calibration.apply(fitted.oof_proba)
    cross_validation: dict = {"kind": "cross-validation on all labels (OPTIMISTIC: actively chosen labels are not "
                                      "a random sample)", "accuracy": None, "macro_f1": None, "n": int(len(y))}
    if cv_proba is not None:
        cv_pred = snapshot.classes[np.argmax(cv_proba, axis=1)]
        cross_validation.update(accuracy=float(np.mean(cv_pred == y)), macro_f1=metrics.macro_f1(y, cv_pred),
                                confusion=metrics.confusion_matrix(y, cv_pred, snapshot.classes.tolist()).tolist())
    report(progress, 3, 4, "choosing the review threshold")
    held_out = None if cv_proba is None else HeldOut("cross-validation", y, cv_proba, snapshot.classes)
    threshold = dict(fitted.metrics["review_threshold"])
    if review_threshold is not None:
        at = (routing.escapes_at(y, cv_proba, snapshot.classes, snapshot.acceptable_columns(), review_threshold)
              if cv_proba is not None else {})
        threshold = {**threshold, "chosen": threshold.get("value"), "value": float(review_threshold),
                     "set_by": "engineer", "escape_rate": at.get("escape_rate"), "review_share": at.get("review_share"),
                     "explanation": f"Set by the engineer to {review_threshold:.3f}. What the labels say: "
                                    + threshold.get("explanation", "")}
    else:
        threshold["set_by"] = "escape target" if threshold.get("shown_safe") else "not shown safe: every part to review"
    report(progress, 4, 4, "")
    latest = project.latest_model_version()
    return ExportTraining(fitted.model, snapshot, fitted.metrics, held_out, threshold, cross_validation,
                          None if latest is None else latest.version)


def export_model(project, out_path: Path, progress: Optional[ProgressCallback] = None,
                 cancel: Optional[CancelToken] = None, escape_target: Optional[float] = None,
                 review_threshold: Optional[float] = None) -> Path:
    """Train on the project's current labels and write the model file to ``out_path``.

    Returns the written path. Raises :class:`UserError` when the project cannot give a model
    (no features, fewer than two labelled classes) and :class:`ModelFileError` when the model
    cannot be exported faithfully or the file cannot be written.
    """
    from inspector.core.extractor_choice import project_extractor

    out_path = Path(out_path)
    if not out_path.parent.is_dir():
        raise ModelFileError(f"folder {out_path.parent} does not exist")
    training = train_for_export(project, progress=progress, cancel=cancel, escape_target=escape_target,
                                review_threshold=review_threshold)
    spec, arrays = model_arrays(training.model)
    snapshot = training.snapshot
    names = snapshot.class_names
    colors = {c.id: c.color for c in project.classes()}
    spec["settings"] = snapshot.settings.as_dict()
    audit = training.metrics.get("audit")
    if audit:
        audit = dict(audit)
        audit["classes"] = [names.get(c, str(c)) for c in audit["classes"]]
        audit["per_class_recall"] = {names.get(int(k), k): v for k, v in audit["per_class_recall"].items()}
    header = {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "application": {"name": "inspector", "version": __version__},
        "project": project.name,
        "classes": [{"name": names[c], "color": colors.get(int(c), ""), "id": int(c)} for c in snapshot.classes],
        "extractor": project_extractor(project).params(),
        "model": spec,
        "training": {
            "labels_per_class": {names[int(k)]: v for k, v in training.metrics["class_counts"].items()},
            "n_labels": int(sum(training.metrics["class_counts"].values())),
            "n_audit_labels": int(training.metrics.get("n_audit", 0)),
            "n_images_in_project": int(len(snapshot.image_ids)),
            "latest_model_version_in_project": training.model_version,
            "trained_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "note": "trained for export on every current class label of the project with its learner settings",
        },
        "metrics": {
            "accuracy_estimate": _estimate_for_file(training.metrics.get("estimate")),
            "goals": _goals_for_file(project, training),
            "audit_estimate": audit,
            "audit_note": (audit or {}).get("basis") or "no audit labels: no honest accuracy estimate yet",
            "cross_validation_optimistic": training.cross_validation,
        },
        "reject_threshold": training.threshold,
    }
    header.update(confidence_header(training, names))
    if training.model.novelty is not None:
        arrays.update(training.model.novelty.arrays())
    return write_container(out_path, header, arrays)


def _estimate_for_file(shown) -> dict:
    """The accuracy estimate shown in the app, with its interval and its method in words."""
    from inspector.core.learning import estimators

    if not shown or shown.get("estimate") is None:
        return {"estimate": None, "interval": None, "method": estimators.METHOD_WORDS["none"]}
    bound = shown.get("lower_bound")
    return {"estimate": shown["estimate"], "interval": shown["interval"],
            # what a target on accuracy is judged on (stopping.judge): the interval's lower end is a
            # one-sided 97.5 % bound, this one is one-sided 95 %
            "lower_bound": bound,
            "lower_bound_level": None if bound is None else f"one-sided {100 * (shown.get('lower_bound_level') or 0.95):.0f} %",
            "method": estimators.method_words(shown), "method_key": shown["method"],
            "n_labels": shown.get("n_labels"), "n_audit": shown.get("n_audit"),
            "estimators": {k: {"estimate": v.get("estimate"), "interval": v.get("interval")}
                           for k, v in (shown.get("estimators") or {}).items()},
            **({"by_the_same_estimator": _class_figures_for_file(shown["classes"])}
               if (shown.get("classes") or {}).get("method") == "difference" else {})}


def _goals_for_file(project, training: ExportTraining) -> Optional[dict]:
    """The project's target and budget judged on the estimate this file carries (None when neither
    is set): what the engineer set out to show, and whether these labels show it."""
    from inspector.core.learning import stopping

    target, budget = stopping.read_goals(project)
    if target is None and budget is None:
        return None
    n_labels = int(sum(training.metrics["class_counts"].values()))
    status = stopping.goal_status(target, budget, n_labels, training.metrics).as_dict()
    return {k: status[k] for k in ("target", "target_state", "target_sentence", "budget", "labels", "budget_sentence")}


def _class_figures_for_file(per_class: dict) -> dict:
    """Macro-F1, escape rate and per-class recall/precision (class ids as keys) with intervals."""
    keys = ("macro_f1", "macro_f1_interval", "escape_rate", "escape_rate_interval", "method_words", "n_sampled")
    return {**{k: per_class.get(k) for k in keys if k in per_class}, "per_class": per_class.get("per_class", {})}


def confidence_header(training: ExportTraining, names: dict) -> dict:
    """The model file's calibration, acceptable classes, decision rule, novelty and escape figures."""
    from inspector.core.learning.routing import REVIEW_RULE

    snapshot, model = training.snapshot, training.model
    calibration = model.calibration.to_dict()
    calibration.update({k: v for k, v in training.metrics.get("calibration", {}).items() if k.startswith("reliability")})
    escape = training.metrics.get("escape")
    return {
        "probability_calibration": calibration,
        "acceptable_classes": [names[int(c)] for c in snapshot.classes if int(c) in snapshot.acceptable],
        "review_rule": {**REVIEW_RULE, "threshold_applies_to": "calibrated probability of an acceptable class"
                        if snapshot.acceptable else "calibrated probability of the predicted class",
                        "route_all_to_review": training.threshold.get("value") is None},
        "novelty": None if model.novelty is None else model.novelty.to_header(),
        "escape_estimate": escape,
    }
