"""Where each part goes on the line (pass, defect path, review) and the escape-safe review threshold.

The decision rule (see :mod:`inspector.core.learning.acceptance` for acceptable classes and the
escape rate):

1. A **novel** part (unlike anything labelled, :mod:`inspector.core.learning.novelty`) goes to
   review, whatever the model predicts: nobody has shown the model anything like it.
2. A model that was **not shown safe** (too few labels to show the escape target) routes every
   part to review.
3. A part whose most probable class is a **defect** class goes down the defect path: it is set
   aside as defective. It cannot escape; at worst a good part is scrapped or re-inspected there,
   which the line's defect station handles anyway. (No review flag: the review station is for
   parts that would otherwise pass.)
4. A part predicted **acceptable** passes only when its calibrated probability of being
   acceptable (the sum over acceptable classes) is at least the review threshold; below it the
   part goes to review ("low confidence").

Projects without an acceptable class (every class a defect kind, as in a defect-sorting
station) use the same rule with "acceptable" read as "this prediction": a part passes with its
predicted class when the top probability reaches the threshold, otherwise it goes to review, and
an escape is a wrong class that was not reviewed.

The threshold is chosen on out-of-sample predictions (cross-validation over the labels) as the
**lowest** one (smallest review share) whose one-sided 95 % upper confidence bound on the escape
rate is at most the engineer's target (default 1 %). When no threshold shows that (too few
defective examples, or escapes even at the strictest threshold) the model is *not shown safe*:
it routes every part to review, and :func:`choose_threshold` says how many more labels of which
classes would let it choose.
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np


#: settings key (JSON float): the escape-rate target, share of defective parts passed unseen
SETTING_ESCAPE_TARGET = "escape_target"
DEFAULT_ESCAPE_TARGET = 0.01
#: a threshold never goes below this: passing a part needs a majority for "acceptable"
MIN_THRESHOLD = 0.5

PASS, DEFECT, REVIEW = "pass", "defect", "review"
#: the decision rule as the model file states it
REVIEW_RULE = {
    "paths": [PASS, DEFECT, REVIEW],
    "rule": "novel parts go to review; with route_all_to_review every part goes to review; a part whose most "
            "probable class is a defect class goes to the defect path; a part predicted acceptable passes when "
            "its calibrated probability of being acceptable is at least the threshold, else it goes to review",
    "escape_rate": "defective parts passed without review / defective parts",
}
REASON_LOW = "low confidence"
REASON_NOVEL = "novel"
REASON_BOTH = "low confidence + novel"
REASON_NOT_SAFE = "not shown safe"


def escape_target(project) -> float:
    """The project's escape-rate target (settings key :data:`SETTING_ESCAPE_TARGET`)."""
    try:
        value = float(project.get_setting(SETTING_ESCAPE_TARGET, DEFAULT_ESCAPE_TARGET))
    except (TypeError, ValueError):
        return DEFAULT_ESCAPE_TARGET
    return value if 0.0 < value < 1.0 else DEFAULT_ESCAPE_TARGET


def acceptable_probability(proba: np.ndarray, acceptable_columns: np.ndarray) -> np.ndarray:
    """Per row: the probability of an acceptable class (or of the top class when none is acceptable)."""
    proba = np.asarray(proba, np.float64)
    if not np.any(acceptable_columns):
        return proba.max(axis=1) if proba.size else np.zeros(len(proba))
    return proba[:, np.asarray(acceptable_columns, bool)].sum(axis=1)


def route(proba: np.ndarray, acceptable_columns: np.ndarray, threshold: Optional[float],
          novel: Optional[np.ndarray] = None) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Apply the decision rule to calibrated ``proba`` (rows: parts, columns: classes).

    ``acceptable_columns`` marks the acceptable class columns; ``threshold`` None means the model
    was not shown safe (everything to review); ``novel`` marks novel parts. Returns
    ``(path, review, reasons)``: path per part ('pass', 'defect', 'review'), the review flag,
    and the review reason ('' when not reviewed).
    """
    proba = np.asarray(proba, np.float64)
    n = len(proba)
    acc = np.asarray(acceptable_columns, bool)
    novel = np.zeros(n, bool) if novel is None else np.asarray(novel, bool)
    if n == 0:
        return np.zeros(0, "<U6"), np.zeros(0, bool), []
    top = np.argmax(proba, axis=1)
    top_acceptable = acc[top] if acc.any() else np.ones(n, bool)
    p_acc = acceptable_probability(proba, acc)
    if threshold is None:
        low = np.ones(n, bool)
    else:
        low = top_acceptable & (p_acc < float(threshold))
    review = low | novel
    path = np.where(review, REVIEW, np.where(top_acceptable, PASS, DEFECT)).astype("<U6")
    reasons = []
    for i in range(n):
        if not review[i]:
            reasons.append("")
        elif threshold is None:
            reasons.append(REASON_NOT_SAFE + (" + novel" if novel[i] else ""))
        elif low[i] and novel[i]:
            reasons.append(REASON_BOTH)
        elif novel[i]:
            reasons.append(REASON_NOVEL)
        else:
            reasons.append(REASON_LOW)
    return path, review, reasons


def _columns_of(y: np.ndarray, classes: np.ndarray) -> np.ndarray:
    index = {int(c): j for j, c in enumerate(np.asarray(classes).tolist())}
    return np.array([index[int(c)] for c in np.asarray(y).tolist()], np.int64)


def escapes_at(y: np.ndarray, proba: np.ndarray, classes: np.ndarray, acceptable_columns: np.ndarray,
               threshold: Optional[float], novel: Optional[np.ndarray] = None) -> dict:
    """Escapes and review share of the decision rule on labelled parts (any predictions)."""
    acc = np.asarray(acceptable_columns, bool)
    path, review, _ = route(proba, acc, threshold, novel)
    passed = path == PASS
    defective, _, n_def, _ = _defective_and_passable(y, np.asarray(proba, np.float64), classes, acc)
    escapes = int(np.sum(passed & defective))
    n = int(len(defective))
    return {"n": n, "n_defective": n_def, "escapes": escapes,
            "escape_rate": escapes / n_def if n_def else None,
            "review_share": float(review.mean()) if n else None,
            "pass_share": float(passed.mean()) if n else None}


def escape_upper_bound(escapes: int, n: int, confidence: float = 0.95) -> float:
    """One-sided exact (Clopper-Pearson) upper confidence bound on an escape rate of ``escapes`` in
    ``n``: guaranteed coverage, so "shown safe" never rests on a lucky small sample (no escapes
    in 300 defective parts bounds the rate at 1.0 %)."""
    from scipy.stats import beta

    if n <= 0:
        return 1.0
    if escapes >= n:
        return 1.0
    return float(beta.ppf(confidence, escapes + 1, n - escapes))


_upper = escape_upper_bound


def defectives_needed(rate: float, target: float, limit: int = 1_000_000) -> Optional[int]:
    """Smallest number of defective out-of-sample parts whose upper bound at ``rate`` meets ``target``."""
    if rate >= target:
        return None
    n = 1
    while n <= limit:
        if _upper(int(math.floor(rate * n)), n) <= target:
            return n
        n = max(n + 1, int(n * 1.01))
    return None


def _defective_and_passable(y: np.ndarray, proba: np.ndarray, classes: np.ndarray,
                            acc: np.ndarray) -> tuple[np.ndarray, np.ndarray, int, np.ndarray]:
    """Per labelled part: defective (without acceptable classes: an escape is a wrong class passed) and
    predicted acceptable (may pass); the number of parts that count as defective; and the
    probability a threshold is compared with."""
    cols = _columns_of(y, classes)
    if acc.any():
        defective = ~acc[cols]
        top_acc = acc[np.argmax(proba, axis=1)]
        n_def = int(defective.sum())
    else:
        defective = np.argmax(proba, axis=1) != cols
        top_acc = np.ones(len(y), bool)
        n_def = int(len(y))
    return defective, top_acc, n_def, acceptable_probability(proba, acc)


#: operating points list the lowest threshold with at most 0, 1, ... this many out-of-sample escapes
OPERATING_POINT_ESCAPES = 3


def operating_points(y: np.ndarray, proba: np.ndarray, classes: np.ndarray, acceptable_columns: np.ndarray,
                     target: float = DEFAULT_ESCAPE_TARGET, pool_proba: Optional[np.ndarray] = None,
                     max_escapes: int = OPERATING_POINT_ESCAPES) -> list[dict]:
    """The thresholds an engineer could set by hand, with what the labels say about each.

    For e = 0, 1, ... ``max_escapes``: the lowest threshold (smallest review share) at which at
    most e defective out-of-sample parts pass, with the escapes, their one-sided 95 % upper bound,
    whether that bound meets ``target``, the review share among the labelled parts and, given
    ``pool_proba`` (calibrated probabilities of the project's unlabelled images), among every
    image still to come. Thresholds that repeat (no defective part between them) are listed once.
    Empty without defective out-of-sample parts.

    Why: with a few dozen defective labels no threshold can *show* a 1 % escape rate (that takes
    about 300 defective parts without an escape), so the model routes every part to review; these
    points let the engineer see what each choice costs and risks, and pass one explicitly
    (``export-model --review-threshold``) with the evidence in front of them.
    """
    y = np.asarray(y)
    proba = np.asarray(proba, np.float64)
    acc = np.asarray(acceptable_columns, bool)
    if len(y) == 0:
        return []
    defective, top_acc, n_def, p_acc = _defective_and_passable(y, proba, classes, acc)
    if n_def == 0:
        return []
    # the escapes' own probabilities, highest first: the e-th escape-free threshold lies just above the
    # (e+1)-th highest of them
    escaped = np.sort(p_acc[top_acc & defective])[::-1]
    if pool_proba is not None and len(pool_proba):
        pool_proba = np.asarray(pool_proba, np.float64)
        pool_top_acc = acc[np.argmax(pool_proba, axis=1)] if acc.any() else np.ones(len(pool_proba), bool)
        pool_p_acc = acceptable_probability(pool_proba, acc)
    else:
        pool_proba = None
    points: list[dict] = []
    for e in range(max_escapes + 1):
        if e < len(escaped):
            # the next value of three decimals above the escape's probability: what the engineer
            # reads is what keeps it out (0.900 would still pass a defective part at 0.9000)
            t = round(math.floor(float(escaped[e]) * 1000.0 + 1e-9) / 1000.0 + 0.001, 3)
            if t >= 1.0:
                break  # an escape at 0.999 or more: no threshold below 1 keeps it out
        else:
            t = MIN_THRESHOLD
        t = max(t, MIN_THRESHOLD)
        if points and abs(points[-1]["threshold"] - t) < 1e-12:
            continue
        # the rule of route() on arrays already at hand (no novelty here: it only adds to the review)
        escapes = int(np.sum(escaped >= t))
        upper = _upper(escapes, n_def)
        point = {"threshold": t, "escapes": escapes, "n_defective": n_def,
                 "escape_rate": escapes / n_def, "escape_upper": upper, "meets_target": bool(upper <= target),
                 "review_share_labelled": float(np.mean(top_acc & (p_acc < t))), "review_share_images": None}
        if pool_proba is not None:
            point["review_share_images"] = float(np.mean(pool_top_acc & (pool_p_acc < t)))
        points.append(point)
        if t <= MIN_THRESHOLD:
            break
    return points


def operating_point_words(point: dict) -> str:
    """One operating point in a sentence (CLI and dashboard); "" for a record that is not one (a
    damaged or foreign project file must not stop the dashboard)."""
    numbers = ("threshold", "escapes", "n_defective", "escape_upper")
    if not isinstance(point, dict) or not all(isinstance(point.get(k), (int, float)) for k in numbers):
        return ""
    share = point.get("review_share_images")
    where = "of the project's unlabelled images" if share is not None else "of the labelled parts"
    share = point.get("review_share_labelled") if share is None else share
    if not isinstance(share, (int, float)):
        return ""
    return (f"threshold {point['threshold']:.3f}: {point['escapes']} of {point['n_defective']} defective parts passed "
            f"out of sample (95 % upper bound {point['escape_upper']:.1%}), review {share:.0%} {where}")


def choose_threshold(y: np.ndarray, proba: np.ndarray, classes: np.ndarray, acceptable_columns: np.ndarray,
                     target: float = DEFAULT_ESCAPE_TARGET, class_names: Optional[dict] = None,
                     basis: str = "cross-validation over the labels",
                     pool_proba: Optional[np.ndarray] = None) -> dict:
    """The escape-safe review threshold from out-of-sample calibrated ``proba`` for labels ``y``.

    Returns a JSON-ready dict: ``value`` (None when not shown safe), ``shown_safe``, ``target``,
    the out-of-sample ``escape_rate`` / ``escape_upper`` / ``review_share`` at that value,
    ``labels_needed`` ({class name: more labels}), a plain ``explanation`` and the
    ``operating_points`` an engineer could set by hand (:func:`operating_points`; ``pool_proba``:
    calibrated probabilities of the unlabelled images, for the review share each would cost).
    """
    y = np.asarray(y)
    classes = np.asarray(classes)
    acc = np.asarray(acceptable_columns, bool)
    names = class_names or {}
    proba = np.asarray(proba, np.float64)
    result: dict = {"value": None, "shown_safe": False, "target": float(target), "confidence": "one-sided 95 % (Clopper-Pearson)",
                    "basis": basis, "n": int(len(y)), "escape_rate": None, "escape_upper": None,
                    "review_share": None, "labels_needed": {}, "mode": "acceptable" if acc.any() else "top class"}
    defective, top_acc, n_def, p_acc = _defective_and_passable(y, proba, classes, acc)
    result["n_defective"] = n_def
    result["operating_points"] = operating_points(y, proba, classes, acc, target, pool_proba)
    # candidate thresholds: every distinct out-of-sample value (a part passes when p >= t)
    cand = np.unique(np.concatenate([p_acc[top_acc], [MIN_THRESHOLD]]))
    cand = cand[cand >= MIN_THRESHOLD]
    # passes and escapes for each candidate, vectorised: sorted p of parts predicted acceptable
    p_pass = np.sort(p_acc[top_acc])
    p_esc = np.sort(p_acc[top_acc & defective])
    n_pass = len(p_pass) - np.searchsorted(p_pass, cand, side="left")
    n_esc = len(p_esc) - np.searchsorted(p_esc, cand, side="left")
    uppers = np.array([_upper(int(e), n_def) for e in n_esc]) if n_def else np.ones(len(cand))
    ok = uppers <= target
    defect_names = [names.get(int(c), str(c)) for j, c in enumerate(classes.tolist()) if acc.any() and not acc[j]]
    if ok.any() and n_def:
        best = int(np.flatnonzero(ok)[0])  # lowest threshold = smallest review share
        t = float(cand[best])
        stats = escapes_at(y, proba, classes, acc, t)
        result.update(value=t, shown_safe=True, escape_rate=stats["escape_rate"], escape_upper=float(uppers[best]),
                      review_share=stats["review_share"], escapes=int(n_esc[best]))
        result["explanation"] = (
            f"A part predicted acceptable passes when its calibrated probability of being acceptable is at least "
            f"{t:.3f}. On {len(y)} out-of-sample predictions ({n_def} defective) this let {int(n_esc[best])} defective "
            f"parts through ({stats['escape_rate']:.2%}; 95 % upper bound {uppers[best]:.2%} <= target {target:.2%}) "
            f"and sent {stats['review_share']:.0%} of parts to review.")
        return result
    # not shown safe: how many more defective examples would show the target at the best rate seen
    strict = escapes_at(y, proba, classes, acc, float(cand[-1]) if len(cand) else 1.0)
    rate = (strict["escape_rate"] or 0.0) if n_def else 0.0
    needed = defectives_needed(rate, target)
    if needed is not None:
        more = max(needed - n_def, 1)
        if acc.any():
            counts = {names.get(int(c), str(c)): int(np.sum(y == c)) for j, c in enumerate(classes.tolist()) if not acc[j]}
            total = sum(counts.values())
            # spread over the defect classes in their current proportions (at least one each)
            result["labels_needed"] = {name: max(1, int(math.ceil(more * (cnt / total if total else 1 / len(counts)))))
                                       for name, cnt in counts.items()}
        else:
            result["labels_needed"] = {"any class": more}
        what = ", ".join(f"{v} {k}" for k, v in result["labels_needed"].items())
        result["explanation"] = (
            f"NOT SHOWN SAFE: every part is routed to review. {n_def} defective out-of-sample predictions cannot show "
            f"at most {target:.2%} escapes with 95 % confidence (needs about {needed}); label about {more} more "
            f"defective parts ({what}) and export again, or pass an explicit review threshold.")
    else:
        result["labels_needed"] = {name: None for name in defect_names} if defect_names else {}
        result["explanation"] = (
            f"NOT SHOWN SAFE: every part is routed to review. Even at the strictest threshold "
            f"{strict['escapes']} of {n_def} defective out-of-sample parts ({rate:.1%}) were predicted acceptable, above "
            f"the {target:.2%} target: label more defect examples that look like acceptable parts"
            + (f" ({', '.join(defect_names)})" if defect_names else "") + " and export again.")
    result["escape_rate_strictest"] = rate
    return result
