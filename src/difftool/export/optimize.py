"""Offline graph optimisation: save the onnxruntime-optimised graph so sessions start faster.

Uses ``ORT_ENABLE_EXTENDED`` (fusions such as Conv+activation, GELU, FusedMatMul) and not
``ORT_ENABLE_ALL``: the NCHWc layout transforms of level ALL tie a saved graph to the CPU ISA it was
made on. The result still contains onnxruntime-specific ``com.microsoft`` ops, so it is portable across
onnxruntime installs and CPUs but not to other ONNX runtimes (TensorRT, Triton's other backends).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from difftool.export.metadata import get_props, pin_ir_version, save_single_file, set_props

OPTIMIZATION_NOTE = ("ORT_ENABLE_EXTENDED, offline, CPU EP; portable across CPUs and onnxruntime "
                     "versions that know com.microsoft ops; not for non-onnxruntime consumers")


def optimize_onnx(in_path: str | Path, out_path: str | Path) -> Path:
    """Write the ORT-optimised form of ``in_path`` to ``out_path``, keeping its metadata_props."""
    import onnx
    import onnxruntime as ort

    in_path, out_path = Path(in_path), Path(out_path)
    props = get_props(onnx.load(str(in_path), load_external_data=False))
    with tempfile.TemporaryDirectory(dir=out_path.parent, prefix=".difftool-opt-") as tmp:
        raw = Path(tmp) / "optimized.onnx"
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        opts.optimized_model_filepath = str(raw)
        opts.intra_op_num_threads = 1
        opts.log_severity_level = 3
        ort.InferenceSession(str(in_path), opts, providers=["CPUExecutionProvider"])
        model = onnx.load(str(raw))
    set_props(model, {**props, "ort_optimization": OPTIMIZATION_NOTE})
    pin_ir_version(model)
    return save_single_file(model, out_path)
