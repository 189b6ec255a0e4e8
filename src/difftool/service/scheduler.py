"""The step-level batcher: one worker thread owns the network and advances every running request per tick.

Each tick the worker drops cancelled requests, admits waiting ones (FIFO, while their rows fit
``max_batch``), gathers the rows of every running request, each at its own timestep (guided requests
contribute ``[x; x]`` with ``[ctx; 0]``, exactly the rows :func:`~difftool.runtime.guidance.guided_eps`
feeds the network), runs ONE ``denoiser(x, t, ctx)``, splits the eps back per request, applies guidance
with :func:`~difftool.runtime.guidance.combine` and advances each request's own
:class:`~difftool.runtime.samplers.SamplerRun`. A request's state therefore evolves exactly as in the
offline loop (``Pipeline.sample``); its pixels equal offline ones whenever the backend computes each row
independently of the others in the batch (onnxruntime on CPU does; checked by the tests).

``mode="serial"`` admits one request at a time: the baseline the load test compares against.
"""

from __future__ import annotations

import itertools
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, InvalidStateError

import numpy as np

from difftool.errors import DifftoolError
from difftool.runtime.denoiser import Step
from difftool.runtime.guidance import branch_context, check_null_class, combine, eps_converter
from difftool.runtime.palette import finish
from difftool.runtime.pipeline import Pipeline, SampleRequest, check_finite
from difftool.service.metrics import Metrics

log = logging.getLogger("difftool.serve")

StepListener = Callable[["Job", Step], None]  # called in the worker thread after each step


class QueueFull(Exception):
    """No room in the queue; ``retry_after`` is a guess in whole seconds."""

    def __init__(self, retry_after: int):
        super().__init__(f"the queue is full; retry in about {retry_after} s")
        self.retry_after = retry_after


class TooManyRows(Exception):
    """A request needs more network rows per step than a tick may hold."""

    def __init__(self, rows: int, max_batch: int, doubled: bool):
        why = " (guidance doubles them: conditional and unconditional rows)" if doubled else ""
        super().__init__(f"this request needs {rows} network rows per step{why}; this server's max batch is "
                         f"{max_batch}: ask for fewer sprites")
        self.rows = rows


class JobCancelled(Exception):
    """The request was cancelled (its client went away) before it finished."""


class ShuttingDown(Exception):
    """The server stopped before the request finished."""


class Job:
    """One request's sampler state plus what the worker needs to batch it."""

    def __init__(self, job_id: int, pipe: Pipeline, request: SampleRequest, on_step: StepListener | None):
        self.id, self.request, self.on_step = job_id, request, on_step
        self.state = pipe.start(request)  # x_T drawn from the request's own per-row noise stream
        context = _context(pipe, request)
        check_null_class(pipe.card, context, float(request.guidance))
        self.ctx, self.doubled = branch_context(context, request.guidance)  # (rows, K)
        self.guidance = float(request.guidance)
        self.to_eps = eps_converter(pipe.card.prediction, pipe.schedule)  # v / x0 networks -> eps (None: eps)
        needs_buffer = self.doubled or self.to_eps is not None
        self.eps = np.empty_like(self.state.x) if needs_buffer else None  # guided/converted eps (B, C, H, W)
        self.future: Future[np.ndarray] = Future()
        self.submitted = time.perf_counter()
        self.started: float | None = None  # when it joined the running batch
        self.finished: float | None = None
        self.cancelled = False

    @property
    def rows(self) -> int:
        return len(self.ctx)

    @property
    def remaining(self) -> int:
        return len(self.state.table) - self.state.index

    def cancel(self) -> None:
        """Ask the worker to drop this request; its rows are free from the next tick on."""
        self.cancelled = True


def _context(pipe: Pipeline, request: SampleRequest) -> np.ndarray:
    """The request's (n, K) context, as ``Pipeline.sample`` binds it (zeros when None)."""
    if request.context is None:
        return np.zeros((request.n, pipe.card.num_classes), dtype=np.float32)
    return np.asarray(request.context, dtype=np.float32)


class Scheduler:
    """Owns the denoiser in one worker thread; ``submit`` from any thread, results arrive on ``job.future``."""

    def __init__(self, pipe: Pipeline, *, max_batch: int, max_queue: int, max_running: int | None = None,
                 metrics: Metrics | None = None):
        self.pipe, self.max_batch, self.max_queue, self.max_running = pipe, max_batch, max_queue, max_running
        self.metrics = metrics or Metrics(max_batch)
        self._cond = threading.Condition()
        self._waiting: deque[Job] = deque()
        self._running: list[Job] = []
        self._ids = itertools.count(1)
        self._stopping = False
        self._thread: threading.Thread | None = None
        card = pipe.card
        shape = (max_batch, card.channels, card.image_size, card.image_size)
        self._x = np.empty(shape, dtype=np.float32)  # (max_batch, C, H, W) gathered rows of one tick
        self._t = np.empty((max_batch,), dtype=np.float32)  # (max_batch,) network time per row
        self._c = np.empty((max_batch, card.num_classes), dtype=np.float32)  # (max_batch, K)

    # -- the caller's side ---------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="difftool-scheduler", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the worker after its current tick; every unfinished request fails with ShuttingDown."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
        with self._cond:
            for job in (*self._running, *self._waiting):
                _fail(job, ShuttingDown("the server is shutting down"))
            self._running.clear()
            self._waiting.clear()

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and not self._stopping

    def submit(self, request: SampleRequest, on_step: StepListener | None = None) -> Job:
        """Queue ``request``; it joins at the next tick with room. Raises TooManyRows, QueueFull,
        ShuttingDown or DifftoolError (a request the pipeline rejects)."""
        job = Job(next(self._ids), self.pipe, request, on_step)
        if job.rows > self.max_batch:
            raise TooManyRows(job.rows, self.max_batch, job.doubled)
        with self._cond:
            if self._stopping:
                raise ShuttingDown("the server is shutting down")
            if len(self._waiting) >= self.max_queue:
                raise QueueFull(self._retry_after())
            self._waiting.append(job)
            self._cond.notify()
        return job

    def counts(self) -> tuple[int, int]:
        """(waiting, running) requests."""
        with self._cond:
            return len(self._waiting), len(self._running)

    def _retry_after(self) -> int:
        """Seconds until the soonest running request should finish (at the recent tick rate), at least 1."""
        soonest = min((job.remaining for job in self._running), default=1)
        return max(1, math.ceil(soonest * self.metrics.mean_tick_s()))

    # -- the worker ------------------------------------------------------------------------------------
    def _loop(self) -> None:
        while True:
            with self._cond:
                jobs = self._next_jobs()
                if jobs is None:
                    return
            try:
                self._tick(jobs)
            except Exception as exc:  # never let the worker die: fail this tick's requests, go on
                log.exception("tick failed")
                for job in jobs:
                    if not job.future.done():
                        _fail(job, exc)
                        self.metrics.request_done("failed")
            with self._cond:
                self._running = [job for job in self._running if not job.future.done()]

    def _next_jobs(self) -> list[Job] | None:
        """Under the lock: drop cancelled requests, admit waiting ones, sleep while idle. None: stop."""
        while True:
            if self._stopping:
                return None
            self._drop_cancelled()
            self._admit()
            if self._running:
                return list(self._running)
            self._cond.wait()

    def _drop_cancelled(self) -> None:
        for group in (self._running, self._waiting):
            for job in [j for j in group if j.cancelled]:
                group.remove(job)
                _fail(job, JobCancelled(f"request {job.id} was cancelled"))
                self.metrics.request_done("cancelled")

    def _admit(self) -> None:
        """FIFO: the oldest waiting request joins when its rows fit; later ones never overtake it."""
        used = sum(job.rows for job in self._running)
        while self._waiting and used + self._waiting[0].rows <= self.max_batch:
            if self.max_running is not None and len(self._running) >= self.max_running:
                return
            job = self._waiting.popleft()
            job.started = time.perf_counter()
            self._running.append(job)
            used += job.rows

    def _tick(self, jobs: list[Job]) -> None:
        """One batched forward for every running request, then one sampler step each."""
        start = time.perf_counter()
        rows = self._gather(jobs)
        eps = self.pipe.denoiser(self._x[:rows], self._t[:rows], self._c[:rows])  # (rows, C, H, W)
        offset = images = 0
        for job in jobs:
            part = eps[offset:offset + job.rows]
            offset += job.rows
            images += len(job.state.x)
            guided = combine(part, job.guidance, job.eps) if job.doubled else part
            t = job.state.t
            self._advance(job, guided if job.to_eps is None else job.to_eps(guided, job.state.x, t, job.eps))
        self.metrics.tick(rows=rows, requests=len(jobs), images=images, seconds=time.perf_counter() - start)

    def _gather(self, jobs: list[Job]) -> int:
        """Copy each request's rows (x, its network time, its context rows) into the tick buffers."""
        offset = 0
        for job in jobs:
            x, n = job.state.x, len(job.state.x)
            self._x[offset:offset + n] = x
            if job.doubled:
                self._x[offset + n:offset + 2 * n] = x
            self._t[offset:offset + job.rows] = self.pipe.schedule.model_time(job.state.t)
            self._c[offset:offset + job.rows] = job.ctx
            offset += job.rows
        return offset

    def _advance(self, job: Job, eps: np.ndarray) -> None:
        try:
            step = job.state.advance(eps)
        except Exception as exc:
            _fail(job, exc)
            self.metrics.request_done("failed")
            return
        if job.on_step is not None:
            try:
                job.on_step(job, step)
            except Exception:  # a listener's bug must not stop the request or the worker
                log.exception("step listener of request %d failed", job.id)
        if job.state.done:
            self._finish(job)

    def _finish(self, job: Job) -> None:
        try:
            x = finish(check_finite(job.state.x), job.request.palette, self.pipe.card.value_range).copy()
        except DifftoolError as exc:
            _fail(job, exc)
            self.metrics.request_done("failed")
            return
        job.finished = time.perf_counter()
        self.metrics.request_done("ok", seconds=job.finished - job.submitted)
        try:
            job.future.set_result(x)
        except InvalidStateError:  # the caller cancelled its future meanwhile
            pass


def _fail(job: Job, exc: BaseException) -> None:
    try:
        job.future.set_exception(exc)
    except InvalidStateError:  # already finished or cancelled by the caller
        pass
