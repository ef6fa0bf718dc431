"""The extractor registry and the contract every extractor keeps (name, version, dim, params,
describe, features_of on a DecodedImage); the texture extractor's output is unchanged by the
move into the ``features`` package."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from inspector.core.errors import UserError
from inspector.core.features import (DEFAULT_EXTRACTOR, TextureExtractor, default_extractor, extractor_names,
                                     get_extractor)
from inspector.core.images import _describe

REFERENCE = Path(__file__).parent / "data" / "texture_v2_reference.npy"


def reference_images() -> list[np.ndarray]:
    """A grey part with a thin dark scratch, its colour, 16-bit and alpha versions."""
    rng = np.random.default_rng(5)
    grey = (rng.random((300, 700)) * 60 + 100).astype(np.uint8)
    cv2.line(grey, (50, 40), (600, 200), 30, 2)
    colour = np.dstack([grey, grey // 2, 255 - grey]).astype(np.uint8)
    deep = grey.astype(np.uint16) * 16
    alpha = np.dstack([colour, np.full_like(grey, 200)])
    return [grey, colour, deep, alpha]


def test_names_default_first_and_unique():
    names = extractor_names()
    assert names[0] == DEFAULT_EXTRACTOR
    assert len(set(names)) == len(names) and "texture" in names
    assert default_extractor() is get_extractor(DEFAULT_EXTRACTOR)


def test_unknown_name_is_refused_naming_the_available_ones():
    with pytest.raises(UserError) as caught:
        get_extractor("no-such-features")
    message = str(caught.value)
    assert "no-such-features" in message
    assert all(name in message for name in extractor_names())


@pytest.mark.parametrize("name", extractor_names())
def test_every_extractor_keeps_the_contract(name):
    extractor = get_extractor(name)
    assert extractor.name == name
    assert isinstance(extractor.version, int) and extractor.version >= 1
    params = extractor.params()
    assert json.loads(json.dumps(params)) == params
    assert params["name"] == name and params["version"] == extractor.version
    line = extractor.describe()
    assert isinstance(line, str) and line and "\n" not in line
    decoded = [_describe(image) for image in reference_images()]
    vector = extractor.features_of(decoded[0])
    assert vector.dtype == np.float32 and vector.shape == (extractor.dim,)
    assert np.all(np.isfinite(vector))
    batch = extractor.features_of_batch(decoded)
    assert batch.shape == (len(decoded), extractor.dim) and batch.dtype == np.float32
    assert np.allclose(batch[0], vector, rtol=1e-5, atol=1e-5)
    assert extractor.features_of_batch([]).shape == (0, extractor.dim)


def test_texture_output_unchanged_by_the_package_move():
    """Vectors computed by the texture extractor before it moved (saved then) are reproduced."""
    extractor = get_extractor("texture")
    assert isinstance(extractor, TextureExtractor) and extractor.version == 2
    now = np.stack([extractor.features_of(_describe(image)) for image in reference_images()])
    before = np.load(REFERENCE, allow_pickle=False)
    assert now.shape == before.shape
    assert np.allclose(now, before, rtol=1e-4, atol=1e-4)
