"""Validate an exported ONNX graph against its own model card (torch-free, and without the ``onnx`` package:
the fields are read by :mod:`difftool.runtime.onnxproto`, which keeps start-up about a second shorter).

Checked when an artifact is opened (``difftool info``, every ``.onnx`` backend), each failing with one
:class:`~difftool.errors.DifftoolError` line naming the problem:

* the graph inputs are exactly ``x`` (B, C, H, W), ``t`` (B,) and, for a conditional card, ``context``
  (B, K), float, with every fixed dimension equal to the card's channels, image size and class count;
  the output ``eps`` has the shape of ``x``;
* every floating-point weight (initializers and ``Constant`` nodes) is finite.
"""

from __future__ import annotations

from pathlib import Path

from difftool.config import ModelCard
from difftool.errors import DifftoolError

FLOAT_TYPES = {1: "float32", 10: "float16", 11: "float64", 16: "bfloat16"}  # onnx.TensorProto elem types
MAX_NAMES = 4


def _names(items: list[str]) -> str:
    shown = ", ".join(items[:MAX_NAMES])
    return shown + (f" (+{len(items) - MAX_NAMES} more)" if len(items) > MAX_NAMES else "")


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
        dims = vi.dims
        elem = vi.elem_type
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
    """(name, Tensor) of every initializer and Constant-node tensor, subgraphs included."""
    for t in graph.initializer:
        yield t.name, t
    for node in graph.nodes:
        for attr, tensor in node.tensors:
            yield f"{node.name or node.op_type}.{attr}", tensor
        for sub in node.graphs:
            yield from _float_tensors(sub)


def check_weights(graph, path: str | Path) -> None:
    """Every floating-point weight stored in the file is finite (those in subgraphs too)."""
    from difftool.runtime.onnxproto import ProtoError, all_finite

    bad = []
    for name, tensor in _float_tensors(graph):
        if tensor.data_type not in FLOAT_TYPES or tensor.data_location == 1:  # 1: EXTERNAL (not loaded)
            continue
        try:
            finite = all_finite(tensor)
        except (ProtoError, ValueError) as exc:
            raise DifftoolError(f"{path}: weight {name} is malformed ({str(exc).splitlines()[0][:120]})") from None
        if not finite:
            bad.append(name)
    if bad:
        raise DifftoolError(f"{path}: non-finite weights (NaN or inf) in {len(bad)} tensor(s): {_names(bad)}; "
                            "the file is corrupt or the model it was exported from had diverged")


def check_model(model, card: ModelCard, path: str | Path) -> None:
    """The U-Net contract (x, t, context) and finite weights; a one-file generator has its own contract, which
    its session checks (``runtime.generator``), so only its weights are checked here (those in the Loop body
    included)."""
    if "difftool_generator" in model.metadata:
        check_weights(model.graph, path)
        return
    check_io(model.graph, card, path)
    check_weights(model.graph, path)


def read_model(path: str | Path, *, graph: bool = True):
    """:func:`difftool.runtime.onnxproto.read` with a one-line DifftoolError for a file it cannot read."""
    from difftool.runtime.onnxproto import read

    try:
        return read(path, graph=graph)
    except (ValueError, TypeError, IndexError) as exc:  # ProtoError is a ValueError
        raise DifftoolError(f"{path} is not a readable ONNX file ({str(exc)[:160]})") from None
    except OSError as exc:
        raise DifftoolError(f"cannot read {path} ({exc.strerror or exc})") from None


def load_checked(path: str | Path, card: ModelCard | None = None):
    """:func:`read_model` with a one-line error, then :func:`check_model` against ``card`` (default: its own)."""
    from difftool.config import CARD_KEY

    model = read_model(path)
    if card is None:
        meta = model.metadata
        if CARD_KEY not in meta:
            raise DifftoolError(f"{path}: not a difftool artifact (no difftool metadata); "
                                "export it with `difftool export`")
        try:
            card = ModelCard.from_json(meta[CARD_KEY])
        except DifftoolError as exc:
            raise DifftoolError(f"{path}: {exc}") from None
    check_model(model, card, path)
    return model, card
