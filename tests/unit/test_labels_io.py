"""Labels out and back in: CSV/JSON round trips, folder-per-class copies, refusals."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from inspector.cli import main
from inspector.core.errors import UserError
from inspector.core.labels_io import export_label_folder, export_labels, import_labels, label_rows
from inspector.core.store import Project


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    rng = np.random.default_rng(1)
    root = tmp_path / "images"
    for sub in ("line a", "line b/ünï"):
        (root / sub).mkdir(parents=True)
        for i in range(5):
            cv2.imwrite(str(root / sub / f"part {i}.png"), rng.integers(0, 255, (24, 24), dtype=np.uint8))
    return root


def new_project(path: Path, images: Path) -> Project:
    from inspector.core.ingest import scan_folder

    project = Project.create(path, images)
    scan_folder(project)  # paths are all labels need; features are not read here
    return project


def labelled(tmp_path: Path, images: Path) -> Project:
    project = new_project(tmp_path / "a.inspector", images)
    ok, scratch = project.add_class("ok"), project.add_class("scratch, deep")
    ids = sorted(r.id for r in project.images(usable_only=False))
    for n, image_id in enumerate(ids[:8]):
        project.add_label(image_id, ok if n % 3 else scratch, annotator="ana" if n % 2 else "bo")
    project.add_label(ids[0], ok, annotator="carla")  # relabelled: latest wins, history keeps both
    project.add_label(ids[8], kind="unsure", annotator="ana")
    return project


def _core(rows):
    return [(r["path"], r["label"], r["annotator"]) for r in rows]


@pytest.mark.parametrize("suffix", [".csv", ".json"])
def test_round_trip_is_exact(tmp_path, image_folder, suffix):
    source = labelled(tmp_path, image_folder)
    out = tmp_path / f"labels{suffix}"
    try:
        assert export_labels(source, out) == 8
        before = label_rows(source)
    finally:
        source.close()
    target = new_project(tmp_path / "b.inspector", image_folder)
    try:
        summary = import_labels(target, out, create_classes=True)
        assert summary.imported == 8 and not summary.unknown_paths
        assert sorted(summary.new_classes) == ["ok", "scratch, deep"]
        after = label_rows(target)
        assert _core(after) == _core(before)
        again = tmp_path / f"again{suffix}"
        export_labels(target, again)
        if suffix == ".csv":
            rows = list(csv.DictReader(open(again, encoding="utf-8")))
        else:
            rows = json.loads(again.read_text(encoding="utf-8"))["labels"]
        assert _core(rows) == _core(before)
        assert all(r["source"] == "imported" for r in rows)
    finally:
        target.close()


def test_history_lists_every_event(tmp_path, image_folder):
    project = labelled(tmp_path, image_folder)
    try:
        out = tmp_path / "history.csv"
        assert export_labels(project, out, history=True) == 10
        rows = list(csv.DictReader(open(out, encoding="utf-8")))
        kinds = [r["kind"] for r in rows]
        assert kinds.count("unsure") == 1 and kinds.count("class") == 9
        first = [r for r in rows if r["path"] == rows[0]["path"]]
        assert [r["annotator"] for r in first] == ["bo", "carla"]
    finally:
        project.close()


def test_history_file_imports_to_the_same_latest_labels(tmp_path, image_folder):
    source = labelled(tmp_path, image_folder)
    try:
        export_labels(source, tmp_path / "history.json", history=True)
        before = label_rows(source)
    finally:
        source.close()
    target = new_project(tmp_path / "b.inspector", image_folder)
    try:
        summary = import_labels(target, tmp_path / "history.json", create_classes=True)
        assert summary.imported == 9 and summary.skipped == 1  # the 'unsure' event is not a class label
        assert _core(label_rows(target)) == _core(before)
    finally:
        target.close()


def test_unknown_paths_are_reported_not_guessed(tmp_path, image_folder):
    project = new_project(tmp_path / "p.inspector", image_folder)
    try:
        f = tmp_path / "in.csv"
        f.write_text("Path,Class\nline a/part 0.png,ok\nnowhere/part 9.png,ok\n,ok\n", encoding="utf-8")
        summary = import_labels(project, f, annotator="dee", create_classes=True)
        assert summary.imported == 1 and summary.unknown_paths == ["nowhere/part 9.png"] and summary.skipped == 1
        assert [e.annotator for e in project.latest_label_events().values()] == ["dee"]
    finally:
        project.close()


def test_bad_label_files_are_refused_and_change_nothing(tmp_path, image_folder, capsys):
    project_path = tmp_path / "p.inspector"
    new_project(project_path, image_folder).close()
    no_columns = tmp_path / "bad.csv"
    no_columns.write_text("file;klass\na;b\n", encoding="utf-8")
    not_json = tmp_path / "bad.json"
    not_json.write_text("{oops", encoding="utf-8")
    for bad in (no_columns, not_json, tmp_path / "absent.csv"):
        assert main(["import-labels", str(project_path), str(bad)]) == 1
        err = capsys.readouterr().err.strip()
        assert err.startswith("inspector: error:") and "\n" not in err
    with Project.open(project_path, read_only=True) as project:
        assert project.label_event_count() == 0 and project.classes() == []
    with Project.open(project_path, read_only=True) as project:
        with pytest.raises(UserError, match=r"\.csv or \.json"):
            export_labels(project, tmp_path / "labels.txt")


@pytest.mark.parametrize("link", [False, True])
def test_folder_per_class_export(tmp_path, image_folder, link):
    project = labelled(tmp_path, image_folder)
    try:
        out = tmp_path / "for-training"
        result = export_label_folder(project, out, link=link)
        assert result.placed == 8 and not result.problems
        assert sorted(p.name for p in out.iterdir()) == ["ok", "scratch, deep"]
        placed = sorted(out.rglob("*.png"))
        assert len(placed) == 8
        for path in placed:
            original = image_folder / path.name.replace("__", "/")
            assert path.read_bytes() == original.read_bytes()
            if link:
                assert path.is_symlink() or os.path.samefile(path, original)
        with pytest.raises(UserError, match="not an empty folder"):
            export_label_folder(project, out)
    finally:
        project.close()


def test_export_labels_command(tmp_path, image_folder, capsys):
    labelled(tmp_path, image_folder).close()
    project = str(tmp_path / "a.inspector")
    assert main(["export-labels", project, str(tmp_path / "l.json"), "--folder", str(tmp_path / "f")]) == 0
    assert "Wrote 8 labels" in capsys.readouterr().out
    assert len(list((tmp_path / "f").rglob("*.png"))) == 8
    assert main(["export-labels", project]) == 1
