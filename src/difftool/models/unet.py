"""The modern U-Net (explainingai ``DDPM-Pytorch`` layout), plus optional class conditioning.

Sinusoidal time embedding -> MLP; ResNet blocks (GroupNorm + SiLU) with the time embedding added
between the two convs; self-attention after each ResNet block; down / mid / up stages. Parameter names
and registration order follow explainingai ``models/unet_base.py`` so its checkpoints (330 keys at the
default config) load strictly. Differences, none of which change a loaded model's function:

* attention is a small module with the same parameter names as ``nn.MultiheadAttention``
  (``in_proj_weight``, ``in_proj_bias``, ``out_proj``) written with plain matmuls, so it exports
  cleanly to ONNX and TensorRT at any batch size;
* ``attention`` flags can switch attention off per level (fewer FLOPs for small sprite models);
* ``num_classes > 0`` adds ``context_proj`` (a bias-free Linear, one learned embedding per class)
  and ``null_embedding`` (the "no class" embedding used for classifier-free guidance). The network
  takes a real context vector ``c``: embedding = ``c @ E + (1 - sum(c)) * null``, so one-hot picks
  a class, zeros is unconditional, and fractions mix classes.

Time input: the integer training timestep, truncated as explainingai's ``.long()`` does (floor for
t >= 0), passed as float32 so one graph signature serves every model.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from difftool.config import ScheduleConfig, UnetConfig


def time_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding (B,) -> (B, dim): ``[sin(t / f_i), cos(t / f_i)]``, f_i = 10000^(i/(dim/2))."""
    half = dim // 2
    exponent = torch.arange(half, dtype=torch.float32, device=t.device) / half
    freqs = torch.exp(-math.log(10000.0) * exponent)  # 1 / factor
    args = torch.floor(t.float()).reshape(-1, 1) * freqs  # (B, half)
    return torch.cat([torch.sin(args), torch.cos(args)], dim=-1)


class SelfAttention(nn.Module):
    """Multi-head self-attention with ``nn.MultiheadAttention``'s parameter names (batch_first)."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"attention width {dim} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * dim, dim))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * dim))
        self.out_proj = nn.Linear(dim, dim)
        nn.init.xavier_uniform_(self.in_proj_weight)
        nn.init.zeros_(self.out_proj.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (B, N, C)
        b, n, c = x.shape
        hd = c // self.num_heads
        qkv = F.linear(x, self.in_proj_weight, self.in_proj_bias)  # (B, N, 3C)
        qkv = qkv.reshape(b, n, 3, self.num_heads, hd).permute(2, 0, 3, 1, 4)  # (3, B, h, N, hd)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = torch.softmax((q * hd**-0.5) @ k.transpose(-1, -2), dim=-1)  # (B, h, N, N)
        out = (attn @ v).transpose(1, 2).reshape(b, n, c)
        return self.out_proj(out)


def _gn_silu_conv(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.GroupNorm(8, c_in), nn.SiLU(), nn.Conv2d(c_in, c_out, 3, 1, 1))


class _ResAttnStack(nn.Module):
    """Lists of ResNet and attention layers shared by the down, mid and up blocks.

    ``n_res`` ResNet layers and ``n_attn`` attention layers, registered in the explainingai order.
    ``dropout``: a training-time regulariser (Ho et al. 2020: between the second block's SiLU and conv,
    0.1 on CIFAR-10), set by :func:`set_dropout`; no weights, and a no-op in eval mode (export, sampling).
    """

    dropout = 0.0

    def _build(self, c_in: int, c_out: int, t_dim: int, n_res: int, n_attn: int, heads: int):
        cins = [c_in] + [c_out] * (n_res - 1)
        self.resnet_conv_first = nn.ModuleList(_gn_silu_conv(ci, c_out) for ci in cins)
        self.t_emb_layers = nn.ModuleList(nn.Sequential(nn.SiLU(), nn.Linear(t_dim, c_out)) for _ in cins)
        self.resnet_conv_second = nn.ModuleList(_gn_silu_conv(c_out, c_out) for _ in cins)
        self.attention_norms = nn.ModuleList(nn.GroupNorm(8, c_out) for _ in range(n_attn))
        self.attentions = nn.ModuleList(SelfAttention(c_out, heads) for _ in range(n_attn))
        self.residual_input_conv = nn.ModuleList(nn.Conv2d(ci, c_out, 1) for ci in cins)

    def _resnet(self, i: int, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        h = self.resnet_conv_first[i](x)
        h = h + self.t_emb_layers[i](temb)[:, :, None, None]
        if self.dropout and self.training:  # GroupNorm, SiLU, dropout, conv (the state-dict keys unchanged)
            norm, act, conv = self.resnet_conv_second[i]
            h = conv(F.dropout(act(norm(h)), self.dropout, training=True))
        else:
            h = self.resnet_conv_second[i](h)
        return h + self.residual_input_conv[i](x)

    def _attend(self, i: int, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        a = self.attention_norms[i](x.reshape(b, c, h * w)).transpose(1, 2)  # (B, HW, C)
        a = self.attentions[i](a).transpose(1, 2).reshape(b, c, h, w)
        return x + a

    def _layers(self, x: torch.Tensor, temb: torch.Tensor, n: int) -> torch.Tensor:
        for i in range(n):
            x = self._resnet(i, x, temb)
            if len(self.attentions):
                x = self._attend(i, x)
        return x


def set_dropout(module: nn.Module, p: float) -> int:
    """Set the training dropout of every ResNet layer in ``module``; returns how many blocks took it."""
    blocks = [m for m in module.modules() if isinstance(m, _ResAttnStack)]
    for block in blocks:
        block.dropout = float(p)
    return len(blocks)


class DownBlock(_ResAttnStack):
    def __init__(self, c_in, c_out, t_dim, down_sample, num_heads, num_layers, attention=True):
        super().__init__()
        self.num_layers = num_layers
        self._build(c_in, c_out, t_dim, num_layers, num_layers if attention else 0, num_heads)
        self.down_sample_conv = nn.Conv2d(c_out, c_out, 4, 2, 1) if down_sample else nn.Identity()

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        return self.down_sample_conv(self._layers(x, temb, self.num_layers))


class MidBlock(_ResAttnStack):
    def __init__(self, c_in, c_out, t_dim, num_heads, num_layers):
        super().__init__()
        self.num_layers = num_layers
        self._build(c_in, c_out, t_dim, num_layers + 1, num_layers, num_heads)

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        x = self._resnet(0, x, temb)
        for i in range(self.num_layers):
            x = self._resnet(i + 1, self._attend(i, x), temb)
        return x


class UpBlock(_ResAttnStack):
    def __init__(self, c_in, c_out, t_dim, up_sample, num_heads, num_layers, attention=True):
        super().__init__()
        self.num_layers = num_layers
        self._build(c_in, c_out, t_dim, num_layers, num_layers if attention else 0, num_heads)
        half = c_in // 2
        self.up_sample_conv = nn.ConvTranspose2d(half, half, 4, 2, 1) if up_sample else nn.Identity()

    def forward(self, x: torch.Tensor, skip: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        x = torch.cat([self.up_sample_conv(x), skip], dim=1)
        return self._layers(x, temb, self.num_layers)


class Unet(nn.Module):
    """``forward(x (B,C,H,W), t (B,) float timestep, context (B,K) float | None) -> eps (B,C,H,W)``.

    With ``config.palette`` a second output conv gives colour logits and :class:`PaletteHead` turns both into eps
    (``schedule``, the card's, is then required); ``forward(..., logits=True)`` returns (the conv's eps, the
    colour logits) for the training loss."""

    def __init__(self, config: UnetConfig = UnetConfig(), schedule: ScheduleConfig | None = None):
        super().__init__()
        cfg = self.config = config
        down, mid = list(cfg.down_channels), list(cfg.mid_channels)
        if mid[0] != down[-1] or mid[-1] != down[-2] or len(cfg.down_sample) != len(down) - 1:
            raise ValueError("UnetConfig: need mid[0] == down[-1], mid[-1] == down[-2], "
                             "len(down_sample) == len(down) - 1")
        attn = tuple(cfg.attention) + (True,) * (len(down) - 1 - len(cfg.attention))
        t_dim = cfg.time_emb_dim
        self.t_proj = nn.Sequential(nn.Linear(t_dim, t_dim), nn.SiLU(), nn.Linear(t_dim, t_dim))
        self.conv_in = nn.Conv2d(cfg.im_channels, down[0], 3, 1, 1)
        self.downs = nn.ModuleList(
            DownBlock(down[i], down[i + 1], t_dim, cfg.down_sample[i], cfg.num_heads,
                      cfg.num_down_layers, attn[i])
            for i in range(len(down) - 1)
        )
        self.mids = nn.ModuleList(
            MidBlock(mid[i], mid[i + 1], t_dim, cfg.num_heads, cfg.num_mid_layers)
            for i in range(len(mid) - 1)
        )
        self.ups = nn.ModuleList(
            UpBlock(down[i] * 2, down[i - 1] if i != 0 else cfg.out_width, t_dim, cfg.down_sample[i],
                    cfg.num_heads, cfg.num_up_layers, attn[i])
            for i in reversed(range(len(down) - 1))
        )
        self.norm_out = nn.GroupNorm(8, cfg.out_width)
        self.conv_out = nn.Conv2d(cfg.out_width, cfg.im_channels, 3, 1, 1)
        self.head = None
        if cfg.palette:  # a second output conv: one logit per colour (models.palette_head)
            from difftool.models.palette_head import PaletteHead

            self.head = PaletteHead(tuple(cfg.palette), schedule, cfg.im_channels, t_dim, cfg.out_width)
        if cfg.num_classes > 0:
            self.context_proj = nn.Linear(cfg.num_classes, t_dim, bias=False)
            self.null_embedding = nn.Parameter(torch.zeros(t_dim))
            nn.init.normal_(self.context_proj.weight, std=cfg.context_init_std)

    def embed(self, t: torch.Tensor, context: torch.Tensor | None) -> torch.Tensor:
        """Time (and class) embedding (B, time_emb_dim)."""
        temb = self.t_proj(time_embedding(t, self.config.time_emb_dim))
        if self.config.num_classes > 0:
            if context is None:
                context = temb.new_zeros(temb.shape[0], self.config.num_classes)
            weight_null = 1.0 - context.sum(dim=1, keepdim=True)  # (B, 1)
            temb = temb + self.context_proj(context) + weight_null * self.null_embedding
        return temb

    def forward(self, x: torch.Tensor, t: torch.Tensor, context: torch.Tensor | None = None,
                logits: bool = False) -> torch.Tensor:
        t = t.reshape(-1).expand(x.shape[0]) if t.numel() == 1 else t.reshape(-1)
        temb = self.embed(t, context)  # (B, T_dim)
        h = self.conv_in(x)  # (B, down[0], H, W)
        skips = []
        for block in self.downs:
            skips.append(h)
            h = block(h, temb)
        for block in self.mids:
            h = block(h, temb)
        for block in self.ups:
            h = block(h, skips.pop(), temb)
        h = F.silu(self.norm_out(h))
        eps = self.conv_out(h)
        if self.head is None:
            return eps
        if logits:  # training: the conv's eps and the colour logits
            return eps, self.head.logits(h, eps, x, t, temb)
        return self.head(h, eps, x, t, temb)
