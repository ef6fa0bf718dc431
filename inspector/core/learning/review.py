"""Reviewing the project's images with the model: which unlabelled images it is least sure of,
which labels it doubts, and which images look alike.

No Qt here: the gallery calls these (on its worker threads for large projects), and so can tests,
benchmarks and scripts. Everything is vectorised numpy over the session's arrays, whose rows are
the project's images in one fixed order.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from inspector.core.learning.standardise import standardisation
from inspector.core.learning.strategies import entropy_scores, margins

#: a labelled image is a suspected label error when the model gives its label at most this...
SUSPECT_LABEL_AT_MOST = 0.25
#: ...and some other class at least this
SUSPECT_OTHER_AT_LEAST = 0.5


def most_uncertain_first(proba: np.ndarray, measure: str = "margin") -> np.ndarray:
    """Order of the rows of ``proba`` from the most to the least uncertain prediction.

    ``measure`` is 'margin' (smallest gap between the two highest probabilities first) or
    'entropy' (largest Shannon entropy first); ties keep their row order. Returns int64 indices
    into ``proba``. Raises ValueError for an unknown measure.
    """
    if measure == "margin":
        key = margins(proba)
    elif measure == "entropy":
        key = -entropy_scores(proba)
    else:
        raise ValueError(f"unknown uncertainty measure {measure!r}")
    return np.argsort(key, kind="stable")


def suspected_label_errors(labels: np.ndarray, proba: np.ndarray, class_ids: np.ndarray,
                           label_at_most: float = SUSPECT_LABEL_AT_MOST,
                           other_at_least: float = SUSPECT_OTHER_AT_LEAST) -> tuple[np.ndarray, np.ndarray]:
    """Rows whose label the model doubts: it gives the label at most ``label_at_most`` and
    another class at least ``other_at_least``.

    ``labels`` holds each row's class id (negative when unlabelled), ``proba`` the model's
    probabilities with one column per entry of ``class_ids``. Labels of classes the model has no
    column for cannot be judged and are never flagged. Returns ``(rows, disagreement)``: int64
    row indices and float32 disagreement (the other class's probability minus the label's),
    sorted by disagreement, most doubtful first (ties keep their row order).
    """
    column = {int(c): j for j, c in enumerate(np.asarray(class_ids).tolist())}
    lookup = np.full(max(column, default=0) + 2, -1, np.int64)
    for c, j in column.items():
        lookup[c] = j
    labelled = np.flatnonzero((labels >= 0) & (labels < len(lookup) - 1))
    cols = lookup[labels[labelled]]
    known = cols >= 0  # labels of classes the model has never seen cannot be judged
    rows, cols = labelled[known], cols[known]
    if len(rows) == 0:
        return rows, np.zeros(0, np.float32)
    p = proba[rows]
    p_label = p[np.arange(len(rows)), cols]
    others = p.copy()
    others[np.arange(len(rows)), cols] = -1.0
    p_other = others.max(axis=1)
    flagged = (p_label <= label_at_most) & (p_other >= other_at_least)
    disagreement = (p_other - p_label)[flagged]
    rows = rows[flagged]
    order = np.argsort(-disagreement, kind="stable")
    return rows[order], disagreement[order].astype(np.float32)


def nearest_rows(features: np.ndarray, query_row: int, k: int = 50, metric: str = "cosine",
                 stats: Optional[tuple[np.ndarray, np.ndarray]] = None,
                 chunk: int = 16384) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` rows most similar to ``query_row`` on standardised features, nearest first,
    without the query itself.

    ``metric`` is 'cosine' or 'euclidean'; ``stats`` is a ``(mean, std)`` from
    :func:`standardisation` (computed here when None). Returns ``(rows, scores)``: int64 rows and
    float32 scores, which are similarities for 'cosine' and distances for 'euclidean'; at most
    ``len(features) - 1`` rows. Works in chunks so no standardised copy of a large matrix is ever
    held. Raises ValueError for an unknown metric or row.
    """
    if metric not in ("cosine", "euclidean"):
        raise ValueError(f"unknown metric {metric!r}")
    n = len(features)
    if not 0 <= query_row < n:
        raise ValueError(f"row {query_row} is not in the feature matrix")
    mean, std = stats if stats is not None else standardisation(features, chunk)
    mean32, inv32 = mean.astype(np.float32), (1.0 / std).astype(np.float32)
    zq = (features[query_row] - mean32) * inv32
    zq_norm2 = float(zq @ zq)
    scores = np.empty(n, np.float32)
    for start in range(0, n, chunk):
        z = (features[start:start + chunk] - mean32) * inv32
        dots = z @ zq
        norms2 = np.einsum("ij,ij->i", z, z)
        if metric == "cosine":
            scores[start:start + len(z)] = dots / np.sqrt(np.maximum(norms2 * zq_norm2, 1e-24))
        else:
            scores[start:start + len(z)] = np.sqrt(np.maximum(norms2 - 2 * dots + zq_norm2, 0.0))
    order_key = -scores if metric == "cosine" else scores
    order_key[query_row] = np.inf
    k = min(int(k), n - 1)
    if k <= 0:
        return np.zeros(0, np.int64), np.zeros(0, np.float32)
    best = np.argpartition(order_key, k - 1)[:k]
    best = best[np.argsort(order_key[best], kind="stable")]
    return best.astype(np.int64), scores[best]
