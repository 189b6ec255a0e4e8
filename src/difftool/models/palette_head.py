"""The palette head: the U-Net's clean-image estimate as a per-pixel mixture of a fixed palette, returned as eps.

Pixel art uses a handful of exact colours. A network that regresses eps has no reason to land on them: its
samples drift into in-between colours and speckle. With this head a second output conv, beside the eps one,
gives one logit per palette colour and pixel. The head turns eps into the clean-image estimate the samplers
would use, ``x0_eps = (x - sqrt(1 - ab) eps) / sqrt(ab)``, and scores every colour by how far it lies from it, on a
scale ``tau`` the network sets from its time-and-class embedding (sharp where its estimate is good, at low
noise; flat where it is not):

    logits_k = r_k - |x0_eps - c_k|^2 / (2 tau^2),   x0 = softmax(logits) @ colours

(``r``: the colour conv's logits, the colours the context suggests). ``x0`` is a convex mixture of the colours,
exactly a palette colour wherever the head is sure. The module returns ``(x - sqrt(ab) x0) / sqrt(1 - ab)``, so
every sampler, backend, exported graph and the one-file generator use it unchanged, and a sampler's own x0 from
that eps is the mixture again (up to float rounding). Training applies the ordinary eps loss twice: to the eps
conv and to the eps the whole module returns (so the head learns exactly what the samplers use: in x0 terms,
SNR-weighted squared error, which makes it snap hard at low noise, where the true pixel is a palette colour). An
eps model fine-tunes into one (``difftool train --head palette --init EPS_MODEL``, optionally ``--train-only
head``: the eps model stays as it is and only the head learns).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from difftool.config import ScheduleConfig
from difftool.errors import DifftoolError
from difftool.runtime.palette import Palette

TAU_INIT = 0.05  # the initial colour scale (value-range units): a fine-tuned eps model starts near-snapped


class PaletteHead(nn.Module):
    """``forward(h (B, W, H, W), eps (B, C, H, W), x, t (B,), temb (B, D)) -> eps``: ``h`` the U-Net's last
    features, ``eps`` its eps conv's output; :meth:`logits` the colour logits, :meth:`x0` their mixture."""

    def __init__(self, palette: tuple[str, ...], schedule: ScheduleConfig | None, channels: int, t_dim: int,
                 width: int, clip: float = 1.0):
        super().__init__()
        if schedule is None:
            raise DifftoolError("a palette-head U-Net needs its card's schedule to return eps; build(config, schedule)")
        from difftool.runtime.schedules import make_schedule

        ab = np.asarray(make_schedule(schedule).alpha_bar, dtype=np.float64)
        self.channels, self.clip = channels, clip
        self.fraction = schedule.time_input == "fraction"
        self.num_timesteps = schedule.num_timesteps
        self.conv = nn.Conv2d(width, len(palette), 3, 1, 1)  # the colour logits start at zero
        nn.init.zeros_(self.conv.weight)
        nn.init.zeros_(self.conv.bias)
        self.tau = nn.Linear(t_dim, 1)  # log tau from the time-and-class embedding
        nn.init.zeros_(self.tau.weight)
        nn.init.constant_(self.tau.bias, math.log(TAU_INIT))
        colors = Palette.from_hex(palette).signed()  # (K, C) in the value range
        self.register_buffer("colors", torch.from_numpy(colors), persistent=False)
        self.register_buffer("sqrt_ab", torch.from_numpy(np.sqrt(ab)).float(), persistent=False)
        self.register_buffer("sqrt_1m_ab", torch.from_numpy(np.sqrt(1.0 - ab)).float(), persistent=False)

    def index(self, t: torch.Tensor) -> torch.Tensor:
        """The schedule index of the network's time input (the index itself, or fraction x T)."""
        steps = t * self.num_timesteps if self.fraction else t
        return torch.clamp(torch.floor(steps + (0.5 if self.fraction else 0.0)), 0, self.sqrt_ab.shape[0] - 1).long()

    def _coefs(self, t: torch.Tensor):
        i = self.index(t)
        return self.sqrt_ab[i].view(-1, 1, 1, 1), self.sqrt_1m_ab[i].view(-1, 1, 1, 1)

    def logits(self, h: torch.Tensor, eps: torch.Tensor, x: torch.Tensor, t: torch.Tensor,
               temb: torch.Tensor) -> torch.Tensor:
        """(B, K, H, W) colour logits: the colour conv's plus the distance of each colour to eps's x0."""
        eps, x = eps.float(), x.float()
        a, s = self._coefs(t)
        x0_eps = torch.clamp((x - s * eps) / a, -self.clip, self.clip)
        d = ((x0_eps.unsqueeze(1) - self.colors.view(1, -1, self.channels, 1, 1)) ** 2).sum(2)  # (B, K, H, W)
        inv_2tau2 = 0.5 * torch.exp(-2.0 * self.tau(temb.float())).view(-1, 1, 1, 1)
        return self.conv(h).float() - d * inv_2tau2

    def x0(self, logits: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W): the softmax mixture of the colours. The softmax runs over the last axis, after the
        permute: onnxruntime's softmax over axis 1 of NCHW was 2.4 ms of a 23 ms forward of 32 sprites."""
        probs = torch.softmax(logits.permute(0, 2, 3, 1), dim=-1)  # (B, H, W, K)
        return (probs @ self.colors).permute(0, 3, 1, 2)  # (B, C, H, W)

    def eps(self, logits: torch.Tensor, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The eps the module returns for colour ``logits``: ``(x - sqrt(ab) x0) / sqrt(1 - ab)``."""
        a, s = self._coefs(t)
        return (x.float() - a * self.x0(logits)) / s

    def forward(self, h, eps, x, t, temb) -> torch.Tensor:
        return self.eps(self.logits(h, eps, x, t, temb), x, t)
