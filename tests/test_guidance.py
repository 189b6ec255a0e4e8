"""Classifier-free guidance: one batched forward, exact combination, contexts passed through."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from difftool.config import ScheduleConfig
from difftool.errors import DifftoolError
from difftool.runtime.guidance import guided_eps
from difftool.runtime.samplers import ddim
from difftool.runtime.schedules import make_schedule

B = 3


def x_batch() -> np.ndarray:
    return np.linspace(-1, 1, B * 3 * 8 * 8, dtype=np.float32).reshape(B, 3, 8, 8)


def mixed_context() -> np.ndarray:
    ctx = np.zeros((B, 5), dtype=np.float32)
    ctx[0, 1] = 1.0  # one-hot
    ctx[1, [0, 2]] = [0.6, -0.25]  # fractional / negative mix
    ctx[2, [3, 4]] = [1.0, 1.0]  # weights need not sum to 1
    return ctx


class IdRecorder:
    """Wraps a denoiser and records the identity of the arrays it is given."""

    def __init__(self, inner):
        self.inner, self.card, self.name = inner, inner.card, "recorder"
        self.ids: list[tuple[int, int, int]] = []

    def __call__(self, x, t, context):
        self.ids.append((id(x), id(t), id(context)))
        return self.inner(x, t, context)


def test_guidance_one_is_a_single_forward_of_batch_b(fake_denoiser):
    schedule = make_schedule(fake_denoiser.card.schedule)
    eps_fn = guided_eps(fake_denoiser, schedule, mixed_context(), guidance=1.0)
    eps = eps_fn(x_batch(), 42)
    assert len(fake_denoiser.calls) == 1
    batch, t, ctx = fake_denoiser.calls[0]
    assert batch == B
    np.testing.assert_array_equal(t, np.full((B,), 42.0, np.float32))
    np.testing.assert_array_equal(ctx, mixed_context())  # passed through unchanged
    np.testing.assert_array_equal(eps, fake_denoiser(x_batch(), t, mixed_context()))


def test_guidance_three_is_one_doubled_forward_and_exact_combination(fake_denoiser):
    schedule = make_schedule(fake_denoiser.card.schedule)
    eps_fn = guided_eps(fake_denoiser, schedule, mixed_context(), guidance=3.0)
    eps = eps_fn(x_batch(), 17).copy()
    assert len(fake_denoiser.calls) == 1
    batch, t, ctx = fake_denoiser.calls[0]
    assert batch == 2 * B
    np.testing.assert_array_equal(t, np.full((2 * B,), 17.0, np.float32))
    np.testing.assert_array_equal(ctx[:B], mixed_context())  # conditional rows first, unchanged
    np.testing.assert_array_equal(ctx[B:], np.zeros((B, 5), np.float32))  # then unconditional rows
    t_b = np.full((B,), 17.0, np.float32)
    eps_c = fake_denoiser(x_batch(), t_b, mixed_context())
    eps_u = fake_denoiser(x_batch(), t_b, np.zeros((B, 5), np.float32))
    assert np.abs(eps_c - eps_u).max() > 0.01  # the branches really differ
    np.testing.assert_allclose(eps, eps_u + 3.0 * (eps_c - eps_u), rtol=0, atol=1e-6)


def test_guided_sampling_calls_once_per_step_and_reuses_buffers(fake_denoiser):
    schedule = make_schedule(fake_denoiser.card.schedule)
    recorder = IdRecorder(fake_denoiser)
    eps_fn = guided_eps(recorder, schedule, mixed_context(), guidance=3.0)
    ddim(eps_fn, x_batch(), schedule, steps=6, noise=lambda shape: pytest.fail("no noise at eta 0"))
    assert [c[0] for c in fake_denoiser.calls] == [2 * B] * 6
    assert len(set(recorder.ids)) == 1  # the same x / t / context buffers on every step


def test_unconditional_model_ignores_guidance(fake_card, fake_denoiser_cls):
    card = dataclasses.replace(fake_card, model=dataclasses.replace(fake_card.model, num_classes=0),
                               class_names=())
    denoiser = fake_denoiser_cls(card)
    eps_fn = guided_eps(denoiser, make_schedule(card.schedule), np.zeros((B, 0), np.float32), guidance=5.0)
    eps_fn(x_batch(), 3)
    assert [c[0] for c in denoiser.calls] == [B]


def test_zero_context_and_zero_guidance_need_only_batch_b(fake_denoiser):
    schedule = make_schedule(fake_denoiser.card.schedule)
    guided_eps(fake_denoiser, schedule, np.zeros((B, 5), np.float32), guidance=4.0)(x_batch(), 3)
    eps0 = guided_eps(fake_denoiser, schedule, mixed_context(), guidance=0.0)(x_batch(), 3)
    assert [c[0] for c in fake_denoiser.calls] == [B, B]
    np.testing.assert_array_equal(fake_denoiser.calls[1][2], np.zeros((B, 5), np.float32))
    t_b = np.full((B,), 3.0, np.float32)
    np.testing.assert_array_equal(eps0, fake_denoiser(x_batch(), t_b, np.zeros((B, 5), np.float32)))


def test_course_schedule_feeds_fractional_time(fake_denoiser):
    schedule = make_schedule(ScheduleConfig.course())
    guided_eps(fake_denoiser, schedule, mixed_context(), guidance=2.0)(x_batch(), 250)
    np.testing.assert_array_equal(fake_denoiser.calls[0][1], np.full((2 * B,), 0.5, np.float32))


def test_batch_mismatch_and_bad_context_raise(fake_denoiser):
    schedule = make_schedule(fake_denoiser.card.schedule)
    eps_fn = guided_eps(fake_denoiser, schedule, mixed_context(), guidance=2.0)
    with pytest.raises(DifftoolError, match="batch"):
        eps_fn(x_batch()[:2], 5)
    with pytest.raises(DifftoolError, match="context"):
        guided_eps(fake_denoiser, schedule, np.zeros((5,), np.float32))
