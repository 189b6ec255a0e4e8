"""The app's worker glue: loading backends and running sampling jobs, then handling what they post.

Backend factories and sampling run in thread workers; they talk back only through messages
(:mod:`difftool.tui.messages`), so the UI keeps responding while a model runs. The preview is drawn as
frames arrive: the worker already throttles them (:mod:`difftool.tui.sampling`) and sends the next one
only after this side has drawn the last, so drawing never queues up behind a fast model.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from textual import work
from textual.widgets import ProgressBar
from textual.worker import Worker, WorkerState, get_current_worker

from difftool.errors import DifftoolError
from difftool.runtime.pipeline import Pipeline
from difftool.tui.controls import ControlPanel
from difftool.tui.generation import Cell, Generation
from difftool.tui.messages import (
    BackendFailed,
    BackendLoaded,
    FrameReady,
    GenerationCancelled,
    GenerationFailed,
    GenerationFinished,
)
from difftool.tui.sampling import Job, backend_label, canonical_mix, run_job
from difftool.tui.settings import MAX_SEED, Settings

if TYPE_CHECKING:
    from difftool.tui.app import SpriteApp

    _Base = SpriteApp
else:
    _Base = object


def error_text(exc: BaseException) -> str:
    return str(exc) if isinstance(exc, DifftoolError) else f"{type(exc).__name__}: {exc}"


class JobsMixin(_Base):
    """Backends and sampling jobs of :class:`~difftool.tui.app.SpriteApp`."""

    _factories: dict[str, Callable[[], Pipeline]]
    _pipelines: dict[str, Pipeline]
    _loading: str | None
    _pending_generate: bool
    _sample_lock: threading.Lock
    _job: Job | None
    _job_counter: int
    _gen_counter: int
    _frame: tuple | None
    _rng: random.Random
    pipeline: Pipeline | None
    backend_name: str

    # -- backends ----------------------------------------------------------------------------------
    def switch_backend(self, name: str) -> None:
        """Use backend ``name``, loading it in a worker the first time."""
        if name not in self._factories:
            self._error(f"unknown backend {name!r}; available: {', '.join(self.backend_names)}", "Backend")
            return
        if name == self._loading or (name == self.backend_name and self.pipeline is not None):
            return
        if name in self._pipelines:
            self._loading = None
            self._use_backend(name, self._pipelines[name])
            return
        self._loading = name
        self._set_status(f"loading backend {name}…")
        self._load_backend(name)

    @work(thread=True, exclusive=True, exit_on_error=False, group="load", description="loading backend")
    def _load_backend(self, name: str) -> None:
        try:
            pipeline = self._factories[name]()
        except Exception as exc:  # any factory failure becomes a toast
            self.post_message(BackendFailed(name, error_text(exc)))
        else:
            self.post_message(BackendLoaded(name, pipeline))

    def on_backend_loaded(self, message: BackendLoaded) -> None:
        if message.name != self._loading:
            return
        self._loading = None
        self._pipelines[message.name] = message.pipeline
        self._use_backend(message.name, message.pipeline)

    def on_backend_failed(self, message: BackendFailed) -> None:
        if message.name != self._loading:
            return
        self._loading = None
        self._pending_generate = False
        self._error(message.error, f"Backend {message.name} failed to load")
        self.controls.set_backend(self.backend_name)
        self._set_status("no backend loaded: pick another one" if self.pipeline is None
                         else f"still using {self.backend_name}")

    def _use_backend(self, name: str, pipeline: Pipeline) -> None:
        self.pipeline = pipeline
        self.backend_name = name
        card = pipeline.card
        self.controls.set_backend(name)
        try:
            self.controls.set_card(card)
        except DifftoolError as exc:  # e.g. initial settings this model cannot take
            self._error(str(exc), "Settings")
        classes = f"{card.num_classes} classes" if card.conditional else "unconditional"
        self.sub_title = (f"{card.source} {card.image_size}x{card.image_size}x{card.channels} · {classes}"
                          f" · {backend_label(pipeline, name)}")
        if self.current is None and not self.busy:
            self.grid.cell_size = (card.image_size, card.image_size)
            self.grid.show(None)
        self._set_status(f"ready · {name}" if not self.busy else self.status_text)
        if self._pending_generate:
            self._pending_generate = False
            self.action_generate()

    def on_control_panel_backend_chosen(self, message: ControlPanel.BackendChosen) -> None:
        self.switch_backend(message.name)

    def _ready_pipeline(self) -> Pipeline | None:
        if self.pipeline is not None:
            return self.pipeline
        if self._loading is not None:
            self._pending_generate = True
            self.notify(f"Backend {self._loading} is still loading; will generate when ready.")
        else:
            self._error("No backend is loaded; choose one in the backend list.", "Generate")
        return None

    # -- starting jobs ---------------------------------------------------------------------------------
    def _random_seed(self, n: int = 1) -> int:
        return self._rng.randrange(0, MAX_SEED - n)

    def _read_settings(self, pipeline: Pipeline) -> Settings:
        """The controls' settings with the mix checked by the runtime's parser and every default
        resolved for this model (written back, so the controls show what runs)."""
        settings = self.controls.read()
        settings = settings.with_(mix=canonical_mix(pipeline, settings.mix)).resolved(pipeline.card)
        if settings.random_seed:
            settings = settings.with_(seed=self._random_seed(settings.n))
        self.controls.apply(settings)
        return settings

    def _start(self, job: Job, pipeline: Pipeline) -> None:
        if self._job is not None:
            self._job.stop.set()
        self._job = job
        self._frame = None
        s = job.settings
        if (self.grid.rows, self.grid.cols) != (s.rows, s.cols):
            self.grid.show(None, s.rows, s.cols)
        self.query_one("#progress", ProgressBar).update(total=s.steps, progress=0)
        what = {"generate": f"{s.n} sprites", "reroll": f"re-roll of sprite {job.target}",
                "vary": f"variation of sprite {job.target}"}[job.kind]
        self._set_status(f"sampling {what}…")
        self._sample(job, pipeline)

    @work(thread=True, exclusive=True, exit_on_error=False, group="sample", description="sampling")
    def _sample(self, job: Job, pipeline: Pipeline) -> None:
        worker = get_current_worker()
        run_job(job, pipeline, self.post_message, self._clock, lambda: worker.is_cancelled, self._sample_lock)

    def _next_job_id(self) -> int:
        self._job_counter += 1
        return self._job_counter

    def action_generate(self) -> None:
        pipeline = self._ready_pipeline()
        if pipeline is None:
            return
        try:
            settings = self._read_settings(pipeline)
        except DifftoolError as exc:
            self._error(str(exc), "Bad setting")
            return
        self.settings = settings
        cells = [Cell(seed, settings.mix) for seed in settings.seeds()]
        job = Job(self._next_job_id(), "generate", settings, cells, list(range(settings.n)), self.backend_name)
        self._start(job, pipeline)

    def _edit_cell(self, kind: str) -> None:
        gen, pipeline = self.current, self._ready_pipeline()
        if pipeline is None:
            return
        if gen is None:
            self.notify("Generate a grid first.", severity="warning")
            return
        if self.busy:
            self.notify("Still sampling: wait, or press Esc to cancel.", severity="warning")
            return
        index = self.grid.cursor
        cells = list(gen.cells)
        old = cells[index]
        if kind == "reroll":
            cells[index] = Cell(self._random_seed(), old.mix)
        else:
            try:
                cells[index] = Cell(old.seed, canonical_mix(pipeline, self.controls.mix_text))
            except DifftoolError as exc:
                self._error(str(exc), "Bad mix")
                return
        job = Job(self._next_job_id(), "reroll" if kind == "reroll" else "vary", gen.settings, cells, [index],
                  self.backend_name, base=gen.image, base_x0=gen.x0)
        self._start(job, pipeline)

    def action_reroll(self) -> None:
        self._edit_cell("reroll")

    def action_vary(self) -> None:
        self._edit_cell("vary")

    def action_new_seed(self) -> None:
        try:
            n = self.controls.read().n
        except DifftoolError:
            n = 64
        self.controls.set_seed(self._random_seed(n))
        self.action_generate()

    def action_cancel(self) -> None:
        self._pending_generate = False
        if self._job is None:
            return
        self._job.stop.set()
        self.workers.cancel_group(self, "sample")
        self._set_status("cancelling…")

    # -- what the worker posts ----------------------------------------------------------------------------
    def on_frame_ready(self, message: FrameReady) -> None:
        """Draw a preview frame of the running job; once it is on screen, tell the job's pacer how long
        that took (the worker paces the next frame by it)."""
        job = self._job
        if job is None or message.job_id != job.id:
            return
        start = time.monotonic()
        self._frame = (message.xt, message.x0)
        self.grid.show(message.x0 if self.show_x0 else message.xt, job.settings.rows, job.settings.cols)
        self.query_one("#progress", ProgressBar).update(total=message.total, progress=message.index + 1)
        self._set_status(f"step {message.index + 1}/{message.total} · {message.steps_per_s:.1f} steps/s")
        self.call_after_refresh(lambda: job.pacer.drawn(time.monotonic() - start))

    def _end_job(self) -> None:
        self._job = None

    def on_generation_finished(self, message: GenerationFinished) -> None:
        if self._job is None or message.job_id != self._job.id:
            return
        self._end_job()
        gen: Generation = message.generation
        self._gen_counter += 1
        gen.id = self._gen_counter
        self.current = gen
        self.history.add(gen)
        self._show_current()
        progress = self.query_one("#progress", ProgressBar)
        progress.update(total=gen.settings.steps, progress=gen.settings.steps)
        self._set_status(f"#{gen.id} done · {gen.settings.steps} steps in {gen.elapsed_s:.2f}s"
                         f" · {gen.steps_per_s:.1f} steps/s")
        self._update_cell_info(self.grid.cursor)

    def on_generation_cancelled(self, message: GenerationCancelled) -> None:
        if self._job is None or message.job_id != self._job.id:
            return
        self._end_job()
        self._show_current()
        self._set_status(f"cancelled at step {message.steps_done}/{message.total}")

    def on_generation_failed(self, message: GenerationFailed) -> None:
        if self._job is None or message.job_id != self._job.id:
            return
        self._end_job()
        self._show_current()
        self._error(message.error, "Sampling failed")
        self._set_status("sampling failed")

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """Errors that escaped a worker (bugs) still end as a toast, never as an exit."""
        if event.state == WorkerState.ERROR and event.worker.error is not None:
            if event.worker.group == "sample":
                self._end_job()
            self._error(error_text(event.worker.error), "Internal error")

