"""Ancestral DDPM sampler (Ho, Jain & Abbeel 2020, Algorithm 2), respaced for fewer steps."""

from __future__ import annotations

import math

import numpy as np

from difftool.errors import DifftoolError
from difftool.runtime.denoiser import EpsFn, Step, StepCallback
from difftool.runtime.noise import NoiseSource
from difftool.runtime.samplers._ops import clip_
from difftool.runtime.schedules import Schedule
from difftool.runtime.timesteps import PlanStep, plan

VARIANCES = ("posterior", "beta")


def step_alpha(schedule: Schedule, step: PlanStep) -> float:
    """alpha_t of one (possibly respaced) step: ab_t / ab_prev, or the schedule's own 1 - beta_t
    when the step is exactly one timestep (reproduces the course loop, whose ab_t[0] slot is 1)."""
    if step.t - step.prev == 1:
        return 1.0 - float(schedule.betas[step.t])
    return step.ab_t / step.ab_prev


def step_variance(variance: str, step: PlanStep, beta: float) -> float:
    """sigma^2: ``"beta"`` (course, sigma^2 = beta_t) or ``"posterior"`` (beta-tilde, diffusers fixed_small)."""
    if variance == "beta":
        return beta
    return max((1.0 - step.ab_prev) / (1.0 - step.ab_t) * beta, 1e-20)


def ddpm(
    eps_fn: EpsFn,
    x: np.ndarray,
    schedule: Schedule,
    *,
    steps: int | None = None,
    noise: NoiseSource,
    callback: StepCallback | None = None,
    variance: str = "beta",
    spacing: str = "leading",
    clip: float | None = None,
    **options: object,
) -> np.ndarray:
    """DDPM: x_prev = (x - eps (1 - a_t) / sqrt(1 - ab_t)) / sqrt(a_t) + sigma_t z, z = 0 on the last step.

    ``steps=None`` runs every timestep. ``clip`` clamps the x0 estimate and recomputes eps from it
    (equivalent to diffusers' x0-form mean). Returns the final sample (B, C, H, W) float32.
    """
    if options:
        raise DifftoolError(f"ddpm got unknown option(s) {sorted(options)}; it accepts variance, spacing, clip")
    if variance not in VARIANCES:
        raise DifftoolError(f"unknown DDPM variance {variance!r}; choose one of: {', '.join(VARIANCES)}")
    n_valid = schedule.t_max - schedule.t_min + 1
    steps_plan = plan(schedule, n_valid if steps is None else steps, spacing)
    x = np.array(x, dtype=np.float32, order="C", copy=True)  # (B, C, H, W) working sample
    tmp = np.empty_like(x)
    x0 = np.empty_like(x)
    want_x0 = callback is not None or clip is not None
    total = len(steps_plan)
    for index, step in enumerate(steps_plan):
        eps = eps_fn(x, step.t)  # (B, C, H, W)
        alpha = step_alpha(schedule, step)
        beta = 1.0 - alpha
        sqrt_1m_ab = math.sqrt(1.0 - step.ab_t)
        if want_x0:
            np.multiply(eps, sqrt_1m_ab, out=tmp)
            np.subtract(x, tmp, out=x0)
            x0 *= 1.0 / math.sqrt(step.ab_t)
            if clip is not None:
                clip_(x0, clip)
                # eps recomputed from the clipped x0: tmp = x - sqrt(ab) x0 = sqrt(1-ab) eps'
                np.multiply(x0, math.sqrt(step.ab_t), out=tmp)
                np.subtract(x, tmp, out=tmp)
                tmp *= beta / (1.0 - step.ab_t)
            else:
                np.multiply(eps, beta / sqrt_1m_ab, out=tmp)
        else:
            np.multiply(eps, beta / sqrt_1m_ab, out=tmp)
        x -= tmp
        x *= 1.0 / math.sqrt(alpha)
        if index < total - 1:  # no noise on the final step
            z = noise(x.shape[1:])  # (B, C, H, W)
            np.multiply(z, math.sqrt(step_variance(variance, step, beta)), out=tmp)
            x += tmp
        if callback is not None:
            callback(Step(index, total, step.t, x, x0))
    return x
