"""A really full disk while labelling (needs root on Linux: mounts a tiny tmpfs).

    sudo python tests/reliability/full_disk.py [--size 2m]

Creates a project on a small tmpfs, adds images and labels until the disk is full, then checks:
the error is one clear line, every acknowledged label is in the file, the file is intact, and
labelling resumes once space is freed. CI uses PRAGMA max_page_count instead (the same SQLite
error, no mounting): see test_bad_projects.py.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from inspector.core.errors import ProjectError
from inspector.core.store import ImageAnalysis, Project


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="2m")
    args = parser.parse_args(argv)
    if os.name != "posix" or os.geteuid() != 0:
        print("needs root on Linux (mounts a tmpfs); skipped")
        return 0
    mount = Path(tempfile.mkdtemp(prefix="inspector-full-"))
    images = Path(tempfile.mkdtemp(prefix="inspector-full-images-"))
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={args.size}", "tmpfs", str(mount)], check=True)
    try:
        path = mount / "p.inspector"
        acknowledged: dict[int, int] = {}
        message = None
        with Project.create(path, images) as p:
            p.record_scan([(f"part_{i:05d}.png", 1, i) for i in range(400)], [], [], [])
            ids = sorted(v[0] for v in p.scan_state().values())
            p.save_analyses([ImageAnalysis(i, f"h{i}", 8, 8, 8, 1, features=np.zeros(64, np.float32)) for i in ids],
                            "texture", 1)
            classes = [p.add_class(n) for n in ("ok", "scratch")]
            ballast = mount / "ballast"  # the rest of the disk is taken by someone else's file
            with open(ballast, "wb") as handle:
                try:
                    while True:
                        handle.write(b"\0" * 65536)
                        handle.flush()
                except OSError:
                    pass  # the disk is now full, which is the point
            os.truncate(ballast, max(0, ballast.stat().st_size - 160 * 1024))  # room for some labels first
            k = 0
            while message is None and k < 100_000:
                image_id = ids[k % len(ids)]
                try:
                    p.add_label(image_id, classes[k % 2], annotator="full-disk " + "x" * 200)
                    acknowledged[image_id] = classes[k % 2]
                except ProjectError as exc:
                    message = str(exc)
                k += 1
            print(f"labels acknowledged before the disk was full: {len(acknowledged)}")
            print(f"message: {message}")
            ballast.unlink()
            p.add_label(ids[0], classes[0])  # space freed: the same session goes on
            acknowledged[ids[0]] = classes[0]
        with Project.open(path) as p:
            integrity = p.integrity_check()
            latest = p.latest_labels()
        lost = sum(1 for i, c in acknowledged.items() if latest.get(i) != c)
        print(f"integrity {integrity}, labels lost {lost}")
        ok = message is not None and "disk is full" in message and "\n" not in message and integrity == "ok" \
            and lost == 0
        print("PASS" if ok else "FAIL")
        return 0 if ok else 1
    finally:
        subprocess.run(["umount", str(mount)], check=False)
        os.rmdir(mount)
        os.rmdir(images)


if __name__ == "__main__":
    sys.exit(main())
