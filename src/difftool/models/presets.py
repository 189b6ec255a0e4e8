"""Named model configurations (torch-free): what ``difftool train --model NAME`` builds."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from difftool.config import ContextUnetConfig, DiffusersUnetConfig, ModelConfig, UnetConfig
from difftool.errors import DifftoolError


def sprite(channels: int = 3, size: int = 16, num_classes: int = 5) -> UnetConfig:
    """The bundled sprite model: ~85 MFLOP per 16x16 forward, attention only at 4x4 and 2x2."""
    return UnetConfig(im_channels=channels, im_size=size, down_channels=(24, 48, 96, 128),
                      mid_channels=(128, 128, 96), down_sample=(True, True, True),
                      attention=(False, False, True), num_down_layers=1, num_mid_layers=1,
                      num_up_layers=1, out_width=24, num_classes=num_classes)


def sprite_wide(channels: int = 3, size: int = 16, num_classes: int = 5) -> UnetConfig:
    """``sprite`` with twice the width at 16x16 (48 channels) and 64 at 8x8: the issue's "more width at full
    resolution" experiment (about 0.78x ``sprite``'s training images/s in bf16)."""
    return dataclasses.replace(sprite(channels, size, num_classes), down_channels=(48, 64, 96, 128), out_width=48)


def tiny(channels: int = 1, size: int = 8, num_classes: int = 10) -> UnetConfig:
    """A very small U-Net for tests and 8x8 digits (two levels, attention in the middle only)."""
    return UnetConfig(im_channels=channels, im_size=size, down_channels=(16, 32, 32),
                      mid_channels=(32, 32), down_sample=(True, False), attention=(False, False),
                      time_emb_dim=32, num_down_layers=1, num_mid_layers=1, num_up_layers=1,
                      num_heads=2, out_width=16, num_classes=num_classes)


def mnist(channels: int = 1, size: int = 28, num_classes: int = 10) -> UnetConfig:
    """explainingai-sized U-Net (its default config) with class conditioning."""
    return UnetConfig(im_channels=channels, im_size=size, num_classes=num_classes)


def mnist_cpu(channels: int = 1, size: int = 28, num_classes: int = 10) -> UnetConfig:
    """MNIST sized for a 2-core CPU: widths 16-32-64, one layer per block, attention only in the 7x7 middle
    (explainingai's default attends at 28x28, which costs most of its much larger compute). Class embeddings
    start at unit scale (as diffusers' ``nn.Embedding``), so a ten-minute run learns the conditioning."""
    return UnetConfig(im_channels=channels, im_size=size, down_channels=(16, 32, 64), mid_channels=(64, 64, 32),
                      down_sample=(True, True), attention=(False, False), time_emb_dim=64, num_down_layers=1,
                      num_mid_layers=1, num_up_layers=1, num_heads=4, out_width=16, num_classes=num_classes,
                      context_init_std=1.0)


def course(channels: int = 3, size: int = 16, num_classes: int = 5) -> ContextUnetConfig:
    """The DeepLearning.AI course ContextUnet (n_feat 64)."""
    return ContextUnetConfig(in_channels=channels, n_feat=64, n_cfeat=num_classes, height=size)


def diffusers(channels: int = 3, size: int = 16, num_classes: int = 5,
              unet: dict[str, Any] | None = None) -> DiffusersUnetConfig:
    """A diffusers ``UNet2DModel`` (``unet``: its config; default: sized like the bundled sprite model, widths
    24-48-96-128, attention on the two lowest levels, as many levels (<= 4) as ``size`` halves evenly).
    Classes get ``num_class_embeds = K + 1``: the last label is the null class that context dropout trains,
    so guidance works."""
    from difftool.models.diffusers_io import check_unet

    if unet is None:
        levels = 1
        while levels < 4 and size % (2 ** levels) == 0:
            levels += 1
        widths = (24, 48, 96, 128)[:levels]
        attn = [i >= levels - 2 and levels > 1 for i in range(levels)]
        unet = {"block_out_channels": list(widths), "layers_per_block": 1, "norm_num_groups": 8,
                "attention_head_dim": 8,
                "down_block_types": ["AttnDownBlock2D" if a else "DownBlock2D" for a in attn],
                "up_block_types": ["AttnUpBlock2D" if a else "UpBlock2D" for a in reversed(attn)]}
    given = unet.get("num_class_embeds")
    embeds = num_classes + 1 if num_classes else None
    if given is not None and given != embeds:
        raise DifftoolError(f"the U-Net config sets num_class_embeds {given}, but the dataset has {num_classes} "
                            f"classes: difftool uses {embeds} (a null class for guidance); leave it out")
    cfg = {**unet, "sample_size": size, "in_channels": channels, "out_channels": channels,
           "num_class_embeds": embeds}
    check_unet(cfg, "the U-Net config")
    return DiffusersUnetConfig(unet=cfg, null_class=bool(num_classes))


def diffusers_from_json(path: str | Path, channels: int, size: int, num_classes: int) -> DiffusersUnetConfig:
    """:func:`diffusers` with a UNet2DModel config read from a JSON file (e.g. a model's unet/config.json)."""
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise DifftoolError(f"U-Net config not found: {path}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DifftoolError(f"{path} is not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise DifftoolError(f"{path} is not a JSON object (a UNet2DModel config)")
    from difftool.models.diffusers_io import EMA_KEYS

    unet = {k: v for k, v in data.items() if not k.startswith("_") and k not in EMA_KEYS}
    return diffusers(channels, size, num_classes, unet=unet)


PRESETS = {"sprite": sprite, "sprite-wide": sprite_wide, "tiny": tiny, "mnist": mnist, "mnist-cpu": mnist_cpu,
           "course": course, "diffusers": diffusers}
DEFAULT_FOR_DATASET = {"sprites": "sprite", "digits": "tiny", "mnist": "mnist", "images": "sprite"}
CPU_DEFAULT_FOR_DATASET = {"mnist": "mnist-cpu"}  # where the GPU-sized default would take hours on a CPU


def default_preset(dataset: str, device_type: str = "cpu") -> str:
    """The preset ``difftool train --dataset D`` builds when ``--model`` is left out, on this device type."""
    if device_type != "cuda" and dataset in CPU_DEFAULT_FOR_DATASET:
        return CPU_DEFAULT_FOR_DATASET[dataset]
    return DEFAULT_FOR_DATASET.get(dataset, "sprite")


def preset(name: str, channels: int, size: int, num_classes: int) -> ModelConfig:
    if name not in PRESETS:
        raise DifftoolError(f"unknown model preset {name!r}; choose one of: {', '.join(PRESETS)}")
    return PRESETS[name](channels=channels, size=size, num_classes=num_classes)
