"""Ancestral DDPM (Ho, Jain & Abbeel 2020, Algorithm 2), respaced for fewer steps.

    x_prev = (x - eps (1 - a_t) / sqrt(1 - ab_t)) / sqrt(a_t) + sigma_t z,   z = 0 on the last step,

with a_t = ab_t / ab_prev (or the schedule's own 1 - beta_t for a one-timestep step, which reproduces the
course loop, whose ab[0] slot is 1). ``variance``: ``"beta"`` (sigma^2 = beta_t, the course) or
``"posterior"`` (beta-tilde = (1 - ab_prev) / (1 - ab_t) beta_t, diffusers' ``fixed_small``).
With clipping, eps is re-derived from the clamped x0 (equivalent to diffusers' x0-form mean).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from difftool.runtime.samplers.spec import Option, SamplerSpec
from difftool.runtime.samplers.table import Coefficients, TableBuilder

if TYPE_CHECKING:
    from difftool.runtime.schedules import Schedule
    from difftool.runtime.timesteps import PlanStep

VARIANCES = ("posterior", "beta")


def step_alpha(schedule: Schedule, step: PlanStep) -> float:
    """alpha_t of one (possibly respaced) step."""
    if step.t - step.prev == 1:
        return 1.0 - float(schedule.betas[step.t])
    return step.ab_t / step.ab_prev


def step_variance(variance: str, step: PlanStep, beta: float) -> float:
    """sigma^2 of one step."""
    if variance == "beta":
        return beta
    return max((1.0 - step.ab_prev) / (1.0 - step.ab_t) * beta, 1e-20)


def ddpm_table(steps: list[PlanStep], schedule: Schedule, *, variance: str) -> Coefficients:
    """DDPM's coefficients: u_xc = 1/sqrt(a_t), u_eps = -beta / (sqrt(1 - ab_t) sqrt(a_t)), sigma."""
    b = TableBuilder()
    for index, step in enumerate(steps):
        alpha = step_alpha(schedule, step)
        beta = 1.0 - alpha
        last = index == len(steps) - 1
        sigma = 0.0 if last else math.sqrt(step_variance(variance, step, beta))
        b.step(step.t, step.ab_t, u_xc=1.0 / math.sqrt(alpha),
               u_eps=-beta / (math.sqrt(1.0 - step.ab_t) * math.sqrt(alpha)), sigma=sigma)
    return b.build()


SPEC = SamplerSpec(
    name="ddpm", label="DDPM", short="DDPM", coefficients=ddpm_table,
    options=(Option("variance", str, "posterior", "beta (sigma^2 = beta, the course) | posterior",
                    choices=VARIANCES),),
    default_spacing="leading", all_steps=True, eval_steps=(),
    summary="ancestral DDPM (Ho et al. 2020), respaceable", diffusers_scheduler="DDPMScheduler", references=("arXiv:2006.11239",),
)
