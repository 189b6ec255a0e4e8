"""DDIM sampler (Song, Meng & Ermon 2021, "Denoising Diffusion Implicit Models", eqs. 12 and 16)."""

from __future__ import annotations

import math

import numpy as np

from difftool.errors import DifftoolError
from difftool.runtime.denoiser import EpsFn, Step, StepCallback
from difftool.runtime.noise import NoiseSource
from difftool.runtime.samplers._ops import clip_
from difftool.runtime.schedules import Schedule
from difftool.runtime.timesteps import plan


def ddim_sigma(eta: float, ab_t: float, ab_prev: float) -> float:
    """sigma_t of DDIM eq. 16: eta * sqrt((1-ab_prev)/(1-ab_t)) * sqrt(1 - ab_t/ab_prev)."""
    if eta == 0.0:
        return 0.0
    var = (1.0 - ab_prev) / max(1.0 - ab_t, 1e-20) * (1.0 - ab_t / ab_prev)
    return eta * math.sqrt(max(var, 0.0))


def ddim(
    eps_fn: EpsFn,
    x: np.ndarray,
    schedule: Schedule,
    *,
    steps: int,
    noise: NoiseSource,
    callback: StepCallback | None = None,
    eta: float = 0.0,
    spacing: str = "trailing",
    clip: float | None = None,
    **options: object,
) -> np.ndarray:
    """DDIM: x_prev = sqrt(ab_prev) x0 + sqrt(1 - ab_prev - sigma^2) eps + sigma z (eq. 12).

    ``x`` is x_T (B, C, H, W) and is not modified. ``eta = 0`` is deterministic; noise is drawn only
    on steps where sigma > 0. ``clip`` clamps the x0 estimate to +-clip and recomputes eps from
    the clamped x0 (as improved-diffusion does; diffusers' ``use_clipped_model_output=True``), so the
    update stays consistent with x_t. Returns the final sample (B, C, H, W) float32.
    """
    if options:
        raise DifftoolError(f"ddim got unknown option(s) {sorted(options)}; it accepts eta, spacing, clip")
    if eta < 0:
        raise DifftoolError(f"eta must be >= 0, got {eta}")
    steps_plan = plan(schedule, steps, spacing)
    x = np.array(x, dtype=np.float32, order="C", copy=True)  # (B, C, H, W) working sample
    tmp = np.empty_like(x)
    x0 = np.empty_like(x)
    want_x0 = callback is not None or clip is not None
    total = len(steps_plan)
    for index, (t, _prev, ab_t, ab_prev) in enumerate(steps_plan):
        eps = eps_fn(x, t)  # (B, C, H, W)
        sigma = ddim_sigma(eta, ab_t, ab_prev)
        sqrt_ab, sqrt_1m_ab, sqrt_ab_prev = math.sqrt(ab_t), math.sqrt(1.0 - ab_t), math.sqrt(ab_prev)
        c_eps = math.sqrt(max(1.0 - ab_prev - sigma * sigma, 0.0))
        if want_x0:
            # x0 = (x - sqrt(1-ab) eps) / sqrt(ab); every read of eps happens before x is written.
            np.multiply(eps, sqrt_1m_ab, out=tmp)
            np.subtract(x, tmp, out=x0)
            x0 *= 1.0 / sqrt_ab
            if clip is not None:
                clip_(x0, clip)
                # Direction from the eps consistent with the clipped x0 (improved-diffusion's DDIM;
                # diffusers' use_clipped_model_output): eps' = (x - sqrt(ab) x0) / sqrt(1 - ab).
                np.multiply(x0, sqrt_ab, out=tmp)
                np.subtract(x, tmp, out=tmp)
                tmp *= c_eps / sqrt_1m_ab
            else:
                np.multiply(eps, c_eps, out=tmp)
            np.multiply(x0, sqrt_ab_prev, out=x)
        else:
            # Same update with x0 folded in: x_prev = k_x x + k_eps eps (three array passes).
            np.multiply(eps, c_eps - sqrt_ab_prev * sqrt_1m_ab / sqrt_ab, out=tmp)
            x *= sqrt_ab_prev / sqrt_ab
        x += tmp
        if sigma > 0.0:
            z = noise(x.shape[1:])  # (B, C, H, W)
            np.multiply(z, sigma, out=tmp)
            x += tmp
        if callback is not None:
            callback(Step(index, total, t, x, x0))
    return x
