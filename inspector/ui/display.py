"""Turning decoded pixels into something an inspector can see: tone curve (brightness,
contrast, gamma, auto-contrast) applied through a lookup table, so 16-bit and very dark images
are visible while the original values stay available for the pixel readout.

No widgets here: :func:`prepare` runs in a worker, :func:`render` on the UI thread (a table
lookup, a few milliseconds even for large frames).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import cv2
import numpy as np
from PySide6.QtGui import QImage

from inspector.core import images

#: longest side of the on-screen copy; the original keeps its full resolution for the readout
MAX_DISPLAY_SIDE = 8192


@dataclass
class PreparedImage:
    """An image ready to show: ``levels`` is uint8 or uint16 (one or three channels, RGB order),
    ``raw`` the decoded pixels as stored (for the readout)."""

    image_id: int
    raw: np.ndarray
    levels: np.ndarray
    n_levels: int  # 256 or 65536
    auto_low: int  # 0.5th / 99.5th percentile levels, for auto-contrast
    auto_high: int
    bit_depth: int
    description: str


@dataclass
class Tone:
    brightness: float = 0.0  # -1..1, added after the contrast stretch
    contrast: float = 1.0  # multiplies around mid-grey
    gamma: float = 1.0
    auto: bool = True  # stretch the image's own 0.5 %..99.5 % range to full scale


def prepare(image_id: int, path: Path) -> PreparedImage:
    """Read and decode a file for display (worker thread). Raises ImageError with a reason."""
    decoded = images.decode(images.read_bytes(path), str(path))
    raw = decoded.pixels
    pixels = raw
    if pixels.ndim == 3:
        if pixels.shape[2] == 4:
            pixels = pixels[..., :3]  # alpha is not part of the part's appearance
        elif pixels.shape[2] == 2:
            pixels = pixels[..., 0]
        if pixels.ndim == 3:
            pixels = np.ascontiguousarray(pixels[..., ::-1])  # BGR -> RGB for QImage
    if pixels.dtype == np.uint8:
        levels, n = np.ascontiguousarray(pixels), 256
    elif pixels.dtype == np.uint16:
        levels, n = np.ascontiguousarray(pixels), 65536
    else:  # signed or float: map the finite range onto 16-bit levels
        data = pixels.astype(np.float32)
        finite = np.isfinite(data)
        data = np.where(finite, data, 0.0)
        low, high = float(data.min()), float(data.max())
        span = high - low if high > low else 1.0
        levels, n = ((data - low) * (65535.0 / span)).astype(np.uint16), 65536
    longest = max(levels.shape[:2])
    if longest > MAX_DISPLAY_SIDE:
        f = MAX_DISPLAY_SIDE / longest
        levels = cv2.resize(levels, (round(levels.shape[1] * f), round(levels.shape[0] * f)),
                            interpolation=cv2.INTER_AREA)
    sample = levels[:: max(1, levels.shape[0] // 512), :: max(1, levels.shape[1] // 512)]
    low, high = np.percentile(sample, (0.5, 99.5)).astype(int)
    if high <= low:
        low, high = int(sample.min()), int(sample.max()) if sample.max() > sample.min() else int(sample.min()) + 1
    kind = {1: "grey", 3: "colour", 4: "colour + alpha"}.get(decoded.channels, f"{decoded.channels} channels")
    description = f"{decoded.width} × {decoded.height}, {decoded.bit_depth}-bit {kind}"
    if decoded.note:
        description += f" ({decoded.note})"
    return PreparedImage(image_id, raw, levels, n, int(low), int(high), decoded.bit_depth, description)


def tone_table(n_levels: int, tone: Tone, auto_low: int, auto_high: int) -> np.ndarray:
    """The lookup table (uint8[n_levels]) for a tone setting."""
    x = np.arange(n_levels, dtype=np.float32)
    if tone.auto:
        low, high = float(auto_low), float(max(auto_high, auto_low + 1))
    else:
        low, high = 0.0, float(n_levels - 1)
    v = np.clip((x - low) / (high - low), 0.0, 1.0)
    v = np.clip((v - 0.5) * tone.contrast + 0.5 + tone.brightness, 0.0, 1.0)
    if tone.gamma != 1.0:
        v = np.power(v, 1.0 / tone.gamma)
    return (v * 255.0 + 0.5).astype(np.uint8)


def render(prepared: PreparedImage, tone: Tone) -> QImage:
    """The image as a QImage with the tone curve applied (a table lookup; safe off the UI thread)."""
    lut = tone_table(prepared.n_levels, tone, prepared.auto_low, prepared.auto_high)
    if prepared.n_levels == 256:
        shown = cv2.LUT(prepared.levels, lut)
    else:
        shown = lut[prepared.levels]
    shown = np.ascontiguousarray(shown)
    h, w = shown.shape[:2]
    if shown.ndim == 2:
        qimage = QImage(shown.data, w, h, shown.strides[0], QImage.Format.Format_Grayscale8)
    else:
        qimage = QImage(shown.data, w, h, shown.strides[0], QImage.Format.Format_RGB888)
    return qimage.copy()  # own the pixels: the numpy buffer goes away


def pixel_text(prepared: Optional[PreparedImage], x: int, y: int) -> str:
    """'x, y: value' with the original stored value(s) under the cursor, '' outside the image."""
    if prepared is None:
        return ""
    raw = prepared.raw
    if not (0 <= y < raw.shape[0] and 0 <= x < raw.shape[1]):
        return ""
    value = raw[y, x]
    if np.ndim(value) == 0:
        shown = f"{value:.4g}" if raw.dtype.kind == "f" else str(int(value))
    else:
        names = "BGRA" if len(value) >= 3 else "ab"
        parts = [f"{n}{(v if raw.dtype.kind != 'f' else round(float(v), 4))}" for n, v in zip(names, value)]
        order = [2, 1, 0, 3][: len(parts)] if len(parts) >= 3 else range(len(parts))
        shown = " ".join(parts[i] for i in order)
    return f"x {x}, y {y}: {shown}"
