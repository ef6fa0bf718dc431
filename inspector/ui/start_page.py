"""The start page: new project from a folder (button or drop), open, recent, demo."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QSettings, QSize, Qt, Signal
from PySide6.QtWidgets import (
    QFileDialog, QFrame, QHBoxLayout, QLabel, QListWidget, QListWidgetItem, QPushButton, QVBoxLayout, QWidget,
)

from inspector.ui.icons import icon

RECENT_KEY = "recent_projects"
MAX_RECENT = 10


def recent_projects() -> list[str]:
    value = QSettings().value(RECENT_KEY, []) or []
    if isinstance(value, str):
        value = [value]
    return [str(v) for v in value]


def remember_project(path: Path) -> None:
    path = str(Path(path).resolve())
    items = [p for p in recent_projects() if p != path]
    QSettings().setValue(RECENT_KEY, [path] + items[: MAX_RECENT - 1])


def forget_project(path: str) -> None:
    QSettings().setValue(RECENT_KEY, [p for p in recent_projects() if p != path])


class DropZone(QFrame):
    folder_dropped = Signal(str)

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setObjectName("dropZone")
        self.setAcceptDrops(True)
        self.setMinimumHeight(120)
        layout = QVBoxLayout(self)
        text = QLabel("Drop a folder of images here to start a new project")
        text.setAlignment(Qt.AlignmentFlag.AlignCenter)
        text.setObjectName("pageSubtitle")
        layout.addWidget(text)

    def _folder(self, event) -> str | None:
        urls = event.mimeData().urls() if event.mimeData().hasUrls() else []
        for url in urls:
            path = Path(url.toLocalFile())
            if path.is_dir():
                return str(path)
        return None

    def _hover(self, on: bool) -> None:
        self.setProperty("hover", "true" if on else "false")
        self.style().unpolish(self)
        self.style().polish(self)

    def dragEnterEvent(self, event) -> None:
        if self._folder(event):
            self._hover(True)
            event.acceptProposedAction()

    def dragLeaveEvent(self, event) -> None:
        self._hover(False)

    def dropEvent(self, event) -> None:
        self._hover(False)
        folder = self._folder(event)
        if folder:
            event.acceptProposedAction()
            self.folder_dropped.emit(folder)


class StartPage(QWidget):
    new_from_folder = Signal(str)
    open_requested = Signal(str)
    demo_requested = Signal()

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        outer = QHBoxLayout(self)
        outer.addStretch(1)
        column = QVBoxLayout()
        column.setSpacing(14)
        column.addStretch(1)
        title = QLabel("Inspector")
        title.setObjectName("pageTitle")
        column.addWidget(title)
        subtitle = QLabel("Label images of parts; the learner picks the image worth your time next.")
        subtitle.setObjectName("pageSubtitle")
        subtitle.setWordWrap(True)
        column.addWidget(subtitle)
        row = QHBoxLayout()
        self.new_button = QPushButton(icon("new-project"), "  New project from a folder…")
        self.new_button.setObjectName("primary")
        self.new_button.setIconSize(QSize(20, 20))
        self.new_button.clicked.connect(self._choose_folder)
        self.open_button = QPushButton(icon("folder-open"), "  Open project…")
        self.open_button.setIconSize(QSize(20, 20))
        self.open_button.clicked.connect(self._choose_project)
        self.demo_button = QPushButton(icon("demo"), "  Try the demo")
        self.demo_button.setIconSize(QSize(20, 20))
        self.demo_button.setToolTip("Synthetic parts with scratches, cracks, inclusions and stains")
        self.demo_button.clicked.connect(self.demo_requested)
        for b in (self.new_button, self.open_button, self.demo_button):
            b.setMinimumHeight(38)
            row.addWidget(b)
        column.addLayout(row)
        # why the last folder gave no project (e.g. no image in it): said here, where the
        # person is back, rather than in a dialog they dismiss before reading
        self.notice = QLabel("")
        self.notice.setObjectName("hint")
        self.notice.setWordWrap(True)
        self.notice.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.notice.hide()
        column.addWidget(self.notice)
        self.drop = DropZone()
        self.drop.folder_dropped.connect(self.new_from_folder)
        column.addWidget(self.drop)
        recent_title = QLabel("RECENT PROJECTS")
        recent_title.setObjectName("caption")
        column.addWidget(recent_title)
        self.recent = QListWidget()
        self.recent.setMinimumHeight(160)
        self.recent.itemActivated.connect(lambda item: self.open_requested.emit(item.data(Qt.ItemDataRole.UserRole)))
        self.recent.itemDoubleClicked.connect(lambda item: self.open_requested.emit(item.data(Qt.ItemDataRole.UserRole)))
        column.addWidget(self.recent)
        column.addStretch(2)
        box = QWidget()
        box.setLayout(column)
        box.setMaximumWidth(760)
        box.setMinimumWidth(640)
        outer.addWidget(box, 4)
        outer.addStretch(1)
        self.refresh()

    def show_notice(self, text: str) -> None:
        """Say something about the last attempt on the start page (empty text hides it)."""
        self.notice.setText(text)
        self.notice.setVisible(bool(text))

    def refresh(self) -> None:
        self.recent.clear()
        for path in recent_projects():
            p = Path(path)
            item = QListWidgetItem(icon("label"), f"{p.stem}    —    {p.parent}")
            item.setData(Qt.ItemDataRole.UserRole, path)
            if not p.exists():
                item.setText(item.text() + "   (not found)")
            self.recent.addItem(item)
        if not recent_projects():
            item = QListWidgetItem("No projects yet: start one from a folder, or try the demo.")
            item.setFlags(Qt.ItemFlag.NoItemFlags)
            self.recent.addItem(item)

    def _choose_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Folder of images")
        if folder:
            self.new_from_folder.emit(folder)

    def _choose_project(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open project", "", "Inspector projects (*.inspector);;All files (*)")
        if path:
            self.open_requested.emit(path)
