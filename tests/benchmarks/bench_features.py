"""Feature-extraction throughput against a decode-only loop over the same files.

    python tests/benchmarks/bench_features.py --images /work/shared/datasets/neu [--workers N]
    python tests/benchmarks/bench_features.py --generate-large 200 [--workers N]

Prints images/s for feature extraction with all workers (the project's pool,
``inspector.core.ingest.analyse_files``: read, hash, decode, grayscale, shrink, extract), images/s
for a decode-only loop (read + grayscale + resize to ``max_side``) over the same files - both
in one process and with the same number of worker processes - and the ratios.
``--generate-large N`` writes N synthetic 500 x 1,250 px parts into a temporary folder and
measures that folder too.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import tempfile
import time
from pathlib import Path

from inspector.core import images
from inspector.core.features import default_extractor


def _decode_only(path: str) -> int:
    gray = images.load_gray(Path(path), _MAX_SIDE)
    return int(gray.shape[0])


_MAX_SIDE = default_extractor().max_side


def _extract_local(path: str):
    # fallback when inspector.core.ingest is not available
    global _EX
    try:
        _EX
    except NameError:
        _EX = default_extractor()
    return _EX.extract(images.load_gray(Path(path), _EX.max_side))


def _init_worker() -> None:
    images.cv2.setNumThreads(1)


def features_rate(paths: list[str], workers: int) -> tuple[float, str]:
    start = time.perf_counter()
    try:
        from inspector.core.ingest import analyse_files
    except ImportError:
        ctx = multiprocessing.get_context("spawn")
        with ctx.Pool(workers, initializer=_init_worker) as pool:
            vectors = pool.map(_extract_local, paths, chunksize=8)
        ok = sum(v is not None for v in vectors)
        how = "local spawn pool"
    else:
        ok = 0
        for result in analyse_files(paths, workers=workers):
            ok += result.features is not None
        how = "ingest.analyse_files"
    elapsed = time.perf_counter() - start
    if ok != len(paths):
        print(f"  warning: {len(paths) - ok} files gave no features", file=sys.stderr)
    return len(paths) / elapsed, how


def decode_rate_serial(paths: list[str]) -> float:
    start = time.perf_counter()
    for path in paths:
        _decode_only(path)
    return len(paths) / (time.perf_counter() - start)


def decode_rate_parallel(paths: list[str], workers: int) -> float:
    start = time.perf_counter()
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(workers, initializer=_init_worker) as pool:
        list(pool.imap_unordered(_decode_only, paths, chunksize=8))
    return len(paths) / (time.perf_counter() - start)


def cpu_costs(paths: list[str], sample: int = 100) -> tuple[float, float, float]:
    """CPU seconds per image in this process: decode-only, decode + extract, extract alone."""
    from inspector.core.features import default_extractor as make

    extractor = make()
    chosen = paths[:: max(1, len(paths) // sample)][:sample]
    start = time.process_time()
    grays = [images.load_gray(Path(p), extractor.max_side) for p in chosen]
    decode = (time.process_time() - start) / len(chosen)
    start = time.process_time()
    for gray in grays:
        extractor.extract(gray)
    extract = (time.process_time() - start) / len(chosen)
    return decode, decode + extract, extract


def measure(label: str, folder: Path, workers: int, limit: int | None) -> None:
    paths = [str(folder / f.relative_path) for f in images.walk_images(folder)]
    if limit:
        paths = paths[:limit]
    if not paths:
        print(f"{label}: no images in {folder}")
        return
    probe = images.load_gray(Path(paths[0]))
    print(f"{label}: {len(paths)} files in {folder} (first is {probe.shape[1]} x {probe.shape[0]} px), "
          f"workers={workers}, max_side={_MAX_SIDE}")
    decode_rate_serial(paths[: min(len(paths), 50)])  # warm the file cache
    serial = decode_rate_serial(paths)
    parallel = decode_rate_parallel(paths, workers)
    feats, how = features_rate(paths, workers)
    print(f"  features ({how}, {workers} workers): {feats:8.1f} images/s")
    print(f"  decode only, 1 process:              {serial:8.1f} images/s   ratio features/decode = {feats / serial:.2f}")
    print(f"  decode only, {workers} workers:             {parallel:8.1f} images/s   ratio features/decode = {feats / parallel:.2f}")
    decode, total, extract = cpu_costs(paths)
    print(f"  CPU time per image (one process, independent of other load): decode {decode * 1000:.2f} ms, "
          f"extract {extract * 1000:.2f} ms, decode+extract {total * 1000:.2f} ms")
    print(f"  => on an otherwise idle machine: features ~{workers / total:.0f} images/s with {workers} workers, "
          f"CPU-cost ratio features/decode = {decode / total:.2f}")
    if hasattr(os, "getloadavg"):
        print(f"  load average during the run: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=Path, help="folder of images to measure")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--limit", type=int, default=None, help="use at most this many files")
    parser.add_argument("--generate-large", type=int, default=0, metavar="N",
                        help="also generate N synthetic 500 x 1250 px images in a temp folder and measure them")
    parser.add_argument("--large-format", choices=("png", "jpg"), default="png")
    args = parser.parse_args(argv)
    if not args.images and not args.generate_large:
        parser.error("give --images DIR and/or --generate-large N")
    extractor = default_extractor()
    print(f"extractor {extractor.name} v{extractor.version}, dim {extractor.dim}, params {extractor.params()}")
    if args.images:
        measure("images", args.images, args.workers, args.limit)
    if args.generate_large:
        from inspector.core.demo import write_demo_dataset

        with tempfile.TemporaryDirectory(prefix="inspector-bench-") as tmp:
            folder = Path(tmp) / "large"
            start = time.perf_counter()
            write_demo_dataset(folder, n_images=args.generate_large, size=(500, 1250), ok_fraction=0.8,
                               defect_area=0.01, random_state=0, image_format=args.large_format)
            print(f"generated {args.generate_large} images of 500 x 1250 px ({args.large_format}) "
                  f"in {time.perf_counter() - start:.1f} s")
            measure("large", folder, args.workers, None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
