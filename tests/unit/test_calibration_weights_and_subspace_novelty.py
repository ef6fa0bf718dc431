"""Calibration weighted by the picks' selection probabilities, and novelty's principal-subspace
scores (Mahalanobis to the nearest class, residual outside the labelled images' subspace)."""

from __future__ import annotations

import numpy as np
import pytest

from inspector.core.learning import calibration as calibration_module
from inspector.core.learning import learner
from inspector.core.learning.calibration import (
    calibration_weights,
    effective_size,
    expected_calibration_error,
    fit_calibration,
    importance_weights,
)
from inspector.core.learning.novelty import NoveltyModel, fit_novelty


def test_importance_weights_undo_how_likely_each_pick_was():
    # an audit draw (uniform among 100), a strategy pick (drawn with 7 %), an image the strategy
    # would not have chosen (0.5 %), a cold-start pick without a recorded probability
    w = importance_weights(np.array([0.01, 0.07, 0.005, np.nan]), np.array([100, 100, 100, np.nan]))
    np.testing.assert_allclose(w, [1.0, 1 / 7, 2.0, 1.0])
    assert importance_weights(np.full(3, np.nan), np.full(3, np.nan)) is None
    assert importance_weights(None, None) is None
    assert effective_size(np.ones(10)) == pytest.approx(10)
    assert effective_size(np.r_[np.ones(10), np.full(90, 1e-3)]) < 11
    # without any recorded probability the audit weighting stays
    audit = np.r_[np.ones(20, bool), np.zeros(40, bool)]
    np.testing.assert_allclose(calibration_weights(audit, np.full(60, np.nan), np.full(60, np.nan)),
                               np.where(audit, 2.0, 1.0))


def _two_class_proba(n: int, right: np.ndarray, confidence: float) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities at ``confidence`` for class 0 or 1 and the true labels (right where ``right``)."""
    y = np.arange(n) % 2
    predicted = np.where(right, y, 1 - y)
    p = np.full((n, 2), 1 - confidence)
    p[np.arange(n), predicted] = confidence
    return p, y


def test_selection_probabilities_keep_hard_chosen_labels_from_softening_the_model():
    rng = np.random.default_rng(0)
    # 80 labels the strategy chose (drawn with 7 % among 600 images: weight 0.024), right 60 % of
    # the time out of sample; 40 sampled at random (weight 1), right 97 % of the time like the parts
    # to come; every prediction says 95 %
    chosen, random_ = 80, 40
    right = np.r_[rng.random(chosen) < 0.6, rng.random(random_) < 0.97]
    oof, y = _two_class_proba(chosen + random_, right, 0.95)
    q = np.r_[np.full(chosen, 0.07), np.full(random_, 1 / 600)]
    pool = np.full(chosen + random_, 600.0)
    classes = np.array([0, 1])
    weighted = fit_calibration(y, classes, oof, weights=calibration_weights(None, q, pool))
    unweighted = fit_calibration(y, classes, oof)
    assert weighted.temperature < unweighted.temperature
    # parts to come: right 96 % at a raw 95 %
    test, y_test = _two_class_proba(4000, rng.random(4000) < 0.96, 0.95)
    ece_weighted = expected_calibration_error(y_test, weighted.apply(test), classes)
    ece_unweighted = expected_calibration_error(y_test, unweighted.apply(test), classes)
    assert ece_weighted < 0.05 < ece_unweighted


def test_a_few_heavy_weights_never_sharpen_the_model_or_fit_biases():
    rng = np.random.default_rng(1)
    # under-confident predictions (60 %, always right) would be sharpened with 100 labels...
    oof, y = _two_class_proba(100, np.ones(100, bool), 0.6)
    classes = np.array([0, 1])
    assert fit_calibration(y, classes, oof).temperature < 1.0
    # ...but when 8 labels carry nearly all the weight, they count as about 8
    q = np.r_[np.full(8, 1 / 600), np.full(92, 0.5)]
    w = calibration_weights(None, q, np.full(100, 600.0))
    assert effective_size(w) < calibration_module.MIN_FOR_SHARPENING
    fitted = fit_calibration(y, classes, oof, weights=w)
    assert fitted.temperature >= 1.0
    assert not np.any(fitted.bias)
    assert rng is not None


def test_the_learner_hands_each_labels_selection_probability_to_the_calibration(monkeypatch):
    rng = np.random.default_rng(2)
    n = 60
    X = np.r_[rng.normal(0, 1, (n // 2, 4)), rng.normal(3, 1, (n // 2, 4))].astype(np.float32)
    truth = np.r_[np.zeros(n // 2, int), np.ones(n // 2, int)]
    image_ids = np.arange(100, 100 + n)
    labelled = list(range(0, n, 2))
    labels = {int(image_ids[r]): int(truth[r]) for r in labelled}
    # picks with a recorded probability on every other labelled image; event ids give the order
    picks = {int(image_ids[r]): (k, (0.05 if k % 2 else None), (float(n - k) if k % 2 else None))
             for k, r in enumerate(labelled)}
    snapshot = learner.Snapshot(image_ids, X, labels, set(), set(labels), np.array([0, 1]), {0: "ok", 1: "dent"},
                                learner.LearnerSettings(), ("test", 1), picks=picks)
    rows, _, _ = snapshot.labelled_rows()
    q, pool = snapshot.pick_probabilities(rows)
    expected = [picks[int(image_ids[r])] for r in rows]
    np.testing.assert_array_equal(np.isfinite(q), [e[1] is not None for e in expected])
    np.testing.assert_allclose(pool[np.isfinite(pool)], [e[2] for e in expected if e[2] is not None])
    seen = {}
    real = learner.calibrate_model

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(learner, "calibrate_model", spy)
    fitted = learner.fit(snapshot)
    np.testing.assert_allclose(seen["selection_probability"], q)
    np.testing.assert_allclose(seen["pool_size"], pool)
    assert "selection probability" in fitted.model.calibration.basis


def _classes_in_a_subspace(rng, n_per_class: int, basis: np.ndarray, means: np.ndarray, noise: float = 0.05):
    """Rows of 3 classes that vary only within the span of ``basis`` (plus a little noise)."""
    rows, labels = [], []
    for c, m in enumerate(means):
        coords = m + rng.normal(0, 1.0, (n_per_class, basis.shape[0]))
        rows.append(coords @ basis + rng.normal(0, noise, (n_per_class, basis.shape[1])))
        labels.append(np.full(n_per_class, c))
    return np.vstack(rows), np.concatenate(labels)


def test_a_near_kind_outside_the_labelled_subspace_is_novel_and_the_familiar_kinds_are_not():
    rng = np.random.default_rng(3)
    d, r = 40, 4
    basis = np.linalg.qr(rng.normal(size=(d, r)))[0].T  # r orthonormal rows
    means = rng.normal(0, 4.0, (3, r))
    X, y = _classes_in_a_subspace(rng, 60, basis, means)
    familiar, _ = _classes_in_a_subspace(rng, 40, basis, means)
    # a new kind: like class 0 within the subspace, but moved a little in a direction no labelled
    # image varies in (a small distance next to the classes' spread, many times the noise)
    off = rng.normal(size=d)
    off -= basis.T @ (basis @ off)
    off /= np.linalg.norm(off)
    stranger = _classes_in_a_subspace(rng, 40, basis, means[:1])[0] + 0.6 * off
    mean, scale = np.zeros(d), np.ones(d)
    classes = np.array([0, 1, 2])
    with_subspace = fit_novelty(X, mean, scale, y=y, classes=classes, subspace=True)
    knn_only = fit_novelty(X, mean, scale, y=y, classes=classes, subspace=False)
    assert with_subspace.subspaces and with_subspace.combine == "rms"
    assert not knn_only.subspaces and knn_only.combine == "max"
    assert with_subspace.is_novel(stranger).mean() >= 0.9
    assert with_subspace.is_novel(familiar).mean() <= 0.2
    assert with_subspace.is_novel(stranger).mean() > knn_only.is_novel(stranger).mean()



def test_subspace_novelty_survives_the_model_file_and_old_files_still_score_as_before(novelty_via_model_file):
    rng = np.random.default_rng(4)
    X = rng.normal(size=(80, 12))
    y = np.arange(80) % 2
    new = rng.normal(size=(30, 12)) * 1.5
    proba = np.tile([0.7, 0.3], (30, 1))
    model = fit_novelty(X, np.zeros(12), np.ones(12), y=y, classes=np.array([0, 1]), blocks=[5, 7], subspace=True)
    assert len(model.subspaces) == 2
    np.testing.assert_allclose(novelty_via_model_file(model).scores(new, proba), model.scores(new, proba), rtol=1e-6)
    # a file from before the subspace scores: no "subspace" or "combine" in its header
    old = fit_novelty(X, np.zeros(12), np.ones(12), y=y, classes=np.array([0, 1]), blocks=[5, 7], subspace=False)
    header = {k: v for k, v in old.to_header().items() if k not in ("subspace", "combine")}
    loaded = NoveltyModel.from_file(header, old.arrays())
    assert loaded.combine == "max" and not loaded.subspaces
    np.testing.assert_allclose(loaded.scores(new, proba), old.scores(new, proba), rtol=1e-6)


def test_subspace_novelty_arrays_that_do_not_fit_are_refused():
    rng = np.random.default_rng(5)
    X = rng.normal(size=(60, 6))
    model = fit_novelty(X, np.zeros(6), np.ones(6), y=np.arange(60) % 3, classes=np.array([0, 1, 2]), subspace=True)
    header, arrays = model.to_header(), model.arrays()
    broken = dict(arrays, novelty_subspace_0_precision=np.eye(2))
    with pytest.raises(ValueError):
        NoveltyModel.from_file(header, broken)
    missing = {k: v for k, v in arrays.items() if k != "novelty_subspace_0_scales"}
    with pytest.raises(ValueError):
        NoveltyModel.from_file(header, missing)
    with pytest.raises(ValueError):
        NoveltyModel.from_file({**header, "combine": "mean"}, arrays)


def test_a_part_called_acceptable_but_far_from_every_acceptable_label_is_novel(novelty_via_model_file):
    rng = np.random.default_rng(6)
    d = 10
    shift = np.r_[8.0, np.zeros(d - 1)]
    X = np.r_[rng.normal(0, 1, (150, d)), rng.normal(0, 1, (60, d)) + shift]
    y = np.r_[np.zeros(150, int), np.ones(60, int)]
    model = fit_novelty(X, np.zeros(d), np.ones(d), y=y, classes=np.array([0, 1]),
                        acceptable=np.array([True, False]))
    assert model.acceptable_guard > 0 and model.acceptable_columns.tolist() == [0]
    # parts like the labelled dents: called ok they are far from every ok label (an escape in the
    # making), called dent they are familiar
    dents = rng.normal(0, 1, (100, d)) + shift
    called_ok, called_dent = np.tile([0.9, 0.1], (100, 1)), np.tile([0.1, 0.9], (100, 1))
    assert model.is_novel(dents, called_ok).mean() >= 0.95
    assert model.is_novel(dents, called_dent).mean() <= 0.2
    unguarded = novelty_via_model_file(model)
    np.testing.assert_allclose(unguarded.scores(dents, called_ok), model.scores(dents, called_ok), rtol=1e-6)
    unguarded.acceptable_guard = 0.0
    guarded_scores, plain_scores = model.scores(dents, called_ok), unguarded.scores(dents, called_ok)
    assert np.all(guarded_scores >= plain_scores - 1e-6) and np.any(guarded_scores > plain_scores + 0.1)
    np.testing.assert_allclose(model.scores(dents, called_dent), unguarded.scores(dents, called_dent), rtol=1e-6)
    # ok parts called ok stay mostly familiar
    assert model.is_novel(rng.normal(0, 1, (300, d)), np.tile([0.9, 0.1], (300, 1))).mean() <= 0.15
    header = {k: v for k, v in model.to_header().items() if k != "acceptable_guard"}
    assert NoveltyModel.from_file(header, model.arrays()).acceptable_guard == 0.0
    with pytest.raises(ValueError):
        NoveltyModel.from_file(model.to_header(), {k: v for k, v in model.arrays().items()
                                                   if k != "novelty_acceptable_columns"})
