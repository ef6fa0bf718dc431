"""How far can the app's own model get on ELPV's 4 grades with the features Inspector offers?

    python tests/benchmarks/bench_elpv_headroom.py [--elpv DIR] [--cache DIR] [--seeds 0,1,2]
        [--sections regularisation,flips,decision] [--C 1,0.1,0.01,0.001] [--flip-extractor effnet]
        [--flip-workers 2]

Every figure is 5-fold stratified cross-validated macro-F1 over all 2,624 ELPV cells (4 classes),
repeated for each fold seed in ``--seeds`` (the spread over seeds is the noise to beat), with the
app's model (``make_model("logistic")``: standardised columns, class-balanced logistic regression).
Features come from the ``bench_extractors.py`` cache (``--cache``, default
/tmp/inspector-bench-extractors: ``ELPV_texture.npy``, ``ELPV_cnn.npy``, ``ELPV_effnet.npy``; run
``bench_extractors.py --extractors texture,cnn,effnet --large 0`` first when they are missing).

Sections:

* ``regularisation``: the logistic regression's C over ``--C`` on ``texture+cnn+effnet``;
* ``flips``: the embedding of ``--flip-extractor`` averaged over the image and its flips / quarter
  turns (test-time augmentation: 1, 2 = horizontal flip, 4 = both flips and the half turn, 8 =
  every flip and quarter turn). Extracts each of the 8 views once per cell (8 network passes,
  cached as ``ELPV_<name>_views.npy``; about 9 minutes for effnet on 2 busy cores);
* ``decision``: a bias per class added to the log-probabilities to maximise macro-F1, fitted on
  out-of-fold predictions of other cells (nested: fitted on 4/5 of the out-of-fold predictions,
  judged on the rest), and the ordinal reading (expected grade cut at three thresholds, in-sample:
  an upper bound).
"""

from __future__ import annotations

import argparse
import csv
import multiprocessing
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
DATA = Path(os.environ.get("INSPECTOR_TEST_DATA", ROOT.parent / "shared" / "datasets"))
#: flip / turn views averaged per setting (indices into the 8 views of ``efficientnet._dihedral``:
#: 0 as is, 1 mirrored left-right, 4 half turn, 5 half turn mirrored = mirrored top-bottom)
VIEW_SETS = {1: [0], 2: [0, 1], 4: [0, 1, 4, 5], 8: list(range(8))}
CHUNK = 8


def elpv_labels(folder: Path) -> tuple[list[str], np.ndarray]:
    from inspector.core import images

    paths = sorted(str(folder / f.relative_path) for f in images.walk_images(folder))
    with open(folder / "cells.csv", newline="") as handle:
        known = {row["path"] for row in csv.DictReader(handle)}
    missing = [p for p in paths if str(Path(p).relative_to(folder)) not in known]
    if missing:
        raise SystemExit(f"{len(missing)} images are not in {folder / 'cells.csv'} (first: {missing[0]})")
    return paths, np.array([Path(p).parent.name for p in paths])


def cached(cache: Path, name: str, n: int) -> np.ndarray:
    path = cache / f"ELPV_{name}.npy"
    if not path.is_file():
        raise SystemExit(f"{path} is missing: run tests/benchmarks/bench_extractors.py --extractors {name} --large 0 "
                         f"--cache {cache} first")
    X = np.load(path)
    if len(X) != n:
        raise SystemExit(f"{path} has {len(X)} rows for {n} images: delete it and extract again")
    return X


def scores(X: np.ndarray, y: np.ndarray, seeds: list[int], C: float = 1.0, proba: bool = False):
    from sklearn.metrics import f1_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    from inspector.core.learning.models import make_model

    out, probabilities = [], []
    for seed in seeds:
        folds = StratifiedKFold(5, shuffle=True, random_state=seed)
        P = cross_val_predict(make_model("logistic", random_state=0, C=C), X, y, cv=folds, method="predict_proba")
        out.append(f1_score(y, np.unique(y)[P.argmax(1)], average="macro"))
        probabilities.append(P)
    return (np.array(out), probabilities) if proba else np.array(out)


def show(label: str, values: np.ndarray, baseline: np.ndarray | None = None) -> None:
    text = f"  {label:44s} macro-F1 {values.mean():.4f} (seeds {' '.join(f'{v:.4f}' for v in values)})"
    if baseline is not None:
        diff = values - baseline
        text += f"; paired difference {diff.mean():+.4f} (min {diff.min():+.4f}, max {diff.max():+.4f})"
    print(text, flush=True)


# --------------------------------------------------------------------------- flips
_EXTRACTOR = None


def _init(name: str) -> None:
    global _EXTRACTOR
    import cv2

    from inspector.core.features import get_extractor

    cv2.setNumThreads(1)
    _EXTRACTOR = get_extractor(name)


def _views_of(paths: list[str]) -> np.ndarray:
    """(n, 8, dim) pooled vectors of each flip / quarter turn of each image's squeezed view."""
    from inspector.core import images
    from inspector.core.features.cnn import to_bgr_u8
    from inspector.core.features.efficientnet import _dihedral

    decoded = [images.decode(images.read_bytes(Path(p)), p) for p in paths]
    views = np.stack([_EXTRACTOR._squeezed(to_bgr_u8(d)) for d in decoded])
    return np.stack([_EXTRACTOR._run(v) for v in _dihedral(views)], axis=1).astype(np.float32)


def flip_views(name: str, paths: list[str], cache: Path, workers: int) -> np.ndarray:
    path = cache / f"ELPV_{name}_views.npy"
    if path.is_file():
        V = np.load(path)
        if len(V) == len(paths):
            return V
    start = time.perf_counter()
    chunks = [paths[i : i + CHUNK] for i in range(0, len(paths), CHUNK)]
    with multiprocessing.get_context("spawn").Pool(workers, initializer=_init, initargs=(name,)) as pool:
        V = np.concatenate(pool.map(_views_of, chunks, chunksize=1))
    np.save(path, V)
    print(f"  extracted 8 views of {len(paths)} cells with {name} in {time.perf_counter() - start:.0f} s", flush=True)
    return V


# --------------------------------------------------------------------------- decision rule
def _fit_bias(L: np.ndarray, y: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """Per-class log-probability offsets maximising macro-F1 (coordinate search on a grid)."""
    from sklearn.metrics import f1_score

    bias = np.zeros(L.shape[1])
    grid = np.linspace(-2, 2, 41)
    for _ in range(3):
        for k in range(L.shape[1]):
            def score(g, k=k):
                trial = bias.copy()
                trial[k] = g
                return f1_score(y, classes[(L + trial).argmax(1)], average="macro")
            bias[k] = max(grid, key=score)
    return bias - bias.mean()


def decision_section(P: np.ndarray, y: np.ndarray, seeds: list[int]) -> None:
    from sklearn.metrics import f1_score
    from sklearn.model_selection import StratifiedKFold

    classes = np.unique(y)
    L = np.log(np.clip(P, 1e-9, 1.0))
    plain = f1_score(y, classes[L.argmax(1)], average="macro")
    nested = []
    for seed in seeds:
        predicted = np.empty(len(y), dtype=classes.dtype)
        for train, test in StratifiedKFold(5, shuffle=True, random_state=100 + seed).split(L, y):
            predicted[test] = classes[(L[test] + _fit_bias(L[train], y[train], classes)).argmax(1)]
        nested.append(f1_score(y, predicted, average="macro"))
    in_sample = f1_score(y, classes[(L + _fit_bias(L, y, classes)).argmax(1)], average="macro")
    print(f"  argmax of the model's probabilities              macro-F1 {plain:.4f}")
    print(f"  + per-class bias, nested                         macro-F1 {np.mean(nested):.4f} "
          f"(seeds {' '.join(f'{v:.4f}' for v in nested)}); in-sample (optimistic) {in_sample:.4f}")
    grades = {"functional": 0, "possibly_defective": 1, "likely_defective": 2, "defective": 3}
    if set(classes) == set(grades):
        expected = P @ np.array([grades[c] for c in classes], float)
        truth = np.array([grades[c] for c in y])
        best = 0.0
        for a in np.linspace(0.2, 1.2, 21):
            for b in np.linspace(a + 0.1, 2.5, 25):
                for c in np.linspace(b + 0.1, 2.9, 20):
                    best = max(best, f1_score(truth, np.digitize(expected, [a, b, c]), average="macro"))
        print(f"  ordinal: expected grade cut at 3 thresholds      macro-F1 {best:.4f} (in-sample best, an upper bound)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--elpv", type=Path, default=DATA / "elpv")
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "inspector-bench-extractors")
    parser.add_argument("--seeds", default="0,1,2", help="fold seeds")
    parser.add_argument("--sections", default="regularisation,flips,decision")
    parser.add_argument("--C", default="1,0.1,0.01,0.001", help="regularisation strengths to try")
    parser.add_argument("--flip-extractor", default="effnet")
    parser.add_argument("--flip-workers", type=int, default=2)
    args = parser.parse_args(argv)
    if not args.elpv.is_dir():
        print(f"ELPV not found at {args.elpv}")
        return 1
    seeds = [int(s) for s in args.seeds.split(",")]
    sections = set(args.sections.split(","))
    paths, y = elpv_labels(args.elpv)
    counts = {str(c): int(n) for c, n in zip(*np.unique(y, return_counts=True))}
    print(f"ELPV: {len(paths)} cells, classes {counts}; fold seeds {seeds}; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores", flush=True)
    X = {name: cached(args.cache, name, len(paths)) for name in ("texture", "cnn", "effnet")}
    combined = np.hstack([X["texture"], X["cnn"], X["effnet"]])
    baseline, probabilities = scores(combined, y, seeds, proba=True)
    print("\nregularisation (texture+cnn+effnet):")
    show("C = 1 (the app's)", baseline)
    if "regularisation" in sections:
        for C in [float(c) for c in args.C.split(",") if float(c) != 1.0]:
            show(f"C = {C:g}", scores(combined, y, seeds, C=C), baseline)
    if "flips" in sections:
        name = args.flip_extractor
        print(f"\nflips: {name} alone, embedding averaged over views")
        V = flip_views(name, paths, args.cache, args.flip_workers)
        if not np.allclose(V[:, 0], X[name], atol=1e-5):
            print(f"  note: view 0 differs from the cached ELPV_{name}.npy (extractor changed?)")
        one = None
        for count, views in VIEW_SETS.items():
            values = scores(V[:, views].mean(axis=1), y, seeds)
            show(f"{count} view{'s' if count > 1 else ''} ({count}x the network passes)", values, one)
            one = values if one is None else one
    if "decision" in sections:
        print("\ndecision rule on the out-of-fold probabilities of texture+cnn+effnet, C = 1 (first fold seed):")
        decision_section(probabilities[0], y, seeds)
    print(f"\nload average at the end {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
