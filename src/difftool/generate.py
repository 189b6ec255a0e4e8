"""Shared front end of ``difftool generate``, ``sample`` and ``demo`` (torch-free).

Turns user choices (class or mix, sampler, steps, guidance, seed) into a :class:`SampleRequest`,
runs it with timing and optional per-step frames, and writes the PNG grid / GIF atomically.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from difftool.errors import DifftoolError
from difftool.runtime.defaults import Settings, resolve
from difftool.runtime.denoiser import Step
from difftool.runtime.images import grid, save_gif, save_png, to_uint8
from difftool.runtime.pipeline import Pipeline, SampleRequest
from difftool.runtime.samplers import get_sampler


@dataclass
class Generation:
    images: np.ndarray  # (n, H, W, C) uint8
    request: SampleRequest
    seconds: float
    forwards: int  # network forward passes (a guided step is one batched forward)
    frames: list[np.ndarray] = field(default_factory=list)  # grids, one per step

    @property
    def steps_per_s(self) -> float:
        return self.forwards / self.seconds if self.seconds > 0 else float("inf")


def build_request(pipe: Pipeline, *, n: int, class_name: str | None, mix: str | None, sampler: str | None,
                  steps: int | None, eta: float | None, guidance: float | None, seed: int,
                  spacing: str | None = None, variance: str | None = None,
                  seeds: list[int] | None = None) -> SampleRequest:
    """Validate the user's choices against the model and build the request; ``None`` means the model's
    default (:func:`difftool.runtime.defaults.resolve`)."""
    if class_name and mix:
        raise DifftoolError("give either --class or --mix, not both")
    spec = mix or class_name or ""
    return request_for(pipe, pipe.context_from_spec(spec, n), conditioned=bool(spec), sampler=sampler,
                       steps=steps, eta=eta, guidance=guidance, seed=seed, spacing=spacing, variance=variance,
                       seeds=seeds)


def request_for(pipe: Pipeline, context: np.ndarray, *, conditioned: bool, sampler: str | None,
                steps: int | None, eta: float | None, guidance: float | None, seed: int,
                spacing: str | None = None, variance: str | None = None,
                seeds: list[int] | None = None) -> SampleRequest:
    """The request for the (n, K) ``context`` rows with every None setting resolved in one place
    (:func:`~difftool.runtime.defaults.resolve`); ``conditioned``: a class or mix was asked for."""
    settings = resolve(pipe.card, conditioned=conditioned, sampler=sampler, steps=steps, guidance=guidance,
                       spacing=spacing, eta=eta, variance=variance)
    return request_from_settings(settings, context, seed=seed, seeds=seeds)


def request_from_settings(settings: Settings, context: np.ndarray, *, seed: int,
                          seeds: list[int] | None = None) -> SampleRequest:
    """A SampleRequest carrying resolved ``settings`` (options the sampler lacks keep their field defaults)."""
    fields = {name: value for name, value in settings.options.items() if name in _REQUEST_OPTIONS}
    return SampleRequest(n=len(context), context=context, sampler=settings.sampler, steps=settings.steps,
                         guidance=settings.guidance, seed=seed, seeds=seeds, spacing=settings.spacing, **fields)


_REQUEST_OPTIONS = ("eta", "variance")  # sampler options SampleRequest carries as fields


def describe(request: SampleRequest) -> str:
    """E.g. ``DDIM-25 (eta 1), guidance 4`` (labels and options from the sampler registry)."""
    spec = get_sampler(request.sampler)
    shown = [f"{o.name} {getattr(request, o.name):g}" if o.kind is float else f"{o.name} {getattr(request, o.name)}"
             for o in spec.options if getattr(request, o.name, o.default) != o.default]
    extra = f" ({', '.join(shown)})" if shown else ""
    return f"{spec.short}-{request.steps}{extra}, guidance {request.guidance:g}"


def run(pipe: Pipeline, request: SampleRequest, *, nrow: int, frames: str | None = None,
        progress=None) -> Generation:
    """Sample; ``frames`` = "x" or "x0" collects one grid per step (for a GIF)."""
    collected: list[np.ndarray] = []
    count = [0]

    def callback(step: Step) -> None:
        count[0] += 1
        if frames:
            arr = step.x if frames == "x" else step.x0
            collected.append(grid(to_uint8(arr, pipe.card.value_range), nrow=nrow))
        if progress is not None:
            progress(step)

    start = time.perf_counter()
    x = pipe.sample(request, callback=callback)
    seconds = time.perf_counter() - start
    images = to_uint8(x, pipe.card.value_range)
    return Generation(images, request, seconds, count[0], collected)


def write_outputs(gen: Generation, *, nrow: int, png: Path | None, gif: Path | None, scale: int,
                  text: dict[str, str] | None = None, gap: int = 1) -> list[Path]:
    """The PNG grid (with ``text`` chunks: the generation record) and the optional GIF, atomically."""
    written = []
    if png is not None:
        written.append(save_png(png, grid(gen.images, nrow=nrow, gap=gap), scale=scale, text=text))
    if gif is not None:
        if not gen.frames:
            raise DifftoolError("no frames were collected for the GIF")
        frames = gen.frames + [grid(gen.images, nrow=nrow)] * 5  # hold the result
        written.append(save_gif(gif, frames, duration_ms=80, scale=scale))
    return [Path(p) if p is not None else None for p in written]
