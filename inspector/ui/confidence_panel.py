"""The dashboard's confidence panel: reliability diagram with the expected calibration error, and
the escape rate and review share from the audit labels at the model's review threshold.

It only draws figures the learner recorded with the model version (``metrics["calibration"]``,
``metrics["escape"]``, ``metrics["review_threshold"]``); nothing is computed on the UI thread.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import pyqtgraph as pg
from PySide6.QtWidgets import QGroupBox, QLabel, QVBoxLayout, QWidget

from inspector.core.learning.calibration import floor_words
from inspector.core.learning.routing import operating_point_words


def _pct(value: Optional[float], digits: int = 1) -> str:
    return "–" if value is None else f"{value:.{digits}%}"


def _ci(ci, digits: int = 1) -> str:
    return "" if not ci else f" ({ci[0]:.{digits}%}–{ci[1]:.{digits}%})"


def confidence_text(metrics: dict) -> str:
    """Escape rate, review share and threshold status in plain words (rich text)."""
    threshold = metrics.get("review_threshold") or {}
    escape = metrics.get("escape")
    lines = []
    if escape and escape.get("n_defective"):
        lines.append(f"<b>Escape rate {_pct(escape.get('escape_rate'))}</b>{_ci(escape.get('escape_rate_ci'))} "
                     f"of {escape['n_defective']} defective audit parts passed unseen")
    if escape and escape.get("n"):
        lines.append(f"Review share {_pct(escape.get('review_share'), 0)}{_ci(escape.get('review_share_ci'), 0)} "
                     f"of {escape['n']} audit parts")
    if not escape:
        lines.append("No escape estimate yet: it needs audit labels and an acceptable class (Classes dialog).")
    if threshold:
        if threshold.get("value") is None:
            needed = threshold.get("labels_needed") or {}
            more = ", ".join(f"{v} {k}" for k, v in needed.items() if v)
            lines.append(f"<span style='color:#b45309'><b>Not shown safe</b> for a {_pct(threshold.get('target'))} "
                         f"escape target: an exported model would send every part to review"
                         + (f"; label about {more}" if more else "") + ".</span>")
            points = threshold.get("operating_points") or []
            lowest = operating_point_words(points[0]) if isinstance(points, list) and points else ""
            if lowest:
                # the lowest threshold without an out-of-sample escape: what a hand-set threshold would cost
                lines.append(f"Lowest without an escape so far: {lowest}.")
        else:
            lines.append(f"Review threshold {threshold['value']:.3f} meets the {_pct(threshold.get('target'))} escape "
                         f"target on cross-validation (review share {_pct(threshold.get('review_share'), 0)}).")
    return "<br>".join(lines)


class ConfidencePanel(QGroupBox):
    """Reliability diagram plus escape and review figures of the latest model version."""

    def __init__(self, parent: Optional[QWidget] = None) -> None:
        super().__init__("Can the line trust it", parent)
        self.plot = pg.PlotWidget(background="w")
        item = self.plot.getPlotItem()
        item.setTitle("Reliability: confidence shown vs share right", size="9pt")
        item.setLabel("left", "share right")
        item.setLabel("bottom", "confidence shown")
        item.showGrid(True, True, 0.25)
        self.plot.setXRange(0, 1, padding=0.02)
        self.plot.setYRange(0, 1, padding=0.02)
        self.plot.setMouseEnabled(False, False)
        self.plot.setMinimumHeight(160)
        self.setMinimumWidth(320)
        self.caption = QLabel(self)
        self.caption.setWordWrap(True)
        self.figures = QLabel(self)
        self.figures.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.addWidget(self.plot, 1)
        layout.addWidget(self.caption)
        layout.addWidget(self.figures)

    def show_metrics(self, metrics: Optional[dict]) -> None:
        """Draw from a model version's metrics (None: no model yet)."""
        self.plot.clear()
        self.plot.plot([0, 1], [0, 1], pen=pg.mkPen("#999999", width=1, style=pg.QtCore.Qt.PenStyle.DashLine))
        metrics = metrics or {}
        calibration = metrics.get("calibration") or {}
        reliability = calibration.get("reliability_audit")
        if not reliability or (reliability.get("n") or 0) < 20:
            reliability = calibration.get("reliability")
        if reliability and reliability.get("ece") is not None:
            bins = [b for b in reliability["bins"] if b.get("n")]
            x = np.array([b["confidence"] for b in bins])
            y = np.array([b["accuracy"] for b in bins])
            sizes = 6 + 18 * np.array([b["n"] for b in bins]) / max(reliability["n"], 1)
            self.plot.addItem(pg.BarGraphItem(x=[(b["low"] + b["high"]) / 2 for b in bins], height=y, width=0.09,
                                              brush=pg.mkBrush(31, 119, 180, 60), pen=pg.mkPen(31, 119, 180)))
            self.plot.addItem(pg.ScatterPlotItem(x=x, y=y, size=sizes, brush=pg.mkBrush("#1f77b4"), pen=None))
            basis = "audit labels" if reliability is calibration.get("reliability_audit") else \
                "cross-validation over the labels"
            self.caption.setText(f"Expected calibration error <b>{reliability['ece']:.3f}</b> on {reliability['n']} "
                                 f"out-of-sample predictions ({basis}){floor_words(reliability)}; temperature "
                                 f"{calibration.get('temperature', 1):.2f}, shrinkage {calibration.get('shrink', 0):.3f}.")
        else:
            self.caption.setText("No reliability diagram yet: it needs labels of at least two classes, "
                                 "enough for cross-validation.")
        self.figures.setText(confidence_text(metrics) if metrics else "No model yet.")
