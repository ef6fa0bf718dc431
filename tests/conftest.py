"""Shared fixtures: offscreen Qt, the real data set (skipped when absent), small generated images."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("MPLBACKEND", "Agg")

REPO_ROOT = Path(__file__).resolve().parents[1]


def test_data_root() -> Path:
    return Path(os.environ.get("INSPECTOR_TEST_DATA", REPO_ROOT.parent / "shared" / "datasets"))


@pytest.fixture(scope="session")
def neu_dir() -> Path:
    """The NEU steel-surface data set (6 classes x 300 images, folder per class)."""
    folder = test_data_root() / "neu"
    if not folder.is_dir():
        if os.environ.get("INSPECTOR_REQUIRE_TEST_DATA"):
            pytest.fail(f"the shared data set is required here but {folder} is missing")
        pytest.skip(f"real data set not found at {folder} (set INSPECTOR_TEST_DATA)")
    return folder


@pytest.fixture
def small_image_folder(tmp_path: Path) -> Path:
    """A folder of 40 small generated images in two class folders (ok/, scratch/)."""
    import cv2
    import numpy as np

    rng = np.random.default_rng(0)
    root = tmp_path / "images"
    for cls in ("ok", "scratch"):
        (root / cls).mkdir(parents=True)
    for i in range(40):
        cls = "scratch" if i % 4 == 0 else "ok"
        image = (rng.normal(128, 12, (96, 96))).clip(0, 255).astype(np.uint8)
        if cls == "scratch":
            cv2.line(image, (10, 10 + i), (80, 60), 230, 2)
        cv2.imwrite(str(root / cls / f"part_{i:03d}.png"), image)
    return root


@pytest.fixture
def blob_project(tmp_path):
    """``blob_project(per_class)``: a project of 3 x ``per_class`` images whose features are 2-D
    blobs (extractor ("synthetic", 1)), classes ok/scratch/dent defined, no labels;
    ``project.truth`` maps each image to its class id. Closed after the test."""
    import numpy as np

    from inspector.core.store import ImageAnalysis, Project

    made = []

    def make(per_class: int):
        (tmp_path / "images").mkdir()
        p = Project.create(tmp_path / "p.inspector", tmp_path / "images")
        rng = np.random.default_rng(0)
        new = [(f"c{k}/img{i:03d}.png", 100, 0) for k in range(3) for i in range(per_class)]
        p.record_scan(new, [], [], [])
        truth = {p.find_image(path): int(path[1]) for path, _, _ in new}
        centres = np.array([[0, 0], [5, 0], [0, 5]], float)
        p.save_analyses([ImageAnalysis(i, f"h{i}", 10, 10, 8, 1,
                                       features=(centres[k] + rng.normal(0, 0.8, 2)).astype(np.float32))
                         for i, k in truth.items()], "synthetic", 1)
        classes = [p.add_class(name) for name in ("ok", "scratch", "dent")]
        p.truth = {i: classes[k] for i, k in truth.items()}
        made.append(p)
        return p

    yield make
    for p in made:
        p.close()


@pytest.fixture
def novelty_via_model_file():
    """A novelty model as a model file would bring it back: its header through JSON and its
    arrays checked to be plain numbers (a model file never holds objects)."""
    import json

    import numpy as np

    from inspector.core.learning.novelty import NoveltyModel

    def round_trip(model: NoveltyModel) -> NoveltyModel:
        header = json.loads(json.dumps(model.to_header()))
        arrays = model.arrays()
        for name, array in arrays.items():
            assert isinstance(array, np.ndarray) and array.dtype.kind in "fi", name
        return NoveltyModel.from_file(header, arrays)

    return round_trip
