"""UniPC (Zhao et al. 2023, arXiv 2302.04867): the bh2 predictor-corrector of order 2, data prediction.

Matches diffusers' ``UniPCMultistepScheduler`` defaults (solver_order=2, predict_x0=True,
solver_type="bh2", lower_order_final=True, final_sigmas_type="zero", corrector on every step).
With lambda = log(alpha / sigma), h = lambda_t - lambda_s0, hh = -h, h_phi_1 = e^{hh} - 1, B(h) = e^{hh} - 1:

* predictor UniP-p from (x_s0, m0, m1): x_t = (sigma_t / sigma_s0) x_s0 - alpha_t h_phi_1 m0
  - alpha_t B(h) rho_p D1, D1 = (m1 - m0) / r1, r1 = (lambda_s1 - lambda_s0) / h, rho_p = 1/2 (order 2);
* corrector UniC-p, once the network has been evaluated at x_t (m_t): the same formula from the *previous*
  sample with the new model output, x_t^c = (sigma_t / sigma_s0) x_s0 - alpha_t h_phi_1 m0
  - alpha_t B(h) (sum_k rho_c,k D_k + rho_c,p (m_t - m0)), rho_c solving R rho = b (rho_c = 1/2 for p = 1).

The network is evaluated at the *uncorrected* x_t; the predictor then continues from the corrected one.
Order is 1 on the first step (warm-up) and on the last (``lower_order_final``), which lands on alpha_bar = 1
and returns the x0 prediction. In table form (x0 = m_t, h1 = m0, h2 = m1, xl = x_s0).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from difftool.runtime.samplers.spec import SamplerSpec
from difftool.runtime.samplers.table import Coefficients, TableBuilder

if TYPE_CHECKING:
    from difftool.runtime.schedules import Schedule
    from difftool.runtime.timesteps import PlanStep


def _lam(ab: float) -> float:
    """lambda = log(alpha / sigma); +inf at alpha_bar = 1."""
    return math.inf if ab >= 1.0 else 0.5 * math.log(ab / (1.0 - ab))


def _rhos_c(order: int, rk: float, hh: float) -> tuple[float, ...]:
    """The corrector weights: (rho for D_1..D_{p-1}, rho for m_t - m0); bh2, B(h) = e^{hh} - 1."""
    if order == 1:
        return (0.5,)
    import numpy as np

    b_h = math.expm1(hh)
    h_phi_k = math.expm1(hh) / hh - 1.0
    factorial, rks, b = 1, np.array([rk, 1.0]), []
    rows = []
    for i in range(1, order + 1):
        rows.append(rks ** (i - 1))
        b.append(h_phi_k * factorial / b_h)
        factorial *= i + 1
        h_phi_k = h_phi_k / hh - 1.0 / factorial
    return tuple(np.linalg.solve(np.stack(rows), np.array(b)))


def _orders(n: int) -> list[int]:
    """Predictor order per step: 1 first (warm-up) and last (lower_order_final), else 2."""
    return [1 if (i == 0 or i == n - 1) else 2 for i in range(n)]


def unipc_table(steps: list[PlanStep], schedule: Schedule) -> Coefficients:
    """UniPC-bh2's coefficients (corrector columns c_*, predictor columns u_*)."""
    orders, lams = _orders(len(steps)), [_lam(s.ab_t) for s in steps]
    b = TableBuilder()
    for i, step in enumerate(steps):
        corrector = _corrector(steps, lams, i, orders[i - 1]) if i > 0 else {}
        b.step(step.t, step.ab_t, **corrector, **_predictor(step, lams, i, orders[i]))
    return b.build()


def _predictor(step: PlanStep, lams: list[float], i: int, order: int) -> dict[str, float]:
    """x_new = u_xc xc + u_x0 m_t + u_h1 m0 (the new step's m0 is this step's x0)."""
    if step.ab_prev >= 1.0:  # sigma_t = 0: x_t = m0 exactly
        return {"u_xc": 0.0, "u_x0": 1.0}
    alpha_t, sigma_t, sigma_s = math.sqrt(step.ab_prev), math.sqrt(1 - step.ab_prev), math.sqrt(1 - step.ab_t)
    h = _lam(step.ab_prev) - lams[i]
    hh = -h
    coef = {"u_xc": sigma_t / sigma_s, "u_x0": -alpha_t * math.expm1(hh)}
    if order == 2:
        r1 = (lams[i - 1] - lams[i]) / h
        k = -alpha_t * math.expm1(hh) * 0.5 / r1  # - alpha_t B(h) rho_p / r1, times (m1 - m0)
        coef["u_h1"], coef["u_x0"] = k, coef["u_x0"] - k
    return coef


def _corrector(steps: list[PlanStep], lams: list[float], i: int, order: int) -> dict[str, float]:
    """xc = c_xl x_s0 + c_x0 m_t + c_h1 m0 + c_h2 m1: UniC of order ``order`` for the step i-1 -> i."""
    alpha_t, sigma_t = math.sqrt(steps[i].ab_t), math.sqrt(1 - steps[i].ab_t)
    sigma_s = math.sqrt(1 - steps[i - 1].ab_t)
    h = lams[i] - lams[i - 1]
    hh = -h
    b_h = math.expm1(hh)
    rk = (lams[i - 2] - lams[i - 1]) / h if order == 2 else 0.0
    rhos = _rhos_c(order, rk, hh)
    coef = {"c_x": 0.0, "c_xl": sigma_t / sigma_s, "c_h1": -alpha_t * math.expm1(hh),
            "c_x0": -alpha_t * b_h * rhos[-1]}
    coef["c_h1"] += alpha_t * b_h * rhos[-1]  # D1_t = m_t - m0
    if order == 2:
        k = -alpha_t * b_h * rhos[0] / rk  # times D_1 = (m1 - m0) / r_k
        coef["c_h2"], coef["c_h1"] = k, coef["c_h1"] - k
    return coef


SPEC = SamplerSpec(
    name="unipc", label="UniPC-bh2", short="UniPC", coefficients=unipc_table,
    aliases=("unipc_bh2", "uni-pc"), default_spacing="trailing", eval_steps=(8, 10, 12),
    summary="UniPC (Zhao et al. 2023), bh2 predictor-corrector, order 2",
    diffusers_scheduler="UniPCMultistepScheduler", references=("arXiv:2302.04867",),
)
