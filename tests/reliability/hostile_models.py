"""Hostile model files, each with a valid (recomputed) checksum, and the table of what Inspector does.

Anyone can recompute the SHA-256 at the end of a model file, so every structural lie must be
caught by the reader's own checks. Each case below builds one such file from a real exported
model (logistic, forest or SVM); ``tests/reliability/test_bad_models.py`` asserts that every one
is refused with one clear line, and this script prints, for each case, the message, the exit code
of ``inspector predict``, the file's bytes before and after, peak memory above the interpreter's
own (Python and numpy allocations, traced) and the time to refuse::

    python tests/reliability/hostile_models.py [--out DIR] [--only NAME ...]

Each case runs in a fresh process with a 120 s limit (a hang is reported as such).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import struct
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np

PRELUDE = struct.Struct("<16sIQ")
MAGIC = b"INSPECTOR-MODEL\n"
KINDS = ("logistic", "forest", "svm")


# --------------------------------------------------------------------------- real models to start from


def make_base_models(folder: Path, kinds: tuple = KINDS) -> dict[str, Path]:
    """Export one small real model of each kind (synthetic features, three classes)."""
    from inspector.core.features import get_extractor
    from inspector.core.learning.learner import SETTING_KIND
    from inspector.core.modelfile import export_model
    from inspector.core.store import ImageAnalysis, Project

    folder = Path(folder)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    extractor = get_extractor("texture")  # a project without an extractor setting computes texture
    rng = np.random.default_rng(0)
    from inspector.core.images import _describe

    # the real feature length, so predict works on real images with these models
    dim = int(np.asarray(extractor.features_of(_describe(np.zeros((64, 64), np.uint8)))).shape[0])
    out = {}
    with Project.create(folder / "base.inspector", folder / "images") as p:
        p.record_scan([(f"i{i}.png", 1, 1) for i in range(90)], [], [], [])
        ids = sorted(v[0] for v in p.scan_state().values())
        y = [k % 3 for k in range(90)]
        p.save_analyses([ImageAnalysis(i, f"h{i}", 8, 8, 8, 1,
                                       features=(rng.normal(size=dim) + 2.0 * c).astype(np.float32))
                         for i, c in zip(ids, y)], extractor.name, extractor.version)
        classes = [p.add_class(n) for n in ("ok", "scratch", "crack")]
        p.add_labels_bulk([(i, classes[c]) for i, c in zip(ids, y)])
        for kind in kinds:
            p.set_setting(SETTING_KIND, kind)
            out[kind] = export_model(p, folder / f"{kind}.inspector-model")
    return out


# --------------------------------------------------------------------------- writing files that lie


def parts(path: Path) -> tuple[dict, bytes]:
    """A model file's header (as written) and the raw bytes of its array region."""
    data = Path(path).read_bytes()
    _, _, length = PRELUDE.unpack_from(data)
    header = json.loads(data[PRELUDE.size:PRELUDE.size + length])
    return header, data[PRELUDE.size + length:-32]


def write_raw(path: Path, header_text: bytes | str, region: bytes, version: Optional[int] = None) -> Path:
    """Assemble a file exactly as given (at the current format version unless ``version``), with a
    correct checksum (anyone can compute one)."""
    if version is None:
        from inspector.core.modelfile.container import FORMAT_VERSION

        version = FORMAT_VERSION
    if isinstance(header_text, str):
        header_text = header_text.encode()
    body = PRELUDE.pack(MAGIC, version, len(header_text)) + header_text + region
    Path(path).write_bytes(body + hashlib.sha256(body).digest())
    return Path(path)


def write_header(path: Path, header: dict, region: bytes) -> Path:
    return write_raw(path, json.dumps(header), region)


def _array(header: dict, region: bytes, name: str) -> np.ndarray:
    entry = next(e for e in header["arrays"] if e["name"] == name)
    raw = region[entry["offset"]:entry["offset"] + entry["nbytes"]]
    return np.frombuffer(raw, dtype=entry["dtype"]).reshape(entry["shape"]).copy()


def with_arrays(path: Path, source: Path, changes: dict[str, Optional[np.ndarray]],
                header_edit: Callable[[dict], None] | None = None) -> Path:
    """A copy of ``source`` whose arrays are replaced (None removes one); table rebuilt honestly."""
    header, region = parts(source)
    arrays = {e["name"]: _array(header, region, e["name"]) for e in header["arrays"]}
    for name, value in changes.items():
        if value is None:
            arrays.pop(name, None)
        else:
            arrays[name] = value
    table, blobs, offset = [], [], 0
    for name, array in arrays.items():
        data = np.ascontiguousarray(array).tobytes()
        table.append({"name": name, "dtype": array.dtype.str, "shape": list(array.shape), "offset": offset,
                      "nbytes": len(data)})
        blobs.append(data)
        offset += len(data)
    header["arrays"] = table
    if header_edit:
        header_edit(header)
    return write_header(path, header, b"".join(blobs))


def edit_header(path: Path, source: Path, edit: Callable[[dict], None]) -> Path:
    header, region = parts(source)
    edit(header)
    return write_header(path, header, region)


# --------------------------------------------------------------------------- the cases


@dataclass(frozen=True)
class Case:
    name: str
    what: str
    build: Callable[[dict, Path], Path]  # (base models by kind, output folder) -> file
    expect: str  # regular expression the refusal must match
    loads: bool = False  # a case that must be accepted (our own format's later additions)


def _forest(base, out, name, edit) -> Path:
    header, region = parts(base["forest"])
    left = _array(header, region, "children_left")
    right = _array(header, region, "children_right")
    feature = _array(header, region, "feature")
    edit(left, right, feature)
    return with_arrays(out / name, base["forest"], {"children_left": left, "children_right": right,
                                                    "feature": feature})


def _self_loop(base, out):
    def edit(left, right, feature):
        left[0] = 0  # the root's left child is the root: the old predictor looped for ever
    return _forest(base, out, "self-loop.inspector-model", edit)


def _index_out_of_range(base, out):
    def edit(left, right, feature):
        right[0] = 10**9
    return _forest(base, out, "index-out-of-range.inspector-model", edit)


def _two_parents(base, out):
    def edit(left, right, feature):
        inner = np.flatnonzero(left != -1)
        left[inner[1]] = left[inner[0]] if left[inner[0]] > inner[1] else left[inner[1]]
        right[inner[0]] = left[inner[0]]  # both children the same node
    return _forest(base, out, "two-parents.inspector-model", edit)


def _feature_out_of_range(base, out):
    def edit(left, right, feature):
        feature[0] = 10**6
    return _forest(base, out, "split-feature-out-of-range.inspector-model", edit)


def _deep_chain(base, out):
    """One tree that is a chain 5,000 levels deep: legal links, but prediction steps once per level."""
    header, region = parts(base["forest"])
    n = 10_001
    left = np.full(n, -1, np.int64)
    right = np.full(n, -1, np.int64)
    inner = np.arange(0, n - 1, 2)
    left[inner] = inner + 1
    right[inner] = inner + 2
    feature = np.where(left != -1, 0, -2).astype(np.int64)
    k = _array(header, region, "value").shape[1]
    return with_arrays(out / "deep-chain.inspector-model", base["forest"], {
        "children_left": left, "children_right": right, "feature": feature,
        "threshold": np.zeros(n), "value": np.ones((n, k)), "tree_offsets": np.array([0, n], np.int64)})


def _overlapping(base, out):
    """42 MB on disk; 60 table entries all naming the same 40 MB: 2.4 GB if each were copied."""
    header, region = parts(base["logistic"])
    ballast_offset = len(region)
    ballast = np.zeros(5 * 1024**2, np.float64).tobytes()
    for i in range(60):
        header["arrays"].append({"name": f"extra_{i}", "dtype": "<f8", "shape": [5 * 1024**2],
                                 "offset": ballast_offset, "nbytes": len(ballast)})
    return write_header(out / "overlapping-arrays.inspector-model", header, region + ballast)


def _huge_shape(base, out):
    header, region = parts(base["logistic"])
    header["arrays"].append({"name": "empty_but_huge", "dtype": "<f8", "shape": [0, 10**30],
                             "offset": 0, "nbytes": 0})
    return write_header(out / "shape-0-by-10e30.inspector-model", header, region)


def _deep_json(base, out):
    header, region = parts(base["logistic"])
    header["training"]["note"] = "__DEEP__"
    text = json.dumps(header).replace('"__DEEP__"', "[" * 100_000 + "]" * 100_000)
    return write_raw(out / "json-100000-deep.inspector-model", text, region)


def _moderately_deep_json(base, out):
    header, region = parts(base["logistic"])
    header["training"]["note"] = "__DEEP__"
    text = json.dumps(header).replace('"__DEEP__"', "[" * 500 + "]" * 500)
    return write_raw(out / "json-500-deep.inspector-model", text, region)


def _field_as_list(field, sub=None):
    def build(base, out):
        def edit(header):
            if sub:
                header[field][sub] = [1, 2]
            else:
                header[field] = [header[field]]
        return edit_header(out / f"{field}{'-' + sub if sub else ''}-as-list.inspector-model", base["logistic"], edit)
    return build


def _transposed_coef(base, out):
    header, region = parts(base["logistic"])
    coef = _array(header, region, "coef")
    return with_arrays(out / "transposed-coef.inspector-model", base["logistic"],
                       {"coef": np.ascontiguousarray(coef.T)})


def _svm_missing(name):
    def build(base, out):
        return with_arrays(out / f"svm-without-{name}.inspector-model", base["svm"], {name: None})
    return build


def _svm_counts(base, out):
    header, region = parts(base["svm"])
    n_support = _array(header, region, "n_support")
    n_support[0] += 1000
    return with_arrays(out / "svm-support-counts.inspector-model", base["svm"], {"n_support": n_support})


def _nan_coef(base, out):
    header, region = parts(base["logistic"])
    coef = _array(header, region, "coef")
    coef[0, 0] = np.nan
    return with_arrays(out / "nan-coef.inspector-model", base["logistic"], {"coef": coef})


def _columns_out_of_range(base, out):
    return with_arrays(out / "columns-out-of-range.inspector-model", base["logistic"],
                       {"columns": np.array([0, 1, 99], np.int64)})


def _integer_coef(base, out):
    header, region = parts(base["logistic"])
    coef = _array(header, region, "coef")
    return with_arrays(out / "coef-as-integers.inspector-model", base["logistic"], {"coef": coef.astype(np.int64)})


def _header_edit(filename, edit):
    def build(base, out):
        return edit_header(out / filename, base["logistic"], edit)
    return build


def _set(path_keys, value):
    def edit(header):
        target = header
        for key in path_keys[:-1]:
            target = target[key]
        target[path_keys[-1]] = value
    return edit


def _beyond_end(base, out):
    header, region = parts(base["logistic"])
    header["arrays"][0]["offset"] = len(region) * 1000
    return write_header(out / "array-beyond-end.inspector-model", header, region)


def _size_mismatch(base, out):
    header, region = parts(base["logistic"])
    header["arrays"][0]["shape"] = [10**6]
    return write_header(out / "shape-larger-than-bytes.inspector-model", header, region)


def _duplicate_name(base, out):
    header, region = parts(base["logistic"])
    header["arrays"].append(dict(header["arrays"][0]))
    return write_header(out / "array-listed-twice.inspector-model", header, region)


def _object_dtype(base, out):
    header, region = parts(base["logistic"])
    header["arrays"][0]["dtype"] = "|O"
    return write_header(out / "object-dtype.inspector-model", header, region)


def _huge_header_length(base, out):
    header, region = parts(base["logistic"])
    text = json.dumps(header) + " " * (8 * 1024**2)
    return write_raw(out / "header-8mb.inspector-model", text, region)


def _later_additions(base, out):
    """What a later version of our own format adds: extra header keys and arrays must not be refused."""
    def edit(header):
        header["calibration"] = {"method": "temperature", "value": 1.3}
        header["extractor_weights_sha256"] = "0" * 64
    header, region = parts(base["logistic"])
    return with_arrays(out / "later-additions.inspector-model", base["logistic"],
                       {"novelty_centroids": np.zeros((3, 12)), "calibration_bins": np.arange(10, dtype=np.int64)},
                       header_edit=edit)


def _dev_zero(base, out):
    return Path("/dev/zero")


def _fifo(base, out):
    fifo = out / "fifo.inspector-model"
    if not fifo.exists():
        os.mkfifo(fifo)
    return fifo


def _folder(base, out):
    folder = out / "folder.inspector-model"
    folder.mkdir(exist_ok=True)
    return folder


CASES: list[Case] = [
    Case("self-loop", "forest node whose child is itself", _self_loop, "not below it"),
    Case("index-out-of-range", "forest child index 10^9", _index_out_of_range, "outside its tree"),
    Case("two-parents", "forest node reached twice", _two_parents, "not below it|two parents|do not form trees"),
    Case("feature-out-of-range", "forest split on feature 10^6", _feature_out_of_range, "feature that does not exist"),
    Case("deep-chain", "one tree 5,000 levels deep", _deep_chain, "deeper than"),
    Case("overlapping", "60 array entries sharing 40 MB", _overlapping, "overlap"),
    Case("huge-shape", "array of shape [0, 10^30]", _huge_shape, "dimension larger than the file"),
    Case("deep-json", "header nested 100,000 deep", _deep_json, "nested"),
    Case("json-500-deep", "header nested 500 deep", _moderately_deep_json, "nested"),
    Case("model-as-list", "'model' given as a list", _field_as_list("model"), "'model' is a list"),
    Case("extractor-as-list", "'extractor' given as a list", _field_as_list("extractor"), "'extractor' is a list"),
    Case("threshold-as-list", "'reject_threshold' given as a list", _field_as_list("reject_threshold"),
         "'reject_threshold' is a list"),
    Case("threshold-value-as-list", "reject_threshold.value given as a list",
         _field_as_list("reject_threshold", "value"), "'value' is a list"),
    Case("classes-as-text", "'classes' given as text", _header_edit("classes-as-text.inspector-model",
                                                                    _set(["classes"], "ok,bad")), "'classes' is a str"),
    Case("n-features-as-bool", "model.n_features = true",
         _header_edit("n-features-bool.inspector-model", _set(["model", "n_features"], True)), "'n_features' is a bool"),
    Case("threshold-5", "reject_threshold.value = 5",
         _header_edit("threshold-5.inspector-model", _set(["reject_threshold", "value"], 5.0)), "out of range"),
    Case("transposed-coef", "coef stored transposed", _transposed_coef, "transposed|inconsistent"),
    Case("coef-as-integers", "coef stored as integers", _integer_coef, "holds integers where fractions"),
    Case("nan-coef", "a NaN coefficient", _nan_coef, "not finite"),
    Case("columns-out-of-range", "maps to class 99 of 3", _columns_out_of_range, "classes it does not list"),
    Case("svm-without-support-vectors", "SVM lacking support_vectors", _svm_missing("support_vectors"),
         "lacks the model's array 'support_vectors'"),
    Case("svm-without-dual-coef", "SVM lacking dual_coef", _svm_missing("dual_coef"), "lacks the model's array 'dual_coef'"),
    Case("svm-support-counts", "SVM n_support not adding up", _svm_counts, "do not add up"),
    Case("array-beyond-end", "array offset beyond the file", _beyond_end, "beyond the end"),
    Case("shape-larger-than-bytes", "shape says 10^6 numbers, bytes say fewer", _size_mismatch,
         "does not match its shape|larger than the file"),
    Case("array-listed-twice", "two entries with one name", _duplicate_name, "listed twice"),
    Case("object-dtype", "array of Python objects (a pickle)", _object_dtype, "only plain numbers"),
    Case("header-8mb", "8 MB JSON header", _huge_header_length, "header"),
    Case("later-additions", "extra header keys and arrays (a later format)", _later_additions, "", loads=True),
    Case("dev-zero", "/dev/zero as the model", _dev_zero, "not a regular file"),
    Case("fifo", "a FIFO as the model", _fifo, "not a regular file"),
    Case("folder", "a folder as the model", _folder, "folder"),
]


# --------------------------------------------------------------------------- the table

_MEASURE = textwrap.dedent("""
    import json, sys, time, tracemalloc
    from inspector.core.modelfile import ModelFileError, load_model
    import inspector.core.modelfile.checks, inspector.core.features, numpy
    inspector.core.features.get_extractor("texture").params()
    tracemalloc.start()
    started = time.perf_counter()
    try:
        load_model(sys.argv[1])
        message = "loaded"
    except ModelFileError as exc:
        message = "ModelFileError: " + str(exc)
    except BaseException as exc:
        message = "UNHANDLED " + type(exc).__name__ + ": " + str(exc)[:200]
    seconds = time.perf_counter() - started
    peak = tracemalloc.get_traced_memory()[1]  # Python and numpy allocations while loading
    print(json.dumps({"message": message, "seconds": seconds, "peak_kb": peak / 1024}))
""")


def _digest(path: Path) -> tuple[Optional[int], Optional[str]]:
    try:
        if not path.is_file():
            return None, None
        return path.stat().st_size, hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None, None


def measure(case: Case, base: dict, out: Path, image_folder: Path) -> dict:
    path = case.build(base, out)
    size_before, digest_before = _digest(path)
    row = {"case": case.name, "input": case.what, "bytes": size_before}
    try:
        done = subprocess.run([sys.executable, "-c", _MEASURE, str(path)], capture_output=True, text=True, timeout=120)
        row.update(json.loads(done.stdout.strip().splitlines()[-1]) if done.stdout.strip() else
                   {"message": "CRASHED " + done.stderr.strip()[-200:], "seconds": None, "peak_kb": None})
    except subprocess.TimeoutExpired:
        row.update(message="HUNG (120 s)", seconds=120.0, peak_kb=None)
    try:
        cli = subprocess.run([sys.executable, "-m", "inspector", "predict", str(path), str(image_folder), "--quiet",
                              "--jobs", "1"], capture_output=True, text=True, timeout=120)
        row["exit"] = cli.returncode
        row["traceback"] = "Traceback" in cli.stderr
        row["cli_lines"] = len([line for line in cli.stderr.splitlines() if line.strip()])
    except subprocess.TimeoutExpired:
        row.update(exit="hung", traceback=False, cli_lines=0)
    size_after, digest_after = _digest(path)
    row["unchanged"] = digest_before == digest_after
    row["bytes_after"] = size_after
    return row


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=None, help="keep the files here (default: a temporary folder)")
    parser.add_argument("--only", nargs="*", default=None, help="case names to run")
    args = parser.parse_args(argv)
    out = args.out or Path(tempfile.mkdtemp(prefix="inspector-hostile-"))
    out.mkdir(parents=True, exist_ok=True)
    import cv2

    base = make_base_models(out / "base")
    image_folder = out / "images"
    image_folder.mkdir(exist_ok=True)
    cv2.imwrite(str(image_folder / "part.png"), np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8))
    print(f"hostile model files in {out}; load: `uptime` {os.getloadavg()[0]:.2f}")
    print(f"{'case':<28} {'bytes':>10} {'after':>10} {'exit':>4} {'peak MB':>8} {'x file':>6} {'time s':>7}  message")
    failures = 0
    for case in CASES:
        if args.only and case.name not in args.only:
            continue
        row = measure(case, base, out, image_folder)
        peak_mb = None if row.get("peak_kb") is None else row["peak_kb"] / 1024
        ratio = "" if not row["bytes"] or peak_mb is None else f"{peak_mb * 1024**2 / row['bytes']:.2f}"
        good = (row["message"] == "loaded" and row["exit"] == 0) if case.loads else (
            row["message"].startswith("ModelFileError") and row["exit"] == 1 and not row["traceback"]
            and row["cli_lines"] == 1)
        good = good and row["unchanged"]
        failures += not good
        print(f"{case.name:<28} {row['bytes'] if row['bytes'] is not None else '-':>10} "
              f"{row['bytes_after'] if row['bytes_after'] is not None else '-':>10} {row['exit']:>4} "
              f"{peak_mb if peak_mb is not None else float('nan'):>8.2f} {ratio:>6} "
              f"{row['seconds'] if row['seconds'] is not None else float('nan'):>7.3f}  "
              f"{'' if good else '!! '}{row['message'][:150]}")
    print(f"{failures} cases not handled as expected")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
