"""Validate an exported ONNX graph against its own model card (torch-free; needs only ``onnx``).

Checked when an artifact is opened (``difftool info``, every ``.onnx`` backend), each failing with one
:class:`~difftool.errors.DifftoolError` line naming the problem:

* the graph inputs are exactly ``x`` (B, C, H, W), ``t`` (B,) and, for a conditional card, ``context``
  (B, K), float, with every fixed dimension equal to the card's channels, image size and class count;
  the output ``eps`` has the shape of ``x``;
* every floating-point weight (initializers and ``Constant`` nodes) is finite.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from difftool.config import ModelCard
from difftool.errors import DifftoolError

FLOAT_TYPES = {1: "float32", 10: "float16", 11: "float64", 16: "bfloat16"}  # onnx.TensorProto elem types
MAX_NAMES = 4


def _names(items: list[str]) -> str:
    shown = ", ".join(items[:MAX_NAMES])
    return shown + (f" (+{len(items) - MAX_NAMES} more)" if len(items) > MAX_NAMES else "")


def _dims(value_info) -> list[int | str]:
    """Each dimension of a graph input/output: an int if fixed, else its symbolic name (or '?')."""
    shape = value_info.type.tensor_type.shape
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in shape.dim]


def expected_io(card: ModelCard) -> dict[str, tuple[int | None, ...]]:
    """name -> the fixed size of each dimension (None: free, the batch)."""
    c, s = card.channels, card.image_size
    io: dict[str, tuple[int | None, ...]] = {"x": (None, c, s, s), "t": (None,)}
    if card.conditional:
        io["context"] = (None, card.num_classes)
    return io


def check_io(graph, card: ModelCard, path: str | Path) -> None:
    """Graph inputs and the ``eps`` output against the card (names, ranks, fixed dims, float type)."""
    init = {i.name for i in graph.initializer}
    inputs = {i.name: i for i in graph.input if i.name not in init}
    want = expected_io(card)
    if sorted(inputs) != sorted(want):  # same words as the onnxruntime backend's check
        raise DifftoolError(f"{path}: input names {sorted(inputs)} do not match the difftool contract "
                            "(x, t, context)")
    outputs = {o.name: o for o in graph.output}
    if "eps" not in outputs:
        raise DifftoolError(f"{path}: output names {sorted(outputs)} do not match the difftool contract (eps)")
    for name, vi in [*((n, inputs[n]) for n in want), ("eps", outputs["eps"])]:
        expected = want["x" if name == "eps" else name]
        dims = _dims(vi)
        elem = vi.type.tensor_type.elem_type
        if elem not in FLOAT_TYPES:
            raise DifftoolError(f"{path}: {name} has element type {elem}, the difftool contract needs float")
        if len(dims) != len(expected):
            raise DifftoolError(f"{path}: {'output' if name == 'eps' else 'input'} {name} has rank {len(dims)}, "
                                f"the difftool contract needs rank {len(expected)} {_shape_text(expected)}")
        for got, need in zip(dims, expected, strict=True):
            if need is not None and isinstance(got, int) and got != need:
                raise DifftoolError(f"{path}: {name} has shape {_shape_text(dims)} but its model card says "
                                    f"{_shape_text(expected)} ({card.channels} channels, "
                                    f"{card.image_size}x{card.image_size}, {card.num_classes} classes)")


def _shape_text(dims) -> str:
    return "(" + ", ".join("B" if d is None else str(d) for d in dims) + ")"


def _float_tensors(graph):
    """(name, TensorProto) of every initializer and Constant-node tensor, subgraphs included."""
    for t in graph.initializer:
        yield t.name, t
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("t"):
                yield f"{node.name or node.op_type}.{attr.name}", attr.t
            if attr.HasField("g"):
                yield from _float_tensors(attr.g)
            for sub in attr.graphs:
                yield from _float_tensors(sub)


def check_weights(graph, path: str | Path) -> None:
    """Every floating-point weight stored in the file is finite."""
    from onnx import numpy_helper

    bad = []
    for name, tensor in _float_tensors(graph):
        if tensor.data_type not in FLOAT_TYPES or tensor.data_location == 1:  # 1: EXTERNAL (not loaded)
            continue
        try:
            arr = numpy_helper.to_array(tensor)
        except Exception as exc:  # onnx raises several types for malformed tensors
            raise DifftoolError(f"{path}: weight {name} is malformed ({str(exc).splitlines()[0][:120]})") from None
        if not np.isfinite(arr.astype(np.float32, copy=False)).all():
            bad.append(name)
    if bad:
        raise DifftoolError(f"{path}: non-finite weights (NaN or inf) in {len(bad)} tensor(s): {_names(bad)}; "
                            "the file is corrupt or the model it was exported from had diverged")


def check_model(model, card: ModelCard, path: str | Path) -> None:
    """The U-Net contract (x, t, context) and finite weights; a one-file generator has its own contract, which
    its session checks (``runtime.generator``), so only its weights are checked here (those in the Loop body
    included)."""
    if any(p.key == "difftool_generator" for p in model.metadata_props):
        check_weights(model.graph, path)
        for node in model.graph.node:
            for attr in node.attribute:
                if attr.g is not None and attr.g.node:
                    check_weights(attr.g, path)
        return
    check_io(model.graph, card, path)
    check_weights(model.graph, path)


def load_checked(path: str | Path, card: ModelCard | None = None):
    """``onnx.load`` with a one-line error, then :func:`check_model` against ``card`` (default: its own)."""
    import onnx

    from difftool.config import CARD_KEY

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf DecodeError and friends
        msg = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        raise DifftoolError(f"{path} is not a readable ONNX file ({msg})") from None
    if card is None:
        meta = {p.key: p.value for p in model.metadata_props}
        if CARD_KEY not in meta:
            raise DifftoolError(f"{path}: not a difftool artifact (no difftool metadata); "
                                "export it with `difftool export`")
        try:
            card = ModelCard.from_json(meta[CARD_KEY])
        except DifftoolError as exc:
            raise DifftoolError(f"{path}: {exc}") from None
    check_model(model, card, path)
    return model, card
