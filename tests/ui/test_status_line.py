"""The status bar's accuracy line says what the dashboard's headline says."""
import os
from types import SimpleNamespace

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from inspector.ui.session import ProjectSession  # noqa: E402


def summary(metrics):
    return ProjectSession.audit_summary(SimpleNamespace(model_metrics=metrics))


def test_audit_method_uses_the_models_recorded_audit_figures():
    # the estimator's own audit figure and the recorded one can differ at one label; the
    # dashboard shows the recorded one, so the status bar must too
    metrics = {"estimate": {"method": "audit", "estimate": 0.0, "interval": (0.0, 0.9), "n_audit": 1},
               "audit": {"accuracy": 1.0, "accuracy_ci": (0.05, 1.0), "n_audit": 1}}
    assert summary(metrics) == "accuracy ≈ 100% (5%–100%, 1 audit labels)"


def test_difference_method_says_what_it_rests_on():
    metrics = {"estimate": {"method": "difference", "estimate": 0.93, "interval": (0.88, 0.97), "n": 120},
               "audit": {"accuracy": 0.9, "accuracy_ci": (0.7, 0.98), "n_audit": 12}}
    assert summary(metrics) == "accuracy ≈ 93% (88%–97%, predictions corrected by 120 sampled labels)"


def test_no_audit_label_yet():
    assert summary({"n_audit": 0}) == "not enough audit labels yet (0)"
