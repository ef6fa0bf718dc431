"""Commands for several workstations on one project: pack, merge, disagreements, resolve, agreement."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from inspector.cli.common import open_project, print_json, terminal_progress
from inspector.core.errors import UserError


def register(subparsers: argparse._SubParsersAction) -> None:
    pack = subparsers.add_parser(
        "pack", help="write a labelling pack (a project slice) for another workstation",
        description="Write a self-contained project holding a slice of the images still to label, the classes, "
                    "settings, features and the labels so far, for a workstation without a network. Images are "
                    "referenced by path (the other workstation must reach the image folder under the same path, or "
                    "relocate the pack); --copy-images copies them beside the pack instead. No two packs get the "
                    "same images except a double-labelling share given to two workstations on purpose.")
    pack.add_argument("project")
    pack.add_argument("--to", required=True, metavar="PACK", help="pack file to write (e.g. shift2.inspector)")
    size = pack.add_mutually_exclusive_group(required=True)
    size.add_argument("--images", type=int, metavar="N", help="number of images in the pack")
    size.add_argument("--share", metavar="F", help="share of the unlabelled images, e.g. 1/3 (three packs of 1/3 "
                      "split them in three)")
    pack.add_argument("--workstation", default="", help="name of the workstation the pack is for")
    pack.add_argument("--annotator", default="", help="inspector who will label it (recorded with every label)")
    pack.add_argument("--double-share", type=float, default=None, metavar="S",
                      help="share of the pack also given to another pack, to measure agreement "
                           "(default: project setting packs.double_share, 0.05)")
    pack.add_argument("--copy-images", action="store_true",
                      help="copy the pack's images into PACK's folder <name>-images/ (for a workstation that "
                           "cannot reach the image folder)")
    pack.add_argument("--quiet", action="store_true")
    pack.set_defaults(handler=cmd_pack)

    merge = subparsers.add_parser(
        "merge", help="bring the labels of labelling packs home (idempotent, atomic)",
        description="Add every label event made in the packs, with annotator, workstation and time. History is "
                    "kept; merging a pack again adds nothing; a pack of another project is refused.")
    merge.add_argument("project")
    merge.add_argument("packs", nargs="+", metavar="PACK")
    merge.add_argument("--quiet", action="store_true")
    merge.set_defaults(handler=cmd_merge)

    dis = subparsers.add_parser("disagreements", help="images two annotators labelled differently")
    dis.add_argument("project")
    dis.add_argument("--all", action="store_true", help="also list the resolved ones")
    dis.add_argument("--json", action="store_true")
    dis.set_defaults(handler=cmd_disagreements)

    resolve = subparsers.add_parser("resolve", help="settle a disagreement: the reviewer's label wins")
    resolve.add_argument("project")
    resolve.add_argument("image", help="image path relative to the image folder, or its id")
    resolve.add_argument("cls", metavar="CLASS", help="the class the reviewer decides on")
    resolve.add_argument("--reviewer", required=True, help="name of the reviewer (recorded)")
    resolve.set_defaults(handler=cmd_resolve)

    agree = subparsers.add_parser("agreement", help="Cohen's kappa between inspectors and each inspector's "
                                  "agreement with the model on audit labels")
    agree.add_argument("project")
    agree.add_argument("--json", action="store_true")
    agree.set_defaults(handler=cmd_agreement)


def cmd_pack(args: argparse.Namespace) -> int:
    from inspector.core.packs import create_pack, parse_share

    share = parse_share(args.share) if args.share is not None else None
    if args.images is not None and args.images < 1:
        raise UserError("--images must be at least 1")
    with open_project(args.project) as project:
        with terminal_progress("Writing pack", enabled=not args.quiet) as progress:
            result = create_pack(project, Path(args.to), n_images=args.images, share=share,
                                 workstation=args.workstation, annotator=args.annotator,
                                 copy_images=args.copy_images, double_share=args.double_share, progress=progress)
    print(f"Wrote {result.path}: {result.n_images} images to label ({result.n_double} also in another pack, "
          f"for agreement), {result.n_labels_carried} labels carried for its learner")
    where = (f"images copied to {result.image_root}" if result.copied else
             f"images referenced at {result.image_root}: the other workstation must reach that folder "
             "(or relocate the pack there)")
    print(where)
    if result.short_by:
        print(f"inspector: warning: {result.short_by} fewer images than asked: no more unlabelled images to hand out",
              file=sys.stderr)
    return 0


def cmd_merge(args: argparse.Namespace) -> int:
    from inspector.core.packs import merge_packs, summary_line

    start = time.perf_counter()
    with open_project(args.project) as project:
        with terminal_progress("Merging packs", enabled=not args.quiet) as progress:
            results = merge_packs(project, [Path(p) for p in args.packs], progress=progress)
    for result in results:
        print(summary_line(result))
    print(f"{sum(r.added for r in results)} label events added in {time.perf_counter() - start:.2f} s")
    return 0


def _image_id(project, text: str) -> int:
    image_id = project.find_image(text)
    if image_id is None and text.isdigit():
        image_id = int(text)
        project.image(image_id)  # raises a clear error for an unknown id
    if image_id is None:
        raise UserError(f"no image {text} in this project (give its path relative to the image folder)")
    return image_id


def cmd_disagreements(args: argparse.Namespace) -> int:
    from inspector.core.agreement import disagreements

    with open_project(args.project, read_only=True) as project:
        found = disagreements(project, include_resolved=args.all)
        paths = project.image_paths()
        names = {c.id: c.name for c in project.classes()}
    if args.json:
        print_json([{"image_id": d.image_id, "path": paths.get(d.image_id), "resolved": d.resolved,
                     "resolution": names.get(d.resolution), "labels": {a: names.get(c, str(c)) for a, c in d.labels.items()}}
                    for d in found])
        return 0
    if not found:
        print("No disagreements" + ("" if args.all else " waiting for review"))
        return 0
    for d in found:
        labels = ", ".join(f"{a or '(unnamed)'}: {names.get(c, c)}" for a, c in sorted(d.labels.items()))
        state = f"  -> resolved: {names.get(d.resolution)}" if d.resolved else ""
        print(f"{paths.get(d.image_id, d.image_id)}  {labels}{state}")
    print(f"{sum(not d.resolved for d in found)} waiting for review", file=sys.stderr)
    return 0


def cmd_resolve(args: argparse.Namespace) -> int:
    from inspector.core.agreement import resolve

    with open_project(args.project) as project:
        image_id = _image_id(project, args.image)
        record = project.class_by_name(args.cls)
        if record is None:
            raise UserError(f"no class '{args.cls}' (classes: {', '.join(c.name for c in project.classes())})")
        resolve(project, image_id, record.id, args.reviewer)
    print(f"Resolved {args.image} as {record.name} (reviewer {args.reviewer})")
    return 0


def cmd_agreement(args: argparse.Namespace) -> int:
    from inspector.core.agreement import agreement_summary, format_summary

    with open_project(args.project, read_only=True) as project:
        summary = agreement_summary(project)
    if args.json:
        print_json(summary)
    else:
        for line in format_summary(summary):
            print(line)
    return 0
