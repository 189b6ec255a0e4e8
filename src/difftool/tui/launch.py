"""``launch(artifact)``: open one model file on every backend that can run it here, then run the TUI.

This is the adapter ``difftool tui`` calls. The backend list depends on the file kind (the registry in
``difftool.runtime.kinds``) and on what ``difftool.runtime.backends.available_backends()`` reports; the
first usable one is the default (GPU first). Each factory loads lazily, in the TUI's worker thread, the first time its backend is picked.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from difftool.errors import DifftoolError
from difftool.tui import PipelineFactory


def backends_for(artifact: Path, threads: int | None = None) -> dict[str, PipelineFactory]:
    """{backend name: factory} for ``artifact``: the usable backends of its file kind, in the registry's
    order of preference (``runtime.kinds.FILE_KINDS``; ``{"auto": ...}`` as a fallback)."""
    from difftool.runtime.backends import available_backends
    from difftool.runtime.kinds import FILE_KINDS, kind_of
    from difftool.runtime.loader import load

    try:
        candidates = kind_of(artifact).backends
    except DifftoolError:
        candidates = ()
    available = available_backends()
    usable = [name for name in candidates if available.get(name, "unknown") is None] or ["auto"]
    factories = {name: functools.partial(load, artifact, backend=name, threads=threads) for name in usable}
    # An artifact shipped beside its checkpoint (the bundled model) also runs on the PyTorch backends.
    sibling = artifact.with_suffix(".safetensors")
    if artifact.suffix.lower() in FILE_KINDS["onnx"].suffixes and sibling.is_file():
        for name in FILE_KINDS["checkpoint"].backends:
            if available.get(name, "unknown") is None:
                factories[name] = functools.partial(load, sibling, backend=name, threads=threads)
    return factories


def launch(artifact: str | Path, *, threads: int | None = None, out_dir: str | Path = ".",
           **settings: Any) -> None:
    """Run the sprite TUI on ``artifact``. ``settings`` are :func:`difftool.tui.run_tui` keywords; sampler
    settings left out take the model's defaults (:func:`difftool.runtime.defaults.resolve`), checked here,
    before the UI starts."""
    from difftool.runtime.artifact import read_card
    from difftool.runtime.defaults import resolve
    from difftool.runtime.samplers import option_names
    from difftool.tui import run_tui

    path = Path(artifact)
    from difftool.models.diffusers_io import diffusers_folder

    if not path.is_file() and diffusers_folder(path) is None:  # a file, or a diffusers model folder
        raise DifftoolError(f"model file not found: {path}")
    card = read_card(path)  # fail early, before the UI starts, on a file that is not a model
    from difftool.runtime.palette import resolve_palette

    resolve_palette(settings.get("palette"), card)  # a bad --palette fails here, not in the first job
    if card.conditional:
        settings.setdefault("mix", card.class_names[0] if card.class_names else "0")
    options = {name: settings.pop(name) for name in option_names() if name in settings}
    resolved = resolve(card, conditioned=bool(settings.get("mix")), sampler=settings.pop("sampler", None),
                       steps=settings.pop("steps", None), guidance=settings.pop("guidance", None), **options)
    run_tui(backends_for(path, threads), output_dir=out_dir, sampler=resolved.sampler, steps=resolved.steps,
            guidance=resolved.guidance, **resolved.options, **settings)
