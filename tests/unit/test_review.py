"""Review scoring behind the gallery's filters: uncertainty order, suspected label errors, and
'find similar' nearest neighbours (pure numpy, no Qt)."""

from __future__ import annotations

import numpy as np
import pytest

from inspector.core.learning.review import (
    most_uncertain_first,
    nearest_rows,
    suspected_label_errors,
)
from inspector.core.learning.standardise import standardisation


def test_margin_order_puts_the_closest_call_first():
    proba = np.array([[0.9, 0.1], [0.55, 0.45], [0.7, 0.3], [0.5, 0.5], [0.2, 0.8]], np.float32)
    assert most_uncertain_first(proba, "margin").tolist() == [3, 1, 2, 4, 0]


def test_margin_order_uses_the_top_two_of_several_classes_and_keeps_ties_in_row_order():
    proba = np.array([[0.4, 0.35, 0.25],   # margin 0.05
                      [0.8, 0.1, 0.1],     # margin 0.7
                      [0.1, 0.45, 0.45],   # margin 0
                      [0.3, 0.3, 0.4],     # margin 0.1
                      [0.45, 0.1, 0.45]])  # margin 0, after row 2
    assert most_uncertain_first(proba, "margin").tolist() == [2, 4, 0, 3, 1]


def test_entropy_order_puts_the_flattest_prediction_first():
    proba = np.array([[1.0, 0.0, 0.0], [1 / 3, 1 / 3, 1 / 3], [0.6, 0.2, 0.2], [0.5, 0.5, 0.0]])
    assert most_uncertain_first(proba, "entropy").tolist() == [1, 2, 3, 0]


def test_unknown_uncertainty_measure_is_refused():
    with pytest.raises(ValueError):
        most_uncertain_first(np.full((2, 2), 0.5), "least_confidence")


def test_planted_mislabel_is_the_first_suspect_ordered_by_disagreement():
    rng = np.random.default_rng(3)
    n = 200
    class_ids = np.array([4, 9, 12])  # class ids are not column numbers
    truth = rng.integers(0, 3, n)
    proba = np.full((n, 3), 0.05)
    proba[np.arange(n), truth] = 0.9
    labels = class_ids[truth].copy()
    labels[::3] = -1  # unlabelled rows are never suspects
    labels[50] = 4 if truth[50] != 0 else 9  # planted mislabel: the model is sure of another class
    proba[50] = 0.0
    proba[50, [0, 1, 2]] = 0.02
    proba[50, truth[50]] = 0.96
    proba[50] /= proba[50].sum()
    labels[51] = class_ids[(truth[51] + 1) % 3]  # a milder doubt: label 0.2, other 0.6
    proba[51] = 0.2
    proba[51, truth[51]] = 0.6
    labels[52] = class_ids[truth[52]]  # the label at 0.3 is not doubted enough
    proba[52] = 0.3
    proba[52, (truth[52] + 1) % 3] = 0.4
    rows, disagreement = suspected_label_errors(labels, proba, class_ids)
    assert rows.tolist() == [50, 51]
    assert disagreement.dtype == np.float32
    assert disagreement[0] > disagreement[1] == pytest.approx(0.4)


def test_suspects_respect_the_given_thresholds_and_ignore_classes_without_a_column():
    labels = np.array([0, 1, 5, -1])
    proba = np.array([[0.3, 0.7], [0.9, 0.1], [0.0, 1.0], [1.0, 0.0]])
    assert suspected_label_errors(labels, proba, np.array([0, 1]))[0].tolist() == [1]
    rows, _ = suspected_label_errors(labels, proba, np.array([0, 1]), label_at_most=0.3, other_at_least=0.7)
    assert rows.tolist() == [1, 0]


def test_nearest_neighbour_is_the_planted_near_duplicate_and_never_the_query():
    rng = np.random.default_rng(7)
    X = rng.normal(0, 1, (1000, 12)).astype(np.float32)
    X[:, 5] *= 100.0  # a large-scale column must not dominate: features are standardised
    X[617] = X[204] + rng.normal(0, 0.01, 12).astype(np.float32)
    for metric in ("cosine", "euclidean"):
        rows, scores = nearest_rows(X, 204, k=10, metric=metric, chunk=100)
        assert rows[0] == 617
        assert 204 not in rows.tolist()
        assert len(rows) == 10 and rows.dtype == np.int64
        ranked = -scores if metric == "cosine" else scores
        assert np.all(np.diff(ranked) >= 0)  # nearest first


def test_nearest_rows_with_precomputed_statistics_and_small_matrices():
    X = np.array([[0, 0], [1, 0], [0, 1], [5, 5]], np.float32)
    stats = standardisation(X)
    rows, _ = nearest_rows(X, 0, k=10, metric="euclidean", stats=stats)
    assert sorted(rows.tolist()) == [1, 2, 3] and rows[-1] == 3  # at most n - 1 rows, query excluded
    assert nearest_rows(X[:1], 0)[0].size == 0
    with pytest.raises(ValueError):
        nearest_rows(X, 4)
