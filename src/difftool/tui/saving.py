"""Saving a generation: settings-bearing file names, PNG sheet, GIF animation and a sidecar JSON.

A PNG of the sampled grid carries difftool's generation record (:mod:`difftool.runtime.record`: model,
sampler and its options, steps, guidance, per-sprite seeds and context rows), so
``difftool generate MODEL --from-png FILE`` regenerates its sprites. The sidecar JSON is a readable
convenience: the shared settings, each sprite's own seed and mix, the backend and the model card.
Files of the predicted-x0 view are named ``<stem>-x0.*`` and carry no record (a sampler never returns them).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import numpy as np

from difftool import __version__
from difftool.fileio import atomic_write
from difftool.runtime.images import grid, save_gif, save_png
from difftool.runtime.palette import palette_spec
from difftool.runtime.record import GenerationRecord
from difftool.tui.generation import Generation
from difftool.tui.settings import slug

View = Literal["xt", "x0"]
EXTENSIONS = (".png", ".gif", ".json")
VIEW_SUFFIX: dict[str, str] = {"xt": "", "x0": "-x0"}  # the predicted-x0 view never overwrites the samples
HOLD_LAST_MS = 1500  # the GIF shows the finished grid this long before it loops


def sheet(images: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """(rows*cols, H, W, C) -> (rows*H, cols*W, C), row-major, no gaps: a sprite sheet (``grid`` with gap 0,
    so ``difftool generate --from-png`` rewrites the same file layout)."""
    if len(images) != rows * cols:
        raise ValueError(f"{len(images)} images do not fill a {rows}x{cols} grid")
    return grid(images, nrow=cols, gap=0)


def record(gen: Generation, scale: int) -> GenerationRecord | None:
    """The generation record of ``gen``'s grid (None when it was not sampled through a request)."""
    if gen.request is None or gen.card is None:
        return None
    return GenerationRecord.from_request(gen.request, card=gen.card, model=gen.model_path, nrow=gen.settings.cols,
                                         scale=scale, gap=0, palette=palette_spec(gen.request.palette))


def base_stem(gen: Generation) -> str:
    """``sprites_hero+food0.4_ddim_25st_g3_seed42`` (+ ``_reroll5``/``_vary5`` for edited grids)."""
    s = gen.settings
    stem = f"sprites_{slug(gen.mix_label())}_{s.sampler}_{s.steps}st_g{s.guidance:g}_seed{s.seed}"
    if gen.kind != "generate":
        stem += f"_{gen.kind}{gen.target}"
    return stem


def stem_for(gen: Generation, out_dir: Path) -> str:
    """The generation's file stem: chosen once (never clobbering other files), then reused."""
    if gen.saved_stem is None:
        stem, k = base_stem(gen), 1
        candidate = stem
        while any((out_dir / f"{candidate}{view}{ext}").exists() for ext in EXTENSIONS for view in VIEW_SUFFIX.values()):
            k += 1
            candidate = f"{stem}-{k}"
        gen.saved_stem = candidate
    return gen.saved_stem


def view_stem(gen: Generation, out_dir: Path, view: View) -> str:
    """The file stem of ``gen``'s files in ``view``."""
    return stem_for(gen, out_dir) + VIEW_SUFFIX[view]


def sidecar(gen: Generation, out_dir: Path, scale: int, view: View) -> dict[str, Any]:
    s = gen.settings
    card = gen.card
    stem = view_stem(gen, out_dir, view)
    files = {ext[1:]: f"{stem}{ext}" for ext in (".png", ".gif") if (out_dir / f"{stem}{ext}").exists()}
    return {
        "tool": "difftool",
        "version": __version__,
        "kind": "sprite-grid",
        "files": files,
        "scale": scale,
        "view": "predicted x0" if view == "x0" else "x_t",
        "generation": {"id": gen.id, "kind": gen.kind, "target": gen.target},
        "settings": {
            "mix": s.mix, "sampler": s.sampler, "steps": s.steps, **s.options, "guidance": s.guidance,
            "seed": s.seed, "rows": s.rows, "cols": s.cols,
        },
        "backend": gen.backend,
        "model": {
            "source": card.source if card else None,
            "path": gen.model_path,
            "card": card.to_dict() if card else None,
        },
        "sprites": [
            {"index": i, "row": i // s.cols, "col": i % s.cols, "seed": cell.seed, "mix": cell.mix}
            for i, cell in enumerate(gen.cells)
        ],
        "regenerate": (
            "the whole grid: `difftool generate MODEL --from-png <the PNG>` (the PNG holds the record); "
            "sprite i alone: n=1, seeds=[sprites[i].seed], context from sprites[i].mix, the rest from settings"
        ),
    }


def _write_sidecar(path: Path, data: dict[str, Any]) -> None:
    text = json.dumps(data, indent=2, sort_keys=False) + "\n"
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def save_sheet(gen: Generation, out_dir: Path, scale: int, view: View) -> Path:
    """Save the grid as a PNG sprite sheet (no gaps, NEAREST ``scale``) and its sidecar JSON. The sampled
    grid (x_t view) carries the generation record; the predicted-x0 view is not what a sampler returns,
    so it carries none."""
    s = gen.settings
    path = out_dir / f"{view_stem(gen, out_dir, view)}.png"
    rec = record(gen, scale) if view == "xt" else None
    save_png(path, sheet(gen.x0 if view == "x0" else gen.image, s.rows, s.cols), scale,
             text=rec.png_text() if rec is not None else None)
    _write_sidecar(path.with_suffix(".json"), sidecar(gen, out_dir, scale, view))
    return path


def save_animation(gen: Generation, out_dir: Path, scale: int, view: View, duration_ms: int = 60) -> Path:
    """Save the denoising animation (x_t or predicted x0 per kept step) as a GIF and its sidecar."""
    s = gen.settings
    frames = gen.frames_x0 if view == "x0" else gen.frames
    path = out_dir / f"{view_stem(gen, out_dir, view)}.gif"
    sheets = [sheet(f, s.rows, s.cols) for f in frames]
    hold = max(1, round(HOLD_LAST_MS / duration_ms))  # identical frames merge into one long frame
    save_gif(path, sheets + [sheets[-1]] * hold, duration_ms, scale)
    _write_sidecar(path.with_suffix(".json"), sidecar(gen, out_dir, scale, view))
    return path
