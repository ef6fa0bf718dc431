"""Starting the desktop app: QApplication, theme, icon, logging, the error hook."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Optional

from PySide6.QtCore import QSettings, qFormatLogMessage, qInstallMessageHandler
from PySide6.QtWidgets import QApplication

from inspector.ui.app_data import APPLICATION, ORGANISATION, data_folder
from inspector.ui.icons import app_icon
from inspector.ui.theme import apply_theme


#: Qt messages that tell a user nothing: the offscreen platform (self-test, CI) says this for
#: every top-level window shown
HARMLESS_QT_MESSAGES = frozenset({"This plugin does not support propagateSizeHints()"})
_previous_qt_handler: list = []


def _qt_message(mode, context, message: str) -> None:
    if message in HARMLESS_QT_MESSAGES:
        return
    previous = _previous_qt_handler[0] if _previous_qt_handler else None
    if previous is not None:
        previous(mode, context, message)
    else:
        sys.stderr.write(qFormatLogMessage(mode, context, message) + "\n")


def install_qt_message_filter() -> None:
    """Drop exactly the :data:`HARMLESS_QT_MESSAGES`; every other Qt message goes where it went."""
    if not _previous_qt_handler:
        _previous_qt_handler.append(qInstallMessageHandler(_qt_message))


def application(argv: Optional[list[str]] = None) -> QApplication:
    """The QApplication, created once, with names (for QSettings), icon and theme."""
    install_qt_message_filter()
    app = QApplication.instance()
    if app is None:
        app = QApplication(argv if argv is not None else sys.argv[:1])
    # A worker thread running Python (training, building results) gives the GIL back to the UI
    # thread only every switch interval; each Qt call releases and re-takes it, so at the default
    # 5 ms a slot making a few dozen Qt calls could wait hundreds of milliseconds.
    sys.setswitchinterval(0.0005)
    app.setOrganizationName(ORGANISATION)
    app.setApplicationName(APPLICATION)
    app.setApplicationDisplayName(APPLICATION)
    app.setDesktopFileName("inspector")
    app.setWindowIcon(app_icon())
    app.setStyle("Fusion")
    apply_theme(str(QSettings().value("theme", "light")))
    return app


def configure_logging() -> Path:
    folder = data_folder()
    folder.mkdir(parents=True, exist_ok=True)
    log_path = folder / "inspector.log"
    handler = logging.FileHandler(log_path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("inspector")
    root.setLevel(logging.INFO)
    root.addHandler(handler)
    return log_path


def run(project_path: Optional[str] = None, demo: bool = False) -> int:
    """Open the main window (on the start page, a project, or the demo) and run until closed."""
    from inspector.ui.dialogs import install_excepthook
    from inspector.ui.main_window import MainWindow

    app = application()
    configure_logging()
    install_excepthook()
    window = MainWindow()
    window.show()
    if demo:
        window.open_demo()
    elif project_path:
        path = Path(project_path)
        if path.is_dir() and not path.suffix == ".inspector":
            window.new_project_from_folder(str(path))
        else:
            window.open_project(str(path))
    return int(app.exec())
