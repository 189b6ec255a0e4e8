"""DPM-Solver++(2M) (Lu et al. 2022, arXiv 2211.01095, Algorithm 2), data prediction, midpoint form.

Matches diffusers' ``DPMSolverMultistepScheduler`` defaults (solver_order=2, algorithm_type="dpmsolver++",
solver_type="midpoint", final_sigmas_type="zero"): first order on the first step, second order after,
and first order on the last step, which lands on sigma = 0 (alpha_bar = 1) and so returns the x0
prediction itself. With alpha_t = sqrt(ab), sigma_t = sqrt(1 - ab), lambda = log(alpha / sigma):

    x_t = (sigma_t / sigma_s) x - alpha_t (e^{-h} - 1) (D0 + D1 / 2),   h = lambda_t - lambda_s,
    D0 = m0, D1 = (m0 - m1) / r0, r0 = h_prev / h   (D1 = 0 for first order).

m0 is this step's x0 (``x0``), m1 the previous step's (``h1``).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from difftool.runtime.samplers.spec import SamplerSpec
from difftool.runtime.samplers.table import Coefficients, TableBuilder

if TYPE_CHECKING:
    from difftool.runtime.schedules import Schedule
    from difftool.runtime.timesteps import PlanStep


def half_lambda(ab: float) -> float:
    """lambda = log(alpha / sigma) = 0.5 * log(ab / (1 - ab))."""
    return 0.5 * math.log(ab / (1.0 - ab))


def multistep_2m_table(steps: list[PlanStep], *, sde: bool) -> Coefficients:
    """The 2M table of either form, data prediction, midpoint (u_x0 = k (1 + r/2), u_h1 = -k r/2):

    * ODE (``sde=False``): u_xc = sigma_t / sigma_s, k = -alpha_t (e^{-h} - 1), no noise;
    * SDE (``sde=True``, :mod:`~difftool.runtime.samplers.dpmpp_sde`): u_xc = (sigma_t / sigma_s) e^{-h},
      k = alpha_t (1 - e^{-2h}), sigma = sigma_t sqrt(1 - e^{-2h}).
    """
    b = TableBuilder()
    lam_prev = 0.0
    for index, step in enumerate(steps):
        ab_s, ab_t = step.ab_t, step.ab_prev
        lam_s = half_lambda(ab_s)
        if ab_t >= 1.0:  # sigma_t = 0: the first-order step returns x0 exactly
            b.step(step.t, ab_s, u_xc=0.0, u_x0=1.0)
        else:
            h = half_lambda(ab_t) - lam_s
            ratio = math.sqrt(1.0 - ab_t) / math.sqrt(1.0 - ab_s)
            if sde:
                decay = -math.expm1(-2.0 * h)  # 1 - e^{-2h}
                k, ratio, sigma = math.sqrt(ab_t) * decay, ratio * math.exp(-h), math.sqrt((1.0 - ab_t) * decay)
            else:
                k, sigma = -math.sqrt(ab_t) * math.expm1(-h), 0.0  # -alpha_t (e^{-h} - 1)
            half_over_r0 = 0.0 if index == 0 else 0.5 * h / (lam_s - lam_prev)
            b.step(step.t, ab_s, u_xc=ratio, u_x0=k * (1.0 + half_over_r0), u_h1=-k * half_over_r0, sigma=sigma)
        lam_prev = lam_s
    return b.build()


def dpmpp_2m_table(steps: list[PlanStep], schedule: Schedule) -> Coefficients:
    """DPM-Solver++(2M)'s coefficients (the ODE form of :func:`multistep_2m_table`)."""
    return multistep_2m_table(steps, sde=False)


SPEC = SamplerSpec(
    name="dpmpp_2m", label="DPM-Solver++(2M)", short="DPM++", coefficients=dpmpp_2m_table,
    aliases=("dpm++", "dpmpp", "dpm++2m", "dpm++_2m", "dpmpp-2m"),
    default_spacing="trailing", eval_steps=(8, 10, 12),
    summary="DPM-Solver++(2M) (Lu et al. 2022), deterministic multistep",
    diffusers_scheduler="DPMSolverMultistepScheduler", diffusers_config=(("algorithm_type", "dpmsolver++"),),
    references=("arXiv:2211.01095",),
)
