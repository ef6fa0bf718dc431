"""Thumbnails for the gallery: decoded off the UI thread, only when asked, kept in an LRU cache.

The gallery's delegate asks :meth:`ThumbnailLoader.thumbnail` while painting a visible cell. A
miss queues the image; at most ``workers`` decodes run at once in the loader's own thread pool
(so thumbnails never delay the labelling view's next image), newest request first, because the
cells painted last are the ones on screen now. When the user scrolls past, :meth:`retain` drops
requests for cells no longer visible, so a fast scroll through 100,000 images decodes only what
stays on screen.

A finished thumbnail is kept in memory (LRU, bounded by count) and, when a disk cache folder is
given, written there as a small PNG named by the image's content hash and the thumbnail size, so
reopening a project does not decode every image again. A file that cannot be read gets a
remembered one-line reason instead of a thumbnail, and is not retried until the cache is cleared.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections import OrderedDict
from pathlib import Path
from typing import Optional

import cv2
import numpy as np
from PySide6.QtCore import QObject, QRunnable, QStandardPaths, QThreadPool, Signal
from PySide6.QtGui import QImage

from inspector.core.images import ImageError, decode, read_bytes, to_gray_u8

log = logging.getLogger("inspector.ui.thumbnails")

#: longest side of a thumbnail in pixels
THUMBNAIL_SIDE = 128
#: thumbnails kept in memory; a 128 px grayscale thumbnail is 16 KB, so 3,000 are about 50 MB
MEMORY_CACHE_ITEMS = 3000


def default_disk_cache_folder() -> Optional[Path]:
    """The user's cache folder for thumbnails (``.../thumbnails``), or None if there is none."""
    # GenericCacheLocation + our name: CacheLocation would append organisation and application
    # name, both "Inspector" (~/.cache/Inspector/Inspector)
    base = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.GenericCacheLocation)
    return Path(base) / "Inspector" / "thumbnails" if base else None


def make_thumbnail(gray: np.ndarray, side: int) -> np.ndarray:
    """Shrink an 8-bit grayscale image so its longer side is ``side`` (never enlarges)."""
    height, width = gray.shape[:2]
    longest = max(height, width)
    if longest <= side:
        return np.ascontiguousarray(gray)
    factor = side / longest
    size = (max(1, round(width * factor)), max(1, round(height * factor)))
    return cv2.resize(gray, size, interpolation=cv2.INTER_AREA)


def gray_to_qimage(gray: np.ndarray) -> QImage:
    """A QImage that owns a copy of the pixels (safe to hand from a worker to the UI thread)."""
    gray = np.ascontiguousarray(gray, dtype=np.uint8)
    height, width = gray.shape
    return QImage(gray.data, width, height, width, QImage.Format.Format_Grayscale8).copy()


class _Signals(QObject):
    # generation, image_id, thumbnail (QImage or None), reason the file could not be shown ("" if fine)
    done = Signal(int, int, object, str)


class _ThumbnailJob(QRunnable):
    """Read, decode, shrink (and cache on disk) one image. Runs in a pool thread; touches no widget."""

    def __init__(self, generation: int, image_id: int, project, side: int, disk_folder: Optional[Path],
                 signals: _Signals) -> None:
        super().__init__()
        self.generation = generation
        self.image_id = image_id
        self.project = project
        self.path: Optional[Path] = None
        self.content_hash: Optional[str] = None
        self.side = side
        self.disk_folder = disk_folder
        self.signals = signals

    def _disk_path(self) -> Optional[Path]:
        if self.disk_folder is None or not self.content_hash:
            return None
        return self.disk_folder / self.content_hash[:2] / f"{self.content_hash}_{self.side}.png"

    def run(self) -> None:
        try:
            # the file's path and hash are read here, not on the UI thread (one indexed row; the
            # store's lock is held for microseconds; the loader waits for running jobs before the
            # project closes)
            record = self.project.image(self.image_id)
            self.path = self.project.image_root / record.path
            self.content_hash = record.content_hash
        except Exception as exc:  # noqa: BLE001 - e.g. the image vanished from the project
            self.signals.done.emit(self.generation, self.image_id, None, f"not in the project: {exc}")
            return
        cached = self._disk_path()
        try:
            thumb = self._read_cached(cached)
            if thumb is None:
                thumb = make_thumbnail(to_gray_u8(decode(read_bytes(self.path), str(self.path))), self.side)
                self._write_cached(cached, thumb)
            self.signals.done.emit(self.generation, self.image_id, gray_to_qimage(thumb), "")
        except ImageError as exc:
            self.signals.done.emit(self.generation, self.image_id, None, str(exc))
        except Exception as exc:  # noqa: BLE001 - one bad file must not take the gallery down
            log.exception("thumbnail of %s failed", self.path)
            self.signals.done.emit(self.generation, self.image_id, None, f"cannot show: {type(exc).__name__}: {exc}")

    @staticmethod
    def _read_cached(path: Optional[Path]) -> Optional[np.ndarray]:
        if path is None or not path.is_file():
            return None
        data = np.fromfile(str(path), dtype=np.uint8)
        gray = cv2.imdecode(data, cv2.IMREAD_GRAYSCALE) if data.size else None
        if gray is None:
            log.warning("damaged cached thumbnail %s is decoded again", path)
        return gray

    @staticmethod
    def _write_cached(path: Optional[Path], thumb: np.ndarray) -> None:
        if path is None:
            return
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            ok, encoded = cv2.imencode(".png", thumb)
            if not ok:
                return
            # write then rename, so a crash or a second window never leaves half a PNG behind
            handle, temporary = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
            with os.fdopen(handle, "wb") as out:
                out.write(encoded.tobytes())
            os.replace(temporary, path)
        except OSError as exc:
            # a full or read-only cache folder only costs decoding time next session
            log.info("thumbnail cache not written (%s): %s", path, exc)


class ThumbnailLoader(QObject):
    """Thumbnails by image id for one project; emits :attr:`thumbnail_ready` when one arrives.

    All bookkeeping happens on the UI thread; workers only decode.
    """

    thumbnail_ready = Signal(int)

    def __init__(self, project, side: int = THUMBNAIL_SIDE, memory_items: int = MEMORY_CACHE_ITEMS,
                 disk_folder: Optional[Path] = None, workers: Optional[int] = None,
                 parent: Optional[QObject] = None) -> None:
        super().__init__(parent)
        self.project = project
        self.side = int(side)
        self.memory_items = int(memory_items)
        self.disk_folder = Path(disk_folder) if disk_folder else None
        self._cache: OrderedDict[int, QImage] = OrderedDict()
        self._failed: dict[int, str] = {}
        self._waiting: OrderedDict[int, None] = OrderedDict()  # newest request last
        self._running: set[int] = set()
        self._pool = QThreadPool(self)
        if workers is None:
            # leave one core to the UI thread (and the labelling view's decoder): on a 2-core
            # workstation two decode threads made scrolling stall noticeably longer
            workers = max(1, min(2, (os.cpu_count() or 2) - 1))
        self._pool.setMaxThreadCount(max(1, int(workers)))
        self._signals = _Signals()
        self._signals.done.connect(self._on_done)
        self.decoded = 0  # thumbnails produced by workers (for benchmarks and tests)
        self._generation = 0  # bumped by forget(): results of older decodes are dropped

    # ---------------------------------------------------------------- asking
    def thumbnail(self, image_id: int) -> Optional[QImage]:
        """The thumbnail if it is ready (and mark it recently used); otherwise queue it, return None."""
        image_id = int(image_id)
        image = self._cache.get(image_id)
        if image is not None:
            self._cache.move_to_end(image_id)
            return image
        if image_id in self._failed or image_id in self._running:
            return None
        self._waiting[image_id] = None
        self._waiting.move_to_end(image_id)
        self._start_waiting()
        return None

    def failure(self, image_id: int) -> Optional[str]:
        """Why this image cannot be shown, or None."""
        return self._failed.get(int(image_id))

    def retain(self, visible_ids) -> None:
        """Forget queued requests for images that are no longer on screen."""
        keep = {int(i) for i in visible_ids}
        for image_id in [i for i in self._waiting if i not in keep]:
            del self._waiting[image_id]

    def pending(self) -> int:
        """Requests waiting or being decoded."""
        return len(self._waiting) + len(self._running)

    def forget(self, image_ids=None) -> None:
        """Drop cached thumbnails (all, or these ids), e.g. after a rescan changed the files."""
        self._generation += 1
        if image_ids is None:
            self._cache.clear()
            self._failed.clear()
            return
        for image_id in image_ids:
            self._cache.pop(int(image_id), None)
            self._failed.pop(int(image_id), None)

    def shutdown(self, msecs: int = 5000) -> None:
        """Drop queued work and wait for running decodes (before the project closes)."""
        self._waiting.clear()
        self._pool.clear()
        self._pool.waitForDone(msecs)

    # ---------------------------------------------------------------- working
    def _start_waiting(self) -> None:
        while self._waiting and len(self._running) < self._pool.maxThreadCount():
            image_id, _ = self._waiting.popitem(last=True)
            self._running.add(image_id)
            self._pool.start(_ThumbnailJob(self._generation, image_id, self.project, self.side, self.disk_folder,
                                           self._signals))

    def _on_done(self, generation: int, image_id: int, image: Optional[QImage], reason: str) -> None:
        self._running.discard(image_id)
        if generation != self._generation:
            pass  # decoded from a file that was forgotten meanwhile (e.g. rescanned); asked again when painted
        elif image is None:
            self._failed[image_id] = reason or "cannot show this image"
        else:
            self.decoded += 1
            self._cache[image_id] = image
            self._cache.move_to_end(image_id)
            while len(self._cache) > self.memory_items:
                self._cache.popitem(last=False)
        self.thumbnail_ready.emit(image_id)
        self._start_waiting()
