"""Labels from and to files others open: no spreadsheet formulas, no classes made by a typo,
no invisible characters in class names, one folder per class."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import cv2
import numpy as np
import pytest

from inspector.cli import main
from inspector.core.csv_cells import escape_cell, unescape_cell
from inspector.core.errors import ProjectError, UserError
from inspector.core.ingest import scan_folder
from inspector.core.labels_io import class_folder_names, export_label_folder, export_labels, import_labels, label_rows
from inspector.core.store import Project

NASTY_CLASSES = ["=cmd|' /C calc'!A0", "+SUM(1)", "-2+3", "@A1", "'quoted", "''twice", "plain", "'=both"]
NASTY_FILES = ["=HYPERLINK(\"evil\").png", "-minus.png", "+plus.png", "@at.png", "'quote.png",
               "\ttab.png", "\rreturn.png", "ok.png", "-1.png"]
DANGEROUS = ("=", "+", "-", "@", "\t", "\r")


@pytest.mark.parametrize("value", NASTY_CLASSES + NASTY_FILES + ["", "-0.5", "1e-3", "+7", "'", "x=y"])
def test_escape_and_unescape_round_trip(value):
    cell = escape_cell(value)
    assert unescape_cell(cell) == value
    if value.startswith(DANGEROUS) and not re.fullmatch(r"[+-]?[\d.]+(e-?\d+)?", value):
        assert cell.startswith("'")
    if value in ("-0.5", "+7"):
        assert cell == value  # plain numbers stay numbers


@pytest.fixture
def nasty_folder(tmp_path) -> Path:
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(3)
    for name in NASTY_FILES:
        ok, data = cv2.imencode(".png", rng.integers(0, 255, (32, 32), dtype=np.uint8))
        (folder / name).write_bytes(data.tobytes())
    return folder


def _project(path: Path, images: Path) -> Project:
    project = Project.create(path, images)
    scan_folder(project)
    return project


def _cells(path: Path) -> list[str]:
    with open(path, newline="", encoding="utf-8") as handle:
        return [cell for row in csv.reader(handle) for cell in row]


def test_export_labels_escapes_and_import_reads_it_back_exactly(tmp_path, nasty_folder):
    source = _project(tmp_path / "a.inspector", nasty_folder)
    ids = sorted(r.id for r in source.images(usable_only=False))
    classes = [source.add_class(name) for name in NASTY_CLASSES]
    for k, image_id in enumerate(ids):
        source.add_label(image_id, classes[k % len(classes)], annotator="=evil()" if k % 2 else "'ann")
    out = tmp_path / "labels.csv"
    export_labels(source, out)
    before = label_rows(source)
    source.close()
    cells = _cells(out)
    assert not [c for c in cells if c.startswith(DANGEROUS) and not re.fullmatch(r"[+-]?[\d.]+", c)], cells
    target = _project(tmp_path / "b.inspector", nasty_folder)
    summary = import_labels(target, out, create_classes=True)
    assert summary.imported == len(NASTY_FILES) and not summary.unknown_paths
    after = label_rows(target)
    target.close()
    key = lambda rows: sorted((r["path"], r["label"], r["annotator"]) for r in rows)  # noqa: E731
    assert key(after) == key(before)
    assert sorted(summary.new_classes) == sorted(NASTY_CLASSES)


def test_predict_csv_escapes_file_names(tmp_path, nasty_folder, capsys, monkeypatch):
    from hostile_models import make_base_models

    model = make_base_models(tmp_path / "models", kinds=("logistic",))["logistic"]
    out = tmp_path / "predictions.csv"
    monkeypatch.chdir(nasty_folder)  # file names given as they are: the first cell is the name itself
    assert main(["predict", str(model), "--csv", str(out), "--quiet", "--jobs", "1", "--", *NASTY_FILES]) == 0
    cells = _cells(out)
    paths = [c for c in cells if c.endswith(".png")]
    assert len(paths) == len(NASTY_FILES)
    assert any(c.startswith("'=HYPERLINK(") for c in cells)
    assert not [c for c in cells if c.startswith(DANGEROUS) and not re.fullmatch(r"[+-]?[\d.]+", c)]


def test_every_csv_writer_in_inspector_goes_through_the_escaping_helper():
    root = Path(__file__).resolve().parents[2] / "inspector"
    raw = [str(p.relative_to(root)) for p in root.rglob("*.py")
           if re.search(r"csv\.(writer|DictWriter)\(", p.read_text(encoding="utf-8")) and p.name != "csv_cells.py"]
    assert raw == []


# ------------------------------------------------------------------------- classes from the command line
@pytest.fixture
def labelled_project(tmp_path, nasty_folder) -> Path:
    path = tmp_path / "p.inspector"
    with _project(path, nasty_folder) as p:
        for name in ("ok", "scratch", "crack"):
            p.add_class(name)
    return path


def test_a_typo_in_label_names_the_nearest_class_and_creates_nothing(labelled_project, capsys):
    code = main(["label", str(labelled_project), "ok.png", "scrach"])
    err = capsys.readouterr().err
    assert code == 1 and "no class 'scrach'" in err and "did you mean 'scratch'" in err and "--create-class" in err
    assert len(err.strip().splitlines()) == 1
    with Project.open(labelled_project) as p:
        assert [c.name for c in p.classes()] == ["ok", "scratch", "crack"] and p.label_event_count() == 0
    assert main(["label", str(labelled_project), "ok.png", "scrach", "--create-class"]) == 0
    with Project.open(labelled_project) as p:
        assert [c.name for c in p.classes()][-1] == "scrach"


def test_import_with_unknown_classes_is_refused_whole(labelled_project, tmp_path, capsys):
    f = tmp_path / "in.csv"
    f.write_text("path,label\nok.png,ok\n-minus.png,Scratchh\n@at.png,dent\n", encoding="utf-8")
    before = labelled_project.read_bytes()
    code = main(["import-labels", str(labelled_project), str(f)])
    err = capsys.readouterr().err
    assert code == 1 and "'Scratchh' (did you mean 'scratch'" in err and "'dent'" in err and "--create-classes" in err
    with Project.open(labelled_project) as p:
        assert p.label_event_count() == 0 and len(p.classes()) == 3
    assert main(["import-labels", str(labelled_project), str(f), "--create-classes"]) == 0
    with Project.open(labelled_project) as p:
        assert p.label_event_count() == 3 and {"Scratchh", "dent"} <= {c.name for c in p.classes()}
    assert before  # the project file existed and was only changed by the accepted import


@pytest.mark.parametrize("name", ["bad\x00name", "\x00", "esc\x1b[31m", "bell\x07", "c1\x9bx", "del\x7f"])
def test_control_characters_in_class_names_are_refused(labelled_project, tmp_path, capsys, name):
    with Project.open(labelled_project) as p:
        with pytest.raises(ProjectError, match="control characters"):
            p.add_class(name)
    f = tmp_path / "in.csv"
    f.write_text(f"path,label\nok.png,fine\n-minus.png,{name}\n", encoding="utf-8", newline="")
    code = main(["import-labels", str(labelled_project), str(f), "--create-classes"])
    err = capsys.readouterr().err
    assert code == 1 and "control characters" in err and len(err.strip().splitlines()) == 1
    with Project.open(labelled_project) as p:  # nothing of the refused file was written
        assert p.label_event_count() == 0 and "fine" not in {c.name for c in p.classes()}


def test_dot_names_and_unsafe_names_get_distinct_folders(tmp_path, nasty_folder):
    names = [".", "..", "_", "a/b", "a_b", "a:b", "CON", "ok", "OK."]
    folders = class_folder_names(names)
    assert len({f.lower() for f in folders.values()}) == len(names)
    assert all(f not in (".", "..", "") and "/" not in f for f in folders.values())
    assert folders["ok"] == "ok" and folders["_"] == "_" and folders["a_b"] == "a_b"
    with _project(tmp_path / "p.inspector", nasty_folder) as p:
        ids = sorted(r.id for r in p.images(usable_only=False))
        dot, dots = p.add_class("."), p.add_class("..")
        p.add_label(ids[0], dot)
        p.add_label(ids[1], dots)
        result = export_label_folder(p, tmp_path / "out")
    assert result.placed == 2 and not result.problems
    made = sorted(d.name for d in (tmp_path / "out").iterdir())
    assert len(made) == 2 and all(len(list((tmp_path / "out" / d).iterdir())) == 1 for d in made)


def test_user_error_is_a_user_error():
    assert issubclass(ProjectError, UserError)
