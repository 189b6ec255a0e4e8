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
from difftool.runtime.kinds import backend_names, canonical_backend, kind_of

BACKENDS = (*backend_names(), "torch")  # "torch": the PyTorch backend on the best device


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
    """Every backend name -> None if usable here, else the reason it is not (never dropped).

    The one check behind ``bench``, the TUI's backend menu and ``difftool doctor``: GPU execution
    providers count only when a session on them really runs there (probed once per process), and two
    onnxruntime builds installed together make every ORT backend unusable, with the fix as the reason.
    """
    out: dict[str, str | None] = {}
    providers, ort_problem = _ort_providers()
    gpu = cuda_device_present()
    out["ort-cpu"] = ort_problem or (None if "CPUExecutionProvider" in providers else "onnxruntime not installed")
    out["ort-cuda"] = ort_problem or _gpu_provider(
        "CUDAExecutionProvider", providers, gpu, "onnxruntime-gpu not installed (no CUDAExecutionProvider)")
    out["ort-tensorrt"] = ort_problem or _gpu_provider(
        "TensorrtExecutionProvider", providers, gpu,
        "onnxruntime-gpu with TensorRT not installed (no TensorrtExecutionProvider)")
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


def _ort_providers() -> tuple[list[str], str | None]:
    """(providers compiled into the installed onnxruntime, a reason no ORT backend can run or None)."""
    if not _installed("onnxruntime"):
        return [], None
    from difftool.runtime.backends import ortcheck

    problem = ortcheck.conflict()
    if problem:
        return [], problem
    try:
        import onnxruntime as ort

        return list(ort.get_available_providers()), None
    except Exception as exc:  # a half-uninstalled build: "module 'onnxruntime' has no attribute ..."
        return [], f"onnxruntime is broken ({str(exc)[:120]}); reinstall it: `pip install --force-reinstall onnxruntime`"


def _gpu_provider(provider: str, providers: list[str], gpu: bool, missing: str) -> str | None:
    if provider not in providers:
        return missing
    if not gpu:
        return "no CUDA device"
    from difftool.runtime.backends.ortcheck import provider_failure

    return provider_failure(provider)


def make_denoiser(path: str | Path, backend: str = "auto", threads: int | None = None, **opts) -> Denoiser:
    """Open ``path`` with ``backend`` (see :data:`BACKENDS`); extra ``opts`` go to the backend class."""
    path = Path(path)
    if backend != "torch":
        backend = canonical_backend(backend)
    if not path.exists():
        raise DifftoolError(f"file not found: {path}")
    kind = kind_of(path)  # a diffusers folder is a checkpoint for the torch backends (export it for ORT)
    if kind.name == "onnx":
        return _onnx(path, backend, threads, opts)
    if kind.name == "engine":
        if backend not in ("auto", "tensorrt"):
            raise DifftoolError(f"{path.name} is a TensorRT engine; it runs only with the tensorrt backend")
        from difftool.runtime.backends.tensorrt import TensorRTDenoiser

        return TensorRTDenoiser(path, **opts)
    return _checkpoint(path, backend, threads, opts)


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
