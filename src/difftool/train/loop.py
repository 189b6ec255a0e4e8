"""The training loop: AdamW, EMA, warmup + cosine lr, context dropout, AMP on CUDA, DDP, resume.

Determinism: every source of randomness in a step (timesteps, noise, flips, context dropout) comes
from a generator seeded by ``(seed, step, rank)``, and the data order from ``(seed, epoch)``; so a
CPU run with a given ``--seed`` is reproducible, and a resumed run continues exactly where the
interrupted one would have gone.

Run layout (``out``):
  ``model.safetensors``   EMA weights + model card (what ``difftool export`` reads)
  ``train_state.pt``      raw weights, EMA, optimizer, AMP GradScaler, step (tensors only; resumable)
  ``samples/step_N.png``  periodic sample grids (one row per class)
  ``log.jsonl``           one JSON line per logging interval
"""

from __future__ import annotations

import copy
import dataclasses
import json
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from difftool.config import ModelCard, ScheduleConfig
from difftool.errors import DifftoolError
from difftool.fileio import atomic_write
from difftool.models import build
from difftool.models.checkpoint import save
from difftool.models.presets import default_preset, preset
from difftool.runtime.cpu import choose_precision
from difftool.runtime.schedules import make_schedule
from difftool.train.devices import DistEnv, cuda_device_count, plan_device
from difftool.train.dist import _check_ranks_in_sync, _Dist, weights_digest  # noqa: F401 (weights_digest re-exported)
from difftool.train.steps import (  # noqa: F401 (re-exported: the loop's parts, tested by name)
    HFLIP_DEFAULT,
    _batch,
    _dropout,
    _epoch_order,
    _init_weights,
    _perturbed,
    check_perturbation,
    class_weights,
    ema_update,
    flips,
    loss_weights,
    lr_factor,
)


@dataclass
class TrainConfig:
    dataset: str = "sprites"
    data: tuple[str, ...] = ()
    out: str = "runs/sprites"
    model: str = ""  # preset name; "" = the dataset's default
    unet_config: str = ""  # --model diffusers: a UNet2DModel config JSON ("" = the sprite-sized preset)
    schedule: str = "cosine"  # cosine | linear
    timesteps: int = 1000
    epochs: int = 100
    max_steps: int = 0  # 0 = epochs decide
    stop_after: int = 0  # stop at this step without changing the schedule (time-boxed, resumable chunks)
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_steps: int = 200
    min_lr_ratio: float = 0.05
    ema_decay: float = 0.999
    cond_drop: float = 0.1
    hflip: bool | None = None  # None: the dataset's default (HFLIP_DEFAULT: a mirrored 2 is not a 2)
    class_balance: float = 0.0  # draw tiles with weight count(class)**-class_balance: 0 uniform, 1 balanced
    seed: int = 0
    device: str = "auto"
    threads: int = 0  # 0 = torch default
    amp: bool = True  # CUDA: fp16 autocast + grad scaling
    precision: str = "fp32"  # CPU: fp32 | bf16 (autocast) | auto (bf16 where the CPU has bf16 matrix units)
    sample_every: int = 1000  # steps; 0 = only at the end
    save_every: int = 500  # steps
    log_every: int = 50
    resume: bool = True
    dataset_options: dict = field(default_factory=dict)
    init: str = ""  # start from these weights (a difftool .safetensors of the same model) when not resuming
    loss_weight: str = "none"  # none | min_snr (Hang et al. 2023: eps loss weighted min(SNR, gamma) / SNR)
    snr_gamma: float = 5.0
    # eps: the network regresses the noise; palette (U-Net presets, sprite data): a palette head
    # (models.palette_head) over the data's colours, trained with the eps loss on the eps it returns
    head: str = "eps"
    train_only: str = ""  # "head": only the palette head learns (the eps model it was --init from stays as it is)
    dropout: float = 0.0  # U-Net presets: dropout in every ResNet layer while training (not stored in the model)
    # DDPM-IP (Ning et al. 2023): the network sees x_t made with eps + gamma * xi but regresses eps, so it
    # learns to undo the drift sampling adds (exposure bias); 0 = off (the run's random draws are unchanged)
    input_perturbation: float = 0.0


def build_card(cfg: TrainConfig, ds, device_type: str = "cpu") -> ModelCard:
    name = cfg.model or default_preset(cfg.dataset, device_type)
    channels, size = int(ds.images.shape[1]), int(ds.images.shape[2])
    if name == "diffusers" and cfg.unet_config:  # a UNet2DModel config given as JSON
        from difftool.models.presets import diffusers_from_json

        model_cfg = diffusers_from_json(cfg.unet_config, channels, size, len(ds.class_names))
    else:
        model_cfg = preset(name, channels=channels, size=size, num_classes=len(ds.class_names))
    schedule = ScheduleConfig(kind=cfg.schedule, num_timesteps=cfg.timesteps)
    palette = data_palette(cfg, ds)
    model_cfg = with_head(model_cfg, cfg.head, palette)
    return ModelCard(model=model_cfg, schedule=schedule, class_names=tuple(ds.class_names),
                     source="difftool", credit=ds.credit, license=ds.license, palette=palette)


HEADS = ("eps", "palette")  # --head
TRAIN_ONLY = ("head",)  # --train-only ("" = everything learns)


def with_head(model_cfg, head: str, palette: tuple[str, ...]):
    """``model_cfg`` with the output head ``head``: ``eps`` as built, ``palette`` over the data's colours."""
    if head not in HEADS:
        raise DifftoolError(f"unknown --head {head!r}; use {' or '.join(HEADS)}")
    if head == "eps":
        return model_cfg
    if model_cfg.arch != "unet":
        raise DifftoolError(f"--head palette needs a U-Net preset (sprite, tiny, mnist, mnist-cpu), not {model_cfg.arch}")
    if not palette:
        raise DifftoolError("--head palette needs RGB sprite data (--dataset sprites): it learns the data's colours")
    return dataclasses.replace(model_cfg, palette=tuple(palette))


def data_palette(cfg: TrainConfig, ds) -> tuple[str, ...]:
    """The training data's colours for the card (``--palette auto``): sprite datasets only (pixel art with a
    small palette; photos and digits have none worth keeping)."""
    if cfg.dataset != "sprites" or ds.images.shape[1] != 3:
        return ()
    from difftool.runtime.palette import learn_palette

    return learn_palette(ds.images, max_colors=64).hex()


def eps_loss(pred: torch.Tensor, noise: torch.Tensor, alpha_bar: torch.Tensor, cfg: TrainConfig) -> torch.Tensor:
    """The eps regression loss, weighted per sample by ``cfg.loss_weight``."""
    if cfg.loss_weight == "none":
        return F.mse_loss(pred, noise)
    per = ((pred - noise) ** 2).mean(dim=(1, 2, 3))  # (B,)
    return (per * loss_weights(alpha_bar, cfg.loss_weight, cfg.snr_gamma)).mean()


def trainable(model, cfg: TrainConfig) -> list:
    """The parameters the optimizer updates: all, or with ``train_only="head"`` the palette head's (the rest
    frozen: no gradients, so the frozen body also runs cheaper)."""
    if not cfg.train_only:
        return list(model.parameters())
    if cfg.train_only not in TRAIN_ONLY:
        raise DifftoolError(f"unknown --train-only {cfg.train_only!r}; use {' or '.join(TRAIN_ONLY)}")
    if getattr(model, "head", None) is None or not cfg.init:
        raise DifftoolError("--train-only head needs --head palette and --init (the eps model whose head it trains)")
    model.requires_grad_(False)
    model.head.requires_grad_(True)
    return list(model.head.parameters())


def train(cfg: TrainConfig, console=None) -> Path:
    """Train (or resume) a model; returns the path of ``model.safetensors``."""
    from difftool.train.data import load_dataset

    check_perturbation(cfg.input_perturbation)  # before the device, the data or any file
    env = DistEnv.from_environ()
    plan = plan_device(cfg.device, env, cuda_device_count())
    if plan.note and env.rank == 0:
        _say(console, f"note: {plan.note}")
    device = torch.device(plan.device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    dist = _Dist(device, plan.backend)
    out = Path(cfg.out)
    paths = list(cfg.data) or [None]
    ds = load_dataset(cfg.dataset, paths[0] if len(paths) == 1 else None,
                      **({"paths": paths} if len(paths) > 1 else {}), **cfg.dataset_options)
    if len(ds) == 0:
        raise DifftoolError(f"the {cfg.dataset} dataset at {paths} has no images")
    card = build_card(cfg, ds, device.type)
    torch.manual_seed(cfg.seed)
    model = build(card.model, card.schedule).to(device)
    _dropout(model, cfg.dropout)
    ema = copy.deepcopy(model).eval().requires_grad_(False)
    opt = torch.optim.AdamW(trainable(model, cfg), lr=cfg.lr, weight_decay=cfg.weight_decay)

    steps_per_epoch = max(1, len(ds) // (cfg.batch_size * dist.world))
    total = cfg.max_steps or cfg.epochs * steps_per_epoch
    step = 0
    use_amp = cfg.amp and device.type == "cuda"
    cpu_bf16 = device.type == "cpu" and choose_precision(cfg.precision, "cpu")[0] == "bf16"
    if dist.main and cpu_bf16:
        _say(console, "bf16 autocast on CPU (--precision)")
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    state_path = out / "train_state.pt"
    if cfg.resume and state_path.exists():
        step = _load_state(state_path, model, ema, opt, card, scaler)
        if dist.main:
            _say(console, f"resuming {state_path} at step {step}/{total}")
    elif cfg.init:
        _init_weights(Path(cfg.init), model, ema, card)
        if dist.main:
            _say(console, f"starting from the weights of {cfg.init} (fresh optimizer, step 0)")
    ddp_model = model
    if dist.enabled:
        ddp_model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)

    schedule = make_schedule(card.schedule)
    head = getattr(model, "head", None)
    ab = torch.tensor(schedule.alpha_bar, dtype=torch.float32, device=device)
    images = torch.from_numpy(ds.images).to(device)  # (N, C, H, W) in [-1, 1]
    labels = torch.from_numpy(ds.labels).to(device)
    weights = class_weights(ds.labels, cfg.class_balance)
    if dist.main:
        out.mkdir(parents=True, exist_ok=True)
        text = json.dumps({"train": asdict(cfg), "card": card.to_dict()}, indent=2)
        atomic_write(out / "config.json", lambda tmp: tmp.write_text(text))

    progress = _Progress(console, total, enabled=dist.main)
    t_start, seen, log_loss = time.perf_counter(), 0, []
    model.train()
    end = min(total, cfg.stop_after) if cfg.stop_after else total
    while step < end:
        epoch = step // steps_per_epoch
        order = _epoch_order(len(ds), cfg.seed, epoch, dist, weights)
        for b in range(step % steps_per_epoch, steps_per_epoch):
            if step >= end:
                break
            idx = order[b * cfg.batch_size:(b + 1) * cfg.batch_size]
            gen = torch.Generator(device="cpu").manual_seed(hash((cfg.seed, step, dist.rank)) & 0x7FFFFFFF)
            if cfg.dropout:  # dropout draws from the global generator: seeded per step, so resuming is exact
                torch.manual_seed(hash((cfg.seed, step, dist.rank, 1)) & 0x7FFFFFFF)
            x0, ctx = _batch(images[idx], labels[idx], card, cfg, gen, device)
            t = torch.randint(schedule.t_min, schedule.t_max + 1, (x0.shape[0],), generator=gen).to(device)
            noise = torch.randn(x0.shape, generator=gen).to(device)
            a = ab[t].view(-1, 1, 1, 1)
            x_t = a.sqrt() * x0 + (1 - a).sqrt() * _perturbed(noise, cfg.input_perturbation, gen, device)
            t_in = t.float() / card.schedule.num_timesteps if card.schedule.time_input == "fraction" else t.float()
            for g in opt.param_groups:
                g["lr"] = cfg.lr * lr_factor(step, total, cfg.warmup_steps, cfg.min_lr_ratio)
            with torch.autocast(device.type, dtype=torch.bfloat16 if cpu_bf16 else torch.float16,
                                enabled=use_amp or cpu_bf16):
                pred = ddp_model(x_t, t_in, ctx, logits=True) if head else ddp_model(x_t, t_in, ctx)
            if head:  # the eps conv's loss plus the same loss on the eps the whole module returns
                pred, colour_logits = pred
                loss = eps_loss(pred.float(), noise, ab[t], cfg) + eps_loss(head.eps(colour_logits, x_t, t_in),
                                                                          noise, ab[t], cfg)
            else:
                loss = eps_loss(pred.float(), noise, ab[t], cfg)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.unscale_(opt)
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            scaler.step(opt)
            scaler.update()
            ema_update(ema, model, cfg.ema_decay if step > cfg.warmup_steps else 0.0)
            step += 1
            seen += x0.shape[0] * dist.world
            log_loss.append(loss.item())
            rate = seen / (time.perf_counter() - t_start)
            progress.update(step, log_loss[-1], rate)
            if dist.main and (step % cfg.log_every == 0 or step == total):
                _log(out, step, epoch, log_loss, rate, opt)
                log_loss = []
            if step % cfg.save_every == 0 or step == end:
                dist.barrier()
                if dist.main:
                    _save_all(out, model, ema, opt, card, cfg, step, total, seen, t_start, scaler)
            if dist.main and cfg.sample_every and step % cfg.sample_every == 0:
                _sample_grid(out, ema, card, step)
    progress.close()
    if dist.main and cfg.sample_every:
        _sample_grid(out, ema, card, step)
    if dist.enabled:
        _check_ranks_in_sync(out, model, dist)
    dist.barrier()
    dist.close()
    return out / "model.safetensors"


# -- helpers ---------------------------------------------------------------------------------------


def _save_all(out: Path, model, ema, opt, card, cfg, step, total, seen, t_start, scaler=None):
    training = {"step": step, "total_steps": total, "images_seen": seen, "dataset": cfg.dataset,
                "data": list(cfg.data), "epochs": cfg.epochs, "batch_size": cfg.batch_size,
                "seed": cfg.seed, "ema_decay": cfg.ema_decay, "cond_drop": cfg.cond_drop,
                "class_balance": cfg.class_balance, "loss_weight": cfg.loss_weight, "init": cfg.init,
                "dropout": cfg.dropout, "input_perturbation": cfg.input_perturbation,
                "head": cfg.head, "train_only": cfg.train_only, "lr": cfg.lr, "max_steps": cfg.max_steps,
                "wall_s_this_run": round(time.perf_counter() - t_start, 1),
                "torch": torch.__version__}
    card = dataclasses.replace(card, training=training)
    state = {"model": model.state_dict(), "ema": ema.state_dict(), "opt": opt.state_dict(),
             "step": torch.tensor(step), "card": card.to_json(),
             "scaler": scaler.state_dict() if scaler is not None and scaler.is_enabled() else {}}
    atomic_write(out / "train_state.pt", lambda tmp: torch.save(state, tmp))
    save(out / "model.safetensors", ema, card)


def _load_state(path: Path, model, ema, opt, card: ModelCard, scaler=None) -> int:
    """Restore ``path`` into the modules, optimizer and (AMP) GradScaler; returns the step."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        saved = ModelCard.from_json(state["card"])
    except Exception as exc:
        raise DifftoolError(f"cannot resume from {path} ({exc}); delete it or pass --no-resume") from None
    if saved.model != card.model or saved.schedule != card.schedule:
        raise DifftoolError(f"{path} was trained with another model/schedule; use another --out or --no-resume")
    model.load_state_dict(state["model"])
    ema.load_state_dict(state["ema"])
    opt.load_state_dict(state["opt"])
    if scaler is not None and scaler.is_enabled() and state.get("scaler"):
        scaler.load_state_dict(state["scaler"])  # loss scale + growth tracker: AMP resumes exactly
    return int(state["step"])


def _log(out: Path, step, epoch, losses, rate, opt):
    rec = {"step": step, "epoch": epoch, "loss": float(np.mean(losses)) if losses else None,
           "images_per_s": round(rate, 1), "lr": opt.param_groups[0]["lr"], "time": time.time()}
    with open(out / "log.jsonl", "a") as f:
        f.write(json.dumps(rec) + "\n")


def _sample_grid(out: Path, ema, card: ModelCard, step: int, per_class: int = 8) -> Path | None:
    """One row per class (or one row if unconditional) at the card's default settings, seed 0."""
    from difftool.generate import request_for
    from difftool.models.denoiser import TorchDenoiser
    from difftool.runtime.images import grid, save_png, to_uint8
    from difftool.runtime.pipeline import Pipeline

    device = next(ema.parameters()).device
    pipe = Pipeline(TorchDenoiser(ema, card, device=str(device), cuda_graphs=False))
    k = card.num_classes
    n = per_class * max(1, k)
    ctx = np.repeat(np.eye(k, dtype=np.float32), per_class, axis=0) if k else np.zeros((n, 0), np.float32)
    request = request_for(pipe, ctx, conditioned=bool(k), sampler=None, steps=None, eta=None, guidance=None, seed=0)
    x = pipe.sample(request)
    path = out / "samples" / f"step_{step:07d}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    save_png(path, grid(to_uint8(x, card.value_range), nrow=per_class), scale=4)
    ema.train(False)
    return path


def _say(console, msg: str):
    if console is not None:
        console.print(msg)
    else:
        print(msg, file=sys.stderr)


class _Progress:
    """Rich progress bar on stderr with loss and images/s (one final line when not a tty)."""

    def __init__(self, console, total: int, enabled: bool):
        self.bar = None
        if not enabled:
            return
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.bar = Progress(TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("loss {task.fields[loss]:.4f}"), TextColumn("{task.fields[rate]:.0f} img/s"),
                            TimeRemainingColumn(), console=console or Console(stderr=True))
        self.task = self.bar.add_task("train", total=total, loss=float("nan"), rate=0.0)
        self.bar.start()

    def update(self, step: int, loss: float, rate: float):
        if self.bar is not None:
            self.bar.update(self.task, completed=step, loss=loss, rate=rate)

    def close(self):
        if self.bar is not None:
            self.bar.stop()
