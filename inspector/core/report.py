"""A self-contained HTML report of a project's model for the quality engineer to file.

One file, no external resources: plots are PNGs drawn with matplotlib's Agg backend and inlined
as base64, the stylesheet is inline, so the report opens offline and prints as it looks. The
headline figures are the honest audit estimates; cross-validation on all labels is shown only
under a heading that calls it optimistic.
"""

from __future__ import annotations

import base64
import html
import io
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

import numpy as np

from inspector.core.errors import UserError
from inspector.core.learning.metrics import per_class_precision_recall
from inspector.core.learning import estimators
from inspector.core.version import __version__

_CSS = """
body { font-family: -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif; color: #1d1d1f;
       max-width: 60rem; margin: 2rem auto; padding: 0 1.5rem; line-height: 1.45; }
h1 { font-size: 1.7rem; margin-bottom: .2rem; } h2 { font-size: 1.25rem; border-bottom: 1px solid #ccc;
     padding-bottom: .2rem; margin-top: 2rem; }
.sub { color: #555; margin-top: 0; } .note { color: #555; font-size: .92rem; }
.warn { background: #fff4e5; border-left: 4px solid #f0a030; padding: .5rem .8rem; }
.headline { font-size: 1.4rem; font-weight: 600; }
table { border-collapse: collapse; margin: .6rem 0; font-size: .95rem; }
th, td { border: 1px solid #ccc; padding: .3rem .6rem; text-align: right; }
th:first-child, td:first-child { text-align: left; } th { background: #f3f3f3; }
table.facts td, table.facts th { text-align: left; }
.swatch { display: inline-block; width: .8rem; height: .8rem; border-radius: 2px; margin-right: .4rem;
          vertical-align: -1px; }
figure { margin: 1rem 0; } figure img { max-width: 100%; border: 1px solid #ddd; }
figcaption { color: #555; font-size: .9rem; }
section { break-inside: avoid; page-break-inside: avoid; }
@media print { body { margin: 0; max-width: none; } h2 { break-after: avoid; } }
"""


def _png(fig) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _pct(value: Optional[float]) -> str:
    return "–" if value is None else f"{value:.1%}"


def _interval(ci) -> str:
    return "–" if not ci else f"{ci[0]:.1%} – {ci[1]:.1%}"


def learning_curve_plot(curve: list[dict], target: Optional[float] = None) -> Optional[str]:
    """PNG data URL of the estimated accuracy against labels with its 95 % interval, its one-sided
    95 % lower bound and (given) the accuracy target; None without points."""
    points = [p for p in curve if p.get("accuracy") is not None and p.get("accuracy_ci")]
    if not points:
        return None
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    x = [p["n_labels"] for p in points]
    y = [p["accuracy"] for p in points]
    lo = [p["accuracy_ci"][0] for p in points]
    hi = [p["accuracy_ci"][1] for p in points]
    fig, ax = plt.subplots(figsize=(7, 3.6))
    ax.fill_between(x, lo, hi, color="#1f77b4", alpha=0.2, label="95 % interval")
    ax.plot(x, y, "o-", color="#1f77b4", label="estimated accuracy")
    bounded = [p for p in points if p.get("accuracy_bound") is not None]
    if bounded:
        # a target on accuracy is judged on this bound (as the dashboard's curve draws it)
        ax.plot([p["n_labels"] for p in bounded], [p["accuracy_bound"] for p in bounded], ":", color="#1f77b4",
                label="one-sided 95 % lower bound")
    if target is not None:
        ax.axhline(target, color="#2ca02c", linestyle="--", linewidth=1, label=f"target {100 * target:g} %")
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("labels")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    return _png(fig)


def confusion_plot(confusion: np.ndarray, names: list[str], title: str) -> str:
    """PNG data URL of a confusion matrix (rows: true class, columns: predicted), counts written in."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    m = np.asarray(confusion)
    rows = m.sum(axis=1, keepdims=True)
    share = np.divide(m, rows, out=np.zeros(m.shape, float), where=rows > 0)
    size = 1.6 + 0.75 * len(names)
    fig, ax = plt.subplots(figsize=(size + 1.5, size))
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(names)), names, rotation=40, ha="right")
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=10)
    for i in range(m.shape[0]):
        for j in range(m.shape[1]):
            if m[i, j]:
                ax.text(j, i, str(m[i, j]), ha="center", va="center", color="white" if share[i, j] > 0.55 else "black")
    return _png(fig)


def per_class_rows(confusion: np.ndarray, names: list[str]) -> list[dict]:
    """The report's table rows: precision and recall per class from a confusion matrix, each with
    a 95 % Wilson interval (:func:`metrics.per_class_precision_recall`); ``n`` is the class's count."""
    return [{"class": r["class"], "n": r["n_true"], "recall": r["recall"], "recall_ci": r["recall_ci"],
             "precision": r["precision"], "precision_ci": r["precision_ci"]}
            for r in per_class_precision_recall(confusion, names)]


def per_class_plot(rows: list[dict], title: str) -> Optional[str]:
    """PNG data URL of precision and recall bars with interval whiskers."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    if not rows:
        return None
    x = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(max(5, 1.1 * len(rows) + 2), 3.4))
    for offset, key, color in ((-0.2, "precision", "#ff7f0e"), (0.2, "recall", "#1f77b4")):
        values = np.array([r[key] if r[key] is not None else np.nan for r in rows])
        ci = [r[f"{key}_ci"] for r in rows]
        err = np.array([[v - c[0], c[1] - v] if c and not np.isnan(v) else [0, 0] for v, c in zip(values, ci)]).T
        ax.bar(x + offset, values, width=0.38, color=color, label=key, yerr=err, capsize=3)
    ax.set_xticks(x, [r["class"] for r in rows], rotation=30, ha="right")
    ax.set_ylim(0, 1.05)
    ax.set_title(title, fontsize=10)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)  # outside: never hides a bar
    ax.grid(axis="y", alpha=0.3)
    return _png(fig)


def _table(headers: list[str], rows: list[list], css_class: str = "") -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table class='{css_class}'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _figure(data_url: Optional[str], caption: str, alt: str) -> str:
    if not data_url:
        return ""
    return (f'<figure><img src="{data_url}" alt="{html.escape(alt)}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def build_report_html(project) -> str:
    """The report as one HTML string (see :func:`write_report`)."""
    from inspector.core.extractor_choice import project_extractor
    from inspector.core.learning import metrics, stopping
    from inspector.core.learning.learner import LearnerSettings
    from inspector.core.modelfile import train_for_export

    esc = html.escape
    classes = project.classes()
    names = {c.id: c.name for c in classes}
    colors = {c.name: c.color for c in classes}
    latest = project.latest_labels()
    counts = project.counts()
    per_class = {c.name: 0 for c in classes}
    for class_id in latest.values():
        per_class[names[class_id]] += 1
    extractor = project_extractor(project)
    settings = LearnerSettings.from_project(project)
    versions = project.model_versions()
    curve = metrics.learning_curve(versions)
    plateau = metrics.plateau_signal(curve, class_names=names)

    parts = [f"<h1>Model report — {esc(project.name)}</h1>",
             f"<p class='sub'>Written {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')} by Inspector "
             f"{esc(__version__)} from {esc(str(project.path))}</p>"]

    try:
        training = train_for_export(project)
    except UserError as exc:
        training = None
        parts.append(f"<p class='warn'>No model yet: {esc(str(exc))}.</p>")

    # the engineer's target and budget, judged on the estimate this report shows (as the dashboard does)
    target, budget = stopping.read_goals(project)
    goals = (None if target is None and budget is None else
             stopping.goal_status(target, budget, len(latest), training.metrics if training else None))

    # ---- honest headline
    parts.append("<section><h2>How good is the model (honest estimate)</h2>")
    audit = training.metrics.get("audit") if training else None
    shown = training.metrics.get("estimate") if training else None
    has_audit = bool(audit and audit.get("accuracy") is not None)
    bound = (shown or {}).get("lower_bound")
    bound_words = (f"; at least {_pct(bound)} with one-sided 95 % confidence, the figure an accuracy target is "
                   "judged on" if bound is not None else "")
    if shown and shown.get("estimate") is not None and shown.get("method") != "audit":
        parts.append(f"<p class='headline'>Estimated accuracy {_pct(shown['estimate'])} "
                     f"<span class='note'>(95 % interval {_interval(shown['interval'])}{esc(bound_words)}; from "
                     f"{esc(estimators.method_words(shown))}; {shown.get('n_labels', 0)} labels, "
                     f"{shown.get('n_audit', 0)} of them random audit labels)</span></p>")
        if has_audit:
            parts.append(f"<p>The random audit labels alone: {_pct(audit['accuracy'])} (95 % interval "
                         f"{_interval(audit['accuracy_ci'])}, {audit['n_audit']} labels).</p>")
        else:
            # the estimate from every sampled label exists before any audit label is scored (as on
            # the dashboard): said, with what it has not been checked against yet
            parts.append("<p class='warn'>No random audit label has been scored yet to check this estimate against: "
                         "label the audit images the queue offers (they are picked at random).</p>")
        by_estimator = estimators.describe_classes(shown.get("classes"), {str(c.id): c.name for c in classes})
        if by_estimator:
            parts.append(f"<p>{esc(by_estimator)}</p>")
    elif has_audit:
        parts.append(f"<p class='headline'>Estimated accuracy {_pct(audit['accuracy'])} "
                     f"<span class='note'>(95 % interval {_interval(audit['accuracy_ci'])}{esc(bound_words)}; "
                     f"from {audit['n_audit']} random audit labels)</span></p>")
    elif training is None:
        parts.append("<p class='warn'>No current model, so no accuracy estimate (see above).</p>")
    elif not audit:
        parts.append("<p class='warn'>No audit labels yet, so there is no honest accuracy estimate. Label the audit "
                     "images the queue offers (they are picked at random) to get one.</p>")
    else:
        parts.append("<p class='warn'>The audit labels are all of one kind or too few to estimate accuracy.</p>")
    if has_audit:
        if audit.get("macro_f1") is not None:
            interval = (f"95 % interval {_f1_ci(audit)}" if audit.get("macro_f1_ci")
                        else esc(audit.get("macro_f1_ci_note") or "no interval"))
            parts.append(f"<p>Macro-F1 of the random audit labels {audit['macro_f1']:.3f} ({interval}).</p>")
    if has_audit or (shown and shown.get("estimate") is not None):
        parts.append("<p class='note'>Basis: every label is scored with predictions of a model that did not train "
                     "on it. Images the learner chose itself count only when they were drawn with a recorded "
                     "probability (weighted by it), or as the known part of the pool; the random audit labels "
                     "correct the model's own expected accuracy over every image.</p>")
    if goals is not None:
        for sentence in (goals.target_sentence(), goals.budget_sentence()):
            if sentence:
                parts.append(f"<p><b>{esc(sentence)}</b></p>")
    needed = (stopping.labels_still_needed(curve, goals.target)
              if goals is not None and goals.target is not None and not goals.target_shown else None)
    more = stopping.more_labels_sentence(goals, plateau["message"], needed)
    parts.append(f"<p><b>More labels?</b> {esc(more)}</p></section>")

    # ---- learning curve
    parts.append("<section><h2>Learning curve</h2>")
    plot = learning_curve_plot(curve, goals.target.value if goals is not None and goals.target is not None
                               and goals.target.figure == "accuracy" else None)
    if plot:
        parts.append(_figure(plot, "Estimated accuracy of each model version against the number of labels "
                                   "(the estimate shown with each version); the band is the 95 % interval, the dotted "
                                   "line its one-sided 95 % lower bound.",
                             "learning curve"))
    else:
        parts.append("<p class='note'>No model version has an audit estimate yet.</p>")
    parts.append("</section>")

    # ---- confusion and per-class figures
    if training is not None:
        class_names = [names[int(c)] for c in training.snapshot.classes]
        if audit and audit.get("n_audit"):
            confusion, basis = np.asarray(audit["confusion"]), "audit labels (honest)"
        else:
            confusion, basis = None, None
        cv = training.cross_validation
        parts.append("<section><h2>Which classes it confuses</h2>")
        if confusion is not None:
            parts.append(_figure(confusion_plot(confusion, class_names, f"Confusion on {basis}"),
                                 "Rows: true class; columns: predicted class; colour: share of the row.",
                                 "confusion matrix (audit)"))
            rows = per_class_rows(confusion, class_names)
            parts.append(_figure(per_class_plot(rows, "Precision and recall on audit labels (95 % intervals)"),
                                 "Per-class precision and recall from the audit labels, with 95 % Wilson intervals.",
                                 "per-class precision and recall"))
            parts.append("<h3>Per class (audit labels)</h3>" + _per_class_table(rows, colors))
        if cv.get("confusion") is not None:
            parts.append("<h3>Cross-validation on all labels — OPTIMISTIC</h3>"
                         "<p class='warn'>These figures come from the labels the learner chose itself; they are "
                         "not a random sample of production images and usually flatter the model. Do not quote "
                         "them as the model's accuracy.</p>"
                         f"<p>Optimistic accuracy {_pct(cv['accuracy'])}, macro-F1 {cv['macro_f1']:.3f} "
                         f"on {cv['n']} labels.</p>")
            cv_rows = per_class_rows(np.asarray(cv["confusion"]), class_names)
            parts.append(_figure(confusion_plot(np.asarray(cv["confusion"]), class_names,
                                                "Confusion, cross-validation (OPTIMISTIC)"),
                                 "Cross-validated on all labels: optimistic.", "confusion matrix (optimistic)"))
            if confusion is None:
                parts.append(_figure(per_class_plot(cv_rows, "Precision and recall, cross-validation (OPTIMISTIC)"),
                                     "Optimistic per-class figures (cross-validation on actively chosen labels).",
                                     "per-class precision and recall (optimistic)"))
            parts.append("<h4>Per class (optimistic)</h4>" + _per_class_table(cv_rows, colors))
        parts.append("</section>")
        from inspector.core.confidence_report import confidence_section

        parts.append(confidence_section(training.metrics, training.threshold,
                                        [names[int(c)] for c in training.snapshot.classes
                                         if int(c) in training.snapshot.acceptable]))

    # ---- model settings and data
    parts.append("<section><h2>The model and the data it learned from</h2>")
    setting_rows = [["model kind", esc(settings.kind)], ["query strategy", esc(settings.strategy)],
                    ["audit share of each queue", f"{settings.audit_share:.0%}"],
                    ["random state", str(settings.random_state)],
                    ["model versions trained", str(len(versions))],
                    ["latest version", "–" if not versions else f"{versions[-1].version} "
                                                               f"({esc(versions[-1].created_at)}, {versions[-1].n_labels} labels)"],
                    ["feature extractor", f"{esc(extractor.name)} version {extractor.version}"],
                    ["extractor settings", esc(", ".join(f"{k}={v}" for k, v in extractor.params().items()
                                                         if k not in ('name', 'version')))]]
    parts.append(_table(["setting", "value"], setting_rows, "facts"))
    data_rows = [["image folder", esc(str(project.image_root))], ["usable images", str(counts["images"])],
                 ["unreadable files", str(counts["errors"])], ["labelled images", str(len(latest))],
                 ["audit labels", str(len(project.audit_labels()))]]
    parts.append(_table(["data", "value"], data_rows, "facts"))
    parts.append(_table(["class", "labels"], [[f"<span class='swatch' style='background:{esc(colors[n])}'></span>"
                                                f"{esc(n)}", str(k)] for n, k in per_class.items()]))
    parts.append("</section>")

    from inspector.core.agreement import report_section_html

    parts.append(report_section_html(project, esc))  # several inspectors (labelling packs); '' otherwise
    body = "\n".join(parts)
    return (f"<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
            f"<title>Inspector report — {esc(project.name)}</title><style>{_CSS}</style></head>"
            f"<body>\n{body}\n</body></html>\n")


def _f1_ci(audit: dict) -> str:
    ci = audit.get("macro_f1_ci")
    return "–" if not ci else f"{ci[0]:.3f} – {ci[1]:.3f}"


def _per_class_table(rows: list[dict], colors: dict) -> str:
    esc = html.escape
    return _table(["class", "images", "recall", "95 % interval", "precision", "95 % interval"], [
        [f"<span class='swatch' style='background:{esc(colors.get(r['class'], '#999'))}'></span>{esc(r['class'])}",
         str(r["n"]), _pct(r["recall"]), _interval(r["recall_ci"]), _pct(r["precision"]), _interval(r["precision_ci"])]
        for r in rows])


def write_report(project, out_path: Path) -> Path:
    """Write the self-contained HTML report of ``project`` to ``out_path``; return the path.

    Raises :class:`UserError` when the file cannot be written (the previous file, if any, is
    left untouched).
    """
    out_path = Path(out_path)
    if not out_path.parent.is_dir():
        raise UserError(f"folder {out_path.parent} does not exist")
    text = build_report_html(project)
    temporary = out_path.with_name(f".{out_path.name}.{os.getpid()}.part")
    try:
        temporary.write_text(text, encoding="utf-8")
        os.replace(temporary, out_path)
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        raise UserError(f"cannot write {out_path}: {exc.strerror or exc}") from None
    return out_path
