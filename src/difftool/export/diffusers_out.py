"""``difftool export MODEL --format diffusers -o FOLDER``: a standard ``DDPMPipeline`` folder.

``MODEL`` is a checkpoint trained with ``difftool train --model diffusers`` (its network *is* a diffusers
``UNet2DModel``) or any diffusers folder (e.g. a training checkpoint with ``unet_ema/``, written out as a
loadable pipeline). The folder is saved by diffusers itself (``DDPMPipeline.save_pretrained``): model_index.json,
unet/ (config.json + diffusion_pytorch_model.safetensors), scheduler/scheduler_config.json; difftool adds
``difftool.json`` (its model card: class names, the null class, credit) beside them. Everything is written into
a temporary folder and moved into place at the end, so a failure leaves nothing behind.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from difftool.config import DiffusersUnetConfig, ModelCard
from difftool.errors import DifftoolError
from difftool.models.diffusers_io import CARD_FILE

BETA_SCHEDULES = {"linear": "linear", "scaled_linear": "scaled_linear", "cosine": "squaredcos_cap_v2"}


def scheduler_config(card: ModelCard) -> dict[str, Any]:
    """The diffusers scheduler config of ``card``'s schedule (DDPMScheduler unless the card was read from a
    folder with another scheduler, whose other settings are then kept). Spacing: the card's, else
    ``trailing`` (difftool's DDIM default; diffusers' own default ``leading`` never starts at T - 1)."""
    sched = card.schedule
    if sched.convention != "standard" or sched.time_input != "index":
        raise DifftoolError("this model's schedule (course convention) has no diffusers scheduler equivalent")
    raw = dict(card.training.get("diffusers", {}).get("scheduler", {})) if isinstance(card.training, dict) else {}
    cls = raw.get("_class_name", "DDPMScheduler")
    clip = card.clip_limit
    cfg = {k: v for k, v in raw.items() if not k.startswith("_")}
    cfg.update(num_train_timesteps=sched.num_timesteps, beta_schedule=BETA_SCHEDULES[sched.kind],
               beta_start=sched.beta_start, beta_end=sched.beta_end, prediction_type=card.prediction,
               timestep_spacing=card.recommended("spacing") or raw.get("timestep_spacing", "trailing"))
    if cls in ("DDPMScheduler", "DDIMScheduler"):
        cfg.update(clip_sample=clip is not None, clip_sample_range=clip if clip is not None else 1.0)
    if cls == "DDPMScheduler":
        cfg["variance_type"] = "fixed_large" if card.recommended("variance") == "beta" else "fixed_small"
    return {"_class_name": cls, **cfg}


def check_exportable(card: ModelCard, src: Path) -> None:
    if not isinstance(card.model, DiffusersUnetConfig):
        raise DifftoolError(f"{src} is a difftool '{card.model.arch}' model, which does not map onto diffusers' "
                            "UNet2DModel; train with `difftool train --model diffusers` to get one that exports")


def export_diffusers(src: str | Path, out: Path) -> dict[str, Any]:
    """Write ``src`` as a DDPMPipeline folder at ``out`` (which must not exist or be empty)."""
    from difftool.runtime.artifact import read_card

    src, out = Path(src), Path(out)
    card = read_card(src)  # fails fast (and without torch) on a model that cannot be exported
    check_exportable(card, src)
    sched_cfg = scheduler_config(card)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DifftoolError(f"{out} already exists and is not an empty folder; choose another -o")
    try:
        import diffusers
    except ImportError:
        from difftool.errors import MissingDependency

        raise MissingDependency("diffusers", "diffusers", "--format diffusers") from None
    from difftool.models.checkpoint import load

    loaded = load(src)
    scheduler_cls = getattr(diffusers, sched_cfg["_class_name"])
    scheduler = scheduler_cls.from_config({k: v for k, v in sched_cfg.items() if k != "_class_name"})
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}.") as tmp_dir:
        tmp = Path(tmp_dir) / "pipeline"
        diffusers.DDPMPipeline(unet=loaded.module.unet, scheduler=scheduler).save_pretrained(
            str(tmp), safe_serialization=True)
        (tmp / CARD_FILE).write_text(json.dumps(_card_record(loaded.card), indent=2, sort_keys=True) + "\n")
        if loaded.card.conditional:
            (tmp / "class_names.json").write_text(json.dumps(list(loaded.card.class_names)) + "\n")
        if out.exists():
            out.rmdir()
        os.replace(tmp, out)
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    return {"path": str(out), "format": "diffusers", "precision": "fp32", "layout": "pipeline", "scheduler": sched_cfg["_class_name"],
            "files": files, "bytes": sum((out / f).stat().st_size for f in files),
            "notes": _notes(loaded.card)}


def _card_record(card: ModelCard) -> dict[str, Any]:
    """The parts of the card a diffusers folder cannot hold (the configs themselves are the truth)."""
    data = card.to_dict()
    return {"model": {"null_class": card.model.null_class}, "class_names": list(card.class_names),
            "credit": data["credit"], "license": data["license"], "source": card.source,
            "training": {k: v for k, v in data["training"].items() if k != "diffusers"},
            "sampling": {k: v for k, v in data["sampling"].items() if k in ("sampler", "steps", "eta", "guidance")}}


def _notes(card: ModelCard) -> list[str]:
    if card.conditional and card.model.null_class:
        return [f"class-conditional: num_class_embeds = {card.num_classes} classes + 1 null class (index "
                f"{card.num_classes}, the unconditional label for guidance); pass class_labels to the U-Net"]
    if card.conditional:
        return ["class-conditional without a null class: pass class_labels to the U-Net (no guidance)"]
    return []
