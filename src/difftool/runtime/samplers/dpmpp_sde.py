"""SDE-DPM-Solver++(2M) (Lu et al. 2022, arXiv 2211.01095, Appendix; Gonzalez et al. 2023's SDE form),
data prediction, midpoint form: the stochastic twin of :mod:`~difftool.runtime.samplers.dpmpp`.

Matches diffusers' ``DPMSolverMultistepScheduler(algorithm_type="sde-dpmsolver++")`` (solver_order=2,
solver_type="midpoint", final_sigmas_type="zero"): first order on the first step, second order after,
and first order on the last step, which lands on sigma = 0 and returns the x0 prediction. With
alpha_t = sqrt(ab), sigma_t = sqrt(1 - ab), lambda = log(alpha / sigma), h = lambda_t - lambda_s:

    x_t = (sigma_t / sigma_s) e^{-h} x + alpha_t (1 - e^{-2h}) (D0 + D1 / 2) + sigma_t sqrt(1 - e^{-2h}) z,
    D0 = m0, D1 = (m0 - m1) / r0, r0 = h_prev / h   (D1 = 0 for first order).

It injects fresh noise on every step, as ancestral DDPM and DDIM with eta = 1 do, but with a second-order
data term, so it keeps their error-correcting noise at fewer steps.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from difftool.runtime.samplers.dpmpp import multistep_2m_table
from difftool.runtime.samplers.spec import SamplerSpec

if TYPE_CHECKING:
    from difftool.runtime.samplers.table import Coefficients
    from difftool.runtime.schedules import Schedule
    from difftool.runtime.timesteps import PlanStep


def dpmpp_2m_sde_table(steps: list[PlanStep], schedule: Schedule) -> Coefficients:
    """Coefficients: u_xc = (sigma_t / sigma_s) e^{-h}, u_x0 = k (1 + r/2), u_h1 = -k r/2 with
    k = alpha_t (1 - e^{-2h}), and sigma = sigma_t sqrt(1 - e^{-2h}) (the SDE form of the shared 2M table)."""
    return multistep_2m_table(steps, sde=True)


SPEC = SamplerSpec(
    name="dpmpp_2m_sde", label="SDE-DPM-Solver++(2M)", short="DPM++SDE", coefficients=dpmpp_2m_sde_table,
    aliases=("dpm++sde", "dpm++2m-sde", "dpm++_2m_sde", "dpmpp-2m-sde", "dpmpp_sde", "sde-dpmsolver++"),
    default_spacing="trailing", eval_steps=(15, 25),
    summary="SDE-DPM-Solver++(2M) (Lu et al. 2022), stochastic multistep",
    diffusers_scheduler="DPMSolverMultistepScheduler", diffusers_config=(("algorithm_type", "sde-dpmsolver++"),),
    references=("arXiv:2211.01095",),
)
