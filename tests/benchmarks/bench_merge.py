"""Benchmark: merge three labelling packs of 1,000 labels each into the home project.

    python tests/benchmarks/bench_merge.py [--packs 3] [--labels 1000] [--double-share 0.05]

Builds a home project of image records (no pixels: merging never reads images), hands out the
packs (the double-labelling share given to two packs on purpose), labels every image in each
pack, then times ``inspector merge`` (core: ``packs.merge_packs``) and checks that the labels
after the merge are the union (home labels + every pack event, nothing lost, nothing doubled)
and that merging the same packs again changes nothing (event count, merge records, latest labels).
Prints figures; asserts nothing about time.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "reliability"))
from merge_kill_test import build_home, make_packs, pack_event_counts  # noqa: E402

from inspector.core import agreement, packs  # noqa: E402
from inspector.core.store import Project  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--packs", type=int, default=3)
    parser.add_argument("--labels", type=int, default=1000, help="labels per pack")
    parser.add_argument("--double-share", type=float, default=0.05)
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="inspector-bench-merge-"))
    try:
        home = build_home(workdir, n_images=args.packs * args.labels + 200)
        with Project.open(home) as project:
            project.set_setting(packs.SETTING_DOUBLE_SHARE, args.double_share)
        started = time.perf_counter()
        pack_paths = make_packs(home, workdir, args.packs, args.labels)
        made = time.perf_counter() - started
        expected = pack_event_counts(pack_paths)
        with Project.open(home) as project:
            home_events = project.label_events_full()
            handed = project.handed_out_images()
        pack_events = {}
        for path in pack_paths:
            with Project.open(path, read_only=True) as pack:
                pid = pack.meta_value(packs.META_PACK_ID)
                home_id = pack.meta_value(packs.META_SOURCE)
                pack_events[pid] = {(e["path"], e["class_name"], e["created_at"]) for e in pack.label_events_full()
                                    if not (e["event_uid"] or "").startswith(home_id + ":")}
        with Project.open(home) as project:
            started = time.perf_counter()
            results = packs.merge_packs(project, pack_paths)
            merge_seconds = time.perf_counter() - started
            after = project.label_events_full()
            latest_after = project.latest_labels()
            merged_records = project.packs_merged()
            started = time.perf_counter()
            again = packs.merge_packs(project, pack_paths)
            remerge_seconds = time.perf_counter() - started
            after_again = project.label_events_full()
            latest_again = project.latest_labels()
            n_disagreements = len(agreement.disagreements(project))
            kappa = agreement.pairwise_kappa(project)
            integrity = project.integrity_check()
        union_ok = len(after) == len(home_events) + sum(expected.values())
        for pid, wanted in pack_events.items():
            got = {(e["path"], e["class_name"], e["created_at"]) for e in after if e["pack_id"] == pid}
            union_ok &= got == wanted
        home_kept = [e for e in after if not e["pack_id"]] == home_events
        doubles = sum(len(v) > 1 for v in handed.values())
        print(f"merge of {args.packs} packs x {args.labels} labels (double share {args.double_share:.0%}: "
              f"{doubles} images in two packs); load {os.getloadavg()[0]:.1f}")
        print(f"  packs written and labelled     {made:.2f} s")
        print(f"  merge                          {merge_seconds:.3f} s  ({sum(r.added for r in results)} events, "
              f"{sum(r.added for r in results) / merge_seconds:,.0f} events/s)")
        print(f"  events after = home + packs    {union_ok}  ({len(home_events)} + {sum(expected.values())} = {len(after)})")
        print(f"  home history kept unchanged    {home_kept}")
        print(f"  re-merge adds                  {sum(r.added for r in again)} events in {remerge_seconds:.3f} s; "
              f"events, latest labels, merge records unchanged: "
              f"{after_again == after and latest_again == latest_after and project_records_equal(home, merged_records)}")
        print(f"  disagreements (double share)   {n_disagreements}; kappa pairs {len(kappa)}")
        print(f"  integrity                      {integrity}")
        return 0 if union_ok and home_kept and integrity == "ok" else 1
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def project_records_equal(home: Path, records: list) -> bool:
    with Project.open(home, read_only=True) as project:
        return project.packs_merged() == records


if __name__ == "__main__":
    sys.exit(main())
