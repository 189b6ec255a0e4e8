"""The external anchor: a diffusers ``UNet2DModel`` sized to a FLOP target, stepped by diffusers'
``DDIMScheduler`` (torch eager, CPU). Needs torch and diffusers; both imported lazily."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

from difftool.bench.flops import torch_flops
from difftool.bench.runners import Runner


@dataclass
class Anchor:
    unet: Any
    config: dict[str, Any]
    flops_per_sample: int
    num_classes: int
    channels: int
    size: int


def unet_config(width: int, channels: int, size: int, num_classes: int) -> dict[str, Any]:
    """A small class-conditional UNet2DModel: 3 levels (w, 2w, 2w), attention at the lowest level.
    ``num_class_embeds`` gets one extra row for the unconditional (null) label."""
    return {
        "sample_size": size, "in_channels": channels, "out_channels": channels, "layers_per_block": 1,
        "block_out_channels": (width, 2 * width, 2 * width),
        "down_block_types": ("DownBlock2D", "DownBlock2D", "AttnDownBlock2D"),
        "up_block_types": ("AttnUpBlock2D", "UpBlock2D", "UpBlock2D"),
        "norm_num_groups": 4, "attention_head_dim": 8,
        "num_class_embeds": num_classes + 1 if num_classes else None,
    }


def _flops(config: dict[str, Any]) -> tuple[Any, int]:
    import torch
    from diffusers import UNet2DModel

    torch.manual_seed(0)
    unet = UNet2DModel(**config).eval()
    c, s = config["in_channels"], config["sample_size"]
    labels = torch.zeros(1, dtype=torch.long) if config["num_class_embeds"] else None
    return unet, torch_flops(_Call(unet, labels), torch.zeros(1, c, s, s), torch.tensor([500]))


class _Call:
    """unet(x, t, class_labels) -> tensor, for FlopCounterMode."""

    def __init__(self, unet: Any, labels: Any):
        self.unet, self.labels = unet, labels

    def __call__(self, x: Any, t: Any) -> Any:
        return self.unet(x, t, class_labels=self.labels).sample


def build_anchor(target_flops: int, channels: int = 3, size: int = 16, num_classes: int = 5) -> Anchor:
    """The width (multiple of 4) whose FLOPs per sample are closest to ``target_flops`` (log scale)."""
    _, f32 = _flops(unet_config(32, channels, size, num_classes))
    guess = 32 * math.sqrt(target_flops / f32)  # FLOPs grow ~ width^2
    best: tuple[float, int, Any, int] | None = None
    for width in sorted({max(4, 4 * round(guess / 4) + d) for d in (-4, 0, 4)}):
        unet, flops = _flops(unet_config(width, channels, size, num_classes))
        score = abs(math.log(flops / target_flops))
        if best is None or score < best[0]:
            best = (score, width, unet, flops)
    assert best is not None
    _, width, unet, flops = best
    return Anchor(unet, unet_config(width, channels, size, num_classes), flops, num_classes, channels, size)


def anchor_runner(anchor: Anchor, batch: int, steps: int) -> Runner:
    """diffusers UNet2DModel + DDIMScheduler (defaults, ``set_timesteps(steps)``), torch.no_grad."""
    import torch
    from diffusers import DDIMScheduler

    gen = torch.Generator().manual_seed(0)
    shape = (batch, anchor.channels, anchor.size, anchor.size)
    x_T = torch.randn(shape, generator=gen)
    labels = (torch.arange(batch) % anchor.num_classes) if anchor.num_classes else None
    t_fwd = torch.full((batch,), 500)
    scheduler = DDIMScheduler(num_train_timesteps=1000)
    unet = anchor.unet

    def forward() -> Any:
        with torch.no_grad():
            return unet(x_T, t_fwd, class_labels=labels).sample

    def loop() -> float:
        inside = 0.0
        scheduler.set_timesteps(steps)
        x = x_T
        with torch.no_grad():
            for t in scheduler.timesteps:
                start = time.perf_counter()
                eps = unet(x, t, class_labels=labels).sample
                inside += time.perf_counter() - start
                x = scheduler.step(eps, t, x).prev_sample
        return inside

    width = anchor.config["block_out_channels"][0]
    return Runner("diffusers", forward, loop, anchor.flops_per_sample, batch,
                  note=f"diffusers UNet2DModel width {width}, {anchor.flops_per_sample / 1e6:.0f} MFLOP/sample, "
                       f"DDIMScheduler")
