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

from inspector.core.modelfile.container import ModelFileError, read_container
from inspector.core.modelfile.predictors import PREDICTORS
from inspector.core.progress import CancelToken, ProgressCallback

# --------------------------------------------------------------------------- the loaded model


@dataclass
class ModelConfidence:
    """What a model file says about trusting its predictions: calibration, acceptable classes,
    novelty and the decision rule (files from before calibration have none of it and keep the
    old rule: review when the top probability is below the threshold)."""

    calibration: Optional[object] = None  # learning.calibration.Calibration
    acceptable_columns: Optional[np.ndarray] = None  # bool per class; None: legacy file
    novelty: Optional[object] = None  # learning.novelty.NoveltyModel

    @classmethod
    def from_file(cls, header: dict, arrays: dict, n_classes: int) -> "ModelConfidence":
        """Read from a model file; raises KeyError/TypeError/ValueError on inconsistent values."""
        from inspector.core.learning.calibration import Calibration
        from inspector.core.learning.novelty import NoveltyModel

        out = cls()
        if header.get("probability_calibration") is not None:
            out.calibration = Calibration.from_dict(header["probability_calibration"], n_classes)
        if "review_rule" in header:
            names = [c["name"] for c in header["classes"]]
            acceptable = header.get("acceptable_classes") or []
            if not isinstance(acceptable, list) or any(a not in names for a in acceptable):
                raise ValueError("acceptable classes are not classes of the model")
            out.acceptable_columns = np.array([n in acceptable for n in names], bool)
        if header.get("novelty") is not None:
            out.novelty = NoveltyModel.from_file(header["novelty"], arrays)
        return out

    def decide(self, proba: np.ndarray, novelty: Optional[np.ndarray], threshold: Optional[float]):
        """``(path, review, reasons, p_acceptable)`` per row of calibrated ``proba``."""
        from inspector.core.learning import routing

        proba = np.asarray(proba, np.float64)
        if self.acceptable_columns is None:  # a file from before the escape-safe rule
            confidence = proba.max(axis=1) if len(proba) else np.zeros(0)
            review = confidence < (threshold or 0.0)
            path = np.where(review, routing.REVIEW, routing.PASS)
            return path, review, [routing.REASON_LOW if r else "" for r in review], confidence
        novel = None if novelty is None else np.asarray(novelty) > 1.0
        path, review, reasons = routing.route(proba, self.acceptable_columns, threshold, novel)
        return path, review, reasons, routing.acceptable_probability(proba, self.acceptable_columns)



@dataclass(frozen=True)
class Prediction:
    """One image's prediction. ``error`` is set (and the rest empty) when the image was unusable."""

    source: str  # the file path, or "array[i]" for an image passed as an array
    predicted: Optional[str]
    confidence: Optional[float]
    probabilities: dict = field(default_factory=dict)  # class name -> calibrated probability
    review: Optional[bool] = None  # True when a person must look at the part (see review_reason)
    error: Optional[str] = None
    #: why the part goes to review: 'low confidence', 'novel', 'low confidence + novel',
    #: 'not shown safe' (+ ' + novel'); '' when it does not
    review_reason: str = ""
    novelty: Optional[float] = None  # above 1: unlike anything labelled (None: the file has no novelty)
    route: Optional[str] = None  # 'pass', 'defect' or 'review'
    p_acceptable: Optional[float] = None  # calibrated probability of an acceptable class


class InspectorModel:
    """A model loaded from a model file: class names, extractor, metrics, and ``predict``."""

    def __init__(self, header: dict, arrays: dict[str, np.ndarray], path: Optional[Path] = None,
                 extractor=None) -> None:
        self.header = header
        self.path = path
        self._arrays = arrays
        self.spec: dict = header["model"]
        self.class_names: list[str] = [c["name"] for c in header["classes"]]
        self.class_colors: list[str] = [c.get("color", "") for c in header["classes"]]
        self.extractor_params: dict = header["extractor"]
        self.training: dict = header.get("training", {})
        self.metrics: dict = header.get("metrics", {})
        threshold = (header.get("reject_threshold") or {}).get("value", 0.0)
        #: None: the model was not shown safe and routes every part to review
        self.reject_threshold: Optional[float] = None if threshold is None else float(threshold)
        self.confidence = ModelConfidence.from_file(header, arrays, len(self.class_names))
        self._feature_extractor = extractor  # the extractor named in the header (checked by load_model)

    @property
    def routes_everything_to_review(self) -> bool:
        return self.reject_threshold is None

    def novelty_scores(self, X: np.ndarray, proba: Optional[np.ndarray] = None) -> Optional[np.ndarray]:
        """Novelty per feature row (above 1: unlike anything labelled), or None without novelty.
        ``proba``: this model's probabilities for the rows (computed when not given; the
        class-conditional part needs the predicted class)."""
        if self.confidence.novelty is None:
            return None
        if proba is None and self.confidence.novelty.class_conditional:
            proba = self.predict_proba_features(X)
        return self.confidence.novelty.scores(np.asarray(X, np.float32), proba).astype(np.float64)

    def decide(self, proba: np.ndarray, novelty: Optional[np.ndarray], threshold: Optional[float] = None):
        """Route parts with calibrated ``proba`` and ``novelty`` scores: ``(path, review, reasons,
        p_acceptable)`` (see :mod:`inspector.core.learning.routing`). ``threshold`` overrides the
        file's threshold."""
        return self.confidence.decide(proba, novelty, self.reject_threshold if threshold is None else threshold)

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
            if self.confidence.calibration is not None:
                out = self.confidence.calibration.apply(out)
        return out

    def _extractor(self):
        if self._feature_extractor is None:
            from inspector.core.features import get_extractor

            self._feature_extractor = get_extractor(self.extractor_params.get("name"))
        return self._feature_extractor

    def predict(self, items, reject_below: Optional[float] = None, workers: Optional[int] = 1,
                progress: Optional[ProgressCallback] = None, cancel: Optional[CancelToken] = None) -> list[Prediction]:
        """Predict image files, folders (searched recursively) and/or images given as arrays.

        Arrays are 2-D grayscale or 3-D colour (BGR/BGRA channel order, as OpenCV reads them),
        8- or 16-bit or float. Returns one :class:`Prediction` per image in input order (folders
        expand in place); an unreadable image gets a record with ``error`` instead of raising.
        ``reject_below`` overrides the file's review threshold (also for a model not shown safe).
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

            for result in analyse_files([p for _, p in paths], workers=workers, progress=progress, cancel=cancel,
                                        extractor=self._extractor().name):
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
        X = np.stack([features[i] for i in usable]) if usable else None
        proba = self.predict_proba_features(X) if usable else np.zeros((0, len(self.class_names)))
        novelty = self.novelty_scores(X, proba) if usable else None
        path, review, reasons, p_acc = self.confidence.decide(proba, novelty, threshold)
        out: list[Optional[Prediction]] = [None] * len(sources)
        for row, i in enumerate(usable):
            p = proba[row]
            top = int(np.argmax(p))
            confidence = float(p[top])
            out[i] = Prediction(sources[i], self.class_names[top], confidence,
                                {name: float(v) for name, v in zip(self.class_names, p)},
                                review=bool(review[row]), review_reason=reasons[row],
                                novelty=None if novelty is None else float(novelty[row]), route=str(path[row]),
                                p_acceptable=float(p_acc[row]))
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


def _differences(theirs, ours, prefix: str = "") -> list[str]:
    """Dotted paths of the entries that differ between two extractor descriptions."""
    if isinstance(theirs, dict) and isinstance(ours, dict):
        out = []
        for key in sorted(set(theirs) | set(ours), key=str):
            out += _differences(theirs.get(key), ours.get(key), f"{prefix}{key}.")
        return out
    if isinstance(theirs, list) and isinstance(ours, list) and len(theirs) == len(ours):
        return [d for i, (a, b) in enumerate(zip(theirs, ours)) for d in _differences(a, b, f"{prefix}{i}.")]
    return [] if theirs == ours else [prefix.rstrip(".")]


def extractor_for_model(file_name: str, theirs) -> object:
    """This Inspector's extractor for a model file whose header describes its extractor as
    ``theirs``: the one of that name, when it computes exactly what the model was trained on
    (same version and parameters, e.g. the CNN weights' SHA-256). Raises :class:`ModelFileError`
    (one line) otherwise."""
    from inspector.core.errors import UserError
    from inspector.core.features import get_extractor

    if not isinstance(theirs, dict):
        raise ModelFileError(f"{file_name} does not name its feature extractor")
    name = str(theirs.get("name"))[:40]
    try:
        extractor = get_extractor(str(theirs.get("name")))
    except UserError:
        raise ModelFileError(f"{file_name} was made with features '{name}', which this Inspector does not offer; "
                             "use the Inspector version that exported it") from None
    ours = extractor.params()
    if theirs.get("version") != ours.get("version"):
        raise ModelFileError(
            f"{file_name} was made with features '{name}' version {str(theirs.get('version'))[:20]}, but this "
            f"Inspector computes version {ours.get('version')}; export the model again with this version")
    if theirs != ours:
        changed = _differences(theirs, ours)
        what = "weights" if any("sha" in k or "weight" in k for k in changed) else "settings"
        raise ModelFileError(f"{file_name} was made with different feature {what} than this Inspector uses "
                             f"('{name}': {', '.join(changed)[:80]}); export the model again")
    return extractor


def load_model(path: Path) -> InspectorModel:
    """Load and verify a model file; return an :class:`InspectorModel` ready to predict.

    Raises :class:`ModelFileError` when the file is missing, damaged, truncated, foreign, from a
    newer Inspector, or made with a different feature extractor than this Inspector computes.
    """
    path = Path(path)
    header, arrays = read_container(path)
    from inspector.core.modelfile.checks import HEADER_FIELDS, check_fields, check_model

    check_fields(path.name, "the header", header, HEADER_FIELDS)
    extractor = extractor_for_model(path.name, header["extractor"])
    kind = header["model"].get("kind")
    if kind not in PREDICTORS:
        raise ModelFileError(f"{path.name} holds a model of unknown kind {str(kind)[:40]!r}")
    check_model(path.name, header, arrays)
    try:
        return InspectorModel(header, arrays, path, extractor)
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelFileError(f"{path.name} has unusable confidence settings ({exc})") from None
