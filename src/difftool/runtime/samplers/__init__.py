"""The sampler registry: every sampler is registered here once, and every front end reads it.

A sampler is a :class:`~difftool.runtime.samplers.spec.SamplerSpec` whose pure function maps a timestep
plan to a coefficient table (:mod:`~difftool.runtime.samplers.table`); the engine applies the table.
Adding a sampler: write its module (table function + ``SPEC``), add it to ``_SPECS`` below, test it.
"""

from __future__ import annotations

from difftool.errors import DifftoolError
from difftool.runtime.samplers import ddim as _ddim
from difftool.runtime.samplers import ddpm as _ddpm
from difftool.runtime.samplers import dpmpp as _dpmpp
from difftool.runtime.samplers import dpmpp_sde as _dpmpp_sde
from difftool.runtime.samplers import unipc as _unipc
from difftool.runtime.samplers.spec import Option, SamplerSpec
from difftool.runtime.samplers.table import Coefficients

_SPECS: tuple[SamplerSpec, ...] = (_ddpm.SPEC, _ddim.SPEC, _dpmpp.SPEC, _dpmpp_sde.SPEC, _unipc.SPEC)

SAMPLERS: dict[str, SamplerSpec] = {spec.name: spec for spec in _SPECS}
ALIASES: dict[str, str] = {alias: spec.name for spec in _SPECS for alias in spec.aliases}
Sampler = SamplerSpec  # the common signature: spec(eps_fn, x_T, schedule, *, steps, noise, callback, **options)

# Module-level names for direct use (``ddim(eps_fn, x_T, schedule, steps=..., noise=...)``).
ddpm, ddim, dpmpp_2m, unipc = _ddpm.SPEC, _ddim.SPEC, _dpmpp.SPEC, _unipc.SPEC
dpmpp_2m_sde = _dpmpp_sde.SPEC


def canonical_name(name: str) -> str:
    """The registry name for ``name`` or an alias (case-insensitive); DifftoolError if unknown."""
    key = str(name).strip().lower()
    key = ALIASES.get(key, key)
    if key not in SAMPLERS:
        raise DifftoolError(f"unknown sampler {name!r}; choose one of: {', '.join(SAMPLERS)} "
                            f"(aliases: {', '.join(ALIASES)})")
    return key


def get_sampler(name: str) -> SamplerSpec:
    """Look a sampler up by name or alias."""
    return SAMPLERS[canonical_name(name)]


def choices() -> tuple[str, ...]:
    """Every name and alias a ``--sampler`` flag accepts."""
    return (*SAMPLERS, *ALIASES)


def help_text() -> str:
    """``ddpm | ddim | ...`` for flag help."""
    return " | ".join(SAMPLERS)


def option_names() -> tuple[str, ...]:
    """Every sampler option name (eta, variance, ...), each once."""
    return tuple(dict.fromkeys(o.name for spec in _SPECS for o in spec.options))


def __getattr__(name: str):
    """``SamplerRun`` and ``run`` (the numpy engine) load on first use, so the registry imports without numpy."""
    if name in ("SamplerRun", "run"):
        from difftool.runtime.samplers import engine

        return getattr(engine, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["ALIASES", "SAMPLERS", "Coefficients", "Option", "Sampler", "SamplerRun", "SamplerSpec",
           "canonical_name", "choices", "ddim", "ddpm", "dpmpp_2m", "dpmpp_2m_sde", "get_sampler", "help_text",
           "option_names", "run", "unipc"]
