"""A numpy demo model for the TUI: :class:`DemoDenoiser` runs through the real runtime ``Pipeline``.

Used by the TUI tests, the tmux check and ``python -m difftool.tui.demo`` (no model files, no torch).
The denoiser's noise prediction makes the x0 estimate equal a mirrored pixel sprite: its colour comes from
the context row, its shape from the *antisymmetric* (left minus mirrored right) half of x. Every sprite
is mirror-symmetric, so the samplers only ever rescale that half: the shape is fixed by x_T (so by the
row's seed) and stays fixed along a deterministic sampler's path, while each row depends only on itself
(sprite ``i`` of a batch equals that sprite sampled alone with ``seeds[i]``, as with a real model).
"""

from __future__ import annotations

import math
import sys
import time
from statistics import NormalDist

import numpy as np

from difftool.config import ContextUnetConfig, ModelCard, ScheduleConfig
from difftool.errors import DifftoolError
from difftool.runtime.denoiser import StepCallback
from difftool.runtime.pipeline import Pipeline, SampleRequest
from difftool.runtime.schedules import make_schedule

DEMO_CLASSES = ("hero", "non-hero", "food", "spell", "side-facing")
_PALETTE = np.array([
    (0.95, 0.35, 0.25), (0.30, 0.60, 0.95), (0.98, 0.80, 0.20), (0.70, 0.35, 0.95), (0.30, 0.85, 0.40),
], dtype=np.float32)
_GREY = np.array([0.6, 0.6, 0.6], np.float32)


def demo_card(image_size: int = 16, channels: int = 3) -> ModelCard:
    """The demo model's card: the course ContextUnet shape and schedule, five sprite classes. Its x0
    estimate is exact, so it needs no guidance (guidance would only push colours out of range)."""
    model = ContextUnetConfig(in_channels=channels, n_cfeat=len(DEMO_CLASSES), height=image_size)
    return ModelCard(model=model, schedule=ScheduleConfig.course(), class_names=DEMO_CLASSES, source="demo",
                     sampling={"guidance": 1.0})


def _threshold(p: np.ndarray) -> np.ndarray:
    """z with P(N(0, 1) > z) = p (p <= 0: never, p >= 1: always)."""
    inv = NormalDist().inv_cdf
    return np.array([[math.inf if q <= 0 else -math.inf if q >= 1 else inv(1 - q) for q in row] for row in p],
                    dtype=np.float64)


class DemoDenoiser:
    """A :class:`~difftool.runtime.denoiser.Denoiser` in numpy: eps = (x - sqrt(ab) target) / sqrt(1 - ab)."""

    def __init__(self, card: ModelCard | None = None, *, delay: float = 0.0, name: str = "demo") -> None:
        self.card = card or demo_card()
        self.name = name
        self.delay = delay
        self.calls = 0
        self._schedule = make_schedule(self.card.schedule)
        size_h, size_w = self.card.image_size, self.card.image_size
        half = size_w // 2
        self._block = 2 if size_h % 2 == 0 and half % 2 == 0 else 1
        b = self._block
        yy, xx = np.mgrid[0:size_h, 0:half]
        dist = np.hypot((yy - (size_h - 1) / 2) / (size_h / 2), (xx - half) / max(half, 1))  # (H, half)
        self._coarse = _threshold(np.clip(1.25 - 1.2 * dist[::b, ::b], 0, 1))  # (H/b, half/b)
        self._fine = np.where(dist > 0.3, _threshold(np.full_like(dist, 0.08)), math.inf)  # (H, half)
        self._shade = (1.1 - 0.5 * np.linspace(0, 1, size_h, dtype=np.float32))[:, None, None]  # (H, 1, 1)

    def __call__(self, x: np.ndarray, t: np.ndarray, context: np.ndarray) -> np.ndarray:
        if self.delay:
            time.sleep(self.delay)
        self.calls += 1
        x = np.asarray(x, np.float32)
        ab = self._alpha_bar(np.asarray(t)).reshape(-1, 1, 1, 1)
        target = self.target(x, np.asarray(context, np.float32))
        eps = (x - np.sqrt(ab) * target) / np.sqrt(np.maximum(1.0 - ab, 1e-12))
        return np.ascontiguousarray(eps, dtype=np.float32)

    def _alpha_bar(self, t: np.ndarray) -> np.ndarray:
        """alpha_bar at the training timesteps behind network times ``t`` (B,)."""
        config = self._schedule.config
        steps = t * config.num_timesteps if config.time_input == "fraction" else t
        index = np.clip(np.rint(steps).astype(np.int64), 0, len(self._schedule.alpha_bar) - 1)
        return self._schedule.alpha_bar[index]

    def target(self, x: np.ndarray, context: np.ndarray) -> np.ndarray:
        """(B, C, H, W) sprites in [-1, 1]: shape from x's antisymmetric half, colour from ``context``."""
        n, channels, height, width = x.shape
        half, b = width // 2, self._block
        anti = (x[..., :half] - x[..., ::-1][..., :half]).astype(np.float64)  # (B, C, H, half)
        rms = np.sqrt(np.mean(anti * anti, axis=(1, 2, 3))) + 1e-30  # (B,)
        blocks = anti.reshape(n, channels, height // b, b, half // b, b).mean(axis=(1, 3, 5))
        coarse = blocks * (math.sqrt(channels * b * b) / rms[:, None, None]) > self._coarse  # (B, H/b, half/b)
        fine = anti.mean(axis=1) * (math.sqrt(channels) / rms[:, None, None]) > self._fine  # (B, H, half)
        mask = coarse.repeat(b, axis=1).repeat(b, axis=2) ^ fine
        middle = mask[..., -1:] if width % 2 else mask[..., :0]
        mask = np.concatenate([mask, middle, mask[..., ::-1]], axis=-1)  # (B, H, W), mirrored
        inner = mask.copy()
        inner[:, 1:, :] &= mask[:, :-1, :]
        inner[:, :-1, :] &= mask[:, 1:, :]
        inner[:, :, 1:] &= mask[:, :, :-1]
        inner[:, :, :-1] &= mask[:, :, 1:]
        colour = self._colours(context)[:, None, None, :]  # (B, 1, 1, 3)
        rgb = np.full((n, height, width, 3), 0.08, np.float32)
        rgb = np.where(mask[..., None], 0.05 + 0.4 * colour, rgb)
        rgb = np.where(inner[..., None], np.clip(colour * self._shade, 0, 1), rgb)
        img = rgb.mean(axis=-1, keepdims=True) if channels == 1 else rgb
        return (img.transpose(0, 3, 1, 2) * 2.0 - 1.0).astype(np.float32)

    def _colours(self, context: np.ndarray) -> np.ndarray:
        """(B, 3) colours: class weights mix the palette, the unassigned share is grey."""
        k = context.shape[1]
        if k == 0:
            return np.broadcast_to(_GREY, (context.shape[0], 3)).astype(np.float32)
        palette = _PALETTE[np.arange(k) % len(_PALETTE)]  # (K, 3)
        weights = np.clip(context, 0, None)
        rest = np.clip(1.0 - weights.sum(axis=1, keepdims=True), 0, None)
        return (weights @ palette + rest * _GREY).astype(np.float32)


class DemoPipeline(Pipeline):
    """The real :class:`~difftool.runtime.pipeline.Pipeline` over a :class:`DemoDenoiser`, recording each
    request (``requests``) and the steps of the current run (``steps_run``) for tests."""

    def __init__(self, card: ModelCard | None = None, *, delay: float = 0.0, name: str = "demo") -> None:
        super().__init__(DemoDenoiser(card, delay=delay, name=name))
        self.requests: list[SampleRequest] = []
        self.steps_run = 0

    def sample(self, request: SampleRequest, callback: StepCallback | None = None) -> np.ndarray:
        self.requests.append(request)
        self.steps_run = 0

        def on_step(step) -> None:
            self.steps_run = step.index + 1
            if callback is not None:
                callback(step)

        return super().sample(request, on_step)


def _broken() -> Pipeline:
    raise DifftoolError("demo: this backend always fails to load (to show the error toast)")


def main(argv: list[str] | None = None) -> None:
    """``python -m difftool.tui.demo [OUTPUT_DIR]``: the TUI on the numpy demo model."""
    from difftool.tui import run_tui

    args = sys.argv[1:] if argv is None else argv
    run_tui({"demo": DemoPipeline, "demo-slow": lambda: DemoPipeline(delay=0.08, name="demo-slow"),
             "broken": _broken}, output_dir=args[0] if args else None, mix="hero")


if __name__ == "__main__":
    main()
