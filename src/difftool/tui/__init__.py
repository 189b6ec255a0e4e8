"""The terminal UI: sample sprites interactively (``difftool tui``).

The CLI calls :func:`run_tui` with one pipeline factory, or a ``{backend name: factory}`` mapping whose
first entry is the default. A factory is called (in a worker thread) the first time its backend is used.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Mapping

from difftool.tui.app import SpriteApp
from difftool.tui.pipeline_api import PipelineFactory, SpritePipeline
from difftool.tui.settings import Settings

__all__ = ["PipelineFactory", "Settings", "SpriteApp", "SpritePipeline", "run_tui"]


def run_tui(
    pipeline_factory: PipelineFactory | Mapping[str, PipelineFactory],
    *,
    output_dir: str | os.PathLike[str] | None = None,
    mix: str = "",
    sampler: str = "ddim",
    steps: int = 25,
    eta: float = 0.0,
    guidance: float = 1.0,
    seed: int = 0,
    random_seed: bool = False,
    rows: int = 4,
    cols: int = 4,
    zoom: int = 1,
    save_scale: int = 8,
    gif_scale: int = 4,
    keymap: Mapping[str, str] | None = None,
) -> None:
    """Run the sprite TUI until the user quits.

    ``pipeline_factory``: a zero-argument callable returning a pipeline, or ``{name: factory}`` for a
    backend choice (e.g. ``{"ort-cpu": ..., "torch-cpu": ...}``). ``mix``: initial class or mixture text
    ("" = the model's first class). ``output_dir``: where PNG/GIF/JSON go (default: the current dir).
    ``keymap``: binding id -> keys, e.g. ``{"difftool.generate": "f5"}``. Raises ``DifftoolError`` on
    invalid initial settings.
    """
    backends = dict(pipeline_factory) if isinstance(pipeline_factory, Mapping) else {"default": pipeline_factory}
    settings = Settings(mix=mix, sampler=sampler, steps=steps, eta=eta, guidance=guidance, seed=seed,
                        random_seed=random_seed, rows=rows, cols=cols)
    app = SpriteApp(backends, settings=settings, output_dir=output_dir, zoom=zoom, save_scale=save_scale,
                    gif_scale=gif_scale, keymap=keymap)
    gc.freeze()  # keep start-up objects out of gen-2 collections: fewer GC pauses while frames stream
    app.run()
