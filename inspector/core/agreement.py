"""Several people label one project: disagreements, their resolution, and agreement figures.

Latest-wins holds *per annotator*: each person's latest event on an image is their label. When
two people's latest labels on an image are different classes the image is a *disagreement*; a
reviewer settles it with a label of source 'review', which wins over both. Until then it is kept
out of training (setting ``review.exclude_disagreements``, on by default), because training on
either label teaches the model a coin toss.

Agreement between two inspectors is Cohen's kappa over the images both labelled (mostly the
double-labelled share of the packs) with a 95 % interval (see kappa_with_interval); each inspector's agreement
with the model is measured on their *audit* labels (uniformly random picks) against a model
trained without any audit label, so it is not flattered by having seen them.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Optional

import numpy as np

from inspector.core.learning.metrics import wilson_interval

SETTING_EXCLUDE_DISAGREEMENTS = "review.exclude_disagreements"
REVIEW_SOURCE = "review"
BOOTSTRAP_ROUNDS = 1000
UNNAMED = "(unnamed)"


@dataclass(frozen=True)
class Disagreement:
    image_id: int
    labels: dict          # annotator -> class id (their latest label)
    resolved: bool
    resolution: Optional[int]  # class id the reviewer chose


def annotator_key(event: dict) -> str:
    """Who made an event: the annotator's name, else the workstation's, else '(unnamed)'."""
    return event.get("annotator") or event.get("workstation") or UNNAMED


def latest_per_annotator(project) -> tuple[dict, dict, dict]:
    """``(labels, last_ids, reviews)``: ``labels[image][annotator] = (class_id or None, audit)`` from each
    person's latest non-review event, the id of that event, and the latest review event per image
    ``image -> (event id, class id)``."""
    labels: dict[int, dict[str, tuple]] = {}
    last_ids: dict[int, dict[str, int]] = {}
    reviews: dict[int, tuple[int, Optional[int]]] = {}
    class_ids = {c.name: c.id for c in project.classes()}
    for e in project.label_events_full():
        image = int(e["image_id"])
        class_id = class_ids.get(e["class_name"]) if e["kind"] == "class" else None
        if e["source"] == REVIEW_SOURCE:
            reviews[image] = (int(e["id"]), class_id)
            continue
        who = annotator_key(e)
        labels.setdefault(image, {})[who] = (class_id, bool(e["audit"]))
        last_ids.setdefault(image, {})[who] = int(e["id"])
    return labels, last_ids, reviews


def disagreements(project, include_resolved: bool = False) -> list[Disagreement]:
    """Images whose annotators' latest labels are different classes, oldest image first."""
    labels, last_ids, reviews = latest_per_annotator(project)
    found = []
    for image, by_person in sorted(labels.items()):
        classes = {who: c for who, (c, _) in by_person.items() if c is not None}
        if len(set(classes.values())) < 2:
            continue
        review = reviews.get(image)
        resolved = review is not None and review[0] > max(last_ids[image][w] for w in classes)
        if resolved and not include_resolved:
            continue
        found.append(Disagreement(image, classes, resolved, review[1] if resolved else None))
    return found


def unresolved_disagreement_ids(project) -> set[int]:
    return {d.image_id for d in disagreements(project)}


def training_labels(project, labels: dict[int, int]) -> dict[int, int]:
    """``labels`` without the unresolved disagreements when the project setting says so (default)."""
    if not project.get_setting(SETTING_EXCLUDE_DISAGREEMENTS, True):
        return labels
    held = unresolved_disagreement_ids(project)
    return {i: c for i, c in labels.items() if i not in held} if held else labels


def resolve(project, image_id: int, class_id: int, reviewer: str) -> int:
    """Record the reviewer's decision (source 'review'; it wins); keeps the image's audit flag."""
    from inspector.core.errors import UserError

    if not reviewer.strip():
        raise UserError("a resolution needs the reviewer's name")
    history = project.label_history(image_id)
    audit = bool(history and history[-1].audit)
    return project.add_label(image_id, class_id, kind="class", annotator=reviewer.strip(), source=REVIEW_SOURCE,
                             audit=audit)


# ------------------------------------------------------------------ kappa
def cohen_kappa(a: np.ndarray, b: np.ndarray) -> Optional[float]:
    """Cohen's kappa of two label vectors; None when undefined (no items, or chance agreement 1)."""
    a, b = np.asarray(a), np.asarray(b)
    if len(a) == 0:
        return None
    cats, codes = np.unique(np.concatenate([a, b]), return_inverse=True)
    ca, cb = codes[: len(a)], codes[len(a):]
    k = len(cats)
    observed = float(np.mean(ca == cb))
    expected = float(np.dot(np.bincount(ca, minlength=k), np.bincount(cb, minlength=k))) / (len(a) ** 2)
    if expected >= 1.0:
        return None
    return (observed - expected) / (1.0 - expected)


def kappa_with_interval(a, b, rounds: int = BOOTSTRAP_ROUNDS, seed: int = 0) -> dict:
    """Kappa, observed agreement and a 95 % interval over the shared images.

    The interval is the percentile bootstrap, widened where needed to the continuity-corrected
    Wilson interval of the observed agreement mapped through kappa (chance agreement held
    fixed). Why: inspectors mostly agree, and with few shared images nearly every resample agrees
    perfectly, so the bootstrap alone is far too narrow (on simulated NEU labels with error rates
    2 % and 5 % it covered the true kappa 65 % of the time with 15 shared images, 83 % with 30);
    widened, it covered it at least 95 % of the time in every case tried
    (tests/benchmarks/bench_agreement.py).
    """
    a, b = np.asarray(a), np.asarray(b)
    n = len(a)
    kappa = cohen_kappa(a, b)
    out = {"n": int(n), "kappa": kappa, "kappa_ci": None, "kappa_ci_bootstrap": None,
           "observed_agreement": float(np.mean(a == b)) if n else None}
    if kappa is None or n < 5:
        return out
    rng = np.random.default_rng(seed)
    samples = []
    for _ in range(rounds):
        pick = rng.integers(0, n, n)
        value = cohen_kappa(a[pick], b[pick])
        if value is not None:
            samples.append(value)
    cats = np.unique(np.concatenate([a, b]))
    chance = float(sum(np.mean(a == c) * np.mean(b == c) for c in cats))
    low, high = wilson_interval(int(np.sum(a == b)), n)
    mapped = [(low - chance) / (1 - chance), (high - chance) / (1 - chance)]
    if samples:
        boot = [float(np.percentile(samples, 2.5)), float(np.percentile(samples, 97.5))]
        out["kappa_ci_bootstrap"] = boot
        out["kappa_ci"] = [min(boot[0], mapped[0]), max(boot[1], mapped[1])]
    else:
        out["kappa_ci"] = mapped
    return out


def pairwise_kappa(project) -> list[dict]:
    """Cohen's kappa for every pair of annotators who labelled at least one image in common."""
    labels, _, _ = latest_per_annotator(project)
    people: dict[str, dict[int, int]] = {}
    for image, by_person in labels.items():
        for who, (c, _) in by_person.items():
            if c is not None:
                people.setdefault(who, {})[image] = c
    pairs = []
    for first, second in itertools.combinations(sorted(people), 2):
        shared = sorted(set(people[first]) & set(people[second]))
        if not shared:
            continue
        a = np.array([people[first][i] for i in shared])
        b = np.array([people[second][i] for i in shared])
        pairs.append({"annotators": [first, second], **kappa_with_interval(a, b)})
    return pairs


def model_agreement(project) -> list[dict]:
    """Per annotator: how often a model trained without audit labels agrees with their audit labels."""
    from inspector.core.learning.learner import take_snapshot
    from inspector.core.learning.models import fit_model
    from inspector.core.errors import UserError

    labels, _, _ = latest_per_annotator(project)
    audit_by_person: dict[str, dict[int, int]] = {}
    for image, by_person in labels.items():
        for who, (c, audit) in by_person.items():
            if c is not None and audit:
                audit_by_person.setdefault(who, {})[image] = c
    if not audit_by_person:
        return []
    try:
        snapshot = take_snapshot(project)
    except UserError:
        return []
    audited = set().union(*[set(v) for v in audit_by_person.values()])
    row = snapshot.row_of()
    train = [(row[i], c) for i, c in snapshot.labels.items() if i in row and i not in audited]
    if len({c for _, c in train}) < 2:
        return []
    rows, y = zip(*train)
    model = fit_model(snapshot.X[list(rows)], np.asarray(y), snapshot.classes, kind=snapshot.settings.kind,
                      random_state=snapshot.settings.random_state)
    out = []
    for who, items in sorted(audit_by_person.items()):
        images = [i for i in items if i in row]
        if not images:
            continue
        predicted = model.predict(snapshot.X[[row[i] for i in images]])
        agree = int(np.sum(np.asarray(predicted) == np.array([items[i] for i in images])))
        out.append({"annotator": who, "n_audit": len(images), "agreement": agree / len(images),
                    "agreement_ci": list(wilson_interval(agree, len(images)))})
    return out


def agreement_summary(project) -> dict:
    found = disagreements(project, include_resolved=True)
    return {
        "pairs": pairwise_kappa(project),
        "model_agreement": model_agreement(project),
        "disagreements": sum(not d.resolved for d in found),
        "resolved": sum(d.resolved for d in found),
        "exclude_from_training": bool(project.get_setting(SETTING_EXCLUDE_DISAGREEMENTS, True)),
    }


def format_summary(summary: dict) -> list[str]:
    lines = []
    if summary["pairs"]:
        lines.append("Agreement between inspectors (Cohen's kappa over images both labelled, 95 % interval):")
        for p in summary["pairs"]:
            k = "n/a" if p["kappa"] is None else f"{p['kappa']:.3f}"
            ci = f" (95 %: {p['kappa_ci'][0]:.3f} to {p['kappa_ci'][1]:.3f})" if p.get("kappa_ci") else ""
            lines.append(f"  {p['annotators'][0]} / {p['annotators'][1]}: kappa {k}{ci}, "
                         f"{p['observed_agreement']:.1%} agree on {p['n']} images")
    else:
        lines.append("No images labelled by two inspectors yet (give packs a double-labelling share)")
    if summary["model_agreement"]:
        lines.append("Agreement with the model on each inspector's audit labels (model trained without audit labels):")
        for m in summary["model_agreement"]:
            lo, hi = m["agreement_ci"]
            lines.append(f"  {m['annotator']}: {m['agreement']:.1%} ({lo:.1%}-{hi:.1%}) on {m['n_audit']} audit labels")
    lines.append(f"Disagreements waiting for review: {summary['disagreements']} (resolved: {summary['resolved']}); "
                 + ("kept out of training until resolved" if summary["exclude_from_training"]
                    else "NOT kept out of training (setting review.exclude_disagreements is off)"))
    return lines


# ------------------------------------------------------------------ dashboard and report
_model_agreement_cache: dict = {}


def annotators(project) -> set[str]:
    labels, _, _ = latest_per_annotator(project)
    return {who for by_person in labels.values() for who, (c, _) in by_person.items() if c is not None}


def team_summary(project) -> Optional[dict]:
    """The agreement summary when two or more people labelled this project, else None. The
    model-agreement part (one model fit) is reused until the label events change."""
    reader = project.worker_connection() if hasattr(project, "worker_connection") else project
    try:
        if len(annotators(reader)) < 2:
            return None
        key = (str(project.path), reader.label_event_count(), len(reader.model_versions()))
        cached = _model_agreement_cache.get(key)
        if cached is None:
            cached = model_agreement(reader)
            _model_agreement_cache.clear()
            _model_agreement_cache[key] = cached
        found = disagreements(reader, include_resolved=True)
        return {"pairs": pairwise_kappa(reader), "model_agreement": cached,
                "disagreements": sum(not d.resolved for d in found), "resolved": sum(d.resolved for d in found),
                "exclude_from_training": bool(reader.get_setting(SETTING_EXCLUDE_DISAGREEMENTS, True))}
    finally:
        if reader is not project:
            reader.close()


def _pair_row(pair: dict, esc) -> str:
    agree = "–" if pair["observed_agreement"] is None else f"{pair['observed_agreement']:.1%}"
    kappa = "–" if pair["kappa"] is None else f"{pair['kappa']:.3f}"
    ci = pair.get("kappa_ci")
    interval = "–" if not ci else f"{ci[0]:.3f} to {ci[1]:.3f}"
    who = f"{esc(pair['annotators'][0])} / {esc(pair['annotators'][1])}"
    return f"<tr><td>{who}</td><td>{pair['n']}</td><td>{agree}</td><td>{kappa}</td><td>{interval}</td></tr>"


def report_section_html(project, esc) -> str:
    """The report's section on several inspectors ('' for a project one person labelled)."""
    summary = team_summary(project)
    if summary is None:
        return ""
    parts = ["<section><h2>Agreement between inspectors</h2>",
             "<p class='note'>Cohen's kappa over the images two inspectors both labelled (mostly the "
             "double-labelled share of the labelling packs), with a 95 % interval (bootstrap, widened to the Wilson "
             "interval of the observed agreement where the bootstrap is too narrow); 1 is perfect "
             "agreement, 0 is what chance alone gives.</p>"]
    if summary["pairs"]:
        rows = "".join(_pair_row(p, esc) for p in summary["pairs"])
        parts.append("<table><tr><th>inspectors</th><th>images both labelled</th><th>agree</th><th>kappa</th>"
                     f"<th>95 % interval</th></tr>{rows}</table>")
    else:
        parts.append("<p class='warn'>No image was labelled by two inspectors: give labelling packs a "
                     "double-labelling share to measure agreement.</p>")
    if summary["model_agreement"]:
        rows = "".join(f"<tr><td>{esc(m['annotator'])}</td><td>{m['n_audit']}</td><td>{m['agreement']:.1%}</td>"
                       f"<td>{m['agreement_ci'][0]:.1%}–{m['agreement_ci'][1]:.1%}</td></tr>"
                       for m in summary["model_agreement"])
        parts.append("<h3>Each inspector against the model (audit labels)</h3><table><tr><th>inspector</th>"
                     "<th>audit labels</th><th>model agrees</th><th>95 % interval</th></tr>" + rows + "</table>"
                     "<p class='note'>The model here was trained without any audit label.</p>")
    parts.append(f"<p>Disagreements waiting for review: <b>{summary['disagreements']}</b> "
                 f"(resolved: {summary['resolved']}); "
                 + ("kept out of training until resolved." if summary["exclude_from_training"]
                    else "<span class='warn'>used in training (review.exclude_disagreements is off).</span>")
                 + "</p></section>")
    return "\n".join(parts)
