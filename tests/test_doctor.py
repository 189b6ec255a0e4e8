"""``difftool doctor``: the backend verdicts are available_backends() (the one check), CPU features come from
the cpuinfo flags, GPUs from nvidia-smi; table on stderr, JSON on stdout, --require sets the exit code."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import difftool
import difftool.runtime.backends as backends
from difftool import doctor
from difftool.runtime.backends import available_backends

SRC = Path(difftool.__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent
SAPPHIRE_RAPIDS = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: fpu sse sse2 avx avx2 fma avx512f avx512bw avx512_vnni avx512_bf16 avx512_fp16 amx_bf16 amx_tile amx_int8
processor\t: 1
model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: fpu
"""


def _run(*args, script=None):
    env = {**os.environ, "PYTHONPATH": str(SRC), "COLUMNS": "200"}
    cmd = [sys.executable, str(script), *args] if script else [sys.executable, "-m", "difftool", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)


def test_cpu_features_from_flags():
    info = doctor.cpu_info(SAPPHIRE_RAPIDS)
    assert info["model"] == "Intel(R) Xeon(R) Platinum 8480+"
    assert info["bf16"] == "available" and info["int8"] == "available"  # AMX and AVX512-BF16/VNNI
    assert info["features"] == ["avx", "avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16", "avx512_fp16",
                                "amx_tile", "amx_bf16", "amx_int8"]  # the first processor's flags
    arm = doctor.cpu_info("processor\t: 0\nFeatures\t: fp asimd evtstrm sve\n")
    assert arm["features"] == ["asimd", "sve"]
    assert doctor.cpu_info("")["features"] == []
    assert "neither amx_bf16 nor avx512_bf16" in arm["bf16"] and "none of amx_int8" in arm["int8"]


def test_cpu_features_of_this_machine_are_its_flags():
    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    info = doctor.cpu_info()
    assert info["features"] == [f for f in doctor.FEATURES if f in flags]
    assert info["cores"] >= 1 and info["model"]


def test_gpu_name_and_memory_from_nvidia_smi(monkeypatch):
    class Done:
        stdout = "NVIDIA H200, 143771, 580.65.06\nNVIDIA L4, 23034, 580.65.06\n"

    monkeypatch.setattr(backends, "cuda_device_present", lambda: True)
    gpus = doctor.gpu_info(run=lambda *a, **k: Done())
    assert gpus == [{"name": "NVIDIA H200", "memory_mib": 143771, "driver": "580.65.06"},
                    {"name": "NVIDIA L4", "memory_mib": 23034, "driver": "580.65.06"}]

    def no_smi(*a, **k):
        raise FileNotFoundError("nvidia-smi")

    assert doctor.gpu_info(run=no_smi)[0]["memory_mib"] is None  # driver without nvidia-smi: named, no memory
    monkeypatch.setattr(backends, "cuda_device_present", lambda: False)
    assert doctor.gpu_info(run=no_smi) == []


def test_report_uses_the_one_backend_check():
    report = doctor.collect()
    verdicts = available_backends()
    assert {name: v["reason"] for name, v in report["backends"].items()} == verdicts
    assert all(v["ok"] == (v["reason"] is None) for v in report["backends"].values())
    assert "CPUExecutionProvider" in report["onnxruntime"]["loaded"]
    assert set(report["onnxruntime"]["loaded"]) <= set(report["onnxruntime"]["compiled"])
    import onnxruntime

    assert report["libraries"]["onnxruntime"] == onnxruntime.__version__ or \
        report["libraries"].get("onnxruntime-gpu") == onnxruntime.__version__
    json.dumps(report, allow_nan=False)


def test_unloadable_provider_is_reported_as_not_loaded(monkeypatch):
    import onnxruntime

    from difftool.runtime.backends import ortcheck

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("onnxruntime-gpu installed: the simulation below would not be one")
    ortcheck.provider_failure.cache_clear()
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    monkeypatch.setattr(backends, "cuda_device_present", lambda: True)
    try:
        providers = doctor.ort_providers()
    finally:
        ortcheck.provider_failure.cache_clear()
    assert providers["loaded"] == ["CPUExecutionProvider"]
    assert "did not load" in providers["failed"]["CUDAExecutionProvider"]


def test_cli_table_on_stderr_json_on_stdout():
    proc = _run("doctor", "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["schema"] == doctor.SCHEMA and set(report["backends"]) == set(available_backends())
    for needle in ("difftool doctor", "ort-cpu", "torch-cuda", "providers loaded", "cpu features"):
        assert needle in proc.stderr
    assert "{" not in proc.stderr.splitlines()[0]


def test_cli_require_sets_the_exit_code():
    ok = _run("doctor", "--require", "ort-cpu")
    assert ok.returncode == 0 and ok.stdout == ""
    unusable = next((name for name, reason in available_backends().items() if reason), None)
    if unusable:
        proc = _run("doctor", "--require", unusable)
        assert proc.returncode == 1
        last = proc.stderr.strip().splitlines()[-1]
        assert last.startswith(f"error: required backend not usable here: {unusable}: ")
    bad = _run("doctor", "--require", "jax")
    assert bad.returncode == 2 and "must be one of" in bad.stderr


def test_doctor_runs_without_torch():
    proc = _run("doctor", "--json", script=TESTS / "_notorch.py")
    assert proc.returncode == 0, proc.stderr[-1500:]
    assert json.loads(proc.stdout)["backends"]["ort-cpu"]["ok"] is True


def test_help_stays_light():
    code = ("import sys; sys.argv = ['difftool', '--help']\nfrom difftool.cli import app\ntry:\n    app()\n"
            "except SystemExit:\n    pass\nheavy = [m for m in ('difftool.doctor', 'onnxruntime', 'numpy', 'torch') "
            "if m in sys.modules]\nassert not heavy, heavy\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(SRC)})
    assert proc.returncode == 0, proc.stderr[-800:]
    assert "doctor" in proc.stdout
