"""Target and budget in the app: the status bar, the one-time banner above the labelling view
(export offered, labelling goes on), the settings dialog and the dashboard."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("pytestqt")

from PySide6.QtCore import QSettings, Qt  # noqa: E402

from inspector.core import ingest  # noqa: E402
from inspector.core.learning import stopping  # noqa: E402
from inspector.ui.main_window import MainWindow  # noqa: E402

# the interval's lower end (a 97.5 % bound) is below a 90 % target, the one-sided 95 % bound clears it
SHOWN_METRICS = {"estimate": {"estimate": 0.96, "interval": [0.89, 0.985], "lower_bound": 0.905, "method": "audit",
                              "method_words": "random audit labels only (Wilson interval)", "n_audit": 60,
                              "n_labels": 30},
                 "audit": {"n_audit": 60, "accuracy": 0.96, "accuracy_ci": [0.89, 0.985]}}


@pytest.fixture(autouse=True)
def _isolated(isolated_settings):  # tests/ui/conftest.py: own QSettings, files read in-process
    yield


@pytest.fixture
def folder(tmp_path) -> Path:
    rng = np.random.default_rng(1)
    root = tmp_path / "parts"
    root.mkdir()
    for i in range(24):
        image = rng.normal(110, 10, (48, 48)).clip(0, 255).astype(np.uint8)
        if i % 3 == 0:
            cv2.line(image, (4, 6 + i), (44, 40), 240, 2)
        cv2.imwrite(str(root / f"part_{i:03d}.png"), image)
    return root


@pytest.fixture
def window(qtbot):
    w = MainWindow()
    qtbot.addWidget(w)
    w.resize(1300, 850)
    w.show()
    yield w
    w.close_project()


def _open(window, qtbot, folder, tmp_path, goals):
    with qtbot.waitSignal(window.project_open_done, timeout=60_000) as done:
        window.new_project_from_folder(str(folder), str(tmp_path / "line3.inspector"), goals=goals)
    assert done.args[0]
    s = window.session
    qtbot.waitUntil(lambda: not s.extracting() and not s.loading_features() and window.label_view.current is not None,
                    timeout=30000)
    return s


def _add_class(view, qtbot, name):
    view.new_class_edit.setText(name)
    qtbot.keyClick(view.new_class_edit, Qt.Key.Key_Return)
    view.setFocus()


def _shoot(widget, name):
    if os.environ.get("INSPECTOR_SCREENSHOTS"):
        widget.grab().save(os.path.join(os.environ["INSPECTOR_SCREENSHOTS"], name))


def test_target_shown_is_announced_once_and_labelling_goes_on(window, qtbot, folder, tmp_path, monkeypatch, opened):
    target = stopping.make_target("accuracy", 0.9)
    s = _open(window, qtbot, folder, tmp_path, (target, 500))
    assert s.goals() == (target, 500)
    assert "0 of 500 labels" in window.model_status.text()
    assert "target accuracy ≥ 90 %: no estimate yet" in window.model_status.text()
    assert not window.goal_banner.isVisible()
    # the model's honest estimate now clears the target with its whole interval
    s.model_metrics = SHOWN_METRICS
    s.model_updated.emit(7)
    assert window.goal_banner.isVisible()
    assert window.goal_banner.text.text().startswith("Target reached: accuracy 96 % (95 % interval 89 %–98.5 %)")
    assert window.model_status.text().endswith("target accuracy ≥ 90 %: reached")
    assert "one-sided 95 % lower bound (90.5 %) clears the 90 % target" in window.model_status.toolTip()
    _shoot(window, "goal-banner.png")
    exported = []
    monkeypatch.setattr(window, "export_model", lambda: exported.append("model"))
    monkeypatch.setattr(window, "export_report", lambda: exported.append("report"))
    window.goal_banner.export_model.click()
    window.goal_banner.export_report.click()
    assert exported == ["model", "report"]  # the banner's signals reach the window's exports
    # not a modal nag: the labelling keys still label while it shows
    view = window.label_view
    _add_class(view, qtbot, "ok")
    first = view.current
    qtbot.keyClick(view, Qt.Key.Key_1)
    qtbot.waitUntil(lambda: first in s.latest_labels() and not s.pending_labels() and view.current != first,
                    timeout=10000)
    window.goal_banner.dismiss.click()
    assert not window.goal_banner.isVisible()
    s.model_updated.emit(8)
    assert not window.goal_banner.isVisible()  # said once
    # ... and once across sessions too
    path = s.project.path
    window.close_project()
    assert opened(window.open_project, str(path))
    window.session.model_metrics = SHOWN_METRICS
    window.session.model_updated.emit(9)
    assert not window.goal_banner.isVisible()


def test_budget_spent_is_announced_and_settings_change_the_rules(window, qtbot, folder, tmp_path):
    s = _open(window, qtbot, folder, tmp_path, (None, 1))
    view = window.label_view
    _add_class(view, qtbot, "ok")
    qtbot.keyClick(view, Qt.Key.Key_1)
    qtbot.waitUntil(lambda: len(s.latest_labels()) == 1 and not s.pending_labels(), timeout=10000)
    qtbot.waitUntil(window.goal_banner.isVisible, timeout=5000)
    assert "Budget spent: 1 of 1 labels used." in window.goal_banner.text.text()
    assert "budget spent" in window.model_status.text()
    from inspector.ui.dialogs import SettingsDialog

    dialog = SettingsDialog(s, window)
    editor = dialog.goals_editor
    assert editor.goals() == (None, 1)
    editor.figure.setCurrentIndex(editor.figure.findData("macro_f1"))
    editor.value.setValue(85.0)
    editor.budget.setValue(300)
    _shoot(dialog, "settings-goals.png")
    dialog.save()
    assert s.goals() == (stopping.make_target("macro_f1", 0.85), 300)
    assert stopping.read_goals(s.project) == s.goals()
    assert "1 of 300 labels" in window.model_status.text()
    assert "target macro-F1 ≥ 85 %" in window.model_status.text()


def test_dashboard_states_target_and_budget(window, qtbot, folder, tmp_path):
    s = _open(window, qtbot, folder, tmp_path, (stopping.make_target("accuracy", 0.99), 40))
    dashboard = window.tabs.widget(2).ensure_built()
    window.tabs.setCurrentIndex(2)
    qtbot.waitUntil(lambda: dashboard.data is not None and dashboard._task is None, timeout=60000)
    assert dashboard.goals.isVisible()
    text = dashboard.goals.text()
    assert "Target accuracy ≥ 99 %: no estimate" in text and "Budget: 0 of 40 labels used (40 left)." in text
    assert s.goal_status().budget == 40
