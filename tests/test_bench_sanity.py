"""``difftool bench`` flags a row whose loop time disagrees with steps x forward time by more than 2x."""

from __future__ import annotations

import io
import time

import numpy as np
from rich.console import Console

from difftool.bench import render_table, run_bench
from difftool.bench import run as run_mod
from difftool.bench.sanity import MAX_RATIO, check_loop


def _row(loop_s: float, fwd_ms: float = 2.0, forwards: int = 25, backend: str = "ort-cpu") -> dict:
    return {"backend": backend, "denoiser": backend, "batch": 1, "forward_batch": 1,
            "forward": {"median_ms": fwd_ms, "min_ms": fwd_ms, "max_ms": fwd_ms},
            "unet_steps_per_s": 1e3 / fwd_ms, "images_steps_per_s": 1e3 / fwd_ms,
            "loop": {"sampler": "ddim", "steps": forwards, "forwards": forwards, "median_s": loop_s,
                     "min_s": loop_s, "max_s": loop_s, "repeats": 1},
            "loop_overhead_pct": 0.0, "loop_overhead_vs_forward_pct": 0.0, "flops_per_forward": None,
            "gflops": None, "peak_fraction": None, "peak_rss_mb": 100.0, "rss_mb": 90.0}


def test_consistent_rows_pass_and_disagreeing_ones_are_flagged():
    assert check_loop(_row(0.05)) is None  # 25 x 2 ms = 0.05 s
    assert check_loop(_row(0.05 * 1.9)) is None and check_loop(_row(0.05 / 1.9)) is None
    slow = check_loop(_row(0.05 * 2.5))
    assert slow is not None and abs(slow["ratio"] - 2.5) < 1e-9 and "competing for the cores" in slow["reason"]
    fast = check_loop(_row(0.05 / 3))
    assert fast is not None and fast["ratio"] < 1 / MAX_RATIO
    assert check_loop(_row(0.0))["ratio"] is None
    heavy_sampler = _row(0.05 * 3)
    heavy_sampler["loop_overhead_pct"] = 100 * 2 / 3  # the loop's own bookkeeping explains the difference
    assert check_loop(heavy_sampler) is None


def test_table_marks_a_suspect_row_instead_of_reporting_it():
    good, bad = _row(0.05), _row(0.2, backend="torch-cpu")
    for row in (good, bad):
        row["suspect"] = check_loop(row)
    record = {"sampler": "ddim", "steps": 25, "guidance": 1.0, "threads": {"requested": 1}, "artifact": "m.onnx",
              "peak": {"gflops": 10.0}, "load_average": {"start": [0], "end": [0]}, "machine": {},
              "flops": {}, "results": [good, bad], "skipped": []}
    console = Console(file=io.StringIO(), width=200, color_system=None)
    console.print(render_table(record))
    out = " ".join(console.file.getvalue().split())
    assert "! torch-cpu" in out and "torch-cpu batch 1: not a figure" in out and "x4.00" in out
    assert "! ort-cpu" not in out


class _Net:
    """A numpy 'network'; ``competed`` makes every call wait 3x its own time (another process on the cores)."""

    name = "numpy-fake"
    competed = False

    def __init__(self, card):
        self.card = card

    def __call__(self, x, t, context):
        start = time.perf_counter()
        for _ in range(20):
            x = np.tanh(x @ np.eye(x.shape[-1], dtype=np.float32))
        if _Net.competed:
            time.sleep(3 * (time.perf_counter() - start) + 0.002)
        return x


def test_run_bench_flags_a_competed_run(tmp_path, monkeypatch):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from badinput.corpus import _save_onnx, _tiny_onnx

    artifact = tmp_path / "tiny.onnx"
    _save_onnx(artifact, _tiny_onnx())
    monkeypatch.setattr(run_mod, "open_backend", lambda name, path, card, threads, precision="fp32": _Net(card))
    monkeypatch.setattr(run_mod, "count_flops", lambda path, card: {"per_sample": None, "source": None})
    calm = run_bench(artifact, batches=(4,), backends=("ort",), repeats=3, threads=1)
    assert calm["results"][0]["suspect"] is None, calm["results"][0]

    real_time_loop = run_mod.time_loop

    def competed_loop(*args, **kwargs):  # the competitor starts after the forward was timed
        _Net.competed = True
        try:
            return real_time_loop(*args, **kwargs)
        finally:
            _Net.competed = False

    monkeypatch.setattr(run_mod, "time_loop", competed_loop)
    competed = run_bench(artifact, batches=(4,), backends=("ort",), repeats=3, threads=1)
    suspect = competed["results"][0]["suspect"]
    assert suspect is not None and suspect["ratio"] > MAX_RATIO
