"""Throughput of `inspector predict --dask` against local `inspector predict --jobs`, same run.

    .venv/bin/python tests/benchmarks/bench_dask_predict.py [--images /work/shared/datasets/neu] [--limit 600]
        [--jobs 2] [--batch-size 64] [--repeat 2]

Builds a small model (20 images per class, exported), then over the first ``--limit`` images of
the folder (every class in turn) measures, alternating so outside load lands on each alike:

* local ``inspector predict MODEL PATHS --jobs J`` (in this process);
* ``inspector predict --dask`` on a loopback ``LocalCluster`` of 1 worker process and of 2 worker
  processes (one thread each; cluster start-up not counted, worker warm-up is: the first batch
  on a fresh worker imports Inspector);
* the scheduling overhead per batch: a run of empty batches (``--batch-size`` paths that do not
  exist, so each task returns at once) divided by the number of batches.

Prints images/s, the ratios against local, overhead per batch in ms, and checks the CSVs match.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", default=str(REPO.parent / "shared" / "datasets" / "neu"))
    parser.add_argument("--limit", type=int, default=600, help="images to predict (0: all)")
    parser.add_argument("--jobs", type=int, default=2, help="local predict --jobs")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=2, help="alternating rounds (median reported)")
    args = parser.parse_args()

    from distributed import Client, LocalCluster

    from inspector.cli import main as inspector_main
    from inspector.core import distributed as dist
    from inspector.core.images import walk_images
    from inspector.core.modelfile import load_model

    folder = Path(args.images)
    if not folder.is_dir():
        print(f"no images at {folder}")
        return 1
    by_class: dict[str, list[Path]] = {}
    for f in walk_images(folder):
        by_class.setdefault(Path(f.relative_path).parent.name, []).append(folder / f.relative_path)
    interleaved = [p for group in zip(*by_class.values()) for p in group]
    paths = interleaved[: args.limit] if args.limit else interleaved
    print(f"{len(paths)} images from {folder}; load {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        train = tmp / "train"
        for name, files in by_class.items():
            (train / name).mkdir(parents=True)
            for f in sorted(files)[:20]:
                (train / name / f.name).symlink_to(f.resolve())
        project, model_path = tmp / "bench.inspector", tmp / "bench.inspector-model"
        assert inspector_main(["new", str(project), "--images", str(train), "--labels-from-folders", "--quiet"]) == 0
        assert inspector_main(["export-model", str(project), str(model_path), "--quiet"]) == 0
        model = load_model(model_path)
        list_file = [str(p) for p in paths]

        clusters = {}
        for n in (1, 2):
            cluster = LocalCluster(processes=True, n_workers=n, threads_per_worker=1, host="127.0.0.1",
                                   dashboard_address="127.0.0.1:0", silence_logs=logging.ERROR)
            clusters[n] = (cluster, Client(cluster))
        try:
            for _, client in clusters.values():  # warm every worker (imports) before timing
                dist.predict_probabilities(model, paths[: 2 * args.batch_size], client, batch_size=args.batch_size)
            rates: dict[str, list[float]] = {"local": [], "dask1": [], "dask2": []}
            outputs = {}
            for round_ in range(args.repeat):
                out = tmp / "local.csv"
                start = time.perf_counter()
                assert inspector_main(["predict", str(model_path), *list_file, "--csv", str(out), "--jobs",
                                       str(args.jobs), "--quiet"]) == 0
                rates["local"].append(len(paths) / (time.perf_counter() - start))
                outputs["local"] = out.read_text()
                for n, (cluster, _) in clusters.items():
                    out = tmp / f"dask{n}.csv"
                    start = time.perf_counter()
                    assert inspector_main(["predict", str(model_path), *list_file, "--csv", str(out), "--quiet",
                                           "--dask", cluster.scheduler_address,
                                           "--batch-size", str(args.batch_size)]) == 0
                    rates[f"dask{n}"].append(len(paths) / (time.perf_counter() - start))
                    outputs[f"dask{n}"] = out.read_text()
                print(f"round {round_ + 1}: " + ", ".join(f"{k} {v[-1]:.1f}" for k, v in rates.items()) + " images/s")
            # scheduling overhead: batches of paths that do not exist return at once
            _, client = clusters[2]
            ghosts = [tmp / f"missing_{i}.png" for i in range(200 * args.batch_size)]
            start = time.perf_counter()
            dist.predict_probabilities(model, ghosts, client, batch_size=args.batch_size)
            per_batch = (time.perf_counter() - start) / 200
        finally:
            for cluster, client in clusters.values():
                client.close()
                cluster.close()
    median = {k: statistics.median(v) for k, v in rates.items()}
    print(f"local predict --jobs {args.jobs}      {median['local']:.1f} images/s")
    print(f"dask, 1 worker process      {median['dask1']:.1f} images/s  ({median['dask1'] / median['local']:.2f} x local)")
    print(f"dask, 2 worker processes    {median['dask2']:.1f} images/s  ({median['dask2'] / median['local']:.2f} x local, "
          f"{median['dask2'] / median['dask1']:.2f} x 1 worker)")
    print(f"scheduling overhead         {1000 * per_batch:.1f} ms per batch of {args.batch_size} "
          f"({1000 * per_batch / args.batch_size:.2f} ms per image)")
    same = outputs["dask1"] == outputs["local"] and outputs["dask2"] == outputs["local"]
    print(f"CSV identical to local      {same}")
    print(f"load after                  {os.getloadavg()[0]:.1f}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
