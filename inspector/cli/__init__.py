"""The command line: the same core as the desktop app, without a window.

Each command group lives in its own module with a ``register(subparsers)`` function that adds
its sub-commands; a sub-command's handler takes the parsed arguments and returns an exit code.
Exit codes: 0 success, 1 user error (one clear line, no traceback), 2 usage.
"""

from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence

from inspector.core.errors import UserError
from inspector.core.progress import Cancelled
from inspector.core.version import __version__


def build_parser() -> argparse.ArgumentParser:
    # plain imports, in the order of `inspector --help`: a broken command module fails here, loudly
    from inspector.cli import app_cmds, export_cmds, features_cmds, learning_cmds, project_cmds, team_cmds

    parser = argparse.ArgumentParser(
        prog="inspector",
        description="Offline visual-inspection labelling with an active learner.",
    )
    parser.add_argument("--version", action="version", version=f"inspector {__version__}")
    parser.add_argument("--self-test", action="store_true", help="exercise the whole product offscreen and exit")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for commands in (project_cmds, learning_cmds, export_cmds, features_cmds, app_cmds, team_cmds):
        commands.register(subparsers)
    for command in subparsers.choices.values():
        command.add_argument("--allow-network-share", action="store_true",
                             help="write a project on an NFS/SMB share anyway (SQLite locking is unreliable there)")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from inspector.cli import common

    common.ALLOW_NETWORK_SHARE = bool(getattr(args, "allow_network_share", False))
    try:
        if args.self_test:
            from inspector.selftest import run_self_test

            return run_self_test()
        if args.command is None:  # no command: the desktop app's start page
            from inspector.cli.app_cmds import run_gui

            return run_gui(None)
        return int(args.handler(args) or 0)
    except UserError as exc:
        print(f"inspector: error: {exc}", file=sys.stderr)
        return 1
    except Cancelled:
        print("inspector: cancelled", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("inspector: interrupted", file=sys.stderr)
        return 130

