"""The palette side of ``difftool eval``: which palette the palette rows project onto, the training palette the
fidelity figure is measured against, and each row's palette figures.

Row modes (the ``palette`` key of an eval configuration):

* ``none``: the raw output of the sampler;
* ``sample``: the x0 estimate is projected onto the palette in the last steps (``Palette.last``; part of
  sampling, the final steps adapt to it) and the result lands on the palette;
* ``post``: raw sampling, then every pixel snapped to its nearest palette colour afterwards (a post-filter);
* ``default``: the model's recommendation (``ModelCard.recommended("palette")``: ``auto`` -> ``sample``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from difftool.errors import DifftoolError
from difftool.runtime.palette import (
    FIDELITY_RMS,
    Palette,
    colors_of,
    learn_palette,
    load_palette,
    palette_fidelity,
)

MODES = ("none", "sample", "post")


@dataclass(frozen=True)
class EvalPalettes:
    """``project``: the palette of the ``sample``/``post`` rows (None: those rows are skipped);
    ``reference``: the training palette fidelity is measured against, with the data's ``background``."""

    project: Palette | None
    reference: np.ndarray | None  # (P, 3) uint8
    background: tuple[int, int, int] = (0, 0, 0)
    source: str = ""


def resolve_mode(value: Any, card: Any) -> str:
    """A row's palette mode, ``default`` resolved through the card's recommendation."""
    if value in (None, "default"):
        value = "sample" if str(card.recommended("palette")).lower() not in ("", "none") else "none"
    mode = str(value).lower()
    if mode not in MODES:
        raise DifftoolError(f"bad eval palette mode {value!r}; use one of: {', '.join(MODES)}")
    return mode


def eval_palettes(palette: Palette | str | None, card: Any, real: np.ndarray | None, notes: list[str]) -> EvalPalettes:
    """The projection palette (``auto``: the card's, else learned from the real sprites; a Palette or a file
    as given; ``none``: no palette rows) and the training palette (learned from the real sprites, else the
    card's) with the background colour (the real sprites' most frequent colour, else black)."""
    last = float(card.recommended("palette_last"))
    reference, background, source = None, (0, 0, 0), ""
    if real is not None:
        learned = learn_palette(real, card.value_range, max_colors=256)
        reference, source = learned.colors, "the real sprites"
        background = tuple(int(v) for v in learned.colors[0])  # the most frequent colour
    elif getattr(card, "palette", ()):
        reference, source = Palette.from_hex(card.palette).colors, "the model card"
    if isinstance(palette, Palette):
        project = palette
    elif palette is None or str(palette).lower() == "none":
        project = None
    elif str(palette).lower() == "auto" and not getattr(card, "palette", ()):
        project = None if reference is None else Palette(reference[:64], "learned from the real sprites", last)
        if project is not None:
            notes.append("the model card has no palette: the palette rows use the one learned from the real sprites")
    else:
        project = load_palette(palette, card, last=last)
    return EvalPalettes(project, reference, background, source)


def row_palette(mode: str, palettes: EvalPalettes) -> Palette | None:
    """The request's palette for a row mode (``post``: only the final snap, no projection during sampling)."""
    if mode == "none" or palettes.project is None:
        return None
    p = palettes.project
    return p if mode == "sample" else Palette(p.colors, p.name, 0.0)


def figures(samples_u8: np.ndarray, palettes: EvalPalettes) -> tuple[float | None, float | None, int]:
    """(palette fidelity, exact share, distinct colours) of (N, H, W, 3) uint8 samples."""
    if palettes.reference is None:
        return None, None, len(colors_of(samples_u8)[0])
    f = palette_fidelity(samples_u8, palettes.reference, palettes.background)
    return f.on_palette, f.exact, f.distinct_colors


def palette_info(palettes: EvalPalettes) -> dict[str, Any]:
    p = palettes.project
    info: dict[str, Any] = {"rows": None if p is None else {"name": p.name, "colors": len(p), "last": p.last}}
    if palettes.reference is not None:
        info.update(reference=palettes.source, reference_colors=len(palettes.reference),
                    background="#{:02x}{:02x}{:02x}".format(*palettes.background), tolerance_rms=FIDELITY_RMS)
    return info
