"""Hardening of the project file: one project by many names, full disks, refused files untouched."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from inspector.core.errors import ProjectError
from inspector.core.migrations import SCHEMA_VERSION
from inspector.core.store import Project

from test_bad_projects import build, cli

posix_only = pytest.mark.skipif(os.name != "posix", reason="links, fork and mounts as used here are POSIX")


@pytest.fixture
def project(tmp_path) -> Path:
    path = tmp_path / "line.inspector"
    build(path, tmp_path / "images", n_images=40, n_labels=10)
    return path


def _names(project: Path) -> dict[str, Path]:
    other = project.parent / "elsewhere"
    other.mkdir()
    (other / "sym.inspector").symlink_to(project)
    os.link(project, other / "hard.inspector")
    return {"path": project, "symlink": other / "sym.inspector", "hardlink": other / "hard.inspector"}


# ------------------------------------------------------------------------- one file, many names
@posix_only
@pytest.mark.parametrize("first", ["path", "symlink", "hardlink"])
def test_a_second_name_of_an_open_project_is_refused(project, first, capsys):
    names = _names(project)
    with Project.open(names[first]) as holder:
        for kind, name in names.items():
            with pytest.raises(ProjectError, match="already open"):
                Project.open(name)
            code, err = cli(capsys, "label", str(name), "part_00001.png", "ok")
            assert code == 1 and "already open" in err, (kind, err)
        assert holder.integrity_check() == "ok"
    with Project.open(names["hardlink"]) as again:  # released: any name opens it now
        assert [c.name for c in again.classes()].count("ok") == 1


@posix_only
def test_lock_files_do_not_stay_after_exit(project, capsys):
    names = _names(project)
    code, _ = cli(capsys, "label", str(names["hardlink"]), "part_00001.png", "ok")
    assert code == 0
    with Project.open(project):
        pass
    leftovers = [p.name for p in project.parent.rglob("*.lock")]
    assert leftovers == []
    identity = Path(tempfile.gettempdir()) / "inspector-locks" / f"{os.stat(project).st_dev:x}-{os.stat(project).st_ino:x}.lock"
    assert not identity.exists()


@posix_only
def test_a_writer_killed_under_one_name_is_recovered_under_another(project):
    """Its committed labels are in the log beside the name it used; a hard link has another name."""
    names = _names(project)
    child = subprocess.Popen(
        [sys.executable, "-c",
         "import sys; from inspector.core.store import Project; p = Project.open(sys.argv[1]); "
         "p._db.execute('PRAGMA wal_autocheckpoint = 0'); "
         "ids = sorted(v[0] for v in p.scan_state().values()); c = p.classes()[1].id; "
         "[p.add_label(i, c, annotator='killed') for i in ids[20:30]]; print('done', flush=True); "
         "import time; time.sleep(600)", str(names["hardlink"])],
        stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "done"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(30)
    log = names["hardlink"].with_name("hard.inspector-wal")
    assert log.stat().st_size > 0  # the labels are only in the log beside the hard link's name
    with Project.open(project) as p:
        killed = [e for i in range(1, 41) for e in p.label_history(i) if e.annotator == "killed"]
        assert len(killed) == 10 and p.integrity_check() == "ok"
        p.add_label(1, p.classes()[0].id)
    with Project.open(names["hardlink"]) as p:
        assert p.integrity_check() == "ok" and len(p.latest_labels()) >= 20
    # the killed writer's lock file beside the hard link's name went with the next clean writer
    assert sorted(p.name for p in project.parent.rglob("*.lock")) == []


# ------------------------------------------------------------------------- refused files stay as they are
def _with_log(path: Path, statement: str) -> tuple[bytes, bytes]:
    """Commit ``statement`` into a write-ahead log and leave the log beside the file, as a crash would."""
    db = sqlite3.connect(str(path))
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA wal_autocheckpoint = 0")
    db.execute(statement)
    db.commit()
    main_bytes = path.read_bytes()
    log_bytes = path.with_name(path.name + "-wal").read_bytes()
    copy = path.with_name("crashed-" + path.name)
    copy.write_bytes(main_bytes)
    copy.with_name(copy.name + "-wal").write_bytes(log_bytes)
    db.close()
    return copy, main_bytes, log_bytes


@pytest.mark.parametrize("read_only", [False, True])
def test_newer_version_in_the_log_is_refused_and_nothing_changes(project, read_only, capsys):
    copy, main_bytes, log_bytes = _with_log(project, f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(ProjectError, match="newer version"):
        Project.open(copy, read_only=read_only)
    code, err = cli(capsys, "info", str(copy))
    assert code == 1 and "newer version" in err
    assert copy.read_bytes() == main_bytes
    assert copy.with_name(copy.name + "-wal").read_bytes() == log_bytes


def test_foreign_sqlite_file_with_a_log_is_refused_and_nothing_changes(tmp_path, capsys):
    path = tmp_path / "other.inspector"
    db = sqlite3.connect(str(path))
    db.execute("CREATE TABLE images (id INTEGER PRIMARY KEY)")
    db.commit()
    db.close()
    copy, main_bytes, log_bytes = _with_log(path, "CREATE TABLE label_events (id INTEGER PRIMARY KEY)")
    for argv in (["info", str(copy)], ["scan", str(copy), "--quiet"], ["label", str(copy), "a.png", "ok"]):
        code, err = cli(capsys, *argv)
        assert code == 1 and "another application" in err
    assert copy.read_bytes() == main_bytes
    assert copy.with_name(copy.name + "-wal").read_bytes() == log_bytes


def test_a_good_project_whose_header_is_only_in_the_log_opens(project):
    copy, _, _ = _with_log(project, "UPDATE meta SET value = 'renamed' WHERE key = 'name'")
    with Project.open(copy) as p:
        assert p.name == "renamed" and p.integrity_check() == "ok"


# ------------------------------------------------------------------------- full disk (a tiny tmpfs)
def _mount_tiny_disk(size_kb: int) -> Path:
    mount = Path(tempfile.mkdtemp(prefix="inspector-tiny-"))
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs", str(mount)],
                          capture_output=True)
    if done.returncode != 0:
        os.rmdir(mount)
        pytest.skip("mounting a tmpfs needs root on Linux")
    return mount


def _fill(mount: Path, leave_bytes: int) -> None:
    ballast = mount / "ballast"
    with open(ballast, "wb", buffering=0) as handle:
        try:
            while True:
                handle.write(b"\0" * 4096)
                handle.flush()
        except OSError:
            pass  # full: the point
    os.truncate(ballast, max(0, ballast.stat().st_size - leave_bytes))


@pytest.fixture
def tiny_disk():
    if os.name != "posix" or os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root on Linux")
    mount = _mount_tiny_disk(8192)
    yield mount
    subprocess.run(["umount", str(mount)], check=False)
    os.rmdir(mount)


@pytest.mark.parametrize("free_kb", [0, 12])
def test_full_disk_one_true_line_and_the_project_is_intact(tiny_disk, tmp_path, capsys, free_kb):
    images = tmp_path / "images"
    path = tiny_disk / "line.inspector"
    build(path, images, n_images=30, n_labels=5)
    for leftover in tiny_disk.iterdir():
        assert leftover.name == "line.inspector", leftover  # clean exit: no log, no lock files
    before = path.read_bytes()
    _fill(tiny_disk, free_kb * 1024)
    for argv in (["label", str(path), "part_00007.png", "ok"], ["info", str(path)], ["scan", str(path), "--quiet"]):
        code, err = cli(capsys, *argv)
        lines = [line for line in err.splitlines() if line.strip()]
        assert code == 1 and len(lines) == 1, (argv, err)
        assert "full" in err and "damaged" not in err and "error writing" not in err, (argv, err)
    assert path.read_bytes() == before
    (tiny_disk / "ballast").unlink()
    with Project.open(path) as p:
        assert p.integrity_check() == "ok" and len(p.latest_labels()) == 5


# ------------------------------------------------------------------------- full disk (injected, any user)
def test_no_room_for_the_lock_file_is_one_line_about_the_disk(project, monkeypatch, capsys):
    import errno

    real_open = os.open

    def full_for_locks(path, flags, *args):
        if str(path).endswith(".lock") and flags & os.O_CREAT:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_open(path, flags, *args)

    monkeypatch.setattr(os, "open", full_for_locks)
    code, err = cli(capsys, "label", str(project), "part_00001.png", "ok")
    assert code == 1 and "disk holding" in err and "is full" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("read_only", [False, True])
def test_an_io_error_on_a_nearly_full_disk_is_called_full_not_damaged(project, monkeypatch, read_only):
    """SQLite says 'disk I/O error' when it cannot grow its shared-memory file; the file is intact."""
    import inspector.core.store as store

    def no_room(self):
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(store.Project, "_configure", no_room)
    monkeypatch.setattr(store, "_free_bytes", lambda folder: 12 * 1024)
    with pytest.raises(ProjectError) as info:
        Project.open(project, read_only=read_only)
    text = str(info.value)
    assert "is full (12 KB free)" in text and "intact" in text and "damaged" not in text and "writing" not in text
    monkeypatch.setattr(store, "_free_bytes", lambda folder: 50 * 1024**3)  # plenty of room: a real I/O error
    with pytest.raises(ProjectError, match="disk reported an error opening") as info:
        Project.open(project, read_only=read_only)
    assert "writing" not in str(info.value)


def test_a_torn_frame_in_the_log_is_not_believed_before_refusing(project):
    """After a power cut the last frame of a log may be half written: SQLite ignores it (its
    checksum fails), so the header read from the log before opening must ignore it too."""
    from inspector.core.store import _header_with_log, _identity_of

    copy, main_bytes, log_bytes = _with_log(project, f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    log = copy.with_name(copy.name + "-wal")
    torn = bytearray(log_bytes)
    torn[-50] ^= 0xFF  # inside the last frame (the one that made the version newer)
    log.write_bytes(bytes(torn))
    header = copy.read_bytes()[:100]
    assert _identity_of(_header_with_log(header, log))[1] == SCHEMA_VERSION + 1  # frame headers alone
    assert _identity_of(_header_with_log(header, log, verify=True))[1] == SCHEMA_VERSION  # checksums
    with Project.open(copy) as p:  # so the project is not refused as newer; SQLite agrees
        assert p.schema_version() == SCHEMA_VERSION and p.integrity_check() == "ok"
