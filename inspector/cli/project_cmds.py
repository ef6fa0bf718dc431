"""Commands that create, scan and describe projects: new, scan, info, demo, relocate."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Optional

from inspector.cli.common import open_project, print_json, terminal_progress
from inspector.core.errors import UserError


def register(subparsers: argparse._SubParsersAction) -> None:
    new = subparsers.add_parser(
        "new", help="create a project from a folder of images, scan it and extract features",
        description="Create a project file for the images below a folder, then scan and extract features.",
    )
    new.add_argument("project", help="project file to create (e.g. line3.inspector)")
    new.add_argument("--images", required=True, help="folder of images (searched recursively)")
    new.add_argument("--labels-from-folders", action="store_true",
                     help="take each image's parent folder name as its class")
    new.add_argument("--labels-csv", metavar="FILE", help="import labels from a CSV with columns path,label")
    new.add_argument("--workers", type=int, default=None, help="worker processes (default: all cores)")
    new.add_argument("--extractor", metavar="NAME", default=None,
                     help="feature extractor of the project (default: texture+cnn, or texture+cnn-tiles when the "
                          "folder's images are large parts, 448 px or more on their longer side; see "
                          "'inspector features PROJECT')")
    new.add_argument("--annotator", default="", help="name recorded with imported labels")
    new.add_argument("--target", metavar="FIGURE=VALUE",
                     help="label until this honest figure is shown, e.g. accuracy=0.95, macro_f1=90%%, "
                          "escape_rate=0.01 (at most)")
    new.add_argument("--budget", metavar="LABELS", help="labelling budget in labels, e.g. 400")
    new.add_argument("--quiet", action="store_true", help="no progress bar")
    new.set_defaults(handler=cmd_new)

    target = subparsers.add_parser(
        "target", help="show or change the project's target and labelling budget",
        description="Without options: where the project stands. The target is judged on the honest estimate: "
                    "'reached' only when the lower end of its 95 %% interval clears it.")
    target.add_argument("project")
    target.add_argument("target", nargs="?", metavar="FIGURE=VALUE",
                        help="new target, e.g. accuracy=0.95, macro_f1=0.9, escape_rate=0.01; 'none' removes it")
    target.add_argument("--budget", metavar="LABELS", help="new labelling budget in labels; 'none' removes it")
    target.add_argument("--json", action="store_true", help="machine-readable output")
    target.set_defaults(handler=cmd_target)

    scan = subparsers.add_parser("scan", help="rescan the image folder and extract what is missing")
    scan.add_argument("project")
    scan.add_argument("--workers", type=int, default=None)
    scan.add_argument("--quiet", action="store_true")
    scan.set_defaults(handler=cmd_scan)

    info = subparsers.add_parser("info", help="describe a project: images, problems, labels, classes")
    info.add_argument("project")
    info.add_argument("--json", action="store_true", help="machine-readable output")
    info.set_defaults(handler=cmd_info)

    classes = subparsers.add_parser(
        "classes", help="list the classes; say which are acceptable parts; set the escape target",
        description="List the project's classes with their labels and whether their parts are acceptable "
                    "(may pass the line). A defective part passed without review is an escape.")
    classes.add_argument("project")
    classes.add_argument("--acceptable", metavar="NAMES",
                         help="comma-separated class names whose parts are acceptable, e.g. ok,good "
                              "(an empty string: none)")
    classes.add_argument("--escape-target", type=float, metavar="RATE",
                         help="largest share of defective parts that may pass without review, e.g. 0.01")
    classes.add_argument("--json", action="store_true", help="machine-readable output")
    classes.set_defaults(handler=cmd_classes)

    relocate = subparsers.add_parser("relocate", help="re-point a project at its moved image folder")
    relocate.add_argument("project")
    relocate.add_argument("images", help="the folder where the images are now")
    relocate.set_defaults(handler=cmd_relocate)

    demo = subparsers.add_parser("demo", help="write a synthetic inspection data set to try Inspector on")
    demo.add_argument("folder", help="folder to write (created; must be empty if it exists)")
    demo.add_argument("-n", "--images", type=int, default=240, help="number of images (default 240)")
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(handler=cmd_demo)


def _scan(project, workers, quiet: bool) -> Optional[str]:
    """Scan and read the images; returns why the project has no usable image, or None."""
    from inspector.core.ingest import analyse_pending, no_usable_image_message, scan_folder

    summary = scan_folder(project)
    with terminal_progress("Reading images", enabled=not quiet) as progress:
        analysed, errors = analyse_pending(project, workers=workers, progress=progress)
    parts = [f"{summary.new} new", f"{summary.changed} changed", f"{summary.missing} gone"]
    if summary.returned:
        parts.append(f"{summary.returned} back")
    print(f"Scanned {project.image_root}: {', '.join(parts)}; read {analysed} files, "
          f"{errors + summary.errors} could not be used")
    return no_usable_image_message(project, summary)


def cmd_new(args: argparse.Namespace) -> int:
    from inspector.core.store import Project

    from inspector.core.learning import stopping

    images = Path(args.images)
    if not images.is_dir():
        raise UserError(f"image folder {images} does not exist or is not a folder")
    # bad goals are refused before anything is created
    goal_target = stopping.parse_target(args.target) if args.target else None
    goal_budget = _read_budget(args.budget)
    project_path = Path(args.project)
    from inspector.cli.common import refuse_network_share

    refuse_network_share(project_path)
    from inspector.core.extractor_choice import project_extractor_why, start_project_with
    from inspector.core.features import get_extractor

    if args.extractor is not None:
        get_extractor(args.extractor)  # an unknown name fails before the project file is created
    project = Project.create(project_path, images)
    with project:
        name = start_project_with(project, args.extractor)
        if args.extractor is None:  # say why its images call for it
            print(f"Features: {name}, {project_extractor_why(project)}; change with "
                  "'inspector features PROJECT --use NAME'")
        else:
            print(f"Features: {name}")
        if goal_target is not None or goal_budget is not None:
            stopping.write_goals(project, goal_target, goal_budget)
        nothing_usable = _scan(project, args.workers, args.quiet)
        if nothing_usable:
            # an empty project would only open as a silent surprise; nothing in it was made by a person
            kept = not project.discard_if_empty()
            raise UserError(f"{nothing_usable}; " + (f"{project_path} kept" if kept else "no project created"))
        if args.labels_from_folders:
            from inspector.core.labels_io import import_folder_labels

            count = import_folder_labels(project, args.annotator)
            print(f"Imported {count} labels from folder names")
        if args.labels_csv:
            count = import_csv_labels(project, Path(args.labels_csv), args.annotator)
            print(f"Imported {count} labels from {args.labels_csv}")
        print(f"Created {project_path}")
        status = stopping.project_goal_status(project)
        for sentence in (_target_words(status), status.budget_sentence()):
            if sentence:
                print(sentence)
    return 0


def _read_budget(text: Optional[str]) -> Optional[int]:
    from inspector.core.learning import stopping

    if text is None or text.strip().lower() == "none":
        return None
    try:
        return stopping.check_budget(int(text.strip()))
    except ValueError:
        raise UserError(f"the labelling budget must be a whole number of labels (or 'none'), not {text!r}") from None


def _target_words(status) -> str:
    return f"Target: {status.target.words}" if status.target is not None else ""


def cmd_target(args: argparse.Namespace) -> int:
    from inspector.core.learning import stopping

    changing = args.target is not None or args.budget is not None
    with open_project(args.project, read_only=not changing) as project:
        if changing:
            target, budget = stopping.read_goals(project)
            if args.target is not None:
                target = None if args.target.strip().lower() == "none" else stopping.parse_target(args.target)
            if args.budget is not None:
                budget = _read_budget(args.budget)
            stopping.write_goals(project, target, budget)
        status = stopping.project_goal_status(project)
    if args.json:
        print_json(status.as_dict())
        return 0
    if status.target is None and status.budget is None:
        print("No target and no budget set (e.g. inspector target PROJECT accuracy=0.95 --budget 400).")
        return 0
    print(f"Target: {status.target.words}" if status.target else "Target: none")
    print(f"Budget: {status.budget:,} labels" if status.budget else "Budget: none")
    for sentence in (status.target_sentence(), status.budget_sentence()):
        if sentence:
            print(sentence)
    return 0


def cmd_scan(args: argparse.Namespace) -> int:
    with open_project(args.project) as project:
        nothing_usable = _scan(project, args.workers, args.quiet)
    if nothing_usable:
        import sys

        print(f"inspector: warning: {nothing_usable}", file=sys.stderr)
    return 0


def cmd_classes(args: argparse.Namespace) -> int:
    from inspector.core.learning import routing
    from inspector.core.learning.acceptance import acceptable_class_ids, set_acceptable_class_names

    changing = args.acceptable is not None or args.escape_target is not None
    if args.escape_target is not None and not 0.0 < args.escape_target < 1.0:
        raise UserError("--escape-target must be between 0 and 1 (e.g. 0.01 for 1 %)")
    with open_project(args.project, read_only=not changing) as project:
        if args.acceptable is not None:
            set_acceptable_class_names(project, args.acceptable.split(","))
        if args.escape_target is not None:
            project.set_setting(routing.SETTING_ESCAPE_TARGET, float(args.escape_target))
        acceptable = acceptable_class_ids(project)
        counts: dict = {}
        for class_id in project.latest_labels().values():
            counts[class_id] = counts.get(class_id, 0) + 1
        rows = [{"key": c.key, "name": c.name, "labels": counts.get(c.id, 0), "acceptable": c.id in acceptable}
                for c in project.classes()]
        target = routing.escape_target(project)
    if args.json:
        print_json({"classes": rows, "escape_target": target})
        return 0
    for r in rows:
        print(f"{r['key'] or '-':>2}  {r['name']:<24} {r['labels']:>6} labels  "
              f"{'acceptable' if r['acceptable'] else 'defect'}")
    if not any(r["acceptable"] for r in rows):
        print("No acceptable class: every part is routed by its predicted class (set one with --acceptable).")
    print(f"Escape target: at most {target:.2%} of defective parts pass without review")
    return 0


def cmd_relocate(args: argparse.Namespace) -> int:
    with open_project(args.project) as project:
        project.set_image_root(Path(args.images))
        print(f"{project.name} now reads its images from {project.image_root}")
    return 0


def project_summary(project) -> dict:
    """Facts about a project for `info` and reports."""
    from inspector.core.extractor_choice import project_extractor

    extractor = project_extractor(project)
    classes = project.classes()
    latest = project.latest_labels()
    per_class = {c.name: 0 for c in classes}
    names = {c.id: c.name for c in classes}
    for class_id in latest.values():
        per_class[names[class_id]] += 1
    counts = project.counts()
    return {
        "project": str(project.path),
        "image_root": str(project.image_root),
        "image_root_found": project.image_root_found(),
        "images": counts["images"],
        "pending": counts["pending"],
        "missing": counts["missing"],
        "errors": [{"path": r.path, "reason": r.error} for r in project.problem_files()],
        "duplicates": [
            {"path": project.image(dup).path, "same_as": project.image(orig).path}
            for dup, orig in project.duplicates()
        ],
        "features": project.feature_count(extractor.name, extractor.version),
        "extractor": {"name": extractor.name, "version": extractor.version},
        "labels": len(latest),
        "classes": per_class,
        "queue": len(project.queue()),
        "model_versions": len(project.model_versions()),
    }


def cmd_info(args: argparse.Namespace) -> int:
    with open_project(args.project, read_only=True) as project:
        summary = project_summary(project)
    if args.json:
        print_json(summary)
        return 0
    print(f"Project     {summary['project']}")
    root_note = "" if summary["image_root_found"] else "   (NOT FOUND: use 'inspector relocate')"
    print(f"Images from {summary['image_root']}{root_note}")
    print(f"Images      {summary['images']} usable, {len(summary['errors'])} unreadable, "
          f"{len(summary['duplicates'])} duplicates, {summary['missing']} gone, {summary['pending']} not read yet")
    print(f"Features    {summary['features']} ({summary['extractor']['name']} v{summary['extractor']['version']})")
    print(f"Labels      {summary['labels']}")
    for name, count in summary["classes"].items():
        print(f"  {name:<24} {count}")
    for error in summary["errors"][:20]:
        print(f"  ! {error['path']}: {error['reason']}")
    if len(summary["errors"]) > 20:
        print(f"  ! … and {len(summary['errors']) - 20} more (see --json)")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from inspector.core.demo import write_demo_dataset

    folder = Path(args.folder)
    if folder.exists() and any(folder.iterdir()):
        raise UserError(f"{folder} is not empty; choose a new folder for the demo images")
    if args.images < 10:
        raise UserError("the demo needs at least 10 images")
    with terminal_progress("Drawing demo parts", unit="images") as progress:
        write_demo_dataset(folder, n_images=args.images, random_state=args.seed, progress=progress)
    print(f"Wrote {args.images} demo images to {folder}")
    return 0


def import_csv_labels(project, csv_path: Path, annotator: str = "") -> int:
    """Import labels from a CSV with a header naming `path` (relative to the image folder) and
    `label` (or `class`) columns. Unknown paths are reported, not guessed.

    The reading and matching live in :func:`inspector.core.labels_io.import_labels` (shared with
    `inspector import-labels`)."""
    from inspector.core.labels_io import import_labels

    summary = import_labels(project, Path(csv_path), annotator, create_classes=True)  # a new project has none
    if summary.unknown_paths:
        import sys

        print(f"inspector: warning: {len(summary.unknown_paths)} paths in {csv_path} are not images of this project "
              f"(first: {summary.unknown_paths[0]})", file=sys.stderr)
    return summary.imported
