"""Helpers shared by the command modules: opening projects, progress bars, JSON output."""

from __future__ import annotations

import json
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from inspector.core.progress import ProgressCallback


@contextmanager
def terminal_progress(description: str, enabled: bool = True) -> Iterator[ProgressCallback]:
    """A progress callback drawing a tqdm bar on stderr (silent when ``enabled`` is False)."""
    if not enabled:
        yield lambda done, total, message: None
        return
    from tqdm import tqdm

    bar = tqdm(total=0, desc=description, unit="img", file=sys.stderr, leave=True, dynamic_ncols=True)

    def update(done: int, total: int, message: str = "") -> None:
        if bar.total != total:
            bar.total = total
            bar.refresh()
        bar.n = done
        if message:
            bar.set_postfix_str(message, refresh=False)
        bar.refresh()

    try:
        yield update
    finally:
        bar.close()


def print_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, sort_keys=False, default=str)
    sys.stdout.write("\n")


def open_project(path: str | Path, read_only: bool = False):
    """Open a project for a command, with the store's clear errors."""
    from inspector.core.store import Project

    return Project.open(Path(path), read_only=read_only)
