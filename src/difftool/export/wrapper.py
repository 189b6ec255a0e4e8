"""Adapt a difftool nn.Module to the graph contract: ``(x, t[, context]) -> eps``.

Both architectures already take ``forward(x (B,C,H,W), t (B,) float32 network time, context (B,K))``:
``Unet`` the integer timestep as float, ``ContextUnet`` the fraction ``t / T``. The wrappers only fix
the input list (``context`` is absent for unconditional models, so ONNX has no dangling input) and make
``context`` a required input for conditional ones (the ``context is None`` default is Python-only).
"""

from __future__ import annotations

import torch
from torch import nn

from difftool.config import ModelCard


class ConditionalWrapper(nn.Module):
    """``forward(x, t, context) -> eps`` for models with ``num_classes > 0``."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module

    def forward(self, x: torch.Tensor, t: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        return self.module(x, t.reshape(-1), context)


class UnconditionalWrapper(nn.Module):
    """``forward(x, t) -> eps`` for models without classes."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.module(x, t.reshape(-1), None)


def wrap(module: nn.Module, card: ModelCard) -> nn.Module:
    """The contract wrapper for ``module`` (in eval mode)."""
    cls = ConditionalWrapper if card.conditional else UnconditionalWrapper
    return cls(module).eval()


def input_names(card: ModelCard) -> list[str]:
    """Graph input names in order: ``x``, ``t`` and, for conditional models, ``context``."""
    return ["x", "t", "context"] if card.conditional else ["x", "t"]


def example_inputs(card: ModelCard, batch: int = 2, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """Tracing inputs of batch ``batch``: noise, mid-range network time, one-hot contexts."""
    gen = torch.Generator().manual_seed(seed)
    s, c = card.image_size, card.channels
    x = torch.randn(batch, c, s, s, generator=gen)
    mid = card.schedule.num_timesteps // 2
    t_value = mid / card.schedule.num_timesteps if card.schedule.time_input == "fraction" else float(mid)
    t = torch.full((batch,), t_value, dtype=torch.float32)
    if not card.conditional:
        return x, t
    context = torch.zeros(batch, card.num_classes)
    context[torch.arange(batch), torch.arange(batch) % card.num_classes] = 1.0
    return x, t, context
