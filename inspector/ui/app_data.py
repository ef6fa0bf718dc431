"""The app's names (for QSettings) and the folder where it keeps its own files.

Its own module so that the main window (the demo project) and the app start-up both import it,
and neither imports the other."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QStandardPaths

ORGANISATION = "Inspector"
APPLICATION = "Inspector"


def data_folder() -> Path:
    """Where the app keeps its own files (the demo, the log): ``<user data>/Inspector``.

    Not AppDataLocation: that already appends organisation *and* application name, and both are
    "Inspector" (``~/.local/share/Inspector/Inspector``)."""
    base = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.GenericDataLocation)
    return Path(base) / APPLICATION
