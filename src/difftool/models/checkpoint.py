"""Checkpoint I/O: difftool safetensors (weights + model card), course and explainingai ``.pth``.

difftool checkpoints are safetensors files whose header metadata holds the :class:`ModelCard` JSON
under the ``difftool`` key. Foreign ``.pth`` files are bare state dicts: they are read with
``torch.load(weights_only=True)`` (never unpickling arbitrary objects), their family is detected by
key names, and their hyper-parameters are recovered from tensor shapes.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from difftool.config import (
    CARD_KEY,
    ContextUnetConfig,
    ModelCard,
    ScheduleConfig,
    UnetConfig,
)
from difftool.errors import DifftoolError
from difftool.fileio import atomic_write

COURSE_CLASSES = ("hero", "non-hero", "food", "spell", "side-facing")
COURSE_KEYS = ("init_conv.conv1.0.weight", "up0.0.weight", "contextembed1.model.0.weight")
EXPLAININGAI_KEYS = ("t_proj.0.weight", "downs.0.resnet_conv_first.0.2.weight", "conv_out.weight")


@dataclass
class LoadedModel:
    module: nn.Module  # in eval mode, on CPU
    card: ModelCard
    path: Path


# -- writing -----------------------------------------------------------------------------------------


def save(path: str | Path, module: nn.Module, card: ModelCard) -> Path:
    """Write ``module``'s weights and ``card`` as a difftool safetensors checkpoint (atomically)."""
    from safetensors.torch import save_file

    tensors = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    return atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata={CARD_KEY: card.to_json()}))


# -- reading -----------------------------------------------------------------------------------------


def load(path: str | Path) -> LoadedModel:
    """Load a difftool ``.safetensors``, a course ``.pth``, an explainingai ``.pth`` or a diffusers folder.

    Validated before anything is built or run (:mod:`difftool.models.validate`): every key and shape against
    the architecture, dtypes, finite values; each problem is one DifftoolError line.
    """
    from difftool.models.validate import build_checked

    path = Path(path)
    # -- diffusers model folder (pipeline / flat / training layout): UNet2DModel + scheduler config
    from difftool.models.diffusers_io import diffusers_folder

    if (folder := diffusers_folder(path)) is not None:
        from difftool.models.diffusers_unet import load_folder

        return load_folder(folder)
    if path.is_dir():
        raise DifftoolError(f"{path} is a folder, not a checkpoint file (nor a diffusers model folder)")
    if not path.is_file():
        raise DifftoolError(f"checkpoint not found: {path}")
    if _is_safetensors(path):
        state, card = _read_safetensors(path)
    else:
        state = _read_pth(path)
        card = card_from_state_dict(state, path)
    module = build_checked(card.model, state, path, card.schedule)
    return LoadedModel(module.eval(), card, path)


def _is_safetensors(path: Path) -> bool:
    from difftool.filekind import head, looks_like_safetensors

    return looks_like_safetensors(head(path, 9))


def _read_safetensors(path: Path):
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            state = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as exc:  # safetensors raises several error types for corrupt files
        msg = " ".join(str(exc).split())[:200] or type(exc).__name__
        raise DifftoolError(f"{path} is a corrupt or truncated safetensors file ({msg})") from None
    if CARD_KEY not in meta:
        raise DifftoolError(
            f"{path} has no difftool metadata; it was not written by difftool. "
            "Course and explainingai .pth state dicts load as they are; train with `difftool train`."
        )
    try:
        return state, ModelCard.from_json(meta[CARD_KEY])
    except DifftoolError as exc:
        raise DifftoolError(f"{path}: {exc}") from None


def _read_pth(path: Path) -> dict[str, torch.Tensor]:
    """A bare state dict from a ``.pth``, read with ``weights_only=True`` (plain tensors, never code)."""
    from difftool.models.pthfile import explain_load_error, reject_non_checkpoint, state_dict_of

    reject_non_checkpoint(path)
    try:
        with warnings.catch_warnings():  # e.g. "Detected pickle protocol 4": the error below says it all
            warnings.simplefilter("ignore")
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise DifftoolError(explain_load_error(path, exc)) from None
    return state_dict_of(obj, path)


def card_from_state_dict(state: dict[str, torch.Tensor], path: Path | str = "<state dict>") -> ModelCard:
    """Detect the family of a bare state dict and recover its config from tensor shapes.

    Class names: the course's own five (hero, non-hero, food, spell, side-facing) only when the course
    model has exactly 5 context features, i.e. the course's own labelling; any other class count, and any
    class-conditional explainingai-style file, gets generic ``class0 .. classN-1`` (name them with
    ``difftool export --classes``; ``--class`` by index always works).
    """
    if all(k in state for k in COURSE_KEYS):
        cfg = _recover(_course_config, state, path, "course ContextUnet")
        names = COURSE_CLASSES if cfg.n_cfeat == len(COURSE_CLASSES) else generic_class_names(cfg.n_cfeat)
        return ModelCard(model=cfg, schedule=ScheduleConfig.course(), class_names=names, source="course",
                         credit="DeepLearning.AI 'How Diffusion Models Work' ContextUnet")
    if all(k in state for k in EXPLAININGAI_KEYS):
        cfg = _recover(_explainingai_config, state, path, "explainingai Unet")
        return ModelCard(model=cfg, schedule=ScheduleConfig(), class_names=generic_class_names(cfg.num_classes),
                         source="explainingai", credit="explainingai-code/DDPM-Pytorch Unet")
    sample = ", ".join(sorted(state)[:4])
    raise DifftoolError(
        f"{path}: unrecognised checkpoint (keys start {sample} ...). Expected a difftool .safetensors, "
        f"a course ContextUnet state dict (keys {', '.join(COURSE_KEYS)}) or an explainingai Unet "
        f"state dict (keys {', '.join(EXPLAININGAI_KEYS)})"
    )


def generic_class_names(n: int) -> tuple[str, ...]:
    return tuple(f"class{i}" for i in range(n))


def _recover(fn, state, path, family: str):
    """Run a config-recovery function; a tensor of the wrong rank becomes one line, not an IndexError."""
    try:
        return fn(state)
    except (IndexError, KeyError, ValueError, TypeError) as exc:
        shapes = ", ".join(f"{k} {tuple(state[k].shape)}" for k in COURSE_KEYS + EXPLAININGAI_KEYS if k in state)
        raise DifftoolError(f"{path}: looks like a {family} state dict, but its config cannot be recovered from "
                            f"the tensor shapes ({shapes}; {type(exc).__name__}: {exc})") from None


def _course_config(state) -> ContextUnetConfig:
    w = state["init_conv.conv1.0.weight"]  # (n_feat, in_channels, 3, 3)
    return ContextUnetConfig(
        in_channels=int(w.shape[1]),
        n_feat=int(w.shape[0]),
        n_cfeat=int(state["contextembed1.model.0.weight"].shape[1]),
        height=4 * int(state["up0.0.weight"].shape[2]),
    )


def _count(state, prefix: str) -> int:
    """Number of consecutive indices ``prefix{i}.`` present in ``state``."""
    n = 0
    while any(k.startswith(f"{prefix}{n}.") for k in state):
        n += 1
    return n


def _explainingai_config(state) -> UnetConfig:
    n_down = _count(state, "downs.")
    n_mid = _count(state, "mids.")
    down = [int(state["conv_in.weight"].shape[0])]
    down += [int(state[f"downs.{i}.resnet_conv_first.0.2.weight"].shape[0]) for i in range(n_down)]
    mid = [int(state[f"mids.{i}.resnet_conv_first.0.2.weight"].shape[1]) for i in range(n_mid)]
    mid.append(int(state[f"mids.{n_mid - 1}.resnet_conv_first.0.2.weight"].shape[0]))
    down_sample = tuple(f"downs.{i}.down_sample_conv.weight" in state for i in range(n_down))
    attention = tuple(f"downs.{i}.attentions.0.in_proj_weight" in state for i in range(n_down))
    num_classes = int(state["context_proj.weight"].shape[1]) if "context_proj.weight" in state else 0
    return UnetConfig(
        im_channels=int(state["conv_in.weight"].shape[1]),
        im_size=28,  # not recoverable from weights; explainingai's default
        down_channels=tuple(down),
        mid_channels=tuple(mid),
        down_sample=down_sample,
        attention=attention,
        time_emb_dim=int(state["t_proj.0.weight"].shape[0]),
        num_down_layers=_count(state, "downs.0.resnet_conv_first."),
        num_mid_layers=_count(state, "mids.0.resnet_conv_first.") - 1,
        num_up_layers=_count(state, "ups.0.resnet_conv_first."),
        out_width=int(state["conv_out.weight"].shape[1]),
        num_classes=num_classes,
    )
