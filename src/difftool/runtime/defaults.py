"""Sampling defaults, resolved in one place for every front end (CLI, TUI, eval, server, export).

A setting the user leaves out (None) becomes, in order: the model card's recommendation
(``ModelCard.sampling``), its origin's own default (a course model samples like the course), then the
generic default. Sampler options (eta, variance, ...) come from the sampler registry: a recommended
option applies only to the recommended sampler; another sampler gets its own option defaults.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from difftool.config import ModelCard
from difftool.errors import DifftoolError
from difftool.runtime.samplers import canonical_name, get_sampler


@dataclass(frozen=True)
class Settings:
    """Fully resolved sampler settings: ``options`` holds the sampler's own options (eta, variance ...)."""

    sampler: str
    steps: int
    guidance: float
    spacing: str | None = None
    options: dict[str, object] = field(default_factory=dict)

    def option(self, name: str, default: object = None) -> object:
        return self.options.get(name, default)


def resolve(card: ModelCard, *, conditioned: bool, sampler: str | None = None, steps: int | None = None,
            guidance: float | None = None, spacing: str | None = None, **options: object) -> Settings:
    """The settings for one generation; ``None`` values take the model's defaults (module docstring).

    ``conditioned`` says whether a class or mix was asked for (guidance applies only then). Options that
    the chosen sampler does not take are ignored when None and rejected otherwise.
    """
    name = canonical_name(sampler if sampler is not None else str(card.recommended("sampler")))
    spec = get_sampler(name)
    recommended = canonical_name(str(card.recommended("sampler"))) == name
    given = {k: v for k, v in options.items() if v is not None}
    foreign = sorted(set(given) - set(spec.option_names()))
    if foreign:
        raise DifftoolError(f"{name} takes no {', '.join(foreign)} (its options: "
                            f"{', '.join(spec.option_names()) or 'none'})")
    resolved = {}
    for opt in spec.options:
        if opt.name in given:
            resolved[opt.name] = given[opt.name]
        elif recommended and _has(card, opt.name):
            resolved[opt.name] = card.recommended(opt.name)
        else:
            resolved[opt.name] = opt.default
    return Settings(sampler=name, steps=_steps(card, spec, steps), guidance=_guidance(card, guidance, conditioned),
                    spacing=spacing, options=spec.resolve(resolved))


def _has(card: ModelCard, key: str) -> bool:
    """Whether the card (or its origin) recommends ``key``."""
    try:
        card.recommended(key)
    except KeyError:
        return False
    return True


def _steps(card: ModelCard, spec, steps: int | None) -> int:
    """Given steps, else every timestep for all-step samplers (DDPM), else the recommended count."""
    if steps is not None:
        return int(steps)
    if spec.all_steps:
        return card.schedule.num_timesteps
    return int(card.recommended("steps"))


def _guidance(card: ModelCard, guidance: float | None, conditioned: bool) -> float:
    """Given guidance (finite, >= 0), else the recommendation when a class or mix is asked for, else 1."""
    if guidance is None:
        return float(card.recommended("guidance")) if (conditioned and card.supports_guidance) else 1.0
    guidance = float(guidance)
    if not math.isfinite(guidance) or guidance < 0:
        raise DifftoolError(f"guidance must be a finite number >= 0 (1 = no guidance), got {guidance}")
    if guidance != 1.0 and not card.supports_guidance:
        raise DifftoolError("this model is unconditional: classifier-free guidance needs a class-conditional "
                            "model; drop --guidance")
    return guidance
