"""A small reader of the ONNX file fields difftool checks at load time, without the ``onnx`` package.

``import onnx`` costs about a second of start-up (its C extension and helper modules), more than a whole
25-step generation of 16 sprites; the runtime needs only a few fields of the protobuf: the metadata, the graph
inputs and outputs with their shapes, and the float weights (initializers and ``Constant`` tensors, in
subgraphs too). This module decodes exactly those from the protobuf wire format (field numbers from
``onnx/onnx.proto``) and skips everything else; a malformed file is a :class:`ProtoError`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


class ProtoError(ValueError):
    """The bytes are not a well-formed protobuf message of the expected shape."""


@dataclass
class Tensor:
    """A TensorProto's identity and stored data (``data_location`` 1: external, not in this file)."""

    name: str = ""
    data_type: int = 0
    dims: list[int] = field(default_factory=list)
    data_location: int = 0
    raw: memoryview | None = None  # a view into the file's bytes (no copy)
    float_data: list[memoryview] = field(default_factory=list)  # fixed32 payloads (packed runs or single values)
    double_data: list[memoryview] = field(default_factory=list)  # fixed64 payloads
    int32_data: list[int] = field(default_factory=list)  # float16 / bfloat16 bit patterns when not raw


@dataclass
class ValueInfo:
    name: str = ""
    elem_type: int = 0
    dims: list[int | str] = field(default_factory=list)  # fixed size, or the symbolic name ("?" if none)


@dataclass
class Node:
    name: str = ""
    op_type: str = ""
    tensors: list[tuple[str, Tensor]] = field(default_factory=list)  # (attribute name, tensor)
    graphs: list[Graph] = field(default_factory=list)  # attribute subgraphs (If, Loop, Scan bodies)


@dataclass
class Graph:
    nodes: list[Node] = field(default_factory=list)
    initializer: list[Tensor] = field(default_factory=list)
    input: list[ValueInfo] = field(default_factory=list)
    output: list[ValueInfo] = field(default_factory=list)


@dataclass
class Model:
    metadata: dict[str, str] = field(default_factory=dict)
    graph: Graph = field(default_factory=Graph)


# -- wire format ---------------------------------------------------------------------------------------------


def _varint(buf: memoryview, pos: int, end: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= end or shift > 63:
            raise ProtoError("truncated or overlong varint")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def _fields(buf: memoryview, start: int, end: int):
    """(field number, wire type, value) of a message: an int (varint), or a (start, end) span (the rest)."""
    pos = start
    while pos < end:
        key, pos = _varint(buf, pos, end)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos, end)
            yield number, wire, value
        elif wire in (1, 5):
            size = 8 if wire == 1 else 4
            if pos + size > end:
                raise ProtoError("truncated fixed-size field")
            yield number, wire, (pos, pos + size)
            pos += size
        elif wire == 2:
            size, pos = _varint(buf, pos, end)
            if pos + size > end:
                raise ProtoError(f"field {number} runs past the end of its message")
            yield number, wire, (pos, pos + size)
            pos += size
        else:
            raise ProtoError(f"unsupported wire type {wire} (field {number})")
    if pos != end:
        raise ProtoError("a field runs past the end of its message")


def _text(buf: memoryview, span) -> str:
    try:
        return bytes(buf[span[0]:span[1]]).decode("utf-8")
    except UnicodeDecodeError:
        raise ProtoError("a string field is not UTF-8") from None


def _span(wire: int, value, what: str):
    if wire != 2:
        raise ProtoError(f"{what} has the wrong wire type")
    return value


# -- messages ------------------------------------------------------------------------------------------------


def _tensor(buf: memoryview, span) -> Tensor:
    t = Tensor()
    for number, wire, value in _fields(buf, *span):
        if number == 1:  # dims (int64, packed or not)
            t.dims.extend(_ints(buf, wire, value))
        elif number == 2 and wire == 0:
            t.data_type = value
        elif number == 4 and wire in (2, 5):
            t.float_data.append(buf[value[0]:value[1]])
        elif number == 5:
            t.int32_data.extend(_ints(buf, wire, value))
        elif number == 8:
            t.name = _text(buf, _span(wire, value, "tensor name"))
        elif number == 9:
            a, b = _span(wire, value, "raw_data")
            t.raw = buf[a:b]
        elif number == 10 and wire in (1, 2):
            t.double_data.append(buf[value[0]:value[1]])
        elif number == 14 and wire == 0:
            t.data_location = value
    return t


def _ints(buf: memoryview, wire: int, value) -> list[int]:
    if wire == 0:
        return [value]
    a, b = _span(wire, value, "repeated integer")
    out, pos = [], a
    while pos < b:
        v, pos = _varint(buf, pos, b)
        out.append(v)
    return out


def _value_info(buf: memoryview, span) -> ValueInfo:
    vi = ValueInfo()
    for number, wire, value in _fields(buf, *span):
        if number == 1:
            vi.name = _text(buf, _span(wire, value, "value name"))
        elif number == 2:  # TypeProto
            for n2, w2, v2 in _fields(buf, *_span(wire, value, "type")):
                if n2 == 1:  # TypeProto.Tensor
                    _tensor_type(buf, _span(w2, v2, "tensor type"), vi)
    return vi


def _tensor_type(buf: memoryview, span, vi: ValueInfo) -> None:
    for number, wire, value in _fields(buf, *span):
        if number == 1 and wire == 0:
            vi.elem_type = value
        elif number == 2:  # TensorShapeProto
            for n2, w2, v2 in _fields(buf, *_span(wire, value, "shape")):
                if n2 == 1:
                    vi.dims.append(_dim(buf, _span(w2, v2, "dimension")))


def _dim(buf: memoryview, span) -> int | str:
    found: int | str = "?"
    for number, wire, value in _fields(buf, *span):
        if number == 1 and wire == 0:
            found = value
        elif number == 2 and wire == 2:
            found = _text(buf, value) or "?"
    return found


# Ops whose attributes can hold tensors or subgraphs; the attributes of every other op (kernel sizes, axes, ...)
# are skipped unread (most of a U-Net graph's nodes). A node whose op_type comes after its attributes (not the
# field order writers use) has them all read.
TENSOR_ATTRIBUTE_OPS = frozenset({"Constant", "ConstantOfShape", "Loop", "If", "Scan"})


def _node(buf: memoryview, span) -> Node:
    node = Node()
    for number, wire, value in _fields(buf, *span):
        if number == 3:
            node.name = _text(buf, _span(wire, value, "node name"))
        elif number == 4:
            node.op_type = _text(buf, _span(wire, value, "op type"))
        elif number == 5 and (not node.op_type or node.op_type in TENSOR_ATTRIBUTE_OPS):
            _attribute(buf, _span(wire, value, "attribute"), node)
    return node


def _attribute(buf: memoryview, span, node: Node) -> None:
    name, tensors, graphs = "", [], []
    for number, wire, value in _fields(buf, *span):
        if number == 1:
            name = _text(buf, _span(wire, value, "attribute name"))
        elif number in (5, 10):  # t, tensors
            tensors.append(_tensor(buf, _span(wire, value, "attribute tensor")))
        elif number in (6, 11):  # g, graphs
            graphs.append(_graph(buf, _span(wire, value, "attribute graph")))
    node.tensors.extend((name, t) for t in tensors)
    node.graphs.extend(graphs)


def _graph(buf: memoryview, span) -> Graph:
    g = Graph()
    for number, wire, value in _fields(buf, *span):
        if number == 1:
            g.nodes.append(_node(buf, _span(wire, value, "node")))
        elif number == 5:
            g.initializer.append(_tensor(buf, _span(wire, value, "initializer")))
        elif number == 11:
            g.input.append(_value_info(buf, _span(wire, value, "graph input")))
        elif number == 12:
            g.output.append(_value_info(buf, _span(wire, value, "graph output")))
    return g


def parse(data: bytes, *, graph: bool = True) -> Model:
    """The checked fields of a serialized ModelProto (``graph=False``: the metadata only, the graph skipped)."""
    buf = memoryview(data)
    model = Model()
    for number, wire, value in _fields(buf, 0, len(buf)):
        if number == 7 and graph:
            model.graph = _graph(buf, _span(wire, value, "graph"))
        elif number == 14:  # StringStringEntryProto
            key = val = ""
            for n2, w2, v2 in _fields(buf, *_span(wire, value, "metadata entry")):
                if n2 == 1:
                    key = _text(buf, _span(w2, v2, "metadata key"))
                elif n2 == 2:
                    val = _text(buf, _span(w2, v2, "metadata value"))
            model.metadata[key] = val
    return model


def read(path: str | Path, *, graph: bool = True) -> Model:
    """:func:`parse` of a file; with ``graph=False`` only the top-level fields other than the graph are read
    (the graph is seeked over, so a large file costs no memory)."""
    if graph:
        return parse(Path(path).read_bytes())
    with open(path, "rb") as f:
        size = f.seek(0, 2)
        f.seek(0)
        parts, pos = [], 0
        while pos < size:
            head = f.read(20)  # a key and a length varint fit in 20 bytes
            if not head:
                raise ProtoError("truncated message")
            view = memoryview(head)
            key, n = _varint(view, 0, len(view))
            wire = key & 7
            if wire == 0:
                end = _varint(view, n, len(view))[1]
            elif wire in (1, 5):
                end = n + (8 if wire == 1 else 4)
            elif wire == 2:
                length, m = _varint(view, n, len(view))
                end = m + length
            else:
                raise ProtoError(f"unsupported wire type {wire} (field {key >> 3})")
            if pos + end > size:
                raise ProtoError(f"field {key >> 3} runs past the end of the file")
            if key >> 3 != 7:  # everything but the graph
                f.seek(pos)
                parts.append(f.read(end))
            pos += end
            f.seek(pos)
    return parse(b"".join(parts), graph=False)


# -- tensor values -------------------------------------------------------------------------------------------

_RAW_DTYPES = {1: "<f4", 10: "<f2", 11: "<f8"}


# raw-data element type -> (unsigned view, exponent mask): a value is inf or NaN when its exponent bits are all set
_EXPONENT = {1: ("<u4", 0x7F800000), 10: ("<u2", 0x7C00), 16: ("<u2", 0x7F80), 11: ("<u8", 0x7FF0000000000000)}


def all_finite(t: Tensor) -> bool:
    """True if every value of a float tensor is finite (raw data: read as integers, no float conversion)."""
    if t.raw is not None and t.data_type in _EXPONENT:
        dtype, mask = _EXPONENT[t.data_type]
        if len(t.raw) % np.dtype(dtype).itemsize:
            raise ProtoError(f"raw_data of {len(t.raw)} bytes is not a whole number of {dtype} values")
        bits = np.frombuffer(t.raw, dtype=dtype)
        return not np.any((bits & np.array(mask, dtype=bits.dtype)) == mask)
    return bool(np.isfinite(float_values(t)).all())


def float_values(t: Tensor) -> np.ndarray:
    """The tensor's values as float32 (float32/16/64 and bfloat16 element types)."""
    if t.raw is not None:
        if t.data_type == 16:
            bits = np.frombuffer(t.raw, dtype="<u2")
            return (bits.astype(np.uint32) << 16).view(np.float32)
        dtype = np.dtype(_RAW_DTYPES[t.data_type])
        if len(t.raw) % dtype.itemsize:
            raise ProtoError(f"raw_data of {len(t.raw)} bytes is not a whole number of {dtype} values")
        return np.frombuffer(t.raw, dtype=dtype).astype(np.float32)
    if t.data_type == 1:
        return np.frombuffer(b"".join(t.float_data), dtype="<f4") if t.float_data else np.zeros(0, np.float32)
    if t.data_type == 11:
        return np.frombuffer(b"".join(t.double_data), dtype="<f8").astype(np.float32)
    bits = np.asarray(t.int32_data, dtype=np.uint32) & 0xFFFF
    if t.data_type == 16:
        return (bits << 16).view(np.float32)
    return bits.astype(np.uint16).view(np.float16).astype(np.float32)
