"""Novelty scores the texture extractor's whole-image and local-pooling parts apart, so a small
mark that moves only the local part of the vector is not drowned by the wider whole-image part."""

from __future__ import annotations

import numpy as np

from inspector.core.features import get_extractor
from inspector.core.features.texture import TextureExtractor
from inspector.core.learning.novelty import NoveltyModel, feature_blocks, fit_novelty


def _part(rng: np.random.Generator, h: int = 180, w: int = 260) -> np.ndarray:
    """A brushed grey part."""
    import cv2

    noise = rng.normal(0, 1, (h, w)).astype(np.float32)
    brushed = cv2.GaussianBlur(noise, (31, 1), 0, sigmaY=0.1) * 40
    return np.clip(128 + brushed, 0, 255).astype(np.uint8)


def test_texture_novelty_blocks_cover_the_vector_and_end_in_its_local_pooling():
    texture = TextureExtractor()
    blocks = texture.novelty_blocks  # (measures dim on a probe image: before the spy)
    pooled = {}
    original = texture._pool

    def spy(*args, **kwargs):
        pooled["vector"] = original(*args, **kwargs)
        return pooled["vector"]

    texture._pool = spy
    vector = texture.extract(_part(np.random.default_rng(0)))
    widths = [width for _, width in blocks]
    assert sum(widths) == texture.dim == len(vector)
    assert len(blocks) == 4 and min(widths) > 0
    local = sum(widths[1:])
    # the three local blocks are exactly the cell pooling's output, in order
    assert local == len(pooled["vector"])
    np.testing.assert_allclose(vector[-local:], pooled["vector"].astype(np.float32), rtol=1e-6, atol=1e-6)


def test_a_combined_extractor_scores_every_part_block_apart():
    texture, cnn = get_extractor("texture"), get_extractor("cnn")
    combined = get_extractor("texture+cnn")
    assert combined.novelty_blocks == texture.novelty_blocks + [("cnn", cnn.dim)]
    assert feature_blocks("texture+cnn", combined.dim) == [w for _, w in combined.novelty_blocks]
    assert feature_blocks("texture", texture.dim) == [w for _, w in texture.novelty_blocks]
    # widths that do not fit the vector, or an unknown extractor: one block
    assert feature_blocks("texture+cnn", combined.dim + 1) == [combined.dim + 1]
    assert feature_blocks("no such extractor", 7) == [7]


def test_a_change_in_the_local_part_alone_is_novel_per_block_and_survives_the_model_file():
    texture = get_extractor("texture")
    dim = texture.dim
    blocks = feature_blocks("texture", dim)
    rng = np.random.default_rng(1)
    labelled = rng.normal(size=(60, dim))
    familiar = rng.normal(size=(30, dim))
    marked = rng.normal(size=(30, dim))
    marked[:, -blocks[-1]:] += 2.0  # only the most anomalous window's signature moves
    mean, scale = np.zeros(dim), np.ones(dim)
    whole = fit_novelty(labelled, mean, scale, blocks=[dim])
    per_block = fit_novelty(labelled, mean, scale, blocks=blocks)
    assert whole.is_novel(marked).mean() <= 0.75  # in one distance the 485 other columns drown it
    assert per_block.is_novel(marked).mean() >= 0.95
    assert per_block.is_novel(familiar).mean() <= 0.3
    again = NoveltyModel.from_file(per_block.to_header(), per_block.arrays())
    assert again.to_header()["blocks"] == blocks
    np.testing.assert_allclose(again.scores(marked), per_block.scores(marked))
