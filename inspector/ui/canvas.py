"""The image canvas: zoom at the cursor, pan, fit, 1:1, pixel readout."""

from __future__ import annotations

from typing import Optional

from PySide6.QtCore import QPointF, Qt, Signal
from PySide6.QtGui import QColor, QImage, QPainter, QPixmap
from PySide6.QtWidgets import QFrame, QGraphicsPixmapItem, QGraphicsScene, QGraphicsView

ZOOM_STEP = 1.25
MIN_SCALE, MAX_SCALE = 0.02, 64.0


class ImageCanvas(QGraphicsView):
    """Shows one image. Keys are left to the parent (the labelling view owns the keyboard)."""

    painted = Signal()  # after a repaint that showed the current pixmap (benchmarks listen)
    hovered = Signal(int, int)  # image pixel under the cursor; (-1, -1) outside
    zoom_changed = Signal(float)  # image pixels per screen pixel… inverted: screen px per image px

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self._scene = QGraphicsScene(self)
        self.setScene(self._scene)
        self._item = QGraphicsPixmapItem()
        self._item.setShapeMode(QGraphicsPixmapItem.ShapeMode.BoundingRectShape)
        self._scene.addItem(self._item)
        self._fit = True
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setTransformationAnchor(QGraphicsView.ViewportAnchor.AnchorUnderMouse)
        self.setResizeAnchor(QGraphicsView.ViewportAnchor.AnchorViewCenter)
        self.setDragMode(QGraphicsView.DragMode.ScrollHandDrag)
        self.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, True)
        self.setBackgroundBrush(QColor("#202124"))
        self.setMouseTracking(True)
        self.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.setMinimumSize(240, 200)
        self.setViewportUpdateMode(QGraphicsView.ViewportUpdateMode.FullViewportUpdate)

    # ------------------------------------------------------------------ content
    def set_image(self, image: Optional[QImage], keep_view: bool = False) -> None:
        """Show ``image`` (None clears). A new image is fitted unless the user chose a zoom and
        ``keep_view`` (tone changes keep the zoom; the next part starts fitted)."""
        if image is None:
            self._item.setPixmap(QPixmap())
            self._scene.setSceneRect(0, 0, 1, 1)
            self.viewport().update()
            return
        pixmap = QPixmap.fromImage(image)
        same_size = not self._item.pixmap().isNull() and self._item.pixmap().size() == pixmap.size()
        self._item.setPixmap(pixmap)
        self._scene.setSceneRect(self._item.boundingRect())
        if not (keep_view and same_size) or self._fit:
            self.fit()
        self.viewport().update()

    def has_image(self) -> bool:
        return not self._item.pixmap().isNull()

    # ------------------------------------------------------------------ zoom
    def scale_factor(self) -> float:
        return self.transform().m11()

    def fit(self) -> None:
        self._fit = True
        if self.has_image():
            self.fitInView(self._item, Qt.AspectRatioMode.KeepAspectRatio)
        self._after_zoom()

    def actual_size(self) -> None:
        """One image pixel per device pixel (sharp on HiDPI screens)."""
        self._fit = False
        ratio = self.devicePixelRatioF() or 1.0
        self.resetTransform()
        self.scale(1.0 / ratio, 1.0 / ratio)
        self._after_zoom()

    def zoom_by(self, factor: float, anchor: Optional[QPointF] = None) -> None:
        current = self.scale_factor()
        target = min(MAX_SCALE, max(MIN_SCALE, current * factor))
        if target == current:
            return
        self._fit = False
        if anchor is not None:
            old_anchor = self.transformationAnchor()
            self.setTransformationAnchor(QGraphicsView.ViewportAnchor.AnchorUnderMouse)
            self.scale(target / current, target / current)
            self.setTransformationAnchor(old_anchor)
        else:
            self.setTransformationAnchor(QGraphicsView.ViewportAnchor.AnchorViewCenter)
            self.scale(target / current, target / current)
            self.setTransformationAnchor(QGraphicsView.ViewportAnchor.AnchorUnderMouse)
        self._after_zoom()

    def _after_zoom(self) -> None:
        # zoomed in, show pixels as blocks (a defect is a few pixels); zoomed out, smooth
        scale = self.scale_factor() * (self.devicePixelRatioF() or 1.0)
        mode = Qt.TransformationMode.FastTransformation if scale >= 2.0 else Qt.TransformationMode.SmoothTransformation
        self._item.setTransformationMode(mode)
        self.zoom_changed.emit(self.scale_factor())

    # ------------------------------------------------------------------ events
    def wheelEvent(self, event) -> None:
        steps = event.angleDelta().y() / 120.0
        if steps:
            self.zoom_by(ZOOM_STEP ** steps, event.position())
        event.accept()

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        if self._fit:
            self.fit()

    def mouseMoveEvent(self, event) -> None:
        super().mouseMoveEvent(event)
        if not self.has_image():
            return
        point = self.mapToScene(event.position().toPoint())
        x, y = int(point.x()), int(point.y())
        size = self._item.pixmap().size()
        inside = 0 <= point.x() < size.width() and 0 <= point.y() < size.height()
        self.hovered.emit(x if inside else -1, y if inside else -1)

    def mouseDoubleClickEvent(self, event) -> None:
        if self._fit:
            self.actual_size()
        else:
            self.fit()

    def keyPressEvent(self, event) -> None:
        event.ignore()  # the labelling view handles every key

    def paintEvent(self, event) -> None:
        super().paintEvent(event)
        self.painted.emit()
