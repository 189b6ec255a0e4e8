"""Torch-free: v / x0 networks converted to eps in the EpsFn, cards of diffusers U-Nets, the null class."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from difftool.config import DiffusersUnetConfig, ModelCard, ScheduleConfig
from difftool.errors import DifftoolError
from difftool.runtime.guidance import guided_eps
from difftool.runtime.pipeline import Pipeline, SampleRequest
from difftool.runtime.schedules import make_schedule
from difftool.runtime.timesteps import timesteps

UNET = {"sample_size": 4, "in_channels": 2, "out_channels": 2, "num_class_embeds": 4}


class KnownTarget:
    """A network that predicts exactly the ``prediction`` of a fixed (x0, eps) pair, given x_t.

    For each row, eps_true = x - 0.5 (any function of x), x0 = (x - s eps) / a at the call's timestep,
    and it returns eps, v = a eps - s x0 or x0. Its class branch adds ``context @ w`` to eps_true.
    """

    name = "known"

    def __init__(self, card: ModelCard):
        self.card = card
        self.schedule = make_schedule(card.schedule)
        self.w = np.linspace(0.1, 0.4, card.num_classes).astype(np.float32)

    def eps_true(self, x, t, ctx):
        return (x - 0.5 + (ctx @ self.w)[:, None, None, None]).astype(np.float32)

    def __call__(self, x, t, ctx):
        ab = self.schedule.alpha_bar[t.astype(int)][:, None, None, None]
        a, s = np.sqrt(ab), np.sqrt(1 - ab)
        eps = self.eps_true(x, t, ctx)
        x0 = (x - s * eps) / a
        out = {"epsilon": eps, "v_prediction": a * eps - s * x0, "sample": x0}[self.card.prediction]
        return out.astype(np.float32)


def card(prediction: str, null_class: bool = True, **more) -> ModelCard:
    return ModelCard(model=DiffusersUnetConfig(unet=UNET, null_class=null_class), schedule=ScheduleConfig(),
                     prediction=prediction, **more)


@pytest.mark.parametrize("prediction", ["epsilon", "v_prediction", "sample"])
@pytest.mark.parametrize("guidance", [1.0, 0.0, 2.5])
@pytest.mark.parametrize("t", [0, 400, 999])
def test_every_prediction_type_becomes_the_same_guided_eps(prediction, guidance, t):
    net = KnownTarget(card(prediction))
    rng = np.random.default_rng(t)
    x = rng.standard_normal((3, 2, 4, 4)).astype(np.float32)
    ctx = np.eye(3, dtype=np.float32)[[0, 2, 1]]
    got = guided_eps(net, net.schedule, ctx, guidance)(x, t)
    tb = np.full(3, t, np.float32)
    eps_c, eps_u = net.eps_true(x, tb, ctx), net.eps_true(x, tb, np.zeros_like(ctx))
    expected = eps_u + guidance * (eps_c - eps_u)
    # x0 = (x - s eps)/a amplifies float32 rounding by 1/a at t = 999 (a ~ 6e-3); converting back divides it out
    assert np.abs(got - expected).max() < 2e-4


def test_unknown_prediction_type_is_refused():
    net = KnownTarget(card("epsilon"))
    net.card = dataclasses.replace(net.card, prediction="flow")
    with pytest.raises(DifftoolError, match="flow"):
        guided_eps(net, net.schedule, np.zeros((1, 3), np.float32))


def test_diffusers_card_round_trips_and_counts_the_null_class():
    c = card("v_prediction", class_names=("a", "b", "c"), clip=None)
    back = ModelCard.from_json(c.to_json())
    assert back == c and back.model.unet == UNET
    assert c.num_classes == 3 and c.supports_guidance and c.no_guidance_reason == ""
    imported = card("epsilon", null_class=False)
    assert imported.num_classes == 4 and not imported.supports_guidance
    assert "no unconditional (null) class" in imported.no_guidance_reason
    assert imported.recommended("guidance") == 1.0


def test_without_a_null_class_zero_context_and_guidance_are_refused():
    net = KnownTarget(card("epsilon", null_class=False))
    with pytest.raises(DifftoolError, match="every sample needs a class"):
        guided_eps(net, net.schedule, np.array([[1, 0, 0, 0], [0, 0, 0, 0]], np.float32))
    with pytest.raises(DifftoolError, match="guidance"):
        guided_eps(net, net.schedule, np.eye(4, dtype=np.float32)[:2], guidance=2.0)
    guided_eps(net, net.schedule, np.array([[0.5, 0.5, 0, 0]], np.float32))  # a mix is a class


def test_pipeline_uses_the_cards_spacing_and_variance():
    c = card("epsilon", sampling={"spacing": "leading", "variance": "beta"})
    pipe = Pipeline(KnownTarget(c))
    ctx = np.eye(3, dtype=np.float32)[:2]
    seen = []
    pipe.sample(SampleRequest(n=2, context=ctx, sampler="ddim", steps=5), callback=lambda s: seen.append(s.t))
    assert seen == list(timesteps(pipe.schedule, 5, "leading"))
    from difftool.runtime.defaults import request_options, spacing_for
    from difftool.runtime.samplers import get_sampler

    ddpm = get_sampler("ddpm")
    assert request_options(c, ddpm, SampleRequest())["variance"] == "beta"
    assert request_options(c, ddpm, SampleRequest(variance="posterior"))["variance"] == "posterior"
    assert spacing_for(c, "trailing") == "trailing" and spacing_for(c, None) == "leading"


def test_scaled_linear_schedule():
    s = make_schedule(ScheduleConfig(kind="scaled_linear", num_timesteps=10, beta_start=0.0001, beta_end=0.0121))
    np.testing.assert_allclose(np.sqrt(s.betas), np.linspace(0.01, 0.11, 10))
