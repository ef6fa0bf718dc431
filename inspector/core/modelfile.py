"""The quality engineer's model file: export a trained model as one safe file, load it, predict.

Why this container and not pickle/joblib/.npz
---------------------------------------------
Unpickling runs code chosen by whoever wrote the file, so a model file that travels from a
workstation to a production line must never be a pickle. An ``.npz`` can hold object arrays
(pickles) and a ZIP invites partial edits, so the file is a container of our own whose reader
only ever does three things: compare bytes, parse JSON, and view raw numbers with
``numpy.frombuffer`` under a short allow-list of numeric dtypes. Nothing in the file names
code to import or call; the classifier is rebuilt from plain numbers by the pure-numpy
predictors below.

Layout (all integers little-endian)::

    16 bytes   magic  b"INSPECTOR-MODEL\\n"
     4 bytes   format version (uint32)
     8 bytes   header length H (uint64)
     H bytes   header: UTF-8 JSON (classes, extractor, model settings, training summary,
               honest metrics, recommended reject threshold, and where each array lies)
     ...       arrays: raw little-endian numbers, one after another, as the header lists them
    32 bytes   SHA-256 of every byte before it

The checksum catches a damaged, truncated or edited file; it is not a signature (anyone can
recompute it), so safety does not rest on it: even a file with a valid checksum cannot make the
reader execute anything.

Supported classifiers, reproduced exactly from the project's pipeline (StandardScaler followed
by the classifier): logistic regression (multinomial softmax; binary models use the logistic
function of their single logit), random forest (every tree's nodes) and SVM (support vectors,
dual coefficients, intercepts, kernel settings; probabilities as the app computes them, a softmax
of one-vs-rest decision values, or libsvm's Platt sigmoids with pairwise coupling for a
scikit-learn ``SVC(probability=True)``).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import struct
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Sequence

import numpy as np

from inspector.core.errors import UserError
from inspector.core.progress import CancelToken, ProgressCallback, check, report

MAGIC = b"INSPECTOR-MODEL\n"
FORMAT_VERSION = 1
MODEL_SUFFIX = ".inspector-model"
_PRELUDE = struct.Struct("<16sIQ")
_DIGEST_BYTES = 32
#: dtypes an array in the file may have: numbers only, never objects
_ALLOWED_DTYPES = {"<f8", "<f4", "<i8", "<i4"}
#: a model file is a few megabytes; refuse to read absurd files into memory
_MAX_FILE_BYTES = 1024**3
#: below this many audit labels the reject threshold comes from cross-validation instead
MIN_AUDIT_FOR_THRESHOLD = 30


class ModelFileError(UserError):
    """A model file that cannot be written or must not be used (damaged, foreign, newer, mismatched)."""


# --------------------------------------------------------------------------- container


def write_container(path: Path, header: dict, arrays: dict[str, np.ndarray],
                    format_version: int = FORMAT_VERSION) -> Path:
    """Write ``header`` and numeric ``arrays`` as one checksummed model file at ``path``.

    The file is written beside its destination and renamed into place, so a crash never leaves
    half a model where a good one was. Returns the path. Raises :class:`ModelFileError` when an
    array is not numeric or the file cannot be written.
    """
    path = Path(path)
    blobs, table, offset = [], [], 0
    for name, array in arrays.items():
        array = np.asarray(array)
        dtype = array.dtype.newbyteorder("<") if array.dtype.byteorder == ">" else array.dtype
        descr = np.dtype(dtype).str
        if descr not in _ALLOWED_DTYPES:
            raise ModelFileError(f"array {name!r} has type {array.dtype}; only plain numbers can be exported")
        data = np.ascontiguousarray(array, dtype=descr).tobytes()
        table.append({"name": name, "dtype": descr, "shape": list(array.shape), "offset": offset, "nbytes": len(data)})
        blobs.append(data)
        offset += len(data)
    header = dict(header)
    header["format"] = "inspector-model"
    header["format_version"] = format_version
    header["arrays"] = table
    header["checksum"] = {"algorithm": "sha256", "covers": "every byte before the last 32 bytes of the file"}
    header_bytes = json.dumps(header, ensure_ascii=False, sort_keys=True, allow_nan=False).encode("utf-8")
    body = _PRELUDE.pack(MAGIC, format_version, len(header_bytes)) + header_bytes + b"".join(blobs)
    digest = hashlib.sha256(body).digest()
    temporary = path.with_name(f".{path.name}.{os.getpid()}.part")
    try:
        with open(temporary, "wb") as handle:
            handle.write(body)
            handle.write(digest)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        raise ModelFileError(f"cannot write {path}: {exc.strerror or exc}") from None
    return path


def read_container(path: Path) -> tuple[dict, dict[str, np.ndarray]]:
    """Read and verify a model file; return ``(header, arrays)``.

    Checks, in order: readable, magic bytes, format version, lengths, SHA-256, JSON, array
    table. Raises :class:`ModelFileError` with one clear line at the first failure. Never
    unpickles, imports or calls anything named in the file.
    """
    path = Path(path)
    try:
        size = os.stat(path).st_size
        if size > _MAX_FILE_BYTES:
            raise ModelFileError(f"{path.name} is {size / 1024**2:.0f} MB, far too large to be an Inspector model file")
        with open(path, "rb") as handle:
            data = handle.read()
    except IsADirectoryError:
        raise ModelFileError(f"{path} is a folder, not a model file") from None
    except FileNotFoundError:
        raise ModelFileError(f"no model file at {path}") from None
    except OSError as exc:
        raise ModelFileError(f"cannot read {path}: {exc.strerror or exc}") from None
    name = path.name
    if data[:2] in (b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05") or data[:1] == b"(":
        raise ModelFileError(f"{name} is a Python pickle, not an Inspector model file; pickles can run code "
                             "when opened, so Inspector never loads them")
    if not data:
        raise ModelFileError(f"{name} is empty, not a model file")
    if len(data) < _PRELUDE.size or data[: len(MAGIC)] != MAGIC:
        if data[: len(MAGIC)] == MAGIC[: len(data)] or data[: len(MAGIC)] == MAGIC:
            raise ModelFileError(f"{name} is truncated (only {len(data)} bytes); export the model again")
        raise ModelFileError(f"{name} is not an Inspector model file")
    _, version, header_length = _PRELUDE.unpack_from(data)
    if version > FORMAT_VERSION:
        raise ModelFileError(f"{name} was exported by a newer Inspector (model format {version}; this version "
                             f"reads up to {FORMAT_VERSION}); update Inspector to use it")
    if version < 1:
        raise ModelFileError(f"{name} has an unknown model format version {version}")
    if len(data) < _PRELUDE.size + header_length + _DIGEST_BYTES:
        raise ModelFileError(f"{name} is truncated ({len(data)} bytes); export the model again")
    body, digest = data[:-_DIGEST_BYTES], data[-_DIGEST_BYTES:]
    if hashlib.sha256(body).digest() != digest:
        raise ModelFileError(f"{name} is damaged or was modified after export (checksum does not match); "
                             "export the model again")
    try:
        header = json.loads(body[_PRELUDE.size : _PRELUDE.size + header_length].decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise ModelFileError(f"{name} has an unreadable header") from None
    if not isinstance(header, dict) or header.get("format") != "inspector-model" or header.get("format_version") != version:
        raise ModelFileError(f"{name} has an inconsistent header")
    region = memoryview(body)[_PRELUDE.size + header_length :]
    arrays: dict[str, np.ndarray] = {}
    for entry in header.get("arrays", []):
        try:
            dtype, shape = str(entry["dtype"]), tuple(int(s) for s in entry["shape"])
            offset, nbytes = int(entry["offset"]), int(entry["nbytes"])
            array_name = str(entry["name"])
        except (KeyError, TypeError, ValueError):
            raise ModelFileError(f"{name} has a malformed array table") from None
        if dtype not in _ALLOWED_DTYPES:
            # An object dtype would mean a pickle inside the file: refuse instead of decoding it.
            raise ModelFileError(f"{name} contains an array of type {dtype!r}; only plain numbers are allowed "
                                 "(a file holding objects could run code), so it is refused")
        itemsize = np.dtype(dtype).itemsize
        if min(shape, default=0) < 0 or offset < 0 or math.prod(shape) * itemsize != nbytes \
                or offset + nbytes > len(region):
            raise ModelFileError(f"{name} has a malformed array {array_name!r}")
        arrays[array_name] = np.frombuffer(region[offset : offset + nbytes], dtype=dtype).reshape(shape).copy()
    return header, arrays


# --------------------------------------------------------------------------- predictors (pure numpy)


def _scale(X: np.ndarray, arrays: dict) -> np.ndarray:
    # Same operations, same float32 rounding as scikit-learn's StandardScaler on float32 features.
    scaled = np.array(X, dtype=np.float32, copy=True)
    scaled -= arrays["scaler_mean"].astype(np.float32)
    scaled /= arrays["scaler_scale"].astype(np.float32)
    return scaled


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=1, keepdims=True)
    return z


def _logistic_proba(X: np.ndarray, arrays: dict, spec: dict) -> np.ndarray:
    z = _scale(X, arrays).astype(np.float64) @ arrays["coef"].T + arrays["intercept"]
    if z.shape[1] == 1:  # binary: one logit for the second class; p = logistic(z)
        p = 1.0 / (1.0 + np.exp(-z[:, 0]))
        return np.stack([1.0 - p, p], axis=1)
    return _softmax(z)


def _forest_proba(X: np.ndarray, arrays: dict, spec: dict) -> np.ndarray:
    Xs = _scale(X, arrays)
    offsets = arrays["tree_offsets"]
    left, right = arrays["children_left"], arrays["children_right"]
    feature, threshold, value = arrays["feature"], arrays["threshold"], arrays["value"]
    n_trees = len(offsets) - 1
    total = np.zeros((Xs.shape[0], value.shape[1]), dtype=np.float64)
    rows = np.arange(Xs.shape[0])
    for t in range(n_trees):
        base = int(offsets[t])
        node = np.zeros(Xs.shape[0], dtype=np.int64)
        active = left[base + node] != -1
        while active.any():
            at = base + node[active]
            go_left = Xs[rows[active], feature[at]].astype(np.float64) <= threshold[at]
            node[active] = np.where(go_left, left[at], right[at])
            active = left[base + node] != -1
        leaf = value[base + node]
        sums = leaf.sum(axis=1, keepdims=True)
        sums[sums == 0.0] = 1.0
        total += leaf / sums
    return total / n_trees


def _kernel(A: np.ndarray, B: np.ndarray, spec: dict) -> np.ndarray:
    kernel, gamma = spec["kernel"], float(spec["gamma"])
    if kernel == "linear":
        return A @ B.T
    if kernel == "rbf":
        sq = (A * A).sum(1)[:, None] + (B * B).sum(1)[None, :] - 2.0 * (A @ B.T)
        return np.exp(-gamma * np.maximum(sq, 0.0))
    if kernel == "poly":
        return (gamma * (A @ B.T) + float(spec["coef0"])) ** int(spec["degree"])
    if kernel == "sigmoid":
        return np.tanh(gamma * (A @ B.T) + float(spec["coef0"]))
    raise ModelFileError(f"unknown SVM kernel {kernel!r} in the model file")


def _pairwise_coupling(r: np.ndarray) -> np.ndarray:
    """libsvm's multiclass_probability (Wu, Lin and Weng, method 2), vectorised over samples."""
    n, k, _ = r.shape
    Q = -r.transpose(0, 2, 1) * r  # Q[t][j] = -r[j][t] * r[t][j]
    diag = (r.transpose(0, 2, 1) ** 2).sum(axis=2) - np.einsum("nii->ni", r.transpose(0, 2, 1) ** 2)
    idx = np.arange(k)
    Q[:, idx, idx] = diag
    p = np.full((n, k), 1.0 / k)
    eps = 0.005 / k
    active = np.ones(n, bool)
    for _ in range(max(100, k)):
        Qa, pa = Q[active], p[active]
        Qp = np.einsum("ntj,nj->nt", Qa, pa)
        pQp = (pa * Qp).sum(1)
        converged = np.abs(Qp - pQp[:, None]).max(1) < eps
        still = ~converged
        where = np.flatnonzero(active)
        active[where[converged]] = False
        if not still.any():
            break
        Qa, pa, Qp, pQp = Qa[still], pa[still], Qp[still], pQp[still]
        for t in range(k):
            diff = (-Qp[:, t] + pQp) / Qa[:, t, t]
            pa[:, t] += diff
            pQp = (pQp + diff * (diff * Qa[:, t, t] + 2 * Qp[:, t])) / (1 + diff) / (1 + diff)
            Qp = (Qp + diff[:, None] * Qa[:, t, :]) / (1 + diff)[:, None]
            pa /= (1 + diff)[:, None]
        p[where[still]] = pa
    return p


def _svm_pairwise_decisions(X: np.ndarray, arrays: dict, spec: dict) -> np.ndarray:
    """libsvm's one-vs-one decision values (n, pairs), pairs ordered (0,1), (0,2) ... (1,2) ..."""
    Xs = _scale(X, arrays).astype(np.float64)
    K = _kernel(Xs, arrays["support_vectors"], spec)
    n_support = arrays["n_support"].astype(np.int64)
    start = np.concatenate([[0], np.cumsum(n_support)])
    dual, intercept = arrays["dual_coef"], arrays["intercept"]
    k = len(n_support)
    out = np.zeros((Xs.shape[0], k * (k - 1) // 2))
    pair = 0
    for i in range(k):
        for j in range(i + 1, k):
            si, sj = slice(start[i], start[i + 1]), slice(start[j], start[j + 1])
            out[:, pair] = K[:, si] @ dual[j - 1, si] + K[:, sj] @ dual[i, sj] + intercept[pair]
            pair += 1
    return out


def _svm_proba(X: np.ndarray, arrays: dict, spec: dict) -> np.ndarray:
    dec = _svm_pairwise_decisions(X, arrays, spec)
    k = len(arrays["n_support"])
    if spec.get("probabilities") == "softmax_ovr":
        # the app's SoftmaxSVC: softmax(one-vs-rest decision / temperature), where scikit-learn
        # derives one-vs-rest values from the pairwise ones (votes plus squashed confidences)
        if k == 2:
            d = np.stack([dec[:, 0], -dec[:, 0]], axis=1)
        else:
            votes = np.zeros((dec.shape[0], k))
            confidence = np.zeros((dec.shape[0], k))
            pair = 0
            for i in range(k):
                for j in range(i + 1, k):
                    confidence[:, i] += dec[:, pair]
                    confidence[:, j] -= dec[:, pair]
                    votes[dec[:, pair] >= 0, i] += 1
                    votes[dec[:, pair] < 0, j] += 1
                    pair += 1
            d = votes + confidence / (3 * (np.abs(confidence) + 1))
        return _softmax(d / float(spec["temperature"]))
    prob_a, prob_b = arrays["prob_a"], arrays["prob_b"]
    r = np.zeros((dec.shape[0], k, k))
    pair = 0
    for i in range(k):
        for j in range(i + 1, k):
            f = dec[:, pair] * prob_a[pair] + prob_b[pair]
            e = np.exp(-np.abs(f))
            sig = np.clip(np.where(f >= 0, e / (1.0 + e), 1.0 / (1.0 + e)), 1e-7, 1 - 1e-7)
            r[:, i, j], r[:, j, i] = sig, 1.0 - sig
            pair += 1
    # scikit-learn's libsvm couples even two classes iteratively (its answer differs from the
    # pairwise sigmoid by up to the coupling tolerance), so do the same to match it exactly
    return _pairwise_coupling(r)


_PREDICTORS: dict[str, Callable[[np.ndarray, dict, dict], np.ndarray]] = {
    "logistic": _logistic_proba,
    "forest": _forest_proba,
    "svm": _svm_proba,
}
_REQUIRED_ARRAYS = {
    "logistic": ("scaler_mean", "scaler_scale", "coef", "intercept", "columns"),
    "forest": ("scaler_mean", "scaler_scale", "tree_offsets", "children_left", "children_right", "feature",
               "threshold", "value", "columns"),
    "svm": ("scaler_mean", "scaler_scale", "support_vectors", "n_support", "dual_coef", "intercept", "columns"),
}


def model_arrays(trained) -> tuple[dict, dict[str, np.ndarray]]:
    """Turn a fitted :class:`~inspector.core.learning.models.TrainedModel` into ``(spec, arrays)``.

    ``spec`` is JSON for the header, ``arrays`` the numbers. ``columns`` maps the classifier's
    outputs to the project's class columns (classes without labels keep probability 0).
    Raises :class:`ModelFileError` for a model that cannot be exported faithfully.
    """
    if trained is None or trained.estimator is None:
        raise ModelFileError("a model needs labels of at least two classes before it can be exported")
    scaler = trained.estimator.named_steps["scale"]
    clf = trained.estimator.named_steps["classify"]
    arrays: dict[str, np.ndarray] = {
        "scaler_mean": np.asarray(scaler.mean_, np.float64),
        "scaler_scale": np.asarray(scaler.scale_, np.float64),
        "columns": np.asarray(trained._columns, np.int64),
    }
    spec: dict[str, Any] = {"kind": trained.kind, "n_features": int(len(scaler.mean_))}
    if trained.kind == "logistic":
        arrays["coef"] = np.asarray(clf.coef_, np.float64)
        arrays["intercept"] = np.asarray(clf.intercept_, np.float64)
        spec["note"] = ("multinomial softmax of X_scaled @ coef.T + intercept; with two classes coef has one row "
                        "and p(second class) = 1 / (1 + exp(-logit))")
    elif trained.kind == "forest":
        lefts, rights, features, thresholds, values, offsets = [], [], [], [], [], [0]
        for tree in clf.estimators_:
            t = tree.tree_
            lefts.append(t.children_left.astype(np.int64))
            rights.append(t.children_right.astype(np.int64))
            features.append(t.feature.astype(np.int64))
            thresholds.append(t.threshold.astype(np.float64))
            values.append(t.value[:, 0, :].astype(np.float64))
            offsets.append(offsets[-1] + t.node_count)
        arrays.update(children_left=np.concatenate(lefts), children_right=np.concatenate(rights),
                      feature=np.concatenate(features), threshold=np.concatenate(thresholds),
                      value=np.concatenate(values), tree_offsets=np.asarray(offsets, np.int64))
        spec["note"] = ("mean over trees of each tree's leaf class fractions; a sample goes left when "
                        "feature <= threshold; children_left == -1 marks a leaf; node indices are per tree")
    elif trained.kind == "svm":
        svc = getattr(clf, "svc_", None)
        if svc is not None and hasattr(clf, "temperature"):  # the app's SoftmaxSVC
            spec.update(probabilities="softmax_ovr", temperature=float(clf.temperature),
                        note="softmax(one-vs-rest decision / temperature); one-vs-rest values are scikit-learn's "
                             "votes + confidence / (3 (|confidence| + 1)) over libsvm's one-vs-one decisions")
        elif getattr(clf, "probability", False) and hasattr(clf, "_probA"):  # scikit-learn SVC(probability=True)
            svc = clf
            spec.update(probabilities="platt",
                        note="libsvm one-vs-one decision values, Platt sigmoids per pair, pairwise coupling")
        else:
            raise ModelFileError("this SVM has no probabilities that can be reproduced; export a logistic model")
        if svc.kernel not in ("linear", "rbf", "poly", "sigmoid"):
            raise ModelFileError(f"SVM kernel {svc.kernel!r} cannot be exported")
        arrays.update(support_vectors=np.asarray(svc.support_vectors_, np.float64),
                      n_support=np.asarray(svc._n_support, np.int64),
                      dual_coef=np.asarray(svc._dual_coef_, np.float64),
                      intercept=np.asarray(svc._intercept_, np.float64))
        if spec["probabilities"] == "platt":
            arrays.update(prob_a=np.asarray(svc._probA, np.float64), prob_b=np.asarray(svc._probB, np.float64))
        spec.update(kernel=svc.kernel, gamma=float(svc._gamma), coef0=float(svc.coef0), degree=int(svc.degree))
    else:
        raise ModelFileError(f"models of kind {trained.kind!r} cannot be exported")
    return spec, arrays


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
            out[:, self._arrays["columns"]] = _PREDICTORS[self.kind](X, self._arrays, self.spec)
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
            extractor = self._extractor()
            gray = images.shrink(images.to_gray_u8(decoded), extractor.max_side)
            return np.asarray(extractor.extract(gray), np.float32), None
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

    ours = default_extractor().params()
    theirs = header.get("extractor") or {}
    if theirs.get("name") != ours["name"] or theirs.get("version") != ours["version"]:
        raise ModelFileError(
            f"{path.name} was made with features '{theirs.get('name')}' version {theirs.get('version')}, but this "
            f"Inspector computes '{ours['name']}' version {ours['version']}; export the model again with this version")
    if theirs != ours:
        raise ModelFileError(f"{path.name} was made with different feature settings than this Inspector uses; "
                             "export the model again")
    spec = header.get("model") or {}
    kind = spec.get("kind")
    if kind not in _PREDICTORS:
        raise ModelFileError(f"{path.name} holds a model of unknown kind {kind!r}")
    missing = [a for a in _REQUIRED_ARRAYS[kind] if a not in arrays]
    if missing:
        raise ModelFileError(f"{path.name} lacks the model's {', '.join(missing)}")
    classes = header.get("classes")
    if not isinstance(classes, list) or len(classes) < 2 or not all(
            isinstance(c, dict) and isinstance(c.get("name"), str) for c in classes):
        raise ModelFileError(f"{path.name} does not list its classes")
    columns = arrays["columns"]
    if columns.ndim != 1 or len(columns) < 2 or columns.min() < 0 or columns.max() >= len(classes):
        raise ModelFileError(f"{path.name} maps its model to classes it does not list")
    if not isinstance(spec.get("n_features"), int) or spec["n_features"] != len(arrays["scaler_mean"]):
        raise ModelFileError(f"{path.name} has an inconsistent feature count")
    try:
        float((header.get("reject_threshold") or {}).get("value", 0.0))
    except (TypeError, ValueError):
        raise ModelFileError(f"{path.name} has an unreadable review threshold") from None
    return InspectorModel(header, arrays, path)


# --------------------------------------------------------------------------- training for export


@dataclass
class HeldOut:
    """Predictions of images the predicting model was not trained on, for thresholds and reports."""

    basis: str  # "audit" or "cross-validation"
    y_true: np.ndarray
    proba: np.ndarray  # over every class column
    classes: np.ndarray


def cross_validated_proba(X: np.ndarray, y: np.ndarray, classes: np.ndarray, kind: str, random_state: int,
                          folds: int = 5, cancel: Optional[CancelToken] = None) -> Optional[np.ndarray]:
    """Out-of-fold probabilities for every labelled row, or None with too few labels per class."""
    from sklearn.model_selection import StratifiedKFold

    from inspector.core.learning.models import fit_model

    _, counts = np.unique(y, return_counts=True)
    k = int(min(folds, counts.min())) if len(counts) > 1 else 0
    if k < 2:
        return None
    proba = np.zeros((len(y), len(classes)), np.float64)
    for train, test in StratifiedKFold(k, shuffle=True, random_state=random_state).split(X, y):
        check(cancel)
        proba[test] = fit_model(X[train], y[train], classes, kind=kind, random_state=random_state).predict_proba(X[test])
    return proba


def recommend_threshold(y_true: np.ndarray, proba: np.ndarray, classes: np.ndarray) -> dict:
    """The confidence below which held-out errors concentrate (best Youden separation).

    Returns ``{"value", "errors_caught", "review_share", "n", "n_errors", "explanation"}``; value
    is 0 (route nothing) when the held-out predictions hold no errors.
    """
    confidence = proba.max(axis=1)
    wrong = classes[np.argmax(proba, axis=1)] != y_true
    n, n_wrong = len(y_true), int(wrong.sum())
    result = {"value": 0.0, "errors_caught": None, "review_share": 0.0, "n": int(n), "n_errors": n_wrong}
    if n == 0 or n_wrong == 0 or n_wrong == n:
        result["explanation"] = ("no threshold: the held-out predictions have no errors to separate"
                                 if n_wrong == 0 else "no threshold: too few correct held-out predictions")
        return result
    # A threshold t routes every image with confidence < t to review. Choose t that maximises
    # (share of errors routed) - (share of correct predictions routed).
    candidates = np.unique(confidence)
    candidates = np.append(candidates, np.nextafter(candidates[-1], 2.0))
    caught = np.searchsorted(np.sort(confidence[wrong]), candidates, side="left") / n_wrong
    bothered = np.searchsorted(np.sort(confidence[~wrong]), candidates, side="left") / (n - n_wrong)
    best = int(np.argmax(caught - bothered))
    value = float(candidates[best])
    result.update(value=value, errors_caught=float(caught[best]), review_share=float(np.mean(confidence < value)))
    # Alternatives for an engineer who weighs review work and missed errors differently: the
    # lowest threshold that catches at least each share of the held-out errors.
    result["alternatives"] = []
    for share in (0.5, 0.8, 0.9, 1.0):
        at = int(np.argmax(caught >= share - 1e-12))
        result["alternatives"].append({"catch_errors": share, "value": float(candidates[at]),
                                       "errors_caught": float(caught[at]),
                                       "review_share": float(np.mean(confidence < candidates[at]))})
    result["explanation"] = (
        f"Images whose confidence is below {value:.3f} are routed to a person. On {n} held-out predictions this "
        f"threshold sent {result['review_share']:.0%} of images to review and caught {result['errors_caught']:.0%} "
        f"of the {n_wrong} errors: it is where errors concentrate most compared with correct predictions "
        "(largest gap between the share of errors and the share of correct predictions below it).")
    return result


@dataclass
class ExportTraining:
    """The model trained for export and everything the file says about it."""

    model: Any  # TrainedModel
    snapshot: Any  # learner.Snapshot
    metrics: dict
    held_out: Optional[HeldOut]
    threshold: dict
    cross_validation: dict
    model_version: Optional[int]


def train_for_export(project, progress: Optional[ProgressCallback] = None,
                     cancel: Optional[CancelToken] = None) -> ExportTraining:
    """Train on every current class label with the project's learner settings; estimate honestly.

    Returns an :class:`ExportTraining`. The audit estimate comes from a model trained without the
    audit labels (as in the app); cross-validation on all labels is kept as an optimistic figure.
    Raises :class:`UserError` when there are no features or fewer than two labelled classes.
    """
    from inspector.core.learning import learner, metrics
    from inspector.core.learning.models import fit_model

    report(progress, 0, 4, "reading labels and features")
    snapshot = learner.take_snapshot(project)
    rows, y, is_audit = snapshot.labelled_rows()
    if len(np.unique(y)) < 2:
        raise UserError("label images of at least two classes before exporting a model")
    check(cancel)
    report(progress, 1, 4, "training the model on every label")
    fitted = learner.fit(snapshot, cancel=cancel)
    check(cancel)
    s = snapshot.settings
    X = snapshot.X[rows]
    report(progress, 2, 4, "cross-validating (optimistic figure)")
    cv_proba = cross_validated_proba(X, y, snapshot.classes, s.kind, s.random_state, cancel=cancel)
    cross_validation: dict = {"kind": "cross-validation on all labels (OPTIMISTIC: actively chosen labels are not "
                                      "a random sample)", "accuracy": None, "macro_f1": None, "n": int(len(y))}
    if cv_proba is not None:
        cv_pred = snapshot.classes[np.argmax(cv_proba, axis=1)]
        cross_validation.update(accuracy=float(np.mean(cv_pred == y)), macro_f1=metrics.macro_f1(y, cv_pred),
                                confusion=metrics.confusion_matrix(y, cv_pred, snapshot.classes.tolist()).tolist())
    report(progress, 3, 4, "choosing the review threshold")
    held_out = None
    if is_audit.sum() >= MIN_AUDIT_FOR_THRESHOLD and (~is_audit).sum() > 0 and len(np.unique(y[~is_audit])) >= 2:
        shadow = fit_model(X[~is_audit], y[~is_audit], snapshot.classes, kind=s.kind, random_state=s.random_state)
        held_out = HeldOut("audit", y[is_audit], shadow.predict_proba(X[is_audit]).astype(np.float64), snapshot.classes)
    elif cv_proba is not None:
        held_out = HeldOut("cross-validation", y, cv_proba, snapshot.classes)
    if held_out is not None:
        threshold = recommend_threshold(held_out.y_true, held_out.proba, held_out.classes)
        threshold["basis"] = ("random audit labels predicted by a model trained without them" if held_out.basis == "audit"
                              else f"cross-validation on all labels (fewer than {MIN_AUDIT_FOR_THRESHOLD} audit labels; "
                                   "may be optimistic)")
    else:
        threshold = {"value": 0.0, "explanation": "too few labels per class to choose a threshold", "basis": None}
    report(progress, 4, 4, "")
    latest = project.latest_model_version()
    return ExportTraining(fitted.model, snapshot, fitted.metrics, held_out, threshold, cross_validation,
                          None if latest is None else latest.version)


def export_model(project, out_path: Path, progress: Optional[ProgressCallback] = None,
                 cancel: Optional[CancelToken] = None) -> Path:
    """Train on the project's current labels and write the model file to ``out_path``.

    Returns the written path. Raises :class:`UserError` when the project cannot give a model
    (no features, fewer than two labelled classes) and :class:`ModelFileError` when the model
    cannot be exported faithfully or the file cannot be written.
    """
    import inspector
    from inspector.core.features import default_extractor

    out_path = Path(out_path)
    if not out_path.parent.is_dir():
        raise ModelFileError(f"folder {out_path.parent} does not exist")
    training = train_for_export(project, progress=progress, cancel=cancel)
    spec, arrays = model_arrays(training.model)
    snapshot = training.snapshot
    names = snapshot.class_names
    colors = {c.id: c.color for c in project.classes()}
    spec["settings"] = snapshot.settings.as_dict()
    audit = training.metrics.get("audit")
    if audit:
        audit = dict(audit)
        audit["classes"] = [names.get(c, str(c)) for c in audit["classes"]]
        audit["per_class_recall"] = {names.get(int(k), k): v for k, v in audit["per_class_recall"].items()}
    header = {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "application": {"name": "inspector", "version": inspector.__version__},
        "project": project.name,
        "classes": [{"name": names[c], "color": colors.get(int(c), ""), "id": int(c)} for c in snapshot.classes],
        "extractor": default_extractor().params(),
        "model": spec,
        "training": {
            "labels_per_class": {names[int(k)]: v for k, v in training.metrics["class_counts"].items()},
            "n_labels": int(sum(training.metrics["class_counts"].values())),
            "n_audit_labels": int(training.metrics.get("n_audit", 0)),
            "n_images_in_project": int(len(snapshot.image_ids)),
            "latest_model_version_in_project": training.model_version,
            "trained_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "note": "trained for export on every current class label of the project with its learner settings",
        },
        "metrics": {
            "audit_estimate": audit,
            "audit_note": (audit or {}).get("basis") or "no audit labels: no honest accuracy estimate yet",
            "cross_validation_optimistic": training.cross_validation,
        },
        "reject_threshold": training.threshold,
    }
    return write_container(out_path, header, arrays)
