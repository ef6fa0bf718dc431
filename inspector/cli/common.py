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
