"""The calibration states how close its out-of-sample basis is to the model it describes (issue 13).

The calibration (and the ``difference`` estimator's labelled residuals) rest on predictions for
each label by a model that did not train on it: fold models of a cross-validation, or between
cross-validations the previous retrains' models. ``Calibration.basis_share`` is the smallest
share of the current labels such a model trained on; it must be the true one.
"""

from __future__ import annotations

import numpy as np

from inspector.core.learning import calibration as calibration_module
from inspector.core.learning import models as models_module
from inspector.core.learning.calibration import Calibration, calibrate_model
from inspector.core.learning.models import fit_model


def blobs(n: int, d: int = 12, k: int = 3, seed: int = 0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0.0, 1.5, (k, d))
    y = rng.integers(0, k, n)
    return (centres[y] + rng.normal(0.0, 1.0, (n, d))).astype(np.float32), y.astype(np.int64)


def test_basis_share_is_the_smallest_training_set_behind_any_out_of_sample_prediction(monkeypatch):
    """Retrained every 10 labels from 20 to 140 (as the app does between queue batches): at each
    retrain the stated share equals the one counted from the fits the cross-validations made and
    the previous models' label counts; a stale basis shows a share well below a fresh one."""
    calibration_module.forget_out_of_fold_memory()
    fits = []
    real_fit = models_module.fit_model
    monkeypatch.setattr(models_module, "fit_model", lambda X, y, *a, **k: fits.append(len(y)) or real_fit(X, y, *a, **k))
    X, y = blobs(140, seed=3)
    classes = np.array([0, 1, 2])
    smallest = None  # labels behind the weakest out-of-sample prediction so far
    shares, fresh = [], []
    previous_n = None
    for n in range(20, 141, 10):
        model = real_fit(X[:n], y[:n], classes)
        fits.clear()
        calibrate_model(model, X[:n], y[:n])
        if fits:  # a cross-validation: each row predicted by the fold model that left it out
            smallest = min(fits)
            fresh.append(model.calibration.basis_share)
        else:  # earlier rows keep their predictions, the new ones come from the previous model
            smallest = min(smallest, previous_n)
        previous_n = n
        shares.append(model.calibration.basis_share)
        assert model.calibration.basis_share == smallest / n
        assert f"{smallest / n:.0%} of the labels" in model.calibration.basis
    calibration_module.forget_out_of_fold_memory()
    assert min(fresh) >= 0.75  # a fresh 5-fold basis: 80 % of the labels, give or take a fold's rounding
    limit = (1 - 1 / calibration_module.OUT_OF_FOLD_FOLDS) / (1 + calibration_module.REFRESH_GROWTH)
    assert min(shares) >= limit - 0.05
    assert min(shares) < min(fresh) - 0.1  # the reuse between cross-validations shows


def test_basis_share_survives_the_model_file_round_trip_and_older_files_have_none():
    calibration_module.forget_out_of_fold_memory()
    X, y = blobs(60, seed=4)
    model = fit_model(X, y, np.array([0, 1, 2]))
    calibrate_model(model, X, y, reuse=False)
    share = model.calibration.basis_share
    assert 0.75 <= share < 1.0
    again = Calibration.from_dict(model.calibration.to_dict(), 3)
    assert again.basis_share == share
    older = {k: v for k, v in model.calibration.to_dict().items() if k != "basis_share"}
    assert Calibration.from_dict(older, 3).basis_share is None
    calibration_module.forget_out_of_fold_memory()
