"""The Features dialog: compare in a worker, switch in the background while labelling goes on,
cancel a switch (the project stays on its extractor)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

pytest.importorskip("pytestqt")

import inspector.core.features as features_module  # noqa: E402
from inspector.core import ingest  # noqa: E402
from inspector.core.extractor_choice import project_extractor_name  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))
from test_extractor_choice import HistogramExtractor, labelled_project  # noqa: E402


@pytest.fixture
def dialog(qtbot, tmp_path, monkeypatch):
    from inspector.ui.features_dialog import FeaturesDialog
    from inspector.ui.session import ProjectSession

    monkeypatch.setitem(features_module._FACTORIES, "histogram", HistogramExtractor)
    monkeypatch.setattr(features_module, "_INSTANCES", {})
    monkeypatch.setattr(features_module, "extractor_names", lambda: ["texture", "histogram"])
    monkeypatch.setattr(ingest, "IN_PROCESS_BELOW", 10**6)  # the test extractor exists in this process only
    project = labelled_project(tmp_path)
    project.set_setting("app.retrain_every", 10_000)
    session = ProjectSession(project)
    session.start()
    qtbot.waitUntil(lambda: len(session.image_ids) == 24 and not session.busy(), timeout=30_000)
    view = FeaturesDialog(session)
    qtbot.addWidget(view)
    view.show()
    qtbot.waitUntil(lambda: view.table.rowCount() == 2 and view._status_task is None, timeout=10_000)
    yield view, session, project
    session.close()


def test_compare_then_use_switches_in_the_background_and_keeps_labels(dialog, qtbot):
    view, session, project = dialog
    labels = project.latest_labels()
    view.compare()
    qtbot.waitUntil(lambda: view._compare_task is None, timeout=30_000)
    assert view.comparison is not None and {s.name for s in view.comparison.scores} == {"texture", "histogram"}
    assert view.results.rowCount() == 2 and "ptimistic" in view.verdict.text()
    assert project.feature_count("histogram", 1) == 24  # the labelled images' features are stored

    with qtbot.waitSignal(session.extractor_changed, timeout=30_000) as changed:
        view.use("histogram")
    assert changed.args == ["histogram"]
    assert project_extractor_name(project) == "histogram" and session.extractor == ("histogram", 1)
    qtbot.waitUntil(lambda: session.features.shape == (24, 17), timeout=10_000)
    assert project.latest_labels() == labels
    assert "now histogram" in view.message.text()
    # the dialog says why the project is on its extractor
    qtbot.waitUntil(lambda: view._status_task is None, timeout=10_000)
    view.refresh()
    qtbot.waitUntil(lambda: "switched to from texture" in view.current.text(), timeout=10_000)


def test_a_cancelled_switch_leaves_the_project_on_its_extractor(dialog, qtbot, monkeypatch):
    view, session, project = dialog
    import time

    slow = HistogramExtractor.features_of
    monkeypatch.setattr(HistogramExtractor, "features_of", lambda self, d: (time.sleep(0.05), slow(self, d))[1])
    task = session.switch_extractor("histogram")
    assert task is not None and session.switching_to == "histogram"
    qtbot.waitUntil(lambda: view.progress.isVisible(), timeout=5_000)
    view.cancel()
    qtbot.waitUntil(lambda: session.switching_to is None, timeout=10_000)
    assert project_extractor_name(project) == "texture" and session.extractor[0] == "texture"
    assert "cancelled" in view.message.text()
    assert project.feature_count("histogram", 1) < 24
