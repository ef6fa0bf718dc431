"""How well the default features separate classes, with the default model.

    python tests/benchmarks/bench_feature_quality.py [--neu DIR] [--small-n 300] [--small-dir DIR]

Prints:
* NEU (6 classes x 300 images, folder per class): 5-fold stratified cross-validated macro-F1;
* the generated small-defect set (1,000 x 1,000 px parts, a defect covers ~1 % of the part,
  85 % OK): defect-vs-OK macro-F1 (5-fold) and, for information, the 5-class macro-F1.
Model: StandardScaler + LogisticRegression(class_weight="balanced", max_iter=2000); the project's
``make_model("logistic")`` is reported too when it exists. Features come from the project's
worker pool (``inspector.core.ingest.analyse_files``).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import confusion_matrix, f1_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from inspector.core import images
from inspector.core.features import default_extractor

DEFAULT_NEU = Path(__file__).resolve().parents[2].parent / "shared" / "datasets" / "neu"


def folder_features(root: Path, workers: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Features and folder-name labels of every image under ``root``."""
    paths = [root / f.relative_path for f in images.walk_images(root)]
    labels = np.array([p.parent.name for p in paths])
    start = time.perf_counter()
    try:
        from inspector.core.ingest import analyse_files
    except ImportError:  # the pool is not in the tree: one process
        extractor = default_extractor()
        vectors = [extractor.extract(images.load_gray(p, extractor.max_side)) for p in paths]
    else:
        vectors = [None] * len(paths)
        for result in analyse_files(paths, workers=workers):
            vectors[result.index] = result.features
    missing = [str(paths[i]) for i, v in enumerate(vectors) if v is None]
    if missing:
        raise SystemExit(f"no features for {len(missing)} files, e.g. {missing[0]}")
    elapsed = time.perf_counter() - start
    print(f"  {len(paths)} images from {root}: features in {elapsed:.1f} s ({len(paths) / elapsed:.0f} images/s)")
    return np.stack(vectors).astype(np.float32), labels


def models() -> dict:
    chosen = {"scaler+logistic(balanced, max_iter=2000)": lambda: make_pipeline(
        StandardScaler(), LogisticRegression(class_weight="balanced", max_iter=2000))}
    try:
        from inspector.core.learning.models import make_model

        make_model("logistic", random_state=0)
        chosen['project make_model("logistic")'] = lambda: make_model("logistic", random_state=0)
    except Exception:  # noqa: BLE001 - the learning package may not be there yet
        pass
    return chosen


def cv_macro_f1(X: np.ndarray, y: np.ndarray, factory, folds: int = 5) -> tuple[float, np.ndarray]:
    cv = StratifiedKFold(folds, shuffle=True, random_state=0)
    predicted = cross_val_predict(factory(), X, y, cv=cv, n_jobs=1)
    return float(f1_score(y, predicted, average="macro")), predicted


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--neu", type=Path, default=DEFAULT_NEU)
    parser.add_argument("--small-dir", type=Path, help="use this already generated small-defect folder")
    parser.add_argument("--small-n", type=int, default=300, help="images in the generated small-defect set")
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--skip-neu", action="store_true")
    parser.add_argument("--skip-small", action="store_true")
    args = parser.parse_args(argv)
    extractor = default_extractor()
    print(f"extractor {extractor.name} v{extractor.version}, dim {extractor.dim}")

    if not args.skip_neu:
        if not args.neu.is_dir():
            print(f"NEU: {args.neu} not found, skipped")
        else:
            print("NEU")
            X, y = folder_features(args.neu, args.workers)
            for name, factory in models().items():
                score, predicted = cv_macro_f1(X, y, factory)
                print(f"  NEU 5-fold macro-F1 [{name}]: {score:.4f}")
            classes = sorted(set(y))
            print("  confusion (rows true, columns predicted):", ", ".join(classes))
            print("  " + str(confusion_matrix(y, predicted, labels=classes)).replace("\n", "\n  "))

    if not args.skip_small:
        with tempfile.TemporaryDirectory(prefix="inspector-small-") as tmp:
            root = args.small_dir
            if root is None:
                from inspector.core.demo import write_small_defect_set

                root = Path(tmp) / "small"
                start = time.perf_counter()
                summary = write_small_defect_set(root, n_images=args.small_n, random_state=0, class_folders=True)
                print(f"small defects: generated {args.small_n} images of 1000 x 1000 px "
                      f"(~1 % defect area, 85 % OK) in {time.perf_counter() - start:.1f} s: {summary['counts']}")
            X, labels = folder_features(root, args.workers)
            binary = np.where(labels == "ok", "ok", "defect")
            for name, factory in models().items():
                score, predicted = cv_macro_f1(X, binary, factory)
                multi, _ = cv_macro_f1(X, labels, factory)
                print(f"  small-defect defect-vs-OK 5-fold macro-F1 [{name}]: {score:.4f}   "
                      f"(5-class macro-F1 {multi:.4f})")
            print("  confusion defect/ok:", confusion_matrix(binary, predicted, labels=["defect", "ok"]).tolist())
    return 0


if __name__ == "__main__":
    sys.exit(main())
