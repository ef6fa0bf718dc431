"""Render the app icon (resources/inspector.svg) to the raster files each platform wants.

Writes resources/inspector.png (256 px, the Linux desktop entry's icon), resources/inspector.ico
(Windows executable, 16-256 px) and resources/inspector.icns (macOS bundle). Run after changing
the SVG: ``python packaging/make_icons.py``.
"""

from __future__ import annotations

import io
import os
import sys
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

RESOURCES = Path(__file__).resolve().parents[1] / "resources"
SIZES = (16, 24, 32, 48, 64, 128, 256, 512)


def render(svg: Path, size: int):
    """The SVG drawn at ``size`` x ``size`` as a Pillow RGBA image."""
    from PIL import Image
    from PySide6.QtCore import QBuffer, QByteArray, QIODevice, Qt
    from PySide6.QtGui import QImage, QPainter
    from PySide6.QtSvg import QSvgRenderer

    renderer = QSvgRenderer(str(svg))
    if not renderer.isValid():
        raise SystemExit(f"{svg} is not a valid SVG")
    image = QImage(size, size, QImage.Format.Format_ARGB32)
    image.fill(Qt.GlobalColor.transparent)
    painter = QPainter(image)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    renderer.render(painter)
    painter.end()
    data = QByteArray()
    buffer = QBuffer(data)
    buffer.open(QIODevice.OpenModeFlag.WriteOnly)
    image.save(buffer, "PNG")
    buffer.close()
    return Image.open(io.BytesIO(bytes(data))).convert("RGBA")


def main() -> int:
    from PySide6.QtGui import QGuiApplication

    app = QGuiApplication.instance() or QGuiApplication(sys.argv[:1])
    svg = RESOURCES / "inspector.svg"
    images = {size: render(svg, size) for size in SIZES}
    images[256].save(RESOURCES / "inspector.png")
    images[256].save(RESOURCES / "inspector.ico", sizes=[(s, s) for s in SIZES if s <= 256])
    images[512].save(RESOURCES / "inspector.icns")
    for name in ("inspector.png", "inspector.ico", "inspector.icns"):
        print(f"wrote resources/{name} ({(RESOURCES / name).stat().st_size // 1024} KB)")
    del app
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
