"""Commands for the quality engineer: export-model, predict, export-labels, import-labels, report."""

from __future__ import annotations

import argparse
import io
import os
import sys
from pathlib import Path

import numpy as np

from inspector.cli.common import open_project, print_operating_points, terminal_progress
from inspector.core.csv_cells import SafeWriter
from inspector.core.errors import UserError


def register(subparsers: argparse._SubParsersAction) -> None:
    export = subparsers.add_parser(
        "export-model", help="train on every label and write the model as one safe file",
        description="Train on the project's current labels and write one self-describing model file "
                    "(classes, extractor, honest metrics, review threshold, checksum; no code inside).")
    export.add_argument("project")
    export.add_argument("out", help="model file to write (e.g. line3.inspector-model)")
    export.add_argument("--escape-target", type=float, default=None, metavar="RATE",
                        help="largest share of defective parts that may pass without review, e.g. 0.01 "
                             "(default: the project's setting, 1 %%)")
    export.add_argument("--review-threshold", type=float, default=None, metavar="P",
                        help="use this review threshold even if the labels cannot show the escape target "
                             "(default: chosen from the labels; a model not shown safe routes every part to review)")
    export.add_argument("--quiet", action="store_true")
    export.set_defaults(handler=cmd_export_model)

    predict = subparsers.add_parser(
        "predict", help="predict image files and folders with an exported model; CSV out",
        description="One CSV row per image: path, predicted class, calibrated confidence, probability per class, "
                    "probability of an acceptable class, novelty, route (pass/defect/review), review, review "
                    "reason and error (unreadable files).")
    predict.add_argument("model", help="model file written by export-model")
    predict.add_argument("paths", nargs="+", metavar="PATH", help="image files or folders (searched recursively)")
    predict.add_argument("--csv", metavar="OUT", help="write the CSV here (default: standard output)")
    predict.add_argument("--reject-below", type=float, default=None, metavar="P",
                         help="review threshold P instead of the model's (a part predicted acceptable passes only "
                              "when its probability of being acceptable is at least P)")
    predict.add_argument("--jobs", "-j", type=int, default=None, help="worker processes (default: all cores)")
    predict.add_argument("--quiet", action="store_true", help="no progress bar")
    predict.add_argument("--dask", metavar="SCHEDULER", default=None,
                         help="run on a Dask cluster (e.g. tcp://host:8786; see docs/CLUSTER.md): the same rows")
    predict.add_argument("--batch-size", type=int, default=None, metavar="N",
                         help="with --dask: images per task (default 64)")
    predict.set_defaults(handler=cmd_predict)

    labels_out = subparsers.add_parser("export-labels", help="write labels as CSV/JSON, or a folder per class")
    labels_out.add_argument("project")
    labels_out.add_argument("out", nargs="?", help="OUT.csv or OUT.json")
    labels_out.add_argument("--history", action="store_true", help="every label event, not just the latest")
    labels_out.add_argument("--folder", metavar="DIR", help="copy labelled images into DIR/<class>/")
    labels_out.add_argument("--link", action="store_true", help="with --folder: hard/symbolic links instead of copies")
    labels_out.set_defaults(handler=cmd_export_labels)

    labels_in = subparsers.add_parser("import-labels", help="add labels from a CSV/JSON file (path, label)")
    labels_in.add_argument("project")
    labels_in.add_argument("file", help="CSV or JSON with path (relative to the image folder) and label")
    labels_in.add_argument("--annotator", default="", help="recorded where the file names no annotator")
    labels_in.add_argument("--create-classes", action="store_true",
                           help="create classes the project does not have (otherwise such a file is refused, "
                                "naming the nearest existing classes)")
    labels_in.set_defaults(handler=cmd_import_labels)

    rep = subparsers.add_parser("report", help="write a self-contained HTML report of the model and its data")
    rep.add_argument("project")
    rep.add_argument("out", help="OUT.html")
    rep.set_defaults(handler=cmd_report)


def cmd_export_model(args: argparse.Namespace) -> int:
    from inspector.core.modelfile import export_model, load_model

    with open_project(args.project, read_only=True) as project:
        with terminal_progress("Exporting model", enabled=not args.quiet, unit="steps") as progress:
            path = export_model(project, Path(args.out), progress=progress, escape_target=args.escape_target,
                                review_threshold=args.review_threshold)
    model = load_model(path)  # read back: proves the file is complete and loadable
    audit = model.metrics.get("audit_estimate")
    shown = model.metrics.get("accuracy_estimate") or {}
    line = f"Wrote {path}: {model.kind} model, {len(model.class_names)} classes, {model.training['n_labels']} labels"
    if shown.get("estimate") is not None:
        lo, hi = shown["interval"]
        line += f"; estimated accuracy {shown['estimate']:.1%} (95 % interval {lo:.1%}-{hi:.1%}"
        if shown.get("lower_bound") is not None:
            line += f", at least {shown['lower_bound']:.1%} with one-sided 95 % confidence"
        line += f", from {shown['method']})"
    elif audit and audit.get("accuracy") is not None:
        lo, hi = audit["accuracy_ci"]
        line += f"; estimated accuracy {audit['accuracy']:.1%} (95 % interval {lo:.1%}-{hi:.1%}, {audit['n_audit']} audit labels)"
    else:
        line += "; no audit labels, so no honest accuracy estimate"
    print(line)
    goals = model.metrics.get("goals") or {}
    for sentence in (goals.get("target_sentence"), goals.get("budget_sentence")):
        if sentence:
            print(sentence)
    threshold = model.header.get("reject_threshold") or {}
    acceptable = model.header.get("acceptable_classes") or []
    print(f"Acceptable classes: {', '.join(acceptable) if acceptable else 'none (every class is a defect kind)'}")
    if model.reject_threshold is None:
        print("Review threshold: NONE - every part is routed to review.")
        print(threshold.get("explanation", ""))
        print_operating_points(threshold)
    else:
        print(f"Review threshold: {model.reject_threshold:.3f} ({threshold.get('set_by', '')})")
        if threshold.get("explanation"):
            print(threshold["explanation"])
    escape = model.header.get("escape_estimate")
    if escape and escape.get("escape_rate") is not None:
        lo, hi = escape["escape_rate_ci"]
        rlo, rhi = escape["review_share_ci"]
        print(f"Audit estimate: escape rate {escape['escape_rate']:.1%} (95 % interval {lo:.1%}-{hi:.1%}, "
              f"{escape['n_defective']} defective audit parts), review share {escape['review_share']:.0%} "
              f"({rlo:.0%}-{rhi:.0%})")
    calibration = model.header.get("probability_calibration") or {}
    rel = calibration.get("reliability_audit") or calibration.get("reliability")
    if rel and rel.get("ece") is not None:
        from inspector.core.learning.calibration import floor_words

        print(f"Calibration: temperature {calibration['temperature']:.2f}, shrinkage {calibration['shrink']:.3f}; "
              f"expected calibration error {rel['ece']:.3f} on {rel['n']} {rel.get('basis', '')}{floor_words(rel)}")
    return 0


def prediction_columns(class_names) -> list[str]:
    return ["path", "predicted", "confidence", *[f"p_{name}" for name in class_names], "p_acceptable", "novelty",
            "route", "review", "review_reason", "error"]


def cmd_predict(args: argparse.Namespace) -> int:
    from inspector.core.ingest import analyse_files
    from inspector.core.modelfile import expand_paths, load_model

    model = load_model(Path(args.model))
    if args.reject_below is not None and not 0.0 <= args.reject_below <= 1.0:
        raise UserError("--reject-below must be between 0 and 1")
    if args.jobs is not None and args.jobs < 1:
        raise UserError("--jobs must be at least 1")
    missing = [given for given in args.paths if not Path(given).exists()]
    if missing:  # a problem with the input: say so before any work, and write nothing
        raise UserError(f"{missing[0]} does not exist" + (f" (and {len(missing) - 1} more of the given paths)"
                                                          if len(missing) > 1 else ""))
    target = Path(args.csv) if args.csv else None
    if target is not None and not target.parent.is_dir():  # say so before minutes of work, not after
        raise UserError(f"folder {target.parent} does not exist")
    paths = expand_paths(args.paths)
    if not paths:
        raise UserError("no images found in the given folders")
    # Keep only probabilities (a few numbers per image), not feature vectors, so a folder of
    # 100,000 images needs little memory; rows are written in the order the paths were given.
    proba = np.zeros((len(paths), len(model.class_names)))
    novelty = np.full(len(paths), np.nan)
    errors: list = [None] * len(paths)
    batch: list = []

    def flush() -> None:
        if batch:
            index = [r.index for r in batch]
            X = np.stack([r.features for r in batch])
            proba[index] = model.predict_proba_features(X)
            scores = model.novelty_scores(X, proba[index])
            if scores is not None:
                novelty[index] = scores
            batch.clear()

    if args.dask:
        from inspector.core import distributed

        client = distributed.connect(args.dask)
        try:
            with terminal_progress("Predicting on the cluster", enabled=not args.quiet) as progress:
                proba, novelty, errors = distributed.predict_with_novelty(
                    model, paths, client, batch_size=args.batch_size or distributed.DEFAULT_BATCH, progress=progress)
        finally:
            client.close()
    with terminal_progress("Predicting", enabled=not args.quiet and not args.dask) as progress:
        for result in ([] if args.dask else analyse_files(paths, workers=args.jobs, progress=progress,
                                                                   extractor=model.extractor_params.get("name"))):
            if result.error is not None or result.features is None:
                errors[result.index] = result.error or "no features"
                continue
            batch.append(result)
            if len(batch) >= 256:
                flush()
        flush()
    threshold = model.reject_threshold if args.reject_below is None else args.reject_below
    usable = np.array([e is None for e in errors], bool)
    route_path, route_review, route_reasons, p_acc = model.decide(
        proba[usable], novelty[usable] if model.confidence.novelty is not None else None, threshold)
    at = np.cumsum(usable) - 1  # row in the usable arrays
    columns = prediction_columns(model.class_names)
    temporary = None if target is None else target.with_name(f".{target.name}.{os.getpid()}.part")
    n_review = n_error = 0
    try:
        handle = io.StringIO() if target is None else open(temporary, "w", newline="", encoding="utf-8")
        with handle:
            writer = SafeWriter(handle)  # file and class names never become spreadsheet formulas
            writer.writerow(columns)
            for i, path in enumerate(paths):
                if errors[i] is not None:
                    n_error += 1
                    writer.writerow([str(path), "", "", *[""] * len(model.class_names), "", "", "", "", "", errors[i]])
                    continue
                top = int(np.argmax(proba[i]))
                confidence = float(proba[i, top])
                r = int(at[i])
                review = bool(route_review[r])
                n_review += review
                writer.writerow([str(path), model.class_names[top], f"{confidence:.6f}",
                                 *[f"{v:.6f}" for v in proba[i]], f"{p_acc[r]:.6f}",
                                 "" if np.isnan(novelty[i]) else f"{novelty[i]:.4f}", str(route_path[r]),
                                 "True" if review else "False", route_reasons[r], ""])
            if target is None:
                sys.stdout.write(handle.getvalue())
        if target is not None:
            os.replace(temporary, target)
    except OSError as exc:
        if temporary is not None:
            temporary.unlink(missing_ok=True)
        raise UserError(f"cannot write {args.csv}: {exc.strerror or exc}") from None
    rule = ("every part: the model was not shown safe" if threshold is None
            else f"threshold {threshold:.3f}, novel parts, predicted defects to the defect path")
    n_defect = int(np.sum(route_path == "defect"))
    print(f"Predicted {len(paths) - n_error} images: {n_review} for review ({rule}), {n_defect} to the defect path, "
          f"{n_error} unreadable" + (f"; wrote {target}" if target else ""), file=sys.stderr)
    return 0


def cmd_export_labels(args: argparse.Namespace) -> int:
    from inspector.core.labels_io import export_label_folder, export_labels

    if not args.out and not args.folder:
        raise UserError("give OUT.csv / OUT.json, or --folder DIR")
    if args.link and not args.folder:
        raise UserError("--link goes with --folder")
    with open_project(args.project, read_only=True) as project:
        if args.out:
            count = export_labels(project, Path(args.out), history=args.history)
            print(f"Wrote {count} {'label events' if args.history else 'labels'} to {args.out}")
        if args.folder:
            with terminal_progress("Placing images", unit="files") as progress:
                result = export_label_folder(project, Path(args.folder), link=args.link, progress=progress)
            verb = "Linked" if args.link else "Copied"
            print(f"{verb} {result.placed} labelled images into {args.folder}/<class>/")
            for relative, reason in result.problems[:20]:
                print(f"  ! {relative}: {reason}", file=sys.stderr)
            if result.problems:
                print(f"inspector: warning: {len(result.problems)} images could not be placed", file=sys.stderr)
                return 1
    return 0


def cmd_import_labels(args: argparse.Namespace) -> int:
    from inspector.core.labels_io import import_labels

    with open_project(args.project) as project:
        summary = import_labels(project, Path(args.file), annotator=args.annotator,
                                create_classes=args.create_classes)
    print(f"Imported {summary.imported} labels from {args.file}"
          + (f"; new classes: {', '.join(summary.new_classes)}" if summary.new_classes else ""))
    if summary.skipped:
        print(f"Skipped {summary.skipped} rows without a path and class label")
    if summary.unknown_paths:
        print(f"inspector: warning: {len(summary.unknown_paths)} paths are not images of this project "
              f"(first: {summary.unknown_paths[0]})", file=sys.stderr)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from inspector.core.report import write_report

    with open_project(args.project, read_only=True) as project:
        path = write_report(project, Path(args.out))
    print(f"Wrote {path}")
    return 0
