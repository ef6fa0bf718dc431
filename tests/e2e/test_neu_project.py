"""End to end on the real NEU steel-surface set: one project built by the command line."""

from __future__ import annotations

import json

import pytest

from inspector.cli import main

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def neu_project(neu_dir, tmp_path_factory):
    project = tmp_path_factory.mktemp("neu") / "neu.inspector"
    code = main(["new", str(project), "--images", str(neu_dir), "--labels-from-folders", "--quiet"])
    assert code == 0
    return project


def test_neu_project_has_every_image_feature_and_label(neu_project, capsys):
    capsys.readouterr()
    assert main(["info", str(neu_project), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["images"] == 1800
    assert summary["features"] == 1800
    assert summary["errors"] == []
    assert summary["pending"] == 0
    assert summary["labels"] == 1800
    assert summary["classes"] == {name: 300 for name in (
        "crazing", "inclusion", "patches", "pitted_surface", "rolled-in_scale", "scratches")}
