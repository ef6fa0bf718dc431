"""Inspector: offline visual-inspection labelling with an in-process active learner."""

from inspector.core.version import __version__


def __getattr__(name: str):
    # `inspector.load_model` without importing numpy/scikit-learn until it is used
    if name == "load_model":
        from inspector.api import load_model

        return load_model
    if name == "predict_dask":  # Dask is optional (pip install inspector[cluster]) and imported on use
        from inspector.core.distributed import predict_dask

        return predict_dask
    raise AttributeError(f"module 'inspector' has no attribute {name!r}")
