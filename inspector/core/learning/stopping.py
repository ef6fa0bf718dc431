"""The loop's two stopping rules: label until a target on an honest figure is *shown*, or until
the labelling budget is spent.

A target on accuracy is shown when the estimate's one-sided 95 % lower bound clears it (the
question is one-sided: is the model at least this good?); the lower end of the two-sided 95 %
interval shown beside it is a 97.5 % bound, which asked for more labels than the question needs.
Macro-F1 and the escape rate (bootstrap intervals, less reliable in replays) are shown only when
the whole 95 % interval clears the target (its lower end for macro-F1, its upper end for the
escape rate). An estimate past the target whose bound does not yet clear it is "reached by the
point estimate, not yet shown": with few audit labels the estimate alone passes a target by
chance far too often (measured by tests/benchmarks/bench_stopping.py).

Repeated looks: the app judges the target after every retrain and announces the first time it
is shown, so the chance of a false "reached" is that of the first of many looks, not of one. The
rule does not spend its error over the looks (an anytime-valid confidence sequence would, at the
price of a wider bound at every look); what keeps the first declaration honest is measured
instead: over replays on NEU, ELPV and the generated inspection set, judged after every 10
labels as the app does, the first declaration fell while the true accuracy was below the target
in at most 5 % of runs (figures in README "Target and budget"). Two things make the looks far
from independent chances: successive estimates share most of their labels, and the estimate is
about models cross-fitted on fewer labels than the one judged, so it lags a rising curve.

The bound's form (issue 14, measured and rejected): near 1 the Wilson bound at the effective
size lies about twice as far below the estimate as estimate - 1.645 se, which would declare a
target sooner (35 labels on NEU). Its one-sided coverage was studied on replays
(tests/benchmarks/bench_estimators.py --dump-points; 100/200/300 labels, three strategies): the
test accuracy fell below the normal bound at 6.2 % of points on the generated set (20 seeds;
7.9 % of those with an estimate >= 0.95) and 6.7 % on NEU (10 seeds), against 1.7 % and 1.1 %
for the Wilson bound; 93-94 % one-sided coverage is short of the 95 % the bound promises, so the
Wilson bound stays (estimators.DIFFERENCE_INTERVAL; figures in README "Target and budget"). On
ELPV (texture features, 10 seeds) every form missed at 9.6 % of points: there the estimate itself
reads high with uncertain_diverse (40 seeds: +0.016 to +0.040, estimators.difference_accuracy),
which no bound form repairs; the model gap's span (estimators.model_gap) lowered it to 3.9 % of
points (30 seeds, uncertain_diverse and random, 10.7 % without it on the same replays).

Every figure shown against the target comes through :func:`figure_estimate`, the one place that
reads an estimate out of a model version's recorded metrics.

Also: how many labels the learning curve's trend says are still needed, with its uncertainty
(:func:`labels_still_needed`), and reading/writing both rules as project settings.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from inspector.core.errors import UserError
from inspector.core.learning.metrics import Z95

#: project settings keys (values are JSON): {"figure": "accuracy", "value": 0.95} and an int
SETTING_TARGET = "goal.target"
SETTING_BUDGET = "goal.budget"
#: which announcements the labelling view has made (so each is made once): {"target": key, "budget": n}
SETTING_ANNOUNCED = "goal.announced"


@dataclass(frozen=True)
class Figure:
    key: str
    words: str  # as in a sentence: "accuracy"
    higher_is_better: bool = True


FIGURES = {
    "accuracy": Figure("accuracy", "accuracy"),
    "macro_f1": Figure("macro_f1", "macro-F1"),
    # defective parts passed without review / defective parts (inspector.core.learning.acceptance)
    "escape_rate": Figure("escape_rate", "escape rate", higher_is_better=False),
}
_ALIASES = {"acc": "accuracy", "accuracy": "accuracy", "macro_f1": "macro_f1", "macro-f1": "macro_f1",
            "macrof1": "macro_f1", "f1": "macro_f1", "escape_rate": "escape_rate", "escape-rate": "escape_rate",
            "escape": "escape_rate", "escapes": "escape_rate"}
#: the learning curve's keys (metrics.learning_curve) for each figure: value, interval
CURVE_KEYS = {"accuracy": ("accuracy", "accuracy_ci"), "macro_f1": ("macro_f1", "macro_f1_ci"),
              "escape_rate": ("escape_rate", "escape_rate_ci")}
#: and its one-sided 95 % bound where the curve has one (judge uses it before the interval)
CURVE_BOUND_KEYS = {"accuracy": "accuracy_bound"}


@dataclass(frozen=True)
class Target:
    figure: str  # a key of FIGURES
    value: float  # 0..1

    @property
    def words(self) -> str:
        f = FIGURES[self.figure]
        return f"{f.words} {'≥' if f.higher_is_better else '≤'} {_pct(self.value)}"

    def as_setting(self) -> dict:
        return {"figure": self.figure, "value": self.value}

    def as_text(self) -> str:
        return f"{self.figure}={self.value:g}"


def parse_target(text: str) -> Target:
    """``accuracy=0.95``, ``accuracy=95%``, ``macro_f1=0.9`` (also ``macro-F1:0.9``), ``escape_rate=0.01``
    (at most) -> Target.
    Raises UserError with the accepted forms."""
    match = re.fullmatch(r"\s*([A-Za-z][A-Za-z0-9_\-]*)\s*[=:]\s*([0-9]*\.?[0-9]+)\s*(%?)\s*", text or "")
    if not match:
        raise UserError(f"cannot read target {text!r}: write it as FIGURE=VALUE, e.g. accuracy=0.95 or "
                        f"macro_f1=90% (figures: {', '.join(FIGURES)})")
    name, number, percent = match.groups()
    figure = _ALIASES.get(name.lower())
    if figure is None:
        raise UserError(f"unknown figure {name!r} for a target; choose {', '.join(FIGURES)}")
    if not percent and float(number) > 1.0:
        raise UserError(f"target {text.strip()!r} is ambiguous: write a fraction ({name}={float(number) / 100:g}) "
                        f"or a percentage ({name}={number}%)")
    value = float(number) / (100.0 if percent else 1.0)
    return make_target(figure, value)


def make_target(figure: str, value: float) -> Target:
    if figure not in FIGURES:
        raise UserError(f"unknown figure {figure!r} for a target; choose {', '.join(FIGURES)}")
    if not 0.0 < float(value) < 1.0:
        raise UserError(f"a target on {FIGURES[figure].words} must lie strictly between 0 and 1 (or 0 % and 100 %)")
    return Target(figure, float(value))


def check_budget(budget) -> Optional[int]:
    if budget is None:
        return None
    try:
        budget = int(budget)
    except (TypeError, ValueError):
        raise UserError(f"the labelling budget must be a whole number of labels, not {budget!r}") from None
    if budget < 1:
        raise UserError("the labelling budget must be at least 1 label (or none)")
    return budget


# --------------------------------------------------------------------------- project settings


def read_goals(project) -> tuple[Optional[Target], Optional[int]]:
    """The project's target and budget (None when unset). A damaged setting counts as unset."""
    raw = project.get_setting(SETTING_TARGET, None)
    target = None
    if isinstance(raw, dict):
        try:
            target = make_target(str(raw.get("figure")), float(raw.get("value")))
        except (UserError, TypeError, ValueError):
            target = None
    try:
        budget = check_budget(project.get_setting(SETTING_BUDGET, None))
    except UserError:
        budget = None
    return target, budget


def write_goals(project, target: Optional[Target], budget: Optional[int]) -> None:
    """Store both rules (None clears one). A changed rule may be announced again."""
    budget = check_budget(budget)
    old_target, old_budget = read_goals(project)
    project.set_setting(SETTING_TARGET, None if target is None else target.as_setting())
    project.set_setting(SETTING_BUDGET, budget)
    announced = dict(project.get_setting(SETTING_ANNOUNCED, {}) or {})
    if target != old_target:
        announced.pop("target", None)
    if budget != old_budget:
        announced.pop("budget", None)
    project.set_setting(SETTING_ANNOUNCED, announced)


# --------------------------------------------------------------------------- the estimate


@dataclass(frozen=True)
class FigureEstimate:
    """An honest figure with its 95 % interval, how it was made, and what it rests on."""

    figure: str
    estimate: Optional[float]
    interval: Optional[tuple[float, float]]
    method: str  # in words
    n_audit: int
    n_labels: int
    #: one-sided 95 % bound on the side a target is judged on (accuracy: lower), or None: then the
    #: interval's end is used
    bound: Optional[float] = None


def figure_estimate(metrics: Optional[dict], figure: str, n_labels: int = 0) -> FigureEstimate:
    """THE estimate a target is judged on, from a model version's recorded metrics (or the
    report of :func:`inspector.core.learning.learner.evaluation`, same figures).

    Accuracy: the estimate the project shows (``metrics["estimate"]``: the estimator chosen in
    :mod:`inspector.core.learning.estimators`), else the plain audit estimate. Macro-F1: the
    audit estimate with its bootstrap interval (none below 20 audit labels).
    """
    metrics = metrics or {}
    if not isinstance(metrics.get("estimate"), (dict, type(None))):  # learner.evaluation()'s report
        metrics = {"estimate": {"estimate": metrics.get("estimate"), "interval": metrics.get("interval"),
                                "lower_bound": metrics.get("lower_bound"),
                                "method_words": metrics.get("method"), "n_audit": metrics.get("n_audit", 0),
                                "n_labels": metrics.get("n_labels", n_labels)},
                   "audit": metrics.get("audit_estimate"), "n_audit": metrics.get("n_audit", 0),
                   "escape": metrics.get("escape")}
    elif "audit_estimate" in metrics and "audit" not in metrics:
        metrics = {**metrics, "audit": metrics.get("audit_estimate")}
    audit = metrics.get("audit") or {}
    n_audit = int(audit.get("n_audit") or metrics.get("n_audit") or 0)
    if figure == "accuracy":
        shown = metrics.get("estimate") or {}
        if shown.get("estimate") is not None:
            interval = shown.get("interval")
            bound = shown.get("lower_bound")
            return FigureEstimate(figure, float(shown["estimate"]), _pair(interval),
                                  shown.get("method_words") or shown.get("method") or "audit",
                                  int(shown.get("n_audit", n_audit)), int(shown.get("n_labels", n_labels) or n_labels),
                                  None if bound is None else float(bound))
        if audit.get("accuracy") is not None:
            return FigureEstimate(figure, float(audit["accuracy"]), _pair(audit.get("accuracy_ci")),
                                  "random audit labels only (Wilson interval)", n_audit, n_labels)
        return FigureEstimate(figure, None, None, "no estimate yet: it needs random audit labels", n_audit, n_labels)
    if figure == "macro_f1":
        if audit.get("macro_f1") is not None:
            return FigureEstimate(figure, float(audit["macro_f1"]), _pair(audit.get("macro_f1_ci")),
                                  "random audit labels only (bootstrap interval)", n_audit, n_labels)
        return FigureEstimate(figure, None, None, "no estimate yet: it needs random audit labels", n_audit, n_labels)
    if figure == "escape_rate":
        escape = metrics.get("escape") or {}
        if escape.get("escape_rate") is not None:
            return FigureEstimate(figure, float(escape["escape_rate"]), _pair(escape.get("escape_rate_ci")),
                                  f"random audit labels only: defective parts passed without review, of "
                                  f"{escape.get('n_defective', 0)} defective audit parts (Wilson interval)",
                                  n_audit, n_labels)
        why = ("no acceptable class is set, so no part can escape" if not metrics.get("escape") and metrics.get("audit")
               else "it needs random audit labels of defective parts")
        return FigureEstimate(figure, None, None, f"no estimate yet: {why}", n_audit, n_labels)
    raise UserError(f"unknown figure {figure!r}")


def _pair(value) -> Optional[tuple[float, float]]:
    if not value or value[0] is None or value[1] is None:
        return None
    return (float(value[0]), float(value[1]))


# --------------------------------------------------------------------------- the status


#: target states, in words for people and as keys for programs
TARGET_NOT_SET, NO_ESTIMATE, NOT_REACHED, POINT_ONLY, SHOWN = (
    "not_set", "no_estimate", "not_reached", "reached_by_point_estimate", "shown")


@dataclass(frozen=True)
class GoalStatus:
    target: Optional[Target]
    budget: Optional[int]
    labels: int  # class labels given (latest per image)
    estimate: Optional[FigureEstimate]
    target_state: str
    budget_spent: bool

    @property
    def target_shown(self) -> bool:
        return self.target_state == SHOWN

    def target_sentence(self) -> str:
        """One sentence on the target, in words ("" when no target is set)."""
        t, e = self.target, self.estimate
        if t is None:
            return ""
        words = FIGURES[t.figure].words
        if self.target_state == NO_ESTIMATE:
            return (f"Target {t.words}: no estimate of {words} yet; it needs a model and random audit labels "
                    "(the images queued as audit picks).")
        figure = f"{words} {_pct(e.estimate)}" + (f" (95 % interval {_pct(e.interval[0])}–{_pct(e.interval[1])})"
                                                   if e.interval else " (no interval yet)")
        higher = FIGURES[t.figure].higher_is_better
        end = "lower" if higher else "upper"
        if e.bound is not None:
            bound = f"its one-sided 95 % {end} bound ({_pct(e.bound)})"
            if self.target_state == SHOWN:
                return f"Target reached: {figure}; {bound} clears the {_pct(t.value)} target."
            if self.target_state == POINT_ONLY:
                return (f"Target reached by the point estimate, not yet shown: {figure}; {bound} must clear "
                        f"{_pct(t.value)}, which takes more labels.")
            return f"Target {t.words} not reached: {figure}."
        if self.target_state == SHOWN:
            return (f"Target reached: {figure}; the {end} end of the interval clears the "
                    f"{_pct(t.value)} target.")
        if self.target_state == POINT_ONLY:
            return (f"Target reached by the point estimate, not yet shown: {figure}; the {end} end of the "
                    f"interval must clear {_pct(t.value)}, which takes more labels.")
        return f"Target {t.words} not reached: {figure}."

    def budget_sentence(self) -> str:
        if self.budget is None:
            return ""
        if self.budget_spent:
            return f"Budget spent: {self.labels:,} of {self.budget:,} labels used."
        return f"Budget: {self.labels:,} of {self.budget:,} labels used ({self.budget - self.labels:,} left)."

    def target_state_words(self) -> str:
        """The target's state in a few words (status bar)."""
        return {SHOWN: "reached", POINT_ONLY: "estimate above it, not yet shown",
                NOT_REACHED: "not reached", NO_ESTIMATE: "no estimate yet", TARGET_NOT_SET: "none"}[self.target_state]

    def as_dict(self) -> dict:
        e = self.estimate
        return {
            "target": None if self.target is None else {**self.target.as_setting(), "words": self.target.words},
            "budget": self.budget,
            "labels": self.labels,
            "budget_left": None if self.budget is None else max(0, self.budget - self.labels),
            "budget_spent": self.budget_spent,
            "target_state": self.target_state,
            "target_shown": self.target_shown,
            "estimate": None if e is None else {"figure": e.figure, "estimate": e.estimate,
                                                "interval": None if e.interval is None else list(e.interval),
                                                "bound": e.bound,
                                                "method": e.method, "n_audit": e.n_audit, "n_labels": e.n_labels},
            "target_sentence": self.target_sentence(),
            "budget_sentence": self.budget_sentence(),
        }


def more_labels_sentence(status: Optional[GoalStatus], plateau_message: str, needed: Optional[dict] = None) -> str:
    """Whether more labels are needed, in words: the target first when one is set (shown: none for
    it; else ``needed``'s message, :func:`labels_still_needed`, when given), then what the learning
    curve's plateau signal (``plateau_message``) says beyond it. The dashboard and the report say it
    alike."""
    if status is None or status.target is None:
        return plateau_message
    if status.target_shown:
        return f"Not for the target, which is shown. Beyond it: {plateau_message}"
    if needed and needed.get("message"):
        return f"For the target: {needed['message']} Beyond it: {plateau_message}"
    return plateau_message


def judge(target: Optional[Target], estimate: Optional[FigureEstimate]) -> str:
    """The target's state for one estimate: shown only when its one-sided 95 % bound clears it
    (accuracy), else when the whole 95 % interval does."""
    if target is None:
        return TARGET_NOT_SET
    if estimate is None or estimate.estimate is None:
        return NO_ESTIMATE
    higher = FIGURES[target.figure].higher_is_better
    point_ok = estimate.estimate >= target.value if higher else estimate.estimate <= target.value
    if not point_ok:
        return NOT_REACHED
    if estimate.bound is not None:
        return SHOWN if (estimate.bound >= target.value if higher else estimate.bound <= target.value) else POINT_ONLY
    if estimate.interval is None:
        return POINT_ONLY
    low, high = estimate.interval
    return SHOWN if (low >= target.value if higher else high <= target.value) else POINT_ONLY


def goal_status(target: Optional[Target], budget: Optional[int], labels: int,
                metrics: Optional[dict]) -> GoalStatus:
    """Where the project stands against both rules, from the latest model version's metrics."""
    estimate = None if target is None else figure_estimate(metrics, target.figure, labels)
    return GoalStatus(target, budget, int(labels), estimate, judge(target, estimate),
                      budget is not None and labels >= budget)


def project_goal_status(project) -> GoalStatus:
    """:func:`goal_status` for a project: its settings, its class labels, its latest model version."""
    target, budget = read_goals(project)
    latest = project.latest_model_version()
    return goal_status(target, budget, len(project.latest_labels()), latest.metrics if latest else None)


def announcements_due(project, status: GoalStatus) -> list[str]:
    """Which of 'target' / 'budget' the labelling view has not announced yet; marks them made.

    Said once per rule: changing the target or the budget (write_goals) allows it again."""
    announced = dict(project.get_setting(SETTING_ANNOUNCED, {}) or {})
    due = []
    if status.target_shown and announced.get("target") != status.target.as_text():
        due.append("target")
        announced["target"] = status.target.as_text()
    if status.budget_spent and announced.get("budget") != status.budget:
        due.append("budget")
        announced["budget"] = status.budget
    if due:
        project.set_setting(SETTING_ANNOUNCED, announced)
    return due


# --------------------------------------------------------------------------- labels still needed


#: a trend needs this many curve points with intervals, and this many audit labels at the last one
MIN_CURVE_POINTS = 3
MIN_AUDIT_FOR_TREND = 10
#: no forecast further than this many times the labels given so far
MAX_EXTRAPOLATION = 10.0


def _draws_summary(values: np.ndarray) -> Optional[dict]:
    """Median and 10-90 % range of the labels the curve's draws need (inf: a draw never gets
    there); None unless most draws get there. ``high`` None: "or more"."""
    finite = np.isfinite(values)
    if np.mean(finite) <= 0.5:  # at exactly half the median would fall between finite and never
        return None
    # "never" as a number far beyond any forecast: numpy's interpolation gives nan next to an inf,
    # even where its weight is 0 (the median of [10, 20, 30, inf, inf] came out nan)
    never = 1e18
    q10, q50, q90 = np.percentile(np.where(finite, values, never), [10, 50, 90])
    return {"median": int(round(q50)), "low": int(round(q10)),
            "high": None if q90 >= never / 10 else int(round(q90))}


def labels_still_needed(curve: Sequence[dict], target: Target, draws: int = 400,
                        random_state=0) -> dict:
    """How many more labels the learning curve's trend says the target needs, with its range.

    Fits the shortfall (1 - figure; the escape rate itself) to a power law of the labels,
    ``err = a * n^-b`` (learning curves
    of such classifiers fall roughly so), on the curve's points weighted by their intervals, and
    repeats the fit on points redrawn within their intervals (``draws`` times) for the
    uncertainty. Two counts: labels until the trend crosses the target, and until it can be
    *shown* (the bound :func:`judge` uses, its distance from the estimate narrowing like
    1/sqrt(labels), clears it). Median and 10th-90th
    percentile range over the draws. ``status``: 'reached' (already shown), 'estimate' or
    'cannot_tell' with the reason in ``message``.
    """
    key, ci_key = CURVE_KEYS[target.figure]
    higher = FIGURES[target.figure].higher_is_better
    points = [p for p in curve if p.get(key) is not None and p.get(ci_key) and p.get("n_labels")]
    out = {"status": "cannot_tell", "until_crossing": None, "until_shown": None, "message": "",
           "method": ("power-law fit of the error against labels over the learning curve's points, "
                      "redrawn within their 95 % intervals; range = 10th-90th percentile of the fits")}
    if not points:
        out["message"] = "Cannot tell yet: no model version with an estimate and interval."
        return out
    last = points[-1]
    n_now = int(last["n_labels"])
    lo, hi = last[ci_key]
    bound = last.get(CURVE_BOUND_KEYS.get(target.figure, ""))
    if bound is not None:  # judged on the one-sided bound: the distance to it, not the half-width
        lo, hi = (bound, hi) if higher else (lo, bound)
    if (lo >= target.value if higher else hi <= target.value):
        out.update(status="reached", message="The target is already shown.")
        return out
    if len(points) < MIN_CURVE_POINTS or int(last.get("n_audit") or 0) < MIN_AUDIT_FOR_TREND:
        out["message"] = (f"Cannot tell yet: the trend needs {MIN_CURVE_POINTS} model versions with an estimate and "
                          f"{MIN_AUDIT_FOR_TREND} audit labels (now {len(points)} and {int(last.get('n_audit') or 0)}).")
        return out
    n = np.array([p["n_labels"] for p in points], float)
    if n.max() < 1.5 * n.min():
        out["message"] = "Cannot tell yet: the curve spans too few labels for a trend."
        return out
    # work with the shortfall: 1 - figure for accuracy and macro-F1, the escape rate itself
    value = np.array([p[key] for p in points], float)
    est = 1.0 - value if higher else value
    goal = 1.0 - target.value if higher else target.value
    se = np.array([max((p[ci_key][1] - p[ci_key][0]) / (2 * Z95), 1e-3) for p in points], float)
    if bound is not None:  # the distance from the estimate down (or up) to the bound
        half_now = max((last[key] - lo) if higher else (hi - last[key]), 1e-4)
    else:
        half_now = max((hi - lo) / 2.0, 1e-4)
    rng = np.random.default_rng(random_state)
    horizon = n_now * MAX_EXTRAPOLATION
    grid = np.unique(np.linspace(n_now, horizon, 2000).round())
    crossing, shown = [], []
    for d in range(draws):
        err = np.clip(est if d == 0 else est + rng.normal(0.0, se), 1e-4, 1.0)
        w = 1.0 / (se / err) ** 2  # weights on the log scale
        slope, intercept = np.polyfit(np.log(n), np.log(err), 1, w=np.sqrt(w))
        b = -slope
        if b <= 0.0:  # no improvement with labels in this draw
            crossing.append(math.inf)
            shown.append(math.inf)
            continue
        predicted = np.exp(intercept) * grid ** (-b)
        half = half_now * np.sqrt(n_now / grid)
        c = np.flatnonzero(predicted <= goal)
        s = np.flatnonzero(predicted + half <= goal)
        crossing.append(grid[c[0]] - n_now if len(c) else math.inf)
        shown.append(grid[s[0]] - n_now if len(s) else math.inf)
    crossing, shown = np.array(crossing), np.array(shown)

    out["until_crossing"], out["until_shown"] = _draws_summary(crossing), _draws_summary(shown)
    if out["until_shown"] is None:
        out["message"] = (f"Cannot tell yet: at the current trend the target is not shown within "
                          f"{int(horizon - n_now):,} more labels in most fits of the curve.")
        return out
    u = out["until_shown"]
    rng_text = f"{u['low']:,}–{u['high']:,}" if u["high"] is not None else f"{u['low']:,} or more"
    out["status"] = "estimate"
    out["message"] = (f"About {u['median']:,} more labels to show the target (range {rng_text}, "
                      f"from the learning curve's trend; a forecast, not a promise).")
    return out


# --------------------------------------------------------------------------- planning (simulate)


def labels_to_target(summary: dict, target: Target) -> dict:
    """Per strategy of a simulation summary: labels at which the *true* test figure first reached
    the target, per seed, with the median and range over the seeds that reached it within the
    budget. A team sets a realistic budget from this before labelling similar data."""
    if target.figure not in ("accuracy", "macro_f1"):
        raise UserError(f"simulate measures accuracy and macro-F1 on its test split, not the {FIGURES[target.figure].words}")
    counts = summary["label_counts"]
    out = {"target": {**target.as_setting(), "words": target.words}, "budget": counts[-1],
           "basis": "true figure on the held-out test split (not the estimate a project would show)", "strategies": {}}
    for name, entry in summary["strategies"].items():
        per_seed = []
        for curve in entry[f"{target.figure}_per_seed"]:
            hit = next((n for n, v in zip(counts, curve) if v >= target.value), None)
            per_seed.append(hit)
        reached = [n for n in per_seed if n is not None]
        out["strategies"][name] = {
            "per_seed": per_seed,
            "seeds_reached": len(reached),
            "seeds": len(per_seed),
            "median": float(np.median([n if n is not None else math.inf for n in per_seed])) if reached else None,
            "min": min(reached) if reached else None,
            "max": max(reached) if reached else None,
        }
    return out


def labels_to_target_lines(plan: dict) -> list[str]:
    """The planning table in words, one line per strategy."""
    lines = [f"Labels to reach {plan['target']['words']} on the test split (median, range over seeds; "
             f"budget {plan['budget']}):"]
    for name, s in plan["strategies"].items():
        if not s["seeds_reached"]:
            lines.append(f"  {name:18s} not within {plan['budget']} labels in any of {s['seeds']} seeds")
            continue
        median = "more than the budget" if s["median"] is None or not math.isfinite(s["median"]) else f"{s['median']:g}"
        missed = s["seeds"] - s["seeds_reached"]
        note = f"; {missed} of {s['seeds']} seeds not within the budget" if missed else ""
        lines.append(f"  {name:18s} median {median}, range {s['min']}-{s['max']}{note}")
    return lines


def _pct(value: Optional[float]) -> str:
    if value is None:
        return "—"
    text = f"{100.0 * value:.1f}".rstrip("0").rstrip(".")
    return f"{text} %"
