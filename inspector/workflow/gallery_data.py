"""What the gallery shows, computed without Qt: which rows each filter shows and in what
order, the images two inspectors disagree on, and the images nearest to one in feature space.

Vectorised numpy over the session's arrays (labels, predictions, probabilities); the scoring
(uncertainty, suspected label errors, neighbours) lives in :mod:`inspector.core.learning.review`.
The gallery view runs the slow ones in workers and only draws their rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from inspector.core.learning.review import most_uncertain_first, nearest_rows, suspected_label_errors
from inspector.core.learning.standardise import standardisation

#: how many neighbours 'find similar' shows
SIMILAR_COUNT = 50
#: label array value of an unlabelled image (and prediction array value without a model)
NO_CLASS = -1


@dataclass(frozen=True)
class GalleryFilter:
    """What the gallery shows: ``kind`` is one of FILTER_KINDS; ``class_id`` for label/prediction."""

    kind: str = "all"
    class_id: Optional[int] = None


FILTER_KINDS = ("all", "unlabelled", "label", "prediction", "margin", "entropy", "suspected", "similar",
                "disagreements")


def disagreement_rows(project, image_ids: np.ndarray) -> tuple[np.ndarray, dict]:
    """Rows of the images two annotators labelled differently and no reviewer has settled, and
    each one's labels ``image_id -> {annotator: class_id}`` (reads every label event: a worker)."""
    from inspector.core.agreement import disagreements

    found = {d.image_id: d.labels for d in disagreements(project)}
    rows = np.flatnonzero(np.isin(image_ids, np.fromiter(found, np.int64, len(found))))
    return rows, found


def label_array(image_ids: np.ndarray, latest: dict[int, int]) -> np.ndarray:
    """Class id of each image's latest label (NO_CLASS when unlabelled), aligned with ``image_ids``."""
    out = np.full(len(image_ids), NO_CLASS, np.int64)
    if not latest or len(image_ids) == 0:
        return out
    ids = np.fromiter(latest.keys(), np.int64, len(latest))
    classes = np.fromiter(latest.values(), np.int64, len(latest))
    order = np.argsort(image_ids, kind="stable")
    pos = np.searchsorted(image_ids, ids, sorter=order)
    pos = np.minimum(pos, len(image_ids) - 1)
    rows = order[pos]
    found = image_ids[rows] == ids
    out[rows[found]] = classes[found]
    return out


def filter_rows(spec: GalleryFilter, labels: np.ndarray, proba: Optional[np.ndarray],
                class_ids: np.ndarray) -> np.ndarray:
    """Rows (indices into the session's image arrays) that ``spec`` shows, in display order.

    Filters that need a model return an empty array when ``proba`` is None. 'similar' is not
    computed here (see :func:`nearest_rows`).
    """
    n = len(labels)
    if spec.kind == "all":
        return np.arange(n, dtype=np.int64)
    if spec.kind == "unlabelled":
        return np.flatnonzero(labels == NO_CLASS)
    if spec.kind == "label":
        return np.flatnonzero(labels == int(spec.class_id))
    if proba is None or len(proba) != n:
        return np.zeros(0, np.int64)
    if spec.kind == "prediction":
        column = list(np.asarray(class_ids).tolist())
        if int(spec.class_id) not in column:
            return np.zeros(0, np.int64)
        return np.flatnonzero(np.argmax(proba, axis=1) == column.index(int(spec.class_id)))
    if spec.kind in ("margin", "entropy"):
        # only unlabelled images: uncertainty about an image already labelled is no work to do
        rows = np.flatnonzero(labels == NO_CLASS)
        return rows[most_uncertain_first(proba[rows], spec.kind)]
    if spec.kind == "suspected":
        return suspected_label_errors(labels, proba, class_ids)[0]
    raise ValueError(f"unknown gallery filter {spec.kind!r}")


def find_similar(features: np.ndarray, query_row: int, stats, metric: str):
    """Worker body: statistics (once per feature matrix) and the neighbours."""
    stats = stats if stats is not None else standardisation(features)
    rows, scores = nearest_rows(features, query_row, SIMILAR_COUNT, metric, stats)
    return stats, rows, scores
