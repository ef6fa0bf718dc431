"""TextureExtractor: interface, determinism, robustness on odd inputs, sensitivity to small defects."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from inspector.core.features import TextureExtractor, get_extractor
from inspector.core.images import DecodedImage, shrink, to_gray_u8


@pytest.fixture(scope="module")
def extractor() -> TextureExtractor:
    return get_extractor("texture")


def _part(rng: np.random.Generator, size=(1000, 1000)) -> np.ndarray:
    """A brushed-metal-like surface: grain smeared horizontally, a lighting gradient."""
    h, w = size
    noise = rng.standard_normal((h, w)).astype(np.float32) * 5
    image = noise + cv2.blur(noise, (41, 1)) * 8 + np.linspace(-10, 10, w, dtype=np.float32)[None, :] + 130
    return np.clip(image, 0, 255).astype(np.uint8)


def test_interface_dim_dtype_and_params(extractor):
    assert extractor.name == "texture"
    assert isinstance(extractor.version, int) and extractor.version >= 1
    assert extractor.max_side >= 512
    assert 200 <= extractor.dim <= 512
    vector = extractor.extract(np.random.default_rng(0).integers(0, 256, (200, 200), dtype=np.uint8))
    assert vector.dtype == np.float32 and vector.shape == (extractor.dim,)
    params = extractor.params()
    assert json.loads(json.dumps(params)) == params
    assert params["max_side"] == extractor.max_side


def test_deterministic(extractor):
    image = _part(np.random.default_rng(1), (300, 420))
    first = extractor.extract(image)
    second = get_extractor("texture").extract(image.copy())
    assert np.array_equal(first, second)


@pytest.mark.parametrize(
    "shape_or_value",
    ["1x1", "constant", "3x5000", "5000x3", "2x2", "black", "white", "16bit", "float", "1x1024"],
)
def test_finite_on_odd_inputs(extractor, shape_or_value):
    rng = np.random.default_rng(2)
    if shape_or_value == "1x1":
        image = np.array([[77]], np.uint8)
    elif shape_or_value == "constant":
        image = np.full((120, 90), 128, np.uint8)
    elif shape_or_value == "3x5000":
        image = rng.integers(0, 256, (3, 5000), dtype=np.uint8)
    elif shape_or_value == "5000x3":
        image = rng.integers(0, 256, (5000, 3), dtype=np.uint8)
    elif shape_or_value == "2x2":
        image = np.array([[0, 255], [255, 0]], np.uint8)
    elif shape_or_value == "black":
        image = np.zeros((64, 64), np.uint8)
    elif shape_or_value == "white":
        image = np.full((64, 64), 255, np.uint8)
    elif shape_or_value == "16bit":
        raw = (rng.integers(0, 4096, (300, 200))).astype(np.uint16)  # 12-bit camera in 16-bit container
        image = to_gray_u8(DecodedImage(raw, 16, 1))
    elif shape_or_value == "float":
        image = rng.random((50, 70)).astype(np.float32)  # not uint8: the extractor must cope
    else:
        image = shrink(rng.integers(0, 256, (1, 3000), dtype=np.uint8), extractor.max_side)
    vector = extractor.extract(image)
    assert vector.shape == (extractor.dim,)
    assert vector.dtype == np.float32
    assert np.all(np.isfinite(vector))


def test_small_defect_moves_vector_more_than_noise(extractor):
    """A ~1 % defect in a 1,000 x 1,000 part moves the vector well beyond re-imaging noise."""
    rng = np.random.default_rng(3)
    part = _part(rng)
    noisy = np.clip(part.astype(np.int16) + rng.integers(-3, 4, part.shape), 0, 255).astype(np.uint8)
    defect = part.copy()
    cv2.line(defect, (600, 300), (680, 370), 80, 3, cv2.LINE_AA)  # a dark scratch, ~100 px box
    cv2.circle(defect, (640, 340), 8, 70, -1, cv2.LINE_AA)

    # standardise like the default model does, using a handful of OK parts as the reference
    others = [extractor.extract(_part(np.random.default_rng(10 + i))) for i in range(6)]
    ref = np.stack(others + [extractor.extract(part)])
    scale = ref.std(axis=0) + 1e-3

    base = extractor.extract(part)
    noise_move = np.linalg.norm((extractor.extract(noisy) - base) / scale)
    defect_move = np.linalg.norm((extractor.extract(defect) - base) / scale)
    assert defect_move > 3 * noise_move, (defect_move, noise_move)


def test_accepts_images_larger_than_max_side():
    small = TextureExtractor(max_side=256)
    vector = small.extract(np.random.default_rng(4).integers(0, 256, (700, 300), dtype=np.uint8))
    assert vector.shape == (small.dim,) and np.all(np.isfinite(vector))


def test_colour_input_is_converted(extractor):
    bgr = np.random.default_rng(5).integers(0, 256, (60, 80, 3), dtype=np.uint8)
    vector = extractor.extract(bgr)
    assert np.array_equal(vector, extractor.extract(cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)))
