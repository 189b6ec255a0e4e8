"""A finished generation: its settings, per-sprite seeds and mixes, final pixels and animation frames."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from difftool.config import ModelCard
from difftool.runtime.pipeline import SampleRequest
from difftool.runtime.samplers import get_sampler
from difftool.tui.settings import Settings

Kind = Literal["generate", "reroll", "vary"]


@dataclass(frozen=True)
class Cell:
    """How one sprite was made: its own seed and mix (the rest is the generation's settings)."""

    seed: int
    mix: str


@dataclass
class Generation:
    """One entry of the history. Images are (n, H, W, C) uint8; frames are subsampled steps."""

    id: int
    kind: Kind
    settings: Settings
    cells: list[Cell]
    image: np.ndarray
    x0: np.ndarray
    frames: list[np.ndarray] = field(default_factory=list)
    frames_x0: list[np.ndarray] = field(default_factory=list)
    backend: str = ""
    card: ModelCard | None = None
    model_path: str | None = None  # the artifact the pipeline was loaded from, when it says
    elapsed_s: float = 0.0
    steps_per_s: float = 0.0
    target: int | None = None  # the cell a reroll/vary changed
    saved_stem: str | None = None  # file stem chosen on first save, reused for PNG, GIF and JSON
    request: SampleRequest | None = None  # the whole grid as one request (the PNG's generation record)

    @property
    def seeds(self) -> list[int]:
        return [cell.seed for cell in self.cells]

    def mix_label(self) -> str:
        mixes = {cell.mix for cell in self.cells}
        return mixes.pop() if len(mixes) == 1 else "mixed"

    def label(self) -> str:
        """The history list line: id, what changed, and the settings."""
        s = self.settings
        what = {"generate": "", "reroll": f" ↻{self.target}", "vary": f" ≈{self.target}"}[self.kind]
        mix = self.mix_label() or "uncond"
        sampler = get_sampler(s.sampler).short if s.sampler else "?"
        return f"#{self.id}{what} {mix} · {sampler} {s.steps}st g{s.guidance:g} s{s.seed}"
