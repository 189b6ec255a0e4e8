"""diffusers model folders, torch-free part: find the U-Net and its scheduler, read both configs into a card.

Three layouts are recognised by :func:`diffusers_folder`:

* ``pipeline``: a ``DDPMPipeline`` / ``DDIMPipeline`` save: ``model_index.json``, ``unet/``, ``scheduler/``;
* ``flat``: the U-Net files at the root (``config.json``, weights, ``scheduler_config.json``), as the
  google/ddpm-* models;
* ``training``: a checkpoint of diffusers' ``train_unconditional.py`` (``unet/`` and ``unet_ema/``; the EMA
  weights are used). Its scheduler config is looked for in the folder and then in the run folder above it.

Loading the weights (torch, diffusers) is :mod:`difftool.models.diffusers_unet`; this module only reads JSON,
so ``difftool info FOLDER`` needs neither.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from difftool.config import DiffusersUnetConfig, ModelCard, ScheduleConfig
from difftool.errors import DifftoolError

WEIGHT_NAMES = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin",
                "diffusion_pytorch_model.fp16.safetensors", "diffusion_pytorch_model.fp16.bin")
CARD_FILE = "difftool.json"  # the difftool card, written beside a folder difftool exports
CLASS_FILES = ("class_names.json", "classes.txt")

DOWN_BLOCKS = ("DownBlock2D", "AttnDownBlock2D", "ResnetDownsampleBlock2D", "SkipDownBlock2D",
               "AttnSkipDownBlock2D")
UP_BLOCKS = ("UpBlock2D", "AttnUpBlock2D", "ResnetUpsampleBlock2D", "SkipUpBlock2D", "AttnSkipUpBlock2D")
MID_BLOCKS = (None, "UNetMidBlock2D")
TIME_EMBEDDINGS = ("positional", "learned")
# UNet2DModel's constructor defaults for the keys checked here (a config may omit any of them).
UNET_DEFAULTS: dict[str, Any] = {
    "in_channels": 3, "out_channels": 3, "sample_size": None, "mid_block_type": "UNetMidBlock2D",
    "down_block_types": ["DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"],
    "up_block_types": ["AttnUpBlock2D", "AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D"],
    "block_out_channels": [224, 448, 672, 896], "class_embed_type": None, "num_class_embeds": None,
    "time_embedding_type": "positional",
}
# Keys EMAModel.save_pretrained adds to a U-Net config (not UNet2DModel arguments).
EMA_KEYS = ("decay", "inv_gamma", "min_decay", "optimization_step", "power", "update_after_step",
            "use_ema_warmup", "foreach")

# Scheduler classes whose folders keep difftool's default sampler (DDIM-25; DDPM only on request).
DEFAULT_SAMPLING_SCHEDULERS = ("DDPMScheduler", "PNDMScheduler")
# diffusers' defaults of the config keys that pick one of several samplers of one class.
SCHEDULER_DEFAULTS: dict[str, object] = {"algorithm_type": "dpmsolver++"}


def _schedulers() -> dict[str, list]:
    """Scheduler class -> the registered samplers whose ``diffusers_scheduler`` it is."""
    from difftool.runtime.samplers import SAMPLERS

    found: dict[str, list] = {cls: [] for cls in DEFAULT_SAMPLING_SCHEDULERS}
    for spec in SAMPLERS.values():
        if spec.diffusers_scheduler:
            found.setdefault(spec.diffusers_scheduler, []).append(spec)
    return found


def _sampler_for(cls: str, raw: dict[str, Any], shown: str) -> str | None:
    """The difftool sampler a scheduler config asks for (None: keep the default); DifftoolError if none fits."""
    schedulers = _schedulers()
    if cls not in schedulers:
        raise DifftoolError(f"{shown}: scheduler {cls} is not supported ({', '.join(schedulers)})")
    if cls in DEFAULT_SAMPLING_SCHEDULERS:
        return None
    specs = schedulers[cls]
    for spec in specs:
        if all(raw.get(k, SCHEDULER_DEFAULTS.get(k)) == v for k, v in spec.diffusers_config):
            return spec.name
    keys = sorted({k for spec in specs for k, _ in spec.diffusers_config})
    got = ", ".join(f"{k}={raw.get(k, SCHEDULER_DEFAULTS.get(k))!r}" for k in keys)
    wanted = " or ".join(", ".join(f"{k}={v!r}" for k, v in spec.diffusers_config) for spec in specs)
    raise DifftoolError(f"{shown}: {cls} with {got} is not supported (supported: {wanted})")


CLIPPING_SCHEDULERS = ("DDPMScheduler", "DDIMScheduler")  # the ones with clip_sample (default true)
BETA_SCHEDULES = {"linear": "linear", "scaled_linear": "scaled_linear", "squaredcos_cap_v2": "cosine"}
PREDICTIONS = ("epsilon", "v_prediction", "sample")
SPACINGS = ("leading", "trailing", "linspace")
VARIANCES = {"fixed_small": "posterior", "fixed_small_log": "posterior", "fixed_large": "beta",
             "fixed_large_log": "beta"}


@dataclass(frozen=True)
class DiffusersFolder:
    """Where the parts of a diffusers model folder are (a part may be None: reported when read)."""

    root: Path
    layout: Literal["pipeline", "flat", "training"]
    unet_dir: Path
    weights: Path | None
    scheduler_config: Path | None

    @property
    def config_path(self) -> Path:
        return self.unet_dir / "config.json"

    @property
    def ema(self) -> bool:
        return self.unet_dir.name == "unet_ema"

    def rel(self, path: Path) -> str:
        """``path`` as shown in messages: relative to the folder's parent (``run/unet/config.json``)."""
        try:
            return str(path.relative_to(self.root.parent))
        except ValueError:
            return str(path)


def diffusers_folder(path: str | Path) -> DiffusersFolder | None:
    """The diffusers model folder at ``path``, or None if ``path`` is not a folder that looks like one."""
    root = Path(path)
    if not root.is_dir():
        return None
    if (root / "unet_ema").is_dir():
        layout, unet = "training", root / "unet_ema"
    elif (root / "unet").is_dir():
        layout, unet = ("pipeline" if (root / "model_index.json").is_file() else "training"), root / "unet"
    elif (root / "config.json").is_file():
        layout, unet = "flat", root
    elif (root / "model_index.json").is_file():
        layout, unet = "pipeline", root / "unet"
    else:
        return None
    weights = next((unet / n for n in WEIGHT_NAMES if (unet / n).is_file()), None)
    candidates = [root / "scheduler" / "scheduler_config.json", root / "scheduler_config.json"]
    if layout == "training":
        candidates.append(root.parent / "scheduler" / "scheduler_config.json")
    scheduler = next((p for p in candidates if p.is_file()), None)
    return DiffusersFolder(root, layout, unet, weights, scheduler)


def require_folder(path: str | Path) -> DiffusersFolder:
    folder = diffusers_folder(path)
    if folder is None:
        raise DifftoolError(f"{path} is not a diffusers model folder (no model_index.json, config.json, unet/ "
                            "or unet_ema/ in it)")
    return folder


# -- JSON ------------------------------------------------------------------------------------------------


def read_json(path: Path, shown: str) -> dict[str, Any]:
    if not path.is_file():
        raise DifftoolError(f"{shown} is missing")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DifftoolError(f"{shown} is not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise DifftoolError(f"{shown} is not a JSON object")
    return data


def unet_config(folder: DiffusersFolder) -> dict[str, Any]:
    """The U-Net's config.json as UNet2DModel keywords, checked for what difftool can export."""
    shown = folder.rel(folder.config_path)
    raw = read_json(folder.config_path, shown)
    cls = raw.get("_class_name", "UNet2DModel")
    if cls != "UNet2DModel":
        raise DifftoolError(f"{shown} describes a {cls}; only UNet2DModel is supported")
    cfg = {k: v for k, v in raw.items() if not k.startswith("_") and k not in EMA_KEYS}
    check_unet(cfg, shown)
    return cfg


def check_unet(cfg: dict[str, Any], shown: str) -> None:
    """DifftoolError naming the first thing in a UNet2DModel config that difftool does not support."""
    get = {**UNET_DEFAULTS, **cfg}.get
    size = get("sample_size")
    if isinstance(size, list | tuple) and len(size) == 2 and size[0] == size[1]:
        size = size[0]
    if not isinstance(size, int) or size < 1:
        raise DifftoolError(f"{shown}: sample_size {size!r} is not supported (a positive int; square images)")
    for key, allowed in (("down_block_types", DOWN_BLOCKS), ("up_block_types", UP_BLOCKS)):
        for block in get(key):
            if block not in allowed:
                raise DifftoolError(f"{shown}: {key.split('_')[0]} block {block!r} is not supported "
                                    f"(supported: {', '.join(allowed)})")
    if get("mid_block_type") not in MID_BLOCKS:
        raise DifftoolError(f"{shown}: mid block {get('mid_block_type')!r} is not supported (UNetMidBlock2D or null)")
    if not len(get("down_block_types")) == len(get("up_block_types")) == len(get("block_out_channels")):
        raise DifftoolError(f"{shown}: down_block_types, up_block_types and block_out_channels differ in length")
    if get("class_embed_type") is not None:
        raise DifftoolError(f"{shown}: class_embed_type {get('class_embed_type')!r} is not supported "
                            "(class conditioning through num_class_embeds, class_embed_type null)")
    if get("time_embedding_type") not in TIME_EMBEDDINGS:
        raise DifftoolError(f"{shown}: time_embedding_type {get('time_embedding_type')!r} is not supported "
                            f"({', '.join(TIME_EMBEDDINGS)})")
    if get("out_channels") != get("in_channels"):
        raise DifftoolError(f"{shown}: out_channels {get('out_channels')} != in_channels {get('in_channels')} "
                            "(learned-variance outputs are not supported)")


# -- scheduler -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SchedulerInfo:
    """What a scheduler config says, in difftool terms."""

    schedule: ScheduleConfig
    prediction: str
    clip: float | None
    sampling: dict[str, Any]
    raw: dict[str, Any]


def read_scheduler(folder: DiffusersFolder) -> SchedulerInfo:
    if folder.scheduler_config is None:
        where = ("scheduler/scheduler_config.json or scheduler_config.json"
                 + (" (here or in the run folder above)" if folder.layout == "training" else ""))
        raise DifftoolError(f"{folder.root}: the scheduler config is missing (looked for {where})")
    return scheduler_info(read_json(folder.scheduler_config, folder.rel(folder.scheduler_config)),
                          folder.rel(folder.scheduler_config))


def scheduler_info(raw: dict[str, Any], shown: str = "scheduler config") -> SchedulerInfo:
    """Turn a diffusers scheduler config into a schedule, prediction type, clip and sampling defaults
    (missing keys take diffusers' defaults); DifftoolError naming any unsupported setting."""
    cls = raw.get("_class_name", "DDPMScheduler")
    sampler = _sampler_for(cls, raw, shown)
    get = raw.get
    kind = BETA_SCHEDULES.get(get("beta_schedule", "linear"))
    if kind is None:
        raise DifftoolError(f"{shown}: beta_schedule {get('beta_schedule')!r} is not supported "
                            f"({', '.join(BETA_SCHEDULES)})")
    for key in ("trained_betas", "thresholding", "rescale_betas_zero_snr", "use_karras_sigmas"):
        if get(key):
            raise DifftoolError(f"{shown}: {key} is not supported")
    prediction = get("prediction_type", "epsilon")
    if prediction not in PREDICTIONS:
        raise DifftoolError(f"{shown}: prediction_type {prediction!r} is not supported ({', '.join(PREDICTIONS)})")
    spacing = get("timestep_spacing", "linspace" if cls == "DPMSolverMultistepScheduler" else "leading")
    if spacing not in SPACINGS:
        raise DifftoolError(f"{shown}: timestep_spacing {spacing!r} is not supported ({', '.join(SPACINGS)})")
    variance = get("variance_type", "fixed_small") if cls == "DDPMScheduler" else "fixed_small"
    if variance not in VARIANCES:
        raise DifftoolError(f"{shown}: variance_type {variance!r} is not supported ({', '.join(VARIANCES)})")
    try:
        num = int(get("num_train_timesteps", 1000))
        schedule = ScheduleConfig(kind=kind, num_timesteps=num, beta_start=float(get("beta_start", 1e-4)),
                                  beta_end=float(get("beta_end", 0.02)))
        clip_on = cls in CLIPPING_SCHEDULERS and bool(get("clip_sample", True))
        clip = float(get("clip_sample_range", 1.0)) if clip_on else None
    except (TypeError, ValueError) as exc:
        raise DifftoolError(f"{shown}: malformed value ({exc})") from None
    if num < 2:
        raise DifftoolError(f"{shown}: num_train_timesteps must be at least 2, got {num}")
    sampling: dict[str, Any] = {"spacing": spacing, "variance": VARIANCES[variance]}
    if sampler:
        sampling["sampler"] = sampler
    return SchedulerInfo(schedule, prediction, clip, sampling, raw)


# -- the card ----------------------------------------------------------------------------------------------


def folder_card(folder: DiffusersFolder) -> ModelCard:
    """The model card of a diffusers folder (no weights read)."""
    cfg = unet_config(folder)
    sched = read_scheduler(folder)
    saved = _saved_card(folder)
    null_class = bool(saved.get("model", {}).get("null_class", False)) and bool(cfg.get("num_class_embeds"))
    model = DiffusersUnetConfig(unet=cfg, null_class=null_class)
    names = class_names(folder, cfg, saved, model.num_classes)
    part = folder.unet_dir.name if folder.layout != "flat" else "."
    weights = folder.weights.name if folder.weights else None
    training = {**saved.get("training", {}),
                "diffusers": {"layout": folder.layout, "unet": part, "weights": weights,
                              "scheduler": sched.raw}}
    credit = saved.get("credit") or (f"diffusers UNet2DModel {folder.root.name} ({folder.layout} layout"
                                     + (", EMA weights)" if folder.ema else ")"))
    return ModelCard(model=model, schedule=sched.schedule, class_names=names, prediction=sched.prediction,
                     source="diffusers", clip=sched.clip, credit=credit, license=saved.get("license", ""),
                     training=training, sampling={**saved.get("sampling", {}), **sched.sampling})


def _saved_card(folder: DiffusersFolder) -> dict[str, Any]:
    """The difftool card stored in the folder by ``difftool export --format diffusers`` ({} if none)."""
    path = folder.root / CARD_FILE
    data = read_json(path, folder.rel(path)) if path.is_file() else {}
    return {k: v for k, v in data.items() if not (k in ("model", "training", "sampling") and not isinstance(v, dict))}


def class_names(folder: DiffusersFolder, cfg: dict[str, Any], saved: dict[str, Any], k: int) -> tuple[str, ...]:
    """Class names from the folder (difftool card, config ``class_names``/``id2label``, class_names.json or
    classes.txt), else ``0 .. K-1``; DifftoolError when the folder names another number of classes."""
    if k == 0:
        return ()
    names, where = saved.get("class_names") or cfg.get("class_names"), "config"
    labels = cfg.get("id2label")
    if not names and isinstance(labels, dict) and all(str(key).isdigit() for key in labels):
        names = [labels[key] for key in sorted(labels, key=int)]
    for file in CLASS_FILES:
        path = folder.root / file
        if not names and path.is_file():
            names, where = _names_file(path, folder.rel(path)), folder.rel(path)
    if not names:
        return tuple(str(i) for i in range(k))
    if not isinstance(names, list | tuple) or len(names) != k:
        count = len(names) if isinstance(names, list | tuple) else "no list of"
        raise DifftoolError(f"{where} names {count} classes but the model has {k} (num_class_embeds)")
    return tuple(str(n) for n in names)


def _names_file(path: Path, shown: str) -> Any:
    text = path.read_text()
    if path.suffix != ".json":
        return [line.strip() for line in text.splitlines() if line.strip()]
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise DifftoolError(f"{shown} is not valid JSON ({exc})") from None
