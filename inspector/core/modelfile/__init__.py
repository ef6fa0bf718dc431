"""The quality engineer's model file: export a trained model as one safe file, load it, predict.

This package's entry point; every name the CLI, the app, the public API and the tests use is
importable from ``inspector.core.modelfile``. The work is split by idea:

- :mod:`inspector.core.modelfile.container`: the file format (header, numeric arrays, SHA-256
  checksum), ``read_container`` / ``write_container`` and :class:`ModelFileError`; why the file is
  not a pickle.
- :mod:`inspector.core.modelfile.checks`: structural checks of a file's header, spec and arrays
  before anything uses them (tables of expected fields, value ranges, array shapes).
- :mod:`inspector.core.modelfile.predictors`: the pure-numpy predictors that rebuild logistic, forest
  and SVM probabilities from the file's numbers, and ``model_arrays`` that produces those numbers.
- :mod:`inspector.core.modelfile.loaded`: ``load_model`` and the loaded :class:`InspectorModel`, which
  predicts image files, folders and arrays as :class:`Prediction` records.
- :mod:`inspector.core.modelfile.export`: training on a project's labels for export, honest metrics,
  the recommended review threshold, and ``export_model``.
"""

from __future__ import annotations

from inspector.core.modelfile.container import (
    FORMAT_VERSION,
    MAGIC,
    MODEL_SUFFIX,
    ModelFileError,
    read_container,
    write_container,
)
from inspector.core.modelfile.export import (
    MIN_AUDIT_FOR_THRESHOLD,
    ExportTraining,
    HeldOut,
    cross_validated_proba,
    export_model,
    recommend_threshold,
    train_for_export,
)
from inspector.core.modelfile.loaded import InspectorModel, Prediction, expand_paths, load_model
from inspector.core.modelfile.predictors import PREDICTORS, REQUIRED_ARRAYS, model_arrays

__all__ = [
    "FORMAT_VERSION", "MAGIC", "MODEL_SUFFIX", "MIN_AUDIT_FOR_THRESHOLD", "PREDICTORS", "REQUIRED_ARRAYS",
    "ExportTraining", "HeldOut", "InspectorModel", "ModelFileError", "Prediction",
    "cross_validated_proba", "expand_paths", "export_model", "load_model", "model_arrays",
    "read_container", "recommend_threshold", "train_for_export", "write_container",
]
