import numpy as np
import pytest

from inspector.core.learning import metrics


def test_wilson_interval_known_values():
    lo, hi = metrics.wilson_interval(8, 10, continuity=False)
    assert lo == pytest.approx(0.4902, abs=1e-3) and hi == pytest.approx(0.9433, abs=1e-3)
    assert metrics.wilson_interval(0, 0) == (0.0, 1.0)
    lo, hi = metrics.wilson_interval(10, 10, continuity=False)
    assert hi == pytest.approx(1.0) and lo == pytest.approx(0.7225, abs=1e-3)
    # continuity-corrected: Newcombe (1998) table I, method 4: 81/263 -> 0.2535-0.3682, 1/29 -> 0.0018-0.1963
    lo, hi = metrics.wilson_interval(81, 263)
    assert lo == pytest.approx(0.2535, abs=1e-3) and hi == pytest.approx(0.3682, abs=1e-3)
    lo, hi = metrics.wilson_interval(1, 29)
    assert lo == pytest.approx(0.0018, abs=1e-4) and hi == pytest.approx(0.1963, abs=1e-4)


def test_corrected_interval_covers_near_perfect_accuracy_with_one_error():
    plain = metrics.wilson_interval(29, 30, continuity=False)
    corrected = metrics.wilson_interval(29, 30)
    assert plain[1] < 0.995 < corrected[1]
    assert corrected[0] <= plain[0]


def test_wilson_interval_covers_about_95_percent():
    rng = np.random.default_rng(0)
    p, n = 0.9, 40
    hits = rng.binomial(n, p, 4000)
    covered = np.mean([lo <= p <= hi for lo, hi in (metrics.wilson_interval(int(k), n) for k in hits)])
    assert 0.94 < covered < 0.995


def test_audit_estimate_intervals_and_per_class_recall():
    y_true = np.array([0] * 30 + [1] * 20)
    y_pred = y_true.copy()
    y_pred[:3] = 1  # three class-0 images missed
    est = metrics.audit_estimate(y_true, y_pred, [0, 1, 2], random_state=0)
    assert est["accuracy"] == pytest.approx(47 / 50)
    lo, hi = est["accuracy_ci"]
    assert lo < 0.94 < hi
    assert est["per_class_recall"]["0"]["recall"] == pytest.approx(0.9)
    assert est["per_class_recall"]["2"]["recall"] is None
    flo, fhi = est["macro_f1_ci"]
    assert flo <= est["macro_f1"] <= fhi
    assert est["confusion"][0] == [27, 3, 0]


def test_no_macro_f1_interval_from_a_handful_of_agreeing_labels():
    est = metrics.audit_estimate(np.array([0, 1, 1]), np.array([0, 1, 1]), [0, 1])
    assert est["macro_f1"] == 1.0 and est["macro_f1_ci"] is None and est["macro_f1_ci_note"]
    lo, hi = est["accuracy_ci"]
    assert hi == 1.0 and lo < 0.5  # the accuracy interval stays honest (wide)


def test_audit_estimate_without_labels():
    est = metrics.audit_estimate(np.array([]), np.array([]), [0, 1])
    assert est["accuracy"] is None and est["n_audit"] == 0


def test_macro_f1_matches_sklearn():
    from sklearn.metrics import f1_score

    rng = np.random.default_rng(1)
    t, p = rng.integers(0, 4, 200), rng.integers(0, 4, 200)
    assert metrics.macro_f1(t, p) == pytest.approx(f1_score(t, p, average="macro"))


def test_curve_helpers():
    assert metrics.curve_area([0, 10, 20], [0.5, 1.0, 1.0]) == pytest.approx(0.875)
    assert metrics.labels_to_reach([10, 20, 30], [0.5, 0.9, 0.95], 0.9) == 20
    assert metrics.labels_to_reach([10, 20], [0.5, 0.6], 0.9) is None


def test_plateau_signal_in_plain_words():
    assert metrics.plateau_signal([])["status"] == "too_early"
    improving = [{"n_labels": n, "accuracy": a, "accuracy_ci": [a - .1, min(1, a + .1)], "n_audit": 30,
                  "prediction_change": c} for n, a, c in [(10, .6, None), (20, .8, .2), (30, .9, .1)]]
    assert metrics.plateau_signal(improving)["status"] == "improving"
    flat = [{"n_labels": n, "accuracy": .95, "accuracy_ci": [.9, .98], "n_audit": 30, "prediction_change": c}
            for n, c in [(100, .05), (110, .004), (120, .002)]]
    sig = metrics.plateau_signal(flat)
    assert sig["status"] == "plateau" and "stopped paying off" in sig["message"]
    assert "(95 % interval 90%-98%, 30 audit labels)" in sig["message"]
    # an estimate from every sampled label says so, not that it rests on the audit labels
    flat[-1]["method"] = "difference"
    assert "corrected by every sampled label, 30 of them audit labels" in metrics.plateau_signal(flat)["message"]


def test_cross_validation_is_labelled_optimistic():
    rng = np.random.default_rng(0)
    X = rng.normal(0, 1, (60, 4)).astype(np.float32)
    y = (X[:, 0] > 0).astype(int)
    cv = metrics.optimistic_cross_validation(X, y)
    assert "optimistic" in cv["kind"] and cv["accuracy"] > 0.8


def test_no_plateau_while_a_class_has_no_labels():
    from inspector.core.learning.metrics import plateau_signal

    point = {"n_labels": 90, "n_audit": 9, "accuracy": 1.0, "accuracy_ci": (0.63, 1.0), "prediction_change": 0.0}
    curve = [dict(point, n_labels=n) for n in (70, 80, 90)]
    assert plateau_signal(curve)["status"] == "plateau"
    curve[-1]["class_counts"] = {"1": 90, "2": 0, "3": 0, "4": 0}  # only one class labelled so far
    signal = plateau_signal(curve)
    assert signal["status"] == "improving" and "3 of 4 classes have no labels" in signal["message"]
    # the classes are named, with the way out for a class these images never show
    named = plateau_signal(curve, class_names={1: "ok", 2: "scratch", 3: "crack", 4: "pitting"})["message"]
    assert "(scratch, crack, pitting)" in named and "delete it in the app (Project ▸ Classes)" in named
