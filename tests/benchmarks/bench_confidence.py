"""Confidence a quality engineer can put on the line: calibration, the escape-safe threshold, novelty.

For each data set (NEU, ELPV, the generated imbalanced set of bench_label_efficiency.py) the
images are split into a labelling half and a held-out half (stratified, seeded). Labels are
chosen as in the app: cold start, then the default strategy (uncertain + diverse, 10 % audit) in
batches of 10, the model retrained and recalibrated after each batch exactly as the learner does.

1. Calibration: expected calibration error (10 bins, top-class confidence) on the held-out half
   at 50, 100 and 300 labels, before (raw classifier) and after calibration.
2. Escapes: at 100, 300 and all labels of the labelling half, the review threshold chosen by the
   product (routing.choose_threshold on cross-validated, calibrated predictions, target 1 %) is
   applied to the held-out half with novelty: escape rate (defective parts passed / defective
   parts) with its 95 % Wilson interval, and the review share. A model that was not shown safe
   routes every part to review (escape 0, review 100 %); the table says so.
3. Novelty: for each defect class, a model trained on every label of the labelling half except
   that class; on the held-out half, the share of the left-out class routed to review (novel or
   low confidence; and novel alone), the share not passed (review or defect path: what keeps it
   off the line) and the share of the acceptable class routed to review.
   Targets: >= 80 % and <= 10 %.

Acceptable classes: NEU has none, so the benchmark treats ``--neu-acceptable`` (default
rolled-in_scale) as the acceptable class; ELPV: functional; generated: ok.

    .venv/bin/python tests/benchmarks/bench_confidence.py [--datasets neu,elpv,generated] [--seeds 1]
        [--out /tmp/inspector_bench_confidence] [--neu-acceptable rolled-in_scale]

Prints figures; asserts nothing. Features are cached under --out.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from inspector.core.learning.calibration import calibrate_model, reliability  # noqa: E402
from inspector.core.learning.metrics import wilson_interval  # noqa: E402
from inspector.core.learning.models import fit_model  # noqa: E402
from inspector.core.learning.novelty import fit_novelty  # noqa: E402
from inspector.core.learning.standardise import standardisation  # noqa: E402
from inspector.core.learning.routing import PASS, choose_threshold, route  # noqa: E402
from inspector.core.learning.strategies import get_strategy  # noqa: E402

CHECKPOINTS = (50, 100, 300)
OUT = Path("/tmp/inspector_bench_confidence")


def split_half(y: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    a, b = [], []
    for c in np.unique(y):
        rows = rng.permutation(np.flatnonzero(y == c))
        half = len(rows) // 2
        a.append(rows[:half])
        b.append(rows[half:])
    return np.concatenate(a), np.concatenate(b)


POOL_PRIOR = os.environ.get("BENCH_LABEL_PRIOR") is None


def trained(X, y, classes, kind="logistic", seed=0, X_pool=None, is_audit=None):
    model = fit_model(X, y, classes, kind=kind, random_state=seed)
    oof = calibrate_model(model, X, y, X_pool=X_pool if POOL_PRIOR else None, is_audit=is_audit)
    return model, oof


def active_labels(X_pool, y_pool, classes, budget, seed, batch=10):
    """Replay the app's loop; returns (rows of X_pool in labelling order, audit flag per row)."""
    strategy = get_strategy("uncertain_diverse")
    labelled = np.zeros(len(y_pool), bool)
    order: list[int] = []
    audit: list[bool] = []
    model = None
    while len(order) < budget:
        sel = strategy(model, X_pool, labelled, min(batch, budget - len(order)), [seed, len(order)], audit_share=0.1)
        if len(sel) == 0:
            break
        order += sel.indices.tolist()
        audit += sel.audit.tolist()
        labelled[sel.indices] = True
        rows = np.asarray(order)
        model, _ = trained(X_pool[rows], y_pool[rows], classes, seed=seed, X_pool=X_pool, is_audit=np.asarray(audit))
    return np.asarray(order, np.int64), np.asarray(audit, bool)


def escape_row(y_test, proba, novel, classes, acceptable_cols, threshold):
    path, review, _ = route(proba, acceptable_cols, threshold, novel)
    defective = ~acceptable_cols[np.searchsorted(classes, y_test)]
    n_def = int(defective.sum())
    esc = int(np.sum((path == PASS) & defective))
    lo, hi = wilson_interval(esc, n_def)
    return esc, n_def, lo, hi, float(review.mean())


def run_dataset(name, X, y, class_names, acceptable_name, seed, budget_max=300):
    classes = np.arange(len(class_names))
    acceptable_cols = np.array([n == acceptable_name for n in class_names])
    pool, test = split_half(y, seed)
    Xp, yp, Xt, yt = X[pool], y[pool], X[test], y[test]
    mean, std = standardisation(X)  # the app standardises novelty by the whole image pool
    print(f"\n== {name}: {len(y)} images, classes {', '.join(f'{n} ({int(np.sum(y == i))})' for i, n in enumerate(class_names))}; "
          f"acceptable: {acceptable_name}; labelling half {len(pool)}, held-out half {len(test)}; seed {seed}")
    started = time.perf_counter()
    cache = OUT / f"{name}_order_s{seed}_{'pool' if POOL_PRIOR else 'label'}prior_audit.npz"
    if cache.exists():
        saved = np.load(cache)
        order, audit = saved["order"], saved["audit"]
    else:
        order, audit = active_labels(Xp, yp, classes, min(budget_max, len(pool)), seed)
        np.savez(cache, order=order, audit=audit)
    print(f"   active-learning replay to {len(order)} labels: {time.perf_counter() - started:.0f} s")
    print(f"   {'labels':>7} {'ECE raw':>8} {'ECE cal':>8} {'acc':>6} {'T':>5} {'shrink':>6} | "
          f"{'threshold':>9} {'escapes':>12} {'escape rate (95 % CI)':>24} {'review':>7} {'novel':>6}")
    points = [c for c in CHECKPOINTS if c <= len(order)] + ["all"]
    for at in points:
        rows = np.arange(len(pool)) if at == "all" else order[:at]
        model, oof = trained(Xp[rows], yp[rows], classes, seed=seed, X_pool=Xp,
                             is_audit=None if at == "all" else audit[:at])
        raw = model.raw_proba(Xt)
        cal = model.predict_proba(Xt)
        ece_raw = reliability(yt, raw, classes)["ece"]
        ece_cal = reliability(yt, cal, classes)["ece"]
        acc = float(np.mean(classes[np.argmax(cal, axis=1)] == yt))
        line = (f"   {str(at):>7} {ece_raw:8.3f} {ece_cal:8.3f} {acc:6.3f} {model.calibration.temperature:5.2f} "
                f"{model.calibration.shrink:6.3f} | ")
        if at == 50:
            print(line + "(threshold not evaluated at 50)")
            continue
        th = choose_threshold(yp[rows], model.calibration.apply(oof) if oof is not None else model.predict_proba(Xp[rows]),
                              classes, acceptable_cols, 0.01,
                              {i: n for i, n in enumerate(class_names)})
        novelty = fit_novelty(Xp[rows], mean, std)
        novel = novelty.is_novel(Xt) if novelty is not None else np.zeros(len(yt), bool)
        esc, n_def, lo, hi, review = escape_row(yt, cal, novel, classes, acceptable_cols, th["value"])
        thr = f"{th['value']:.3f}" if th["shown_safe"] else "not safe"
        print(line + f"{thr:>9} {esc:>5}/{n_def:<6} {esc / max(n_def, 1):7.2%} ({lo:.2%}-{hi:.2%}) {review:7.1%} "
                     f"{novel.mean():6.1%}")
        if not th["shown_safe"]:
            print(f"{'':>12}{th['explanation']}")
    # novelty: leave each defect class out entirely
    print(f"   novelty, one defect class left out (all other labels of the labelling half):")
    print(f"   {'left out':>20} {'to review':>9} {'novel':>6} {'not passed':>10} | {'acceptable to review':>20} "
          f"{'novel':>6} {'threshold':>9}")
    for c in classes:
        if acceptable_cols[c]:
            continue
        keep = yp != c
        model, oof = trained(Xp[keep], yp[keep], classes, seed=seed, X_pool=Xp)
        th = choose_threshold(yp[keep], model.calibration.apply(oof), classes, acceptable_cols, 0.01)
        novelty = fit_novelty(Xp[keep], mean, std)
        cal = model.predict_proba(Xt)
        novel = novelty.is_novel(Xt)
        path, review, _ = route(cal, acceptable_cols, th["value"], novel)
        out = yt == c
        ok = acceptable_cols[yt]
        thr = f"{th['value']:.3f}" if th["shown_safe"] else "not safe"
        print(f"   {class_names[c]:>20} {review[out].mean():9.1%} {novel[out].mean():6.1%} "
              f"{np.mean(path[out] != PASS):10.1%} | "
              f"{review[ok].mean():20.1%} {novel[ok].mean():6.1%} {thr:>9}")


def main() -> int:
    parser = argparse.ArgumentParser()
    default_data = Path(os.environ.get("INSPECTOR_TEST_DATA", REPO.parent / "shared" / "datasets"))
    parser.add_argument("--data", type=Path, default=default_data)
    parser.add_argument("--datasets", default="neu,elpv,generated")
    parser.add_argument("--out", type=Path, default=Path("/tmp/inspector_bench_confidence"))
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--neu-acceptable", default="rolled-in_scale")
    parser.add_argument("--generated-images", type=int, default=1200)
    args = parser.parse_args()
    from inspector.core.learning.simulate import folder_dataset

    args.out.mkdir(parents=True, exist_ok=True)
    global OUT
    OUT = args.out
    print(f"load: {os.getloadavg()[0]:.1f} (1 min)")
    for name in args.datasets.split(","):
        if name in ("neu", "elpv"):
            folder = args.data / name
            if not folder.is_dir():
                print(f"{name}: not found at {folder}; set INSPECTOR_TEST_DATA (skipped)")
                continue
            X, y, class_names, _ = folder_dataset(folder, cache=args.out / f"{name}_features.npz")
            acceptable = args.neu_acceptable if name == "neu" else "functional"
        elif name == "generated":
            from bench_label_efficiency import generated_dataset

            X, y, class_names = generated_dataset(args.out, args.generated_images)
            acceptable = "ok"
        else:
            print(f"unknown data set {name}")
            return 2
        for seed in range(args.seeds):
            run_dataset(name, X, y, list(class_names), acceptable, seed)
    print(f"load: {os.getloadavg()[0]:.1f} (1 min)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
