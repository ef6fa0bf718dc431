"""The importance weights of the calibration are flattened when the labels' own held-out score says
the noise of a few heavy weights costs more than the bias the full weights remove."""

import numpy as np

from inspector.core.learning import calibration as calibration_module
from inspector.core.learning.calibration import (
    FLATTENINGS,
    calibration_weights,
    expected_calibration_error,
    fit_calibration,
)


def _over_confident(rng, n, classes=3, true_temperature=2.5):
    """Raw probabilities of a model twice and a half too sure of itself, and labels drawn from the truth."""
    logits = rng.normal(0.0, 3.0, (n, classes))
    raw = np.exp(logits - logits.max(axis=1, keepdims=True))
    raw /= raw.sum(axis=1, keepdims=True)
    true = np.exp(logits / true_temperature - (logits / true_temperature).max(axis=1, keepdims=True))
    true /= true.sum(axis=1, keepdims=True)
    y = (rng.random(n)[:, None] > np.cumsum(true, axis=1)).sum(axis=1)
    return raw, y


def _fit(y, raw, w, flattening):
    saved = calibration_module.WEIGHT_FLATTENING
    calibration_module.WEIGHT_FLATTENING = flattening
    try:
        return fit_calibration(y, np.arange(raw.shape[1]), raw, weights=w)
    finally:
        calibration_module.WEIGHT_FLATTENING = saved


def test_noisy_weights_are_flattened_and_the_calibration_holds_better_on_the_parts_to_come():
    # 80 labels whose weights are pure noise (heavy-tailed, unrelated to the labels or the
    # predictions): with the weights as they are, a handful of labels decide the temperature
    classes = np.arange(3)
    errors = {False: [], True: []}
    flattened = 0
    for seed in range(16):
        rng = np.random.default_rng(seed)
        raw, y = _over_confident(rng, 80)
        w = np.exp(rng.normal(0.0, 1.5, 80))
        test, y_test = _over_confident(rng, 2000)
        for flattening in (False, True):
            calibration = _fit(y, raw, w, flattening)
            errors[flattening].append(expected_calibration_error(y_test, calibration.apply(test), classes))
            if flattening and "flattened to the power" in calibration.basis:
                flattened += 1
    assert flattened >= 4
    assert np.mean(errors[True]) < 0.85 * np.mean(errors[False])


def test_weights_that_carry_the_shift_are_kept_whole():
    # 80 chosen labels (weight 0.024) right 60 % of the time, 40 random ones (weight 1) right 97 %:
    # the weights are what makes the calibration hold for the parts to come, and the held-out
    # score keeps them (flattening would soften the model toward the chosen labels' 60 %)
    rng = np.random.default_rng(0)
    chosen, random_ = 80, 40
    right = np.r_[rng.random(chosen) < 0.6, rng.random(random_) < 0.97]
    y = np.arange(chosen + random_) % 2
    oof = np.full((len(y), 2), 0.05)
    oof[np.arange(len(y)), np.where(right, y, 1 - y)] = 0.95
    w = calibration_weights(None, np.r_[np.full(chosen, 0.07), np.full(random_, 1 / 600)], np.full(len(y), 600.0))
    calibration = _fit(y, oof, w, True)
    assert "flattened" not in calibration.basis
    assert calibration.temperature == _fit(y, oof, w, False).temperature
    assert min(FLATTENINGS) > 0  # the weights are never dropped altogether
