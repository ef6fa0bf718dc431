"""Where the difference estimate's centre goes wrong (issue 14): replays active learning as
bench_estimators.py does and splits each point's error into candidate components.

Per (strategy, label count) and over every active strategy's points, the mean and its standard
error over the replays of (each a paired difference on the same point, so small SEs are real):

- ``est-pool`` / ``est-test``: the shown difference estimate minus its target on the pool (the
  current model's correctness on every unlabelled image, the cross-fitted one on every labelled
  image) / minus the test accuracy;
- ``(a) models``: how much more the cross-fitted models that scored the sampled labels under-state
  their accuracy on the unlabelled pool than the current model does (their mean of right - its
  calibrated probability, importance-weighted over the labels they scored, minus the current
  model's, times the non-census share): the part of the error that comes from correcting the
  current model's probabilities with residuals of other models;
- ``(b) lambda``: the estimate with the control-variate coefficient fixed at 1 minus the tuned one;
- ``(c) order``: LURE's draw index in draw order (audits first in each batch) instead of queue order;
- ``(d) per-draw``: the per-draw estimator (known labels' correctness + the probabilities of the
  pool still unlabelled at each draw + that draw's residual / its probability, averaged over the
  draws; conditionally unbiased at each draw whatever came between) minus the product's;
- ``hajek``: self-normalised importance weights instead of LURE's;
- ``xfit``: the pool term from the very models that scored the residuals (importance-weighted
  mix of their calibrated probabilities on the unlabelled pool) instead of the current model:
  its move and its error against the pool target;
- ``xfit-own``: that estimate against its own target (the same mix of those models' accuracy on
  the unlabelled pool): an error here is in the weighted residuals themselves;
- ``pre-R`` / ``cf-pre``: the weights checked on a function fixed before each draw: each sampled
  draw's residual by the model that chose its batch, divided by (pool size x its probability),
  minus that model's mean residual over the pool at the batch (~0 when the recorded selection
  probabilities are right); and the cross-fitted residual's term minus that prequential one
  against their own pool means (how much more the cross-fitted residuals of the sampled labels
  exceed their models' pool figure than a residual fixed before the draw does).

A second table splits macro-F1's reading against the test set the same way: the class-level
estimate minus the test figure and minus its own target on the pool (cross-fitted predictions of
the labelled rows, the current model's of the unlabelled ones), and the pool's and the unlabelled
rows' figures minus the test figure (how far the truth itself moves between pool and test set).

To know which model scored each label, the script wraps two private functions of calibration.py
(the out-of-fold cross-validation, which hands back its fold models, and the reuse of the
previous retrain's model) and the strategy call (to keep the model that chose each batch);
nothing in the replay changes (the estimates equal bench_estimators.py's for the same seeds).

Prints figures; asserts nothing. Single command (ELPV, texture features, 10 seeds, ~15 min on 2
quiet cores):

    .venv/bin/python tests/benchmarks/bench_estimator_bias.py --datasets elpv --extractor texture \\
        --seeds 10 --strategies uncertain_diverse,k_center [--first-seed 0] [--counts 100,200,300]
        [--out /tmp/inspector_bench_estimators] [--calibrate-every-retrain]
    .venv/bin/python tests/benchmarks/bench_estimator_bias.py --from-points FILE...
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from inspector.core.learning import calibration as calibration_module  # noqa: E402
from inspector.core.learning import estimators as est_mod  # noqa: E402
from inspector.core.learning import simulate as sim  # noqa: E402

#: row key (feature hash, label) -> the model whose out-of-sample prediction the row has
SCORED_BY: dict = {}
#: labelled count when a batch was chosen -> the model that chose it (this replay)
CHOSEN_BY: dict = {}
BATCH = 20
INITIAL = 20


def _install_recorders() -> None:
    original_reuse = calibration_module._incremental_out_of_fold

    def reuse(model, X, y, keys, basis, refresh_growth=None):
        found = original_reuse(model, X, y, keys, basis, refresh_growth)
        if found is not None:
            for k in keys:
                if k not in basis.row_keys:
                    SCORED_BY[k] = basis.model
        return found

    original_cross_validate = calibration_module._out_of_fold_with_sizes

    def cross_validate(X, y, classes, kind, random_state, folds, cancel=None, fold_models=None):
        # the product's cross-validation, with each fold's model remembered per row it predicted
        mine = []
        found = original_cross_validate(X, y, classes, kind, random_state, folds, cancel, fold_models=mine)
        keys = calibration_module._row_keys(X, np.asarray(y))
        for m, test in mine:
            for i in test:
                SCORED_BY[keys[i]] = m
        if fold_models is not None:
            fold_models.extend(mine)
        return found

    calibration_module._incremental_out_of_fold = reuse
    calibration_module._out_of_fold_with_sizes = cross_validate

    original_get = sim.get_strategy

    class Chooser:
        def __init__(self, strategy):
            self.strategy = strategy

        def __call__(self, model, X, labelled, want, rng, **kw):
            CHOSEN_BY[len(labelled)] = model
            return self.strategy(model, X, labelled, want, rng, **kw)

    sim.get_strategy = lambda name: Chooser(original_get(name))

    original_point = sim.estimator_point

    def point(X_pool, y_pool, classes, rows, audit_set, pick_q, pick_pool, shadow, kind, seed, model=None,
              oof=None, **kw):
        out = original_point(X_pool, y_pool, classes, rows, audit_set, pick_q, pick_pool, shadow, kind, seed,
                             model=model, oof=oof, **kw)
        if model is not None and oof is not None and "difference_check" in out:
            out["components"] = components(X_pool, y_pool, classes, np.asarray(rows), audit_set, pick_q, pick_pool,
                                           model, oof)
            out["macro_f1_pieces"] = macro_f1_pieces(X_pool, y_pool, classes, np.asarray(rows), model, oof,
                                                     (out.get("classes") or {}).get("macro_f1"))
        return out

    sim.estimator_point = point


def _draw_order(n: int, is_audit: np.ndarray) -> np.ndarray:
    """Labelling order -> draw order: within each batch the audit picks were drawn first."""
    starts = [0] + list(range(INITIAL, n, BATCH))
    order = []
    for b, s in enumerate(starts):
        e = starts[b + 1] if b + 1 < len(starts) else n
        idx = np.arange(s, e)
        order += idx[is_audit[idx]].tolist() + idx[~is_audit[idx]].tolist()
    return np.asarray(order, np.int64)


def components(X_pool, y_pool, classes, rows, audit_set, pick_q, pick_pool, model, oof) -> dict:
    """The candidate components of one point's error (see the module docstring)."""
    calibration = model.calibration
    n = len(rows)
    y = y_pool[rows]
    is_audit = np.array([int(r) in audit_set for r in rows], bool)
    q = np.asarray(pick_q[:n], float)
    remaining = np.asarray(pick_pool[:n], float)
    sampled = np.isfinite(q) & np.isfinite(remaining) & (q > 0)
    unl = np.setdiff1d(np.arange(len(y_pool)), rows)
    proba_u = np.asarray(model.predict_proba(X_pool[unl]), float)
    f_cur, right_cur = proba_u.max(1), classes[proba_u.argmax(1)] == y_pool[unl]
    crossfit = np.asarray(calibration.apply(oof.astype(np.float32)), float)
    f_cf, right_cf = crossfit.max(1), (classes[crossfit.argmax(1)] == y).astype(float)
    N = n + len(unl)
    keys = calibration_module._row_keys(X_pool[rows], y)
    scorer = [SCORED_BY.get(k) for k in keys]
    on_pool = {}
    for m in scorer:
        if m is not None and id(m) not in on_pool:
            p = np.asarray(calibration.apply(m.raw_proba(X_pool[unl])), float)
            on_pool[id(m)] = (float(p.max(1).mean()), float(np.mean(classes[p.argmax(1)] == y_pool[unl])))
    idx = np.flatnonzero(sampled)
    if any(scorer[i] is None for i in idx) or len(idx) < 2:
        return {}
    v = est_mod.lure_weights(q[idx], remaining[idx])
    resid = right_cf[idx] - f_cf[idx]
    out = {"census_share": float((~sampled).sum() / N), "lure_residual": float(np.mean(v * resid))}
    model_f = np.array([on_pool[id(scorer[i])][0] for i in idx])
    model_acc = np.array([on_pool[id(scorer[i])][1] for i in idx])
    out["scorers_gap"] = float(np.sum(v * (model_acc - model_f)) / np.sum(v))
    out["current_gap"] = float(right_cur.mean() - f_cur.mean())
    rest_f = np.concatenate([f_cur, f_cf[sampled]])
    w = est_mod.weighted_accuracy(right_cf[sampled], f_cf[sampled], q[sampled], remaining[sampled], rest_f)
    out["rest_target"] = float(np.concatenate([right_cur, right_cf[sampled]]).mean())
    out["rest_estimate"] = w.estimate
    out["rest_lambda1"] = float(rest_f.mean() + out["lure_residual"])
    n_unl, n_s = len(unl), len(idx)
    mix_f = float(np.sum(v * model_f) / np.sum(v))
    mix_acc = float(np.sum(v * model_acc) / np.sum(v))
    out["rest_xfit"] = float((n_unl * mix_f + f_cf[sampled].sum()) / (n_unl + n_s) + out["lure_residual"])
    out["rest_xfit_target"] = float((n_unl * mix_acc + right_cf[sampled].sum()) / (n_unl + n_s))
    order = np.array([i for i in _draw_order(n, is_audit) if sampled[i]])
    v2 = est_mod.lure_weights(q[order], remaining[order])
    out["lure_residual_draw_order"] = float(np.mean(v2 * (right_cf[order] - f_cf[order])))
    ht = 1.0 / (remaining[idx] * q[idx])
    out["hajek_residual"] = float(np.sum(ht * resid) / np.sum(ht))
    # per-draw: S_t = (known correctness + sum of f over the pool not yet drawn + residual / q_t) / N
    f_all = np.concatenate([f_cf, f_cur])
    right_all = np.concatenate([right_cf, right_cur.astype(float)])
    known, pending_f, S = 0.0, float(f_all.sum()), []
    for i in _draw_order(n, is_audit):
        if sampled[i]:
            S.append((known + pending_f + (right_all[i] - f_all[i]) / q[i]) / N)
        known += right_all[i]
        pending_f -= f_all[i]
    out["per_draw"] = float(np.mean(S))
    # the weights on a residual fixed before each draw (the model that chose the batch)
    starts = [0] + list(range(INITIAL, n, BATCH))
    cache, pre_R, cf_minus_pre = {}, [], []
    for j in idx:
        start = max(s for s in starts if s <= j)
        M = CHOSEN_BY.get(start)
        if M is None or len(M.seen_classes) < 2:
            continue
        if id(M) not in cache:
            p = np.asarray(calibration.apply(M.raw_proba(X_pool)), float)
            res = (classes[p.argmax(1)] == y_pool).astype(float) - p.max(1)
            at_batch = np.ones(len(y_pool), bool)
            at_batch[rows[:start]] = False
            cache[id(M)] = (res, float(res[at_batch].mean()), float(res[unl].mean()))
        res, mean_at_batch, mean_unl = cache[id(M)]
        h_pre = res[rows[j]] / (remaining[j] * q[j])
        h_cf = (right_cf[j] - f_cf[j]) / (remaining[j] * q[j])
        scorer_gap = on_pool[id(scorer[j])][1] - on_pool[id(scorer[j])][0]
        pre_R.append(h_pre - mean_at_batch)
        cf_minus_pre.append((h_cf - scorer_gap) - (h_pre - mean_unl))
    out["prequential_excess"] = float(np.mean(pre_R)) if pre_R else None
    out["crossfit_minus_prequential"] = float(np.mean(cf_minus_pre)) if cf_minus_pre else None
    return out


def macro_f1_pieces(X_pool, y_pool, classes, rows, model, oof, estimate) -> dict:
    """Macro-F1 as the class-level estimate aims at it on the pool (the cross-fitted predictions
    of the labelled rows, the current model's of the unlabelled ones), the current model's on the
    unlabelled rows alone, and the estimate (the test-set figure is added after the replay)."""
    from inspector.core.learning import metrics

    unl = np.setdiff1d(np.arange(len(y_pool)), rows)
    crossfit = classes[np.argmax(model.calibration.apply(oof.astype(np.float32)), axis=1)]
    current = classes[np.argmax(model.predict_proba(X_pool[unl]), axis=1)]
    y_all, pred_all = np.r_[y_pool[rows], y_pool[unl]], np.r_[crossfit, current]
    # over the classes shown or predicted, as the test figure (simulate.scored_classes)
    return {"pool": metrics.macro_f1(y_all, pred_all, sim.scored_classes(y_all, pred_all, classes)),
            "unlabelled": metrics.macro_f1(y_pool[unl], current, sim.scored_classes(y_pool[unl], current, classes)),
            "estimate": estimate}


def macro_f1_table(runs_by_key: dict) -> None:
    """Where macro-F1 reads against the test set: per strategy and label count, the mean (standard
    error over seeds) of the estimate minus the test figure, minus its own target on the pool, and
    the pool's and the unlabelled rows' figures (current model) minus the test figure."""
    for key, runs in runs_by_key.items():
        groups = collections.defaultdict(list)
        for r in runs:
            for p in r["points"]:
                m = (p.get("estimators") or {}).get("macro_f1_pieces")
                if not m or m.get("estimate") is None or m.get("test") is None:
                    continue
                groups[(r["strategy"], str(p["n_labels"]))].append(
                    [m["estimate"] - m["test"], m["estimate"] - m["pool"], m["pool"] - m["test"],
                     m["unlabelled"] - m["test"]])
        print(f"\n{key}: macro-F1, mean (standard error over seeds)")
        print(f"  {'strategy':18s} {'labels':>6s} {'n':>3s} " + " ".join(
            f"{c:>15s}" for c in ("est-test", "est-pool", "pool-test", "unlabelled-test")))
        for g in sorted(groups, key=lambda g: (g[0], g[1].zfill(4))):
            a = np.array(groups[g], float)
            se = a.std(0, ddof=1) / np.sqrt(len(a)) if len(a) > 1 else np.zeros(a.shape[1])
            print(f"  {g[0]:18s} {g[1]:>6s} {len(a):3d} " + " ".join(
                f"{x:+.4f}({e:.4f})" for x, e in zip(a.mean(0), se)))


COLUMNS = ("est-pool", "est-test", "(a) models", "(b) lambda", "(c) order", "(d) per-draw", "hajek", "xfit move",
           "xfit-pool", "xfit-own", "pre-R", "cf-pre")


def table(runs_by_key: dict) -> None:
    """The components' means (standard errors) per strategy and label count, and over every active
    strategy's points."""
    for key, runs in runs_by_key.items():
        groups = collections.defaultdict(list)
        for r in runs:
            for p in r["points"]:
                c = (p.get("estimators") or {}).get("difference_check")
                g = (p.get("estimators") or {}).get("components")
                if not c or not g:
                    continue
                share = 1.0 - g["census_share"]
                est_pool = c["estimate"] - c["pool_target"]
                xfit_move = (g["rest_xfit"] - g["rest_estimate"]) * share
                row = [est_pool, c["estimate"] - p["accuracy"], (g["scorers_gap"] - g["current_gap"]) * share,
                       (g["rest_lambda1"] - g["rest_estimate"]) * share,
                       (g["lure_residual_draw_order"] - g["lure_residual"]) * share,
                       g["per_draw"] - c["estimate"], (g["hajek_residual"] - g["lure_residual"]) * share,
                       xfit_move, est_pool + xfit_move, (g["rest_xfit"] - g["rest_xfit_target"]) * share,
                       g["prequential_excess"] if g["prequential_excess"] is not None else np.nan,
                       g["crossfit_minus_prequential"] if g["crossfit_minus_prequential"] is not None else np.nan]
                groups[(r["strategy"], str(p["n_labels"]))].append(row)
                groups[("random" if r["strategy"] == "random" else "every active", "all")].append(row)
        print(f"\n{key}: mean (standard error over points) of each component, paired on the same points")
        print(f"  {'strategy':18s} {'labels':>6s} {'n':>3s} " + " ".join(f"{c:>15s}" for c in COLUMNS))
        for g in sorted(groups, key=lambda g: (g[0].startswith("every") or g[0] == "random" and g[1] == "all",
                                              g[0], g[1].zfill(4))):
            a = np.array(groups[g], float)
            m = np.nanmean(a, 0)
            se = np.nanstd(a, 0, ddof=1) / np.sqrt(np.maximum(np.sum(np.isfinite(a), 0), 1))
            print(f"  {g[0]:18s} {g[1]:>6s} {len(a):3d} " + " ".join(f"{x:+.4f}({s:.4f})" for x, s in zip(m, se)))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--datasets", default="elpv")
    parser.add_argument("--extractor", default="texture")
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--strategies", default="uncertain_diverse,k_center")
    parser.add_argument("--counts", default="100,200,300")
    parser.add_argument("--generated-images", type=int, default=1200)
    parser.add_argument("--out", type=Path, default=Path("/tmp/inspector_bench_estimators"))
    parser.add_argument("--calibrate-every-retrain", action="store_true",
                        help="refresh the out-of-fold basis after every retrain as the app does (SimulationSettings)")
    parser.add_argument("--from-points", type=Path, nargs="+", default=None)
    args = parser.parse_args()
    if args.from_points:
        for path in args.from_points:
            print(f"== {path}")
            table(json.loads(path.read_text(encoding="utf-8")))
            macro_f1_table(json.loads(path.read_text(encoding="utf-8")))
        return 0
    from bench_estimators import load, scored_points

    _install_recorders()
    args.out.mkdir(parents=True, exist_ok=True)
    counts = tuple(int(c) for c in args.counts.split(","))
    points = {}
    for dataset in args.datasets.split(","):
        X, y, names = load(dataset, args)
        started = time.perf_counter()
        settings = sim.SimulationSettings(strategies=[s for s in args.strategies.split(",") if s], seeds=args.seeds,
                                          budget=300, batch=BATCH, initial=INITIAL, pick_sampling=0.3,
                                          estimator_counts=counts, first_seed=args.first_seed,
                                          calibrate_every_retrain=args.calibrate_every_retrain)
        summary = sim.simulate(X, y, names, settings)
        print(f"== {dataset}, {args.extractor} features, seeds {args.first_seed}-{args.first_seed + args.seeds - 1}, "
              f"pick sampling 0.3, batch {BATCH}: {time.perf_counter() - started:.0f} s, load {os.getloadavg()[0]:.1f}")
        for r in summary["runs"]:  # the test set's macro-F1 beside the pieces scored during the replay
            for p in r["points"]:
                pieces = (p.get("estimators") or {}).get("macro_f1_pieces")
                if pieces is not None:
                    pieces["test"] = p["class_truth"]["macro_f1"]
        key = f"{dataset}/{args.extractor}"
        points[key] = scored_points(summary)
        table({key: points[key]})
        macro_f1_table({key: points[key]})
    tag = f"{args.datasets.replace(',', '+')}_{args.extractor}_s{args.first_seed}-{args.seeds}_{args.strategies.replace(',', '+')}"
    tag += "_basis-every-retrain" if args.calibrate_every_retrain else ""
    path = args.out / f"bias_points_{tag}.json"
    path.write_text(json.dumps(points, default=float), encoding="utf-8")
    print(f"\nWrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
