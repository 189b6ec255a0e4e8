"""A numpy stand-in for the runtime pipeline: same duck-typed API, no model files, deterministic.

Used by the TUI tests, the tmux check and ``python -m difftool.tui.demo``. Each sprite is a mirrored
blob whose shape comes from its own seed and whose colour comes from its context row, so sprite ``i``
of a batch equals that sprite sampled alone with ``seeds[i]`` (like the real pipeline).
"""

from __future__ import annotations

import sys
import time
from types import SimpleNamespace
from typing import Any

import numpy as np

from difftool.config import ContextUnetConfig, ModelCard, ScheduleConfig
from difftool.errors import DifftoolError
from difftool.runtime.denoiser import Step, StepCallback
from difftool.tui.settings import parse_mix

DEMO_CLASSES = ("hero", "non-hero", "food", "spell", "side-facing")
_PALETTE = np.array([
    (0.95, 0.35, 0.25), (0.30, 0.60, 0.95), (0.98, 0.80, 0.20), (0.70, 0.35, 0.95), (0.30, 0.85, 0.40),
], dtype=np.float32)


def demo_card(image_size: int = 16, channels: int = 3) -> ModelCard:
    model = ContextUnetConfig(in_channels=channels, n_cfeat=len(DEMO_CLASSES), height=image_size)
    return ModelCard(model=model, schedule=ScheduleConfig.course(), class_names=DEMO_CLASSES, source="demo")


def _sprite(seed: int, context: np.ndarray, channels: int, size: int) -> np.ndarray:
    """(C, H, W) in [-1, 1]: a symmetric blob with an outline, coloured by the context mix."""
    rng = np.random.default_rng(seed + 7919)
    half = size // 2
    yy, xx = np.mgrid[0:size, 0:half]
    dist = np.hypot((yy - (size - 1) / 2) / (size / 2), (xx - half) / half)
    coarse = (rng.random((size // 2, half // 2)) < 1.25 - 1.2 * dist[::2, ::2]).repeat(2, 0).repeat(2, 1)
    mask = coarse ^ ((rng.random((size, half)) < 0.08) & (dist > 0.3))
    mask = np.concatenate([mask, mask[:, ::-1]], axis=1)
    inner = mask.copy()
    inner[1:, :] &= mask[:-1, :]
    inner[:-1, :] &= mask[1:, :]
    inner[:, 1:] &= mask[:, :-1]
    inner[:, :-1] &= mask[:, 1:]
    weights = np.clip(context[: len(_PALETTE)], 0, None)
    rest = max(0.0, 1.0 - float(weights.sum()))
    colour = (weights @ _PALETTE[: len(weights)] + rest * np.array([0.6, 0.6, 0.6], np.float32))
    shade = (1.1 - 0.5 * np.linspace(0, 1, size, dtype=np.float32))[:, None, None]
    rgb = np.full((size, size, 3), 0.08, np.float32)
    rgb[mask] = 0.05 + 0.4 * colour
    rgb[inner] = np.broadcast_to(np.clip(colour * shade, 0, 1), rgb.shape)[inner]
    img = rgb.mean(axis=-1, keepdims=True) if channels == 1 else rgb
    return (img.transpose(2, 0, 1) * 2.0 - 1.0).astype(np.float32)


class DemoPipeline:
    """Denoises Gaussian noise into :func:`_sprite` targets, calling ``callback`` after each step."""

    def __init__(self, card: ModelCard | None = None, *, delay: float = 0.0, name: str = "demo") -> None:
        self.card = card or demo_card()
        self.denoiser = SimpleNamespace(name=name)
        self.delay = delay
        self.requests: list[Any] = []
        self.steps_run = 0

    def context_from_spec(self, spec: str, n: int) -> np.ndarray:
        card = self.card
        mix = parse_mix(spec, card.class_names, card.num_classes)
        row = np.zeros(card.num_classes, np.float32)
        for name, weight in mix.items():
            row[card.class_index(name)] = weight
        return np.repeat(row[None], n, axis=0)

    def sample(self, request: Any, callback: StepCallback | None = None) -> np.ndarray:
        self.requests.append(request)
        if request.sampler not in ("ddpm", "ddim", "dpmpp_2m"):
            raise DifftoolError(f"unknown sampler {request.sampler!r}")
        card, n, steps = self.card, request.n, request.steps
        seeds = request.seeds or [request.seed + i for i in range(n)]
        context = request.context if request.context is not None else np.zeros((n, card.num_classes))
        size, channels = card.image_size, card.channels
        noise = np.stack([np.random.default_rng(s).standard_normal((channels, size, size)) for s in seeds])
        target = np.stack([_sprite(s, np.asarray(c, np.float32), channels, size)
                           for s, c in zip(seeds, context, strict=True)])
        x = noise.astype(np.float32)
        self.steps_run = 0
        T = card.schedule.num_timesteps
        for i in range(steps):
            a = (i + 1) / steps
            x = ((1 - a) * noise + a * target).astype(np.float32)
            x0 = np.clip(target + (1 - a) * 0.6 * noise, -1, 1).astype(np.float32)
            if self.delay:
                time.sleep(self.delay)
            self.steps_run = i + 1
            if callback is not None:
                callback(Step(index=i, total=steps, t=int(T * (1 - i / steps)), x=x, x0=x0))
        return x


def _broken() -> DemoPipeline:
    raise DifftoolError("demo: this backend always fails to load (to show the error toast)")


def main(argv: list[str] | None = None) -> None:
    """``python -m difftool.tui.demo [OUTPUT_DIR]``: the TUI on the numpy demo pipeline."""
    from difftool.tui import run_tui

    args = sys.argv[1:] if argv is None else argv
    run_tui({"demo": DemoPipeline, "demo-slow": lambda: DemoPipeline(delay=0.08, name="demo-slow"),
             "broken": _broken}, output_dir=args[0] if args else None, mix="hero")


if __name__ == "__main__":
    main()
