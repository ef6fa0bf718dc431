"""Reading image files into a project: folder walk, then one pass per file that hashes,
decodes and extracts features, in worker processes with progress and cancel.

A file is read from disk once per pass: the same bytes give its content hash, its metadata and
its feature vector.
"""

from __future__ import annotations

import concurrent.futures as futures
import multiprocessing
import os
import time
from collections import deque
from contextlib import contextmanager, nullcontext
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterator, Optional, Sequence

import numpy as np

from inspector.core import images
from inspector.core.progress import CancelToken, ProgressCallback, check, report
from inspector.core.store import ImageAnalysis, Project

#: Files per task sent to a worker: large enough to hide the inter-process overhead,
#: small enough that progress moves and cancel answers within a second.
CHUNK_FILES = 8
#: Below this many files, starting worker processes costs more than it saves.
IN_PROCESS_BELOW = 24
#: The reason recorded for a file whose reader process died (killed by the out-of-memory killer,
#: a decoder crash): the next scan does not read it again unless the file changes.
READER_CRASHED = "could not be read (the reader crashed)"


@dataclass(frozen=True)
class FileResult(ImageAnalysis):
    """The outcome of reading one file: ``error`` is a reason for a person, or None.

    Until the caller maps the file to a project image, ``image_id`` holds the file's position in
    the list analysed, also readable as ``index``.
    """

    @property
    def index(self) -> int:
        return self.image_id


def _extractor(name: Optional[str] = None):
    """The extractor called ``name`` (None: the default for new projects), one per process."""
    from inspector.core.features import default_extractor, get_extractor

    return default_extractor() if name is None else get_extractor(name)


def analyse_file(index: int, path: Path, with_features: bool = True, extractor: Optional[str] = None) -> FileResult:
    """Read one file: hash, decode, describe and (optionally) extract features with the extractor
    called ``extractor`` (None: the default). Never raises for a bad file; the result carries the
    reason instead."""
    try:
        data = images.read_bytes(Path(path))
    except images.ImageError as exc:
        return FileResult(index, None, error=str(exc))
    digest = images.content_hash(data)
    gate = _MEMORY_GATE.hold(images.declared_decoded_bytes(data)) if _MEMORY_GATE is not None else nullcontext()
    with gate:
        return _analyse_bytes(index, path, data, digest, with_features, extractor)


def _analyse_bytes(index: int, path: Path, data: bytes, digest: str, with_features: bool,
                   extractor: Optional[str] = None) -> FileResult:
    try:
        decoded = images.decode(data, str(path))
        description = dict(
            width=decoded.width, height=decoded.height, bit_depth=decoded.bit_depth,
            channels=decoded.channels, note=decoded.note,
        )
        vector = None
        if with_features:
            vector = np.asarray(_extractor(extractor).features_of(decoded), dtype=np.float32)
            del decoded
            if not np.all(np.isfinite(vector)):
                return FileResult(index, digest, error="features could not be computed (non-finite values)", **description)
        return FileResult(index, digest, features=vector, **description)
    except images.ImageError as exc:
        return FileResult(index, digest, error=str(exc))
    except MemoryError:
        return FileResult(index, digest, error="not enough memory to decode this image")
    except Exception as exc:  # noqa: BLE001 - a decoder bug on one file must not stop a scan of thousands
        return FileResult(index, digest, error=f"cannot decode ({type(exc).__name__}: {str(exc)[:100]})")


def _analyse_chunk(chunk: Sequence[tuple[int, str]], with_features: bool, extractor: Optional[str] = None) -> list[FileResult]:
    return [analyse_file(index, Path(path), with_features, extractor) for index, path in chunk]


#: Memory shared by the readers of one pool (None in-process): large images wait for their share.
_MEMORY_GATE = None
#: Decoding and converting an image takes about this many times its decoded size at the peak.
PEAK_FACTOR = 3
#: Images whose peak is below one share never wait.
SHARE_BYTES = 64 * 1024**2


class MemoryGate:
    """The machine's memory as shares that readers in several processes take before decoding a
    large image and give back after, so several large images are never decoded at once beyond
    what the machine holds. A file's fate never depends on the number of readers: an image
    within the per-reader budget always gets read, at worst alone."""

    def __init__(self, shares, lock, total_shares: int) -> None:
        self._shares, self._lock, self.total = shares, lock, total_shares

    @classmethod
    def for_this_machine(cls, context) -> Optional["MemoryGate"]:
        try:
            physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (AttributeError, ValueError, OSError):
            return None  # not POSIX: no shared gate; the per-reader budget still holds
        total = max(1, physical // SHARE_BYTES)
        return cls(context.Semaphore(total), context.Lock(), total)

    def shares_for(self, decoded_bytes: int) -> int:
        peak = decoded_bytes * PEAK_FACTOR
        return 0 if peak < SHARE_BYTES else min(self.total, -(-peak // SHARE_BYTES))

    @contextmanager
    def hold(self, decoded_bytes: Optional[int]) -> Iterator[None]:
        shares = self.shares_for(decoded_bytes or 0)
        if shares == 0:
            yield
            return
        with self._lock:  # take all shares at once, so two large images never deadlock half-way
            for _ in range(shares):
                self._shares.acquire()
        try:
            yield
        finally:
            for _ in range(shares):
                self._shares.release()


def _worker_init(memory_gate: Optional[MemoryGate] = None) -> None:
    global _MEMORY_GATE
    # Ctrl+C in a terminal reaches the whole process group: the parent turns it into a cancel
    # (saving what was done), a worker must not die of it mid-image.
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Background work must not make the inspector's window sluggish.
    if hasattr(os, "nice"):
        try:
            os.nice(5)
        except OSError:
            pass  # not allowed to lower priority here; running at normal priority is fine
    images.cv2.setNumThreads(1)
    _MEMORY_GATE = memory_gate


def default_workers() -> int:
    return max(1, os.cpu_count() or 1)


def analyse_files(
    paths: Sequence[Path | str],
    workers: Optional[int] = None,
    progress: Optional[ProgressCallback] = None,
    cancel: Optional[CancelToken] = None,
    with_features: bool = True,
    extractor: Optional[str] = None,
) -> Iterator[FileResult]:
    """Analyse many files in worker processes; yields results as they finish (any order,
    ``result.index`` is the position in ``paths``). ``extractor`` names the feature extractor
    (None: the default for new projects). Raises ``Cancelled`` when cancelled, after yielding
    what was already done."""
    total = len(paths)
    workers = default_workers() if workers is None else max(1, int(workers))
    report(progress, 0, total, "")
    if total == 0:
        return
    if workers == 1 or total < IN_PROCESS_BELOW:
        for index, path in enumerate(paths):
            check(cancel)
            yield analyse_file(index, Path(path), with_features, extractor)
            report(progress, index + 1, total, "")
        return

    indexed = [(i, str(p)) for i, p in enumerate(paths)]
    waiting = deque(indexed[i : i + CHUNK_FILES] for i in range(0, total, CHUNK_FILES))
    # Files that were in a worker when it died. Each is read again alone, one at a time, so a
    # file that kills its reader again is known for certain and recorded, and the others are read.
    suspects: deque = deque()
    context = multiprocessing.get_context("spawn")

    def new_pool() -> futures.ProcessPoolExecutor:
        # a fresh gate with every pool: a reader killed while holding shares takes them with it
        return futures.ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_worker_init,
                                           initargs=(MemoryGate.for_this_machine(context),))

    pool = new_pool()
    done = 0
    pending: dict[futures.Future, list] = {}
    isolating = False  # the one task in flight is a suspect read alone
    max_in_flight = workers * 3
    try:
        while waiting or suspects or pending:
            check(cancel)
            if suspects:
                if not pending:
                    item = suspects.popleft()
                    pending[pool.submit(_analyse_chunk, [item], with_features, extractor)] = [item]
                    isolating = True
            elif not isolating or not pending:
                isolating = False
                while waiting and len(pending) < max_in_flight:
                    chunk = waiting.popleft()
                    pending[pool.submit(_analyse_chunk, chunk, with_features, extractor)] = chunk
            finished, _ = futures.wait(list(pending), timeout=0.2, return_when=futures.FIRST_COMPLETED)
            lost: list[list] = []
            for future in finished:
                chunk = pending.pop(future)
                try:
                    results = future.result()
                except BrokenProcessPool:
                    lost.append(chunk)
                    continue
                for result in results:
                    done += 1
                    yield result
                report(progress, done, total, "")
            if not lost:
                continue
            # A worker died: every task still in this pool is lost with it (the dead worker's
            # and its neighbours'); what finished before is kept.
            for future, chunk in pending.items():
                if future.done() and not future.cancelled() and future.exception() is None:
                    for result in future.result():
                        done += 1
                        yield result
                else:
                    lost.append(chunk)
            pending.clear()
            pool.shutdown(wait=False, cancel_futures=True)
            if isolating:
                index, _ = lost[0][0]
                done += 1
                yield FileResult(index, None, error=READER_CRASHED)
                report(progress, done, total, "")
            else:
                suspects.extend(item for chunk in lost for item in chunk)
            pool = new_pool()
    finally:
        pool.shutdown(wait=not (cancel is not None and cancel.cancelled), cancel_futures=True)


@dataclass
class ScanSummary:
    new: int = 0
    changed: int = 0
    missing: int = 0
    returned: int = 0
    analysed: int = 0
    errors: int = 0
    cancelled: bool = False
    found: int = 0  # image files the walk found (before reading them)
    skipped: images.WalkSkips = field(default_factory=images.WalkSkips)
    no_usable_image: Optional[str] = None  # why nothing can be labelled (see no_usable_image_message)


def scan_folder(project: Project) -> ScanSummary:
    """Walk the image folder and record new, changed, deleted and returned files.

    The files' contents are read later by :func:`analyse_pending`. Raises ProjectError when the image folder is gone.
    """
    from inspector.core.errors import ProjectError

    root = project.image_root
    if not root.is_dir():
        raise ProjectError(f"the image folder {root} is not there; re-point the project to where the images are now")
    known = project.scan_state()
    unreadable: list[tuple[str, str]] = []
    skipped = images.WalkSkips()
    seen: set[str] = set()
    new, changed, returned = [], [], []
    for found in images.walk_images(root, unreadable, skipped):
        seen.add(found.relative_path)
        entry = known.get(found.relative_path)
        if entry is None:
            new.append((found.relative_path, found.size, found.mtime_ns))
            continue
        image_id, size, mtime_ns, was_missing = entry
        if size != found.size or mtime_ns != found.mtime_ns:
            changed.append((image_id, found.size, found.mtime_ns))
        elif was_missing:
            returned.append(image_id)
    unreadable = [(p, r) for p, r in unreadable if p not in seen]
    listed = seen | {p for p, _ in unreadable}
    missing = [entry[0] for path, entry in known.items() if path not in listed and not entry[3]]
    project.record_scan(new, changed, missing, returned, unreadable)
    summary = ScanSummary(new=len(new), changed=len(changed), missing=len(missing), returned=len(returned),
                          errors=len(unreadable), found=len(seen), skipped=skipped)
    return summary


def spread_order(items: list) -> list:
    """``items`` in a fixed pseudo-random order, so the first images read (labelling starts with
    them) are a sample of the whole folder: in folder order a folder sorted by class or by date
    would give the learner one class, or one hour of production, to choose from for minutes."""
    import numpy as np

    order = np.random.default_rng(20261204).permutation(len(items))
    return [items[i] for i in order]


def no_usable_image_message(project: Project, summary: ScanSummary) -> Optional[str]:
    """One line saying why a scanned project has no image to label, or None when it has one
    (or some are still waiting to be read). Names what the walk passed over, so a folder of
    links that lead nowhere or of unsupported files is never a silent, empty project."""
    counts = project.counts()
    if counts["images"] or counts["pending"]:
        return None
    root = project.image_root
    if summary.found == 0:
        skipped = summary.skipped.describe()
        reads = ", ".join(sorted(s.lstrip(".") for s in images.IMAGE_SUFFIXES))
        why = f"skipped {skipped}" if skipped else "the folder is empty"
        return f"no images found in {root}: {why} (Inspector reads {reads} files)"
    problems = project.problem_files()
    first = f" (first: {problems[0].path}: {problems[0].error})" if problems else ""
    return f"none of the {summary.found} image files in {root} could be used{first}"


def analyse_pending(
    project: Project,
    workers: Optional[int] = None,
    progress: Optional[ProgressCallback] = None,
    cancel: Optional[CancelToken] = None,
    batch_seconds: float = 0.5,
    extractor: Optional[str] = None,
    image_ids: Optional[Sequence[int]] = None,
) -> tuple[int, int]:
    """Analyse every image lacking current features of ``extractor`` (None: the project's own,
    see :mod:`inspector.core.extractor_choice`), or only those of ``image_ids``; results are saved
    in small batches so a cancel or crash keeps what was done. Returns ``(analysed, errors)``."""
    from inspector.core.extractor_choice import project_extractor

    extractor = project_extractor(project) if extractor is None else _extractor(extractor)
    pending = spread_order(project.pending_analysis(extractor.name, extractor.version))
    if image_ids is not None:
        wanted = {int(i) for i in image_ids}
        pending = [(i, path) for i, path in pending if i in wanted]
    # plain strings: building a pathlib.Path per file costs tens of microseconds of interpreter
    # time each (100,000 files: seconds), which the window's thread waits for
    root = str(project.image_root)
    paths = [os.path.join(root, path) for _, path in pending]
    batch: list[ImageAnalysis] = []
    analysed = errors = 0
    last_save = time.monotonic()

    def flush() -> None:
        nonlocal batch, last_save
        if batch:
            project.save_analyses(batch, extractor.name, extractor.version)
            batch = []
        last_save = time.monotonic()

    try:
        for result in analyse_files(paths, workers=workers, progress=progress, cancel=cancel,
                                    extractor=extractor.name):
            batch.append(replace(result, image_id=pending[result.index][0]))
            analysed += 1
            errors += result.error is not None
            if len(batch) >= 256 or time.monotonic() - last_save >= batch_seconds:
                flush()
    finally:
        flush()
    return analysed, errors


def scan_project(
    project: Project,
    workers: Optional[int] = None,
    progress: Optional[ProgressCallback] = None,
    cancel: Optional[CancelToken] = None,
) -> ScanSummary:
    """Rescan the folder and analyse whatever is new, changed or lacks current features."""
    summary = scan_folder(project)
    from inspector.core.progress import Cancelled

    try:
        summary.analysed, decode_errors = analyse_pending(project, workers, progress, cancel)
    except Cancelled:
        summary.cancelled = True
        raise
    summary.errors += decode_errors
    return summary
