"""The report's "Can the line trust it" section: reliability diagram with the expected calibration
error, escape rate and review share from the audit labels, and the review threshold.

Kept apart from :mod:`inspector.core.report` so the figures about confidence live in one place;
``report.py`` only calls :func:`confidence_section`. No Qt.
"""

from __future__ import annotations

import html
from typing import Optional

from inspector.core.learning.calibration import floor_words


def _pct(value: Optional[float], digits: int = 1) -> str:
    return "–" if value is None else f"{value:.{digits}%}"


def _ci(ci, digits: int = 1) -> str:
    return "–" if not ci else f"{ci[0]:.{digits}%} – {ci[1]:.{digits}%}"


def reliability_plot(reliability: dict, title: str, raw: Optional[dict] = None) -> Optional[str]:
    """PNG data URL of a reliability diagram (accuracy per confidence bin against the diagonal)."""
    from inspector.core.report import _png

    bins = [b for b in reliability.get("bins", []) if b.get("n")]
    if not bins:
        return None
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.6, 4.2))
    ax.plot([0, 1], [0, 1], "--", color="#999", lw=1, label="perfectly calibrated")
    centres = [b["confidence"] for b in bins]
    accuracy = [b["accuracy"] for b in bins]
    sizes = [20 + 180 * b["n"] / max(reliability["n"], 1) for b in bins]
    ax.bar([(b["low"] + b["high"]) / 2 for b in bins], accuracy, width=0.095, color="#1f77b4", alpha=0.25,
           edgecolor="#1f77b4")
    ax.scatter(centres, accuracy, s=sizes, color="#1f77b4", zorder=3,
               label=f"calibrated (ECE {reliability['ece']:.3f})")
    if raw and raw.get("bins"):
        rb = [b for b in raw["bins"] if b.get("n")]
        ax.plot([b["confidence"] for b in rb], [b["accuracy"] for b in rb], "x:", color="#d62728",
                label=f"raw classifier (ECE {raw['ece']:.3f})")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("confidence shown (top class)")
    ax.set_ylabel("share right")
    ax.set_title(title, fontsize=10)
    ax.legend(loc="upper left", fontsize=8)
    ax.grid(alpha=0.3)
    return _png(fig)


def confidence_section(metrics: dict, threshold: dict, acceptable: list[str]) -> str:
    """HTML of the confidence section from a model version's (or export's) ``metrics`` and ``threshold``."""
    esc = html.escape
    parts = ["<section><h2>Can the line trust it: escapes, review, calibration</h2>"]
    parts.append(f"<p>Acceptable classes (may pass the line): <b>{esc(', '.join(acceptable)) or 'none'}</b>; "
                 "every other class is a defect. An <b>escape</b> is a defective part passed without review; the "
                 "escape rate is escapes / defective parts.</p>")
    value = threshold.get("value")
    if value is None:
        why = (threshold.get("explanation") or "").replace("NOT SHOWN SAFE: every part is routed to review. ", "")
        parts.append(f"<p class='warn'><b>Not shown safe: every part is routed to review.</b> {esc(why)}</p>")
    else:
        parts.append(f"<p>Review threshold <b>{value:.3f}</b> ({esc(str(threshold.get('set_by') or 'escape target'))}): "
                     f"a part predicted acceptable passes only when its calibrated probability of being acceptable "
                     f"is at least {value:.3f}; novel parts always go to review; predicted defects go to the defect "
                     f"path. {esc(threshold.get('explanation') or '')}</p>")
    from inspector.core.learning.routing import operating_point_words

    points = [p for p in (threshold.get("operating_points") or []) if operating_point_words(p)]  # whole records only
    if points:
        rows = "".join(
            f"<tr><td>{p['threshold']:.3f}</td><td>{p['escapes']} of {p['n_defective']}</td>"
            f"<td>{_pct(p['escape_upper'])}</td><td>{'yes' if p['meets_target'] else 'no'}</td>"
            f"<td>{_pct(p.get('review_share_images'), 0)}</td><td>{_pct(p.get('review_share_labelled'), 0)}</td></tr>"
            for p in points)
        parts.append("<p>Thresholds an engineer could set (<code>export-model --review-threshold T</code>), each the "
                     "lowest that lets at most 0, 1, 2, ... defective out-of-sample parts pass:</p>"
                     "<table><tr><th>threshold</th><th>defective parts passed</th><th>95 % upper bound on the "
                     "escape rate</th><th>meets the target</th><th>review share, unlabelled images</th>"
                     f"<th>review share, labelled parts</th></tr>{rows}</table>"
                     "<p class='note'>The labelled parts were mostly chosen for being hard, so their escapes and "
                     "review share run higher than on parts to come; the upper bound is what the labels can vouch "
                     "for.</p>")
    parts.append(f"<p class='note'>Escape target {_pct(threshold.get('target'))} of defective parts "
                 f"({esc(str(threshold.get('confidence', '')))}); basis: {esc(str(threshold.get('basis', '')))}.</p>")
    escape = metrics.get("escape")
    if escape and escape.get("n"):
        parts.append("<table><tr><th>from the audit labels</th><th>estimate</th><th>95 % interval</th><th>parts</th></tr>"
                     f"<tr><td>escape rate</td><td>{_pct(escape.get('escape_rate'))}</td>"
                     f"<td>{_ci(escape.get('escape_rate_ci'))}</td><td>{escape['n_defective']} defective</td></tr>"
                     f"<tr><td>review share</td><td>{_pct(escape.get('review_share'), 0)}</td>"
                     f"<td>{_ci(escape.get('review_share_ci'), 0)}</td><td>{escape['n']} audit parts</td></tr></table>")
        parts.append("<p class='note'>Random audit labels, predicted by a model trained without them and routed by "
                     "the rule above.</p>")
    else:
        parts.append("<p class='note'>No audit labels of acceptable and defective parts yet: no honest escape "
                     "estimate.</p>")
    calibration = metrics.get("calibration") or {}
    reliability = calibration.get("reliability_audit")
    if not reliability or (reliability.get("n") or 0) < 20:
        reliability = calibration.get("reliability")
    if reliability and reliability.get("ece") is not None:
        plot = reliability_plot(reliability, f"Reliability on {reliability['n']} out-of-sample predictions",
                                calibration.get("reliability_raw") if reliability is calibration.get("reliability")
                                else None)
        if plot:
            from inspector.core.report import _figure

            parts.append(_figure(plot, f"Reliability diagram: for predictions shown with a given confidence, the "
                                       f"share that were right (dots sized by count). Expected calibration error "
                                       f"{reliability['ece']:.3f}{floor_words(reliability)}. "
                                       f"Basis: {reliability.get('basis', '')}.",
                                 "reliability diagram"))
    if calibration:
        parts.append(f"<p class='note'>Calibration: temperature {calibration.get('temperature', 1):.2f}, shrinkage "
                     f"toward the class prior {calibration.get('shrink', 0):.3f}, fitted on "
                     f"{calibration.get('n_out_of_fold', 0)} out-of-fold predictions ({esc(str(calibration.get('basis', '')))}).</p>")
    parts.append("</section>")
    return "\n".join(parts)
