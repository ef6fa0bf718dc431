"""A procedural synthetic inspection data set: textured metal parts, mostly OK, small defects.

Used by ``inspector demo DIR`` (try the app without data), by tests, and by the small-defect
benchmark (:func:`write_small_defect_set`: a defect covers ~1 % of a 1,000 x 1,000 px part and
85 % of the parts are OK).

Each part is brushed metal: fine grain, streaks along a brushing direction, low-frequency
mottling, a lighting gradient and vignetting, with brightness, contrast and direction varying
between parts.  A defect part carries one defect whose extent (bounding square) covers
``defect_area`` of the image:

* ``scratch``   - one to three thin straight lines, bright or dark
* ``crack``     - a dark jagged line with a branch
* ``inclusion`` - a cluster of small dark specks
* ``stain``     - a soft irregular patch of changed brightness and smoother grain

Everything is deterministic for a given ``random_state``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Union

import cv2
import numpy as np

from .csv_cells import SafeWriter
from .errors import UserError
from .progress import CancelToken, ProgressCallback, check, report

__all__ = ["DEFECT_CLASSES", "OK_CLASS", "write_demo_dataset", "write_small_defect_set", "render_part"]

OK_CLASS = "ok"
DEFECT_CLASSES = ("scratch", "crack", "inclusion", "stain")


def write_demo_dataset(
    out_dir: Path,
    n_images: int = 240,
    size: tuple[int, int] = (480, 640),
    ok_fraction: float = 0.8,
    defect_area: float = 0.01,
    random_state: Union[int, np.random.Generator, None] = 0,
    progress: Optional[ProgressCallback] = None,
    cancel: Optional[CancelToken] = None,
    *,
    size_jitter: float = 0.0,
    defect_classes: tuple[str, ...] = DEFECT_CLASSES,
    image_format: str = "png",
    overwrite: bool = False,
) -> dict:
    """Write ``n_images`` synthetic part images into ``out_dir/<class>/``.

    ``size`` is ``(height, width)`` in pixels; with ``size_jitter`` > 0 each image's sides vary
    independently by up to that fraction.  ``ok_fraction`` of the images are OK parts, the rest
    are spread evenly over ``defect_classes``.  ``defect_area`` is the fraction of the image
    covered by a defect's extent.  Returns a summary: root, classes, per-class counts, files.
    A ``manifest.csv`` (file, class, defect box) is written next to the class folders.
    """
    out_dir = Path(out_dir)
    n_images = int(n_images)
    if n_images < 1:
        raise UserError("the demo data set needs at least one image")
    if not 0.0 <= ok_fraction <= 1.0:
        raise UserError("ok_fraction must be between 0 and 1")
    if not 0.0 < defect_area < 0.5:
        raise UserError("defect_area must be between 0 and 0.5 (a fraction of the image)")
    height, width = int(size[0]), int(size[1])
    if height < 32 or width < 32:
        raise UserError("demo images must be at least 32 x 32 pixels")
    unknown = [c for c in defect_classes if c not in _PAINTERS]
    if unknown or not defect_classes:
        raise UserError(f"unknown defect kinds: {', '.join(unknown) or '(none given)'}")
    fmt = image_format.lower().lstrip(".")
    if fmt not in ("png", "jpg", "jpeg"):
        raise UserError("image_format must be png or jpg")
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"{out_dir} exists and is not a folder")
    if out_dir.exists() and any(out_dir.iterdir()) and not overwrite:
        raise UserError(f"{out_dir} is not empty; choose a new folder for the demo data set")

    seed = _seed_from(random_state)
    plan_rng = np.random.default_rng([seed, 0x5EED])
    n_ok = int(round(ok_fraction * n_images))
    n_defect = n_images - n_ok
    labels = [OK_CLASS] * n_ok + [defect_classes[i % len(defect_classes)] for i in range(n_defect)]
    labels = [labels[i] for i in plan_rng.permutation(n_images)]

    classes = [OK_CLASS] + [c for c in defect_classes if c in labels]
    for name in classes:
        (out_dir / name).mkdir(parents=True, exist_ok=True)
    suffix = ".jpg" if fmt in ("jpg", "jpeg") else ".png"
    params = [cv2.IMWRITE_JPEG_QUALITY, 92] if suffix == ".jpg" else [
        cv2.IMWRITE_PNG_COMPRESSION, 1, cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_HUFFMAN_ONLY]

    counts = {name: 0 for name in classes}
    files: list[str] = []
    rows = []
    for index, label in enumerate(labels):
        check(cancel)
        rng = np.random.default_rng([seed, index])
        h, w = height, width
        if size_jitter > 0:
            h = max(32, int(round(height * (1 + rng.uniform(-size_jitter, size_jitter)))))
            w = max(32, int(round(width * (1 + rng.uniform(-size_jitter, size_jitter)))))
        image, box = render_part((h, w), None if label == OK_CLASS else label, defect_area, rng)
        relative = f"{label}/{label}_{index:04d}{suffix}"
        if not cv2.imwrite(str(out_dir / relative), image, params):
            raise UserError(f"cannot write {out_dir / relative}")
        counts[label] += 1
        files.append(relative)
        rows.append([relative, label, *(box if box else ("", "", "", ""))])
        report(progress, index + 1, n_images, "writing demo images")

    with open(out_dir / "manifest.csv", "w", newline="", encoding="utf-8") as handle:
        writer = SafeWriter(handle)
        writer.writerow(["file", "class", "defect_x", "defect_y", "defect_width", "defect_height"])
        writer.writerows(rows)
    return {
        "root": str(out_dir),
        "n_images": n_images,
        "classes": classes,
        "counts": counts,
        "files": files,
        "size": [height, width],
        "defect_area": defect_area,
        "random_state": seed,
    }


def write_small_defect_set(
    out_dir: Path,
    n_images: int = 300,
    random_state: Union[int, np.random.Generator, None] = 0,
    progress: Optional[ProgressCallback] = None,
    cancel: Optional[CancelToken] = None,
    **kwargs,
) -> dict:
    """The small-defect benchmark: 1,000 x 1,000 px parts, 85 % OK, a defect covers ~1 % of the part."""
    options = dict(size=(1000, 1000), ok_fraction=0.85, defect_area=0.01)
    options.update(kwargs)
    return write_demo_dataset(out_dir, n_images, random_state=random_state, progress=progress,
                              cancel=cancel, **options)


# ---------------------------------------------------------------------------------- rendering


def _seed_from(random_state: Union[int, np.random.Generator, None]) -> int:
    if isinstance(random_state, np.random.Generator):
        return int(random_state.integers(0, 2**31 - 1))
    if random_state is None:
        return 0
    return int(random_state)


def render_part(
    size: tuple[int, int], defect: Optional[str], defect_area: float, rng: np.random.Generator
) -> tuple[np.ndarray, Optional[tuple[int, int, int, int]]]:
    """Draw one part (uint8 grayscale); return it with the defect's box ``(x, y, w, h)`` or None."""
    h, w = size
    image = _metal_background(h, w, rng)
    box = None
    if defect is not None:
        side = float(np.sqrt(defect_area * h * w)) * rng.uniform(0.85, 1.15)
        side = max(6.0, min(side, 0.9 * min(h, w)))
        half = int(np.ceil(side / 2))
        cy = int(rng.integers(half, max(half + 1, h - half)))
        cx = int(rng.integers(half, max(half + 1, w - half)))
        _PAINTERS[defect](image, cy, cx, side, rng)
        box = (max(0, cx - half), max(0, cy - half), int(2 * half), int(2 * half))
    return np.clip(image + 0.5, 0, 255).astype(np.uint8), box


def _metal_background(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    base = rng.uniform(105, 165)
    grain = rng.uniform(3.0, 6.0)
    streak = rng.uniform(4.0, 9.0)
    # brushing streaks: noise smeared along the brushing direction (horizontal or vertical). The
    # grain field itself is smeared (one random field serves both, which is much faster); it is
    # drawn with a margin so the smearing has no border artefacts.
    length = int(rng.integers(31, 81)) | 1
    horizontal = rng.random() < 0.7
    margin = length // 2 + 1
    ph, pw = (h, w + 2 * margin) if horizontal else (h + 2 * margin, w)
    field = rng.standard_normal((ph, pw), dtype=np.float32) * np.float32(grain)
    ksize = (length, 1) if horizontal else (1, length)
    streaks = cv2.blur(field, ksize)
    field += streaks * np.float32(streak * np.sqrt(length) / (2.0 * grain))
    image = field[:, margin : margin + w] if horizontal else field[margin : margin + h, :]
    image = np.ascontiguousarray(image)
    # smooth components - mottling, a linear lighting gradient and a vignette - are drawn on a
    # coarse grid and enlarged once (much cheaper than full-size arithmetic)
    ch, cw = max(4, h // 32), max(4, w // 32)
    mottle = rng.standard_normal((max(2, h // 64), max(2, w // 64))).astype(np.float32)
    smooth = cv2.resize(mottle, (cw, ch), interpolation=cv2.INTER_CUBIC) * np.float32(rng.uniform(1.5, 4.0))
    yy = np.linspace(-1.0, 1.0, ch, dtype=np.float32)[:, None]
    xx = np.linspace(-1.0, 1.0, cw, dtype=np.float32)[None, :]
    gy, gx = rng.uniform(-18, 18, size=2)
    smooth += np.float32(gy) * yy + np.float32(gx) * xx
    smooth -= np.float32(rng.uniform(5, 20)) * (xx * xx + yy * yy)
    image += cv2.resize(smooth, (w, h), interpolation=cv2.INTER_CUBIC)
    image += np.float32(base)
    return image


def _patch(image: np.ndarray, cy: int, cx: int, side: float) -> tuple[slice, slice, int, int]:
    half = int(np.ceil(side / 2)) + 4
    y0, y1 = max(0, cy - half), min(image.shape[0], cy + half)
    x0, x1 = max(0, cx - half), min(image.shape[1], cx + half)
    return slice(y0, y1), slice(x0, x1), cy - y0, cx - x0


def _apply(image: np.ndarray, sy: slice, sx: slice, mask: np.ndarray, delta: float, blur: float) -> None:
    mask = mask.astype(np.float32) / 255.0
    if blur > 0:
        mask = cv2.GaussianBlur(mask, (0, 0), blur)
    image[sy, sx] += mask * np.float32(delta)


def _scratch(image: np.ndarray, cy: int, cx: int, side: float, rng: np.random.Generator) -> None:
    sy, sx, py, px = _patch(image, cy, cx, side)
    mask = np.zeros((sy.stop - sy.start, sx.stop - sx.start), np.uint8)
    angle = rng.uniform(0, np.pi)
    count = int(rng.integers(1, 4))
    for k in range(count):
        offset = (k - (count - 1) / 2) * rng.uniform(3, 8)
        length = side * rng.uniform(0.45, 0.7)
        dx, dy = np.cos(angle) * length, np.sin(angle) * length
        ox, oy = -np.sin(angle) * offset, np.cos(angle) * offset
        p0 = (int(px + ox - dx), int(py + oy - dy))
        p1 = (int(px + ox + dx), int(py + oy + dy))
        cv2.line(mask, p0, p1, 255, int(rng.integers(1, 3)) + max(0, int(side // 120)), cv2.LINE_AA)
    delta = rng.uniform(30, 50) * (1 if rng.random() < 0.6 else -1)
    _apply(image, sy, sx, mask, delta, 0.6)


def _crack(image: np.ndarray, cy: int, cx: int, side: float, rng: np.random.Generator) -> None:
    sy, sx, py, px = _patch(image, cy, cx, side)
    mask = np.zeros((sy.stop - sy.start, sx.stop - sx.start), np.uint8)
    thickness = 1 + max(0, int(side // 100))
    steps = 16
    step = side / steps

    def walk(y: float, x: float, angle: float, n: int) -> list[tuple[int, int]]:
        points = [(int(x), int(y))]
        for _ in range(n):
            angle += rng.normal(0, 0.45)
            x += np.cos(angle) * step
            y += np.sin(angle) * step
            x = min(max(x, 0), mask.shape[1] - 1)
            y = min(max(y, 0), mask.shape[0] - 1)
            points.append((int(x), int(y)))
        return points

    angle = rng.uniform(0, 2 * np.pi)
    main = walk(py - np.sin(angle) * side / 2, px - np.cos(angle) * side / 2, angle, steps)
    cv2.polylines(mask, [np.array(main, np.int32)], False, 255, thickness, cv2.LINE_AA)
    start = main[len(main) // 2]
    branch = walk(start[1], start[0], angle + rng.choice([-1, 1]) * rng.uniform(0.5, 1.2), steps // 2)
    cv2.polylines(mask, [np.array(branch, np.int32)], False, 255, thickness, cv2.LINE_AA)
    _apply(image, sy, sx, mask, -rng.uniform(45, 70), 0.5)


def _inclusion(image: np.ndarray, cy: int, cx: int, side: float, rng: np.random.Generator) -> None:
    sy, sx, py, px = _patch(image, cy, cx, side)
    mask = np.zeros((sy.stop - sy.start, sx.stop - sx.start), np.uint8)
    for _ in range(int(rng.integers(4, 10))):
        y = int(py + rng.uniform(-0.4, 0.4) * side)
        x = int(px + rng.uniform(-0.4, 0.4) * side)
        a = max(1, int(side * rng.uniform(0.03, 0.1)))
        b = max(1, int(a * rng.uniform(0.4, 1.0)))
        cv2.ellipse(mask, (x, y), (a, b), rng.uniform(0, 180), 0, 360, 255, -1, cv2.LINE_AA)
    _apply(image, sy, sx, mask, -rng.uniform(35, 60), max(0.6, side / 150))


def _stain(image: np.ndarray, cy: int, cx: int, side: float, rng: np.random.Generator) -> None:
    sy, sx, py, px = _patch(image, cy, cx, side)
    ph, pw = sy.stop - sy.start, sx.stop - sx.start
    yy, xx = np.mgrid[0:ph, 0:pw].astype(np.float32)
    radius = side / 2
    blob = 1.0 - np.sqrt(((yy - py) / radius) ** 2 + ((xx - px) / radius) ** 2)
    wobble = cv2.resize(rng.standard_normal((6, 6)).astype(np.float32), (pw, ph), interpolation=cv2.INTER_CUBIC)
    blob = np.clip((blob + 0.25 * wobble) * 3.0, 0.0, 1.0)
    blob = cv2.GaussianBlur(blob, (0, 0), max(1.0, side / 25))
    region = image[sy, sx]
    smooth = cv2.GaussianBlur(region, (0, 0), 1.5)
    delta = rng.uniform(18, 30) * (1 if rng.random() < 0.4 else -1)
    image[sy, sx] = region * (1 - blob) + (smooth + np.float32(delta)) * blob


_PAINTERS = {"scratch": _scratch, "crack": _crack, "inclusion": _inclusion, "stain": _stain}
