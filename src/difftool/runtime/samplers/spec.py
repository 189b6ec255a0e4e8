"""What a sampler is to the rest of difftool: :class:`SamplerSpec`, registered once in ``samplers/__init__``.

A spec names the sampler (name, aliases, label), declares its options (type, default, help) and its
default timestep spacing, and holds the one pure function that turns a timestep plan into its
coefficient table. Every front end (CLI, TUI, eval, bench, server, generator export) reads specs; the
spec is also callable with the classic loop signature ``spec(eps_fn, x_T, schedule, steps=, noise=)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from difftool.errors import DifftoolError

if TYPE_CHECKING:  # the registry imports without numpy (``difftool --help`` stays light)
    import numpy as np

    from difftool.runtime.denoiser import EpsFn, StepCallback
    from difftool.runtime.noise import NoiseSource
    from difftool.runtime.samplers.table import Coefficients
    from difftool.runtime.schedules import Schedule
    from difftool.runtime.timesteps import PlanStep


@dataclass(frozen=True)
class Option:
    """One sampler option: ``name`` (also the SampleRequest field), its type, default and help."""

    name: str
    kind: type
    default: object
    help: str
    choices: tuple[str, ...] = ()
    minimum: float | None = None

    def check(self, value: object, sampler: str) -> object:
        """``value`` converted and validated (DifftoolError naming the option otherwise)."""
        try:
            value = self.kind(value)
        except (TypeError, ValueError):
            raise DifftoolError(f"{sampler} option {self.name} must be a {self.kind.__name__}, got {value!r}") from None
        if self.choices and value not in self.choices:
            raise DifftoolError(f"unknown {sampler} {self.name} {value!r}; choose one of: {', '.join(self.choices)}")
        if self.kind is float and not math.isfinite(value):
            raise DifftoolError(f"{sampler} option {self.name} must be finite, got {value}")
        if self.minimum is not None and value < self.minimum:
            raise DifftoolError(f"{self.name} must be >= {self.minimum:g}, got {value:g}")
        return value


TableFn = Callable[..., "Coefficients"]  # (plan: list[PlanStep], schedule: Schedule, **options) -> Coefficients


@dataclass(frozen=True)
class SamplerSpec:
    """A registered sampler. ``coefficients(plan, schedule, **options)`` is its pure function."""

    name: str
    label: str  # display name, e.g. "DPM-Solver++(2M)"
    short: str  # compact name for tables, e.g. "DPM++"
    coefficients: TableFn
    options: tuple[Option, ...] = ()
    aliases: tuple[str, ...] = ()
    default_spacing: str = "trailing"
    all_steps: bool = False  # default step count: every timestep of the schedule (ancestral DDPM)
    eval_steps: tuple[int, ...] = ()  # step counts `difftool eval` measures besides the model's default
    summary: str = ""
    diffusers_scheduler: str = ""  # the diffusers scheduler class this sampler matches (import / bench)
    # the scheduler-config entries that pick this sampler among those of the same class (import / bench)
    diffusers_config: tuple[tuple[str, object], ...] = ()
    references: tuple[str, ...] = field(default=())

    # -- options ---------------------------------------------------------------------------------
    def option_names(self) -> tuple[str, ...]:
        return tuple(o.name for o in self.options)

    def resolve(self, given: dict[str, object]) -> dict[str, object]:
        """Every option's value: ``given`` (validated) over the defaults; unknown names raise."""
        unknown = sorted(set(given) - set(self.option_names()))
        if unknown:
            accepted = ", ".join((*self.option_names(), "spacing", "clip"))
            raise DifftoolError(f"{self.name} got unknown option(s) {unknown}; it accepts {accepted}")
        return {o.name: o.check(given.get(o.name, o.default), self.name) for o in self.options}

    def table(self, schedule: Schedule, steps: int | None, spacing: str | None = None,
              **options: object) -> Coefficients:
        """The coefficient table for ``steps`` steps (None: every timestep when ``all_steps``, else an error)."""
        return self.coefficients(self.plan(schedule, steps, spacing), schedule, **self.resolve(options))

    def plan(self, schedule: Schedule, steps: int | None, spacing: str | None = None) -> list[PlanStep]:
        from difftool.runtime.timesteps import plan

        if steps is None:
            if not self.all_steps:
                raise DifftoolError(f"{self.name} needs a step count")
            steps = schedule.t_max - schedule.t_min + 1
        return plan(schedule, steps, spacing or self.default_spacing)

    # -- the classic loop signature ------------------------------------------------------------------
    def __call__(self, eps_fn: EpsFn, x: np.ndarray, schedule: Schedule, *, steps: int | None = None,
                 noise: NoiseSource, callback: StepCallback | None = None, spacing: str | None = None,
                 clip: float | None = None, **options: object) -> np.ndarray:
        """Sample from x_T ``x`` (B, C, H, W) (not modified); returns x_0 (B, C, H, W) float32."""
        from difftool.runtime.samplers.engine import run

        table = self.table(schedule, steps, spacing, **options)
        return run(eps_fn, x, table, noise, clip=clip, callback=callback)

    def __repr__(self) -> str:
        return f"<sampler {self.name}>"
