"""The model file's container: header, numeric arrays and checksum; read and write, nothing else.

Why this container and not pickle/joblib/.npz
---------------------------------------------
Unpickling runs code chosen by whoever wrote the file, so a model file that travels from a
workstation to a production line must never be a pickle. An ``.npz`` can hold object arrays
(pickles) and a ZIP invites partial edits, so the file is a container of our own whose reader
only ever does three things: compare bytes, parse JSON, and view raw numbers with
``numpy.frombuffer`` under a short allow-list of numeric dtypes. Nothing in the file names
code to import or call; the classifier is rebuilt from plain numbers by the pure-numpy
predictors in
:mod:`inspector.core.modelfile.predictors`.

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
"""

from __future__ import annotations

import hashlib
import json
import io
import os
import stat
import struct
from pathlib import Path

import numpy as np

from inspector.core.errors import UserError

MAGIC = b"INSPECTOR-MODEL\n"
#: 2: calibration bias per class and class-conditional novelty arrays, which a reader of format 1
#: would silently ignore (other probabilities and novelty than the threshold was chosen on)
#: 3: novelty's principal-subspace arrays and its root-mean-square combination ("combine"), which a
#: reader of format 2 would ignore (other novelty scores than the file's own scale was set for)
#: 4: novelty's class-conditional subspace distance (novelty_subspace_b_class_columns, a third
#: scale), which a reader of format 3 would ignore (other scores than the file's own scale was set for)
FORMAT_VERSION = 4
MODEL_SUFFIX = ".inspector-model"
_PRELUDE = struct.Struct("<16sIQ")
_DIGEST_BYTES = 32
#: dtypes an array in the file may have: numbers only, never objects
_ALLOWED_DTYPES = {"<f8", "<f4", "<i8", "<i4"}
#: a model file is a few megabytes; refuse to read absurd files into memory
_MAX_FILE_BYTES = 1024**3


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


#: the JSON header holds descriptions and metrics, a few kilobytes; numbers go in the arrays
MAX_HEADER_BYTES = 4 * 1024**2


def _read_regular_file(path: Path) -> bytearray:
    """The bytes of ``path`` if it is a regular file of sane size; never reads a device, a pipe
    or a folder (``/dev/zero`` would fill memory, a FIFO would wait for ever)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise ModelFileError(f"no model file at {path}") from None
    except OSError as exc:
        raise ModelFileError(f"cannot read {path}: {exc.strerror or exc}") from None
    if stat.S_ISDIR(st.st_mode):
        raise ModelFileError(f"{path} is a folder, not a model file")
    if not stat.S_ISREG(st.st_mode):
        raise ModelFileError(f"{path} is not a regular file (a device, pipe or socket), so it is not read")
    if st.st_size > _MAX_FILE_BYTES:
        raise ModelFileError(f"{path.name} is {st.st_size / 1024**2:.0f} MB, far too large to be an Inspector model file")
    try:
        # O_NONBLOCK: should the name be swapped for a pipe after the check, opening does not wait
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except OSError as exc:
        raise ModelFileError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size > _MAX_FILE_BYTES:
            raise ModelFileError(f"{path} is not a regular file (a device, pipe or socket), so it is not read")
        buffer = bytearray(st.st_size)  # the one copy of the file in memory
        got = 0
        with memoryview(buffer) as view, io.FileIO(fd, closefd=False) as handle:
            while got < st.st_size:
                n = handle.readinto(view[got:])
                if not n:
                    break  # the file shrank while being read: the checksum below says it is damaged
                got += n
        if got < st.st_size:
            del buffer[got:]
        return buffer
    except OSError as exc:
        raise ModelFileError(f"cannot read {path}: {exc.strerror or exc}") from None
    finally:
        os.close(fd)


def read_container(path: Path) -> tuple[dict, dict[str, np.ndarray]]:
    """Read and verify a model file; return ``(header, arrays)``.

    Checks, in order: a regular file, magic bytes, format version, lengths, SHA-256, JSON (size
    and depth bounded), array table (plain numbers, sizes matching shapes, inside the file, no
    two arrays sharing bytes). Raises :class:`ModelFileError` with one clear line at the first
    failure. Never unpickles, imports or calls anything named in the file. Memory: the file's
    bytes plus its arrays, at most about twice the file size.
    """
    from inspector.core.modelfile.checks import MAX_JSON_DEPTH, check_array_table, json_depth

    path = Path(path)
    data = _read_regular_file(path)
    name = path.name
    if bytes(data[:2]) in (b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05") or data[:1] == b"(":
        raise ModelFileError(f"{name} is a Python pickle, not an Inspector model file; pickles can run code "
                             "when opened, so Inspector never loads them")
    if not data:
        raise ModelFileError(f"{name} is empty, not a model file")
    if len(data) < _PRELUDE.size or bytes(data[: len(MAGIC)]) != MAGIC:
        if bytes(data[: len(MAGIC)]) == MAGIC[: len(data)] or bytes(data[: len(MAGIC)]) == MAGIC:
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
    if header_length > MAX_HEADER_BYTES:
        raise ModelFileError(f"{name} has a {header_length / 1024**2:.0f} MB header, far larger than any model's; "
                             "it is refused")
    everything = memoryview(data)
    body, digest = everything[:-_DIGEST_BYTES], everything[-_DIGEST_BYTES:]
    if hashlib.sha256(body).digest() != digest:
        raise ModelFileError(f"{name} is damaged or was modified after export (checksum does not match); "
                             "export the model again")
    try:
        header = json.loads(bytes(body[_PRELUDE.size : _PRELUDE.size + header_length]).decode("utf-8"))
    except RecursionError:
        raise ModelFileError(f"{name} has a header nested far too deeply; it is refused") from None
    except (UnicodeDecodeError, ValueError):
        raise ModelFileError(f"{name} has an unreadable header") from None
    if not isinstance(header, dict) or header.get("format") != "inspector-model" or header.get("format_version") != version:
        raise ModelFileError(f"{name} has an inconsistent header")
    if json_depth(header) > MAX_JSON_DEPTH:
        raise ModelFileError(f"{name} has a header nested more than {MAX_JSON_DEPTH} levels deep; it is refused")
    region = body[_PRELUDE.size + header_length :]
    arrays: dict[str, np.ndarray] = {}
    for entry in check_array_table(name, header.get("arrays", []), len(region), _ALLOWED_DTYPES):
        offset, nbytes = entry["offset"], entry["nbytes"]
        arrays[entry["name"]] = np.frombuffer(region[offset : offset + nbytes], dtype=entry["dtype"]) \
            .reshape(entry["shape"]).copy()
    return header, arrays
