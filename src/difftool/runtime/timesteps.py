"""Inference timestep lists ("leading", "trailing", "linspace"; Lin et al. 2023, arXiv 2305.08891 Table 2).

All lists are descending training timesteps inside the schedule's valid range ``t_min..t_max``
(``0..T-1`` standard, ``1..T`` course), with ``N = t_max - t_min + 1`` valid timesteps and
``1 <= steps <= N``:

* ``leading``: the ``steps`` smallest multiples of ``s = N // steps`` that are ``>= t_min``.
  Standard: ``(steps-1)*s, ..., s, 0`` (diffusers, ``steps_offset=0``). Course: ``steps*s, ..., 2s, s``,
  which for ``steps`` dividing ``T`` is the course DDIM loop ``T, T-s, ..., s``.
* ``trailing``: counted down from ``t_max`` by ``N / steps``:
  ``t_min - 1 + round(N - i * N / steps)``, ``i = 0..steps-1`` (diffusers; its float ``arange`` sometimes
  yields one extra entry ``-1``, which is dropped here). Course with ``steps`` dividing ``T``: same list
  as ``leading``.
* ``linspace``: ``t_min + round(linspace(0, N - 1, steps))`` descending (diffusers DDIM/DDPM). With
  ``steps = 1`` this is ``[t_min]``, as in diffusers.

Every step goes from its timestep to the *next entry of the list* (never to ``t - N // steps``), and the
last step goes "past the end" to ``schedule.final_alpha_bar`` (= 1, the clean image).
"""

from __future__ import annotations

import operator
from typing import NamedTuple

import numpy as np

from difftool.errors import DifftoolError
from difftool.runtime.schedules import Schedule

SPACINGS = ("leading", "trailing", "linspace")

# alpha_bar is floored here before any 1/sqrt(alpha_bar), so a zero-SNR table cannot produce inf/NaN.
AB_FLOOR = 1e-12


class PlanStep(NamedTuple):
    """One sampler step: from timestep ``t`` to ``prev`` (``prev < t_min``: past the end)."""

    t: int
    prev: int
    ab_t: float  # alpha_bar at t, floored at AB_FLOOR
    ab_prev: float  # alpha_bar at prev (final_alpha_bar past the end)


def timesteps(schedule: Schedule, steps: int, spacing: str) -> np.ndarray:
    """Descending int64 training timesteps for ``steps`` sampler steps (see the module docstring)."""
    n_valid = schedule.t_max - schedule.t_min + 1
    steps = _check_steps(steps, n_valid)
    if spacing == "leading":
        stride = n_valid // steps
        first = -(-schedule.t_min // stride) * stride  # smallest multiple of stride >= t_min
        ts = first + stride * np.arange(steps, dtype=np.int64)
        return ts[::-1].copy()
    if spacing == "trailing":
        ratio = n_valid / steps
        # Same float arithmetic as diffusers so ties round identically; drop its spurious extra entry.
        ts = np.round(np.arange(n_valid, 0, -ratio))[:steps].astype(np.int64)
        return ts + (schedule.t_min - 1)
    if spacing == "linspace":
        ts = np.linspace(0, n_valid - 1, steps).round()[::-1].astype(np.int64)
        return ts + schedule.t_min
    raise DifftoolError(f"unknown timestep spacing {spacing!r}; choose one of: {', '.join(SPACINGS)}")


def plan(schedule: Schedule, steps: int, spacing: str) -> list[PlanStep]:
    """The (t, prev, alpha_bar_t, alpha_bar_prev) of every step, prev taken from the list itself.

    Plans are cached on the (frozen) schedule per (steps, spacing): building one costs more than a
    DDIM step's arithmetic, and interactive use asks for the same plan again and again.
    """
    cache = schedule.__dict__.setdefault("_plan_cache", {})  # frozen dataclass: not a field, not compared
    key = (_check_steps(steps, schedule.t_max - schedule.t_min + 1), spacing)
    cached = cache.get(key)
    if cached is None:
        ts = timesteps(schedule, steps, spacing).tolist()
        prevs = ts[1:] + [schedule.t_min - 1]
        cached = cache[key] = tuple(
            PlanStep(t, p, max(schedule.ab(t), AB_FLOOR), schedule.ab(p))
            for t, p in zip(ts, prevs, strict=True)
        )
    return list(cached)


def _check_steps(steps: int, n_valid: int) -> int:
    """Validate a step count against the number of valid timesteps."""
    try:
        value = operator.index(steps)
    except TypeError:
        raise DifftoolError(f"steps must be an integer, got {steps!r}") from None
    if not 1 <= value <= n_valid:
        raise DifftoolError(
            f"steps must be between 1 and {n_valid} for this {n_valid}-timestep schedule, got {value}"
        )
    return value
