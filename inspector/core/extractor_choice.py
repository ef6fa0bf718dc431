"""Which feature extractor a project uses, switching it, and an honest comparison of the
extractors on the project's own labels.

No extractor wins everywhere: a pretrained CNN sees shapes that texture statistics miss, texture
statistics keep thin cracks that a 224-pixel CNN input loses. So each project records its own
extractor (setting ``features.extractor``) and every part of Inspector that computes or reads
features asks :func:`project_extractor` instead of assuming the default. A project made before
the choice existed has no setting and keeps working on ``texture``.

:func:`compare_extractors` measures every available extractor on the project's labels:

* with at least :data:`MIN_AUDIT_FOR_COMPARISON` random audit labels (of two or more classes),
  each audit label is predicted by a model trained on every other label (all non-audit labels
  plus the other audit folds: cross-validation over the audit labels only). The audit labels
  are a uniform random sample, so this is an honest estimate of a model trained on about all
  labels;
* otherwise stratified k-fold cross-validation over all labels, labelled *optimistic*: the
  actively chosen labels are the hard and unusual images, not a random sample of production.
  They were chosen where the model on the project's current features was unsure, so this also
  tilts the comparison against the current extractor (measured on a generated set: texture
  0.94 here against 0.98 with every image labelled, the CNN 0.97 against 0.98).
  (The learner has no tuned hyper-parameters, so no inner loop is needed for the estimate of
  one extractor; choosing among extractors is what the paired interval below accounts for.)

Every extractor is scored on the same held-out images with the same folds, so the comparison is
paired: a bootstrap over the held-out images gives 95 % intervals for each extractor's macro-F1
and accuracy and for the difference between the best and each other one. Switching is advised
only when the best is not the current extractor and the interval of its lead over the current
one excludes zero; otherwise the verdict is "cannot tell yet with N labels" (keep the current).
"""

from __future__ import annotations

from pathlib import Path
from dataclasses import asdict, dataclass, field
from typing import Optional, Sequence

import numpy as np

from inspector.core.errors import UserError
from inspector.core.progress import CancelToken, Cancelled, ProgressCallback, check, report

#: project setting holding the name of the project's feature extractor
SETTING_EXTRACTOR = "features.extractor"
#: what a project without the setting (made by an older Inspector) computes
LEGACY_EXTRACTOR = "texture"
#: project setting: why the project computes its features with its extractor, in words
SETTING_EXTRACTOR_WHY = "features.extractor_why"
#: fewer random audit labels than this: cross-validation over all labels instead (optimistic)
MIN_AUDIT_FOR_COMPARISON = 30
#: fewer labels than this (in classes with at least two labels): no comparison at all
MIN_LABELS_FOR_COMPARISON = 10
N_BOOTSTRAP = 2000


# --------------------------------------------------------------------------- the project's extractor


def project_extractor_name(project) -> str:
    """The name of the extractor the project computes its features with."""
    return str(project.get_setting(SETTING_EXTRACTOR, LEGACY_EXTRACTOR))


def project_extractor(project):
    """The project's extractor. Raises :class:`UserError` when this Inspector does not offer it."""
    from inspector.core.features import extractor_names, get_extractor

    name = project_extractor_name(project)
    try:
        return get_extractor(name)
    except UserError:
        raise UserError(f"this project computes its features with '{name}', which this Inspector does not offer "
                        f"(available: {', '.join(extractor_names())}); switch with "
                        "'inspector features PROJECT --use NAME'") from None


def project_extractor_key(project) -> tuple[str, int]:
    """``(name, version)`` under which the project's current features are stored."""
    extractor = project_extractor(project)
    return extractor.name, int(extractor.version)


def default_extractor_for_folder(folder: Path) -> tuple[str, str]:
    """The extractor a new project over ``folder`` starts with, and why: the default, or the tiles
    when the folder's images are large parts (a sample of their headers decides)."""
    from inspector.core.features import default_extractor_for_sizes
    from inspector.core.images import sample_longer_sides

    return default_extractor_for_sizes(sample_longer_sides(Path(folder)))


def start_project_with(project, name: Optional[str] = None) -> str:
    """Record the extractor of a new project: ``name``, or the one its images call for
    (:func:`default_extractor_for_folder`). Raises :class:`UserError` for an unknown name.
    Returns the name."""
    from inspector.core.features import get_extractor

    if name is None:
        name, why = default_extractor_for_folder(project.image_root)
        why = f"chosen for the images when the project was created: {why}"
    else:
        why = "chosen when the project was created"
    extractor = get_extractor(name)
    project.set_setting(SETTING_EXTRACTOR, extractor.name)
    project.set_setting(SETTING_EXTRACTOR_WHY, why)
    return extractor.name


def project_extractor_why(project) -> str:
    """Why the project computes its features with its extractor ("" when it does not say: a
    project made before the reason was recorded)."""
    return str(project.get_setting(SETTING_EXTRACTOR_WHY, "") or "")


@dataclass
class ExtractorStatus:
    name: str
    version: Optional[int]
    dim: Optional[int]
    description: str
    current: bool
    features: int  # images with current vectors of this extractor
    images: int  # usable images in the project
    labelled_with_features: int
    available: bool = True
    problem: Optional[str] = None  # why it cannot be used here
    why: str = ""  # the current extractor: why the project uses it


def extractor_status(project) -> list[ExtractorStatus]:
    """Every extractor this Inspector offers (and the project's own if it does not), with how
    many of the project's images already have its features."""
    from inspector.core.features import extractor_names, get_extractor

    current = project_extractor_name(project)
    images = int(project.counts()["images"])
    labelled = set(project.latest_labels())
    out = []
    names = extractor_names()
    for name in names + ([current] if current not in names else []):
        try:
            ex = get_extractor(name)
        except UserError as exc:
            out.append(ExtractorStatus(name, None, None, "", name == current, 0, images, 0, False, str(exc)))
            continue
        except Exception as exc:  # noqa: BLE001 - e.g. weights missing from a broken install: shown, not fatal
            out.append(ExtractorStatus(name, None, None, "", name == current, 0, images, 0, False,
                                       f"cannot be loaded ({type(exc).__name__}: {exc})"))
            continue
        ids, _ = project.feature_vectors(ex.name, ex.version, sorted(labelled)) if labelled else ([], None)
        out.append(ExtractorStatus(name, int(ex.version), int(ex.dim), ex.describe(), name == current,
                                   project.feature_count(ex.name, ex.version), images, len(ids),
                                   why=project_extractor_why(project) if name == current else ""))
    return out


# --------------------------------------------------------------------------- extracting and switching


def extract_features(project, name: str, image_ids: Optional[Sequence[int]] = None, workers: Optional[int] = None,
                     progress: Optional[ProgressCallback] = None, cancel: Optional[CancelToken] = None) -> tuple[int, int]:
    """Compute and store the features of extractor ``name`` for every image lacking them (or
    only for ``image_ids``), in worker processes, saved in small batches so a cancel keeps what
    was done. Returns ``(analysed, errors)``; raises ``Cancelled``."""
    from inspector.core.features import get_extractor
    from inspector.core.ingest import analyse_pending

    extractor = get_extractor(name)  # an unknown name is one clear line before any work starts
    parts = _registered_parts(extractor)
    if parts:
        return _extract_combined(project, extractor, parts, image_ids, workers, progress, cancel)
    return analyse_pending(project, workers=workers, progress=progress, cancel=cancel, extractor=name,
                           image_ids=image_ids)


def _registered_parts(extractor) -> list:
    """The parts of a combined extractor when each is a registered extractor computing exactly
    the same vectors (then the combination is their stored vectors side by side), else []."""
    from inspector.core.features import get_extractor

    parts = list(getattr(extractor, "parts", None) or [])
    try:
        if parts and all(get_extractor(p.name).params() == p.params() for p in parts):
            return parts
    except UserError:
        pass
    return []


def _extract_combined(project, extractor, parts, image_ids, workers, progress, cancel) -> tuple[int, int]:
    """A combined extractor's vectors from its parts' stored vectors: each part extracts only
    what it lacks (switching from texture to texture+cnn computes only the CNN), then the rows
    are put side by side and stored under the combined name and version."""
    analysed = errors = 0
    for part in parts:
        def step(done, total, message="", part=part):
            report(progress, done, total, f"{part.name} features")

        a, e = extract_features(project, part.name, image_ids, workers, step, cancel)
        analysed, errors = max(analysed, a), errors + e
    check(cancel)
    wanted = [i for i, _ in project.pending_analysis(extractor.name, extractor.version)]
    if image_ids is not None:
        chosen = {int(i) for i in image_ids}
        wanted = [i for i in wanted if i in chosen]
    for start in range(0, len(wanted), 2000):  # bounded memory on large projects
        check(cancel)
        batch = wanted[start : start + 2000]
        common = None
        blocks = []
        for part in parts:
            ids, X = project.feature_vectors(part.name, part.version, batch)
            blocks.append(dict(zip(ids.tolist(), X)))
            common = set(ids.tolist()) if common is None else common & set(ids.tolist())
        order = sorted(common or ())
        if order:
            matrix = np.stack([np.concatenate([b[i] for b in blocks]) for i in order]).astype(np.float32)
            project.save_features(order, matrix, extractor.name, extractor.version)
    return analysed, errors


@dataclass
class SwitchResult:
    previous: str
    current: str
    analysed: int
    errors: int
    features: int
    images: int


def switch_extractor(project, name: str, workers: Optional[int] = None, progress: Optional[ProgressCallback] = None,
                     cancel: Optional[CancelToken] = None) -> SwitchResult:
    """Make ``name`` the project's extractor: first extract every image's features with it,
    then change the setting. Labels are untouched (they belong to images, not to vectors) and
    the old extractor's vectors stay cached, so switching back is instant. A cancel (raises
    ``Cancelled``) leaves the project on its old extractor and keeps what was extracted."""
    from inspector.core.features import get_extractor

    previous = project_extractor_name(project)
    extractor = get_extractor(name)
    analysed, errors = extract_features(project, extractor.name, workers=workers, progress=progress, cancel=cancel)
    check(cancel)
    images = int(project.counts()["images"])
    features = project.feature_count(extractor.name, extractor.version)
    if images and not features:
        raise UserError(f"no image could be described with '{extractor.name}'; the project stays on '{previous}'")
    project.set_setting(SETTING_EXTRACTOR, extractor.name)
    project.set_setting(SETTING_EXTRACTOR_WHY, f"switched to from {previous}")
    return SwitchResult(previous, extractor.name, analysed, errors, features, images)


# --------------------------------------------------------------------------- honest comparison


@dataclass
class ExtractorScore:
    name: str
    macro_f1: float
    macro_f1_ci: tuple[float, float]
    accuracy: float
    accuracy_ci: tuple[float, float]
    #: best extractor's macro-F1 minus this one's, with its paired 95 % interval (None for the best)
    behind_best: Optional[float] = None
    behind_best_ci: Optional[tuple[float, float]] = None


@dataclass
class Comparison:
    """The outcome of :func:`compare_on_features` / :func:`compare_extractors`."""

    basis: Optional[str]  # "audit", "cross-validation", or None (too few labels)
    basis_text: str
    optimistic: bool
    n_labels: int  # labels used
    n_audit: int
    n_held_out: int  # predictions scored per extractor
    scores: list[ExtractorScore]  # best first
    best: Optional[str]
    runner_up: Optional[str]
    difference: Optional[float]  # best minus runner-up, macro-F1
    difference_ci: Optional[tuple[float, float]]
    decided: bool  # the interval of the difference to the runner-up excludes zero
    verdict: str
    current: Optional[str] = None
    #: the best one's lead over the current extractor and its paired 95 % interval (None when
    #: the current one is the best or was not compared)
    gain_over_current: Optional[float] = None
    gain_over_current_ci: Optional[tuple[float, float]] = None
    #: switching is advised: the best is not the current one and its lead over it is certain
    switch_advised: bool = False
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


def _fold_predictions(X: np.ndarray, y: np.ndarray, classes: np.ndarray, folds: list[tuple[np.ndarray, np.ndarray]],
                      kind: str, random_state: int, cancel: Optional[CancelToken]) -> np.ndarray:
    """Predicted class of every test row of ``folds`` (train rows, test rows), in fold order."""
    from inspector.core.learning.models import fit_model

    out = []
    for train, test in folds:
        check(cancel)
        out.append(fit_model(X[train], y[train], classes, kind=kind, random_state=random_state).predict(X[test]))
    return np.concatenate(out)


def _bootstrap_scores(y_true: np.ndarray, predictions: dict[str, np.ndarray], n_bootstrap: int,
                      random_state: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Macro-F1 and accuracy of every extractor on the same bootstrap resamples of the held-out
    images: ``name -> (f1[B], accuracy[B])``. Macro-F1 averages over the classes present in the
    resample's truth or predictions (as :func:`metrics.macro_f1` does)."""
    rng = np.random.default_rng([random_state, 104729])
    n = len(y_true)
    n_bootstrap = max(200, min(n_bootstrap, 20_000_000 // max(n, 1)))  # bounded memory (B x n weights)
    counts = rng.multinomial(n, np.full(n, 1.0 / n), size=n_bootstrap).astype(np.float64)  # B x n weights
    classes = np.unique(np.concatenate([y_true, *predictions.values()]))
    truth = (y_true[:, None] == classes[None, :]).astype(np.float64)  # n x C
    out = {}
    for name, pred in predictions.items():
        guess = (pred[:, None] == classes[None, :]).astype(np.float64)
        tp = counts @ (truth * guess)
        fp = counts @ ((1 - truth) * guess)
        fn = counts @ (truth * (1 - guess))
        denom = 2 * tp + fp + fn
        present = denom > 0
        f1 = np.where(present, 2 * tp / np.where(present, denom, 1), 0.0).sum(axis=1) / np.maximum(present.sum(axis=1), 1)
        accuracy = counts @ (pred == y_true).astype(np.float64) / n
        out[name] = (f1, accuracy)
    return out


def _interval(values: np.ndarray) -> tuple[float, float]:
    low, high = np.percentile(values, [2.5, 97.5])
    return float(low), float(high)


def compare_on_features(features: dict[str, np.ndarray], y: np.ndarray, is_audit: np.ndarray,
                        kind: str = "logistic", random_state: int = 0, folds: int = 5,
                        n_bootstrap: int = N_BOOTSTRAP, min_audit: int = MIN_AUDIT_FOR_COMPARISON,
                        current: Optional[str] = None, progress: Optional[ProgressCallback] = None,
                        cancel: Optional[CancelToken] = None) -> Comparison:
    """Compare extractors on the same labelled images (pure).

    ``features`` maps each extractor's name to its rows (the same images in the same order),
    ``y`` holds class ids and ``is_audit`` marks the random audit labels; ``current`` names the
    extractor the project uses now (the verdict is about switching from it). See the module
    docstring for the protocol.
    """
    from sklearn.model_selection import KFold, StratifiedKFold

    from inspector.core.learning.metrics import macro_f1

    names = list(features)
    y = np.asarray(y, np.int64)
    is_audit = np.asarray(is_audit, bool)
    if any(len(X) != len(y) for X in features.values()) or len(is_audit) != len(y):
        raise ValueError("every extractor's rows, the labels and the audit flags must describe the same images")
    notes: list[str] = []
    values, counts = np.unique(y, return_counts=True)
    rare = values[counts < 2]
    if len(rare):
        notes.append(f"{len(rare)} class(es) with a single label left out of the comparison")
    keep = ~np.isin(y, rare)
    y, is_audit = y[keep], is_audit[keep]
    features = {name: np.asarray(X, np.float32)[keep] for name, X in features.items()}
    classes = np.unique(y)
    n, n_audit = len(y), int(is_audit.sum())

    def too_few(reason: str) -> Comparison:
        return Comparison(None, reason, False, n, n_audit, 0, [], None, None, None, None, False,
                          f"cannot tell yet with {n} labels: {reason}", current=current, notes=notes)

    if len(names) < 2:
        return too_few("only one extractor is available")
    if len(classes) < 2 or n < MIN_LABELS_FOR_COMPARISON:
        return too_few(f"label at least {MIN_LABELS_FOR_COMPARISON} images of two or more classes")

    audit_rows = np.flatnonzero(is_audit)
    rest = np.flatnonzero(~is_audit)
    use_audit = (n_audit >= min_audit and len(np.unique(y[audit_rows])) >= 2
                 and len(np.unique(y[rest])) >= 2)
    split: list[tuple[np.ndarray, np.ndarray]] = []
    if use_audit:
        k = min(folds, n_audit)
        for _, test in KFold(k, shuffle=True, random_state=random_state).split(audit_rows):
            test_rows = audit_rows[test]
            split.append((np.setdiff1d(np.arange(n), test_rows), test_rows))
        basis = "audit"
        basis_text = (f"each of the {n_audit} random audit labels predicted by a model trained on every other label "
                      f"({k}-fold over the audit labels): an honest estimate")
    else:
        k = int(min(folds, counts[counts >= 2].min()))
        split = list(StratifiedKFold(k, shuffle=True, random_state=random_state).split(np.zeros(n), y))
        basis = "cross-validation"
        basis_text = (f"{k}-fold cross-validation over all {n} labels (optimistic: actively chosen labels, "
                      "picked where the model on the project's features was unsure, which also tilts the "
                      f"comparison against those features; only {n_audit} random audit labels, {min_audit} "
                      "needed for an honest estimate)")
    test_order = np.concatenate([test for _, test in split])
    y_test = y[test_order]
    predictions: dict[str, np.ndarray] = {}
    for i, name in enumerate(names):
        report(progress, i, len(names), f"evaluating {name}")
        predictions[name] = _fold_predictions(features[name], y, classes, split, kind, random_state, cancel)
    report(progress, len(names), len(names), "intervals")
    boot = _bootstrap_scores(y_test, predictions, n_bootstrap, random_state)
    scores = []
    for name in names:
        pred = predictions[name]
        scores.append(ExtractorScore(name, macro_f1(y_test, pred), _interval(boot[name][0]),
                                     float(np.mean(pred == y_test)), _interval(boot[name][1])))
    scores.sort(key=lambda s: (-s.macro_f1, -s.accuracy, names.index(s.name)))
    best = scores[0]
    for s in scores[1:]:
        s.behind_best = best.macro_f1 - s.macro_f1
        s.behind_best_ci = _interval(boot[best.name][0] - boot[s.name][0])
    runner = scores[1]
    difference, difference_ci = runner.behind_best, runner.behind_best_ci
    decided = bool(difference_ci[0] > 0)
    where = "random audit labels" if use_audit else "cross-validation, optimistic"

    def ci_text(ci) -> str:
        return f"95 % interval {ci[0]:+.3f} to {ci[1]:+.3f}"

    # the question that matters is whether to switch, so the best is set against the current one
    against = next((s for s in scores[1:] if s.name == current), None)
    gain, gain_ci, switch = None, None, False
    if against is not None:
        gain, gain_ci = against.behind_best, against.behind_best_ci
        switch = bool(gain_ci[0] > 0)
        if switch:
            verdict = (f"{best.name} is better than {current} (current): macro-F1 {best.macro_f1:.3f} vs "
                       f"{against.macro_f1:.3f} (+{gain:.3f}, {ci_text(gain_ci)}; {where})")
            if runner is not against and not decided:
                verdict += f"; {best.name} and {runner.name} are within noise of each other"
        else:
            verdict = (f"cannot tell yet with {n} labels: {best.name} is ahead of {current} (current) by {gain:.3f} "
                       f"macro-F1, but the {ci_text(gain_ci)} includes no difference ({where}); keep {current} "
                       "for now and compare again with more random audit labels")
    elif decided:
        verdict = (f"{best.name}{' (current)' if best.name == current else ''} is the best: macro-F1 "
                   f"{best.macro_f1:.3f} vs {runner.macro_f1:.3f} for {runner.name} "
                   f"(+{difference:.3f}, {ci_text(difference_ci)}; {where})")
    else:
        verdict = (f"cannot tell yet with {n} labels: {best.name} is ahead of {runner.name} by {difference:.3f} "
                   f"macro-F1, but the {ci_text(difference_ci)} includes no difference ({where})")
        if best.name == current:
            verdict += f"; {current} stays"
    return Comparison(basis, basis_text, not use_audit, n, n_audit, len(y_test), scores, best.name, runner.name,
                      difference, difference_ci, decided, verdict, current, gain, gain_ci, switch, notes=notes)


def labelled_sample(project) -> tuple[dict[int, int], set[int]]:
    """The project's current class labels ``image_id -> class_id`` and the ids among them that
    were random audit picks (an audit pick relabelled since keeps counting only if the latest
    label is the audit one, as the learner counts them)."""
    labels = project.latest_labels()
    audit = project.audit_labels()
    return labels, {i for i, c in audit.items() if labels.get(i) == c}


def compare_extractors(project, names: Optional[Sequence[str]] = None, workers: Optional[int] = None,
                       progress: Optional[ProgressCallback] = None, cancel: Optional[CancelToken] = None,
                       n_bootstrap: int = N_BOOTSTRAP) -> Comparison:
    """Measure every available extractor (or ``names``) on the project's labels.

    Features the labelled images lack are computed first in worker processes and stored in the
    project under each extractor's name and version (cached for the next comparison and for a
    switch). Raises ``Cancelled``; what was extracted stays.
    """
    from inspector.core.features import extractor_names, get_extractor
    from inspector.core.learning.learner import LearnerSettings

    names = list(names) if names else extractor_names()
    extractors = []
    notes = []
    for name in names:
        try:
            extractors.append(get_extractor(name))
        except UserError:
            raise
        except Exception as exc:  # noqa: BLE001 - one extractor that cannot load must not hide the others
            notes.append(f"{name} left out: cannot be loaded ({type(exc).__name__}: {exc})")
    labels, audit_ids = labelled_sample(project)
    ids = sorted(labels)
    for ex in extractors:
        def step(done, total, message="", ex=ex):
            report(progress, done, total, f"{ex.name}: features of the labelled images")

        if ids:
            extract_features(project, ex.name, image_ids=ids, workers=workers, progress=step, cancel=cancel)
    check(cancel)
    common = set(ids)
    rows = {}
    for ex in extractors:
        got, X = project.feature_vectors(ex.name, ex.version, ids)
        rows[ex.name] = dict(zip(got.tolist(), X))
        common &= set(got.tolist())
    missing = len(ids) - len(common)
    if missing:
        notes.append(f"{missing} labelled image(s) without features of every extractor left out")
    order = sorted(common)
    features = {ex.name: (np.stack([rows[ex.name][i] for i in order]) if order else np.zeros((0, 1), np.float32))
                for ex in extractors}
    y = np.array([labels[i] for i in order], np.int64)
    is_audit = np.array([i in audit_ids for i in order], bool)
    settings = LearnerSettings.from_project(project)

    result = compare_on_features(features, y, is_audit, kind=settings.kind, random_state=settings.random_state,
                                 n_bootstrap=n_bootstrap, current=project_extractor_name(project),
                                 progress=progress, cancel=cancel)
    result.notes = notes + result.notes
    return result


__all__ = [
    "SETTING_EXTRACTOR", "LEGACY_EXTRACTOR", "project_extractor", "project_extractor_name", "project_extractor_key",
    "start_project_with", "default_extractor_for_folder", "project_extractor_why", "SETTING_EXTRACTOR_WHY", "extractor_status", "extract_features", "switch_extractor", "compare_on_features",
    "compare_extractors", "Comparison", "ExtractorScore", "SwitchResult", "ExtractorStatus", "Cancelled",
]
