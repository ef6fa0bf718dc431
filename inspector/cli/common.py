"""Helpers shared by the command modules: opening projects, progress display, JSON output."""

from __future__ import annotations

import json
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Optional, TextIO

from inspector.core.progress import ProgressCallback

#: without a terminal (output to a file, a pipe, a CI log) a long stage writes a line this often
LOG_LINE_EVERY_S = 60.0


def _is_terminal(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # a closed or unusual stream
        return False


class StageProgress:
    """Progress of one stage of a command, as a person reading it wants to see it.

    On a terminal: a tqdm bar, drawn from the first update on (no empty bar before the real one),
    counted in the stage's own unit ("images", "steps", "files"). Anywhere else (a log file, a
    pipe): no bar; one line when the stage ends ("Reading images: 240 images in 12.3 s"), and for
    a long stage a line every :data:`LOG_LINE_EVERY_S` seconds.
    """

    def __init__(self, description: str, unit: str, stream: TextIO, terminal: Optional[bool] = None) -> None:
        self.description = description
        self.unit = unit
        self.stream = stream
        self.terminal = _is_terminal(stream) if terminal is None else terminal
        self.done = 0
        self.total = 0
        self.message = ""
        self.updates = 0
        self._bar = None
        self._started = time.monotonic()
        self._last_line = self._started

    def __call__(self, done: int, total: int, message: str = "") -> None:
        self.done, self.total = int(done), int(total)
        if message:
            self.message = message
        self.updates += 1
        if self.terminal:
            self._draw_bar()
        elif time.monotonic() - self._last_line >= LOG_LINE_EVERY_S:
            self._last_line = time.monotonic()
            print(f"{self.description}: {self._count()}…", file=self.stream, flush=True)

    def _count(self) -> str:
        if self.total > 0:
            return f"{self.done:,} of {self.total:,} {self.unit}"
        return f"{self.done:,} {self.unit}"

    def _draw_bar(self) -> None:
        if self._bar is None:
            from tqdm import tqdm

            self._bar = tqdm(total=self.total or None, desc=self.description, unit=f" {self.unit}",
                             file=self.stream, leave=True, dynamic_ncols=True)
        bar = self._bar
        if bar.total != (self.total or None):
            bar.total = self.total or None
        bar.n = self.done
        if self.message:
            bar.set_postfix_str(self.message, refresh=False)
        bar.refresh()

    def close(self, failed: bool = False) -> None:
        if self._bar is not None:
            self._bar.close()
            return
        if self.terminal or self.updates == 0 or failed:
            return  # nothing happened in this stage (e.g. features already cached): nothing to say
        seconds = time.monotonic() - self._started
        print(f"{self.description}: {self._count() if self.done != self.total else f'{self.done:,} {self.unit}'}"
              f" in {seconds:.1f} s", file=self.stream, flush=True)


@contextmanager
def terminal_progress(description: str, enabled: bool = True, unit: str = "images",
                      stream: Optional[TextIO] = None) -> Iterator[ProgressCallback]:
    """A progress callback for one stage on stderr: a bar on a terminal, one summary line in a log
    (see :class:`StageProgress`); silent when ``enabled`` is False."""
    if not enabled:
        yield lambda done, total, message="": None
        return
    stage = StageProgress(description, unit, stream if stream is not None else sys.stderr)
    failed = True
    try:
        yield stage
        failed = False
    finally:
        stage.close(failed=failed)


def print_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, sort_keys=False, default=str)
    sys.stdout.write("\n")


#: set from ``--allow-network-share``: write a project on NFS/SMB anyway
ALLOW_NETWORK_SHARE = False


def refuse_network_share(path: str | Path) -> None:
    """One clear line instead of writing a project on a network share (unless allowed)."""
    from inspector.core.errors import UserError
    from inspector.core.filesystems import network_share, network_share_message

    if ALLOW_NETWORK_SHARE:
        return
    kind = network_share(path)
    if kind is not None:
        raise UserError(network_share_message(path, kind) + "; or add --allow-network-share")


def open_project(path: str | Path, read_only: bool = False):
    """Open a project for a command, with the store's clear errors. A project on a network share
    is only opened to write with --allow-network-share (reading it is safe)."""
    from inspector.core.store import Project

    if not read_only and Path(path).is_file():
        refuse_network_share(path)
    return Project.open(Path(path), read_only=read_only)


def print_operating_points(threshold: dict) -> None:
    """The thresholds an engineer could set by hand, when the labels cannot show the escape target
    (routing.operating_points), one line each; nothing when the threshold is shown safe."""
    points = threshold.get("operating_points") or []
    if threshold.get("value") is not None or not points:
        return
    from inspector.core.learning.routing import operating_point_words

    print("What the labels say about thresholds you could set (export-model --review-threshold T):")
    for point in points:
        words = operating_point_words(point)
        if words:
            print(f"  {words}")
