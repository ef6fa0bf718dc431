"""Bad project files and hostile situations: a clear message, nothing corrupted, no label lost."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

from inspector.cli import main
from inspector.core.errors import ProjectError
from inspector.core.migrations import SCHEMA_VERSION
from inspector.core.store import ImageAnalysis, Project, QueueEntry

NOBODY = 65534


def build(path: Path, image_root: Path, n_images: int = 1500, n_labels: int = 200) -> list[int]:
    """A realistic project: images, features, classes, labels. Returns the image ids."""
    image_root.mkdir(exist_ok=True)
    with Project.create(path, image_root) as p:
        p.record_scan([(f"part_{i:05d}.png", 1000 + i, i) for i in range(n_images)], [], [], [])
        ids = sorted(v[0] for v in p.scan_state().values())
        rng = np.random.default_rng(0)
        p.save_analyses([ImageAnalysis(i, f"hash{i}", 64, 64, 8, 1, features=rng.normal(size=64).astype(np.float32))
                         for i in ids], "texture", 1)
        classes = [p.add_class(n) for n in ("ok", "scratch", "crack")]
        p.add_labels_bulk([(image_id, classes[k % 3]) for k, image_id in enumerate(ids[:n_labels])], source="human")
    return ids


def cli(capsys, *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, err


@pytest.fixture
def project(tmp_path) -> Path:
    path = tmp_path / "line.inspector"
    build(path, tmp_path / "images")
    return path


# ------------------------------------------------------------------------- damaged files
@pytest.mark.parametrize("size", [0, 50, 100, 4096, 100_000])
def test_random_bytes(tmp_path, capsys, size):
    path = tmp_path / "random.inspector"
    path.write_bytes(np.random.default_rng(size).integers(0, 256, size, dtype=np.uint8).tobytes())
    before = path.read_bytes()
    with pytest.raises(ProjectError, match="not an Inspector project"):
        Project.open(path)
    code, err = cli(capsys, "info", str(path))
    assert code == 1 and "not an Inspector project" in err
    assert path.read_bytes() == before


@pytest.mark.parametrize("fraction", [0.1, 0.5, 0.9])
def test_truncated_project(project, capsys, fraction):
    data = project.read_bytes()
    project.write_bytes(data[: int(len(data) * fraction)])
    before = project.read_bytes()
    with pytest.raises(ProjectError, match="damaged"):
        Project.open(project)
    code, err = cli(capsys, "scan", str(project), "--quiet")
    assert code == 1 and "damaged" in err and len(err.strip().splitlines()) == 1
    assert project.read_bytes() == before


def test_damaged_page_inside_a_table(project):
    """Garbage written over a page in the middle: refused at open, or reported by every read."""
    data = bytearray(project.read_bytes())
    page = 4096
    middle = (len(data) // page // 2) * page
    data[middle : middle + page] = np.random.default_rng(3).integers(0, 256, page, dtype=np.uint8).tobytes()
    project.write_bytes(bytes(data))
    try:
        p = Project.open(project)
    except ProjectError as exc:
        assert "damaged" in str(exc)
        return
    with p:
        try:
            result = p.integrity_check()
        except ProjectError as exc:  # SQLite may stop at the first malformed page
            result = str(exc)
            assert "damaged" in result and "\n" not in result
        assert result != "ok"  # the check the app offers finds it


def test_another_applications_sqlite_file(tmp_path, capsys):
    path = tmp_path / "other.inspector"
    db = sqlite3.connect(str(path))
    db.execute("CREATE TABLE images (id INTEGER PRIMARY KEY)")  # even with a table of the same name
    db.execute("CREATE TABLE label_events (id INTEGER PRIMARY KEY)")
    db.commit()
    db.close()
    before = path.read_bytes()
    code, err = cli(capsys, "info", str(path))
    assert code == 1 and "another application" in err
    code, err = cli(capsys, "scan", str(path))
    assert code == 1 and "another application" in err
    assert path.read_bytes() == before


def test_newer_schema_version(project, capsys):
    db = sqlite3.connect(str(project))
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 5}")
    db.commit()
    db.close()
    before = project.read_bytes()
    code, err = cli(capsys, "scan", str(project), "--quiet")
    assert code == 1 and "newer version" in err and "update Inspector" in err
    assert project.read_bytes() == before


def test_newer_schema_version_committed_but_still_in_the_log(project):
    """A newer Inspector crashed before checkpointing: the version is only in the -wal file."""
    db = sqlite3.connect(str(project))
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA wal_autocheckpoint = 0")
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.commit()
    # leave the log un-checkpointed, as a crash would: copy the files while the connection is open
    copy = project.with_name("crashed.inspector")
    copy.write_bytes(project.read_bytes())
    copy.with_name(copy.name + "-wal").write_bytes(project.with_name(project.name + "-wal").read_bytes())
    db.close()
    with pytest.raises(ProjectError, match="newer version"):
        Project.open(copy)


# ------------------------------------------------------------------------- second instance
def test_second_instance_in_the_same_process(project):
    with Project.open(project) as first:
        with pytest.raises(ProjectError, match="already open"):
            Project.open(project)
        first.add_label(1, first.classes()[0].id)  # the first instance is unaffected
    with Project.open(project) as again:
        assert again.integrity_check() == "ok"


def test_second_instance_in_another_process(project):
    with Project.open(project) as first:
        result = subprocess.run([sys.executable, "-m", "inspector", "scan", str(project), "--quiet"],
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 1, result.stderr
        assert "already open" in result.stderr and "Traceback" not in result.stderr
        assert f"process {os.getpid()}" in result.stderr  # says who holds it
        labels_before = first.latest_labels()
    with Project.open(project) as again:
        assert again.latest_labels() == labels_before


def test_lock_released_when_the_holder_is_killed(project):
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time; from inspector.core.store import Project; p = Project.open(sys.argv[1]); "
         "print('open', flush=True); time.sleep(600)", str(project)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "open"
        with pytest.raises(ProjectError, match="already open"):
            Project.open(project)
    finally:
        holder.kill()
        holder.wait(30)
    with Project.open(project) as p:  # a crashed instance does not lock the project forever
        assert p.integrity_check() == "ok"


# ------------------------------------------------------------------------- read-only
def _run_as_nobody(function) -> tuple[int, str]:
    """Run ``function()`` in a forked child with the 'nobody' user's rights; returns (exit, text)."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            os.close(read_fd)
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            text = function()
        except BaseException as exc:  # reported to the parent, which asserts on it
            text, code = f"{type(exc).__name__}: {exc}", 3
        os.write(write_fd, str(text).encode())
        os._exit(code)
    os.close(write_fd)
    chunks = []
    while chunk := os.read(read_fd, 65536):
        chunks.append(chunk)
    os.close(read_fd)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), b"".join(chunks).decode()


@pytest.mark.skipif(os.name != "posix", reason="file modes and users are POSIX")
def test_read_only_project_file_clear_message_and_read_only_open_works():
    # a folder the unprivileged user can traverse (pytest's tmp_path is private to root)
    folder = Path(tempfile.mkdtemp(prefix="inspector-ro-"))
    try:
        os.chmod(folder, 0o755)
        path = folder / "p.inspector"
        build(path, folder / "images", n_images=50, n_labels=10)
        os.chmod(path, 0o444)
        before = path.read_bytes()

        def open_for_writing() -> str:
            try:
                Project.open(path).close()
            except ProjectError as exc:
                return str(exc)
            return "opened for writing"

        def open_read_only() -> str:
            with Project.open(path, read_only=True) as p:
                try:
                    p.add_label(1, p.classes()[0].id)
                except ProjectError as exc:
                    return f"{len(p.latest_labels())} labels; write refused: {exc}"
            return "write accepted"

        if os.geteuid() == 0:  # root ignores file modes: test with an ordinary user's rights
            code, text = _run_as_nobody(open_for_writing)
            assert code == 0, text
            code_ro, text_ro = _run_as_nobody(open_read_only)
            assert code_ro == 0, text_ro
        else:
            text, text_ro = open_for_writing(), open_read_only()
        assert "read-only" in text and "open it read-only" in text
        assert text_ro.startswith("10 labels; write refused") and "read-only" in text_ro
        assert path.read_bytes() == before
    finally:
        for root, dirs, files in os.walk(folder):
            for name in files:
                os.chmod(os.path.join(root, name), 0o644)
        import shutil

        shutil.rmtree(folder, ignore_errors=True)


# ------------------------------------------------------------------------- full disk
def _fill_up(p: Project, extra_pages: int = 0) -> None:
    """Let the file grow no further (SQLite answers SQLITE_FULL: 'database or disk is full')."""
    pages = p._db.execute("PRAGMA page_count").fetchone()[0]
    p._db.execute(f"PRAGMA max_page_count = {pages + extra_pages}")


def test_disk_full_while_labelling(project, capsys):
    acknowledged: dict[int, int] = {}
    with Project.open(project) as p:
        classes = [c.id for c in p.classes()]
        ids = [int(i) for i in p.image_ids()]
        _fill_up(p, extra_pages=2)
        error = None
        for k, image_id in enumerate(ids):
            try:
                p.add_label(image_id, classes[k % 3], annotator="x" * 500)
            except ProjectError as exc:
                error = str(exc)
                break
            acknowledged[image_id] = classes[k % 3]
        assert error is not None, "the page limit never bit"
        assert "disk is full" in error and "earlier work is safe" in error and "\n" not in error
        # every later write is refused the same way, and nothing half-written remains
        with pytest.raises(ProjectError, match="disk is full"):
            p.add_labels_bulk([(i, classes[0]) for i in ids[-300:]])
        with pytest.raises(ProjectError, match="disk is full"):
            p.replace_queue([QueueEntry(i, n, "margin", 0.5, "x" * 200, None) for n, i in enumerate(ids)])
        assert p.integrity_check() == "ok"
        latest = p.latest_labels()
        for image_id, class_id in acknowledged.items():
            assert latest[image_id] == class_id
        # space is freed: labelling goes on in the same session
        p._db.execute("PRAGMA max_page_count = 1073741823")
        p.add_label(ids[-1], classes[0])
    with Project.open(project) as p:
        assert p.integrity_check() == "ok"
        latest = p.latest_labels()
        assert all(latest[i] == c for i, c in acknowledged.items())
        assert latest[ids[-1]] == classes[0]


def test_disk_full_during_scan_is_a_clear_cli_error(tmp_path, capsys, small_image_folder, monkeypatch):
    path = tmp_path / "p.inspector"
    Project.create(path, small_image_folder).close()
    original = Project._configure

    def configure_with_tiny_limit(self):
        original(self)
        _fill_up(self)

    monkeypatch.setattr(Project, "_configure", configure_with_tiny_limit)
    code, err = cli(capsys, "scan", str(path), "--quiet", "--workers", "1")
    assert code == 1 and "disk is full" in err
    monkeypatch.undo()
    with Project.open(path) as p:
        assert p.integrity_check() == "ok"
    code, _ = cli(capsys, "scan", str(path), "--quiet", "--workers", "1")
    assert code == 0
    main(["info", str(path), "--json"])
    assert json.loads(capsys.readouterr().out)["features"] == 40
