"""Sampling defaults, resolved in one place for every front end (CLI, TUI, eval, server, export).

A setting the user leaves out (None) becomes, in order: the model card's recommendation
(``ModelCard.sampling``), its origin's own default (a course model samples like the course), then the
generic default. Sampler options (eta, variance, ...) come from the sampler registry: a recommended
option applies only to the recommended sampler; another sampler gets its own option defaults.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from difftool.config import ORIGIN_SAMPLING, ModelCard
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
    resolved = {opt.name: option_value(card, spec, opt.name, given.get(opt.name), recommended)
                for opt in spec.options}
    return Settings(sampler=name, steps=_steps(card, spec, steps), guidance=_guidance(card, guidance, conditioned),
                    spacing=spacing_for(card, spacing), options=spec.resolve(resolved))


def option_value(card: ModelCard, spec, name: str, given: object = None, recommended: bool = False) -> object:
    """A sampler option's value: given, else the card's (when it recommends this sampler, or names the option
    itself in its ``sampling``, e.g. a diffusers folder's DDPM variance), else the option's default."""
    if given is not None:
        return given
    explicit = name in card.sampling or name in ORIGIN_SAMPLING.get(card.source, {})
    if (recommended or explicit) and _has(card, name):
        return card.recommended(name)
    return next(o.default for o in spec.options if o.name == name)


def request_options(card: ModelCard, spec, request) -> dict[str, object]:
    """The sampler options of a SampleRequest, with its None fields resolved (:func:`option_value`)."""
    recommended = canonical_name(str(card.recommended("sampler"))) == spec.name
    return spec.resolve({o.name: option_value(card, spec, o.name, getattr(request, o.name, None), recommended)
                         for o in spec.options})


def spacing_for(card: ModelCard, spacing: str | None) -> str | None:
    """Given spacing, else the model's (a diffusers scheduler's ``timestep_spacing``), else None: the
    sampler's own default."""
    return spacing if spacing is not None else card.recommended("spacing")


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
        raise DifftoolError(f"{card.no_guidance_reason}; drop --guidance")
    return guidance
