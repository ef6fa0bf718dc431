"""The two pieces of logic in tests/benchmarks/bench_elpv_headroom.py its figures rest on: which
flip / turn each of the 8 views is (the averaged sets name them), and the per-class decision bias
fitted for macro-F1."""

import importlib.util
from pathlib import Path

import numpy as np
from sklearn.metrics import f1_score

from inspector.core.features.efficientnet import _dihedral

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_elpv_headroom.py"
_spec = importlib.util.spec_from_file_location("bench_elpv_headroom", _PATH)
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)


def test_view_sets_are_the_flips_they_name():
    image = np.arange(5 * 5 * 3, dtype=np.uint8).reshape(1, 5, 5, 3)
    views = [v[0] for v in _dihedral(image)]
    assert len(views) == 8
    assert np.array_equal(views[0], image[0])
    assert np.array_equal(views[1], image[0, :, ::-1])  # mirrored left-right
    assert np.array_equal(views[4], image[0, ::-1, ::-1])  # half turn
    assert np.array_equal(views[5], image[0, ::-1, :])  # mirrored top-bottom
    assert bench.VIEW_SETS[2] == [0, 1] and sorted(bench.VIEW_SETS[4]) == [0, 1, 4, 5]
    assert len({v.tobytes() for v in views}) == 8  # the 8 views of an asymmetric image all differ


def test_decision_bias_recovers_an_under_predicted_class():
    rng = np.random.default_rng(0)
    classes = np.array(["a", "b", "c"])
    y = classes[rng.choice(3, 600, p=[0.6, 0.3, 0.1])]
    logits = rng.normal(0, 1, (600, 3))
    logits[np.arange(600), np.searchsorted(classes, y)] += 2.0
    logits[:, 2] -= 2.5  # the rare class is almost never the argmax
    L = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    before = f1_score(y, classes[L.argmax(1)], average="macro")
    bias = bench._fit_bias(L, y, classes)
    after = f1_score(y, classes[(L + bias).argmax(1)], average="macro")
    assert bias[2] - bias[:2].mean() > 1.0  # the rare class is lifted
    assert after > before + 0.1
    assert abs(bias.mean()) < 1e-9
