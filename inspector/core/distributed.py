"""Archive-scale prediction on a Dask cluster: feature extraction and prediction as Dask tasks.

The paths are split into batches; each batch is one task that reads its images on a worker, computes
the same features the local ``inspector predict`` computes (the same code, so the same numbers)
and returns only the class probabilities (a few numbers per image). The model travels once to every
worker as plain numbers (the model file's header and arrays), not as a file path.

What the cluster must provide (docs/CLUSTER.md): every worker has the same Inspector version
installed (checked before any work, with one clear line when not) and reaches the image paths
under the same names as this machine. A batch whose worker is lost is run again on another worker
(the scheduler reschedules it; ``retries`` also re-runs a batch that raised).

Dask is imported lazily: the app and the frozen build do not need it (``pip install
inspector[cluster]``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from inspector.core.errors import UserError
from inspector.core.progress import CancelToken, ProgressCallback, check, report

DEFAULT_BATCH = 64
DEFAULT_RETRIES = 3
CONNECT_TIMEOUT_S = 10

_worker_models: dict = {}  # on a worker: the model rebuilt once per process, by its checksum


def _require_dask():
    try:
        import distributed  # noqa: F401
    except ImportError:
        raise UserError("Dask is not installed: pip install 'inspector[cluster]' (dask[distributed]) "
                        "on this machine and on every worker") from None
    return distributed


def connect(address: str, timeout: float = CONNECT_TIMEOUT_S):
    """A Dask client for the scheduler at ``address`` (tcp://host:8786); UserError when unreachable."""
    distributed = _require_dask()
    try:
        return distributed.Client(address, timeout=f"{timeout}s")
    except (OSError, TimeoutError, ValueError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UserError(f"cannot reach the Dask scheduler at {address}: {reason[:200]}") from None


def check_workers(client, timeout: float = CONNECT_TIMEOUT_S) -> dict:
    """Every worker runs this Inspector version; returns ``{worker address: version}``."""
    import importlib.metadata

    from inspector.core.version import __version__

    try:
        client.wait_for_workers(1, timeout=timeout)
    except (TimeoutError, OSError):
        raise UserError(f"the Dask scheduler has no workers (waited {timeout:.0f} s): start "
                        "`dask worker SCHEDULER` on the machines that should do the work") from None
    # importlib.metadata.version is sent by reference to the standard library, so this call itself
    # works on a worker without Inspector and tells us so
    versions = client.run(importlib.metadata.version, "inspector", on_error="return")
    lacking = [address for address, v in versions.items() if isinstance(v, BaseException)]
    if lacking:
        raise UserError(f"{len(lacking)} of {len(versions)} Dask workers lack Inspector (first: {lacking[0]}): "
                        f"install inspector {__version__} on every worker")
    other = {address: v for address, v in versions.items() if v != __version__}
    if other:
        address, version = next(iter(other.items()))
        raise UserError(f"Dask worker {address} runs Inspector {version}, this machine {__version__}: install the "
                        "same version everywhere so features and predictions are identical")
    return versions


def _predict_batch(model_data: tuple, batch: Sequence[tuple[int, str]]) -> tuple[list[int], np.ndarray, list]:
    """On a worker: features and probabilities of one batch ``[(index, path)]``.

    Returns ``(indices, probabilities[n, classes], errors)``; an unusable image gets its error and a
    row of zeros, exactly as the local run reports it.
    """
    from inspector.core.ingest import analyse_file
    from inspector.core.modelfile.loaded import InspectorModel, extractor_for_model

    header, arrays, key = model_data
    model = _worker_models.get(key)
    if model is None:
        # the worker's own extractor must be the one the model was trained with (weights included)
        extractor = extractor_for_model("the model", header["extractor"])
        model = _worker_models[key] = InspectorModel(header, arrays, extractor=extractor)
    extractor_name = model.extractor_params.get("name")
    indices, vectors, errors = [], [], []
    for index, path in batch:
        result = analyse_file(index, Path(path), True, extractor_name)
        indices.append(index)
        if result.error is not None or result.features is None:
            errors.append(result.error or "no features")
            vectors.append(None)
        else:
            errors.append(None)
            vectors.append(result.features)
    # the last column carries the novelty score (NaN when the model has none or the image is unusable)
    proba = np.zeros((len(batch), len(model.class_names) + 1))
    proba[:, -1] = np.nan
    usable = [k for k, v in enumerate(vectors) if v is not None]
    if usable:
        X = np.stack([vectors[k] for k in usable])
        proba[usable, :-1] = model.predict_proba_features(X)
        scores = model.novelty_scores(X, proba[usable, :-1])
        if scores is not None:
            proba[usable, -1] = scores
    return indices, proba, errors


def predict_probabilities(model, paths: Sequence[Path], client, batch_size: int = DEFAULT_BATCH,
                          retries: int = DEFAULT_RETRIES, progress: Optional[ProgressCallback] = None,
                          cancel: Optional[CancelToken] = None) -> tuple[np.ndarray, list]:
    """Probabilities ``[len(paths), classes]`` and per-path errors (None when usable), computed on
    the cluster in batches of ``batch_size`` images."""
    proba, _, errors = predict_with_novelty(model, paths, client, batch_size, retries, progress, cancel)
    return proba, errors


def predict_with_novelty(model, paths: Sequence[Path], client, batch_size: int = DEFAULT_BATCH,
                         retries: int = DEFAULT_RETRIES, progress: Optional[ProgressCallback] = None,
                         cancel: Optional[CancelToken] = None) -> tuple[np.ndarray, np.ndarray, list]:
    """Calibrated probabilities ``[len(paths), classes]``, novelty scores (NaN when the model has
    none) and per-path errors, computed on the cluster in batches of ``batch_size`` images."""
    distributed = _require_dask()
    if batch_size < 1:
        raise UserError("the batch size must be at least 1")
    check_workers(client)
    total = len(paths)
    proba = np.zeros((total, len(model.class_names) + 1))
    proba[:, -1] = np.nan
    errors: list = [None] * total
    report(progress, 0, total, "")
    if total == 0:
        return proba[:, :-1], proba[:, -1], errors
    import hashlib

    digest = hashlib.sha256()
    for name in sorted(model._arrays):
        digest.update(name.encode())
        digest.update(np.ascontiguousarray(model._arrays[name]).tobytes())
    key = digest.hexdigest()
    [model_future] = client.scatter([(model.header, model._arrays, key)], broadcast=True, hash=False)
    import uuid

    run = uuid.uuid4().hex  # task keys unique to this run: an earlier run's results are never reused
    indexed = [(i, str(p)) for i, p in enumerate(paths)]
    batches = [indexed[i:i + batch_size] for i in range(0, total, batch_size)]
    futures = client.map(_predict_batch, [model_future] * len(batches), batches, retries=retries,
                         pure=False, key=[f"inspector-predict-{run}-{k}" for k in range(len(batches))])
    done = 0
    try:
        for future in distributed.as_completed(futures):
            check(cancel)
            try:
                indices, rows, batch_errors = future.result()
            except distributed.client.FutureCancelledError:
                raise UserError("the Dask cluster cancelled the work (scheduler restarted?)") from None
            except Exception as exc:  # noqa: BLE001 - a worker-side failure after all retries: one line
                raise UserError(f"a batch failed on the cluster after {retries} retries: "
                                f"{type(exc).__name__}: {str(exc)[:200]}") from None
            proba[indices] = rows
            for index, error in zip(indices, batch_errors):
                errors[index] = error
            done += len(indices)
            report(progress, done, total, "")
    finally:
        client.cancel(futures)
    return proba[:, :-1], proba[:, -1], errors


def predict_dask(model, paths, client, reject_below: Optional[float] = None, batch_size: int = DEFAULT_BATCH,
                 retries: int = DEFAULT_RETRIES, progress: Optional[ProgressCallback] = None):
    """Predict image files and folders on a Dask cluster; the same records as ``model.predict``.

    ``model`` is a loaded model or a model file path; ``client`` a ``distributed.Client`` or a
    scheduler address. Folders are listed on this machine; workers must reach the same paths.
    """
    from inspector.core.modelfile.loaded import InspectorModel, Prediction, expand_paths, load_model

    if not isinstance(model, InspectorModel):
        model = load_model(Path(model))
    own_client = isinstance(client, str)
    if own_client:
        client = connect(client)
    try:
        if isinstance(paths, (str, os.PathLike)):
            paths = [paths]
        expanded = expand_paths(paths)
        proba, novelty, errors = predict_with_novelty(model, expanded, client, batch_size, retries, progress)
    finally:
        if own_client:
            client.close()
    threshold = model.reject_threshold if reject_below is None else float(reject_below)
    usable = np.array([e is None for e in errors], bool)
    path_of, review, reasons, p_acc = model.decide(
        proba[usable], novelty[usable] if model.confidence.novelty is not None else None, threshold)
    at = np.cumsum(usable) - 1
    out = []
    for i, path in enumerate(expanded):
        if errors[i] is not None:
            out.append(Prediction(str(path), None, None, {}, None, errors[i]))
            continue
        p, r = proba[i], int(at[i])
        top = int(np.argmax(p))
        out.append(Prediction(str(path), model.class_names[top], float(p[top]),
                              {name: float(v) for name, v in zip(model.class_names, p)},
                              review=bool(review[r]), review_reason=reasons[r],
                              novelty=None if np.isnan(novelty[i]) else float(novelty[i]), route=str(path_of[r]),
                              p_acceptable=float(p_acc[r])))
    return out
