"""Decoding every supported flavour of image, and readable reasons for files that are not."""

from __future__ import annotations

import io
from pathlib import Path

import cv2
import numpy as np
import pytest
import tifffile
from PIL import Image

from inspector.core import images
from inspector.core.images import ImageError, decode, load_gray, read_bytes, to_gray_u8, walk_images


def gradient(h: int = 40, w: int = 60) -> np.ndarray:
    return np.tile(np.linspace(0, 255, w, dtype=np.float32), (h, 1)).astype(np.uint8)


def png(array: np.ndarray) -> bytes:
    return cv2.imencode(".png", array)[1].tobytes()


def tiff(array: np.ndarray, **kwargs) -> bytes:
    out = io.BytesIO()
    tifffile.imwrite(out, array, **kwargs)
    return out.getvalue()


def pillow(array: np.ndarray, fmt: str, mode: str | None = None) -> bytes:
    img = Image.fromarray(array)
    if mode:
        img = img.convert(mode)
    out = io.BytesIO()
    img.save(out, fmt)
    return out.getvalue()


RED_RGB = np.zeros((20, 30, 3), np.uint8)
RED_RGB[..., 0] = 255


@pytest.mark.parametrize(
    "name, data, depth, channels",
    [
        ("gray8.png", png(gradient()), 8, 1),
        ("gray16.png", png(gradient().astype(np.uint16) * 257), 16, 1),
        ("colour.png", png(np.dstack([gradient()] * 3)), 8, 3),
        ("alpha.png", png(np.dstack([gradient()] * 4)), 8, 4),
        ("palette.png", pillow(np.dstack([gradient()] * 3), "PNG", "P"), 8, 3),
        ("gray.jpg", cv2.imencode(".jpg", gradient())[1].tobytes(), 8, 1),
        ("colour.jpg", cv2.imencode(".jpg", np.dstack([gradient()] * 3))[1].tobytes(), 8, 3),
        ("image.bmp", cv2.imencode(".bmp", np.dstack([gradient()] * 3))[1].tobytes(), 8, 3),
        ("gray8.tif", tiff(gradient()), 8, 1),
        ("gray16.tif", tiff(gradient().astype(np.uint16) * 16), 16, 1),
        ("float.tif", tiff(gradient().astype(np.float32) / 255), 32, 1),
        ("rgb.tif", tiff(np.dstack([gradient()] * 3), photometric="rgb"), 8, 3),
        ("planar.tif", tiff(np.stack([gradient()] * 3), photometric="rgb", planarconfig="separate"), 8, 3),
    ],
)
def test_decode_formats(name, data, depth, channels):
    decoded = decode(data, name)
    assert (decoded.height, decoded.width) == (40, 60)
    assert decoded.bit_depth == depth
    assert decoded.channels == channels
    gray = to_gray_u8(decoded)
    assert gray.dtype == np.uint8 and gray.shape == (40, 60)
    # the left-to-right ramp survives every conversion (JPEG loses a little)
    assert gray[:, -1].mean() - gray[:, 0].mean() > 200


def test_colour_order_is_bgr_like_opencv():
    for data in (pillow(RED_RGB, "PNG"), tiff(RED_RGB, photometric="rgb"), pillow(RED_RGB, "PNG", "P")):
        pixels = decode(data).pixels
        assert pixels[0, 0, 2] == 255 and pixels[0, 0, 0] == 0


def test_cmyk_jpeg_and_tiff_give_right_colours():
    cyan_cmyk = np.zeros((20, 30, 4), np.uint8)
    cyan_cmyk[..., 0] = 255  # full cyan ink: no red, full green and blue
    tif = decode(tiff(cyan_cmyk, photometric="separated"))
    assert tif.channels == 3
    np.testing.assert_array_equal(tif.pixels[0, 0], [255, 255, 0])
    cyan_rgb = np.zeros((20, 30, 3), np.uint8)
    cyan_rgb[..., 1:] = 255
    jpg = decode(pillow(cyan_rgb, "JPEG", "CMYK"))
    assert jpg.channels == 3
    b, g, r = jpg.pixels[10, 15].astype(int)
    assert r < 40 and g > 200 and b > 200


def test_multipage_tiff_reads_first_page_and_says_so():
    pages = np.stack([gradient(), 255 - gradient(), gradient() // 2])
    decoded = decode(tiff(pages, photometric="minisblack"))
    assert decoded.note == "first of 3 pages"
    np.testing.assert_array_equal(decoded.pixels, gradient())


def test_sixteen_bit_scaled_by_bits_used():
    twelve_bit = (gradient().astype(np.uint16) * 16)  # values up to 4080 in a 16-bit container
    gray = to_gray_u8(decode(png(twelve_bit)))
    assert gray.max() >= 254  # not crushed into the bottom 6% of the range


def test_float_tiff_with_nan_and_inf():
    data = gradient().astype(np.float32)
    data[0, 0], data[1, 1] = np.nan, np.inf
    gray = to_gray_u8(decode(tiff(data)))
    assert gray.dtype == np.uint8


@pytest.mark.parametrize(
    "data, words",
    [
        (b"", "empty"),
        (b"hello, I am text" * 10, "not an image"),
        (png(gradient())[:30], "truncated|damaged"),
        (png(gradient(200, 200))[:500], "truncated|damaged"),
        (cv2.imencode(".jpg", gradient(200, 200))[1].tobytes()[:400], "truncated"),
        (tiff(gradient(200, 200))[:3000], "damaged|truncated"),
        (b"\x89PNG\r\n\x1a\n", "damaged|truncated"),
    ],
)
def test_bad_bytes_give_readable_reasons(data, words):
    with pytest.raises(ImageError, match=words) as info:
        decode(data, "x")
    text = str(info.value)
    assert "\n" not in text and "0x" not in text and len(text) < 200


def test_decompression_bomb_refused_from_header():
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "reliability"))
    from nasty_files import png_bomb_header

    with pytest.raises(ImageError, match="too large"):
        decode(png_bomb_header(100_000, 100_000))


def test_unicode_path_load_gray(tmp_path):
    path = tmp_path / "Ünïcode 零件 🔩" / "naïve part.png"
    path.parent.mkdir()
    path.write_bytes(png(gradient()))
    gray = load_gray(path, max_side=30)
    assert gray.shape == (20, 30)


def test_read_bytes_reasons(tmp_path):
    with pytest.raises(ImageError, match="not found|broken"):
        read_bytes(tmp_path / "missing.png")
    with pytest.raises(ImageError, match="folder"):
        read_bytes(tmp_path)


def test_read_bytes_refuses_oversized_file(tmp_path, monkeypatch):
    path = tmp_path / "big.png"
    path.write_bytes(png(gradient()))
    monkeypatch.setattr(images, "MAX_FILE_BYTES", 100)
    with pytest.raises(ImageError, match="too large"):
        read_bytes(path)


def test_walk_images_skips_hidden_non_images_and_link_loops(tmp_path):
    root = tmp_path / "root"
    (root / "a" / "b").mkdir(parents=True)
    (root / ".hidden").mkdir()
    (root / "x.png").mkdir()  # a folder named like an image: its contents are still scanned
    for rel in ("a/one.PNG", "a/b/two.tif", ".hidden/no.png", ".no.png", "a/readme.txt", "x.png/three.jpg"):
        (root / rel).write_bytes(b"x")
    (root / "a" / "loop").symlink_to(root, target_is_directory=True)
    found = [f.relative_path for f in walk_images(root)]
    assert sorted(found) == ["a/b/two.tif", "a/one.PNG", "x.png/three.jpg"]
    assert found == [f.relative_path for f in walk_images(root)]  # stable order
