"""Novelty: how unlike every labelled image a part is.

A classifier forces every image into one of the classes it knows, often with high confidence:
a new kind of defect, the wrong product or a dirty lens comes out as "ok, 95 %". Novelty is a
second, independent question: *is there anything labelled that looks like this?*

The score is the (mean) distance from an image to its ``k`` nearest labelled images, in the
feature space standardised by the whole image pool (so every feature counts on its own spread),
divided by a reference distance taken from the labelled set itself: the leave-one-out k-nearest
distances of the labelled images (each labelled image's distance to its ``k`` nearest *other*
labelled images) at a high quantile (:data:`DEFAULT_QUANTILE`). So

- a score of 1 means "as far from the labelled images as the most isolated few percent of the
  labelled images are from each other", and
- an image is **novel** when its score is above 1.

The reference distance grows with the labelled set's own spread, so a project with a varied
line is not flagged everywhere and a uniform one flags a stranger early. The model file keeps
the standardisation, the labelled reference vectors (at most :data:`MAX_REFERENCE`, float32) and
the reference distance, all plain numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

DEFAULT_K = 1  # measured on NEU with one class left out: the nearest labelled image beats the mean of 5
#: the leave-one-out distance quantile of the labelled set that scores 1.0
DEFAULT_QUANTILE = 0.95
#: fewer labelled images than this: no novelty (distances between a handful of images say nothing)
MIN_REFERENCE = 10
#: the file keeps at most this many labelled reference vectors (a stratified random sample)
MAX_REFERENCE = 4000


@dataclass
class NoveltyModel:
    """The labelled set's reference vectors and the distance that scores 1.0."""

    mean: np.ndarray  # float64[d], standardisation of the features
    scale: np.ndarray  # float64[d]
    reference: np.ndarray  # float32[m, d], standardised labelled vectors
    reference_distance: float
    k: int = DEFAULT_K
    quantile: float = DEFAULT_QUANTILE

    def _standardise(self, X: np.ndarray) -> np.ndarray:
        return ((np.asarray(X, np.float32) - self.mean.astype(np.float32)) / self.scale.astype(np.float32))

    def scores(self, X: np.ndarray, chunk: int = 4096) -> np.ndarray:
        """Novelty score per row of ``X`` (raw features); above 1 is novel. float32."""
        X = np.asarray(X)
        out = np.empty(len(X), np.float32)
        ref = self.reference
        ref_sq = np.einsum("ij,ij->i", ref, ref)
        k = min(self.k, len(ref))
        for start in range(0, len(X), chunk):
            z = self._standardise(X[start:start + chunk])
            d2 = np.einsum("ij,ij->i", z, z)[:, None] + ref_sq[None, :] - 2.0 * (z @ ref.T)
            np.maximum(d2, 0.0, out=d2)
            nearest = np.partition(d2, k - 1, axis=1)[:, :k] if k < d2.shape[1] else d2
            out[start:start + len(z)] = np.sqrt(nearest).mean(axis=1) / self.reference_distance
        return out

    def is_novel(self, X: np.ndarray) -> np.ndarray:
        return self.scores(X) > 1.0

    def to_header(self) -> dict:
        return {"k": int(self.k), "quantile": float(self.quantile), "reference_distance": float(self.reference_distance),
                "n_reference": int(len(self.reference)),
                "method": "mean distance to the k nearest labelled images (features standardised by the image pool) "
                          "divided by reference_distance, the labelled images' own leave-one-out k-nearest distance "
                          "at the given quantile; above 1 is novel"}

    def arrays(self) -> dict[str, np.ndarray]:
        return {"novelty_mean": np.asarray(self.mean, np.float64), "novelty_scale": np.asarray(self.scale, np.float64),
                "novelty_reference": np.asarray(self.reference, np.float32)}

    @classmethod
    def from_file(cls, header: dict, arrays: dict) -> "NoveltyModel":
        """Rebuild from a model file's header part and arrays; ValueError when inconsistent."""
        mean, scale, ref = arrays["novelty_mean"], arrays["novelty_scale"], arrays["novelty_reference"]
        distance, k = float(header["reference_distance"]), int(header["k"])
        if mean.ndim != 1 or scale.shape != mean.shape or ref.ndim != 2 or ref.shape[1] != len(mean):
            raise ValueError("novelty arrays do not fit together")
        if len(ref) < 1 or not (np.isfinite(distance) and distance > 0) or k < 1 or np.any(scale <= 0):
            raise ValueError("novelty reference is not usable")
        return cls(mean, scale, ref.astype(np.float32), distance, k, float(header.get("quantile", DEFAULT_QUANTILE)))


def fit_novelty(X_labelled: np.ndarray, mean: np.ndarray, scale: np.ndarray, k: int = DEFAULT_K,
                quantile: float = DEFAULT_QUANTILE, y: Optional[np.ndarray] = None,
                max_reference: int = MAX_REFERENCE, random_state=0) -> Optional[NoveltyModel]:
    """Fit novelty on the labelled feature rows; ``mean``/``scale`` standardise the features (the
    image pool's, see :func:`inspector.core.learning.review.standardisation`).

    Returns None with fewer than :data:`MIN_REFERENCE` labelled images. Above ``max_reference``
    labels a random sample (stratified by ``y`` when given) is kept.
    """
    X_labelled = np.asarray(X_labelled)
    n = len(X_labelled)
    if n < MIN_REFERENCE:
        return None
    scale = np.where(np.asarray(scale) > 1e-9, scale, 1.0)
    rows = np.arange(n)
    if n > max_reference:
        rng = np.random.default_rng(random_state)
        rows = np.sort(rng.choice(n, max_reference, replace=False))
    model = NoveltyModel(np.asarray(mean, np.float64), np.asarray(scale, np.float64), np.zeros((0, 0), np.float32),
                         1.0, int(min(k, len(rows) - 1)), float(quantile))
    ref = model._standardise(X_labelled[rows])
    model.reference = ref
    # leave-one-out: each reference image's mean distance to its k nearest *other* references
    sq = np.einsum("ij,ij->i", ref, ref)
    loo = np.empty(len(ref), np.float64)
    kk = model.k
    for start in range(0, len(ref), 2048):
        block = ref[start:start + 2048]
        d2 = sq[start:start + len(block), None] + sq[None, :] - 2.0 * (block @ ref.T)
        np.maximum(d2, 0.0, out=d2)
        d2[np.arange(len(block)), np.arange(start, start + len(block))] = np.inf
        nearest = np.partition(d2, kk - 1, axis=1)[:, :kk]
        loo[start:start + len(block)] = np.sqrt(nearest).mean(axis=1)
    model.reference_distance = float(max(np.quantile(loo, quantile), 1e-6))
    return model
