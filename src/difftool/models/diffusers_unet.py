"""A diffusers ``UNet2DModel`` behind difftool's model contract ``forward(x, t, context) -> output``.

Needs torch and diffusers (the export / PyTorch-backend side only; exported graphs run without either).

Class conditioning: difftool passes a context (B, K) float vector, diffusers an integer ``class_labels``.
The U-Net's ``nn.Embedding`` is replaced by :class:`SoftClassEmbedding` with the *same* weight, which
looks integer labels up exactly as before and maps a float context to ``context @ weight`` (one-hot = that
class; a mix blends the embeddings). With a reserved null class (difftool-trained models) the null row gets
weight ``1 - sum(context)``, so zeros context is unconditional, as in difftool's own U-Net.
"""

from __future__ import annotations

import inspect
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from difftool.config import DiffusersUnetConfig
from difftool.errors import DifftoolError, MissingDependency
from difftool.models.diffusers_io import DiffusersFolder, folder_card


class SoftClassEmbedding(nn.Module):
    """``nn.Embedding`` look-up for integer labels; ``labels @ weight`` for float (B, num_embeddings) rows."""

    def __init__(self, weight: nn.Parameter):
        super().__init__()
        self.weight = weight

    def forward(self, labels: torch.Tensor) -> torch.Tensor:
        if labels.is_floating_point():
            return labels.to(self.weight.dtype) @ self.weight
        return F.embedding(labels, self.weight)


class DiffusersDenoiser(nn.Module):
    """``forward(x (B,C,H,W), t (B,) float timestep index, context (B,K) | None)`` -> the U-Net's output
    (eps, v or x0 per the card's ``prediction``). ``self.unet`` is the diffusers module itself."""

    def __init__(self, unet: nn.Module, config: DiffusersUnetConfig):
        super().__init__()
        self.unet = unet
        self.num_classes = config.num_classes
        self.null_class = config.null_class
        if isinstance(getattr(unet, "class_embedding", None), nn.Embedding):
            unet.class_embedding = SoftClassEmbedding(unet.class_embedding.weight)

    def forward(self, x: torch.Tensor, t: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        labels = None
        if self.num_classes:
            if context is None:
                context = torch.zeros(x.shape[0], self.num_classes, dtype=x.dtype, device=x.device)
            labels = context
            if self.null_class:  # (B, K + 1): the null row takes the weight the classes leave
                labels = torch.cat([context, 1.0 - context.sum(dim=1, keepdim=True)], dim=1)
        return self.unet(x, t.reshape(-1).long(), class_labels=labels).sample


def _unet_class():
    try:
        from diffusers import UNet2DModel
    except ImportError:
        raise MissingDependency("diffusers", "diffusers", "loading a diffusers UNet2DModel") from None
    return UNet2DModel


def build_unet(config: DiffusersUnetConfig) -> DiffusersDenoiser:
    """A freshly initialised U-Net for ``config`` (keys UNet2DModel does not take are ignored)."""
    cls = _unet_class()
    accepted = set(inspect.signature(cls.__init__).parameters) - {"self"}
    kwargs = {k: (tuple(v) if isinstance(v, list) else v) for k, v in config.unet.items() if k in accepted}
    try:
        unet = cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise DifftoolError(f"diffusers cannot build this UNet2DModel config ({str(exc).splitlines()[0][:200]})") from None
    return DiffusersDenoiser(unet, config)


def read_weights(path: Path, shown: str) -> dict[str, torch.Tensor]:
    """A diffusers weights file as float32 tensors: safetensors, or a ``.bin`` read with weights_only=True."""
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt files raise many types
        msg = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise DifftoolError(f"cannot read the weights {shown} ({msg}); only plain tensors are loaded") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise DifftoolError(f"{shown} does not hold a state dict of tensors")
    return {k: v.float() if v.is_floating_point() else v for k, v in state.items()}


def load_folder(folder: DiffusersFolder):
    """A :class:`~difftool.models.checkpoint.LoadedModel` (eval mode, CPU) from a diffusers folder."""
    from difftool.models.checkpoint import LoadedModel

    card = folder_card(folder)
    if folder.weights is None:
        raise DifftoolError(f"no weights in {folder.rel(folder.unet_dir)}: expected diffusion_pytorch_model"
                            ".safetensors (or .bin)")
    shown = folder.rel(folder.weights)
    state = read_weights(folder.weights, shown)
    module = build_unet(card.model)
    fix = getattr(module.unet, "_fix_state_dict_keys_on_load", None)  # pre-0.15 attention key names
    if fix is not None:
        state = fix(dict(state)) or state
    load_into(module.unet, state, shown, folder.rel(folder.config_path))
    return LoadedModel(module.eval(), card, folder.root)


def load_into(unet: nn.Module, state: dict[str, torch.Tensor], shown: str, config_shown: str) -> None:
    """``unet.load_state_dict(state)`` with one message naming what does not fit."""
    own = unet.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in own
              if k in state and state[k].shape != own[k].shape]
    if missing or unexpected or shapes:
        parts = [f"{label} {', '.join(items[:3])}{' ...' if len(items) > 3 else ''} ({len(items)})"
                 for label, items in (("missing", missing), ("unexpected", unexpected), ("shape", shapes))
                 if items]
        raise DifftoolError(f"the weights {shown} do not match {config_shown}: {'; '.join(parts)}")
    unet.load_state_dict(state, strict=True)
