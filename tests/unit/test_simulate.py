import json

import numpy as np
import pytest

from inspector.core.errors import UserError
from inspector.core.learning.simulate import SimulationSettings, simulate, stratified_split, write_outputs


def blobs(seed=0, n_per=(80, 80, 80)):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 4, (len(n_per), 6))
    y = np.repeat(np.arange(len(n_per)), n_per)
    X = (centres[y] + rng.normal(0, 1, (len(y), 6))).astype(np.float32)
    return X, y


def test_stratified_split_keeps_proportions_and_is_disjoint():
    y = np.repeat([0, 1, 2], [100, 20, 5])
    pool, test = stratified_split(y, 0.3, 0)
    assert not set(pool) & set(test) and len(pool) + len(test) == len(y)
    assert np.bincount(y[test]).tolist() == [30, 6, 2]


def test_simulate_learns_and_writes_outputs(tmp_path):
    X, y = blobs()
    settings = SimulationSettings(strategies=["uncertain_diverse", "margin"], budget=40, batch=10, initial=10, seeds=2)
    summary = simulate(X, y, ["a", "b", "c"], settings)
    assert list(summary["strategies"]) == ["uncertain_diverse", "margin", "random"]
    s = summary["strategies"]["uncertain_diverse"]
    assert s["label_counts"] == [10, 20, 30, 40]
    assert len(s["accuracy_per_seed"]) == 2 and len(s["accuracy_mean"]) == 4
    assert s["accuracy_mean"][-1] > 0.9
    assert 0 < s["area_under_accuracy_curve"] <= 1
    assert s["labels_until_every_class_seen_median"] <= 40
    assert summary["all_labels"]["accuracy"] > 0.9
    assert "audit_coverage" in s
    paths = write_outputs(summary, tmp_path / "out")
    data = json.loads(paths["summary"].read_text())
    assert data["strategies"]["random"]["label_counts"] == [10, 20, 30, 40]
    assert paths["plot"].stat().st_size > 1000
    assert paths["curves"].read_text().count("\n") == 1 + 3 * 2 * 4


def test_simulate_rejects_impossible_settings():
    X, y = blobs()
    with pytest.raises(UserError):
        simulate(X, y, ["a", "b", "c"], SimulationSettings(budget=10_000))
    with pytest.raises(UserError):
        simulate(X, y, ["a", "b", "c"], SimulationSettings(strategies=["nope"], budget=20))
