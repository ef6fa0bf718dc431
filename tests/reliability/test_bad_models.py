"""Bad model files: tampered, truncated, wrong extractor version, pickle payloads.

Every one is refused with a clear message, and no code from the file ever runs (a marker file
that a malicious payload would create must not appear).
"""

from __future__ import annotations

import hashlib
import io
import json
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest

from inspector.cli import main
from inspector.core.features import get_extractor
from inspector.core.modelfile import ModelFileError, export_model, load_model, read_container, write_container
from inspector.core.store import ImageAnalysis, Project

PRELUDE = struct.Struct("<16sIQ")


class _Payload:
    """Unpickling this creates the marker file: proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.fixture(scope="module")
def model_file(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("model")
    (folder / "images").mkdir()
    extractor = get_extractor("texture")  # a project without an extractor setting computes texture
    rng = np.random.default_rng(0)
    with Project.create(folder / "p.inspector", folder / "images") as p:
        p.record_scan([(f"i{i}.png", 1, 1) for i in range(60)], [], [], [])
        ids = sorted(v[0] for v in p.scan_state().values())
        y = [k % 2 for k in range(60)]
        p.save_analyses([ImageAnalysis(i, f"h{i}", 8, 8, 8, 1,
                                       features=(rng.normal(size=12) + 2.0 * c).astype(np.float32))
                         for i, c in zip(ids, y)], extractor.name, extractor.version)
        ok, bad = p.add_class("ok"), p.add_class("bad")
        p.add_labels_bulk([(i, bad if c else ok) for i, c in zip(ids, y)])
        return export_model(p, folder / "line.inspector-model")


def _rewrite(path: Path, edit) -> Path:
    """A copy whose header was changed by ``edit(header)`` and whose checksum is made valid again."""
    header, arrays = read_container(path)
    header = json.loads(json.dumps(header))
    for key in ("format", "format_version", "arrays", "checksum"):
        header.pop(key, None)
    edit(header)
    out = path.with_name("edited-" + path.name)
    return write_container(out, header, arrays)


def _refused(path: Path, pattern: str, marker: Path | None = None) -> str:
    with pytest.raises(ModelFileError, match=pattern) as info:
        load_model(path)
    text = str(info.value)
    assert "\n" not in text
    if marker is not None:
        assert not marker.exists(), "code from the file ran"
    return text


def test_the_real_file_loads(model_file):
    model = load_model(model_file)
    proba = model.predict_proba_features(np.zeros((3, 12), np.float32))
    assert proba.shape == (3, 2) and np.allclose(proba.sum(axis=1), 1)


@pytest.mark.parametrize("where", [0.05, 0.3, 0.6, 0.999])
def test_one_flipped_byte_is_refused(model_file, tmp_path, where):
    data = bytearray(model_file.read_bytes())
    position = max(PRELUDE.size, int(len(data) * where))
    data[position] ^= 0x40
    bad = tmp_path / "flipped.inspector-model"
    bad.write_bytes(bytes(data))
    _refused(bad, "damaged or was modified|unreadable header|inconsistent|malformed")


@pytest.mark.parametrize("keep", [0, 5, 16, 28, 200, -33, -1])
def test_truncated_is_refused(model_file, tmp_path, keep):
    data = model_file.read_bytes()
    bad = tmp_path / "cut.inspector-model"
    bad.write_bytes(data[:keep] if keep >= 0 else data[:len(data) + keep])
    _refused(bad, "truncated|empty|damaged")


def test_wrong_extractor_version_is_refused(model_file):
    def older(header):
        header["extractor"]["version"] = header["extractor"]["version"] + 1

    _refused(_rewrite(model_file, older), "version")

    def other_settings(header):
        header["extractor"]["grid_cells"] = 3

    _refused(_rewrite(model_file, other_settings), "different feature settings")


def test_unknown_model_kind_is_refused(model_file):
    def kind(header):
        header["model"]["kind"] = "os.system"

    _refused(_rewrite(model_file, kind), "unknown kind")


@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
def test_pickle_named_as_model_runs_nothing(tmp_path, protocol, capsys):
    marker = tmp_path / "PWNED"
    bad = tmp_path / f"pickle{protocol}.inspector-model"
    bad.write_bytes(pickle.dumps(_Payload(marker), protocol=protocol))
    _refused(bad, "pickle|not an Inspector model", marker)
    images = tmp_path / "imgs"
    images.mkdir()
    code = main(["predict", str(bad), str(images), "--quiet"])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err
    assert not marker.exists()


def test_joblib_style_and_npz_pickles_run_nothing(tmp_path):
    marker = tmp_path / "PWNED"
    npz = tmp_path / "model.npz"
    np.savez(npz, model=np.array([_Payload(marker)], dtype=object))
    _refused(npz, "not an Inspector model", marker)
    npz_named = tmp_path / "npz.inspector-model"
    npz_named.write_bytes(npz.read_bytes())
    _refused(npz_named, "not an Inspector model", marker)
    buffer = io.BytesIO()
    pickle.dump({"model": _Payload(marker)}, buffer)
    joblib_like = tmp_path / "model.joblib"
    joblib_like.write_bytes(buffer.getvalue())
    _refused(joblib_like, "pickle", marker)


def test_pickle_inside_a_well_formed_container_runs_nothing(model_file, tmp_path):
    """An attacker who knows the format: object array bytes, header says dtype '|O', checksum valid."""
    marker = tmp_path / "PWNED"
    header, arrays = read_container(model_file)
    payload = pickle.dumps(_Payload(marker))
    header = json.loads(json.dumps(header))
    header["arrays"].append({"name": "evil", "dtype": "|O", "shape": [1], "offset": sum(
        a["nbytes"] for a in header["arrays"]), "nbytes": len(payload)})
    header_bytes = json.dumps(header).encode()
    body = PRELUDE.pack(b"INSPECTOR-MODEL\n", header["format_version"], len(header_bytes)) + header_bytes
    body += b"".join(np.ascontiguousarray(arrays[a["name"]]).tobytes() for a in header["arrays"][:-1]) + payload
    evil = tmp_path / "evil.inspector-model"
    evil.write_bytes(body + hashlib.sha256(body).digest())
    _refused(evil, "only plain numbers", marker)


def test_newer_format_and_other_files(model_file, tmp_path):
    data = bytearray(model_file.read_bytes())
    struct.pack_into("<I", data, 16, 99)
    newer = tmp_path / "newer.inspector-model"
    newer.write_bytes(bytes(data))
    _refused(newer, "newer Inspector")
    project_file = tmp_path / "p.inspector-model"
    project_file.write_bytes(b"SQLite format 3\x00" + b"\x00" * 200)
    _refused(project_file, "not an Inspector model")
    _refused(tmp_path / "absent.inspector-model", "no model file")
    _refused(tmp_path, "folder")


# ------------------------------------------------------------------------- hostile files (valid checksum)
import tracemalloc  # noqa: E402

from hostile_models import CASES, make_base_models  # noqa: E402


@pytest.fixture(scope="module")
def base_models(tmp_path_factory) -> dict:
    return make_base_models(tmp_path_factory.mktemp("hostile-base"))


@pytest.fixture(scope="module")
def hostile_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("hostile")


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_hostile_model_file_is_one_clear_refusal(case, base_models, hostile_dir):
    if case.name == "dev-zero" and not Path("/dev/zero").exists():
        pytest.skip("no /dev/zero here")
    if case.name == "fifo" and not hasattr(__import__("os"), "mkfifo"):
        pytest.skip("no FIFOs here")
    path = case.build(base_models, hostile_dir)
    before = path.read_bytes() if path.is_file() else None
    if case.loads:
        model = load_model(path)
        assert model.predict_proba_features(np.zeros((2, model.spec["n_features"]), np.float32)).shape[0] == 2
    else:
        _refused(path, case.expect)
    if before is not None:
        assert path.read_bytes() == before


@pytest.mark.parametrize("name", ["self-loop", "dev-zero", "fifo", "deep-json", "model-as-list", "svm-without-dual-coef"])
def test_hostile_model_in_predict_is_exit_1_without_traceback(name, base_models, hostile_dir, tmp_path, capsys):
    case = next(c for c in CASES if c.name == name)
    if name == "dev-zero" and not Path("/dev/zero").exists():
        pytest.skip("no /dev/zero here")
    path = case.build(base_models, hostile_dir)
    images = tmp_path / "imgs"
    images.mkdir()
    import cv2

    cv2.imwrite(str(images / "a.png"), np.zeros((32, 32), np.uint8))
    code = main(["predict", str(path), str(images), "--quiet", "--jobs", "1"])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err


def test_overlapping_arrays_take_memory_bounded_by_the_file(base_models, hostile_dir):
    case = next(c for c in CASES if c.name == "overlapping")
    path = case.build(base_models, hostile_dir)
    tracemalloc.start()
    try:
        with pytest.raises(ModelFileError, match="overlap"):
            load_model(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2.2 * path.stat().st_size  # the old reader copied 60 x 40 MB


def test_a_genuine_forest_and_svm_pass_every_structural_check(base_models):
    for kind, path in base_models.items():
        model = load_model(path)
        assert model.kind == kind
        proba = model.predict_proba_features(np.random.default_rng(1).normal(size=(5, model.spec["n_features"])))
        assert np.allclose(proba.sum(axis=1), 1.0)
