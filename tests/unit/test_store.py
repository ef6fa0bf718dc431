"""The project store: one SQLite file that owns classes, label events, features, models, queue."""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

import numpy as np
import pytest

from inspector.core.errors import ProjectError
from inspector.core.store import ImageAnalysis, Project, QueueEntry

EXTRACTOR = ("synthetic", 3)


def add_images(project: Project, n: int, dim: int = 8, seed: int = 0) -> np.ndarray:
    """Record ``n`` usable images with synthetic hashes and features; returns their ids."""
    project.record_scan([(f"img_{i:04d}.png", 100 + i, 1_000 + i) for i in range(n)], [], [], [])
    ids = sorted(project.scan_state()[f"img_{i:04d}.png"][0] for i in range(n))
    rng = np.random.default_rng(seed)
    project.save_analyses(
        [ImageAnalysis(i, f"hash{i}", 16, 16, 8, 1, features=rng.normal(size=dim).astype(np.float32)) for i in ids],
        *EXTRACTOR,
    )
    return np.asarray(ids, np.int64)


@pytest.fixture
def image_root(tmp_path: Path) -> Path:
    root = tmp_path / "images"
    root.mkdir()
    return root


@pytest.fixture
def project(tmp_path: Path, image_root: Path):
    with Project.create(tmp_path / "p.inspector", image_root) as p:
        yield p


# ---------------------------------------------------------------- create / open
def test_create_then_reopen_keeps_root_and_name(tmp_path, image_root):
    path = tmp_path / "line3.inspector"
    Project.create(path, image_root).close()
    with Project.open(path) as p:
        assert p.image_root == image_root.resolve()
        assert p.name == "line3"
        assert p.integrity_check() == "ok"


def test_create_refuses_existing_file_and_leaves_it_alone(tmp_path, image_root):
    path = tmp_path / "p.inspector"
    path.write_bytes(b"precious")
    with pytest.raises(ProjectError, match="already exists"):
        Project.create(path, image_root)
    assert path.read_bytes() == b"precious"


def test_create_refuses_missing_image_folder(tmp_path):
    with pytest.raises(ProjectError, match="does not exist"):
        Project.create(tmp_path / "p.inspector", tmp_path / "nowhere")
    assert not (tmp_path / "p.inspector").exists()


def test_open_missing_file_and_folder(tmp_path):
    with pytest.raises(ProjectError, match="no project"):
        Project.open(tmp_path / "nothing.inspector")
    with pytest.raises(ProjectError, match="folder"):
        Project.open(tmp_path)


def test_second_open_while_first_is_open_is_refused(tmp_path, image_root):
    path = tmp_path / "p.inspector"
    first = Project.create(path, image_root)
    try:
        with pytest.raises(ProjectError, match="already open"):
            Project.open(path)
        # read-only viewers (e.g. `inspector info`) are allowed alongside
        with Project.open(path, read_only=True) as viewer:
            assert viewer.classes() == []
    finally:
        first.close()
    Project.open(path).close()  # the lock is released by close


def test_read_only_open_of_read_only_file_reads_and_refuses_writes(tmp_path, image_root):
    path = tmp_path / "p.inspector"
    with Project.create(path, image_root) as p:
        ids = add_images(p, 3)
        cls = p.add_class("ok")
        p.add_label(int(ids[0]), cls)
    os.chmod(path, stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
    before = path.read_bytes()
    try:
        with Project.open(path, read_only=True) as p:
            assert p.latest_labels() == {int(ids[0]): cls}
            with pytest.raises(ProjectError, match="read-only"):
                p.add_label(int(ids[1]), cls)
            with pytest.raises(ProjectError, match="read-only"):
                p.add_class("scratch")
        assert path.read_bytes() == before
    finally:
        os.chmod(path, 0o644)


# ---------------------------------------------------------------- classes
def test_add_class_assigns_keys_colours_and_refuses_duplicates(project):
    ids = [project.add_class(f"c{i}") for i in range(11)]
    classes = project.classes()
    assert [c.id for c in classes] == ids
    assert [c.key for c in classes] == [str(i) for i in range(1, 10)] + ["", ""]
    assert all(c.color.startswith("#") and len(c.color) == 7 for c in classes)
    with pytest.raises(ProjectError, match="already exists"):
        project.add_class("C3")  # case-insensitive
    with pytest.raises(ProjectError, match="needs a name"):
        project.add_class("   ")
    with pytest.raises(ProjectError, match="#rrggbb"):
        project.add_class("new", color="red")


def test_rename_recolor_reorder_keys_follow(project):
    ok, scratch, crack = (project.add_class(n) for n in ("ok", "scratch", "crack"))
    project.rename_class(scratch, "long scratch")
    project.recolor_class(crack, "#ABCDEF")
    project.reorder_classes([crack, ok, scratch])
    classes = project.classes()
    assert [(c.name, c.key) for c in classes] == [("crack", "1"), ("ok", "2"), ("long scratch", "3")]
    assert classes[0].color == "#abcdef"
    with pytest.raises(ProjectError, match="already exists"):
        project.rename_class(ok, "Crack")
    with pytest.raises(ProjectError, match="every class"):
        project.reorder_classes([crack, ok])
    assert [c.id for c in project.classes()] == [crack, ok, scratch]


def test_merge_moves_latest_labels_and_keeps_history(project):
    ids = add_images(project, 4)
    ok, scratch, crack = (project.add_class(n) for n in ("ok", "scratch", "crack"))
    project.add_label(int(ids[0]), scratch)
    project.add_label(int(ids[1]), scratch, audit=True)
    project.add_label(int(ids[2]), crack)
    project.add_label(int(ids[3]), scratch)
    project.add_label(int(ids[3]), ok)  # latest is ok: must not move
    moved = project.merge_classes(scratch, crack)
    assert moved == 2
    assert project.latest_labels() == {int(ids[0]): crack, int(ids[1]): crack, int(ids[2]): crack, int(ids[3]): ok}
    assert [c.name for c in project.classes()] == ["ok", "crack"]
    assert [c.key for c in project.classes()] == ["1", "2"]
    history = project.label_history(int(ids[0]))
    assert [(e.class_id, e.source) for e in history] == [(scratch, "human"), (crack, "merge")]
    assert project.audit_labels() == {int(ids[1]): crack}  # the audit flag survives the merge
    with pytest.raises(ProjectError, match="itself"):
        project.merge_classes(ok, ok)
    # the removed name is free again
    project.add_class("scratch")


def test_delete_class_clears_its_labels(project):
    ids = add_images(project, 3)
    ok, scratch = project.add_class("ok"), project.add_class("scratch")
    project.add_label(int(ids[0]), scratch)
    project.add_label(int(ids[1]), ok)
    assert project.delete_class(scratch) == 1
    assert project.latest_labels() == {int(ids[1]): ok}
    assert project.latest_label_events()[int(ids[0])].kind == "cleared"
    with pytest.raises(ProjectError, match="no class"):
        project.add_label(int(ids[2]), scratch)


# ---------------------------------------------------------------- labels
def test_label_history_latest_wins_and_kinds(project):
    ids = add_images(project, 3)
    ok, scratch = project.add_class("ok"), project.add_class("scratch")
    first = project.add_label(int(ids[0]), ok, annotator="ann")
    second = project.add_label(int(ids[0]), scratch, annotator="bob")
    assert second > first
    project.add_label(int(ids[1]), kind="unsure")
    project.add_label(int(ids[2]), ok)
    project.add_label(int(ids[2]), kind="skip")
    assert project.latest_labels() == {int(ids[0]): scratch}
    events = project.latest_label_events()
    assert {i: e.kind for i, e in events.items()} == {int(ids[0]): "class", int(ids[1]): "unsure", int(ids[2]): "skip"}
    history = project.label_history(int(ids[0]))
    assert [(e.class_id, e.annotator) for e in history] == [(ok, "ann"), (scratch, "bob")]
    assert project.label_event_count() == 5


def test_label_is_visible_to_another_connection_immediately(tmp_path, image_root):
    path = tmp_path / "p.inspector"
    with Project.create(path, image_root) as p:
        ids = add_images(p, 2)
        ok = p.add_class("ok")
        p.add_label(int(ids[1]), ok)
        # a second (read-only) connection sees the committed label before close
        with Project.open(path, read_only=True) as other:
            assert other.latest_labels() == {int(ids[1]): ok}


def test_label_errors_are_clear(project):
    ids = add_images(project, 1)
    ok = project.add_class("ok")
    with pytest.raises(ProjectError, match="no image"):
        project.add_label(9999, ok)
    with pytest.raises(ProjectError, match="needs a class"):
        project.add_label(int(ids[0]))
    with pytest.raises(ProjectError, match="must not have one"):
        project.add_label(int(ids[0]), ok, kind="skip")
    with pytest.raises(ProjectError, match="unknown label kind"):
        project.add_label(int(ids[0]), ok, kind="maybe")
    assert project.label_event_count() == 0


def test_audit_flag(project):
    ids = add_images(project, 3)
    ok, bad = project.add_class("ok"), project.add_class("bad")
    project.add_label(int(ids[0]), ok, audit=True)
    project.add_label(int(ids[1]), bad, audit=False)
    project.add_label(int(ids[2]), bad, audit=True)
    project.add_label(int(ids[2]), kind="cleared")
    assert project.audit_labels() == {int(ids[0]): ok}
    assert project.label_history(int(ids[0]))[0].audit is True


def test_bulk_labels_one_transaction(project):
    ids = add_images(project, 50)
    ok, bad = project.add_class("ok"), project.add_class("bad")
    project.replace_queue([QueueEntry(int(i), 0, "s", 0.5, "r", None) for i in ids[:10]])
    count = project.add_labels_bulk([(int(i), ok if k % 2 else bad) for k, i in enumerate(ids)], annotator="imp",
                                    source="imported")
    assert count == 50
    latest = project.latest_labels()
    assert len(latest) == 50 and latest[int(ids[1])] == ok and latest[int(ids[0])] == bad
    assert project.queue() == []  # labelled images leave the queue
    assert project.label_history(int(ids[3]))[0].source == "imported"
    with pytest.raises(ProjectError, match="unknown label source"):
        project.add_labels_bulk([(int(ids[0]), ok)], source="telepathy")


# ---------------------------------------------------------------- queue
def test_replace_queue_excludes_labelled_and_duplicates(project):
    ids = [int(i) for i in add_images(project, 6)]
    ok = project.add_class("ok")
    project.add_label(ids[1], ok)
    project.add_label(ids[2], kind="skip")
    project.add_label(ids[3], ok)
    project.add_label(ids[3], kind="cleared")  # cleared again: may be queued
    entries = [QueueEntry(i, p, "margin", 0.1 * p, f"why {i}", 7, audit=(i == ids[4]))
               for p, i in enumerate([ids[0], ids[1], ids[2], ids[3], ids[0], ids[4]])]
    project.replace_queue(entries)
    queue = project.queue()
    assert [e.image_id for e in queue] == [ids[0], ids[3], ids[4]]
    assert [e.position for e in queue] == [0, 1, 2]
    assert queue[0].reason == f"why {ids[0]}" and queue[0].model_version == 7
    assert queue[2].audit is True and queue[0].audit is False
    project.add_label(ids[0], ok)
    assert [e.image_id for e in project.queue()] == [ids[3], ids[4]]
    project.remove_from_queue(ids[3])
    assert project.queue_entry(ids[3]) is None
    assert project.queue_entry(ids[4]).strategy == "margin"


# ---------------------------------------------------------------- settings, models, features
def test_settings_json_round_trip(project):
    value = {"a": [1, 2.5, None], "b": "ünïcode", "c": True}
    project.set_setting("learner.x", value)
    project.set_setting("learner.n", 20)
    project.set_setting("learner.n", 30)
    assert project.get_setting("learner.x") == value
    assert project.get_setting("learner.n") == 30
    assert project.get_setting("absent", "dflt") == "dflt"
    assert project.settings() == {"learner.x": value, "learner.n": 30}


def test_model_versions(project):
    v1 = project.add_model_version("logistic", {"C": 1.0}, 10, {"acc": 0.5})
    v2 = project.add_model_version("svm", {}, 20, {"acc": 0.7})
    assert v2 == v1 + 1
    versions = project.model_versions()
    assert [(m.version, m.kind, m.n_labels, m.metrics) for m in versions] == [
        (v1, "logistic", 10, {"acc": 0.5}), (v2, "svm", 20, {"acc": 0.7})]
    assert versions[0].settings == {"C": 1.0}
    assert project.latest_model_version().version == v2


def test_feature_save_load_round_trip(project):
    ids = add_images(project, 20, dim=8)
    rng = np.random.default_rng(5)
    matrix = rng.normal(size=(20, 16)).astype(np.float32)
    project.save_features(ids[::-1], matrix[::-1], "other", 2)
    got_ids, got = project.feature_matrix("other", 2)
    assert got.dtype == np.float32 and got_ids.dtype == np.int64
    np.testing.assert_array_equal(got_ids, ids)
    np.testing.assert_array_equal(got, matrix)
    # another extractor's vectors are kept apart
    assert project.feature_matrix(*EXTRACTOR)[1].shape == (20, 8)
    assert project.feature_count("other", 2) == 20
    assert project.images_missing_features("other", 2) == []
    assert len(project.images_missing_features("other", 3)) == 20
    empty_ids, empty = project.feature_matrix("nothing", 1)
    assert len(empty_ids) == 0 and empty.dtype == np.float32


def test_changed_file_features_no_longer_current(project):
    ids = add_images(project, 3)
    project.record_scan([], [(int(ids[1]), 999, 999)], [], [])
    got_ids, _ = project.feature_matrix(*EXTRACTOR)
    assert got_ids.tolist() == [int(ids[0]), int(ids[2])]
    assert project.images_missing_features(*EXTRACTOR) == [int(ids[1])]


# ---------------------------------------------------------------- moved folders
def test_set_image_root_after_moving_the_folder(tmp_path, image_root):
    path = tmp_path / "p.inspector"
    (image_root / "a.png").write_bytes(b"x")
    Project.create(path, image_root).close()
    moved = tmp_path / "elsewhere" / "imgs"
    moved.parent.mkdir()
    shutil.move(str(image_root), str(moved))
    with Project.open(path) as p:
        assert not p.image_root_found()
        with pytest.raises(ProjectError, match="not a folder"):
            p.set_image_root(tmp_path / "nope")
        p.set_image_root(moved)
        assert p.image_root == moved.resolve()
    with Project.open(path) as p:
        assert p.image_root_found() and (p.image_root / "a.png").exists()


def test_project_and_images_moved_together_found_relatively(tmp_path):
    site = tmp_path / "site"
    (site / "images").mkdir(parents=True)
    Project.create(site / "p.inspector", site / "images").close()
    shutil.move(str(site), str(tmp_path / "archive"))
    with Project.open(tmp_path / "archive" / "p.inspector") as p:
        assert p.image_root_found()
        assert p.image_root == (tmp_path / "archive" / "images").resolve()


# ---------------------------------------------------------------- images bookkeeping
def test_problem_files_duplicates_and_missing(project):
    project.record_scan([("a.png", 1, 1), ("b.png", 1, 1), ("c.png", 1, 1), ("d.png", 1, 1)], [], [], [],
                        [("locked.png", "permission denied")])
    state = project.scan_state()
    a, b, c, d = (state[n][0] for n in ("a.png", "b.png", "c.png", "d.png"))
    project.save_analyses([
        ImageAnalysis(a, "same", 4, 4, 8, 1, features=np.zeros(2, np.float32)),
        ImageAnalysis(b, "same", 4, 4, 8, 1, features=np.zeros(2, np.float32)),
        ImageAnalysis(c, "bad", error="truncated PNG"),
        ImageAnalysis(d, "other", 4, 4, 8, 1, features=np.ones(2, np.float32)),
    ], "x", 1)
    assert project.duplicates() == [(b, a)]
    assert {r.path: r.error for r in project.problem_files()} == {"c.png": "truncated PNG", "locked.png": "permission denied"}
    project.record_scan([], [], [d], [])
    assert project.image_ids().tolist() == [a, b]
    assert project.counts()["missing"] == 1
    assert project.find_image("a.png") == a and project.find_image("zzz.png") is None
