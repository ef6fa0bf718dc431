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

**Class-conditional part.** An image can lie among the labelled images as a whole and still be
unlike every member of the class the classifier forces it into (NEU's crazing left out lands
near other textures yet far from the class it is called). So, when the caller gives the
predicted class (the argmax of the probabilities), the score is the larger of the global score
and the distance to the nearest labelled image *of that class*, divided by that class's own
leave-one-out distance at the same quantile (classes with fewer than
:data:`MIN_CLASS_REFERENCE` labelled images keep the global score only). Measured on NEU with
texture+cnn features, one class left out: crazing 1 % -> 61 %, pitted 15 % -> 75 % flagged, the
acceptable class 0 % -> 7 % (bench_confidence.py).

The reference distance grows with the labelled set's own spread, so a project with a varied
line is not flagged everywhere and a uniform one flags a stranger early. The model file keeps
the standardisation, the labelled reference vectors (at most :data:`MAX_REFERENCE`, float32) and
the reference distance, all plain numbers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np

DEFAULT_K = 1  # measured on NEU with one class left out: the nearest labelled image beats the mean of 5
#: the leave-one-out distance quantile of the labelled set that scores 1.0
DEFAULT_QUANTILE = 0.95
#: fewer labelled images than this: no novelty (distances between a handful of images say nothing)
MIN_REFERENCE = 10
#: a class needs this many labelled reference images for its own distance scale
MIN_CLASS_REFERENCE = 5
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
    #: column (class) of each reference row, and per column the class's own reference distance
    #: (0: too few members, global score only); empty: no class-conditional part
    reference_columns: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))
    class_distance: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def _standardise(self, X: np.ndarray) -> np.ndarray:
        return ((np.asarray(X, np.float32) - self.mean.astype(np.float32)) / self.scale.astype(np.float32))

    def scores(self, X: np.ndarray, proba: Optional[np.ndarray] = None, chunk: int = 4096) -> np.ndarray:
        """Novelty score per row of ``X`` (raw features); above 1 is novel. float32.

        ``proba`` (the model's probabilities for the same rows, one column per class) adds the
        class-conditional part: the distance to the predicted class's nearest members on that
        class's own scale."""
        X = np.asarray(X)
        out = np.empty(len(X), np.float32)
        # float64: |z|^2 + |r|^2 - 2 z.r cancels for near neighbours, and float32 rounding would
        # make a score depend on how many images were scored together
        ref = self.reference.astype(np.float64)
        ref_sq = np.einsum("ij,ij->i", ref, ref)
        k = min(self.k, len(ref))
        conditional = proba is not None and len(self.class_distance) > 0 and np.any(self.class_distance > 0)
        predicted = np.argmax(np.asarray(proba), axis=1) if conditional else None
        for start in range(0, len(X), chunk):
            z = self._standardise(X[start:start + chunk]).astype(np.float64)
            d2 = np.einsum("ij,ij->i", z, z)[:, None] + ref_sq[None, :] - 2.0 * (z @ ref.T)
            np.maximum(d2, 0.0, out=d2)
            nearest = np.partition(d2, k - 1, axis=1)[:, :k] if k < d2.shape[1] else d2
            block = np.sqrt(nearest).mean(axis=1) / self.reference_distance
            if conditional:
                for column in np.unique(predicted[start:start + len(z)]):
                    if column >= len(self.class_distance) or self.class_distance[column] <= 0:
                        continue
                    rows = np.flatnonzero(predicted[start:start + len(z)] == column)
                    members = d2[np.ix_(rows, np.flatnonzero(self.reference_columns == column))]
                    kc = min(k, members.shape[1])
                    near = np.partition(members, kc - 1, axis=1)[:, :kc] if kc < members.shape[1] else members
                    block[rows] = np.maximum(block[rows], np.sqrt(near).mean(axis=1) / self.class_distance[column])
            out[start:start + len(z)] = block
        return out

    def is_novel(self, X: np.ndarray, proba: Optional[np.ndarray] = None) -> np.ndarray:
        return self.scores(X, proba) > 1.0

    def to_header(self) -> dict:
        return {"k": int(self.k), "quantile": float(self.quantile), "reference_distance": float(self.reference_distance),
                "n_reference": int(len(self.reference)),
                "class_conditional": bool(len(self.class_distance) > 0),
                "method": "mean distance to the k nearest labelled images (features standardised by the image pool) "
                          "divided by reference_distance, the labelled images' own leave-one-out k-nearest distance "
                          "at the given quantile; with class_conditional, the larger of that and the distance to "
                          "the nearest labelled images of the predicted class divided by that class's own "
                          "leave-one-out distance (novelty_class_distance; 0: global only); above 1 is novel"}

    def arrays(self) -> dict[str, np.ndarray]:
        out = {"novelty_mean": np.asarray(self.mean, np.float64), "novelty_scale": np.asarray(self.scale, np.float64),
               "novelty_reference": np.asarray(self.reference, np.float32)}
        if len(self.class_distance):
            out["novelty_reference_columns"] = np.asarray(self.reference_columns, np.int32)
            out["novelty_class_distance"] = np.asarray(self.class_distance, np.float64)
        return out

    @classmethod
    def from_file(cls, header: dict, arrays: dict) -> "NoveltyModel":
        """Rebuild from a model file's header part and arrays; ValueError when inconsistent."""
        mean, scale, ref = arrays["novelty_mean"], arrays["novelty_scale"], arrays["novelty_reference"]
        distance, k = float(header["reference_distance"]), int(header["k"])
        if mean.ndim != 1 or scale.shape != mean.shape or ref.ndim != 2 or ref.shape[1] != len(mean):
            raise ValueError("novelty arrays do not fit together")
        if len(ref) < 1 or not (np.isfinite(distance) and distance > 0) or k < 1 or np.any(scale <= 0):
            raise ValueError("novelty reference is not usable")
        columns = np.asarray(arrays.get("novelty_reference_columns", np.zeros(0, np.int32)))
        class_distance = np.asarray(arrays.get("novelty_class_distance", np.zeros(0)), np.float64)
        if header.get("class_conditional") and (len(class_distance) == 0 or len(columns) == 0):
            raise ValueError("class-conditional novelty without its arrays")
        if len(class_distance):
            if columns.shape != (len(ref),) or columns.min() < 0 or columns.max() >= len(class_distance) \
                    or not np.all(np.isfinite(class_distance)) or class_distance.min() < 0:
                raise ValueError("class-conditional novelty arrays do not fit the reference")
        return cls(mean, scale, ref.astype(np.float32), distance, k, float(header.get("quantile", DEFAULT_QUANTILE)),
                   columns.astype(np.int32), class_distance)


def fit_novelty(X_labelled: np.ndarray, mean: np.ndarray, scale: np.ndarray, k: int = DEFAULT_K,
                quantile: float = DEFAULT_QUANTILE, y: Optional[np.ndarray] = None,
                max_reference: int = MAX_REFERENCE, random_state=0,
                classes: Optional[np.ndarray] = None) -> Optional[NoveltyModel]:
    """Fit novelty on the labelled feature rows; ``mean``/``scale`` standardise the features (the
    image pool's, see :func:`inspector.core.learning.review.standardisation`).

    With ``y`` (class ids) and ``classes`` (the model's class ids in column order) the
    class-conditional part is fitted too (:meth:`NoveltyModel.scores` with probabilities).

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
    if y is not None and classes is not None:
        classes = np.asarray(classes)
        labels = np.asarray(y)[rows]
        columns = np.array([int(np.flatnonzero(classes == c)[0]) for c in labels.tolist()], np.int32)
        class_distance = np.zeros(len(classes))
        for column in np.unique(columns):
            members = ref[columns == column].astype(np.float64)
            if len(members) < MIN_CLASS_REFERENCE:
                continue
            msq = np.einsum("ij,ij->i", members, members)
            d2 = np.maximum(msq[:, None] + msq[None, :] - 2.0 * (members @ members.T), 0.0)
            np.fill_diagonal(d2, np.inf)
            kc = min(kk, len(members) - 1)
            within = np.sqrt(np.partition(d2, kc - 1, axis=1)[:, :kc]).mean(axis=1)
            class_distance[column] = float(max(np.quantile(within, quantile), 1e-6))
        model.reference_columns, model.class_distance = columns, class_distance
    return model
