"""The public Python API for quality engineers and production scripts.

    import inspector
    model = inspector.load_model("line3.inspector-model")
    for p in model.predict(["new_parts/"]):
        print(p.source, p.predicted, p.confidence, p.review)

Everything here is a thin, stable name over ``inspector.core``; it imports no Qt.
"""

from __future__ import annotations

from inspector.core.distributed import predict_dask  # imports Dask only when called
from inspector.core.errors import UserError
from inspector.core.labels_io import export_label_folder, export_labels, import_labels
from inspector.core.modelfile import InspectorModel, ModelFileError, Prediction, export_model, load_model
from inspector.core.report import write_report

__all__ = [
    "InspectorModel",
    "ModelFileError",
    "Prediction",
    "UserError",
    "export_label_folder",
    "export_labels",
    "export_model",
    "import_labels",
    "load_model",
    "predict_dask",
    "write_report",
]
