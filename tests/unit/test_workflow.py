"""The workflow layer without Qt: one retrain path, one labelling path, navigation, undo/redo,
the decode cache policy and the session jobs, on a real (small) project file."""

import subprocess
import sys

import numpy as np
import pytest

from inspector.core.learning import learner
from inspector.core.store import Project, QueueEntry
from inspector.workflow import jobs, labelling
from inspector.workflow.labelling import (
    BulkLabelCommand, LabelBook, LabelCommand, LabelHistory, LabelState, LabelStep, label_for_shown,
)
from inspector.workflow.navigation import BACK_TO_THIS, DecodeCache, Navigator

EXTRACTOR = ("synthetic", 1)


@pytest.fixture
def project(blob_project):
    """90 images (3 classes, 2-D blobs as features), classes defined, no labels."""
    return blob_project(30)


def _label_queue(project, n=None):
    for entry in project.queue()[:n]:
        labelling.write(project, label_for_shown(entry.image_id, entry, "class", project.truth[entry.image_id]))


def entry(image_id, audit=False):
    return QueueEntry(image_id, 0, "margin", 0.5, "uncertain", 1, audit)


# ----------------------------------------------------------------------------- one retrain path
def test_snapshot_from_features_in_memory_equals_the_one_read_from_the_store(project):
    learner.retrain(project, extractor=EXTRACTOR)
    _label_queue(project)
    ids, X = project.feature_matrix(*EXTRACTOR)
    read = learner.take_snapshot(project, extractor=EXTRACTOR)
    given = learner.take_snapshot(project, extractor=EXTRACTOR, features=(ids, X))
    assert np.array_equal(read.image_ids, given.image_ids) and np.array_equal(read.X, given.X)
    assert read.labels == given.labels and read.audit_ids == given.audit_ids
    # features in memory are used as given: a matrix that differs from the store's shows up
    shifted = learner.take_snapshot(project, extractor=EXTRACTOR, features=(ids, X + 1))
    assert np.allclose(shifted.X, read.X + 1)


def test_app_retrain_job_is_the_cli_retrain_with_features_in_memory(project):
    learner.retrain(project, extractor=EXTRACTOR)
    _label_queue(project)
    ids, X = project.feature_matrix(*EXTRACTOR)
    outcome = jobs.retrain(project, ids, X, EXTRACTOR)
    assert outcome.version == project.model_versions()[-1].version
    assert outcome.queue == project.queue() and outcome.queue
    assert outcome.probabilities is not None and outcome.probabilities.shape == (len(ids), 3)
    assert not {e.image_id for e in outcome.queue} & set(project.latest_labels())
    # predictions only: nothing recorded, the queue untouched
    before = (len(project.model_versions()), project.queue())
    only = jobs.retrain(project, ids, X, EXTRACTOR, write_queue=False)
    assert only.version is None and only.queue is None and only.probabilities is not None
    assert (len(project.model_versions()), project.queue()) == before


def test_refill_chooses_a_queue_without_recording_a_version(project):
    ids, X = project.feature_matrix(*EXTRACTOR)
    outcome = jobs.refill(project, ids, X, EXTRACTOR)
    assert outcome.refill and outcome.version is None and project.model_versions() == []
    assert outcome.queue == project.queue() and len(outcome.queue) == learner.DEFAULT_QUEUE_SIZE


# ----------------------------------------------------------------------------- one labelling path
def test_label_for_shown_carries_the_audit_flag_of_the_entry_it_was_shown_with(project):
    image_id = int(project.image_ids()[0])
    project.replace_queue([QueueEntry(image_id, 0, "audit", None, "audit", None, True, 0.1, 90)])
    shown = project.queue_entry(image_id)
    project.replace_queue([])  # the learner replaced the queue while the image was on screen
    command = label_for_shown(image_id, shown, "class", project.truth[image_id])
    assert command.state == LabelState("class", project.truth[image_id], True)
    assert labelling.write(project, command) is True
    assert project.label_history(image_id)[-1].audit is True
    # opened by hand: never an audit pick
    other = int(project.image_ids()[1])
    assert labelling.write(project, label_for_shown(other, None, "skip")) is False
    assert project.label_history(other)[-1].kind == "skip"
    with pytest.raises(ValueError):
        label_for_shown(other, None, "maybe")


def test_record_label_reads_the_queue_only_when_not_told(project):
    a, b = (int(i) for i in project.image_ids()[:2])
    project.replace_queue([QueueEntry(a, 0, "audit", None, "audit", None, True), QueueEntry(b, 1, "m", 0.1, "m", None)])
    assert learner.record_label(project, a, project.truth[a]) is True  # the CLI: from the queue
    assert learner.record_label(project, b, project.truth[b], audit=True) is True  # told
    assert set(project.audit_labels()) == {a, b}


def test_bulk_command_is_one_write_of_every_image(project):
    ids = [int(i) for i in project.image_ids()[:5]]
    ok = project.class_by_name("ok").id
    labelling.write(project, BulkLabelCommand(tuple(ids), ok, "anna", "bulk"))
    assert all(project.latest_labels()[i] == ok for i in ids)
    assert labelling.image_ids_of(BulkLabelCommand(tuple(ids), ok)) == ids


def test_label_book_sees_given_labels_before_the_store_and_survives_a_reload(project):
    ids = [int(i) for i in project.image_ids()[:4]]
    ok, scratch = project.class_by_name("ok").id, project.class_by_name("scratch").id
    project.add_label(ids[0], ok)
    project.add_label(ids[1], None, kind="skip")
    book = LabelBook()
    assert not book.loaded
    book.load(*labelling.read_label_book(project))
    assert book.class_labels() == {ids[0]: ok}
    assert book.state(ids[1]) == LabelState("skip") and book.settled(ids[1])
    book.give(LabelCommand(ids[2], LabelState("class", scratch, True)))
    book.give(LabelCommand(ids[0], LabelState("unsure")))  # relabelled: no longer a class label
    assert book.class_labels() == {ids[2]: scratch}
    assert book.state(ids[2]).audit and book.given_in_session() == {ids[0], ids[2]}
    # a reload read before those labels were committed keeps them
    book.load(*labelling.read_label_book(project))
    assert book.class_labels() == {ids[2]: scratch} and book.state(ids[0]).kind == "unsure"
    book.refused([ids[2]])
    assert not book.loaded and book.state(ids[2]) is None
    book.give(BulkLabelCommand((ids[3],), ok))
    assert book.class_labels()[ids[3]] == ok


def test_history_undo_and_redo_commands():
    history = LabelHistory()
    assert history.take_undo() is None and not history.can_undo()
    step = LabelStep(7, None, LabelState("class", 2, True), "suggestion", entry(7, audit=True))
    history.record(step)
    undone = history.take_undo()
    assert undone is step and history.can_redo() and not history.can_undo()
    assert step.undo_command() == LabelCommand(7, LabelState("cleared"), "", "human")
    assert step.redo_command() == LabelCommand(7, LabelState("class", 2, True), "", "suggestion")
    assert history.take_redo() is step and history.can_undo()
    history.take_undo()
    history.record(LabelStep(8, LabelState("skip"), LabelState("class", 1), "human"))
    assert not history.can_redo()  # a new label forgets what was undone
    assert labelling.describe(LabelState("class", 1), {1: "ok"}) == "labelled ok"
    assert labelling.describe(LabelState("class", 9), {1: "ok"}) == "labelled a removed class"
    assert labelling.describe(LabelState("skip"), {}) == "skipped"
    assert labelling.describe(None, {}) == "unlabelled"


# ----------------------------------------------------------------------------- navigation
def test_navigator_next_back_forward_and_open():
    queued = {i: entry(i, audit=(i == 3)) for i in range(1, 7)}
    nav = Navigator(queued.get)
    assert nav.queue_changed(list(queued.values())) is False
    image_id, e = nav.next(settled=set())
    nav.show(image_id, e)
    assert (nav.current, nav.current_entry) == (1, queued[1])
    nav.show(*nav.next(settled={2}))  # labelled meanwhile (gallery): passed over
    assert nav.current == 3 and nav.current_entry.audit
    nav.show(*nav.back())
    assert nav.current == 1 and nav.forward == [3]
    assert nav.ahead(2) == [3, 4]
    assert nav.strip_entries()[0].reason == BACK_TO_THIS and nav.strip_entries()[0].image_id == 3
    nav.show(*nav.next(settled=set()))  # the image left by going back comes first
    assert nav.current == 3 and nav.forward == [] and nav.back_stack == [1]
    assert nav.open(3) is None  # already on screen
    target = nav.open(6)
    assert target == (6, queued[6]) and 6 not in [q.image_id for q in nav.upcoming]
    nav.show(*target)
    # an image no longer queued opens with the entry it came from (an undone label)
    kept = entry(99, audit=True)
    assert nav.open(99, kept) == (99, kept)
    assert nav.forward == [3, 6]  # images left by opening another come back first, the last first


def test_navigator_queue_changed_keeps_the_current_image_and_finds_its_entry():
    nav = Navigator(lambda _i: None)
    nav.show(5, None)  # opened before the queue was read
    assert nav.queue_changed([entry(4), entry(5, audit=True)]) is True
    assert nav.current_entry.audit and [q.image_id for q in nav.upcoming] == [4]
    assert nav.queued_ahead() == 1
    nav.show(*nav.next(settled=set()))
    assert nav.current == 4
    assert nav.next(settled=set()) == (None, None)  # queue used up


def test_navigator_back_stack_is_bounded():
    nav = Navigator(lambda _i: None)
    nav.queue_changed([entry(i) for i in range(300)])
    for _ in range(260):
        nav.show(*nav.next(settled=set()))
    assert len(nav.back_stack) == 200


def test_decode_cache_never_evicts_the_image_on_screen():
    cache = DecodeCache(3)
    assert cache.should_decode(1) and not cache.should_decode(1)  # once until it arrives
    cache.put(1, "one", keep=1)
    for i in (2, 3, 4):
        assert cache.should_decode(i)
        cache.put(i, str(i), keep=1)
    assert 1 in cache and 2 not in cache and len(cache) == 3  # 2 was the oldest not on screen
    assert cache.get(3) == "3" and not cache.should_decode(3)
    cache.should_decode(9)
    cache.fail(9, "truncated file")
    assert cache.failure(9) == "truncated file" and not cache.decoding(9)
    cache.put(9, "nine", keep=1)  # a later decode that worked wins
    assert cache.failure(9) is None and cache.get(9) == "nine"


# ----------------------------------------------------------------------------- jobs and layering
def test_session_start_and_feature_load_read_what_the_views_need(project):
    learner.retrain(project, extractor=EXTRACTOR)
    first = project.queue()[0]
    project.add_label(first.image_id, project.truth[first.image_id])
    start = jobs.read_session_start(project)
    assert start.queue == project.queue() and set(start.paths) == {e.image_id for e in start.queue}
    assert start.class_labels == project.latest_labels() and start.label_states[first.image_id].is_class
    loaded = jobs.load_features(project.path, EXTRACTOR)
    assert len(loaded.image_ids) == 90 and loaded.features.dtype == np.float32
    assert loaded.paths == project.image_paths()
    assert jobs.image_path(project.path, first.image_id) == project.image_path(first.image_id)
    job = jobs.Job("Reading the queue", jobs.read_queue, (project,), with_progress=False)
    assert job.run() == project.queue()


def test_workflow_never_imports_qt():
    code = ("import sys, inspector.workflow.jobs, inspector.workflow.labelling, inspector.workflow.navigation, "
            "inspector.workflow.dashboard_data, inspector.workflow.gallery_data; "
            "print([m for m in sys.modules if m.startswith(('PySide6', 'pyqtgraph', 'inspector.ui'))])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_cli_label_goes_through_the_same_command_and_keeps_the_audit_flag(project, capsys):
    from inspector.cli import main

    image_id = int(project.image_ids()[0])
    project.replace_queue([QueueEntry(image_id, 0, "audit", None, "audit", None, True, 0.2, 90)])
    path, project_path = project.image(image_id).path, str(project.path)
    project.close()
    assert main(["label", project_path, path, "ok"]) == 0
    assert "(audit pick)" in capsys.readouterr().out
    reopened = Project.open(project_path)
    try:
        event = reopened.label_history(image_id)[-1]
        assert event.audit and event.class_id == reopened.class_by_name("ok").id
        assert reopened.queue_entry(image_id) is None
    finally:
        reopened.close()
