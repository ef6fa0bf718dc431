"""Does Cohen's kappa from the double-labelled share come out near the truth? NEU, simulated
inspectors of known error rates, through the real pack -> label -> merge -> kappa path.

    python tests/benchmarks/bench_agreement.py [--images /work/shared/datasets/neu] [--errors 0.05 0.15 0.30]
        [--double-share 0.05 0.2] [--repeats 200]

A home project over the NEU images (records only: kappa needs no pixels) hands out one pack per
simulated inspector (``--share 1/n``) with a double-labelling share; each inspector labels their
pack with the true class (the NEU folder), wrong with probability e (a wrong label is uniform
over the other classes); the packs are merged and ``agreement.pairwise_kappa`` reports kappa per
pair with its bootstrap interval. The true kappa of inspectors with error rates e1, e2 over K
balanced classes: po = (1-e1)(1-e2) + e1 e2 / (K-1), pe = 1/K, kappa = (po - pe) / (1 - pe).
Then ``--repeats`` simulations of the same share (labels only, no project) give the spread of the
estimate and how often the 95 % interval covers the truth.
"""

from __future__ import annotations

import argparse
import itertools
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]


def true_kappa(e1: float, e2: float, k: int) -> float:
    po = (1 - e1) * (1 - e2) + e1 * e2 / (k - 1)
    pe = 1.0 / k
    return (po - pe) / (1 - pe)


def noisy(truth: np.ndarray, error: float, k: int, rng: np.random.Generator) -> np.ndarray:
    wrong = rng.random(len(truth)) < error
    shift = rng.integers(1, k, len(truth))
    return np.where(wrong, (truth + shift) % k, truth)


def run_through_packs(folder: Path, errors: list[float], double_share: float, seed: int) -> list[dict]:
    from inspector.core import agreement, packs
    from inspector.core.images import walk_images
    from inspector.core.store import ImageAnalysis, Project

    files = [f.relative_path for f in walk_images(folder)]
    classes = sorted({Path(p).parent.name for p in files})
    truth_of = {p: classes.index(Path(p).parent.name) for p in files}
    rng = np.random.default_rng(seed)
    work = Path(tempfile.mkdtemp(prefix="inspector-bench-agreement-"))
    try:
        home = work / "neu.inspector"
        with Project.create(home, folder) as project:
            project.record_scan(new=[(p, 1, 1) for p in files], changed=(), missing=(), returned=())
            ids = sorted(v[0] for v in project.scan_state().values())
            project.save_analyses([ImageAnalysis(i, f"h{i}", 200, 200, 8, 1) for i in ids], "none", 0)
            for name in classes:
                project.add_class(name)
            paths = []
            for n, error in enumerate(errors):
                path = work / f"inspector{n + 1}.inspector"
                packs.create_pack(project, path, share=packs.parse_share(f"1/{len(errors)}"),
                                  annotator=f"e={error:.2f}", double_share=double_share, extractor=("none", 0))
                paths.append(path)
        for path, error in zip(paths, errors):
            with Project.open(path) as pack:
                queue = [q.image_id for q in pack.queue()]
                truth = np.array([truth_of[pack.image(i).path] for i in queue])
                said = noisy(truth, error, len(classes), rng)
                ids_of = {c.name: c.id for c in pack.classes()}
                by_class: dict[int, list] = {}
                for image_id, c in zip(queue, said):
                    by_class.setdefault(ids_of[classes[int(c)]], []).append(image_id)
                for class_id, image_ids in by_class.items():
                    pack.add_labels_bulk([(i, class_id) for i in image_ids], source="human")
        with Project.open(home) as project:
            packs.merge_packs(project, paths)
            return agreement.pairwise_kappa(project), len(classes), len(files)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", default=str(REPO.parent / "shared" / "datasets" / "neu"))
    parser.add_argument("--errors", type=float, nargs="+", default=[0.02, 0.05, 0.15, 0.30])
    parser.add_argument("--double-share", type=float, nargs="+", default=[0.05, 0.20])
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    from inspector.core import agreement

    folder = Path(args.images)
    if not folder.is_dir():
        print(f"no images at {folder}")
        return 1
    print(f"NEU at {folder}; inspectors with error rates {args.errors}; load {os.getloadavg()[0]:.1f}")
    for share in args.double_share:
        pairs, k, n_images = run_through_packs(folder, args.errors, share, args.seed)
        print(f"\ndouble-labelling share {share:.0%} ({n_images} images, {k} classes, one pack per inspector):")
        print(f"  {'pair':<22}{'shared':>7}{'true kappa':>12}{'estimate':>10}   95 % interval      "
              f"{'spread (sd) over repeats':>26}{'coverage':>10}{'bootstrap only':>16}")
        for pair in pairs:
            e1, e2 = (float(a.split("=")[1]) for a in pair["annotators"])
            truth = true_kappa(e1, e2, k)
            rng = np.random.default_rng(args.seed + 1)
            estimates, covered, covered_bootstrap = [], 0, 0
            for _ in range(args.repeats):  # the same design, labels only: how the estimate spreads
                t = rng.integers(0, k, pair["n"])
                result = agreement.kappa_with_interval(noisy(t, e1, k, rng), noisy(t, e2, k, rng), rounds=300,
                                                       seed=int(rng.integers(1 << 30)))
                if result["kappa"] is not None:
                    estimates.append(result["kappa"])
                    ci = result["kappa_ci"]
                    covered += bool(ci and ci[0] <= truth <= ci[1])
                    boot = result["kappa_ci_bootstrap"]
                    covered_bootstrap += bool(boot and boot[0] <= truth <= boot[1])
            ci = pair["kappa_ci"]
            interval = f"{ci[0]:.3f} to {ci[1]:.3f}" if ci else "n/a"
            estimate = "n/a" if pair["kappa"] is None else f"{pair['kappa']:.3f}"
            print(f"  {pair['annotators'][0] + ' / ' + pair['annotators'][1]:<22}{pair['n']:>7}{truth:>12.3f}"
                  f"{estimate:>10}   {interval:<19}{np.mean(estimates):>12.3f} ± {np.std(estimates):.3f}"
                  f"{covered / max(1, len(estimates)):>13.0%}{covered_bootstrap / max(1, len(estimates)):>14.0%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
