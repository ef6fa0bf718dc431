"""Image folders organised with symbolic links: linked class folders, linked files, loops, links
out of the image folder, two links to one folder, links that lead nowhere; and the one line an
empty project gets instead of a silent, empty project."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from inspector.cli import main
from inspector.core.images import WalkSkips, walk_images
from inspector.core.ingest import analyse_pending, no_usable_image_message, scan_folder
from inspector.core.store import Project

pytestmark = pytest.mark.skipif(not hasattr(os, "symlink") or os.name == "nt",
                                reason="symbolic links need privileges on Windows")


def draw(path: Path, seed: int) -> None:
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    image = rng.normal(120, 20, (40, 40)).clip(0, 255).astype(np.uint8)
    if seed % 2:
        cv2.line(image, (3, 3), (36, 30), 250, 2)
    cv2.imwrite(str(path), image)


@pytest.fixture
def linked(tmp_path: Path) -> Path:
    """``store/`` holds the real class folders (another disk, say); ``images/`` is what the user
    points Inspector at: class folders that are links into the store, plus every awkward link."""
    store = tmp_path / "store"
    for cls, seeds in (("ok", range(0, 8, 2)), ("scratch", range(1, 8, 2))):
        for seed in seeds:
            draw(store / cls / f"part_{seed}.png", seed)
    draw(tmp_path / "elsewhere" / "single.png", 11)
    root = tmp_path / "images"
    root.mkdir()
    (root / "ok").symlink_to(store / "ok", target_is_directory=True)  # absolute link out of the root
    (root / "scratch").symlink_to(Path("..") / "store" / "scratch", target_is_directory=True)  # relative link
    (root / "scratch_again").symlink_to(store / "scratch", target_is_directory=True)  # same folder twice
    real = root / "real"
    draw(real / "own_1.png", 21)
    (real / "loop").symlink_to(root, target_is_directory=True)  # back to a folder containing it
    (real / "linked_file.png").symlink_to(tmp_path / "elsewhere" / "single.png")
    (root / "gone.png").symlink_to(tmp_path / "deleted.png")  # an image link that leads nowhere
    (root / "gone_folder").symlink_to(tmp_path / "unmounted", target_is_directory=True)
    return root


def test_walk_follows_links_once_each_and_keeps_the_paths_the_user_sees(linked):
    errors: list[tuple[str, str]] = []
    skipped = WalkSkips()
    found = [f.relative_path for f in walk_images(linked, errors, skipped)]
    assert found == [
        "ok/part_0.png", "ok/part_2.png", "ok/part_4.png", "ok/part_6.png",
        "real/linked_file.png", "real/own_1.png",
        "scratch/part_1.png", "scratch/part_3.png", "scratch/part_5.png", "scratch/part_7.png",
    ]  # the link names, never the store's paths; scratch_again adds nothing; the loop ends
    assert skipped.repeated_folders == 1 and skipped.link_loops == 1
    assert skipped.dangling_links == 2  # gone.png and gone_folder
    assert errors == [("gone.png", f"broken link: it leads to {linked.parent / 'deleted.png'}, which is not there")]
    assert found == [f.relative_path for f in walk_images(linked)]  # stable order


def test_a_link_loop_between_two_folders_ends(tmp_path):
    root = tmp_path / "root"
    draw(root / "a" / "x.png", 1)
    draw(root / "b" / "y.png", 2)
    (root / "a" / "to_b").symlink_to(root / "b", target_is_directory=True)
    (root / "b" / "to_a").symlink_to(root / "a", target_is_directory=True)
    (root / "self").symlink_to(root / "self")  # a link to itself: leads nowhere
    skipped = WalkSkips()
    found = [f.relative_path for f in walk_images(root, [], skipped)]
    # a folder is claimed when its parent is listed, so the real a and b win over the links
    # between them, which are passed over as second paths to folders already walked
    assert found == ["a/x.png", "b/y.png"]
    assert skipped.repeated_folders == 2 and skipped.dangling_links == 1


def test_scan_and_rescan_of_linked_folders(linked):
    with Project.create(linked.parent / "p.inspector", linked) as project:
        summary = scan_folder(project)
        assert (summary.new, summary.found, summary.errors) == (10, 10, 1)  # gone.png is a problem file
        analyse_pending(project, workers=1)
        paths = sorted(project.image_paths().values())
        assert "scratch/part_1.png" in paths and "scratch_again/part_1.png" not in paths
        assert not any("store" in p for p in paths)
        assert no_usable_image_message(project, summary) is None
        again = scan_folder(project)  # nothing changed: a rescan through the links agrees
        assert (again.new, again.changed, again.missing) == (0, 0, 0)
        (linked / "scratch").unlink()  # the link is removed: its images are gone, labels kept
        third = scan_folder(project)
        assert third.missing == 4


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


def test_new_with_linked_class_folders_imports_their_labels(linked, capsys):
    project = linked.parent / "p.inspector"
    code, out, _ = run(capsys, "new", str(project), "--images", str(linked), "--labels-from-folders",
                       "--quiet", "--workers", "1")
    assert code == 0
    assert "Imported 10 labels" in out  # ok 4, scratch 4, real 2 (folder names are classes)
    with Project.open(project, read_only=True) as p:
        assert sorted(c.name for c in p.classes()) == ["ok", "real", "scratch"]


def test_new_on_a_folder_with_no_image_says_why_in_one_line_and_creates_nothing(tmp_path, capsys):
    root = tmp_path / "imgs"
    root.mkdir()
    (root / "notes.txt").write_text("x")
    (root / "scan.webp").write_bytes(b"RIFF")
    (root / "scan2.webp").write_bytes(b"RIFF")
    (root / ".DS_Store").write_bytes(b"x")
    (root / "ok").symlink_to(tmp_path / "not mounted", target_is_directory=True)
    (root / "scratch").symlink_to(tmp_path / "not mounted either", target_is_directory=True)
    project = tmp_path / "p.inspector"
    code, _, err = run(capsys, "new", str(project), "--images", str(root), "--quiet", "--workers", "1")
    assert code == 1
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    line = lines[0]
    assert line.startswith("inspector: error: no images found in")
    assert "3 files of other types (.webp 2, .txt 1)" in line
    assert "1 hidden file or folder" in line and "2 links that lead nowhere" in line
    assert "no project created" in line
    assert not project.exists() and not any(tmp_path.glob("p.inspector*"))
    # the same command succeeds once the links lead somewhere
    draw(tmp_path / "not mounted" / "a.png", 0)
    draw(tmp_path / "not mounted either" / "b.png", 1)
    code, out, _ = run(capsys, "new", str(project), "--images", str(root), "--quiet", "--workers", "1")
    assert code == 0 and "Created" in out


def test_new_on_an_empty_folder_and_on_only_unreadable_images(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    code, _, err = run(capsys, "new", str(tmp_path / "e.inspector"), "--images", str(empty), "--quiet")
    assert code == 1 and "the folder is empty" in err
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "a.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    code, _, err = run(capsys, "new", str(tmp_path / "b.inspector"), "--images", str(broken), "--quiet")
    assert code == 1
    assert "none of the 1 image files" in err and "a.png" in err
    assert not (tmp_path / "b.inspector").exists()


def test_rescan_that_finds_nothing_warns_and_keeps_the_project(linked, capsys):
    project = linked.parent / "p.inspector"
    assert run(capsys, "new", str(project), "--images", str(linked), "--labels-from-folders", "--quiet",
               "--workers", "1")[0] == 0
    for name in ("ok", "scratch", "scratch_again", "real"):
        path = linked / name
        path.unlink() if path.is_symlink() else __import__("shutil").rmtree(path)
    (linked / "gone.png").unlink()
    code, _, err = run(capsys, "scan", str(project), "--quiet")
    assert code == 0 and "warning: no images found" in err
    with Project.open(project, read_only=True) as p:
        assert len(p.latest_label_events()) == 10  # labels are kept for when the images come back


def test_simulate_data_set_and_predict_follow_links(linked):
    from inspector.core.learning.simulate import folder_dataset
    from inspector.core.modelfile.loaded import expand_paths

    (linked / "real").rename(linked.parent / "real_elsewhere")  # two classes only for simulate
    X, y, classes, paths = folder_dataset(linked, workers=1)
    assert classes == ["ok", "scratch"]
    assert len(paths) == 8 and all(p.startswith(("ok/", "scratch/")) for p in paths)
    assert sorted(np.bincount(y).tolist()) == [4, 4]
    expanded = expand_paths([linked])
    assert [p.relative_to(linked).as_posix() for p in expanded] == sorted(paths)
