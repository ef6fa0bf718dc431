"""Labelling packs and merging: disjoint slices (except the double share), idempotent atomic merge,
refusal of foreign and newer packs, disagreements kept out of training, kappa."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from inspector.cli import main
from inspector.core import agreement, packs
from inspector.core.errors import UserError
from inspector.core.store import Project


@pytest.fixture
def home(tmp_path, small_image_folder) -> Path:
    from inspector.core.ingest import scan_project

    path = tmp_path / "home.inspector"
    with Project.create(path, small_image_folder) as project:
        scan_project(project, workers=1)
        ok = project.add_class("ok")
        scratch = project.add_class("scratch")
        for image_id in project.image_ids()[:6]:
            project.add_label(int(image_id), ok if image_id % 2 else scratch, annotator="hans")
    return path


def label_pack(pack_path: Path, annotator_class) -> dict:
    """Label every queued image of a pack; ``annotator_class(path) -> class name``. Returns path -> class."""
    done = {}
    with Project.open(pack_path) as pack:
        classes = {c.name: c.id for c in pack.classes()}
        for entry in pack.queue():
            path = pack.image(entry.image_id).path
            name = annotator_class(path)
            pack.add_label(entry.image_id, classes[name], audit=entry.audit)
            done[path] = name
    return done


def test_packs_are_disjoint_except_the_double_share(home, tmp_path):
    with Project.open(home) as project:
        a = packs.create_pack(project, tmp_path / "a.inspector", n_images=10, workstation="A", annotator="anna")
        b = packs.create_pack(project, tmp_path / "b.inspector", n_images=10, workstation="B", annotator="ben",
                              double_share=0.2)
        c = packs.create_pack(project, tmp_path / "c.inspector", n_images=10, workstation="C", double_share=0.0)
        handed = project.handed_out_images()
        labelled = set(project.latest_labels())
        assert len(project.packs_out()) == 3
    assert (a.n_double, b.n_double, c.n_double) == (0, 2, 0)
    from inspector.core.features import get_extractor

    extractor = (get_extractor("texture").name, get_extractor("texture").version)
    sets = {}
    for name in "abc":
        with Project.open(tmp_path / f"{name}.inspector", read_only=True) as pack:
            sets[name] = {pack.image(q.image_id).path for q in pack.queue()}
            assert pack.meta_value(packs.META_WORKSTATION) == name.upper()
            assert pack.feature_matrix(*extractor)[1].shape[0] == len(sets[name]) + 6
            assert len(pack.latest_labels()) == 6  # home labels carried for the pack's learner
            assert [c.name for c in pack.classes()] == ["ok", "scratch"]
    assert len(sets["a"] & sets["b"]) == 2
    assert not sets["a"] & sets["c"] and not sets["b"] & sets["c"]
    assert sum(len(v) > 1 for v in handed.values()) == 2
    assert not labelled & set(handed)  # labelled images are never handed out


def test_share_splits_the_unlabelled_images(home, tmp_path):
    with Project.open(home) as project:
        n_unlabelled = len(project.image_ids()) - len(project.latest_labels())
        sizes = [packs.create_pack(project, tmp_path / f"s{k}.inspector", share=packs.parse_share("1/3"),
                                   double_share=0).n_images for k in range(3)]
        handed = project.handed_out_images()
    assert sum(sizes) == n_unlabelled and len(handed) == n_unlabelled
    with pytest.raises(UserError):
        packs.parse_share("2/1")


def test_merge_brings_labels_home_once(home, tmp_path):
    with Project.open(home) as project:
        packs.create_pack(project, tmp_path / "a.inspector", n_images=12, workstation="A", annotator="anna")
        packs.create_pack(project, tmp_path / "b.inspector", n_images=12, workstation="B", annotator="ben",
                          double_share=0.25)
    la = label_pack(tmp_path / "a.inspector", lambda p: "scratch" if "part_000" in p or p.startswith("scratch") else "ok")
    lb = label_pack(tmp_path / "b.inspector", lambda p: "ok")
    with Project.open(home) as project:
        before = project.label_event_count()
        results = packs.merge_packs(project, [tmp_path / "a.inspector", tmp_path / "b.inspector"])
        assert [r.added for r in results] == [len(la), len(lb)]
        assert project.label_event_count() == before + len(la) + len(lb)
        events = [e for e in project.label_events_full() if e["pack_id"]]
        assert {e["annotator"] for e in events} == {"anna", "ben"}
        assert {e["workstation"] for e in events} == {"A", "B"}
        latest = project.latest_labels()
        paths = project.image_paths()
        names = {c.id: c.name for c in project.classes()}
        for path, name in {**la, **lb}.items():
            image = project.find_image(path)
            if path not in la or path not in lb:
                assert names[latest[image]] == name
        # merging again changes nothing
        count, merged = project.label_event_count(), project.packs_merged()
        again = packs.merge_packs(project, [tmp_path / "a.inspector", tmp_path / "b.inspector"])
        assert [r.added for r in again] == [0, 0]
        assert project.label_event_count() == count and project.packs_merged() == merged
        assert len(paths) == 40


def test_foreign_and_newer_packs_are_refused_unchanged(home, tmp_path, small_image_folder, capsys):
    other = tmp_path / "other.inspector"
    with Project.create(other, small_image_folder) as project:
        from inspector.core.ingest import scan_project

        scan_project(project, workers=1)
        project.add_class("ok")
        packs.create_pack(project, tmp_path / "foreign.inspector", n_images=3)
    label_pack(tmp_path / "foreign.inspector", lambda p: "ok")
    with Project.open(home) as project:
        packs.create_pack(project, tmp_path / "mine.inspector", n_images=3)
    newer = tmp_path / "newer.inspector"
    shutil.copy(tmp_path / "mine.inspector", newer)
    db = sqlite3.connect(newer)
    db.execute("PRAGMA user_version = 999")
    db.close()
    with Project.open(home) as project:
        events_before = project.label_event_count()
    for pack, words in ((tmp_path / "foreign.inspector", "another project"), (newer, "newer version")):
        pack_before = pack.read_bytes()
        code = main(["merge", str(home), str(tmp_path / "mine.inspector"), str(pack), "--quiet"])
        err = capsys.readouterr().err
        assert code == 1 and "Traceback" not in err
        lines = [line for line in err.splitlines() if line.startswith("inspector:")]
        assert len(lines) == 1 and words in lines[0], err
        assert pack.read_bytes() == pack_before
    with Project.open(home) as project:
        assert project.packs_merged() == []  # 'mine' was not merged either: one bad pack stops all
        assert project.label_event_count() == events_before


def test_disagreements_wait_for_review_and_kappa(home, tmp_path, capsys):
    from inspector.core.learning.learner import take_snapshot

    with Project.open(home) as project:
        packs.create_pack(project, tmp_path / "a.inspector", n_images=10, annotator="anna", workstation="A")
        packs.create_pack(project, tmp_path / "b.inspector", n_images=10, annotator="ben", workstation="B",
                          double_share=0.5)
    label_pack(tmp_path / "a.inspector", lambda p: "ok")
    lb = label_pack(tmp_path / "b.inspector", lambda p: "scratch")
    assert main(["merge", str(home), str(tmp_path / "a.inspector"), str(tmp_path / "b.inspector"), "--quiet"]) == 0
    with Project.open(home) as project:
        found = agreement.disagreements(project)
        assert len(found) == 5
        assert all(set(d.labels) == {"anna", "ben"} for d in found)
        held = {d.image_id for d in found}
        snapshot = take_snapshot(project)
        assert not held & set(snapshot.labels)
        project.set_setting(agreement.SETTING_EXCLUDE_DISAGREEMENTS, False)
        assert held <= set(take_snapshot(project).labels)
        project.set_setting(agreement.SETTING_EXCLUDE_DISAGREEMENTS, True)
        path = project.image(found[0].image_id).path
        pairs = agreement.pairwise_kappa(project)
        assert pairs[0]["annotators"] == ["anna", "ben"] and pairs[0]["n"] == 5
        assert pairs[0]["observed_agreement"] == 0.0
    assert main(["resolve", str(home), path, "ok", "--reviewer", "quality lead"]) == 0
    with Project.open(home) as project:
        assert len(agreement.disagreements(project)) == 4
        resolved = [d for d in agreement.disagreements(project, include_resolved=True) if d.resolved]
        assert len(resolved) == 1 and resolved[0].resolution == project.class_by_name("ok").id
        snapshot = take_snapshot(project)
        assert snapshot.labels[resolved[0].image_id] == project.class_by_name("ok").id
    capsys.readouterr()
    assert main(["disagreements", str(home)]) == 0
    out = capsys.readouterr().out
    assert out.count("anna: ok") == 4 and len(lb) == 10


def test_kappa_matches_the_textbook():
    from sklearn.metrics import cohen_kappa_score

    rng = np.random.default_rng(1)
    a = rng.integers(0, 4, 300)
    b = np.where(rng.random(300) < 0.7, a, rng.integers(0, 4, 300))
    assert agreement.cohen_kappa(a, b) == pytest.approx(cohen_kappa_score(a, b))
    result = agreement.kappa_with_interval(a, b, rounds=300)
    lo, hi = result["kappa_ci"]
    assert lo < result["kappa"] < hi and hi - lo < 0.2
    assert agreement.cohen_kappa(a, a) == 1.0
    assert agreement.cohen_kappa(np.zeros(5), np.zeros(5)) is None


def test_pack_of_a_pack_and_bad_share_are_one_line_errors(home, tmp_path, capsys):
    assert main(["pack", str(home), "--to", str(tmp_path / "a.inspector"), "--images", "4", "--quiet"]) == 0
    capsys.readouterr()
    for argv, words in (
        (["pack", str(tmp_path / "a.inspector"), "--to", str(tmp_path / "aa.inspector"), "--images", "2"], "itself a labelling pack"),
        (["pack", str(home), "--to", str(tmp_path / "x.inspector"), "--share", "three"], "not a fraction"),
        (["pack", str(home), "--to", str(tmp_path / "a.inspector"), "--images", "2"], "already exists"),
        (["merge", str(home), str(home)], "not a labelling pack"),
    ):
        code = main(argv)
        err = capsys.readouterr().err
        assert code == 1 and "Traceback" not in err and words in err, (argv, err)


def test_copied_images_make_the_pack_independent_of_the_folder(home, tmp_path):
    with Project.open(home) as project:
        result = packs.create_pack(project, tmp_path / "p.inspector",
                                   n_images=5, copy_images=True)
    assert result.copied and result.image_root == tmp_path / "p-images"
    with Project.open(tmp_path / "p.inspector", read_only=True) as pack:
        for q in pack.queue():
            assert pack.image_path(q.image_id).is_file()
            assert str(pack.image_path(q.image_id)).startswith(str(tmp_path / "p-images"))


def test_agreement_in_cli_and_report(home, tmp_path, capsys):
    with Project.open(home) as project:
        packs.create_pack(project, tmp_path / "a.inspector", n_images=16, annotator="anna")
        packs.create_pack(project, tmp_path / "b.inspector", n_images=16, annotator="ben", double_share=0.5)
    label_pack(tmp_path / "a.inspector", lambda p: "scratch" if p.startswith("scratch") else "ok")
    label_pack(tmp_path / "b.inspector", lambda p: "scratch" if p.startswith("scratch") or p.endswith("1.png") else "ok")
    assert main(["merge", str(home), str(tmp_path / "a.inspector"), str(tmp_path / "b.inspector"), "--quiet"]) == 0
    capsys.readouterr()
    assert main(["agreement", str(home), "--json"]) == 0
    import json

    summary = json.loads(capsys.readouterr().out)
    [pair] = summary["pairs"]
    assert pair["annotators"] == ["anna", "ben"] and pair["n"] == 8
    assert main(["agreement", str(home)]) == 0
    assert "anna / ben: kappa" in capsys.readouterr().out
    assert main(["report", str(home), str(tmp_path / "r.html")]) == 0
    text = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert "Agreement between inspectors" in text and "anna / ben" in text


def test_home_does_not_queue_images_out_in_packs(home, tmp_path):
    from inspector.core.learning import learner

    with Project.open(home) as project:
        packs.create_pack(project, tmp_path / "a.inspector", n_images=20)
        handed = set(project.handed_out_images())
        learner.retrain(project, n=30)
        queued = {q.image_id for q in project.queue()}
        assert queued and not queued & handed


def test_an_older_project_opened_read_only_still_trains_and_reports(tmp_path, small_image_folder):
    """Read-only opening does not migrate: the pack-aware reads must work on the old schema."""
    import sqlite3 as sql

    from inspector.core import migrations
    from inspector.core.ingest import scan_project
    from inspector.core.learning.learner import take_snapshot
    from inspector.core.report import build_report_html

    path = tmp_path / "new.inspector"
    with Project.create(path, small_image_folder) as project:
        scan_project(project, workers=1)
        ok, scratch = project.add_class("ok"), project.add_class("scratch")
        for k, image_id in enumerate(project.image_ids()[:8]):
            project.add_label(int(image_id), ok if k % 2 else scratch, annotator="hans")
    # the same data at format 1: drop what migration 2 added
    db = sql.connect(path)
    db.execute("DROP TABLE pack_images")
    db.execute("DROP TABLE packs_out")
    db.execute("DROP TABLE packs_merged")
    db.execute("DROP INDEX label_events_uid")
    for column in ("workstation", "pack_id", "event_uid"):
        db.execute(f"ALTER TABLE label_events DROP COLUMN {column}")
    # and what the later migration (picks' selection probabilities) added
    for table, columns in (("queue", ("selection_probability", "pool_size")),
                           ("label_events", ("selection_probability", "pool_size", "model_version"))):
        for column in columns:
            db.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
    db.execute("PRAGMA user_version = 1")
    db.commit()
    db.close()
    assert len(migrations.MIGRATIONS) >= 2
    with Project.open(path, read_only=True) as project:
        assert project.schema_version() == 1
        assert len(take_snapshot(project).labels) == 8
        assert agreement.disagreements(project) == [] and project.handed_out_images() == {}
        assert "Agreement between inspectors" not in build_report_html(project)
    with Project.open(path) as project:  # opened to write, it is migrated and keeps its labels
        assert project.schema_version() == len(migrations.MIGRATIONS)
        assert len(project.latest_labels()) == 8 and project.label_events_full()[0]["workstation"] == ""


def test_a_class_deleted_in_the_pack_does_not_come_home(home, tmp_path):
    with Project.open(home) as project:
        packs.create_pack(project, tmp_path / "a.inspector", n_images=6, annotator="anna")
    with Project.open(tmp_path / "a.inspector") as pack:
        wrong = pack.add_class("wrong idea")
        queue = [q.image_id for q in pack.queue()]
        pack.add_label(queue[0], wrong)
        pack.delete_class(wrong)
        pack.add_label(queue[1], pack.class_by_name("ok").id)
    with Project.open(home) as project:
        [result] = packs.merge_packs(project, [tmp_path / "a.inspector"])
        assert [c.name for c in project.classes()] == ["ok", "scratch"]
        assert result.added == 2  # the 'cleared' event and the ok label
