"""The gallery: every image of the project as a thumbnail grid, with filters, bulk labelling and
'find similar'.

The grid is one QListView over a list model of image ids, so 100,000 images cost a few arrays,
not 100,000 widgets. The delegate paints each visible cell from the thumbnail cache and asks the
:class:`~inspector.ui.thumbnails.ThumbnailLoader` for missing thumbnails, which are decoded in
worker threads. Filters are vectorised numpy over the session's arrays (labels, predictions,
probabilities); 'find similar' runs its nearest-neighbour search in a worker.
"""

from __future__ import annotations

import logging
from typing import Optional

import numpy as np
from PySide6.QtCore import (
    QAbstractListModel,
    QEvent,
    QItemSelection,
    QItemSelectionModel,
    QModelIndex,
    QPoint,
    QRect,
    QSize,
    Qt,
    QTimer,
    Signal,
)
from PySide6.QtGui import QAction, QColor, QFont, QPainter, QPen
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QHBoxLayout,
    QLabel,
    QListView,
    QMenu,
    QMessageBox,
    QPushButton,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QVBoxLayout,
    QWidget,
)

from inspector.core.learning.review import SUSPECT_LABEL_AT_MOST, SUSPECT_OTHER_AT_LEAST
from inspector.ui.thumbnails import THUMBNAIL_SIDE, ThumbnailLoader, default_disk_cache_folder
from inspector.ui.workers import Task, deliver_to, pool, run_task
from inspector.workflow import jobs
from inspector.workflow.gallery_data import FILTER_KINDS, NO_CLASS, GalleryFilter, filter_rows, label_array

log = logging.getLogger("inspector.ui.gallery")

#: bulk labelling more images than this asks first
BULK_CONFIRM_ABOVE = 20
#: filters sorted in a worker when the project has at least SORT_IN_WORKER_ABOVE images
SORTED_IN_WORKER = ("margin", "entropy", "suspected")
SORT_IN_WORKER_ABOVE = 20_000

ImageIdRole = Qt.ItemDataRole.UserRole + 1
LabelRole = Qt.ItemDataRole.UserRole + 2
PredictionRole = Qt.ItemDataRole.UserRole + 3
ConfidenceRole = Qt.ItemDataRole.UserRole + 4


# ----------------------------------------------------------------------------- model
class GalleryModel(QAbstractListModel):
    """The shown images (rows of the session's arrays) with their label and prediction."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.image_ids = np.zeros(0, np.int64)  # all images, the session's order
        self.labels = np.zeros(0, np.int64)  # NO_CLASS or class id, per image
        self.predicted = np.zeros(0, np.int64)  # NO_CLASS or class id, per image
        self.confidence = np.zeros(0, np.float32)
        self.shown = np.zeros(0, np.int64)  # rows into the arrays above, display order
        self.class_names: dict[int, str] = {}
        self.path_of = None  # image id -> relative path or None (the session's, for tooltips)
        self.disagreement_labels: dict[int, dict] = {}  # image_id -> {annotator: class_id}, for tooltips

    def set_images(self, image_ids: np.ndarray) -> None:
        self.beginResetModel()
        self.image_ids = np.asarray(image_ids, np.int64)
        self.labels = np.full(len(self.image_ids), NO_CLASS, np.int64)
        self.predicted = np.full(len(self.image_ids), NO_CLASS, np.int64)
        self.confidence = np.zeros(len(self.image_ids), np.float32)
        self.shown = np.zeros(0, np.int64)
        self.endResetModel()

    def set_predictions(self, proba: Optional[np.ndarray], class_ids: np.ndarray) -> None:
        n = len(self.image_ids)
        if proba is None or len(proba) != n or proba.shape[1] == 0:
            self.predicted = np.full(n, NO_CLASS, np.int64)
            self.confidence = np.zeros(n, np.float32)
            return
        top = np.argmax(proba, axis=1)
        self.predicted = np.asarray(class_ids, np.int64)[top]
        self.confidence = proba[np.arange(n), top].astype(np.float32)

    def set_shown(self, rows: np.ndarray) -> bool:
        """Show these rows; returns True when the set changed (the view was reset)."""
        rows = np.asarray(rows, np.int64)
        if np.array_equal(rows, self.shown):
            if len(rows):
                self.dataChanged.emit(self.index(0), self.index(len(rows) - 1))
            return False
        self.beginResetModel()
        self.shown = rows
        self.endResetModel()
        return True

    def image_id_at(self, row: int) -> int:
        return int(self.image_ids[self.shown[row]])

    def rowCount(self, parent=QModelIndex()) -> int:  # noqa: N802 - Qt's name
        return 0 if parent.isValid() else len(self.shown)

    def data(self, index: QModelIndex, role: int = Qt.ItemDataRole.DisplayRole):
        if not index.isValid() or index.row() >= len(self.shown):
            return None
        r = int(self.shown[index.row()])
        if role == ImageIdRole:
            return int(self.image_ids[r])
        if role == LabelRole:
            return int(self.labels[r])
        if role == PredictionRole:
            return int(self.predicted[r])
        if role == ConfidenceRole:
            return float(self.confidence[r])
        if role == Qt.ItemDataRole.ToolTipRole:
            return self._tooltip(r)
        if role == Qt.ItemDataRole.AccessibleTextRole:
            return self._tooltip(r)
        return None

    def _tooltip(self, r: int) -> str:
        image_id = int(self.image_ids[r])
        # the session's paths (read with the features in a worker): a tooltip never reads the store
        path = self.path_of(image_id) if self.path_of is not None else None
        lines = [path or f"image {image_id}"]
        label = int(self.labels[r])
        lines.append(f"Label: {self.class_names.get(label, '?')}" if label != NO_CLASS else "Not labelled")
        predicted = int(self.predicted[r])
        if predicted != NO_CLASS:
            lines.append(f"Model: {self.class_names.get(predicted, '?')} ({self.confidence[r]:.0%})")
        disputed = self.disagreement_labels.get(image_id)
        if disputed:
            lines.append("Inspectors: " + ", ".join(f"{who}: {self.class_names.get(c, '?')}"
                                                    for who, c in sorted(disputed.items())))
        return "\n".join(lines)


# ----------------------------------------------------------------------------- painting
class ThumbnailDelegate(QStyledItemDelegate):
    """One cell: thumbnail, a thick border in the label's colour (or a dashed one in the
    predicted class's colour), a badge with the class, and a caption."""

    PAD = 6
    CAPTION = 18

    def __init__(self, loader: ThumbnailLoader, parent=None) -> None:
        super().__init__(parent)
        self.loader = loader
        self.colors: dict[int, QColor] = {}
        self.names: dict[int, str] = {}
        self.keys: dict[int, str] = {}
        self._caption_font = QFont()
        self._caption_font.setPointSizeF(max(7.0, self._caption_font.pointSizeF() * 0.85))

    def cell_size(self) -> QSize:
        side = self.loader.side
        return QSize(side + 2 * self.PAD, side + 2 * self.PAD + self.CAPTION)

    def sizeHint(self, option, index) -> QSize:  # noqa: N802 - Qt's name
        return self.cell_size()

    def paint(self, painter: QPainter, option: QStyleOptionViewItem, index: QModelIndex) -> None:
        painter.save()
        rect = option.rect
        selected = bool(option.state & QStyle.StateFlag.State_Selected)
        palette = option.palette
        painter.fillRect(rect, palette.highlight() if selected else palette.base())
        image_id = index.data(ImageIdRole)
        label = index.data(LabelRole)
        predicted = index.data(PredictionRole)
        side = self.loader.side
        box = QRect(rect.x() + self.PAD, rect.y() + self.PAD, side, side)

        image = self.loader.thumbnail(image_id)
        if image is not None:
            scaled = image.size().scaled(box.size(), Qt.AspectRatioMode.KeepAspectRatio)
            target = QRect(0, 0, scaled.width(), scaled.height())
            target.moveCenter(box.center())
            painter.drawImage(target, image)
        else:
            painter.fillRect(box, QColor(60, 60, 60))
            reason = self.loader.failure(image_id)
            painter.setPen(QColor(235, 120, 110) if reason else QColor(150, 150, 150))
            painter.drawText(box.adjusted(4, 4, -4, -4), Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap,
                             "cannot read" if reason else "…")

        caption = QRect(rect.x() + 2, box.bottom() + 3, rect.width() - 4, self.CAPTION - 2)
        painter.setFont(self._caption_font)
        if label != NO_CLASS:
            color = self.colors.get(label, QColor("#7f7f7f"))
            painter.setPen(QPen(color, 4))
            painter.setBrush(Qt.BrushStyle.NoBrush)
            painter.drawRect(box.adjusted(-2, -2, 2, 2))
            self._badge(painter, box, self.keys.get(label) or "•", color)
            painter.setPen(palette.highlightedText().color() if selected else palette.text().color())
            painter.drawText(caption, Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignVCenter,
                             self.names.get(label, "?"))
        elif predicted != NO_CLASS:
            color = self.colors.get(predicted, QColor("#7f7f7f"))
            pen = QPen(color, 2, Qt.PenStyle.DashLine)
            painter.setPen(pen)
            painter.setBrush(Qt.BrushStyle.NoBrush)
            painter.drawRect(box.adjusted(-1, -1, 1, 1))
            painter.setPen(palette.highlightedText().color() if selected else palette.placeholderText().color())
            confidence = index.data(ConfidenceRole)
            painter.drawText(caption, Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignVCenter,
                             f"{self.names.get(predicted, '?')}? {confidence:.0%}")
        else:
            painter.setPen(palette.placeholderText().color())
            painter.drawText(caption, Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignVCenter, "not labelled")
        painter.restore()

    @staticmethod
    def _badge(painter: QPainter, box: QRect, text: str, color: QColor) -> None:
        badge = QRect(box.x(), box.y(), 20, 20)
        painter.fillRect(badge, color)
        painter.setPen(QColor("white") if color.lightness() < 150 else QColor("black"))
        painter.drawText(badge, Qt.AlignmentFlag.AlignCenter, text)


# ----------------------------------------------------------------------------- the view
class GalleryView(QWidget):
    """Thumbnail grid of the session's images with filters, bulk labelling and find-similar."""

    #: the shown set changed (after a filter, a refresh, or a find-similar result); its size
    shown_changed = Signal(int)
    #: a one-line message for the status bar (e.g. why find-similar could not run)
    message = Signal(str)

    def __init__(self, session, parent: Optional[QWidget] = None, thumbnail_side: int = THUMBNAIL_SIDE,
                 disk_cache: bool = True) -> None:
        super().__init__(parent)
        self.session = session
        self.filter = GalleryFilter("all")
        self.similar_to: Optional[int] = None  # image id 'find similar' was asked for
        self._similar_rows = np.zeros(0, np.int64)
        self._similar_task: Optional[Task] = None
        self._stats = None  # standardisation of the current features (computed once, in a worker)
        self._stats_of = None
        self._filter_generation = 0  # results of an older filter run are dropped
        self.sorting = False  # a filter is being sorted in a worker

        self.loader = ThumbnailLoader(session.project, side=thumbnail_side,
                                      disk_folder=default_disk_cache_folder() if disk_cache else None, parent=self)
        self.model = GalleryModel(self)
        self.model.path_of = session.image_relpath
        self.delegate = ThumbnailDelegate(self.loader, self)

        self.list = QListView(self)
        self.list.setViewMode(QListView.ViewMode.IconMode)
        # static movement and uniform sizes keep layout and hit-testing cheap for 100,000 cells
        self.list.setMovement(QListView.Movement.Static)
        self.list.setResizeMode(QListView.ResizeMode.Adjust)
        self.list.setUniformItemSizes(True)
        self.list.setLayoutMode(QListView.LayoutMode.Batched)
        self.list.setBatchSize(2000)
        self.list.setWrapping(True)
        self.list.setSpacing(2)
        self.list.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.list.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.list.setVerticalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        self.list.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.list.setItemDelegate(self.delegate)
        self.list.setModel(self.model)
        self.list.verticalScrollBar().setSingleStep(self.delegate.cell_size().height() // 3)
        self.list.doubleClicked.connect(self._open_index)
        self.list.customContextMenuRequested.connect(self._context_menu)
        self.list.selectionModel().selectionChanged.connect(self._selection_changed)
        self.list.verticalScrollBar().valueChanged.connect(self._schedule_retain)
        self.list.installEventFilter(self)

        self.filter_box = QComboBox(self)
        self.filter_box.setMinimumContentsLength(28)
        self.filter_box.setToolTip("Which images to show")
        self.filter_box.activated.connect(self._filter_chosen)
        self.count_label = QLabel(self)
        self.count_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.similar_button = QPushButton("Find similar", self)
        self.similar_button.setToolTip("Show the 50 images whose features are closest to the selected image")
        self.similar_button.clicked.connect(self.find_similar_to_current)
        self.selection_label = QLabel(self)
        self.label_bar = QHBoxLayout()
        self.label_bar.setSpacing(4)
        self._label_buttons: list[QPushButton] = []

        top = QHBoxLayout()
        top.addWidget(QLabel("Show:", self))
        top.addWidget(self.filter_box)
        top.addWidget(self.count_label, 1)
        top.addWidget(self.similar_button)
        bottom = QHBoxLayout()
        bottom.addWidget(self.selection_label)
        bottom.addLayout(self.label_bar)
        bottom.addStretch(1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.addLayout(top)
        layout.addWidget(self.list, 1)
        layout.addLayout(bottom)

        # thumbnails arrive one by one; repaint the grid at most every 40 ms
        self._repaint = QTimer(self)
        self._repaint.setSingleShot(True)
        self._repaint.setInterval(40)
        self._repaint.timeout.connect(self.list.viewport().update)
        self.loader.thumbnail_ready.connect(lambda _: self._repaint.isActive() or self._repaint.start())
        self._retain = QTimer(self)
        self._retain.setSingleShot(True)
        self._retain.setInterval(60)
        self._retain.timeout.connect(self._retain_visible)

        session.labels_changed.connect(self._labels_changed)
        session.model_updated.connect(self._model_updated)
        session.classes_changed.connect(self._classes_changed)
        session.features_changed.connect(self._features_changed)

        self._classes_changed(refresh=False)
        self._features_changed()

    # ---------------------------------------------------------------- session -> view
    def _features_changed(self) -> None:
        self.model.set_images(self.session.image_ids)
        self.model.labels = label_array(self.model.image_ids, self.session.latest_labels())
        self.model.set_predictions(self._probabilities(), self._class_ids())
        self._stats = None
        self._stats_of = None
        self.loader.forget()
        if self.filter.kind == "similar":
            self.filter = GalleryFilter("all")
        self._apply_filter(keep_scroll=False)

    def _labels_changed(self, _image_ids=None) -> None:
        self.model.labels = label_array(self.model.image_ids, self.session.latest_labels())
        self._apply_filter(keep_scroll=True)

    def _model_updated(self, _version: int = 0) -> None:
        self.model.set_predictions(self._probabilities(), self._class_ids())
        self._apply_filter(keep_scroll=True)

    def _classes_changed(self, refresh: bool = True) -> None:
        classes = self.session.classes()
        self.delegate.colors = {c.id: QColor(c.color) for c in classes}
        self.delegate.names = {c.id: c.name for c in classes}
        self.delegate.keys = {c.id: c.key for c in classes}
        self.model.class_names = dict(self.delegate.names)
        self._fill_filter_box(classes)
        self._fill_label_bar(classes)
        if self.filter.kind in ("label", "prediction") and self.filter.class_id not in self.delegate.names:
            self.filter = GalleryFilter("all")
        if refresh:
            self._apply_filter(keep_scroll=True)

    def _probabilities(self) -> Optional[np.ndarray]:
        proba = self.session.probabilities
        if proba is None or len(proba) != len(self.model.image_ids):
            return None
        return proba

    def _class_ids(self) -> np.ndarray:
        return np.asarray(self.session.class_ids, np.int64)

    # ---------------------------------------------------------------- filters
    def _fill_filter_box(self, classes) -> None:
        box = self.filter_box
        box.blockSignals(True)
        box.clear()
        box.addItem("All images", GalleryFilter("all"))
        box.addItem("Not labelled", GalleryFilter("unlabelled"))
        for c in classes:
            box.addItem(f"Labelled as {c.name}", GalleryFilter("label", c.id))
        for c in classes:
            box.addItem(f"Model predicts {c.name}", GalleryFilter("prediction", c.id))
        box.addItem("Most uncertain first (smallest margin)", GalleryFilter("margin"))
        box.addItem("Most uncertain first (highest entropy)", GalleryFilter("entropy"))
        box.addItem("Suspected label errors", GalleryFilter("suspected"))
        box.addItem("Disagreements between inspectors (label = review)", GalleryFilter("disagreements"))
        if self.similar_to is not None:
            box.addItem(self._similar_text(), GalleryFilter("similar"))
        box.blockSignals(False)
        self._show_filter_in_box()

    def _similar_text(self) -> str:
        return f"Similar to image {self.similar_to}"

    def _show_filter_in_box(self) -> None:
        for i in range(self.filter_box.count()):
            if self.filter_box.itemData(i) == self.filter:
                self.filter_box.setCurrentIndex(i)
                return

    def _filter_chosen(self, index: int) -> None:
        spec = self.filter_box.itemData(index)
        if isinstance(spec, GalleryFilter):
            self.set_filter(spec)

    def set_filter(self, spec: GalleryFilter) -> None:
        """Show the images ``spec`` selects (scrolls to the top)."""
        if spec.kind not in FILTER_KINDS:
            raise ValueError(f"unknown gallery filter {spec.kind!r}")
        self.filter = spec
        self._show_filter_in_box()
        self._apply_filter(keep_scroll=False)

    def _current_rows(self) -> np.ndarray:
        if self.filter.kind == "similar":
            return self._similar_rows[self._similar_rows < len(self.model.image_ids)]
        return filter_rows(self.filter, self.model.labels, self._probabilities(), self._class_ids())

    def _apply_filter(self, keep_scroll: bool) -> None:
        self._filter_generation += 1
        if self.filter.kind == "disagreements":
            generation = self._filter_generation
            task = Task.from_job(jobs.disagreements_job(self.session.project, self.model.image_ids.copy()))
            task.signals.finished.connect(
                lambda result, g=generation, k=keep_scroll: g == self._filter_generation
                and self._show_disagreements(result, k))
            task.signals.failed.connect(self.message.emit)
            run_task(task, pool("gallery"))
            self.sorting = True
            self.count_label.setText("Finding disagreements…")
            return
        proba = self._probabilities()
        if (self.filter.kind in SORTED_IN_WORKER and proba is not None
                and len(self.model.labels) >= SORT_IN_WORKER_ABOVE):
            # sorting 100,000 images by uncertainty takes tens of milliseconds: not on the UI thread
            generation = self._filter_generation
            task = Task.from_job(jobs.gallery_sort_job(self.filter, self.model.labels.copy(), proba,
                                                       self._class_ids()))
            task.signals.finished.connect(deliver_to(
                self, lambda rows, g=generation, k=keep_scroll: g == self._filter_generation and self._show_rows(rows, k)))
            task.signals.failed.connect(deliver_to(self, self.message.emit))
            run_task(task, pool("gallery"))
            self.sorting = True
            self.count_label.setText("Sorting by uncertainty…")
            return
        self._show_rows(self._current_rows(), keep_scroll)

    def _show_disagreements(self, result: tuple, keep_scroll: bool) -> None:
        rows, labels = result
        self.model.disagreement_labels = labels
        self._show_rows(rows, keep_scroll)

    def _show_rows(self, rows: np.ndarray, keep_scroll: bool) -> None:
        self.sorting = False
        bar = self.list.verticalScrollBar()
        scroll = bar.value()
        selected = self.selected_image_ids()
        changed = self.model.set_shown(rows)
        if changed:
            if selected:
                self._select_ids(selected)
            if keep_scroll:
                # the layout is batched: restore once the range covers the old position
                QTimer.singleShot(0, lambda v=scroll: bar.setValue(min(v, bar.maximum())))
            else:
                bar.setValue(0)
        self._update_counts()
        self._selection_changed()
        self.shown_changed.emit(len(self.model.shown))

    def _update_counts(self) -> None:
        total = len(self.model.image_ids)
        shown = len(self.model.shown)
        text = f"{shown:,} of {total:,} images"
        needs_model = self.filter.kind in ("prediction", "margin", "entropy", "suspected")
        if needs_model and self._probabilities() is None:
            text += " — no model yet: label a few images of each class and train"
        elif self.filter.kind == "suspected":
            text += (f" — labels the model gives ≤ {SUSPECT_LABEL_AT_MOST:.0%} while another class gets "
                     f"≥ {SUSPECT_OTHER_AT_LEAST:.0%}, most doubtful first")
        elif self.filter.kind == "similar":
            text += " — nearest in feature space first"
        self.count_label.setText(text)

    # ---------------------------------------------------------------- selection and labelling
    def selected_image_ids(self) -> list[int]:
        """Image ids of the selected cells, in display order."""
        rows = sorted(i.row() for i in self.list.selectionModel().selectedIndexes())
        return [self.model.image_id_at(r) for r in rows if r < len(self.model.shown)]

    def select_rows(self, rows) -> None:
        """Select these display rows (replacing the selection)."""
        selection = QItemSelection()
        for r in rows:
            index = self.model.index(int(r))
            selection.select(index, index)
        self.list.selectionModel().select(selection, QItemSelectionModel.SelectionFlag.ClearAndSelect)
        if len(rows):
            self.list.selectionModel().setCurrentIndex(self.model.index(int(rows[0])),
                                                       QItemSelectionModel.SelectionFlag.NoUpdate)

    def _select_ids(self, image_ids: list[int]) -> None:
        shown_ids = self.model.image_ids[self.model.shown]
        rows = np.flatnonzero(np.isin(shown_ids, np.asarray(image_ids, np.int64)))
        # contiguous runs become one range each, so re-selecting thousands stays cheap
        selection = QItemSelection()
        if len(rows):
            breaks = np.flatnonzero(np.diff(rows) != 1)
            starts = np.concatenate([[rows[0]], rows[breaks + 1]])
            ends = np.concatenate([rows[breaks], [rows[-1]]])
            for a, b in zip(starts.tolist(), ends.tolist()):
                selection.select(self.model.index(a), self.model.index(b))
        self.list.selectionModel().select(selection, QItemSelectionModel.SelectionFlag.ClearAndSelect)

    def _selection_changed(self, *_args) -> None:
        n = len(self.list.selectionModel().selectedIndexes())
        self.selection_label.setText(f"{n:,} selected — label as:" if n else "Select images to label them:")
        for button in self._label_buttons:
            button.setEnabled(n > 0)
        self.similar_button.setEnabled(n > 0 and len(self.session.features) > 0)

    def _fill_label_bar(self, classes) -> None:
        for button in self._label_buttons:
            self.label_bar.removeWidget(button)
            button.deleteLater()
        self._label_buttons = []
        for c in classes:
            text = f"{c.key}  {c.name}" if c.key else c.name
            button = QPushButton(text, self)
            button.setToolTip(f"Label the selected images as {c.name}" + (f" (key {c.key})" if c.key else ""))
            button.setStyleSheet(f"QPushButton {{ border-left: 6px solid {c.color}; padding: 3px 8px; }}")
            button.clicked.connect(lambda _=False, cid=c.id: self.label_selected(cid))
            self.label_bar.addWidget(button)
            self._label_buttons.append(button)

    def confirm_bulk_label(self, count: int, class_name: str) -> bool:
        """Ask before labelling many images at once; True to go ahead."""
        answer = QMessageBox.question(
            self, "Label many images",
            f"Label {count:,} images as “{class_name}”?\nTheir previous labels stay in the history.",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.Cancel,
            QMessageBox.StandardButton.Cancel)
        return answer == QMessageBox.StandardButton.Yes

    def label_selected(self, class_id: int) -> int:
        """Label every selected image as ``class_id`` (asks first above BULK_CONFIRM_ABOVE);
        returns how many were labelled. The session's writer commits them in one transaction
        (a failure is reported by the session's label_failed)."""
        ids = self.selected_image_ids()
        if not ids:
            return 0
        name = self.delegate.names.get(int(class_id), str(class_id))
        if len(ids) > BULK_CONFIRM_ABOVE and not self.confirm_bulk_label(len(ids), name):
            return 0
        try:
            # labelling a disagreement settles it: the reviewer's label wins over both annotators'
            source = "review" if self.filter.kind == "disagreements" else "bulk"
            count = self.session.label_images(ids, int(class_id), source=source)
        except Exception as exc:  # noqa: BLE001 - e.g. a full disk: say so, lose nothing already saved
            log.exception("bulk label failed")
            QMessageBox.warning(self, "Labels not saved", str(exc))
            return 0
        self.message.emit(f"Labelled {count:,} images as {name}")
        return count

    # ---------------------------------------------------------------- find similar
    def find_similar_to_current(self) -> None:
        index = self.list.currentIndex()
        if not index.isValid():
            ids = self.selected_image_ids()
            if not ids:
                return
            self.find_similar(ids[0])
        else:
            self.find_similar(self.model.image_id_at(index.row()))

    def find_similar(self, image_id: int, metric: str = "cosine") -> None:
        """Show the images nearest to ``image_id`` in feature space (computed in a worker)."""
        features = self.session.features
        ids = self.model.image_ids
        rows = np.flatnonzero(ids == int(image_id))
        if len(rows) == 0 or len(features) != len(ids):
            self.message.emit(f"image {image_id} has no features yet; similar images cannot be found")
            return
        if self._similar_task is not None:
            self._similar_task.cancel()
        stats = self._stats if self._stats_of is features else None
        task = Task.from_job(jobs.similar_job(features, int(rows[0]), stats, metric))
        task.signals.finished.connect(deliver_to(self, lambda result, t=task, f=features, i=int(image_id):
                                                 self._similar_found(t, f, i, result)))
        task.signals.failed.connect(deliver_to(self, self.message.emit))
        self._similar_task = task
        self.similar_button.setEnabled(False)
        self.count_label.setText(f"Finding images similar to image {image_id}…")
        run_task(task, pool("background"))

    def _similar_found(self, task: Task, features: np.ndarray, image_id: int, result) -> None:
        if task is not self._similar_task:
            return  # a newer request replaced this one
        self._similar_task = None
        if features is not self.session.features:
            return  # the features were reloaded meanwhile; the rows no longer mean the same images
        stats, rows, _scores = result
        self._stats, self._stats_of = stats, features
        self.similar_to = image_id
        self._similar_rows = rows
        self.filter = GalleryFilter("similar")
        self._fill_filter_box(self.session.classes())
        self._apply_filter(keep_scroll=False)

    # ---------------------------------------------------------------- opening, menus, keys
    def _open_index(self, index: QModelIndex) -> None:
        if index.isValid():
            self.session.request_open(self.model.image_id_at(index.row()))

    def _context_menu(self, position: QPoint) -> None:
        index = self.list.indexAt(position)
        ids = self.selected_image_ids()
        menu = QMenu(self)
        if index.isValid():
            image_id = self.model.image_id_at(index.row())
            menu.addAction("Open in labelling view", lambda: self.session.request_open(image_id))
            menu.addAction("Find similar images", lambda: self.find_similar(image_id))
        if ids:
            sub = menu.addMenu(f"Label {len(ids):,} selected as")
            for c in self.session.classes():
                action = QAction(f"{c.key}  {c.name}" if c.key else c.name, sub)
                action.triggered.connect(lambda _=False, cid=c.id: self.label_selected(cid))
                sub.addAction(action)
        if not menu.isEmpty():
            menu.exec(self.list.viewport().mapToGlobal(position))

    def eventFilter(self, watched, event) -> bool:  # noqa: N802 - Qt's name
        # Keys 1-9 label the selection while the grid has focus; claiming the shortcut override
        # keeps the labelling view's window-wide keys from firing instead.
        if watched is self.list and event.type() in (QEvent.Type.ShortcutOverride, QEvent.Type.KeyPress):
            if event.modifiers() in (Qt.KeyboardModifier.NoModifier, Qt.KeyboardModifier.KeypadModifier):
                keyed = {c.key: c.id for c in self.session.classes() if c.key}
                if event.text() in keyed:
                    event.accept()
                    if event.type() == QEvent.Type.KeyPress:
                        self.label_selected(keyed[event.text()])
                    return True
                if event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter) and event.type() == QEvent.Type.KeyPress:
                    self._open_index(self.list.currentIndex())
                    return True
        return super().eventFilter(watched, event)

    # ---------------------------------------------------------------- thumbnails
    def visible_rows(self) -> range:
        """Display rows whose cells intersect the viewport (approximate at the edges)."""
        viewport = self.list.viewport().rect()
        spacing = self.list.spacing()
        first = self.list.indexAt(QPoint(viewport.left() + spacing + 2, viewport.top() + spacing + 2))
        if not first.isValid():
            first = self.list.indexAt(QPoint(viewport.left() + spacing + 2, viewport.top() + 40))
        if not first.isValid():
            return range(0)
        # uniform cells: the grid's pitch gives how many fit, without hit-testing every corner
        cell = self.list.visualRect(first)
        pitch_x = max(1, cell.width() + 2 * spacing)
        pitch_y = max(1, cell.height() + 2 * spacing)
        per_row = max(1, (viewport.width() - spacing) // pitch_x)
        rows = viewport.height() // pitch_y + 2
        start = first.row() - first.row() % per_row
        return range(start, min(len(self.model.shown), start + rows * per_row))

    def _schedule_retain(self, *_args) -> None:
        if not self._retain.isActive():
            self._retain.start()

    def _retain_visible(self) -> None:
        rows = self.visible_rows()
        if not rows:
            return
        cell = self.delegate.cell_size()
        per_row = max(1, self.list.viewport().width() // cell.width())
        rows = range(max(0, rows.start - per_row), min(len(self.model.shown), rows.stop + per_row))
        self.loader.retain(self.model.image_ids[self.model.shown[rows.start:rows.stop]].tolist())

    def closeEvent(self, event) -> None:  # noqa: N802 - Qt's name
        self.loader.shutdown()
        super().closeEvent(event)
