"""The worker-thread side of a generation: build the request, sample, post frames and the result.

:func:`run_job` never touches a widget. It talks to the UI only through ``post`` (``App.post_message``,
thread-safe) and checks ``cancelled`` after every step, so Esc stops sampling within one step. Preview
work is throttled so the network keeps the CPU: a frame is converted to pixels only when it will be
shown (see :class:`Pacer`) or kept for the animation (at most :data:`MAX_FRAMES`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np
from textual.message import Message

from difftool.errors import Cancelled, DifftoolError
from difftool.generate import request_from_settings
from difftool.runtime.denoiser import Step
from difftool.runtime.images import check_finite, to_uint8
from difftool.runtime.palette import resolve_palette
from difftool.runtime.pipeline import Pipeline, SampleRequest
from difftool.runtime.record import mix_text
from difftool.tui.generation import Cell, Generation, Kind
from difftool.tui.messages import FrameReady, GenerationCancelled, GenerationFailed, GenerationFinished
from difftool.tui.settings import Settings
from difftool.tui.sprite_grid import preview_colours

MAX_FRAMES = 60  # animation frames kept per generation (evenly spaced steps, always the last)
MIN_INTERVAL = 1 / 24  # seconds between preview frames, at least
DRAW_DUTY = 9.0  # after a frame took d seconds to reach the screen, wait DRAW_DUTY * d before the next


class Pacer:
    """When the worker may send the next preview frame: never while the last one is still on its way to
    the screen, and only after a pause of :data:`DRAW_DUTY` times that frame's drawing time (at least
    :data:`MIN_INTERVAL`), so drawing takes at most ~1/(DRAW_DUTY + 1) of the time on any machine and grid
    size, and the sampler's threads keep the CPU. The worker calls :meth:`ready`/:meth:`sent`, the UI
    :meth:`drawn` (single attribute writes: safe across the two threads)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.pending = False
        self.ready_at = 0.0

    def ready(self) -> bool:
        return not self.pending and self.clock() >= self.ready_at

    def sent(self) -> None:
        self.pending = True

    def drawn(self, seconds: float) -> None:
        """The last frame took ``seconds`` from arrival to being on screen."""
        self.ready_at = self.clock() + max(MIN_INTERVAL, DRAW_DUTY * seconds)
        self.pending = False


@dataclass
class Job:
    """One sampling run. ``targets`` are the cells sampled; the others come from ``base``. ``settings``
    are resolved (no None sampler settings)."""

    id: int
    kind: Kind
    settings: Settings
    cells: list[Cell]
    targets: list[int]
    backend: str
    base: np.ndarray | None = None
    base_x0: np.ndarray | None = None
    stop: threading.Event = field(default_factory=threading.Event)
    pacer: Pacer = field(default_factory=Pacer)

    @property
    def target(self) -> int | None:
        return self.targets[0] if self.kind != "generate" else None


# -- requests ---------------------------------------------------------------------------------------------
def canonical_mix(pipeline: Pipeline, text: str) -> str:
    """``text`` checked by the runtime's one mix parser (``Pipeline.context_from_spec``) and written back
    canonically (``"hero"``, ``"hero=0.6,food=0.4"``); ``""`` for unconditional."""
    card = pipeline.card
    if not card.conditional:
        return ""
    canonical = mix_text(pipeline.context_from_spec(text, 1)[0], card.class_names)
    return "" if canonical == "none" else canonical


def context_for(pipeline: Pipeline, mixes: list[str]) -> np.ndarray:
    """(n, K) float32 context for per-row mix texts (zeros for "" and for an unconditional model)."""
    k = pipeline.card.num_classes
    rows: dict[str, np.ndarray] = {}
    for mix in mixes:
        if mix not in rows:
            rows[mix] = pipeline.context_from_spec(mix, 1).reshape(1, k) if k else np.zeros((1, 0), np.float32)
    return np.concatenate([rows[mix] for mix in mixes], axis=0).astype(np.float32)


def grid_request(job: Job, pipeline: Pipeline) -> SampleRequest:
    """The request for every cell of the grid (what the saved PNG's record holds)."""
    seeds = [cell.seed for cell in job.cells]
    context = context_for(pipeline, [cell.mix for cell in job.cells])
    request = request_from_settings(job.settings.sampling(), context, seed=seeds[0], seeds=seeds)
    return replace(request, palette=resolve_palette(job.settings.palette, pipeline.card))


def job_request(job: Job, grid: SampleRequest, pipeline: Pipeline) -> SampleRequest:
    """The rows of ``grid`` that ``job`` samples (all of them for a new grid, one for re-roll/vary)."""
    seeds = [grid.seeds[i] for i in job.targets]
    context = None if not pipeline.card.conditional else grid.context[job.targets]
    return replace(grid, n=len(seeds), context=context, seed=seeds[0], seeds=seeds)


def model_path(pipeline: Pipeline) -> str | None:
    """Where the model came from, if the pipeline or its denoiser tells (a ``path``-like attribute)."""
    for owner in (pipeline, getattr(pipeline, "denoiser", None)):
        for attr in ("path", "source_path", "model_path"):
            value = getattr(owner, attr, None)
            if value:
                return str(value)
    return None


def backend_label(pipeline: Pipeline, fallback: str) -> str:
    return str(getattr(pipeline.denoiser, "name", "") or fallback)


# -- the run ----------------------------------------------------------------------------------------------
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


class _Frames:
    """Per-step pixels of one run: the kept animation frames and the throttled preview."""

    def __init__(self, job: Job, value_range: tuple[float, float], post: Callable[[Message], object]) -> None:
        self.job, self.value_range, self.post = job, value_range, post
        self.frames: list[np.ndarray] = []
        self.frames_x0: list[np.ndarray] = []
        self.keep: set[int] = set()
        self.total = 0

    def pixels(self, array: np.ndarray, base: np.ndarray | None) -> np.ndarray:
        return _compose(to_uint8(array, self.value_range), base, self.job.targets)

    def step(self, step: Step, steps_per_s: float) -> None:
        job = self.job
        if self.total != step.total:
            self.total, self.keep = step.total, frame_steps(step.total)
        kept = step.index in self.keep
        show = step.index + 1 < step.total and job.pacer.ready()  # the last step arrives as the result
        if not (kept or show):
            return
        xt, x0 = self.pixels(step.x, job.base), self.pixels(step.x0, job.base_x0)
        if kept:
            self.frames.append(xt)
            self.frames_x0.append(x0)
        if show:
            job.pacer.sent()
            self.post(FrameReady(job.id, step.index, step.total, preview_colours(xt), preview_colours(x0),
                                 steps_per_s))


def run_job(job: Job, pipeline: Pipeline, post: Callable[[Message], object],
            clock: Callable[[], float], cancelled: Callable[[], bool], lock: threading.Lock) -> None:
    """Sample ``job`` on ``pipeline``, posting throttled FrameReady messages, then exactly one outcome."""
    frames = _Frames(job, tuple(pipeline.card.value_range), post)
    done = 0
    total = job.settings.steps or 0
    t0 = 0.0

    def is_cancelled() -> bool:
        return job.stop.is_set() or cancelled()

    def on_step(step: Step) -> None:
        nonlocal done, total
        if is_cancelled():
            raise Cancelled
        done, total = step.index + 1, step.total
        elapsed = clock() - t0
        frames.step(step, done / elapsed if elapsed > 0 else 0.0)

    try:
        with lock:  # one sampling run at a time; a superseded run releases it within one step
            if is_cancelled():
                raise Cancelled
            t0 = clock()
            grid = grid_request(job, pipeline)
            out = pipeline.sample(job_request(job, grid, pipeline), callback=on_step)
            if is_cancelled():
                raise Cancelled
            check_finite(out)  # NaN/inf is a failed generation, never a silently black sprite
            image = frames.pixels(out, job.base)
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
    kept, kept_x0 = frames.frames, frames.frames_x0
    if not kept or not np.array_equal(kept[-1], image):
        kept.append(image)
        kept_x0.append(kept_x0[-1] if kept_x0 else image)
    generation = Generation(
        id=job.id, kind=job.kind, settings=job.settings, cells=list(job.cells), image=image,
        x0=kept_x0[-1], frames=kept, frames_x0=kept_x0, backend=job.backend, elapsed_s=elapsed,
        steps_per_s=done / elapsed if elapsed > 0 else 0.0, target=job.target, card=pipeline.card,
        model_path=model_path(pipeline), request=grid,
    )
    post(GenerationFinished(job.id, generation))
