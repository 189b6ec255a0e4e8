"""DPM-Solver++(2M) (Lu et al. 2022, arXiv 2211.01095, Algorithm 2), data prediction, midpoint form.

Matches diffusers' ``DPMSolverMultistepScheduler`` defaults (solver_order=2, algorithm_type="dpmsolver++",
solver_type="midpoint", final_sigmas_type="zero"): first order on the first step, second order after,
and first order on the last step, which lands on sigma = 0 (alpha_bar = 1) and so returns the x0
prediction itself. With alpha_t = sqrt(ab), sigma_t = sqrt(1 - ab), lambda = log(alpha / sigma):

    x_t = (sigma_t / sigma_s) x - alpha_t (e^{-h} - 1) (D0 + D1 / 2),   h = lambda_t - lambda_s,
    D0 = m0, D1 = (m0 - m1) / r0, r0 = h_prev / h   (D1 = 0 for first order).
"""

from __future__ import annotations

import math

import numpy as np

from difftool.errors import DifftoolError
from difftool.runtime.denoiser import EpsFn, Step, StepCallback
from difftool.runtime.noise import NoiseSource
from difftool.runtime.samplers._ops import clip_
from difftool.runtime.schedules import Schedule
from difftool.runtime.timesteps import plan


def half_lambda(ab: float) -> float:
    """lambda = log(alpha / sigma) = 0.5 * log(ab / (1 - ab))."""
    return 0.5 * math.log(ab / (1.0 - ab))


def dpmpp_2m(
    eps_fn: EpsFn,
    x: np.ndarray,
    schedule: Schedule,
    *,
    steps: int,
    noise: NoiseSource,
    callback: StepCallback | None = None,
    spacing: str = "trailing",
    clip: float | None = None,
    **options: object,
) -> np.ndarray:
    """DPM-Solver++(2M) sampling from x_T (B, C, H, W); deterministic, ``noise`` is never called.

    ``clip`` clamps each data prediction to +-clip (the thresholding DPM-Solver++ was designed for).
    """
    if options:
        raise DifftoolError(f"dpmpp_2m got unknown option(s) {sorted(options)}; it accepts spacing, clip")
    steps_plan = plan(schedule, steps, spacing)
    x = np.array(x, dtype=np.float32, order="C", copy=True)  # (B, C, H, W) working sample
    tmp = np.empty_like(x)
    m0, m1 = np.empty_like(x), np.empty_like(x)  # data predictions x0 of this and the previous step
    total = len(steps_plan)
    lam_prev = 0.0
    for index, (t, _prev, ab_s, ab_t) in enumerate(steps_plan):
        eps = eps_fn(x, t)  # (B, C, H, W)
        alpha_s, sigma_s = math.sqrt(ab_s), math.sqrt(1.0 - ab_s)
        np.multiply(eps, sigma_s, out=tmp)
        np.subtract(x, tmp, out=m0)
        m0 *= 1.0 / alpha_s  # m0 = x0 = (x - sigma_s eps) / alpha_s
        if clip is not None:
            clip_(m0, clip)
        lam_s = half_lambda(ab_s)
        if ab_t >= 1.0:  # sigma_t = 0: the first-order step returns x0 exactly
            np.copyto(x, m0)
        else:
            alpha_t, sigma_t = math.sqrt(ab_t), math.sqrt(1.0 - ab_t)
            h = half_lambda(ab_t) - lam_s
            k = -alpha_t * math.expm1(-h)  # -alpha_t (e^{-h} - 1)
            x *= sigma_t / sigma_s
            if index == 0:
                np.multiply(m0, k, out=tmp)
            else:
                half_over_r0 = 0.5 * h / (lam_s - lam_prev)
                np.multiply(m0, k * (1.0 + half_over_r0), out=tmp)
                x += tmp
                np.multiply(m1, -k * half_over_r0, out=tmp)
            x += tmp
        if callback is not None:
            callback(Step(index, total, t, x, m0))
        lam_prev = lam_s
        m0, m1 = m1, m0
    return x
