"""Schedules and timestep lists: golden values and parity with diffusers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from difftool.config import ScheduleConfig
from difftool.errors import DifftoolError
from difftool.runtime.schedules import make_schedule
from difftool.runtime.timesteps import SPACINGS, plan, timesteps

torch.set_num_threads(1)
diffusers = pytest.importorskip("diffusers")

STANDARD = make_schedule(ScheduleConfig())
COURSE = make_schedule(ScheduleConfig.course())


def test_course_alpha_bar_golden_values():
    ab = COURSE.alpha_bar
    assert ab.shape == (501,) and ab[0] == 1.0
    np.testing.assert_allclose(ab[[25, 100, 250, 400, 500]], [0.98458, 0.80947, 0.27856, 0.03879, 0.0062888],
                               rtol=2e-4)
    assert ab[1] == pytest.approx(0.99976, abs=5e-6)  # includes a_0: not 1 - beta_1 = 0.99986
    assert (COURSE.t_min, COURSE.t_max) == (1, 500)


def test_standard_linear_golden_values():
    ab = STANDARD.alpha_bar
    assert ab.shape == (1000,)
    assert ab[0] == pytest.approx(0.9999, abs=1e-12)
    assert ab[999] == pytest.approx(4.04e-5, rel=5e-3)
    assert (STANDARD.t_min, STANDARD.t_max) == (0, 999)
    assert STANDARD.ab(-1) == 1.0


@pytest.mark.parametrize("kind, name", [("linear", "linear"), ("cosine", "squaredcos_cap_v2")])
def test_betas_match_diffusers(kind, name):
    ref = diffusers.DDPMScheduler(num_train_timesteps=1000, beta_schedule=name)
    ours = make_schedule(ScheduleConfig(kind=kind))
    np.testing.assert_allclose(ours.betas, ref.betas.numpy(), rtol=0, atol=1e-6)
    np.testing.assert_allclose(ours.alpha_bar, ref.alphas_cumprod.numpy(), rtol=0, atol=1e-6)


def _diffusers_list(spacing: str, n: int, num_train: int = 1000) -> np.ndarray:
    sched = diffusers.DDIMScheduler(num_train_timesteps=num_train, timestep_spacing=spacing, steps_offset=0)
    sched.set_timesteps(n)
    return sched.timesteps.numpy()


@pytest.mark.parametrize("spacing", SPACINGS)
@pytest.mark.parametrize("n", [1, 3, 10, 25, 50, 999, 1000])
def test_timesteps_match_diffusers(spacing, n):
    np.testing.assert_array_equal(timesteps(STANDARD, n, spacing), _diffusers_list(spacing, n))


@pytest.mark.parametrize("spacing", SPACINGS)
def test_timesteps_match_diffusers_for_every_n_of_a_small_schedule(spacing):
    sched = make_schedule(ScheduleConfig(num_timesteps=100))
    for n in range(1, 101):
        ref = _diffusers_list(spacing, n, num_train=100)
        ours = timesteps(sched, n, spacing)
        # diffusers' float arange sometimes yields one extra trailing entry -1 (e.g. n = 29): we drop it
        np.testing.assert_array_equal(ours, ref[:n], err_msg=f"{spacing} n={n}")
        assert len(ref) == n or (spacing == "trailing" and len(ref) == n + 1 and ref[-1] == -1)


def test_diffusers_trailing_extra_entry_is_dropped():
    ref = _diffusers_list("trailing", 61)
    assert len(ref) == 62 and ref[-1] == -1  # the diffusers quirk this module documents
    ours = timesteps(STANDARD, 61, "trailing")
    assert len(ours) == 61 and ours.min() >= 0


@pytest.mark.parametrize("n", [1, 2, 4, 5, 10, 20, 25, 50, 100, 125, 250, 500])
def test_course_leading_reproduces_course_ddim_loop(n):
    step = 500 // n
    expected = np.arange(500, 0, -step)  # i = 500, 500 - step, ..., step
    np.testing.assert_array_equal(timesteps(COURSE, n, "leading"), expected)
    np.testing.assert_array_equal(timesteps(COURSE, n, "trailing"), expected)
    steps = plan(COURSE, n, "leading")
    assert [s.prev for s in steps] == list(expected[1:]) + [0]
    assert steps[-1].ab_prev == 1.0  # the clean-image slot


def test_course_full_range_and_linspace_ends():
    np.testing.assert_array_equal(timesteps(COURSE, 500, "leading"), np.arange(500, 0, -1))
    ts = timesteps(COURSE, 7, "linspace")
    assert ts[0] == 500 and ts[-1] == 1


def test_plan_prev_is_next_entry_and_last_goes_past_the_end():
    steps = plan(STANDARD, 10, "linspace")  # stride 111: diffusers would use t - 100
    assert [s.t for s in steps] == [999, 888, 777, 666, 555, 444, 333, 222, 111, 0]
    assert [s.prev for s in steps] == [888, 777, 666, 555, 444, 333, 222, 111, 0, -1]
    assert steps[0].ab_prev == pytest.approx(STANDARD.alpha_bar[888])
    assert steps[-1].ab_prev == 1.0


@pytest.mark.parametrize("bad", [0, -1, 1001, 5000])
def test_steps_out_of_range_raise(bad):
    with pytest.raises(DifftoolError, match="between 1 and 1000"):
        timesteps(STANDARD, bad, "trailing")
    with pytest.raises(DifftoolError, match="between 1 and 500"):
        timesteps(COURSE, 501 if bad > 0 else bad, "leading")


def test_unknown_spacing_and_non_integer_steps_raise():
    with pytest.raises(DifftoolError, match="leading, trailing, linspace"):
        timesteps(STANDARD, 10, "karras")
    with pytest.raises(DifftoolError, match="integer"):
        timesteps(STANDARD, 2.5, "leading")


@settings(max_examples=300, deadline=None)
@given(
    num=st.integers(2, 1200),
    course=st.booleans(),
    spacing=st.sampled_from(SPACINGS),
    frac=st.floats(0.0, 1.0),
)
def test_timestep_properties(num, course, spacing, frac):
    config = ScheduleConfig(num_timesteps=num, convention="course" if course else "standard")
    sched = make_schedule(config)
    n_valid = sched.t_max - sched.t_min + 1
    n = 1 + int(frac * (n_valid - 1))
    ts = timesteps(sched, n, spacing)
    assert ts.dtype == np.int64 and len(ts) == n
    assert np.all(np.diff(ts) < 0)  # strictly descending
    assert ts.min() >= sched.t_min and ts.max() <= sched.t_max
    if spacing == "trailing" or (spacing == "linspace" and n > 1):  # start at the noisiest timestep
        assert ts[0] == sched.t_max
    if spacing == "linspace" and n > 1:
        assert ts[-1] == sched.t_min
