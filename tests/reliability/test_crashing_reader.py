"""A reader process that dies (out-of-memory killer, decoder crash) and images too large to decode."""

from __future__ import annotations

import os
import struct
import sys
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from inspector.core import images, ingest
from inspector.core.ingest import READER_CRASHED, analyse_files, scan_project
from inspector.core.store import Project

MARKER = b"KILL-THE-READER"

# Loaded by every spawned reader process (PYTHONPATH): a file carrying MARKER makes the reader
# kill itself with SIGKILL, exactly as the out-of-memory killer ends a process.
SITECUSTOMIZE = f'''
import os, signal
import inspector.core.images as _images
_decode = _images.decode
def decode(data, name=""):
    if {MARKER!r} in bytes(data[-64:]):
        os.kill(os.getpid(), signal.SIGKILL)
    return _decode(data, name)
_images.decode = decode
'''


def png_header_only(width: int, height: int, bit_depth: int, colour_type: int) -> bytes:
    """A PNG whose header declares the given size; its pixel data is a token (never decoded)."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 1024)) + chunk(b"IEND", b"")


def test_a_16_bit_rgba_png_declaring_16000_squared_is_refused_before_decoding():
    data = png_header_only(16_000, 16_000, 16, 6)  # 256 megapixels: within the pixel cap
    with pytest.raises(images.ImageError, match=r"too large to decode safely: 16000 x 16000 px at 8 bytes"):
        images.decode(data, "bomb.png")


def test_the_same_size_in_8_bit_gray_is_within_the_budget():
    gray = 16_000 * 16_000
    assert gray <= images.DECODE_BUDGET_BYTES  # a line-scan frame of that size still decodes
    data = png_header_only(16_000, 16_000, 8, 0)
    with pytest.raises(images.ImageError) as info:  # the token pixel data is damaged, but not refused by size
        images.decode(data, "line.png")
    assert "too large" not in str(info.value)


def test_declared_decoded_bytes_come_from_the_header():
    assert images.declared_decoded_bytes(png_header_only(1000, 500, 16, 2)) == 1000 * 500 * 6
    assert images.declared_decoded_bytes(b"not an image") is None


def test_large_images_wait_for_their_share_of_memory_small_ones_do_not():
    import multiprocessing
    import threading
    import time

    context = multiprocessing.get_context("spawn")
    gate = ingest.MemoryGate(context.Semaphore(4), context.Lock(), 4)
    large = 4 * ingest.SHARE_BYTES // ingest.PEAK_FACTOR  # needs every share
    assert gate.shares_for(large) == 4 and gate.shares_for(100 * large) == 4  # never more than exist
    assert gate.shares_for(1024) == 0
    spans = []

    def read(size):
        with gate.hold(size):
            started = time.monotonic()
            time.sleep(0.15)
            spans.append((started, time.monotonic(), size))

    threads = [threading.Thread(target=read, args=(s,)) for s in (large, large, 1024)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    big = sorted(sp for sp in spans if sp[2] == large)
    assert len(big) == 2 and big[1][0] >= big[0][1] - 0.01  # one large image at a time
    small = next(sp for sp in spans if sp[2] == 1024)
    assert small[0] < big[1][0]  # the small one did not wait behind both large ones


@pytest.fixture
def crashing_readers(tmp_path, monkeypatch):
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(site), *filter(None, [os.environ.get("PYTHONPATH")])]))
    return tmp_path


def _folder(root: Path, n: int, killers: tuple[int, ...]) -> Path:
    folder = root / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        ok, data = cv2.imencode(".png", rng.integers(0, 255, (40, 40), dtype=np.uint8))
        payload = data.tobytes() + (MARKER if i in killers else b"")  # bytes after IEND are ignored by decoders
        (folder / f"part_{i:03d}.png").write_bytes(payload)
    return folder


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")
def test_a_reader_killed_by_a_file_is_recorded_and_the_scan_goes_on(crashing_readers):
    folder = _folder(crashing_readers, 40, killers=(5, 33))
    results = {r.index: r for r in analyse_files(sorted(folder.iterdir()), workers=2, with_features=False)}
    assert sorted(results) == list(range(40))
    crashed = sorted(i for i, r in results.items() if r.error == READER_CRASHED)
    assert crashed == [5, 33]
    assert all(results[i].error is None and results[i].width == 40 for i in results if i not in crashed)


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")
def test_the_next_scan_does_not_read_the_crashing_file_again(crashing_readers):
    folder = _folder(crashing_readers, 30, killers=(12,))
    with Project.create(crashing_readers / "p.inspector", folder) as project:
        first = scan_project(project, workers=2)
        assert first.new == 30 and first.errors == 1
        problems = project.problem_files()
        assert [(p.path, p.error) for p in problems] == [("part_012.png", READER_CRASHED)]
        second = scan_project(project, workers=2)
        assert second.analysed == 0 and second.errors == 0
        assert len(project.image_ids()) == 29
