"""How much of an expected calibration error is the test set's sampling noise (issue 13)."""

from __future__ import annotations

import numpy as np
import pytest

from inspector.core.learning.calibration import (
    Calibration,
    confidence_level,
    ece_sampling_noise,
    fit_calibration,
    floor_words,
    reliability,
)

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


# --------------------------------------------------------------------------- what the labels can tell of the level


def test_confidence_level_gap_sign_and_its_standard_error_with_weights():
    y, proba = predictions(4000, 7, shortfall=0.1)  # over-confident by 0.1
    gap, se = confidence_level(y, proba, CLASSES)
    assert gap == pytest.approx(-0.1, abs=3 * se) and gap < 0
    small_gap, small_se = confidence_level(y[:250], proba[:250], CLASSES)
    assert small_se == pytest.approx(se * np.sqrt(4000 / 250), rel=0.25)
    # a few heavy weights carry less information than as many even ones: a larger error
    w = np.where(np.arange(250) % 10 == 0, 10.0, 0.1)
    assert confidence_level(y[:250], proba[:250], CLASSES, w)[1] > 1.5 * small_se


def test_a_calibration_states_how_well_its_labels_know_its_level_and_keeps_it_in_the_file():
    classes = np.arange(3)
    outside = []
    for seed in range(20):
        rng = np.random.default_rng(100 + seed)
        n = 260  # 60 labels' out-of-sample predictions, 200 parts held out
        y = rng.integers(0, 3, n)
        logits = rng.normal(0, 1, (n, 3))
        logits[np.arange(n), y] += 1.5
        raw = np.exp(2.0 * logits) / np.exp(2.0 * logits).sum(axis=1, keepdims=True)  # over-confident
        c = fit_calibration(y[:60], classes, raw[:60])
        assert c.level_se is not None and 0.02 < c.level_se < 0.15
        gap, _ = confidence_level(y[60:], c.apply(raw[60:]), classes)
        outside.append(abs(gap) > 2.5 * np.hypot(c.level_se, 0.03))  # 0.03: the 200 held-out parts' own
    assert np.mean(outside) <= 0.15
    again = Calibration.from_dict(c.to_dict(), 3)
    assert again.level_se == pytest.approx(c.level_se)
    before = {k: v for k, v in c.to_dict().items() if k != "level_se"}  # a file written before it
    assert Calibration.from_dict(before, 3).level_se is None


def test_every_reliability_diagram_carries_its_floor_and_says_it_in_words():
    y, proba = predictions(100, 9)  # as many out-of-sample predictions as a project at 100 labels has
    rel = reliability(y, proba, CLASSES)
    assert rel["floor"] == pytest.approx(ece_sampling_noise(y, proba, CLASSES)["floor"])
    # the ECE is the count-weighted mean gap of the diagram's own bins
    assert rel["ece"] == pytest.approx(sum(b["n"] / rel["n"] * abs(b["accuracy"] - b["confidence"])
                                           for b in rel["bins"] if b["n"]))
    assert 0.04 < rel["floor"] < 0.12  # on 100 predictions chance alone shows an ECE this large
    assert f"{rel['floor']:.3f}" in floor_words(rel) and "perfectly calibrated" in floor_words(rel)
    assert floor_words({"ece": 0.1, "n": 100}) == ""  # written before the floor was recorded
    # a damaged entry from a project or model file made elsewhere is passed over, not a crash
    for damaged in ("0.05", None, float("nan"), True, [0.05]):
        assert floor_words({"ece": 0.1, "n": 100, "floor": damaged}) == ""
    assert floor_words(None) == "" and floor_words("reliability") == ""
    assert reliability(np.array([]), np.zeros((0, 4)), CLASSES)["floor"] is None
