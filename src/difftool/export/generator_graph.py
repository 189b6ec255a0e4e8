"""The generator graph: an ONNX ``Loop`` over a sampler's coefficient table around the exported U-Net.

The U-Net's nodes, weights and value infos become the loop body (stored once; not S copies). The weights
are initializers of the body itself, not outer-scope values: only then does onnxruntime constant-fold
the fp16 -> fp32 casts and pre-reorder the weights for its NCHWc convolutions once at load, and with the
U-Net's symbolic shapes it fuses the same residual Adds, so the body runs the very kernels the U-Net
graph runs (bit-identical eps, measured; weights read from the outer scope cost 1.5-2x and ~1e-6). Each
iteration ``i`` applies row ``i`` of the table exactly as
:class:`~difftool.runtime.samplers.engine.SamplerRun` does (same operations, same order, float32)::

    eps = eps_u + g (eps_c - eps_u)          (one forward of [x; x] with [context; 0]; of x alone when
                                              guidance is 1 or every context row is 0)
    x0  = (x - s eps) / a ; clip ; eps = (x - a x0) / s      (re-derived only when clipping and u_eps used)
    xc  = c_x x + c_x0 x0 + c_h1 h1 + c_h2 h2 + c_xl xl      (only when the table corrects)
    x   = u_xc xc + u_eps eps + u_x0 x0 + u_h1 h1 + sigma z  (z: the noise row of this step)
    xl <- xc ; h2 <- h1 ; h1 <- x0

A table without history or corrector (DDPM, DDIM) is applied as the engine applies it, in its folded form
(``Coefficients.linear_form``): ``x = k_x0 x0 + k_x x + k_eps eps + sigma z`` after the clip.

State the table never reads (h1, h2, xl) and terms whose column is zero on every step are left out.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from difftool.runtime.samplers.table import COL, Coefficients

# Extra table columns stored in the graph: 1/a and 1/s, computed in float64 like the engine's ``1.0 / a``,
# and a linear table's folded update coefficients (Coefficients.linear_form).
LINEAR_COLUMNS = ("k_x", "k_x0", "k_eps", "k_sigma")
GRAPH_COLUMNS = (*COL, "inv_a", "inv_s", *LINEAR_COLUMNS)


@dataclass(frozen=True)
class GraphPlan:
    """What the graph is built from: the table, the network time per step and the data conventions."""

    table: Coefficients
    model_times: np.ndarray  # (S,) float32: what the network is fed at each step
    channels: int
    size: int
    num_classes: int  # 0: unconditional (no context / guidance inputs)
    clip: float | None
    value_range: tuple[float, float]
    layout: str = "default"  # "default": guidance [], noise [N,B,C,H,W]; "batched": guidance [B,1], noise [B,N,C,H,W]

    @property
    def noise_rows(self) -> int:
        return int(self.table.noisy_steps.sum())


class _Graph:
    """A node list with fresh names (every name this module makes starts with ``gen/``)."""

    def __init__(self, prefix: str):
        self.nodes: list = []
        self.prefix = prefix
        self._count = 0

    def op(self, op_type: str, *inputs: str, outputs: int = 1, **attrs) -> str | list[str]:
        from onnx import helper

        self._count += 1
        names = [f"{self.prefix}{op_type.lower()}{self._count}" + (f"_{k}" if outputs > 1 else "")
                 for k in range(outputs)]
        self.nodes.append(helper.make_node(op_type, list(inputs), names, name=names[0], **attrs))
        return names if outputs > 1 else names[0]


def _const(name: str, array: np.ndarray):
    from onnx import numpy_helper

    return numpy_helper.from_array(np.asarray(array), name)


# -- the U-Net, renamed into the body -----------------------------------------------------------------------


def _rename_graph(graph, mapping: dict[str, str]) -> None:
    """Rename every value (and node) of ``graph`` and its subgraphs through ``mapping`` (in place)."""
    from onnx import AttributeProto

    for node in graph.node:
        node.input[:] = [mapping.get(n, n) for n in node.input]
        node.output[:] = [mapping.get(n, n) for n in node.output]
        node.name = "unet/" + node.name if node.name else ""
        for attr in node.attribute:
            if attr.type == AttributeProto.GRAPH:
                _rename_graph(attr.g, mapping)
            elif attr.type == AttributeProto.GRAPHS:
                for sub in attr.graphs:
                    _rename_graph(sub, mapping)
    for init in graph.initializer:
        init.name = mapping.get(init.name, init.name)
    for value in (*graph.input, *graph.output, *graph.value_info):
        value.name = mapping.get(value.name, value.name)


def _all_names(graph, out: set[str]) -> set[str]:
    from onnx import AttributeProto

    out.update(i.name for i in graph.initializer)
    out.update(v.name for v in (*graph.input, *graph.output))
    for node in graph.node:
        out.update(n for n in (*node.input, *node.output) if n)
        for attr in node.attribute:
            if attr.type == AttributeProto.GRAPH:
                _all_names(attr.g, out)
            elif attr.type == AttributeProto.GRAPHS:
                for sub in attr.graphs:
                    _all_names(sub, out)
    return out


def prepare_unet(unet, bindings: dict[str, str]):
    """A renamed copy of the U-Net's graph: its inputs/output bound to ``bindings`` (x, t, context, eps
    -> body names), every other name prefixed ``unet/``. Returns (nodes, initializers, value infos with
    the batch dimension named ``rows``)."""
    import onnx

    if not unet.graph.value_info:  # e.g. a TorchScript export: infer the symbolic shapes once
        unet = onnx.shape_inference.infer_shapes(unet)
    graph = onnx.GraphProto()
    graph.CopyFrom(unet.graph)
    mapping = {name: bindings.get(name, "unet/" + name) for name in _all_names(graph, set())}
    _rename_graph(graph, mapping)
    for value in graph.value_info:
        for dim in value.type.tensor_type.shape.dim:
            if dim.dim_param:
                dim.dim_param = "rows"  # the U-Net's batch: B, or 2B when guided
    return list(graph.node), list(graph.initializer), list(graph.value_info)


# -- the loop body ---------------------------------------------------------------------------------------


def _used(table: Coefficients, name: str) -> bool:
    return bool(np.any(table.column(name) != 0.0))


def _state(table: Coefficients) -> list[str]:
    """The loop-carried tensors the table reads: x, then h1, h2, xl as needed."""
    return ["x"] + ["h1"] * (table.history >= 1) + ["h2"] * (table.history >= 2) + ["xl"] * table.corrects


def _eps(g: _Graph, plan: GraphPlan, names: dict[str, str], t_now: str, unet_nodes: list) -> str:
    """The (guided) network eps at the loop's x: one U-Net forward of ``rows`` = B or 2B rows."""
    from onnx import helper

    if plan.num_classes:
        tiled = g.op("Tile", "gen/x", names["repeats"])  # [x; x] when guided, else x
        g.nodes.append(helper.make_node("Reshape", [tiled, "gen/image_shape"], ["gen/x2"], name="gen/x2"))
    else:
        g.nodes.append(helper.make_node("Identity", ["gen/x"], ["gen/x2"], name="gen/x2"))
    g.nodes.append(helper.make_node("Expand", [t_now, names["rows"]], ["gen/t2"], name="gen/t2"))
    g.nodes.extend(unet_nodes)  # (x2, t2, context rows) -> gen/eps2
    if not plan.num_classes:
        return "gen/eps2"
    eps_c = g.op("Slice", "gen/eps2", "gen/zero1", names["batch1"], "gen/zero1")
    eps_u = g.op("Slice", "gen/eps2", names["uncond_start"], names["rows"], "gen/zero1")
    return g.op("Add", g.op("Mul", g.op("Sub", eps_c, eps_u), names["g4"]), eps_u)  # (c - u) g + u


def _update(g: _Graph, plan: GraphPlan, names: dict[str, str], coef: dict[str, str], eps: str) -> dict[str, str]:
    """One table row applied (the engine's operations in its order); returns the next loop state."""
    table, x, used = plan.table, "gen/x", _used_columns(plan)
    x0 = g.op("Mul", g.op("Sub", x, g.op("Mul", eps, coef["s"])), coef["inv_a"])  # (x - s eps) / a
    if plan.clip is not None:
        x0 = g.op("Clip", x0, "gen/clip_lo", "gen/clip_hi")
    if table.linear:  # the engine's folded form: k_x0 x0 + k_x x + k_eps eps + sigma z
        values = {"x": x, "x0": x0, "eps": eps}
        terms = [("k_x0", "x0"), ("k_x", "x"), ("k_eps", "eps")]
        if table.stochastic:
            values["z"] = _noise_row(g, plan)
            terms.append(("k_sigma", "z"))
        return {"x": _combine(g, coef, values, terms, used)}
    if plan.clip is not None:
        if "u_eps" in used:
            eps = g.op("Mul", g.op("Sub", x, g.op("Mul", x0, coef["a"])), coef["inv_s"])  # (x - a x0) / s
    values = {"x": x, "x0": x0, "h1": "gen/h1", "h2": "gen/h2", "xl": "gen/xl", "eps": eps}
    corrector = [("c_x", "x"), ("c_x0", "x0"), ("c_h1", "h1"), ("c_h2", "h2"), ("c_xl", "xl")]
    values["xc"] = _combine(g, coef, values, corrector, used) if table.corrects else x
    terms = [("u_xc", "xc"), ("u_eps", "eps"), ("u_x0", "x0"), ("u_h1", "h1")]
    if table.stochastic:
        values["z"] = _noise_row(g, plan)
        terms.append(("sigma", "z"))
    new = _combine(g, coef, values, terms, used)
    return {"x": new, "h1": x0, "h2": "gen/h1", "xl": values["xc"]}


def _noise_row(g: _Graph, plan: GraphPlan) -> str:
    """This step's row of the noise input."""
    row = g.op("Gather", "gen/zidx", "gen/i", axis=0)
    return g.op("Gather", "noise", row, axis=0 if plan.layout == "default" else 1)


def _used_columns(plan: GraphPlan) -> set[str]:
    """The graph columns that are non-zero on some step (the terms of the others are left out)."""
    columns = {name: plan.table.column(name) for name in COL}
    if plan.table.linear:
        columns.update(_linear_columns(plan))
    return {name for name, values in columns.items() if np.any(values != 0.0)}


def _linear_columns(plan: GraphPlan) -> dict[str, np.ndarray]:
    """The folded update coefficients of a linear table, by graph column name ((S,) float64 each)."""
    rederive = plan.clip is not None and _used(plan.table, "u_eps")
    k = plan.table.linear_form(rederive)  # (S, 4)
    return {name: k[:, i] for i, name in enumerate(LINEAR_COLUMNS)}


def _body(plan: GraphPlan, unet_nodes: list, names: dict[str, str], weights: list, infos: list):
    """The Loop body graph (inputs i, cond, state; outputs cond, next state) and its state names."""
    from onnx import TensorProto, helper

    g = _Graph("gen/b_")
    state = _state(plan.table)
    row = g.op("Gather", "gen/coef", "gen/i", axis=0)  # (18,): this step's coefficients
    coef = {name: g.op("Gather", row, f"gen/col_{name}", axis=0) for name in GRAPH_COLUMNS}
    eps = _eps(g, plan, names, g.op("Gather", "gen/times", "gen/i", axis=0), unet_nodes)
    carried = _update(g, plan, names, coef, eps)
    g.nodes.append(helper.make_node("Identity", ["gen/cond"], ["gen/cond_out"], name="gen/cond_out"))
    for s in state:
        g.nodes.append(helper.make_node("Identity", [carried[s]], [f"gen/{s}_out"], name=f"gen/{s}_out"))
    shape = ["batch", plan.channels, plan.size, plan.size]
    inputs = [helper.make_tensor_value_info("gen/i", TensorProto.INT64, []),
              helper.make_tensor_value_info("gen/cond", TensorProto.BOOL, []),
              *(helper.make_tensor_value_info(f"gen/{s}", TensorProto.FLOAT, shape) for s in state)]
    outputs = [helper.make_tensor_value_info("gen/cond_out", TensorProto.BOOL, []),
               *(helper.make_tensor_value_info(f"gen/{s}_out", TensorProto.FLOAT, shape) for s in state)]
    # The U-Net's symbolic shapes: onnxruntime fuses a residual Add into an NCHWc Conv only when it can
    # prove both shapes equal, as it does in the U-Net's own graph (then: the same kernels, bit-identical eps).
    rows = ["rows", plan.channels, plan.size, plan.size]
    info = [helper.make_tensor_value_info("gen/x2", TensorProto.FLOAT, rows),
            helper.make_tensor_value_info("gen/t2", TensorProto.FLOAT, ["rows"]), *infos]
    return helper.make_graph(g.nodes, "sampler_step", inputs, outputs, initializer=weights, value_info=info), state


def _combine(g: _Graph, coef: dict[str, str], values: dict[str, str], terms, used: set[str]) -> str:
    """sum_k coef_k * value_k in the engine's order, leaving out columns not in ``used`` (zero on every step)."""
    out = None
    for column, value in terms:
        if column not in used:
            continue
        term = g.op("Mul", values[value], coef[column])
        out = term if out is None else g.op("Add", out, term)
    if out is None:  # every coefficient zero (never for a real sampler): x_new = 0
        out = g.op("Mul", values["x"], coef["sigma"] if "sigma" in coef else coef["u_xc"])
    return out


# -- the outer graph -------------------------------------------------------------------------------------


def _table_constants(plan: GraphPlan) -> list:
    """Initializers: the (S, 18) float32 table, column indices, network times, noise-row index, clip."""
    table = plan.table
    rows = table.rows.astype(np.float64)
    linear = _linear_columns(plan) if table.linear else {name: np.zeros(len(table)) for name in LINEAR_COLUMNS}
    extra = np.stack([1.0 / rows[:, COL["a"]], 1.0 / rows[:, COL["s"]], *linear.values()], axis=1)
    coef = np.concatenate([rows, extra], axis=1).astype(np.float32)  # (S, 18)
    lo, hi = (float(v) for v in plan.value_range)
    values = {"coef": coef, "times": plan.model_times.astype(np.float32), "trip": np.int64(len(table)),
              "true": np.array(True), "zero1": np.array([0], np.int64), "one1": np.array([1], np.int64),
              "ones3": np.array([1, 1, 1], np.int64), "g_one": np.float32(1.0), "f_zero": np.float32(0.0),
              "g_shape": np.array([-1, 1, 1, 1], np.int64),
              "image_shape": np.array([-1, plan.channels, plan.size, plan.size], np.int64),
              "lo": np.float32(lo), "hi": np.float32(hi), "scale": np.float32(255.0 / (hi - lo))}
    values.update({f"col_{name}": np.int64(k) for k, name in enumerate(GRAPH_COLUMNS)})
    if table.stochastic:
        values["zidx"] = np.maximum(np.cumsum(table.noisy_steps) - 1, 0).astype(np.int64)  # step -> noise row
    if plan.clip is not None:
        values.update(clip_lo=np.float32(-plan.clip), clip_hi=np.float32(plan.clip))
    return [_const(f"gen/{name}", np.asarray(value)) for name, value in values.items()]


def _inputs(plan: GraphPlan):
    from onnx import TensorProto, helper

    c, s = plan.channels, plan.size
    inputs = [helper.make_tensor_value_info("x_T", TensorProto.FLOAT, ["batch", c, s, s])]
    if plan.num_classes:
        inputs.append(helper.make_tensor_value_info("context", TensorProto.FLOAT, ["batch", plan.num_classes]))
        g_shape = [] if plan.layout == "default" else ["batch", 1]
        inputs.append(helper.make_tensor_value_info("guidance", TensorProto.FLOAT, g_shape))
    if plan.table.stochastic:
        n = plan.noise_rows
        shape = [n, "batch", c, s, s] if plan.layout == "default" else ["batch", n, c, s, s]
        inputs.append(helper.make_tensor_value_info("noise", TensorProto.FLOAT, shape))
    return inputs


def _guidance_setup(g: _Graph, names: dict[str, str]) -> None:
    """Outer nodes for the guided batch: rows = B (1 + doubled), [context; 0] cut to rows, g as (B|1,1,1,1)."""
    shape_b = g.op("Shape", "x_T", start=0, end=1)  # [B]
    names["batch1"] = shape_b
    zeros = g.op("ConstantOfShape", g.op("Shape", "context"))  # (B, K) zeros (not context * 0: NaN-safe)
    ctx2 = g.op("Concat", "context", zeros, axis=0)  # (2B, K): conditional rows first
    g_off = g.op("Not", g.op("Equal", "guidance", "gen/g_one"))  # guidance != 1 (per row in the batched layout)
    g_any = g.op("ReduceMax", g.op("Cast", g_off, to=7), keepdims=0)  # int64 scalar 0/1
    ctx_any = g.op("ReduceMax", g.op("Cast", g.op("Not", g.op("Equal", "context", "gen/f_zero")), to=7),
                   keepdims=0)
    doubled = g.op("Mul", g_any, ctx_any)  # 1: one forward of 2B rows
    factor = g.op("Add", "gen/one1", g.op("Unsqueeze", doubled, "gen/zero1"))  # [1 + doubled]
    names["rows"] = g.op("Mul", shape_b, factor)  # [rows]
    names["uncond_start"] = g.op("Sub", names["rows"], shape_b)  # [rows - B]
    names["repeats"] = g.op("Concat", factor, "gen/ones3", axis=0)  # Tile repeats (1 + d, 1, 1, 1)
    names["ctx2"] = g.op("Slice", ctx2, "gen/zero1", names["rows"], "gen/zero1")  # (rows, K)
    names["g4"] = g.op("Reshape", "guidance", "gen/g_shape")  # (1 | B, 1, 1, 1)


def build_generator_graph(unet, plan: GraphPlan):
    """The generator ``onnx.ModelProto`` (no metadata yet) for the U-Net ``unet`` and ``plan``."""
    from onnx import TensorProto, helper

    outer = _Graph("gen/o_")
    names: dict[str, str] = {}  # loop-invariant values computed once, read by the body
    if plan.num_classes:
        _guidance_setup(outer, names)
        bindings = {"x": "gen/x2", "t": "gen/t2", "context": names["ctx2"], "eps": "gen/eps2"}
    else:
        names["batch1"] = names["rows"] = outer.op("Shape", "x_T", start=0, end=1)
        bindings = {"x": "gen/x2", "t": "gen/t2", "eps": "gen/eps2"}
    unet_nodes, weights, infos = prepare_unet(unet, bindings)
    body, state = _body(plan, unet_nodes, names, weights, infos)
    zeros = outer.op("ConstantOfShape", outer.op("Shape", "x_T"))  # initial h1, h2, xl
    initial = ["x_T" if s == "x" else zeros for s in state]
    finals = outer.op("Loop", "gen/trip", "gen/true", *initial, outputs=len(state), body=body)
    x_final = finals[0] if isinstance(finals, list) else finals
    outer.nodes.append(helper.make_node("Identity", [x_final], ["sample"], name="gen/sample"))
    scaled = outer.op("Mul", outer.op("Sub", outer.op("Clip", "sample", "gen/lo", "gen/hi"), "gen/lo"), "gen/scale")
    pixels = outer.op("Cast", outer.op("Round", scaled), to=TensorProto.UINT8)
    outer.nodes.append(helper.make_node("Transpose", [pixels], ["images"], name="gen/images", perm=[0, 2, 3, 1]))
    c, s = plan.channels, plan.size
    outputs = [helper.make_tensor_value_info("images", TensorProto.UINT8, ["batch", s, s, c]),
               helper.make_tensor_value_info("sample", TensorProto.FLOAT, ["batch", c, s, s])]
    graph = helper.make_graph(outer.nodes, "difftool_generator", _inputs(plan), outputs,
                              initializer=_table_constants(plan))
    return helper.make_model(graph, opset_imports=list(unet.opset_import), ir_version=unet.ir_version)
