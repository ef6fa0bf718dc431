"""The real main window, driven with the keyboard: a project from a folder, extraction, thirty
labels, undo/redo, accepting a suggestion, a retrain, reopening; and the error paths."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("pytestqt")

from PySide6.QtCore import QSettings, Qt  # noqa: E402
from PySide6.QtWidgets import QApplication, QMessageBox  # noqa: E402

from inspector.core import ingest  # noqa: E402
from inspector.core.store import Project, QueueEntry  # noqa: E402
from inspector.ui import display  # noqa: E402

N_IMAGES = 48


@pytest.fixture(autouse=True)
def _isolated(isolated_settings):  # tests/ui/conftest.py: own QSettings, files read in-process
    yield


@pytest.fixture
def part_folder(tmp_path) -> Path:
    """48 small parts: every third has a bright scratch (file name says which)."""
    rng = np.random.default_rng(0)
    root = tmp_path / "parts"
    root.mkdir()
    for i in range(N_IMAGES):
        image = rng.normal(110, 10, (64, 64)).clip(0, 255).astype(np.uint8)
        kind = "scratch" if i % 3 == 0 else "ok"
        if kind == "scratch":
            cv2.line(image, (5, 8 + i % 40), (58, 50), 240, 2)
        cv2.imwrite(str(root / f"{kind}_{i:03d}.png"), image)
    (root / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    return root


def _error_boxes() -> list[QMessageBox]:
    return [w for w in QApplication.topLevelWidgets() if isinstance(w, QMessageBox) and w.isVisible()]


def _open_folder(window, qtbot, folder: Path, tmp_path: Path):
    with qtbot.waitSignal(window.project_open_done, timeout=60_000) as done:
        window.new_project_from_folder(str(folder), str(tmp_path / "line3.inspector"))
    assert done.args[0]
    session, view = window.session, window.label_view
    qtbot.waitUntil(lambda: not session.extracting() and not session.loading_features()
                    and view.current is not None, timeout=30000)
    return session, view


def _add_classes_by_typing(view, qtbot, names):
    for name in names:
        view.new_class_edit.setText(name)
        qtbot.keyClick(view.new_class_edit, Qt.Key.Key_Return)


def _wait_shown(view, qtbot):
    qtbot.waitUntil(lambda: view.current is not None and view._prepared is not None
                    and view._prepared.image_id == view.current, timeout=10000)


def test_label_session_end_to_end(window, qtbot, part_folder, tmp_path, opened):
    session, view = _open_folder(window, qtbot, part_folder, tmp_path)
    project = session.project
    assert len(session.image_ids) == N_IMAGES
    # the broken file is listed with its reason, not a crash
    assert window.problems_list.count() == 1 and "broken.png" in window.problems_list.item(0).text()
    assert "line3" in window.windowTitle() and "saved" in window.windowTitle()
    # a new project has no classes: the view says so and offers the field
    assert view.no_class_hint.isVisibleTo(view)
    _add_classes_by_typing(view, qtbot, ["ok", "scratch"])
    assert [c.name for c in session.classes()] == ["ok", "scratch"]
    assert not view.no_class_hint.isVisibleTo(view)

    given: dict[int, int] = {}
    ok, scratch = (c.id for c in session.classes())
    for _ in range(30):
        _wait_shown(view, qtbot)
        image_id = view.current
        is_scratch = project.image(image_id).path.startswith("scratch")
        qtbot.keyClick(view, Qt.Key.Key_2 if is_scratch else Qt.Key.Key_1)
        # the next image appears only once the label is committed to the project file
        qtbot.waitUntil(lambda: view.current != image_id, timeout=5000)
        assert project.latest_labels()[image_id] == (scratch if is_scratch else ok)
        given[image_id] = scratch if is_scratch else ok
        if view.current is None:
            qtbot.waitUntil(lambda: view.current is not None, timeout=20000)
    assert len(given) == 30
    session.wait_for_labels()
    qtbot.waitUntil(lambda: "all labels saved" in window.windowTitle(), timeout=5000)
    # retraining happened in the background, every 10 labels by default
    qtbot.waitUntil(lambda: session.model_version is not None and session.n_labels_trained >= 20, timeout=30000)
    assert "Model v" in window.model_status.text()

    # undo: the last image is shown again and its label is cleared by a new event
    last = list(given)[-1]
    qtbot.keyClick(view, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert view.current == last
    session.wait_for_labels()
    assert last not in project.latest_labels()
    assert [e.kind for e in project.label_history(last)] == ["class", "cleared"]
    # redo puts it back (history kept: three events)
    qtbot.keyClick(view, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier)
    session.wait_for_labels()
    assert project.latest_labels()[last] == given[last]
    assert len(project.label_history(last)) == 3

    # accept the model's suggestion with Enter
    qtbot.waitUntil(lambda: not view.saving and view.current is not None
                    and session.suggestion(view.current) is not None, timeout=20000)
    target = view.current
    suggested = session.suggestion(target)[0]
    qtbot.keyClick(view, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: view.current != target, timeout=5000)
    event = project.label_history(target)[-1]
    assert (event.class_id, event.source) == (suggested, "suggestion")
    given[target] = suggested

    # skip, unsure and back
    qtbot.waitUntil(lambda: view.current is not None, timeout=20000)
    skipped = view.current
    qtbot.keyClick(view, Qt.Key.Key_S)
    qtbot.waitUntil(lambda: view.current != skipped, timeout=5000)
    assert project.label_history(skipped)[-1].kind == "skip"
    qtbot.waitUntil(lambda: view.current is not None, timeout=20000)
    qtbot.keyClick(view, Qt.Key.Key_Backspace)
    assert view.current == skipped

    # bulk-label in the gallery: select three unlabelled images, press the 'scratch' key
    from inspector.ui.gallery import GalleryFilter

    window.tabs.setCurrentIndex(1)
    gallery = window.tabs.widget(1).ensure_built()
    gallery.set_filter(GalleryFilter("unlabelled"))
    qtbot.waitUntil(lambda: gallery.model.rowCount() >= 3, timeout=5000)
    gallery.select_rows(range(3))
    chosen = gallery.selected_image_ids()
    assert len(chosen) == 3 and not set(chosen) & set(given)
    gallery.list.setFocus()
    qtbot.keyClick(gallery.list, "2")
    session.wait_for_labels()
    stored = project.latest_labels()
    assert all(stored.get(i) == scratch for i in chosen)
    given.update({i: scratch for i in chosen})
    window.tabs.setCurrentIndex(0)

    # reopen: every label is there
    path = project.path
    window.close_project()
    assert window.session is None
    assert opened(window.open_project, str(path))
    assert window.session.project.latest_labels() == given


def test_audit_pick_marks_the_label_event(window, qtbot, part_folder, tmp_path):
    session, view = _open_folder(window, qtbot, part_folder, tmp_path)
    project = session.project
    project.add_class("ok")
    session.notify_classes_changed()
    qtbot.waitUntil(lambda: not session.busy(), timeout=20000)
    audit_image = int(next(i for i in session.image_ids if i != view.current))
    project.replace_queue([QueueEntry(audit_image, 0, "uncertain_diverse", None, "audit: random pick", None, True)])
    with qtbot.waitSignal(session.queue_changed, timeout=5000):
        session.reload_queue()  # written behind the session's back: the views only know what it read
    view.open_image(audit_image)
    assert "Audit pick" in view.reason_label.text()
    qtbot.keyClick(view, Qt.Key.Key_1)
    session.wait_for_labels()
    assert project.label_history(audit_image)[-1].audit is True
    assert audit_image in project.audit_labels()


def test_keypad_digits_label_too(window, qtbot, part_folder, tmp_path):
    session, view = _open_folder(window, qtbot, part_folder, tmp_path)
    session.project.add_class("ok")
    session.project.add_class("scratch")
    session.notify_classes_changed()
    image_id = view.current
    qtbot.keyClick(view, Qt.Key.Key_2, Qt.KeyboardModifier.KeypadModifier)
    session.wait_for_labels()
    assert session.project.latest_labels()[image_id] == session.classes()[1].id


def test_unreadable_folder_is_a_message_not_a_crash(window, qtbot, tmp_path, opened):
    missing = tmp_path / "no such folder"
    assert not opened(window.new_project_from_folder, str(missing), str(tmp_path / "x.inspector"))
    boxes = _error_boxes()
    assert boxes and "not a folder" in boxes[-1].text() or "does not exist" in boxes[-1].text()
    assert window.session is None and window.stack.currentWidget() is window.start_page
    for box in boxes:
        box.close()


def test_project_files_are_created_and_opened_off_the_ui_thread(window, qtbot, part_folder, tmp_path, monkeypatch,
                                                               opened):
    """Creating, locking, checking and migrating the project file read and write the disk (seconds
    on a network share or a slow disk): a worker's job. The window stays responsive meanwhile."""
    import threading

    threads: list[str] = []
    real_create, real_open = Project.create.__func__, Project.open.__func__

    def spy_create(cls, *args, **kwargs):
        threads.append(threading.current_thread().name)
        return real_create(cls, *args, **kwargs)

    def spy_open(cls, *args, **kwargs):
        threads.append(threading.current_thread().name)
        return real_open(cls, *args, **kwargs)

    monkeypatch.setattr(Project, "create", classmethod(spy_create))
    path = tmp_path / "line3.inspector"
    assert opened(window.new_project_from_folder, str(part_folder), str(path))
    assert window.session is not None and window.session.project.path == path
    qtbot.waitUntil(lambda: not window.session.busy(), timeout=30000)
    window.close_project()
    monkeypatch.setattr(Project, "open", classmethod(spy_open))
    assert opened(window.open_project, str(path))
    assert window.session is not None
    main = threading.main_thread().name
    assert len(threads) >= 2 and main not in threads[:2], threads


def test_cancel_while_the_project_file_opens_leaves_the_start_page(window, qtbot, part_folder, tmp_path):
    path = tmp_path / "line3.inspector"
    Project.create(path, part_folder).close()
    with qtbot.waitSignal(window.project_open_done, timeout=60_000) as done:
        window.open_project(str(path))
        window._opening.cancel()  # what the status bar's Cancel button does
    assert done.args == [False]
    assert window.session is None and window.stack.currentWidget() is window.start_page
    with Project.open(path) as again:  # closed, not left locked
        assert again.path == path


def test_a_recent_project_whose_file_is_gone_leaves_the_list(window, part_folder, tmp_path, opened):
    from inspector.ui.start_page import recent_projects, remember_project

    gone = tmp_path / "moved away.inspector"
    Project.create(gone, part_folder).close()
    remember_project(gone)
    gone.unlink()
    assert str(gone.resolve()) in recent_projects()
    assert not opened(window.open_project, str(gone))
    assert _error_boxes()[-1].text() == f"no project at {gone}"
    assert str(gone.resolve()) not in recent_projects()
    assert window.session is None
    for box in _error_boxes():
        box.close()


def test_project_from_a_newer_version_is_refused_clearly(window, qtbot, part_folder, tmp_path, opened):
    path = tmp_path / "future.inspector"
    Project.create(path, part_folder).close()
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA user_version = 999")
    assert not opened(window.open_project, str(path))
    text = _error_boxes()[-1].text()
    assert "newer version" in text and "\n" not in text.strip()
    assert window.session is None
    # the app stays usable: a good project still opens
    good = tmp_path / "good.inspector"
    Project.create(good, part_folder).close()
    assert opened(window.open_project, str(good))
    for box in _error_boxes():
        box.close()


def test_project_open_elsewhere_is_refused(window, part_folder, tmp_path, opened):
    path = tmp_path / "busy.inspector"
    other = Project.create(path, part_folder)
    try:
        assert not opened(window.open_project, str(path))
        assert "already open" in _error_boxes()[-1].text()
    finally:
        other.close()
    for box in _error_boxes():
        box.close()


def test_not_a_project_file(window, tmp_path, opened):
    fake = tmp_path / "notes.inspector"
    fake.write_text("hello")
    assert not opened(window.open_project, str(fake))
    assert "not an Inspector project" in _error_boxes()[-1].text()
    for box in _error_boxes():
        box.close()


def test_sixteen_bit_dark_image_is_visible_and_readout_keeps_raw_values(tmp_path):
    dark = np.full((40, 50), 300, np.uint16)  # 12-bit camera, very dark part
    dark[10:20, 10:30] = 900
    path = tmp_path / "dark16.png"
    cv2.imwrite(str(path), dark)
    prepared = display.prepare(1, path)
    assert prepared.n_levels == 65536 and prepared.bit_depth == 16
    shown = display.render(prepared, display.Tone(auto=True))
    values = np.frombuffer(shown.constBits(), np.uint8).reshape(shown.height(), shown.bytesPerLine())[:, :50]
    assert values.max() == 255 and values.min() == 0  # stretched to full range
    flat = display.render(prepared, display.Tone(auto=False))
    flat_values = np.frombuffer(flat.constBits(), np.uint8).reshape(flat.height(), flat.bytesPerLine())[:, :50]
    assert flat_values.max() < 5  # without auto-contrast it would be black: the reason for the toggle
    assert display.pixel_text(prepared, 12, 12).endswith(": 900")


def test_classes_dialog_merge_and_delete(window, qtbot, part_folder, tmp_path):
    from inspector.ui.dialogs import ClassesDialog

    session, view = _open_folder(window, qtbot, part_folder, tmp_path)
    project = session.project
    a, b, c = (project.add_class(n) for n in ("ok", "scratch", "scuff"))
    session.notify_classes_changed()
    ids = [int(i) for i in session.image_ids[:3]]
    session.label_images(ids[:2], c)
    dialog = ClassesDialog(session, window)
    qtbot.addWidget(dialog)
    dialog.list.setCurrentRow(2)
    dialog.merge(target_id=b, confirm=False)
    assert [x.name for x in session.classes()] == ["ok", "scratch"]
    assert all(project.latest_labels()[i] == b for i in ids[:2])
    assert len(view.class_buttons) == 2  # the labelling view followed
    dialog.list.setCurrentRow(0)
    dialog.move(1)  # keys follow the order
    assert [(x.name, x.key) for x in project.classes()] == [("scratch", "1"), ("ok", "2")]
    dialog.list.setCurrentRow(0)
    dialog.delete(confirm=False)
    assert ids[0] not in project.latest_labels()


def test_gui_command_is_registered():
    from inspector.cli import build_parser

    args = build_parser().parse_args(["gui", "some.inspector", "--demo"])
    assert args.project == "some.inspector" and args.demo is True


def test_next_image_appears_only_after_the_label_is_durable(window, qtbot, part_folder, tmp_path):
    session, view = _open_folder(window, qtbot, part_folder, tmp_path)
    session.project.add_class("ok")
    session.notify_classes_changed()
    image_id = view.current
    shown_while_pending = []
    # every time the view changes image, the label given before must already be in the file
    reader = session.project.worker_connection()
    original_show = view._show

    def checking_show(next_id, entry):
        shown_while_pending.append(image_id not in reader.latest_labels())
        original_show(next_id, entry)

    view._show = checking_show
    qtbot.keyClick(view, Qt.Key.Key_1)  # returns at once: the UI thread does not wait for the disk
    assert session.latest_labels()[image_id] == session.classes()[0].id
    qtbot.waitUntil(lambda: view.current != image_id, timeout=5000)
    assert shown_while_pending == [False]
    assert session.pending_labels() == 0
    assert reader.latest_labels()[image_id] == session.classes()[0].id
    reader.close()
    view._show = original_show
    qtbot.waitUntil(lambda: "all labels saved" in window.windowTitle(), timeout=5000)
    # a label the project refuses (its class is gone) is reported, and the views reload the truth
    other = int(next(i for i in session.image_ids if int(i) != image_id))
    with qtbot.waitSignal(session.label_failed, timeout=5000) as blocker:
        session.label(other, 987654)
    assert "not saved" in blocker.args[0]
    assert other not in session.latest_labels()
    assert session.pending_labels() == 0
    assert window.findChild(QMessageBox, "errorDialog") is not None


def test_dashboard_files_a_report_and_exports_the_model(window, qtbot, part_folder, tmp_path, monkeypatch):
    session, view = _open_folder(window, qtbot, part_folder, tmp_path)
    project = session.project
    ok, scratch = project.add_class("ok"), project.add_class("scratch")
    session.notify_classes_changed()
    paths = project.image_paths()
    session.label_images([i for i, p in paths.items() if p.startswith("ok")], ok)
    session.label_images([i for i, p in paths.items() if p.startswith("scratch")], scratch)
    session.wait_for_labels()
    window.tabs.setCurrentIndex(2)
    dashboard = window.tabs.widget(2).ensure_built()
    from PySide6.QtWidgets import QFileDialog

    for button, name in ((dashboard.export_report_button, "line3.html"),
                         (dashboard.export_model_button, "line3.inspector-model")):
        target = tmp_path / name
        monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, t=target, **k: (str(t), ""))
        qtbot.mouseClick(button, Qt.MouseButton.LeftButton)
        qtbot.waitUntil(lambda t=target: t.exists() and t.stat().st_size > 0, timeout=30000)
        qtbot.waitUntil(lambda: not window.job.isVisible(), timeout=30000)
    assert "<html" in (tmp_path / "line3.html").read_text(encoding="utf-8").lower()
    from inspector.core.modelfile import load_model

    model = load_model(tmp_path / "line3.inspector-model")
    assert sorted(model.class_names) == ["ok", "scratch"]


def test_moved_image_folder_is_located_when_the_project_opens(window, qtbot, part_folder, tmp_path, monkeypatch, opened):
    session, view = _open_folder(window, qtbot, part_folder, tmp_path)
    project_path = session.project.path
    session.project.add_class("ok")
    session.notify_classes_changed()
    labelled = view.current
    qtbot.keyClick(view, Qt.Key.Key_1)
    qtbot.waitUntil(lambda: view.current != labelled, timeout=5000)
    window.close_project()
    moved = tmp_path / "archive" / "parts-moved"
    moved.parent.mkdir()
    part_folder.rename(moved)
    from PySide6.QtWidgets import QFileDialog

    asked = []
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: asked.append(a[2]) or QMessageBox.StandardButton.Yes)
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *a, **k: str(moved))
    assert opened(window.open_project, str(project_path))
    assert asked and "not at" in asked[0]
    session = window.session
    assert session.project.image_root == moved.resolve()
    qtbot.waitUntil(lambda: not session.extracting() and window.label_view.current is not None, timeout=30000)
    assert session.project.counts()["missing"] == 0
    assert session.project.latest_labels()[labelled] == session.classes()[0].id


def test_labelling_never_reads_the_store_on_the_ui_thread(window, qtbot, part_folder, tmp_path):
    """Keys, Back, undo/redo and opening an image from the strip: the view and the session answer
    from what workers read (queue, paths, labels); the store is only read by worker threads."""
    import threading

    session, view = _open_folder(window, qtbot, part_folder, tmp_path)
    session.add_class("ok")
    session.add_class("scratch")
    qtbot.waitUntil(lambda: not session.busy(), timeout=20000)
    project = session.project
    read_on_ui_thread = []
    for name in ("queue", "queue_entry", "image", "image_path", "image_paths", "label_history",
                 "latest_labels", "latest_label_events", "feature_matrix", "audit_labels", "get_setting"):
        original = getattr(project, name)

        def spy(*args, _name=name, _original=original, **kwargs):
            if threading.current_thread() is threading.main_thread():
                read_on_ui_thread.append(_name)
            return _original(*args, **kwargs)

        setattr(project, name, spy)
    try:
        for key in (Qt.Key.Key_1, Qt.Key.Key_2, Qt.Key.Key_S):
            before = view.current
            qtbot.keyClick(view, key)
            qtbot.waitUntil(lambda: view.current != before and not view.saving, timeout=10000)
        qtbot.keyClick(view, Qt.Key.Key_Backspace)
        qtbot.keyClick(view, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
        qtbot.keyClick(view, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier)
        qtbot.waitUntil(lambda: not view.saving, timeout=10000)
        if view.strip.wanted():
            view.open_image(view.strip.wanted()[0])
        session.wait_for_labels()
        qtbot.waitUntil(lambda: not session.busy(), timeout=30000)
        assert view.current is not None
    finally:
        for name in list(vars(project)):
            if callable(vars(project)[name]) and getattr(vars(project)[name], "__name__", "") == "spy":
                delattr(project, name)
    assert read_on_ui_thread == []
    assert len(project.latest_labels()) >= 2  # the labels were really given
