"""Where an onnxruntime forward spends its time: ``enable_profiling`` summarised per op type.

The session uses the difftool backend's own options (same threads, optimisation level and spinning), so
the profile describes what ``OrtDenoiser`` runs. Conv-like kernels are related to the FLOPs the ONNX graph
counts for Conv/ConvTranspose, which gives the achieved GFLOP/s of the convolutions themselves.
"""

from __future__ import annotations

import json
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from difftool.bench.flops import onnx_flops_by_op

CONV_KERNELS = ("Conv", "FusedConv", "NchwcConv", "ConvTranspose", "QLinearConv")
GEMM_KERNELS = ("MatMul", "FusedMatMul", "Gemm", "FusedGemm", "MatMulInteger", "QLinearMatMul")


def profile_ort(path: str | Path, feeds: dict[str, np.ndarray], threads: int, runs: int = 20,
                warmup: int = 3, flops_model: str | Path | None = None) -> dict[str, Any]:
    """Per op type: share of summed node time, ms per forward, node count; plus the per-run wall time
    (so the gap between nodes, i.e. scheduling overhead, is visible). FLOPs are counted on
    ``flops_model`` (default ``path``; pass the plain fp32 graph when ``path`` has fused ops)."""
    import onnxruntime as ort

    from difftool.runtime.backends.ort import session_options

    with tempfile.TemporaryDirectory(prefix="difftool-prof-") as tmp:
        opts = session_options(threads)
        opts.enable_profiling = True
        opts.profile_file_prefix = str(Path(tmp) / "ort")
        sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        for _ in range(warmup + runs):
            sess.run(["eps"], feeds)
        events = json.loads(Path(sess.end_profiling()).read_text())
    model_runs = sorted((e for e in events if e.get("name") == "model_run"), key=lambda e: e["ts"])[-runs:]
    if not model_runs:
        return {"ops": [], "notes": ["no model_run events in the profile"]}
    t0 = model_runs[0]["ts"]
    per_op: dict[str, float] = defaultdict(float)
    nodes: dict[str, set[str]] = defaultdict(set)
    for e in events:
        if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time") and e["ts"] >= t0:
            op = e.get("args", {}).get("op_name", "?")
            per_op[op] += e["dur"]
            nodes[op].add(e["name"])
    total_us = sum(per_op.values())
    wall_ms = float(np.median([e["dur"] for e in model_runs])) / 1e3
    n = len(model_runs)
    counted = onnx_flops_by_op(flops_model or path, int(feeds["x"].shape[0]))
    conv_flops = sum(v for k, v in counted.items() if k in CONV_KERNELS)
    gemm_flops = sum(v for k, v in counted.items() if k in GEMM_KERNELS)
    conv_ms = sum(per_op.get(k, 0.0) for k in CONV_KERNELS) / n / 1e3
    gemm_ms = sum(per_op.get(k, 0.0) for k in GEMM_KERNELS) / n / 1e3
    ops = []
    for op, us in sorted(per_op.items(), key=lambda kv: -kv[1]):
        row: dict[str, Any] = {"op": op, "share": us / total_us, "ms": us / n / 1e3, "nodes": len(nodes[op])}
        ops.append(row)
    node_ms = total_us / n / 1e3
    notes = [
        f"median model_run {wall_ms:.3f} ms; summed node kernel time {node_ms:.3f} ms "
        f"({100 * (1 - node_ms / wall_ms):.1f} % of the run is outside kernels: scheduling, allocation)",
        f"conv-like kernels {conv_ms:.3f} ms/forward for {conv_flops / 1e9:.3f} GFLOP = "
        f"{conv_flops / 1e9 / (conv_ms / 1e3) if conv_ms else float('nan'):.1f} GFLOP/s",
        f"matmul/gemm kernels {gemm_ms:.3f} ms/forward for {gemm_flops / 1e9:.4f} GFLOP",
    ]
    return {"ops": ops, "wall_ms": wall_ms, "node_ms": node_ms, "conv_ms": conv_ms,
            "conv_gflops": conv_flops / 1e9 / (conv_ms / 1e3) if conv_ms else None, "notes": notes}
