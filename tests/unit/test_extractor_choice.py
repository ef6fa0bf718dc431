"""The per-project feature extractor: the setting, switching, the honest comparison, model files
and the commands (features, new --extractor, simulate --extractor).

A second, cheap extractor ("histogram") is registered for these tests so they do not depend on
the CNN's weights; images are analysed in-process (workers=1) so the registration holds."""

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

import inspector.core.features as features_module
from inspector.cli import main
from inspector.core import extractor_choice as choice
from inspector.core.errors import UserError
from inspector.core.progress import CancelToken, Cancelled
from inspector.core.store import Project


class HistogramExtractor:
    """Grey-level histogram and mean: blind to where things are, enough to tell our classes apart."""

    name = "histogram"
    version = 1
    dim = 17
    weights_sha256 = "0" * 64  # stands in for an extractor with weights

    def params(self) -> dict:
        return {"name": self.name, "version": self.version, "bins": 16, "weights_sha256": self.weights_sha256}

    def describe(self) -> str:
        return "grey-level histogram (test extractor)"

    def features_of(self, decoded) -> np.ndarray:
        from inspector.core.images import to_gray_u8

        gray = to_gray_u8(decoded)
        hist = np.bincount((gray // 16).ravel(), minlength=16).astype(np.float32) / gray.size
        return np.append(hist, np.float32(gray.mean() / 255.0)).astype(np.float32)

    def features_of_batch(self, decoded_list) -> np.ndarray:
        return np.stack([self.features_of(d) for d in decoded_list])


@pytest.fixture
def histogram_registered(monkeypatch):
    monkeypatch.setitem(features_module._FACTORIES, "histogram", HistogramExtractor)
    monkeypatch.setattr(features_module, "_INSTANCES", {})
    yield


def write_parts(folder, n_per_class=12, seed=0):
    """Two classes in sub-folders: plain parts and parts with a bright spot (64 x 64 PNG)."""
    rng = np.random.default_rng(seed)
    for cls in ("ok", "spot"):
        (folder / cls).mkdir(parents=True)
        for i in range(n_per_class):
            image = np.clip(rng.normal(100, 12, (64, 64)), 0, 255).astype(np.uint8)
            if cls == "spot":
                y, x = rng.integers(8, 56, 2)
                cv2.circle(image, (int(x), int(y)), int(rng.integers(4, 8)), 240, -1)
            cv2.imwrite(str(folder / cls / f"{cls}_{i:02d}.png"), image)
    return folder


def labelled_project(tmp_path, n_per_class=12, audit_every=0):
    from inspector.core.labels_io import import_folder_labels
    from inspector.core.ingest import analyse_pending, scan_folder

    images = write_parts(tmp_path / "images", n_per_class)
    project = Project.create(tmp_path / "p.inspector", images)
    scan_folder(project)
    analyse_pending(project, workers=1)
    import_folder_labels(project)
    return project


# ----------------------------------------------------------------------------- the setting


def test_project_without_setting_keeps_texture_and_new_projects_record_theirs(tmp_path, histogram_registered):
    images = write_parts(tmp_path / "images", 2)
    old = Project.create(tmp_path / "old.inspector", images)  # as an older Inspector made it: no setting
    assert old.get_setting(choice.SETTING_EXTRACTOR) is None
    assert choice.project_extractor(old).name == "texture"
    new = Project.create(tmp_path / "new.inspector", images)
    assert choice.start_project_with(new) == features_module.default_extractor().name
    assert choice.start_project_with(new, "histogram") == "histogram"
    assert choice.project_extractor_key(new) == ("histogram", 1)
    with pytest.raises(UserError, match="no feature extractor called 'nope'"):
        choice.start_project_with(new, "nope")
    new.set_setting(choice.SETTING_EXTRACTOR, "gone")  # e.g. opened by an Inspector without that extractor
    with pytest.raises(UserError, match="'gone', which this Inspector does not offer"):
        choice.project_extractor(new)


def test_switch_keeps_every_label_and_the_features_of_both(tmp_path, histogram_registered):
    from inspector.core.learning import learner

    project = labelled_project(tmp_path)
    labels_before = project.latest_labels()
    assert choice.project_extractor_name(project) == "texture"
    texture_dim = features_module.get_extractor("texture").dim
    assert learner.take_snapshot(project).X.shape[1] == texture_dim

    result = choice.switch_extractor(project, "histogram", workers=1)
    assert (result.previous, result.current, result.features, result.images) == ("texture", "histogram", 24, 24)
    assert project.latest_labels() == labels_before
    assert project.feature_count("texture", features_module.get_extractor("texture").version) == 24
    assert project.feature_count("histogram", 1) == 24
    snapshot = learner.take_snapshot(project)
    assert snapshot.extractor == ("histogram", 1) and snapshot.X.shape == (24, 17)
    # switching back needs no extraction: the texture vectors are still there
    back = choice.switch_extractor(project, "texture", workers=1)
    assert back.analysed == 0 and choice.project_extractor_name(project) == "texture"
    assert choice.project_extractor_why(project) == "switched to from histogram"


def test_cancelled_switch_stays_on_the_old_extractor_and_keeps_what_was_extracted(tmp_path, histogram_registered):
    project = labelled_project(tmp_path)
    cancel = CancelToken()

    def progress(done, total, message=""):
        if done >= 5:
            cancel.cancel()

    with pytest.raises(Cancelled):
        choice.switch_extractor(project, "histogram", workers=1, progress=progress, cancel=cancel)
    assert choice.project_extractor_name(project) == "texture"
    kept = project.feature_count("histogram", 1)
    assert 5 <= kept < 24
    result = choice.switch_extractor(project, "histogram", workers=1)  # the next try reads only the rest
    assert result.analysed == 24 - kept


# ----------------------------------------------------------------------------- the comparison


def _two_extractors(n=200, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    centres = rng.normal(0, 3, (classes, 8))
    good = centres[y] + rng.normal(0, 1, (n, 8))
    poor = centres[y] * 0.15 + rng.normal(0, 1, (n, 8))
    return {"good": good.astype(np.float32), "poor": poor.astype(np.float32)}, y


def test_comparison_on_audit_labels_finds_the_better_extractor_with_a_paired_interval():
    features, y = _two_extractors()
    is_audit = np.zeros(len(y), bool)
    is_audit[::5] = True  # 40 random audit labels
    result = choice.compare_on_features(features, y, is_audit, n_bootstrap=500)
    assert result.basis == "audit" and not result.optimistic
    assert result.n_held_out == 40  # only the audit labels are scored
    assert result.best == "good" and result.runner_up == "poor" and result.decided
    good, poor = result.scores
    assert good.macro_f1_ci[0] <= good.macro_f1 <= good.macro_f1_ci[1]
    assert poor.behind_best == pytest.approx(good.macro_f1 - poor.macro_f1)
    assert poor.behind_best_ci[0] > 0
    assert result.verdict.startswith("good is the best")


def test_comparison_without_enough_audit_labels_is_labelled_optimistic_and_may_not_decide():
    features, y = _two_extractors()
    result = choice.compare_on_features(features, y, np.zeros(len(y), bool), n_bootstrap=500)
    assert result.basis == "cross-validation" and result.optimistic
    assert "optimistic" in result.basis_text and result.n_held_out == len(y)
    # two extractors that are the same up to noise: no winner can be named
    rng = np.random.default_rng(1)
    same = {"a": features["good"], "b": features["good"] + rng.normal(0, 0.01, features["good"].shape).astype(np.float32)}
    tie = choice.compare_on_features(same, y, np.zeros(len(y), bool), n_bootstrap=500)
    assert not tie.decided and tie.verdict.startswith(f"cannot tell yet with {len(y)} labels")
    few = choice.compare_on_features({k: X[:6] for k, X in features.items()}, y[:6], np.zeros(6, bool))
    assert few.basis is None and few.scores == [] and "cannot tell yet with" in few.verdict


def test_compare_extractors_computes_missing_features_of_labelled_images_and_caches_them(tmp_path, histogram_registered):
    project = labelled_project(tmp_path)
    assert project.feature_count("histogram", 1) == 0
    result = choice.compare_extractors(project, names=["texture", "histogram"], workers=1, n_bootstrap=200)
    assert {s.name for s in result.scores} == {"texture", "histogram"}
    assert result.current == "texture" and result.n_labels == 24
    assert project.feature_count("histogram", 1) == 24  # cached under its name and version
    assert choice.project_extractor_name(project) == "texture"  # comparing never switches


# ----------------------------------------------------------------------------- model files


def test_model_of_a_histogram_project_predicts_with_it_and_refuses_other_weights(tmp_path, histogram_registered,
                                                                                  monkeypatch):
    from inspector.core.modelfile.container import ModelFileError
    from inspector.core.modelfile import export_model, load_model

    project = labelled_project(tmp_path)
    choice.switch_extractor(project, "histogram", workers=1)
    path = export_model(project, tmp_path / "m.inspector-model")
    model = load_model(path)
    assert model.extractor_params["name"] == "histogram"
    assert model.extractor_params["weights_sha256"] == "0" * 64
    preds = model.predict([tmp_path / "images" / "spot" / "spot_00.png"], workers=1)
    assert preds[0].error is None and preds[0].predicted == "spot"

    monkeypatch.setattr(HistogramExtractor, "weights_sha256", "1" * 64)
    monkeypatch.setattr(features_module, "_INSTANCES", {})
    with pytest.raises(ModelFileError, match="different feature weights than this Inspector uses \\('histogram': weights_sha256\\)") as caught:
        load_model(path)
    assert "\n" not in str(caught.value)
    monkeypatch.delitem(features_module._FACTORIES, "histogram")
    with pytest.raises(ModelFileError, match="'histogram', which this Inspector does not offer"):
        load_model(path)


# ----------------------------------------------------------------------------- commands


def test_features_command_shows_compares_and_switches(tmp_path, histogram_registered, capsys):
    images = write_parts(tmp_path / "images", 12)
    project_path = tmp_path / "p.inspector"
    assert main(["new", str(project_path), "--images", str(images), "--labels-from-folders", "--workers", "1",
                 "--quiet"]) == 0
    capsys.readouterr()
    assert main(["features", str(project_path)]) == 0
    out = capsys.readouterr().out
    assert "Feature extractor of this project: texture" in out and "histogram" in out

    assert main(["features", str(project_path), "--compare", "texture", "histogram", "--json", "--workers", "1"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert {s["name"] for s in data["scores"]} == {"texture", "histogram"}
    assert data["basis"] == "cross-validation" and data["optimistic"] is True

    assert main(["features", str(project_path), "--use", "histogram", "--workers", "1", "--quiet"]) == 0
    assert "now uses 'histogram'" in capsys.readouterr().out
    with Project.open(project_path, read_only=True) as project:
        assert choice.project_extractor_name(project) == "histogram"
        assert len(project.latest_labels()) == 24
    assert main(["info", str(project_path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["extractor"]["name"] == "histogram"

    assert main(["features", str(project_path), "--use", "nope"]) == 1
    assert "no feature extractor called 'nope'" in capsys.readouterr().err


def test_new_with_an_extractor_and_with_an_unknown_one(tmp_path, histogram_registered, capsys):
    images = write_parts(tmp_path / "images", 3)
    assert main(["new", str(tmp_path / "a.inspector"), "--images", str(images), "--extractor", "histogram",
                 "--workers", "1", "--quiet"]) == 0
    with Project.open(tmp_path / "a.inspector", read_only=True) as project:
        assert choice.project_extractor_name(project) == "histogram"
        assert project.feature_count("histogram", 1) == 6
        assert project.feature_count("texture", features_module.get_extractor("texture").version) == 0
    capsys.readouterr()
    assert main(["new", str(tmp_path / "b.inspector"), "--images", str(images), "--extractor", "nope"]) == 1
    assert "no feature extractor called 'nope'" in capsys.readouterr().err
    assert not (tmp_path / "b.inspector").exists()


def test_simulate_compares_extractors_side_by_side(tmp_path, histogram_registered, capsys):
    images = write_parts(tmp_path / "images", 20)
    out = tmp_path / "sim"
    assert main(["simulate", "--images", str(images), "--extractor", "texture", "histogram", "--budget", "20",
                 "--batch", "10", "--initial", "10", "--seeds", "1", "--workers", "1", "--out", str(out),
                 "--quiet"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["settings"]["extractors"] == ["texture", "histogram"]
    assert set(summary["extractors"]) == {"texture", "histogram"}
    default = summary["settings"]["strategies"][0]
    assert {f"texture: {default}", "texture: random", f"histogram: {default}", "histogram: random"} \
        == set(summary["strategies"])
    rows = (out / "curves.csv").read_text().splitlines()
    assert any(r.startswith("histogram: random,") for r in rows)
    assert (out / "curves.png").stat().st_size > 1000
    assert "All labels with histogram" in capsys.readouterr().out



def test_simulate_replays_with_the_features_a_new_project_over_the_images_would_start_with(
        tmp_path, histogram_registered, monkeypatch, capsys):
    # the labels simulate says similar data needs are only worth reading if it replays with the
    # features the project would have: for a folder of large parts, the tiles, as 'new' chooses
    images = write_parts(tmp_path / "images", 20)
    seen = []

    def choose(folder):
        seen.append(Path(folder))
        return "histogram", "chosen for this test"

    monkeypatch.setattr(choice, "default_extractor_for_folder", choose)
    out = tmp_path / "sim"
    assert main(["simulate", "--images", str(images), "--budget", "20", "--batch", "10", "--initial", "10",
                 "--seeds", "1", "--workers", "1", "--out", str(out), "--quiet"]) == 0
    assert seen == [images]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["settings"]["extractors"] == ["histogram"]
    assert "Features: histogram (chosen for this test; choose others with --extractor)" in capsys.readouterr().out


# ----------------------------------------------------------------------------- the real CNN


def test_cnn_project_switches_to_the_combination_from_stored_parts_and_its_model_refuses_other_weights(
        tmp_path, monkeypatch):
    from inspector.core import images as images_module
    from inspector.core.modelfile.container import ModelFileError
    from inspector.core.modelfile import export_model, load_model

    try:
        cnn = features_module.get_extractor("cnn")
        cnn.dim  # loads the weights
    except Exception as exc:  # noqa: BLE001 - the weights' package may be missing from this environment
        pytest.skip(f"the CNN extractor cannot be loaded here: {exc}")
    project = labelled_project(tmp_path, n_per_class=8)
    assert choice.switch_extractor(project, "cnn", workers=1).features == 16
    combined = features_module.get_extractor("texture+cnn")
    result = choice.switch_extractor(project, "texture+cnn", workers=1)
    assert result.features == 16 and result.analysed == 0  # composed from the stored texture and CNN vectors
    ids, X = project.feature_matrix(combined.name, combined.version)
    path = tmp_path / "images" / project.image(int(ids[0])).path
    direct = combined.features_of(images_module.decode(path.read_bytes(), str(path)))
    assert np.allclose(X[0], direct, atol=1e-5)

    choice.switch_extractor(project, "cnn", workers=1)
    model_path = export_model(project, tmp_path / "cnn.inspector-model")
    assert load_model(model_path).extractor_params == cnn.params()
    other = {**cnn.params()}
    sha_keys = [k for k in other if "sha" in k]
    assert sha_keys, "the CNN's params record its weights' checksum"
    other[sha_keys[0]] = "f" * 64
    monkeypatch.setattr(cnn, "params", lambda: other)
    with pytest.raises(ModelFileError, match="different feature weights than this Inspector uses \\('cnn': weights_sha256\\)"):
        load_model(model_path)


def test_switching_is_advised_only_when_the_lead_over_the_current_extractor_is_certain():
    features, y = _two_extractors()
    rng = np.random.default_rng(3)
    features["good_too"] = features["good"] + rng.normal(0, 0.01, features["good"].shape).astype(np.float32)
    no_audit = np.zeros(len(y), bool)
    from_poor = choice.compare_on_features(features, y, no_audit, n_bootstrap=500, current="poor")
    assert from_poor.best in ("good", "good_too") and from_poor.switch_advised
    assert from_poor.gain_over_current_ci[0] > 0
    assert from_poor.verdict.startswith(f"{from_poor.best} is better than poor (current)")
    assert "within noise of each other" in from_poor.verdict  # good and good_too tie
    from_good = choice.compare_on_features(features, y, no_audit, n_bootstrap=500, current="good")
    assert not from_good.switch_advised


# ----------------------------------------------------------------------------- the default by image size


def _write_blank(folder: Path, names_and_sizes) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, (height, width) in names_and_sizes:
        cv2.imwrite(str(folder / name), np.full((height, width), 128, np.uint8))
    return folder


def test_new_projects_of_large_parts_start_with_the_tiles_and_small_crops_with_the_default(tmp_path):
    from inspector.core.features import DEFAULT_EXTRACTOR, LARGE_PARTS_EXTRACTOR

    large = _write_blank(tmp_path / "large", [(f"p{i}.png", (500, 1250)) for i in range(5)])
    small = _write_blank(tmp_path / "small", [(f"p{i}.png", (200, 200)) for i in range(5)])
    for folder, expected in ((large, LARGE_PARTS_EXTRACTOR), (small, DEFAULT_EXTRACTOR)):
        project = Project.create(tmp_path / f"{folder.name}.inspector", folder)
        with project:
            assert choice.start_project_with(project) == expected
            assert choice.project_extractor_name(project) == expected
            assert "when the project was created" in choice.project_extractor_why(project)
            if expected == LARGE_PARTS_EXTRACTOR:
                assert "large parts" in choice.project_extractor_why(project)
            # a name given by the engineer wins over the folder's sizes
            assert choice.start_project_with(project, "texture") == "texture"
    name, why = choice.default_extractor_for_folder(large)
    assert name == LARGE_PARTS_EXTRACTOR and "1,250 px" in why


def test_the_default_follows_the_median_size_and_survives_unreadable_files(tmp_path):
    from inspector.core.features import (DEFAULT_EXTRACTOR, LARGE_PARTS_EXTRACTOR, LARGE_PARTS_SIDE,
                                         default_extractor_for_sizes)
    from inspector.core.images import declared_longer_side, sample_longer_sides

    assert default_extractor_for_sizes([])[0] == DEFAULT_EXTRACTOR
    assert default_extractor_for_sizes([LARGE_PARTS_SIDE - 1] * 3)[0] == DEFAULT_EXTRACTOR
    assert default_extractor_for_sizes([LARGE_PARTS_SIDE] * 3)[0] == LARGE_PARTS_EXTRACTOR
    # one odd large image among small crops does not switch the project
    assert default_extractor_for_sizes([200, 200, 3000])[0] == DEFAULT_EXTRACTOR
    folder = _write_blank(tmp_path / "mixed", [("a.png", (300, 900)), ("b.jpg", (900, 300)), ("c.bmp", (64, 48))])
    (folder / "d.png").write_bytes(b"not an image at all")
    assert declared_longer_side(folder / "d.png") is None
    assert declared_longer_side(folder / "missing.png") is None
    assert sorted(sample_longer_sides(folder)) == [64, 900, 900]
    assert sample_longer_sides(folder, count=1) and len(sample_longer_sides(folder, count=1)) == 1
    # a folder of unreadable files: the default, with the reason
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "x.png").write_bytes(b"\x89PNG broken")
    name, why = choice.default_extractor_for_folder(junk)
    assert name == DEFAULT_EXTRACTOR and "no image size" in why


def test_inspector_new_says_which_extractor_the_images_call_for(tmp_path, capsys):
    from inspector.core.features import LARGE_PARTS_EXTRACTOR

    large = _write_blank(tmp_path / "large", [(f"p{i}.png", (500, 1250)) for i in range(3)])
    assert main(["new", str(tmp_path / "large.inspector"), "--images", str(large), "--workers", "1", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert f"Features: {LARGE_PARTS_EXTRACTOR}, chosen for the images when the project was created: large parts" in out
    assert "median longer side 1,250 px" in out and "--use NAME" in out


def test_simulate_on_a_missing_folder_says_so_in_one_line(tmp_path, capsys):
    missing = tmp_path / "no-such-parts"
    assert main(["simulate", "--images", str(missing), "--budget", "20", "--quiet", "--out", str(tmp_path / "sim")]) == 1
    err = capsys.readouterr().err
    assert f"{missing} is not a folder" in err and "Traceback" not in err
    assert not (tmp_path / "sim").exists()  # nothing written for bad input
