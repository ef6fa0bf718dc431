"""A model loaded from a model file: verify it, then predict image files, folders or arrays.

:func:`load_model` reads and checks the file (container, extractor, classes, arrays) and returns an
:class:`InspectorModel`, whose ``predict`` computes features exactly as the app does and returns one
:class:`Prediction` per image.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Optional, Sequence

import numpy as np

from inspector.core.model_container import ModelFileError, read_container
from inspector.core.model_predictors import PREDICTORS
from inspector.core.progress import CancelToken, ProgressCallback

# --------------------------------------------------------------------------- the loaded model


@dataclass(frozen=True)
class Prediction:
    """One image's prediction. ``error`` is set (and the rest empty) when the image was unusable."""

    source: str  # the file path, or "array[i]" for an image passed as an array
    predicted: Optional[str]
    confidence: Optional[float]
    probabilities: dict = field(default_factory=dict)  # class name -> probability
    review: Optional[bool] = None  # True when confidence is below the reject threshold
    error: Optional[str] = None


class InspectorModel:
    """A model loaded from a model file: class names, extractor, metrics, and ``predict``."""

    def __init__(self, header: dict, arrays: dict[str, np.ndarray], path: Optional[Path] = None) -> None:
        self.header = header
        self.path = path
        self._arrays = arrays
        self.spec: dict = header["model"]
        self.class_names: list[str] = [c["name"] for c in header["classes"]]
        self.class_colors: list[str] = [c.get("color", "") for c in header["classes"]]
        self.extractor_params: dict = header["extractor"]
        self.training: dict = header.get("training", {})
        self.metrics: dict = header.get("metrics", {})
        self.reject_threshold: float = float(header.get("reject_threshold", {}).get("value", 0.0))

    @property
    def kind(self) -> str:
        return self.spec["kind"]

    def predict_proba_features(self, X: np.ndarray) -> np.ndarray:
        """Return float64 probabilities (n, number of classes) for feature rows ``X``.

        Raises :class:`ModelFileError` when ``X`` has the wrong number of features.
        """
        X = np.asarray(X, dtype=np.float32)
        if X.ndim != 2 or X.shape[1] != int(self.spec["n_features"]):
            raise ModelFileError(f"expected feature rows of length {self.spec['n_features']}, got shape {X.shape}")
        out = np.zeros((X.shape[0], len(self.class_names)), dtype=np.float64)
        if X.shape[0]:
            out[:, self._arrays["columns"]] = PREDICTORS[self.kind](X, self._arrays, self.spec)
        return out

    def _extractor(self):
        from inspector.core.features import default_extractor

        return default_extractor()

    def predict(self, items, reject_below: Optional[float] = None, workers: Optional[int] = 1,
                progress: Optional[ProgressCallback] = None, cancel: Optional[CancelToken] = None) -> list[Prediction]:
        """Predict image files, folders (searched recursively) and/or images given as arrays.

        Arrays are 2-D grayscale or 3-D colour (BGR/BGRA channel order, as OpenCV reads them),
        8- or 16-bit or float. Returns one :class:`Prediction` per image in input order (folders
        expand in place); an unreadable image gets a record with ``error`` instead of raising.
        ``reject_below`` overrides the file's recommended review threshold.
        """
        if isinstance(items, (str, os.PathLike, np.ndarray)):
            items = [items]
        threshold = self.reject_threshold if reject_below is None else float(reject_below)
        sources: list[str] = []
        features: list[Optional[np.ndarray]] = []
        errors: list[Optional[str]] = []
        paths: list[tuple[int, Path]] = []
        for i, item in enumerate(items):
            if isinstance(item, np.ndarray):
                sources.append(f"array[{i}]")
                vector, error = self._array_features(item)
                features.append(vector)
                errors.append(error)
            else:
                for path in expand_paths([item]):
                    paths.append((len(sources), path))
                    sources.append(str(path))
                    features.append(None)
                    errors.append(None)
        if paths:
            from inspector.core.ingest import analyse_files

            for result in analyse_files([p for _, p in paths], workers=workers, progress=progress, cancel=cancel):
                slot = paths[result.index][0]
                features[slot] = result.features
                errors[slot] = result.error
        return self.records(sources, features, errors, threshold)

    def _array_features(self, pixels: np.ndarray) -> tuple[Optional[np.ndarray], Optional[str]]:
        from inspector.core import images

        if pixels.ndim not in (2, 3) or pixels.size == 0:
            return None, f"an image array must be 2-D (gray) or 3-D (colour), not shape {pixels.shape}"
        try:
            decoded = images._describe(np.asarray(pixels))  # same bit-depth rules as decoded files
            return np.asarray(self._extractor().features_of(decoded), np.float32), None
        except images.ImageError as exc:
            return None, str(exc)

    def records(self, sources: Sequence[str], features: Sequence[Optional[np.ndarray]],
                errors: Sequence[Optional[str]], threshold: Optional[float] = None) -> list[Prediction]:
        """Turn per-image feature vectors (None where ``errors`` says why) into predictions."""
        threshold = self.reject_threshold if threshold is None else float(threshold)
        usable = [i for i, (f, e) in enumerate(zip(features, errors)) if f is not None and e is None]
        proba = self.predict_proba_features(np.stack([features[i] for i in usable])) if usable else np.zeros((0, 0))
        out: list[Optional[Prediction]] = [None] * len(sources)
        for row, i in enumerate(usable):
            p = proba[row]
            top = int(np.argmax(p))
            confidence = float(p[top])
            out[i] = Prediction(sources[i], self.class_names[top], confidence,
                                {name: float(v) for name, v in zip(self.class_names, p)},
                                review=bool(confidence < threshold))
        for i in range(len(sources)):
            if out[i] is None:
                out[i] = Prediction(sources[i], None, None, {}, None, errors[i] or "no features")
        return out  # type: ignore[return-value]


def expand_paths(items: Iterable) -> list[Path]:
    """Files as given; folders replaced by the images below them (recursive, stable order)."""
    from inspector.core.images import walk_images

    out: list[Path] = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            out.extend(path / found.relative_path for found in walk_images(path))
        else:
            out.append(path)
    return out


def load_model(path: Path) -> InspectorModel:
    """Load and verify a model file; return an :class:`InspectorModel` ready to predict.

    Raises :class:`ModelFileError` when the file is missing, damaged, truncated, foreign, from a
    newer Inspector, or made with a different feature extractor than this Inspector computes.
    """
    path = Path(path)
    header, arrays = read_container(path)
    from inspector.core.features import default_extractor
    from inspector.core.model_checks import HEADER_FIELDS, check_fields, check_model

    check_fields(path.name, "the header", header, HEADER_FIELDS)
    ours = default_extractor().params()
    theirs = header["extractor"]
    if theirs.get("name") != ours["name"] or theirs.get("version") != ours["version"]:
        raise ModelFileError(
            f"{path.name} was made with features '{str(theirs.get('name'))[:40]}' version {str(theirs.get('version'))[:20]}, "
            f"but this Inspector computes '{ours['name']}' version {ours['version']}; export the model again with this version")
    if theirs != ours:
        raise ModelFileError(f"{path.name} was made with different feature settings than this Inspector uses; "
                             "export the model again")
    kind = header["model"].get("kind")
    if kind not in PREDICTORS:
        raise ModelFileError(f"{path.name} holds a model of unknown kind {str(kind)[:40]!r}")
    check_model(path.name, header, arrays)
    return InspectorModel(header, arrays, path)
