"""A folder of nasty image files, for proving that no file in a folder can crash Inspector.

``make_nasty_corpus(folder)`` writes the files and returns what a scan must conclude about each:

    {
      "good":   {relative_path: description, ...},   # must be usable (features present)
      "bad":    {relative_path: (description, [words, ...]), ...},
                # must be listed as a problem; the reason must contain one of the words
      "ignored": {relative_path: description, ...},  # must not appear at all (hidden, folders, ...)
      "duplicates": [(duplicate_path, original_path), ...],
      "unreadable": relative_path or None,          # the file without read permission
    }

Reusable by the UI tests (import this module by path, or put ``tests/reliability`` on
``sys.path``). Everything is drawn here; no data is copied from anywhere.
"""

from __future__ import annotations

import io
import os
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np

GOOD = "good"
BAD = "bad"


def _texture(h: int, w: int, seed: int, channels: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = rng.normal(128, 30, (h, w) if channels == 1 else (h, w, channels))
    return base.clip(0, 255).astype(np.uint8)


def _png(image: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", image)
    assert ok
    return buf.tobytes()


def _jpeg(image: np.ndarray, quality: int = 90) -> bytes:
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return buf.tobytes()


def _bmp(image: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".bmp", image)
    assert ok
    return buf.tobytes()


def _tiff(data: np.ndarray, **kwargs) -> bytes:
    import tifffile

    out = io.BytesIO()
    tifffile.imwrite(out, data, **kwargs)
    return out.getvalue()


def _pillow(image: np.ndarray, fmt: str, mode: str | None = None, **kwargs) -> bytes:
    from PIL import Image

    img = Image.fromarray(image)
    if mode:
        img = img.convert(mode)
    out = io.BytesIO()
    img.save(out, fmt, **kwargs)
    return out.getvalue()


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF)


def png_bomb_header(width: int = 100_000, height: int = 100_000) -> bytes:
    """A small PNG whose header declares a gigantic image (a decompression bomb)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    # a few rows of real compressed data; the header alone is what must be refused
    body = zlib.compress(b"\x00" * (width + 1) * 4)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", body) + _png_chunk(b"IEND", b"")


def make_nasty_corpus(folder: Path, large_image: bool = True) -> dict:
    """Write the corpus into ``folder`` (created) and return the expected outcome (see module doc).

    ``large_image`` adds a legitimate 8000 x 6000 image (slow to analyse: about a second).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    expected: dict = {"good": {}, "bad": {}, "ignored": {}, "duplicates": [], "unreadable": None}

    def write(rel: str, data: bytes, kind: str, description: str, words=()) -> Path:
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        if kind == GOOD:
            expected["good"][rel] = description
        elif kind == BAD:
            expected["bad"][rel] = (description, list(words))
        else:
            expected["ignored"][rel] = description
        return path

    gray = _texture(96, 128, 1)
    colour = _texture(96, 128, 2, 3)
    png_gray = _png(gray)
    jpeg_colour = _jpeg(colour)
    tiff_gray = _tiff(gray)

    # ------------------------------------------------------------- good files
    write("good/gray8.png", png_gray, GOOD, "8-bit grayscale PNG")
    write("good/gray16.png", _png((gray.astype(np.uint16) * 257)), GOOD, "16-bit grayscale PNG")
    write("good/colour.png", _png(colour), GOOD, "8-bit colour PNG")
    write("good/alpha.png", _png(np.dstack([colour, _texture(96, 128, 3)])), GOOD, "PNG with alpha")
    write("good/palette.png", _pillow(colour[..., ::-1], "PNG", mode="P"), GOOD, "palette PNG")
    write("good/colour.jpg", jpeg_colour, GOOD, "colour JPEG")
    write("good/gray.jpeg", _jpeg(gray), GOOD, "grayscale JPEG (.jpeg)")
    write("good/cmyk.jpg", _pillow(colour[..., ::-1], "JPEG", mode="CMYK"), GOOD, "CMYK JPEG")
    write("good/image.bmp", _bmp(colour), GOOD, "BMP")
    write("good/gray8.tif", tiff_gray, GOOD, "8-bit TIFF")
    write("good/gray16.tiff", _tiff(gray.astype(np.uint16) * 64), GOOD, "16-bit TIFF (.tiff)")
    write("good/float.tif", _tiff(gray.astype(np.float32) / 255.0), GOOD, "float32 TIFF")
    write("good/rgb.tif", _tiff(colour, photometric="rgb"), GOOD, "RGB TIFF")
    write("good/cmyk.tif", _tiff(np.dstack([colour, _texture(96, 128, 4)]), photometric="separated"), GOOD,
          "CMYK TIFF")
    write("good/multipage.tif", _tiff(np.stack([gray, 255 - gray, gray // 2]), photometric="minisblack"), GOOD,
          "3-page TIFF")
    write("good/one_pixel.png", _png(np.full((1, 1), 77, np.uint8)), GOOD, "1 x 1 image")
    write("good/UPPER.PNG", _png(_texture(64, 64, 5)), GOOD, "upper-case suffix")
    write("good/png_named.jpg", _png(_texture(64, 64, 6)), GOOD, "PNG content named .jpg")
    write("good/jpeg_named.tif", _jpeg(_texture(64, 64, 7)), GOOD, "JPEG content named .tif")
    write("good/ünïcödé_零件_🔩.png", _png(_texture(64, 64, 8)), GOOD, "unicode name")
    write("good/-leading-dash.png", _png(_texture(64, 64, 9)), GOOD, "name starting with a dash")
    write("good/with space & 'quote'.png", _png(_texture(64, 64, 10)), GOOD, "spaces and quotes in the name")
    long_name = "good/" + "long_" * 42 + ".png"  # 215 characters, under the 255-byte limit
    write(long_name, _png(_texture(64, 64, 11)), GOOD, "very long name (200+ characters)")
    write("good/deep/a/b/c/d/e/nested.png", _png(_texture(64, 64, 12)), GOOD, "deeply nested")
    write("good/duplicate_of_gray8.png", png_gray, GOOD, "same bytes as good/gray8.png")
    expected["duplicates"].append(("good/duplicate_of_gray8.png", "good/gray8.png"))
    if large_image:
        big = cv2.resize(_texture(600, 800, 13), (8000, 6000), interpolation=cv2.INTER_NEAREST)
        write("good/large_8000x6000.png", _png(big), GOOD, "large legitimate image (48 MP)")

    outside = folder.parent / (folder.name + "_outside")
    outside.mkdir(exist_ok=True)
    (outside / "real.png").write_bytes(_png(_texture(64, 64, 14)))
    link = folder / "good" / "link_to_outside.png"
    link.symlink_to(outside / "real.png")
    expected["good"]["good/link_to_outside.png"] = "symlink to a file outside the folder"

    # ------------------------------------------------------------- bad files
    write("bad/zero.png", b"", BAD, "zero bytes", ["empty"])
    write("bad/zero.jpg", b"", BAD, "zero bytes (.jpg)", ["empty"])
    write("bad/zero.tif", b"", BAD, "zero bytes (.tif)", ["empty"])
    write("bad/text.png", b"this is not an image, it is a note\n" * 10, BAD, "text named .png", ["not an image"])
    write("bad/html.jpg", b"<html><body>404 not found</body></html>", BAD, "HTML named .jpg", ["not an image"])
    write("bad/random.bmp", np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes(), BAD,
          "random bytes named .bmp", ["not an image"])
    big_png = _png(_texture(200, 200, 15))
    write("bad/truncated.png", big_png[: len(big_png) // 2], BAD, "PNG cut in half", ["truncated", "damaged"])
    write("bad/truncated_header.png", big_png[:20], BAD, "PNG cut inside its header", ["truncated", "damaged"])
    write("bad/truncated.jpg", jpeg_colour[: len(jpeg_colour) // 2], BAD, "JPEG cut in half", ["truncated"])
    big_tiff = _tiff(_texture(200, 200, 16))
    write("bad/truncated.tif", big_tiff[: len(big_tiff) // 3], BAD, "TIFF cut to a third",
          ["truncated", "damaged"])
    write("bad/bomb.png", png_bomb_header(), BAD, "PNG header declaring 100000 x 100000", ["too large"])
    write("bad/bomb_named.tif", png_bomb_header(50_000, 60_000), BAD, "bomb PNG named .tif", ["too large"])
    write("bad/signature_only.png", b"\x89PNG\r\n\x1a\n", BAD, "PNG signature only", ["truncated", "damaged"])
    write("bad/jpeg_soi_only.jpg", b"\xff\xd8\xff", BAD, "JPEG start marker only", ["truncated", "damaged"])
    corrupt = bytearray(big_png)
    start = len(corrupt) // 3
    corrupt[start : start + 400] = np.random.default_rng(1).integers(0, 256, 400, dtype=np.uint8).tobytes()
    write("bad/corrupt_middle.png", bytes(corrupt), BAD, "PNG with garbage in its compressed data",
          ["damaged", "truncated", "cannot decode"])

    unreadable = write("bad/no_permission.png", _png(_texture(64, 64, 19)), BAD, "file without read permission",
                       ["permission"])
    os.chmod(unreadable, 0)  # root reads it anyway: drop privileges to see this case (see test_bad_files.py)
    expected["unreadable"] = "bad/no_permission.png"

    loop_a, loop_b = folder / "bad" / "loop_a.png", folder / "bad" / "loop_b.png"
    loop_a.symlink_to(loop_b.name)
    loop_b.symlink_to(loop_a.name)
    expected["bad"]["bad/loop_a.png"] = ("symlink loop", ["loop"])
    expected["bad"]["bad/loop_b.png"] = ("symlink loop", ["loop"])
    (folder / "bad" / "dangling.png").symlink_to(folder / "bad" / "gone_away.png")
    expected["bad"]["bad/dangling.png"] = ("symlink to a file that does not exist", ["broken link", "not found"])

    # ------------------------------------------------------------- must be ignored
    write(".hidden.png", png_gray, "ignored", "hidden file")
    write(".hidden_folder/inside.png", _png(_texture(32, 32, 17)), "ignored", "image inside a hidden folder")
    write("good/notes.txt", b"not an image name", "ignored", "non-image suffix")
    write("good/Thumbs.db", b"\x00" * 64, "ignored", "non-image suffix")
    (folder / "folder_named.png").mkdir()
    write("folder_named.png/inside_it.png", _png(_texture(32, 32, 18)), GOOD, "image inside a folder named x.png")
    expected["ignored"]["folder_named.png"] = "folder named like an image"
    (folder / "good" / "dir_link.png").symlink_to(folder / "good" / "deep", target_is_directory=True)
    expected["ignored"]["good/dir_link.png"] = "symlink to a folder (named like an image)"
    (folder / "good" / "deep" / "a" / "loop_dir").symlink_to(folder / "good", target_is_directory=True)
    expected["ignored"]["good/deep/a/loop_dir"] = "symlinked folder making a cycle"
    return expected
