"""The app's light and dark themes: palette, style sheet and icon tint.

Its own module so that the main window (theme switch, settings) and the app start-up both import
it, and neither imports the other."""

from __future__ import annotations

from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QApplication

from inspector.ui.icons import icon, set_icon_tint, style_sheet


def apply_theme(theme: str) -> None:
    app = QApplication.instance()
    if app is None:
        return
    palette = QPalette()
    if theme == "dark":
        for role, color in ((QPalette.ColorRole.Window, "#1e1f22"), (QPalette.ColorRole.WindowText, "#e8eaed"),
                            (QPalette.ColorRole.Base, "#27282c"), (QPalette.ColorRole.AlternateBase, "#303134"),
                            (QPalette.ColorRole.Text, "#e8eaed"), (QPalette.ColorRole.Button, "#303134"),
                            (QPalette.ColorRole.ButtonText, "#e8eaed"), (QPalette.ColorRole.Highlight, "#8ab4f8"),
                            (QPalette.ColorRole.HighlightedText, "#202124"), (QPalette.ColorRole.ToolTipBase, "#303134"),
                            (QPalette.ColorRole.ToolTipText, "#e8eaed"), (QPalette.ColorRole.PlaceholderText, "#9aa0a6")):
            palette.setColor(role, QColor(color))
        set_icon_tint("#bdc1c6")
    else:
        palette = app.style().standardPalette()
        set_icon_tint("#3c4043")
    app.setPalette(palette)
    app.setStyleSheet(style_sheet(theme))
    # widgets built before the switch hold icons of the old tint: give them the new one
    for widget in app.allWidgets():
        name = widget.property("icon_name")
        if name and hasattr(widget, "setIcon"):
            widget.setIcon(icon(str(name)))
