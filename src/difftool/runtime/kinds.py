"""The registries of model-file kinds and backends: one home for "which file is what, and what runs it".

* :data:`FILE_KINDS`: each kind's suffixes, a content sniff for files whose suffix lies or is missing, and
  the backends that open it, in order of preference (GPU first; the first usable one is the default).
* :data:`BACKENDS`: each backend's name, aliases, the file kind it opens and its device.

``make_denoiser``, ``read_card``, ``bench``, the TUI launcher and the CLI help all read these; nothing
here imports torch, onnxruntime or tensorrt.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from difftool.errors import DifftoolError


@dataclass(frozen=True)
class FileKind:
    name: str  # "onnx" | "engine" | "checkpoint"
    suffixes: tuple[str, ...]
    backends: tuple[str, ...]  # preferred order
    label: str


@dataclass(frozen=True)
class Backend:
    name: str
    aliases: tuple[str, ...]
    opens: str  # a FileKind name
    device: str  # "cpu" | "cuda"
    label: str


FILE_KINDS: dict[str, FileKind] = {k.name: k for k in (
    FileKind("onnx", (".onnx",), ("ort-cuda", "ort-cpu", "ort-tensorrt"), "ONNX graph"),
    FileKind("engine", (".engine", ".plan"), ("tensorrt",), "TensorRT engine"),
    FileKind("checkpoint", (".safetensors", ".pth", ".pt", ".ckpt", ".bin"), ("torch-cuda", "torch-cpu"),
             "checkpoint (difftool .safetensors, course or explainingai .pth)"),
    FileKind("diffusers", (), ("torch-cuda", "torch-cpu"), "diffusers UNet2DModel folder (export it for ORT)"),
)}

BACKENDS: dict[str, Backend] = {b.name: b for b in (
    Backend("ort-cpu", ("ort", "onnxruntime"), "onnx", "cpu", "onnxruntime, CPU"),
    Backend("ort-cuda", ("cuda",), "onnx", "cuda", "onnxruntime, CUDA execution provider"),
    Backend("ort-tensorrt", ("ort-trt",), "onnx", "cuda", "onnxruntime, TensorRT execution provider"),
    Backend("tensorrt", ("trt",), "engine", "cuda", "TensorRT engine"),
    Backend("torch-cpu", ("torch",), "checkpoint", "cpu", "PyTorch, CPU"),
    Backend("torch-cuda", (), "checkpoint", "cuda", "PyTorch, CUDA"),
)}
BACKEND_ALIASES: dict[str, str] = {alias: b.name for b in BACKENDS.values() for alias in b.aliases}


def backend_names(with_auto: bool = True) -> tuple[str, ...]:
    """Every backend name (``auto`` first when asked)."""
    return (("auto",) if with_auto else ()) + tuple(BACKENDS)


def backend_help() -> str:
    return " | ".join(backend_names())


def canonical_backend(name: str, *, allow_auto: bool = True) -> str:
    """The registry name of a backend or alias (``auto`` passes through); DifftoolError if unknown.

    ``torch`` means the PyTorch backend on the best device (kept as ``torch`` for ``make_denoiser``).
    """
    key = str(name).strip().lower()
    if (allow_auto and key == "auto") or key in BACKENDS:
        return key
    if key in BACKEND_ALIASES:
        return BACKEND_ALIASES[key]
    choices = ", ".join((*backend_names(allow_auto), *BACKEND_ALIASES))
    raise DifftoolError(f"unknown backend {name!r}; choose from: {choices}")


def kind_of(path: str | Path) -> FileKind:
    """The kind of a model file: by suffix, else by content (DifftoolError naming what it looks like)."""
    path = Path(path)
    if path.is_dir():
        from difftool.models.diffusers_io import diffusers_folder  # torch-free

        if diffusers_folder(path) is not None:
            return FILE_KINDS["diffusers"]
        raise DifftoolError(f"{path} is a folder but not a diffusers model folder (no config.json with a "
                            "UNet2DModel, model_index.json or unet/ inside)")
    suffix = path.suffix.lower()
    for kind in FILE_KINDS.values():
        if suffix in kind.suffixes:
            return kind
    sniffed = sniff(path)
    if sniffed is not None:
        return FILE_KINDS[sniffed]
    known = ", ".join(s for k in FILE_KINDS.values() for s in k.suffixes)
    raise DifftoolError(f"{path}: unknown file type {suffix or '(no suffix)'}; expected one of {known}")


def sniff(path: Path) -> str | None:
    """Guess a file kind from its first bytes (:func:`difftool.filekind.model_kind`: the one home of file
    signatures)."""
    from difftool.filekind import model_kind

    return model_kind(path)


def backends_for(kind: FileKind) -> tuple[Backend, ...]:
    """The backends that open ``kind``, in preference order."""
    return tuple(BACKENDS[name] for name in kind.backends)
