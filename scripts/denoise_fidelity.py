#!/usr/bin/env python
"""Where do off-palette pixels come from? Palette fidelity of a model's x0 estimate on *real* tiles noised to t.

For each t: x_t = sqrt(ab) x0 + sqrt(1 - ab) eps from real DawnLike tiles, one forward, x0_hat = (x_t - sqrt(1 - ab)
eps_hat) / sqrt(ab); printed: the share of foreground pixels of x0_hat within RMS 8/255 of the data's palette
(``difftool eval``'s palette fidelity), the same for x_t itself, and the RMS error of x0_hat. A model whose x0
estimate is on the palette at small t but whose samples are not makes its speckle in the middle of the trajectory,
not in the last step. Needs ../shared/data (skips with a message otherwise).

    python scripts/denoise_fidelity.py                      # the bundled model, 800 tiles
    python scripts/denoise_fidelity.py runs/v3/model.onnx --tiles 2000
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "dawnlike"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", nargs="?", type=Path, default=REPO / "src" / "difftool" / "assets" / "sprites.onnx")
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--tiles", type=int, default=800)
    ap.add_argument("--t", default="1,5,10,20,40,80,160,320")
    args = ap.parse_args(argv)
    if not args.data.is_dir():
        sys.exit(f"no sprite data at {args.data} (the shared data folder); nothing to measure")
    from difftool.runtime.loader import load
    from difftool.runtime.palette import colors_of, palette_fidelity
    from difftool.train.data import load_dataset

    pipe = load(args.model, backend="ort", threads=2)
    den, card, sched = pipe.denoiser, pipe.card, pipe.schedule
    ds = load_dataset("sprites", str(args.data))
    x0, labels = ds.images[:args.tiles].astype(np.float32), ds.labels[:args.tiles]

    def u8(a):
        return ((np.clip(a, -1, 1) + 1) * 127.5).round().astype(np.uint8).transpose(0, 2, 3, 1)

    palette = colors_of(u8(ds.images))[0]
    ctx = np.eye(card.num_classes, dtype=np.float32)[labels]
    rng = np.random.default_rng(0)
    print(f"{len(x0)} tiles, {len(palette)} palette colours; t, sigma, fidelity of x0_hat, of x_t, RMS error")
    for t in (int(v) for v in args.t.split(",")):
        noise = rng.standard_normal(x0.shape).astype(np.float32)
        xt = sched.add_noise(x0, noise, np.full(len(x0), t)).astype(np.float32)
        eps = np.concatenate([den(xt[i:i + 160], np.full(len(xt[i:i + 160]), sched.model_time(t), np.float32),
                                  ctx[i:i + 160]) for i in range(0, len(xt), 160)])
        ab = sched.ab(t)
        xh = (xt - np.sqrt(1 - ab) * eps) / np.sqrt(ab)
        rms = float(np.sqrt(np.mean((np.clip(xh, -1, 1) - x0) ** 2)))
        print(f"t={t:4d}  sigma={np.sqrt((1 - ab) / ab):.4f}  x0_hat {palette_fidelity(u8(xh), palette).on_palette:6.1%}"
              f"  x_t {palette_fidelity(u8(xt), palette).on_palette:6.1%}  rms {rms:.4f}")


if __name__ == "__main__":
    main()
