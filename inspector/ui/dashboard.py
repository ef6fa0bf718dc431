"""The dashboard: how good the model really is, what it confuses, whether more labels still pay
off, and a map of the feature space.

Every headline figure comes from the random audit labels (the honest estimate recorded with each
model version by the learner) and says how many audit labels it rests on. Cross-validation on
the actively chosen labels is shown only when recorded, and only marked "optimistic".

All computation (reading model versions, PCA of the features, precision from the audit
confusion) is :mod:`inspector.workflow.dashboard_data`, run in a worker; the UI thread only
draws the result.
"""

from __future__ import annotations

import html

import logging
from typing import Optional

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QColor, QFont, QIcon, QPixmap
from PySide6.QtWidgets import (
    QComboBox,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from inspector.core.learning import estimators, stopping
from inspector.ui.workers import Task, deliver_to, pool, run_task
from inspector.workflow import jobs
from inspector.workflow.dashboard_data import (  # noqa: F401 - what the view draws; tests import them here
    DashboardData, feature_map, precision_from_confusion,
)

log = logging.getLogger("inspector.ui.dashboard")

UNLABELLED_COLOR = "#b0b0b0"


def _swatch(color: str) -> QIcon:
    pixmap = QPixmap(12, 12)
    pixmap.fill(QColor(color))
    return QIcon(pixmap)


_METHOD_SHORT = {"audit": "audit labels only", "ppi": "prediction-powered", "weighted": "importance-weighted",
                 "difference": "predictions corrected by sampled labels"}


def _interval(ci) -> str:
    return f"{ci[0]:.2f}–{ci[1]:.2f}" if ci else "—"


def headline(data: DashboardData) -> str:
    """The honest accuracy sentence, saying what it rests on."""
    if data.model_version is None:
        return "No model yet: label a few images of each class; the model trains as labels arrive."
    base = f"Model v{data.model_version}, trained on {data.n_labels_trained:,} labels. "
    audit = data.audit
    shown = data.estimate
    if not audit or audit.get("accuracy") is None:
        if shown and shown.get("estimate") is not None and shown.get("method") != "audit":
            # the estimate from every sampled label exists before the first audit label is scored:
            # the headline says it rather than contradicting the goals line and the curve beside it
            return base + (f"Accuracy {shown['estimate']:.2f} (95 % CI {_interval(shown.get('interval'))}) from "
                           f"{estimators.method_words(shown)} "
                           f"({shown.get('n_labels', 0)} labels); no random audit labels scored yet to check it "
                           f"against (now {data.n_audit}).")
        return base + (f"No accuracy estimate yet: it needs random audit labels (now {data.n_audit}); "
                       "keep labelling the queue, which mixes audit images in.")
    if shown and shown.get("estimate") is not None and shown.get("method") != "audit":
        text = (f"Accuracy {shown['estimate']:.2f} (95 % CI {_interval(shown.get('interval'))}) from "
                f"{estimators.method_words(shown)} ({shown.get('n_labels', 0)} labels); "
                f"the audit labels alone say {audit['accuracy']:.2f} ({_interval(audit.get('accuracy_ci'))}, "
                f"{audit['n_audit']} labels)")
    else:
        text = (f"Accuracy {audit['accuracy']:.2f} (95 % CI {_interval(audit.get('accuracy_ci'))}) "
                f"from {audit['n_audit']} audit labels")
    if audit.get("macro_f1") is not None:
        ci = audit.get("macro_f1_ci")
        if not ci or ci[1] - ci[0] < 1e-9:
            # no interval recorded (too few audit labels), or every bootstrap resample gave the
            # same score: that is no evidence of precision, so none is shown rather than "1.00–1.00"
            text += (f"; macro-F1 {audit['macro_f1']:.2f} (too few audit labels for an interval)")
        else:
            text += f"; macro-F1 {audit['macro_f1']:.2f} (95 % CI {_interval(ci)})"
    return base + text + (". Every figure is scored with predictions of a model that did not train on the labels "
                          "it scores (audit images are drawn at random).")


def stopping_text(data: DashboardData) -> str:
    """When to stop: a shown target first, then what the learning curve says about labels beyond it
    (the labels a target still needs are on the goals line beside it)."""
    return "When to stop: " + stopping.more_labels_sentence(data.goals, data.stopping.get("message", ""))


def class_figures_text(data: DashboardData) -> str:
    """Macro-F1, escape rate and per-class recall/precision by the estimator the accuracy is shown
    with (difference estimator), or '' when that is not the one shown."""
    return estimators.describe_classes((data.estimate or {}).get("classes"), {str(c.id): c.name for c in data.classes})


def goals_text(data: DashboardData) -> str:
    """The target and budget in words: where the project stands and what the trend says."""
    status = data.goals
    if status is None:
        return ""
    parts = [status.target_sentence(), status.budget_sentence()]
    if data.labels_needed and data.labels_needed.get("message"):
        parts.append(data.labels_needed["message"])
    # mid-tone colours on the heading only: readable on the light and the dark theme
    colour = {"shown": "#1e8e3e", "reached_by_point_estimate": "#c77700"}.get(status.target_state, "#5f86c4")
    text = " ".join(p for p in parts if p)
    return f"<b style='color:{colour}'>Target and budget.</b> {html.escape(text)}"


def optimistic_text(data: DashboardData) -> str:
    cv = data.cross_validation
    if not cv or cv.get("accuracy") is None:
        return ""
    return (f"Optimistic: cross-validation on all {data.n_labels_trained:,} labels gives accuracy "
            f"{cv['accuracy']:.2f}, macro-F1 {cv['macro_f1']:.2f} ({cv.get('folds', '?')} folds). Actively "
            "chosen labels are not a random sample, so this overstates accuracy on new images.")


# ----------------------------------------------------------------------------- drawing
def _plot(title: str, left: str, bottom: str) -> pg.PlotWidget:
    widget = pg.PlotWidget(background="w")
    item = widget.getPlotItem()
    item.setTitle(title, color="#202020", size="10pt")
    for name, text in (("left", left), ("bottom", bottom)):
        axis = item.getAxis(name)
        axis.setPen(pg.mkPen("#505050"))
        axis.setTextPen(pg.mkPen("#202020"))
        axis.setLabel(text, color="#202020")
    item.showGrid(x=True, y=True, alpha=0.15)
    widget.setMinimumSize(320, 220)
    return widget


class DashboardView(QWidget):
    """Counts, learning curve, audit confusion and precision/recall, stopping guidance, map."""

    #: the figures were redrawn from a finished computation
    refreshed = Signal()
    #: the quality engineer asked to file these figures as a report, or to export the model
    export_report_requested = Signal()
    export_model_requested = Signal()
    #: the quality engineer asked for the feature extractor dialog (compare, switch)
    features_requested = Signal()

    def __init__(self, session, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.session = session
        self.data: Optional[DashboardData] = None
        self._task: Optional[Task] = None
        self._dirty = True
        self._map_of = None  # the features array the current map was computed from
        self._map_items: list[pg.ScatterPlotItem] = []

        self.headline = QLabel(self)
        self.headline.setWordWrap(True)
        bold = QFont(self.headline.font())
        bold.setPointSizeF(bold.pointSizeF() * 1.15)
        bold.setBold(True)
        self.headline.setFont(bold)
        self.stopping = QLabel(self)
        self.stopping.setWordWrap(True)
        self.goals = QLabel(self)  # target and budget, in words; hidden when the project sets neither
        self.goals.setWordWrap(True)
        self.goals.hide()
        self.optimistic = QLabel(self)
        self.optimistic.setWordWrap(True)
        self.optimistic.setStyleSheet("color: #8a6d00;")
        self.status = QLabel(self)
        self.status.setStyleSheet("color: #666;")
        self.team = QLabel(self)  # agreement between inspectors; hidden for a one-person project
        self.team.setWordWrap(True)
        self.team.setVisible(False)

        self.counts_plot = _plot("Images per class: labelled (solid), model's prediction (light)", "images", "")
        self.curve_plot = _plot("Estimated accuracy vs labels, 95 % band",
                                "accuracy", "labels")
        self.curve_plot.setYRange(0, 1.0)
        self.confusion_plot = _plot("Audit confusion", "true class", "predicted class")
        self.confusion_plot.getPlotItem().invertY(True)
        self.confusion_plot.getPlotItem().showGrid(False, False)
        self.confusion_plot.setMouseEnabled(False, False)
        self.class_table = QTableWidget(0, 4, self)
        # two-line headers: the cells, not the headers, set the widths (the table shares its row)
        self.class_table.setHorizontalHeaderLabels(["Class", "Audit\nn", "Recall\n(95 % CI)", "Precision\n(95 % CI)"])
        self.class_table.setWordWrap(False)
        self.class_table.verticalHeader().setVisible(False)
        self.class_table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.class_table.horizontalHeader().setStretchLastSection(True)
        self.class_table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.audit_caption = QLabel(self)
        self.audit_caption.setWordWrap(True)

        self.map_plot = _plot("Feature map (PCA); click a point to open its image",
                              "component 2", "component 1")
        self.map_color = QComboBox(self)
        self.map_color.addItem("Colour by label", "label")
        self.map_color.addItem("Colour by prediction", "prediction")
        self.map_color.currentIndexChanged.connect(lambda _: self._draw_map())
        self.map_caption = QLabel(self)
        self.map_legend = pg.LegendItem(offset=(-10, 10), labelTextColor="#202020", brush=pg.mkBrush(255, 255, 255, 200))
        self.map_legend.setParentItem(self.map_plot.getPlotItem().getViewBox())

        audit_box = QGroupBox("Per class, from the audit labels", self)
        audit_layout = QVBoxLayout(audit_box)
        audit_row = QHBoxLayout()
        audit_row.addWidget(self.confusion_plot, 4)
        audit_row.addWidget(self.class_table, 5)
        audit_layout.addLayout(audit_row)
        audit_layout.addWidget(self.audit_caption)
        map_box = QWidget(self)
        map_layout = QVBoxLayout(map_box)
        map_layout.setContentsMargins(0, 0, 0, 0)
        map_top = QHBoxLayout()
        map_top.addWidget(self.map_caption, 1)
        map_top.addWidget(self.map_color)
        map_layout.addLayout(map_top)
        map_layout.addWidget(self.map_plot, 1)

        from inspector.ui.confidence_panel import ConfidencePanel

        self.confidence_panel = ConfidencePanel(self)
        grid = QGridLayout()
        grid.addWidget(self.counts_plot, 0, 0)
        grid.addWidget(self.curve_plot, 0, 1)
        grid.addWidget(audit_box, 1, 0)
        grid.addWidget(map_box, 1, 1)
        grid.addWidget(self.confidence_panel, 0, 2, 2, 1)
        grid.setColumnStretch(0, 5)
        grid.setColumnStretch(1, 4)
        grid.setColumnStretch(2, 3)
        grid.setRowStretch(0, 2)
        grid.setRowStretch(1, 3)
        self.export_report_button = QPushButton("Export report…", self)
        self.export_report_button.setToolTip("Write these figures, the model's settings and its data "
                                             "to one self-contained HTML file")
        self.export_report_button.clicked.connect(self.export_report_requested)
        self.export_model_button = QPushButton("Export model…", self)
        self.export_model_button.setToolTip("Train on every label and write the model as one safe file "
                                            "for `inspector predict`")
        self.export_model_button.clicked.connect(self.export_model_requested)
        top = QHBoxLayout()
        top.addWidget(self.headline, 1)
        self.features_button = QPushButton("Features…", self)
        self.features_button.setToolTip("Which feature extractor this project uses; compare the extractors on "
                                        "its labels and switch")
        self.features_button.clicked.connect(self.features_requested)
        top.addWidget(self.features_button, 0, Qt.AlignmentFlag.AlignTop)
        top.addWidget(self.export_report_button, 0, Qt.AlignmentFlag.AlignTop)
        top.addWidget(self.export_model_button, 0, Qt.AlignmentFlag.AlignTop)
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self.goals)
        layout.addWidget(self.stopping)
        layout.addWidget(self.optimistic)
        layout.addWidget(self.team)
        layout.addLayout(grid, 1)
        layout.addWidget(self.status)

        # labels arrive one at a time while the inspector works; recompute at most every 0.5 s
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(500)
        self._timer.timeout.connect(self.refresh)
        session.model_updated.connect(lambda _v: self.schedule_refresh())
        session.labels_changed.connect(lambda _ids: self.schedule_refresh())
        session.classes_changed.connect(self.schedule_refresh)
        session.features_changed.connect(self._features_changed)
        if hasattr(session, "goals_changed"):
            session.goals_changed.connect(self.schedule_refresh)
        self.headline.setText("Computing…")

    # ---------------------------------------------------------------- refreshing
    def _features_changed(self) -> None:
        self._map_of = None
        self.schedule_refresh()

    def schedule_refresh(self) -> None:
        self._dirty = True
        if self.isVisible() and not self._timer.isActive():
            self._timer.start()

    def showEvent(self, event) -> None:  # noqa: N802 - Qt's name
        super().showEvent(event)
        if self._dirty:
            QTimer.singleShot(0, self.refresh)

    def refresh(self) -> None:
        """Recompute in a worker (unless one is already running: then once more after it)."""
        if self._task is not None:
            self._dirty = True
            return
        self._dirty = False
        s = self.session
        features = s.features
        previous = self.data.feature_map if (self.data is not None and self._map_of is features) else None
        proba = s.probabilities if s.probabilities is not None and len(s.probabilities) == len(s.image_ids) else None
        task = Task.from_job(jobs.dashboard_job(s.project, s.classes(), dict(s.latest_labels()), proba,
                                                np.asarray(s.class_ids, np.int64), features, previous,
                                                tuple(s.goals()) if hasattr(s, "goals") else (None, None)))
        task.signals.finished.connect(deliver_to(self, lambda data, f=features: self._computed(data, f)))
        task.signals.failed.connect(deliver_to(self, self._failed))
        self._task = task
        self.status.setText("Updating…" if previous is not None or len(features) < 50_000
                            else "Computing the feature map…")
        run_task(task, pool("background"))

    def _failed(self, message: str) -> None:
        self._task = None
        self.status.setText(f"Dashboard not updated: {message}")

    def _computed(self, data: DashboardData, features: np.ndarray) -> None:
        import shiboken6

        if not shiboken6.isValid(self.status):
            return  # the window closed while the figures were computed
        self._task = None
        self.data = data
        self._map_of = features
        self.status.setText("")
        try:
            self._draw()
        finally:
            self.refreshed.emit()
        if self._dirty:
            self.schedule_refresh()

    # ---------------------------------------------------------------- drawing
    def _draw(self) -> None:
        data = self.data
        self.headline.setText(headline(data))
        by_estimator = class_figures_text(data)
        self.headline.setToolTip(headline(data) + (f"\n\n{by_estimator}" if by_estimator else ""))
        self.stopping.setText(stopping_text(data))
        self.goals.setText(goals_text(data))
        self.goals.setVisible(data.goals is not None)
        text = optimistic_text(data)
        self.optimistic.setText(text)
        self.optimistic.setVisible(bool(text))
        if data.team is not None:
            from inspector.core.agreement import format_summary

            self.team.setText("\n".join(format_summary(data.team)))
        self.team.setVisible(data.team is not None)
        self._draw_counts()
        self._draw_curve()
        self._draw_audit()
        self._draw_map()
        self.confidence_panel.show_metrics(data.latest_metrics if data.model_version is not None else None)

    def _class_axis(self, axis, classes, vertical: bool = False) -> None:
        ticks = [(i, c.name) for i, c in enumerate(classes)]
        axis.setTicks([ticks, []])

    def _draw_counts(self) -> None:
        data, plot = self.data, self.counts_plot.getPlotItem()
        plot.clear()
        classes = data.classes
        x = np.arange(len(classes), dtype=float)
        labelled = [data.labelled.get(c.id, 0) for c in classes]
        brushes = [pg.mkBrush(c.color) for c in classes]
        plot.addItem(pg.BarGraphItem(x=x - 0.2, height=labelled, width=0.38, brushes=brushes, pen=pg.mkPen("#303030")))
        if data.predicted:
            predicted = [data.predicted.get(c.id, 0) for c in classes]
            light = []
            for c in classes:
                color = QColor(c.color)
                color.setAlpha(90)
                light.append(pg.mkBrush(color))
            plot.addItem(pg.BarGraphItem(x=x + 0.2, height=predicted, width=0.38, brushes=light,
                                         pen=pg.mkPen("#303030", style=Qt.PenStyle.DashLine)))
        self._class_axis(plot.getAxis("bottom"), classes)
        total = sum(labelled)
        plot.setTitle(f"Images per class: {total:,} labelled (solid)" +
                      (", predicted for all (light)" if data.predicted else ""),
                      color="#202020", size="10pt")
        plot.autoRange()
        # whole category slots on both sides, so the first and last class names have room
        plot.setXRange(-0.7, len(classes) - 0.3, padding=0)

    def _draw_curve(self) -> None:
        data, plot = self.data, self.curve_plot.getPlotItem()
        plot.clear()
        points = [p for p in data.curve if p.get("accuracy") is not None]
        if not points:
            text = pg.TextItem("No audit estimate yet: the curve appears once\nmodels are trained with audit labels.",
                               color="#606060", anchor=(0.5, 0.5))
            plot.addItem(text)
            text.setPos(0.5, 0.5)
            plot.setXRange(0, 1)
            return
        x = np.array([p["n_labels"] for p in points], float)
        y = np.array([p["accuracy"] for p in points], float)
        lo = np.array([(p.get("accuracy_ci") or [v, v])[0] for p, v in zip(points, y)], float)
        hi = np.array([(p.get("accuracy_ci") or [v, v])[1] for p, v in zip(points, y)], float)
        low_curve = pg.PlotDataItem(x, lo, pen=pg.mkPen((31, 119, 180, 80)))
        high_curve = pg.PlotDataItem(x, hi, pen=pg.mkPen((31, 119, 180, 80)))
        plot.addItem(low_curve)
        plot.addItem(high_curve)
        plot.addItem(pg.FillBetweenItem(low_curve, high_curve, brush=pg.mkBrush(31, 119, 180, 60)))
        plot.addItem(pg.PlotDataItem(x, y, pen=pg.mkPen("#1f77b4", width=2), symbol="o", symbolSize=6,
                                     symbolBrush="#1f77b4"))
        last = points[-1]
        plot.setTitle(f"Estimated accuracy vs labels, 95 % band<br>({len(points)} versions; last: "
                      f"{_METHOD_SHORT.get(last.get('method'), 'audit labels only')}, "
                      f"{last.get('n_audit', 0)} audit labels)", color="#202020", size="10pt")
        bottom = float(lo.min())
        status = data.goals
        if status is not None and status.target is not None and status.target.figure == "accuracy":
            value = status.target.value
            # the target is judged on the one-sided 95 % lower bound, inside the band: drawn so that
            # "reached" with the band's edge still below the target line reads as it should
            with_bound = [(n, p["accuracy_bound"]) for n, p in zip(x, points) if p.get("accuracy_bound") is not None]
            if with_bound:
                bx, by = (np.array(v, float) for v in zip(*with_bound))
                plot.addItem(pg.PlotDataItem(bx, by, pen=pg.mkPen("#1f4e79", width=1.5, style=Qt.PenStyle.DotLine)))
                plot.setTitle(f"Accuracy vs labels, 95 % band; dotted: 95 % lower bound<br>({len(points)} versions; last: "
                              f"{_METHOD_SHORT.get(last.get('method'), 'audit labels only')}, "
                              f"{last.get('n_audit', 0)} audit labels)", color="#202020", size="10pt")
            plot.addItem(pg.InfiniteLine(pos=value, angle=0, pen=pg.mkPen("#137333", width=1.5, style=Qt.PenStyle.DashLine),
                                         label=f"target {value:.0%}", labelOpts={"position": 0.08, "color": "#137333"}))
            bottom = min(bottom, value)
        plot.setYRange(max(0.0, bottom - 0.05), 1.0)
        plot.setXRange(0, float(x.max()) * 1.05 + 1)

    def _draw_audit(self) -> None:
        data, plot = self.data, self.confusion_plot.getPlotItem()
        plot.clear()
        names = {c.id: c.name for c in data.classes}
        audit = data.audit
        self.class_table.setRowCount(0)
        if not audit or not audit.get("n_audit"):
            self.audit_caption.setText(f"No audit labels yet ({data.n_audit}): confusion, recall and precision "
                                       "appear once random audit images are labelled.")
            return
        classes = list(audit.get("classes", []))
        confusion = np.asarray(audit["confusion"], float)
        row_sums = confusion.sum(axis=1, keepdims=True)
        share = np.divide(confusion, row_sums, out=np.zeros_like(confusion), where=row_sums > 0)
        image = pg.ImageItem(share.T)  # ImageItem's first axis is x (predicted)
        image.setLookupTable(pg.colormap.get("CET-L12").getLookupTable(nPts=256) if hasattr(pg, "colormap") else None)
        image.setLevels((0, 1))
        plot.addItem(image)
        for i in range(len(classes)):
            for j in range(len(classes)):
                count = int(confusion[i, j])
                if count == 0:
                    continue
                color = "#ffffff" if share[i, j] > 0.55 else "#202020"
                label = pg.TextItem(str(count), color=color, anchor=(0.5, 0.5))
                label.setPos(j + 0.5, i + 0.5)
                plot.addItem(label)
        # predicted classes by key along the bottom: full names would overlap in narrow cells
        keys = {c.id: c.key for c in data.classes}
        short = [keys.get(c) or names.get(c, str(c))[:3] for c in classes]
        plot.getAxis("bottom").setTicks([[(k + 0.5, t) for k, t in enumerate(short)], []])
        plot.getAxis("left").setTicks([[(k + 0.5, f"{t}  {names.get(c, str(c))}") for k, (c, t)
                                        in enumerate(zip(classes, short))], []])
        plot.setTitle(f"Audit confusion ({audit['n_audit']} labels)", color="#202020", size="10pt")
        plot.setXRange(0, len(classes), padding=0)
        plot.setYRange(0, len(classes), padding=0)

        recall = audit.get("per_class_recall", {})
        self.class_table.setRowCount(len(classes))
        for k, c in enumerate(classes):
            r = recall.get(str(c), {})
            p = data.precision.get(c, {})
            cells = [
                names.get(c, str(c)),
                str(r.get("n", 0)),
                "—" if r.get("recall") is None else f"{r['recall']:.2f} ({_interval(r.get('ci'))})",
                "—" if p.get("precision") is None else f"{p['precision']:.2f} ({_interval(p.get('ci'))})",
            ]
            for col, text in enumerate(cells):
                item = QTableWidgetItem(text)
                if col == 0:
                    # a swatch of the class colour beside text in the theme's colour: coloured text
                    # (orange on white, brown on dark grey) was hard to read
                    item.setIcon(_swatch(next((x.color for x in data.classes if x.id == c), "#808080")))
                self.class_table.setItem(k, col, item)
        by_estimator = class_figures_text(data)
        self.audit_caption.setText(
            (f"{by_estimator} The table: " if by_estimator else "") +
            f"Recall: share of each class's audit images the model finds; precision: share of the model's calls "
            f"of that class that are right. Both rest on {audit['n_audit']} random audit labels — wide intervals "
            "mean too few audit images of that class.")
        self.audit_caption.setToolTip(self.audit_caption.text())

    def _draw_map(self) -> None:
        plot = self.map_plot.getPlotItem()
        for item in self._map_items:
            plot.removeItem(item)
        self._map_items = []
        self.map_legend.clear()
        data = self.data
        if data is None or data.feature_map is None:
            self.map_caption.setText("No feature map: the images have no features yet.")
            return
        fmap = data.feature_map
        ids = np.asarray(self.session.image_ids, np.int64)
        if fmap.n_total != len(ids):
            self.map_caption.setText("The feature map is being recomputed for the new images…")
            return
        by = self.map_color.currentData()
        image_ids = ids[fmap.rows]
        if by == "prediction":
            proba = self.session.probabilities
            if proba is None or len(proba) != len(ids):
                colour_of = np.full(len(fmap.rows), -1, np.int64)
                note = " (no model yet: every point grey)"
            else:
                colour_of = np.asarray(self.session.class_ids, np.int64)[np.argmax(proba[fmap.rows], axis=1)]
                note = ""
        else:
            latest = self.session.latest_labels()
            colour_of = np.array([latest.get(int(i), -1) for i in image_ids.tolist()], np.int64)
            note = ""
        groups = [(-1, "not labelled" if by == "label" else "no prediction", UNLABELLED_COLOR)]
        groups += [(c.id, c.name, c.color) for c in data.classes]
        for class_id, name, color in groups:
            mask = colour_of == class_id
            if not mask.any():
                continue
            item = pg.ScatterPlotItem(x=fmap.xy[mask, 0], y=fmap.xy[mask, 1], data=image_ids[mask],
                                      size=5 if class_id == -1 else 7, pen=None, brush=pg.mkBrush(color),
                                      hoverable=True, tip=None)
            item.sigClicked.connect(self._map_clicked)
            plot.addItem(item)
            self._map_items.append(item)
            self.map_legend.addItem(item, f"{name} ({int(mask.sum()):,})")
        shown = len(fmap.rows)
        sample = f"{shown:,} of {fmap.n_total:,} images (random sample)" if shown < fmap.n_total else f"{shown:,} images"
        self.map_caption.setText(f"{sample}; axes explain {fmap.explained[0]:.0%} and {fmap.explained[1]:.0%} "
                                 f"of the feature variance{note}")

    def _map_clicked(self, _item, points, *_args) -> None:
        if len(points):
            self.session.request_open(int(points[0].data()))
