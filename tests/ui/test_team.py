"""File ▸ Create labelling pack… / Merge labels… in workers, the gallery's disagreements filter
(labelling there is a review), and the network-share choice before anything is written."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("pytestqt")

from PySide6.QtCore import QSettings, Qt  # noqa: E402
from PySide6.QtWidgets import QMessageBox  # noqa: E402

from inspector.core import agreement, filesystems, ingest, packs  # noqa: E402
from inspector.core.store import Project  # noqa: E402
from inspector.ui import team  # noqa: E402
from inspector.ui.gallery import GalleryFilter, GalleryView  # noqa: E402


@pytest.fixture(autouse=True)
def no_network_shares(isolated_settings, tmp_path, monkeypatch):
    monkeypatch.setattr(filesystems, "MOUNTS_FILE", tmp_path / "mounts")  # nothing is a share unless a test says
    (tmp_path / "mounts").write_text("/dev/sda1 / ext4 rw 0 0\n")


@pytest.fixture
def home(tmp_path, small_image_folder) -> Path:
    path = tmp_path / "home" / "home.inspector"
    path.parent.mkdir()
    with Project.create(path, small_image_folder) as project:
        ingest.scan_project(project, workers=1)
        project.add_class("ok")
        project.add_class("scratch")
        project.set_setting("app.retrain_every", 10_000)
    return path


def _open(window, qtbot, path: Path):
    with qtbot.waitSignal(window.project_open_done, timeout=60_000) as done:
        window.open_project(str(path))
    assert done.args[0]
    session = window.session
    qtbot.waitUntil(lambda: not session.extracting() and not session.loading_features(), timeout=30000)
    return session


def _label_all(pack_path: Path, name: str) -> None:
    with Project.open(pack_path) as pack:
        cls = pack.class_by_name(name).id
        for q in pack.queue():
            pack.add_label(q.image_id, cls, audit=q.audit)


def test_create_pack_and_merge_from_the_file_menu(window, qtbot, home, tmp_path, monkeypatch):
    session = _open(window, qtbot, home)
    assert all(a.isEnabled() for a in window.team_actions)
    shown = []
    monkeypatch.setattr(team.QMessageBox, "information", lambda *args: shown.append(args[2]))

    def fill(dialog, path, annotator, share="1/2"):
        dialog.path_edit.setText(str(path))
        dialog.share.setText(share)
        dialog.annotator.setText(annotator)
        dialog.double.setValue(20)
        return 1

    for name, who in (("a", "anna"), ("b", "ben")):
        monkeypatch.setattr(team.CreatePackDialog, "exec", lambda self, n=name, w=who: fill(self, tmp_path / n, w))
        task = team.create_pack_interactively(window, session)
        assert task is not None
        qtbot.waitUntil(lambda: len(shown) == (1 if name == "a" else 2), timeout=20000)
    assert (tmp_path / "a.inspector").exists() and (tmp_path / "b.inspector").exists()
    assert "Wrote a.inspector" in shown[0]
    _label_all(tmp_path / "a.inspector", "ok")
    _label_all(tmp_path / "b.inspector", "scratch")
    with qtbot.waitSignal(session.labels_changed, timeout=20000):
        team.merge_interactively(window, session, [str(tmp_path / "a.inspector"), str(tmp_path / "b.inspector")])
    qtbot.waitUntil(lambda: len(shown) == 3, timeout=5000)
    assert "Merged a.inspector (anna" in shown[2] and "Disagreements" in shown[2]
    held = agreement.unresolved_disagreement_ids(session.project)
    assert len(held) >= 1
    # every handed-out image is labelled at home now (halves of 40 with 4 of the second half doubled: 36)
    assert len(session.latest_labels()) == len(session.project.handed_out_images()) == 36


def test_gallery_disagreements_filter_and_review(qtbot, home, tmp_path):
    with Project.open(home) as project:
        packs.create_pack(project, tmp_path / "a.inspector", n_images=10, annotator="anna")
        packs.create_pack(project, tmp_path / "b.inspector", n_images=10, annotator="ben", double_share=0.3)
    _label_all(tmp_path / "a.inspector", "ok")
    _label_all(tmp_path / "b.inspector", "scratch")
    from inspector.ui.session import ProjectSession

    project = Project.open(home)
    packs.merge_packs(project, [tmp_path / "a.inspector", tmp_path / "b.inspector"])
    session = ProjectSession(project)
    session.image_ids, session.features = project.feature_matrix(*session.extractor)
    view = GalleryView(session, disk_cache=False)
    qtbot.addWidget(view)
    view.resize(900, 600)
    view.show()
    try:
        view.set_filter(GalleryFilter("disagreements"))
        qtbot.waitUntil(lambda: not view.sorting, timeout=5000)
        assert view.model.rowCount() == 3
        tip = view.model.data(view.model.index(0), Qt.ItemDataRole.ToolTipRole)
        assert "Inspectors: anna: ok, ben: scratch" in tip
        view.select_rows(range(3))
        view.label_selected(project.class_by_name("ok").id)
        session.wait_for_labels()
        assert agreement.unresolved_disagreement_ids(project) == set()
        resolved = agreement.disagreements(project, include_resolved=True)
        assert len(resolved) == 3 and all(d.resolution == project.class_by_name("ok").id for d in resolved)
        view.grab().save(str(tmp_path / "gallery.png"))
    finally:
        view.loader.shutdown()
        session.closed = True
        project.close()


def test_project_on_a_share_waits_for_the_users_choice(window, qtbot, home, tmp_path, monkeypatch, opened):
    (tmp_path / "mounts").write_text(f"/dev/sda1 / ext4 rw 0 0\nnas:/qa {home.parent} nfs4 rw 0 0\n")
    monkeypatch.setattr(filesystems.sys, "platform", "linux")
    before = home.read_bytes()
    listing = {p.name: p.stat().st_mtime_ns for p in home.parent.iterdir()}
    monkeypatch.setattr(team, "ask_network_share_choice", lambda w, p, kind: "cancel")
    assert not opened(window.open_project, str(home))
    assert window.session is None and home.read_bytes() == before
    assert {p.name: p.stat().st_mtime_ns for p in home.parent.iterdir()} == listing  # nothing written there
    local = tmp_path / "local" / "home.inspector"
    local.parent.mkdir()
    monkeypatch.setattr(team, "ask_network_share_choice", lambda w, p, kind: "copy")
    monkeypatch.setattr(team, "ask_copy_target", lambda w, p: local)
    assert not opened(window.open_project, str(home))
    qtbot.waitUntil(lambda: window.session is not None, timeout=10000)
    assert window.session.project.path == local and home.read_bytes() == before
    window.close_project()
    monkeypatch.setattr(team, "ask_network_share_choice", lambda w, p, kind: "open")
    assert opened(window.open_project, str(home)) and window.session.project.path == home
