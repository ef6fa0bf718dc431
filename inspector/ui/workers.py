"""Running core functions off the UI thread.

A :class:`Task` wraps a core call that takes ``progress`` and ``cancel`` keyword arguments and
reports back through Qt signals (delivered on the UI thread because the signal object lives
there). Failures become one line for a person; the traceback goes to the log, never a dialog.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable, Optional

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal

from inspector.core.errors import UserError
from inspector.core.images import ImageError
from inspector.core.progress import CancelToken, Cancelled

log = logging.getLogger("inspector.ui")

#: progress signals are throttled so a fast core loop cannot flood the UI thread's event queue
PROGRESS_INTERVAL_S = 0.05


class TaskSignals(QObject):
    progress = Signal(int, int, str)  # done, total, message
    finished = Signal(object)  # the core function's return value
    failed = Signal(str)  # one line for a person
    cancelled = Signal()


class Task(QRunnable):
    """One call of ``fn(*args, progress=..., cancel=..., **kwargs)`` in a thread pool.

    Pass ``with_progress=False`` for functions that take neither keyword.
    """

    def __init__(self, fn: Callable[..., Any], *args: Any, name: str = "", with_progress: bool = True,
                 **kwargs: Any) -> None:
        super().__init__()
        self.setAutoDelete(False)  # Python keeps the reference (see run_task) until it reports
        self.fn = fn
        self.args = args
        self.kwargs = kwargs
        self.name = name or getattr(fn, "__name__", "task")
        self.with_progress = with_progress
        self.signals = TaskSignals()
        self.cancel_token = CancelToken()
        self._last_progress = 0.0

    @classmethod
    def from_job(cls, job) -> "Task":
        """The Task that runs a :class:`inspector.workflow.jobs.Job` (its pool: ``pool(job.pool)``)."""
        task = cls(job.fn, *job.args, name=job.description, with_progress=job.with_progress, **job.kwargs)
        return task

    def cancel(self) -> None:
        self.cancel_token.cancel()

    def _emit(self, signal: str, *args: Any) -> None:
        """Report to the UI thread, unless the app has quit while this task ran: then its signal
        object is gone and nobody listens (an error here would reach the excepthook of a closing
        app, whose error dialog from a pool thread hangs the exit)."""
        import shiboken6

        if shiboken6.isValid(self.signals):
            getattr(self.signals, signal).emit(*args)

    def _progress(self, done: int, total: int, message: str = "") -> None:
        now = time.monotonic()
        if done >= total or now - self._last_progress >= PROGRESS_INTERVAL_S:
            self._last_progress = now
            self._emit("progress", int(done), int(total), str(message))

    def run(self) -> None:  # runs in a pool thread
        try:
            if self.with_progress:
                result = self.fn(*self.args, progress=self._progress, cancel=self.cancel_token, **self.kwargs)
            else:
                result = self.fn(*self.args, **self.kwargs)
        except Cancelled:
            self._emit("cancelled")
        except (UserError, ImageError) as exc:
            self._emit("failed", str(exc))
        except MemoryError:
            log.exception("%s ran out of memory", self.name)
            self._emit("failed", f"{self.name}: not enough memory")
        except Exception as exc:  # noqa: BLE001 - reported as a message, logged with its traceback
            log.exception("%s failed", self.name)
            self._emit("failed", f"{self.name} failed: {type(exc).__name__}: {exc}")
        else:
            self._emit("finished", result)


def deliver_to(owner: QObject, slot: Callable[..., Any]) -> Callable[..., None]:
    """``slot`` for a task's signal, called only while ``owner`` (the view waiting for the result)
    still exists: a result arriving after its view was closed is dropped, not a
    "C++ object already deleted" error."""
    import shiboken6

    def deliver(*args: Any) -> None:
        if shiboken6.isValid(owner):
            slot(*args)

    return deliver


_running: set[Task] = set()


def run_task(task: Task, pool: Optional[QThreadPool] = None) -> Task:
    """Start ``task`` in ``pool`` (default: the global pool) and keep it alive until it reports."""
    _running.add(task)
    for signal in (task.signals.finished, task.signals.failed, task.signals.cancelled):
        signal.connect(lambda *_, t=task: _running.discard(t))
    (pool or QThreadPool.globalInstance()).start(task)
    return task


_pools: dict[str, QThreadPool] = {}


def pool(name: str) -> QThreadPool:
    """A named pool: 'background' for long work (extraction, training, export), 'images' for
    decoding, so a long retrain never delays showing the next image."""
    if name not in _pools:
        p = QThreadPool()
        p.setMaxThreadCount({"background": 2, "images": 2}.get(name, 1))
        _pools[name] = p
    return _pools[name]


def wait_for_pools(msecs: int = 10000) -> None:
    """Cancel nothing, just wait for running tasks (used at shutdown and in tests)."""
    for p in _pools.values():
        p.waitForDone(msecs)
