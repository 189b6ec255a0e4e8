"""The course ContextUnet's first-block shortcut: zero (difftool's default) or the course's fresh random conv."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from difftool.config import ContextUnetConfig  # noqa: E402
from difftool.models.context_unet import ContextUnet, random_shortcut  # noqa: E402


def _model():
    torch.manual_seed(0)
    return ContextUnet(ContextUnetConfig(in_channels=3, n_feat=8, n_cfeat=5, height=16)).eval()


def _inputs():
    g = torch.Generator().manual_seed(1)
    return torch.randn(2, 3, 16, 16, generator=g), torch.tensor([0.5, 0.1]), torch.eye(5)[:2]


def test_zero_is_the_default_and_deterministic():
    model, (x, t, c) = _model(), _inputs()
    with torch.no_grad():
        a, b = model(x, t, c), model(x, t, c)
    assert model.init_conv.shortcut == "zero"
    torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_random_draws_a_fresh_conv_every_forward_reproducibly_per_seed():
    model, (x, t, c) = _model(), _inputs()
    with torch.no_grad():
        zero = model(x, t, c)
        model.set_shortcut("random", seed=7)
        r1, r2 = model(x, t, c), model(x, t, c)
        model.set_shortcut("random", seed=7)
        again = model(x, t, c)
    assert not torch.allclose(r1, r2) and not torch.allclose(r1, zero)
    torch.testing.assert_close(r1, again, rtol=0, atol=0)
    model.set_shortcut("zero")
    with torch.no_grad():
        torch.testing.assert_close(model(x, t, c), zero, rtol=0, atol=0)
    with pytest.raises(ValueError, match="shortcut"):
        model.set_shortcut("gaussian")


def test_random_shortcut_matches_nn_conv2d_default_init_and_has_zero_mean():
    """Same distribution as the course's ``nn.Conv2d(3, 64, 1)`` built in forward (weights and bias)."""
    g = torch.Generator().manual_seed(3)
    zero, e0 = torch.zeros(1, 3, 1, 1), torch.zeros(1, 3, 1, 1)
    e0[0, 0] = 1.0
    biases, weights = [], []
    for _ in range(300):
        state = g.get_state()
        biases.append(random_shortcut(zero, 64, g).flatten())
        g.set_state(state)  # the same draw again, to read one weight column: out(e0) - out(0)
        weights.append(random_shortcut(e0, 64, g).flatten() - biases[-1])
    biases, weights = torch.cat(biases), torch.cat(weights)
    torch.manual_seed(0)
    convs = [torch.nn.Conv2d(3, 64, 1) for _ in range(300)]
    ref_b = torch.cat([c.bias.detach() for c in convs])
    ref_w = torch.cat([c.weight.detach()[:, 0].flatten() for c in convs])
    for ours, ref in ((biases, ref_b), (weights, ref_w)):
        assert abs(ours.mean()) < 0.02 and abs(ref.mean()) < 0.02  # zero mean: difftool's "zero" is its expectation
        assert abs(ours.std() / ref.std() - 1) < 0.05
        assert ours.abs().max() <= 1 / 3**0.5 + 1e-6
