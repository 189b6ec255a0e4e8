"""Samplers: golden parity with diffusers (same timesteps, same noise) and the course loops."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from difftool.config import ScheduleConfig
from difftool.errors import Cancelled, DifftoolError
from difftool.runtime.noise import Noise
from difftool.runtime.samplers import SAMPLERS, ddim, ddpm, dpmpp_2m, dpmpp_2m_sde, get_sampler
from difftool.runtime.schedules import Schedule, make_schedule
from difftool.runtime.timesteps import timesteps

torch.set_num_threads(1)
diffusers = pytest.importorskip("diffusers")

SHAPE = (4, 3, 8, 8)
STANDARD = make_schedule(ScheduleConfig())
COURSE = make_schedule(ScheduleConfig.course())


def dummy_eps(x: np.ndarray, t: int) -> np.ndarray:
    """A deterministic stand-in for a network: eps = x t/(t+1) + 0.05 (keeps samples O(1))."""
    return (x * (t / (t + 1)) + 0.05).astype(np.float32)


def x_T() -> np.ndarray:
    """An arange-based, noise-like x_T (4, 3, 8, 8)."""
    return (1.5 * np.sin(0.37 * np.arange(math.prod(SHAPE)))).reshape(SHAPE).astype(np.float32)


class Tape:
    """A NoiseSource replaying fixed arrays in order; counts draws."""

    def __init__(self, arrays: list[np.ndarray]):
        self.arrays, self.draws = arrays, 0

    def __call__(self, shape_per_item: tuple[int, ...]) -> np.ndarray:
        z = self.arrays[self.draws]
        assert z.shape[1:] == tuple(shape_per_item)
        self.draws += 1
        return z


def tape(n: int, seed: int = 123) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(SHAPE).astype(np.float32) for _ in range(n)]


def no_noise(shape_per_item: tuple[int, ...]) -> np.ndarray:
    raise AssertionError("this sampler must not draw noise")


def like_diffusers(ref) -> Schedule:
    """Our Schedule built from a diffusers scheduler's own (float32) tables, so both see the same alpha_bar."""
    ab = ref.alphas_cumprod.double().numpy()
    betas = 1.0 - ab / np.concatenate([[1.0], ab[:-1]])  # consistent with ab_t / ab_{t-1}
    return Schedule(ScheduleConfig(), betas, ab, t_min=0, t_max=len(ab) - 1)


def max_abs(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))


# -- DDIM ------------------------------------------------------------------------------------------


def diffusers_ddim(spacing: str, n: int, eta: float, zs: list[np.ndarray]):
    ref = diffusers.DDIMScheduler(clip_sample=False, set_alpha_to_one=True, timestep_spacing=spacing)
    ref.set_timesteps(n)
    sample, x0s = torch.from_numpy(x_T()), []
    for i, t in enumerate(ref.timesteps):
        eps = torch.from_numpy(dummy_eps(sample.numpy(), int(t)))
        out = ref.step(eps, t, sample, eta=eta, variance_noise=torch.from_numpy(zs[i]) if eta > 0 else None)
        sample = out.prev_sample
        x0s.append(out.pred_original_sample.numpy())
    return ref, sample.numpy(), x0s


@pytest.mark.parametrize("spacing", ["leading", "trailing"])
@pytest.mark.parametrize("eta", [0.0, 0.5])
@pytest.mark.parametrize("n", [10, 25])
def test_ddim_matches_diffusers(spacing, eta, n):
    zs = tape(n)
    ref, expected, ref_x0s = diffusers_ddim(spacing, n, eta, zs)
    sched = like_diffusers(ref)
    np.testing.assert_array_equal(timesteps(sched, n, spacing), ref.timesteps.numpy())
    source, x0s = Tape(zs), []
    out = ddim(dummy_eps, x_T(), sched, steps=n, noise=source, eta=eta, spacing=spacing,
               callback=lambda s: x0s.append(s.x0.copy()))
    assert out.dtype == np.float32 and out.shape == SHAPE
    assert max_abs(out, expected) < 1e-5
    # x0 = (x - sqrt(1-ab) eps) / sqrt(ab) amplifies diffusers' float32 rounding by 1/sqrt(ab) (~160 at t=999)
    assert all(max_abs(a, b) < 1e-5 * max(1.0, np.abs(b).max()) for a, b in zip(x0s, ref_x0s, strict=True))
    # eta > 0 draws noise on every step but the last (sigma = 0 when landing on alpha_bar = 1)
    assert source.draws == (n - 1 if eta > 0 else 0)
    # the fast path (no callback, x0 folded into the update) agrees too
    fast = ddim(dummy_eps, x_T(), sched, steps=n, noise=Tape(zs), eta=eta, spacing=spacing)
    assert max_abs(fast, expected) < 1e-5


@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_ddim_clip_matches_diffusers_clipped_model_output(eta):
    """With clip, x0 is clamped and eps re-derived from it (diffusers' use_clipped_model_output=True).
    n divides T: diffusers steps to t - T // n, which is the next list entry only then."""
    clip, n = 1.0, 10
    zs = tape(n)
    ref = diffusers.DDIMScheduler(clip_sample=True, clip_sample_range=clip, set_alpha_to_one=True,
                                  timestep_spacing="trailing")
    ref.set_timesteps(n)
    sample, ref_x0 = torch.from_numpy(x_T()), []
    for i, t in enumerate(ref.timesteps):
        eps = torch.from_numpy(dummy_eps(sample.numpy(), int(t)))
        out = ref.step(eps, t, sample, eta=eta, use_clipped_model_output=True,
                       variance_noise=torch.from_numpy(zs[i]) if eta > 0 else None)
        sample = out.prev_sample
        ref_x0.append(out.pred_original_sample.numpy())
    x0s = []
    ours = ddim(dummy_eps, x_T(), like_diffusers(ref), steps=n, noise=Tape(zs), eta=eta, spacing="trailing",
                clip=clip, callback=lambda s: x0s.append(s.x0.copy()))
    assert max(float(np.abs(x0).max()) for x0 in x0s) == pytest.approx(clip)  # clipping was active
    assert max(max_abs(a, b) for a, b in zip(x0s, ref_x0, strict=True)) < 1e-5
    assert max_abs(ours, sample.numpy()) < 1e-4
    # without the eps re-derivation the result would differ: the test can fail
    plain = ddim(dummy_eps, x_T(), like_diffusers(ref), steps=n, noise=Tape(zs), eta=eta, spacing="trailing")
    assert max_abs(plain, sample.numpy()) > 1e-3


def reference_ddim(schedule: Schedule, ts: np.ndarray, eta: float, zs: list[np.ndarray]) -> np.ndarray:
    """Plain float64 DDIM eq. 12, with prev = the next entry of the list (1 past the end); sigma capped at
    sqrt(1 - ab_prev), which only an eta above 1 reaches."""
    x = x_T().astype(np.float64)
    for i, t in enumerate(ts):
        ab = schedule.alpha_bar[t]
        ab_prev = schedule.alpha_bar[ts[i + 1]] if i + 1 < len(ts) else 1.0
        eps = dummy_eps(x.astype(np.float32), int(t)).astype(np.float64)
        x0 = (x - np.sqrt(1 - ab) * eps) / np.sqrt(ab)
        sigma = min(eta * np.sqrt((1 - ab_prev) / (1 - ab)) * np.sqrt(1 - ab / ab_prev), np.sqrt(1 - ab_prev))
        x = np.sqrt(ab_prev) * x0 + np.sqrt(max(1 - ab_prev - sigma**2, 0.0)) * eps + sigma * zs[i]
    return x


@pytest.mark.parametrize("eta", [0.0, 0.5])
def test_ddim_linspace_is_correct_where_diffusers_is_not(eta):
    n, zs = 10, tape(10)
    ref, theirs, _ = diffusers_ddim("linspace", n, eta, zs)
    sched = like_diffusers(ref)
    ours = ddim(dummy_eps, x_T(), sched, steps=n, noise=Tape(zs), eta=eta, spacing="linspace")
    expected = reference_ddim(sched, ref.timesteps.numpy(), eta, zs)
    assert max_abs(ours, expected) < 1e-5
    assert max_abs(theirs, expected) > 1e-2  # diffusers steps to t - 100, not to the next entry (t - 111)


def test_ddim_trailing_uneven_steps_use_the_list():
    zs = tape(3)
    ts = timesteps(STANDARD, 3, "trailing")
    assert list(ts) == [999, 666, 332]
    ours = ddim(dummy_eps, x_T(), STANDARD, steps=3, noise=Tape(zs), eta=0.5)
    assert max_abs(ours, reference_ddim(STANDARD, ts, 0.5, zs)) < 1e-5


@pytest.mark.parametrize("eta", [1.15, 3.0])
def test_ddim_extra_noise_above_eta_1(eta):
    """eta > 1: the formula's sigma where it fits under sqrt(1 - ab_prev), else exactly that (x0 re-noised:
    no eps term), so every step keeps x_prev's variance; the loop matches a literal transcription."""
    n, zs = 25, tape(25)
    plan = ddim.plan(STANDARD, n)
    table = ddim.table(STANDARD, n, eta=eta)
    capped = 0
    for step, sigma, u_eps in zip(plan[:-1], table.column("sigma"), table.column("u_eps"), strict=False):
        formula = eta * math.sqrt((1 - step.ab_prev) / (1 - step.ab_t) * (1 - step.ab_t / step.ab_prev))
        cap = math.sqrt(1 - step.ab_prev)
        assert sigma == pytest.approx(min(formula, cap), rel=1e-12)
        assert sigma**2 + u_eps**2 == pytest.approx(1 - step.ab_prev, rel=1e-9)  # variance kept
        capped += formula > cap
    assert (capped >= 1) == (eta > 2)  # on this schedule only the large eta reaches the cap
    expected = reference_ddim(STANDARD, timesteps(STANDARD, n, "trailing"), eta, zs)
    ours = ddim(dummy_eps, x_T(), STANDARD, steps=n, noise=Tape(zs), eta=eta)
    assert np.isfinite(ours).all() and max_abs(ours, expected) < 1e-4


def test_course_ddim_matches_course_loop():
    """Course DDIM (sec. 1.7): i = 500, 500 - step, ..., step; eta = 0; lands on the ab = 1 slot."""
    n = 25
    step = 500 // n
    ab = COURSE.alpha_bar
    x = x_T().astype(np.float64)
    for i in range(500, 0, -step):
        eps = dummy_eps(x.astype(np.float32), i).astype(np.float64)
        prev = i - step
        x = np.sqrt(ab[prev]) / np.sqrt(ab[i]) * (x - np.sqrt(1 - ab[i]) * eps) + np.sqrt(1 - ab[prev]) * eps
    ours = ddim(dummy_eps, x_T(), COURSE, steps=n, noise=no_noise, spacing="leading")
    assert max_abs(ours, x) < 1e-5


# -- DDPM ------------------------------------------------------------------------------------------


def diffusers_ddpm(n: int, seed: int):
    """diffusers DDPM run in float64 (its float32 alpha_bar table upcast, sample carried in float64): in
    float32 its step coefficients alone drift ~1e-5 from an exact loop over 1000 steps. Its noise is then
    torch.randn in float64 (see ``torch_noise``)."""
    ref = diffusers.DDPMScheduler(clip_sample=False)  # variance_type="fixed_small" (posterior)
    ref.alphas_cumprod = ref.alphas_cumprod.double()
    ref.one = ref.one.double()
    ref.set_timesteps(n)
    gen = torch.Generator().manual_seed(seed)
    sample = torch.from_numpy(x_T()).double()
    for t in ref.timesteps:
        eps = torch.from_numpy(dummy_eps(sample.float().numpy(), int(t))).double()
        sample = ref.step(eps, t, sample, generator=gen).prev_sample
    return ref, sample.float().numpy()


def torch_noise(seed: int, dtype: torch.dtype = torch.float64):
    """The same normal stream diffusers draws (torch.randn of the model output's dtype, seeded CPU generator)."""
    gen = torch.Generator().manual_seed(seed)
    return lambda shape: torch.randn((SHAPE[0], *shape), generator=gen, dtype=dtype).float().numpy()


@pytest.mark.parametrize("n", [1000, 50])
def test_ddpm_posterior_matches_diffusers(n):
    ref, expected = diffusers_ddpm(n, seed=7)
    sched = like_diffusers(ref)
    np.testing.assert_array_equal(timesteps(sched, n, "leading"), ref.timesteps.numpy())
    ours = ddpm(dummy_eps, x_T(), sched, steps=n, noise=torch_noise(7), variance="posterior")
    assert np.abs(expected).max() > 0.5  # a non-trivial output
    assert max_abs(ours, expected) < 1e-5


def test_ddpm_full_steps_on_own_schedule_match_diffusers():
    ref, expected = diffusers_ddpm(1000, seed=3)
    ours = ddpm(dummy_eps, x_T(), STANDARD, noise=torch_noise(3), variance="posterior")  # steps=None: all
    assert max_abs(ours, expected) < 1e-4  # only float32 vs float64 tables differ


def test_course_ddpm_matches_course_loop():
    """Literal transcription of the course DDPM loop (sec. 1.7) on the course schedule."""
    b_t = (0.02 - 1e-4) * np.linspace(0, 1, 501) + 1e-4
    a_t = 1 - b_t
    ab_t = np.exp(np.cumsum(np.log(a_t)))
    ab_t[0] = 1
    zs = tape(499, seed=9)
    x = x_T().astype(np.float64)
    for k, i in enumerate(range(500, 0, -1)):
        eps = dummy_eps(x.astype(np.float32), i).astype(np.float64)
        z = zs[k] if i > 1 else 0
        x = (x - eps * (1 - a_t[i]) / np.sqrt(1 - ab_t[i])) / np.sqrt(a_t[i]) + np.sqrt(b_t[i]) * z
    source = Tape(zs)
    ours = ddpm(dummy_eps, x_T(), COURSE, noise=source, variance="beta")
    assert source.draws == 499  # no noise on the last step
    assert max_abs(ours, x) < 1e-5


def test_ddpm_batch_rows_are_independent_of_the_batch():
    seeds = [11, 12, 13]
    x_batch = Noise(seeds).noise(SHAPE[1:])
    noise = Noise(seeds)
    noise.noise(SHAPE[1:])  # same state as a Pipeline: x_T first, then the sampler
    batch = ddpm(dummy_eps, x_batch, STANDARD, steps=40, noise=noise, variance="posterior")
    alone_noise = Noise([12])
    alone = ddpm(dummy_eps, alone_noise.noise(SHAPE[1:]), STANDARD, steps=40, noise=alone_noise,
                 variance="posterior")
    np.testing.assert_array_equal(batch[1:2], alone)
    assert not np.array_equal(batch[0], batch[1])


def test_ddpm_clip_matches_diffusers_clip_sample():
    clip, n = 1.0, 20
    ref = diffusers.DDPMScheduler(clip_sample=True, clip_sample_range=clip)
    ref.set_timesteps(n)
    gen = torch.Generator().manual_seed(5)
    sample, ref_x0 = torch.from_numpy(x_T()), []
    for t in ref.timesteps:
        eps = torch.from_numpy(dummy_eps(sample.numpy(), int(t)))
        out = ref.step(eps, t, sample, generator=gen)
        sample = out.prev_sample
        ref_x0.append(out.pred_original_sample.numpy())
    x0s = []
    ours = ddpm(dummy_eps, x_T(), like_diffusers(ref), steps=n, noise=torch_noise(5, torch.float32), variance="posterior",
                clip=clip, callback=lambda s: x0s.append(s.x0.copy()))
    assert max(float(np.abs(x0).max()) for x0 in x0s) == pytest.approx(clip)  # clipping was active
    assert max(max_abs(a, b) for a, b in zip(x0s, ref_x0, strict=True)) < 1e-5
    assert max_abs(ours, sample.numpy()) < 1e-5


def test_ddpm_unknown_variance_and_options_raise():
    with pytest.raises(DifftoolError, match="posterior, beta"):
        ddpm(dummy_eps, x_T(), STANDARD, steps=5, noise=no_noise, variance="large")
    with pytest.raises(DifftoolError, match="eta"):
        ddpm(dummy_eps, x_T(), STANDARD, steps=5, noise=no_noise, eta=0.1)


# -- DPM-Solver++(2M) ------------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # diffusers' own numpy-2 copy warning
@pytest.mark.parametrize("n, spacing", [(10, "linspace"), (20, "linspace"), (10, "trailing"), (15, "trailing")])
def test_dpmpp_2m_matches_diffusers(n, spacing):
    ts = timesteps(STANDARD, n, spacing)
    ref = diffusers.DPMSolverMultistepScheduler()  # solver_order 2, dpmsolver++, midpoint, final sigma 0
    ref.set_timesteps(timesteps=ts.tolist())
    sample = torch.from_numpy(x_T())
    for t in ref.timesteps:
        eps = torch.from_numpy(dummy_eps(sample.numpy(), int(t)))
        sample = ref.step(eps, t, sample).prev_sample
    ours = dpmpp_2m(dummy_eps, x_T(), like_diffusers(ref), steps=n, noise=no_noise, spacing=spacing)
    assert max_abs(ours, sample.numpy()) < 1e-5


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("n, spacing", [(10, "linspace"), (25, "trailing"), (15, "trailing")])
def test_dpmpp_2m_sde_matches_diffusers(n, spacing):
    """SDE-DPM-Solver++(2M): the same noise (diffusers' variance_noise) on the same timesteps."""
    ts = timesteps(STANDARD, n, spacing)
    ref = diffusers.DPMSolverMultistepScheduler(algorithm_type="sde-dpmsolver++")
    ref.set_timesteps(timesteps=ts.tolist())
    zs, sample = tape(n, seed=n), torch.from_numpy(x_T())
    for i, t in enumerate(ref.timesteps):
        eps = torch.from_numpy(dummy_eps(sample.numpy(), int(t)))
        sample = ref.step(eps, t, sample, variance_noise=torch.from_numpy(zs[i])).prev_sample
    source = Tape(zs)
    ours = dpmpp_2m_sde(dummy_eps, x_T(), like_diffusers(ref), steps=n, noise=source, spacing=spacing)
    assert source.draws == n - 1  # every step but the last, which lands on sigma = 0
    assert np.abs(sample.numpy()).max() > 0.5 and max_abs(ours, sample.numpy()) < 1e-5
    deterministic = dpmpp_2m(dummy_eps, x_T(), like_diffusers(ref), steps=n, noise=no_noise, spacing=spacing)
    assert max_abs(ours, deterministic) > 0.1  # the noise really enters


def test_dpmpp_2m_sde_second_order_and_first_order_noise_scale():
    """Its table: sigma_t sqrt(1 - e^{-2h}) noise on every step but the last, a second-order history term
    from the second step, and a first-order step whose variance equals the exact SDE solution's."""
    table = dpmpp_2m_sde.table(STANDARD, 10)
    assert table.stochastic and table.noisy_steps.tolist() == [True] * 9 + [False]
    assert table.column("u_h1")[0] == 0 and (table.column("u_h1")[1:-1] != 0).all()
    a, s = table.column("a"), table.column("s")
    ab_t = a[1] ** 2  # the first step's target is the second step's source
    h = 0.5 * math.log(ab_t / (1 - ab_t)) - 0.5 * math.log(a[0] ** 2 / s[0] ** 2)
    assert table.column("sigma")[0] == pytest.approx(math.sqrt(1 - ab_t) * math.sqrt(1 - math.exp(-2 * h)))
    assert table.column("u_xc")[0] == pytest.approx(s[1] / s[0] * math.exp(-h))


def test_dpmpp_2m_second_order_differs_from_first_order():
    """The multistep correction is really applied: 2M differs from the first-order (DDIM-like) path."""
    n = 10
    ours = dpmpp_2m(dummy_eps, x_T(), STANDARD, steps=n, noise=no_noise)
    first_order = ddim(dummy_eps, x_T(), STANDARD, steps=n, noise=no_noise, spacing="linspace")
    assert max_abs(ours, first_order) > 1e-4


# -- common behaviour ------------------------------------------------------------------------------

CASES = [("ddim", {"eta": 0.5}), ("ddpm", {"variance": "posterior"}), ("dpmpp_2m", {})]


@pytest.mark.parametrize("name, options", CASES)
def test_callback_reports_every_step(name, options):
    steps, seen = 7, []
    x = x_T()
    before = x.copy()
    out = SAMPLERS[name](dummy_eps, x, STANDARD, steps=steps, noise=Noise.from_seed(0, 4),
                         callback=lambda s: seen.append((s.index, s.total, s.t, s.x.shape, s.x0.shape)),
                         **options)
    assert [s[0] for s in seen] == list(range(steps))
    assert all(s[1] == steps and s[3] == SHAPE and s[4] == SHAPE for s in seen)
    assert [s[2] for s in seen] == list(timesteps(STANDARD, steps, options.get("spacing", _default(name))))
    np.testing.assert_array_equal(x, before)  # x_T is not modified
    assert out.shape == SHAPE and out.dtype == np.float32 and np.isfinite(out).all()


def _default(name: str) -> str:
    return {"ddim": "trailing", "ddpm": "leading", "dpmpp_2m": "trailing"}[name]


@pytest.mark.parametrize("name, options", CASES)
def test_cancelled_from_callback_stops_the_loop(name, options):
    calls = []

    def eps_fn(x, t):
        calls.append(t)
        return dummy_eps(x, t)

    def cancel_at_two(step):
        if step.index == 2:
            raise Cancelled

    with pytest.raises(Cancelled):
        SAMPLERS[name](eps_fn, x_T(), STANDARD, steps=10, noise=Noise.from_seed(0, 4), callback=cancel_at_two,
                       **options)
    assert len(calls) == 3


def test_ddim_zero_alpha_bar_is_guarded():
    ab = np.linspace(0.9, 0.0, 50)  # a zero-SNR table: ab[49] == 0
    sched = Schedule(ScheduleConfig(num_timesteps=50), 1 - ab / np.concatenate([[1.0], ab[:-1]]), ab, 0, 49)
    for sampler in (ddim, dpmpp_2m):
        out = sampler(dummy_eps, x_T(), sched, steps=5, noise=no_noise)
        assert np.isfinite(out).all()


def test_eta_zero_ddim_and_dpmpp_never_draw_noise():
    ddim(dummy_eps, x_T(), STANDARD, steps=5, noise=no_noise)
    dpmpp_2m(dummy_eps, x_T(), STANDARD, steps=5, noise=no_noise)


def test_get_sampler_names_and_aliases():
    assert get_sampler("ddim") is ddim and get_sampler("DDPM") is ddpm
    assert get_sampler("dpm++") is dpmpp_2m and get_sampler("dpmpp") is dpmpp_2m
    with pytest.raises(DifftoolError, match="ddpm, ddim, dpmpp_2m"):
        get_sampler("euler")
    with pytest.raises(DifftoolError, match="unknown option"):
        ddim(dummy_eps, x_T(), STANDARD, steps=5, noise=no_noise, variance="beta")
