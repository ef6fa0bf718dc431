"""How much of an expected calibration error is the test set's sampling noise (issue 13)."""

from __future__ import annotations

import numpy as np
import pytest

from inspector.core.learning.calibration import ece_sampling_noise, reliability

CLASSES = np.arange(4)


def predictions(n: int, seed: int, shortfall: float = 0.0):
    """Four-class predictions whose top class is right with probability (confidence - shortfall):
    perfectly calibrated at shortfall 0, over-confident by ``shortfall`` otherwise."""
    rng = np.random.default_rng(seed)
    confidence = rng.uniform(0.3, 1.0, n)
    top = rng.integers(0, 4, n)
    proba = np.repeat(((1.0 - confidence) / 3.0)[:, None], 4, axis=1)
    proba[np.arange(n), top] = confidence
    right = rng.random(n) < np.clip(confidence - shortfall, 0.0, 1.0)
    y = np.where(right, top, (top + rng.integers(1, 4, n)) % 4)
    return y, proba


def test_a_perfectly_calibrated_model_shows_its_floor_and_a_debiased_error_near_zero():
    runs = [ece_sampling_noise(*predictions(1300, seed), CLASSES, random_state=seed) for seed in range(12)]
    ece = np.array([r["ece"] for r in runs])
    floor = np.array([r["floor"] for r in runs])
    debiased = np.array([r["debiased"] for r in runs])
    # 1,300 parts in 10 bins: the plain ECE of a perfect model is a few hundredths, all noise
    assert 0.015 < floor.mean() < 0.04
    assert ece.mean() == pytest.approx(floor.mean(), abs=0.006)
    assert np.all(floor <= np.array([r["floor_95"] for r in runs]))
    assert abs(debiased.mean()) < 0.01
    assert ece.mean() > 2 * abs(debiased.mean())


def test_a_miscalibrated_model_stands_out_of_its_floor_and_keeps_its_error_when_debiased():
    runs = [ece_sampling_noise(*predictions(1300, seed, shortfall=0.1), CLASSES, random_state=seed)
            for seed in range(6)]
    for r in runs:
        assert r["ece"] > r["floor_95"]
        assert r["debiased"] == pytest.approx(0.1, abs=0.03)


def test_the_plain_figure_is_the_reliability_diagrams_ece_and_the_noise_is_seeded():
    y, proba = predictions(400, 3)
    noise = ece_sampling_noise(y, proba, CLASSES, random_state=5)
    assert noise["ece"] == pytest.approx(reliability(y, proba, CLASSES)["ece"])
    assert noise == ece_sampling_noise(y, proba, CLASSES, random_state=5)
    assert noise["n"] == 400
    assert ece_sampling_noise(np.array([]), np.zeros((0, 4)), CLASSES)["floor"] is None
