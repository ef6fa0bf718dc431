"""`inspector simulate` on a slice of the real NEU data set, through the command line."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

PER_CLASS = 30


@pytest.fixture
def neu_slice(neu_dir: Path, tmp_path: Path) -> Path:
    """30 images per class, linked (not copied) into a temporary folder to keep the run short."""
    root = tmp_path / "neu_slice"
    for class_dir in sorted(p for p in neu_dir.iterdir() if p.is_dir()):
        (root / class_dir.name).mkdir(parents=True)
        for image in sorted(class_dir.iterdir())[:PER_CLASS]:
            target = root / class_dir.name / image.name
            try:
                target.symlink_to(image)
            except OSError:  # no symlinks (e.g. Windows without privilege): copy into tmp
                target.write_bytes(image.read_bytes())
    return root


def test_simulate_cli_on_neu(neu_slice: Path, tmp_path: Path):
    out = tmp_path / "sim"
    cmd = [sys.executable, "-m", "inspector", "simulate", "--images", str(neu_slice), "--budget", "60",
           "--batch", "10", "--initial", "10", "--seeds", "2", "--test-fraction", "0.3", "--out", str(out),
           "--workers", "2", "--strategy", "uncertain_diverse", "--strategy", "margin", "--quiet"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "MPLBACKEND": "Agg"})
    assert done.returncode == 0, done.stderr
    assert "uncertain_diverse" in done.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["strategies"]) == {"uncertain_diverse", "margin", "random"}
    assert summary["classes"] == sorted(p.name for p in neu_slice.iterdir())
    assert summary["label_counts"] == [10, 20, 30, 40, 50, 60]
    assert summary["all_labels"]["accuracy"] > 0.85
    for name, s in summary["strategies"].items():
        assert len(s["accuracy_mean"]) == 6 and len(s["accuracy_per_seed"]) == 2
        for key in ("area_under_accuracy_curve", "labels_to_90pct_of_all_labels_accuracy",
                    "labels_to_95pct_of_all_labels_accuracy", "labels_until_every_class_seen_median",
                    "macro_f1_mean", "audit_coverage"):
            assert key in s
        # learning happens: more labels, better test accuracy
        assert s["accuracy_mean"][-1] > s["accuracy_mean"][0] + 0.05
        assert s["accuracy_mean"][-1] > 0.75
    assert (out / "curves.csv").exists() and (out / "curves.png").stat().st_size > 1000
