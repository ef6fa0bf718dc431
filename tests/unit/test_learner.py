"""The project-level loop on the real store: versions, queue persistence, labels during retrain."""

import numpy as np
import pytest

from inspector.core.learning import estimators, learner
from inspector.core.store import Project

EXTRACTOR = ("synthetic", 1)


@pytest.fixture
def project(blob_project):
    """A project of 120 images (3 classes, 2-D blobs as features) with classes defined, no labels."""
    return blob_project(40)


def label_queue(project, n=None, annotator="t"):
    for entry in project.queue()[:n]:
        project.add_label(entry.image_id, project.truth[entry.image_id], annotator=annotator, audit=entry.audit)


def test_cold_start_queue_is_persisted_with_reasons(project):
    result = learner.retrain(project, extractor=EXTRACTOR)
    assert result.version is None  # nothing to train yet
    queue = project.queue()
    assert len(queue) == learner.DEFAULT_QUEUE_SIZE
    assert all(e.reason.startswith("cold start") or e.reason == "audit" for e in queue)
    # audit picks carry their selection probability; cold-start picks stay as chosen (none)
    assert all((e.selection_probability is not None) == e.audit for e in queue)
    assert any(e.audit for e in queue)
    assert [e.position for e in queue] == list(range(len(queue)))


def test_train_records_version_and_requeues_without_labelled(project):
    learner.retrain(project, extractor=EXTRACTOR)
    label_queue(project)
    result = learner.retrain(project, extractor=EXTRACTOR)
    versions = project.model_versions()
    assert result.version == versions[-1].version
    assert versions[-1].n_labels == 20 and versions[-1].kind == "logistic"
    assert versions[-1].settings["strategy"] == "uncertain_diverse"
    labelled = set(project.latest_labels())
    queue = project.queue()
    assert queue and not {e.image_id for e in queue} & labelled
    assert all(e.model_version == result.version for e in queue)
    assert len({e.image_id for e in queue}) == len(queue)
    if project.audit_labels():
        assert "audit" in versions[-1].metrics


def test_labels_given_during_a_retrain_are_kept_and_not_requeued(project):
    learner.retrain(project, extractor=EXTRACTOR)
    label_queue(project, 12)
    snapshot = learner.take_snapshot(project, extractor=EXTRACTOR)
    fitted = learner.fit(snapshot)  # the worker thread's part
    selection = learner.select(snapshot, fitted, n=40)
    # meanwhile the inspector labels images the worker is about to queue
    chosen_ids = [int(snapshot.image_ids[r]) for r in selection.indices[:3]]
    for image_id in chosen_ids:
        project.add_label(image_id, project.truth[image_id], annotator="during")
    learner.commit(project, snapshot, fitted, selection)
    queued = {e.image_id for e in project.queue()}
    assert not queued & set(chosen_ids)
    labels = project.latest_labels()
    assert all(image_id in labels for image_id in chosen_ids)
    assert len(labels) == 15


def test_skipped_and_unsure_images_are_not_queued_again(project):
    learner.retrain(project, extractor=EXTRACTOR)
    first = project.queue()[0].image_id
    second = project.queue()[1].image_id
    project.add_label(first, None, kind="skip")
    project.add_label(second, None, kind="unsure")
    learner.retrain(project, extractor=EXTRACTOR, n=200)
    queued = {e.image_id for e in project.queue()}
    assert first not in queued and second not in queued


def test_predictions_cover_every_image_and_class(project):
    learner.retrain(project, extractor=EXTRACTOR)
    label_queue(project)
    snapshot = learner.take_snapshot(project, extractor=EXTRACTOR)
    fitted = learner.fit(snapshot)
    pred = learner.predictions(snapshot, fitted)
    assert pred.proba.shape == (120, 3)
    accuracy = np.mean([pred.predicted[i] == project.truth[int(image_id)] for i, image_id in enumerate(pred.image_ids)])
    assert accuracy > 0.9


def test_evaluation_reports_audit_estimate_and_optimistic_cv(project):
    learner.retrain(project, extractor=EXTRACTOR)
    for _ in range(4):
        label_queue(project)
        learner.retrain(project, extractor=EXTRACTOR)
    report = learner.evaluation(project, extractor=EXTRACTOR)
    assert report["n_labels"] == 80
    assert report["n_audit"] >= 1
    assert report["audit_estimate"]["accuracy_ci"][0] <= report["audit_estimate"]["accuracy"]
    assert "optimistic" in report["cross_validation_optimistic"]["kind"]
    assert len(report["learning_curve"]) == 4
    assert report["stopping"]["status"] in ("improving", "plateau")
    assert report["learning_curve"][-1]["prediction_change"] is not None


def test_record_label_keeps_the_audit_flag_of_the_queue_entry(project):
    learner.retrain(project, extractor=EXTRACTOR)
    queue = project.queue()
    audit_entry = next(e for e in queue if e.audit)
    other = next(e for e in queue if not e.audit)
    assert learner.record_label(project, audit_entry.image_id, project.truth[audit_entry.image_id]) is True
    assert learner.record_label(project, other.image_id, project.truth[other.image_id]) is False
    assert set(project.audit_labels()) == {audit_entry.image_id}
    assert project.queue_entry(audit_entry.image_id) is None


def test_cli_label_and_query(project, capsys):
    from inspector.cli import main

    learner.retrain(project, extractor=EXTRACTOR)
    first = project.queue()[0]
    path = project.image(first.image_id).path
    project_path = str(project.path)
    project.close()
    assert main(["label", project_path, path, "brand-new"]) == 1  # a typo must not become a class
    assert "no class 'brand-new'" in capsys.readouterr().err
    assert main(["label", project_path, path, "brand-new", "--create-class"]) == 0
    out = capsys.readouterr().out
    assert "Created class 'brand-new'" in out and "Labelled" in out
    assert main(["label", project_path, "no/such.png", "ok"]) == 1
    reopened = Project.open(project.path)
    try:
        assert reopened.latest_labels()[first.image_id] == reopened.class_by_name("brand-new").id
    finally:
        reopened.close()


def test_evaluation_has_the_stable_estimate_shape(project):
    """The shape other features (stopping rules) build on: estimate, interval, method, counts."""
    project.set_setting(learner.SETTING_AUDIT_SHARE, 0.5)
    for _ in range(4):
        learner.retrain(project, extractor=EXTRACTOR)
        label_queue(project)
    report = learner.evaluation(project, extractor=EXTRACTOR)
    assert report["n_labels"] == 80 and report["n_audit"] >= 20
    assert 0.0 <= report["estimate"] <= 1.0
    low, high = report["interval"]
    assert low <= report["estimate"] <= high
    assert report["method_key"] in ("difference", "weighted", "audit")
    assert report["method"] and " " in report["method"]  # words, not a key
    assert set(report["estimators"]) == {"audit", "ppi", "weighted", "difference"}
    # the app's retrain knows the models behind the cross-fitted predictions: the model gap is there
    assert abs(report["estimators"]["difference"]["details"]["model_gap"]) < 0.2
    if report["method_key"] == "difference":
        # the per-class figures come from the same estimator, each inside its own interval
        per_class = report["classes_estimate"]
        assert per_class["method"] == "difference" and per_class["n_sampled"] >= estimators.MIN_SAMPLED
        low, high = per_class["macro_f1_interval"]
        assert low <= per_class["macro_f1"] <= high
    # picks were queued with their selection probability, and the labels carry it
    picks = project.pick_records()
    audit_picks = [p for p in picks.values() if p.audit]
    assert audit_picks and all(0 < p.selection_probability <= 1 and p.pool_size > 0 for p in audit_picks)
