"""The `features` command: which extractor a project uses, an honest comparison of the
extractors on its labels, and switching."""

from __future__ import annotations

import argparse
import signal
import sys
from contextlib import contextmanager
from typing import Iterator

from inspector.cli.common import open_project, print_json, terminal_progress
from inspector.core.progress import CancelToken, Cancelled


def register(subparsers: argparse._SubParsersAction) -> None:
    features = subparsers.add_parser(
        "features", help="the project's feature extractor: show, compare on its labels, switch",
        description="Without options: the project's feature extractor, the ones available and how many images "
                    "have features of each. --compare measures every extractor on the project's labels "
                    "(honestly on random audit labels where there are enough). --use switches (extracting every "
                    "image first; Ctrl+C leaves the project as it was and keeps what was extracted).")
    features.add_argument("project")
    action = features.add_mutually_exclusive_group()
    action.add_argument("--compare", nargs="*", metavar="NAME", default=None,
                        help="measure every extractor (or those named) on the project's labels")
    action.add_argument("--use", metavar="NAME", help="switch the project to this extractor")
    features.add_argument("--json", action="store_true", help="machine-readable output")
    features.add_argument("--workers", type=int, default=None, help="worker processes (default: all cores)")
    features.add_argument("--quiet", action="store_true", help="no progress bar")
    features.set_defaults(handler=cmd_features)


@contextmanager
def _ctrl_c_cancels() -> Iterator[CancelToken]:
    """A cancel token that Ctrl+C sets, so long work stops cleanly (saving what was done)
    instead of being torn down by KeyboardInterrupt."""
    token = CancelToken()
    try:
        previous = signal.signal(signal.SIGINT, lambda *_: token.cancel())
    except ValueError:  # not the main thread (e.g. called from a test's thread): no handler
        previous = None
    try:
        yield token
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)


def cmd_features(args: argparse.Namespace) -> int:
    if args.compare is not None:
        return _compare(args)
    if args.use:
        return _use(args)
    return _show(args)


def _show(args: argparse.Namespace) -> int:
    from inspector.core.extractor_choice import extractor_status, project_extractor_name

    with open_project(args.project, read_only=True) as project:
        current = project_extractor_name(project)
        rows = extractor_status(project)
    if args.json:
        print_json({"current": current, "extractors": [vars(r) for r in rows]})
        return 0
    print(f"Feature extractor of this project: {current}")
    width = max([14, *(len(r.name) for r in rows)])  # the columns stay aligned for long combined names
    version_width = max([7, *(len(str(r.version)) for r in rows if r.available)])
    print(f"{'':2s}{'name':{width}s} {'version':>{version_width}s} {'dims':>6s} {'images with features':>21s} "
          f"{'labelled':>9s}  description")
    for r in rows:
        mark = "* " if r.current else "  "
        if not r.available:
            print(f"{mark}{r.name:{width}s} {'-':>{version_width}s} {'-':>6s} {'-':>21s} {'-':>9s}  "
                  f"NOT AVAILABLE: {r.problem}")
            continue
        print(f"{mark}{r.name:{width}s} {r.version:>{version_width}d} {r.dim:>6d} {f'{r.features}/{r.images}':>21s} "
              f"{r.labelled_with_features:>9d}  {r.description}")
    print("Compare them on this project's labels: inspector features PROJECT --compare; "
          "switch: inspector features PROJECT --use NAME")
    return 0


def _compare(args: argparse.Namespace) -> int:
    from inspector.core.extractor_choice import compare_extractors

    with open_project(args.project) as project, _ctrl_c_cancels() as cancel:
        with terminal_progress("Comparing", enabled=not (args.quiet or args.json)) as progress:
            try:
                result = compare_extractors(project, names=args.compare or None, workers=args.workers,
                                            progress=progress, cancel=cancel)
            except Cancelled:
                print("inspector: comparison cancelled; the features extracted so far are kept", file=sys.stderr)
                return 1
    if args.json:
        print_json(result.as_dict())
        return 0
    print_comparison(result)
    return 0


def print_comparison(result, file=sys.stdout) -> None:
    print(f"Labels used: {result.n_labels} ({result.n_audit} random audit labels); "
          f"current extractor: {result.current}", file=file)
    for note in result.notes:
        print(f"Note: {note}", file=file)
    if result.basis is None:
        print(result.verdict, file=file)
        return
    print(f"Measured by {result.basis_text}", file=file)
    width = max([14, *(len(s.name) for s in result.scores)])
    print(f"{'extractor':{width}s} {'macro-F1 (95 % interval)':>26s} {'accuracy (95 % interval)':>26s} "
          f"{'behind the best (95 % interval)':>34s}", file=file)
    for s in result.scores:
        behind = ("best" if s.behind_best is None else
                  f"{s.behind_best:.3f} ({s.behind_best_ci[0]:+.3f} to {s.behind_best_ci[1]:+.3f})")
        print(f"{s.name:{width}s} {s.macro_f1:>8.3f} ({s.macro_f1_ci[0]:.3f}-{s.macro_f1_ci[1]:.3f})  "
              f"{s.accuracy:>10.1%} ({s.accuracy_ci[0]:.1%}-{s.accuracy_ci[1]:.1%}) {behind:>34s}", file=file)
    print(("OPTIMISTIC figures: " if result.optimistic else "") + result.verdict, file=file)
    if result.switch_advised:
        print(f"Switch with: inspector features PROJECT --use {result.best}", file=file)


def _use(args: argparse.Namespace) -> int:
    from inspector.core.extractor_choice import project_extractor_name, switch_extractor
    from inspector.core.features import get_extractor

    get_extractor(args.use)  # an unknown name is one line before the project is opened for writing
    with open_project(args.project) as project, _ctrl_c_cancels() as cancel:
        previous = project_extractor_name(project)
        if previous == args.use:
            print(f"The project already uses '{args.use}'.")
            return 0
        with terminal_progress(f"Extracting {args.use}", enabled=not args.quiet) as progress:
            try:
                result = switch_extractor(project, args.use, workers=args.workers, progress=progress, cancel=cancel)
            except Cancelled:
                ex = get_extractor(args.use)
                kept = project.feature_count(ex.name, ex.version)
                print(f"inspector: cancelled; the project stays on '{previous}' ({kept} images' '{args.use}' features "
                      "are kept for the next try)", file=sys.stderr)
                return 1
    if args.json:
        print_json(vars(result))
        return 0
    print(f"The project now uses '{result.current}' (was '{result.previous}'): {result.features} of {result.images} "
          f"images have its features ({result.analysed} read now, {result.errors} could not be used); "
          "every label is kept.")
    return 0


__all__ = ["register", "cmd_features", "print_comparison"]
