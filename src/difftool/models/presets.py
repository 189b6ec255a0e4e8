"""Named model configurations (torch-free): what ``difftool train --model NAME`` builds."""

from __future__ import annotations

from difftool.config import ContextUnetConfig, ModelConfig, UnetConfig
from difftool.errors import DifftoolError


def sprite(channels: int = 3, size: int = 16, num_classes: int = 5) -> UnetConfig:
    """The bundled sprite model: ~85 MFLOP per 16x16 forward, attention only at 4x4 and 2x2."""
    return UnetConfig(im_channels=channels, im_size=size, down_channels=(24, 48, 96, 128),
                      mid_channels=(128, 128, 96), down_sample=(True, True, True),
                      attention=(False, False, True), num_down_layers=1, num_mid_layers=1,
                      num_up_layers=1, out_width=24, num_classes=num_classes)


def tiny(channels: int = 1, size: int = 8, num_classes: int = 10) -> UnetConfig:
    """A very small U-Net for tests and 8x8 digits (two levels, attention in the middle only)."""
    return UnetConfig(im_channels=channels, im_size=size, down_channels=(16, 32, 32),
                      mid_channels=(32, 32), down_sample=(True, False), attention=(False, False),
                      time_emb_dim=32, num_down_layers=1, num_mid_layers=1, num_up_layers=1,
                      num_heads=2, out_width=16, num_classes=num_classes)


def mnist(channels: int = 1, size: int = 28, num_classes: int = 10) -> UnetConfig:
    """explainingai-sized U-Net (its default config) with class conditioning."""
    return UnetConfig(im_channels=channels, im_size=size, num_classes=num_classes)


def course(channels: int = 3, size: int = 16, num_classes: int = 5) -> ContextUnetConfig:
    """The DeepLearning.AI course ContextUnet (n_feat 64)."""
    return ContextUnetConfig(in_channels=channels, n_feat=64, n_cfeat=num_classes, height=size)


PRESETS = {"sprite": sprite, "tiny": tiny, "mnist": mnist, "course": course}
DEFAULT_FOR_DATASET = {"sprites": "sprite", "digits": "tiny", "mnist": "mnist", "images": "sprite"}


def preset(name: str, channels: int, size: int, num_classes: int) -> ModelConfig:
    if name not in PRESETS:
        raise DifftoolError(f"unknown model preset {name!r}; choose one of: {', '.join(PRESETS)}")
    return PRESETS[name](channels=channels, size=size, num_classes=num_classes)
