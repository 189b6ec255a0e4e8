"""``launch(artifact)``: open one model file on every backend that can run it here, then run the TUI.

This is the adapter ``difftool tui`` calls. The backend list depends on the file type and on what
``difftool.runtime.backends.available_backends()`` reports; the first usable one is the default (GPU
first). Each factory loads lazily, in the TUI's worker thread, the first time its backend is picked.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from difftool.errors import DifftoolError
from difftool.tui.pipeline_api import PipelineFactory

# Preferred order per file type (first usable = default).
CANDIDATES: dict[str, tuple[str, ...]] = {
    ".onnx": ("ort-cuda", "ort-cpu", "ort-tensorrt"),
    ".engine": ("tensorrt",),
    ".plan": ("tensorrt",),
    ".safetensors": ("torch-cuda", "torch-cpu"),
    ".pth": ("torch-cuda", "torch-cpu"),
    ".pt": ("torch-cuda", "torch-cpu"),
    ".ckpt": ("torch-cuda", "torch-cpu"),
}


def backends_for(artifact: Path, threads: int | None = None) -> dict[str, PipelineFactory]:
    """{backend name: factory} for ``artifact``, usable backends only (``{"auto": ...}`` as a fallback)."""
    from difftool.runtime.backends import available_backends
    from difftool.runtime.loader import load

    candidates = CANDIDATES.get(artifact.suffix.lower(), ())
    if artifact.is_dir():  # a diffusers model folder runs on the PyTorch backends (as a checkpoint does)
        candidates = CANDIDATES[".safetensors"]
    available = available_backends()
    usable = [name for name in candidates if available.get(name, "unknown") is None] or ["auto"]
    factories = {name: functools.partial(load, artifact, backend=name, threads=threads) for name in usable}
    # An artifact shipped beside its checkpoint (the bundled model) also runs on the PyTorch backends.
    sibling = artifact.with_suffix(".safetensors")
    if artifact.suffix.lower() == ".onnx" and sibling.is_file():
        for name in CANDIDATES[".safetensors"]:
            if available.get(name, "unknown") is None:
                factories[name] = functools.partial(load, sibling, backend=name, threads=threads)
    return factories


def launch(artifact: str | Path, *, threads: int | None = None, out_dir: str | Path = ".",
           **settings: Any) -> None:
    """Run the sprite TUI on ``artifact``. ``settings`` are :func:`difftool.tui.run_tui` keywords."""
    from difftool.runtime.artifact import read_card
    from difftool.tui import run_tui

    path = Path(artifact)
    from difftool.models.diffusers_io import diffusers_folder

    if not path.is_file() and diffusers_folder(path) is None:  # a file, or a diffusers model folder
        raise DifftoolError(f"model file not found: {path}")
    card = read_card(path)  # fail early, before the UI starts, on a file that is not a model
    if card.conditional and card.class_names:
        settings.setdefault("mix", card.class_names[0])
        settings.setdefault("guidance", float(card.recommended("guidance")))
    settings.setdefault("sampler", str(card.recommended("sampler")))
    settings.setdefault("steps", int(card.recommended("steps")))
    settings.setdefault("eta", float(card.recommended("eta")))
    run_tui(backends_for(path, threads), output_dir=out_dir, **settings)
