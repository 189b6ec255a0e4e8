"""The worker-thread side of a generation: build the request, sample, post frames and the result.

:func:`run_job` never touches a widget. It talks to the UI only through ``post`` (``App.post_message``,
thread-safe) and checks ``cancelled`` after every step, so Esc stops sampling within one step.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from textual.message import Message

from difftool.errors import Cancelled, DifftoolError
from difftool.runtime.denoiser import Step
from difftool.runtime.images import check_finite
from difftool.tui.generation import Cell, Generation, Kind
from difftool.tui.imaging import to_uint8
from difftool.tui.messages import FrameReady, GenerationCancelled, GenerationFailed, GenerationFinished
from difftool.tui.pipeline_api import SpritePipeline, make_request
from difftool.tui.settings import Settings

MAX_FRAMES = 60  # animation frames kept per generation (evenly spaced steps, always the last)


@dataclass
class Job:
    """One sampling run. ``targets`` are the cells sampled; the others come from ``base``."""

    id: int
    kind: Kind
    settings: Settings
    cells: list[Cell]
    targets: list[int]
    backend: str
    base: np.ndarray | None = None
    base_x0: np.ndarray | None = None
    stop: threading.Event = field(default_factory=threading.Event)

    @property
    def target(self) -> int | None:
        return self.targets[0] if self.kind != "generate" else None


def context_for(pipeline: SpritePipeline, mixes: list[str]) -> np.ndarray | None:
    """(n, K) float32 context for the given per-row mix texts; None for an unconditional model."""
    k = pipeline.card.num_classes
    if k == 0:
        return None
    by_mix: dict[str, np.ndarray] = {}
    for mix in mixes:
        if mix not in by_mix:
            by_mix[mix] = (
                np.asarray(pipeline.context_from_spec(mix, 1), dtype=np.float32).reshape(1, k)
                if mix else np.zeros((1, k), dtype=np.float32)
            )
    return np.concatenate([by_mix[mix] for mix in mixes], axis=0)


def build_request(job: Job, pipeline: SpritePipeline):  # -> SampleRequest
    s = job.settings
    seeds = [job.cells[i].seed for i in job.targets]
    context = context_for(pipeline, [job.cells[i].mix for i in job.targets])
    return make_request(n=len(job.targets), context=context, sampler=s.sampler, steps=s.steps, eta=s.eta,
                        guidance=s.guidance, seed=seeds[0], seeds=seeds)


def model_path(pipeline: SpritePipeline) -> str | None:
    """Where the model came from, if the pipeline or its denoiser tells (a ``path``-like attribute)."""
    for owner in (pipeline, getattr(pipeline, "denoiser", None)):
        for attr in ("path", "source_path", "model_path"):
            value = getattr(owner, attr, None)
            if value:
                return str(value)
    return None


def frame_steps(total: int, limit: int = MAX_FRAMES) -> set[int]:
    """Indices of the steps kept for the animation: at most ``limit``, evenly spaced, incl. the last."""
    if total <= limit:
        return set(range(total))
    return {int(round(v)) for v in np.linspace(0, total - 1, limit)}


def _compose(part: np.ndarray, base: np.ndarray | None, targets: list[int]) -> np.ndarray:
    if base is None:
        return part
    out = base.copy()
    out[targets] = part
    return out


def run_job(job: Job, pipeline: SpritePipeline, post: Callable[[Message], object],
            clock: Callable[[], float], cancelled: Callable[[], bool], lock: threading.Lock) -> None:
    """Sample ``job`` on ``pipeline`` and post FrameReady per step, then exactly one outcome message."""
    value_range = tuple(pipeline.card.value_range)
    frames: list[np.ndarray] = []
    frames_x0: list[np.ndarray] = []
    keep: set[int] = set()
    done = 0
    total = job.settings.steps
    t0 = 0.0

    def is_cancelled() -> bool:
        return job.stop.is_set() or cancelled()

    def on_step(step: Step) -> None:
        nonlocal done, total, keep
        if is_cancelled():
            raise Cancelled
        if not keep or total != step.total:
            total = step.total
            keep = frame_steps(total)
        xt = _compose(to_uint8(step.x, value_range), job.base, job.targets)
        x0 = _compose(to_uint8(step.x0, value_range), job.base_x0, job.targets)
        done = step.index + 1
        elapsed = clock() - t0
        if step.index in keep:
            frames.append(xt)
            frames_x0.append(x0)
        post(FrameReady(job.id, step.index, step.total, xt, x0, done / elapsed if elapsed > 0 else 0.0))
        if is_cancelled():
            raise Cancelled

    try:
        with lock:  # one sampling run at a time; a superseded run releases it within one step
            if is_cancelled():
                raise Cancelled
            t0 = clock()
            request = build_request(job, pipeline)
            out = pipeline.sample(request, callback=on_step)
            if is_cancelled():
                raise Cancelled
            check_finite(out)  # NaN/inf is a failed generation, never a silently black sprite
            image = _compose(to_uint8(out, value_range), job.base, job.targets)
            elapsed = clock() - t0
    except Cancelled:
        post(GenerationCancelled(job.id, done, total))
        return
    except DifftoolError as exc:
        post(GenerationFailed(job.id, str(exc)))
        return
    except Exception as exc:  # a backend failure must never take the UI down
        post(GenerationFailed(job.id, f"{type(exc).__name__}: {exc}"))
        return
    if not frames or not np.array_equal(frames[-1], image):
        frames.append(image)
        frames_x0.append(frames_x0[-1] if frames_x0 else image)
    generation = Generation(
        id=job.id, kind=job.kind, settings=job.settings, cells=list(job.cells), image=image,
        x0=frames_x0[-1], frames=frames, frames_x0=frames_x0, backend=job.backend, elapsed_s=elapsed,
        steps_per_s=done / elapsed if elapsed > 0 else 0.0, target=job.target, card=pipeline.card,
        model_path=model_path(pipeline),
    )
    post(GenerationFinished(job.id, generation))
