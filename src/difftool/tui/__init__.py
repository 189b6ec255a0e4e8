"""The terminal UI: sample sprites interactively (``difftool tui``).

The CLI calls :func:`run_tui` with one pipeline factory, or a ``{backend name: factory}`` mapping whose
first entry is the default. A factory returns a :class:`~difftool.runtime.pipeline.Pipeline` and is
called (in a worker thread) the first time its backend is used.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from difftool.tui.settings import Settings

if TYPE_CHECKING:
    from difftool.runtime.pipeline import Pipeline
    from difftool.tui.app import SpriteApp

PipelineFactory = Callable[[], "Pipeline"]

__all__ = ["PipelineFactory", "Settings", "SpriteApp", "run_tui"]


def __getattr__(name: str) -> Any:
    if name == "SpriteApp":  # imported on first use: the settings and the demo model need no Textual app
        from difftool.tui.app import SpriteApp

        return SpriteApp
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def run_tui(
    pipeline_factory: PipelineFactory | Mapping[str, PipelineFactory],
    *,
    output_dir: str | os.PathLike[str] | None = None,
    mix: str = "",
    sampler: str | None = None,
    steps: int | None = None,
    guidance: float | None = None,
    seed: int = 0,
    random_seed: bool = False,
    rows: int = 4,
    cols: int = 4,
    palette: str | None = None,
    zoom: int = 1,
    save_scale: int = 8,
    gif_scale: int = 4,
    keymap: Mapping[str, str] | None = None,
    **options: Any,
) -> None:
    """Run the sprite TUI until the user quits.

    ``pipeline_factory``: a zero-argument callable returning a pipeline, or ``{name: factory}`` for a
    backend choice (e.g. ``{"ort-cpu": ..., "torch-cpu": ...}``). ``mix``: initial class or mixture text
    ("" = the model's first class). ``sampler``, ``steps``, ``guidance`` and the sampler ``options``
    (``eta=``, ``variance=``, ... as the sampler registry names them): None = the model's default
    (:func:`difftool.runtime.defaults.resolve`, applied once the model is loaded). ``palette``: a
    ``--palette`` value (auto, none, a file, #rrggbb colours; None: the model's). ``output_dir``: where
    PNG/GIF/JSON go (default: the current dir). ``keymap``: binding id -> keys, e.g.
    ``{"difftool.generate": "f5"}``. Raises ``DifftoolError`` on invalid initial settings.
    """
    from difftool.tui.app import SpriteApp

    backends = dict(pipeline_factory) if isinstance(pipeline_factory, Mapping) else {"default": pipeline_factory}
    settings = Settings(mix=mix, sampler=sampler, steps=steps, guidance=guidance, options=options, seed=seed,
                        random_seed=random_seed, rows=rows, cols=cols, palette=palette)
    app = SpriteApp(backends, settings=settings, output_dir=output_dir, zoom=zoom, save_scale=save_scale,
                    gif_scale=gif_scale, keymap=keymap)
    gc.freeze()  # keep start-up objects out of gen-2 collections: fewer GC pauses while frames stream
    app.run()
