"""Confidence on the line: calibration, acceptable classes, the escape-safe threshold, novelty."""

from __future__ import annotations

import numpy as np
import pytest

from inspector.cli import main
from inspector.core.learning import routing
from inspector.core.learning.acceptance import (
    acceptable_class_ids,
    set_acceptable_class_ids,
    set_acceptable_class_names,
)
from inspector.core.learning.calibration import (
    Calibration,
    apply_calibration,
    calibrate_model,
    fit_calibration,
    reliability,
)
from inspector.core.learning.metrics import escape_estimate
from inspector.core.learning.models import fit_model
from inspector.core.learning.novelty import fit_novelty
from inspector.core.store import Project


def blobs(n_per_class: int, centres, spread: float = 1.0, seed: int = 0, d: int = 8):
    rng = np.random.default_rng(seed)
    X, y = [], []
    for c, centre in enumerate(centres):
        X.append(rng.normal(centre, spread, (n_per_class, d)))
        y += [c] * n_per_class
    return np.vstack(X).astype(np.float32), np.asarray(y, np.int64)


# --------------------------------------------------------------------------- calibration


def test_five_labels_never_show_100_percent():
    X, y = blobs(50, [0.0, 6.0], seed=1)
    rows = np.array([0, 1, 2, 50, 51])  # 3 of one class, 2 of the other, perfectly separable
    model = fit_model(X[rows], y[rows], np.array([0, 1]))
    assert model.raw_proba(X).max() > 0.97  # the raw classifier is (too) sure
    calibrate_model(model, X[rows], y[rows])
    proba = model.predict_proba(X)
    assert proba.max() <= 0.9
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-5)


def test_one_seen_class_is_not_certain_and_leaves_room_for_the_others():
    X, y = blobs(5, [0.0], seed=2)
    model = fit_model(X, y, np.array([0, 1, 2]))
    calibrate_model(model, X, y)
    proba = model.predict_proba(X)
    assert np.all(proba[:, 0] < 1.0) and np.all(proba[:, 1:] > 0)


def test_temperature_softens_an_overconfident_model():
    rng = np.random.default_rng(3)
    n = 400
    y = rng.integers(0, 2, n)
    right = rng.random(n) < 0.8  # right 80 % of the time, but says 99 %
    predicted = np.where(right, y, 1 - y)
    raw = np.full((n, 2), 0.01)
    raw[np.arange(n), predicted] = 0.99
    calibration = fit_calibration(y, np.array([0, 1]), raw)
    assert calibration.temperature > 1.5 or calibration.shrink > 0.2
    before = reliability(y, raw, np.array([0, 1]))["ece"]
    after = reliability(y, calibration.apply(raw), np.array([0, 1]))["ece"]
    assert before > 0.15 and after < 0.05


def test_calibration_keeps_unlabelled_classes_at_zero_and_round_trips():
    proba = np.array([[0.7, 0.3, 0.0], [0.2, 0.8, 0.0]])
    prior = np.array([0.5, 0.5, 0.0])
    out = apply_calibration(proba, 2.0, 0.1, prior)
    assert np.all(out[:, 2] == 0) and np.allclose(out.sum(axis=1), 1)
    assert np.all(np.argmax(out, axis=1) == np.argmax(proba, axis=1))
    cal = Calibration(2.0, 0.1, prior, 10)
    again = Calibration.from_dict(cal.to_dict(), 3)
    np.testing.assert_allclose(again.apply(proba), out)
    with pytest.raises(ValueError):
        Calibration.from_dict({**cal.to_dict(), "temperature": -1}, 3)


def test_reliability_bins_and_ece():
    y = np.array([0, 0, 1, 1])
    proba = np.array([[0.95, 0.05], [0.95, 0.05], [0.55, 0.45], [0.05, 0.95]])
    rel = reliability(y, proba, np.array([0, 1]))
    # bins: 0.95 -> 3 predictions, 2 right... (0.95, 0.95, 0.95 right; 0.55 wrong)
    assert rel["n"] == 4 and sum(b["n"] for b in rel["bins"]) == 4
    assert rel["ece"] == pytest.approx((3 * 0.05 + 1 * 0.55) / 4)


# --------------------------------------------------------------------------- routing and threshold


def test_route_paths_and_reasons():
    acceptable = np.array([True, False])
    proba = np.array([[0.99, 0.01], [0.7, 0.3], [0.2, 0.8], [0.99, 0.01]])
    novel = np.array([False, False, False, True])
    path, review, reasons = routing.route(proba, acceptable, 0.9, novel)
    assert path.tolist() == ["pass", "review", "defect", "review"]
    assert reasons == ["", "low confidence", "", "novel"]
    path, review, reasons = routing.route(proba, acceptable, None, novel)
    assert review.all() and reasons[0] == "not shown safe" and reasons[3] == "not shown safe + novel"


def _separated(n_ok: int, n_defect: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = np.array([0] * n_ok + [1] * n_defect)
    p_ok = np.where(y == 0, rng.uniform(0.9, 1.0, len(y)), rng.uniform(0.0, 0.6, len(y)))
    return y, np.stack([p_ok, 1 - p_ok], axis=1)


def test_threshold_meets_the_escape_target_at_the_smallest_review_share():
    y, proba = _separated(400, 400)
    result = routing.choose_threshold(y, proba, np.array([0, 1]), np.array([True, False]), 0.01)
    assert result["shown_safe"] and result["escape_upper"] <= 0.01
    # the lowest safe value: just above every defective part (p_ok <= 0.6), where the acceptable ones start
    assert 0.6 < result["value"] <= float(proba[:400, 0].min()) + 1e-9
    assert result["escapes"] == 0 and result["review_share"] < 0.6


def test_too_few_defective_examples_route_everything_and_say_what_to_label():
    y, proba = _separated(40, 20)
    result = routing.choose_threshold(y, proba, np.array([0, 1]), np.array([True, False]), 0.01,
                                      {0: "ok", 1: "crack"})
    assert result["value"] is None and not result["shown_safe"]
    assert result["labels_needed"]["crack"] >= 270  # no escapes in ~300 defects bounds the rate at 1 %
    assert "NOT SHOWN SAFE" in result["explanation"]


def test_escapes_at_the_strictest_threshold_are_reported():
    y, proba = _separated(400, 400)
    proba[400:420] = [1.0, 0.0]  # 20 defects (5 %) the model is surer are ok than any ok part
    result = routing.choose_threshold(y, proba, np.array([0, 1]), np.array([True, False]), 0.01)
    assert result["value"] is None and "strictest" in result["explanation"]


def test_operating_points_show_what_each_hand_set_threshold_risks_and_costs():
    y, proba = _separated(40, 20)
    p_ok = proba[:, 0].copy()
    p_ok[40:43] = [0.93, 0.82, 0.71]  # three defects the model calls ok, at known probabilities
    proba = np.c_[p_ok, 1 - p_ok]
    pool = np.c_[np.linspace(0.0, 1.0, 101), 1 - np.linspace(0.0, 1.0, 101)]
    result = routing.choose_threshold(y, proba, np.array([0, 1]), np.array([True, False]), 0.01, pool_proba=pool)
    assert result["value"] is None  # 20 defective parts cannot show 1 %
    points = result["operating_points"]
    assert [p["escapes"] for p in points] == [0, 1, 2, 3]
    # each is the lowest threshold of three decimals that keeps out every escape above it
    assert [p["threshold"] for p in points][:3] == [0.931, 0.821, 0.711]
    for point in points:
        at = routing.escapes_at(y, proba, np.array([0, 1]), np.array([True, False]), point["threshold"])
        assert at["escapes"] == point["escapes"] and at["review_share"] == point["review_share_labelled"]
        assert point["escape_upper"] == pytest.approx(routing.escape_upper_bound(point["escapes"], 20))
        assert not point["meets_target"]
        # review share of the images to come: parts predicted ok (p >= 0.5) below the threshold
        expected = np.mean((pool[:, 0] >= 0.5) & (pool[:, 0] < point["threshold"]))
        assert point["review_share_images"] == pytest.approx(expected)
    assert points[0]["review_share_images"] > points[1]["review_share_images"] > points[2]["review_share_images"]
    assert "0 of 20 defective parts passed" in routing.operating_point_words(points[0])
    # a damaged record (a project file from elsewhere) is skipped, not a crash
    assert routing.operating_point_words({"threshold": "x"}) == "" and routing.operating_point_words(None) == ""


def test_escape_estimate_counts_defective_parts_passed():
    y = np.array([0, 0, 0, 1, 1, 2, 2, 2])  # class 0 acceptable; 5 defective
    passed = np.array([True, True, False, True, False, False, False, False])
    review = np.array([False, False, True, False, True, False, True, False])
    est = escape_estimate(y, passed, review, {0})
    assert est["n_defective"] == 5 and est["escapes"] == 1 and est["escape_rate"] == pytest.approx(0.2)
    assert est["escape_rate_ci"][0] < 0.2 < est["escape_rate_ci"][1]
    assert est["review_share"] == pytest.approx(3 / 8)


# --------------------------------------------------------------------------- novelty


def test_novelty_flags_a_stranger_but_not_the_labelled_kind():
    X, y = blobs(60, [0.0, 4.0], seed=4)
    pool = np.vstack([X, blobs(30, [20.0], seed=5)[0]])
    mean, std = pool.mean(axis=0), pool.std(axis=0)
    novelty = fit_novelty(X, mean, std)
    familiar = blobs(50, [0.0, 4.0], seed=6)[0]
    stranger = blobs(50, [20.0], seed=7)[0]
    assert novelty.is_novel(stranger).mean() == 1.0
    assert novelty.is_novel(familiar).mean() <= 0.15
    assert fit_novelty(X[:5], mean, std) is None  # too few labels to say what is unusual


# --------------------------------------------------------------------------- acceptable classes


def test_acceptable_classes_default_by_name_and_can_be_set(tmp_path):
    project = Project.create(tmp_path / "p.inspector", tmp_path)
    try:
        ok, crack, good = project.add_class("OK"), project.add_class("crack"), project.add_class("Good")
        assert acceptable_class_ids(project) == {ok, good}
        set_acceptable_class_ids(project, [crack])
        assert acceptable_class_ids(project) == {crack}
        assert set_acceptable_class_names(project, ["ok", " GOOD "]) == {ok, good}
        set_acceptable_class_ids(project, [])
        assert acceptable_class_ids(project) == set()  # explicitly none: not the default again
        from inspector.core.errors import UserError

        with pytest.raises(UserError):
            set_acceptable_class_names(project, ["nope"])
    finally:
        project.close()


def test_classes_command_lists_and_sets_acceptable(tmp_path, capsys):
    path = tmp_path / "p.inspector"
    project = Project.create(path, tmp_path)
    project.add_class("ok")
    project.add_class("scratch")
    project.close()
    assert main(["classes", str(path)]) == 0
    out = capsys.readouterr().out
    assert "ok" in out and "acceptable" in out and "scratch" in out and "Escape target: at most 1.00%" in out
    assert main(["classes", str(path), "--acceptable", "scratch", "--escape-target", "0.005"]) == 0
    lines = {line.split()[1]: line for line in capsys.readouterr().out.splitlines() if line[:3].strip().isdigit()}
    assert lines["scratch"].endswith("acceptable") and lines["ok"].endswith("defect")
    assert main(["classes", str(path), "--acceptable", "nope"]) == 1
    assert "no class named" in capsys.readouterr().err


# --------------------------------------------------------------------------- export from few labels


def test_a_model_exported_from_five_labels_routes_every_part_to_review(tmp_path, capsys):
    import cv2

    from inspector.core.ingest import scan_project
    from inspector.core.modelfile import load_model

    rng = np.random.default_rng(0)
    images = tmp_path / "images"
    for name in ("ok", "scratch"):
        (images / name).mkdir(parents=True)
        for i in range(6):
            image = rng.normal(128, 10, (64, 64)).clip(0, 255).astype(np.uint8)
            if name == "scratch":
                cv2.line(image, (5, int(rng.integers(5, 60))), (60, int(rng.integers(5, 60))), 235, 2)
            cv2.imwrite(str(images / name / f"{name}_{i}.png"), image)
    path = tmp_path / "few.inspector"
    project = Project.create(path, images)
    try:
        scan_project(project, workers=1)
        ids = {c: project.add_class(c) for c in ("ok", "scratch")}
        labelled = [(i, p) for i, p in sorted(project.image_paths().items())]
        chosen = [x for x in labelled if x[1].startswith("ok/")][:3] + [x for x in labelled if x[1].startswith("scratch/")][:2]
        for image_id, rel in chosen:
            project.add_label(image_id, ids[rel.split("/")[0]])
    finally:
        project.close()
    out = tmp_path / "few.inspector-model"
    assert main(["export-model", str(path), str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "every part is routed to review" in printed and "NOT SHOWN SAFE" in printed
    assert "thresholds you could set" in printed and "--review-threshold" in printed
    model = load_model(out)
    predictions = model.predict([images], workers=1)
    assert len(predictions) == 12
    assert all(p.review and p.route == "review" and p.review_reason.startswith("not shown safe") for p in predictions)
    assert all(p.confidence < 0.95 for p in predictions)  # 5 labels never show (near) certainty
    # an engineer may still choose a threshold explicitly; the file records that it was set by hand
    assert main(["export-model", str(path), str(out), "--quiet", "--review-threshold", "0.8"]) == 0
    forced = load_model(out)
    assert forced.reject_threshold == 0.8 and forced.header["reject_threshold"]["set_by"] == "engineer"
    assert not all(p.review for p in forced.predict([images], workers=1))


def test_audit_labels_weigh_as_much_as_the_chosen_ones_once_there_are_enough():
    from inspector.core.learning.calibration import MIN_AUDIT_FOR_WEIGHT, audit_weights

    few = np.zeros(100, bool)
    few[: MIN_AUDIT_FOR_WEIGHT - 1] = True
    assert audit_weights(few) is None
    many = np.zeros(300, bool)
    many[:30] = True
    w = audit_weights(many)
    assert w[many].sum() == pytest.approx(w[~many].sum())


def test_a_model_file_with_unusable_confidence_settings_is_refused(tmp_path):
    from inspector.core.learning.calibration import Calibration
    from inspector.core.learning.novelty import fit_novelty
    from inspector.core.modelfile import ModelFileError, load_model, write_container
    from inspector.core.features import default_extractor

    # a minimal logistic model file written through the container, as export does
    X, y = blobs(30, [0.0, 3.0], seed=8, d=default_extractor().dim)
    model = fit_model(X, y, np.array([0, 1]))
    calibrate_model(model, X, y)
    from inspector.core.modelfile.predictors import model_arrays

    spec, arrays = model_arrays(model)
    novelty = fit_novelty(X, X.mean(axis=0), X.std(axis=0) + 1e-3)
    arrays.update(novelty.arrays())
    header = {"classes": [{"name": "ok"}, {"name": "crack"}], "extractor": default_extractor().params(),
              "model": spec, "reject_threshold": {"value": None}, "probability_calibration": model.calibration.to_dict(),
              "acceptable_classes": ["ok"], "review_rule": {}, "novelty": novelty.to_header()}
    good = write_container(tmp_path / "good.inspector-model", header, arrays)
    loaded = load_model(good)
    assert loaded.routes_everything_to_review
    p = loaded.records(["a"], [X[0]], [None])[0]
    assert p.review and p.review_reason.startswith("not shown safe") and p.novelty is not None
    for bad in ({"probability_calibration": {**model.calibration.to_dict(), "temperature": -1.0}},
                {"probability_calibration": {**model.calibration.to_dict(), "prior": [1.0]}},
                {"acceptable_classes": ["nope"]},
                {"novelty": {**novelty.to_header(), "combined_scale": 0.0}},
                {"reject_threshold": {"value": 7}}):
        path = write_container(tmp_path / "bad.inspector-model", {**header, **bad}, arrays)
        with pytest.raises(ModelFileError):
            load_model(path)
    assert isinstance(Calibration.from_dict(model.calibration.to_dict(), 2), Calibration)


# --------------------------------------------------------------------------- trust: bias, reuse, class novelty


def test_per_class_bias_corrects_a_model_that_over_predicts_one_class():
    rng = np.random.default_rng(11)
    n = 600
    y = rng.choice(3, n, p=[0.7, 0.2, 0.1])
    logits = rng.normal(0, 1, (n, 3))
    logits[np.arange(n), y] += 2.0
    logits[:, 2] += 1.5  # the classifier leans toward class 2 (e.g. balanced class weights)
    raw = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    calibration = fit_calibration(y, np.array([0, 1, 2]), raw)
    assert calibration.bias[2] < calibration.bias[0] - 0.5
    before = reliability(y, raw, np.array([0, 1, 2]))["ece"]
    after = reliability(y, calibration.apply(raw), np.array([0, 1, 2]))["ece"]
    assert after < before / 2
    again = Calibration.from_dict(calibration.to_dict(), 3)
    np.testing.assert_allclose(again.apply(raw), calibration.apply(raw), atol=1e-9)
    old_file = {k: v for k, v in calibration.to_dict().items() if k != "bias"}  # written before the bias
    assert np.all(Calibration.from_dict(old_file, 3).bias == 0)
    with pytest.raises(ValueError):
        Calibration.from_dict({**calibration.to_dict(), "bias": [0.0, float("nan"), 0.0]}, 3)


def test_retrain_reuses_out_of_sample_predictions_until_labels_grow(monkeypatch):
    from inspector.core.learning import calibration as calibration_module

    calibration_module.forget_out_of_fold_memory()
    X, y = blobs(100, [0.0, 2.0, 4.0], seed=12)
    order = np.random.default_rng(0).permutation(len(y))
    runs = []
    real = calibration_module._out_of_fold_with_sizes
    monkeypatch.setattr(calibration_module, "_out_of_fold_with_sizes", lambda *a, **k: runs.append(1) or real(*a, **k))
    classes = np.array([0, 1, 2])
    first = order[:60]
    model = fit_model(X[first], y[first], classes)
    oof_first = calibrate_model(model, X[first], y[first])
    assert len(runs) == 1
    grown = order[:70]
    model2 = fit_model(X[grown], y[grown], classes)
    oof = calibrate_model(model2, X[grown], y[grown])
    assert len(runs) == 1  # no new cross-validation
    np.testing.assert_allclose(oof[:60], oof_first)  # the earlier rows keep their out-of-fold rows
    # the new rows come from the previous model, which never saw them
    np.testing.assert_allclose(oof[60:], model.raw_proba(X[order[60:70]]), atol=1e-6)
    relabelled = y[grown].copy()
    relabelled[-1] = (relabelled[-1] + 1) % 3
    calibrate_model(fit_model(X[grown], relabelled, classes), X[grown], relabelled)
    assert len(runs) == 2  # a changed label: cross-validate again
    much = order[:200]
    calibrate_model(fit_model(X[much], y[much], classes), X[much], y[much])
    assert len(runs) == 3  # labels grew by more than the refresh fraction
    calibration_module.forget_out_of_fold_memory()


def test_class_conditional_novelty_flags_a_part_forced_into_a_class_it_is_far_from():
    from inspector.core.learning.novelty import NoveltyModel

    X, y = blobs(60, [0.0, 6.0], seed=13, spread=0.5)
    mean, std = X.mean(axis=0), X.std(axis=0)
    novelty = fit_novelty(X, mean, std, y=y, classes=np.array([0, 1]))
    probe = blobs(20, [0.0], seed=14, spread=0.5)[0]  # looks like class 0 ...
    called_1 = np.tile([0.1, 0.9], (len(probe), 1))  # ... but the classifier calls it class 1
    called_0 = called_1[:, ::-1]
    assert novelty.is_novel(probe).mean() <= 0.15  # globally it is familiar
    assert novelty.is_novel(probe, called_0).mean() <= 0.15
    assert novelty.is_novel(probe, called_1).mean() == 1.0
    again = NoveltyModel.from_file(novelty.to_header(), novelty.arrays())
    np.testing.assert_allclose(again.scores(probe, called_1), novelty.scores(probe, called_1))
    arrays = novelty.arrays()
    arrays.pop("novelty_class_distance")
    with pytest.raises(ValueError):
        NoveltyModel.from_file(novelty.to_header(), arrays)
