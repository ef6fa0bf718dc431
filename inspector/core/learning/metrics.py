"""Honest numbers: accuracy estimated from the random audit labels, with intervals.

Actively chosen labels are a biased sample (they crowd the decision boundary), so figures
computed on them mislead. The audit picks are drawn uniformly at random from the unlabelled
pool, so the model's accuracy on them is an unbiased estimate of its accuracy on unlabelled
images. To keep that estimate honest the audit images must not have been trained on: the
estimate comes from a model fitted on every label *except* the audit ones (slightly
conservative for the model that uses all labels). Cross-validation on all labels is reported
separately and marked optimistic.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np

Z95 = 1.959963984540054
#: below this many audit labels no bootstrap interval is given for macro-F1
MIN_AUDIT_FOR_F1_INTERVAL = 20


def wilson_interval(successes: int, n: int, z: float = Z95, continuity: bool = True) -> tuple[float, float]:
    """Wilson score interval for a proportion; returns (low, high), (0, 1) when n == 0.

    With ``continuity`` (the default) the continuity-corrected form (Newcombe 1998, method 4).
    Why: audit accuracy is usually near 100 % with few audit labels, where the plain Wilson
    interval under-covers (one error in 30 audit labels puts its upper end at 99.4 %, below a
    true 99.5 %); on NEU simulations it covered the true accuracy 84 % of the time, the
    corrected one keeps close to the nominal 95 %.
    """
    if n <= 0:
        return (0.0, 1.0)
    p = successes / n
    if not continuity:
        denom = 1.0 + z * z / n
        centre = (p + z * z / (2 * n)) / denom
        half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
        return (max(0.0, centre - half), min(1.0, centre + half))
    z2 = z * z
    if successes == 0:
        low = 0.0
    else:
        low = (2 * n * p + z2 - 1 - z * math.sqrt(max(0.0, z2 - 2 - 1 / n + 4 * p * (n * (1 - p) + 1)))) / (2 * (n + z2))
    if successes == n:
        high = 1.0
    else:
        high = (2 * n * p + z2 + 1 + z * math.sqrt(max(0.0, z2 + 2 - 1 / n + 4 * p * (n * (1 - p) - 1)))) / (2 * (n + z2))
    return (max(0.0, low), min(1.0, high))


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray, classes: Optional[Sequence] = None) -> float:
    """Unweighted mean F1 over ``classes`` (default: classes present in truth or prediction)."""
    y_true = np.asarray(y_true)
    y_pred = np.asarray(y_pred)
    if classes is None:
        classes = np.union1d(y_true, y_pred)
    scores = []
    for c in classes:
        tp = np.sum((y_true == c) & (y_pred == c))
        fp = np.sum((y_true != c) & (y_pred == c))
        fn = np.sum((y_true == c) & (y_pred != c))
        denom = 2 * tp + fp + fn
        scores.append(0.0 if denom == 0 else 2 * tp / denom)
    return float(np.mean(scores)) if scores else float("nan")


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, classes: Sequence) -> np.ndarray:
    """Counts[i, j] = images of class ``classes[i]`` predicted as ``classes[j]``."""
    index = {c: i for i, c in enumerate(classes)}
    m = np.zeros((len(classes), len(classes)), dtype=np.int64)
    for t, p in zip(np.asarray(y_true).tolist(), np.asarray(y_pred).tolist()):
        if t in index and p in index:
            m[index[t], index[p]] += 1
    return m


def per_class_precision_recall(confusion: np.ndarray, classes: Sequence) -> list[dict]:
    """Precision and recall of each class from a confusion matrix (rows true, columns predicted,
    both in the order of ``classes``), each with its 95 % :func:`wilson_interval`.

    One dict per class, in order: ``class``; ``n_true`` (images of the class) with ``recall`` and
    ``recall_ci``; ``n_predicted`` (images predicted as the class) with ``precision`` and
    ``precision_ci``. A rate and its interval are None when its count is 0 (nothing to estimate
    from), also for an empty matrix."""
    m = np.asarray(confusion, np.int64)
    rows = []
    for i, c in enumerate(classes):
        hits = int(m[i, i]) if m.size else 0
        n_true = int(m[i].sum()) if m.size else 0
        n_predicted = int(m[:, i].sum()) if m.size else 0
        rows.append({
            "class": c,
            "n_true": n_true,
            "recall": hits / n_true if n_true else None,
            "recall_ci": wilson_interval(hits, n_true) if n_true else None,
            "n_predicted": n_predicted,
            "precision": hits / n_predicted if n_predicted else None,
            "precision_ci": wilson_interval(hits, n_predicted) if n_predicted else None,
        })
    return rows


def audit_estimate(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    classes: Sequence,
    n_bootstrap: int = 1000,
    random_state=0,
) -> dict:
    """Estimate accuracy, macro-F1 and per-class recall from audit labels, with 95 % intervals.

    ``y_true`` are the audit labels, ``y_pred`` the predictions of a model not trained on them.
    Accuracy and recall use (continuity-corrected) Wilson intervals; macro-F1 a percentile bootstrap (over classes seen
    in the audit). Returns a JSON-ready dict; with no audit labels every estimate is None.
    """
    y_true = np.asarray(y_true)
    y_pred = np.asarray(y_pred)
    n = int(len(y_true))
    classes = list(classes)
    result: dict = {"n_audit": n, "accuracy": None, "accuracy_ci": None, "macro_f1": None, "macro_f1_ci": None,
                    "per_class_recall": {}, "confusion": confusion_matrix(y_true, y_pred, classes).tolist(),
                    "classes": classes,
                    "basis": "random audit labels, predicted by a model trained without them"}
    if n == 0:
        return result
    correct = int(np.sum(y_true == y_pred))
    result["accuracy"] = correct / n
    result["accuracy_ci"] = list(wilson_interval(correct, n))
    present = [c for c in classes if np.any(y_true == c)]
    result["macro_f1"] = macro_f1(y_true, y_pred, present)
    rng = np.random.default_rng(random_state)
    result["macro_f1_ci_note"] = None
    if n < MIN_AUDIT_FOR_F1_INTERVAL:
        # a bootstrap of a handful of labels that all agree gives a zero-width interval: that is
        # no evidence of precision, so no interval is given at all
        result["macro_f1_ci_note"] = f"too few audit labels for an interval (needs {MIN_AUDIT_FOR_F1_INTERVAL})"
    elif n_bootstrap > 0:
        boots = np.empty(n_bootstrap)
        for b in range(n_bootstrap):
            rows = rng.integers(0, n, n)
            t = y_true[rows]
            boots[b] = macro_f1(t, y_pred[rows], [c for c in present if np.any(t == c)])
        lo, hi = float(np.percentile(boots, 2.5)), float(np.percentile(boots, 97.5))
        if hi - lo < 1e-9:
            result["macro_f1_ci_note"] = "every bootstrap resample agreed: no interval given"
        else:
            result["macro_f1_ci"] = [lo, hi]
    for c in classes:
        rows = y_true == c
        k = int(rows.sum())
        hits = int(np.sum(y_pred[rows] == c))
        result["per_class_recall"][str(c)] = {
            "n": k,
            "recall": hits / k if k else None,
            "ci": list(wilson_interval(hits, k)) if k else None,
        }
    return result


def curve_area(label_counts: Sequence[float], values: Sequence[float]) -> float:
    """Normalised area under a learning curve (mean height over the label range, trapezoids)."""
    x = np.asarray(label_counts, dtype=float)
    v = np.asarray(values, dtype=float)
    if len(x) < 2:
        return float(v[0]) if len(v) else float("nan")
    return float(np.sum((v[1:] + v[:-1]) * np.diff(x)) / 2.0 / (x[-1] - x[0]))


def labels_to_reach(label_counts: Sequence[int], values: Sequence[float], target: float) -> Optional[int]:
    """The first label count whose value reaches ``target``, or None if it never does."""
    for x, v in zip(label_counts, values):
        if v is not None and v >= target:
            return int(x)
    return None


def learning_curve(model_versions: Sequence) -> list[dict]:
    """One point per model version: label count and the accuracy estimate recorded with it.

    ``model_versions`` are store ModelVersion records (or dicts) whose ``metrics`` hold the
    ``estimate`` (the shown estimator, see learner.estimate_accuracy) or, for versions written
    before it existed, the ``audit`` estimate.
    """
    points = []
    for mv in model_versions:
        metrics = mv["metrics"] if isinstance(mv, dict) else mv.metrics
        version = mv["version"] if isinstance(mv, dict) else mv.version
        n_labels = mv["n_labels"] if isinstance(mv, dict) else mv.n_labels
        audit = (metrics or {}).get("audit") or {}
        shown = (metrics or {}).get("estimate") or {}
        bound = None
        if shown.get("estimate") is not None:
            accuracy, ci, method = shown["estimate"], shown.get("interval"), shown.get("method", "audit")
            bound = shown.get("lower_bound")  # one-sided 95 % (versions recorded before it: None)
        else:  # versions recorded before the estimators: the audit estimate
            accuracy, ci, method = audit.get("accuracy"), audit.get("accuracy_ci"), "audit"
        points.append({
            "version": version,
            "n_labels": n_labels,
            "n_audit": audit.get("n_audit", (metrics or {}).get("n_audit", 0)),
            "accuracy": accuracy,
            "accuracy_ci": ci,
            "accuracy_bound": bound,
            "method": method if accuracy is not None else "none",
            "macro_f1": audit.get("macro_f1"),
            "macro_f1_ci": audit.get("macro_f1_ci"),
            "escape_rate": ((metrics or {}).get("escape") or {}).get("escape_rate"),
            "escape_rate_ci": ((metrics or {}).get("escape") or {}).get("escape_rate_ci"),
            "prediction_change": (metrics or {}).get("prediction_change"),
            "class_counts": (metrics or {}).get("class_counts"),
        })
    return points


def plateau_signal(curve: Sequence[dict], min_audit: int = 20, change_threshold: float = 0.01,
                   class_names: Optional[dict] = None) -> dict:
    """Say in plain words whether more labels still pay off.

    Two signals: the fraction of unlabelled predictions that changed between the last model
    versions (stable predictions mean new labels barely move the model), and whether the audit
    estimate still rises beyond its own uncertainty. Returns {"status", "message"} with status
    'too_early', 'improving' or 'plateau'. ``class_names`` (class id -> name) names the classes
    that have no label yet.
    """
    if len(curve) < 3:
        return {"status": "too_early", "message": "Too early to tell: train a few more model versions."}
    counts = curve[-1].get("class_counts") or {}
    unseen = [c for c, n in counts.items() if not n]
    if unseen:
        # stable predictions mean nothing while whole classes are unlabelled: a model that has
        # never seen a class never predicts it, however many more labels of the others it gets
        # a class list often names a defect a lot of parts does not have: say which, and the way out
        names = {str(k): str(v) for k, v in (class_names or {}).items()}
        which = [names.get(str(c), str(c)) for c in unseen]
        listed = ", ".join(which[:4]) + (f" and {len(which) - 4} more" if len(which) > 4 else "")
        return {"status": "improving",
                "message": f"Keep labelling: {len(unseen)} of {len(counts)} classes have no labels yet ({listed}), "
                           "and the model cannot recognise a class it has never seen. If a class does not occur "
                           "in these images, delete it in the app (Project ▸ Classes)."}
    changes = [p.get("prediction_change") for p in curve[-3:]]
    stable = all(c is not None and c < change_threshold for c in changes[-2:])
    last = curve[-1]
    n_audit = last.get("n_audit") or 0
    acc_note = ""
    if last.get("accuracy") is not None and last.get("accuracy_ci"):
        lo, hi = last["accuracy_ci"]
        # the basis in words: a difference estimate rests on every sampled label, not on the audit labels
        basis = {"ppi": f"predictions corrected by {n_audit} audit labels",
                 "weighted": f"every sampled label weighted, {n_audit} audit labels",
                 "difference": f"predictions corrected by every sampled label, {n_audit} of them audit labels",
                 }.get(last.get("method"), f"{n_audit} audit labels")
        acc_note = f" Estimated accuracy {last['accuracy']:.0%} (95 % interval {lo:.0%}-{hi:.0%}, {basis})."
    rising = False
    earlier = [p for p in curve[:-1] if p.get("accuracy") is not None]
    if earlier and last.get("accuracy") is not None and last.get("accuracy_ci"):
        rising = last["accuracy_ci"][0] > earlier[max(0, len(earlier) - 3)]["accuracy"]
    if stable and not rising:
        msg = (f"More labels have stopped paying off: the last model versions changed fewer than "
               f"{change_threshold:.0%} of predictions.{acc_note}")
        if n_audit < min_audit:
            msg += f" Label {min_audit - n_audit} more audit images to confirm the accuracy."
        return {"status": "plateau", "message": msg}
    return {"status": "improving",
            "message": "Labels are still changing the model; keep labelling." + acc_note}


def prediction_change(previous: Optional[np.ndarray], current: np.ndarray) -> Optional[float]:
    """Fraction of images whose predicted class changed between two model versions."""
    if previous is None or len(previous) != len(current) or len(current) == 0:
        return None
    return float(np.mean(np.asarray(previous) != np.asarray(current)))


def optimistic_cross_validation(X: np.ndarray, y: np.ndarray, kind: str = "logistic", folds: int = 5,
                                random_state=0) -> dict:
    """Cross-validated accuracy and macro-F1 on all labels: OPTIMISTIC, never the headline.

    Actively chosen labels are not a random sample, so this figure is labelled as optimistic.
    Returns None estimates when there are too few labels per class.
    """
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    from inspector.core.learning.models import make_model

    y = np.asarray(y)
    _, counts = np.unique(y, return_counts=True)
    k = int(min(folds, counts.min())) if len(counts) > 1 else 0
    out = {"kind": "cross-validation on all labels (optimistic: actively chosen labels are not a random sample)",
           "accuracy": None, "macro_f1": None, "folds": k}
    if k < 2:
        return out
    pred = cross_val_predict(make_model(kind, random_state=random_state), X, y,
                             cv=StratifiedKFold(k, shuffle=True, random_state=random_state))
    out["accuracy"] = float(np.mean(pred == y))
    out["macro_f1"] = macro_f1(y, pred)
    return out


def escape_estimate(y_true: np.ndarray, passed: np.ndarray, review: np.ndarray, acceptable: set) -> dict:
    """Escape rate and review share from audit labels, with 95 % Wilson intervals.

    ``y_true`` are the audit labels (class ids), ``passed`` whether the decision rule let each
    part pass without review, ``review`` whether it routed the part to a person (a part neither
    passed nor reviewed went down the defect path). The escape rate is the share of *defective*
    audit parts (true class not in ``acceptable``) that passed; see
    :mod:`inspector.core.learning.acceptance` for the exact definition. The review share is over
    every audit part. Returns a JSON-ready dict; a rate is None when it has no parts to count.
    """
    y_true = np.asarray(y_true)
    passed = np.asarray(passed, bool)
    review = np.asarray(review, bool)
    defective = np.array([int(c) not in acceptable for c in y_true.tolist()], bool)
    n, n_defective = int(len(y_true)), int(defective.sum())
    escapes = int(np.sum(passed & defective))
    n_review = int(review.sum())
    good = ~defective
    return {
        "n": n,
        "n_defective": n_defective,
        "escapes": escapes,
        "escape_rate": escapes / n_defective if n_defective else None,
        "escape_rate_ci": list(wilson_interval(escapes, n_defective)) if n_defective else None,
        "n_review": n_review,
        "review_share": n_review / n if n else None,
        "review_share_ci": list(wilson_interval(n_review, n)) if n else None,
        "acceptable_passed": int(np.sum(passed & good)),
        "n_acceptable": int(good.sum()),
        "basis": "random audit labels, predicted by a model trained without them",
        "definition": "escape rate = defective parts passed without review / defective parts; "
                      "review share = parts routed to a person / all parts",
    }
