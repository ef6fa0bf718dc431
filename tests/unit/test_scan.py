"""Folder scans: new, changed, deleted and returning files; only what changed is read again."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from inspector.core.errors import ProjectError
from inspector.core.features import default_extractor
from inspector.core.ingest import analyse_pending, scan_folder, scan_project
from inspector.core.progress import CancelToken, Cancelled
from inspector.core.store import Project

EXTRACTOR = default_extractor()


def draw(path: Path, seed: int, size: int = 48) -> None:
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), rng.normal(128, 25, (size, size)).clip(0, 255).astype(np.uint8))


def bump_mtime(path: Path) -> None:
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "images"
    for i in range(6):
        draw(root / ("a" if i < 3 else "b") / f"img_{i}.png", i)
    return root


@pytest.fixture
def project(tmp_path: Path, folder: Path):
    with Project.create(tmp_path / "p.inspector", folder) as p:
        yield p


def test_first_scan_reads_everything(project):
    summary = scan_project(project, workers=1)
    assert (summary.new, summary.changed, summary.missing, summary.analysed, summary.errors) == (6, 0, 0, 6, 0)
    ids, X = project.feature_matrix(EXTRACTOR.name, EXTRACTOR.version)
    assert len(ids) == 6 and X.shape == (6, EXTRACTOR.dim)
    assert np.isfinite(X).all()
    record = project.image(int(ids[0]))
    assert (record.width, record.height, record.bit_depth, record.channels) == (48, 48, 8, 1)


def test_rescan_without_changes_reads_nothing(project):
    scan_project(project, workers=1)
    summary = scan_project(project, workers=1)
    assert (summary.new, summary.changed, summary.missing, summary.analysed) == (0, 0, 0, 0)


def test_rescan_picks_up_new_changed_and_deleted(project, folder):
    scan_project(project, workers=1)
    before = dict(zip(*project.feature_matrix(EXTRACTOR.name, EXTRACTOR.version)))
    changed_id = project.find_image("a/img_1.png")
    gone_id = project.find_image("b/img_4.png")
    draw(folder / "a" / "img_1.png", 100)  # different content
    bump_mtime(folder / "a" / "img_1.png")
    (folder / "b" / "img_4.png").unlink()
    draw(folder / "c" / "new_one.png", 200)
    draw(folder / "c" / "new_two.png", 201)

    summary = scan_project(project, workers=1)
    assert (summary.new, summary.changed, summary.missing) == (2, 1, 1)
    assert summary.analysed == 3  # two new + one changed; the four unchanged were not read again
    ids, X = project.feature_matrix(EXTRACTOR.name, EXTRACTOR.version)
    after = dict(zip(ids.tolist(), X))
    assert gone_id not in after and len(after) == 7
    assert not np.array_equal(after[changed_id], before[changed_id])
    unchanged = project.find_image("a/img_0.png")
    np.testing.assert_array_equal(after[unchanged], before[unchanged])
    assert project.counts()["missing"] == 1


def test_deleted_file_that_returns_keeps_its_id_and_labels(project, folder):
    scan_project(project, workers=1)
    image_id = project.find_image("a/img_2.png")
    project.add_label(image_id, project.add_class("ok"))
    moved = folder.parent / "aside.png"
    shutil.move(str(folder / "a" / "img_2.png"), str(moved))
    scan_project(project, workers=1)
    assert image_id not in project.latest_labels()  # gone files are not training data
    shutil.move(str(moved), str(folder / "a" / "img_2.png"))
    summary = scan_project(project, workers=1)
    assert summary.returned == 1 and summary.analysed == 0
    assert project.find_image("a/img_2.png") == image_id
    assert image_id in project.latest_labels()


def test_duplicates_detected(project, folder):
    shutil.copy(folder / "a" / "img_0.png", folder / "b" / "copy_of_0.png")
    scan_project(project, workers=1)
    assert project.duplicates() == [(project.find_image("b/copy_of_0.png"), project.find_image("a/img_0.png"))]


def test_bad_file_is_reported_and_scan_goes_on(project, folder):
    (folder / "a" / "broken.png").write_bytes(b"")
    (folder / "a" / "note.png").write_text("not a picture")
    summary = scan_project(project, workers=1)
    assert summary.errors == 2 and summary.analysed == 8
    reasons = {r.path: r.error for r in project.problem_files()}
    assert "empty" in reasons["a/broken.png"] and "not an image" in reasons["a/note.png"]
    assert len(project.image_ids()) == 6
    # fixing the file is picked up by the next scan
    draw(folder / "a" / "broken.png", 300)
    bump_mtime(folder / "a" / "broken.png")
    summary = scan_project(project, workers=1)
    assert summary.changed == 1 and summary.analysed == 1
    assert "a/broken.png" not in {r.path for r in project.problem_files()}


def test_worker_processes_give_the_same_features(tmp_path):
    root = tmp_path / "many"
    for i in range(30):  # above the in-process threshold: real spawn workers
        draw(root / f"p{i:02d}.png", i, size=32)
    seen = []
    with Project.create(tmp_path / "pool.inspector", root) as p:
        summary = scan_project(p, workers=2, progress=lambda d, t, m: seen.append((d, t)))
        assert summary.analysed == 30
        ids, X = p.feature_matrix(EXTRACTOR.name, EXTRACTOR.version)
        first = p.find_image("p00.png")
        assert seen[-1] == (30, 30)
    from inspector.core.images import load_gray

    direct = EXTRACTOR.extract(load_gray(root / "p00.png", EXTRACTOR.max_side))
    np.testing.assert_allclose(X[list(ids).index(first)], direct, rtol=1e-5, atol=1e-6)


def test_cancel_keeps_what_was_done(project):
    scan_folder(project)
    token = CancelToken()

    def progress(done, total, message):
        if done >= 2:
            token.cancel()

    with pytest.raises(Cancelled):
        analyse_pending(project, workers=1, progress=progress, cancel=token)
    kept = project.feature_count(EXTRACTOR.name, EXTRACTOR.version)
    assert 2 <= kept < 6
    analysed, _ = analyse_pending(project, workers=1)
    assert analysed == 6 - kept


def test_missing_image_folder_is_a_clear_error(project, folder):
    shutil.rmtree(folder)
    with pytest.raises(ProjectError, match="not there"):
        scan_folder(project)


def test_first_images_read_are_spread_over_the_folder(tmp_path):
    """A folder sorted by class (or by time): the first images read, which labelling starts
    with, come from all of it, not from its first sub-folder."""
    import cv2
    import numpy as np

    from inspector.core import ingest
    from inspector.core.store import Project

    for cls in ("a_defective", "b_functional", "c_other"):
        (tmp_path / "imgs" / cls).mkdir(parents=True)
        for i in range(30):
            cv2.imwrite(str(tmp_path / "imgs" / cls / f"{i:03d}.png"), np.full((32, 32), i * 3, np.uint8))
    with Project.create(tmp_path / "p.inspector", tmp_path / "imgs") as project:
        ingest.scan_folder(project)
        pending = project.pending_analysis(ingest._extractor().name, ingest._extractor().version)
        first = ingest.spread_order(pending)[:24]
        assert {path.split("/")[0] for _, path in first} == {"a_defective", "b_functional", "c_other"}
        assert sorted(ingest.spread_order(pending)) == sorted(pending)
