"""UniPC (bh2, order 2 with corrector) against diffusers' UniPCMultistepScheduler, step for step."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tests.test_samplers import STANDARD, dummy_eps, like_diffusers, max_abs, no_noise, x_T

from difftool.runtime.samplers import SAMPLERS, get_sampler, unipc
from difftool.runtime.samplers.unipc import unipc_table
from difftool.runtime.timesteps import timesteps

diffusers = pytest.importorskip("diffusers")


def diffusers_unipc(n: int):
    ref = diffusers.UniPCMultistepScheduler(timestep_spacing="trailing")  # bh2, order 2, predict_x0
    ref.set_timesteps(n)
    sample = torch.from_numpy(x_T())
    for t in ref.timesteps:
        eps = torch.from_numpy(dummy_eps(sample.numpy(), int(t)))
        sample = ref.step(eps, t, sample).prev_sample
    return ref, sample.numpy()


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("n", [3, 5, 8, 10, 12, 25])
def test_unipc_matches_diffusers(n):
    ref, expected = diffusers_unipc(n)
    assert ref.timesteps.numpy().tolist() == timesteps(STANDARD, n, "trailing").tolist()
    ours = unipc(dummy_eps, x_T(), like_diffusers(ref), steps=n, noise=no_noise)
    assert max_abs(ours, expected) < 1e-4


def test_unipc_corrector_is_applied_and_differs_from_dpmpp():
    """The corrector changes the result (UniPC is not DPM-Solver++(2M) in disguise)."""
    table = unipc_table(unipc.plan(STANDARD, 10), STANDARD)
    assert table.corrects and table.history == 2 and not table.stochastic
    ours = unipc(dummy_eps, x_T(), STANDARD, steps=10, noise=no_noise)
    other = SAMPLERS["dpmpp_2m"](dummy_eps, x_T(), STANDARD, steps=10, noise=no_noise)
    assert max_abs(ours, other) > 1e-4


def test_unipc_is_registered_with_its_aliases():
    assert get_sampler("UniPC") is unipc and get_sampler("uni-pc") is unipc
    assert np.isfinite(unipc(dummy_eps, x_T(), STANDARD, steps=1, noise=no_noise)).all()
