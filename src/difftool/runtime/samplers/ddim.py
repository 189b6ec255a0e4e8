"""DDIM (Song, Meng & Ermon 2021, "Denoising Diffusion Implicit Models", eqs. 12 and 16).

    x_prev = sqrt(ab_prev) x0 + sqrt(1 - ab_prev - sigma^2) eps + sigma z,
    sigma  = eta sqrt((1 - ab_prev) / (1 - ab_t)) sqrt(1 - ab_t / ab_prev).

``eta = 0`` is deterministic, ``eta = 1`` is DDPM's posterior noise, and ``eta > 1`` adds extra noise: each
step's sigma is then capped at ``sqrt(1 - ab_prev)``, where the step re-noises the x0 estimate entirely
(``u_eps = 0``), so x_prev keeps the variance of its timestep (diffusers' DDIMScheduler takes the square
root of a negative number there and returns NaN). With clipping, eps is re-derived from the clamped x0
(improved-diffusion; diffusers' ``use_clipped_model_output=True``), so the update stays consistent with x_t.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from difftool.runtime.samplers.spec import Option, SamplerSpec
from difftool.runtime.samplers.table import Coefficients, TableBuilder

if TYPE_CHECKING:
    from difftool.runtime.schedules import Schedule
    from difftool.runtime.timesteps import PlanStep


def ddim_sigma(eta: float, ab_t: float, ab_prev: float) -> float:
    """sigma_t of DDIM eq. 16, at most sqrt(1 - ab_prev) (reached only for eta > 1)."""
    if eta == 0.0:
        return 0.0
    var = (1.0 - ab_prev) / max(1.0 - ab_t, 1e-20) * (1.0 - ab_t / ab_prev)
    return min(eta * math.sqrt(max(var, 0.0)), math.sqrt(max(1.0 - ab_prev, 0.0)))


def ddim_table(steps: list[PlanStep], schedule: Schedule, *, eta: float) -> Coefficients:
    """DDIM's coefficients: u_x0 = sqrt(ab_prev), u_eps = sqrt(1 - ab_prev - sigma^2), sigma."""
    b = TableBuilder()
    for step in steps:
        sigma = ddim_sigma(eta, step.ab_t, step.ab_prev)
        b.step(step.t, step.ab_t, u_xc=0.0, u_x0=math.sqrt(step.ab_prev),
               u_eps=math.sqrt(max(1.0 - step.ab_prev - sigma * sigma, 0.0)), sigma=sigma)
    return b.build()


SPEC = SamplerSpec(
    name="ddim", label="DDIM", short="DDIM", coefficients=ddim_table,
    options=(Option("eta", float, 0.0, "DDIM noise: 0 deterministic, 1 DDPM-like, >1 extra noise", minimum=0.0),),
    default_spacing="trailing", eval_steps=(8, 10, 12, 25, 50),
    summary="DDIM (Song et al. 2021), any eta", diffusers_scheduler="DDIMScheduler", references=("arXiv:2010.02502",),
)
