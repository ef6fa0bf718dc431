"""Dashboard: builds without a model, with a model and audit labels (figures say what they rest
on), and a click on the feature map asks to open that image."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pytestqt")

from PySide6.QtCore import QPoint, Qt  # noqa: E402

from inspector.core.ingest import analyse_pending, scan_folder  # noqa: E402
from inspector.core.learning import learner  # noqa: E402
from inspector.core.store import Project  # noqa: E402
from inspector.ui.dashboard import DashboardView, feature_map, precision_from_confusion  # noqa: E402
from inspector.ui.session import ProjectSession  # noqa: E402


def _project(folder: Path, tmp_path: Path):
    project = Project.create(tmp_path / "dash.inspector", folder)
    scan_folder(project)
    analyse_pending(project, workers=1)
    project.set_setting("app.retrain_every", 10_000)
    ok = project.add_class("ok")
    scratch = project.add_class("scratch")
    session = ProjectSession(project)
    ids = project.image_ids()
    # separable synthetic features: the folder name decides the class
    truth = np.array([scratch if "scratch" in project.image(int(i)).path else ok for i in ids])
    rng = np.random.default_rng(2)
    features = rng.normal(0, 1, (len(ids), 8)).astype(np.float32)
    features[truth == scratch, 0] += 4.0
    project.save_features(ids, features, *session.extractor)
    session.image_ids, session.features = project.feature_matrix(*session.extractor)
    return project, session, ids, truth, ok, scratch


@pytest.fixture
def dashboard_parts(qtbot, small_image_folder, tmp_path):
    project, session, ids, truth, ok, scratch = _project(small_image_folder, tmp_path)
    view = DashboardView(session)
    qtbot.addWidget(view)
    view.resize(1200, 800)
    yield view, session, ids, truth, ok, scratch
    session.closed = True
    project.close()


def _show(view, qtbot):
    with qtbot.waitSignal(view.refreshed, timeout=10_000):
        view.show()


def test_without_a_model_says_so_and_still_maps_the_images(dashboard_parts, qtbot):
    view, session, ids, truth, ok, scratch = dashboard_parts
    _show(view, qtbot)
    assert view.headline.text().startswith("No model yet")
    assert "Too early" in view.stopping.text()
    assert not view.optimistic.isVisibleTo(view)
    assert view.class_table.rowCount() == 0
    assert view.data.feature_map is not None and len(view.data.feature_map.rows) == len(ids)
    assert sum(len(item.data) for item in view._map_items) == len(ids)
    assert view.map_caption.text().startswith(f"{len(ids):,} images")


def test_with_model_and_audit_labels_every_figure_names_its_basis(dashboard_parts, qtbot):
    view, session, ids, truth, ok, scratch = dashboard_parts
    project = session.project
    # three model versions; 8 of the labels are audit picks
    order = np.random.default_rng(0).permutation(len(ids))
    given = 0
    for batch in (order[:12], order[12:20], order[20:28]):
        for k, r in enumerate(batch):
            project.add_label(int(ids[r]), int(truth[r]), audit=(given + k) % 3 == 0)
        given += len(batch)
        learner.retrain(project, cross_validate=True)
    session.labels.invalidate()  # the labels were written behind the session's back
    n_audit = len(project.audit_labels())
    fitted = learner.fit(learner.take_snapshot(project))
    session.probabilities, session.class_ids = fitted.proba, np.array([ok, scratch])
    _show(view, qtbot)
    text = view.headline.text()
    assert "Model v3" in text and f"from {n_audit} audit labels" in text and "95 % CI" in text
    assert view.data.n_audit == n_audit
    assert view.class_table.rowCount() == 2
    assert view.class_table.item(0, 0).text() == "ok"
    assert view.optimistic.isVisibleTo(view) and view.optimistic.text().startswith("Optimistic")
    assert len(view.data.curve) == 3
    assert sum(view.data.labelled.values()) == 28
    assert sum(view.data.predicted.values()) == len(ids)
    # recolouring by prediction draws the same points
    view.map_color.setCurrentIndex(1)
    assert sum(len(item.data) for item in view._map_items) == len(ids)


def test_refreshes_when_the_model_updates(dashboard_parts, qtbot):
    view, session, ids, truth, ok, scratch = dashboard_parts
    _show(view, qtbot)
    session.project.add_model_version("logistic", {}, 5, {"n_audit": 0})
    with qtbot.waitSignal(view.refreshed, timeout=10_000):
        session.model_updated.emit(1)
    assert "Model v1" in view.headline.text()
    assert "No accuracy estimate yet" in view.headline.text()


def test_map_click_requests_open(dashboard_parts, qtbot):
    view, session, ids, truth, ok, scratch = dashboard_parts
    _show(view, qtbot)
    item = view._map_items[0]
    point = item.points()[0]
    vb = view.map_plot.getPlotItem().getViewBox()
    qtbot.wait(50)  # let the view box settle on its final range
    scene_pos = vb.mapViewToScene(point.pos())
    widget_pos = view.map_plot.mapFromScene(scene_pos)
    clicked = {int(p.data()) for p in item.pointsAt(point.pos())}
    with qtbot.waitSignal(session.open_image_requested, timeout=2000) as blocker:
        qtbot.mouseClick(view.map_plot.viewport(), Qt.MouseButton.LeftButton, pos=QPoint(widget_pos.x(), widget_pos.y()))
    assert blocker.args[0] in clicked


def test_precision_from_confusion_and_feature_map_sample():
    confusion = np.array([[8, 2], [0, 5]])
    out = precision_from_confusion(confusion, [1, 2])
    assert out[1]["precision"] == pytest.approx(1.0)
    assert out[2]["precision"] == pytest.approx(5 / 7)
    assert out[2]["ci"][0] < 5 / 7 < out[2]["ci"][1]
    X = np.random.default_rng(0).normal(size=(3000, 5)).astype(np.float32)
    fmap = feature_map(X, limit=1000)
    assert len(fmap.rows) == 1000 and fmap.xy.shape == (1000, 2) and fmap.n_total == 3000
    assert fmap.explained[0] >= fmap.explained[1] > 0


def test_headline_shows_no_zero_width_macro_f1_interval():
    from inspector.ui.dashboard import DashboardData, headline

    audit = {"accuracy": 1.0, "accuracy_ci": [0.68, 1.0], "n_audit": 8, "macro_f1": 1.0, "macro_f1_ci": [1.0, 1.0]}
    data = DashboardData(classes=[], labelled={}, predicted={}, curve=[], stopping={}, audit=audit, n_audit=8,
                         cross_validation=None, model_version=7, n_labels_trained=70)
    text = headline(data)
    assert "0.68–1.00" in text
    assert "1.00–1.00" not in text and "too few audit labels for an interval" in text


def test_headline_shows_the_estimate_from_every_label_before_any_audit_label_is_scored():
    # the goals line and the curve judge on this estimate: the headline must not say there is none
    from inspector.ui.dashboard import DashboardData, headline

    estimate = {"estimate": 0.96, "interval": [0.93, 0.99], "method": "difference", "n_labels": 100}
    data = DashboardData(classes=[], labelled={}, predicted={}, curve=[], stopping={}, audit={}, n_audit=0,
                         cross_validation=None, model_version=10, n_labels_trained=100, estimate=estimate)
    text = headline(data)
    assert "No accuracy estimate yet" not in text
    assert "Accuracy 0.96 (95 % CI 0.93–0.99)" in text and "(100 labels)" in text
    assert "no random audit labels scored yet" in text
    data.estimate = None
    assert "No accuracy estimate yet" in headline(data)


def test_when_to_stop_does_not_say_keep_labelling_for_a_shown_target():
    from inspector.core.learning import stopping
    from inspector.ui.dashboard import DashboardData, stopping_text

    keep = {"message": "Labels are still changing the model; keep labelling."}
    data = DashboardData(classes=[], labelled={}, predicted={}, curve=[], stopping=keep, audit={}, n_audit=10,
                         model_version=10, n_labels_trained=100)
    assert stopping_text(data) == "When to stop: " + keep["message"]
    metrics = {"estimate": {"estimate": 0.996, "interval": [0.936, 1.0], "lower_bound": 0.954, "method": "difference",
                            "n_labels": 100, "n_audit": 10}}
    data.goals = stopping.goal_status(stopping.make_target("accuracy", 0.95), 400, 100, metrics)
    assert data.goals.target_shown
    text = stopping_text(data)
    assert text.startswith("When to stop: Not for the target, which is shown.") and keep["message"] in text
    data.goals = stopping.goal_status(stopping.make_target("accuracy", 0.97), 400, 100, metrics)
    assert stopping_text(data) == "When to stop: " + keep["message"]

