"""The ``generator`` row of ``difftool bench``: the one-file generator against the Python loop.

For each batch the whole generation through the generator graph (the sampling loop inside onnxruntime)
and the Python sampling loop over the U-Net graph (:class:`~difftool.runtime.pipeline.Pipeline` on
ort-cpu, the same request) are timed round-robin in the same run (:func:`~difftool.bench.measure.interleaved`),
so ``speedup_vs_python_loop`` = loop time / generator time is one measurement under one machine load.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from difftool.bench.measure import Budget, interleaved, load_average, peak_rss_mb

GENERATOR_MAX_S = 8.0  # per batch: stop the round-robin after this (keeping >= 3 rounds)


def build_bench_generator(onnx_path: Path, folder: Path, sampler: str, steps: int):
    """Export the generator for the bench's sampler and steps (eta 0) into ``folder``; returns its path."""
    from difftool.export.generator import GeneratorSettings, export_generator

    path = folder / "bench.generator.onnx"
    export_generator(onnx_path, path, GeneratorSettings(sampler=sampler, steps=steps, eta=0.0), check=False)
    return path


def generator_rows(onnx_path: Path, *, sampler: str, steps: int, guidance: float, batches: tuple[int, ...],
                   threads: int, repeats: int) -> list[dict[str, Any]]:
    """One row per batch: generator and Python loop medians and their ratio (measured together)."""
    from difftool.bench.run import one_hot_context
    from difftool.runtime.generator import open_generator
    from difftool.runtime.loader import load
    from difftool.runtime.pipeline import SampleRequest

    with tempfile.TemporaryDirectory(prefix="difftool-bench-") as tmp:
        gen = open_generator(build_bench_generator(onnx_path, Path(tmp), sampler, steps), "ort-cpu", threads)
        loop = load(onnx_path, backend="ort-cpu", threads=threads)
        rows = []
        for batch in batches:
            request = SampleRequest(n=batch, context=one_hot_context(gen.card, batch), sampler=sampler,
                                    steps=steps, eta=0.0, guidance=guidance, seed=0)
            load_now = load_average()
            timings = interleaved({"generator": lambda r=request: gen.sample(r),
                                   "python_loop": lambda r=request: loop.sample(r)},
                                  Budget(repeats=repeats, warmup=1, block_s=0.0, max_s=GENERATOR_MAX_S,
                                         min_repeats=min(3, repeats)))
            rows.append(_row(batch, steps, sampler, timings, load_now))
    return rows


def _row(batch: int, steps: int, sampler: str, timings, load_now) -> dict[str, Any]:
    gen, py = timings["generator"], timings["python_loop"]
    gen_s, py_s = gen.median, py.median
    return {
        "backend": "generator", "denoiser": "generator/ort-cpu", "batch": batch, "forward_batch": None,
        "forward": {"median_ms": None}, "unet_steps_per_s": steps / gen_s,
        "images_steps_per_s": batch * steps / gen_s,
        "loop": {"sampler": sampler, "steps": steps, "forwards": steps, "median_s": gen_s, "min_s": gen.min,
                 "max_s": gen.max, "repeats": len(gen.samples)},
        "python_loop": {"backend": "ort-cpu", "median_s": py_s, "min_s": py.min, "max_s": py.max,
                        "repeats": len(py.samples)},
        "speedup_vs_python_loop": py_s / gen_s,
        "loop_overhead_pct": None, "loop_overhead_vs_forward_pct": None, "flops_per_forward": None,
        "gflops": None, "peak_fraction": None, "peak_rss_mb": peak_rss_mb(), "rss_mb": None,
        "load_average": load_now, "samples": {"generator_s": list(np.round(gen.samples, 5)),
                                              "python_loop_s": list(np.round(py.samples, 5))},
    }
