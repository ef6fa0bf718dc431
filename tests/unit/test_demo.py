"""The procedural demo data set: neutral file names with the truth in a CSV (or folders per class
when asked), mostly OK parts, deterministic."""

from __future__ import annotations

import csv
import hashlib

import cv2
import numpy as np
import pytest

from inspector.core.demo import DEFECT_CLASSES, OK_CLASS, TRUTH_FILE, render_part, write_demo_dataset
from inspector.core.errors import UserError
from inspector.core.progress import CancelToken, Cancelled


def _digest(folder) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): hashlib.sha1(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*.png"))
    }


def test_names_give_no_class_away_and_truth_is_in_a_csv(tmp_path):
    calls = []
    summary = write_demo_dataset(tmp_path / "demo", n_images=30, size=(96, 128), ok_fraction=0.8,
                                 defect_area=0.02, random_state=0, progress=lambda d, t, m: calls.append((d, t)))
    root = tmp_path / "demo"
    assert not [p for p in root.iterdir() if p.is_dir()]  # one folder: the layout tells nothing
    files = sorted(p.name for p in root.glob("*.png"))
    assert len(files) == 30 and files == sorted(summary["files"])
    classes = (OK_CLASS, *DEFECT_CLASSES)
    assert not [f for f in files if any(c in f for c in classes)]
    with open(root / TRUTH_FILE, newline="", encoding="utf-8") as handle:
        truth = {row["path"]: row["label"] for row in csv.DictReader(handle)}
    assert set(truth) == set(files)
    counts = {name: list(truth.values()).count(name) for name in set(truth.values())}
    assert counts == {k: v for k, v in summary["counts"].items() if v}
    assert counts[OK_CLASS] == 24 and len(counts) >= 4 and set(counts) <= set(classes)
    assert calls[-1] == (30, 30)
    image = cv2.imread(str(root / summary["files"][0]), cv2.IMREAD_UNCHANGED)
    assert image.shape == (96, 128) and image.dtype == np.uint8


def test_class_folders_when_asked(tmp_path):
    summary = write_demo_dataset(tmp_path / "demo", n_images=20, size=(64, 80), class_folders=True)
    root = tmp_path / "demo"
    folders = sorted(p.name for p in root.iterdir() if p.is_dir())
    assert OK_CLASS in folders and set(folders) <= {OK_CLASS, *DEFECT_CLASSES}
    assert {name: len(list((root / name).glob("*.png"))) for name in folders} == summary["counts"]
    with open(root / TRUTH_FILE, newline="", encoding="utf-8") as handle:
        assert all(row["path"].split("/")[0] == row["label"] for row in csv.DictReader(handle))


def test_deterministic(tmp_path):
    write_demo_dataset(tmp_path / "a", n_images=10, size=(64, 80), random_state=7)
    write_demo_dataset(tmp_path / "b", n_images=10, size=(64, 80), random_state=7)
    write_demo_dataset(tmp_path / "c", n_images=10, size=(64, 80), random_state=8)
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    assert _digest(tmp_path / "a") != _digest(tmp_path / "c")


def test_defect_is_small_and_visible():
    rng = np.random.default_rng(0)
    for kind in DEFECT_CLASSES:
        seed = int(rng.integers(1000))
        clean, _ = render_part((400, 400), None, 0.01, np.random.default_rng(seed))
        image, box = render_part((400, 400), kind, 0.01, np.random.default_rng(seed))
        x, y, w, h = box
        assert w * h <= 0.03 * 400 * 400
        changed = np.abs(image.astype(int) - clean.astype(int)) > 6
        assert changed.sum() > 10, kind
        outside = changed.copy()
        outside[max(0, y - 6): y + h + 6, max(0, x - 6): x + w + 6] = False
        assert outside.sum() == 0, kind


def test_refuses_non_empty_folder_and_cancels(tmp_path):
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "x.txt").write_text("x")
    with pytest.raises(UserError):
        write_demo_dataset(tmp_path / "busy", n_images=2, size=(64, 64))
    token = CancelToken()
    token.cancel()
    with pytest.raises(Cancelled):
        write_demo_dataset(tmp_path / "new", n_images=5, size=(64, 64), cancel=token)
