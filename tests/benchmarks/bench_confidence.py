"""Confidence a quality engineer can put on the line: calibration, the escape-safe threshold, novelty.

For each data set (NEU, ELPV, the generated imbalanced set of bench_label_efficiency.py) and each
seed the images are split into a labelling half and a held-out half (stratified, seeded). Labels
are chosen as in the app: cold start, then the default strategy (uncertain + diverse, 10 % audit)
in batches of 10, the model retrained and recalibrated after each batch exactly as the learner
does (calibration.calibrate_model, reusing the previous retrain's out-of-sample predictions
between cross-validations).

Labels are chosen as the app chooses them, pick sampling included, and each pick's selection
probability reaches the calibration as the learner passes it.

Sections (``--sections``):

``calibration``
    Expected calibration error (ECE: 10 equal-width bins of the top-class confidence, the
    count-weighted mean of |accuracy - mean confidence| per bin) on the held-out half at 50, 100,
    300 and all labels of the labelling half, raw classifier and calibrated. Beside each ECE, how
    much of it is the held-out half's sampling noise (calibration.ece_sampling_noise): the
    *sampling floor*, the mean ECE a perfectly calibrated model with exactly these confidences
    would show on this test set (each part right with probability its confidence, 200 draws,
    same bins; and the 95th percentile of those draws), and the *debiased* calibration error
    (Kumar, Liang & Ma 2019: the unbiased squared error's signed root, a root mean square over
    the bins, at least the plain ECE's scale). Then, at 100, 300 and
    all labels, the review threshold the product chooses (routing.choose_threshold on the
    out-of-sample calibrated predictions, target 1 %) applied to the held-out half with novelty:
    escape rate (defective parts passed / defective parts) with its 95 % Wilson interval and the
    review share. A model not shown safe routes every part to review (escape 0, review 100 %);
    beside it, the lowest threshold without an out-of-sample escape (the first operating point an
    engineer could set by hand) on the same held-out half.
    Also the retrain time: per retrain of the replay, the classifier fit alone, the calibration as
    the product does it and (first seed, ``--time-full-cv``) a full 5-fold cross-validation every
    time as before; printed as ratios (retrain with calibration / retrain without).
``novelty``
    For each defect class, a model trained on every label of the labelling half except that class;
    on the held-out half: the share of the left-out class flagged novel, routed to review (novel or
    low confidence), kept off the line (review or defect path), and the share of the acceptable
    class routed to review and flagged novel. Targets: >= 80 % and <= 10 %. Also the share of the
    left-out class the model calls acceptable without flagging it novel (only the review
    threshold stands between those parts and the line; a left-out part called another defect
    goes down the defect path).
``coldstart``
    Labels needed until every class has at least one label, replaying the default strategy from
    nothing (batches of 10), with the learner's novelty-led exploration and without it.

Acceptable classes: NEU has none, so the benchmark treats ``--neu-acceptable`` (default
rolled-in_scale) as the acceptable class; ELPV: functional; generated: ok.

    .venv/bin/python tests/benchmarks/bench_confidence.py [--datasets neu,elpv,generated] [--seeds 5]
        [--sections calibration,novelty,coldstart] [--extractor texture+cnn] [--time-full-cv]
        [--out /tmp/inspector_bench_confidence] [--neu-acceptable rolled-in_scale]
        [--calibration-weights importance|audit]
        [--novelty subspace,nearest-mean,knn] [--pick-sampling 0.3] [--checkpoints 50,100,300,all]
        [--oof-variants inc:10:0.5,inc:10:0.2,fresh:10] [--time-retrain 5,10]

``--oof-variants`` calibrates other out-of-fold bases on the very labels of the product's replay
(issue 13's "the basis is weaker than the model it describes"): ``inc:FOLDS:GROWTH`` is the
product's incremental basis with other folds / refresh growth, run along the whole replay with its
own memory (its retrain-time ratio is printed beside the product's); ``fresh:FOLDS`` a fresh
cross-validation at each checkpoint (never stale), whose fold models are also scored on the
held-out half. Per checkpoint and basis: its importance-weighted accuracy and log-loss over the
labels beside the model's held-out ones, and the calibrated held-out ECE.

``--checkpoints 50,100,300`` leaves out the model on every label (its cross-validation is most of a
seed's time).

Before/after in one tree: ``--calibration-weights audit --novelty knn`` fits the calibration with
the audit weighting and novelty with nearest-neighbour distances only, as before the selection
probabilities and the subspace scores were used; ``--novelty nearest-mean`` scores novelty as model
files of format 3 did (the subspace's Mahalanobis distance to the nearest class mean only, not also
to the predicted class's mean); the defaults are the product's. The replay draws
picks with the app's pick sampling (``--pick-sampling 0`` for the strategies' top-k picks).

Prints figures (each seed, then mean and worst over the seeds); asserts nothing. Features are
cached under --out per extractor.
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from inspector.core.learning import calibration as calibration_module  # noqa: E402
from inspector.core.learning.calibration import (calibrate_model, confidence_level,  # noqa: E402
                                                 ece_sampling_noise, out_of_fold_proba, reliability)
from inspector.core.learning.metrics import wilson_interval  # noqa: E402
from inspector.core.learning.models import fit_model  # noqa: E402
from inspector.core.learning.novelty import feature_blocks, fit_novelty  # noqa: E402
from inspector.core.learning.standardise import standardisation  # noqa: E402
from inspector.core.learning.routing import PASS, choose_threshold, route  # noqa: E402
from inspector.core.learning.strategies import get_strategy  # noqa: E402

CHECKPOINTS = (50, 100, 300)
WITH_ALL = True  # --checkpoints without "all": skip the model on every label of the labelling half
#: --novelty, one or more (compared in the same run): "subspace" (the product), "nearest-mean" (format 3)
#: or "knn" (before the subspace scores)
NOVELTIES = ["subspace"]
PICK_SAMPLING = 0.3  # --pick-sampling (default: the app's strategies.DEFAULT_PICK_SAMPLING)
DUMP = None  # --dump: a folder for each checkpoint's out-of-sample predictions
EXTRACTOR = None  # the features' extractor name (its blocks are scored apart by novelty)
#: --oof-variants: other out-of-fold bases calibrated on the same replay's labels, beside the product's.
#: ("inc", folds, growth): the product's incremental basis with other folds / refresh growth, run
#: along the whole replay with its own memory; ("fresh", folds): a fresh k-fold cross-validation
#: at each checkpoint only (what the basis would be if it were never stale)
OOF_VARIANTS: list = []
#: --time-retrain FOLDS,...: at the last checkpoint, time a retrain that cross-validates (fit +
#: calibration with a fresh k-fold basis), per fold count, alternating, twice each
TIME_RETRAIN_FOLDS: list = []


def parse_variants(text: str) -> list:
    """``inc:10:0.2,fresh:10`` -> [("inc", 10, 0.2), ("fresh", 10)]."""
    out = []
    for part in [p.strip() for p in text.split(",") if p.strip()]:
        bits = part.split(":")
        if bits[0] == "inc" and len(bits) == 3:
            out.append(("inc", int(bits[1]), float(bits[2])))
        elif bits[0] == "fresh" and len(bits) == 2:
            out.append(("fresh", int(bits[1])))
        else:
            raise ValueError(f"--oof-variants: {part!r} is not inc:FOLDS:GROWTH or fresh:FOLDS")
    return out


def variant_name(v) -> str:
    return f"inc{v[1]}/{v[2]:g}" if v[0] == "inc" else f"fresh{v[1]}"


def split_half(y: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    a, b = [], []
    for c in np.unique(y):
        rows = rng.permutation(np.flatnonzero(y == c))
        half = len(rows) // 2
        a.append(rows[:half])
        b.append(rows[half:])
    return np.concatenate(a), np.concatenate(b)


def trained(X, y, classes, seed=0, X_pool=None, is_audit=None, reuse=True, timing=None, picks=None):
    """``picks``: (selection probability, pool size) per label, as the app records them."""
    started = time.perf_counter()
    model = fit_model(X, y, classes, kind="logistic", random_state=seed)
    fitted = time.perf_counter()
    q, size = (None, None) if picks is None else picks
    oof = calibrate_model(model, X, y, X_pool=X_pool, is_audit=is_audit, reuse=reuse,
                          selection_probability=q, pool_size=size)
    if timing is not None:
        timing["fit"].append(fitted - started)
        timing["calibrate"].append(time.perf_counter() - fitted)
    return model, oof


def novelty_options(acceptable_cols, variant) -> dict:
    """fit_novelty's options as the learner passes them (--novelty subspace) or as before (knn, nearest-mean)."""
    if variant == "knn":
        return {"subspace": False}
    # nearest-mean: the subspace scores without the distance to the predicted class's mean (format 3)
    return {"subspace": True, "acceptable": acceptable_cols, "class_subspace": variant != "nearest-mean"}


def with_novelty(model, X_labelled, y_labelled, mean, std, seed, acceptable_cols=None, variant="subspace"):
    model.novelty = fit_novelty(X_labelled, mean, std, y=y_labelled, random_state=seed, classes=model.classes,
                                blocks=feature_blocks(EXTRACTOR, X_labelled.shape[1]),
                                **novelty_options(acceptable_cols, variant))
    return model


def novel_flags(model, X):
    if model.novelty is None:
        return np.zeros(len(X), bool)
    return model.novelty.is_novel(X, proba=model.predict_proba(X))


def active_replay(X_pool, y_pool, classes, budget, seed, keep_at, timing=None, time_full_cv=False, batch=10):
    """Replay the app's loop to ``budget`` labels; returns (order, audit flags, {n: (model, oof)},
    (selection probabilities, pool sizes)). Picks are drawn with the app's pick sampling
    (learner.select passes ``pick_sampling``) and their probabilities reach the calibration as the
    learner's do."""
    strategy = get_strategy("uncertain_diverse")
    calibration_module.forget_out_of_fold_memory()
    labelled = np.zeros(len(y_pool), bool)
    order: list[int] = []
    audit: list[bool] = []
    q: list[float] = []
    sizes: list[float] = []
    model, kept = None, {}
    memories = {v: {} for v in OOF_VARIANTS if v[0] == "inc"}
    product_memory = calibration_module._MEMORY
    while len(order) < budget:
        sel = strategy(model, X_pool, labelled, min(batch, budget - len(order)), [seed, len(order)], audit_share=0.1,
                       pick_sampling=PICK_SAMPLING)
        if len(sel) == 0:
            break
        order += sel.indices.tolist()
        audit += sel.audit.tolist()
        q += sel.probabilities.tolist()
        sizes += sel.pool_sizes.tolist()
        labelled[sel.indices] = True
        rows = np.asarray(order)
        model, oof = trained(X_pool[rows], y_pool[rows], classes, seed=seed, X_pool=X_pool,
                             is_audit=np.asarray(audit), timing=timing, picks=(np.asarray(q), np.asarray(sizes)))
        if time_full_cv and timing is not None:
            started = time.perf_counter()
            out_of_fold_proba(X_pool[rows], y_pool[rows], classes, "logistic", seed)
            timing["full_cv"].append(time.perf_counter() - started)
        variants = {}
        for v, memory in memories.items():  # the same labels, another incremental basis (own memory)
            other = copy.copy(model)
            started = time.perf_counter()
            calibration_module._MEMORY = memory
            try:
                other_oof = calibrate_model(other, X_pool[rows], y_pool[rows], X_pool=X_pool, is_audit=np.asarray(audit),
                                            selection_probability=np.asarray(q), pool_size=np.asarray(sizes),
                                            folds=v[1], refresh_growth=v[2])
            finally:
                calibration_module._MEMORY = product_memory
            if timing is not None:
                timing.setdefault(("calibrate", v), []).append(time.perf_counter() - started)
            variants[v] = (other, other_oof)
        if len(order) in keep_at:
            kept[len(order)] = (model, oof, variants)
    return np.asarray(order, np.int64), np.asarray(audit, bool), kept, (np.asarray(q), np.asarray(sizes))


def time_retrain(X, y, classes, seed, X_pool, is_audit, q, pool, summary):
    """A retrain whose calibration cross-validates, per fold count (alternating, twice each; the
    fastest of the two counts): the classifier fit plus calibrate_model without reuse."""
    best = {f: np.inf for f in TIME_RETRAIN_FOLDS}
    for _ in range(2):
        for f in TIME_RETRAIN_FOLDS:
            started = time.perf_counter()
            m = fit_model(X, y, classes, kind="logistic", random_state=seed)
            calibrate_model(m, X, y, X_pool=X_pool, is_audit=is_audit, selection_probability=q, pool_size=pool,
                            reuse=False, folds=f)
            best[f] = min(best[f], time.perf_counter() - started)
    base = best[TIME_RETRAIN_FOLDS[0]]
    print(f"   retrain at {len(y)} labels with a cross-validation: "
          + ", ".join(f"{f} folds {t:.2f} s ({t / base:.2f}x)" for f, t in best.items())
          + f"; load {os.getloadavg()[0]:.1f}")
    for f, t in best.items():
        summary.setdefault(("retrain_time", f), []).append(t / base)


def _nll_of(p, y, classes):
    return calibration_module._nll(np.asarray(p, np.float64), np.searchsorted(classes, y))


def basis_rows(name, at, seed, model, oof, variants, X, y, Xt, yt, classes, X_pool, is_audit, q, pool, summary):
    """The hypothesis "the out-of-fold basis is weaker than the model it describes", per basis: its
    importance-weighted accuracy and log-loss over the labels (what it says about a random part)
    beside the model's own on the held-out half; for fresh cross-validations also the fold models'
    mean held-out accuracy / log-loss; then each basis's calibrated held-out ECE."""
    w = calibration_module.calibration_weights(is_audit, q, pool)
    cols = np.searchsorted(classes, y)
    raw_t = model.raw_proba(Xt)
    acc_t = float(np.mean(classes[np.argmax(raw_t, axis=1)] == yt))
    nll_t = _nll_of(raw_t, yt, classes)
    summary.setdefault(("model_test", at), []).append((acc_t, nll_t))
    entries = [("product", model, oof, None)]
    for v, (m, o) in variants.items():
        entries.append((variant_name(v), m, o, None))
    for v in OOF_VARIANTS:
        if v[0] != "fresh":
            continue
        # the product's cross-validation with v[1] folds, its fold models handed back (to score them
        # on the held-out half)
        found_models = []
        o = calibration_module._out_of_fold_with_sizes(X, y, classes, model.kind, seed, v[1],
                                                       fold_models=found_models)[0]
        fold_models = [m for m, _ in found_models]
        m = copy.copy(model)
        calibrate_model(m, X, y, oof_proba=o, X_pool=X_pool, is_audit=is_audit, selection_probability=q,
                        pool_size=pool)
        folds_t = [(float(np.mean(classes[np.argmax(f.raw_proba(Xt), axis=1)] == yt)), _nll_of(f.raw_proba(Xt), yt, classes))
                   for f in fold_models]
        entries.append((variant_name(v), m, o, tuple(np.mean(folds_t, axis=0))))
    print(f"   [{at} labels] held-out: model acc {acc_t:.3f}, log-loss {nll_t:.3f}")
    for label, m, o, folds_t in entries:
        if o is None:
            continue
        hit = (np.argmax(o, axis=1) == cols).astype(float)
        acc_o = float(np.average(hit, weights=w))
        nll_o = float(np.average(-np.log(np.clip(o[np.arange(len(y)), cols], 1e-12, 1.0)), weights=w))
        noise = ece_sampling_noise(yt, m.predict_proba(Xt), classes, random_state=seed)
        ece = noise["ece"]
        summary.setdefault(("basis", at, label), []).append((acc_o, nll_o, ece, m.calibration.temperature,
                                                             m.calibration.shrink)
                                                            + (folds_t if folds_t is not None else (np.nan, np.nan))
                                                            + (noise["floor"], noise["debiased"]))
        extra = f"; fold models on the held-out half: acc {folds_t[0]:.3f}, log-loss {folds_t[1]:.3f}" if folds_t else ""
        print(f"      {label:>12}: basis acc {acc_o:.3f} log-loss {nll_o:.3f} (weighted) | calibrated ECE {ece:.3f} "
              f"(floor {noise['floor']:.3f}, debiased {noise['debiased']:.3f}) "
              f"T {m.calibration.temperature:.2f} shrink {m.calibration.shrink:.3f}{extra}")


def _or_dash(value, fmt="{:.3f}"):
    return "-" if value is None else fmt.format(value)


def escape_row(y_test, proba, novel, classes, acceptable_cols, threshold):
    path, review, _ = route(proba, acceptable_cols, threshold, novel)
    defective = ~acceptable_cols[np.searchsorted(classes, y_test)]
    n_def = int(defective.sum())
    esc = int(np.sum((path == PASS) & defective))
    lo, hi = wilson_interval(esc, n_def)
    return esc, n_def, lo, hi, float(review.mean())


def calibration_section(name, X, y, class_names, acceptable_name, seed, summary, time_full_cv=False):
    classes = np.arange(len(class_names))
    acceptable_cols = np.array([n == acceptable_name for n in class_names])
    pool, test = split_half(y, seed)
    Xp, yp, Xt, yt = X[pool], y[pool], X[test], y[test]
    mean, std = standardisation(X)  # the app standardises novelty by the whole image pool
    started = time.perf_counter()
    timing = {"fit": [], "calibrate": [], "full_cv": []}
    budget = min(max(CHECKPOINTS), len(pool))
    order, audit, kept, (pick_q, pick_pool) = active_replay(Xp, yp, classes, budget, seed, set(CHECKPOINTS), timing, time_full_cv)
    fit_s, cal_s = float(np.sum(timing["fit"])), float(np.sum(timing["calibrate"]))
    line = (f"   replay to {len(order)} labels in {time.perf_counter() - started:.0f} s; {len(timing['fit'])} retrains: "
            f"fit {fit_s:.1f} s, calibration {cal_s:.1f} s -> retrain with/without calibration {1 + cal_s / fit_s:.2f}x")
    if timing["full_cv"]:
        cv_s = float(np.sum(timing["full_cv"]))
        line += f"; with a full 5-fold cross-validation every retrain (before) {1 + cv_s / fit_s:.2f}x"
        summary.setdefault("time_full_cv", []).append(1 + cv_s / fit_s)
    summary.setdefault("time_ratio", []).append(1 + cal_s / fit_s)
    for key in [k for k in timing if isinstance(k, tuple)]:
        ratio = 1 + float(np.sum(timing[key])) / fit_s
        summary.setdefault(("variant_time", variant_name(key[1])), []).append(ratio)
        line += f"; {variant_name(key[1])} {ratio:.2f}x"
    print(line)
    print(f"   {'labels':>7} {'ECE raw':>8} {'ECE cal':>8} {'acc':>6} {'T':>5} {'shrink':>6} | "
          f"{'threshold':>9} {'escapes':>12} {'escape rate (95 % CI)':>24} {'review':>7} {'novel':>6}")
    for at in [c for c in CHECKPOINTS if c <= len(order)] + (["all"] if WITH_ALL else []):
        if at == "all":
            rows = np.arange(len(pool))
            model, oof = trained(Xp[rows], yp[rows], classes, seed=seed, X_pool=Xp, reuse=False)
        else:
            rows = order[:at]
            model, oof, variants = kept[at]
            if OOF_VARIANTS:
                basis_rows(name, at, seed, model, oof, variants, Xp[rows], yp[rows], Xt, yt, classes, Xp,
                           audit[:at], pick_q[:at], pick_pool[:at], summary)
        if TIME_RETRAIN_FOLDS and at == max(CHECKPOINTS):
            time_retrain(Xp[rows], yp[rows], classes, seed, Xp, audit[:at], pick_q[:at], pick_pool[:at], summary)
        raw = model.raw_proba(Xt)
        cal = model.predict_proba(Xt)
        if DUMP is not None and oof is not None:  # what the calibration saw, to compare calibrations offline
            np.savez(DUMP / f"{name}_s{seed}_{at}.npz", y=yp[rows], oof=oof, raw_test=raw, y_test=yt,
                     prior=model.calibration.prior, audit=np.zeros(len(rows), bool) if at == "all" else audit[:at],
                     q=np.full(len(rows), np.nan) if at == "all" else pick_q[:at],
                     pool=np.full(len(rows), np.nan) if at == "all" else pick_pool[:at])
        noise_raw = ece_sampling_noise(yt, raw, classes, random_state=seed)
        noise_cal = ece_sampling_noise(yt, cal, classes, random_state=seed)
        ece_raw, ece_cal = noise_raw["ece"], noise_cal["ece"]
        acc = float(np.mean(classes[np.argmax(cal, axis=1)] == yt))
        summary.setdefault(("ece_raw", at), []).append(ece_raw)
        summary.setdefault(("ece_cal", at), []).append(ece_cal)
        # the held-out level error (accuracy - mean confidence) beside what the labels could tell of it
        level_gap, _ = confidence_level(yt, cal, classes)
        noise_cal = {**noise_cal, "level_gap": level_gap, "level_se": model.calibration.level_se}
        summary.setdefault(("noise_raw", at), []).append(noise_raw)
        summary.setdefault(("noise_cal", at), []).append(noise_cal)
        print(f"   {'':>7} ECE raw {ece_raw:.3f} (floor {noise_raw['floor']:.3f}, debiased {noise_raw['debiased']:.3f}), "
              f"calibrated {ece_cal:.3f} (floor {noise_cal['floor']:.3f}, 95 % of a perfectly calibrated model's "
              f"<= {noise_cal['floor_95']:.3f}; debiased {noise_cal['debiased']:.3f}) on {len(yt)} held-out parts; "
              f"held-out accuracy - mean confidence {level_gap:+.3f}, the labels' s.e. on it "
              f"{_or_dash(model.calibration.level_se)}")
        text = (f"   {str(at):>7} {ece_raw:8.3f} {ece_cal:8.3f} {acc:6.3f} {model.calibration.temperature:5.2f} "
                f"{model.calibration.shrink:6.3f} | ")
        if at == 50:
            print(text + "(threshold not evaluated at 50)")
            continue
        th = choose_threshold(yp[rows], model.calibration.apply(oof) if oof is not None else model.predict_proba(Xp[rows]),
                              classes, acceptable_cols, 0.01, {i: n for i, n in enumerate(class_names)})
        thr = f"{th['value']:.3f}" if th["shown_safe"] else "not safe"
        for variant in NOVELTIES:  # the same classifier and threshold, each way of fitting novelty
            with_novelty(model, Xp[rows], yp[rows], mean, std, seed, acceptable_cols, variant)
            novel = novel_flags(model, Xt)
            esc, n_def, lo, hi, review = escape_row(yt, cal, novel, classes, acceptable_cols, th["value"])
            summary.setdefault(("escape", at, variant), []).append((esc, n_def, review, th["shown_safe"]))
            tag = f" (novelty {variant})" if len(NOVELTIES) > 1 else ""
            # the operating point an engineer could set by hand: the lowest threshold without an
            # out-of-sample escape (routing.operating_points), on the same held-out half
            points = th.get("operating_points") or []
            hand = ""
            if points and points[0]["escapes"] == 0:
                h_esc, h_def, _, _, h_review = escape_row(yt, cal, novel, classes, acceptable_cols, points[0]["threshold"])
                summary.setdefault(("hand", at, variant), []).append((h_esc, h_def, h_review))
                hand = f" | 0-escape point {points[0]['threshold']:.3f}: {h_esc}/{h_def} passed, review {h_review:.1%}"
            print((text if variant == NOVELTIES[0] else " " * len(text))
                  + f"{thr:>9} {esc:>5}/{n_def:<6} {esc / max(n_def, 1):7.2%} ({lo:.2%}-{hi:.2%}) {review:7.1%} "
                    f"{novel.mean():6.1%}{tag}{hand}")


def novelty_section(name, X, y, class_names, acceptable_name, seed, summary):
    classes = np.arange(len(class_names))
    acceptable_cols = np.array([n == acceptable_name for n in class_names])
    pool, test = split_half(y, seed)
    Xp, yp, Xt, yt = X[pool], y[pool], X[test], y[test]
    mean, std = standardisation(X)
    print(f"   novelty, one defect class left out (all other labels of the labelling half):")
    print(f"   {'left out':>20} {'novel':>6} {'to review':>9} {'kept off':>8} | {'acceptable: to review':>21} "
          f"{'novel':>6} {'threshold':>9}")
    calibration_module.forget_out_of_fold_memory()
    for c in classes:
        if acceptable_cols[c]:
            continue
        keep = yp != c
        model, oof = trained(Xp[keep], yp[keep], classes, seed=seed, X_pool=Xp, reuse=False)
        th = choose_threshold(yp[keep], model.calibration.apply(oof), classes, acceptable_cols, 0.01)
        cal = model.predict_proba(Xt)
        thr = f"{th['value']:.3f}" if th["shown_safe"] else "not safe"
        out = yt == c
        ok = acceptable_cols[yt]
        for variant in NOVELTIES:  # the same classifier and threshold, each way of fitting novelty
            with_novelty(model, Xp[keep], yp[keep], mean, std, seed, acceptable_cols, variant)
            novel = novel_flags(model, Xt)
            path, review, _ = route(cal, acceptable_cols, th["value"], novel)
            # predicted acceptable and not novel: what only the review threshold stands between and the line
            called_acceptable = acceptable_cols[np.argmax(cal, axis=1)]
            unseen = np.mean(called_acceptable[out] & ~novel[out])
            figures = (novel[out].mean(), review[out].mean(), np.mean(path[out] != PASS), review[ok].mean(),
                       novel[ok].mean(), unseen)
            summary.setdefault(("novelty", class_names[c], variant), []).append(figures + (bool(th["shown_safe"]),))
            tag = f" (novelty {variant})" if len(NOVELTIES) > 1 else ""
            print(f"   {class_names[c]:>20} {figures[0]:6.1%} {figures[1]:9.1%} {figures[2]:8.1%} | "
                  f"{figures[3]:21.1%} {figures[4]:6.1%} {thr:>9} | called acceptable, not novel {unseen:6.1%}{tag}")


def labels_to_see_every_class(X_pool, y_pool, classes, seed, explore_novelty, batch=10, budget=400):
    strategy = get_strategy("uncertain_diverse")
    labelled = np.zeros(len(y_pool), bool)
    model = None
    n = 0
    mean, std = standardisation(X_pool)
    while n < budget:
        sel = strategy(model, X_pool, labelled, batch, [seed, n], audit_share=0.1,
                       novelty_exploration=explore_novelty)
        if len(sel) == 0:
            break
        for i in sel.indices.tolist():
            labelled[i] = True
            n += 1
            if len(np.unique(y_pool[labelled])) == len(classes):
                return n
        rows = np.flatnonzero(labelled)
        model = fit_model(X_pool[rows], y_pool[rows], classes, kind="logistic", random_state=seed)
        model.novelty = fit_novelty(X_pool[rows], mean, std, y=y_pool[rows], random_state=seed, classes=classes,
                                    blocks=feature_blocks(EXTRACTOR, X_pool.shape[1]))
    return None


def coldstart_section(name, X, y, class_names, seed, summary):
    classes = np.arange(len(class_names))
    pool, _ = split_half(y, seed)
    Xp, yp = X[pool], y[pool]
    before = labels_to_see_every_class(Xp, yp, classes, seed, explore_novelty=False)
    after = labels_to_see_every_class(Xp, yp, classes, seed, explore_novelty=True)
    summary.setdefault("coldstart_before", []).append(before)
    summary.setdefault("coldstart_after", []).append(after)
    print(f"   labels until every class has one (uncertain + diverse from nothing, batches of 10): "
          f"without novelty {before}, with novelty {after}")


def print_summary(name, summary, seeds):
    print(f"\n== {name}: summary over {seeds} seed(s) (mean / worst)")
    for at in [*CHECKPOINTS, "all"]:
        if ("ece_cal", at) in summary:
            raw, cal = np.array(summary[("ece_raw", at)]), np.array(summary[("ece_cal", at)])
            line = f"   {str(at):>4} labels: ECE raw {raw.mean():.3f} / {raw.max():.3f}, calibrated {cal.mean():.3f} / {cal.max():.3f}"
            print(line)
            for which, word in (("noise_raw", "raw"), ("noise_cal", "calibrated")):
                rows = summary.get((which, at), [])
                if not rows:
                    continue
                floor = np.array([r["floor"] for r in rows])
                debiased = np.array([r["debiased"] for r in rows])
                ece = np.array([r["ece"] for r in rows])
                print(f"   {'':>4}   {word}: ECE {ece.mean():.3f} / {ece.max():.3f}, sampling floor (a perfectly calibrated "
                      f"model, same confidences and test set) {floor.mean():.3f} / {floor.max():.3f}, debiased "
                      f"(Kumar et al. 2019, root mean square) {debiased.mean():.3f} / {debiased.max():.3f}; per seed "
                      f"ECE - floor: {' '.join(f'{e - f:+.3f}' for e, f in zip(ece, floor))}")
                if which == "noise_cal":
                    gaps = np.array([r["level_gap"] for r in rows])
                    se = np.array([np.nan if r["level_se"] is None else r["level_se"] for r in rows])
                    print(f"   {'':>4}   held-out accuracy - mean confidence per seed (> 0 under-confident): "
                          f"{' '.join(f'{g:+.3f}' for g in gaps)}; mean |gap| {np.abs(gaps).mean():.3f}, the labels' "
                          f"own s.e. on it {np.nanmean(se):.3f} (mean)")
            for variant in NOVELTIES:
                if ("escape", at, variant) not in summary:
                    continue
                rows = summary[("escape", at, variant)]
                esc, n_def = sum(r[0] for r in rows), sum(r[1] for r in rows)
                lo, hi = wilson_interval(esc, n_def)
                reviews = np.array([r[2] for r in rows])
                tag = f" (novelty {variant})" if len(NOVELTIES) > 1 else ""
                print(f"   {'':>4}   escapes {esc}/{n_def} = {esc / max(n_def, 1):.2%} (95 % CI {lo:.2%}-{hi:.2%}), "
                      f"review share {reviews.mean():.1%} / {reviews.max():.1%}, shown safe in "
                      f"{sum(r[3] for r in rows)} of {len(rows)}{tag}")
                hand = summary.get(("hand", at, variant))
                if hand:
                    esc, n_def = sum(r[0] for r in hand), sum(r[1] for r in hand)
                    lo, hi = wilson_interval(esc, n_def)
                    reviews = np.array([r[2] for r in hand])
                    print(f"   {'':>4}   at the lowest threshold without an out-of-sample escape (set by hand; "
                          f"{len(hand)} of {len(rows)} seeds had one): escapes {esc}/{n_def} = {esc / max(n_def, 1):.2%} "
                          f"(95 % CI {lo:.2%}-{hi:.2%}), review share {reviews.mean():.1%} / {reviews.max():.1%}{tag}")
    for at in CHECKPOINTS:
        if ("model_test", at) not in summary:
            continue
        mt = np.array(summary[("model_test", at)])
        print(f"   basis @{at}: held-out model acc {mt[:, 0].mean():.3f}, log-loss {mt[:, 1].mean():.3f}")
        for key in [k for k in summary if isinstance(k, tuple) and k[0] == "basis" and k[1] == at]:
            r = np.array(summary[key], np.float64)
            folds = (f"; fold models held-out acc {np.nanmean(r[:, 5]):.3f} log-loss {np.nanmean(r[:, 6]):.3f}"
                     if np.isfinite(r[:, 5]).any() else "")
            print(f"      {key[2]:>12}: basis acc {r[:, 0].mean():.3f} log-loss {r[:, 1].mean():.3f} | ECE "
                  f"{r[:, 2].mean():.3f} / {r[:, 2].max():.3f} (mean / worst; floor {r[:, 7].mean():.3f}, debiased "
                  f"{r[:, 8].mean():.3f} / {r[:, 8].max():.3f}), T {r[:, 3].mean():.2f}, "
                  f"shrink {r[:, 4].mean():.3f}{folds}")
    for key in [k for k in summary if isinstance(k, tuple) and k[0] == "retrain_time"]:
        print(f"   retrain that cross-validates at {max(CHECKPOINTS)} labels, {key[1]} folds: "
              f"{np.mean(summary[key]):.2f}x the first fold count's time")
    for key in [k for k in summary if isinstance(k, tuple) and k[0] == "variant_time"]:
        print(f"   retrain with/without calibration, {key[1]}: {np.mean(summary[key]):.2f}x")
    if "time_ratio" in summary:
        ratio = np.array(summary["time_ratio"])
        line = f"   retrain with/without calibration: {ratio.mean():.2f}x (worst {ratio.max():.2f}x)"
        if "time_full_cv" in summary:
            line += f"; a full cross-validation every retrain: {np.mean(summary['time_full_cv']):.2f}x"
        print(line)
    for variant in NOVELTIES:
        keys = [k for k in summary if isinstance(k, tuple) and k[0] == "novelty" and k[2] == variant]
        if not keys:
            continue
        print(f"   {'left out':>20} {'novel':>13} {'to review':>13} {'kept off':>13} | {'acceptable to review':>20}"
              + (f"   novelty {variant}" if len(NOVELTIES) > 1 else ""))
        for key in keys:
            rows = np.array([r[:6] for r in summary[key]], np.float64)
            print(f"   {key[1]:>20} " + " ".join(f"{rows[:, j].mean():6.1%}/{rows[:, j].min():6.1%}" for j in range(3))
                  + f" | {rows[:, 3].mean():8.1%}/{rows[:, 3].max():6.1%} (mean/worst); novel acceptable "
                    f"{rows[:, 4].mean():.1%}/{rows[:, 4].max():.1%}; left out called acceptable and not novel "
                    f"{rows[:, 5].mean():.1%}/{rows[:, 5].max():.1%}")
    if "coldstart_before" in summary:
        for k in ("coldstart_before", "coldstart_after"):
            v = [x for x in summary[k]]
            ok = [x for x in v if x is not None]
            print(f"   labels to see every class, {'without' if k.endswith('before') else 'with'} novelty: "
                  f"{v} (mean {np.mean(ok) if ok else float('nan'):.1f}, worst {max(ok) if ok else None})")


def main() -> int:
    from inspector.core.features import DEFAULT_EXTRACTOR

    parser = argparse.ArgumentParser()
    default_data = Path(os.environ.get("INSPECTOR_TEST_DATA", REPO.parent / "shared" / "datasets"))
    parser.add_argument("--data", type=Path, default=default_data)
    parser.add_argument("--datasets", default="neu,elpv,generated")
    parser.add_argument("--sections", default="calibration,novelty,coldstart")
    parser.add_argument("--extractor", default=DEFAULT_EXTRACTOR)
    parser.add_argument("--out", type=Path, default=Path("/tmp/inspector_bench_confidence"))
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--time-full-cv", action="store_true",
                        help="also time a full cross-validation at every retrain of the first seed (the old way)")
    parser.add_argument("--neu-acceptable", default="rolled-in_scale")
    parser.add_argument("--dump", type=Path, default=None,
                        help="save each checkpoint's labels, out-of-sample and held-out predictions here")
    parser.add_argument("--generated-images", type=int, default=1200)
    parser.add_argument("--calibration-weights", choices=("importance", "audit"), default="importance",
                        help="weights of the calibration's out-of-sample predictions: the picks' selection "
                             "probabilities (the product) or the random audit labels only (before)")
    parser.add_argument("--checkpoints", default="50,100,300,all",
                        help="label counts to evaluate; 'all' adds a model on every label of the labelling half")
    parser.add_argument("--novelty", default="subspace",
                        help="novelty as the product fits it (subspace); its subspace scores without the "
                             "distance to the predicted class's mean (nearest-mean: model files of format 3); "
                             "nearest-neighbour distances only (knn: before the subspace scores); several "
                             "comma-separated are compared on the same classifiers in one run")
    parser.add_argument("--oof-variants", default="",
                        help="other out-of-fold bases calibrated on the same labels beside the product's: "
                             "inc:FOLDS:GROWTH (incremental, as the product, with other folds / refresh growth) "
                             "and fresh:FOLDS (a fresh cross-validation at each checkpoint), comma-separated")
    parser.add_argument("--time-retrain", default="",
                        help="fold counts, e.g. 5,10: time a retrain that cross-validates at the last checkpoint "
                             "with each (ratios to the first)")
    parser.add_argument("--pick-sampling", type=float, default=None,
                        help="share of each batch drawn at random around the strategy's picks (default: the app's)")
    args = parser.parse_args()
    from inspector.core.learning.simulate import folder_dataset

    args.out.mkdir(parents=True, exist_ok=True)
    global EXTRACTOR, DUMP, PICK_SAMPLING, CHECKPOINTS, WITH_ALL
    NOVELTIES[:] = args.novelty.split(",")
    TIME_RETRAIN_FOLDS[:] = [int(f) for f in args.time_retrain.split(",") if f.strip()]
    try:
        OOF_VARIANTS[:] = parse_variants(args.oof_variants)
    except ValueError as exc:
        parser.error(str(exc))
    if any(v not in ("subspace", "nearest-mean", "knn") for v in NOVELTIES):
        parser.error("--novelty: subspace, nearest-mean or knn (comma-separated to compare them in one run)")
    from inspector.core.learning.strategies import DEFAULT_PICK_SAMPLING

    PICK_SAMPLING = DEFAULT_PICK_SAMPLING if args.pick_sampling is None else args.pick_sampling
    calibration_module.WEIGHTING = args.calibration_weights
    points = [c.strip() for c in args.checkpoints.split(",") if c.strip()]
    WITH_ALL = "all" in points
    CHECKPOINTS = tuple(sorted(int(c) for c in points if c != "all"))
    EXTRACTOR = args.extractor
    DUMP = args.dump
    if DUMP is not None:
        DUMP.mkdir(parents=True, exist_ok=True)
    sections = set(args.sections.split(","))
    print(f"load: {os.getloadavg()[0]:.1f} (1 min); features: {args.extractor}; pick sampling {PICK_SAMPLING}; "
          f"calibration weights {calibration_module.WEIGHTING}; "
          f"novelty {', '.join(NOVELTIES)}")
    for name in args.datasets.split(","):
        if name in ("neu", "elpv"):
            folder = args.data / name
            if not folder.is_dir():
                print(f"{name}: not found at {folder}; set INSPECTOR_TEST_DATA (skipped)")
                continue
            X, y, class_names, _ = folder_dataset(folder, cache=args.out / f"{name}_{args.extractor}.npz",
                                                  extractor=args.extractor)
            acceptable = args.neu_acceptable if name == "neu" else "functional"
        elif name == "generated":
            from inspector.core.features import DEFAULT_EXTRACTOR as default

            if args.extractor != default:
                print(f"generated: drawn with the default extractor ({default}) only (skipped)")
                continue
            from bench_label_efficiency import generated_dataset

            X, y, class_names = generated_dataset(args.out, args.generated_images)
            acceptable = "ok"
        else:
            print(f"unknown data set {name}")
            return 2
        summary: dict = {}
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            print(f"\n== {name} ({args.extractor}): {len(y)} images, classes "
                  f"{', '.join(f'{n} ({int(np.sum(y == i))})' for i, n in enumerate(class_names))}; "
                  f"acceptable: {acceptable}; seed {seed}; load {os.getloadavg()[0]:.1f}")
            if "calibration" in sections:
                calibration_section(name, X, y, list(class_names), acceptable, seed, summary,
                                    time_full_cv=args.time_full_cv and seed == args.first_seed)
            if "novelty" in sections:
                novelty_section(name, X, y, list(class_names), acceptable, seed, summary)
            if "coldstart" in sections:
                coldstart_section(name, X, y, list(class_names), seed, summary)
            sys.stdout.flush()
        print_summary(name, summary, args.seeds)
    print(f"load: {os.getloadavg()[0]:.1f} (1 min)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
