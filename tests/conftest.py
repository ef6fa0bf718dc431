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
