"""Every feature extractor side by side: speed on 2 workers and all-labels classification quality.

    python tests/benchmarks/bench_extractors.py [--neu DIR] [--elpv DIR] [--large N] [--workers 2]
        [--defect-area 0.002] [--extractors texture,cnn,texture+cnn] [--variants] [--skip-speed]
        [--speed-images N] [--skip-quality] [--fold-seeds N] [--cache DIR]

Speed (same run, same files): images/s of read + decode + features in a spawn pool of
``--workers`` processes (one OpenCV thread each, chunks of 8 files, as the ingest pool does) and
its ratio to the texture extractor; the CPU milliseconds per image for decoding and for the
features (CPU time does not change with other load on the machine, wall time does), the
texture/this CPU ratio, the images/s those CPU costs give on idle cores, and the largest worker
RSS seen.

Quality: 5-fold stratified cross-validation with all labels, the app's own
``make_model("logistic")`` (StandardScaler + balanced LogisticRegression, C=1): NEU 6-class macro-F1; ELPV 4-class macro-F1 and
defective-vs-not accuracy (defective = expert defect probability >= 0.5, from ``cells.csv``);
the generated large-image set (``--large N`` parts of 500 x 1,250 px, 13 % with a thin crack or
scratch whose extent covers ~0.2 % of the part, about 35 px) defect-vs-OK macro-F1. ``--variants`` adds CNN variants
(tiles at 640 and 1,024 px, single layers) and block weighting of the combined extractor.
Features are cached as .npy in ``--cache`` (delete it after changing an extractor).
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
CHUNK = 8


def make_extractor(spec: str):
    """A registered name, or a CNN variant ``cnn[tiles=640,layers=fire9]`` for ``--variants``."""
    from inspector.core.features import CnnExtractor, CombinedExtractor, get_extractor
    from inspector.core.features.efficientnet import EfficientNetExtractor

    if "[" not in spec:
        return get_extractor(spec)
    base, options = spec[:-1].split("[", 1)
    kwargs: dict = {}
    if base in ("effnet", "texture+effnet"):  # effnet[taps=block14+head,side=224,dihedral=1]
        for option in options.split(","):
            key, value = option.split("=")
            if key == "taps":
                kwargs["taps"] = tuple(value.split("+"))
            elif key == "side":
                kwargs["input_side"] = int(value)
            elif key == "dihedral":
                kwargs["dihedral"] = value == "1"
        net = EfficientNetExtractor(name=spec if base == "effnet" else "effnet", **kwargs)
        return net if base == "effnet" else CombinedExtractor([get_extractor("texture"), net], name=spec)
    for option in options.split(","):
        key, value = option.split("=")
        if key == "tiles":
            kwargs.update(tiles=True, tile_max_side=int(value))
        elif key == "layers":
            kwargs["layers"] = tuple(value.split("+"))
        elif key == "side":
            kwargs["input_side"] = int(value)
    cnn = CnnExtractor(name=spec if base == "cnn" else "cnn", **kwargs)
    return cnn if base == "cnn" else CombinedExtractor([get_extractor("texture"), cnn], name=spec)


def split_specs(text: str) -> list[str]:
    """Comma-separated specs; commas inside ``[...]`` separate a variant's options."""
    specs, depth, current = [], 0, ""
    for char in text:
        depth += (char == "[") - (char == "]")
        if char == "," and depth == 0:
            specs.append(current)
            current = ""
        else:
            current += char
    return [spec for spec in [*specs, current] if spec]


_WORKER_EXTRACTOR = None


def _init(spec: str) -> None:
    global _WORKER_EXTRACTOR
    import cv2

    cv2.setNumThreads(1)
    _WORKER_EXTRACTOR = make_extractor(spec)


def _chunk(paths: list[str]) -> tuple[np.ndarray, int, float, float]:
    """Features of a chunk of files, the worker's RSS, and the CPU seconds spent reading + decoding
    and extracting (CPU time does not depend on what else the machine runs: OpenCV uses one thread)."""
    import psutil

    from inspector.core import images

    start = time.process_time()
    decoded = [images.decode(images.read_bytes(Path(p)), p) for p in paths]
    middle = time.process_time()
    vectors = _WORKER_EXTRACTOR.features_of_batch(decoded)  # one network pass per chunk
    return vectors, psutil.Process().memory_info().rss, middle - start, time.process_time() - middle


def extract(spec: str, paths: list[str], workers: int) -> tuple[np.ndarray, float, int, float, float]:
    """(features, images/s, largest worker RSS, decode and extract CPU seconds per image)."""
    context = multiprocessing.get_context("spawn")
    chunks = [paths[i : i + CHUNK] for i in range(0, len(paths), CHUNK)]
    with context.Pool(workers, initializer=_init, initargs=(spec,)) as pool:
        pool.map(_chunk, [paths[:1]] * workers)  # start the workers and load the network first
        start = time.perf_counter()
        results = pool.map(_chunk, chunks, chunksize=1)
        elapsed = time.perf_counter() - start
    vectors = np.concatenate([r[0] for r in results]).astype(np.float32)
    rss = max(r[1] for r in results)
    decode = sum(r[2] for r in results) / len(paths)
    features = sum(r[3] for r in results) / len(paths)
    return vectors, len(paths) / elapsed, rss, decode, features


def cached_features(cache: Path, name: str, spec: str):
    """The cached features of ``spec`` on data set ``name``; a combined extractor's are composed
    from its parts' when all of those are cached (the product composes them the same way);
    None when not cached."""
    cached = cache / f"{name}_{spec}.npy"
    if cached.is_file():
        return np.load(cached)
    parts = getattr(make_extractor(spec), "parts", None) if "[" not in spec else None
    if parts:
        got = [cached_features(cache, name, part.name) for part in parts]
        if all(g is not None for g in got) and len({len(g) for g in got}) == 1:
            return np.hstack(got).astype(np.float32)
    return None


def data_sets(args) -> dict:
    from inspector.core import images

    sets = {}
    for name, folder in (("NEU", args.neu), ("ELPV", args.elpv)):
        if folder and folder.is_dir():
            paths = sorted(str(folder / f.relative_path) for f in images.walk_images(folder))
            sets[name] = (folder, paths)
        else:
            print(f"{name}: {folder} not found, skipped")
    if args.large:
        folder = args.cache / f"large_{args.large}_{args.defect_area}"
        if not folder.is_dir():
            from inspector.core.demo import write_demo_dataset

            write_demo_dataset(folder, n_images=args.large, size=(500, 1250), ok_fraction=0.87,
                               defect_area=args.defect_area, random_state=0, defect_classes=("crack", "scratch"),
                               class_folders=True)
        paths = sorted(str(folder / f.relative_path) for f in images.walk_images(folder))
        # the default area keeps the plain name (its cached features stay valid), others are tagged
        tag = "generated" if args.defect_area == 0.002 else f"generated-area{args.defect_area:g}"
        sets[tag] = (folder, paths)
    return sets


def tasks(name: str, folder: Path, paths: list[str]) -> dict[str, tuple[np.ndarray, str]]:
    """Label vectors per task, with the metric reported for it."""
    folders = np.array([Path(p).parent.name for p in paths])
    if name == "NEU":
        return {"6-class macro-F1": (folders, "f1")}
    if name.startswith("generated"):
        return {"defect-vs-OK macro-F1": (np.where(folders == "ok", "ok", "defect"), "f1")}
    probability = {}
    with open(folder / "cells.csv", newline="") as handle:
        for row in csv.DictReader(handle):
            probability[row["path"]] = float(row["defect_probability"])
    p = np.array([probability[str(Path(x).relative_to(folder))] for x in paths])
    return {"4-class macro-F1": (folders, "f1"),
            "defective-vs-not accuracy": (np.where(p >= 0.5, "defective", "functional"), "accuracy")}


def cross_validated(X: np.ndarray, y: np.ndarray, metric: str, column_weights=None, seed: int = 0) -> float:
    from sklearn.metrics import accuracy_score, f1_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.preprocessing import FunctionTransformer

    from inspector.core.learning.models import make_model

    model = make_model("logistic", random_state=0)  # the app's own: standardise, balanced logistic
    if column_weights is not None:  # weigh columns after standardising (block weighting)
        weights = column_weights.astype(np.float32)
        model.steps.insert(1, ("weigh", FunctionTransformer(lambda Z, w=weights: Z * w)))
    folds = StratifiedKFold(5, shuffle=True, random_state=seed)
    predicted = cross_val_predict(model, X, y, cv=folds, n_jobs=1)
    return float(f1_score(y, predicted, average="macro") if metric == "f1" else accuracy_score(y, predicted))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--neu", type=Path, default=DATA / "neu")
    parser.add_argument("--elpv", type=Path, default=DATA / "elpv")
    parser.add_argument("--large", type=int, default=400, help="generated 500 x 1,250 parts (0: none)")
    parser.add_argument("--defect-area", type=float, default=0.002,
                        help="share of a generated part a defect's extent covers (0.002: ~35 px on 500 x 1,250)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--fold-seeds", type=int, default=1,
                        help="repeat the 5-fold cross-validation with this many fold seeds (mean, each seed, "
                             "paired difference to the first extractor listed)")
    parser.add_argument("--extractors", default="texture,cnn,texture+cnn")
    parser.add_argument("--variants", action="store_true", help="also CNN variants and combined block weighting")
    parser.add_argument("--skip-speed", action="store_true",
                        help="use cached features where there are any (a combination: its cached parts)")
    parser.add_argument("--speed-images", type=int, default=0,
                        help="time extraction on this many evenly spaced images per set (0: all); the "
                             "features for quality then come from the cache, else from a full extraction")
    parser.add_argument("--skip-quality", action="store_true")
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "inspector-bench-extractors")
    args = parser.parse_args(argv)
    args.cache.mkdir(parents=True, exist_ok=True)
    specs = split_specs(args.extractors)
    if args.variants:
        specs += ["cnn-tiles", "cnn[layers=fire9]", "cnn[layers=fire5+fire7]", "cnn[side=320]", "cnn[tiles=1024]"]
    for spec in specs:
        extractor = make_extractor(spec)
        print(f"{spec}: version {extractor.version}, dim {extractor.dim}; {extractor.describe()}")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"workers {args.workers}; load average at start {load:.1f} on {os.cpu_count()} cores")

    for name, (folder, paths) in data_sets(args).items():
        print(f"\n{name}: {len(paths)} images in {folder}")
        features: dict[str, np.ndarray] = {}
        rates: dict[str, float] = {}
        costs: dict[str, float] = {}
        timed = paths if not args.speed_images or args.speed_images >= len(paths) else [
            paths[i] for i in np.linspace(0, len(paths) - 1, args.speed_images).round().astype(int)]
        for spec in specs:
            cached = args.cache / f"{name}_{spec}.npy"
            if args.skip_speed:
                X = cached_features(args.cache, name, spec)
                if X is not None:
                    features[spec] = X
                    continue
            X, rate, rss, decode, cpu = extract(spec, timed, args.workers)
            if timed is paths:
                np.save(cached, X)
                features[spec] = X
            elif not args.skip_quality:
                features[spec] = cached_features(args.cache, name, spec)
                if features[spec] is None:
                    features[spec] = extract(spec, paths, args.workers)[0]
                    np.save(cached, features[spec])
            rates[spec] = rate
            costs[spec] = cpu
            ratio = f"{rate / rates['texture']:.2f}" if "texture" in rates else "-"
            cost_ratio = f"{costs['texture'] / cpu:.2f}" if "texture" in costs else "-"
            print(f"  speed {spec:24s} {rate:7.1f} images/s ({len(timed)} images) on {args.workers} workers (x texture {ratio}); "
                  f"CPU per image: decode {decode * 1000:5.1f} ms, features {cpu * 1000:6.1f} ms (texture/this "
                  f"{cost_ratio}); idle {args.workers} cores ~{args.workers / (decode + cpu):5.0f} images/s; "
                  f"worker RSS {rss / 2**20:.0f} MiB", flush=True)
        if args.skip_quality:
            continue
        for task, (y, metric) in tasks(name, folder, paths).items():
            first = None
            for spec in specs:
                scores = np.array([cross_validated(features[spec], y, metric, seed=seed)
                                   for seed in range(args.fold_seeds)])
                line = f"  {task:28s} {spec:24s} {scores.mean():.4f}"
                if args.fold_seeds > 1:  # each fold seed, and the paired difference to the first extractor
                    line += f"  (seeds {' '.join(f'{v:.4f}' for v in scores)}"
                    if first is not None:
                        diff = scores - first
                        line += f"; minus {specs[0]}: {diff.mean():+.4f}, from {diff.min():+.4f} to {diff.max():+.4f}"
                    line += ")"
                first = scores if first is None else first
                print(line, flush=True)
            if args.variants and "texture+cnn" in features:
                combined = make_extractor("texture+cnn")
                weights = np.concatenate([np.full(dim, 1 / np.sqrt(dim)) for _, dim in combined.blocks])
                score = cross_validated(features["texture+cnn"], y, metric, weights * np.sqrt(combined.dim / 2))
                print(f"  {task:28s} {'texture+cnn 1/sqrt(dim)':24s} {score:.4f}", flush=True)
    print(f"\nload average at the end {os.getloadavg()[0] if hasattr(os, 'getloadavg') else float('nan'):.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
