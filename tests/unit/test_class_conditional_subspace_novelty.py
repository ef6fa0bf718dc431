"""Novelty's distance to the mean of the class a part is called (model files of format 4), beside
the distance to the nearest class mean: a new kind forced into a known class it is unlike."""

from __future__ import annotations

import numpy as np
import pytest

from inspector.core.learning.novelty import NoveltyModel, fit_novelty

D = 8


def _classes(rng, n_per_class, means, spread):
    return np.vstack([rng.normal(0, 1, (n_per_class, D)) * spread + m for m in means])


def _three_kinds(rng):
    """Three labelled kinds; kinds 0 and 1 differ only along a direction in which each of them
    hardly varies (as two defect kinds of the same look can), kind 2 along a wide one."""
    spread = np.ones(D)
    spread[0] = 0.3
    means = np.zeros((3, D))
    means[1, 0] = 3.0
    means[2, 1] = 3.0
    X = _classes(rng, 60, means, spread)
    y = np.repeat([0, 1, 2], 60)
    return X, y, means, spread



def test_a_part_unlike_the_class_it_is_called_is_novel_though_near_another_class():
    rng = np.random.default_rng(7)
    X, y, means, spread = _three_kinds(rng)
    classes = np.array([0, 1, 2])
    called_mean = fit_novelty(X, np.zeros(D), np.ones(D), y=y, classes=classes)
    nearest_mean = fit_novelty(X, np.zeros(D), np.ones(D), y=y, classes=classes, class_subspace=False)
    assert all(s.class_conditional for s in called_mean.subspaces)
    assert not any(s.class_conditional for s in nearest_mean.subspaces)
    # parts of kind 0's look that the classifier calls kind 1: near kind 0's mean, so the distance
    # to the nearest class mean sees nothing; far from kind 1's along its narrow direction
    parts = _classes(rng, 300, means[:1], spread)
    called_1 = np.tile([0.1, 0.8, 0.1], (300, 1))
    called_0 = np.tile([0.8, 0.1, 0.1], (300, 1))
    assert called_mean.is_novel(parts, called_1).mean() >= 0.9
    assert nearest_mean.is_novel(parts, called_1).mean() <= 0.8
    # called what they are, they are familiar either way; so are new parts of every labelled kind
    assert called_mean.is_novel(parts, called_0).mean() <= 0.25
    familiar = _classes(rng, 100, means, spread)
    called_right = np.repeat(np.eye(3) * 0.7 + 0.1, 100, axis=0)
    assert called_mean.is_novel(familiar, called_right).mean() <= 0.25


def test_class_conditional_subspace_survives_the_model_file_and_format_3_files_score_as_before(novelty_via_model_file):
    rng = np.random.default_rng(8)
    X, y, means, spread = _three_kinds(rng)
    classes = np.array([0, 1, 2])
    new = rng.normal(0, 1.3, (50, D))
    proba = rng.dirichlet(np.ones(3), 50)
    model = fit_novelty(X, np.zeros(D), np.ones(D), y=y, classes=classes, blocks=[3, 5])
    assert len(model.subspaces) == 2 and model.to_header()["class_subspace"]
    np.testing.assert_allclose(novelty_via_model_file(model).scores(new, proba), model.scores(new, proba), rtol=1e-6)
    # a file of format 3: no class columns, two scales per subspace, no "class_subspace" in its header
    old = fit_novelty(X, np.zeros(D), np.ones(D), y=y, classes=classes, blocks=[3, 5], class_subspace=False)
    header = {k: v for k, v in old.to_header().items() if k != "class_subspace"}
    arrays = old.arrays()
    assert not any(name.endswith("_class_columns") for name in arrays)
    loaded = NoveltyModel.from_file(header, arrays)
    assert not any(s.class_conditional for s in loaded.subspaces)
    np.testing.assert_allclose(loaded.scores(new, proba), old.scores(new, proba), rtol=1e-6)
    # its scores are those of the subspace's two distances per block alone
    assert not np.allclose(loaded.scores(new, proba), model.scores(new, proba))


def test_class_conditional_subspace_arrays_that_do_not_fit_are_refused():
    rng = np.random.default_rng(9)
    X, y, _, _ = _three_kinds(rng)
    model = fit_novelty(X, np.zeros(D), np.ones(D), y=y, classes=np.array([0, 1, 2]))
    header, arrays = model.to_header(), model.arrays()
    for broken in (dict(arrays, novelty_subspace_0_class_columns=np.array([0, 1, 7], np.int32)),  # no such class
                   dict(arrays, novelty_subspace_0_class_columns=np.array([0, 1], np.int32)),  # not one per mean
                   dict(arrays, novelty_subspace_0_scales=np.array([1.0, 1.0])),  # its scale missing
                   {k: v for k, v in arrays.items() if k != "novelty_subspace_0_class_columns"}):
        with pytest.raises(ValueError):
            NoveltyModel.from_file(header, broken)


def test_a_class_too_small_for_its_own_scale_keeps_its_mean_but_no_distance_of_its_own(novelty_via_model_file):
    rng = np.random.default_rng(10)
    X, y, means, spread = _three_kinds(rng)
    X = np.vstack([X, rng.normal(0, 1, (3, D)) + 6.0])  # three labels of a fourth kind
    y = np.r_[y, [3, 3, 3]]
    model = fit_novelty(X, np.zeros(D), np.ones(D), y=y, classes=np.array([0, 1, 2, 3]))
    sub = model.subspaces[0]
    assert sub.class_columns.tolist() == [0, 1, 2, -1] and len(sub.class_means) == 4
    parts = rng.normal(0, 1, (5, D)) + 6.0
    assert np.all(sub.distances(parts, np.full(5, 3))[2] == 0)
    assert np.all(sub.distances(parts, np.full(5, 0))[2] > 0)
    np.testing.assert_allclose(novelty_via_model_file(model).scores(parts, np.tile([0, 0, 0, 1.0], (5, 1))),
                               model.scores(parts, np.tile([0, 0, 0, 1.0], (5, 1))), rtol=1e-6)


def test_a_format_3_container_still_reads_and_its_novelty_scores_as_before(tmp_path):
    from inspector.core.modelfile import read_container, write_container
    from inspector.core.modelfile.container import FORMAT_VERSION

    assert FORMAT_VERSION >= 4
    rng = np.random.default_rng(11)
    X, y, _, _ = _three_kinds(rng)
    old = fit_novelty(X, np.zeros(D), np.ones(D), y=y, classes=np.array([0, 1, 2]), class_subspace=False)
    header = {"novelty": {k: v for k, v in old.to_header().items() if k != "class_subspace"}}
    path = write_container(tmp_path / "format3.inspector-model", header, old.arrays(), format_version=3)
    read_header, arrays = read_container(path)
    assert read_header["format_version"] == 3
    loaded = NoveltyModel.from_file(read_header["novelty"], arrays)
    new = rng.normal(0, 1.3, (40, D))
    proba = rng.dirichlet(np.ones(3), 40)
    np.testing.assert_allclose(loaded.scores(new, proba), old.scores(new, proba), rtol=1e-6)
