"""The training loop's small parts: loss weighting, the lr schedule, EMA, class-balanced epoch order, flips,
the batch's context vector with dropout, ``--dropout`` and ``--init``."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from difftool.errors import DifftoolError

if TYPE_CHECKING:
    from difftool.config import ModelCard
    from difftool.train.dist import _Dist
    from difftool.train.loop import TrainConfig


def loss_weights(alpha_bar: torch.Tensor, kind: str, gamma: float = 5.0) -> torch.Tensor:
    """Per-sample weights of the eps-prediction loss: ``min_snr``: min(SNR, gamma) / SNR (SNR = ab / (1 - ab)),
    which down-weights the low-noise steps whose eps loss dominates training; ``none``: ones."""
    if kind == "none":
        return torch.ones_like(alpha_bar)
    if kind != "min_snr":
        raise DifftoolError(f"unknown --loss-weight {kind!r}; use none or min_snr")
    snr = alpha_bar / (1.0 - alpha_bar)
    return torch.clamp(snr, max=gamma) / snr


def lr_factor(step: int, total: int, warmup: int, min_ratio: float) -> float:
    """Linear warm-up then cosine decay to ``min_ratio``."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


@torch.no_grad()
def ema_update(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    for pe, pm in zip(ema.parameters(), model.parameters(), strict=True):
        pe.lerp_(pm.detach(), 1.0 - decay)
    for be, bm in zip(ema.buffers(), model.buffers(), strict=True):
        be.copy_(bm)


def class_weights(labels: np.ndarray, power: float) -> torch.Tensor | None:
    """Per-tile sampling weights ``count(class) ** -power`` (None for uniform sampling: ``power == 0``, or an
    unconditional dataset). ``power = 1`` gives every class the same share of the batches; 0.5 is halfway
    (in log space) between the data's class shares and equal shares."""
    if power < 0 or power > 1:
        raise DifftoolError(f"--class-balance must be between 0 and 1, got {power}")
    labels = np.asarray(labels, dtype=np.int64) + 1  # unlabelled tiles (-1) form a group of their own
    if power == 0 or labels.size == 0 or len(np.unique(labels)) < 2:
        return None
    counts = np.bincount(labels).astype(np.float64)
    return torch.from_numpy(counts[labels] ** -power)


def _epoch_order(n: int, seed: int, epoch: int, dist: _Dist, weights: torch.Tensor | None = None) -> torch.Tensor:
    """The tiles of one epoch (deterministic per seed and epoch, so a resumed run continues the same order):
    a permutation, or with ``weights`` n draws with replacement in proportion to them."""
    gen = torch.Generator().manual_seed(seed * 100003 + epoch)
    if weights is None:
        order = torch.randperm(n, generator=gen)
    else:
        order = torch.multinomial(weights, n, replacement=True, generator=gen)
    return order[dist.rank::dist.world]


HFLIP_DEFAULT = {"sprites": True, "images": True, "digits": False, "mnist": False}


def flips(cfg: TrainConfig) -> bool:
    """Whether training flips images horizontally: the flag, else the dataset's default."""
    return cfg.hflip if cfg.hflip is not None else HFLIP_DEFAULT.get(cfg.dataset, True)


def _batch(x0, labels, card: ModelCard, cfg: TrainConfig, gen, device):
    """Flip augmentation and the context vector with dropout (zeros = unconditional)."""
    b = x0.shape[0]
    if flips(cfg):
        flip = (torch.rand(b, generator=gen) < 0.5).to(device)
        x0 = torch.where(flip.view(-1, 1, 1, 1), x0.flip(-1), x0)
    if card.num_classes == 0:
        return x0, None
    ctx = torch.zeros(b, card.num_classes, device=device)
    known = labels >= 0
    ctx[known.nonzero().squeeze(1), labels[known]] = 1.0
    keep = (torch.rand(b, generator=gen) >= cfg.cond_drop).to(device)
    return x0, ctx * keep.view(-1, 1)


def check_perturbation(gamma: float) -> None:
    """``--input-perturbation`` must be a small non-negative scale (the paper uses 0.1)."""
    if not 0.0 <= gamma <= 1.0:  # NaN fails too
        raise DifftoolError(f"--input-perturbation must be in [0, 1] (0.1 is usual), got {gamma}")


def _dropout(model, p: float) -> None:
    """``--dropout``: set on every ResNet layer of a U-Net preset; other models have nowhere to put it."""
    if not p:
        return
    from difftool.models.unet import set_dropout

    if not 0.0 < p < 1.0:
        raise DifftoolError(f"--dropout must be in [0, 1), got {p}")
    if set_dropout(model, p) == 0:
        raise DifftoolError("--dropout applies to the U-Net presets (sprite, tiny, mnist, mnist-cpu); drop it")


def _init_weights(path: Path, model, ema, card: ModelCard) -> None:
    """Fine-tuning: model and EMA both start from ``path``'s (EMA) weights; same architecture required, except
    that an eps model may start a palette-head one (every weight but the head's own, which start fresh)."""
    from difftool.models.checkpoint import load

    loaded = load(path)
    body = dataclasses.replace(card.model, palette=()) if card.model.arch == "unet" else card.model
    if loaded.card.model not in (card.model, body):
        raise DifftoolError(f"--init {path} holds another model ({loaded.card.model.arch}); use the same --model")
    state = {k: v.float() if v.is_floating_point() else v for k, v in loaded.module.state_dict().items()}
    if loaded.card.model != card.model:  # a new palette head: everything but the head's own (fresh) weights
        state = model.state_dict() | state
    model.load_state_dict(state)
    ema.load_state_dict(state)


def _perturbed(noise: torch.Tensor, gamma: float, gen: torch.Generator, device) -> torch.Tensor:
    """``--input-perturbation``: the noise the network's input is made with, ``noise + gamma * xi`` (the
    target stays ``noise``); drawn from the step's generator after everything else, so runs stay exact."""
    if not gamma:
        return noise
    return noise + gamma * torch.randn(noise.shape, generator=gen).to(device)
