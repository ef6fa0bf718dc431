"""Progress reporting and cancellation shared by every long core operation.

Core functions take ``progress`` (a callable ``progress(done, total, message)``) and ``cancel``
(a :class:`CancelToken`). They never know whether a terminal bar or a Qt worker listens.
"""

from __future__ import annotations

import threading
from typing import Callable, Optional

ProgressCallback = Callable[[int, int, str], None]


class Cancelled(Exception):
    """Raised inside a core operation when its cancel token was set."""


class CancelToken:
    """A thread-safe flag that a caller sets to ask a long operation to stop early."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def raise_if_cancelled(self) -> None:
        """Raise :class:`Cancelled` when cancellation was requested."""
        if self._event.is_set():
            raise Cancelled("cancelled")


def report(progress: Optional[ProgressCallback], done: int, total: int, message: str = "") -> None:
    """Call ``progress`` when one was given."""
    if progress is not None:
        progress(done, total, message)


def check(cancel: Optional[CancelToken]) -> None:
    """Raise :class:`Cancelled` when ``cancel`` was given and set."""
    if cancel is not None:
        cancel.raise_if_cancelled()
