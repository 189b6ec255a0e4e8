"""What the user asks for: one frozen :class:`Settings` record, plus the grid-size parser.

Sampler settings left as ``None`` mean "the model's default"; :meth:`Settings.resolved` fills them in
with :func:`difftool.runtime.defaults.resolve`, the one place every front end takes its defaults from.
Sampler names, their options (eta, variance, ...) and their checks come from the sampler registry.
Everything here is pure (no Textual), so the controls, the history, saving and the tests share it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from difftool.config import ModelCard
from difftool.errors import DifftoolError
from difftool.runtime.defaults import Settings as Sampling
from difftool.runtime.defaults import resolve
from difftool.runtime.palette import resolve_palette
from difftool.runtime.samplers import canonical_name, get_sampler, option_names

MIN_GRID, MAX_GRID = 1, 8
MAX_SEED = 2**31 - 1

_GRID_RE = re.compile(r"^\s*(\d+)\s*[xX×*]\s*(\d+)\s*$")


@dataclass(frozen=True)
class Settings:
    """The knobs of one generation. ``mix`` is canonical mix text ("" = unconditional); ``sampler``,
    ``steps``, ``guidance`` and each of ``options`` (the sampler's own: eta, variance, ...) may be None
    for the model's default."""

    mix: str = ""
    sampler: str | None = None
    steps: int | None = None
    guidance: float | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    seed: int = 0
    random_seed: bool = False
    rows: int = 4
    cols: int = 4
    palette: str | None = None  # a --palette value: auto | none | FILE | "#rrggbb,..." (None: the model's)

    @property
    def n(self) -> int:
        return self.rows * self.cols

    def seeds(self) -> list[int]:
        """Per-sprite seeds: sprite ``i`` uses ``seed + i`` (so it can be resampled alone)."""
        return [self.seed + i for i in range(self.n)]

    def with_(self, **changes: Any) -> Settings:
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["options"] = dict(self.options)
        return data

    def summary(self) -> str:
        """One short line for the history list and the status bar."""
        mix = self.mix or "uncond"
        guidance = "g?" if self.guidance is None else f"g{self.guidance:g}"
        sampler = get_sampler(self.sampler).short if self.sampler else "default"
        palette = "" if (self.palette or "none").lower() == "none" else f" pal:{self.palette}"
        return (f"{mix} {sampler} {self.steps or '?'}st {guidance} s{self.seed} "
                f"{self.rows}x{self.cols}{palette}")

    def sampling(self) -> Sampling:
        """The sampler part as :class:`difftool.runtime.defaults.Settings` (for a resolved record)."""
        if self.sampler is None or self.steps is None or self.guidance is None:
            raise DifftoolError("settings are not resolved yet (no model loaded)")
        return Sampling(sampler=self.sampler, steps=self.steps, guidance=self.guidance, options=dict(self.options))

    def resolved(self, card: ModelCard) -> Settings:
        """Every None sampler setting replaced by the model's default (``runtime.defaults.resolve``)."""
        given = {name: value for name, value in self.options.items() if value is not None}
        s = resolve(card, conditioned=bool(self.mix), sampler=self.sampler, steps=self.steps,
                    guidance=self.guidance, **given)
        palette = self.palette if self.palette else str(card.recommended("palette") or "none")
        out = replace(self, sampler=s.sampler, steps=s.steps, guidance=s.guidance, options=dict(s.options),
                      palette=palette)
        resolve_palette(palette, card)  # DifftoolError with a fix hint: no learned palette, bad file
        return out.validate(card.schedule.num_timesteps)

    def validate(self, max_steps: int | None = None) -> Settings:
        """A copy with the sampler name made canonical; :class:`DifftoolError` with a fix hint when a value
        is out of range."""
        sampler = None if self.sampler is None else canonical_name(self.sampler)
        known = option_names()
        unknown = sorted(set(self.options) - set(known))
        if unknown:
            raise DifftoolError(f"unknown sampler option(s) {', '.join(unknown)}; the samplers take: "
                                f"{', '.join(known)}")
        if sampler is not None:
            get_sampler(sampler).resolve({k: v for k, v in self.options.items() if v is not None})
        limit = max_steps or 10_000
        if self.steps is not None and not 1 <= self.steps <= limit:
            raise DifftoolError(f"steps must be between 1 and {limit}, got {self.steps}")
        if self.guidance is not None and not (math.isfinite(self.guidance) and self.guidance >= 0):
            raise DifftoolError(f"guidance must be a finite number >= 0 (1 = no guidance), got {self.guidance:g}")
        if not 0 <= self.seed <= MAX_SEED:
            raise DifftoolError(f"seed must be between 0 and {MAX_SEED}, got {self.seed}")
        for name, value in (("rows", self.rows), ("cols", self.cols)):
            if not MIN_GRID <= value <= MAX_GRID:
                raise DifftoolError(f"grid {name} must be between {MIN_GRID} and {MAX_GRID}, got {value}")
        return replace(self, sampler=sampler)


def parse_grid(text: str) -> tuple[int, int]:
    """``"4x4"`` -> ``(4, 4)`` (rows x cols, each 1..8); a single number means a square grid."""
    text = text.strip()
    if text.isdigit():
        rows = cols = int(text)
    else:
        match = _GRID_RE.match(text)
        if match is None:
            raise DifftoolError(f"grid size {text!r} is not ROWSxCOLS, e.g. 4x4")
        rows, cols = int(match[1]), int(match[2])
    if not (MIN_GRID <= rows <= MAX_GRID and MIN_GRID <= cols <= MAX_GRID):
        raise DifftoolError(f"grid size {text!r} is out of range: rows and cols must be 1..8")
    return rows, cols


def slug(text: str) -> str:
    """A file-name-safe version of ``text`` (mix text, labels)."""
    text = text.replace("=", "").replace(",", "+")
    return re.sub(r"[^A-Za-z0-9.+_-]+", "-", text).strip("-") or "uncond"
