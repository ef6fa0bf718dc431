"""A minimal writer of ONNX model bytes, so OpenCV's DNN module can run a network built in memory.

Only what a plain convolutional network needs: nodes with int / ints / string attributes,
float32 initialisers, one float input with a free batch size, named outputs. The bytes follow
``onnx.proto`` (proto2 wire format, field numbers as published there); writing them by hand
avoids a dependency on the ``onnx`` package (and its protobuf runtime) in the app and the frozen build.
"""

from __future__ import annotations

from typing import Sequence, Union

import numpy as np

__all__ = ["GraphBuilder"]

_FLOAT = 1  # TensorProto.DataType.FLOAT
_ATTR_INT, _ATTR_STRING, _ATTR_INTS = 2, 3, 7  # AttributeProto.AttributeType


def _varint(value: int) -> bytes:
    value &= (1 << 64) - 1  # negative int64 as two's complement, ten bytes
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _key(field: int, wire: int) -> bytes:
    return _varint((field << 3) | wire)


def _int(field: int, value: int) -> bytes:
    return _key(field, 0) + _varint(int(value))


def _bytes(field: int, value: Union[bytes, str]) -> bytes:
    data = value.encode("utf-8") if isinstance(value, str) else bytes(value)
    return _key(field, 2) + _varint(len(data)) + data


def _attribute(name: str, value: Union[int, str, Sequence[int]]) -> bytes:
    if isinstance(value, str):
        return _bytes(1, name) + _bytes(4, value) + _int(20, _ATTR_STRING)
    if isinstance(value, (int, np.integer)):
        return _bytes(1, name) + _int(3, int(value)) + _int(20, _ATTR_INT)
    return _bytes(1, name) + b"".join(_int(8, v) for v in value) + _int(20, _ATTR_INTS)


def _value_info(name: str, dims: Sequence[Union[int, str]]) -> bytes:
    shape = b"".join(
        _bytes(1, _bytes(2, d) if isinstance(d, str) else _int(1, d)) for d in dims)  # Dimension
    tensor_type = _int(1, _FLOAT) + _bytes(2, shape)  # TypeProto.Tensor
    return _bytes(1, name) + _bytes(2, _bytes(1, tensor_type))  # ValueInfoProto{name, TypeProto}


class GraphBuilder:
    """Collects nodes and float32 weights; :meth:`to_bytes` returns a serialised ModelProto."""

    def __init__(self, name: str = "inspector") -> None:
        self.name = name
        self._nodes: list[bytes] = []
        self._initialisers: list[bytes] = []
        self._count = 0

    def weight(self, name: str, array: np.ndarray) -> str:
        array = np.ascontiguousarray(array, dtype="<f4")
        tensor = b"".join(_int(1, d) for d in array.shape) + _int(2, _FLOAT) + _bytes(8, name) + _bytes(9, array.tobytes())
        self._initialisers.append(tensor)
        return name

    def node(self, op_type: str, inputs: Sequence[str], output: str = "", **attributes) -> str:
        self._count += 1
        output = output or f"{op_type.lower()}_{self._count}"
        body = b"".join(_bytes(1, i) for i in inputs) + _bytes(2, output) + _bytes(3, f"n{self._count}_{output}")
        body += _bytes(4, op_type) + b"".join(_bytes(5, _attribute(k, v)) for k, v in attributes.items())
        self._nodes.append(body)
        return output

    def to_bytes(self, input_name: str, input_dims: Sequence[Union[int, str]],
                 outputs: Sequence[tuple[str, Sequence[Union[int, str]]]], opset: int = 13) -> bytes:
        graph = b"".join(_bytes(1, n) for n in self._nodes) + _bytes(2, self.name)
        graph += b"".join(_bytes(5, t) for t in self._initialisers)
        graph += _bytes(11, _value_info(input_name, input_dims))
        graph += b"".join(_bytes(12, _value_info(name, dims)) for name, dims in outputs)
        opset_id = _bytes(1, "") + _int(2, opset)
        return _int(1, 7) + _bytes(2, "inspector") + _bytes(7, graph) + _bytes(8, opset_id)

