"""Half-size storage for fp32 graphs: float32 weights kept as float16 initializers + one Cast each.

onnxruntime folds every ``Cast(fp16 initializer)`` into a float32 constant when it builds the session
(graph optimisation, constant folding), so the model runs exactly like an fp32 graph whose weights were
rounded to fp16: same kernels, same speed, half the file. The rounding changes outputs by ~1e-3 of their
scale; use it for artifacts you ship (the bundled sprite model), not for parity-checked exports.
"""

from __future__ import annotations

import numpy as np

MIN_ELEMENTS = 256  # small tensors (biases, norms, scalars) stay float32: no size to win, no rounding


def store_weights_fp16(model, min_elements: int = MIN_ELEMENTS, lossless: bool = False) -> int:
    """Rewrite ``model`` (an ``onnx.ModelProto``) in place; returns the number of initializers converted.
    ``lossless``: only those float16 holds exactly (weights rounded beforehand), so tables that must stay exact
    (a palette head's schedule rows) keep float32."""
    from onnx import TensorProto, helper, numpy_helper

    graph = model.graph
    converted = 0
    casts = []
    for init in list(graph.initializer):
        if init.data_type != TensorProto.FLOAT:
            continue
        arr = numpy_helper.to_array(init)
        if arr.size < min_elements or not np.all(np.abs(arr) < 65000):
            continue
        if lossless and not np.array_equal(arr.astype(np.float16).astype(np.float32), arr):
            continue
        half_name = f"{init.name}__fp16"
        half = numpy_helper.from_array(arr.astype(np.float16), half_name)
        graph.initializer.remove(init)
        graph.initializer.append(half)
        casts.append(helper.make_node("Cast", [half_name], [init.name], to=TensorProto.FLOAT,
                                      name=f"{init.name}__to_fp32"))
        converted += 1
    for i, node in enumerate(casts):  # Casts first: the graph stays topologically sorted
        graph.node.insert(i, node)
    return converted
