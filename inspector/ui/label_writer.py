"""Writing labels behind the labelling view, so a key press never waits for the disk.

A label command (:mod:`inspector.workflow.labelling`) is handed to one writer thread with its own connection to the project and committed
durably (synchronous=FULL) there, in the order given, usually within milliseconds. The view
moves on at once; the window title says "saving…" until every label is committed and "all
labels saved" after. A write the disk refuses is reported (one line for a person) with the
images whose labels were not saved, and the views reload the labels from the project.
"""

from __future__ import annotations

import logging
import queue
import threading
from typing import Optional

from PySide6.QtCore import QObject, Signal

from inspector.core.errors import UserError
from inspector.core.store import Project
from inspector.workflow import labelling

log = logging.getLogger("inspector.ui")

_STOP = object()


class LabelWriter(QObject):
    """One thread committing label writes in order through its own project connection."""

    saved = Signal()  # a write was committed (see ``pending``)
    failed = Signal(str, list)  # message for a person, image ids whose labels were not saved

    def __init__(self, project: Project, parent: Optional[QObject] = None) -> None:
        super().__init__(parent)
        self._connection = project.worker_connection()
        self._queue: "queue.Queue" = queue.Queue()
        self._pending = 0
        self._pending_lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="inspector-label-writer", daemon=True)
        self._thread.start()

    @property
    def pending(self) -> int:
        """Label writes handed over but not committed yet."""
        with self._pending_lock:
            return self._pending

    def submit(self, command: labelling.Command) -> None:
        """Commit ``command`` (a LabelCommand or BulkLabelCommand) after those handed over before."""
        if not isinstance(command, (labelling.LabelCommand, labelling.BulkLabelCommand)):
            raise TypeError(f"not a label command: {command!r}")
        with self._pending_lock:
            self._pending += 1
        self._queue.put(command)

    def wait(self) -> None:
        """Block until every label handed over so far is committed (or reported as failed)."""
        self._queue.join()

    def close(self) -> None:
        """Commit what is pending, stop the thread and close its connection."""
        if self._thread.is_alive():
            self._queue.put(_STOP)
            self._thread.join()
        self._connection.close()

    def _run(self) -> None:  # the writer thread
        while True:
            item = self._queue.get()
            try:
                if item is _STOP:
                    return
                self._write(item)
            finally:
                self._queue.task_done()

    def _write(self, command: labelling.Command) -> None:
        ids = labelling.image_ids_of(command)
        try:
            labelling.write(self._connection, command)  # the one labelling path (learner.record_label)
        except UserError as exc:
            self._done()
            self.failed.emit(str(exc), ids)
        except Exception as exc:  # noqa: BLE001 - reported to the person; the traceback goes to the log
            log.exception("label write failed")
            self._done()
            self.failed.emit(f"{type(exc).__name__}: {exc}", ids)
        else:
            self._done()
            self.saved.emit()

    def _done(self) -> None:
        with self._pending_lock:
            self._pending -= 1
