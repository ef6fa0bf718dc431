"""`inspector gui`: the desktop app."""

from __future__ import annotations

import argparse
from typing import Optional


def register(subparsers) -> None:
    p = subparsers.add_parser("gui", help="open the desktop app",
                              description="Open the desktop app: the start page, a project, or the demo.")
    p.add_argument("project", nargs="?", help="a project file to open (or a folder of images to start one)")
    p.add_argument("--demo", action="store_true", help="write the demo images (once) and open the demo project")
    p.set_defaults(handler=lambda args: run_gui(args.project, demo=args.demo))


def run_gui(project_path_or_none: Optional[str], demo: bool = False) -> int:
    """Run the app until its window closes; returns the exit code."""
    import multiprocessing

    multiprocessing.freeze_support()
    from inspector.ui.app import run

    return run(project_path_or_none, demo=demo)
