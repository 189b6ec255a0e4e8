"""The DeepLearning.AI course ``ContextUnet`` (16x16 sprites), state-dict compatible with its checkpoints.

Module names, Sequential indices and creation order follow the course's ``diffusion_utilities.py`` and
notebooks exactly, so a course ``.pth`` (156 keys at in_channels=3, n_feat=64, n_cfeat=5, height=16)
loads with ``strict=True``.

One deliberate difference: the course's first block builds a *fresh, randomly initialised* 1x1 conv
shortcut inside ``forward`` on every call (in_channels != n_feat), which is never trained or saved.
Its weights and bias are zero-mean (Kaiming-uniform), so its expected output is zero; difftool uses
that expectation, i.e. the block computes ``conv2(conv1(x)) / 1.414``. This makes the network
deterministic and exportable; it is the only way to give course checkpoints a defined output.

``ContextUnet.set_shortcut("random", seed)`` restores the course's behaviour for measurements and course-recipe
training: every forward draws a fresh 1x1 conv (weights and bias ~ U(-1/sqrt(C_in), 1/sqrt(C_in)), the
``nn.Conv2d`` default init), from its own seeded generator instead of the global RNG.
"""

from __future__ import annotations

import torch
from torch import nn

from difftool.config import ContextUnetConfig


class ResidualConvBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, is_res: bool = False):
        super().__init__()
        self.same_channels = in_channels == out_channels
        self.is_res = is_res
        self.conv1 = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 3, 1, 1), nn.BatchNorm2d(out_channels), nn.GELU()
        )
        self.conv2 = nn.Sequential(
            nn.Conv2d(out_channels, out_channels, 3, 1, 1), nn.BatchNorm2d(out_channels), nn.GELU()
        )
        self.shortcut = "zero"  # "zero" (its expectation) | "random" (the course: a fresh conv per forward)
        self.generator: torch.Generator | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x2 = self.conv2(self.conv1(x))
        if not self.is_res:
            return x2
        # Course: shortcut = x if same channels, else a fresh random 1x1 conv (expectation: 0).
        if self.same_channels:
            out = x + x2
        elif self.shortcut == "random":
            out = random_shortcut(x, x2.shape[1], self.generator) + x2
        else:
            out = x2
        return out / 1.414


def random_shortcut(x: torch.Tensor, out_channels: int, generator: torch.Generator | None) -> torch.Tensor:
    """The course's in-forward ``nn.Conv2d(C_in, out_channels, 1)``: default (Kaiming-uniform) init, applied once."""
    c_in = x.shape[1]
    bound = 1.0 / c_in**0.5
    w = (torch.rand(out_channels, c_in, 1, 1, generator=generator) * 2 - 1) * bound
    b = (torch.rand(out_channels, generator=generator) * 2 - 1) * bound
    return torch.nn.functional.conv2d(x, w.to(x.device, x.dtype), b.to(x.device, x.dtype))


class UnetDown(nn.Module):
    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.model = nn.Sequential(
            ResidualConvBlock(in_channels, out_channels),
            ResidualConvBlock(out_channels, out_channels),
            nn.MaxPool2d(2),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class UnetUp(nn.Module):
    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.model = nn.Sequential(
            nn.ConvTranspose2d(in_channels, out_channels, 2, 2),
            ResidualConvBlock(out_channels, out_channels),
            ResidualConvBlock(out_channels, out_channels),
        )

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.model(torch.cat((x, skip), 1))


class EmbedFC(nn.Module):
    def __init__(self, input_dim: int, emb_dim: int):
        super().__init__()
        self.input_dim = input_dim
        self.model = nn.Sequential(nn.Linear(input_dim, emb_dim), nn.GELU(), nn.Linear(emb_dim, emb_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x.reshape(-1, self.input_dim))


class ContextUnet(nn.Module):
    """Course U-Net: time enters as ``t / T`` (float), context as a real ``n_cfeat``-vector.

    ``forward(x (B,C,H,W), t (B,) float, context (B,n_cfeat) float)``; zeros context = unconditional.
    """

    def __init__(self, config: ContextUnetConfig = ContextUnetConfig()):
        super().__init__()
        if config.height not in (16, 20, 24, 28):
            raise ValueError(f"ContextUnet height must be 16, 20, 24 or 28, got {config.height}")
        self.config = config
        c_in, nf, nc, h = config.in_channels, config.n_feat, config.n_cfeat, config.height
        self.in_channels, self.n_feat, self.n_cfeat, self.h = c_in, nf, nc, h

        self.init_conv = ResidualConvBlock(c_in, nf, is_res=True)
        self.down1 = UnetDown(nf, nf)
        self.down2 = UnetDown(nf, 2 * nf)
        self.to_vec = nn.Sequential(nn.AvgPool2d(4), nn.GELU())
        self.timeembed1 = EmbedFC(1, 2 * nf)
        self.timeembed2 = EmbedFC(1, nf)
        self.contextembed1 = EmbedFC(nc, 2 * nf)
        self.contextembed2 = EmbedFC(nc, nf)
        self.up0 = nn.Sequential(
            nn.ConvTranspose2d(2 * nf, 2 * nf, h // 4, h // 4), nn.GroupNorm(8, 2 * nf), nn.ReLU()
        )
        self.up1 = UnetUp(4 * nf, nf)
        self.up2 = UnetUp(2 * nf, nf)
        self.out = nn.Sequential(
            nn.Conv2d(2 * nf, nf, 3, 1, 1), nn.GroupNorm(8, nf), nn.ReLU(), nn.Conv2d(nf, c_in, 3, 1, 1)
        )

    def set_shortcut(self, mode: str, seed: int | None = None) -> None:
        """``"zero"`` (difftool's deterministic default) or ``"random"`` (the course's fresh conv per forward)."""
        if mode not in ("zero", "random"):
            raise ValueError(f"shortcut must be 'zero' or 'random', got {mode!r}")
        block = self.init_conv
        block.shortcut = mode
        block.generator = None if seed is None else torch.Generator().manual_seed(int(seed))

    def forward(self, x: torch.Tensor, t: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        h0 = self.init_conv(x)  # (B, F, H, W)
        d1 = self.down1(h0)  # (B, F, H/2, W/2)
        d2 = self.down2(d1)  # (B, 2F, H/4, W/4)
        v = self.to_vec(d2)  # (B, 2F, 1, 1)
        if context is None:
            context = torch.zeros(x.shape[0], self.n_cfeat, dtype=x.dtype, device=x.device)
        nf = self.n_feat
        cemb1 = self.contextembed1(context).view(-1, 2 * nf, 1, 1)
        temb1 = self.timeembed1(t).view(-1, 2 * nf, 1, 1)
        cemb2 = self.contextembed2(context).view(-1, nf, 1, 1)
        temb2 = self.timeembed2(t).view(-1, nf, 1, 1)
        u0 = self.up0(v)  # (B, 2F, H/4, W/4)
        u1 = self.up1(cemb1 * u0 + temb1, d2)  # (B, F, H/2, W/2)
        u2 = self.up2(cemb2 * u1 + temb2, d1)  # (B, F, H, W)
        return self.out(torch.cat((u2, h0), 1))  # (B, C, H, W)
