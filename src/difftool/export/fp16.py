"""fp16 graphs for GPU execution providers (CUDA, TensorRT EP, TensorRT 11 strong typing).

Weights and internal math become float16 while the I/O stays float32 (``keep_io_types=True``), so the
graph contract is unchanged. CPU onnxruntime has few fp16 kernels on x86 and runs such a graph slowly
(it inserts casts or falls back); the file is still produced here and checked to load and run on CPU.
"""

from __future__ import annotations

from pathlib import Path

from difftool.export.metadata import get_props, pin_ir_version, save_single_file, set_props

FP16_NOTE = ("float16 weights and compute, float32 I/O (keep_io_types); meant for CUDA / TensorRT "
             "execution providers, slow on CPU onnxruntime")


def convert_fp16(fp32_path: str | Path, out_path: str | Path) -> Path:
    """Write the fp16 form of ``fp32_path`` to ``out_path`` (metadata kept, precision=fp16)."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = onnx.load(str(fp32_path))
    props = get_props(model)
    half = convert_float_to_float16(model, keep_io_types=True)
    topological_sort(half.graph)  # the converter appends its input casts at the end of the node list
    set_props(half, {**props, "precision": "fp16", "fp16": FP16_NOTE})
    pin_ir_version(half)
    return save_single_file(half, out_path)


def topological_sort(graph) -> None:
    """Reorder ``graph.node`` so every node comes after the producers of its inputs (in place)."""
    ready = {i.name for i in graph.input} | {t.name for t in graph.initializer} | {""}
    pending, ordered = list(graph.node), []
    while pending:
        progressed = [n for n in pending if all(i in ready for i in n.input)]
        if not progressed:
            raise ValueError("graph has a cycle or an input nobody produces")
        for node in progressed:
            ready.update(node.output)
        ordered += progressed
        done = {id(n) for n in progressed}
        pending = [n for n in pending if id(n) not in done]
    copies = [type(n)() for n in ordered]
    for copy, node in zip(copies, ordered, strict=True):
        copy.CopyFrom(node)
    del graph.node[:]
    graph.node.extend(copies)
