"""The quality engineer's model file: export a trained model as one safe file, load it, predict.

This module is the entry point; every name the CLI, the app, the public API and the tests use is
importable from here. The work is split by idea:

- :mod:`inspector.core.model_container`: the file format (header, numeric arrays, SHA-256
  checksum), ``read_container`` / ``write_container`` and :class:`ModelFileError`; why the file is
  not a pickle.
- :mod:`inspector.core.model_predictors`: the pure-numpy predictors that rebuild logistic, forest
  and SVM probabilities from the file's numbers, and ``model_arrays`` that produces those numbers.
- :mod:`inspector.core.model_loaded`: ``load_model`` and the loaded :class:`InspectorModel`, which
  predicts image files, folders and arrays as :class:`Prediction` records.
- :mod:`inspector.core.model_export`: training on a project's labels for export, honest metrics,
  the recommended review threshold, and ``export_model``.
"""

from __future__ import annotations

from inspector.core.model_container import (
    FORMAT_VERSION,
    MAGIC,
    MODEL_SUFFIX,
    ModelFileError,
    read_container,
    write_container,
)
from inspector.core.model_export import (
    MIN_AUDIT_FOR_THRESHOLD,
    ExportTraining,
    HeldOut,
    cross_validated_proba,
    export_model,
    recommend_threshold,
    train_for_export,
)
from inspector.core.model_loaded import InspectorModel, Prediction, expand_paths, load_model
from inspector.core.model_predictors import PREDICTORS, REQUIRED_ARRAYS, model_arrays

__all__ = [
    "FORMAT_VERSION", "MAGIC", "MODEL_SUFFIX", "MIN_AUDIT_FOR_THRESHOLD", "PREDICTORS", "REQUIRED_ARRAYS",
    "ExportTraining", "HeldOut", "InspectorModel", "ModelFileError", "Prediction",
    "cross_validated_proba", "expand_paths", "export_model", "load_model", "model_arrays",
    "read_container", "recommend_threshold", "train_for_export", "write_container",
]
