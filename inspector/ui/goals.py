"""The project's two stopping rules in the app: editing them (new-project dialog, settings) and
the one-time banner in the labelling view when the target is shown or the budget spent.

The rules and their judgement live in :mod:`inspector.core.learning.stopping`; this module only
shows and edits them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox, QComboBox, QDialog, QDialogButtonBox, QDoubleSpinBox, QFileDialog, QFormLayout, QFrame, QHBoxLayout,
    QLabel, QLineEdit, QPushButton, QSpinBox, QVBoxLayout, QWidget,
)

from inspector.core.errors import UserError
from inspector.core.learning import stopping

_NO_TARGET = "no target"


class GoalsEditor(QWidget):
    """Target (figure and value) and labelling budget as form rows; ``goals()`` reads them."""

    def __init__(self, target: Optional[stopping.Target] = None, budget: Optional[int] = None,
                 parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        form = QFormLayout(self)
        form.setContentsMargins(0, 0, 0, 0)
        row = QHBoxLayout()
        self.figure = QComboBox()
        self.figure.addItem(_NO_TARGET, None)
        for key, figure in stopping.FIGURES.items():
            self.figure.addItem(figure.words, key)
        self.value = QDoubleSpinBox()
        self.value.setRange(0.1, 99.9)
        self.value.setDecimals(1)
        self.value.setSuffix(" %")
        self.value.setValue(95.0)
        row.addWidget(self.figure, 1)
        self.at_least = QLabel("at least")
        row.addWidget(self.at_least)
        row.addWidget(self.value)
        form.addRow("Labelling target", row)
        self.budget_on = QCheckBox("at most")
        self.budget = QSpinBox()
        self.budget.setRange(1, 1_000_000)
        self.budget.setSingleStep(50)
        self.budget.setValue(400)
        self.budget.setSuffix(" labels")
        budget_row = QHBoxLayout()
        budget_row.addWidget(self.budget_on)
        budget_row.addWidget(self.budget, 1)
        form.addRow("Labelling budget", budget_row)
        note = QLabel("The target counts as reached only when the whole 95 % interval of the honest estimate "
                      "clears it. Labelling can go on after either is met.")
        note.setObjectName("dim")
        note.setWordWrap(True)
        form.addRow(note)
        if target is not None:
            self.figure.setCurrentIndex(self.figure.findData(target.figure))
            self.value.setValue(round(100.0 * target.value, 1))
        if budget is not None:
            self.budget_on.setChecked(True)
            self.budget.setValue(int(budget))
        self.figure.currentIndexChanged.connect(self._enable)
        self.budget_on.toggled.connect(self._enable)
        self._enable()

    def _enable(self) -> None:
        key = self.figure.currentData()
        has_target = key is not None
        self.value.setEnabled(has_target)
        self.at_least.setEnabled(has_target)
        self.at_least.setText("at least" if key is None or stopping.FIGURES[key].higher_is_better else "at most")
        self.budget.setEnabled(self.budget_on.isChecked())

    def goals(self) -> tuple[Optional[stopping.Target], Optional[int]]:
        """The rules as entered; raises UserError for impossible values."""
        key = self.figure.currentData()
        target = None if key is None else stopping.make_target(key, self.value.value() / 100.0)
        budget = stopping.check_budget(self.budget.value()) if self.budget_on.isChecked() else None
        return target, budget


class NewProjectDialog(QDialog):
    """Where to save the project for a folder, and (optionally) its target and budget."""

    def __init__(self, folder: Path, project_path: Path, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("New project")
        self.setMinimumWidth(560)
        layout = QVBoxLayout(self)
        form = QFormLayout()
        images = QLabel(str(folder))
        images.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        form.addRow("Images", images)
        path_row = QHBoxLayout()
        self.path_edit = QLineEdit(str(project_path))
        browse = QPushButton("Choose…")
        browse.clicked.connect(self._browse)
        path_row.addWidget(self.path_edit, 1)
        path_row.addWidget(browse)
        form.addRow("Project file", path_row)
        layout.addLayout(form)
        self.editor = GoalsEditor(parent=self)
        layout.addWidget(self.editor)
        self.error = QLabel("")
        self.error.setObjectName("hint")
        self.error.setWordWrap(True)
        self.error.hide()
        layout.addWidget(self.error)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Create project")
        buttons.accepted.connect(self._accept)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)
        self.result_goals: tuple[Optional[stopping.Target], Optional[int]] = (None, None)

    def _browse(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Project file", self.path_edit.text(),
                                              "Inspector projects (*.inspector)")
        if path:
            self.path_edit.setText(path)

    def project_path(self) -> Path:
        return Path(self.path_edit.text().strip())

    def _accept(self) -> None:
        try:
            self.result_goals = self.editor.goals()
            if not self.path_edit.text().strip():
                raise UserError("choose where to save the project file")
        except UserError as exc:
            self.error.setText(str(exc))
            self.error.show()
            return
        self.accept()


class GoalBanner(QFrame):
    """Said once, above the image, when the target is shown or the budget spent: not a dialog,
    labelling goes on; offers the exports a quality engineer would do next."""

    export_model_requested = Signal()
    export_report_requested = Signal()

    def __init__(self, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.setObjectName("goalBanner")
        self.setStyleSheet("QFrame#goalBanner { background: #e6f4ea; border-bottom: 1px solid #81c995; }"
                           "QFrame#goalBanner QLabel { color: #0d3b1e; }")
        row = QHBoxLayout(self)
        row.setContentsMargins(12, 6, 8, 6)
        self.text = QLabel("")
        self.text.setWordWrap(True)
        row.addWidget(self.text, 1)
        self.export_model = QPushButton("Export model…")
        self.export_model.clicked.connect(self.export_model_requested)
        self.export_report = QPushButton("Export report…")
        self.export_report.clicked.connect(self.export_report_requested)
        self.dismiss = QPushButton("Keep labelling")
        self.dismiss.setToolTip("Hide this note; labelling goes on as before")
        self.dismiss.clicked.connect(self.hide)
        for b in (self.export_model, self.export_report, self.dismiss):
            b.setFocusPolicy(Qt.FocusPolicy.NoFocus)  # the labelling keys stay with the image
            row.addWidget(b)
        self.hide()

    def announce(self, status: stopping.GoalStatus, due: list[str]) -> None:
        parts = []
        if "target" in due:
            parts.append(status.target_sentence())
        if "budget" in due:
            parts.append(status.budget_sentence())
        parts.append("You can export the model and the report now, or keep labelling.")
        self.text.setText(" ".join(parts))
        self.show()
