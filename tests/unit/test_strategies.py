"""Each strategy on small synthetic pools, asserting the behaviour that defines it."""

import numpy as np
import pytest

from inspector.core.errors import UserError
from inspector.core.learning.models import fit_model
from inspector.core.learning.strategies import (
    DEFAULT_STRATEGY,
    STRATEGIES,
    entropy_scores,
    expected_gradient_length_scores,
    get_strategy,
    k_center_greedy,
    margins,
    mean_kl_to_consensus_scores,
    strategy_names,
    vote_entropy_scores,
)


class FixedModel:
    """A stand-in model with fixed probabilities (strategies only call predict_proba / scaled)."""

    def __init__(self, proba, classes=(0, 1, 2)):
        self.proba = np.asarray(proba, dtype=np.float32)
        self.classes = np.asarray(classes)
        self.seen_classes = self.classes
        self.unseen_classes = np.zeros(0, int)
        self.estimator = None

    def predict_proba(self, X):
        return self.proba[: len(X)]

    def scaled(self, X):
        return np.asarray(X, np.float32)


def blobs(n_per=40, centres=((0, 0), (6, 0), (0, 6)), seed=0, scale=1.0):
    rng = np.random.default_rng(seed)
    X = np.vstack([rng.normal(c, scale, (n_per, 2)) for c in centres]).astype(np.float32)
    y = np.repeat(np.arange(len(centres)), n_per)
    return X, y


def test_registry_lists_default_first_and_rejects_unknown():
    names = strategy_names()
    assert names[0] == DEFAULT_STRATEGY
    assert {"random", "least_confidence", "margin", "entropy", "committee", "expected_change", "k_center",
            "kmeans_pp", "cold_start"} <= set(names)
    with pytest.raises(UserError):
        get_strategy("nope")


def test_every_strategy_has_the_common_shape_and_never_picks_labelled():
    X, y = blobs()
    labelled = np.array([0, 1, 40, 41, 80, 81])
    model = fit_model(X[labelled], y[labelled], np.arange(3))
    for name, strategy in STRATEGIES.items():
        sel = strategy(model, X, labelled, 10, 0)
        assert sel.name == name
        assert len(sel.indices) == len(sel.scores) == len(sel.reasons) == len(sel.audit) == 10
        assert len(set(sel.indices.tolist())) == 10
        assert not set(sel.indices.tolist()) & set(labelled.tolist())
        assert all(isinstance(r, str) and r for r in sel.reasons)


def test_margin_picks_the_smallest_top_two_gap():
    proba = np.array([[0.9, 0.05, 0.05], [0.5, 0.46, 0.04], [0.4, 0.3, 0.3], [0.34, 0.33, 0.33], [0.7, 0.2, 0.1]])
    sel = get_strategy("margin")(FixedModel(proba), np.zeros((5, 2)), None, 2, 0, audit_share=0)
    assert sel.indices.tolist() == [3, 1]
    assert sel.reasons[0] == "uncertain: margin 0.01"
    np.testing.assert_allclose(margins(proba), [0.85, 0.04, 0.1, 0.01, 0.5], atol=1e-6)


def test_least_confidence_and_entropy_rank_as_defined():
    proba = np.array([[0.9, 0.05, 0.05], [0.5, 0.5, 0.0], [0.34, 0.33, 0.33], [0.6, 0.2, 0.2]])
    lc = get_strategy("least_confidence")(FixedModel(proba), np.zeros((4, 2)), None, 1, 0, audit_share=0)
    assert lc.indices.tolist() == [2]
    ent = get_strategy("entropy")(FixedModel(proba), np.zeros((4, 2)), None, 2, 0, audit_share=0)
    assert ent.indices.tolist() == [2, 3]  # uniform-ish first; [0.5, 0.5, 0] has entropy log 2 < [0.6,.2,.2]
    assert entropy_scores(proba)[2] == pytest.approx(np.log(3), abs=1e-3)


def test_committee_scores_disagreement():
    agree = np.array([[[0.9, 0.1]], [[0.9, 0.1]], [[0.9, 0.1]]])
    split = np.array([[[0.9, 0.1]], [[0.1, 0.9]], [[0.9, 0.1]]])
    members = np.concatenate([agree, split], axis=1)  # (members, 2 points, 2 classes)
    assert vote_entropy_scores(members)[0] == 0
    assert vote_entropy_scores(members)[1] > 0.6
    kl = mean_kl_to_consensus_scores(members)
    assert kl[0] == pytest.approx(0, abs=1e-9) and kl[1] > 0.1


def test_committee_queries_between_classes():
    X, y = blobs(scale=0.8)
    labelled = np.r_[0:5, 40:45]  # classes 0 and 1 only -> boundary around x = 3
    X = np.vstack([X, [[3.0, 0.0]]]).astype(np.float32)  # a point right on the boundary
    model = fit_model(X[labelled], y[labelled], np.arange(2))
    pool_mask = np.zeros(len(X), bool)
    pool_mask[labelled] = True
    pool_mask[80:120] = True  # keep the third blob out of the way
    sel = get_strategy("committee")(model, X, pool_mask, 3, 0, audit_share=0, disagreement="vote_entropy")
    assert len(X) - 1 in sel.indices.tolist()
    assert sel.reasons[0].startswith("committee disagreement ")


def test_expected_gradient_length_closed_form_matches_numeric_gradient():
    X, y = blobs()
    model = fit_model(X[::4], y[::4], np.arange(3))
    x = X[5:6]
    p = model.predict_proba(x)[0].astype(np.float64)
    z = np.r_[model.scaled(x)[0], 1.0]
    expected = sum(p[k] * np.linalg.norm(np.outer(p - np.eye(3)[k], z)) for k in range(3))
    got = expected_gradient_length_scores(model, x, p[None].astype(np.float32))[0]
    assert got == pytest.approx(expected, rel=1e-4)
    sel = get_strategy("expected_change")(model, X, np.arange(0, 120, 4), 5, 0, audit_share=0)
    scores = expected_gradient_length_scores(model, X, model.predict_proba(X))
    scores[np.arange(0, 120, 4)] = -1
    assert set(sel.indices.tolist()) == set(np.argsort(-scores)[:5].tolist())


def test_k_center_picks_far_apart_points():
    corners = np.array([[0, 0], [10, 0], [0, 10], [10, 10]], np.float32)
    rng = np.random.default_rng(1)
    near = (corners[rng.integers(0, 4, 60)] + rng.normal(0, 0.2, (60, 2))).astype(np.float32)
    Z = np.vstack([near, corners])
    chosen = k_center_greedy(Z, 4, first=0)
    picked = Z[chosen]
    # one pick near each corner
    assert sorted({int(np.argmin(((corners - p) ** 2).sum(1))) for p in picked}) == [0, 1, 2, 3]
    # with the labelled set as reference, it goes away from it
    X = Z
    labelled = np.flatnonzero(np.linalg.norm(X - [0, 0], axis=1) < 2)
    sel = get_strategy("k_center")(None, X, labelled, 1, 0, audit_share=0)  # no model -> cold start
    sel2 = STRATEGIES["k_center"].chooser
    assert sel.indices.size == 1 and sel2 is not None


def test_k_center_strategy_avoids_labelled_region():
    X, y = blobs(n_per=50, centres=((0, 0), (8, 0), (0, 8), (8, 8)))
    y = y % 2
    labelled = np.r_[0:10, 50:60]  # blobs 0 and 1 labelled
    model = fit_model(X[labelled], y[labelled], np.arange(2))
    sel = get_strategy("k_center")(model, X, labelled, 2, 0, audit_share=0)
    blob = sel.indices // 50
    assert set(blob.tolist()) == {2, 3}
    assert sel.reasons == ["diverse: far from labelled"] * 2


def test_kmeans_pp_spreads_over_clusters():
    X, _ = blobs(n_per=50, centres=((0, 0), (20, 0), (0, 20), (20, 20)), scale=0.5)
    model = fit_model(X[[0, 50]], np.array([0, 1]), np.arange(2))
    sel = get_strategy("kmeans_pp")(model, X, [0, 50], 4, 0, audit_share=0)
    assert len(set((sel.indices // 50).tolist())) >= 3


def test_default_spreads_batch_over_uncertain_shortlist():
    # boundary between two classes runs along x = 0; many duplicates of one uncertain point
    rng = np.random.default_rng(0)
    X = np.vstack([rng.normal([-3, 0], 0.5, (50, 2)), rng.normal([3, 0], 0.5, (50, 2)),
                   np.tile([[0.0, 0.0]], (20, 1)), [[0.0, 5.0], [0.0, -5.0], [0.0, 10]]]).astype(np.float32)
    y = np.r_[np.zeros(50, int), np.ones(50, int)]
    labelled = np.r_[0:10, 50:60]
    model = fit_model(X[labelled], y[labelled], np.arange(2))
    margin_sel = get_strategy("margin")(model, X, labelled, 4, 0, audit_share=0)
    default_sel = get_strategy("uncertain_diverse")(model, X, labelled, 4, 0, audit_share=0)
    spread = lambda idx: len({tuple(np.round(X[i], 3)) for i in idx})
    assert spread(default_sel.indices) > spread(margin_sel.indices) or spread(default_sel.indices) == 4
    assert all(np.abs(X[default_sel.indices, 0]) < 1.5)  # still on the boundary
    assert default_sel.reasons[0].startswith("uncertain + diverse: margin")


def test_cold_start_finds_planted_rare_cluster():
    rng = np.random.default_rng(3)
    common = rng.normal(0, 1, (970, 8))
    rare = rng.normal(0, 0.3, (30, 8)) + 7  # 3 % planted rare defect
    X = np.vstack([common, rare]).astype(np.float32)
    found = 0
    for seed in range(5):
        sel = get_strategy(DEFAULT_STRATEGY)(None, X, None, 10, seed, audit_share=0)
        found += bool(np.any(sel.indices >= 970))
        assert all(r.startswith("cold start:") for r in sel.reasons)
    assert found == 5
    # random 10 of 1000 hits a 3 % cluster only ~26 % of the time
    assert {"cold start: representative", "cold start: outlier"} <= set(sel.reasons)


def test_single_class_model_falls_back_to_cold_start():
    X, y = blobs()
    model = fit_model(X[:5], y[:5], np.arange(3))
    sel = get_strategy("margin")(model, X, np.arange(5), 5, 0, audit_share=0)
    assert all(r.startswith("cold start") for r in sel.reasons)
    assert model.predict_proba(X[:2]).tolist() == [[1, 0, 0], [1, 0, 0]]


def test_default_explores_when_a_class_has_no_labels():
    X, y = blobs(n_per=40, centres=((0, 0), (6, 0), (30, 30)))
    labelled = np.r_[0:5, 40:45]
    model = fit_model(X[labelled], y[labelled], np.arange(3))  # class 2 defined but unseen
    sel = get_strategy(DEFAULT_STRATEGY)(model, X, labelled, 10, 0, audit_share=0)
    assert any(r.startswith("explore") for r in sel.reasons)
    assert np.any(sel.indices >= 80)


def test_while_a_class_is_unseen_only_the_exploring_picks_stay_as_chosen():
    """Issue 14: with a class defined but not yet labelled, the default strategy's exploring picks
    keep no selection probability (they enter the estimate as known labels), while the rest of the
    batch is drawn with a recorded probability as usual, so the accuracy estimate can use it."""
    X, y = blobs(n_per=40, centres=((0, 0), (6, 0), (30, 30)))
    labelled = np.r_[0:5, 40:45]
    model = fit_model(X[labelled], y[labelled], np.arange(3))  # class 2 defined but unseen
    sel = get_strategy(DEFAULT_STRATEGY)(model, X, labelled, 10, 0, audit_share=0.2, pick_sampling=0.3)
    exploring = np.array([r.startswith("explore") for r in sel.reasons])
    assert exploring.sum() >= 1 and (~exploring & ~sel.audit).sum() >= 1
    assert np.isnan(sel.probabilities[exploring]).all() and np.isnan(sel.pool_sizes[exploring]).all()
    drawn = ~exploring & ~sel.audit
    assert np.all((sel.probabilities[drawn] > 0) & (sel.probabilities[drawn] <= 1))
    assert np.all(np.isfinite(sel.pool_sizes[drawn]))
    assert len(set(sel.indices.tolist())) == len(sel.indices)  # no image drawn twice
    # a drawn pick never takes an image an exploring pick already took: the draws exclude them
    available = len(np.setdiff1d(np.arange(len(X)), labelled)) - sel.audit.sum() - exploring.sum()
    assert sel.pool_sizes[drawn].max() == available
    # the draws stay in draw order (each one's probability depends on the draws before it)
    assert np.all(np.diff(sel.pool_sizes[drawn]) == -1)
    # without pick sampling every non-audit pick stays as chosen
    top_k = get_strategy(DEFAULT_STRATEGY)(model, X, labelled, 10, 0, audit_share=0.2, pick_sampling=0.0)
    assert np.isnan(top_k.probabilities[~top_k.audit]).all()


def test_exploring_picks_are_spread_through_the_queue():
    """The app labels the first half of a queue before it retrains: exploring picks placed first
    would make up most of the labels, not the strategy's share, and keep the estimate on the audit
    labels. They go to random places among the drawn picks instead."""
    X, y = blobs(n_per=40, centres=((0, 0), (6, 0), (30, 30)))
    labelled = np.r_[0:5, 40:45]
    model = fit_model(X[labelled], y[labelled], np.arange(3))  # class 2 defined but unseen
    in_first_half, exploring_total = 0, 0
    for seed in range(40):
        sel = get_strategy(DEFAULT_STRATEGY)(model, X, labelled, 20, seed, audit_share=0.0, pick_sampling=0.3)
        exploring = np.array([r.startswith("explore") for r in sel.reasons])
        in_first_half += int(exploring[:10].sum())
        exploring_total += int(exploring.sum())
    assert exploring_total == 40 * 6  # ceil(20 x 0.3) per batch
    # placed first, all 240 would be in the first half; at random about half are
    assert 0.35 < in_first_half / exploring_total < 0.65


def test_audit_share_is_uniform_random_from_unlabelled():
    X = np.zeros((50, 2), np.float32)
    proba = np.tile([0.5, 0.3, 0.2], (50, 1))
    proba[:5] = [0.34, 0.33, 0.33]  # margin would always pick these
    labelled = np.arange(40, 50)
    counts = np.zeros(50)
    n_batches = 2000
    for seed in range(n_batches):
        sel = get_strategy("margin")(FixedModel(proba), X, labelled, 10, seed, audit_share=0.2)
        assert sel.audit.sum() == 2
        assert all(r == "audit" for r, a in zip(sel.reasons, sel.audit) if a)
        counts[sel.indices[sel.audit]] += 1
    assert counts[40:].sum() == 0
    expected = n_batches * 2 / 40
    # each unlabelled image is an audit pick equally often (chi-square, 39 dof, p ~ 0.001 at 72)
    chi2 = ((counts[:40] - expected) ** 2 / expected).sum()
    assert chi2 < 72
    # the strategy's own picks fill the rest
    sel = get_strategy("margin")(FixedModel(proba), X, labelled, 5, 0, audit_share=0.0)
    assert sorted(sel.indices.tolist()) == [0, 1, 2, 3, 4]


def test_audit_share_expected_fraction_with_stochastic_rounding():
    X = np.zeros((100, 2), np.float32)
    total = sum(get_strategy("random")(None, X, None, 5, s, audit_share=0.1).audit.sum() for s in range(400))
    assert 0.07 < total / 2000 < 0.13


def test_batch_larger_than_pool_and_empty_pool():
    X, y = blobs(n_per=4)
    model = fit_model(X, y, np.arange(3))
    sel = get_strategy(DEFAULT_STRATEGY)(model, X, np.arange(10), 10, 0)
    assert sorted(sel.indices.tolist()) == [10, 11]
    assert len(get_strategy(DEFAULT_STRATEGY)(model, X, np.arange(12), 10, 0)) == 0
