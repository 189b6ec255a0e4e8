"""``difftool doctor``: which backends can run here, and why not.

The backend verdicts are :func:`difftool.runtime.backends.available_backends`, the same check ``bench``
and the TUI's backend menu use (GPU providers probed with a real session). Around them: library
versions, the onnxruntime providers compiled in and the ones that really load, CPU features from
``/proc/cpuinfo`` (AVX-512, VNNI, AMX: what the int8/fp32 CPU kernels can use), and GPU name and
memory (``nvidia-smi``) when a driver is present. Nothing here imports torch or a CUDA library.
"""

from __future__ import annotations

import importlib.metadata
import platform
import subprocess
from pathlib import Path
from typing import Any

from difftool.runtime.cpu import FEATURES

SCHEMA = "difftool.doctor/1"
LIBRARIES = ("numpy", "onnx", "onnxruntime", "onnxruntime-gpu", "torch", "tensorrt", "tensorrt-cu12",
             "tensorrt-cu13", "cuda-python", "cuda-bindings")


def cpu_info(cpuinfo: str | None = None) -> dict[str, Any]:
    """Model name, usable cores and the SIMD/matrix features of interest present in the CPU flags."""
    from difftool.runtime import cpu

    fields = cpu.cpuinfo() if cpuinfo is None else cpu.parse_cpuinfo(cpuinfo)
    flags = cpu.flags(fields)
    return {"model": fields.get("model name") or platform.processor() or platform.machine(),
            "cores": cpu.cores(), "features": cpu.features(fields),
            "bf16": cpu.bf16_units(flags) or "available", "int8": cpu.int8_units(flags) or "available"}


def gpu_info(run=subprocess.run) -> list[dict[str, Any]]:
    """[{name, memory_mib, driver}] per NVIDIA GPU (empty without a driver)."""
    from difftool.runtime.backends import cuda_device_present

    if not cuda_device_present():
        return []
    try:
        out = run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader,nounits"],
                  capture_output=True, text=True, timeout=15, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return [{"name": name, "memory_mib": None, "driver": None} for name in _proc_gpu_names()]
    gpus = []
    for line in out.strip().splitlines():
        name, memory, driver = (part.strip() for part in (line.split(",") + ["", ""])[:3])
        gpus.append({"name": name, "memory_mib": int(memory) if memory.isdigit() else None, "driver": driver or None})
    return gpus


def _proc_gpu_names() -> list[str]:
    names = []
    for info in sorted(Path("/proc/driver/nvidia/gpus").glob("*/information")):
        model = next((line.split(":", 1)[1].strip() for line in info.read_text().splitlines()
                      if line.startswith("Model:")), "NVIDIA GPU")
        names.append(model)
    return names or ["NVIDIA GPU (no nvidia-smi)"]


def library_versions() -> dict[str, str]:
    """Installed versions of the libraries the backends use (absent ones left out)."""
    from difftool.runtime.backends import _installed, _torch_cuda_version

    found = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    if "torch" in found and _installed("torch"):
        found["torch.cuda"] = _torch_cuda_version() or "none (CPU-only build)"
    return found


def ort_providers() -> dict[str, Any]:
    """Providers compiled into onnxruntime and, for each, whether a session really runs on it."""
    from difftool.runtime.backends import available_backends, ortcheck

    verdicts = available_backends()
    try:
        import onnxruntime as ort

        compiled = list(ort.get_available_providers())
    except Exception:  # not installed, or a broken build (reported by the backend rows)
        return {"compiled": [], "loaded": [], "failed": {}}
    backend_of = {"CPUExecutionProvider": "ort-cpu", "CUDAExecutionProvider": "ort-cuda",
                  "TensorrtExecutionProvider": "ort-tensorrt"}
    loaded, failed = [], {}
    for provider in compiled:
        name = backend_of.get(provider)
        if name is None:
            continue  # Azure and others: not used by difftool, not probed
        reason = verdicts[name] if name != "ort-cpu" else ortcheck.provider_failure(provider)
        if reason is None:
            loaded.append(provider)
        else:
            failed[provider] = reason
    return {"compiled": compiled, "loaded": loaded, "failed": failed}


def collect() -> dict[str, Any]:
    """Everything ``difftool doctor`` reports, as plain JSON-able data."""
    from difftool.runtime.backends import available_backends

    backends = available_backends()
    return {"schema": SCHEMA,
            "backends": {name: {"ok": reason is None, "reason": reason} for name, reason in backends.items()},
            "libraries": library_versions(), "onnxruntime": ort_providers(), "cpu": cpu_info(),
            "gpus": gpu_info()}


def render_table(report: dict[str, Any]):
    """One Rich table: backends first (ok / why not), then libraries, providers, CPU and GPU."""
    from rich.table import Table

    table = Table(title="difftool doctor", show_lines=False)
    table.add_column("check", style="bold")
    table.add_column("status")
    table.add_column("detail", overflow="fold")
    for name, verdict in report["backends"].items():
        table.add_row(name, "[green]ok[/]" if verdict["ok"] else "[red]no[/]", verdict["reason"] or "")
    table.add_section()
    for name, version in report["libraries"].items():
        table.add_row(name, version, "")
    table.add_section()
    ort = report["onnxruntime"]
    table.add_row("providers compiled", str(len(ort["compiled"])), ", ".join(ort["compiled"]) or "(onnxruntime missing)")
    table.add_row("providers loaded", str(len(ort["loaded"])), ", ".join(ort["loaded"]) or "none")
    for provider, reason in ort["failed"].items():
        table.add_row(f"  {provider}", "[red]not loaded[/]", reason)
    table.add_section()
    cpu = report["cpu"]
    table.add_row("cpu", f"{cpu['cores']} cores", cpu["model"])
    table.add_row("cpu features", "", " ".join(cpu["features"]) or "(none of: " + " ".join(FEATURES) + ")")
    table.add_row("bf16 units", "", cpu["bf16"])
    table.add_row("int8 units", "", cpu["int8"])
    if not report["gpus"]:
        table.add_row("gpu", "none", "no NVIDIA driver or device")
    for i, gpu in enumerate(report["gpus"]):
        memory = f"{gpu['memory_mib'] / 1024:.0f} GiB" if gpu["memory_mib"] else "memory unknown"
        driver = f", driver {gpu['driver']}" if gpu["driver"] else ""
        table.add_row(f"gpu {i}", memory, f"{gpu['name']}{driver}")
    return table


def missing(report: dict[str, Any], required: list[str]) -> str | None:
    """A one-line reason when a ``--require``d backend cannot run here, else None."""
    bad = [f"{name}: {report['backends'][name]['reason']}" for name in required if not report["backends"][name]["ok"]]
    return "; ".join(bad) if bad else None
