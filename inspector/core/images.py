"""Finding and decoding image files.

Every problem with a file becomes an :class:`ImageError` with a reason a person understands;
nothing here lets a bad file crash the caller.
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Optional

import cv2
import numpy as np

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}

#: Images with more pixels than this are refused as possible decompression bombs.
#: 16k x 16k covers the largest line-scan frames we expect; a bomb declares far more.
MAX_PIXELS = 16384 * 16384
#: Files larger than this are not read at all.
MAX_FILE_BYTES = 2 * 1024**3
#: Decoded pixels (width x height x channels x bytes per sample) one reader may hold. Checked from
#: the file's header before decoding: a 2 MB PNG can declare 16,000 x 16,000 16-bit RGBA (2 GB
#: decoded, several more while converting). Readers in many processes also share the machine's
#: memory so that several large images are not decoded at once (see ingest).
DECODE_BUDGET_BYTES = 1024**3

cv2.setNumThreads(1)  # parallelism comes from worker processes; nested threads only thrash


class ImageError(Exception):
    """A file that cannot be used as an image; ``str(error)`` is the reason for a person."""


@dataclass(frozen=True)
class DecodedImage:
    """Pixels as stored (BGR or BGRA order for colour, like OpenCV) with their description."""

    pixels: np.ndarray
    bit_depth: int  # 8, 16 or 32 (float)
    channels: int
    note: str = ""  # e.g. "first of 3 pages"

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])


@dataclass(frozen=True)
class FoundFile:
    """A candidate image found by :func:`walk_images`."""

    relative_path: str  # POSIX separators, relative to the image root
    size: int
    mtime_ns: int


@dataclass
class WalkSkips:
    """What a folder walk passed over, so an empty or thin scan can say why."""

    hidden: int = 0  # files and folders whose name starts with a dot
    dangling_links: int = 0  # links whose target is gone (or that loop onto themselves)
    other_types: dict = field(default_factory=dict)  # suffix ("" for none) -> count of non-image files
    link_loops: int = 0  # links back to a folder that contains them
    repeated_folders: int = 0  # links to a folder already scanned by another path
    unreadable_folders: int = 0  # folders that could not be listed (also reported as errors)

    @property
    def other_type_count(self) -> int:
        return sum(self.other_types.values())

    def describe(self) -> str:
        """One phrase naming what was skipped, e.g. "3 hidden files or folders, 12 files of other
        types (.txt 10, .csv 2)"; empty when nothing was."""
        parts = []
        if self.other_type_count:
            common = sorted(self.other_types.items(), key=lambda kv: (-kv[1], kv[0]))
            shown = ", ".join(f"{suffix or 'no extension'} {count}" for suffix, count in common[:4])
            more = ", …" if len(common) > 4 else ""
            parts.append(f"{_plural(self.other_type_count, 'file')} of other types ({shown}{more})")
        if self.hidden:
            parts.append(f"{_plural(self.hidden, 'hidden file or folder', 'hidden files or folders')}")
        if self.dangling_links:
            parts.append(f"{_plural(self.dangling_links, 'link that leads nowhere', 'links that lead nowhere')}")
        if self.link_loops:
            parts.append(f"{_plural(self.link_loops, 'link back to a folder containing it', 'links back to folders containing them')}")
        if self.repeated_folders:
            parts.append(f"{_plural(self.repeated_folders, 'link to a folder already scanned', 'links to folders already scanned')}")
        if self.unreadable_folders:
            parts.append(f"{_plural(self.unreadable_folders, 'folder that cannot be read', 'folders that cannot be read')}")
        return ", ".join(parts)


def _plural(count: int, one: str, many: str = "") -> str:
    return f"{count} {one if count == 1 else (many or one + 's')}"


def is_image_name(name: str) -> bool:
    return Path(name).suffix.lower() in IMAGE_SUFFIXES


def _folder_identity(path: str) -> tuple[int, int]:
    """The real folder behind a path (links followed): device and inode."""
    st = os.stat(path)  # os.stat, not DirEntry.stat: the latter leaves st_ino 0 on Windows
    return st.st_dev, st.st_ino


def walk_images(
    root: Path,
    errors: Optional[list[tuple[str, str]]] = None,
    skipped: Optional[WalkSkips] = None,
) -> Iterator[FoundFile]:
    """Yield every image-named file below ``root``, recursively, in a stable order.

    Symbolic links to folders and files are followed (class or daily folders often live on
    another disk), and paths are reported as the user sees them under ``root`` (through the link,
    not the link's target). Each real folder, known by its device and inode, is walked once: a
    link back to a folder containing it (a loop) or a second path to a folder already walked is
    passed over, so the scan always ends and no image is listed twice. Hidden files and folders
    (leading dot) are skipped, folders named like images are walked like any folder. Entries that
    cannot be read are appended to ``errors`` as ``(relative_path, reason)`` when a list is given;
    what was passed over is counted in ``skipped``.
    """
    root = Path(root)
    skips = skipped if skipped is not None else WalkSkips()
    try:
        root_identity = _folder_identity(str(root))
    except OSError as exc:
        skips.unreadable_folders += 1
        if errors is not None:
            errors.append((".", f"folder cannot be read: {_os_reason(exc)}"))
        return
    walked = {root_identity}
    # each entry: (folder path, identities of the folders from the root down to it)
    stack: list[tuple[str, tuple[tuple[int, int], ...]]] = [(str(root), (root_identity,))]
    while stack:
        folder, ancestors = stack.pop()
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            skips.unreadable_folders += 1
            if errors is not None:
                rel = _relative(Path(folder), root) or "."
                errors.append((rel, f"folder cannot be read: {_os_reason(exc)}"))
            continue
        subfolders = []
        for entry in entries:
            if entry.name.startswith("."):
                skips.hidden += 1
                continue
            is_link = False
            try:
                is_link = entry.is_symlink()
                if entry.is_dir(follow_symlinks=True):
                    identity = _folder_identity(entry.path)
                    if identity in ancestors:
                        skips.link_loops += 1
                    elif identity in walked:
                        skips.repeated_folders += 1
                    else:
                        walked.add(identity)
                        subfolders.append((entry.path, ancestors + (identity,)))
                    continue
                if not is_image_name(entry.name):
                    if is_link and not os.path.exists(entry.path):
                        skips.dangling_links += 1
                    else:
                        suffix = Path(entry.name).suffix.lower()
                        skips.other_types[suffix] = skips.other_types.get(suffix, 0) + 1
                    continue
                st = entry.stat(follow_symlinks=True)
            except OSError as exc:
                if is_link:
                    skips.dangling_links += 1
                if errors is not None:
                    reason = _os_reason(exc)
                    if is_link and isinstance(exc, FileNotFoundError):
                        reason = f"broken link: it leads to {_link_target(entry.path)}, which is not there"
                    errors.append((_relative(Path(entry.path), root), reason))
                continue
            if not stat.S_ISREG(st.st_mode):
                if errors is not None:
                    errors.append((_relative(Path(entry.path), root), "not a regular file"))
                continue
            yield FoundFile(_relative(Path(entry.path), root), st.st_size, st.st_mtime_ns)
        stack.extend(reversed(subfolders))


def _link_target(path: str) -> str:
    try:
        return os.readlink(path)
    except OSError:
        return "a missing target"


def _relative(path: Path, root: Path) -> str:
    return Path(os.path.relpath(path, root)).as_posix()


def _os_reason(exc: OSError) -> str:
    if isinstance(exc, PermissionError):
        return "permission denied"
    if isinstance(exc, FileNotFoundError):
        return "file not found (deleted, moved, or a broken link)"
    if exc.errno == 40:  # ELOOP
        return "symbolic link loop"
    return exc.strerror or str(exc)


def read_bytes(path: Path) -> bytes:
    """Return the file's content; raise :class:`ImageError` when it cannot be read."""
    try:
        size = os.stat(path).st_size
        if size > MAX_FILE_BYTES:
            raise ImageError(f"file too large ({size / 1024**3:.1f} GB)")
        with open(path, "rb") as handle:
            return handle.read()
    except ImageError:
        raise
    except IsADirectoryError:
        raise ImageError("is a folder, not an image") from None
    except OSError as exc:
        raise ImageError(_os_reason(exc)) from None


def content_hash(data: bytes) -> str:
    """A stable identifier of a file's bytes (used for duplicates and change detection)."""
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def _sniff_format(data: bytes) -> str:
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if data.startswith(b"\xff\xd8"):
        return "jpeg"
    if data.startswith(b"BM"):
        return "bmp"
    if data[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "tiff"
    return ""


#: bytes per pixel of the array a decoder makes, by Pillow mode (palette images become RGB(A))
_MODE_BYTES = {"1": 1, "L": 1, "P": 4, "PA": 4, "LA": 2, "RGB": 3, "RGBA": 4, "RGBX": 4, "CMYK": 4, "YCbCr": 3,
               "LAB": 3, "HSV": 3, "I;16": 2, "I;16L": 2, "I;16B": 2, "I;16N": 2, "I": 4, "F": 4}
#: PNG colour type -> channels as decoded (palette becomes RGBA at most)
_PNG_CHANNELS = {0: 1, 2: 3, 3: 4, 4: 2, 6: 4}


def _declared_size(data: bytes, fmt: str) -> tuple[int, int, int] | None:
    """Width, height and decoded bytes per pixel, read from the header without decoding pixels."""
    if fmt == "png" and len(data) >= 29 and data[12:16] == b"IHDR":
        # Pillow reports a 16-bit colour PNG as 8-bit; OpenCV decodes all 16 bits, so read IHDR
        width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
        bits, colour = data[24], data[25]
        return width, height, _PNG_CHANNELS.get(colour, 4) * (2 if bits == 16 else 1)
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            Image.MAX_IMAGE_PIXELS = None  # we apply our own limit below
            with Image.open(io.BytesIO(data)) as probe:
                return int(probe.width), int(probe.height), _MODE_BYTES.get(probe.mode, 4)
    except Exception:  # noqa: BLE001 - any header Pillow cannot parse; the decoder decides
        return None


def declared_decoded_bytes(data: bytes) -> Optional[int]:
    """Bytes the decoded pixels of ``data`` will take, from its header (None if it cannot say)."""
    fmt = _sniff_format(data)
    size = _declared_size(data, fmt) if fmt else None
    return None if size is None else max(0, size[0]) * max(0, size[1]) * size[2]


#: bytes read from the start of a file to find its declared size (headers sit at the start)
_HEADER_BYTES = 1 << 18


def declared_longer_side(path: Path) -> Optional[int]:
    """The longer side in pixels that the file's header declares, reading only its first bytes
    (None when the file cannot be read or its header does not say there)."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(_HEADER_BYTES)
    except OSError:
        return None
    fmt = _sniff_format(head)
    size = _declared_size(head, fmt) if fmt else None
    return None if size is None else max(size[0], size[1])


def sample_longer_sides(root: Path, count: int = 16) -> list[int]:
    """Declared longer sides of the first ``count`` readable images below ``root`` (the scan's
    order): enough to tell a folder of large parts from one of small crops, in milliseconds."""
    sides: list[int] = []
    for found in walk_images(Path(root)):
        side = declared_longer_side(Path(root) / found.relative_path)
        if side:
            sides.append(side)
            if len(sides) >= count:
                break
    return sides


def _check_decode_budget(width: int, height: int, bytes_per_pixel: int) -> None:
    needed = width * height * bytes_per_pixel
    if needed > DECODE_BUDGET_BYTES:
        raise ImageError(
            f"image too large to decode safely: {width} x {height} px at {bytes_per_pixel} bytes per pixel "
            f"would take {needed / 1024**3:.1f} GB (limit {DECODE_BUDGET_BYTES / 1024**3:.1f} GB per reader)"
        )


def decode(data: bytes, name: str = "") -> DecodedImage:
    """Decode image bytes; raise :class:`ImageError` with a readable reason on any problem."""
    if len(data) == 0:
        raise ImageError("empty file (0 bytes)")
    fmt = _sniff_format(data)
    if not fmt:
        raise ImageError("not an image (unrecognised content)")
    size = _declared_size(data, fmt)
    if size is not None:
        width, height, bytes_per_pixel = size
        if width <= 0 or height <= 0:
            raise ImageError("image has no pixels")
        if width * height > MAX_PIXELS:
            raise ImageError(
                f"image too large: {width} x {height} px declared "
                f"(limit {MAX_PIXELS // 1_000_000} megapixels; possible decompression bomb)"
            )
        _check_decode_budget(width, height, bytes_per_pixel)
    if fmt == "jpeg" and data.rfind(b"\xff\xd9") < 0:
        raise ImageError("truncated JPEG (file ends before the image does)")
    if fmt == "tiff":
        return _decode_tiff(data)
    buffer = np.frombuffer(data, dtype=np.uint8)
    try:
        pixels = cv2.imdecode(buffer, cv2.IMREAD_UNCHANGED)
    except cv2.error as exc:
        raise ImageError(f"cannot decode {fmt.upper()}: {exc.msg.strip() or 'decoder error'}") from None
    if pixels is None:
        pixels = _decode_with_pillow(data, fmt)
    return _describe(pixels)


def _decode_tiff(data: bytes) -> DecodedImage:
    import tifffile

    try:
        with tifffile.TiffFile(io.BytesIO(data)) as tif:
            pages = len(tif.pages)
            if pages == 0:
                raise ImageError("TIFF has no pages")
            page = tif.pages[0]
            if int(np.prod(page.shape)) > MAX_PIXELS * 4:
                raise ImageError("image too large (possible decompression bomb)")
            needed = int(np.prod(page.shape)) * int(np.dtype(page.dtype).itemsize)
            if needed > DECODE_BUDGET_BYTES:
                raise ImageError(
                    f"image too large to decode safely: {' x '.join(str(n) for n in page.shape)} samples of "
                    f"{np.dtype(page.dtype).itemsize} bytes would take {needed / 1024**3:.1f} GB "
                    f"(limit {DECODE_BUDGET_BYTES / 1024**3:.1f} GB per reader)")
            pixels = page.asarray()
            photometric = getattr(page, "photometric", None)
    except ImageError:
        raise
    except Exception as exc:  # noqa: BLE001 - tifffile raises many types for damaged files
        # OpenCV reads some TIFF flavours tifffile refuses (and the reverse).
        pixels = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
        if pixels is None:
            raise ImageError(f"damaged or unsupported TIFF ({type(exc).__name__})") from None
        return _describe(pixels)
    pixels = np.asarray(pixels)
    if pixels.ndim == 3 and pixels.shape[0] in (1, 3, 4) and pixels.shape[-1] not in (1, 3, 4):
        pixels = np.moveaxis(pixels, 0, -1)  # planar configuration
    if pixels.ndim == 3 and pixels.shape[-1] == 1:
        pixels = pixels[..., 0]
    if pixels.ndim not in (2, 3):
        raise ImageError(f"unsupported TIFF layout {pixels.shape}")
    if pixels.ndim == 3:
        if photometric is not None and int(photometric) == 5 and pixels.shape[-1] == 4:  # SEPARATED: CMYK
            pixels = _cmyk_to_bgr(pixels)
        elif pixels.shape[-1] >= 3:
            pixels = pixels[..., :4].copy()
            pixels[..., :3] = pixels[..., 2::-1]  # RGB(A) -> BGR(A)
        else:
            pixels = pixels[..., 0]
    note = f"first of {pages} pages" if pages > 1 else ""
    return _describe(pixels, note)


def _cmyk_to_bgr(cmyk: np.ndarray) -> np.ndarray:
    scale = float(np.iinfo(cmyk.dtype).max) if cmyk.dtype.kind in "ui" else 1.0
    c, m, y, k = (cmyk[..., i].astype(np.float32) / scale for i in range(4))
    rgb = np.stack([(1 - c) * (1 - k), (1 - m) * (1 - k), (1 - y) * (1 - k)], axis=-1)
    return (rgb[..., ::-1] * 255).round().astype(np.uint8)


def _decode_with_pillow(data: bytes, fmt: str) -> np.ndarray:
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data)) as img:
                img.load()
                if img.mode in ("P", "PA", "CMYK", "YCbCr", "LAB", "HSV", "1"):
                    img = img.convert("RGBA" if "A" in img.mode or "transparency" in img.info else "RGB")
                array = np.asarray(img)
    except Exception as exc:  # noqa: BLE001 - Pillow raises many types for damaged files
        reason = str(exc).split("\n")[0][:120]
        if "cannot identify image file" in reason:  # Pillow's text names an in-memory buffer object
            reason = "the image header cannot be read"
        if "truncated" in reason.lower():
            raise ImageError(f"truncated {fmt.upper()} (file ends before the image does)") from None
        raise ImageError(f"damaged {fmt.upper()}: {reason}") from None
    if array.ndim == 3 and array.shape[-1] in (3, 4):
        array = array[..., [2, 1, 0, 3][: array.shape[-1]]]
    return np.ascontiguousarray(array)


def _describe(pixels: np.ndarray, note: str = "") -> DecodedImage:
    if pixels.size == 0 or pixels.ndim < 2:
        raise ImageError("image has no pixels")
    if pixels.dtype == np.uint8 or pixels.dtype == np.int8:
        depth = 8
    elif pixels.dtype in (np.uint16, np.int16):
        depth = 16
    elif pixels.dtype == bool:
        pixels, depth = pixels.astype(np.uint8) * 255, 8
    elif pixels.dtype.kind == "f":
        depth = 32
    else:  # 32-bit integers: keep as float so downstream maths is uniform
        pixels, depth = pixels.astype(np.float32), 32
    channels = 1 if pixels.ndim == 2 else int(pixels.shape[2])
    return DecodedImage(pixels, depth, channels, note)


def to_gray_u8(image: DecodedImage) -> np.ndarray:
    """Convert any decoded image to 8-bit grayscale.

    16-bit images are scaled by the bit depth their values actually use (12-bit cameras store
    into 16-bit containers), floats by their range; alpha is dropped.
    """
    pixels = image.pixels
    if pixels.ndim == 3:
        if pixels.shape[2] >= 3:
            pixels = cv2.cvtColor(np.ascontiguousarray(pixels[..., :3]), cv2.COLOR_BGR2GRAY)
        else:
            pixels = pixels[..., 0]
    if pixels.dtype == np.uint8:
        return np.ascontiguousarray(pixels)
    data = pixels.astype(np.float32)
    if image.bit_depth == 16 and pixels.dtype.kind in "ui":
        top = float(pixels.max()) if pixels.size else 0.0
        bits = max(8, int(np.ceil(np.log2(top + 1)))) if top > 0 else 8
        scale = 255.0 / (2**bits - 1)
        return np.clip(data * scale + 0.5, 0, 255).astype(np.uint8)
    finite = np.isfinite(data)
    if not finite.all():
        data = np.where(finite, data, 0.0)
    low, high = float(data.min()), float(data.max())
    if low >= 0.0 and high <= 1.0:
        low, high = 0.0, 1.0
    span = high - low if high > low else 1.0
    return np.clip((data - low) * (255.0 / span) + 0.5, 0, 255).astype(np.uint8)


def load_gray(path: Path, max_side: Optional[int] = None) -> np.ndarray:
    """Read, decode and convert a file to 8-bit grayscale, shrunk to ``max_side`` if larger."""
    gray = to_gray_u8(decode(read_bytes(path), str(path)))
    return shrink(gray, max_side)


def shrink(gray: np.ndarray, max_side: Optional[int]) -> np.ndarray:
    """Downscale (area averaging) so the longer side is at most ``max_side``."""
    if not max_side:
        return gray
    height, width = gray.shape[:2]
    longest = max(height, width)
    if longest <= max_side:
        return gray
    factor = max_side / longest
    size = (max(1, round(width * factor)), max(1, round(height * factor)))
    return cv2.resize(gray, size, interpolation=cv2.INTER_AREA)
