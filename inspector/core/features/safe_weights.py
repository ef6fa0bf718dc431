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
import zipfile

import numpy as np

from inspector.core.errors import UserError

__all__ = ["WeightsError", "load_numpy_pickle", "load_torch_state_dict"]


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


# ---------------------------------------------------------------------------------------------
# PyTorch weight files (``torch.save`` of a state dict), read into numpy without PyTorch.
#
# Both layouts are accepted: the legacy one (five pickles in a row, then each storage's raw bytes)
# and the zip one (``<root>/data.pkl`` plus one raw member per storage). The pickles may name only
# the storage classes of plain numeric types, ``torch._utils._rebuild_tensor(_v2)`` and
# ``collections.OrderedDict``; each is resolved to a harmless stand-in defined here (nothing of
# PyTorch is imported or called), every other name is refused before anything runs.

#: the first pickle of a legacy PyTorch file
_TORCH_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_TORCH_STORAGE_DTYPES = {
    "FloatStorage": "<f4", "DoubleStorage": "<f8", "HalfStorage": "<f2", "LongStorage": "<i8",
    "IntStorage": "<i4", "ShortStorage": "<i2", "CharStorage": "i1", "ByteStorage": "u1", "BoolStorage": "?",
}
_TORCH_DTYPE_NAMES = {"float32": "<f4", "float": "<f4", "float64": "<f8", "double": "<f8", "float16": "<f2",
                      "half": "<f2", "int64": "<i8", "long": "<i8", "int32": "<i4", "int": "<i4",
                      "int16": "<i2", "int8": "i1", "uint8": "u1", "bool": "?"}


class _StorageType:
    """Stands in for ``torch.FloatStorage`` and friends: only remembers the element type."""

    def __init__(self, dtype: str) -> None:
        self.dtype = np.dtype(dtype)


class _Storage:
    """A storage named by the file; its bytes arrive after the pickle (legacy) or from a zip member."""

    def __init__(self, key: str, dtype: np.dtype, numel: int) -> None:
        self.key, self.dtype, self.numel = key, dtype, int(numel)
        self.array: "np.ndarray | None" = None


class _TensorRef:
    """A tensor the file describes (storage, offset, size, stride); made an array once bytes are read."""

    def __init__(self, storage, offset, size, stride, *_ignored) -> None:
        if not isinstance(storage, _Storage):
            raise WeightsError("the weights file builds a tensor from something that is not a storage")
        try:
            self.offset = int(offset)
            self.size = tuple(int(s) for s in size)
            self.stride = tuple(int(s) for s in stride)
        except (TypeError, ValueError):
            raise WeightsError("the weights file describes a tensor with a damaged shape") from None
        if len(self.size) != len(self.stride) or min(self.size + self.stride + (self.offset,), default=0) < 0:
            raise WeightsError("the weights file describes a tensor with a damaged shape")
        self.storage = storage

    def to_numpy(self) -> np.ndarray:
        data = self.storage.array
        if data is None:
            raise WeightsError(f"the weights file lacks the data of storage {self.storage.key}")
        last = self.offset + sum((s - 1) * t for s, t in zip(self.size, self.stride)) if all(self.size) else 0
        if last >= max(len(data), 1) and all(self.size):
            raise WeightsError("the weights file describes a tensor larger than its data")
        itemsize = data.dtype.itemsize
        view = np.lib.stride_tricks.as_strided(
            data[self.offset:] if all(self.size) else data[:0], shape=self.size,
            strides=tuple(t * itemsize for t in self.stride), writeable=False)
        return np.array(view, dtype=data.dtype.newbyteorder("=") if data.dtype.kind != "b" else data.dtype)


def _rebuild_parameter(data, *_ignored):  # torch._utils._rebuild_parameter(tensor, requires_grad, hooks)
    if not isinstance(data, _TensorRef):
        raise WeightsError("the weights file wraps something that is not a tensor as a parameter")
    return data


class _StateDict(dict):
    """Stands in for ``collections.OrderedDict``; takes the ``_metadata`` attribute a state dict carries
    (the file's BUILD step sets it), which is dropped when the result is made plain."""


def _ordered_dict(*args):
    if args:
        raise WeightsError("the weights file builds a dictionary in an unexpected way")
    return _StateDict()


def _torch_dtype_marker(name: str):
    def marker(*_args):
        raise WeightsError("the weights file calls a tensor type instead of naming it")
    marker.dtype = np.dtype(_TORCH_DTYPE_NAMES[name])  # type: ignore[attr-defined]
    return marker


class _TorchUnpickler(pickle.Unpickler):
    def __init__(self, file, storages: dict) -> None:
        super().__init__(file)
        self._storages = storages

    def find_class(self, module: str, name: str):
        if module == "torch" and name in _TORCH_STORAGE_DTYPES:
            return _StorageType(_TORCH_STORAGE_DTYPES[name])
        if module == "torch" and name in _TORCH_DTYPE_NAMES:  # zip format names the dtype of UntypedStorage
            return _torch_dtype_marker(name)
        if module == "torch._utils" and name in ("_rebuild_tensor", "_rebuild_tensor_v2"):
            return _TensorRef
        if module == "torch._utils" and name == "_rebuild_parameter":
            return _rebuild_parameter
        if module == "collections" and name == "OrderedDict":
            return _ordered_dict
        raise WeightsError(f"the weights file asks to run {module}.{name}; only plain numeric tensors are "
                           "accepted, so it was not loaded")

    def persistent_load(self, pid):
        # legacy: ('storage', type, key, location, numel, view_metadata); zip: ('storage', type, key, location, numel)
        if not isinstance(pid, tuple) or len(pid) < 5 or pid[0] != "storage":
            raise WeightsError("the weights file refers to an object that is not a tensor storage")
        kind, key, numel = pid[1], str(pid[2]), pid[4]
        dtype = getattr(kind, "dtype", None)
        if dtype is None or not isinstance(numel, int) or numel < 0:
            raise WeightsError("the weights file names a storage of an unknown type")
        if len(pid) > 5 and pid[5] is not None:
            raise WeightsError("the weights file uses storage views, which are not accepted")
        storage = self._storages.get(key)
        if storage is None:
            storage = self._storages[key] = _Storage(key, dtype, numel)
        return storage


def _materialise(value, depth: int = 0):
    if depth > 20:
        raise WeightsError("the weights file nests its data too deeply")
    if isinstance(value, _TensorRef):
        return value.to_numpy()
    if isinstance(value, dict):
        return {_materialise(k, depth + 1): _materialise(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_materialise(v, depth + 1) for v in value)
    if isinstance(value, (_Storage, _StorageType)) or callable(value):
        raise WeightsError("the weights file holds a bare storage or type where a tensor was expected")
    return value


def load_torch_state_dict(data: bytes) -> dict:
    """The state dict of a ``torch.save`` file as ``{name: numpy array}``; nothing in it is executed.

    Raises :class:`WeightsError` for anything but plain numeric tensors in dicts/lists, or a damaged file.
    """
    try:
        if data[:4] == b"PK\x03\x04":
            value = _load_torch_zip(data)
        else:
            value = _load_torch_legacy(data)
    except WeightsError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError, KeyError, AttributeError,
            MemoryError, OverflowError, zipfile.BadZipFile) as exc:
        raise WeightsError(f"the weights file is damaged ({type(exc).__name__}: {str(exc)[:80]})") from None
    _check_plain(value)
    if not isinstance(value, dict):
        raise WeightsError("the weights file does not hold a dictionary of tensors")
    return value


def _load_torch_legacy(data: bytes):
    stream = io.BytesIO(data)
    plain = _NumpyOnlyUnpickler  # the three header pickles hold only numbers and dicts
    if plain(stream).load() != _TORCH_LEGACY_MAGIC:
        raise WeightsError("the weights file is not a PyTorch file")
    if plain(stream).load() != 1001:
        raise WeightsError("the weights file has an unknown PyTorch format version")
    plain(stream).load()  # system info (endianness, type sizes)
    storages: dict = {}
    value = _TorchUnpickler(stream, storages).load()
    keys = plain(stream).load()
    if not isinstance(keys, list):
        raise WeightsError("the weights file's storage list is damaged")
    for key in keys:
        storage = storages.get(str(key))
        if storage is None:
            raise WeightsError("the weights file lists a storage its tensors do not use")
        header = stream.read(8)
        if len(header) != 8:
            raise WeightsError("the weights file ends early")
        count = int(np.frombuffer(header, "<i8")[0])
        if count != storage.numel:
            raise WeightsError("the weights file's storage sizes disagree")
        nbytes = count * storage.dtype.itemsize
        raw = stream.read(nbytes)
        if len(raw) != nbytes:
            raise WeightsError("the weights file ends early")
        storage.array = np.frombuffer(raw, storage.dtype)
    return _materialise(value)


def _load_torch_zip(data: bytes):
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        names = archive.namelist()
        pickles = [n for n in names if n.endswith("/data.pkl") or n == "data.pkl"]
        if len(pickles) != 1:
            raise WeightsError("the weights file is a zip archive but not a PyTorch file")
        root = pickles[0][: -len("data.pkl")]
        storages: dict = {}
        value = _TorchUnpickler(io.BytesIO(archive.read(pickles[0])), storages).load()
        for key, storage in storages.items():
            member = f"{root}data/{key}"
            if member not in names:
                raise WeightsError(f"the weights file lacks the data of storage {key}")
            raw = archive.read(member)
            if len(raw) < storage.numel * storage.dtype.itemsize:
                raise WeightsError("the weights file's storage sizes disagree")
            storage.array = np.frombuffer(raw[: storage.numel * storage.dtype.itemsize], storage.dtype)
    return _materialise(value)
