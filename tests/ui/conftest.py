"""Fixtures shared by the window tests."""

from __future__ import annotations

import pytest

pytest.importorskip("pytestqt")

from PySide6.QtCore import QSettings  # noqa: E402

from inspector.core import ingest  # noqa: E402


@pytest.fixture
def isolated_settings(tmp_path, monkeypatch, qapp):
    """Each test gets its own QSettings (recent projects, window state) and reads files in-process
    (small folders; starting worker processes would only slow the test down)."""
    QSettings.setDefaultFormat(QSettings.Format.IniFormat)
    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(tmp_path / "settings"))
    qapp.setOrganizationName("InspectorTests")
    qapp.setApplicationName("InspectorTests")
    qapp._inspector_testing = True  # error dialogs show without a blocking modal loop
    monkeypatch.setattr(ingest, "IN_PROCESS_BELOW", 10_000)
    yield


@pytest.fixture
def window(qtbot):
    """The main window, shown at a workstation size; its project is closed after the test."""
    from inspector.ui.main_window import MainWindow

    w = MainWindow()
    qtbot.addWidget(w)
    w.resize(1200, 800)
    w.show()
    yield w
    w.close_project()



@pytest.fixture
def opened(qtbot):
    """``opened(window.open_project, path)`` / ``opened(window.new_project_from_folder, folder,
    project)``: start opening and wait until the project is open (True) or refused (False). The
    window opens the file in a worker; the outcome arrives as ``project_open_done``."""

    def open_and_wait(start, *args, **kwargs) -> bool:
        window = start.__self__
        with qtbot.waitSignal(window.project_open_done, timeout=60_000) as blocker:
            start(*args, **kwargs)
        return bool(blocker.args[0])

    return open_and_wait
