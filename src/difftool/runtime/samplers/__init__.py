"""Samplers: pure functions ``sampler(eps_fn, x_T, schedule, *, steps, noise, callback=None, **options)``.

* ``ddpm``: ancestral DDPM (Ho et al. 2020), course or posterior variance, respaceable.
* ``ddim``: DDIM (Song et al. 2021), eta >= 0.
* ``dpmpp_2m``: DPM-Solver++(2M) (Lu et al. 2022).
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from difftool.errors import DifftoolError
from difftool.runtime.denoiser import EpsFn, StepCallback
from difftool.runtime.noise import NoiseSource
from difftool.runtime.samplers.ddim import ddim
from difftool.runtime.samplers.ddpm import ddpm
from difftool.runtime.samplers.dpmpp import dpmpp_2m
from difftool.runtime.schedules import Schedule


class Sampler(Protocol):
    """The common sampler signature (x is x_T (B, C, H, W) float32; returns x_0 of the same shape)."""

    def __call__(
        self,
        eps_fn: EpsFn,
        x: np.ndarray,
        schedule: Schedule,
        *,
        steps: int,
        noise: NoiseSource,
        callback: StepCallback | None = None,
        **options: object,
    ) -> np.ndarray: ...


SAMPLERS: dict[str, Sampler] = {"ddpm": ddpm, "ddim": ddim, "dpmpp_2m": dpmpp_2m}

ALIASES: dict[str, str] = {
    "dpm++": "dpmpp_2m",
    "dpmpp": "dpmpp_2m",
    "dpm++2m": "dpmpp_2m",
    "dpm++_2m": "dpmpp_2m",
    "dpmpp-2m": "dpmpp_2m",
}


def canonical_name(name: str) -> str:
    """The registry name for ``name`` or an alias (case-insensitive); DifftoolError if unknown."""
    key = name.strip().lower()
    key = ALIASES.get(key, key)
    if key not in SAMPLERS:
        raise DifftoolError(
            f"unknown sampler {name!r}; choose one of: {', '.join(SAMPLERS)} (aliases: dpm++, dpmpp)"
        )
    return key


def get_sampler(name: str) -> Sampler:
    """Look a sampler up by name or alias."""
    return SAMPLERS[canonical_name(name)]


__all__ = ["SAMPLERS", "Sampler", "canonical_name", "ddim", "ddpm", "dpmpp_2m", "get_sampler"]
