"""The helpers written once in the core and used by the report, the dashboard, the query
strategies, find-similar, the CLI and the self-test."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from inspector.core.learning.metrics import per_class_precision_recall, wilson_interval
from inspector.core.learning.standardise import standardisation, standardiser


# ------------------------------------------------------------------ per-class precision and recall
def test_per_class_precision_and_recall_with_their_wilson_intervals():
    # rows true, columns predicted: 8 of 10 "ok" found, 2 called "scratch"; all 10 scratches found
    rows = per_class_precision_recall(np.array([[8, 2], [0, 10]]), ["ok", "scratch"])
    ok, scratch = rows
    assert [r["class"] for r in rows] == ["ok", "scratch"]
    assert ok["n_true"] == 10 and ok["recall"] == pytest.approx(0.8)
    assert ok["n_predicted"] == 8 and ok["precision"] == pytest.approx(1.0)
    assert scratch["n_predicted"] == 12 and scratch["precision"] == pytest.approx(10 / 12)
    assert ok["recall_ci"] == wilson_interval(8, 10)
    assert scratch["precision_ci"] == wilson_interval(10, 12)
    low, high = scratch["precision_ci"]
    assert low < 10 / 12 < high


def test_a_class_never_predicted_or_never_seen_has_no_rate_and_no_interval():
    rows = per_class_precision_recall(np.array([[5, 0, 0], [3, 0, 0], [0, 0, 0]]), [1, 2, 3])
    assert rows[1]["n_predicted"] == 0 and rows[1]["precision"] is None and rows[1]["precision_ci"] is None
    assert rows[1]["recall"] == 0.0  # seen three times, never found
    assert rows[2]["n_true"] == 0 and rows[2]["recall"] is None and rows[2]["recall_ci"] is None
    empty = per_class_precision_recall(np.zeros((0, 0)), ["a", "b"])
    assert [r["precision"] for r in empty] == [None, None] and [r["n_true"] for r in empty] == [0, 0]


def test_the_report_and_the_dashboard_show_the_same_precision():
    from inspector.core.report import per_class_rows

    confusion = np.array([[30, 1, 0], [4, 6, 1], [0, 2, 9]])
    report_rows = per_class_rows(confusion, ["ok", "scratch", "dent"])
    shared = per_class_precision_recall(confusion, ["ok", "scratch", "dent"])
    for row, figures in zip(report_rows, shared):
        assert row["precision"] == figures["precision"] and row["precision_ci"] == figures["precision_ci"]
        assert row["n"] == figures["n_true"]
    pytest.importorskip("PySide6")
    from inspector.ui.dashboard import precision_from_confusion

    dashboard = precision_from_confusion(confusion, [7, 8, 9])
    for class_id, figures in zip([7, 8, 9], shared):
        assert dashboard[class_id]["precision"] == figures["precision"]
        assert dashboard[class_id]["ci"] == list(figures["precision_ci"])
        assert dashboard[class_id]["n"] == figures["n_predicted"]


# ------------------------------------------------------------------ standardisation
def test_standardisation_matches_numpy_and_leaves_constant_columns_unscaled():
    rng = np.random.default_rng(0)
    X = rng.normal(3, 2, (301, 4)).astype(np.float32)
    X[:, 2] = 7.0
    mean, std = standardisation(X, chunk=50)
    assert np.allclose(mean, X.astype(np.float64).mean(axis=0))
    assert np.allclose(std[[0, 1, 3]], X.astype(np.float64).std(axis=0)[[0, 1, 3]])
    assert std[2] == 1.0


def test_standardisation_of_a_wide_matrix_works_in_small_blocks(monkeypatch):
    """Blocks are sized in bytes, not rows: a 2,294-dim pool is read a few thousand rows at a time."""
    import inspector.core.learning.standardise as standardise

    seen: list[int] = []
    real_einsum = np.einsum
    monkeypatch.setattr(standardise.np, "einsum", lambda spec, a, b: (seen.append(a.nbytes), real_einsum(spec, a, b))[1])
    monkeypatch.setattr(standardise, "BLOCK_BYTES", 64 * 1024)
    X = np.random.default_rng(2).normal(0, 1, (700, 100)).astype(np.float32)
    mean, std = standardisation(X)
    assert max(seen) <= 256 * 100 * 8 and len(seen) >= 2  # at least 256 rows, else 64 KB blocks
    assert np.allclose(mean, X.astype(np.float64).mean(axis=0)) and np.allclose(std, X.astype(np.float64).std(axis=0))


def test_probabilities_of_some_rows_equal_those_of_the_rows_copied_out():
    from inspector.core.learning import models
    from inspector.core.learning.models import fit_model

    rng = np.random.default_rng(3)
    X = rng.normal(0, 1, (500, 6)).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.int64)
    model = fit_model(X[:100], y[:100], np.array([0, 1]))
    rows = rng.choice(500, 300, replace=False)
    old_block = models.PREDICT_BLOCK_ROWS
    models.PREDICT_BLOCK_ROWS = 64  # several blocks
    try:
        assert np.allclose(model.raw_proba(X, rows=rows), model.raw_proba(X[rows]))
        mask = np.zeros(500, bool)
        mask[rows] = True
        assert np.allclose(model.raw_proba(X, rows=mask), model.raw_proba(X[mask]))
    finally:
        models.PREDICT_BLOCK_ROWS = old_block


def test_a_column_below_the_minimum_spread_counts_as_constant():
    X = np.array([[0.0, 0.0], [1e-7, 1.0], [0.0, 2.0]])
    assert standardisation(X)[1][0] != 1.0  # spread 5e-8 is above the default 1e-9
    assert standardisation(X, min_std=1e-6)[1][0] == 1.0


def test_standardiser_maps_rows_to_z_scores_in_the_asked_type():
    rng = np.random.default_rng(1)
    X = rng.normal(-4, 0.5, (200, 3))
    X[:, 1] = 2.0
    to_z = standardiser(*standardisation(X))
    z = to_z(X)
    assert z.dtype == np.float32
    assert np.allclose(z[:, [0, 2]].mean(axis=0), 0, atol=1e-4)
    assert np.allclose(z[:, [0, 2]].std(axis=0), 1, atol=1e-3)
    assert np.all(z[:, 1] == 0)  # a constant column becomes 0, not NaN
    assert standardiser(*standardisation(X), dtype=np.float64)(X[:5]).dtype == np.float64


# ------------------------------------------------------------------ labels from folder names
def test_import_folder_labels_labels_each_image_by_its_folder_and_creates_the_classes(tmp_path):
    from inspector.core.ingest import analyse_pending, scan_folder
    from inspector.core.labels_io import import_folder_labels
    from inspector.core.store import Project

    images = tmp_path / "images"
    rng = np.random.default_rng(2)
    for folder, n in (("ok", 3), ("scratch", 2), ("", 1)):  # "": an image at the root stays unlabelled
        (images / folder).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            cv2.imwrite(str(images / folder / f"part{i}.png"), rng.integers(0, 255, (32, 32), dtype=np.uint8))
    with Project.create(tmp_path / "p.inspector", images) as project:
        scan_folder(project)
        analyse_pending(project, workers=1)
        assert import_folder_labels(project, "anna") == 5
        names = {c.id: c.name for c in project.classes()}
        by_path = {project.image(i).path: names[c] for i, c in project.latest_labels().items()}
        assert by_path == {f"ok/part{i}.png": "ok" for i in range(3)} | {f"scratch/part{i}.png": "scratch" for i in range(2)}


# ------------------------------------------------------------------ the version
def test_the_version_lives_in_the_core_and_the_package_root_shows_it():
    import inspector
    from inspector.core.version import __version__

    assert __version__ and inspector.__version__ == __version__
