"""The labelling workstation: the image, the class keys, the model's suggestion and why the
image was queued, undo/redo/back, and the strip of what comes next.

The keyboard belongs to this view (child widgets take no focus). A label goes to the session,
whose writer thread commits it durably (a few milliseconds); the next image appears only when
that commit is acknowledged, so a label the inspector saw accepted is on disk before they look
at the next part, and the UI thread itself never waits for the disk. The next images are
decoded ahead in a worker so they appear at once.

What to show next (navigation), undo/redo and the decode cache's policy are plain Python in
:mod:`inspector.workflow` (unit-tested without Qt); this view lays out, forwards keys and draws.
It never reads the store: the session holds the queue, paths and labels in memory.
"""

from __future__ import annotations

import logging
from typing import Optional

from PySide6.QtCore import QSize, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QFont, QImage, QKeySequence, QPixmap
from PySide6.QtWidgets import (
    QCheckBox, QFrame, QGridLayout, QHBoxLayout, QLabel, QLineEdit, QPushButton, QSizePolicy, QSlider,
    QToolButton, QVBoxLayout, QWidget,
)

from inspector.core.errors import UserError
from inspector.core.store import QueueEntry
from inspector.ui import display
from inspector.ui.canvas import ImageCanvas
from inspector.ui.icons import icon
from inspector.ui.session import ProjectSession
from inspector.ui.workers import Task, deliver_to, pool, run_task
from inspector.workflow import labelling
from inspector.workflow.jobs import image_path as read_image_path
from inspector.workflow.labelling import LabelHistory, LabelState, LabelStep
from inspector.workflow.navigation import DecodeCache, Navigator

log = logging.getLogger("inspector.ui")

#: decoded images kept in memory (current, a few behind for Back, a few ahead)
CACHE_IMAGES = 8
PREFETCH_AHEAD = 2
STRIP_THUMBS = 8
THUMB_SIDE = 84
#: a retrain takes 1-7 s on a busy machine and a quick inspector labels 3 images a second:
#: refill with this many still queued (of the learner's 20) so the queue never runs dry
REFILL_BELOW = 15

KEYS = [
    ("1 … 9", "label with that class (keypad too)"),
    ("Enter", "accept the model's suggestion"),
    ("S", "skip this image"),
    ("U", "mark as unsure"),
    ("Backspace / ←", "back to the previous image"),
    ("Ctrl+Z", "undo the last label"),
    ("Ctrl+Shift+Z / Ctrl+Y", "redo"),
    ("F", "fit the image to the window"),
    ("Z", "actual size (1:1)"),
    ("+ / −, mouse wheel", "zoom (at the cursor)"),
    ("C", "auto-contrast on/off"),
    ("Drag", "pan"),
    ("F1 or ?", "this list of keys"),
    # the window's keys, listed here too: this overlay is where an inspector looks for keys
    ("Ctrl+K", "classes (add, rename, merge…)"),
    ("Ctrl+,", "settings (retrain every N labels…)"),
    ("F5", "rescan the image folder"),
    ("Ctrl+R", "retrain now"),
]


def _text_color_for(background: str) -> str:
    c = QColor(background)
    return "#000000" if (0.299 * c.red() + 0.587 * c.green() + 0.114 * c.blue()) > 150 else "#ffffff"


class KeysOverlay(QFrame):
    """The list of keys, over the labelling view; any key or click closes it."""

    def __init__(self, parent: QWidget) -> None:
        super().__init__(parent)
        self.setObjectName("keysOverlay")
        self.setAutoFillBackground(True)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(28, 20, 28, 20)
        title = QLabel("Keys")
        title.setObjectName("overlayTitle")
        layout.addWidget(title)
        grid = QGridLayout()
        for row, (key, what) in enumerate(KEYS):
            k = QLabel(key)
            k.setObjectName("keyCap")
            grid.addWidget(k, row, 0, Qt.AlignmentFlag.AlignRight)
            grid.addWidget(QLabel(what), row, 1)
        layout.addLayout(grid)
        hint = QLabel("Press any key to close")
        hint.setObjectName("dim")
        layout.addWidget(hint)
        self.hide()

    def show_over(self) -> None:
        self.adjustSize()
        parent = self.parentWidget()
        self.move((parent.width() - self.width()) // 2, max(0, (parent.height() - self.height()) // 3))
        self.show()
        self.raise_()

    def mousePressEvent(self, event) -> None:
        self.hide()


class QueueStrip(QFrame):
    """Thumbnails of the next queued images; a click opens one."""

    clicked = Signal(int)

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setObjectName("queueStrip")
        self._layout = QHBoxLayout(self)
        self._layout.setContentsMargins(6, 4, 6, 4)
        self._layout.setSpacing(6)
        self._caption = QLabel("Next")
        self._caption.setObjectName("dim")
        self._layout.addWidget(self._caption)
        self._slots: list[QToolButton] = []
        for _ in range(STRIP_THUMBS):
            b = QToolButton()
            b.setFocusPolicy(Qt.FocusPolicy.NoFocus)
            b.setIconSize(QSize(THUMB_SIDE, THUMB_SIDE))
            b.setFixedSize(THUMB_SIDE + 8, THUMB_SIDE + 8)
            b.setAutoRaise(True)
            b.clicked.connect(lambda _=False, btn=b: self._clicked(btn))
            self._layout.addWidget(b)
            self._slots.append(b)
        self._layout.addStretch(1)
        self._ids: list[int] = []

    def _clicked(self, button: QToolButton) -> None:
        image_id = button.property("image_id")
        if image_id is not None and int(image_id) >= 0:
            self.clicked.emit(int(image_id))

    def set_entries(self, entries: list[QueueEntry], pixmaps: dict[int, QPixmap]) -> None:
        self._ids = [e.image_id for e in entries[:STRIP_THUMBS]]
        for slot, button in enumerate(self._slots):
            if slot < len(entries):
                e = entries[slot]
                button.setProperty("image_id", e.image_id)
                pm = pixmaps.get(e.image_id)
                button.setIcon(pm if pm is not None else QPixmap())
                button.setToolTip(f"{'audit pick — ' if e.audit else ''}{e.reason}")
                button.setVisible(True)
            else:
                button.setProperty("image_id", -1)
                button.setVisible(False)
        self._caption.setText("Next" if entries else "Queue empty")

    def wanted(self) -> list[int]:
        return list(self._ids)


class LabellingView(QWidget):
    """The labelling workstation for one session."""

    image_shown = Signal(int)  # image id now on screen (after its pixels were set)
    message = Signal(str)  # a short status message for the status bar

    def __init__(self, session: ProjectSession, parent=None) -> None:
        super().__init__(parent)
        self.session = session
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.nav = Navigator(session.queue_entry)
        self.history = LabelHistory()
        self.tone = display.Tone()
        self._cache: DecodeCache[display.PreparedImage] = DecodeCache(CACHE_IMAGES)
        self._thumbs: dict[int, QPixmap] = {}
        self._thumb_loading: set[int] = set()
        self._prepared: Optional[display.PreparedImage] = None
        # set while a label of the current image is being committed: the next image waits for it
        self._advance_when_saved = False
        self._build()
        session.labels_saved.connect(self._label_committed)
        session.label_failed.connect(self._label_refused)
        session.queue_changed.connect(self._queue_changed)
        session.model_updated.connect(lambda _v: self._show_suggestion())
        session.classes_changed.connect(self._rebuild_classes)
        session.features_changed.connect(self._features_changed)
        session.open_image_requested.connect(self.open_image)
        self._rebuild_classes()
        self._queue_changed()

    @property
    def current(self) -> Optional[int]:
        """The image on screen (None: none)."""
        return self.nav.current

    @property
    def current_entry(self) -> Optional[QueueEntry]:
        """The queue entry the current image was shown from (None: opened by hand)."""
        return self.nav.current_entry

    @property
    def upcoming(self) -> list[QueueEntry]:
        return self.nav.upcoming

    # ================================================================== layout
    def _build(self) -> None:
        root = QHBoxLayout(self)
        root.setContentsMargins(0, 0, 0, 0)
        root.setSpacing(0)

        left = QVBoxLayout()
        left.setContentsMargins(0, 0, 0, 0)
        left.setSpacing(0)
        left.addWidget(self._build_tone_bar())
        self.canvas = ImageCanvas(self)
        self.canvas.hovered.connect(self._hovered)
        self.canvas.zoom_changed.connect(self._zoom_changed)
        left.addWidget(self.canvas, 1)
        self.placeholder = QLabel("", self.canvas)
        self.placeholder.setObjectName("canvasMessage")
        self.placeholder.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.placeholder.setWordWrap(True)
        info = QHBoxLayout()
        info.setContentsMargins(8, 2, 8, 2)
        self.file_label = QLabel("")
        self.file_label.setObjectName("dim")
        self.file_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.pixel_label = QLabel("")
        self.pixel_label.setObjectName("dim")
        self.zoom_label = QLabel("")
        self.zoom_label.setObjectName("dim")
        info.addWidget(self.file_label, 1)
        info.addWidget(self.pixel_label)
        info.addSpacing(12)
        info.addWidget(self.zoom_label)
        left.addLayout(info)
        self.strip = QueueStrip(self)
        self.strip.clicked.connect(self.open_image)
        left.addWidget(self.strip)
        root.addLayout(left, 1)

        side = QFrame(self)
        side.setObjectName("sidePanel")
        side.setFixedWidth(300)
        panel = QVBoxLayout(side)
        panel.setContentsMargins(14, 14, 14, 14)
        panel.setSpacing(10)

        self.suggestion_box = QFrame()
        self.suggestion_box.setObjectName("suggestionBox")
        sb = QVBoxLayout(self.suggestion_box)
        sb.setContentsMargins(12, 10, 12, 10)
        caption = QLabel("MODEL SUGGESTS")
        caption.setObjectName("caption")
        sb.addWidget(caption)
        self.suggestion_label = QLabel("—")
        self.suggestion_label.setObjectName("suggestion")
        self.suggestion_label.setWordWrap(True)
        sb.addWidget(self.suggestion_label)
        self.accept_button = QPushButton("Accept  (Enter)")
        self.accept_button.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.accept_button.setToolTip("Label with the model's suggestion (Enter)")
        self.accept_button.clicked.connect(self.accept_suggestion)
        sb.addWidget(self.accept_button)
        panel.addWidget(self.suggestion_box)

        why_caption = QLabel("WHY THIS IMAGE")
        why_caption.setObjectName("caption")
        panel.addWidget(why_caption)
        self.reason_label = QLabel("—")
        self.reason_label.setWordWrap(True)
        self.reason_label.setObjectName("reason")
        panel.addWidget(self.reason_label)
        self.current_label = QLabel("")
        self.current_label.setWordWrap(True)
        self.current_label.setObjectName("currentLabel")
        panel.addWidget(self.current_label)

        classes_caption = QLabel("CLASSES")
        classes_caption.setObjectName("caption")
        panel.addWidget(classes_caption)
        self.class_box = QVBoxLayout()
        self.class_box.setSpacing(6)
        panel.addLayout(self.class_box)

        self.new_class_row = QWidget()
        row = QHBoxLayout(self.new_class_row)
        row.setContentsMargins(0, 0, 0, 0)
        self.new_class_edit = QLineEdit()
        self.new_class_edit.setPlaceholderText("new class name, Enter adds")
        self.new_class_edit.returnPressed.connect(self._add_class_from_field)
        row.addWidget(self.new_class_edit, 1)
        panel.addWidget(self.new_class_row)
        self.no_class_hint = QLabel("This project has no classes yet. Add the classes you will label "
                                    "(for example <b>ok</b>, <b>scratch</b>, <b>crack</b>): each gets a key 1–9.")
        self.no_class_hint.setWordWrap(True)
        self.no_class_hint.setObjectName("hint")
        panel.addWidget(self.no_class_hint)
        self.add_ok_button = QPushButton("Add class 'ok'")
        self.add_ok_button.clicked.connect(lambda: self._add_class("ok"))
        panel.addWidget(self.add_ok_button)

        actions = QGridLayout()
        actions.setSpacing(6)
        self.skip_button = self._action_button("Skip", "S", "skip", self.skip)
        self.unsure_button = self._action_button("Unsure", "U", "unsure", self.mark_unsure)
        self.back_button = self._action_button("Back", "Backspace", "back", self.go_back)
        self.undo_button = self._action_button("Undo", "Ctrl+Z", "undo", self.undo)
        self.redo_button = self._action_button("Redo", "Ctrl+Shift+Z", "redo", self.redo)
        self.keys_button = self._action_button("Keys", "F1", "keys", self.show_keys)
        for i, b in enumerate((self.skip_button, self.unsure_button, self.back_button, self.undo_button,
                               self.redo_button, self.keys_button)):
            actions.addWidget(b, i // 2, i % 2)
        panel.addLayout(actions)
        panel.addStretch(1)
        root.addWidget(side)
        self.overlay = KeysOverlay(self)
        self._update_buttons()

    def _action_button(self, text: str, key: str, icon_name: str, slot) -> QPushButton:
        b = QPushButton(icon(icon_name), f"{text}")
        b.setProperty("icon_name", icon_name)
        b.setToolTip(f"{text} ({key})")
        b.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        b.clicked.connect(slot)
        return b

    def _build_tone_bar(self) -> QWidget:
        bar = QFrame(self)
        bar.setObjectName("toneBar")
        h = QHBoxLayout(bar)
        h.setContentsMargins(8, 4, 8, 4)
        for name, tip, slot in (("fit", "Fit to window (F)", self.canvas_fit),
                                ("actual-size", "Actual size 1:1 (Z)", self.canvas_actual),
                                ("zoom-in", "Zoom in (+ or mouse wheel)", lambda: self.canvas.zoom_by(1.25)),
                                ("zoom-out", "Zoom out (− or mouse wheel)", lambda: self.canvas.zoom_by(0.8))):
            b = QToolButton()
            b.setIcon(icon(name))
            b.setProperty("icon_name", name)
            b.setToolTip(tip)
            b.setFocusPolicy(Qt.FocusPolicy.NoFocus)
            b.clicked.connect(slot)
            h.addWidget(b)
        h.addSpacing(10)
        self.auto_check = QCheckBox("Auto contrast")
        self.auto_check.setToolTip("Stretch this image's own range to full brightness (C); needed for dark and 16-bit images")
        self.auto_check.setChecked(self.tone.auto)
        self.auto_check.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.auto_check.toggled.connect(self._tone_changed)
        h.addWidget(self.auto_check)
        self.sliders = {}
        for key, label, lo, hi, value in (("brightness", "Brightness", -100, 100, 0),
                                          ("contrast", "Contrast", 10, 400, 100),
                                          ("gamma", "Gamma", 20, 400, 100)):
            h.addSpacing(8)
            h.addWidget(QLabel(label))
            s = QSlider(Qt.Orientation.Horizontal)
            s.setRange(lo, hi)
            s.setValue(value)
            s.setFixedWidth(90)
            s.setFocusPolicy(Qt.FocusPolicy.NoFocus)
            s.setToolTip(f"{label} (double-click Reset to restore)")
            s.valueChanged.connect(self._tone_changed)
            h.addWidget(s)
            self.sliders[key] = s
        reset = QToolButton()
        reset.setText("Reset")
        reset.setToolTip("Reset brightness, contrast and gamma")
        reset.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        reset.clicked.connect(self.reset_tone)
        h.addWidget(reset)
        h.addStretch(1)
        return bar

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        self.placeholder.setGeometry(self.canvas.rect().adjusted(40, 40, -40, -40))

    # ================================================================== classes
    def _rebuild_classes(self) -> None:
        while self.class_box.count():
            item = self.class_box.takeAt(0)
            if item.widget():
                # hidden at once: out of the layout, an old button would otherwise be drawn at
                # its last (or default) place over the panel until the event loop deletes it
                item.widget().hide()
                item.widget().deleteLater()
        self.class_buttons: dict[int, QPushButton] = {}
        classes = self.session.classes()
        for c in classes:
            text = f"{c.key}   {c.name}" if c.key else f"     {c.name}"
            b = QPushButton(text)
            b.setObjectName("classButton")
            b.setCheckable(True)
            b.setFocusPolicy(Qt.FocusPolicy.NoFocus)
            b.setMinimumHeight(34)
            fg = _text_color_for(c.color)
            b.setStyleSheet(
                f"QPushButton#classButton {{ background: {c.color}; color: {fg}; text-align: left;"
                f" padding-left: 12px; font-weight: 600; border-radius: 5px; border: 2px solid {c.color}; }}"
                f" QPushButton#classButton:checked {{ border: 3px solid palette(highlighted-text);"
                f" outline: none; }}")
            b.setToolTip(f"Label as {c.name}" + (f" ({c.key})" if c.key else ""))
            b.clicked.connect(lambda _=False, cid=c.id: self.label_with(cid))
            self.class_box.addWidget(b)
            self.class_buttons[c.id] = b
        has_classes = bool(classes)
        self.no_class_hint.setVisible(not has_classes)
        # a quick start for a new project; once classes exist the field below adds more
        self.add_ok_button.setVisible(not has_classes)
        self.new_class_edit.setPlaceholderText("add a class: name, then Enter" if not has_classes
                                              else "another class: name, then Enter")
        self._show_current_label()
        self._show_suggestion()

    def _add_class_from_field(self) -> None:
        name = self.new_class_edit.text().strip()
        if name and self._add_class(name):
            self.new_class_edit.clear()
        self.setFocus()

    def _add_class(self, name: str) -> bool:
        try:
            self.session.add_class(name)
        except UserError as exc:
            self.message.emit(str(exc))
            return False
        self.setFocus()
        return True

    # ================================================================== queue and navigation
    def _features_changed(self) -> None:
        if self.current is None:
            self._queue_changed()

    def _queue_changed(self) -> None:
        """The learner wrote a new queue: keep the current image, refresh what comes after it."""
        if self.nav.queue_changed(self.session.queue()):
            self._show_reason()
        if self.current is None:
            self.next_image()
        self._update_strip()
        self._prefetch()

    def next_image(self) -> None:
        """Show the next image: one left by going back first, else the head of the queue."""
        image_id, entry = self.nav.next(self.session.latest_labels())
        self._show(image_id, entry)
        # refill well before the queue runs dry, so the inspector never waits for the learner:
        # the current model ranks the images again (a retrain follows its own setting); during
        # a retrain this asks for one more refill after it (the queue it writes was chosen
        # before the labels given meanwhile, and loses every image among them)
        if self.nav.queued_ahead() < REFILL_BELOW:
            self.session.refill_queue()

    def go_back(self) -> None:
        if self._advance_when_saved:
            return
        target = self.nav.back()
        if target is None:
            self.message.emit("no earlier image in this session")
            return
        self._show(*target)

    def open_image(self, image_id: int, entry: Optional[QueueEntry] = None) -> None:
        """Show any image of the project (from the queue strip, the gallery or the map); ``entry``
        is the queue entry it came from when it is no longer queued (an undone label)."""
        target = self.nav.open(image_id, entry)
        if target is not None:
            self._show(*target)

    def _show(self, image_id: Optional[int], entry: Optional[QueueEntry]) -> None:
        self.nav.show(image_id, entry)
        self._prepared = None
        if image_id is None:
            self.canvas.set_image(None)
            if len(self.session.image_ids) == 0:
                text = ("Reading images… labelling starts as soon as the first images are analysed."
                        if self.session.extracting() or self.session.busy() else
                        "No images yet. Use Project ▸ Rescan, or check the Problems panel.")
            elif self.session.retraining():
                text = "The learner is choosing the next images…"
            else:
                text = "The queue is empty: every image is labelled, or the learner is about to choose more."
            self._placeholder(text)
            self.file_label.setText("")
        else:
            self.file_label.setText(self.session.image_relpath(image_id) or "")
            prepared = self._cache.get(image_id)
            failure = self._cache.failure(image_id)
            if prepared is not None:
                self._display(prepared)
            elif failure is not None:
                self.canvas.set_image(None)
                self._placeholder(f"This image cannot be shown: {failure}\nPress S to skip it.")
            else:
                self.canvas.set_image(None)
                self._placeholder("Loading…")
                self._decode(image_id)
        self._show_reason()
        self._show_current_label()
        self._show_suggestion()
        self._update_strip()
        self._update_buttons()
        self._prefetch()

    def _placeholder(self, text: str) -> None:
        self.placeholder.setText(text)
        self.placeholder.setGeometry(self.canvas.rect().adjusted(40, 40, -40, -40))
        self.placeholder.setVisible(bool(text))

    # ================================================================== decoding
    def _decode(self, image_id: int) -> None:
        if not self._cache.should_decode(image_id):
            return
        task = Task(_prepare_with_thumbnail, image_id, self.session.image_path(image_id), self.session.project.path,
                    name="Decoding", with_progress=False)
        task.signals.finished.connect(deliver_to(self, self._decoded))
        task.signals.failed.connect(deliver_to(self, lambda message, i=image_id: self._decode_failed(i, message)))
        run_task(task, pool("images"))

    def _decoded(self, result: tuple[display.PreparedImage, QImage]) -> None:
        prepared, thumb = result
        self._cache.put(prepared.image_id, prepared, keep=self.current)
        self._thumbs.setdefault(prepared.image_id, QPixmap.fromImage(thumb))
        if prepared.image_id == self.current:
            self._display(prepared)
        self._update_strip()

    def _decode_failed(self, image_id: int, message: str) -> None:
        self._cache.fail(image_id, message)
        if image_id == self.current:
            self._placeholder(f"This image cannot be shown: {message}\nPress S to skip it.")

    def _prefetch(self) -> None:
        for image_id in self.nav.ahead(PREFETCH_AHEAD):
            self._decode(image_id)
        for image_id in self.strip.wanted():
            # images being decoded for the canvas bring their strip thumbnail with them
            if image_id not in self._thumbs and image_id not in self._thumb_loading \
                    and image_id not in self._cache and not self._cache.decoding(image_id):
                self._thumb_loading.add(image_id)
                task = Task(_thumbnail, image_id, self.session.image_path(image_id), self.session.project.path,
                            name="Thumbnail", with_progress=False)
                task.signals.finished.connect(deliver_to(self, self._thumb_ready))
                task.signals.failed.connect(lambda _m, i=image_id: self._thumb_loading.discard(i))
                run_task(task, pool("images"))

    def _thumb_ready(self, result) -> None:
        image_id, qimage = result
        self._thumb_loading.discard(image_id)
        self._thumbs[image_id] = QPixmap.fromImage(qimage)
        if len(self._thumbs) > 200:
            for key in list(self._thumbs)[:100]:
                self._thumbs.pop(key, None)
        self._update_strip()

    def _update_strip(self) -> None:
        self.strip.set_entries(self.nav.strip_entries(), self._thumbs)

    # ================================================================== showing
    def _display(self, prepared: display.PreparedImage) -> None:
        self._prepared = prepared
        self.placeholder.setVisible(False)
        self.canvas.set_image(display.render(prepared, self._current_tone()))
        self.file_label.setText(f"{self.file_label.text().split('  ·  ')[0]}  ·  {prepared.description}")
        self.image_shown.emit(prepared.image_id)

    def _current_tone(self) -> display.Tone:
        return display.Tone(
            brightness=self.sliders["brightness"].value() / 100.0,
            contrast=self.sliders["contrast"].value() / 100.0,
            gamma=self.sliders["gamma"].value() / 100.0,
            auto=self.auto_check.isChecked(),
        )

    def _tone_changed(self, *_):
        if self._prepared is not None:
            self.canvas.set_image(display.render(self._prepared, self._current_tone()), keep_view=True)

    def reset_tone(self) -> None:
        for key, value in (("brightness", 0), ("contrast", 100), ("gamma", 100)):
            self.sliders[key].setValue(value)

    def canvas_fit(self) -> None:
        self.canvas.fit()

    def canvas_actual(self) -> None:
        self.canvas.actual_size()

    def _hovered(self, x: int, y: int) -> None:
        p = self._prepared
        if p is None or x < 0:
            self.pixel_label.setText("")
            return
        # the display copy may be smaller than the original (huge frames)
        fx = p.raw.shape[1] / p.levels.shape[1]
        fy = p.raw.shape[0] / p.levels.shape[0]
        self.pixel_label.setText(display.pixel_text(p, int(x * fx), int(y * fy)))

    def _zoom_changed(self, scale: float) -> None:
        self.zoom_label.setText(f"{scale * (self.devicePixelRatioF() or 1.0):.0%}")

    def _show_reason(self) -> None:
        e = self.current_entry
        if self.current is None:
            self.reason_label.setText("—")
        elif e is None:
            self.reason_label.setText("opened by you (not from the queue)")
        else:
            version = f" · model v{e.model_version}" if e.model_version else ""
            if e.audit:
                # the audit's own reason only repeats the word; say what it is for instead
                self.reason_label.setText(f"<b>Audit pick</b> (random, keeps the accuracy estimate honest){version}")
            else:
                self.reason_label.setText(f"{e.reason}{version}")

    def _show_suggestion(self) -> None:
        s = self.session.suggestion(self.current) if self.current is not None else None
        names = {c.id: c for c in self.session.classes()}
        if s is None or s[0] not in names:
            self.suggestion_label.setText("no model yet" if self.session.probabilities is None else "—")
            self.suggestion_box.setStyleSheet("")
            self.accept_button.setEnabled(False)
            return
        c = names[s[0]]
        text = f"{c.name}  <span style='font-weight:400'>{s[1]:.0%}</span>"
        novelty = self.session.novelty(self.current)
        if novelty is not None and novelty > 1.0:  # the guess is about a part unlike every labelled one
            text += ("<br><span style='font-weight:400; font-size:small; color:#b45309'>"
                     "unlike anything labelled so far</span>")
        self.suggestion_label.setText(text)
        self.suggestion_box.setStyleSheet(f"QFrame#suggestionBox {{ border-left: 6px solid {c.color}; }}")
        self.accept_button.setEnabled(True)

    def _show_current_label(self) -> None:
        for b in getattr(self, "class_buttons", {}).values():
            b.setChecked(False)
        if self.current is None:
            self.current_label.setText("")
            return
        class_id = self.session.latest_labels().get(self.current)
        if class_id is not None and class_id in self.class_buttons:
            self.class_buttons[class_id].setChecked(True)
            name = next((c.name for c in self.session.classes() if c.id == class_id), "?")
            self.current_label.setText(f"Labelled <b>{name}</b>; a key relabels it")
        else:
            self.current_label.setText("")

    def _update_buttons(self) -> None:
        has = self.current is not None
        for b in (self.skip_button, self.unsure_button):
            b.setEnabled(has)
        self.back_button.setEnabled(bool(self.nav.back_stack))
        self.undo_button.setEnabled(self.history.can_undo())
        self.redo_button.setEnabled(self.history.can_redo())

    # ================================================================== labelling
    def _give(self, class_id: Optional[int], kind: str, source: str) -> bool:
        """Give a label to the current image; the next image follows once the label is committed."""
        if self.current is None or self._advance_when_saved:
            return False
        image_id = self.current
        # an audit pick exactly when the entry it was shown with was one (labelling.label_for_shown)
        command = labelling.label_for_shown(image_id, self.current_entry, kind, class_id, source=source)
        before = self.session.label_state(image_id)
        try:
            self.session.give(command)
        except UserError as exc:
            self.message.emit(f"not saved: {exc}")
            return False
        self.history.record(LabelStep(image_id, before, command.state, source, self.current_entry))
        self._next_when_saved()
        return True

    @property
    def saving(self) -> bool:
        """True while the current image's label is being committed (keys wait for it)."""
        return self._advance_when_saved

    def _next_when_saved(self) -> None:
        if self.session.pending_labels() == 0:
            self.next_image()
        else:
            self._advance_when_saved = True

    def _label_committed(self) -> None:
        if self._advance_when_saved and self.session.pending_labels() == 0:
            self._advance_when_saved = False
            self.next_image()

    def _label_refused(self, _message: str) -> None:
        # stay on the image whose label was not saved, so the inspector can give it again
        self._advance_when_saved = False
        self._show_current_label()
        self._update_buttons()

    def label_with(self, class_id: int) -> bool:
        return self._give(int(class_id), "class", "human")

    def label_with_key(self, key: str) -> bool:
        for c in self.session.classes():
            if c.key == key:
                return self.label_with(c.id)
        return False

    def accept_suggestion(self) -> bool:
        s = self.session.suggestion(self.current) if self.current is not None else None
        if s is None:
            self.message.emit("no suggestion yet: the model needs a few labels of two classes")
            return False
        return self._give(s[0], "class", "suggestion")

    def skip(self) -> bool:
        return self._give(None, "skip", "human")

    def mark_unsure(self) -> bool:
        return self._give(None, "unsure", "human")

    def undo(self) -> bool:
        if self._advance_when_saved:
            return False
        step = self.history.take_undo()
        if step is None:
            self.message.emit("nothing to undo")
            return False
        try:
            self.session.give(step.undo_command())
        except UserError as exc:
            self.history.take_redo()
            self.message.emit(f"undo not saved: {exc}")
            return False
        path = self.session.image_relpath(step.image_id) or f"image {step.image_id}"
        self.message.emit(f"Undone: {path} is {self._describe(step.before)} again" if step.before is not None
                          else f"Undone: {path} is unlabelled again")
        if step.image_id != self.current:
            # shown with the queue entry it was labelled from: its reason, and an audit pick stays one
            self.open_image(step.image_id, step.entry)
        else:
            self._show_current_label()
        self._update_buttons()
        return True

    def _describe(self, state: Optional[LabelState]) -> str:
        return labelling.describe(state, {c.id: c.name for c in self.session.classes()})

    def redo(self) -> bool:
        if self._advance_when_saved:
            return False
        step = self.history.take_redo()
        if step is None:
            self.message.emit("nothing to redo")
            return False
        try:
            self.session.give(step.redo_command())
        except UserError as exc:
            self.history.take_undo()
            self.message.emit(f"redo not saved: {exc}")
            return False
        if step.image_id == self.current:
            self._next_when_saved()
        self._update_buttons()
        return True

    def show_keys(self) -> None:
        self.overlay.show_over()

    # ================================================================== keyboard
    def keyPressEvent(self, event) -> None:
        if self.overlay.isVisible():
            self.overlay.hide()
            return
        key = event.key()
        mods = event.modifiers() & ~Qt.KeyboardModifier.KeypadModifier
        ctrl = bool(mods & Qt.KeyboardModifier.ControlModifier)
        shift = bool(mods & Qt.KeyboardModifier.ShiftModifier)
        if ctrl and key == Qt.Key.Key_Z:
            self.redo() if shift else self.undo()
        elif ctrl and key == Qt.Key.Key_Y:
            self.redo()
        elif ctrl:
            super().keyPressEvent(event)
        elif Qt.Key.Key_1 <= key <= Qt.Key.Key_9:
            self.label_with_key(str(key - Qt.Key.Key_0))
        elif key in (Qt.Key.Key_Return, Qt.Key.Key_Enter):
            self.accept_suggestion()
        elif key == Qt.Key.Key_S:
            self.skip()
        elif key == Qt.Key.Key_U:
            self.mark_unsure()
        elif key in (Qt.Key.Key_Backspace, Qt.Key.Key_Left):
            self.go_back()
        elif key == Qt.Key.Key_F:
            self.canvas.fit()
        elif key == Qt.Key.Key_Z:
            self.canvas.actual_size()
        elif key in (Qt.Key.Key_Plus, Qt.Key.Key_Equal):
            self.canvas.zoom_by(1.25)
        elif key == Qt.Key.Key_Minus:
            self.canvas.zoom_by(0.8)
        elif key == Qt.Key.Key_C:
            self.auto_check.toggle()
        elif key in (Qt.Key.Key_F1, Qt.Key.Key_Question):
            self.show_keys()
        else:
            super().keyPressEvent(event)
            return
        event.accept()


def _strip_image(prepared: display.PreparedImage) -> QImage:
    """A small, auto-contrasted preview for the queue strip (worker thread)."""
    image = display.render(prepared, display.Tone())
    return image.scaled(THUMB_SIDE, THUMB_SIDE, Qt.AspectRatioMode.KeepAspectRatio,
                        Qt.TransformationMode.SmoothTransformation)


def _prepare_with_thumbnail(image_id: int, path, project_path) -> tuple[display.PreparedImage, QImage]:
    """Decode an image for the canvas and draw its strip preview, both off the UI thread (a
    full-size render to scale down would otherwise cost the UI thread tens of ms on large parts).
    ``path`` None: the session has not read it; it is read here (worker thread)."""
    prepared = display.prepare(image_id, path if path is not None else read_image_path(project_path, image_id))
    return prepared, _strip_image(prepared)


def _thumbnail(image_id: int, path, project_path) -> tuple[int, QImage]:
    """Only the strip preview of an image further down the queue (worker thread)."""
    path = path if path is not None else read_image_path(project_path, image_id)
    return image_id, _strip_image(display.prepare(image_id, path))
