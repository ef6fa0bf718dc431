"""The project's feature extractor: which one it uses, an honest comparison of the available
ones on the project's own labels, and one click to switch (extracted in the background while
labelling goes on with the current features)."""

from __future__ import annotations

import html

from typing import Optional

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from inspector.ui.session import SWITCHING
from inspector.workflow.jobs import compare_features, features_overview
from inspector.ui.workers import Task, pool, run_task


def _fit_height(table: QTableWidget, min_rows: int = 2) -> None:
    """Make a short table exactly as tall as its rows (no scroll bar, no empty area)."""
    table.resizeRowsToContents()
    rows = sum(table.rowHeight(r) for r in range(table.rowCount()))
    rows = max(rows, min_rows * table.verticalHeader().defaultSectionSize())
    table.setFixedHeight(table.horizontalHeader().height() + rows + 2 * table.frameWidth() + 2)


def _item(text: str, tip: str = "") -> QTableWidgetItem:
    item = QTableWidgetItem(text)
    if tip:
        item.setToolTip(tip)
    return item


class FeaturesDialog(QDialog):
    """Current extractor, the available ones, "Compare extractors" and "Use <name>"."""

    def __init__(self, session, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.session = session
        self.setWindowTitle("Features")
        self.resize(900, 560)
        self.comparison = None
        self._status_task: Optional[Task] = None
        self._compare_task: Optional[Task] = None

        self.current = QLabel(self)
        self.current.setWordWrap(True)
        self.current.setTextFormat(Qt.TextFormat.RichText)

        self.table = QTableWidget(0, 5, self)
        self.table.setHorizontalHeaderLabels(["Extractor", "Images with\nfeatures", "Labelled images\nwith features",
                                              "", "Description"])
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.setSelectionMode(QTableWidget.SelectionMode.NoSelection)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setStretchLastSection(True)
        self.table.setWordWrap(True)

        self.compare_button = QPushButton("Compare extractors", self)
        self.compare_button.setToolTip("Measure every extractor on this project's labels: honestly on the random "
                                       "audit labels when there are enough, otherwise by cross-validation "
                                       "(optimistic). Features the labelled images lack are computed first.")
        self.compare_button.clicked.connect(self.compare)
        self.compare_button.setSizePolicy(QSizePolicy.Policy.Maximum, QSizePolicy.Policy.Fixed)
        self.progress = QProgressBar(self)
        self.progress.setVisible(False)
        self.progress_text = QLabel(self)
        self.progress_text.setStyleSheet("color: #555;")
        self.cancel_button = QPushButton("Cancel", self)
        self.cancel_button.setVisible(False)
        self.cancel_button.clicked.connect(self.cancel)

        self.basis = QLabel(self)
        self.basis.setWordWrap(True)
        self.results = QTableWidget(0, 4, self)
        self.results.setHorizontalHeaderLabels(["Extractor", "Macro-F1 (95 % interval)", "Accuracy (95 % interval)",
                                                "Behind the best (95 % interval)"])
        self.results.verticalHeader().setVisible(False)
        self.results.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.results.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.results.horizontalHeader().setStretchLastSection(True)
        self.verdict = QLabel(self)
        self.verdict.setWordWrap(True)
        self.use_best = QPushButton(self)
        self.use_best.setVisible(False)
        self.use_best.clicked.connect(lambda: self.use(self.comparison.best))
        self.message = QLabel(self)
        self.message.setWordWrap(True)

        available = QGroupBox("Extractors in this Inspector", self)
        available_layout = QVBoxLayout(available)
        available_layout.addWidget(self.table)
        compare_box = QGroupBox("Which is better for this project's images?", self)
        compare_layout = QVBoxLayout(compare_box)
        row = QHBoxLayout()
        row.addWidget(self.compare_button)
        row.addWidget(self.progress, 1)
        row.addWidget(self.cancel_button)
        row.addStretch(0)
        compare_layout.addLayout(row)
        compare_layout.addWidget(self.progress_text)
        compare_layout.addWidget(self.basis)
        compare_layout.addWidget(self.results)
        verdict_row = QHBoxLayout()
        verdict_row.addWidget(self.verdict, 1)
        verdict_row.addWidget(self.use_best, 0, Qt.AlignmentFlag.AlignTop)
        compare_layout.addLayout(verdict_row)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close, self)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.current)
        layout.addWidget(available)
        layout.addWidget(compare_box)
        layout.addStretch(1)
        layout.addWidget(self.message)
        layout.addWidget(buttons)

        session.job_progress.connect(self._job_progress)
        session.job_finished.connect(self._job_finished)
        session.job_failed.connect(self._job_failed)
        session.extractor_changed.connect(lambda _name: self.refresh())
        self._show_results()
        self.refresh()

    # ------------------------------------------------------------------ status of every extractor
    def refresh(self) -> None:
        """Re-read the extractors and their cached counts (in a worker: loading an extractor's
        weights and counting vectors take time)."""
        name, version = self.session.extractor
        self.current.setText(f"This project computes its features with <b>{name}</b> (version {version}). "
                             "Labels belong to images, not to features: switching keeps every label, and the other "
                             "extractor's features stay stored, so switching back is instant.")
        if self._status_task is not None:
            return
        task = Task(features_overview, self.session.project, name="Reading the extractors")
        task.signals.finished.connect(self._status_read)
        task.signals.failed.connect(lambda m: (setattr(self, "_status_task", None), self._say(m, error=True)))
        self._status_task = run_task(task, pool("images"))

    def _status_read(self, rows) -> None:
        self._status_task = None
        why = next((status.why for status in rows if status.current and status.why), "")
        if why:
            name, version = self.session.extractor
            self.current.setText(f"This project computes its features with <b>{name}</b> (version {version}), "
                                 f"{html.escape(why)}. Labels belong to images, not to features: switching keeps "
                                 "every label, and the other extractor's features stay stored, so switching back "
                                 "is instant.")
        self.table.setRowCount(len(rows))
        switching = self.session.switching_to
        for r, status in enumerate(rows):
            mark = " (current)" if status.name == self.session.extractor[0] else ""
            self.table.setItem(r, 0, _item(f"{status.name}{mark}", f"version {status.version}, {status.dim} numbers"))
            if not status.available:
                self.table.setItem(r, 1, _item("—"))
                self.table.setItem(r, 2, _item("—"))
                self.table.setItem(r, 4, _item(f"not available: {status.problem}"))
                self.table.setCellWidget(r, 3, None)
                continue
            self.table.setItem(r, 1, _item(f"{status.features:,} of {status.images:,}"))
            self.table.setItem(r, 2, _item(f"{status.labelled_with_features:,}"))
            self.table.setItem(r, 4, _item(status.description, status.description))
            if mark:
                self.table.setCellWidget(r, 3, None)
                self.table.setItem(r, 3, _item("in use"))
            else:
                button = QPushButton(f"Use {status.name}", self.table)
                button.setToolTip(f"Compute {status.name} features of every image in the background, then switch "
                                  "(labelling goes on meanwhile; every label is kept)")
                button.setEnabled(switching is None)
                button.clicked.connect(lambda _=False, n=status.name: self.use(n))
                self.table.setCellWidget(r, 3, button)
        _fit_height(self.table)

    # ------------------------------------------------------------------ comparison
    def compare(self) -> None:
        if self._compare_task is not None:
            return
        task = Task(compare_features, self.session.project, name="Comparing extractors")
        task.signals.progress.connect(lambda d, t, m: self._progress(d, t, m))
        task.signals.finished.connect(self._compared)
        task.signals.failed.connect(self._compare_failed)
        task.signals.cancelled.connect(self._compare_cancelled)
        self._compare_task = run_task(task, pool("background"))
        self.compare_button.setEnabled(False)
        self._busy(True, "Comparing: computing the labelled images' features that are missing…")

    def _progress(self, done: int, total: int, message: str) -> None:
        self.progress.setRange(0, max(total, 1))
        self.progress.setValue(min(done, max(total, 1)))
        if message:
            self.progress_text.setText(message)

    def _busy(self, on: bool, text: str = "") -> None:
        self.progress.setVisible(on)
        self.cancel_button.setVisible(on)
        self.progress.setRange(0, 0)
        self.progress_text.setText(text)

    def cancel(self) -> None:
        if self._compare_task is not None:
            self._compare_task.cancel()
        elif self.session.switching_to is not None:
            self.session.cancel_switch()

    def _compared(self, comparison) -> None:
        self._compare_task = None
        self.compare_button.setEnabled(True)
        self._busy(False)
        self.comparison = comparison
        self._show_results()
        self.refresh()  # the labelled images' features are cached now

    def _compare_failed(self, message: str) -> None:
        self._compare_task = None
        self.compare_button.setEnabled(True)
        self._busy(False)
        self._say(f"The comparison failed: {message}", error=True)

    def _compare_cancelled(self) -> None:
        self._compare_task = None
        self.compare_button.setEnabled(True)
        self._busy(False)
        self._say("Comparison cancelled; the features computed so far are kept.")
        self.refresh()

    def _show_results(self) -> None:
        c = self.comparison
        self.use_best.setVisible(False)
        if c is None:
            self.basis.setText("Not compared yet. The comparison uses this project's labels; the more random audit "
                               "labels, the more honest the figures.")
            self.results.setRowCount(0)
            _fit_height(self.results)
            self.verdict.setText("")
            return
        notes = "".join(f"<br><i>{n}</i>" for n in c.notes)
        self.basis.setText(f"{c.n_labels} labels ({c.n_audit} random audit labels). "
                           + (f"Measured by {c.basis_text}." if c.basis else "") + notes)
        self.basis.setStyleSheet("color: #8a6d00;" if c.optimistic else "")
        self.results.setRowCount(len(c.scores))
        for r, s in enumerate(c.scores):
            self.results.setItem(r, 0, _item(s.name + (" (current)" if s.name == self.session.extractor[0] else "")))
            self.results.setItem(r, 1, _item(f"{s.macro_f1:.3f}  ({s.macro_f1_ci[0]:.3f}–{s.macro_f1_ci[1]:.3f})"))
            self.results.setItem(r, 2, _item(f"{s.accuracy:.1%}  ({s.accuracy_ci[0]:.1%}–{s.accuracy_ci[1]:.1%})"))
            behind = ("best" if s.behind_best is None else
                      f"{s.behind_best:.3f}  ({s.behind_best_ci[0]:+.3f} to {s.behind_best_ci[1]:+.3f})")
            self.results.setItem(r, 3, _item(behind))
        _fit_height(self.results)
        prefix = "<b>Optimistic figures.</b> " if c.optimistic else ""
        self.verdict.setText(prefix + c.verdict[0].upper() + c.verdict[1:] + ".")
        if c.best and c.best != self.session.extractor[0] and self.session.switching_to is None:
            self.use_best.setText(f"Use {c.best}")
            self.use_best.setToolTip("Switch to the extractor that measured best"
                                     + ("" if c.switch_advised else " (its lead is not certain yet)"))
            self.use_best.setVisible(True)

    # ------------------------------------------------------------------ switching
    def use(self, name: str) -> None:
        if self.session.switch_extractor(name) is None:
            return
        self.use_best.setVisible(False)
        self._busy(True, f"Computing {name} features of every image; labelling goes on with the current features…")
        self.refresh()

    def _job_progress(self, description: str, done: int, total: int, message: str) -> None:
        if description.startswith(SWITCHING) and self._compare_task is None:
            self.progress.setVisible(True)
            self.cancel_button.setVisible(True)
            self._progress(done, total, f"{description}: {done:,} of {total:,} images")

    def _job_finished(self, description: str, summary: str) -> None:
        if description.startswith(SWITCHING):
            self._busy(False)
            self._say(summary[0].upper() + summary[1:] + ".")
            self._show_results()
            self.refresh()

    def _job_failed(self, description: str, message: str) -> None:
        if description.startswith(SWITCHING):
            self._busy(False)
            self._say(f"Switching failed, the project stays on {self.session.extractor[0]}: {message}", error=True)
            self._show_results()
            self.refresh()

    def _say(self, text: str, error: bool = False) -> None:
        self.message.setStyleSheet("color: #b00020;" if error else "color: #1b5e20;")
        self.message.setText(text)

    def done(self, result: int) -> None:  # noqa: D401 - Qt's name; a running comparison is not needed any more
        if self._compare_task is not None:
            self._compare_task.cancel()
        super().done(result)
