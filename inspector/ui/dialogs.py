"""Dialogs: classes, settings, errors (never a traceback for a person)."""

from __future__ import annotations

import logging
import sys
import traceback

from PySide6.QtCore import QSettings, Qt
from PySide6.QtGui import QColor, QIcon, QPixmap
from PySide6.QtWidgets import (
    QApplication, QColorDialog, QComboBox, QDialog, QDialogButtonBox, QDoubleSpinBox, QFormLayout, QHBoxLayout,
    QInputDialog, QLabel, QLineEdit, QListWidget, QListWidgetItem, QMessageBox, QPushButton, QSpinBox,
    QVBoxLayout, QWidget,
)

from inspector.core.errors import UserError

log = logging.getLogger("inspector.ui")


def show_error(parent, title: str, message: str) -> None:
    """A clear message for a person; the app stays usable."""
    box = QMessageBox(parent)
    box.setIcon(QMessageBox.Icon.Warning)
    box.setWindowTitle(title)
    box.setText(message)
    box.setObjectName("errorDialog")
    if QApplication.instance() is not None and getattr(QApplication.instance(), "_inspector_testing", False):
        box.show()  # tests look at it and close it; a modal loop would block them
        return
    box.exec()


def install_excepthook() -> None:
    """Unexpected errors: log the traceback, show one sentence, keep running."""

    def hook(kind, value, tb) -> None:
        log.error("unexpected error", exc_info=(kind, value, tb))
        if issubclass(kind, KeyboardInterrupt):
            sys.__excepthook__(kind, value, tb)
            return
        message = str(value) if isinstance(value, UserError) else (
            f"Something went wrong ({kind.__name__}: {value}).\nYour labels are saved. "
            "Details were written to the log.")
        app = QApplication.instance()
        if app is not None:
            show_error(app.activeWindow(), "Inspector", message)
        else:
            traceback.print_exception(kind, value, tb)

    sys.excepthook = hook


def _swatch(color: str) -> QIcon:
    pm = QPixmap(16, 16)
    pm.fill(QColor(color))
    return QIcon(pm)


class ClassesDialog(QDialog):
    """Add, rename, recolour, reorder (keys follow), merge and delete classes. Every change is
    written to the project at once (durable); Close just closes."""

    def __init__(self, session, parent=None) -> None:
        super().__init__(parent)
        self.session = session
        self.project = session.project
        self.setWindowTitle("Classes")
        self.resize(460, 420)
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel("Keys 1–9 follow the order. Changes are saved immediately.\n"
                                "Tick the classes whose parts are acceptable (may pass the line);\n"
                                "every other class is a defect, and a defect passed unseen is an escape."))
        body = QHBoxLayout()
        self.list = QListWidget()
        self.list.setDragDropMode(QListWidget.DragDropMode.InternalMove)
        self.list.model().rowsMoved.connect(self._moved)
        self.list.itemChanged.connect(self._acceptable_changed)
        body.addWidget(self.list, 1)
        buttons = QVBoxLayout()
        self.buttons = {}
        for text, slot in (("Add…", self.add), ("Rename…", self.rename), ("Colour…", self.recolour),
                           ("Move up", lambda: self.move(-1)), ("Move down", lambda: self.move(1)),
                           ("Merge into…", self.merge), ("Delete…", self.delete)):
            b = QPushButton(text)
            b.clicked.connect(slot)
            buttons.addWidget(b)
            self.buttons[text] = b
        buttons.addStretch(1)
        body.addLayout(buttons)
        layout.addLayout(body)
        close = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        close.rejected.connect(self.reject)
        close.accepted.connect(self.accept)
        layout.addWidget(close)
        self.refresh()

    def refresh(self, select_id=None) -> None:
        from inspector.core.learning.acceptance import acceptable_class_ids

        self.list.blockSignals(True)
        self.list.clear()
        counts: dict[int, int] = {}
        for c in self.session.latest_labels().values():
            counts[c] = counts.get(c, 0) + 1
        acceptable = acceptable_class_ids(self.project)
        for c in self.project.classes():
            kind = "acceptable" if c.id in acceptable else "defect"
            item = QListWidgetItem(_swatch(c.color),
                                   f"{c.key or '·'}   {c.name}   ({counts.get(c.id, 0)} labelled, {kind})")
            item.setData(Qt.ItemDataRole.UserRole, c.id)
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(Qt.CheckState.Checked if c.id in acceptable else Qt.CheckState.Unchecked)
            item.setToolTip("Ticked: parts of this class are acceptable and may pass the line")
            self.list.addItem(item)
            if c.id == select_id:
                self.list.setCurrentItem(item)
        self.list.blockSignals(False)

    def _acceptable_changed(self, _item) -> None:
        from inspector.core.learning.acceptance import set_acceptable_class_ids

        ids = [int(self.list.item(r).data(Qt.ItemDataRole.UserRole)) for r in range(self.list.count())
               if self.list.item(r).checkState() == Qt.CheckState.Checked]
        current = self.list.currentItem()
        self._do(lambda: set_acceptable_class_ids(self.project, ids),
                 None if current is None else int(current.data(Qt.ItemDataRole.UserRole)))

    def _selected(self):
        item = self.list.currentItem()
        if item is None:
            return None
        class_id = int(item.data(Qt.ItemDataRole.UserRole))
        return next((c for c in self.project.classes() if c.id == class_id), None)

    def _do(self, action, select_id=None) -> bool:
        # a merge or delete relabels images: it must come after the labels already given
        self.session.wait_for_labels()
        try:
            action()
        except UserError as exc:
            show_error(self, "Classes", str(exc))
            return False
        self.session.notify_classes_changed()
        self.refresh(select_id)
        return True

    def add(self, name: str | None = None) -> None:
        if not name:
            name, ok = QInputDialog.getText(self, "Add class", "Name of the new class:")
            if not ok or not name.strip():
                return
        self._do(lambda: self.project.add_class(name))

    def rename(self) -> None:
        c = self._selected()
        if c is None:
            return
        name, ok = QInputDialog.getText(self, "Rename class", "New name:", QLineEdit.EchoMode.Normal, c.name)
        if ok and name.strip():
            self._do(lambda: self.project.rename_class(c.id, name), c.id)

    def recolour(self) -> None:
        c = self._selected()
        if c is None:
            return
        color = QColorDialog.getColor(QColor(c.color), self, f"Colour of {c.name}")
        if color.isValid():
            self._do(lambda: self.project.recolor_class(c.id, color.name()), c.id)

    def move(self, step: int) -> None:
        c = self._selected()
        if c is None:
            return
        ids = [x.id for x in self.project.classes()]
        i = ids.index(c.id)
        j = i + step
        if 0 <= j < len(ids):
            ids[i], ids[j] = ids[j], ids[i]
            self._do(lambda: self.project.reorder_classes(ids), c.id)

    def _moved(self, *_) -> None:
        ids = [int(self.list.item(r).data(Qt.ItemDataRole.UserRole)) for r in range(self.list.count())]
        self._do(lambda: self.project.reorder_classes(ids))

    def merge(self, target_id: int | None = None, confirm: bool = True) -> None:
        c = self._selected()
        if c is None:
            return
        others = [x for x in self.project.classes() if x.id != c.id]
        if not others:
            return
        if target_id is None:
            name, ok = QInputDialog.getItem(self, "Merge class", f"Merge '{c.name}' into:", [o.name for o in others],
                                            0, False)
            if not ok:
                return
            target_id = next(o.id for o in others if o.name == name)
        target = next(o for o in others if o.id == target_id)
        if confirm and QMessageBox.question(
                self, "Merge classes", f"Relabel every '{c.name}' image as '{target.name}' and remove '{c.name}'?\n"
                                       "The label history is kept.") != QMessageBox.StandardButton.Yes:
            return
        self._do(lambda: self.project.merge_classes(c.id, target.id, annotator=self.session.annotator()), target.id)

    def delete(self, confirm: bool = True) -> None:
        c = self._selected()
        if c is None:
            return
        n = sum(1 for v in self.session.latest_labels().values() if v == c.id)
        if confirm and QMessageBox.question(
                self, "Delete class", f"Delete '{c.name}'? Its {n} labelled image(s) become unlabelled "
                                      "(the history is kept).") != QMessageBox.StandardButton.Yes:
            return
        self._do(lambda: self.project.delete_class(c.id, annotator=self.session.annotator()))


class SettingsDialog(QDialog):
    """Learner settings (stored in the project: they change results) and the annotator's name
    and theme (stored on this computer)."""

    def __init__(self, session, parent=None) -> None:
        super().__init__(parent)
        from inspector.core.learning import learner
        from inspector.core.learning.models import MODEL_KINDS
        from inspector.core.learning.strategies import strategy_names

        self.session = session
        self.setWindowTitle("Settings")
        project = session.project
        current = learner.LearnerSettings.from_project(project)
        form = QFormLayout()
        self.strategy = QComboBox()
        self.strategy.addItems(strategy_names())
        self.strategy.setCurrentText(current.strategy)
        self.kind = QComboBox()
        self.kind.addItems(list(MODEL_KINDS))
        self.kind.setCurrentText(current.kind)
        self.queue_size = QSpinBox()
        self.queue_size.setRange(1, 500)
        self.queue_size.setValue(current.queue_size)
        self.audit = QDoubleSpinBox()
        self.audit.setRange(0.0, 0.5)
        self.audit.setSingleStep(0.05)
        self.audit.setValue(current.audit_share)
        self.retrain_every = QSpinBox()
        self.retrain_every.setRange(1, 1000)
        self.retrain_every.setValue(session.retrain_every())
        from inspector.core.learning import routing

        self.escape_target = QDoubleSpinBox()
        self.escape_target.setRange(0.1, 20.0)
        self.escape_target.setSingleStep(0.1)
        self.escape_target.setDecimals(1)
        self.escape_target.setSuffix(" %")
        self.escape_target.setValue(100.0 * routing.escape_target(project))
        self.escape_target.setToolTip("Largest share of defective parts the exported model may pass without a "
                                      "person looking (checked with 95 % confidence on out-of-sample predictions)")
        settings = QSettings()
        self.annotator = QLineEdit(str(settings.value("annotator", "") or ""))
        self.theme = QComboBox()
        self.theme.addItems(["light", "dark"])
        self.theme.setCurrentText(str(settings.value("theme", "light")))
        form.addRow("Selection strategy", self.strategy)
        form.addRow("Model", self.kind)
        form.addRow("Batch (queue) size", self.queue_size)
        form.addRow("Audit share", self.audit)
        form.addRow("Retrain every N labels", self.retrain_every)
        form.addRow("Escape target", self.escape_target)
        from inspector.ui.goals import GoalsEditor

        self.goals_editor = GoalsEditor(*session.goals(), parent=self)
        form.addRow(self.goals_editor)
        form.addRow(QLabel("<i>The settings above are saved in the project.</i>"))
        form.addRow("Annotator name", self.annotator)
        form.addRow("Theme", self.theme)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.save)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(buttons)
        self._learner = learner

    def save(self) -> None:
        learner = self._learner
        project = self.session.project
        try:
            candidate = learner.LearnerSettings(kind=self.kind.currentText(), strategy=self.strategy.currentText(),
                                                queue_size=self.queue_size.value(), audit_share=self.audit.value())
            candidate.validate()
            project.set_setting(learner.SETTING_STRATEGY, candidate.strategy)
            project.set_setting(learner.SETTING_KIND, candidate.kind)
            project.set_setting(learner.SETTING_QUEUE_SIZE, candidate.queue_size)
            project.set_setting(learner.SETTING_AUDIT_SHARE, candidate.audit_share)
            self.session.set_retrain_every(self.retrain_every.value())
            from inspector.core.learning.routing import SETTING_ESCAPE_TARGET

            project.set_setting(SETTING_ESCAPE_TARGET, round(self.escape_target.value() / 100.0, 6))
            goals = self.goals_editor.goals()
            if goals != tuple(self.session.goals()):
                self.session.set_goals(*goals)
        except UserError as exc:
            show_error(self, "Settings", str(exc))
            return
        settings = QSettings()
        settings.setValue("annotator", self.annotator.text().strip())
        settings.setValue("theme", self.theme.currentText())
        self.accept()
