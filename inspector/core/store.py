"""The project file: one SQLite database that owns everything a project knows.

Only this module writes SQL. Every method is named by intention; a write the user confirmed
(a label) is committed with ``synchronous=FULL`` in WAL mode before the method returns, so it
survives a crash, a kill or a power cut. Errors reach callers as :class:`ProjectError` with a
sentence for a person (damaged file, newer version, disk full, opened elsewhere…).
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import sqlite3
import struct
import tempfile
import threading
import unicodedata
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional, Sequence

import numpy as np

from inspector.core.errors import ProjectError
from inspector.core.migrations import APPLICATION_ID, SCHEMA_VERSION, apply_migrations

PROJECT_SUFFIX = ".inspector"
SQLITE_HEADER = b"SQLite format 3\x00"

#: Class colours handed out in order; distinct for colour-blind viewers where possible.
PALETTE = (
    "#2ca02c", "#d62728", "#1f77b4", "#ff7f0e", "#9467bd",
    "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f",
)

LABEL_KINDS = ("class", "unsure", "skip", "cleared")
LABEL_SOURCES = ("human", "imported", "suggestion", "bulk", "merge", "review")


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class ImageRecord:
    id: int
    path: str
    content_hash: Optional[str]
    size: int
    width: Optional[int]
    height: Optional[int]
    bit_depth: Optional[int]
    channels: Optional[int]
    error: Optional[str]
    note: Optional[str]
    missing: bool


@dataclass(frozen=True)
class ClassRecord:
    id: int
    name: str
    color: str
    position: int

    @property
    def key(self) -> str:
        """The keyboard key that labels with this class: '1'..'9' for the first nine."""
        return str(self.position + 1) if self.position < 9 else ""


@dataclass(frozen=True)
class LabelEvent:
    id: int
    image_id: int
    class_id: Optional[int]
    kind: str
    annotator: str
    source: str
    audit: bool
    created_at: str


@dataclass(frozen=True)
class ModelVersion:
    version: int
    kind: str
    settings: dict
    n_labels: int
    metrics: dict
    created_at: str


@dataclass(frozen=True)
class QueueEntry:
    image_id: int
    position: int
    strategy: str
    score: Optional[float]
    reason: str
    model_version: Optional[int]
    audit: bool = False
    #: probability with which the pick was drawn among ``pool_size`` unlabelled images; None
    #: when it was not sampled (top-k, cold start) or was queued before this was recorded
    selection_probability: Optional[float] = None
    pool_size: Optional[int] = None


@dataclass(frozen=True)
class PickRecord:
    """How the latest class label of an image came to be asked for (for the accuracy estimators)."""

    image_id: int
    event_id: int
    audit: bool
    selection_probability: Optional[float]
    pool_size: Optional[int]
    model_version: Optional[int]


@dataclass(frozen=True)
class ImageAnalysis:
    """What reading one file produced: metadata, or the reason it is unusable, and features."""

    image_id: int
    content_hash: Optional[str]
    width: Optional[int] = None
    height: Optional[int] = None
    bit_depth: Optional[int] = None
    channels: Optional[int] = None
    error: Optional[str] = None
    note: str = ""
    features: Optional[np.ndarray] = None


class _LockFile:
    """One advisory lock file, held for as long as the project is open and removed on release.

    POSIX: ``flock`` on the file; because the releasing holder unlinks it, a newcomer re-checks
    after locking that the name still leads to the file it locked (otherwise it locked a file
    already gone and tries again). Windows: ``msvcrt.locking`` of byte 0 (the holder's note
    is written after it, where it stays readable); an open file cannot be deleted there, so the
    release closes first and removes the file only if nobody else has it open.
    """

    def __init__(self, path: Path, shared_folder: bool = False) -> None:
        self.path = path
        self.shared_folder = shared_folder  # created world-writable so other users can lock too
        self.previous_note = ""  # what a holder that crashed left in the file
        self._fd: Optional[int] = None

    def acquire(self, note: str) -> bool:
        """Take the lock. Returns False when the lock file cannot exist here (read-only folder);
        raises :class:`ProjectError` when another holder has it or the disk is full."""
        for _ in range(20):
            fd = self._open()
            if fd is None:
                return False
            try:
                _lock_fd(fd)
            except OSError:
                holder = _read_note(fd)
                os.close(fd)
                raise ProjectError(
                    "the project is already open in another Inspector window or command"
                    + (f" ({holder})" if holder else "") + "; close it there first"
                ) from None
            if os.name == "nt" or _same_file(fd, self.path):
                break
            os.close(fd)  # locked a file its releasing holder had just removed: take the new one
        else:
            raise ProjectError(f"cannot take the lock {self.path}: it keeps being replaced")
        self.previous_note = _read_note(fd)
        try:
            os.lseek(fd, 0, os.SEEK_SET)
            os.ftruncate(fd, 0)
            os.lseek(fd, 1, os.SEEK_SET)  # byte 0 is the one locked on Windows
            os.write(fd, note.encode("utf-8", "replace"))
        except OSError:
            pass  # read-only descriptor or a full disk: the note only helps messages; the lock holds
        self._fd = fd
        return True

    def _open(self) -> Optional[int]:
        flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_BINARY", 0) | getattr(os, "O_NOINHERIT", 0)
        try:
            try:
                fd = os.open(self.path, flags, 0o666)
            except FileNotFoundError:
                if not self.shared_folder:
                    raise
                _make_shared_folder(self.path.parent)  # the last holder removed it just now
                fd = os.open(self.path, flags, 0o666)
        except PermissionError:
            try:  # another user's lock file: a read-only descriptor can still be locked (POSIX)
                return os.open(self.path, os.O_RDONLY | getattr(os, "O_BINARY", 0)) if os.name != "nt" else None
            except OSError:
                return None
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                raise ProjectError(_disk_full_message(self.path.parent)) from None
            return None  # read-only folder or file system: nothing can write beside it either
        if self.shared_folder and os.name != "nt":
            try:
                os.fchmod(fd, 0o666)
            except OSError:
                pass  # someone else's file: they made it shareable already
        return fd

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        if os.name == "nt":
            os.close(fd)
            try:
                os.unlink(self.path)
            except OSError:
                pass  # another process has it open (and may hold it now): it is theirs
            return
        try:
            if _same_file(fd, self.path):
                os.unlink(self.path)  # while still locked: a newcomer re-checks the name after locking
        except OSError:
            pass  # folder not writable: an empty, unlocked file is all that remains
        finally:
            os.close(fd)


def _lock_fd(fd: int) -> None:
    if os.name == "nt":
        import msvcrt

        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
    else:
        import fcntl

        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)


def _read_note(fd: int) -> str:
    try:
        os.lseek(fd, 1, os.SEEK_SET)
        return os.read(fd, 4096).decode("utf-8", "replace").strip("\x00 \n")
    except OSError:
        return ""


def _same_file(fd: int, path: Path) -> bool:
    try:
        a, b = os.fstat(fd), os.stat(path)
    except OSError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _identity_lock_folder() -> Optional[Path]:
    """Where locks keyed by a file's identity live: one folder per machine, shared by all users."""
    folder = Path(tempfile.gettempdir()) / "inspector-locks"
    try:
        _make_shared_folder(folder)
    except OSError:
        return None
    return folder


def _make_shared_folder(folder: Path) -> None:
    folder.mkdir(exist_ok=True)
    if os.name != "nt" and folder.stat().st_uid == os.getuid():
        os.chmod(folder, 0o1777)  # like /tmp: everyone may add locks, nobody remove others'


class _ProjectLock:
    """Two advisory locks that together make a project open in one place at a time:

    - beside the file, named after its real path (symlinks resolved): seen by every opener of
      that path, also from another machine on a shared folder, and it names the holder;
    - keyed by the file's identity (device and inode) in a per-machine folder: the same file
      reached through a hard link has another name, and without this lock it would be opened
      twice, each opener with its own write-ahead log (acknowledged labels were lost that way).

    The identity lock also remembers through which name the file was last opened for writing:
    after a crash its unsaved log lies beside that name, so the next writer must use that name.
    """

    def __init__(self, project_path: Path) -> None:
        real = Path(os.path.realpath(project_path))
        self.beside = _LockFile(real.with_name(real.name + ".lock"))
        self.identity: Optional[_LockFile] = None
        self.project_path = Path(project_path)

    def acquire(self) -> None:
        """Raises ProjectError when the project is open elsewhere (by any of its names)."""
        note = f"process {os.getpid()}"
        self.beside.acquire(note)
        try:
            self._acquire_identity(note)
        except BaseException:
            self.beside.release()
            raise

    def _acquire_identity(self, note: str) -> None:
        try:
            st = os.stat(self.project_path)
        except OSError:
            return  # not created yet: Project.create takes it once the file exists
        folder = _identity_lock_folder()
        if folder is None or not st.st_ino:
            return  # no shared temporary folder, or a file system without identities: path lock only
        self.identity = _LockFile(folder / f"{st.st_dev:x}-{st.st_ino:x}.lock", shared_folder=True)
        if not self.identity.acquire(f"{note}, as {os.path.realpath(self.project_path)}"):
            self.identity = None
            return
        last = self.last_writer_name()
        if last is not None and str(last) != os.path.realpath(self.project_path):
            # a writer that crashed under another name left its lock file there; nobody holds it
            # now (we hold the identity lock), so take it and remove it as its holder would have
            stale = _LockFile(last.with_name(last.name + ".lock"))
            try:
                if stale.path.exists() and stale.acquire(""):
                    stale.release()
            except ProjectError:
                pass  # held after all (another machine on a shared folder): leave it to its holder

    def acquire_identity(self) -> None:
        """For a new file: the identity lock once the file exists."""
        self._acquire_identity(f"process {os.getpid()}")

    def last_writer_name(self) -> Optional[Path]:
        """The name a previous writer of this file used, when it ended without closing (crash)."""
        note = self.identity.previous_note if self.identity else ""
        marker = ", as "
        return Path(note.split(marker, 1)[1]) if marker in note else None

    def record_name(self, path: Path) -> None:
        if self.identity is not None and self.identity._fd is not None:
            try:
                os.ftruncate(self.identity._fd, 0)
                os.lseek(self.identity._fd, 1, os.SEEK_SET)
                os.write(self.identity._fd, f"process {os.getpid()}, as {os.path.realpath(path)}".encode())
            except OSError:
                pass  # a full disk: the note is only a hint for recovering after a crash

    def release(self) -> None:
        try:
            if self.identity is not None:
                self.identity.release()
                try:
                    self.identity.path.parent.rmdir()  # leave no trace in the temporary folder
                except OSError:
                    pass  # other projects' locks are in it (or it is gone already)
        finally:
            self.beside.release()


#: The rows of ``features`` that are current for one extractor (name, version): the vector of the
#: image's present content, for a usable image. Every feature read selects from this.
_CURRENT_FEATURES = """FROM features f JOIN images i ON i.id = f.image_id
    WHERE f.extractor = ? AND f.extractor_version = ? AND f.content_hash IS i.content_hash
    AND i.error IS NULL AND i.missing = 0"""


class Project:
    """An open project file. Thread-safe: one connection guarded by a lock."""

    def __init__(self, path: Path, connection: sqlite3.Connection, lock: Optional[_ProjectLock], read_only: bool,
                 connect_path: Optional[Path] = None):
        self.path = path
        # the name SQLite uses (its log files are named after it); another name of the same file
        # only after a crash whose unsaved log lies beside that other name
        self._connect_path = connect_path or path
        self._db = connection
        self._lock = lock
        self._mutex = threading.RLock()
        self.read_only = read_only
        self._found_image_root: Optional[Path] = None  # cached once found: image_path() is hot

    # ------------------------------------------------------------------ opening and closing
    @classmethod
    def create(cls, path: Path, image_root: Path) -> "Project":
        """Create a new project file for the images below ``image_root``.

        Raises :class:`ProjectError` if ``path`` exists or cannot be written.
        """
        path = Path(path)
        image_root = Path(image_root)
        if path.exists() or path.is_symlink():
            raise ProjectError(f"{path} already exists; choose another name or open it")
        if not image_root.is_dir():
            raise ProjectError(f"image folder {image_root} does not exist or is not a folder")
        if not path.parent.is_dir():
            raise ProjectError(f"folder {path.parent} does not exist")
        lock = _ProjectLock(path)
        lock.acquire()
        try:
            # an empty file is a valid new database for SQLite; creating it here (exclusively)
            # gives the file its identity, so the identity lock is held before anything is written
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666))
            lock.acquire_identity()
        except FileExistsError:
            lock.release()
            raise ProjectError(f"{path} already exists; choose another name or open it") from None
        except OSError as exc:
            lock.release()
            if exc.errno == errno.ENOSPC:
                raise ProjectError(_disk_full_message(path.parent)) from None
            raise ProjectError(f"cannot create {path}: {exc.strerror or exc}") from None
        except BaseException:
            lock.release()
            path.unlink(missing_ok=True)
            raise
        try:
            connection = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            lock.release()
            path.unlink(missing_ok=True)
            raise ProjectError(f"cannot create {path}: {exc}") from None
        project = cls(path, connection, lock, read_only=False)
        try:
            # Feature vectors are 2 KB; on the default 4 KB pages each spills into an overflow page
            # and loading 100,000 of them takes 2-4 s instead of under 1 s. Only a new file can choose.
            connection.execute("PRAGMA page_size = 16384")
            project._configure()
            apply_migrations(connection, 0)
            with project._write():
                connection.executemany(
                    "INSERT INTO meta(key, value) VALUES (?, ?)",
                    [
                        ("image_root", str(image_root.resolve())),
                        ("image_root_relative", os.path.relpath(image_root.resolve(), path.resolve().parent)),
                        ("created_at", _now()),
                        ("name", path.stem),
                    ],
                )
        except sqlite3.Error as exc:
            project.close()
            _remove_new_project(path)
            raise project._translate(exc, writing=True) from None
        except BaseException:
            project.close()
            _remove_new_project(path)
            raise
        return project

    @classmethod
    def open(cls, path: Path, read_only: bool = False) -> "Project":
        """Open an existing project. Changes nothing when the file is refused.

        Raises :class:`ProjectError` when the file is missing, not an Inspector project, made by
        a newer Inspector, damaged, read-only (unless ``read_only``) or open elsewhere (by this
        name or any other: a symbolic or hard link is the same project).
        """
        path = Path(path)
        if not path.exists():
            raise ProjectError(f"no project at {path}")
        if path.is_dir():
            raise ProjectError(f"{path} is a folder, not a project file")
        if not path.is_file():
            raise ProjectError(f"{path.name} is not an Inspector project (not a regular file)")
        try:
            with open(path, "rb") as handle:
                header = handle.read(100)
        except OSError as exc:
            raise ProjectError(f"cannot read {path}: {exc.strerror or exc}") from None
        if len(header) < 100 or not header.startswith(SQLITE_HEADER):
            raise ProjectError(f"{path.name} is not an Inspector project (not a database file, or damaged)")
        wal = path.with_name(path.name + "-wal")
        # While a project is open (or after a crash) its newest header page may still be in the
        # write-ahead log. Read it from there ourselves: letting SQLite open a file we then
        # refuse would merge the log into it and delete the log, changing a file we must not touch.
        try:
            cls._check_identity(path, *_identity_of(_header_with_log(header, wal)))
        except ProjectError:
            # before refusing, be sure: believe only log frames whose checksums hold
            cls._check_identity(path, *_identity_of(_header_with_log(header, wal, verify=True)))
        if not read_only and not os.access(path, os.W_OK):
            raise ProjectError(f"{path.name} is read-only; copy it somewhere writable or open it read-only")
        lock = None
        connect_path = path
        if not read_only:
            lock = _ProjectLock(path)
            lock.acquire()
            connect_path = _name_with_unsaved_log(path, lock.last_writer_name())
            if connect_path != path:
                lock.record_name(connect_path)
                wal = connect_path.with_name(connect_path.name + "-wal")
                try:
                    cls._check_identity(path, *_identity_of(_header_with_log(header, wal, verify=True)))
                except ProjectError:
                    lock.release()
                    raise
        try:
            if read_only:
                uri = path.resolve().as_uri() + "?mode=ro"
                if not os.access(path.parent, os.W_OK) and not (wal.exists() and wal.stat().st_size > 0):
                    # A WAL project in a folder we cannot write (archive, share, CD): SQLite cannot
                    # create its shared-memory file there and refuses even to read. No log exists,
                    # so the main file is complete; read it as an unchanging file.
                    uri += "&immutable=1"
                connection = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
            else:
                connection = sqlite3.connect(str(connect_path), isolation_level=None, check_same_thread=False)
            project = cls(path, connection, lock, read_only, connect_path)
        except sqlite3.Error as exc:
            if lock:
                lock.release()
            raise ProjectError(f"cannot open {path.name}: {exc}") from None
        try:
            project._configure()
            with project._reading():
                application_id = int(connection.execute("PRAGMA application_id").fetchone()[0])
                user_version = int(connection.execute("PRAGMA user_version").fetchone()[0])
                cls._check_identity(path, application_id, user_version)
                connection.execute("SELECT count(*) FROM images").fetchone()
                connection.execute("SELECT count(*) FROM label_events").fetchone()
            if not read_only:
                apply_migrations(connection, user_version)
        except ProjectError:
            project.close()
            raise
        except sqlite3.Error as exc:
            project.close()
            raise project._translate(exc, writing=False, opening=True) from None
        return project

    @staticmethod
    def _check_identity(path: Path, application_id: int, user_version: int) -> None:
        if application_id != APPLICATION_ID:
            raise ProjectError(f"{path.name} is a database of another application, not an Inspector project")
        if user_version > SCHEMA_VERSION:
            raise ProjectError(
                f"{path.name} was saved by a newer version of Inspector (project format {user_version}; "
                f"this version reads up to {SCHEMA_VERSION}); update Inspector to open it"
            )

    def worker_connection(self) -> "Project":
        """Another connection to this open project for a background thread of the same process.

        Its writes and reads do not wait on this object's mutex (the UI thread's), only on
        SQLite's own locking: in WAL mode readers never block, and a writer waits at most for
        another writer's short transaction. It shares this object's file lock; close it before
        closing this object.
        """
        if self.read_only:
            uri = self.path.resolve().as_uri() + "?mode=ro"
            connection = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
        else:
            connection = sqlite3.connect(str(self._connect_path), isolation_level=None, check_same_thread=False)
        other = Project(self.path, connection, None, self.read_only, self._connect_path)
        other._configure()
        return other

    def _configure(self) -> None:
        try:
            self._db.execute("PRAGMA busy_timeout = 5000")
            if not self.read_only:
                mode = self._db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                if str(mode).lower() != "wal":
                    # Some network shares refuse WAL; the rollback journal is still crash-safe.
                    self._db.execute("PRAGMA journal_mode = DELETE")
                self._db.execute("PRAGMA synchronous = FULL")
            self._db.execute("PRAGMA foreign_keys = ON")
        except sqlite3.Error as exc:
            raise self._translate(exc, writing=False, opening=True) from None

    def close(self) -> None:
        with self._mutex:
            try:
                self._db.close()
            finally:
                if self._lock is not None:
                    self._lock.release()
                    self._lock = None

    def discard_if_empty(self) -> bool:
        """Close and delete this project file when it holds nothing a person made: no images, no
        labels, no classes (a project just created from a folder with no usable image). Returns
        whether it was deleted; a project holding anything is only closed."""
        with self._reading() as db:
            holds = db.execute(
                "SELECT (SELECT count(*) FROM images WHERE error IS NULL) + (SELECT count(*) FROM label_events)"
                " + (SELECT count(*) FROM classes)").fetchone()[0]
        beside = getattr(self._lock, "beside", None)  # the lock file named after the project file
        lock_path = getattr(beside, "path", None)
        self.close()
        if holds:
            return False
        for suffix in ("", "-wal", "-shm", "-journal"):
            self.path.with_name(self.path.name + suffix).unlink(missing_ok=True)
        if lock_path is not None:
            Path(lock_path).unlink(missing_ok=True)
        return True

    def __enter__(self) -> "Project":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    # ------------------------------------------------------------------ transactions
    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One durable transaction; disk-full and lock errors become a clear ProjectError."""
        if self.read_only:
            raise ProjectError("the project is open read-only; nothing can be changed")
        with self._mutex:
            try:
                self._db.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise self._translate(exc, writing=True) from None
            try:
                yield self._db
                self._db.execute("COMMIT")
            except BaseException as exc:
                try:
                    self._db.execute("ROLLBACK")
                except sqlite3.Error:
                    pass  # a failed COMMIT already rolled back; the file is intact either way
                if isinstance(exc, sqlite3.Error):
                    raise self._translate(exc, writing=True) from None
                raise

    @contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        with self._mutex:
            try:
                yield self._db
            except sqlite3.Error as exc:
                raise self._translate(exc, writing=False) from None

    def _translate(self, exc: sqlite3.Error, writing: bool, opening: bool = False) -> ProjectError:
        """One true sentence for a SQLite error. A full disk shows up as 'disk is full' but also,
        when SQLite cannot even grow its log or shared-memory file, as 'disk I/O error': the
        file is intact then, so look at the free space before calling anything damaged."""
        text = str(exc).lower()
        if "disk is full" in text or "database or disk is full" in text or (
                ("i/o error" in text or "unable to open" in text) and _disk_is_full(self.path.parent)):
            if opening or not writing:
                return ProjectError(_disk_full_message(self.path.parent, self.path.name))
            return ProjectError("the disk is full: the last change was not saved (earlier work is safe); free some space and try again")
        if "readonly" in text or "read-only" in text:
            return ProjectError("the project file cannot be written (read-only)")
        if "locked" in text or "busy" in text:
            return ProjectError("the project is busy in another program; try again in a moment")
        if "malformed" in text or "not a database" in text:
            return ProjectError(f"{self.path.name} is damaged ({exc})")
        if "i/o error" in text:
            if writing:
                return ProjectError(f"the disk reported an error writing {self.path.name}: the last change was not saved")
            doing = "opening" if opening else "reading"
            return ProjectError(f"the disk reported an error {doing} {self.path.name} ({exc}); check the disk or copy "
                                "the file elsewhere")
        if opening:
            return ProjectError(f"{self.path.name} is damaged and cannot be opened ({exc})")
        return ProjectError(f"project file error: {exc}")

    # ------------------------------------------------------------------ meta and location
    def _meta(self, key: str, default: Optional[str] = None) -> Optional[str]:
        with self._reading() as db:
            row = db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else default

    @property
    def name(self) -> str:
        return self._meta("name") or self.path.stem

    @property
    def image_root(self) -> Path:
        """The image folder; falls back to its place relative to the project if it was moved with it."""
        if self._found_image_root is not None:
            return self._found_image_root
        absolute = Path(self._meta("image_root") or ".")
        found = None
        if absolute.is_dir():
            found = absolute
        else:
            relative = self._meta("image_root_relative")
            candidate = (self.path.resolve().parent / relative).resolve() if relative else None
            if candidate is not None and candidate.is_dir():
                found = candidate
        # a missing folder is looked for again next time (a drive may be plugged in meanwhile)
        self._found_image_root = found
        return found if found is not None else absolute

    def image_root_found(self) -> bool:
        return self.image_root.is_dir()

    def set_image_root(self, image_root: Path) -> None:
        """Re-point the project at a moved image folder (paths are stored relative to it)."""
        image_root = Path(image_root)
        if not image_root.is_dir():
            raise ProjectError(f"{image_root} is not a folder")
        with self._write() as db:
            db.executemany(
                "INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)",
                [
                    ("image_root", str(image_root.resolve())),
                    ("image_root_relative", os.path.relpath(image_root.resolve(), self.path.resolve().parent)),
                ],
            )
        self._found_image_root = image_root.resolve()

    # ------------------------------------------------------------------ images
    _IMAGE_COLUMNS = "id, path, content_hash, size, width, height, bit_depth, channels, error, note, missing"
    _USABLE = "content_hash IS NOT NULL AND error IS NULL AND missing = 0"

    @staticmethod
    def _image_record(row: Sequence[Any]) -> ImageRecord:
        return ImageRecord(*row[:10], missing=bool(row[10]))

    def image_ids(self) -> np.ndarray:
        """Ids of the decodable images present in the folder, ascending."""
        with self._reading() as db:
            rows = db.execute(f"SELECT id FROM images WHERE {self._USABLE} ORDER BY id").fetchall()
        return np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))

    def image(self, image_id: int) -> ImageRecord:
        with self._reading() as db:
            row = db.execute(f"SELECT {self._IMAGE_COLUMNS} FROM images WHERE id = ?", (int(image_id),)).fetchone()
        if row is None:
            raise ProjectError(f"no image with id {image_id}")
        return self._image_record(row)

    def images(self, usable_only: bool = True) -> list[ImageRecord]:
        where = f"WHERE {self._USABLE}" if usable_only else ""
        with self._reading() as db:
            rows = db.execute(f"SELECT {self._IMAGE_COLUMNS} FROM images {where} ORDER BY id").fetchall()
        return [self._image_record(r) for r in rows]

    def image_paths(self) -> dict[int, str]:
        """Relative path of every usable image, by id."""
        with self._reading() as db:
            rows = db.execute(f"SELECT id, path FROM images WHERE {self._USABLE}").fetchall()
        return dict(rows)

    def image_path(self, image_id: int) -> Path:
        return self.image_root / self.image(image_id).path

    def find_image(self, relative_path: str) -> Optional[int]:
        relative_path = Path(relative_path).as_posix()
        with self._reading() as db:
            row = db.execute("SELECT id FROM images WHERE path = ?", (relative_path,)).fetchone()
        return int(row[0]) if row else None

    def problem_files(self) -> list[ImageRecord]:
        """Files found in the folder that cannot be used, each with its reason."""
        with self._reading() as db:
            rows = db.execute(
                f"SELECT {self._IMAGE_COLUMNS} FROM images WHERE error IS NOT NULL AND missing = 0 ORDER BY path"
            ).fetchall()
        return [self._image_record(r) for r in rows]

    def duplicates(self) -> list[tuple[int, int]]:
        """Pairs ``(duplicate_id, original_id)``: same content as an earlier image."""
        with self._reading() as db:
            rows = db.execute(
                f"""SELECT i.id, (SELECT min(j.id) FROM images j
                                   WHERE j.content_hash = i.content_hash AND j.missing = 0 AND j.error IS NULL)
                    FROM images i WHERE {self._USABLE.replace('content_hash', 'i.content_hash').replace('error', 'i.error').replace('missing', 'i.missing')}
                    AND EXISTS (SELECT 1 FROM images j WHERE j.content_hash = i.content_hash
                                AND j.id < i.id AND j.missing = 0 AND j.error IS NULL)
                    ORDER BY i.id"""
            ).fetchall()
        return [(int(a), int(b)) for a, b in rows]

    def counts(self) -> dict[str, int]:
        """Numbers for status displays: usable images, problems, missing, pending analysis."""
        with self._reading() as db:
            row = db.execute(
                f"""SELECT
                    sum(CASE WHEN {self._USABLE} THEN 1 ELSE 0 END),
                    sum(CASE WHEN error IS NOT NULL AND missing = 0 THEN 1 ELSE 0 END),
                    sum(missing),
                    sum(CASE WHEN content_hash IS NULL AND error IS NULL AND missing = 0 THEN 1 ELSE 0 END)
                    FROM images"""
            ).fetchone()
        return {"images": row[0] or 0, "errors": row[1] or 0, "missing": row[2] or 0, "pending": row[3] or 0}

    # scanning bookkeeping (used by inspector.core.ingest)
    def scan_state(self) -> dict[str, tuple[int, int, int, bool]]:
        """For every known file: ``path -> (id, size, mtime_ns, missing)``."""
        with self._reading() as db:
            rows = db.execute("SELECT path, id, size, mtime_ns, missing FROM images").fetchall()
        return {r[0]: (r[1], r[2], r[3], bool(r[4])) for r in rows}

    def record_scan(
        self,
        new: Iterable[tuple[str, int, int]],
        changed: Iterable[tuple[int, int, int]],
        missing: Iterable[int],
        returned: Iterable[int],
        unreadable: Iterable[tuple[str, str]] = (),
    ) -> None:
        """Store one folder walk: new files ``(path, size, mtime)``, changed ``(id, size, mtime)``
        (their analysis is redone), ids gone from the folder, ids back in it, and entries that
        could not even be listed ``(path, reason)``."""
        now = _now()
        with self._write() as db:
            db.executemany(
                "INSERT INTO images(path, size, mtime_ns, added_at) VALUES (?, ?, ?, ?)",
                ((p, s, m, now) for p, s, m in new),
            )
            db.executemany(
                """UPDATE images SET size = ?, mtime_ns = ?, content_hash = NULL, error = NULL,
                   note = NULL, missing = 0 WHERE id = ?""",
                ((s, m, i) for i, s, m in changed),
            )
            db.executemany("UPDATE images SET missing = 1 WHERE id = ?", ((i,) for i in missing))
            db.executemany("UPDATE images SET missing = 0 WHERE id = ?", ((i,) for i in returned))
            for path, reason in unreadable:
                db.execute(
                    """INSERT INTO images(path, size, mtime_ns, added_at, error) VALUES (?, 0, 0, ?, ?)
                       ON CONFLICT(path) DO UPDATE SET error = excluded.error, missing = 0""",
                    (path, now, reason),
                )
            db.execute("DELETE FROM queue WHERE image_id IN (SELECT id FROM images WHERE missing = 1)")

    def pending_analysis(self, extractor_name: str, extractor_version: int) -> list[tuple[int, str]]:
        """Images to read: never analysed, changed since, or lacking current features."""
        with self._reading() as db:
            rows = db.execute(
                """SELECT i.id, i.path FROM images i
                   WHERE i.missing = 0 AND (
                       (i.content_hash IS NULL AND i.error IS NULL)
                       OR (i.error IS NULL AND NOT EXISTS (
                           SELECT 1 FROM features f WHERE f.image_id = i.id AND f.extractor = ?
                           AND f.extractor_version = ? AND f.content_hash IS i.content_hash)))
                   ORDER BY i.id""",
                (extractor_name, extractor_version),
            ).fetchall()
        return [(int(a), b) for a, b in rows]

    def save_analyses(self, analyses: Sequence[ImageAnalysis], extractor_name: str, extractor_version: int) -> None:
        """Store a batch of file analyses and their feature vectors in one transaction."""
        with self._write() as db:
            db.executemany(
                """UPDATE images SET content_hash = ?, width = ?, height = ?, bit_depth = ?, channels = ?,
                   error = ?, note = ? WHERE id = ?""",
                (
                    (a.content_hash, a.width, a.height, a.bit_depth, a.channels, a.error, a.note or None, a.image_id)
                    for a in analyses
                ),
            )
            db.executemany(
                """INSERT OR REPLACE INTO features(image_id, extractor, extractor_version, content_hash, vector)
                   VALUES (?, ?, ?, ?, ?)""",
                (
                    (a.image_id, extractor_name, extractor_version, a.content_hash,
                     np.ascontiguousarray(a.features, dtype=np.float32).tobytes())
                    for a in analyses
                    if a.features is not None and a.error is None
                ),
            )

    # ------------------------------------------------------------------ features
    def save_features(self, image_ids: Sequence[int], matrix: np.ndarray, extractor_name: str, extractor_version: int) -> None:
        matrix = np.ascontiguousarray(matrix, dtype=np.float32)
        with self._write() as db:
            hashes = dict(db.execute("SELECT id, content_hash FROM images").fetchall())
            db.executemany(
                """INSERT OR REPLACE INTO features(image_id, extractor, extractor_version, content_hash, vector)
                   VALUES (?, ?, ?, ?, ?)""",
                ((int(i), extractor_name, extractor_version, hashes.get(int(i)), row.tobytes())
                 for i, row in zip(image_ids, matrix)),
            )

    def feature_matrix(self, extractor_name: str, extractor_version: int) -> tuple[np.ndarray, np.ndarray]:
        """Current feature vectors of every usable image: ``(image_ids int64[n], X float32[n, d])``.

        Rows are streamed into one preallocated matrix: holding every stored vector and a joined
        copy at once doubled the peak (1.9 GB for 100,000 images of 2,294 dims, kept by the
        allocator afterwards)."""
        params = (extractor_name, extractor_version)
        with self._reading() as db:
            expected = db.execute(f"SELECT count(*) {_CURRENT_FEATURES}", params).fetchone()[0]
            cursor = db.execute(f"SELECT f.image_id, f.vector {_CURRENT_FEATURES} ORDER BY f.image_id", params)
            ids = np.empty(expected, np.int64)
            matrix: Optional[np.ndarray] = None
            n = 0
            while True:
                rows = cursor.fetchmany(1024)
                if not rows:
                    break
                for image_id, vector in rows:
                    row = np.frombuffer(vector, dtype=np.float32)
                    if matrix is None:
                        matrix = np.empty((max(expected, 1), row.size), np.float32)
                    if row.size != matrix.shape[1]:
                        raise ProjectError(f"{self.path.name} holds {extractor_name} feature vectors of different "
                                           f"lengths ({row.size} and {matrix.shape[1]}); re-extract the features")
                    if n == len(matrix):  # rows added since the count (another connection's save)
                        matrix = np.concatenate([matrix, np.empty_like(matrix[: max(1024, n // 4)])])
                        ids = np.concatenate([ids, np.empty(len(matrix) - len(ids), np.int64)])
                    matrix[n] = row
                    ids[n] = image_id
                    n += 1
        if matrix is None or n == 0:
            return np.zeros(0, np.int64), np.zeros((0, 0), np.float32)
        if n < len(matrix):
            return ids[:n].copy(), matrix[:n].copy()
        return ids[:n], matrix

    def feature_vectors(self, extractor_name: str, extractor_version: int,
                        image_ids: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """Current feature vectors of the given images only (those that have them), in id order:
        ``(image_ids int64[m], X float32[m, d])``. Reads a few hundred labelled rows without
        loading the whole project's matrix."""
        wanted = sorted({int(i) for i in image_ids})
        rows: list = []
        with self._reading() as db:
            for start in range(0, len(wanted), 500):  # SQLite limits the number of parameters
                part = wanted[start : start + 500]
                rows.extend(db.execute(
                    f"""SELECT f.image_id, f.vector {_CURRENT_FEATURES}
                        AND f.image_id IN ({",".join("?" * len(part))}) ORDER BY f.image_id""",
                    (extractor_name, extractor_version, *part),
                ).fetchall())
        if not rows:
            return np.zeros(0, np.int64), np.zeros((0, 0), np.float32)
        ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        matrix = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(len(rows), -1)
        return ids, matrix

    def feature_count(self, extractor_name: str, extractor_version: int) -> int:
        with self._reading() as db:
            row = db.execute(f"SELECT count(*) {_CURRENT_FEATURES}", (extractor_name, extractor_version)).fetchone()
        return int(row[0])

    def images_missing_features(self, extractor_name: str, extractor_version: int) -> list[int]:
        return [i for i, _ in self.pending_analysis(extractor_name, extractor_version)]

    # ------------------------------------------------------------------ classes
    def classes(self) -> list[ClassRecord]:
        with self._reading() as db:
            rows = db.execute(
                "SELECT id, name, color, position FROM classes WHERE removed = 0 ORDER BY position, id"
            ).fetchall()
        return [ClassRecord(*r) for r in rows]

    def class_by_name(self, name: str) -> Optional[ClassRecord]:
        for record in self.classes():
            if record.name == name:
                return record
        lowered = name.strip().lower()
        matches = [c for c in self.classes() if c.name.lower() == lowered]
        return matches[0] if len(matches) == 1 else None

    def add_class(self, name: str, color: Optional[str] = None) -> int:
        """Add a class at the end; returns its id. Raises ProjectError for an empty or taken name."""
        name = clean_class_name(name)
        existing = self.classes()
        if any(c.name.lower() == name.lower() for c in existing):
            raise ProjectError(f"a class named '{name}' already exists")
        color = color or PALETTE[len(existing) % len(PALETTE)]
        with self._write() as db:
            self._free_removed_name(db, name)
            position = len(existing)
            cursor = db.execute(
                "INSERT INTO classes(name, color, position) VALUES (?, ?, ?)", (name, _clean_color(color), position)
            )
            return int(cursor.lastrowid)

    @staticmethod
    def _free_removed_name(db: sqlite3.Connection, name: str) -> None:
        db.execute(
            "UPDATE classes SET name = name || ' (removed ' || id || ')' WHERE removed = 1 AND lower(name) = lower(?)",
            (name,),
        )

    def rename_class(self, class_id: int, name: str) -> None:
        name = clean_class_name(name)
        if any(c.name.lower() == name.lower() and c.id != class_id for c in self.classes()):
            raise ProjectError(f"a class named '{name}' already exists")
        with self._write() as db:
            self._free_removed_name(db, name)
            db.execute("UPDATE classes SET name = ? WHERE id = ?", (name, int(class_id)))

    def recolor_class(self, class_id: int, color: str) -> None:
        with self._write() as db:
            db.execute("UPDATE classes SET color = ? WHERE id = ?", (_clean_color(color), int(class_id)))

    def reorder_classes(self, class_ids: Sequence[int]) -> None:
        """Put the classes in this order; their keys 1-9 follow the order."""
        current = {c.id for c in self.classes()}
        if set(int(i) for i in class_ids) != current or len(class_ids) != len(current):
            raise ProjectError("the new order must list every class exactly once")
        with self._write() as db:
            db.executemany("UPDATE classes SET position = ? WHERE id = ?", ((p, int(i)) for p, i in enumerate(class_ids)))

    def merge_classes(self, source_id: int, target_id: int, annotator: str = "") -> int:
        """Relabel every image whose latest label is ``source`` as ``target``, then remove ``source``.

        Returns the number of images relabelled.
        """
        if int(source_id) == int(target_id):
            raise ProjectError("cannot merge a class into itself")
        latest = self.latest_labels()
        moved = [image for image, cls in latest.items() if cls == int(source_id)]
        now = _now()
        with self._write() as db:
            db.executemany(
                """INSERT INTO label_events(image_id, class_id, kind, annotator, source, audit, created_at)
                   SELECT ?, ?, 'class', ?, 'merge', audit, ? FROM label_events
                   WHERE image_id = ? ORDER BY id DESC LIMIT 1""",
                ((image, int(target_id), annotator, now, image) for image in moved),
            )
            self._remove_class(db, int(source_id))
        return len(moved)

    def delete_class(self, class_id: int, annotator: str = "") -> int:
        """Remove a class; its images become unlabelled (history kept). Returns how many."""
        latest = self.latest_labels()
        cleared = [image for image, cls in latest.items() if cls == int(class_id)]
        now = _now()
        with self._write() as db:
            db.executemany(
                """INSERT INTO label_events(image_id, class_id, kind, annotator, source, created_at)
                   VALUES (?, NULL, 'cleared', ?, 'merge', ?)""",
                ((image, annotator, now) for image in cleared),
            )
            self._remove_class(db, int(class_id))
        return len(cleared)

    @staticmethod
    def _remove_class(db: sqlite3.Connection, class_id: int) -> None:
        db.execute("UPDATE classes SET removed = 1, position = -1 WHERE id = ?", (class_id,))
        ids = [r[0] for r in db.execute("SELECT id FROM classes WHERE removed = 0 ORDER BY position, id")]
        db.executemany("UPDATE classes SET position = ? WHERE id = ?", ((p, i) for p, i in enumerate(ids)))

    # ------------------------------------------------------------------ labels
    def add_label(
        self,
        image_id: int,
        class_id: Optional[int] = None,
        kind: str = "class",
        annotator: str = "",
        source: str = "human",
        audit: bool = False,
    ) -> int:
        """Record a label event and make it durable before returning; returns the event id.

        ``kind`` is 'class' (with ``class_id``), 'unsure', 'skip' or 'cleared'. The image leaves
        the queue. Raises ProjectError for an unknown image/class or when the disk refuses.
        """
        self._check_label(kind, class_id, source)
        with self._write() as db:
            if db.execute("SELECT 1 FROM images WHERE id = ?", (int(image_id),)).fetchone() is None:
                raise ProjectError(f"no image with id {image_id}")
            if class_id is not None and db.execute(
                "SELECT 1 FROM classes WHERE id = ? AND removed = 0", (int(class_id),)
            ).fetchone() is None:
                raise ProjectError(f"no class with id {class_id}")
            # the pick's selection probability travels with the label that answers it
            pick = db.execute("SELECT selection_probability, pool_size, model_version FROM queue WHERE image_id = ?",
                              (int(image_id),)).fetchone() or (None, None, None)
            cursor = db.execute(
                """INSERT INTO label_events(image_id, class_id, kind, annotator, source, audit, created_at,
                                            selection_probability, pool_size, model_version)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                (int(image_id), None if class_id is None else int(class_id), kind, annotator, source, int(audit), _now(),
                 *pick),
            )
            db.execute("DELETE FROM queue WHERE image_id = ?", (int(image_id),))
            return int(cursor.lastrowid)

    def add_labels_bulk(
        self, labels: Iterable[tuple[int, Optional[int]]], annotator: str = "", source: str = "bulk", kind: str = "class"
    ) -> int:
        """Label many images in one durable transaction; returns how many events were added."""
        labels = [(int(i), None if c is None else int(c)) for i, c in labels]
        for _, class_id in labels:
            self._check_label(kind, class_id, source)
        now = _now()
        with self._write() as db:
            db.executemany(
                """INSERT INTO label_events(image_id, class_id, kind, annotator, source, audit, created_at)
                   VALUES (?, ?, ?, ?, ?, 0, ?)""",
                ((i, c, kind, annotator, source, now) for i, c in labels),
            )
            db.executemany("DELETE FROM queue WHERE image_id = ?", ((i,) for i, _ in labels))
        return len(labels)

    @staticmethod
    def _check_label(kind: str, class_id: Optional[int], source: str) -> None:
        if kind not in LABEL_KINDS:
            raise ProjectError(f"unknown label kind '{kind}'")
        if source not in LABEL_SOURCES:
            raise ProjectError(f"unknown label source '{source}'")
        if (kind == "class") != (class_id is not None):
            raise ProjectError("a class label needs a class; other kinds must not have one")

    _LATEST = """SELECT e.id, e.image_id, e.class_id, e.kind, e.annotator, e.source, e.audit, e.created_at
                 FROM label_events e
                 JOIN (SELECT image_id, max(id) AS last FROM label_events GROUP BY image_id) l ON e.id = l.last"""

    def latest_label_events(self) -> dict[int, LabelEvent]:
        """The latest event of any kind for every image that has one."""
        with self._reading() as db:
            rows = db.execute(self._LATEST).fetchall()
        return {r[1]: LabelEvent(r[0], r[1], r[2], r[3], r[4], r[5], bool(r[6]), r[7]) for r in rows}

    def latest_labels(self) -> dict[int, int]:
        """``image_id -> class_id`` for images whose latest event is a class label of a live class."""
        with self._reading() as db:
            rows = db.execute(
                f"""SELECT x.image_id, x.class_id FROM ({self._LATEST}) x
                    JOIN classes c ON c.id = x.class_id AND c.removed = 0
                    JOIN images i ON i.id = x.image_id AND i.missing = 0 AND i.error IS NULL
                    WHERE x.kind = 'class'"""
            ).fetchall()
        return {int(a): int(b) for a, b in rows}

    def audit_labels(self) -> dict[int, int]:
        """Latest class labels of images that were picked for audit (uniformly at random)."""
        with self._reading() as db:
            rows = db.execute(
                f"""SELECT x.image_id, x.class_id FROM ({self._LATEST}) x
                    JOIN classes c ON c.id = x.class_id AND c.removed = 0
                    WHERE x.kind = 'class' AND x.audit = 1"""
            ).fetchall()
        return {int(a): int(b) for a, b in rows}

    def _records_picks(self) -> bool:
        """Whether the file has the pick columns (a read-only project of an older version has not)."""
        if getattr(self, "_picks_recorded", None) is None:
            with self._reading() as db:
                cols = {r[1] for r in db.execute("PRAGMA table_info(queue)")}
            self._picks_recorded = "selection_probability" in cols
        return self._picks_recorded

    def pick_records(self) -> dict[int, PickRecord]:
        """For every image whose latest event is a class label: how its pick was made.

        Labels given outside the queue (gallery, import) and labels of projects older than the
        record have no selection probability (None).
        """
        picks = ("e.selection_probability, e.pool_size, e.model_version" if self._records_picks()
                 else "NULL, NULL, NULL")
        with self._reading() as db:
            rows = db.execute(
                f"""SELECT e.image_id, e.id, e.audit, {picks}
                   FROM label_events e
                   JOIN (SELECT image_id, max(id) AS last FROM label_events GROUP BY image_id) l ON e.id = l.last
                   WHERE e.kind = 'class'"""
            ).fetchall()
        return {int(r[0]): PickRecord(int(r[0]), int(r[1]), bool(r[2]), r[3], r[4], r[5]) for r in rows}

    def label_history(self, image_id: int) -> list[LabelEvent]:
        with self._reading() as db:
            rows = db.execute(
                """SELECT id, image_id, class_id, kind, annotator, source, audit, created_at
                   FROM label_events WHERE image_id = ? ORDER BY id""",
                (int(image_id),),
            ).fetchall()
        return [LabelEvent(r[0], r[1], r[2], r[3], r[4], r[5], bool(r[6]), r[7]) for r in rows]

    def label_event_count(self) -> int:
        with self._reading() as db:
            return int(db.execute("SELECT count(*) FROM label_events").fetchone()[0])

    # ------------------------------------------------------------------ model versions
    def add_model_version(self, kind: str, settings: dict, n_labels: int, metrics: dict) -> int:
        with self._write() as db:
            cursor = db.execute(
                "INSERT INTO model_versions(kind, settings, n_labels, metrics, created_at) VALUES (?, ?, ?, ?, ?)",
                (kind, json.dumps(settings), int(n_labels), json.dumps(metrics), _now()),
            )
            return int(cursor.lastrowid)

    def model_versions(self) -> list[ModelVersion]:
        with self._reading() as db:
            rows = db.execute(
                "SELECT version, kind, settings, n_labels, metrics, created_at FROM model_versions ORDER BY version"
            ).fetchall()
        return [ModelVersion(r[0], r[1], json.loads(r[2]), r[3], json.loads(r[4]), r[5]) for r in rows]

    def latest_model_version(self) -> Optional[ModelVersion]:
        versions = self.model_versions()
        return versions[-1] if versions else None

    # ------------------------------------------------------------------ queue
    def replace_queue(self, entries: Sequence[QueueEntry]) -> None:
        """Replace the pending queue. Images labelled meanwhile are left out, never queued twice."""
        with self._write() as db:
            db.execute("DELETE FROM queue")
            labelled = {r[0] for r in db.execute(f"SELECT x.image_id FROM ({self._LATEST}) x WHERE x.kind != 'cleared'")}
            seen: set[int] = set()
            rows = []
            for entry in entries:
                image_id = int(entry.image_id)
                if image_id in labelled or image_id in seen:
                    continue
                seen.add(image_id)
                rows.append((image_id, len(rows), entry.strategy, None if entry.score is None else float(entry.score),
                             entry.reason, entry.model_version, int(entry.audit),
                             None if entry.selection_probability is None else float(entry.selection_probability),
                             None if entry.pool_size is None else int(entry.pool_size)))
            db.executemany(
                """INSERT INTO queue(image_id, position, strategy, score, reason, model_version, audit,
                                     selection_probability, pool_size)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                rows,
            )

    def _pick_columns(self) -> str:
        return "selection_probability, pool_size" if self._records_picks() else "NULL, NULL"

    def queue(self) -> list[QueueEntry]:
        with self._reading() as db:
            rows = db.execute(
                f"SELECT image_id, position, strategy, score, reason, model_version, audit, {self._pick_columns()} "
                "FROM queue ORDER BY position"
            ).fetchall()
        return [QueueEntry(r[0], r[1], r[2], r[3], r[4], r[5], bool(r[6]), r[7], r[8]) for r in rows]

    def queue_entry(self, image_id: int) -> Optional[QueueEntry]:
        with self._reading() as db:
            r = db.execute(
                f"SELECT image_id, position, strategy, score, reason, model_version, audit, {self._pick_columns()} "
                "FROM queue WHERE image_id = ?",
                (int(image_id),),
            ).fetchone()
        return QueueEntry(r[0], r[1], r[2], r[3], r[4], r[5], bool(r[6]), r[7], r[8]) if r else None

    def remove_from_queue(self, image_id: int) -> None:
        with self._write() as db:
            db.execute("DELETE FROM queue WHERE image_id = ?", (int(image_id),))

    # ------------------------------------------------------------------ settings
    def get_setting(self, key: str, default: Any = None) -> Any:
        with self._reading() as db:
            row = db.execute("SELECT value FROM settings WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else default

    def set_setting(self, key: str, value: Any) -> None:
        with self._write() as db:
            db.execute("INSERT OR REPLACE INTO settings(key, value) VALUES (?, ?)", (key, json.dumps(value)))

    def settings(self) -> dict[str, Any]:
        with self._reading() as db:
            rows = db.execute("SELECT key, value FROM settings").fetchall()
        return {k: json.loads(v) for k, v in rows}

    # ------------------------------------------------------------------ several workstations (packs)
    # The logic lives in inspector.core.packs and inspector.core.agreement; these are its reads and writes.
    def meta_value(self, key: str) -> Optional[str]:
        return self._meta(key)

    def _has_pack_schema(self) -> bool:
        """False for a project of an older format opened read-only (not migrated): it has no
        packs and no event origins, and is read as such."""
        with self._reading() as db:
            return db.execute("SELECT 1 FROM sqlite_master WHERE name = 'pack_images'").fetchone() is not None

    def ensure_project_id(self) -> str:
        """This project's identity, made once (a pack names it so it can only come home here)."""
        existing = self._meta("project_id")
        if existing:
            return existing
        import uuid

        new = uuid.uuid4().hex
        with self._write() as db:
            db.execute("INSERT OR IGNORE INTO meta(key, value) VALUES ('project_id', ?)", (new,))
            return str(db.execute("SELECT value FROM meta WHERE key = 'project_id'").fetchone()[0])

    def set_meta_values(self, values: dict[str, str]) -> None:
        with self._write() as db:
            db.executemany("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", list(values.items()))

    def label_events_full(self) -> list[dict]:
        """Every label event with its origin columns, oldest first (for packs and agreement)."""
        origin = "e.workstation, e.pack_id, e.event_uid" if self._has_pack_schema() else "'', NULL, NULL"
        with self._reading() as db:
            rows = db.execute(
                f"""SELECT e.id, e.image_id, i.path, c.name, e.kind, e.annotator, e.source, e.audit, e.created_at,
                          {origin}, coalesce(c.removed, 0)
                   FROM label_events e JOIN images i ON i.id = e.image_id
                   LEFT JOIN classes c ON c.id = e.class_id ORDER BY e.id"""
            ).fetchall()
        keys = ("id", "image_id", "path", "class_name", "kind", "annotator", "source", "audit", "created_at",
                "workstation", "pack_id", "event_uid", "class_removed")
        return [dict(zip(keys, r)) for r in rows]

    def import_label_events(self, events: Sequence[dict], merged_pack: Optional[dict] = None) -> int:
        """Add label events from elsewhere in ONE durable transaction; returns how many were new.

        Each event names its image by id and its class by name (a class missing here is added);
        an event whose ``event_uid`` is already present is skipped, so importing twice adds
        nothing. ``merged_pack`` (pack_id, workstation, annotator) is recorded when events were
        added. A kill leaves the project as before or as after.
        """
        for e in events:
            self._check_label(e["kind"], 1 if e["kind"] == "class" else None, e["source"])
        with self._write() as db:
            class_ids = {r[1]: r[0] for r in db.execute("SELECT id, name FROM classes WHERE removed = 0")}
            added = 0
            for e in events:
                class_id = None
                if e["kind"] == "class":
                    name = clean_class_name(e["class_name"])
                    class_id = class_ids.get(name)
                    if class_id is None:
                        self._free_removed_name(db, name)
                        cursor = db.execute("INSERT INTO classes(name, color, position) VALUES (?, ?, ?)",
                                            (name, PALETTE[len(class_ids) % len(PALETTE)], len(class_ids)))
                        class_id = class_ids[name] = int(cursor.lastrowid)
                cursor = db.execute(
                    """INSERT OR IGNORE INTO label_events(image_id, class_id, kind, annotator, source, audit,
                           created_at, workstation, pack_id, event_uid) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                    (int(e["image_id"]), class_id, e["kind"], e.get("annotator") or "", e["source"],
                     int(bool(e.get("audit"))), e["created_at"], e.get("workstation") or "", e.get("pack_id"),
                     e.get("event_uid")),
                )
                if cursor.rowcount:
                    added += 1
                    if e["kind"] != "cleared":
                        db.execute("DELETE FROM queue WHERE image_id = ?", (int(e["image_id"]),))
            if merged_pack is not None and added:
                db.execute(
                    """INSERT OR REPLACE INTO packs_merged(pack_id, workstation, annotator, n_events, merged_at)
                       VALUES (?, ?, ?, coalesce((SELECT n_events FROM packs_merged WHERE pack_id = ?), 0) + ?, ?)""",
                    (merged_pack["pack_id"], merged_pack.get("workstation", ""), merged_pack.get("annotator", ""),
                     merged_pack["pack_id"], added, _now()),
                )
            return added

    def record_pack_out(self, pack_id: str, workstation: str, annotator: str, path: str,
                        images: Sequence[tuple[int, bool]]) -> None:
        """Remember which images (and which of them on purpose twice) went out in a pack."""
        with self._write() as db:
            db.execute("INSERT INTO packs_out(pack_id, workstation, annotator, path, n_images, created_at) "
                       "VALUES (?, ?, ?, ?, ?, ?)", (pack_id, workstation, annotator, path, len(images), _now()))
            db.executemany("INSERT INTO pack_images(pack_id, image_id, double) VALUES (?, ?, ?)",
                           ((pack_id, int(i), int(bool(d))) for i, d in images))

    def packs_out(self) -> list[dict]:
        if not self._has_pack_schema():
            return []
        with self._reading() as db:
            rows = db.execute("SELECT pack_id, workstation, annotator, path, n_images, created_at FROM packs_out "
                              "ORDER BY created_at").fetchall()
        return [dict(zip(("pack_id", "workstation", "annotator", "path", "n_images", "created_at"), r)) for r in rows]

    def packs_merged(self) -> list[dict]:
        if not self._has_pack_schema():
            return []
        with self._reading() as db:
            rows = db.execute("SELECT pack_id, workstation, annotator, n_events, merged_at FROM packs_merged "
                              "ORDER BY merged_at").fetchall()
        return [dict(zip(("pack_id", "workstation", "annotator", "n_events", "merged_at"), r)) for r in rows]

    def handed_out_images(self) -> dict[int, list[str]]:
        """``image_id -> [pack ids]`` of every image handed out in a pack."""
        out: dict[int, list[str]] = {}
        if not self._has_pack_schema():
            return out
        with self._reading() as db:
            for pack_id, image_id in db.execute("SELECT pack_id, image_id FROM pack_images"):
                out.setdefault(int(image_id), []).append(pack_id)
        return out

    # ------------------------------------------------------------------ checks
    def integrity_check(self) -> str:
        """SQLite's own full check; returns 'ok' for a sound file."""
        with self._reading() as db:
            return str(db.execute("PRAGMA integrity_check").fetchone()[0])

    def schema_version(self) -> int:
        with self._reading() as db:
            return int(db.execute("PRAGMA user_version").fetchone()[0])


def clean_class_name(name: str) -> str:
    """The class name as stored (runs of white space made one space); raises ProjectError for
    an empty or overlong name or one holding control characters (a NUL byte, escape codes),
    which would be invisible in lists and break files and folders named after the class."""
    name = " ".join(str(name).split())
    if not name:
        raise ProjectError("a class needs a name")
    bad = next((c for c in name if unicodedata.category(c) in ("Cc", "Cs") or c in "\u2028\u2029"), None)
    if bad is not None:
        raise ProjectError(f"class names cannot contain control characters (found U+{ord(bad):04X} in "
                           f"{name.encode('unicode_escape').decode('ascii')[:80]!r})")
    if len(name) > 64:
        raise ProjectError("class names are limited to 64 characters")
    return name


def _clean_color(color: str) -> str:
    color = str(color).strip()
    if len(color) != 7 or not color.startswith("#"):
        raise ProjectError(f"colour '{color}' is not of the form #rrggbb")
    try:
        int(color[1:], 16)
    except ValueError:
        raise ProjectError(f"colour '{color}' is not of the form #rrggbb") from None
    return color.lower()


#: below this much free space a failing open or write is put down to a full disk
LOW_DISK_BYTES = 1024 * 1024


def _free_bytes(folder: Path) -> Optional[int]:
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None


def _disk_is_full(folder: Path) -> bool:
    free = _free_bytes(folder)
    return free is not None and free < LOW_DISK_BYTES


def _disk_full_message(folder: Path, name: Optional[str] = None) -> str:
    free = _free_bytes(folder)
    amount = f" ({free // 1024} KB free)" if free is not None else ""
    what = f"{name} is intact, but " if name else ""
    return (f"the disk holding {folder} is full{amount}: {what}Inspector needs a little free space to open or "
            "change a project (for its log); free some space and try again")


def _remove_new_project(path: Path) -> None:
    for leftover in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm"),
                     path.with_name(path.name + "-journal")):
        try:
            leftover.unlink(missing_ok=True)
        except OSError:
            pass  # best effort: a half-made new project holds no user data


_WAL_MAGIC = (0x377F0682, 0x377F0683)


def _identity_of(header: bytes) -> tuple[int, int]:
    """``(application_id, user_version)`` from a database header."""
    return int.from_bytes(header[68:72], "big"), int.from_bytes(header[60:64], "big")


def _wal_checksum(data: bytes, s0: int, s1: int, big_endian: bool) -> tuple[int, int]:
    words = struct.unpack(f"{'>' if big_endian else '<'}{len(data) // 4}I", data)
    for i in range(0, len(words), 2):
        s0 = (s0 + words[i] + s1) & 0xFFFFFFFF
        s1 = (s1 + words[i + 1] + s0) & 0xFFFFFFFF
    return s0, s1


def _header_with_log(header: bytes, wal: Path, verify: bool = False) -> bytes:
    """The first 100 bytes of the database as its newest committed copy in the write-ahead log
    has them (``header`` itself when the log holds none). Never opens the database through
    SQLite, so nothing is checkpointed or deleted. Without ``verify`` only frame headers are read
    (fast; the caller confirms through SQLite); with it every frame's checksum is checked as
    SQLite would, so a frame torn by a power cut is not believed (used before refusing a file)."""
    try:
        with open(wal, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            prelude = handle.read(32)
            if len(prelude) < 32:
                return header
            magic, _version, page_size, _sequence, salt1, salt2, c0, c1 = struct.unpack(">8I", prelude)
            if magic not in _WAL_MAGIC or page_size < 512 or page_size > 65536 or page_size & (page_size - 1):
                return header
            big_endian = magic == 0x377F0683
            sums = _wal_checksum(prelude[:24], 0, 0, big_endian) if verify else (c0, c1)
            if sums != (c0, c1):
                return header
            frame = 24 + page_size
            position, newest, committed = 32, None, header
            while position + frame <= size:
                handle.seek(position)
                frame_header = handle.read(24)
                page, commit_size, frame_salt1, frame_salt2, f0, f1 = struct.unpack(">6I", frame_header)
                if (frame_salt1, frame_salt2) != (salt1, salt2):
                    break  # frames of an older cycle of the log: not part of the database
                if verify or page == 1:
                    data = handle.read(page_size)
                    if verify:
                        sums = _wal_checksum(data, *_wal_checksum(frame_header[:8], *sums, big_endian), big_endian)
                        if sums != (f0, f1):
                            break  # torn or foreign frame: SQLite ignores it and all after it
                    if page == 1:
                        newest = data[:100]
                if commit_size and newest is not None:
                    committed = newest
                position += frame
            return committed
    except OSError:
        return header


def _name_with_unsaved_log(path: Path, last_writer: Optional[Path]) -> Path:
    """The name to open ``path`` by: the name a crashed writer used when its log is still beside
    it (a hard link of the same file), else ``path``."""
    if last_writer is None or os.path.realpath(path) == str(last_writer):
        return path
    log = last_writer.with_name(last_writer.name + "-wal")
    try:
        if os.path.samefile(last_writer, path) and log.stat().st_size > 0:
            return last_writer
    except OSError:
        pass  # that name is gone (and with it any log beside it) or unreadable: use ours
    return path
