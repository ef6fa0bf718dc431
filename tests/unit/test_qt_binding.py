"""Guards against a Qt binding that corrupts reference counts.

PySide6 6.12.0 drops one reference to ``None`` on every Qt call returning nothing; after a few
thousand repaints the interpreter aborts ("deallocating None"). pyproject.toml excludes it; this
test fails loudly if such a build is installed anyway.
"""

import sys

import pytest


def test_qt_calls_keep_reference_counts_of_none_and_bools(qapp):
    # qapp: pytest-qt's one QApplication for the whole run (a bare QGuiApplication made here
    # would leave later widget tests without the QApplication they need)
    pytest.importorskip("PySide6")
    from PySide6.QtGui import QImage, QPainter

    image = QImage(8, 8, QImage.Format.Format_RGB32)
    painter = QPainter(image)
    try:
        none_before, true_before = sys.getrefcount(None), sys.getrefcount(True)
        for _ in range(200):
            painter.save()
            painter.restore()
            painter.isActive()
        none_delta = sys.getrefcount(None) - none_before
        true_delta = sys.getrefcount(True) - true_before
    finally:
        painter.end()
    assert abs(none_delta) < 50, f"Qt binding leaks references to None ({none_delta} over 200 calls)"
    assert abs(true_delta) < 50, f"Qt binding leaks references to True ({true_delta} over 200 calls)"
