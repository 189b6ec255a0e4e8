"""scripts/gpu_check.py: its CPU parts run here (CI), its GPU parts are reported as skipped with reasons, its
exit code says which; on a GPU machine (marked ``gpu``) the whole check must pass."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import difftool
from difftool.runtime.backends import available_backends

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "gpu_check.py"
SRC = Path(difftool.__file__).resolve().parents[1]
GPU_PARTS = {"tensorrt fp32": "tensorrt", "tensorrt fp16": "tensorrt", "tensorrt int8": "tensorrt",
             "ort-cuda (IOBinding)": "ort-cuda", "torch-cuda (CUDA graphs)": "torch-cuda"}
CPU_PARTS = ("ort-cpu reference", "torch-cpu vs ort-cpu", "int8 graph for TensorRT (ORT CPU)", "fp16 graph (ORT CPU)")


def _script():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _run(*args, timeout=600):
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1", "COLUMNS": "200"}
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout,
                          env=env)


def test_cpu_only_checks_cpu_parity_and_skips_gpu_parts_with_reasons():
    proc = _run("--cpu-only", "--threads", "1", "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    assert report["schema"] == "difftool.gpu_check/1" and report["exit_code"] == 0 and report["cpu_only"]
    results = {r["name"]: r for r in report["results"]}
    assert set(results) == set(CPU_PARTS) | set(GPU_PARTS)
    for name in CPU_PARTS:
        assert results[name]["status"] == "pass", results[name]
    torch_cpu = results["torch-cpu vs ort-cpu"]
    assert torch_cpu["eps_rel"] <= 1e-4 and torch_cpu["loop_mad"] <= 1e-3 and torch_cpu["steps_per_s"] > 0
    assert 0 < results["int8 graph for TensorRT (ORT CPU)"]["eps_rel"] <= 0.25  # quantised, still close
    verdicts = available_backends()
    for name, backend in GPU_PARTS.items():
        r = results[name]
        assert r["status"] == "skip" and r["gpu"] and r["detail"].startswith("--cpu-only; ")
        assert (verdicts[backend] or "it could run here") in r["detail"]
    assert "all checks passed" in proc.stderr and "tensorrt int8" in proc.stderr


def test_exit_code_semantics():
    gc = _script()
    ok, skip, fail = (gc.Result("a", "pass"), gc.Result("b", "skip", "no GPU", gpu=True), gc.Result("c", "fail"))
    assert gc.exit_code([ok], cpu_only=False) == 0
    assert gc.exit_code([ok, skip], cpu_only=False) == 3  # nothing failed, but the GPU parts did not run
    assert gc.exit_code([ok, skip], cpu_only=True) == 0
    assert gc.exit_code([ok, skip, fail], cpu_only=True) == 1
    assert gc.exit_code([fail], cpu_only=False) == 1


def test_a_crashing_part_is_a_failed_result_not_a_traceback():
    gc = _script()

    def boom():
        raise RuntimeError("CUDA error: an illegal memory access was encountered\nmore")

    def unavailable():
        raise gc.Skip("tensorrt not installed")

    assert gc.attempt("x", boom) == gc.Result("x", "fail", "RuntimeError: CUDA error: an illegal memory access "
                                                            "was encountered")
    assert gc.attempt("y", unavailable, backend="tensorrt") == gc.Result("y", "skip", "tensorrt not installed", gpu=True)


def test_usage_error_exits_2():
    proc = _run("--threads", "0", timeout=60)
    assert proc.returncode == 2 and "--threads must be at least 1" in proc.stderr


@pytest.mark.gpu
@pytest.mark.slow
def test_whole_gpu_check_passes_on_a_gpu():
    proc = _run("--json", timeout=1800)
    report = json.loads(proc.stdout)
    failed = [r for r in report["results"] if r["status"] == "fail"]
    assert not failed and proc.returncode in (0, 3), proc.stderr[-3000:]
    verdicts = available_backends()
    for r in report["results"]:
        if r["name"] in GPU_PARTS and verdicts[GPU_PARTS[r["name"]]] is None:
            assert r["status"] == "pass", r  # every GPU path this machine can run was checked
