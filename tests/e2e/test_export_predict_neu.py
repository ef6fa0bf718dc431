"""End to end on NEU: labels from folders on a stratified half, export, predict the other half."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from inspector.cli import main

pytestmark = pytest.mark.e2e


def _split(neu_dir: Path, tmp_path: Path) -> tuple[Path, Path]:
    """Symbolic links (no copies) to every other image of each class: train/ and held-out test/."""
    train, test = tmp_path / "train", tmp_path / "test"
    for folder in sorted(p for p in neu_dir.iterdir() if p.is_dir()):
        files = sorted(folder.glob("*.jpg"), key=lambda p: p.name)
        for half, chosen in ((train, files[0::2]), (test, files[1::2])):
            (half / folder.name).mkdir(parents=True)
            for f in chosen:
                (half / folder.name / f.name).symlink_to(f.resolve())
    return train, test


def test_export_and_predict_the_other_half_of_neu(neu_dir, tmp_path, capsys):
    from inspector.core.modelfile import load_model, train_for_export
    from inspector.core.store import Project

    train, test = _split(neu_dir, tmp_path)
    project = tmp_path / "neu.inspector"
    model_path = tmp_path / "neu.inspector-model"
    assert main(["new", str(project), "--images", str(train), "--labels-from-folders", "--quiet"]) == 0
    assert main(["export-model", str(project), str(model_path), "--quiet"]) == 0
    predictions = tmp_path / "predictions.csv"
    assert main(["predict", str(model_path), str(test), "--csv", str(predictions), "--quiet"]) == 0

    rows = list(csv.DictReader(open(predictions, encoding="utf-8")))
    assert len(rows) == 900 and not any(r["error"] for r in rows)
    truth = [Path(r["path"]).parent.name for r in rows]
    accuracy = float(np.mean([r["predicted"] == t for r, t in zip(rows, truth)]))
    review = [r["review"] == "True" for r in rows]
    accuracy_kept = float(np.mean([r["predicted"] == t for r, t, rv in zip(rows, truth, review) if not rv]))
    with capsys.disabled():
        print(f"\nNEU held-out half: accuracy {accuracy:.3f} on 900 images; {sum(review)} routed to review, "
              f"accuracy on the rest {accuracy_kept:.3f}")
    assert accuracy >= 0.90

    # the file predicts exactly what the in-app model predicts on the same features
    with Project.open(project, read_only=True) as opened:
        training = train_for_export(opened)
        _, X = opened.feature_matrix(*training.snapshot.extractor)
    model = load_model(model_path)
    np.testing.assert_allclose(model.predict_proba_features(X), training.model.predict_proba(X), atol=1e-5)
