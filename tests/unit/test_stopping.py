"""The two stopping rules: target (shown only by the interval) and labelling budget; reading,
writing and announcing them; the labels-still-needed forecast; the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from inspector.cli import main
from inspector.core.errors import UserError
from inspector.core.learning import stopping
from inspector.core.store import Project


def metrics_with(estimate, interval, n_audit=40, macro_f1=None, macro_f1_ci=None, escape=None):
    m = {"estimate": {"estimate": estimate, "interval": interval, "method": "audit", "method_words": "audit words",
                      "n_audit": n_audit, "n_labels": 200},
         "audit": {"n_audit": n_audit, "accuracy": estimate, "accuracy_ci": interval,
                   "macro_f1": macro_f1, "macro_f1_ci": macro_f1_ci}}
    if escape is not None:
        m["escape"] = escape
    return m


@pytest.mark.parametrize("text, figure, value", [
    ("accuracy=0.95", "accuracy", 0.95), ("accuracy=95%", "accuracy", 0.95), ("macro_f1=0.9", "macro_f1", 0.9),
    ("Macro-F1: 90 %", "macro_f1", 0.9), ("escape_rate=0.01", "escape_rate", 0.01), ("acc=0.5", "accuracy", 0.5),
])
def test_targets_are_read_in_the_documented_forms(text, figure, value):
    target = stopping.parse_target(text)
    assert target.figure == figure and target.value == pytest.approx(value)


@pytest.mark.parametrize("text, words", [
    ("accuracy=95", "ambiguous"), ("accuracy=1", "strictly between"), ("speed=0.5", "unknown figure"),
    ("0.95", "FIGURE=VALUE"), ("accuracy=0%", "strictly between"),
])
def test_bad_targets_are_refused_with_a_reason(text, words):
    with pytest.raises(UserError, match=words):
        stopping.parse_target(text)


def test_target_is_shown_only_when_the_lower_end_clears_it():
    target = stopping.make_target("accuracy", 0.9)
    shown = stopping.goal_status(target, None, 200, metrics_with(0.95, [0.91, 0.98]))
    assert shown.target_state == stopping.SHOWN and shown.target_shown
    assert shown.target_sentence().startswith("Target reached: accuracy 95 %")
    point = stopping.goal_status(target, None, 200, metrics_with(0.95, [0.85, 0.99]))
    assert point.target_state == stopping.POINT_ONLY and not point.target_shown
    assert "reached by the point estimate, not yet shown" in point.target_sentence()
    below = stopping.goal_status(target, None, 200, metrics_with(0.88, [0.80, 0.93]))
    assert below.target_state == stopping.NOT_REACHED and "not reached" in below.target_sentence()
    none = stopping.goal_status(target, None, 200, {})
    assert none.target_state == stopping.NO_ESTIMATE and "no estimate" in none.target_sentence()
    no_interval = stopping.goal_status(target, None, 200, metrics_with(0.97, None))
    assert no_interval.target_state == stopping.POINT_ONLY


def test_accuracy_target_is_judged_on_the_one_sided_95_percent_lower_bound():
    """The question is one-sided (is the model at least this good?): the estimate's one-sided
    95 % lower bound decides, not the two-sided interval's lower end (a 97.5 % bound)."""
    target = stopping.make_target("accuracy", 0.95)
    metrics = metrics_with(0.985, [0.945, 0.995])
    metrics["estimate"]["lower_bound"] = 0.955
    shown = stopping.goal_status(target, None, 150, metrics)
    assert shown.target_state == stopping.SHOWN and shown.estimate.bound == 0.955
    assert "one-sided 95 % lower bound (95.5 %) clears the 95 % target" in shown.target_sentence()
    assert "95 % interval 94.5 %–99.5 %" in shown.target_sentence()  # the interval is still shown
    metrics["estimate"]["lower_bound"] = 0.948
    short = stopping.goal_status(target, None, 150, metrics)
    assert short.target_state == stopping.POINT_ONLY
    assert "one-sided 95 % lower bound (94.8 %) must clear 95 %" in short.target_sentence()
    # an evaluation report carries the bound too
    report = {"estimate": 0.985, "interval": [0.945, 0.995], "lower_bound": 0.955, "method": "words",
              "n_audit": 15, "n_labels": 150}
    assert stopping.goal_status(target, None, 150, report).target_shown


def test_labels_still_needed_says_reached_when_the_bound_clears_it():
    target = stopping.make_target("accuracy", 0.95)
    curve = _curve([50, 100, 150], [0.9, 0.95, 0.985], [0.06, 0.05, 0.04])
    assert stopping.labels_still_needed(curve, target)["status"] != "reached"  # lower end 0.945
    curve[-1]["accuracy_bound"] = 0.952
    assert stopping.labels_still_needed(curve, target)["status"] == "reached"


def test_macro_f1_without_an_interval_is_never_shown_and_escape_rate_needs_the_upper_end():
    f1 = stopping.make_target("macro_f1", 0.8)
    few = stopping.goal_status(f1, None, 50, metrics_with(0.9, [0.8, 0.95], macro_f1=0.95, macro_f1_ci=None))
    assert few.target_state == stopping.POINT_ONLY
    many = stopping.goal_status(f1, None, 50, metrics_with(0.9, [0.8, 0.95], macro_f1=0.95, macro_f1_ci=[0.85, 0.99]))
    assert many.target_shown
    escape = stopping.make_target("escape_rate", 0.05)
    low = stopping.goal_status(escape, None, 300, metrics_with(
        0.9, [0.8, 0.95], escape={"escape_rate": 0.01, "escape_rate_ci": [0.0, 0.04], "n_defective": 90}))
    assert low.target_shown and "upper end" in low.target_sentence()
    unsure = stopping.goal_status(escape, None, 300, metrics_with(
        0.9, [0.8, 0.95], escape={"escape_rate": 0.02, "escape_rate_ci": [0.0, 0.12], "n_defective": 20}))
    assert unsure.target_state == stopping.POINT_ONLY


def test_one_function_reads_both_a_model_versions_metrics_and_an_evaluation_report():
    recorded = stopping.figure_estimate(metrics_with(0.93, [0.9, 0.96]), "accuracy")
    report = {"estimate": 0.93, "interval": [0.9, 0.96], "method": "audit words", "n_audit": 40, "n_labels": 200,
              "audit_estimate": {"macro_f1": 0.9, "macro_f1_ci": [0.85, 0.95]}}
    evaluated = stopping.figure_estimate(report, "accuracy")
    assert (recorded.estimate, recorded.interval) == (evaluated.estimate, evaluated.interval) == (0.93, (0.9, 0.96))
    assert stopping.figure_estimate(report, "macro_f1").interval == (0.85, 0.95)


def test_budget_and_announcements_once_per_rule(tmp_path):
    (tmp_path / "imgs").mkdir()
    with Project.create(tmp_path / "p.inspector", tmp_path / "imgs") as project:
        assert stopping.read_goals(project) == (None, None)
        target = stopping.make_target("accuracy", 0.9)
        stopping.write_goals(project, target, 100)
        assert stopping.read_goals(project) == (target, 100)
        status = stopping.goal_status(target, 100, 100, metrics_with(0.97, [0.93, 0.99]))
        assert status.budget_spent and status.budget_sentence() == "Budget spent: 100 of 100 labels used."
        assert stopping.announcements_due(project, status) == ["target", "budget"]
        assert stopping.announcements_due(project, status) == []  # said once
        stopping.write_goals(project, target, 150)  # a new budget may be announced again; the target not
        spent = stopping.goal_status(target, 150, 150, metrics_with(0.97, [0.93, 0.99]))
        assert stopping.announcements_due(project, spent) == ["budget"]
        with pytest.raises(UserError):
            stopping.write_goals(project, target, 0)
        project.set_setting(stopping.SETTING_TARGET, {"figure": "nonsense", "value": 3})
        assert stopping.read_goals(project)[0] is None  # a damaged setting reads as unset


def _curve(ns, values, widths, n_audit=30):
    return [{"n_labels": n, "accuracy": v, "accuracy_ci": [v - w, min(1.0, v + w)], "n_audit": n_audit}
            for n, v, w in zip(ns, values, widths)]


def test_labels_still_needed_follows_a_rising_curve_and_says_when_it_cannot_tell():
    target = stopping.make_target("accuracy", 0.95)
    ns = np.array([50, 100, 150, 200, 250])
    values = 1.0 - 0.6 * ns ** -0.5  # error falls like n^-0.5: 0.915 at 50 ... 0.962 at 250
    rising = stopping.labels_still_needed(_curve(ns, values, [0.03] * 5), target)
    # the crossing of 0.95 is at n = (0.6/0.05)^2 = 144, already passed; shown needs the interval too
    assert rising["status"] == "estimate"
    assert rising["until_crossing"]["median"] == 0
    assert rising["until_shown"]["median"] > 0 and rising["until_shown"]["low"] <= rising["until_shown"]["median"]
    early = stopping.labels_still_needed(_curve(ns[:3], values[:3], [0.05] * 3), stopping.make_target("accuracy", 0.99))
    assert early["status"] in ("estimate", "cannot_tell")
    too_few = stopping.labels_still_needed(_curve(ns[:2], values[:2], [0.05] * 2), target)
    assert too_few["status"] == "cannot_tell" and "Cannot tell yet" in too_few["message"]
    flat = stopping.labels_still_needed(_curve(ns, [0.8] * 5, [0.04] * 5), target)
    assert flat["status"] == "cannot_tell"
    reached = stopping.labels_still_needed(_curve(ns, values, [0.005] * 5), target)
    assert reached["status"] == "reached"


def test_labels_still_needed_for_a_curve_short_of_the_target():
    target = stopping.make_target("accuracy", 0.95)
    ns = np.array([40, 80, 120, 160, 200])
    values = 1.0 - 1.2 * ns ** -0.5  # 0.915 at 200; 0.95 at n = (1.2/0.05)^2 = 576
    out = stopping.labels_still_needed(_curve(ns, values, [0.02] * 5), target)
    assert out["status"] == "estimate"
    assert 250 <= out["until_crossing"]["median"] <= 500  # about 376 more
    assert out["until_shown"]["median"] >= out["until_crossing"]["median"]


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


def test_cli_new_with_goals_then_target_changes_them(tmp_path, small_image_folder, capsys):
    project = tmp_path / "p.inspector"
    code, out, _ = run(capsys, "new", project, "--images", small_image_folder, "--target", "accuracy=0.95",
                       "--budget", "400", "--quiet", "--workers", "1")
    assert code == 0 and "Target: accuracy ≥ 95 %" in out and "0 of 400 labels used" in out
    code, out, _ = run(capsys, "target", project, "macro_f1=90%", "--budget", "none", "--json")
    status = json.loads(out)
    assert code == 0 and status["target"]["figure"] == "macro_f1" and status["budget"] is None
    code, out, _ = run(capsys, "target", project)
    assert code == 0 and "Target: macro-F1 ≥ 90 %" in out and "Budget: none" in out
    code, _, err = run(capsys, "target", project, "accuracy=95")
    assert code == 1 and "ambiguous" in err


def test_cli_new_refuses_bad_goals_before_creating_anything(tmp_path, small_image_folder, capsys):
    project = tmp_path / "p.inspector"
    code, _, err = run(capsys, "new", project, "--images", small_image_folder, "--budget", "-3", "--quiet")
    assert code == 1 and "at least 1" in err and not project.exists()


def test_evaluate_reports_goals(tmp_path, small_image_folder, capsys):
    project = tmp_path / "p.inspector"
    assert run(capsys, "new", project, "--images", small_image_folder, "--labels-from-folders", "--target",
               "accuracy=0.9", "--budget", "30", "--quiet", "--workers", "1")[0] == 0
    code, out, _ = run(capsys, "evaluate", project, "--json")
    goals = json.loads(out)["goals"]
    assert code == 0
    assert goals["target"]["figure"] == "accuracy" and goals["budget"] == 30 and goals["budget_spent"]
    assert goals["target_state"] == "no_estimate"  # imported labels are no audit labels
    assert goals["labels_still_needed"]["status"] == "cannot_tell"
    code, out, _ = run(capsys, "evaluate", project)
    assert "Budget spent: 40 of 30 labels used." in out and "Cannot tell yet" in out
    # 10 defective labels cannot show a 1 % escape rate: the thresholds an engineer could set instead
    assert "NOT SHOWN SAFE" in out and "thresholds you could set" in out and "defective parts passed" in out


def test_simulate_plans_labels_to_a_target_per_strategy():
    summary = {"label_counts": [10, 20, 30, 40], "strategies": {
        "uncertain_diverse": {"accuracy_per_seed": [[0.5, 0.9, 0.96, 0.97], [0.6, 0.95, 0.97, 0.98],
                                                    [0.5, 0.7, 0.8, 0.96]],
                              "macro_f1_per_seed": [[0.4, 0.8, 0.9, 0.9]] * 3},
        "random": {"accuracy_per_seed": [[0.5, 0.6, 0.7, 0.8]] * 3, "macro_f1_per_seed": [[0.4, 0.5, 0.6, 0.7]] * 3},
    }}
    plan = stopping.labels_to_target(summary, stopping.make_target("accuracy", 0.95))
    ud = plan["strategies"]["uncertain_diverse"]
    assert ud["per_seed"] == [30, 20, 40] and (ud["median"], ud["min"], ud["max"]) == (30, 20, 40)
    assert plan["strategies"]["random"]["seeds_reached"] == 0
    lines = stopping.labels_to_target_lines(plan)
    assert "median 30, range 20-40" in lines[1] and "not within 40 labels in any of 3 seeds" in lines[2]
    with pytest.raises(UserError):
        stopping.labels_to_target(summary, stopping.make_target("escape_rate", 0.01))


def test_cli_simulate_reports_labels_to_target(tmp_path, small_image_folder, capsys):
    code, out, _ = run(capsys, "simulate", "--images", small_image_folder, "--budget", "20", "--batch", "5",
                       "--initial", "5", "--seeds", "2", "--quiet", "--workers", "1", "--out", tmp_path / "sim",
                       "--target", "accuracy=0.7")
    assert code == 0 and "Labels to reach accuracy ≥ 70 %" in out
    data = json.loads((tmp_path / "sim" / "summary.json").read_text())
    assert set(data["labels_to_target"]["strategies"]) == {"uncertain_diverse", "random"}


def test_more_labels_answers_for_the_target_first():
    metrics = {"estimate": {"estimate": 0.996, "interval": [0.936, 1.0], "lower_bound": 0.954, "method": "difference",
                            "n_labels": 100, "n_audit": 10}}
    plateau = "Labels are still changing the model; keep labelling."
    assert stopping.more_labels_sentence(None, plateau) == plateau
    shown = stopping.goal_status(stopping.make_target("accuracy", 0.95), None, 100, metrics)
    assert stopping.more_labels_sentence(shown, plateau) == f"Not for the target, which is shown. Beyond it: {plateau}"
    open_target = stopping.goal_status(stopping.make_target("accuracy", 0.97), None, 100, metrics)
    needed = {"status": "estimate", "message": "About 80 more labels to show the target."}
    assert stopping.more_labels_sentence(open_target, plateau, needed) == (
        f"For the target: About 80 more labels to show the target. Beyond it: {plateau}")
    assert stopping.more_labels_sentence(open_target, plateau) == plateau


def test_labels_needed_summary_never_takes_a_median_between_a_forecast_and_never():
    import math
    import warnings

    half = np.array([10.0, 20.0, math.inf, math.inf])
    assert stopping._draws_summary(half) is None  # before: int(round(inf)) raised OverflowError
    most = np.array([10.0, 20.0, 30.0, math.inf, math.inf])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # before: numpy's invalid-value warning and a nan median
        found = stopping._draws_summary(most)
    assert found["median"] == 30 and found["low"] == 14 and found["high"] is None
