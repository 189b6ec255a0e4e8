"""What the comparison benchmark (``benchmarks/run_benchmarks.py``) times, behind two calls each.

A :class:`Runner` holds, for one implementation at one batch size, ``forward()`` (one network forward)
and ``loop()`` (one full sampling loop, returning the seconds spent inside the network so the loop's own
cost is measured in the same run). Implementations:

* ``torch-eager``: the course's reference: a plain Python DDIM loop around ``model(x, t, c)`` under
  ``torch.no_grad()``, all tensors in torch;
* ``torch-compile``: the same loop around ``torch.compile(model)`` (compile time recorded apart);
* ``ort`` / ``ort-opt`` / ``ort-int8`` (and GPU backends): difftool's own path, a
  :class:`~difftool.runtime.denoiser.Denoiser` driven by the real :class:`Pipeline`;
* ``generator``: the whole DDIM loop inside one ONNX graph (``export --generator``); it has no per-step
  forward (``forward`` is None), only the loop, timed round-robin with the others.

Torch is imported lazily (the ORT runners need none).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from difftool.bench.measure import SETTLE_S
from difftool.bench.run import TimedDenoiser, forward_batch, forward_inputs, one_hot_context
from difftool.config import ModelCard
from difftool.runtime.denoiser import Denoiser
from difftool.runtime.pipeline import Pipeline, SampleRequest
from difftool.runtime.schedules import Schedule, make_schedule


@dataclass
class Runner:
    """One implementation at one batch size."""

    name: str
    forward: Callable[[], object] | None  # None: no per-step forward (the generator)
    loop: Callable[[], float]  # runs one sampling loop; returns seconds spent inside the network
    flops_per_sample: int | None
    rows: int  # rows per forward
    compile_s: float | None = None  # one-off compile / build time at this shape
    note: str = ""


@dataclass
class Skipped:
    name: str
    reason: str


# -- the torch reference loop ------------------------------------------------------------------------


def reference_timesteps(schedule: Schedule, steps: int) -> list[tuple[int, int]]:
    """(t, t_prev) pairs of the course's DDIM loop: ``range(T, 0, -T // steps)`` generalised to the
    schedule's valid range; ``t_prev < t_min`` means the clean image (alpha_bar = 1)."""
    stride = max(1, (schedule.t_max - schedule.t_min + 1) // steps)
    ts = list(range(schedule.t_max, schedule.t_min - 1, -stride))[:steps]
    return [(t, t - stride) for t in ts]


class TorchReference:
    """The course's sampling code: ``model(x, t, c)`` in a Python DDIM loop, no_grad, torch tensors."""

    def __init__(self, module: Any, card: ModelCard):
        import torch

        self.torch = torch
        self.module = module
        self.card = card
        self.schedule = make_schedule(card.schedule)
        self.ab = torch.tensor(self.schedule.alpha_bar, dtype=torch.float32)  # indexed by timestep

    def inputs(self, batch: int, seed: int = 0):
        """x (B, C, H, W), t (B,), one-hot context (B, K) as torch tensors."""
        x, t, ctx = forward_inputs(self.card, batch, seed)
        return self.torch.from_numpy(x), self.torch.from_numpy(t), self.torch.from_numpy(ctx)

    def forward(self, x, t, ctx):
        with self.torch.no_grad():
            return self.module(x, t, ctx)

    def sample(self, x, ctx, steps: int) -> tuple[Any, float]:
        """DDIM (eta 0) from x_T; returns (x_0, seconds inside the network)."""
        torch, ab, sched = self.torch, self.ab, self.schedule
        batch = x.shape[0]
        inside = 0.0
        with torch.no_grad():
            for t, prev in reference_timesteps(sched, steps):
                t_net = torch.full((batch,), float(sched.model_time(t)))
                start = time.perf_counter()
                eps = self.module(x, t_net, ctx)
                inside += time.perf_counter() - start
                ab_t = ab[t]
                ab_prev = ab[prev] if prev >= sched.t_min else torch.tensor(1.0)
                x0 = ab_prev.sqrt() / ab_t.sqrt() * (x - (1 - ab_t).sqrt() * eps)  # course denoise_ddim
                x = x0 + (1 - ab_prev).sqrt() * eps
        return x, inside


def torch_runner(name: str, ref: TorchReference, batch: int, steps: int, flops_per_sample: int | None,
                 compile_s: float | None = None) -> Runner:
    x, t, ctx = ref.inputs(batch)

    def loop() -> float:
        return ref.sample(x, ctx, steps)[1]

    return Runner(name, lambda: ref.forward(x, t, ctx), loop, flops_per_sample, batch, compile_s)


def compile_runner(ref: TorchReference, batch: int, steps: int, flops_per_sample: int | None) -> Runner:
    """``ref`` must wrap a ``torch.compile``d module; the first call at this batch is timed as compile."""
    x, t, ctx = ref.inputs(batch)
    start = time.perf_counter()
    ref.forward(x, t, ctx)
    compile_s = time.perf_counter() - start
    return torch_runner("torch-compile", ref, batch, steps, flops_per_sample, compile_s)


# -- difftool denoisers ----------------------------------------------------------------------------------


def denoiser_runner(name: str, denoiser: Denoiser, batch: int, steps: int, flops_per_sample: int | None,
                    sampler: str = "ddim", guidance: float = 1.0, note: str = "") -> Runner:
    """A difftool Denoiser: forward directly, loop through the real Pipeline (DDIM-``steps``)."""
    card = denoiser.card
    x, t, ctx = forward_inputs(card, forward_batch(card, batch, guidance))
    proxy = TimedDenoiser(denoiser)
    pipe = Pipeline(proxy)
    request = SampleRequest(n=batch, context=one_hot_context(card, batch), sampler=sampler, steps=steps,
                            guidance=guidance, seed=0)

    def loop() -> float:
        proxy.reset()
        pipe.sample(request)
        return proxy.seconds

    return Runner(name, lambda: denoiser(x, t, ctx), loop, flops_per_sample, len(x), note=note)


def generator_runner(gen: Any, batch: int, steps: int, sampler: str = "ddim", guidance: float = 1.0) -> Runner:
    """A one-file generator (a GeneratorPipeline built for ``sampler``-``steps``, eta 0): loop only."""
    request = SampleRequest(n=batch, context=one_hot_context(gen.card, batch), sampler=sampler, steps=steps,
                            eta=0.0, guidance=guidance, seed=0)

    def loop() -> float:
        gen.sample(request)
        return 0.0  # the network time is not separable: the loop runs inside the graph

    return Runner("generator", None, loop, None, batch,
                  note=f"generator: the whole {sampler}-{steps} loop in one ONNX graph (Loop around the U-Net), "
                       "onnxruntime CPU; x python loop = ort loop time / generator time, same run")


def loop_samples(runners: list[Runner], repeats: int, max_s: float,
                 settle_s: float = SETTLE_S) -> dict[str, tuple[list[float], list[float]]]:
    """Full sampling loops, round-robin over ``runners`` (order rotated each round): per runner the
    wall seconds and the share of each loop spent outside the network. At least one round; further
    rounds only while under ``max_s``."""
    out: dict[str, tuple[list[float], list[float]]] = {r.name: ([], []) for r in runners}
    start = time.perf_counter()
    for rnd in range(repeats):
        order = runners[rnd % len(runners):] + runners[:rnd % len(runners)]
        for runner in order:
            time.sleep(settle_s)
            t0 = time.perf_counter()
            inside = runner.loop()
            wall = time.perf_counter() - t0
            out[runner.name][0].append(wall)
            out[runner.name][1].append((wall - inside) / wall)
        if time.perf_counter() - start >= max_s:
            break
    return out


def median(values: list[float]) -> float:
    return float(np.median(values))
