"""Noise schedules: small pure functions returning float64 numpy arrays.

A :class:`Schedule` is the resolved form of a :class:`~difftool.config.ScheduleConfig`: the
``alpha_bar`` table indexed by training timestep, the valid timestep range, and the mapping from a
timestep to what the network is fed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from difftool.config import ScheduleConfig
from difftool.errors import DifftoolError


def linear_betas(num: int, beta_start: float = 1e-4, beta_end: float = 0.02) -> np.ndarray:
    """``num`` betas evenly spaced from ``beta_start`` to ``beta_end`` (DDPM, Ho et al. 2020)."""
    return np.linspace(beta_start, beta_end, num, dtype=np.float64)


def scaled_linear_betas(num: int, beta_start: float = 0.00085, beta_end: float = 0.012) -> np.ndarray:
    """``num`` betas whose square roots are evenly spaced (diffusers' ``scaled_linear``, latent diffusion)."""
    return np.linspace(math.sqrt(beta_start), math.sqrt(beta_end), num, dtype=np.float64) ** 2


def cosine_betas(num: int, s: float = 0.008, max_beta: float = 0.999) -> np.ndarray:
    """Betas of the cosine schedule (Nichol & Dhariwal 2021, eq. 17), clipped at ``max_beta``.

    Same as diffusers' ``squaredcos_cap_v2``.
    """

    def f(t: np.ndarray) -> np.ndarray:
        return np.cos((t / num + s) / (1 + s) * math.pi / 2) ** 2

    steps = np.arange(num, dtype=np.float64)
    betas = 1.0 - f(steps + 1) / f(steps)
    return np.minimum(betas, max_beta)


def alpha_bar(betas: np.ndarray) -> np.ndarray:
    """Cumulative product of ``1 - beta``."""
    return np.cumprod(1.0 - np.asarray(betas, dtype=np.float64))


def course_alpha_bar(num_timesteps: int = 500, beta1: float = 1e-4, beta2: float = 0.02):
    """The DeepLearning.AI course schedule: ``T + 1`` entries, slot 0 forced to 1.

    Returns ``(betas, alpha_bar)``; ``alpha_bar[t]`` for ``t >= 1`` includes the factor
    ``1 - betas[0]`` exactly as the course's ``exp(cumsum(log(a_t)))`` does.
    """
    betas = (beta2 - beta1) * np.linspace(0.0, 1.0, num_timesteps + 1, dtype=np.float64) + beta1
    ab = np.exp(np.cumsum(np.log(1.0 - betas)))
    ab[0] = 1.0
    return betas, ab


@dataclass(frozen=True)
class Schedule:
    """A resolved schedule. ``alpha_bar[t]`` is indexed by the training timestep ``t``.

    Valid timesteps for sampling are ``t_min..t_max`` (``0..T-1`` standard, ``1..T`` course).
    Stepping past ``t_min`` lands on ``final_alpha_bar`` (= 1: the clean image).
    """

    config: ScheduleConfig
    betas: np.ndarray
    alpha_bar: np.ndarray
    t_min: int
    t_max: int
    final_alpha_bar: float = 1.0

    @property
    def num_timesteps(self) -> int:
        return self.config.num_timesteps

    def ab(self, t: int) -> float:
        """alpha_bar at timestep ``t``; ``t < t_min`` means 'past the end' (the clean image)."""
        return float(self.alpha_bar[t]) if t >= self.t_min else self.final_alpha_bar

    def model_time(self, t: int) -> np.float32:
        """What the network is fed for timestep ``t`` (see ``ScheduleConfig.time_input``)."""
        if self.config.time_input == "fraction":
            return np.float32(t / self.config.num_timesteps)
        return np.float32(t)

    def add_noise(self, x0: np.ndarray, noise: np.ndarray, t: np.ndarray) -> np.ndarray:
        """Forward process q(x_t | x_0) for a batch of timesteps ``t`` (B,)."""
        ab = self.alpha_bar[np.asarray(t)].reshape(-1, *([1] * (x0.ndim - 1)))
        return (np.sqrt(ab) * x0 + np.sqrt(1.0 - ab) * noise).astype(x0.dtype)


def make_schedule(config: ScheduleConfig) -> Schedule:
    """Resolve a :class:`ScheduleConfig` into its arrays."""
    T = config.num_timesteps
    if T < 2:
        raise DifftoolError(f"a schedule needs at least 2 timesteps, got {T}")
    if config.convention == "course":
        if config.kind != "linear":
            raise DifftoolError("the course convention only defines a linear schedule")
        betas, ab = course_alpha_bar(T, config.beta_start, config.beta_end)
        return Schedule(config, betas, ab, t_min=1, t_max=T)
    if config.kind == "linear":
        betas = linear_betas(T, config.beta_start, config.beta_end)
    elif config.kind == "scaled_linear":
        betas = scaled_linear_betas(T, config.beta_start, config.beta_end)
    elif config.kind == "cosine":
        betas = cosine_betas(T)
    else:
        raise DifftoolError(f"unknown schedule kind {config.kind!r} (expected 'linear', 'scaled_linear' or "
                            "'cosine')")
    return Schedule(config, betas, alpha_bar(betas), t_min=0, t_max=T - 1)
