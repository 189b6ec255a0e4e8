"""Backend registry: what can run here, and one factory that opens any supported file.

* ``.onnx`` -> :class:`~difftool.runtime.backends.ort.OrtDenoiser` (CUDA EP when present, else CPU).
* ``.engine`` / ``.plan`` -> :class:`~difftool.runtime.backends.tensorrt.TensorRTDenoiser`.
* ``.safetensors`` / ``.pth`` / ``.pt`` / ``.ckpt`` -> ``difftool.models.denoiser.TorchDenoiser``
  (needs the ``train`` extra; torch is imported only on this path).
* a diffusers model folder -> the same, around its ``UNet2DModel`` (needs diffusers too).

Nothing here imports torch, tensorrt or onnxruntime at import time.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

from difftool.errors import DifftoolError, MissingDependency
from difftool.runtime.denoiser import Denoiser

ONNX_SUFFIXES = (".onnx",)
ENGINE_SUFFIXES = (".engine", ".plan")
CHECKPOINT_SUFFIXES = (".safetensors", ".pth", ".pt", ".ckpt")
BACKENDS = ("auto", "ort-cpu", "ort-cuda", "ort-tensorrt", "tensorrt", "torch", "torch-cpu", "torch-cuda")


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def cuda_device_present() -> bool:
    """An NVIDIA driver with at least one device node (checked without importing CUDA libraries)."""
    gpus = Path("/proc/driver/nvidia/gpus")
    if gpus.is_dir() and any(gpus.iterdir()):
        return True
    return Path("/dev/nvidia0").exists()


def _torch_cuda_version() -> str | None:
    """``torch.version.cuda`` read from the installed file, without importing torch."""
    spec = importlib.util.find_spec("torch")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        version = Path(folder) / "version.py"
        if version.is_file():
            match = re.search(r"^cuda\s*(?::[^=]*)?=\s*['\"]([^'\"]+)['\"]", version.read_text(), re.M)
            return match.group(1) if match else None
    return None


def available_backends() -> dict[str, str | None]:
    """Every backend name -> None if usable here, else the reason it is not (never dropped)."""
    out: dict[str, str | None] = {}
    providers: list[str] = []
    if _installed("onnxruntime"):
        import onnxruntime as ort

        providers = ort.get_available_providers()
    gpu = cuda_device_present()
    out["ort-cpu"] = None if "CPUExecutionProvider" in providers else "onnxruntime not installed"
    if "CUDAExecutionProvider" not in providers:
        out["ort-cuda"] = "onnxruntime-gpu not installed (no CUDAExecutionProvider)"
    else:
        out["ort-cuda"] = None if gpu else "no CUDA device"
    if "TensorrtExecutionProvider" not in providers:
        out["ort-tensorrt"] = "onnxruntime-gpu with TensorRT not installed (no TensorrtExecutionProvider)"
    else:
        out["ort-tensorrt"] = None if gpu else "no CUDA device"
    out["tensorrt"] = ("tensorrt not installed" if not _installed("tensorrt")
                       else None if gpu else "no CUDA GPU")
    has_torch = _installed("torch")
    out["torch-cpu"] = None if has_torch else "torch not installed (pip install 'difftool[train]')"
    if not has_torch:
        out["torch-cuda"] = "torch not installed (pip install 'difftool[train]')"
    elif _torch_cuda_version() is None:
        out["torch-cuda"] = "torch is a CPU-only build"
    else:
        out["torch-cuda"] = None if gpu else "no CUDA device"
    return out


def make_denoiser(path: str | Path, backend: str = "auto", threads: int | None = None, **opts) -> Denoiser:
    """Open ``path`` with ``backend`` (see :data:`BACKENDS`); extra ``opts`` go to the backend class."""
    path = Path(path)
    if backend not in BACKENDS:
        raise DifftoolError(f"unknown backend {backend!r}; choose one of: {', '.join(BACKENDS)}")
    # -- diffusers model folder: a checkpoint for the torch backends (export it for onnxruntime)
    from difftool.models.diffusers_io import diffusers_folder

    if diffusers_folder(path) is not None:
        return _checkpoint(path, backend, threads, opts)
    if not path.is_file():
        raise DifftoolError(f"file not found: {path}")
    suffix = path.suffix.lower()
    if suffix in ONNX_SUFFIXES:
        return _onnx(path, backend, threads, opts)
    if suffix in ENGINE_SUFFIXES:
        if backend not in ("auto", "tensorrt"):
            raise DifftoolError(f"{path.name} is a TensorRT engine; it runs only with the tensorrt backend")
        from difftool.runtime.backends.tensorrt import TensorRTDenoiser

        return TensorRTDenoiser(path, **opts)
    if suffix in CHECKPOINT_SUFFIXES:
        return _checkpoint(path, backend, threads, opts)
    raise DifftoolError(f"{path}: unknown file type {suffix or '(none)'}; expected .onnx, .engine/.plan or a "
                        "checkpoint (.safetensors, .pth, .pt)")


def _onnx(path: Path, backend: str, threads: int | None, opts: dict) -> Denoiser:
    if backend.startswith("torch"):
        raise DifftoolError(f"the {backend} backend needs a checkpoint (.safetensors/.pth), not an ONNX graph; "
                            "use backend auto, ort-cpu or ort-cuda for .onnx files")
    if backend == "tensorrt":
        raise DifftoolError(f"the tensorrt backend needs an engine; build one with "
                            f"`difftool export {path.name} --format tensorrt` or use ort-tensorrt")
    from difftool.runtime.backends.ort import CUDA_OPTIONS, OrtDenoiser

    providers = opts.pop("providers", None)
    if providers is None and backend != "auto":
        reason = available_backends()[backend]
        if reason:
            raise DifftoolError(f"backend {backend} is not available here: {reason}")
        providers = {
            "ort-cpu": ["CPUExecutionProvider"],
            "ort-cuda": [("CUDAExecutionProvider", dict(CUDA_OPTIONS)), "CPUExecutionProvider"],
            "ort-tensorrt": ["TensorrtExecutionProvider", ("CUDAExecutionProvider", dict(CUDA_OPTIONS)),
                             "CPUExecutionProvider"],
        }[backend]
    return OrtDenoiser(path, threads=threads, providers=providers, **opts)


def _checkpoint(path: Path, backend: str, threads: int | None, opts: dict) -> Denoiser:
    if backend.startswith("ort") or backend == "tensorrt":
        raise DifftoolError(f"{path.name} is a checkpoint; export it first (`difftool export {path.name}`) "
                            f"to use the {backend} backend, or use backend torch")
    if not _installed("torch"):
        raise MissingDependency("torch", "train", "sampling from a checkpoint")
    device = {"torch-cpu": "cpu", "torch-cuda": "cuda"}.get(backend)
    if device is None:  # auto / torch
        device = "cuda" if available_backends()["torch-cuda"] is None else "cpu"
    elif device == "cuda" and (reason := available_backends()["torch-cuda"]):
        raise DifftoolError(f"backend torch-cuda is not available here: {reason}")
    from difftool.models.checkpoint import load
    from difftool.models.denoiser import TorchDenoiser

    loaded = load(path)
    return TorchDenoiser(loaded.module, loaded.card, device=device, threads=threads, **opts)


__all__ = ["BACKENDS", "available_backends", "make_denoiser"]
