"""An ONNX file's weights read straight into arrays, without the file and its parse held beside them.

Parsing a 100 MB model with protobuf holds the file's bytes, the parsed message and then the arrays
made from it: three copies, which made loading ResNet-50 (102 MB) peak at 3.1 times its weights.
So the file is walked here in protobuf's wire format first (protobuf.dev/programming-guides/
encoding): every field is copied as it is, except the values of the graph's initializers (a
TensorProto's ``raw_data``, and packed ``float_data`` or ``double_data``), whose place in the file
is noted instead. What protobuf then parses is the model without its weights (kilobytes), and each
weight is read from the file into its own array (``read_payload``): about one copy in all.

Only ModelProto field 7 (graph), GraphProto field 5 (initializer) and TensorProto fields 4, 9 and 10
are looked into; everything else is carried over byte for byte, so protobuf sees the same model.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, BinaryIO, Callable

import numpy as np

from ...errors import SpecError

VARINT, FIXED64, LENGTH, FIXED32 = 0, 1, 2, 5
MODEL_GRAPH, GRAPH_INITIALIZER = 7, 5
TENSOR_FLOAT_DATA, TENSOR_RAW_DATA, TENSOR_DOUBLE_DATA = 4, 9, 10
PAYLOAD_FIELDS = (TENSOR_FLOAT_DATA, TENSOR_RAW_DATA, TENSOR_DOUBLE_DATA)


@dataclass(frozen=True)
class Payload:
    """Where initializer number ``index`` (in the graph's order) has its values: ``field`` (raw_data,
    or packed float_data / double_data), ``length`` bytes from ``offset`` in the file."""

    index: int
    field: int
    offset: int
    length: int


class _Wire:
    """Reading protobuf's wire format from a seekable stream, within [position, end)."""

    def __init__(self, stream: BinaryIO, source: str) -> None:
        self.stream, self.source = stream, source

    def fail(self, what: str) -> SpecError:
        return SpecError(f"is not a readable ONNX model ({what})", source=self.source)

    def varint(self, end: int) -> tuple[int, bytes]:
        """A varint, and its bytes as read."""
        raw = bytearray()
        value = shift = 0
        while True:
            if self.stream.tell() >= end or len(raw) == 10:
                raise self.fail("a number runs past its message")
            byte = self.stream.read(1)
            if not byte:
                raise self.fail("the file ends inside a number")
            raw += byte
            value |= (byte[0] & 0x7F) << shift
            shift += 7
            if byte[0] < 0x80:
                return value, bytes(raw)

    def read(self, length: int, end: int) -> bytes:
        if self.stream.tell() + length > end:
            raise self.fail("a field runs past its message")
        data = self.stream.read(length)
        if len(data) != length:
            raise self.fail("the file ends inside a field")
        return data

    def field(self, end: int) -> tuple[int, int, bytes, int]:
        """The next field's (number, wire type, tag and length bytes, payload length)."""
        tag, tag_bytes = self.varint(end)
        number, kind = tag >> 3, tag & 7
        if number == 0:
            raise self.fail("a field numbered 0")
        if kind == LENGTH:
            length, length_bytes = self.varint(end)
            left = end - self.stream.tell()
            if length > left:
                raise self.fail(f"field {number} needs {length:,} bytes, {left:,} are left: the file is cut short "
                                "or damaged")
            return number, kind, tag_bytes + length_bytes, length
        if kind == VARINT:
            _, value = self.varint(end)
            return number, kind, tag_bytes + value, 0
        if kind in (FIXED64, FIXED32):
            return number, kind, tag_bytes + self.read(8 if kind == FIXED64 else 4, end), 0
        raise self.fail(f"wire type {kind} (groups are not in ONNX)")


def _encode_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _length_field(number: int, payload: bytes) -> bytes:
    return _encode_varint(number << 3 | LENGTH) + _encode_varint(len(payload)) + payload


def split_weights(stream: BinaryIO, size: int, source: str) -> tuple[bytes, list[Payload]]:
    """The ModelProto in ``stream`` (``size`` bytes) without its initializers' values, and where
    those values are. SpecError for bytes that are not protobuf's wire format."""
    wire = _Wire(stream, source)
    payloads: list[Payload] = []

    indices = itertools.count()  # the initializers' order: a graph given twice is one, its lists joined

    def tensor(end: int) -> bytes:
        index = next(indices)
        parts = []
        while stream.tell() < end:
            number, kind, head, length = wire.field(end)
            if number in PAYLOAD_FIELDS and kind == LENGTH:
                if payloads and payloads[-1].index == index:  # protobuf would join or replace them
                    raise wire.fail(f"initializer {index} gives its values in more than one field")
                payloads.append(Payload(index, number, stream.tell(), length))
                stream.seek(length, 1)
            else:
                parts.append(head + (wire.read(length, end) if kind == LENGTH else b""))
        return b"".join(parts)

    stream.seek(0)
    model = _carry(wire, size, MODEL_GRAPH, lambda end: _carry(wire, end, GRAPH_INITIALIZER, tensor))
    return model, payloads


def _carry(wire: _Wire, end: int, field: int, rewrite: Callable[[int], bytes]) -> bytes:
    """A message's fields up to ``end`` as they are, but each length-delimited ``field``, whose
    payload ``rewrite(its end)`` reads and gives anew."""
    parts = []
    while wire.stream.tell() < end:
        number, kind, head, length = wire.field(end)
        if number == field and kind == LENGTH:
            parts.append(_length_field(field, rewrite(wire.stream.tell() + length)))
        else:
            parts.append(head + (wire.read(length, end) if kind == LENGTH else b""))
    return b"".join(parts)


def read_payload(stream: BinaryIO, payload: Payload, tensor: Any, source: str, where: str, external: Any) -> np.ndarray:
    """The values of initializer ``tensor`` (its other fields parsed) from ``payload``: float32 raw
    data and packed float_data straight into a new array; any other type through tensors.to_array
    with its bytes put back (a float16 or int64 tensor is small, or converted anyway)."""
    import math

    from .tensors import to_array

    if any(d < 0 for d in tensor.dims):
        raise SpecError(f"{where}: tensor {tensor.name!r} has dims {tuple(tensor.dims)}, one of them negative",
                        source=source)
    count = math.prod(tensor.dims)
    if tensor.data_type == 1 and payload.field != TENSOR_DOUBLE_DATA:  # float32, raw or packed: read as it is
        if payload.length != 4 * count:
            raise SpecError(f"{where}: tensor {tensor.name!r} holds {payload.length:,} bytes of values; its dims "
                            f"{tuple(tensor.dims)} need {4 * count:,}", source=source)
        array = np.empty(count, dtype="<f4")
        stream.seek(payload.offset)
        if stream.readinto(array.data.cast("B")) != payload.length:  # type: ignore[attr-defined]
            raise SpecError(f"{where}: the file ends inside its values", source=source)
        return array.astype(np.float32, copy=False).reshape(tuple(tensor.dims))
    stream.seek(payload.offset)
    data = stream.read(payload.length)
    if payload.field == TENSOR_RAW_DATA:
        tensor.raw_data = data
    elif payload.field == TENSOR_FLOAT_DATA:
        tensor.float_data.extend(np.frombuffer(data[:len(data) // 4 * 4], dtype="<f4").tolist())
    else:
        tensor.double_data.extend(np.frombuffer(data[:len(data) // 8 * 8], dtype="<f8").tolist())
    return to_array(tensor, source, where, external)
