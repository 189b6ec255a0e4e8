"""What the user asks for: one frozen :class:`Settings` record, plus parsers for mix and grid text.

Everything here is pure (no Textual), so the controls, the history, the sidecar JSON and the tests all
share one definition of "the settings of a generation".
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

from difftool.errors import DifftoolError

SAMPLERS: dict[str, str] = {"ddpm": "DDPM", "ddim": "DDIM", "dpmpp_2m": "DPM-Solver++ (2M)"}
"""Sampler id -> label shown in the UI (ids are what :class:`SampleRequest` takes)."""

MIN_GRID, MAX_GRID = 1, 8
MAX_SEED = 2**31 - 1

_GRID_RE = re.compile(r"^\s*(\d+)\s*[xX×*]\s*(\d+)\s*$")


@dataclass(frozen=True)
class Settings:
    """The knobs of one generation. ``mix`` is canonical mix text ("" = unconditional)."""

    mix: str = ""
    sampler: str = "ddim"
    steps: int = 25
    eta: float = 0.0
    guidance: float = 1.0
    seed: int = 0
    random_seed: bool = False
    rows: int = 4
    cols: int = 4

    @property
    def n(self) -> int:
        return self.rows * self.cols

    def seeds(self) -> list[int]:
        """Per-sprite seeds: sprite ``i`` uses ``seed + i`` (so it can be resampled alone)."""
        return [self.seed + i for i in range(self.n)]

    def with_(self, **changes: Any) -> Settings:
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        """One short line for the history list and the status bar."""
        mix = self.mix or "uncond"
        return f"{mix} {self.sampler} {self.steps}st g{self.guidance:g} s{self.seed} {self.rows}x{self.cols}"

    def validate(self, max_steps: int | None = None) -> Settings:
        """Raise :class:`DifftoolError` with a fix hint when a value is out of range; return self."""
        if self.sampler not in SAMPLERS:
            raise DifftoolError(f"unknown sampler {self.sampler!r}; choose one of {', '.join(SAMPLERS)}")
        limit = max_steps or 10_000
        if not 1 <= self.steps <= limit:
            raise DifftoolError(f"steps must be between 1 and {limit}, got {self.steps}")
        if self.eta < 0:
            raise DifftoolError(f"eta must be >= 0, got {self.eta:g}")
        if self.guidance < 0:
            raise DifftoolError(f"guidance must be >= 0 (1 = no guidance), got {self.guidance:g}")
        if not 0 <= self.seed <= MAX_SEED:
            raise DifftoolError(f"seed must be between 0 and {MAX_SEED}, got {self.seed}")
        for name, value in (("rows", self.rows), ("cols", self.cols)):
            if not MIN_GRID <= value <= MAX_GRID:
                raise DifftoolError(f"grid {name} must be between {MIN_GRID} and {MAX_GRID}, got {value}")
        return self


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


def parse_mix(spec: str, class_names: Sequence[str], num_classes: int) -> dict[str, float]:
    """Parse ``"hero"`` or ``"hero=0.6,food=0.4"`` into ``{class name: weight}``.

    A bare name weighs 1. Classes may also be given by index (``"0=0.5,3=0.5"``). Weights are kept as
    written (not normalised): the remainder ``1 - sum`` is the unconditional share. ``""`` means
    unconditional (an empty dict), as does ``"none"``.
    """
    names = list(class_names) or [str(i) for i in range(num_classes)]
    mix: dict[str, float] = {}
    if spec.strip().lower() == "none":
        return mix
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        key, sep, raw = part.partition("=") if "=" in part else part.partition(":")
        key = key.strip()
        if key in names:
            name = key
        elif key.isdigit() and int(key) < len(names):
            name = names[int(key)]
        else:
            known = ", ".join(names) if names else "none (this model is unconditional)"
            raise DifftoolError(f"unknown class {key!r} in mix {spec!r}; this model knows: {known}")
        try:
            weight = float(raw) if sep else 1.0
        except ValueError:
            raise DifftoolError(f"weight {raw.strip()!r} for {name!r} is not a number (mix {spec!r})") from None
        if weight < 0 or weight != weight:
            raise DifftoolError(f"weight for {name!r} must be >= 0, got {raw.strip()} (mix {spec!r})")
        if name in mix:
            raise DifftoolError(f"class {name!r} appears twice in mix {spec!r}")
        mix[name] = weight
    return mix


def format_mix(mix: dict[str, float]) -> str:
    """The canonical text of a parsed mix: ``"hero"`` for a lone weight-1 class, else ``a=w,b=w``."""
    if len(mix) == 1 and next(iter(mix.values())) == 1.0:
        return next(iter(mix))
    return ",".join(f"{name}={weight:g}" for name, weight in mix.items())


def slug(text: str) -> str:
    """A file-name-safe version of ``text`` (mix text, labels)."""
    text = text.replace("=", "").replace(",", "+")
    return re.sub(r"[^A-Za-z0-9.+_-]+", "-", text).strip("-") or "uncond"
