"""The training loop: AdamW, EMA, warmup + cosine lr, context dropout, AMP on CUDA, DDP, resume.

Determinism: every source of randomness in a step (timesteps, noise, flips, context dropout) comes
from a generator seeded by ``(seed, step, rank)``, and the data order from ``(seed, epoch)``; so a
CPU run with a given ``--seed`` is reproducible, and a resumed run continues exactly where the
interrupted one would have gone.

Run layout (``out``):
  ``model.safetensors``   EMA weights + model card (what ``difftool export`` reads)
  ``train_state.pt``      raw weights, EMA, optimizer, step (tensors only; resumable)
  ``samples/step_N.png``  periodic sample grids (one row per class)
  ``log.jsonl``           one JSON line per logging interval
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import math
import os
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
from difftool.models.presets import DEFAULT_FOR_DATASET, preset
from difftool.runtime.schedules import make_schedule


@dataclass
class TrainConfig:
    dataset: str = "sprites"
    data: tuple[str, ...] = ()
    out: str = "runs/sprites"
    model: str = ""  # preset name; "" = the dataset's default
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
    hflip: bool = True
    class_balance: float = 0.0  # draw tiles with weight count(class)**-class_balance: 0 uniform, 1 balanced
    seed: int = 0
    device: str = "auto"
    threads: int = 0  # 0 = torch default
    amp: bool = True  # CUDA only
    sample_every: int = 1000  # steps; 0 = only at the end
    save_every: int = 500  # steps
    log_every: int = 50
    resume: bool = True
    dataset_options: dict = field(default_factory=dict)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise DifftoolError("--device cuda was asked for but no CUDA GPU is visible; use --device cpu")
    return torch.device(name)


def lr_factor(step: int, total: int, warmup: int, min_ratio: float) -> float:
    """Linear warm-up then cosine decay to ``min_ratio``."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


@torch.no_grad()
def ema_update(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    for pe, pm in zip(ema.parameters(), model.parameters(), strict=True):
        pe.lerp_(pm.detach(), 1.0 - decay)
    for be, bm in zip(ema.buffers(), model.buffers(), strict=True):
        be.copy_(bm)


class _Dist:
    """torchrun / DistributedDataParallel set-up (gloo on CPU, nccl on CUDA)."""

    def __init__(self, device: torch.device):
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.enabled = self.world > 1
        if self.enabled and not torch.distributed.is_initialized():
            backend = "nccl" if device.type == "cuda" else "gloo"
            torch.distributed.init_process_group(backend=backend)

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self):
        if self.enabled:
            torch.distributed.barrier()

    def close(self):
        if self.enabled and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def build_card(cfg: TrainConfig, ds) -> ModelCard:
    name = cfg.model or DEFAULT_FOR_DATASET.get(cfg.dataset, "sprite")
    channels, size = int(ds.images.shape[1]), int(ds.images.shape[2])
    model_cfg = preset(name, channels=channels, size=size, num_classes=len(ds.class_names))
    schedule = ScheduleConfig(kind=cfg.schedule, num_timesteps=cfg.timesteps)
    return ModelCard(model=model_cfg, schedule=schedule, class_names=tuple(ds.class_names),
                     source="difftool", credit=ds.credit, license=ds.license)


def train(cfg: TrainConfig, console=None) -> Path:
    """Train (or resume) a model; returns the path of ``model.safetensors``."""
    from difftool.train.data import load_dataset

    device = resolve_device(cfg.device)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    dist = _Dist(device)
    if dist.enabled and device.type == "cuda":
        device = torch.device("cuda", dist.local_rank)
        torch.cuda.set_device(device)
    out = Path(cfg.out)
    paths = list(cfg.data) or [None]
    ds = load_dataset(cfg.dataset, paths[0] if len(paths) == 1 else None,
                      **({"paths": paths} if len(paths) > 1 else {}), **cfg.dataset_options)
    if len(ds) == 0:
        raise DifftoolError(f"the {cfg.dataset} dataset at {paths} has no images")
    card = build_card(cfg, ds)
    torch.manual_seed(cfg.seed)
    model = build(card.model).to(device)
    ema = copy.deepcopy(model).eval().requires_grad_(False)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)

    steps_per_epoch = max(1, len(ds) // (cfg.batch_size * dist.world))
    total = cfg.max_steps or cfg.epochs * steps_per_epoch
    step = 0
    state_path = out / "train_state.pt"
    if cfg.resume and state_path.exists():
        step = _load_state(state_path, model, ema, opt, card)
        if dist.main:
            _say(console, f"resuming {state_path} at step {step}/{total}")
    ddp_model = model
    if dist.enabled:
        ddp_model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)

    schedule = make_schedule(card.schedule)
    ab = torch.tensor(schedule.alpha_bar, dtype=torch.float32, device=device)
    images = torch.from_numpy(ds.images).to(device)  # (N, C, H, W) in [-1, 1]
    labels = torch.from_numpy(ds.labels).to(device)
    weights = class_weights(ds.labels, cfg.class_balance)
    use_amp = cfg.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
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
            x0, ctx = _batch(images[idx], labels[idx], card, cfg, gen, device)
            t = torch.randint(schedule.t_min, schedule.t_max + 1, (x0.shape[0],), generator=gen).to(device)
            noise = torch.randn(x0.shape, generator=gen).to(device)
            a = ab[t].view(-1, 1, 1, 1)
            x_t = a.sqrt() * x0 + (1 - a).sqrt() * noise
            t_in = t.float() / card.schedule.num_timesteps if card.schedule.time_input == "fraction" else t.float()
            for g in opt.param_groups:
                g["lr"] = cfg.lr * lr_factor(step, total, cfg.warmup_steps, cfg.min_lr_ratio)
            with torch.autocast(device.type, dtype=torch.float16, enabled=use_amp):
                loss = F.mse_loss(ddp_model(x_t, t_in, ctx).float(), noise)
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
                    _save_all(out, model, ema, opt, card, cfg, step, total, seen, t_start)
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


def weights_digest(model: torch.nn.Module) -> str:
    """SHA-256 of all parameters and buffers (exact bytes, in state-dict order)."""
    h = hashlib.sha256()
    for v in model.state_dict().values():
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def _check_ranks_in_sync(out: Path, model, dist: _Dist) -> None:
    """DDP must leave every rank with identical weights: gather digests, record them, fail loudly if not."""
    digests: list = [None] * dist.world
    torch.distributed.all_gather_object(digests, weights_digest(model))
    if dist.main:
        text = json.dumps({"world_size": dist.world, "digests": digests})
        atomic_write(out / "ddp_check.json", lambda tmp: tmp.write_text(text))
    if len(set(digests)) != 1:
        raise DifftoolError(f"DDP ranks ended with different weights: {digests}")


def class_weights(labels: np.ndarray, power: float) -> torch.Tensor | None:
    """Per-tile sampling weights ``count(class) ** -power`` (None for uniform sampling: ``power == 0``, or an
    unconditional dataset). ``power = 1`` gives every class the same share of the batches; 0.5 is halfway
    (in log space) between the data's class shares and equal shares."""
    if power < 0 or power > 1:
        raise DifftoolError(f"--class-balance must be between 0 and 1, got {power}")
    labels = np.asarray(labels, dtype=np.int64) + 1  # unlabelled tiles (-1) form a group of their own
    if power == 0 or labels.size == 0 or len(np.unique(labels)) < 2:
        return None
    counts = np.bincount(labels).astype(np.float64)
    return torch.from_numpy(counts[labels] ** -power)


def _epoch_order(n: int, seed: int, epoch: int, dist: _Dist, weights: torch.Tensor | None = None) -> torch.Tensor:
    """The tiles of one epoch (deterministic per seed and epoch, so a resumed run continues the same order):
    a permutation, or with ``weights`` n draws with replacement in proportion to them."""
    gen = torch.Generator().manual_seed(seed * 100003 + epoch)
    if weights is None:
        order = torch.randperm(n, generator=gen)
    else:
        order = torch.multinomial(weights, n, replacement=True, generator=gen)
    return order[dist.rank::dist.world]


def _batch(x0, labels, card: ModelCard, cfg: TrainConfig, gen, device):
    """Flip augmentation and the context vector with dropout (zeros = unconditional)."""
    b = x0.shape[0]
    if cfg.hflip:
        flip = (torch.rand(b, generator=gen) < 0.5).to(device)
        x0 = torch.where(flip.view(-1, 1, 1, 1), x0.flip(-1), x0)
    if card.num_classes == 0:
        return x0, None
    ctx = torch.zeros(b, card.num_classes, device=device)
    known = labels >= 0
    ctx[known.nonzero().squeeze(1), labels[known]] = 1.0
    keep = (torch.rand(b, generator=gen) >= cfg.cond_drop).to(device)
    return x0, ctx * keep.view(-1, 1)


def _save_all(out: Path, model, ema, opt, card, cfg, step, total, seen, t_start):
    training = {"step": step, "total_steps": total, "images_seen": seen, "dataset": cfg.dataset,
                "data": list(cfg.data), "epochs": cfg.epochs, "batch_size": cfg.batch_size,
                "seed": cfg.seed, "ema_decay": cfg.ema_decay, "cond_drop": cfg.cond_drop,
                "class_balance": cfg.class_balance,
                "wall_s_this_run": round(time.perf_counter() - t_start, 1),
                "torch": torch.__version__}
    card = dataclasses.replace(card, training=training)
    state = {"model": model.state_dict(), "ema": ema.state_dict(), "opt": opt.state_dict(),
             "step": torch.tensor(step), "card": card.to_json()}
    atomic_write(out / "train_state.pt", lambda tmp: torch.save(state, tmp))
    save(out / "model.safetensors", ema, card)


def _load_state(path: Path, model, ema, opt, card: ModelCard) -> int:
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
    return int(state["step"])


def _log(out: Path, step, epoch, losses, rate, opt):
    rec = {"step": step, "epoch": epoch, "loss": float(np.mean(losses)) if losses else None,
           "images_per_s": round(rate, 1), "lr": opt.param_groups[0]["lr"], "time": time.time()}
    with open(out / "log.jsonl", "a") as f:
        f.write(json.dumps(rec) + "\n")


def _sample_grid(out: Path, ema, card: ModelCard, step: int, per_class: int = 8) -> Path | None:
    """One row per class (or one row if unconditional), DDIM-25, guidance 2, seed 0."""
    from difftool.models.denoiser import TorchDenoiser
    from difftool.runtime.images import grid, save_png, to_uint8
    from difftool.runtime.pipeline import Pipeline, SampleRequest

    device = next(ema.parameters()).device
    pipe = Pipeline(TorchDenoiser(ema, card, device=str(device), cuda_graphs=False))
    k = card.num_classes
    n = per_class * max(1, k)
    ctx = np.repeat(np.eye(k, dtype=np.float32), per_class, axis=0) if k else None
    x = pipe.sample(SampleRequest(n=n, context=ctx, sampler="ddim", steps=25, guidance=2.0 if k else 1.0))
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
