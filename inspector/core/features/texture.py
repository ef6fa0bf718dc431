"""Texture and shape descriptors of a grayscale image, with local pooling.

The extractor is named and versioned: the project stores vectors with ``(name, version)`` and
recomputes when either changes, and exported model files record :meth:`TextureExtractor.params`.

Design (all vectorised with numpy / OpenCV, no per-pixel Python; ~6 ms per 200 x 200 image,
~9 ms per 1,024 x 410 image on one core):

* **Working image.** The image (shrunk by the loader to ``max_side``, by default 1,024) is
  reduced by area averaging to about ``work_pixels`` (200 x 200) pixels, by a whole factor when
  possible.  Before that, three *fine-detail maps* are computed at the loaded resolution with
  four uint8 morphology passes and area-averaged to the working size: the local range
  (morphological gradient) and the density of the image's most salient (top 0.5 %) thin bright (top-hat)
  and dark (black-hat) pixels, so a 2-px scratch on a 1,000-px part still shows after the
  reduction.
* **Global texture** (on the working image): completed local binary patterns - 8 neighbours at
  radii 1, 2, 4, rotation-invariant uniform ("riu2") codes of the sign and of the magnitude
  (threshold: mean magnitude); radius 1 as the two histograms, radii 2 and 4 as the joint
  10 x 10 histogram (square-rooted); grey-level co-occurrence on 16 rank-quantised levels
  (contrast-invariant) at distances 1, 2, 4: contrast, homogeneity, energy, correlation,
  entropy averaged over four directions plus their range across directions; complex Gabor
  energies (isotropic envelope, so separable) on a 3-level pyramid x 4 orientations, with their
  sorted orientation shares (anisotropy regardless of direction); a magnitude-weighted 12-bin
  gradient-orientation histogram and its three largest shares; intensity moments, percentiles
  and a 12-bin histogram of the standardised image.
* **Local pooling.** 17 per-pixel channels (standardised intensity, local contrast, gradient
  magnitude, the three fine-detail maps, structure-tensor coherence and energy, Gabor energies
  of the two finest levels, distance of the cell's LBP histogram from the median cell's) are
  averaged over a grid of cells (16 along the longer side) and over overlapping windows of
  2 x 2 cells.  Per channel: the most extreme cells' deviation from the median cell, absolute
  and relative to the cells' robust spread (MAD); for windows also the spread and the 90th
  percentile; plus the robust z-scores of all channels at the most anomalous window (what kind
  of anomaly it is: bright or dark, line-like or blob-like, textured or smooth).  A defect
  covering ~1 % of a large image fills a good part of one window and moves these numbers far
  more than it moves global means.

Every output is finite for any 2-D input (1 x 1, constant, very elongated, any dtype).
"""

from __future__ import annotations

from typing import Optional

import cv2
import numpy as np

from inspector.core.images import DecodedImage, shrink, to_gray_u8

__all__ = ["TextureExtractor"]

_EPS = 1e-6


def _stack(vectors: list[np.ndarray], dim: int) -> np.ndarray:
    return np.stack(vectors).astype(np.float32) if vectors else np.zeros((0, dim), np.float32)


def _riu2_lut() -> np.ndarray:
    """Lookup table from an 8-bit LBP code to its rotation-invariant uniform bin (0..9)."""
    riu2 = np.zeros(256, np.uint8)
    for code in range(256):
        bits = [(code >> k) & 1 for k in range(8)]
        transitions = sum(bits[k] != bits[(k + 1) % 8] for k in range(8))
        riu2[code] = sum(bits) if transitions <= 2 else 9
    return riu2


_LUT_RIU2_U8 = _riu2_lut()
_MIN_SIDE = 24
_MORPH_KERNEL = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))
# neighbour offsets (dy, dx) around the circle, scaled by the radius
_DIRS = [(0, 1), (-1, 1), (-1, 0), (-1, -1), (0, -1), (1, -1), (1, 0), (1, 1)]


class TextureExtractor:
    """Multi-scale LBP, co-occurrence, Gabor, gradient and intensity descriptors with local pooling."""

    name: str = "texture"
    #: bump whenever the output changes (projects recompute vectors of another version)
    version: int = 2

    def __init__(
        self,
        max_side: int = 1024,
        work_pixels: int = 200 * 200,
        lbp_radii: tuple[int, ...] = (1, 2, 4),
        glcm_distances: tuple[int, ...] = (1, 2, 4),
        glcm_levels: int = 16,
        gabor_levels: int = 3,
        gabor_orientations: int = 4,
        grid_cells: int = 16,
        salient_share: float = 0.995,
        coarse_lbp_radii: tuple[int, ...] = (),
        glcm_range: bool = True,
    ) -> None:
        self.max_side = int(max_side)
        self.work_pixels = int(work_pixels)
        self.lbp_radii = tuple(int(r) for r in lbp_radii)
        self.glcm_distances = tuple(int(d) for d in glcm_distances)
        self.glcm_levels = int(glcm_levels)
        self.gabor_levels = int(gabor_levels)
        self.gabor_orientations = int(gabor_orientations)
        self.grid_cells = int(grid_cells)
        self.salient_share = float(salient_share)
        self.coarse_lbp_radii = tuple(int(r) for r in coarse_lbp_radii)
        self.glcm_range = bool(glcm_range)
        self._kernels = self._gabor_kernels()
        self._dim: Optional[int] = None

    # ------------------------------------------------------------------ interface
    def params(self) -> dict:
        return {
            "name": self.name,
            "version": self.version,
            "max_side": self.max_side,
            "work_pixels": self.work_pixels,
            "lbp_radii": list(self.lbp_radii),
            "glcm_distances": list(self.glcm_distances),
            "glcm_levels": self.glcm_levels,
            "gabor_levels": self.gabor_levels,
            "gabor_orientations": self.gabor_orientations,
            "grid_cells": self.grid_cells,
            "salient_share": self.salient_share,
            "coarse_lbp_radii": list(self.coarse_lbp_radii),
            "glcm_range": self.glcm_range,
        }

    def describe(self) -> str:
        return (f"texture statistics (local binary patterns, co-occurrence, Gabor, gradients) pooled over "
                f"local cells; {self.dim} numbers; sees thin cracks and specks on large images")

    def features_of(self, decoded: DecodedImage) -> np.ndarray:
        """The descriptor of a decoded image: grey (8-bit), shrunk to ``max_side``, then :meth:`extract`."""
        return self.extract(shrink(to_gray_u8(decoded), self.max_side))

    def features_of_batch(self, decoded: list[DecodedImage]) -> np.ndarray:
        return _stack([self.features_of(d) for d in decoded], self.dim)

    @property
    def local_channels(self) -> int:
        """Per-pixel channels pooled over cells (see :meth:`_pool`): intensity, contrast, gradient,
        the three fine-detail maps, coherence, structure energy, the Gabor energies of the two
        finest levels and the cell's LBP distance from the median cell."""
        return 9 + min(self.gabor_levels, 2) * self.gabor_orientations

    @property
    def novelty_blocks(self) -> list[tuple[str, int]]:
        """The vector's parts that novelty scores apart, in column order: the whole-image
        statistics, then the local pooling (the most extreme cells, the 2 x 2 windows, the most
        anomalous window's signature). A small defect moves the local parts far more than the
        whole-image ones; in one distance the wider whole-image part drowns it (measured:
        tests/benchmarks/bench_confidence.py --sections novelty, README "Can the line trust it")."""
        c = self.local_channels
        return [("texture: whole image", self.dim - 11 * c), ("texture: extreme cells", 4 * c),
                ("texture: windows", 6 * c), ("texture: most anomalous window", c)]

    @property
    def dim(self) -> int:
        if self._dim is None:
            probe = np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8)
            self._dim = int(self._extract(probe).shape[0])
        return self._dim

    def extract(self, gray: np.ndarray) -> np.ndarray:
        """Return the float32 descriptor of a 2-D image (any size, any numeric dtype)."""
        vector = self._extract(_as_gray_u8(gray))
        vector = np.nan_to_num(vector.astype(np.float32), nan=0.0, posinf=1e6, neginf=-1e6)
        return np.clip(vector, -1e6, 1e6).astype(np.float32)

    # ------------------------------------------------------------------ internals
    def _gabor_kernels(self) -> list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
        """Complex Gabor filters with an isotropic envelope, which makes them separable.

        ``g(x, y) exp(i (kx x + ky y)) = [g(x) exp(i kx x)] [g(y) exp(i ky y)]``, so each complex
        filter is four cheap separable passes (two when it is axis-aligned).
        """
        sigma, wavelength, half = 2.0, 4.0, 5
        t = np.arange(-half, half + 1, dtype=np.float64)
        envelope = np.exp(-(t**2) / (2 * sigma**2))
        envelope /= envelope.sum()
        k = 2 * np.pi / wavelength
        kernels = []
        for o in range(self.gabor_orientations):
            theta = np.pi * o / self.gabor_orientations
            kx, ky = k * np.cos(theta), k * np.sin(theta)
            parts = (envelope * np.cos(kx * t), envelope * np.sin(kx * t),
                     envelope * np.cos(ky * t), envelope * np.sin(ky * t))
            kernels.append(tuple(np.asarray(p, np.float32) for p in parts))
        return kernels

    def _gabor_energy(self, image: np.ndarray, kernel: tuple) -> np.ndarray:
        rc, rs, cc, cs = kernel
        border = cv2.BORDER_REFLECT_101
        small = 1e-6
        if np.abs(cs).max() < small:  # horizontal carrier: column filter is the plain envelope
            re = cv2.sepFilter2D(image, cv2.CV_32F, rc, cc, borderType=border)
            im = cv2.sepFilter2D(image, cv2.CV_32F, rs, cc, borderType=border)
        elif np.abs(rs).max() < small:  # vertical carrier
            re = cv2.sepFilter2D(image, cv2.CV_32F, rc, cc, borderType=border)
            im = cv2.sepFilter2D(image, cv2.CV_32F, rc, cs, borderType=border)
        else:
            a = cv2.sepFilter2D(image, cv2.CV_32F, rc, cc, borderType=border)
            b = cv2.sepFilter2D(image, cv2.CV_32F, rs, cs, borderType=border)
            c = cv2.sepFilter2D(image, cv2.CV_32F, rc, cs, borderType=border)
            d = cv2.sepFilter2D(image, cv2.CV_32F, rs, cc, borderType=border)
            re, im = a - b, c + d
        return cv2.magnitude(re, im)

    def _working_image(self, gray: np.ndarray) -> tuple[np.ndarray, Optional[np.ndarray]]:
        """Resample to about ``work_pixels`` pixels (uint8); also fine-detail maps (H x W x 3) at that size."""
        gray = shrink(gray, self.max_side)
        h, w = gray.shape
        # reduce by a whole factor when that keeps both sides usable (OpenCV's area averaging is
        # several times faster for whole factors); the few rows / columns beyond a multiple of
        # the factor are split evenly between the two borders and dropped
        factor = max(1, int(round(np.sqrt(h * w / float(self.work_pixels)))))
        if factor > 1 and min(h, w) // factor >= _MIN_SIDE:
            cut_y, cut_x = h % factor, w % factor
            gray = gray[cut_y // 2 : h - (cut_y - cut_y // 2), cut_x // 2 : w - (cut_x - cut_x // 2)]
            h, w = gray.shape
            th, tw = h // factor, w // factor
        else:
            scale = min(1.0, float(np.sqrt(self.work_pixels / float(h * w))))
            th = max(1, int(round(h * scale)))
            tw = max(1, int(round(w * scale)))
            th, tw = max(th, _MIN_SIDE), max(tw, _MIN_SIDE)  # stretch very thin images
        # fine-detail maps at the loaded resolution, area-averaged to the working size: local
        # range (morphological gradient), and the density of the image's most salient thin bright
        # (top-hat) and dark (black-hat) pixels - a scratch or a speck concentrates them, grain
        # spreads them evenly. Four cheap uint8 morphology passes serve all three.
        fine = None
        if min(h, w) >= 3:
            eroded = cv2.erode(gray, _MORPH_KERNEL)
            dilated = cv2.dilate(gray, _MORPH_KERNEL)
            energy = cv2.subtract(dilated, eroded)
            tophat = _salient(cv2.subtract(gray, cv2.dilate(eroded, _MORPH_KERNEL)), self.salient_share)
            blackhat = _salient(cv2.subtract(cv2.erode(dilated, _MORPH_KERNEL), gray), self.salient_share)
            fine = cv2.merge([energy, tophat, blackhat])
            if (th, tw) != (h, w):
                shrinking = th <= h and tw <= w
                fine = cv2.resize(fine, (tw, th), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)
            fine = fine.astype(np.float32) * np.array([1.0, 100.0 / 255, 100.0 / 255], np.float32)
        if (th, tw) != (h, w):
            shrinking = th <= h and tw <= w
            work = cv2.resize(gray, (tw, th), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)
        else:
            work = gray
        return np.ascontiguousarray(work), fine

    def _extract(self, gray: np.ndarray) -> np.ndarray:
        work8, fine = self._working_image(gray)
        h, w = work8.shape
        n = float(h * w)
        parts: list[np.ndarray] = []

        # ---- intensity statistics from the 256-bin histogram
        hist256 = cv2.calcHist([work8], [0], None, [256], [0, 256]).ravel().astype(np.float64)
        p = hist256 / n
        levels256 = np.arange(256, dtype=np.float64)
        mean = float((p * levels256).sum())
        var = float((p * (levels256 - mean) ** 2).sum())
        std = float(np.sqrt(var))
        zl = (levels256 - mean) / (std + 1.0)
        skew = float((p * zl**3).sum())
        kurt = float((p * zl**4).sum())
        cdf = np.cumsum(p)
        pct = np.searchsorted(cdf, np.array([0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99]) - 1e-9)
        parts.append(np.array([mean / 255.0, std / 64.0, skew, np.log1p(kurt)]))
        parts.append(np.minimum(pct, 255) / 255.0)
        scale = max(std, 1.0)
        bins12 = np.clip(np.floor((levels256 - mean) / scale * 2.0 + 6.0), 0, 11).astype(np.int64)
        parts.append(np.bincount(bins12, weights=p, minlength=12))

        # ---- completed LBP: joint riu2 sign x riu2 magnitude histograms per radius
        riu2_r1 = None
        for radius in self.lbp_radii:
            riu2, jh = _clbp(work8, radius)
            if radius == self.lbp_radii[0]:  # finest radius: sign and magnitude histograms
                jh = jh.reshape(10, 10)
                parts.append(np.sqrt(np.concatenate([jh.sum(axis=1), jh.sum(axis=0)])))
            else:  # coarser radii: the joint sign x magnitude histogram
                parts.append(np.sqrt(jh))
            if riu2_r1 is None:
                riu2_r1 = riu2
        if self.coarse_lbp_radii:  # sign histograms at half resolution: larger structures
            half = cv2.pyrDown(work8) if min(h, w) >= 2 * _MIN_SIDE else work8
            for radius in self.coarse_lbp_radii:
                parts.append(np.sqrt(_clbp(half, radius)[1].reshape(10, 10).sum(axis=1)))

        # ---- grey-level co-occurrence, rank-quantised (histogram equalisation) so contrast is ignored
        levels = self.glcm_levels
        quant_lut = np.minimum((cdf - p * 0.5) * levels, levels - 1).astype(np.uint8)
        quant = cv2.LUT(work8, quant_lut)
        ii, jj = np.meshgrid(np.arange(levels), np.arange(levels), indexing="ij")
        diff2 = (ii - jj) ** 2
        homog_w = 1.0 / (1.0 + diff2)
        shift = int(np.log2(levels)) if levels & (levels - 1) == 0 and levels <= 16 else 0
        glcms = []
        for d in self.glcm_distances:
            for dy, dx in ((0, d), (d, d), (d, 0), (d, -d)):
                a = quant[max(0, -dy) : h - max(0, dy), max(0, -dx) : w - max(0, dx)]
                b = quant[max(0, dy) : h + min(0, dy), max(0, dx) : w + min(0, dx)]
                if a.size == 0:
                    glcms.append(np.eye(levels).ravel())
                elif shift:
                    pair = np.ascontiguousarray((a << shift) | b)
                    glcms.append(cv2.calcHist([pair], [0], None, [levels * levels], [0, levels * levels]).ravel())
                else:
                    glcms.append(np.bincount((a.astype(np.int64) * levels + b).ravel(), minlength=levels * levels))
        glcm = np.asarray(glcms, np.float64).reshape(-1, levels, levels)
        glcm = glcm + glcm.transpose(0, 2, 1)
        glcm /= np.maximum(glcm.sum(axis=(1, 2), keepdims=True), 1.0)
        contrast = (glcm * diff2).sum(axis=(1, 2))
        homog = (glcm * homog_w).sum(axis=(1, 2))
        energy = np.sqrt((glcm**2).sum(axis=(1, 2)))
        marginal = glcm.sum(axis=2)
        grey = np.arange(levels, dtype=np.float64)
        mu = marginal @ grey
        gvar = (marginal * (grey[None, :] - mu[:, None]) ** 2).sum(axis=1)
        centred = grey[None, :] - mu[:, None]
        corr = np.einsum("ki,kij,kj->k", centred, glcm, centred) / (gvar + _EPS)
        entropy = -(glcm * np.log(np.maximum(glcm, 1e-12))).sum(axis=(1, 2))
        stats = np.stack([contrast / levels**2 * 10, homog, energy * 10, corr, entropy / 5.0], axis=1)
        stats = stats.reshape(len(self.glcm_distances), 4, 5)
        for per_distance in stats:
            parts.append(per_distance.mean(axis=0))
            if self.glcm_range:
                parts.append(per_distance.max(axis=0) - per_distance.min(axis=0))

        # ---- gradients: magnitude-weighted orientation histogram (unsigned, 12 bins)
        norm = (work8.astype(np.float32) - np.float32(mean)) * np.float32(1.0 / scale)
        gx = cv2.Sobel(norm, cv2.CV_32F, 1, 0, ksize=3)
        gy = cv2.Sobel(norm, cv2.CV_32F, 0, 1, ksize=3)
        mag, ang = cv2.cartToPolar(gx, gy)
        obin = (ang * np.float32(12 / np.pi)).astype(np.int32) % 12
        ohist = np.bincount(obin.ravel(), weights=mag.ravel(), minlength=12)
        ohist /= float(ohist.sum()) + _EPS
        parts.append(ohist)
        parts.append(np.sort(ohist)[::-1][:3])  # rotation-invariant dominance
        if fine is None:
            fine = np.zeros((h, w, 3), np.float32)
            fine[..., 0] = mag * np.float32(scale)
        fine[..., 0] *= np.float32(1.0 / scale)  # gradient energy relative to the contrast
        fine_mag, fine_top, fine_black = cv2.split(fine)
        mag_mean = float(cv2.mean(mag)[0])
        parts.append(np.array([np.log1p(mag_mean), np.log1p(float(mag.max())),
                               np.log1p(float(cv2.mean(fine_mag)[0]))]))

        # ---- Gabor energies over a pyramid (levels x orientations)
        gabor_maps = []
        gabor_global = []
        level_img = norm
        for level in range(self.gabor_levels):
            if min(level_img.shape) < 8:
                energies = [np.zeros_like(level_img) for _ in self._kernels]
            else:
                energies = [self._gabor_energy(level_img, kern) for kern in self._kernels]
            gabor_global.append([float(cv2.mean(e)[0]) for e in energies])
            if level < 2:
                gabor_maps.append(energies)
            if min(level_img.shape) >= 2:
                level_img = cv2.pyrDown(level_img)
        gabor_global = np.array(gabor_global)
        parts.append(np.log1p(gabor_global).ravel())
        share = gabor_global / (gabor_global.sum(axis=1, keepdims=True) + _EPS)
        parts.append(np.sort(share, axis=1).ravel())  # rotation-invariant anisotropy

        # ---- local pooling over a grid of cells
        channels = [norm, cv2.multiply(norm, norm), mag, fine_mag, fine_top, fine_black,
                    cv2.multiply(gx, gx), cv2.multiply(gy, gy), cv2.multiply(gx, gy)]
        for energies in gabor_maps:
            channels.extend(energies)
        parts.append(self._pool(channels, riu2_r1, h, w))
        return np.concatenate([np.asarray(q, np.float64).ravel() for q in parts])

    def _pool(self, channels: list[np.ndarray], riu2: np.ndarray, h: int, w: int) -> np.ndarray:
        n_long = self.grid_cells
        if h >= w:
            gh, gw = n_long, max(2, int(round(n_long * w / h)))
        else:
            gw, gh = n_long, max(2, int(round(n_long * h / w)))
        gh, gw = min(gh, h), min(gw, w)
        cells = np.empty((gh, gw, len(channels) + 1), np.float32)
        for i, channel in enumerate(channels):
            cells[..., i] = cv2.resize(channel, (gw, gh), interpolation=cv2.INTER_AREA)
        # local contrast from E[x] and E[x^2]
        cells[..., 1] = np.sqrt(np.maximum(cells[..., 1] - cells[..., 0] ** 2, 0.0))
        # orientation coherence of the structure tensor (lines ~1, blobs and grain ~0), then drop Jxy
        jxx, jyy, jxy = cells[..., 6], cells[..., 7], cells[..., 8]
        cells[..., 6] = np.sqrt((jxx - jyy) ** 2 + 4 * jxy**2) / (jxx + jyy + 1e-3)
        cells[..., 7] = np.log1p(jxx + jyy)
        cells = np.delete(cells, 8, axis=-1)
        # LBP (radius 1, riu2) histogram per cell and its L1 distance from the median cell
        counts = np.empty((gh, gw, 10), np.float32)
        for value in range(10):
            share = cv2.compare(riu2, value, cv2.CMP_EQ)
            counts[..., value] = cv2.resize(share, (gw, gh), interpolation=cv2.INTER_AREA)
        counts = counts.reshape(gh * gw, 10) * np.float32(1.0 / 255.0)
        cells[..., -1] = np.abs(counts - np.median(counts, axis=0)).sum(axis=1).reshape(gh, gw)
        pooled = [self._pool_cells(cells.reshape(-1, cells.shape[-1]))[2 * cells.shape[-1] :]]
        # overlapping windows of 2 x 2 cells
        win = 0.25 * (cells[:-1, :-1] + cells[1:, :-1] + cells[:-1, 1:] + cells[1:, 1:])
        if win.size == 0:
            win = cells
        win = win.reshape(-1, win.shape[-1]).astype(np.float64)
        pooled.append(self._pool_cells(win))
        # signature of the most anomalous window: every channel's robust z-score there
        med = np.median(win, axis=0)
        robust = np.median(np.abs(win - med), axis=0) * 1.4826 + 0.05 * (np.abs(med) + 1e-3)
        z = (win - med) / robust
        worst = int(np.argmax(np.abs(np.clip(z, -50, 50)).sum(axis=1)))
        pooled.append(np.sign(z[worst]) * np.log1p(np.abs(z[worst])))
        return np.concatenate(pooled)

    @staticmethod
    def _pool_cells(values: np.ndarray) -> np.ndarray:
        values = values.astype(np.float64)
        srt = np.sort(values, axis=0)
        m = srt.shape[0]
        med = srt[m // 2]
        mad = np.median(np.abs(values - med), axis=0) * 1.4826
        spread = values.std(axis=0)
        high = srt[-1] - med
        low = med - srt[0]
        q90 = srt[min(m - 1, int(0.9 * m))] - med
        robust = mad + 0.05 * (np.abs(med) + 1e-3)
        z_high = np.log1p(high / robust)
        z_low = np.log1p(low / robust)
        return np.concatenate([spread, q90, high, low, z_high, z_low])


def _clbp(image: np.ndarray, radius: int) -> tuple[np.ndarray, np.ndarray]:
    """Completed LBP of a uint8 image: the riu2 sign-code map and the normalised joint
    (sign riu2 x magnitude riu2) 100-bin histogram, 8 neighbours at ``radius`` (reflected borders)."""
    h, w = image.shape
    pad = radius
    padded = cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_REFLECT_101)
    center = padded[pad : pad + h, pad : pad + w]
    sign_code = np.zeros((h, w), np.uint8)
    diffs = []
    for k, (dy, dx) in enumerate(_DIRS):
        r = max(1, int(round(radius / np.sqrt(2)))) if (dy and dx) else radius
        oy, ox = pad + dy * r, pad + dx * r
        neighbour = padded[oy : oy + h, ox : ox + w]
        mask = cv2.compare(neighbour, center, cv2.CMP_GE)
        np.bitwise_or(sign_code, mask & np.uint8(1 << k), out=sign_code)
        diffs.append(cv2.absdiff(neighbour, center))
    threshold = sum(float(cv2.mean(d)[0]) for d in diffs) / len(diffs)
    mag_code = np.zeros((h, w), np.uint8)
    for k, d in enumerate(diffs):
        mask = cv2.compare(d, threshold, cv2.CMP_GE)
        np.bitwise_or(mag_code, mask & np.uint8(1 << k), out=mag_code)
    riu2 = cv2.LUT(sign_code, _LUT_RIU2_U8)
    joint = cv2.LUT(mag_code, _LUT_RIU2_U8) + riu2 * np.uint8(10)
    hist = cv2.calcHist([joint], [0], None, [100], [0, 100]).ravel() / float(h * w)
    return riu2, hist


def _salient(response: np.ndarray, share: float = 0.99) -> np.ndarray:
    """255 where a uint8 response exceeds its own ``share`` quantile (at least 1), else 0."""
    hist = cv2.calcHist([response], [0], None, [256], [0, 256]).ravel()
    cdf = np.cumsum(hist) / max(float(hist.sum()), 1.0)
    threshold = max(1, int(np.searchsorted(cdf, share)))
    return cv2.compare(response, threshold, cv2.CMP_GT)


def _as_gray_u8(gray: np.ndarray) -> np.ndarray:
    """Any array to 2-D uint8 (colour to luminance; other dtypes scaled by their range)."""
    array = np.asarray(gray)
    if array.ndim == 3 and array.size:
        if array.shape[2] >= 3:
            colour = np.ascontiguousarray(array[..., :3])
            if colour.dtype not in (np.uint8, np.uint16, np.float32):
                colour = np.nan_to_num(colour.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)
            array = cv2.cvtColor(colour, cv2.COLOR_BGR2GRAY)
        else:
            array = array[..., 0]
    if array.ndim != 2 or array.size == 0:
        array = np.zeros((1, 1), np.uint8) if array.size == 0 else array.reshape(array.shape[0], -1)
    if array.dtype != np.uint8:
        data = np.nan_to_num(array.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        low, high = float(data.min()), float(data.max())
        if low >= 0 and high <= 255 and array.dtype.kind in "uib":
            array = data.astype(np.uint8)
        else:
            span = high - low if high > low else 1.0
            array = np.clip((data - low) * (255.0 / span) + 0.5, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(array)
