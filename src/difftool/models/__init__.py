"""PyTorch models (needs the ``train`` extra): architectures, construction and checkpoint I/O."""

from __future__ import annotations

from difftool.config import ContextUnetConfig, DiffusersUnetConfig, ModelConfig, ScheduleConfig, UnetConfig


def build(config: ModelConfig, schedule: ScheduleConfig | None = None):
    """Instantiate the nn.Module for ``config``: ``forward(x, t, context) -> eps``. ``schedule`` (the card's) is
    needed by a U-Net with a palette head, which converts its clean-image estimate to eps."""
    if isinstance(config, ContextUnetConfig):
        from difftool.models.context_unet import ContextUnet

        return ContextUnet(config)
    if isinstance(config, UnetConfig):
        from difftool.models.unet import Unet

        return Unet(config, schedule)
    if isinstance(config, DiffusersUnetConfig):  # a diffusers UNet2DModel (needs diffusers)
        from difftool.models.diffusers_unet import build_unet

        return build_unet(config)
    raise TypeError(f"not a model config: {config!r}")


def __getattr__(name):  # lazy: difftool.models.load / save
    if name in ("load", "save", "LoadedModel"):
        from difftool.models import checkpoint

        return getattr(checkpoint, name)
    raise AttributeError(name)
