"""Structural checks of a model file's header and arrays, before any number in it is used.

A model file comes from someone else, and its checksum can be recomputed by anyone, so every
size, type, index and shape in it is checked here against limits and against each other: a
hostile file must end in one clear :class:`ModelFileError`, in bounded time and memory, never in
an endless loop, a huge allocation or a traceback.

The checks are tables, one entry per header field or array, so a new field is one new line:

- :data:`HEADER_FIELDS` and :data:`SPEC_FIELDS` give each known header field's JSON type (and a
  range for numbers). Unknown keys are accepted: a later version of our own format may add them
  (it raises ``format_version`` when an old reader must not ignore them).
- :data:`ARRAY_SHAPES` gives each known array's number type and shape in symbols (``d`` features,
  ``k`` model classes, ``N`` forest nodes ...); a symbol must mean the same number everywhere.
  Unknown arrays only pass the container's checks (numbers, in bounds, not overlapping).
- :data:`STRUCTURE_CHECKS` holds the checks that need the numbers themselves (tree links, counts).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Optional

import numpy as np

from inspector.core.modelfile.container import ModelFileError

#: limits no real model comes near; they bound what a hostile file can make the reader do
MAX_FEATURES = 100_000
MAX_CLASSES = 10_000
MAX_TREE_DEPTH = 2_000
MAX_POLY_DEGREE = 20
MAX_JSON_DEPTH = 32

_NUMBER = (int, float)


@dataclass(frozen=True)
class Field:
    """A header field: its JSON types, whether it must be there, and a range for numbers."""

    types: tuple
    required: bool = False
    low: Optional[float] = None
    high: Optional[float] = None
    choices: Optional[tuple] = None


#: top-level header fields
HEADER_FIELDS: dict[str, Field] = {
    "format": Field((str,), True),
    "format_version": Field((int,), True),
    "arrays": Field((list,), True),
    "classes": Field((list,), True),
    "extractor": Field((dict,), True),
    "model": Field((dict,), True),
    "reject_threshold": Field((dict,)),
    "training": Field((dict,)),
    "metrics": Field((dict,)),
    "application": Field((dict,)),
    "project": Field((str,)),
    "created": Field((str,)),
    "checksum": Field((dict,)),
}

#: fields of header["model"], by kind ("*" for every kind)
SPEC_FIELDS: dict[str, dict[str, Field]] = {
    "*": {
        "kind": Field((str,), True, choices=("logistic", "forest", "svm")),
        "n_features": Field((int,), True, 1, MAX_FEATURES),
        "settings": Field((dict,)),
        "note": Field((str,)),
    },
    "svm": {
        "kernel": Field((str,), True, choices=("linear", "rbf", "poly", "sigmoid")),
        "gamma": Field(_NUMBER, True, 0.0, 1e12),
        "coef0": Field(_NUMBER, True, -1e12, 1e12),
        "degree": Field((int,), True, 0, MAX_POLY_DEGREE),
        "probabilities": Field((str,), True, choices=("softmax_ovr", "platt")),
        "temperature": Field(_NUMBER, False, 1e-12, 1e12),
    },
}

#: fields of header["reject_threshold"] and of each entry of header["classes"]
#: a review threshold of null means the model was not shown safe: every part goes to review
THRESHOLD_FIELDS: dict[str, Field] = {"value": Field((int, float, type(None)), False, 0.0, 1.0)}
CLASS_FIELDS: dict[str, Field] = {"name": Field((str,), True), "color": Field((str,)), "id": Field((int,))}
#: fields of each entry of header["arrays"]
ARRAY_ENTRY_FIELDS: dict[str, Field] = {
    "name": Field((str,), True),
    "dtype": Field((str,), True),
    "shape": Field((list,), True),
    "offset": Field((int,), True, 0),
    "nbytes": Field((int,), True, 0),
}

#: array name -> (number kind: "f" float or "i" integer, shape in symbols), by model kind.
#: Symbols: d features, k model classes, r logistic rows (1 when k == 2, else k), N forest nodes,
#: T trees + 1, S support vectors, K k - 1, P class pairs k (k - 1) / 2. An int is a fixed size.
ARRAY_SHAPES: dict[str, dict[str, tuple[str, tuple]]] = {
    "*": {"scaler_mean": ("f", ("d",)), "scaler_scale": ("f", ("d",)), "columns": ("i", ("k",))},
    "logistic": {"coef": ("f", ("r", "d")), "intercept": ("f", ("r",))},
    "forest": {"tree_offsets": ("i", ("T",)), "children_left": ("i", ("N",)), "children_right": ("i", ("N",)),
               "feature": ("i", ("N",)), "threshold": ("f", ("N",)), "value": ("f", ("N", "k"))},
    "svm": {"support_vectors": ("f", ("S", "d")), "n_support": ("i", ("k",)), "dual_coef": ("f", ("K", "S")),
            "intercept": ("f", ("P",))},
    "svm/platt": {"prob_a": ("f", ("P",)), "prob_b": ("f", ("P",))},
}


def _fail(name: str, what: str) -> ModelFileError:
    return ModelFileError(f"{name} is not a usable model file: {what}")


def json_depth(value: Any, limit: int = MAX_JSON_DEPTH) -> int:
    """Nesting depth of a parsed JSON value, counted up to ``limit + 1``."""
    depth, level = 0, [value]
    while level and depth <= limit:
        depth += 1
        nxt = []
        for item in level:
            if isinstance(item, dict):
                nxt.extend(v for v in item.values() if isinstance(v, (dict, list)))
            elif isinstance(item, list):
                nxt.extend(v for v in item if isinstance(v, (dict, list)))
        level = nxt
    return depth


def check_fields(name: str, where: str, data: Any, rules: dict[str, Field]) -> None:
    """Each known field of ``data`` has its type and range; required ones are present."""
    if not isinstance(data, dict):
        raise _fail(name, f"{where} is a {type(data).__name__}, not an object")
    for key, rule in rules.items():
        if key not in data:
            if rule.required:
                raise _fail(name, f"{where} lacks '{key}'")
            continue
        value = data[key]
        # JSON true/false are Python bools, which are ints too: never a number here
        if isinstance(value, bool) or not isinstance(value, rule.types):
            wanted = " or ".join({int: "integer", float: "number", str: "text", list: "list", dict: "object",
                                  type(None): "null"}[t] for t in rule.types)
            raise _fail(name, f"{where}'s '{key}' is a {type(value).__name__}, not {wanted}")
        if isinstance(value, float) and not math.isfinite(value):
            raise _fail(name, f"{where}'s '{key}' is not a finite number")
        if value is not None and (rule.low is not None and value < rule.low
                                  or rule.high is not None and value > rule.high):
            raise _fail(name, f"{where}'s '{key}' = {value!r} is out of range")
        if rule.choices is not None and value not in rule.choices:
            raise _fail(name, f"{where}'s '{key}' = {str(value)[:40]!r} is unknown")


def check_array_table(name: str, table: Any, region_bytes: int, allowed_dtypes: set) -> list[dict]:
    """The header's list of arrays: well-formed entries, unique names, plain number types, sizes
    that agree with the shape, every extent inside the file and no two extents sharing bytes.
    Returns the entries."""
    if not isinstance(table, list):
        raise _fail(name, "its array table is not a list")
    seen: set[str] = set()
    extents = []
    for entry in table:
        check_fields(name, "an array entry", entry, ARRAY_ENTRY_FIELDS)
        array_name = entry["name"][:60]
        if entry["name"] in seen:
            raise _fail(name, f"array {array_name!r} is listed twice")
        seen.add(entry["name"])
        if entry["dtype"] not in allowed_dtypes:
            # An object dtype would mean a pickle inside the file: refuse instead of decoding it.
            raise ModelFileError(f"{name} contains an array of type {entry['dtype'][:20]!r}; only plain numbers "
                                 "are allowed (a file holding objects could run code), so it is refused")
        shape = entry["shape"]
        if len(shape) > 4 or not all(isinstance(s, int) and not isinstance(s, bool) for s in shape):
            raise _fail(name, f"array {array_name!r} has a malformed shape")
        if any(s < 0 or s > region_bytes for s in shape):
            raise _fail(name, f"array {array_name!r} declares a dimension larger than the file")
        itemsize = np.dtype(entry["dtype"]).itemsize
        if math.prod(shape) * itemsize != entry["nbytes"]:
            raise _fail(name, f"array {array_name!r} has a size that does not match its shape")
        if entry["offset"] + entry["nbytes"] > region_bytes:
            raise _fail(name, f"array {array_name!r} lies beyond the end of the file")
        if entry["nbytes"]:
            extents.append((entry["offset"], entry["offset"] + entry["nbytes"], array_name))
    extents.sort()
    for (_, end, first), (start, _, second) in zip(extents, extents[1:]):
        if start < end:
            raise _fail(name, f"arrays {first!r} and {second!r} overlap in the file")
    return table


# --------------------------------------------------------------------------- the model's own structure


def _bind_shapes(name: str, kind: str, spec: dict, arrays: dict[str, np.ndarray]) -> dict[str, int]:
    tables = [ARRAY_SHAPES["*"], ARRAY_SHAPES[kind]]
    if kind == "svm" and spec.get("probabilities") == "platt":
        tables.append(ARRAY_SHAPES["svm/platt"])
    sizes: dict[str, int] = {"d": int(spec["n_features"])}
    for table in tables:
        for array_name, (number_kind, symbols) in table.items():
            if array_name not in arrays:
                raise _fail(name, f"it lacks the model's array {array_name!r}")
            array = arrays[array_name]
            if array.dtype.kind != number_kind:
                raise _fail(name, f"array {array_name!r} holds {'integers' if array.dtype.kind == 'i' else 'fractions'}"
                                  f" where {'integers' if number_kind == 'i' else 'fractions'} belong")
            if array.ndim != len(symbols):
                raise _fail(name, f"array {array_name!r} has {array.ndim} dimensions, not {len(symbols)}")
            for axis, symbol in enumerate(symbols):
                size = int(array.shape[axis])
                if isinstance(symbol, int):
                    expected = symbol
                else:
                    expected = sizes.setdefault(symbol, size)
                if size != expected:
                    raise _fail(name, f"array {array_name!r} has shape {list(array.shape)}, inconsistent with the "
                                      "model's other arrays (transposed or from another model?)")
            if number_kind == "f" and array.size and not np.isfinite(array).all():
                raise _fail(name, f"array {array_name!r} holds values that are not finite numbers")
    return sizes


def _check_columns(name: str, header: dict, spec: dict, arrays: dict, sizes: dict) -> None:
    columns = arrays["columns"]
    k = sizes["k"]
    if k < 2 or k > MAX_CLASSES:
        raise _fail(name, f"the model has {k} classes")
    if columns.min() < 0 or columns.max() >= len(header["classes"]) or len(np.unique(columns)) != k:
        raise _fail(name, "it maps its model to classes it does not list")
    if (arrays["scaler_scale"] == 0).any():
        raise _fail(name, "its feature scaling divides by zero")


def _check_logistic(name: str, header: dict, spec: dict, arrays: dict, sizes: dict) -> None:
    if sizes["r"] != (1 if sizes["k"] == 2 else sizes["k"]):
        raise _fail(name, f"its coefficients have {sizes['r']} rows for {sizes['k']} classes")


def _check_forest(name: str, header: dict, spec: dict, arrays: dict, sizes: dict) -> None:
    """Every tree: children inside the tree and after their parent (so no node is its own
    ancestor), every node but the root the child of exactly one node, split features in range,
    depth bounded (prediction walks one level per step)."""
    offsets = arrays["tree_offsets"]
    n_nodes = sizes["N"]
    if len(offsets) < 2 or offsets[0] != 0 or offsets[-1] != n_nodes or (np.diff(offsets) < 1).any():
        raise _fail(name, "its forest's tree boundaries are inconsistent")
    left, right, feature = arrays["children_left"], arrays["children_right"], arrays["feature"]
    leaf = left == -1
    if (leaf != (right == -1)).any():
        raise _fail(name, "a forest node has one child only")
    tree_of = np.repeat(np.arange(len(offsets) - 1), np.diff(offsets))
    local = np.arange(n_nodes) - offsets[tree_of]
    size = offsets[tree_of + 1] - offsets[tree_of]
    inner = ~leaf
    for child in (left, right):
        bad = inner & ((child <= local) | (child >= size))
        if bad.any():
            node = int(np.flatnonzero(bad)[0])
            raise _fail(name, f"forest node {node} points to child {int(child[node])}, outside its tree or not "
                              "below it (a loop)")
    if inner.any() and ((feature[inner] < 0) | (feature[inner] >= sizes["d"])).any():
        raise _fail(name, "a forest node splits on a feature that does not exist")
    if (arrays["value"] < 0).any():
        raise _fail(name, "a forest leaf holds a negative count")
    parents = np.zeros(n_nodes, np.int64)
    base = offsets[tree_of[inner]]
    np.add.at(parents, np.concatenate([left[inner] + base, right[inner] + base]), 1)
    roots = np.zeros(n_nodes, bool)
    roots[offsets[:-1]] = True
    if (parents[roots] != 0).any() or (parents[~roots] != 1).any():
        raise _fail(name, "its forest's nodes do not form trees (a node with two parents or none)")
    frontier, depth = offsets[:-1].astype(np.int64), 0
    while frontier.size:
        depth += 1
        if depth > MAX_TREE_DEPTH:
            raise _fail(name, f"a tree of its forest is deeper than {MAX_TREE_DEPTH} levels")
        frontier = frontier[inner[frontier]]
        base = offsets[tree_of[frontier]]
        frontier = np.concatenate([left[frontier] + base, right[frontier] + base])


def _check_svm(name: str, header: dict, spec: dict, arrays: dict, sizes: dict) -> None:
    n_support = arrays["n_support"]
    if (n_support < 1).any() or int(n_support.sum()) != sizes["S"]:
        raise _fail(name, "its support vector counts do not add up")
    k = sizes["k"]
    if sizes["K"] != k - 1 or sizes["P"] != k * (k - 1) // 2:
        raise _fail(name, "its SVM coefficients do not match its number of classes")
    if spec["probabilities"] == "softmax_ovr" and "temperature" not in spec:
        raise _fail(name, "its SVM lacks the temperature of its probabilities")


#: checks that need the numbers, by model kind ("*" for every kind)
STRUCTURE_CHECKS: dict[str, list[Callable[[str, dict, dict, dict, dict], None]]] = {
    "*": [_check_columns],
    "logistic": [_check_logistic],
    "forest": [_check_forest],
    "svm": [_check_svm],
}


def check_model(name: str, header: dict, arrays: dict[str, np.ndarray]) -> None:
    """Check everything a predictor relies on; raise :class:`ModelFileError` at the first problem."""
    check_fields(name, "the header", header, HEADER_FIELDS)
    spec = header["model"]
    check_fields(name, "the model description", spec, SPEC_FIELDS["*"])
    kind = spec["kind"]
    check_fields(name, "the model description", spec, SPEC_FIELDS.get(kind, {}))
    if "reject_threshold" in header:
        check_fields(name, "the review threshold", header["reject_threshold"], THRESHOLD_FIELDS)
    classes = header["classes"]
    if not 2 <= len(classes) <= MAX_CLASSES:
        raise _fail(name, f"it lists {len(classes)} classes")
    for entry in classes:
        check_fields(name, "a class entry", entry, CLASS_FIELDS)
    sizes = _bind_shapes(name, kind, spec, arrays)
    for check in STRUCTURE_CHECKS["*"] + STRUCTURE_CHECKS.get(kind, []):
        check(name, header, spec, arrays, sizes)
