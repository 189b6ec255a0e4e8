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
from difftool.runtime.denoiser import Step
from difftool.runtime.images import grid, save_gif, save_png, to_uint8
from difftool.runtime.pipeline import Pipeline, SampleRequest


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


def default_guidance(pipe: Pipeline, context_given: bool) -> float:
    """The model's recommended guidance when a class or mix is given (no context: 1, no guidance)."""
    return float(pipe.card.recommended("guidance")) if (context_given and pipe.card.supports_guidance) else 1.0


def default_eta(pipe: Pipeline, sampler: str) -> float:
    """The model's recommended DDIM eta when DDIM is its recommended sampler, else 0 (deterministic)."""
    from difftool.runtime.samplers import canonical_name

    if canonical_name(sampler) == "ddim" == canonical_name(str(pipe.card.recommended("sampler"))):
        return float(pipe.card.recommended("eta"))
    return 0.0


def build_request(pipe: Pipeline, *, n: int, class_name: str | None, mix: str | None, sampler: str | None,
                  steps: int | None, eta: float | None, guidance: float | None, seed: int,
                  spacing: str | None = None) -> SampleRequest:
    """Validate the user's choices against the model and build the request; ``None`` means the model's
    recommended setting (``ModelCard.recommended``)."""
    if class_name and mix:
        raise DifftoolError("give either --class or --mix, not both")
    spec = mix or class_name or ""
    return request_for(pipe, pipe.context_from_spec(spec, n), conditioned=bool(spec), sampler=sampler,
                       steps=steps, eta=eta, guidance=guidance, seed=seed, spacing=spacing)


def request_for(pipe: Pipeline, context: np.ndarray, *, conditioned: bool, sampler: str | None,
                steps: int | None, eta: float | None, guidance: float | None, seed: int,
                spacing: str | None = None) -> SampleRequest:
    """The request for the (n, K) ``context`` rows, with ``None`` settings resolved to the model's
    recommended ones; ``conditioned`` says whether a class or mix was asked for (guidance default)."""
    if sampler is None:
        sampler = str(pipe.card.recommended("sampler"))
    if eta is None:
        eta = default_eta(pipe, sampler)
    if guidance is None:
        guidance = default_guidance(pipe, conditioned)
    if guidance != 1.0 and not pipe.card.supports_guidance:
        raise DifftoolError(f"{pipe.card.no_guidance_reason}; drop --guidance")
    if steps is None:
        steps = pipe.card.schedule.num_timesteps if sampler == "ddpm" else int(pipe.card.recommended("steps"))
    return SampleRequest(n=len(context), context=context, sampler=sampler, steps=steps, eta=eta,
                         guidance=guidance, seed=seed, spacing=spacing)


def describe(request: SampleRequest) -> str:
    """E.g. ``DDIM-25 (eta 1), guidance 4``."""
    from difftool.runtime.samplers import canonical_name

    name = {"ddim": "DDIM", "ddpm": "DDPM", "dpmpp_2m": "DPM++(2M)"}.get(canonical_name(request.sampler),
                                                                        request.sampler)
    eta = f" (eta {request.eta:g})" if canonical_name(request.sampler) == "ddim" and request.eta else ""
    return f"{name}-{request.steps}{eta}, guidance {request.guidance:g}"


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


def write_outputs(gen: Generation, *, nrow: int, png: Path | None, gif: Path | None, scale: int) -> list[Path]:
    written = []
    if png is not None:
        written.append(save_png(png, grid(gen.images, nrow=nrow), scale=scale))
    if gif is not None:
        if not gen.frames:
            raise DifftoolError("no frames were collected for the GIF")
        frames = gen.frames + [grid(gen.images, nrow=nrow)] * 5  # hold the result
        written.append(save_gif(gif, frames, duration_ms=80, scale=scale))
    return [Path(p) if p is not None else None for p in written]
