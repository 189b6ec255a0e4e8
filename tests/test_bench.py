"""Benchmarking: record fields, skip reasons, JSON, FLOP counters, peak, the comparison script.

No timing assertions: speed is measured by ``difftool bench`` and ``benchmarks/run_benchmarks.py``,
never unit-tested.
"""

from __future__ import annotations

import io
import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from rich.console import Console
from rich.table import Table

from difftool.bench import render_table, run_bench, to_json
from difftool.bench.flops import card_torch_flops, onnx_flops
from difftool.bench.measure import Budget, interleaved, machine_info, measure
from difftool.bench.peak import measure_peak
from difftool.config import ContextUnetConfig, ModelCard, ScheduleConfig
from difftool.export.onnx_export import export_onnx
from difftool.models import build
from difftool.models.checkpoint import save
from difftool.models.presets import tiny
from difftool.runtime.artifact import read_card
from difftool.runtime.backends import available_backends

REPO = Path(__file__).resolve().parents[1]
ROW_FIELDS = {"backend", "denoiser", "batch", "forward_batch", "forward", "unet_steps_per_s",
              "images_steps_per_s", "loop", "loop_overhead_pct", "loop_overhead_vs_forward_pct",
              "flops_per_forward", "gflops", "peak_fraction", "peak_rss_mb", "rss_mb", "load_average"}
RECORD_FIELDS = {"schema", "created", "artifact", "model", "sampler", "steps", "guidance", "batches", "repeats",
                 "threads", "machine", "load_average", "peak", "flops", "results", "skipped", "seconds"}


def _export(root: Path, name: str, config, schedule: ScheduleConfig) -> Path:
    """Random-weight checkpoint ``name.safetensors`` and its graph ``name.onnx`` side by side."""
    torch.manual_seed(0)
    card = ModelCard(model=config, schedule=schedule, class_names=tuple(f"c{i}" for i in range(config.num_classes)))
    ckpt = save(root / f"{name}.safetensors", build(config), card)
    export_onnx(ckpt, root / f"{name}.onnx", check=False)
    return root / f"{name}.onnx"


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory) -> Path:
    return _export(tmp_path_factory.mktemp("bench"), "tiny", tiny(channels=3, size=8, num_classes=5), ScheduleConfig())


@pytest.fixture(scope="module")
def record(tiny_onnx) -> dict:
    return run_bench(tiny_onnx, batches=(1, 2), repeats=1, threads=1,
                     backends=("ort", "torch", "ort-cuda", "tensorrt", "torch-cuda"))


def _finite_positive(value) -> bool:
    return isinstance(value, int | float) and math.isfinite(value) and value > 0


def test_record_has_documented_fields(record):
    assert RECORD_FIELDS <= set(record)
    assert record["threads"]["requested"] == 1
    assert record["threads"]["ort-cpu.intra_op"] == 1
    assert record["threads"]["torch"] == 1
    assert record["machine"]["cpu_model"] and record["machine"]["available_cores"] >= 1
    assert record["flops"]["per_sample"] > 0 and record["flops"]["source"]
    assert {(r["backend"], r["batch"]) for r in record["results"] if r["backend"].endswith("-cpu")} == {
        ("ort-cpu", 1), ("ort-cpu", 2), ("torch-cpu", 1), ("torch-cpu", 2)}
    usable = {name for name, reason in available_backends().items() if reason is None}
    assert {r["backend"] for r in record["results"]} <= usable  # GPU rows only where the GPU path runs
    for row in record["results"]:
        assert ROW_FIELDS <= set(row)
        assert row["forward_batch"] == row["batch"]  # guidance 1: one forward of B rows
        assert row["loop"]["forwards"] == 25 and row["loop"]["sampler"] == "ddim"
        for value in (row["forward"]["median_ms"], row["forward"]["min_ms"], row["forward"]["max_ms"],
                      row["unet_steps_per_s"], row["images_steps_per_s"], row["loop"]["median_s"],
                      row["flops_per_forward"], row["gflops"], row["peak_fraction"], row["peak_rss_mb"]):
            assert _finite_positive(value), (row["backend"], row["batch"], value)
        assert row["forward"]["min_ms"] <= row["forward"]["median_ms"] <= row["forward"]["max_ms"]
        assert math.isfinite(row["loop_overhead_pct"]) and row["loop_overhead_pct"] < 100
        assert row["flops_per_forward"] == record["flops"]["per_sample"] * row["batch"]


def test_unavailable_backends_are_listed_with_reasons(record):
    skipped = {s["backend"]: s["reason"] for s in record["skipped"]}
    ran = {r["backend"] for r in record["results"]}
    for name in ("ort-cuda", "tensorrt", "torch-cuda"):
        assert name in skipped or name in ran  # never silently dropped
    assert all(isinstance(reason, str) and reason for reason in skipped.values())


def test_record_is_json_serialisable_and_table_renders(record):
    text = to_json(record)
    assert json.loads(text)["schema"] == record["schema"]
    json.dumps(record, allow_nan=False)  # plain Python numbers only
    table = render_table(record)
    assert isinstance(table, Table)
    console = Console(file=io.StringIO(), width=140)
    console.print(table)
    out = console.file.getvalue()
    assert "ort-cpu" in out and "torch-cpu" in out


def test_torch_backend_without_checkpoint_is_skipped(tiny_onnx, tmp_path):
    lonely = tmp_path / "alone.onnx"
    shutil.copyfile(tiny_onnx, lonely)
    rec = run_bench(lonely, batches=(1,), repeats=1, threads=1, backends=("torch",), steps=2)
    assert rec["results"] == []
    assert rec["skipped"][0]["backend"] == "torch-cpu"
    assert "checkpoint" in rec["skipped"][0]["reason"]


def test_guidance_doubles_the_forward_batch(tiny_onnx):
    rec = run_bench(tiny_onnx, batches=(2,), repeats=1, threads=1, backends=("ort",), steps=3, guidance=2.0,
                    sampler="dpm++")
    (row,) = rec["results"]
    assert row["forward_batch"] == 4 and row["loop"]["sampler"] == "dpmpp_2m" and row["loop"]["forwards"] == 3


def test_generator_row_is_timed_against_the_python_loop(tiny_onnx, tmp_path):
    rec = run_bench(tiny_onnx, batches=(1, 2), repeats=1, threads=1, backends=("gen",), steps=3, guidance=2.0)
    assert [row["batch"] for row in rec["results"]] == [1, 2] and not rec["skipped"]
    for row in rec["results"]:
        assert row["backend"] == "generator" and ROW_FIELDS <= set(row)
        assert _finite_positive(row["loop"]["median_s"]) and _finite_positive(row["python_loop"]["median_s"])
        assert row["speedup_vs_python_loop"] == pytest.approx(row["python_loop"]["median_s"] / row["loop"]["median_s"])
    console = Console(file=io.StringIO(), width=160)
    console.print(render_table(rec))
    assert "generator" in console.file.getvalue() and "x loop" in console.file.getvalue()
    json.dumps(json.loads(to_json(rec)), allow_nan=False)
    lonely = tmp_path / "m.safetensors"
    shutil.copyfile(tiny_onnx.with_suffix(".safetensors"), lonely)
    rec = run_bench(lonely, batches=(1,), repeats=1, threads=1, backends=("generator",), steps=2)
    assert rec["results"] == [] and "U-Net ONNX graph" in rec["skipped"][0]["reason"]


# -- FLOPs ----------------------------------------------------------------------------------------------


def test_onnx_flops_match_flop_counter_on_tiny(tiny_onnx):
    card = read_card(tiny_onnx)
    for batch in (1, 3):
        graph, ref = onnx_flops(tiny_onnx, batch), card_torch_flops(card, batch)
        assert abs(graph - ref) <= 0.05 * ref, (batch, graph, ref)


def test_onnx_flops_match_flop_counter_on_context_unet(tmp_path):
    path = _export(tmp_path, "cu16", ContextUnetConfig(in_channels=3, n_feat=16, n_cfeat=5, height=16),
                   ScheduleConfig.course())
    card = read_card(path)
    graph, ref = onnx_flops(path, 2), card_torch_flops(card, 2)
    assert ref > 0 and abs(graph - ref) <= 0.05 * ref, (graph, ref)


# -- timing helpers and peak -----------------------------------------------------------------------------


def test_peak_is_positive():
    peak = measure_peak(threads=1, sizes=(128, 256), repeats=1)
    assert _finite_positive(peak.gflops)
    assert set(peak.by_size) == {128, 256}
    json.dumps(peak.to_dict())


def test_measure_and_interleaved_take_requested_samples():
    calls = {"a": 0, "b": 0}

    def bump(name):
        def fn():
            calls[name] += 1
        return fn

    timing = measure(bump("a"), Budget(repeats=3, warmup=1, block_s=0.0, max_s=60))
    assert len(timing.samples) == 3 and all(s >= 0 for s in timing.samples)
    both = interleaved({"a": bump("a"), "b": bump("b")}, Budget(repeats=2, warmup=0, block_s=0.001, max_s=60),
                       settle_s=0.0)
    assert {k: len(v.samples) for k, v in both.items()} == {"a": 2, "b": 2}
    assert machine_info()["logical_cpus"] >= 1


# -- the comparison script -------------------------------------------------------------------------------


def test_benchmarks_script_quick(tmp_path):
    out = tmp_path / "results"
    cmd = [sys.executable, str(REPO / "benchmarks" / "run_benchmarks.py"), "--quick", "--models", "tiny",
           "--batches", "1", "--threads", "1", "--out-dir", str(out), "--cache-dir", str(tmp_path / "cache")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (json_path,) = out.glob("*.json")
    rec = json.loads(json_path.read_text())
    (model,) = rec["models"]
    runners = {r["runner"] for r in model["rows"]}
    assert {"torch-eager", "ort", "ort-opt", "ort-int8", "generator"} <= runners
    gen = [r for r in model["rows"] if r["runner"] == "generator"]
    assert gen and gen[0]["vs_python_loop"] > 0 and gen[0]["forward"]["median_ms"] is None
    assert all(s["reason"] for s in model["skipped"])
    assert {t["name"] for t in rec["targets"]}
    md = (out / "latest.md").read_text()
    assert "difftool benchmarks" in md and "tiny" in md
    assert (out / "latest.png").stat().st_size > 0
