"""Gallery: counts per filter, bulk labelling (durable), find similar, open on double-click,
thumbnails decoded off the UI thread."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pytestqt")

from PySide6.QtCore import Qt  # noqa: E402

from inspector.core.ingest import analyse_pending, scan_folder  # noqa: E402
from inspector.core.store import Project  # noqa: E402
from inspector.ui import gallery as gallery_module  # noqa: E402
from inspector.workflow import gallery_data  # noqa: E402
from inspector.core.learning.review import nearest_rows, suspected_label_errors  # noqa: E402
from inspector.ui.gallery import GalleryFilter, GalleryView  # noqa: E402
from inspector.ui.session import ProjectSession  # noqa: E402

N_LABELLED_OK = 5
N_LABELLED_SCRATCH = 5


def _build(folder: Path, tmp_path: Path):
    """A real project over 40 drawn images; synthetic features with one planted near-duplicate
    and synthetic probabilities with two planted label errors."""
    project = Project.create(tmp_path / "gallery.inspector", folder)
    scan_folder(project)
    analyse_pending(project, workers=1)
    project.set_setting("app.retrain_every", 10_000)  # no background retrain during the test
    ok = project.add_class("ok")
    scratch = project.add_class("scratch")
    session = ProjectSession(project)
    ids = project.image_ids()
    rng = np.random.default_rng(1)
    features = rng.normal(0, 1, (len(ids), 16)).astype(np.float32)
    features[7] = features[3] + rng.normal(0, 0.01, 16).astype(np.float32)  # near-duplicate of row 3
    project.save_features(ids, features, *session.extractor)
    session.image_ids, session.features = project.feature_matrix(*session.extractor)
    assert np.array_equal(session.image_ids, ids)
    # labels: rows 10-14 ok, rows 15-19 scratch
    project.add_labels_bulk([(int(i), ok) for i in ids[10:15]] + [(int(i), scratch) for i in ids[15:20]])
    # probabilities: scratch for rows divisible by 4, ok otherwise; rows 10 and 11 are labelled ok
    # but the model is sure they are scratches (suspected label errors, row 11 the worse)
    p_scratch = np.where(np.arange(len(ids)) % 4 == 0, 0.8, 0.2)
    p_scratch[10:15], p_scratch[15:20] = 0.1, 0.9  # the model agrees with the other labels
    p_scratch[21] = 0.49  # the most uncertain unlabelled image
    p_scratch[10], p_scratch[11] = 0.8, 0.95
    session.probabilities = np.stack([1 - p_scratch, p_scratch], axis=1).astype(np.float32)
    session.class_ids = np.array([ok, scratch], np.int64)
    return project, session, ids, ok, scratch


@pytest.fixture
def gallery(qtbot, small_image_folder, tmp_path):
    project, session, ids, ok, scratch = _build(small_image_folder, tmp_path)
    view = GalleryView(session, disk_cache=False)
    qtbot.addWidget(view)
    view.resize(900, 600)
    view.show()
    qtbot.waitExposed(view)
    yield view, session, ids, ok, scratch
    view.loader.shutdown()
    session.closed = True
    project.close()


def test_counts_per_filter(gallery):
    view, session, ids, ok, scratch = gallery
    n = len(ids)
    expected = {
        GalleryFilter("all"): n,
        GalleryFilter("unlabelled"): n - 10,
        GalleryFilter("label", ok): N_LABELLED_OK,
        GalleryFilter("label", scratch): N_LABELLED_SCRATCH,
        GalleryFilter("prediction", scratch): int(np.sum(session.probabilities[:, 1] > 0.5)),
        GalleryFilter("margin"): n - 10,
        GalleryFilter("suspected"): 2,
    }
    for spec, count in expected.items():
        view.set_filter(spec)
        assert view.model.rowCount() == count, spec
        assert view.count_label.text().startswith(f"{count:,} of {n:,} images"), spec
    view.set_filter(GalleryFilter("suspected"))
    assert [view.model.image_id_at(r) for r in range(2)] == [int(ids[11]), int(ids[10])]
    view.set_filter(GalleryFilter("margin"))
    assert view.model.image_id_at(0) == int(ids[21])


def test_uncertainty_sorts_of_a_large_project_run_in_a_worker(gallery, qtbot, monkeypatch):
    view, session, ids, ok, scratch = gallery
    monkeypatch.setattr(gallery_module, "SORT_IN_WORKER_ABOVE", 0)
    view.set_filter(GalleryFilter("margin"))
    assert view.sorting and view.count_label.text().startswith("Sorting")
    # a newer filter wins over a sort still running
    view.set_filter(GalleryFilter("suspected"))
    qtbot.waitUntil(lambda: not view.sorting, timeout=5000)
    qtbot.wait(100)
    assert [view.model.image_id_at(r) for r in range(2)] == [int(ids[11]), int(ids[10])]
    view.set_filter(GalleryFilter("margin"))
    qtbot.waitUntil(lambda: not view.sorting, timeout=5000)
    assert view.model.rowCount() == len(ids) - 10 and view.model.image_id_at(0) == int(ids[21])


def test_prediction_filters_without_a_model_are_empty_and_say_why(gallery):
    view, session, ids, ok, scratch = gallery
    session.probabilities = None
    session.model_updated.emit(0)
    view.set_filter(GalleryFilter("suspected"))
    assert view.model.rowCount() == 0
    assert "no model yet" in view.count_label.text()


def test_bulk_label_five_selected_is_durable(gallery, qtbot, tmp_path):
    view, session, ids, ok, scratch = gallery
    view.set_filter(GalleryFilter("unlabelled"))
    view.select_rows(range(5))
    chosen = view.selected_image_ids()
    assert len(chosen) == 5
    button = next(b for b in view._label_buttons if "scratch" in b.text())
    with qtbot.waitSignal(session.labels_changed, timeout=2000):
        qtbot.mouseClick(button, Qt.MouseButton.LeftButton)
    # another connection sees the labels: they are in the file, not only in memory
    session.wait_for_labels()
    reader = Project.open(session.project.path, read_only=True)
    try:
        stored = reader.latest_labels()
    finally:
        reader.close()
    assert all(stored.get(i) == scratch for i in chosen)
    assert view.model.rowCount() == len(ids) - 15
    assert view.count_label.text().startswith(f"{len(ids) - 15:,} of")


def test_many_images_need_confirmation(gallery, monkeypatch):
    view, session, ids, ok, scratch = gallery
    view.set_filter(GalleryFilter("unlabelled"))
    rows = range(gallery_module.BULK_CONFIRM_ABOVE + 1)
    view.select_rows(rows)
    asked = []
    monkeypatch.setattr(view, "confirm_bulk_label", lambda n, name: asked.append((n, name)) or False)
    assert view.label_selected(ok) == 0
    assert asked == [(len(rows), "ok")]
    assert len(session.project.latest_labels()) == 10
    monkeypatch.setattr(view, "confirm_bulk_label", lambda n, name: True)
    assert view.label_selected(ok) == len(rows)
    session.wait_for_labels()
    assert len(session.project.latest_labels()) == 10 + len(rows)


def test_class_key_labels_the_selection(gallery, qtbot):
    view, session, ids, ok, scratch = gallery
    view.set_filter(GalleryFilter("unlabelled"))
    view.select_rows([0, 1])
    chosen = view.selected_image_ids()
    view.list.setFocus()
    qtbot.keyClick(view.list, "2")
    session.wait_for_labels()
    labels = session.project.latest_labels()
    assert [labels.get(i) for i in chosen] == [scratch, scratch]


def test_find_similar_shows_planted_near_duplicate_first(gallery, qtbot):
    view, session, ids, ok, scratch = gallery
    with qtbot.waitSignal(view.shown_changed, timeout=5000):
        view.find_similar(int(ids[3]))
    assert view.filter.kind == "similar"
    assert view.model.image_id_at(0) == int(ids[7])
    assert view.model.rowCount() == min(gallery_data.SIMILAR_COUNT, len(ids) - 1)
    assert int(ids[3]) not in [view.model.image_id_at(r) for r in range(view.model.rowCount())]
    assert view.filter_box.currentText() == f"Similar to image {int(ids[3])}"


def test_nearest_rows_cosine_and_euclidean_agree_on_a_duplicate():
    rng = np.random.default_rng(5)
    X = rng.normal(0, 1, (500, 8)).astype(np.float32)
    X[123] = X[42] * 1.0001
    for metric in ("cosine", "euclidean"):
        rows, _ = nearest_rows(X, 42, k=5, metric=metric, chunk=64)
        assert rows[0] == 123 and 42 not in rows
    with pytest.raises(ValueError):
        nearest_rows(X, 42, metric="manhattan")


def test_suspected_label_errors_ignores_unseen_classes():
    labels = np.array([0, 7, 1, -1])
    proba = np.array([[0.1, 0.9], [0.1, 0.9], [0.6, 0.4], [0.0, 1.0]])
    rows, disagreement = suspected_label_errors(labels, proba, np.array([0, 1]))
    assert rows.tolist() == [0]
    assert disagreement[0] == pytest.approx(0.8)


def test_double_click_requests_open(gallery, qtbot):
    view, session, ids, ok, scratch = gallery
    view.set_filter(GalleryFilter("label", scratch))
    index = view.model.index(2)
    qtbot.waitUntil(lambda: view.list.visualRect(index).isValid(), timeout=2000)  # layout is batched
    rect = view.list.visualRect(index)
    # a real double-click starts with a press (QTest's double-click event alone does not)
    qtbot.mouseClick(view.list.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    with qtbot.waitSignal(session.open_image_requested, timeout=2000) as blocker:
        qtbot.mouseDClick(view.list.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    assert blocker.args == [view.model.image_id_at(2)]


def test_thumbnails_arrive_from_workers_and_unreadable_file_says_why(gallery, qtbot):
    view, session, ids, ok, scratch = gallery
    first = int(ids[0])
    broken = int(ids[1])
    (session.project.image_root / session.project.image(broken).path).unlink()
    view.loader.forget()  # the grid may already have shown it before the file was deleted
    view.loader.thumbnail(first)
    view.loader.thumbnail(broken)
    qtbot.waitUntil(lambda: view.loader.thumbnail(first) is not None and view.loader.failure(broken) is not None,
                    timeout=5000)
    image = view.loader.thumbnail(first)
    assert max(image.width(), image.height()) <= view.loader.side
    assert "not found" in view.loader.failure(broken)


def test_label_refresh_keeps_scroll_position(gallery, qtbot):
    view, session, ids, ok, scratch = gallery
    view.resize(420, 300)
    qtbot.waitUntil(lambda: view.list.verticalScrollBar().maximum() > 0, timeout=3000)
    bar = view.list.verticalScrollBar()
    bar.setValue(bar.maximum())
    before = bar.value()
    session.label_images([int(ids[30])], ok)
    qtbot.wait(50)
    assert bar.value() == before
    assert view.model.labels[30] == ok


def test_thumbnails_read_the_store_only_in_worker_threads(gallery, qtbot, monkeypatch):
    """A thumbnail's file and hash are looked up by the decoding worker, never on the UI thread;
    an image that left the project says so."""
    import threading

    view, session, ids, ok, scratch = gallery
    project = session.project
    read_on_ui_thread = []
    original = project.image

    def spy(image_id):
        if threading.current_thread() is threading.main_thread():
            read_on_ui_thread.append(image_id)
        return original(image_id)

    monkeypatch.setattr(project, "image", spy)
    view.loader.forget()
    wanted = [int(i) for i in ids[:6]] + [10**9]  # the last is in no project
    for image_id in wanted:
        view.loader.thumbnail(image_id)
    qtbot.waitUntil(lambda: all(view.loader.thumbnail(i) is not None for i in wanted[:-1])
                    and view.loader.failure(wanted[-1]) is not None, timeout=10000)
    assert read_on_ui_thread == []
    assert view.loader.failure(wanted[-1]).startswith("not in the project")
