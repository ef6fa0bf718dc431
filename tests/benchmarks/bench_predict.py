"""Throughput of `inspector predict` against plain feature extraction over the same files.

    .venv/bin/python tests/benchmarks/bench_predict.py [--images /work/shared/datasets/neu] [--jobs N] [--repeat R] [--fresh-process]

Builds a small model first (a project over symbolic links to 20 images per class, exported),
then over every image of the folder measures, with the same number of worker processes:

* the feature-extraction rate of ``inspector.core.ingest.analyse_files`` (read, hash, decode,
  extract) - the ceiling for prediction, since predicting is extraction plus a few matrix products;
* ``inspector predict MODEL FOLDER --csv OUT`` run in this process (folder walk, extraction,
  prediction, CSV writing);
* with ``--fresh-process``, the same command as a new process (adds interpreter start-up and
  imports).

Prints images/s for each and the ratios predict / extraction (target >= 0.9).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", default=str(REPO.parent / "shared" / "datasets" / "neu"))
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--repeat", type=int, default=3, help="alternating rounds (median reported)")
    parser.add_argument("--fresh-process", action="store_true",
                        help="also time the command as a new process (adds start-up and imports)")
    args = parser.parse_args()

    from inspector.cli import main as inspector_main
    from inspector.core.images import walk_images
    from inspector.core.ingest import analyse_files

    folder = Path(args.images)
    if not folder.is_dir():
        print(f"no images at {folder}")
        return 1
    paths = [folder / f.relative_path for f in walk_images(folder)]
    print(f"{len(paths)} images in {folder}, {args.jobs} worker processes")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        train = tmp / "train"
        for class_folder in sorted(p for p in folder.iterdir() if p.is_dir()):
            (train / class_folder.name).mkdir(parents=True)
            for f in sorted(class_folder.iterdir())[:20]:
                (train / class_folder.name / f.name).symlink_to(f.resolve())
        project, model = tmp / "bench.inspector", tmp / "bench.inspector-model"
        assert inspector_main(["new", str(project), "--images", str(train), "--labels-from-folders", "--quiet"]) == 0
        assert inspector_main(["export-model", str(project), str(model), "--quiet"]) == 0

        out = tmp / "predictions.csv"
        command = ["predict", str(model), str(folder), "--csv", str(out), "--jobs", str(args.jobs), "--quiet"]
        # the machine may be shared: alternate the three measurements and repeat, so a burst of
        # outside load does not land on one of them only
        rates: dict[str, list[float]] = {"extract": [], "predict": [], "process": []}
        for round_ in range(args.repeat):
            start = time.perf_counter()
            features = [r.features for r in analyse_files(paths, workers=args.jobs) if r.error is None]
            rates["extract"].append(len(features) / (time.perf_counter() - start))
            start = time.perf_counter()
            assert inspector_main(command) == 0
            rates["predict"].append(len(paths) / (time.perf_counter() - start))
            if args.fresh_process:
                start = time.perf_counter()
                subprocess.run([sys.executable, "-m", "inspector", *command], check=True)
                rates["process"].append(len(paths) / (time.perf_counter() - start))
            print(f"round {round_ + 1}: extraction {rates['extract'][-1]:.1f}, predict in process "
                  f"{rates['predict'][-1]:.1f} images/s"
                  + (f", predict fresh process {rates['process'][-1]:.1f} images/s" if args.fresh_process else ""))
        ratios = [p / e for p, e in zip(rates["predict"], rates["extract"])]
        print("ratio predict / extraction per round: " + ", ".join(f"{r:.2f}" for r in ratios)
              + f"  (median {float(np.median(ratios)):.2f})")

        # What predict adds to extraction, timed alone (insensitive to outside load on the
        # worker processes): folder walk, the model on every feature row, and the CSV.
        from inspector.core.modelfile import expand_paths, load_model

        loaded = load_model(model)
        start = time.perf_counter()
        expand_paths([folder])
        t_walk = time.perf_counter() - start
        X = np.stack(features)
        start = time.perf_counter()
        proba = loaded.predict_proba_features(X)
        t_model = time.perf_counter() - start
        start = time.perf_counter()
        with open(tmp / "overhead.csv", "w", newline="", encoding="utf-8") as handle:
            import csv

            writer = csv.writer(handle)
            for path, row in zip(paths, proba):
                writer.writerow([str(path), loaded.class_names[int(np.argmax(row))], f"{row.max():.6f}",
                                 *[f"{v:.6f}" for v in row], "False", ""])
        t_csv = time.perf_counter() - start
        extract_rate = float(np.median(rates["extract"]))
        extraction_seconds = len(paths) / extract_rate
        implied = extraction_seconds / (extraction_seconds + t_walk + t_model + t_csv)
        print(f"predict's own work for {len(paths)} images: walk {t_walk * 1000:.0f} ms, model {t_model * 1000:.0f} ms, "
              f"CSV {t_csv * 1000:.0f} ms -> ratio at the median extraction rate {implied:.3f}")
        predict_rate = float(np.median(rates["predict"]))
        print(f"median of {args.repeat} rounds:")
        print(f"feature extraction (analyse_files):         {extract_rate:7.1f} images/s")
        print(f"inspector predict (in process):             {predict_rate:7.1f} images/s   "
              f"ratio {predict_rate / extract_rate:.2f}")
        if args.fresh_process:
            process_rate = float(np.median(rates["process"]))
            print(f"inspector predict (fresh process, imports): {process_rate:7.1f} images/s   "
                  f"ratio {process_rate / extract_rate:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
