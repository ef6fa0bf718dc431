"""How trustworthy is "Target reached"? Replays of the labelling loop on real data sets.

For each data set and seed: a stratified held-out test set (the truth) is split off; the rest is
the unlabelled pool whose labels stay hidden until the learner asks. The replay runs the app's
own learner (``learner.fit`` / ``learner.select`` on a snapshot, default strategy and audit
share, a retrain every ``--batch`` labels as in the app) and after every retrain judges the
target with the app's own rule (``stopping.goal_status``: shown only when the lower end of the
95 % interval clears it). The truth is the test accuracy of the model trained on every label so
far (the model a user would export at that moment).

Prints, per data set: how often "target reached" was declared while the true test accuracy was
below the target (per run: the first declaration; and over every retrain at which it was
declared), the median number of labels between the true crossing and the declaration, for the
app's rule (one-sided 95 % lower bound), the rule before it (lower end of the two-sided 95 %
interval, variance floor not checked by the labels) judged on the same replays, and, for
contrast, the naive rule "point estimate >= target".

    python tests/benchmarks/bench_stopping.py --seeds 10 --extractor texture   # NEU 0.95, ELPV 0.65, generated 0.95
    python tests/benchmarks/bench_stopping.py --only generated --variants      # floor x bound variants, where the delay comes from,
                                                                               # and the one-sided coverage of each bound form
                                                                               # over every checkpoint
    python tests/benchmarks/bench_stopping.py --seeds 10 --only neu --budget-neu 800 --run-on
    python tests/benchmarks/bench_stopping.py --extractor texture --without-difference   # the rule before issue 14's difference estimate
    python tests/benchmarks/bench_stopping.py --combine a.json b.json         # summarise runs split over processes (--first-seed, --json)

Features are computed once with the product's extractor and cached under --cache (.npz files
keyed by extractor version and file list). Asserts nothing; prints what it measured and the load.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    # one thread per process: on a shared 2-core machine, BLAS threads only fight each other
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from inspector.core.learning import estimators, learner, stopping  # noqa: E402
from inspector.core.learning.simulate import folder_dataset, stratified_split  # noqa: E402


def replay(X_pool, y_pool, X_test, y_test, n_classes, target, budget, batch, seed, run_on=False,
           rules=("shown", "main"), pick_sampling=None):
    """One run; returns one record per retrain. Stops once every rule in ``rules`` has declared
    "target reached" unless ``run_on`` (the figures need only the first declarations; the rest
    costs time). The rules judge the same replay: the estimate and its parts are recorded once.
    ``pick_sampling``: the project setting (None: the app's default)."""
    pending = set(rules)
    classes = np.arange(n_classes, dtype=np.int64)
    settings = learner.LearnerSettings(random_state=seed, **(
        {} if pick_sampling is None else {"pick_sampling": float(pick_sampling)}))
    ids = np.arange(len(y_pool), dtype=np.int64)
    labels: dict = {}
    audit_ids: set = set()
    picks: dict = {}
    order = 0
    fitted = learner.FitResult(None, 0, {}, None)
    snapshot = None
    steps = []
    while True:
        snapshot = learner.Snapshot(
            image_ids=ids, X=X_pool, labels=dict(labels), audit_ids=set(audit_ids), settled_ids=set(labels),
            classes=classes, class_names={int(c): str(c) for c in classes}, settings=settings,
            extractor=("texture", 0), picks=dict(picks),
            previous_sample=(fitted.metrics or {}).get("prediction_sample"))
        if labels:
            fitted = learner.fit(snapshot)
            truth = float(np.mean(fitted.model.predict(X_test) == y_test))
            status = stopping.goal_status(target, None, len(labels), fitted.metrics)
            e = status.estimate
            shown = fitted.metrics.get("estimate") or {}
            details = shown.get("details") or {}
            steps.append({"n_labels": len(labels), "n_audit": len(audit_ids), "truth": truth,
                          "estimate": e.estimate, "interval": e.interval, "method": e.method,
                          "method_key": shown.get("method"), "state": status.target_state,
                          "lower_bound": shown.get("lower_bound"),
                          "details": {k: v for k, v in details.items() if isinstance(v, (int, float, str))}})
            pending = {r for r in pending if not declared(steps[-1], r, target.value)}
            if not pending and not run_on:
                return steps
        if len(labels) >= budget:
            return steps
        want = min(batch, budget - len(labels))
        selection = learner.select(snapshot, fitted, n=want)
        for r, audit, prob, pool in zip(selection.indices, selection.audit, selection.probabilities,
                                        selection.pool_sizes):
            image_id = int(ids[r])
            labels[image_id] = int(y_pool[r])  # the inspector reveals the hidden class
            if audit:
                audit_ids.add(image_id)
            order += 1
            picks[image_id] = (order, None if np.isnan(prob) else float(prob), None if np.isnan(pool) else int(pool))


#: the rules compared, in words (see declared())
RULES = {
    "shown": "the app's rule (stopping.goal_status)",
    "main": "the rule before (lower end of the two-sided 95 % interval, floor at the model-implied variance)",
    "point": "naive rule (point estimate >= target; for contrast)",
}
#: further rules for the delay analysis (--variants): the floor (model-implied as before,
#: checked by the labels' errors, none) and the bound (two-sided interval's lower end z 1.96,
#: one-sided 95 % z 1.645)
VARIANTS = {f"{floor}/{side}": (floor, z) for floor in ("model", "checked", "residuals")
            for side, z in (("z1.96", 1.959963984540054), ("z1.645", 1.6448536269514722))}
#: the same with a normal bound (estimate - z se) instead of the Wilson form at the effective size
VARIANTS.update({f"{k}/normal": v for k, v in VARIANTS.items() if not k.startswith("residuals")})
#: valid however many times the rule looks (a union bound: the k-th look, one every 10 labels,
#: spends 5 % / (k (k + 1)) of the error, which sums to 5 %): the price of anytime validity
VARIANTS["checked/over-all-looks"] = ("checked", None)


def lower_from(step, se, z, normal=False):
    """The lower bound of the accuracy shown at ``step`` had its standard error been ``se``,
    at normal quantile ``z`` (the estimators' Wilson form at the effective size, census mapped
    back in); None where the step's estimate carries no standard error (audit estimate)."""
    d = step.get("details") or {}
    if step.get("method_key") not in ("difference", "weighted") or se is None or step["estimate"] is None:
        return None
    share = float(d.get("census_share", 0.0) or 0.0)
    known = float(d.get("census_accuracy", 0.0) or 0.0)
    part = (step["estimate"] - share * known) / (1.0 - share) if share < 1 else step["estimate"]
    if normal:
        low = part - z * se
    else:
        low = estimators.effective_interval(part, se, z, continuity=step["method_key"] != "difference")[0]
    return share * known + (1.0 - share) * low


def variant_se(step, floor):
    d = step.get("details") or {}
    if "se_residuals" not in d:
        return None
    residual, pool = d["se_residuals"], d.get("se_pool", 0.0)
    if floor == "residuals":
        return (residual ** 2 + pool ** 2) ** 0.5
    if floor == "model":  # the rule before: the unscaled model-implied variance
        return (max(residual, d.get("se_model", d["se"])) ** 2 + pool ** 2) ** 0.5
    return d["se"]


def declared(step, rule, target_value) -> bool:
    """Whether ``rule`` declares the target reached at ``step``."""
    if rule == "shown":
        return step["state"] == stopping.SHOWN
    if step["estimate"] is None or step["estimate"] < target_value:
        return False
    if rule == "point":
        return True
    if rule == "main":
        low = lower_from(step, variant_se(step, "model"), 1.959963984540054)
        if low is None:  # audit estimate: its interval is as before
            low = step["interval"][0] if step["interval"] else None
        return low is not None and low >= target_value
    floor, z = VARIANTS[rule]
    if z is None:
        from statistics import NormalDist

        look = max(1, step["n_labels"] // 10)
        z = NormalDist().inv_cdf(1.0 - 0.05 / (look * (look + 1)))
    low = lower_from(step, variant_se(step, floor), z, normal=rule.endswith("/normal"))
    if low is None:
        low = step.get("lower_bound") if z < 1.9 else (step["interval"][0] if step["interval"] else None)
    return low is not None and low >= target_value


def summarise(runs, target_value, rules=("shown", "main", "point")):
    """Per-run first declarations of each rule against the truth."""
    out = {}
    for rule in rules:
        first_false = 0
        declared_runs = 0
        delays = []
        checks = false_checks = 0
        never = 0
        for steps in runs:
            crossing = next((s["n_labels"] for s in steps if s["truth"] >= target_value), None)
            marks = [s for s in steps if declared(s, rule, target_value)]
            checks += len(marks)
            false_checks += sum(s["truth"] < target_value for s in marks)
            if not marks:
                never += 1
                continue
            declared_runs += 1
            first = marks[0]
            first_false += first["truth"] < target_value
            if crossing is not None:
                delays.append(first["n_labels"] - crossing)
        out[rule] = {
            "runs": len(runs), "runs_declared": declared_runs, "runs_never_declared": never,
            "first_declaration_false": first_false,
            "first_declaration_false_rate": first_false / len(runs) if runs else None,
            "declarations": checks, "declarations_false": false_checks,
            "declarations_false_rate": false_checks / checks if checks else None,
            "labels_after_true_crossing_median": float(np.median(delays)) if delays else None,
            "labels_after_true_crossing_all": delays,
        }
    crossings = [next((s["n_labels"] for s in steps if s["truth"] >= target_value), None) for steps in runs]
    out["true_crossing_per_run"] = crossings
    return out


def main(argv=None) -> int:
    data = Path(os.environ.get("INSPECTOR_TEST_DATA", REPO.parent / "shared" / "datasets"))
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=data)
    p.add_argument("--cache", type=Path, default=Path("/tmp/i17-bench"))
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--batch", type=int, default=10, help="labels between retrains (the app's default)")
    p.add_argument("--datasets", default="neu,elpv,generated",
                   help="comma-separated: neu, elpv, generated (mostly OK parts, rare defect classes)")
    p.add_argument("--only", choices=("neu", "elpv", "generated"), default=None, help="one data set (as --datasets)")
    p.add_argument("--target-neu", type=float, default=0.95)
    p.add_argument("--target-elpv", type=float, default=0.65)
    p.add_argument("--budget-neu", type=int, default=500)
    p.add_argument("--budget-elpv", type=int, default=500)
    p.add_argument("--target-generated", type=float, default=0.95)
    p.add_argument("--budget-generated", type=int, default=400)
    p.add_argument("--generated-images", type=int, default=1200)
    p.add_argument("--test-fraction", type=float, default=0.3)
    p.add_argument("--json", type=Path, default=None, help="also write every run here")
    p.add_argument("--run-on", action="store_true",
                   help="keep labelling after the first declaration (counts every later declaration too)")
    p.add_argument("--first-seed", type=int, default=0)
    p.add_argument("--variants", action="store_true",
                   help="labels to the budget and judge every variant of the floor and the bound too, with "
                        "where the delay comes from (interval parts at the true crossing)")
    p.add_argument("--extractor", default=None, help="feature extractor (default: the one new projects use)")
    p.add_argument("--without-difference", action="store_true",
                   help="judge on the estimate shown before the difference estimator (weighted or audit), "
                        "to compare how early each declares the target")
    p.add_argument("--pick-sampling", type=float, default=None,
                   help="the project's pick sampling share (learner.pick_sampling; default: the app's)")
    p.add_argument("--combine", type=Path, nargs="+", default=None,
                   help="only summarise runs written by earlier --json runs (e.g. one seed per process)")
    args = p.parse_args(argv)
    rules = ("shown", "main", "point") + (tuple(VARIANTS) if args.variants else ())
    if args.only:
        args.datasets = args.only
    if args.combine:
        return combine(args.combine)
    args.cache.mkdir(parents=True, exist_ok=True)
    if args.without_difference:
        from inspector.core.learning import estimators

        estimators.MAX_CENSUS_SHARE_FOR_DIFFERENCE = -1.0  # never shown: the rule before it
    print(f"estimate judged: {'weighted or audit (no difference)' if args.without_difference else 'as the app shows'}; "
          f"features {args.extractor or 'default'}; pick sampling "
          f"{learner.LearnerSettings().pick_sampling if args.pick_sampling is None else args.pick_sampling}")
    print(f"load before: {os.getloadavg()}")
    results = {}
    for name, target_value, budget in (("neu", args.target_neu, args.budget_neu),
                                       ("elpv", args.target_elpv, args.budget_elpv),
                                       ("generated", args.target_generated, args.budget_generated)):
        if name not in args.datasets.split(","):
            continue
        if name == "generated":
            # mostly OK parts with four rare defect classes (2.5-5 % each), drawn as in
            # bench_label_efficiency.py / bench_confidence.py and cached the same way
            sys.path.insert(0, str(Path(__file__).resolve().parent))
            from bench_label_efficiency import generated_dataset

            X, y, class_names = generated_dataset(args.cache, args.generated_images, extractor=args.extractor)
        else:
            folder = args.data / name
            if not folder.is_dir():
                print(f"{name}: skipped, {folder} not found")
                continue
            suffix = "" if args.extractor is None else f"_{args.extractor}"
            X, y, class_names, _ = folder_dataset(folder, cache=args.cache / f"{name}_features{suffix}.npz",
                                                  extractor=args.extractor)
        target = stopping.make_target("accuracy", target_value)
        runs = []
        started = time.perf_counter()
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            pool, test = stratified_split(y, args.test_fraction, seed)
            steps = replay(X[pool], y[pool], X[test], y[test], len(class_names), target, budget, args.batch, seed,
                           run_on=args.run_on or args.variants, rules=rules, pick_sampling=args.pick_sampling)
            runs.append(steps)
            first = next((s for s in steps if s["state"] == stopping.SHOWN), None)
            crossing = next((s["n_labels"] for s in steps if s["truth"] >= target_value), None)
            print(f"{name} seed {seed}: true crossing at {crossing} labels; declared at "
                  f"{first and first['n_labels']} (truth then {first and round(first['truth'], 3)}, "
                  f"estimate {first and round(first['estimate'], 3)}, interval "
                  f"{first and [round(v, 3) for v in first['interval']]}); final truth {steps[-1]['truth']:.3f}, "
                  f"final estimate {steps[-1]['estimate'] and round(steps[-1]['estimate'], 3)} "
                  f"({steps[-1]['method'][:40]})", flush=True)
            if args.json:  # after every seed, so a long run stopped early keeps what it measured
                partial = summarise(runs, target_value, rules)
                partial.update(target=target_value, budget=budget, partial=True)
                args.json.write_text(json.dumps({**results, name: {"summary": partial, "runs": runs}},
                                                indent=1, default=float))
        s = summarise(runs, target_value, rules)
        s["seconds"] = round(time.perf_counter() - started, 1)
        s["target"] = target_value
        s["budget"] = budget
        results[name] = {"summary": s, "runs": runs}
        report(name, s)
        if args.variants:
            delays(name, runs, target_value)
            one_sided_coverage(name, runs)
        print(f"{name}: {s['seconds']} s", flush=True)
    print(f"load after: {os.getloadavg()}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=float))
    return 0


def report(name, s) -> None:
    for rule in [r for r in s if r in RULES or r in VARIANTS]:
        words = RULES.get(rule) or f"variant {rule} (floor / bound)"
        r = s[rule]
        print(f"{name} target {s['target']}: {words}: first declaration while truth < target in "
              f"{r['first_declaration_false']}/{r['runs']} runs ({_pct(r['first_declaration_false_rate'])}); "
              f"{r['declarations_false']}/{r['declarations']} of all declarations ({_pct(r['declarations_false_rate'])}); "
              f"never declared in {r['runs_never_declared']} runs; median labels after the true crossing "
              f"{r['labels_after_true_crossing_median']} (per run {r['labels_after_true_crossing_all']})")
    print(f"{name}: true crossings {s['true_crossing_per_run']}")


def delays(name, runs, target_value) -> None:
    """Where the delay comes from: at the first retrain at or after the true crossing, and at the
    app's declaration, the estimate's gap above the target against the distance from the
    estimate down to the bound, and the standard error's parts (median over runs)."""
    rows = {"at the true crossing": [], "at the app's declaration": []}
    for steps in runs:
        crossing = next((i for i, s in enumerate(steps) if s["truth"] >= target_value), None)
        shown = next((i for i, s in enumerate(steps) if s["state"] == stopping.SHOWN), None)
        for key, i in (("at the true crossing", crossing), ("at the app's declaration", shown)):
            if i is None:
                continue
            st = steps[i]
            d = st.get("details") or {}
            if st["estimate"] is None or "se" not in d:
                continue
            rows[key].append({
                "labels": st["n_labels"], "gap": st["estimate"] - target_value,
                "estimate-lower(2-sided)": st["estimate"] - (st["interval"][0] if st["interval"] else st["estimate"]),
                "estimate-lower(1-sided)": st["estimate"] - (st.get("lower_bound") or st["estimate"]),
                "se": d["se"], "se_model": d.get("se_model", float("nan")), "se_residuals": d["se_residuals"],
                "se_pool": d.get("se_pool", 0.0), "floor_scale": d.get("floor_scale", 1.0),
                "errors_seen": d.get("errors_sampled", float("nan")),
                "errors_predicted": d.get("errors_predicted", float("nan"))})
    for key, values in rows.items():
        if not values:
            continue
        med = {k: float(np.nanmedian([v[k] for v in values])) for k in values[0]}
        print(f"{name} {key} (median of {len(values)} runs): " + ", ".join(f"{k} {v:.4g}" for k, v in med.items()))


def one_sided_coverage(name, runs, near=0.95) -> None:
    """Issue 14's one-sided coverage study on the replays' checkpoints (every retrain of every
    run): the share at which the true accuracy lay below each bound form (a one-sided 95 % bound
    should miss at most 5 %), over every checkpoint with the difference or weighted estimate
    shown and over those whose estimate is at least ``near``; with the mean distance from the
    estimate down to the bound. The forms: the app's (Wilson at the effective size, z 1.645),
    the normal bound estimate - 1.645 se, both with the floor checked by the labels."""
    forms = {"wilson (app)": ("checked", 1.6448536269514722, False),
             "normal": ("checked", 1.6448536269514722, True)}
    for subset in ("all", f"estimate >= {near}"):
        cells = []
        for form, (floor, z, normal) in forms.items():
            miss = total = 0
            dist = []
            for steps in runs:
                for st in steps:
                    low = lower_from(st, variant_se(st, floor), z, normal=normal)
                    if low is None or (subset != "all" and st["estimate"] < near):
                        continue
                    total += 1
                    miss += st["truth"] < low
                    dist.append(st["estimate"] - low)
            cells.append(f"{form} {miss}/{total} ({_pct(miss / total if total else None)}), "
                         f"estimate - bound {np.mean(dist) if dist else float('nan'):.4f}")
        print(f"{name} one-sided coverage, checkpoints {subset}: true accuracy below the bound at " + "; ".join(cells))


def combine(paths) -> int:
    """Summarise runs from several --json files (same data set, target and budget per name)."""
    by_name: dict = {}
    for path in paths:
        for name, result in json.loads(Path(path).read_text()).items():
            entry = by_name.setdefault(name, {"runs": [], "target": result["summary"]["target"],
                                              "budget": result["summary"]["budget"]})
            entry["runs"].extend(result["runs"])
    for name, entry in by_name.items():
        s = summarise(entry["runs"], entry["target"])
        s["target"] = entry["target"]
        print(f"{name}: {len(entry['runs'])} runs, budget {entry['budget']}")
        report(name, s)
    return 0


def _pct(v) -> str:
    return "-" if v is None else f"{100 * v:.1f} %"


if __name__ == "__main__":
    raise SystemExit(main())
