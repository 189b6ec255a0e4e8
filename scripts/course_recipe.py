"""Train a course ``ContextUnet`` with the DeepLearning.AI course's own recipe (for the shortcut measurement).

The recipe (reference-seeds.md 1.6): ContextUnet(3, n_feat=64, n_cfeat=5, height=16), T = 500 linear
schedule (beta 1e-4..0.02, the course's 501-entry table), Adam lr 1e-3 decayed linearly per epoch
(``lr * (1 - ep / epochs)``), batch 100, t ~ U{1..500}, the model sees ``t / 500``, context = one-hot
label times a Bernoulli(0.9) keep mask, loss = MSE(eps_hat, eps); no EMA, no clipping, no augmentation.
The first block's random 1x1 shortcut is *active* (a fresh conv every forward), as in the course.

Two choices, stated: the forward noising uses the standard ``sqrt(1 - ab)`` noise coefficient (the one the
course's samplers assume; the course's L2 ``perturb_input`` omits the square root, and which variant made
the course's pretrained weights is unknown); and the data is DawnLike (2110 tiles, 5 classes) instead of
the course's 89,400-sprite array, so ``--epochs`` is sized by wall time rather than fixed at 32.

Writes into ``--out`` (outside the repo): ``state.pt`` (resumable, after every epoch, atomically),
``context_model_{ep}.pth`` (course-format raw state dicts, at the course's cadence), ``log.jsonl``.
An interrupted run resumes exactly (data order, timesteps, noise and shortcut draws are seeded per epoch).

    nice -n 19 python scripts/course_recipe.py --out /root/runs/course --epochs 300
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from difftool.config import ContextUnetConfig
from difftool.fileio import atomic_write
from difftool.models.context_unet import ContextUnet
from difftool.runtime.schedules import course_alpha_bar
from difftool.train.data import load_dataset

T = 500


def _seeded(seed: int, epoch: int, salt: int) -> torch.Generator:
    return torch.Generator().manual_seed((seed * 1_000_003 + epoch * 7919 + salt) & 0x7FFFFFFF)


def run_epoch(model, opt, images, labels, ab, epoch: int, args) -> float:
    n, k = images.shape[0], 5
    order = torch.randperm(n, generator=_seeded(args.seed, epoch, 1))
    gen = _seeded(args.seed, epoch, 2)
    model.init_conv.generator = _seeded(args.seed, epoch, 3)  # the shortcut's draws
    for g in opt.param_groups:
        g["lr"] = args.lr * (1 - epoch / args.epochs)
    losses = []
    for b in range(0, n, args.batch_size):
        idx = order[b:b + args.batch_size]
        x0 = images[idx]
        noise = torch.randn(x0.shape, generator=gen)
        t = torch.randint(1, T + 1, (x0.shape[0],), generator=gen)
        c = F.one_hot(labels[idx], k).float()
        keep = torch.bernoulli(torch.full((x0.shape[0], 1), 0.9), generator=gen)
        a = ab[t].view(-1, 1, 1, 1)
        x_t = a.sqrt() * x0 + (1 - a).sqrt() * noise
        loss = F.mse_loss(model(x_t, t.float() / T, c * keep), noise)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return float(np.mean(losses))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--data", default=None, help="sprite folder (default: the shared dawnlike)")
    ap.add_argument("--epochs", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=100)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--stop-after", type=int, default=0, help="stop after this epoch (resume later)")
    ap.add_argument("--shortcut", choices=("random", "zero"), default="random")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    ds = load_dataset("sprites", args.data)
    images = torch.from_numpy(ds.images).float()
    labels = torch.from_numpy(ds.labels).long()
    ab = torch.tensor(course_alpha_bar(T)[1], dtype=torch.float32)
    torch.manual_seed(args.seed)
    model = ContextUnet(ContextUnetConfig(in_channels=3, n_feat=64, n_cfeat=5, height=16))
    model.set_shortcut(args.shortcut)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    args.out.mkdir(parents=True, exist_ok=True)
    state_path, start = args.out / "state.pt", 0
    if state_path.exists():
        state = torch.load(state_path, map_location="cpu", weights_only=True)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        start = int(state["epoch"]) + 1
        print(f"resuming at epoch {start}/{args.epochs}", flush=True)
    (args.out / "classes.json").write_text(json.dumps(list(ds.class_names)))
    end = min(args.epochs, args.stop_after + 1) if args.stop_after else args.epochs
    model.train()
    for ep in range(start, end):
        t0 = time.perf_counter()
        loss = run_epoch(model, opt, images, labels, ab, ep, args)
        dt = time.perf_counter() - t0
        sd = model.state_dict()
        atomic_write(state_path, lambda p, sd=sd, ep=ep: torch.save(
            {"model": sd, "opt": opt.state_dict(), "epoch": torch.tensor(ep)}, p))
        if ep % max(4, args.epochs // 32) == 0 or ep == args.epochs - 1:  # the course's 4-of-32 cadence
            atomic_write(args.out / f"context_model_{ep}.pth", lambda p, sd=sd: torch.save(sd, p))
        rec = {"epoch": ep, "loss": round(loss, 5), "seconds": round(dt, 2),
               "images_per_s": round(len(images) / dt, 1), "time": time.time()}
        with open(args.out / "log.jsonl", "a") as f:  # append-only log: a torn last line is harmless
            f.write(json.dumps(rec) + "\n")
        print(json.dumps(rec), flush=True)


if __name__ == "__main__":
    main()
