"""Kill test for merging labelling packs: a kill during a merge leaves the project as before or
as after, and no acknowledged label is lost.

A home project hands out three packs; each pack is labelled (``--labels`` events per pack). For
every kill a fresh copy of the home project is opened by a forked child that merges the three
packs in a background thread (its own connection, as the app's worker does) while the main
thread keeps labelling home images and acknowledging each label once ``add_label`` returned. The
parent kills the child with SIGKILL at a random moment, then checks: the project opens,
``PRAGMA integrity_check`` is 'ok', every acknowledged label is present, and each pack's events
are at home either all or none (all when its merge was acknowledged).

    python tests/reliability/merge_kill_test.py --kills 30 --labels 1000

POSIX only (fork + SIGKILL).
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from kill_test import _Reader, kill_child, start_child  # noqa: E402 - the labelling kill test's harness

from inspector.core import packs  # noqa: E402
from inspector.core.store import ImageAnalysis, Project  # noqa: E402

CLASSES = ("ok", "scratch", "crack", "stain")


def build_home(workdir: Path, n_images: int, seed: int = 0) -> Path:
    """A home project of ``n_images`` image records (analysed, no pixels needed: merging never reads
    images), with the classes and a few home labels."""
    root = workdir / "images"
    root.mkdir(parents=True, exist_ok=True)
    path = workdir / "home.inspector"
    with Project.create(path, root) as project:
        project.record_scan(new=[(f"line/part_{i:06d}.png", 1000 + i, 1) for i in range(n_images)],
                            changed=(), missing=(), returned=())
        ids = sorted(v[0] for v in project.scan_state().values())
        project.save_analyses([ImageAnalysis(i, f"hash{i:08d}", 64, 64, 8, 1) for i in ids], "none", 0)
        class_ids = [project.add_class(name) for name in CLASSES]
        rng = np.random.default_rng(seed)
        project.add_labels_bulk([(i, class_ids[int(rng.integers(len(CLASSES)))]) for i in ids[:50]],
                                annotator="home", source="human")
    return path


def make_packs(home: Path, workdir: Path, n_packs: int, labels_per_pack: int, seed: int = 0) -> list[Path]:
    """Hand out ``n_packs`` packs of ``labels_per_pack`` images and label every image in each."""
    paths = []
    with Project.open(home) as project:
        for k in range(n_packs):
            path = workdir / f"pack{k + 1}.inspector"
            packs.create_pack(project, path, n_images=labels_per_pack, workstation=f"ws{k + 2}",
                              annotator=f"inspector{k + 2}", extractor=("none", 0))
            paths.append(path)
    rng = np.random.default_rng(seed)
    for path in paths:
        with Project.open(path) as pack:
            class_ids = [c.id for c in pack.classes()]
            queue = [q.image_id for q in pack.queue()]
            pack.add_labels_bulk([(i, class_ids[int(rng.integers(len(class_ids)))]) for i in queue], source="human")
    return paths


def pack_event_counts(paths: list[Path]) -> dict[str, int]:
    """Events each pack will bring home: ``pack_id -> count``."""
    counts = {}
    for path in paths:
        with Project.open(path, read_only=True) as pack:
            home_id = pack.meta_value(packs.META_SOURCE)
            counts[pack.meta_value(packs.META_PACK_ID)] = sum(
                1 for e in pack.label_events_full() if not (e["event_uid"] or "").startswith(f"{home_id}:"))
    return counts


@dataclass
class MergeKillStats:
    kills: int = 0
    kills_during_merge: int = 0
    merges_completed: int = 0
    acknowledged: int = 0
    lost: int = 0
    partial_merges: list = field(default_factory=list)
    integrity_failures: list = field(default_factory=list)
    open_failures: list = field(default_factory=list)
    child_errors: list = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.lost or self.partial_merges or self.integrity_failures or self.open_failures
                    or self.child_errors)

    def lines(self) -> list[str]:
        return [
            f"kills                   {self.kills}",
            f"kills during a merge    {self.kills_during_merge}",
            f"merges acknowledged     {self.merges_completed}",
            f"acknowledged labels     {self.acknowledged}",
            f"labels lost             {self.lost}",
            f"partial merges          {len(self.partial_merges)}",
            f"integrity failures      {len(self.integrity_failures)}",
            f"open failures           {len(self.open_failures)}",
            f"child errors            {len(self.child_errors)}",
        ]


def _child(home: Path, pack_paths: list[Path], seed: int, out_fd: int) -> None:
    lock = threading.Lock()

    def say(line: str) -> None:
        with lock:
            os.write(out_fd, (line + "\n").encode())

    code = 0
    try:
        rng = random.Random(seed)
        project = Project.open(home)
        image_ids = [int(i) for i in project.image_ids()]
        class_ids = [c.id for c in project.classes()]

        def merging() -> None:
            try:
                connection = project.worker_connection()
                for k, path in enumerate(pack_paths):
                    say(f"PHASE merge 1 {k}")
                    result = packs.merge_pack(connection, path)
                    say(f"MERGED {k} {result.added}")
                    say(f"PHASE merge 0 {k}")
            except BaseException:
                say("ERROR " + traceback.format_exc().replace("\n", " | "))

        threading.Thread(target=merging, daemon=True).start()
        say("READY")
        while True:
            image_id = rng.choice(image_ids)
            class_id = rng.choice(class_ids)
            event_id = project.add_label(image_id, class_id, annotator="home")
            say(f"ACK {event_id} {image_id} {class_id} class")
            time.sleep(rng.random() * 0.005)
    except BaseException:
        say("ERROR " + traceback.format_exc().replace("\n", " | "))
        code = 1
    finally:
        os._exit(code)


class _MergeReader(_Reader):
    """The labelling kill test's reader; PHASE lines here carry the pack's number as well."""

    def __init__(self, fd: int) -> None:
        super().__init__(fd)
        self.state = {"merge": False}

    def on_phase(self, words: list[str]) -> None:
        """`PHASE merge <1|0> <pack number>`."""
        self.state["merge"] = words[1] == "1"


def one_kill(pristine: Path, run_dir: Path, pack_paths: list[Path], expected: dict, window: float,
             rng: random.Random, stats: MergeKillStats) -> None:
    home = run_dir / "home.inspector"
    for suffix in ("", "-wal", "-shm", ".lock"):
        Path(str(home) + suffix).unlink(missing_ok=True)
    shutil.copy(pristine, home)
    pid, reader = start_child(_child, home, pack_paths, rng.randrange(2**31), reader_class=_MergeReader)
    try:
        if not reader.ready.wait(60):
            stats.child_errors.append("child not ready in 60 s")
        time.sleep(rng.uniform(0.0, window))
        during = reader.state["merge"]
    finally:
        status = kill_child(pid, reader)
    stats.kills += 1
    stats.kills_during_merge += during
    if not (os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL):
        stats.child_errors.append(f"child ended by itself (status {status})")
    acked, merged = {}, set()
    for line in reader.lines:
        if line.startswith("ERROR"):
            stats.child_errors.append(line[:2000])
        elif line.startswith("ACK "):
            _, event_id, image_id, class_id, _ = line.split()
            acked[int(event_id)] = (int(image_id), int(class_id))
        elif line.startswith("MERGED "):
            merged.add(int(line.split()[1]))
    stats.merges_completed += len(merged)
    try:
        project = Project.open(home)
    except Exception as exc:  # noqa: BLE001 - any failure to open is the finding reported
        stats.open_failures.append(f"{type(exc).__name__}: {exc}")
        return
    with project:
        check = project.integrity_check()
        if check != "ok":
            stats.integrity_failures.append(check)
        events = project.label_events_full()
    present = {e["id"]: (e["image_id"], e["class_name"]) for e in events}
    names = dict(enumerate(CLASSES, start=1))
    stats.acknowledged += len(acked)
    lost = [e for e, (image, cls) in acked.items() if present.get(e) != (image, names[cls])]
    stats.lost += len(lost)
    by_pack: dict[str, int] = {}
    for e in events:
        if e["pack_id"]:
            by_pack[e["pack_id"]] = by_pack.get(e["pack_id"], 0) + 1
    for k, (pack_id, total) in enumerate(expected.items()):
        here = by_pack.get(pack_id, 0)
        if here not in (0, total) or (k in merged and here != total):
            stats.partial_merges.append(f"pack {k + 1}: {here} of {total} events (merge acknowledged: {k in merged})")


def run_merge_kill_test(kills: int, seed: int, labels_per_pack: int = 1000, workdir: Path | None = None,
                        progress=None) -> MergeKillStats:
    if os.name != "posix":
        raise RuntimeError("the kill test needs fork and SIGKILL (POSIX)")
    own = workdir is None
    workdir = Path(tempfile.mkdtemp(prefix="inspector-merge-kill-")) if own else Path(workdir)
    try:
        home = build_home(workdir, n_images=3 * labels_per_pack + 200, seed=seed)
        pack_paths = make_packs(home, workdir, 3, labels_per_pack, seed)
        expected = pack_event_counts(pack_paths)
        run_dir = workdir / "run"
        run_dir.mkdir()
        # how long the three merges take here, so kills land before, during and after them
        trial = run_dir / "trial.inspector"
        shutil.copy(home, trial)
        started = time.perf_counter()
        with Project.open(trial) as project:
            for path in pack_paths:
                packs.merge_pack(project, path)
        window = 1.5 * (time.perf_counter() - started) + 0.05
        trial.unlink()
        rng = random.Random(seed)
        stats = MergeKillStats()
        for k in range(kills):
            one_kill(home, run_dir, pack_paths, expected, window, rng, stats)
            if progress:
                progress(k + 1, kills, stats)
            if len(stats.child_errors) + len(stats.open_failures) > 5:
                break
        return stats
    finally:
        if own:
            shutil.rmtree(workdir, ignore_errors=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=30)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--labels", type=int, default=1000, help="labels per pack (three packs)")
    args = parser.parse_args(argv)
    started = time.monotonic()
    stats = run_merge_kill_test(args.kills, args.seed, args.labels)
    print(f"merge kill test, seed {args.seed}, 3 packs x {args.labels} labels, {time.monotonic() - started:.0f} s, "
          f"load {os.getloadavg()[0]:.1f}")
    for line in stats.lines():
        print(line)
    for item in (stats.partial_merges + stats.integrity_failures + stats.open_failures + stats.child_errors)[:10]:
        print("  !", item[:500])
    return 0 if stats.ok else 1


if __name__ == "__main__":
    sys.exit(main())
