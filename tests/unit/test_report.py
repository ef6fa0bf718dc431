"""The HTML report: one self-contained file with honest and clearly-labelled optimistic figures."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import cv2
import numpy as np
import pytest

from inspector.cli import main
from inspector.core.report import per_class_rows, write_report
from inspector.core.store import Project


def _project(tmp_path: Path, with_labels: bool = True) -> Path:
    from inspector.core.ingest import scan_project
    from inspector.core.learning import learner

    rng = np.random.default_rng(3)
    root = tmp_path / "images"
    for name in ("ok", "scratch"):
        (root / name).mkdir(parents=True)
        for i in range(16):
            image = rng.normal(120, 10, (48, 48)).clip(0, 255).astype(np.uint8)
            if name == "scratch":
                cv2.line(image, (3, int(rng.integers(3, 45))), (45, int(rng.integers(3, 45))), 240, 2)
            cv2.imwrite(str(root / name / f"{i}.png"), image)
    path = tmp_path / "line <3>.inspector"
    with Project.create(path, root) as project:
        scan_project(project, workers=1)
        if with_labels:
            ids = {n: project.add_class(n) for n in ("ok", "scratch")}
            items = sorted(project.image_paths().items())
            for n, (image_id, rel) in enumerate(items):
                project.add_label(image_id, ids[rel.split("/")[0]], audit=n % 2 == 0)
                if n in (11, 21, 31):
                    learner.retrain(project)
    return path


def _images(text: str) -> list[bytes]:
    return [base64.b64decode(b) for b in re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', text)]


def test_report_is_one_self_contained_file(tmp_path):
    path = _project(tmp_path)
    with Project.open(path, read_only=True) as project:
        out = write_report(project, tmp_path / "report.html")
        image_root = str(project.image_root)
    text = out.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>")
    assert not re.search(r'(src|href)="(?!data:)', text), "the report must not reference outside files"
    pngs = _images(text)
    assert len(pngs) >= 4  # learning curve, audit confusion, per-class bars, optimistic confusion
    for png in pngs:
        assert png.startswith(b"\x89PNG") and cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR) is not None
    assert "Estimated accuracy" in text and "audit labels" in text
    assert "OPTIMISTIC" in text
    assert "line &lt;3&gt;" in text  # names are escaped
    assert "texture version" in text and image_root in text
    assert "Can the line trust it" in text and "reliability diagram" in text
    assert "Expected calibration error" in text
    assert "a perfectly calibrated model would show about" in text  # the ECE beside what chance alone gives
    # 16 audit labels: the audit macro-F1 says why it has no interval instead of an empty one
    assert "too few audit labels for an interval" in text and "95 % interval –)" not in text


def test_report_without_labels_says_so(tmp_path, capsys):
    path = _project(tmp_path, with_labels=False)
    assert main(["report", str(path), str(tmp_path / "r.html")]) == 0
    text = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert "No model yet" in text and "No current model, so no accuracy estimate" in text


def test_report_refuses_a_missing_folder(tmp_path, capsys):
    path = _project(tmp_path, with_labels=False)
    assert main(["report", str(path), str(tmp_path / "nowhere" / "r.html")]) == 1
    assert "does not exist" in capsys.readouterr().err


def test_per_class_precision_and_recall_have_intervals():
    rows = per_class_rows(np.array([[8, 2], [0, 10]]), ["ok", "scratch"])
    assert rows[0]["recall"] == pytest.approx(0.8) and rows[0]["precision"] == pytest.approx(1.0)
    assert rows[1]["precision"] == pytest.approx(10 / 12)
    low, high = rows[0]["recall_ci"]
    assert low < 0.8 < high


def test_report_and_model_file_state_the_bound_a_target_is_judged_on(tmp_path, capsys):
    from inspector.core.learning import stopping
    from inspector.core.modelfile import load_model

    path = _project(tmp_path)
    with Project.open(path) as project:
        stopping.write_goals(project, stopping.make_target("accuracy", 0.6), 200)
    assert main(["export-model", str(path), str(tmp_path / "line.inspector-model")]) == 0
    printed = capsys.readouterr().out
    model = load_model(tmp_path / "line.inspector-model")
    shown = model.metrics["accuracy_estimate"]
    assert shown["lower_bound"] is not None and shown["lower_bound_level"] == "one-sided 95 %"
    # one-sided 95 % lies inside the two-sided 95 % interval (whose lower end is one-sided 97.5 %)
    assert shown["interval"][0] <= shown["lower_bound"] <= shown["estimate"]
    goals = model.metrics["goals"]
    assert goals["target"]["figure"] == "accuracy" and goals["target"]["value"] == 0.6
    assert goals["target_state"] in (stopping.SHOWN, stopping.POINT_ONLY, stopping.NOT_REACHED)
    assert goals["target_sentence"] in printed and "with one-sided 95 % confidence" in printed
    assert "Budget: 32 of 200 labels used" in goals["budget_sentence"]

    with Project.open(path, read_only=True) as project:
        text = write_report(project, tmp_path / "report.html").read_text(encoding="utf-8")
    assert f"at least {shown['lower_bound']:.1%} with one-sided 95 % confidence" in text
    import html

    assert html.escape(goals["target_sentence"]) in text  # the same estimate, judged the same way
    assert "Budget: 32 of 200 labels used" in text
    assert "dotted line its one-sided 95 % lower bound" in text
