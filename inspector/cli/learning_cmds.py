"""Commands of the learning loop: query, label, train, evaluate, simulate."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from inspector.cli.common import open_project, print_json, print_operating_points, terminal_progress
from inspector.core.errors import UserError


def register(subparsers: argparse._SubParsersAction) -> None:
    from inspector.core.learning.strategies import DEFAULT_STRATEGY, strategy_names

    names = strategy_names()
    query = subparsers.add_parser("query", help="show the next images to label (refilling the queue if needed)")
    query.add_argument("project")
    query.add_argument("-n", type=int, default=10, help="how many to show (default 10)")
    query.add_argument("--strategy", choices=names, default=None,
                       help=f"retrain and refill the queue with this strategy (default: project setting, {DEFAULT_STRATEGY})")
    query.add_argument("--json", action="store_true", help="machine-readable output")
    query.set_defaults(handler=cmd_query)

    label = subparsers.add_parser("label", help="label one image (durable before it is acknowledged)")
    label.add_argument("project")
    label.add_argument("image", help="image path relative to the image folder, or its id")
    label.add_argument("cls", metavar="CLASS", help="class name; 'unsure' or 'skip' also accepted")
    label.add_argument("--create-class", action="store_true",
                       help="create CLASS if the project has no such class (otherwise an unknown name is an "
                            "error naming the nearest classes, so a typo never becomes a class)")
    label.add_argument("--annotator", default="", help="name recorded with the label")
    label.set_defaults(handler=cmd_label)

    train = subparsers.add_parser("train", help="train a new model version and refill the queue")
    train.add_argument("project")
    train.add_argument("--json", action="store_true")
    train.set_defaults(handler=cmd_train)

    evaluate = subparsers.add_parser("evaluate", help="honest accuracy from audit labels, learning curve, stopping advice")
    evaluate.add_argument("project")
    evaluate.add_argument("--json", action="store_true")
    evaluate.set_defaults(handler=cmd_evaluate)

    sim = subparsers.add_parser(
        "simulate", help="replay active learning on a folder with one sub-folder per class",
        description="Replay active learning on labelled images (class = sub-folder name, hidden from the "
                    "learner) against a held-out test split, for each strategy and random.")
    sim.add_argument("--images", required=True,
                     help="folder of images: one sub-folder per class, or any layout with --labels-csv")
    sim.add_argument("--labels-csv", metavar="FILE", default=None,
                     help="the known classes from a CSV with columns path,label (paths relative to --images), "
                          "e.g. the truth.csv that 'inspector demo' writes; images not in it are left out")
    sim.add_argument("--strategy", nargs="+", action="extend", choices=names, default=None, metavar="NAME",
                     help=f"strategies to compare, e.g. --strategy uncertain_diverse margin (default "
                          f"{DEFAULT_STRATEGY}); random is always added. Choices: {', '.join(names)}")
    sim.add_argument("--budget", type=int, default=300, help="labels per run (default 300)")
    sim.add_argument("--batch", type=int, default=10, help="labels per query round (default 10)")
    sim.add_argument("--initial", type=int, default=10, help="first picks before the first model (default 10)")
    sim.add_argument("--seeds", type=int, default=5, help="repetitions with different splits (default 5)")
    sim.add_argument("--test-fraction", type=float, default=0.3, help="held-out share per class (default 0.3)")
    sim.add_argument("--audit-share", type=float, default=None, help="random audit share of each batch (default 0.1)")
    sim.add_argument("--model", choices=("logistic", "svm", "forest"), default="logistic")
    sim.add_argument("--extractor", nargs="+", metavar="NAME", default=None,
                     help="feature extractor(s) to compare side by side (default: the one a new project over these images starts with)")
    sim.add_argument("--pick-sampling", type=float, default=None,
                     help="share of each batch's selection probability spread beyond the strategy's picks, so the "
                          "accuracy estimate can weight them (default: the learner's default)")
    sim.add_argument("--out", default="simulation", help="output folder (default ./simulation)")
    sim.add_argument("--workers", type=int, default=None, help="feature worker processes (default: all cores)")
    sim.add_argument("--target", metavar="FIGURE=VALUE", default=None,
                     help="also report, per strategy, the labels needed to reach this test figure "
                          "(e.g. accuracy=0.95 or macro_f1=0.9): median and range over seeds")
    sim.add_argument("--quiet", action="store_true", help="no progress bars")
    sim.set_defaults(handler=cmd_simulate)


# --------------------------------------------------------------------------- query / train


def _queue_rows(project, entries):
    rows = []
    for e in entries:
        rows.append({"image_id": e.image_id, "path": project.image(e.image_id).path, "reason": e.reason,
                     "strategy": e.strategy, "score": e.score, "model_version": e.model_version, "audit": e.audit})
    return rows


def cmd_query(args: argparse.Namespace) -> int:
    from inspector.core.learning import learner

    if args.n < 1:
        raise UserError("-n must be at least 1")
    project = open_project(args.project)
    try:
        entries = project.queue()
        if args.strategy is not None or len(entries) < args.n:
            settings = learner.LearnerSettings.from_project(project)
            learner.retrain(project, settings, n=max(args.n, settings.queue_size), strategy=args.strategy)
            entries = project.queue()
        rows = _queue_rows(project, entries[: args.n])
        if args.json:
            print_json(rows)
        else:
            if not rows:
                print("Nothing to label: every image is labelled, skipped or marked unsure.")
            for i, r in enumerate(rows, 1):
                print(f"{i:3d}. {r['path']}  (id {r['image_id']}; {r['reason']})")
    finally:
        project.close()
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from inspector.core.learning import learner

    project = open_project(args.project)
    try:
        result = learner.retrain(project)
        audit = result.metrics.get("audit")
        out = {"version": result.version, "n_labels": result.n_labels, "queued": result.queued,
               "audit_accuracy": audit and audit["accuracy"], "audit_accuracy_ci": audit and audit["accuracy_ci"],
               "n_audit": result.metrics.get("n_audit", 0)}
        if args.json:
            print_json(out)
        elif result.version is None:
            print(f"No labels yet: queued {result.queued} cold-start images (representative and unusual ones).")
        else:
            line = f"Model version {result.version} trained on {result.n_labels} labels; {result.queued} images queued."
            if audit:
                lo, hi = audit["accuracy_ci"]
                line += (f" Estimated accuracy {audit['accuracy']:.1%} (95 % interval {lo:.1%}-{hi:.1%}, "
                         f"from {audit['n_audit']} random audit labels).")
            else:
                line += " No audit labels yet, so no accuracy estimate."
            print(line)
    finally:
        project.close()
    return 0


# --------------------------------------------------------------------------- label


def cmd_label(args: argparse.Namespace) -> int:
    project = open_project(args.project)
    try:
        image_id = project.find_image(args.image)
        if image_id is None and args.image.isdigit():
            try:
                project.image(int(args.image))
                image_id = int(args.image)
            except Exception:
                image_id = None
        if image_id is None:
            raise UserError(f"no image {args.image!r} in this project (give its path relative to "
                            f"{project.image_root} or its id)")
        from inspector.workflow import labelling

        def give(kind: str, class_id=None) -> bool:
            # the app's labelling path: a command carrying the audit flag of the image's queue entry
            command = labelling.label_for_shown(image_id, project.queue_entry(image_id), kind, class_id,
                                                annotator=args.annotator)
            return labelling.write(project, command)

        name = args.cls
        if name.lower() in ("unsure", "skip"):
            give(name.lower())
            print(f"Marked {project.image(image_id).path} as {name.lower()}.")
            return 0
        record = project.class_by_name(name)
        if record is None:
            if not args.create_class:
                from inspector.core.labels_io import unknown_classes_message

                raise UserError(unknown_classes_message([name], [c.name for c in project.classes()],
                                                        "--create-class"))
            class_id = project.add_class(name)
            print(f"Created class {name!r}.")
        else:
            class_id = record.id
        audit = give("class", class_id)
        # add_label commits durably before it returns, so acknowledging now is honest
        print(f"Labelled {project.image(image_id).path} as {name}" + (" (audit pick)." if audit else "."))
    finally:
        project.close()
    return 0


# --------------------------------------------------------------------------- evaluate


def cmd_evaluate(args: argparse.Namespace) -> int:
    from inspector.core.learning import learner

    from inspector.core.learning import stopping

    project = open_project(args.project, read_only=True)
    try:
        report = learner.evaluation(project)
        target, budget = stopping.read_goals(project)
        if "escape" not in report:  # the escape estimate recorded with the latest model version
            latest = project.latest_model_version()
            report["escape"] = ((latest.metrics or {}).get("escape") if latest else None)
    finally:
        project.close()
    report["goals"] = goals_report(report, target, budget)
    if args.json:
        print_json(report)
        return 0
    print(f"Labels: {report['n_labels']} ({report['n_audit']} random audit labels)")
    if report["estimate"] is not None:
        lo, hi = report["interval"]
        print(f"Estimated accuracy: {report['estimate']:.1%}  95 % interval {lo:.1%}-{hi:.1%}")
        print(f"  method: {report['method']}")
        for key, e in report["estimators"].items():
            # an entry recorded under another method is a fallback to it (with too few audit labels
            # the prediction-powered one is the audit one), listed under its own key already
            if e.get("estimate") is not None and key != report["method_key"] and e.get("method", key) == key:
                elo, ehi = e["interval"]
                print(f"  also: {e['method_words']}: {e['estimate']:.1%} ({elo:.1%}-{ehi:.1%})")
    per_class = report.get("classes_estimate") or {}
    if per_class.get("macro_f1") is not None:
        if per_class.get("method") == "difference":
            print("Per class (" + per_class["method_words"] + "; the same sampled labels as the accuracy, coverage "
                  "measured by tests/benchmarks/bench_estimators.py):")
        else:
            print("Per class (" + per_class["method_words"] + "; coverage not yet measured, the audit figures "
                  "below are the validated ones):")
        for name, r in per_class["per_class"].items():
            rec = "-" if r["recall"] is None else f"{r['recall']:.0%} ({_pct_interval(r['recall_interval'])})"
            prec = "-" if r["precision"] is None else f"{r['precision']:.0%} ({_pct_interval(r['precision_interval'])})"
            print(f"  {name:20s} recall {rec:18s} precision {prec}")
        print(f"  macro-F1 {per_class['macro_f1']:.3f} ({_pct_interval(per_class['macro_f1_interval'], 3)})")
        if per_class.get("escape_rate") is not None:
            print(f"  escape rate (defective parts passed without review) {per_class['escape_rate']:.1%} "
                  f"({_pct_interval(per_class['escape_rate_interval'])})")
    audit = report["audit_estimate"]
    if audit:
        lo, hi = audit["accuracy_ci"]
        print(f"Audit labels alone (model trained without them): "
              f"{audit['accuracy']:.1%}  95 % interval {lo:.1%}-{hi:.1%}")
        if audit["macro_f1_ci"]:
            flo, fhi = audit["macro_f1_ci"]
            print(f"Estimated macro-F1: {audit['macro_f1']:.3f}  95 % interval {flo:.3f}-{fhi:.3f}")
        elif audit.get("macro_f1") is not None:
            print(f"Estimated macro-F1: {audit['macro_f1']:.3f}  ({audit.get('macro_f1_ci_note') or 'no interval'})")
        print("Recall per class (audit labels):")
        for name, r in audit["per_class_recall"].items():
            if r["n"]:
                print(f"  {name:20s} {r['recall']:.0%}  ({r['ci'][0]:.0%}-{r['ci'][1]:.0%}, n={r['n']})")
            else:
                print(f"  {name:20s} no audit labels")
        names = audit["classes"]
        width = max(6, *(len(str(n)) for n in names))
        print("Confusion on audit labels (rows: label, columns: prediction):")
        print(" " * (width + 2) + " ".join(f"{str(n)[:width]:>{width}s}" for n in names))
        for name, row in zip(names, audit["confusion"]):
            print(f"  {str(name):{width}s}" + " ".join(f"{v:>{width}d}" for v in row))
    else:
        print("No audit labels yet: label the images queued as 'audit' to get an honest estimate.")
    cv = report["cross_validation_optimistic"]
    if cv and cv["accuracy"] is not None:
        print(f"Cross-validation on all labels (OPTIMISTIC, labels were chosen actively): "
              f"accuracy {cv['accuracy']:.1%}, macro-F1 {cv['macro_f1']:.3f}")
    escape = report.get("escape_estimate")
    if escape and escape.get("escape_rate") is not None:
        lo, hi = escape["escape_rate_ci"]
        print(f"Escape rate (audit labels; defective parts passed without review): {escape['escape_rate']:.1%}  "
              f"95 % interval {lo:.1%}-{hi:.1%} ({escape['n_defective']} defective); review share "
              f"{escape['review_share']:.0%}")
    threshold = report.get("review_threshold") or {}
    if threshold.get("explanation"):
        print(threshold["explanation"])
    print_operating_points(threshold)
    calibration = report.get("calibration") or {}
    reliability = calibration.get("reliability_audit") or calibration.get("reliability")
    if reliability and reliability.get("ece") is not None:
        from inspector.core.learning.calibration import floor_words

        print(f"Calibration error (ECE): {reliability['ece']:.3f} on {reliability['n']} out-of-sample predictions"
              f"{floor_words(reliability)}")
    print(report["stopping"]["message"])
    goals = report["goals"]
    if goals["target"] is None and goals["budget"] is None:
        print("No target or budget set (inspector target PROJECT accuracy=0.95 --budget 400).")
    for sentence in (goals["target_sentence"], goals["budget_sentence"]):
        if sentence:
            print(sentence)
    needed = goals.get("labels_still_needed")
    if needed and needed["status"] != "reached":
        print(needed["message"])
    return 0


def goals_report(report: dict, target, budget) -> dict:
    """Target, budget, where the project stands and the labels still needed, for `evaluate`.

    Judged on the report's own (freshly trained) estimate; labels counted as the report does."""
    from inspector.core.learning import stopping

    status = stopping.goal_status(target, budget, int(report.get("n_labels") or 0), report)
    out = status.as_dict()
    if target is None:
        out["labels_still_needed"] = None
    elif status.target_shown:
        out["labels_still_needed"] = {"status": "reached", "until_crossing": None, "until_shown": None,
                                      "message": "The target is shown: no more labels are needed for it."}
    else:
        out["labels_still_needed"] = stopping.labels_still_needed(report.get("learning_curve") or [], target)
    return out


# --------------------------------------------------------------------------- simulate


def cmd_simulate(args: argparse.Namespace) -> int:
    from inspector.core.extractor_choice import default_extractor_for_folder
    from inspector.core.features import get_extractor
    from inspector.core.learning.simulate import (SimulationSettings, folder_dataset, print_estimator_table,
                                                  side_by_side, simulate, write_outputs)
    from inspector.core.learning.strategies import DEFAULT_AUDIT_SHARE, DEFAULT_PICK_SAMPLING, DEFAULT_STRATEGY

    from inspector.core.learning import stopping

    target = stopping.parse_target(args.target) if args.target else None
    if target is not None and target.figure not in ("accuracy", "macro_f1"):
        raise UserError("simulate can plan for an accuracy or macro-F1 target (its test split has no acceptable classes)")
    out = Path(args.out)
    images = Path(args.images)
    if not images.is_dir():
        raise UserError(f"{images} is not a folder")
    if args.extractor:
        extractors = list(dict.fromkeys(args.extractor))
        for name in extractors:
            get_extractor(name)  # an unknown name is one line before any image is read
    else:
        # replay with the features a new project over these images would start with, so the
        # labels it says similar data needs are the labels a project would need
        chosen, why = default_extractor_for_folder(images)
        extractors = [chosen]
        print(f"Features: {chosen} ({why}; choose others with --extractor)")
    summaries = {}
    for name in extractors:
        settings = SimulationSettings(
            strategies=args.strategy or [DEFAULT_STRATEGY], budget=args.budget, batch=args.batch, initial=args.initial,
            seeds=args.seeds, test_fraction=args.test_fraction,
            audit_share=DEFAULT_AUDIT_SHARE if args.audit_share is None else args.audit_share, kind=args.model,
            pick_sampling=DEFAULT_PICK_SAMPLING if args.pick_sampling is None else args.pick_sampling)
        cache = out / f"features-{name}.npz"
        with terminal_progress(f"Reading images ({name})", enabled=not args.quiet) as progress:
            X, y, class_names, _ = folder_dataset(images, workers=args.workers, progress=progress,
                                                  cache=cache, extractor=name,
                                                  labels_csv=Path(args.labels_csv) if args.labels_csv else None)
        with terminal_progress(f"Simulating ({name})", enabled=not args.quiet, unit="steps") as progress:
            summaries[name] = simulate(X, y, class_names, settings, progress=progress)
    summary = side_by_side(summaries)
    if target is not None:
        summary["labels_to_target"] = stopping.labels_to_target(summary, target)
    paths = write_outputs(summary, out)
    print_table(summary, file=sys.stdout)
    if target is not None:
        print("\n".join(stopping.labels_to_target_lines(summary["labels_to_target"])))
    print_estimator_table(summary, file=sys.stdout)
    for name, e in (summary.get("extractors") or {}).items():
        print(f"All labels with {name}: accuracy {e['all_labels']['accuracy']:.3f}, "
              f"macro-F1 {e['all_labels']['macro_f1']:.3f}")
    print(f"Wrote {paths['summary']}, {paths['curves']} and {paths['plot']}")
    return 0


#: the columns of print_table, in words (printed under the table)
TABLE_LEGEND = """Columns:
  acc@N             mean accuracy on the held-out test images after N labels
  area acc, area F1 area under the accuracy / macro-F1 curve (0-1; higher = good with fewer labels)
  90% / 95% of all  labels needed to reach 90 % / 95 % of the accuracy of a model trained on every image
  all classes seen  labels until every class had been picked at least once (median over seeds)
  not reached       not within the labelling budget"""


def print_table(summary: dict, file=sys.stdout) -> None:
    """A plain-text table of the simulation summary, with its columns explained in words."""
    counts = summary["label_counts"]
    marks = [c for c in (20, 50, 80, 100, 150, 200, 300) if c in counts] or counts[-3:]
    all_acc = summary["all_labels"]["accuracy"]
    print(f"A model trained on every non-test image: accuracy {all_acc:.3f}, macro-F1 "
          f"{summary['all_labels']['macro_f1']:.3f} ({summary['settings']['seeds']} seeds, "
          f"{summary['settings']['test_fraction']:.0%} of the images held out for testing)", file=file)
    width = max(18, *(len(n) + 1 for n in summary["strategies"]))
    columns = [f"acc@{c}" for c in marks] + ["area acc", "area F1", "90% of all", "95% of all", "all classes seen"]
    sizes = [max(7, len(c)) for c in columns]
    print(f"{'strategy':{width}s}" + "  ".join(f"{c:>{n}s}" for c, n in zip(columns, sizes)), file=file)
    for name, s in summary["strategies"].items():
        cells = [f"{s['accuracy_mean'][counts.index(c)]:.3f}" for c in marks]
        cells += [f"{s['area_under_accuracy_curve']:.4f}", f"{s['area_under_macro_f1_curve']:.4f}",
                  _n(s["labels_to_90pct_of_all_labels_accuracy"]), _n(s["labels_to_95pct_of_all_labels_accuracy"]),
                  _n(s["labels_until_every_class_seen_median"])]
        print(f"{name:{width}s}" + "  ".join(f"{c:>{n}s}" for c, n in zip(cells, sizes)), file=file)
    print(TABLE_LEGEND, file=file)
    cov = [(n, s["audit_coverage"]) for n, s in summary["strategies"].items() if s.get("audit_coverage")]
    if cov:
        print("How often the 95 % interval from the random audit labels contained the true test accuracy "
              "(of the model trained without them / of the current model):", file=file)
        for name, c in cov:
            if c["covers_audit_model"] is not None:
                print(f"  {name:{width}s} {c['covers_audit_model']:.0%} / {c['covers_current_model']:.0%}"
                      f" over {c['points']} points", file=file)
            else:
                print(f"  {name:{width}s} no audit labels within the budget", file=file)


def _pct_interval(ci, digits: int = 0) -> str:
    if not ci:
        return "no interval"
    if digits:
        return f"{ci[0]:.{digits}f}-{ci[1]:.{digits}f}"
    return f"{ci[0]:.0%}-{ci[1]:.0%}"


def _n(v) -> str:
    """A label count for the table; "not reached" for a target not reached within the budget."""
    if v is None or not math.isfinite(float(v)):
        return "not reached"
    return str(int(v)) if float(v).is_integer() else f"{v:.1f}"
