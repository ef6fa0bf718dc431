"""The model file: export -> load -> predict round trip, and every way a bad file must be refused."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import pickle
import struct
from pathlib import Path

import cv2
import numpy as np
import pytest

from inspector.cli import main
from inspector.core.errors import UserError
from inspector.core.modelfile import (
    MAGIC,
    ModelFileError,
    export_model,
    load_model,
    read_container,
    recommend_threshold,
    train_for_export,
    write_container,
)
from inspector.core.store import Project

CLASSES = ("ok", "scratch", "spot")


def draw_parts(root: Path, per_class: int = 14, seed: int = 0) -> Path:
    """Small grey parts: plain, with a bright line, or with a dark spot (easy to tell apart)."""
    rng = np.random.default_rng(seed)
    for name in CLASSES:
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            image = rng.normal(128, 10, (64, 64)).clip(0, 255).astype(np.uint8)
            if name == "scratch":
                cv2.line(image, (5, int(rng.integers(5, 60))), (60, int(rng.integers(5, 60))), 235, 2)
            elif name == "spot":
                cv2.circle(image, (int(rng.integers(15, 50)), int(rng.integers(15, 50))), 6, 30, -1)
            cv2.imwrite(str(root / name / f"{name}_{i:02d}.png"), image)
    return root


def make_project(tmp_path: Path, kind: str = "logistic", audit_every: int = 0) -> Project:
    from inspector.core.ingest import scan_project

    images = draw_parts(tmp_path / "images")
    project = Project.create(tmp_path / "parts.inspector", images)
    scan_project(project, workers=1)
    ids = {c: project.add_class(c) for c in CLASSES}
    for n, (image_id, path) in enumerate(sorted(project.image_paths().items())):
        audit = bool(audit_every) and n % audit_every == 0
        project.add_label(image_id, ids[path.split("/")[0]], annotator="ana", source="imported", audit=audit)
    project.set_setting("learner.model_kind", kind)
    return project


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A logistic project, its exported model file and the model trained in the app's way."""
    tmp_path = tmp_path_factory.mktemp("modelfile")
    project = make_project(tmp_path)
    out = export_model(project, tmp_path / "parts.inspector-model")
    training = train_for_export(project)
    ids, X = project.feature_matrix(*training.snapshot.extractor)
    yield {"project": project, "path": out, "training": training, "X": X, "ids": ids, "tmp": tmp_path}
    project.close()


def test_exported_probabilities_equal_the_app_model(exported):
    model = load_model(exported["path"])
    in_app = exported["training"].model.predict_proba(exported["X"])
    from_file = model.predict_proba_features(exported["X"])
    assert from_file.shape == in_app.shape == (len(exported["ids"]), 3)
    np.testing.assert_allclose(from_file, in_app, atol=1e-5)
    assert model.class_names == list(CLASSES)
    assert model.training["labels_per_class"] == {"ok": 14, "scratch": 14, "spot": 14}
    assert model.header["extractor"]["name"] == "texture"
    assert model.header["application"]["name"] == "inspector"
    # 28 defective labels cannot show at most 1 % escapes: every part goes to review, and the file
    # says how many more defective labels would let it choose a threshold
    assert model.reject_threshold is None and model.routes_everything_to_review
    assert "NOT SHOWN SAFE" in model.header["reject_threshold"]["explanation"]
    assert set(model.header["reject_threshold"]["labels_needed"]) == {"scratch", "spot"}
    assert model.header["acceptable_classes"] == ["ok"]
    assert model.header["probability_calibration"]["shrink"] > 0


@pytest.mark.parametrize("kind", ["forest", "svm"])
def test_forest_and_svm_round_trip(tmp_path, kind):
    project = make_project(tmp_path, kind=kind)
    try:
        path = export_model(project, tmp_path / f"{kind}.inspector-model")
        training = train_for_export(project)
        _, X = project.feature_matrix(*training.snapshot.extractor)
        model = load_model(path)
        assert model.kind == kind
        np.testing.assert_allclose(model.predict_proba_features(X), training.model.predict_proba(X), atol=1e-5)
    finally:
        project.close()


def test_predict_files_folders_and_arrays_agree(exported):
    project = exported["project"]
    model = load_model(exported["path"])
    first = project.image_path(int(exported["ids"][0]))
    by_file = model.predict([first])[0]
    pixels = cv2.imread(str(first), cv2.IMREAD_UNCHANGED)
    colour = cv2.cvtColor(pixels, cv2.COLOR_GRAY2BGR)
    by_array, by_colour = model.predict([pixels, colour])
    assert by_file.error is None and by_file.source == str(first)
    assert by_array.source == "array[0]"
    for other in (by_array, by_colour):
        assert other.predicted == by_file.predicted
        np.testing.assert_allclose(list(other.probabilities.values()), list(by_file.probabilities.values()), atol=1e-6)
    expected = exported["training"].model.predict_proba(exported["X"][:1])[0]
    np.testing.assert_allclose(list(by_file.probabilities.values()), expected, atol=1e-5)
    folder = model.predict(project.image_root / "spot")
    assert len(folder) == 14 and sum(p.predicted == "spot" for p in folder) >= 12


def test_unreadable_images_get_an_error_record(exported, tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    results = load_model(exported["path"]).predict([broken, tmp_path / "absent.png", np.zeros((0, 5))])
    assert [r.predicted for r in results] == [None, None, None]
    assert all(r.error for r in results)


def test_reject_threshold_routes_uncertain_images(exported):
    model = load_model(exported["path"])
    src = exported["project"].image_path(int(exported["ids"][0]))
    assert model.predict([src], reject_below=1.0)[0].review is True
    assert model.predict([src], reject_below=0.0)[0].review is False


def test_recommended_threshold_sits_where_errors_concentrate():
    classes = np.array([0, 1])
    y = np.array([0] * 90 + [1] * 10)
    proba = np.zeros((100, 2))
    proba[:, 0] = 0.95  # confident and right ...
    proba[90:, 0] = 0.55  # ... except ten unsure mistakes
    proba[:, 1] = 1 - proba[:, 0]
    result = recommend_threshold(y, proba, classes)
    assert 0.55 < result["value"] <= 0.95
    assert result["errors_caught"] == 1.0 and result["review_share"] == pytest.approx(0.10)
    assert [a["errors_caught"] for a in result["alternatives"]] == [1.0, 1.0, 1.0, 1.0]
    assert all(a["value"] <= result["value"] for a in result["alternatives"])
    assert recommend_threshold(y[:90], proba[:90], classes)["value"] == 0.0  # no errors: route nothing


def test_one_changed_byte_anywhere_is_refused(exported):
    data = exported["path"].read_bytes()
    positions = sorted({0, 5, 17, 20, 27, 40, len(data) // 2, len(data) - 33, len(data) - 1,
                        *range(0, len(data), max(1, len(data) // 60))})
    bad = exported["tmp"] / "tampered.inspector-model"
    for position in positions:
        changed = bytearray(data)
        changed[position] ^= 0x01
        bad.write_bytes(bytes(changed))
        with pytest.raises(ModelFileError):
            load_model(bad)


def test_truncated_file_is_refused(exported):
    data = exported["path"].read_bytes()
    bad = exported["tmp"] / "truncated.inspector-model"
    for length in (0, 3, 20, 60, len(data) // 2, len(data) - 1):
        bad.write_bytes(data[:length])
        with pytest.raises(ModelFileError, match="truncated|empty"):
            load_model(bad)


class _WouldRunCode:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_pickle_is_refused_without_running_it(exported, tmp_path):
    marker = tmp_path / "code-ran"
    payload = pickle.dumps(_WouldRunCode(marker))
    # sanity: this payload really does run code when unpickled
    pickle.loads(payload)
    assert marker.exists()
    marker.unlink()

    plain = tmp_path / "model.pkl"
    plain.write_bytes(payload)
    with pytest.raises(ModelFileError, match="pickle"):
        load_model(plain)

    # the pickle smuggled in as the model's coefficients, with a checksum that matches
    header, arrays = read_container(exported["path"])
    blobs, table, offset = [], [], 0
    for entry in header["arrays"]:
        blob = payload if entry["name"] == "coef" else arrays[entry["name"]].tobytes()
        dtype = "|O" if entry["name"] == "coef" else entry["dtype"]
        table.append({**entry, "dtype": dtype, "offset": offset, "nbytes": len(blob)})
        blobs.append(blob)
        offset += len(blob)
    header["arrays"] = table
    header_bytes = json.dumps(header).encode()
    body = struct.pack("<16sIQ", MAGIC, header["format_version"], len(header_bytes)) + header_bytes + b"".join(blobs)
    smuggled = tmp_path / "smuggled.inspector-model"
    smuggled.write_bytes(body + hashlib.sha256(body).digest())
    with pytest.raises(ModelFileError, match="only plain numbers"):
        load_model(smuggled)
    assert not marker.exists()


def test_future_format_version_is_refused(exported, tmp_path):
    header, arrays = read_container(exported["path"])
    from inspector.core.modelfile.container import FORMAT_VERSION

    future = write_container(tmp_path / "future.inspector-model", header, arrays, format_version=FORMAT_VERSION + 1)
    with pytest.raises(ModelFileError, match="newer Inspector"):
        load_model(future)


def test_other_extractor_version_is_refused(exported, tmp_path):
    header, arrays = read_container(exported["path"])
    header["extractor"]["version"] += 1
    other = write_container(tmp_path / "other.inspector-model", header, arrays)
    with pytest.raises(ModelFileError, match="features 'texture' version"):
        load_model(other)


def test_export_needs_two_labelled_classes(tmp_path):
    from inspector.core.ingest import scan_project

    project = Project.create(tmp_path / "p.inspector", draw_parts(tmp_path / "images", per_class=3))
    try:
        scan_project(project, workers=1)
        ok = project.add_class("ok")
        project.add_label(int(project.image_ids()[0]), ok)
        with pytest.raises(UserError, match="at least two classes"):
            export_model(project, tmp_path / "m.inspector-model")
        assert not (tmp_path / "m.inspector-model").exists()
    finally:
        project.close()


def test_predict_command_writes_one_row_per_image(exported, tmp_path, capsys):
    images = exported["project"].image_root
    (tmp_path / "junk.png").write_bytes(b"junk")
    out = tmp_path / "predictions.csv"
    code = main(["predict", str(exported["path"]), str(images / "ok"), str(tmp_path / "junk.png"),
                 "--csv", str(out), "--jobs", "1", "--quiet", "--reject-below", "0.5"])
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out.read_text(encoding="utf-8"))))
    assert len(rows) == 15
    assert list(rows[0].keys()) == ["path", "predicted", "confidence", "p_ok", "p_scratch", "p_spot", "p_acceptable",
                                    "novelty", "route", "review", "review_reason", "error"]
    good = [r for r in rows if not r["error"]]
    assert len(good) == 14 and sum(r["predicted"] == "ok" for r in good) >= 12
    for r in good:  # an explicit threshold: low confidence and novelty decide, never "not shown safe"
        novel = float(r["novelty"]) > 1.0
        low = r["predicted"] == "ok" and float(r["p_acceptable"]) < 0.5
        assert r["review"] == str(low or novel)
        assert r["route"] == ("review" if low or novel else "pass" if r["predicted"] == "ok" else "defect")
        assert r["review_reason"] == ("low confidence + novel" if low and novel else "novel" if novel
                                      else "low confidence" if low else "")
    assert rows[-1]["error"] and rows[-1]["predicted"] == ""
    assert "1 unreadable" in capsys.readouterr().err


def test_predict_command_refuses_a_damaged_model_in_one_line(exported, tmp_path, capsys):
    bad = tmp_path / "bad.inspector-model"
    data = bytearray(exported["path"].read_bytes())
    data[100] ^= 0xFF
    bad.write_bytes(bytes(data))
    assert main(["predict", str(bad), str(exported["project"].image_root), "--quiet"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("inspector: error:") and "checksum" in err and "\n" not in err


def test_lazy_top_level_load_model(exported):
    import inspector

    assert inspector.load_model(exported["path"]).class_names == list(CLASSES)
