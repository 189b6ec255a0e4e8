"""Export checkpoints to ONNX (fp32 / fp16 / int8), TensorRT engines and Triton model repositories.

Needs the ``train`` extra (torch, onnxscript) to export from a checkpoint; the TensorRT and Triton
builders also take an already exported ``.onnx``. Names are imported lazily.
"""

from __future__ import annotations

_LAZY = {
    "ExportReport": "difftool.export.onnx_export",
    "export_onnx": "difftool.export.onnx_export",
    "PrecisionReport": "difftool.export.parity",
    "check_parity": "difftool.export.parity",
    "optimize_onnx": "difftool.export.optimize",
    "convert_fp16": "difftool.export.fp16",
    "quantize_int8": "difftool.export.int8",
    "build_engine": "difftool.export.tensorrt_build",
    "export_tensorrt": "difftool.export.tensorrt_build",
    "TensorRTReport": "difftool.export.tensorrt_build",
    "export_triton": "difftool.export.triton",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'difftool.export' has no attribute {name!r}")
