"""FLOPs per forward, 2 FLOPs per multiply-accumulate (the FlopCounterMode convention).

Two counters that agree on difftool models:

* :func:`torch_flops`: ``torch.utils.flop_counter.FlopCounterMode`` around one forward (needs torch);
* :func:`onnx_flops`: from the ONNX graph alone (no torch): the input batch is fixed, shapes come from
  ``onnx.shape_inference`` (with data propagation, so Reshape targets built from Shape ops resolve), and
  Conv / ConvTranspose / MatMul / Gemm (and onnxruntime's fused forms) are counted from their shapes:

  * Conv: 2 * N * C_out * (C_in / group) * prod(kernel) * prod(out spatial)
  * ConvTranspose: 2 * N * C_in * (C_out / group) * prod(kernel) * prod(in spatial)
  * MatMul: 2 * prod(batch dims of the output) * M * N * K; Gemm: 2 * M * N * K

Elementwise ops, norms, pooling and softmax count 0 in both (as FlopCounterMode does); biases too.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from difftool.errors import DifftoolError

CONV_OPS = {"Conv", "FusedConv", "NhwcConv", "QLinearConv", "ConvInteger"}
MATMUL_OPS = {"MatMul", "FusedMatMul", "MatMulInteger", "QLinearMatMul"}
GEMM_OPS = {"Gemm", "FusedGemm"}


def torch_flops(module: Any, *inputs: Any) -> int:
    """FLOPs of one ``module(*inputs)`` forward, counted by FlopCounterMode."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        module(*inputs)
    return int(counter.get_total_flops())


def card_torch_flops(card: Any, batch: int = 1) -> int:
    """FLOPs of one forward of ``batch`` for the architecture in ``card`` (random weights: FLOPs do
    not depend on them)."""
    import torch

    from difftool.models import build

    module = build(card.model, card.schedule).eval()
    s, c = card.image_size, card.channels
    x = torch.zeros(batch, c, s, s)
    t = torch.full((batch,), 0.5)
    ctx = torch.zeros(batch, card.num_classes) if card.num_classes else None
    return torch_flops(module, x, t, ctx)


# -- ONNX graph ----------------------------------------------------------------------------------------


def onnx_flops(model: Any, batch: int = 1) -> int:
    """FLOPs of one forward of ``batch`` rows of an ONNX model (path or ``onnx.ModelProto``).

    Raises DifftoolError when a counted op's shapes cannot be inferred.
    """
    return sum(onnx_flops_by_op(model, batch).values())


def onnx_flops_by_op(model: Any, batch: int = 1) -> dict[str, int]:
    """:func:`onnx_flops` split by op type (only counted op types appear)."""
    import onnx

    if isinstance(model, str | Path):
        model = onnx.load(str(model))
    else:
        model = onnx.ModelProto.FromString(model.SerializeToString())  # never touch the caller's copy
    if model.functions:
        from onnx import inliner

        model = inliner.inline_local_functions(model)
    _fix_batch(model, batch)
    inferred = onnx.shape_inference.infer_shapes(model, data_prop=True)
    shapes = _shapes(inferred)
    totals: dict[str, int] = {}
    for node in inferred.graph.node:
        flops = _node_flops(node, shapes)
        if flops:
            totals[node.op_type] = totals.get(node.op_type, 0) + flops
    return totals


def _fix_batch(model: Any, batch: int) -> None:
    """Set the first dim of every graph input to ``batch`` (in place); drop intermediate value_info so
    shape inference recomputes it for the new batch."""
    init_names = {i.name for i in model.graph.initializer}
    for inp in model.graph.input:
        if inp.name in init_names:
            continue
        dims = inp.type.tensor_type.shape.dim
        if len(dims):
            dims[0].Clear()
            dims[0].dim_value = batch
    del model.graph.value_info[:]
    for out in model.graph.output:
        dims = out.type.tensor_type.shape.dim
        if len(dims):
            dims[0].Clear()


def _shapes(model: Any) -> dict[str, list[int | None]]:
    """Known shapes of every value (inputs, outputs, intermediates, initializers); None = unknown dim."""
    shapes: dict[str, list[int | None]] = {}
    for vi in list(model.graph.input) + list(model.graph.value_info) + list(model.graph.output):
        if vi.type.HasField("tensor_type") and vi.type.tensor_type.HasField("shape"):
            shapes[vi.name] = [d.dim_value if d.HasField("dim_value") else None
                               for d in vi.type.tensor_type.shape.dim]
    for init in model.graph.initializer:
        shapes[init.name] = list(init.dims)
    return shapes


def _need(shapes: dict[str, list[int | None]], name: str, node: Any) -> list[int]:
    shape = shapes.get(name)
    if shape is None or any(d is None for d in shape):
        raise DifftoolError(f"cannot count FLOPs: the shape of {name!r} (input/output of {node.op_type} "
                            f"{node.name!r}) is not inferable from the graph")
    return [int(d) for d in shape]


def _attr(node: Any, name: str, default: Any) -> Any:
    import onnx

    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


def _node_flops(node: Any, shapes: dict[str, list[int | None]]) -> int:
    """FLOPs of one node (0 for ops that are not counted)."""
    op = node.op_type
    if op in CONV_OPS or op == "ConvTranspose":
        # QLinearConv inputs: x, x_scale, x_zp, w, ...; others: x, w, [b]
        w_index = 3 if op == "QLinearConv" else 1
        x = _need(shapes, node.input[0], node)
        w = _need(shapes, node.input[w_index], node)
        if op == "ConvTranspose":  # w: (C_in, C_out / group, k...)
            return 2 * x[0] * w[0] * w[1] * math.prod(w[2:]) * math.prod(x[2:])
        y = _need(shapes, node.output[0], node)  # w: (C_out, C_in / group, k...)
        return 2 * y[0] * math.prod(w) * math.prod(y[2:])
    if op in MATMUL_OPS:
        b_index = 3 if op == "QLinearMatMul" else 1
        a = _need(shapes, node.input[0], node)
        y = _need(shapes, node.output[0], node)
        b = _need(shapes, node.input[b_index], node)
        k = a[-1] if len(a) > 1 else a[0]
        if op == "FusedMatMul" and _attr(node, "transA", 0) and len(a) > 1:
            k = a[-2]
        del b  # only its presence is checked; K comes from A, M and N from the output
        return 2 * math.prod(y) * k
    if op in GEMM_OPS:
        a = _need(shapes, node.input[0], node)
        y = _need(shapes, node.output[0], node)
        k = a[0] if _attr(node, "transA", 0) else a[1]
        return 2 * math.prod(y) * k
    return 0
