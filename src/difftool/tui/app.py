"""``SpriteApp``: controls on the left, the animated sprite grid in the middle, history on the right.

Sampling and backend loading run in thread workers; they talk back only through messages
(:mod:`difftool.tui.messages`), so the UI keeps responding while a model runs. Errors become
``notify(severity="error")`` toasts; the app never exits because of a model.
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import numpy as np
from textual import work
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import Footer, Header, Input, ProgressBar
from textual.worker import Worker, WorkerState, get_current_worker

from difftool.errors import DifftoolError
from difftool.tui.bindings import APP_BINDINGS, help_rows
from difftool.tui.commands import system_commands
from difftool.tui.controls import ControlPanel
from difftool.tui.generation import Cell, Generation
from difftool.tui.help_screen import HelpScreen
from difftool.tui.history import HistoryPanel
from difftool.tui.messages import (
    BackendFailed,
    BackendLoaded,
    FrameReady,
    GenerationCancelled,
    GenerationFailed,
    GenerationFinished,
)
from difftool.tui.pipeline_api import PipelineFactory, SpritePipeline, backend_label
from difftool.tui.sampling import Job, run_job
from difftool.tui.saving import View, save_animation, save_sheet, stem_for
from difftool.tui.settings import MAX_GRID, MAX_SEED, MIN_GRID, SAMPLERS, Settings, parse_grid
from difftool.tui.sprite_grid import SpriteGrid
from difftool.tui.status_line import StatusLine
from difftool.tui.terminal import truecolor_warning

FRAME_INTERVAL = 1 / 12  # seconds between grid redraws while sampling (keeps the UI and GIL free)


def _error_text(exc: BaseException) -> str:
    return str(exc) if isinstance(exc, DifftoolError) else f"{type(exc).__name__}: {exc}"


class SpriteApp(App[None]):
    """Interactive sprite sampler. ``backends`` maps a name to a pipeline factory; the first is used."""

    CSS_PATH = "app.tcss"
    TITLE = "difftool sprites"
    AUTO_FOCUS = "#sprites"
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (100, "-wide")]
    VERTICAL_BREAKPOINTS = [(0, "-short"), (30, "-tall")]

    BINDINGS = APP_BINDINGS

    def __init__(
        self,
        backends: Mapping[str, PipelineFactory],
        *,
        settings: Settings | None = None,
        output_dir: str | os.PathLike[str] | None = None,
        clock: Callable[[], float] = time.perf_counter,
        save_scale: int = 8,
        gif_scale: int = 4,
        zoom: int = 1,
        rng_seed: int | None = None,
        env: Mapping[str, str] | None = None,
        keymap: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__()
        if not backends:
            raise DifftoolError("the TUI needs at least one backend")
        self._factories = dict(backends)
        self.backend_names = list(self._factories)
        self.settings = (settings or Settings()).validate()
        self.output_dir = (Path(output_dir).expanduser() if output_dir is not None else Path.cwd()).resolve()
        self._clock = clock
        self.save_scale = save_scale
        self.gif_scale = gif_scale
        self._initial_zoom = zoom
        self._rng = random.Random(rng_seed)
        self._env = os.environ if env is None else env
        if keymap:
            self.set_keymap(dict(keymap))

        self.pipeline: SpritePipeline | None = None
        self.backend_name = self.backend_names[0]
        self._pipelines: dict[str, SpritePipeline] = {}
        self._loading: str | None = None
        self._pending_generate = False
        self._sample_lock = threading.Lock()
        self._job: Job | None = None
        self._job_counter = 0
        self._gen_counter = 0
        self._frame: tuple[np.ndarray, np.ndarray] | None = None
        self._pending_frame: FrameReady | None = None
        self._draw_timer: Timer | None = None
        self._last_draw = 0.0
        self.current: Generation | None = None
        self.show_x0 = False
        self.status_text = ""

    # -- layout ------------------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield Header(show_clock=False, icon="▀")
        with Horizontal(id="main"):
            yield ControlPanel(self.backend_names, self.settings, self.backend_name, id="controls")
            with Vertical(id="center"):
                yield StatusLine(id="cell-info")
                yield SpriteGrid(rows=self.settings.rows, cols=self.settings.cols, zoom=self._initial_zoom,
                                 id="sprites")
                with Horizontal(id="statusbar"):
                    yield ProgressBar(id="progress", show_eta=False)
                    yield StatusLine(id="status")
            yield HistoryPanel(id="history")
        yield Footer()

    @property
    def grid(self) -> SpriteGrid:
        return self.query_one("#sprites", SpriteGrid)

    @property
    def controls(self) -> ControlPanel:
        return self.query_one("#controls", ControlPanel)

    @property
    def history(self) -> HistoryPanel:
        return self.query_one("#history", HistoryPanel)

    @property
    def busy(self) -> bool:
        """True while a sampling job runs."""
        return self._job is not None

    def on_mount(self) -> None:
        warning = truecolor_warning(self._env)
        if warning:
            self.notify(warning, title="Colours", severity="warning", timeout=12, markup=False)
        self._set_status("loading backend…")
        self.switch_backend(self.backend_name)

    def _set_status(self, text: str) -> None:
        self.status_text = text
        self.query_one("#status", StatusLine).text = text

    def _error(self, message: str, title: str) -> None:
        self.notify(message, title=title, severity="error", timeout=10, markup=False)

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
            self.post_message(BackendFailed(name, _error_text(exc)))
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

    def _use_backend(self, name: str, pipeline: SpritePipeline) -> None:
        self.pipeline = pipeline
        self.backend_name = name
        card = pipeline.card
        self.controls.set_backend(name)
        self.controls.set_card(card)
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

    # -- generation ----------------------------------------------------------------------------------
    def _next_job_id(self) -> int:
        self._job_counter += 1
        return self._job_counter

    def _random_seed(self, n: int = 1) -> int:
        return self._rng.randrange(0, MAX_SEED - n)

    def _start(self, job: Job, pipeline: SpritePipeline) -> None:
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
    def _sample(self, job: Job, pipeline: SpritePipeline) -> None:
        worker = get_current_worker()
        run_job(job, pipeline, self.post_message, self._clock, lambda: worker.is_cancelled, self._sample_lock)

    def _ready_pipeline(self) -> SpritePipeline | None:
        if self.pipeline is not None:
            return self.pipeline
        if self._loading is not None:
            self._pending_generate = True
            self.notify(f"Backend {self._loading} is still loading; will generate when ready.")
        else:
            self._error("No backend is loaded; choose one in the backend list.", "Generate")
        return None

    def action_generate(self) -> None:
        pipeline = self._ready_pipeline()
        if pipeline is None:
            return
        try:
            settings = self.controls.read()
        except DifftoolError as exc:
            self._error(str(exc), "Bad setting")
            return
        if settings.random_seed:
            settings = settings.with_(seed=self._random_seed(settings.n))
            self.controls.set_seed(settings.seed)
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
                cells[index] = Cell(old.seed, self.controls.read_mix())
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

    def on_frame_ready(self, message: FrameReady) -> None:
        """Keep the newest frame; draw it now, or when FRAME_INTERVAL has passed since the last draw."""
        if self._job is None or message.job_id != self._job.id:
            return
        self._pending_frame = message
        wait = FRAME_INTERVAL - (time.monotonic() - self._last_draw)
        if wait <= 0:
            self._draw_frame()
        elif self._draw_timer is None:
            self._draw_timer = self.set_timer(wait, self._draw_frame)

    def _draw_frame(self) -> None:
        self._draw_timer = None
        message, job = self._pending_frame, self._job
        self._pending_frame = None
        if message is None or job is None or message.job_id != job.id:
            return
        self._last_draw = time.monotonic()
        self._frame = (message.xt, message.x0)
        self.grid.show(message.x0 if self.show_x0 else message.xt, job.settings.rows, job.settings.cols)
        self.query_one("#progress", ProgressBar).update(total=message.total, progress=message.index + 1)
        self._set_status(f"step {message.index + 1}/{message.total} · {message.steps_per_s:.1f} steps/s")

    def _end_job(self) -> None:
        self._job = None
        self._pending_frame = None
        if self._draw_timer is not None:
            self._draw_timer.stop()
            self._draw_timer = None

    def on_generation_finished(self, message: GenerationFinished) -> None:
        if self._job is None or message.job_id != self._job.id:
            return
        self._end_job()
        gen = message.generation
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
            self._error(_error_text(event.worker.error), "Internal error")

    # -- display -----------------------------------------------------------------------------------
    def _view_name(self) -> str:
        return "predicted x0" if self.show_x0 else "x_t"

    def _show_current(self) -> None:
        gen = self.current
        if gen is None:
            return
        self.grid.show(gen.x0 if self.show_x0 else gen.image, gen.settings.rows, gen.settings.cols)

    def action_toggle_x0(self) -> None:
        self.show_x0 = not self.show_x0
        if self._job is not None and self._frame is not None:
            s = self._job.settings
            self.grid.show(self._frame[1] if self.show_x0 else self._frame[0], s.rows, s.cols)
        elif self._job is None:
            self._show_current()
        self._update_cell_info(self.grid.cursor)

    def action_zoom(self, delta: int) -> None:
        self.grid.zoom = self.grid.zoom + delta
        self._update_cell_info(self.grid.cursor)

    def action_grid(self, delta: int) -> None:
        try:
            rows, cols = parse_grid(self.query_one("#grid", Input).value)
        except DifftoolError:
            rows, cols = self.grid.rows, self.grid.cols
        rows, cols = (max(MIN_GRID, min(MAX_GRID, v + delta)) for v in (rows, cols))
        self.controls.set_grid(rows, cols)
        self.notify(f"Grid {rows}x{cols}: press g to generate", timeout=3)

    def on_sprite_grid_cell_selected(self, message: SpriteGrid.CellSelected) -> None:
        self._update_cell_info(message.index)

    def _update_cell_info(self, index: int) -> None:
        text = f"zoom {self.grid.zoom}x · view {self._view_name()}"
        gen = self.current
        if gen is not None and index < len(gen.cells) and not self.busy:
            cell = gen.cells[index]
            row, col = divmod(index, gen.settings.cols)
            text = f"sprite {index} (row {row}, col {col}) · seed {cell.seed} · {cell.mix or 'uncond'} · " + text
        self.query_one("#cell-info", StatusLine).text = text

    # -- history -----------------------------------------------------------------------------------
    def on_history_panel_restore(self, message: HistoryPanel.Restore) -> None:
        if self.busy:
            self.action_cancel()
        gen = message.generation
        self.current = gen
        self.controls.apply(gen.settings)
        self._show_current()
        self._set_status(f"restored #{gen.id} · {gen.settings.summary()}")
        self._update_cell_info(self.grid.cursor)

    # -- saving ------------------------------------------------------------------------------------
    def _save(self, kind: str) -> None:
        gen = self.current
        if gen is None:
            self.notify("Nothing to save yet: generate first.", severity="warning")
            return
        if kind == "gif" and len(gen.frames) < 2:
            self.notify("This history entry no longer has its animation frames; generate it again.",
                        severity="warning")
            return
        view: View = "x0" if self.show_x0 else "xt"
        stem_for(gen, self.output_dir)  # pick the file stem here, so concurrent saves agree on it
        self._save_worker(gen, kind, view)

    @work(thread=True, exit_on_error=False, group="save", description="saving")
    def _save_worker(self, gen: Generation, kind: str, view: View) -> None:
        try:
            if kind == "png":
                path = save_sheet(gen, self.output_dir, self.save_scale, view)
            else:
                path = save_animation(gen, self.output_dir, self.gif_scale, view)
        except Exception as exc:  # disk full, permissions, ...
            self.call_from_thread(self._error, _error_text(exc), f"Could not save {kind.upper()}")
            return
        self.call_from_thread(self.notify, f"{path} (+ {path.with_suffix('.json').name})",
                              title=f"Saved {kind.upper()}", markup=False)

    def action_save_png(self) -> None:
        self._save("png")

    def action_save_gif(self) -> None:
        self._save("gif")

    # -- sampler / backend switching ---------------------------------------------------------------
    def action_set_sampler(self, sampler: str) -> None:
        self.controls.set_sampler(sampler)
        self.notify(f"Sampler: {SAMPLERS[sampler]}", timeout=2)

    def action_cycle_sampler(self) -> None:
        keys = list(SAMPLERS)
        current = self.controls.sampler
        nxt = keys[(keys.index(current) + 1) % len(keys)] if current in keys else keys[0]
        self.action_set_sampler(nxt)

    def action_set_backend(self, name: str) -> None:
        self.controls.set_backend(name)
        self.switch_backend(name)

    def action_cycle_backend(self) -> None:
        names = self.backend_names
        target = self._loading or self.backend_name
        self.action_set_backend(names[(names.index(target) + 1) % len(names)])

    def action_toggle_random_seed(self) -> None:
        on = self.controls.toggle_random_seed()
        self.notify("New seed each time" if on else "Seed fixed", timeout=2)

    # -- help / palette ----------------------------------------------------------------------------
    def help_rows(self) -> list[tuple[str, Binding]]:
        return help_rows()

    def action_show_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen(self.help_rows()))

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        yield from system_commands(self)

    # -- input -------------------------------------------------------------------------------------
    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id in {"mix", "steps", "eta", "guidance", "seed", "grid"}:
            self.action_generate()

