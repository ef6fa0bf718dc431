"""The app on folders organised with links: linked class folders are read, labelled and shown
as thumbnails; a folder with no image gives no project and says why on the start page."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("pytestqt")

from PySide6.QtCore import QSettings  # noqa: E402

from inspector.core import ingest  # noqa: E402
from inspector.ui.thumbnails import ThumbnailLoader  # noqa: E402

pytestmark = pytest.mark.skipif(os.name == "nt", reason="symbolic links need privileges on Windows")


@pytest.fixture(autouse=True)
def _isolated(isolated_settings):  # tests/ui/conftest.py: own QSettings, files read in-process
    yield


def test_folder_with_no_image_gives_no_project_and_the_start_page_says_why(window, qtbot, tmp_path, opened):
    root = tmp_path / "line3"
    root.mkdir()
    (root / "readme.txt").write_text("images are on the share")
    (root / "ok").symlink_to(tmp_path / "share" / "ok", target_is_directory=True)  # share not mounted
    (root / "scratch").symlink_to(tmp_path / "share" / "scratch", target_is_directory=True)
    project_path = tmp_path / "line3.inspector"
    assert opened(window.new_project_from_folder, str(root), str(project_path))
    qtbot.waitUntil(lambda: window.session is None, timeout=20000)
    notice = window.start_page.notice
    qtbot.waitUntil(notice.isVisible, timeout=5000)
    assert window.stack.currentWidget() is window.start_page
    text = notice.text()
    assert text.startswith("No images found in") and "2 links that lead nowhere" in text
    assert "1 file of other types (.txt 1)" in text and "No project was created" in text
    assert not project_path.exists()
    assert not any(str(project_path.resolve()) in window.start_page.recent.item(i).data(0x0100) or ""
                   for i in range(window.start_page.recent.count())
                   if window.start_page.recent.item(i).data(0x0100))
    if os.environ.get("INSPECTOR_SCREENSHOTS"):
        window.grab().save(os.path.join(os.environ["INSPECTOR_SCREENSHOTS"], "start-page-no-images.png"))
    # the next project clears the notice
    (tmp_path / "share" / "ok").mkdir(parents=True)
    cv2.imwrite(str(tmp_path / "share" / "ok" / "a.png"), np.full((32, 32), 90, np.uint8))
    assert opened(window.new_project_from_folder, str(root), str(project_path))
    assert not notice.isVisible()


def test_linked_class_folders_are_read_and_thumbnailed(window, qtbot, tmp_path, opened):
    store = tmp_path / "store"
    rng = np.random.default_rng(3)
    for cls in ("ok", "scratch"):
        (store / cls).mkdir(parents=True)
        for i in range(6):
            image = rng.normal(120, 15, (48, 48)).clip(0, 255).astype(np.uint8)
            if cls == "scratch":
                cv2.line(image, (4, 4 + i), (44, 40), 250, 2)
            cv2.imwrite(str(store / cls / f"{cls}_{i}.png"), image)
    root = tmp_path / "line3"
    root.mkdir()
    for cls in ("ok", "scratch"):
        (root / cls).symlink_to(store / cls, target_is_directory=True)
    assert opened(window.new_project_from_folder, str(root), str(tmp_path / "line3.inspector"))
    session = window.session
    qtbot.waitUntil(lambda: not session.extracting() and not session.loading_features()
                    and window.label_view.current is not None, timeout=30000)
    paths = sorted(session.project.image_paths().values())
    assert paths == sorted(f"{cls}/{cls}_{i}.png" for cls in ("ok", "scratch") for i in range(6))
    assert not window.start_page.notice.isVisible()
    loader = ThumbnailLoader(session.project, side=64, workers=1)
    ids = list(session.project.image_paths())
    for image_id in ids:
        loader.thumbnail(image_id)
    qtbot.waitUntil(lambda: all(loader.thumbnail(i) is not None or loader.failure(i) for i in ids), timeout=20000)
    assert all(loader.failure(i) is None for i in ids)
    loader.shutdown()
