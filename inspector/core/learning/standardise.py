"""Feature standardisation, written once: per-column mean and spread, and the map to z-scores.

The query strategies (diversity in a standardised space), find-similar and novelty (the image
pool's spread), and the dashboard's feature map all scale features the same way: subtract each
column's mean, divide by its standard deviation, and leave a constant column unscaled."""

from __future__ import annotations

from typing import Callable

import numpy as np

#: a column whose standard deviation is below this is constant: it is divided by 1, not blown up
MIN_STD = 1e-9


#: bytes of one float64 block of rows in :func:`standardisation` (a block of a fixed number of
#: rows was 300 MB at 2,294 dims, the largest allocation of a 100,000-image retrain)
BLOCK_BYTES = 32 * 2 ** 20


def standardisation(features: np.ndarray, chunk: int | None = None,
                    min_std: float = MIN_STD) -> tuple[np.ndarray, np.ndarray]:
    """Per-column mean and standard deviation of ``features`` (a column below ``min_std`` gets 1).

    Returns ``(mean, std)`` as float64 arrays of length d, computed in blocks of ``chunk`` rows
    (default: about 32 MB of float64) so a large float32 matrix is never copied whole.
    """
    n, d = features.shape
    if chunk is None:
        chunk = max(256, BLOCK_BYTES // max(1, 8 * d))
    total = np.zeros(d)
    squares = np.zeros(d)
    for start in range(0, n, chunk):
        block = features[start:start + chunk].astype(np.float64)
        total += block.sum(axis=0)
        squares += np.einsum("ij,ij->j", block, block)  # no n x d temporary for the squares
    mean = total / max(n, 1)
    std = np.sqrt(np.maximum(squares / max(n, 1) - mean * mean, 0.0))
    std[std < min_std] = 1.0
    return mean, std


def standardiser(mean: np.ndarray, std: np.ndarray, dtype=np.float32) -> Callable[[np.ndarray], np.ndarray]:
    """A function mapping rows of features to ``(x - mean) / std`` in ``dtype``."""
    mean = np.asarray(mean).astype(dtype)
    std = np.asarray(std).astype(dtype)
    return lambda rows: (np.asarray(rows, dtype=dtype) - mean) / std
