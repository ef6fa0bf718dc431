"""Read network weights stored as a Python pickle without ever executing code from the file.

A pickle can name any importable function and call it while loading; that is how a booby-trapped
weights file runs code. :func:`load_numpy_pickle` uses an unpickler that resolves only the three
names numpy needs to rebuild plain arrays (``numpy.core.multiarray._reconstruct``, ``numpy.ndarray``
and ``numpy.dtype``, the last refusing object and structured dtypes, whose contents could smuggle
further objects in). Every other name is refused with :class:`WeightsError` before anything is
called. Containers (dict, list, tuple), numbers, strings and bytes need no names and load as usual.
"""

from __future__ import annotations

import io
import pickle

import numpy as np

from inspector.core.errors import UserError

__all__ = ["WeightsError", "load_numpy_pickle"]


class WeightsError(UserError):
    """A weights file that cannot be used; ``str(error)`` is one line for a person."""


def _numeric_dtype(*args, **kwargs) -> np.dtype:
    dtype = np.dtype(*args, **kwargs)
    if dtype.kind not in "biuf":
        raise WeightsError(f"the weights file holds arrays of type {dtype}, only numbers are accepted")
    return dtype


def _reconstruct(cls, shape, dtype_code):
    if cls is not np.ndarray:
        raise WeightsError("the weights file rebuilds something other than a plain numpy array")
    return np.ndarray.__new__(np.ndarray, shape, _numeric_dtype(dtype_code))


_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): _numeric_dtype,
}


class _NumpyOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        found = _ALLOWED.get((module, name))
        if found is None:
            raise WeightsError(f"the weights file asks to run {module}.{name}; only plain numeric arrays are "
                               "accepted, so it was not loaded")
        return found

    def persistent_load(self, pid):
        raise WeightsError("the weights file refers to external objects; only plain numeric arrays are accepted")


def load_numpy_pickle(data: bytes):
    """Unpickle ``data`` admitting only numeric numpy arrays, dicts, lists, tuples, numbers, strings.

    Raises :class:`WeightsError` for anything else (nothing in the file is executed) or a damaged file.
    """
    try:
        value = _NumpyOnlyUnpickler(io.BytesIO(data)).load()
    except WeightsError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError, KeyError, AttributeError,
            MemoryError) as exc:
        raise WeightsError(f"the weights file is damaged ({type(exc).__name__}: {str(exc)[:80]})") from None
    _check_plain(value)
    return value


def _check_plain(value, depth: int = 0) -> None:
    """Refuse anything but numeric arrays inside containers (a last guard after loading)."""
    if depth > 20:
        raise WeightsError("the weights file nests its data too deeply")
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "biuf":
            raise WeightsError(f"the weights file holds arrays of type {value.dtype}, only numbers are accepted")
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_plain(key, depth + 1)
            _check_plain(item, depth + 1)
    elif isinstance(value, (list, tuple)):
        for item in value:
            _check_plain(item, depth + 1)
    elif value is not None and not isinstance(value, (bool, int, float, str, bytes)):
        raise WeightsError(f"the weights file holds a {type(value).__name__}, only plain numeric arrays are accepted")
