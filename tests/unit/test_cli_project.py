"""`inspector new/scan/info/relocate/demo` in-process: exit codes, one-line errors, no tracebacks."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from inspector.cli import main


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


def error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("inspector:")]
    assert len(lines) == 1, err
    return lines[0]


def info(capsys, project: Path) -> dict:
    code, out, _ = run(capsys, "info", str(project), "--json")
    assert code == 0
    return json.loads(out)


@pytest.fixture
def made(tmp_path, small_image_folder, capsys) -> Path:
    project = tmp_path / "p.inspector"
    code, out, _ = run(capsys, "new", str(project), "--images", str(small_image_folder), "--labels-from-folders",
                       "--quiet", "--workers", "1")
    assert code == 0
    assert "Imported 40 labels" in out
    return project


def test_new_with_folder_labels_then_info(made, capsys):
    summary = info(capsys, made)
    assert summary["images"] == 40 and summary["features"] == 40
    assert summary["errors"] == [] and summary["labels"] == 40
    assert summary["classes"] == {"ok": 30, "scratch": 10}
    code, out, _ = run(capsys, "info", str(made))
    assert code == 0 and "40 usable" in out and "scratch" in out


def test_new_refuses_existing_project_unchanged(made, small_image_folder, capsys):
    before = made.read_bytes()
    code, _, err = run(capsys, "new", str(made), "--images", str(small_image_folder), "--quiet")
    assert code == 1 and "already exists" in error_line(err)
    assert made.read_bytes() == before


def test_new_with_missing_image_folder(tmp_path, capsys):
    code, _, err = run(capsys, "new", str(tmp_path / "p.inspector"), "--images", str(tmp_path / "nope"))
    assert code == 1 and "does not exist" in error_line(err)
    assert not (tmp_path / "p.inspector").exists()


@pytest.mark.parametrize("argv", [["new", "p.inspector"], ["frobnicate"], ["info"], ["demo", "x", "-n", "many"]])
def test_usage_errors_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert "usage:" in capsys.readouterr().err


def test_info_on_bad_files(tmp_path, capsys):
    junk = tmp_path / "junk.inspector"
    junk.write_bytes(b"definitely not sqlite" * 10)
    for target, words in ((junk, "not an Inspector project"), (tmp_path / "absent.inspector", "no project"),
                          (tmp_path, "folder")):
        code, _, err = run(capsys, "info", str(target))
        assert code == 1 and words in error_line(err)


def test_scan_picks_up_a_new_file(made, small_image_folder, capsys):
    cv2.imwrite(str(small_image_folder / "ok" / "late.png"), np.full((50, 50), 90, np.uint8))
    (small_image_folder / "ok" / "part_001.png").unlink()
    code, out, _ = run(capsys, "scan", str(made), "--quiet", "--workers", "1")
    assert code == 0 and "1 new" in out and "1 gone" in out and "read 1 files" in out
    summary = info(capsys, made)
    assert summary["images"] == 40 and summary["missing"] == 1


def test_second_command_while_project_open(made, capsys):
    from inspector.core.store import Project

    with Project.open(made):
        code, _, err = run(capsys, "scan", str(made), "--quiet")
        assert code == 1 and "already open" in error_line(err)
        assert info(capsys, made)["images"] == 40  # info only reads: allowed meanwhile


def test_relocate(made, small_image_folder, tmp_path, capsys):
    moved = tmp_path / "moved_images"
    shutil.move(str(small_image_folder), str(moved))
    assert info(capsys, made)["image_root_found"] is False
    code, _, err = run(capsys, "relocate", str(made), str(tmp_path / "nowhere"))
    assert code == 1 and "not a folder" in error_line(err)
    code, out, _ = run(capsys, "relocate", str(made), str(moved))
    assert code == 0 and str(moved.resolve()) in out
    summary = info(capsys, made)
    assert summary["image_root_found"] is True and summary["features"] == 40
    code, out, _ = run(capsys, "scan", str(made), "--quiet", "--workers", "1")
    assert code == 0 and "0 new, 0 changed, 0 gone" in out


def test_demo(tmp_path, capsys):
    folder = tmp_path / "demo"
    code, out, _ = run(capsys, "demo", str(folder), "-n", "12", "--seed", "3")
    assert code == 0 and "Wrote 12" in out
    assert len(list(folder.rglob("*.png"))) == 12
    code, _, err = run(capsys, "demo", str(folder), "-n", "12")
    assert code == 1 and "not empty" in error_line(err)
    code, _, err = run(capsys, "demo", str(tmp_path / "other"), "-n", "3")
    assert code == 1 and "at least 10" in error_line(err)


def test_labels_csv_with_unknown_paths_warned(tmp_path, small_image_folder, capsys):
    table = tmp_path / "labels.csv"
    table.write_text("Path,Label\nok/part_001.png,good\nscratch/part_000.png,scratch\n"
                     "ok/not_there.png,good\nelsewhere/x.png,scratch\n,empty\n", encoding="utf-8")
    project = tmp_path / "p.inspector"
    code, out, err = run(capsys, "new", str(project), "--images", str(small_image_folder), "--labels-csv",
                         str(table), "--quiet", "--workers", "1")
    assert code == 0 and "Imported 2 labels" in out
    assert "2 paths" in err and "ok/not_there.png" in err
    assert info(capsys, project)["classes"] == {"good": 1, "scratch": 1}


def test_labels_csv_without_columns_is_a_clear_error(tmp_path, small_image_folder, capsys):
    table = tmp_path / "labels.csv"
    table.write_text("file;class\nok/part_001.png;good\n", encoding="utf-8")
    code, _, err = run(capsys, "new", str(tmp_path / "p.inspector"), "--images", str(small_image_folder),
                       "--labels-csv", str(table), "--quiet", "--workers", "1")
    assert code == 1 and "'path' and 'label'" in error_line(err)
    binary = tmp_path / "labels_binary.csv"
    binary.write_bytes(b"\xff\xfe\x00\x00garbage\x80\x81")
    code, _, err = run(capsys, "new", str(tmp_path / "q.inspector"), "--images", str(small_image_folder),
                       "--labels-csv", str(binary), "--quiet", "--workers", "1")
    assert code == 1 and "labels_binary.csv" in error_line(err)
