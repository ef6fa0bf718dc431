"""Icons and style sheets from ``resources/``: SVG rendered at the screen's pixel density, tinted
for the current theme."""

from __future__ import annotations

import sys
from functools import lru_cache
from pathlib import Path

from PySide6.QtCore import QByteArray, QRectF, Qt
from PySide6.QtGui import QGuiApplication, QIcon, QPainter, QPixmap

_ICON_STROKE = "#5f6368"  # the colour the SVGs are drawn in; replaced by the theme's
_tint = {"color": "#3c4043"}


def resources_dir() -> Path:
    """The resources folder: beside the package in a checkout, or inside a frozen build."""
    candidates = []
    if getattr(sys, "frozen", False):
        candidates.append(Path(getattr(sys, "_MEIPASS", Path(sys.executable).parent)) / "resources")
    here = Path(__file__).resolve()
    candidates += [here.parents[1] / "resources", here.parents[2] / "resources"]
    for c in candidates:
        if (c / "icons").is_dir():
            return c
    return candidates[-1]


def set_icon_tint(color: str) -> None:
    _tint["color"] = color
    _icon.cache_clear()


def icon(name: str) -> QIcon:
    """The named icon, sharp at every size and pixel ratio; an empty icon if the file is missing
    (a missing picture must never stop the app)."""
    return _icon(name, _tint["color"])


@lru_cache(maxsize=128)
def _icon(name: str, color: str) -> QIcon:
    from PySide6.QtSvg import QSvgRenderer

    path = resources_dir() / "icons" / f"{name}.svg"
    if not path.is_file():
        return QIcon()
    data = path.read_text(encoding="utf-8").replace(_ICON_STROKE, color)
    renderer = QSvgRenderer(QByteArray(data.encode("utf-8")))
    result = QIcon()
    app = QGuiApplication.instance()
    ratio = max((s.devicePixelRatio() for s in app.screens()), default=1.0) if app else 1.0
    for side in (16, 20, 24, 32, 48, 64):
        pixels = int(round(side * max(1.0, ratio)))
        pm = QPixmap(pixels, pixels)
        pm.fill(Qt.GlobalColor.transparent)
        painter = QPainter(pm)
        renderer.render(painter, QRectF(0, 0, pixels, pixels))
        painter.end()
        pm.setDevicePixelRatio(pixels / side)
        result.addPixmap(pm)
    return result


def app_icon() -> QIcon:
    folder = resources_dir()
    result = QIcon()
    for size in (16, 32, 48, 64, 128, 256, 512):
        png = folder / "icons" / "app" / f"inspector-{size}.png"
        if png.is_file():
            result.addFile(str(png))
    if result.isNull() and (folder / "inspector.svg").is_file():
        result.addFile(str(folder / "inspector.svg"))
    return result


def style_sheet(theme: str) -> str:
    path = resources_dir() / "styles" / f"{theme}.qss"
    return path.read_text(encoding="utf-8") if path.is_file() else ""
