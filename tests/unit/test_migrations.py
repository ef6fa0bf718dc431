"""Schema migrations: every earlier version opens and upgrades; newer, foreign and damaged files
are refused with a clear message and left byte-for-byte unchanged."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from inspector.core import migrations, store
from inspector.core.errors import ProjectError
from inspector.core.migrations import APPLICATION_ID, MIGRATIONS, SCHEMA_VERSION
from inspector.core.store import Project


def write_project_at_version(path: Path, version: int, image_root: Path, migration_list=None) -> None:
    """A project file as an Inspector of schema ``version`` would have left it (with one label)."""
    migration_list = MIGRATIONS if migration_list is None else migration_list
    db = sqlite3.connect(str(path), isolation_level=None)
    for script in migration_list[:version]:
        for statement in migrations._statements(script):
            db.execute(statement)
    db.execute(f"PRAGMA user_version = {version}")
    db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    db.executemany("INSERT INTO meta(key, value) VALUES (?, ?)",
                   [("image_root", str(image_root)), ("image_root_relative", "images"), ("name", "old")])
    db.execute("INSERT INTO images(path, size, mtime_ns, added_at, content_hash) VALUES ('a.png', 1, 1, 'now', 'h')")
    db.execute("INSERT INTO classes(name, color, position) VALUES ('ok', '#00ff00', 0)")
    db.execute("INSERT INTO label_events(image_id, class_id, kind, source, created_at) VALUES (1, 1, 'class', 'human', 'now')")
    db.close()


@pytest.fixture
def image_root(tmp_path: Path) -> Path:
    root = tmp_path / "images"
    root.mkdir()
    return root


@pytest.mark.parametrize("version", range(1, SCHEMA_VERSION + 1))
def test_every_released_version_opens_and_upgrades(tmp_path, image_root, version):
    path = tmp_path / f"v{version}.inspector"
    write_project_at_version(path, version, image_root)
    with Project.open(path) as p:
        assert p.schema_version() == SCHEMA_VERSION
        assert p.integrity_check() == "ok"
        assert p.latest_labels() == {1: 1}  # the old label survived the upgrade
        p.add_label(1, p.add_class("scratch"))  # and the upgraded file is writable
    with Project.open(path) as p:
        assert len(p.label_history(1)) == 2


def test_a_future_migration_is_applied_to_an_older_file(tmp_path, image_root, monkeypatch):
    """The upgrade path itself: pretend the next release adds a migration."""
    path = tmp_path / "old.inspector"
    write_project_at_version(path, SCHEMA_VERSION, image_root)
    extended = MIGRATIONS + ["ALTER TABLE images ADD COLUMN inspected_by TEXT;\nCREATE TABLE extra (x INTEGER);"]
    monkeypatch.setattr(migrations, "MIGRATIONS", extended)
    monkeypatch.setattr(migrations, "SCHEMA_VERSION", len(extended))
    monkeypatch.setattr(store, "SCHEMA_VERSION", len(extended))
    with Project.open(path) as p:
        assert p.schema_version() == len(extended)
        assert p.latest_labels() == {1: 1}
    db = sqlite3.connect(str(path))
    columns = [r[1] for r in db.execute("PRAGMA table_info(images)")]
    db.close()
    assert "inspected_by" in columns


def test_a_failing_migration_leaves_the_file_at_its_old_version(tmp_path, image_root, monkeypatch):
    path = tmp_path / "old.inspector"
    write_project_at_version(path, SCHEMA_VERSION, image_root)
    broken = MIGRATIONS + ["CREATE TABLE extra (x INTEGER);\nALTER TABLE no_such_table ADD COLUMN y;"]
    monkeypatch.setattr(migrations, "MIGRATIONS", broken)
    monkeypatch.setattr(migrations, "SCHEMA_VERSION", len(broken))
    monkeypatch.setattr(store, "SCHEMA_VERSION", len(broken))
    with pytest.raises(ProjectError):
        Project.open(path)
    db = sqlite3.connect(str(path))
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert db.execute("SELECT count(*) FROM sqlite_master WHERE name = 'extra'").fetchone()[0] == 0
    db.close()


def _assert_refused_unchanged(path: Path, pattern: str) -> None:
    before = path.read_bytes()
    with pytest.raises(ProjectError, match=pattern) as info:
        Project.open(path)
    assert "\n" not in str(info.value)
    assert path.read_bytes() == before
    assert not path.with_name(path.name + "-wal").exists()


def test_newer_version_refused_unchanged(tmp_path, image_root):
    path = tmp_path / "new.inspector"
    write_project_at_version(path, SCHEMA_VERSION, image_root)
    db = sqlite3.connect(str(path))
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    _assert_refused_unchanged(path, "newer version")


def test_foreign_sqlite_refused_unchanged(tmp_path):
    path = tmp_path / "photos.inspector"
    db = sqlite3.connect(str(path))
    db.execute("CREATE TABLE albums (id INTEGER PRIMARY KEY, title TEXT)")
    db.execute("INSERT INTO albums(title) VALUES ('holiday')")
    db.execute("PRAGMA application_id = 1234")
    db.commit()
    db.close()
    _assert_refused_unchanged(path, "another application")


@pytest.mark.parametrize("content", [b"", os.urandom(4096), b"SQLite format 3\x00" + b"\x00" * 20,
                                     b"name,label\na.png,ok\n" * 20])
def test_random_empty_and_short_files_refused_unchanged(tmp_path, content):
    path = tmp_path / "junk.inspector"
    path.write_bytes(content)
    _assert_refused_unchanged(path, "not an Inspector project")


def test_truncated_project_refused_or_reported_damaged(tmp_path, image_root):
    path = tmp_path / "p.inspector"
    with Project.create(path, image_root) as p:
        p.record_scan([(f"f{i}.png", 1, 1) for i in range(3000)], [], [], [])
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    before = path.read_bytes()
    with pytest.raises(ProjectError, match="damaged"):
        Project.open(path)
    assert path.read_bytes() == before
