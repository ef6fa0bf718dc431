import numpy as np
import pytest

from inspector.core.errors import UserError
from inspector.core.learning.models import MODEL_KINDS, fit_model, make_model


def data(n=300, d=20, k=4, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 3, (k, d))
    y = rng.integers(0, k, n)
    X = (centres[y] + rng.normal(0, 1, (n, d))).astype(np.float32)
    return X, y


@pytest.mark.parametrize("kind", MODEL_KINDS)
def test_make_model_is_balanced_pipeline(kind):
    model = make_model(kind, random_state=3)
    assert model.steps[0][0] == "scale"
    assert model.named_steps["classify"].get_params()["class_weight"] == "balanced"


def test_unknown_kind_is_a_user_error():
    with pytest.raises(UserError):
        make_model("boosting")


@pytest.mark.parametrize("kind", MODEL_KINDS)
def test_full_class_columns_even_for_unlabelled_classes(kind):
    X, y = data()
    y = np.where(y == 3, 0, y)  # class 3 never labelled; class ids 10..13
    classes = np.array([10, 11, 12, 13])
    model = fit_model(X, classes[y], classes, kind=kind)
    p = model.predict_proba(X[:7])
    assert p.shape == (7, 4)
    np.testing.assert_allclose(p.sum(axis=1), 1, atol=1e-5)
    assert np.all(p[:, 3] == 0)
    assert set(model.predict(X)) <= {10, 11, 12}
    assert model.unseen_classes.tolist() == [13]


def test_logistic_fast_path_matches_sklearn():
    X, y = data()
    model = fit_model(X, y, np.arange(4))
    np.testing.assert_allclose(model.predict_proba(X), model.estimator.predict_proba(X), atol=1e-4)


def test_binary_logistic_fast_path():
    X, y = data(k=2)
    model = fit_model(X, y, np.arange(3))
    np.testing.assert_allclose(model.predict_proba(X)[:, :2], model.estimator.predict_proba(X), atol=1e-4)


def test_warm_start_gives_the_same_model():
    X, y = data(n=2000, d=64, k=6)
    cold = fit_model(X[:1900], y[:1900], np.arange(6))
    warm = fit_model(X, y, np.arange(6), warm_start_from=cold)
    fresh = fit_model(X, y, np.arange(6))
    assert np.mean(warm.predict(X) == fresh.predict(X)) > 0.99


def test_svm_with_one_label_per_class_still_gives_probabilities():
    X, y = data()
    rows = [int(np.flatnonzero(y == c)[0]) for c in range(4)]
    model = fit_model(X[rows], y[rows], np.arange(4), kind="svm")
    p = model.predict_proba(X)
    np.testing.assert_allclose(p.sum(axis=1), 1, atol=1e-5)


def test_training_a_few_thousand_labels_learns_every_class():
    # Its speed is measured by tests/benchmarks/bench_query.py, not asserted here (shared machines).
    X, y = data(n=3000, d=128, k=6)
    model = fit_model(X, y, np.arange(6))
    assert set(model.seen_classes.tolist()) == set(range(6))
    assert np.mean(model.predict(X) == y) > 0.95


def test_no_labels_is_a_user_error():
    with pytest.raises(UserError):
        fit_model(np.zeros((0, 3)), np.zeros(0, int), np.arange(2))
