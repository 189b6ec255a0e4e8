"""``SpriteApp``: controls on the left, the animated sprite grid in the middle, history on the right.

This module holds the layout, the app's state and the display helpers. Loading backends and running
sampling jobs live in :mod:`difftool.tui.jobs`, the other actions in :mod:`difftool.tui.actions`.
Errors become ``notify(severity="error")`` toasts; the app never exits because of a model.
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import numpy as np
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Footer, Header, Input, ProgressBar

from difftool.errors import DifftoolError
from difftool.render import truecolor_hint
from difftool.runtime.pipeline import Pipeline
from difftool.tui.actions import ActionsMixin
from difftool.tui.bindings import APP_BINDINGS, help_rows
from difftool.tui.commands import system_commands
from difftool.tui.controls import ControlPanel
from difftool.tui.generation import Generation
from difftool.tui.history import HistoryPanel
from difftool.tui.jobs import JobsMixin
from difftool.tui.sampling import Job
from difftool.tui.settings import Settings
from difftool.tui.sprite_grid import SpriteGrid
from difftool.tui.status_line import StatusLine


class SpriteApp(JobsMixin, ActionsMixin, App[None]):
    """Interactive sprite sampler. ``backends`` maps a name to a pipeline factory; the first is used.

    ``settings``: the initial controls (None sampler settings: the model's defaults, resolved once it
    is loaded). ``clock`` times sampling (tests pass a fake one); ``rng_seed`` seeds re-roll and random
    seeds.
    """

    CSS_PATH = "app.tcss"
    TITLE = "difftool sprites"
    AUTO_FOCUS = "#sprites"
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (100, "-wide")]
    VERTICAL_BREAKPOINTS = [(0, "-short"), (30, "-tall")]

    BINDINGS = APP_BINDINGS

    def __init__(
        self,
        backends: Mapping[str, Callable[[], Pipeline]],
        *,
        settings: Settings | None = None,
        output_dir: str | os.PathLike[str] | None = None,
        clock: Callable[[], float] = time.perf_counter,
        save_scale: int = 8,
        gif_scale: int = 4,
        zoom: int = 1,
        rng_seed: int | None = None,
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
        if keymap:
            self.set_keymap(dict(keymap))

        self.pipeline: Pipeline | None = None
        self.backend_name = self.backend_names[0]
        self._pipelines: dict[str, Pipeline] = {}
        self._loading: str | None = None
        self._pending_generate = False
        self._sample_lock = threading.Lock()
        self._job: Job | None = None
        self._job_counter = 0
        self._gen_counter = 0
        self._frame: tuple[np.ndarray, np.ndarray] | None = None
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
        hint = truecolor_hint()
        if hint:
            self.notify(f"{hint}.", title="Colours", severity="warning", timeout=12, markup=False)
        self._set_status("loading backend…")
        self.switch_backend(self.backend_name)

    def _set_status(self, text: str) -> None:
        self.status_text = text
        self.query_one("#status", StatusLine).text = text

    def _error(self, message: str, title: str) -> None:
        self.notify(message, title=title, severity="error", timeout=10, markup=False)

    # -- display -----------------------------------------------------------------------------------
    def _view_name(self) -> str:
        return "predicted x0" if self.show_x0 else "x_t"

    def _show_current(self) -> None:
        gen = self.current
        if gen is None:
            return
        self.grid.show(gen.x0 if self.show_x0 else gen.image, gen.settings.rows, gen.settings.cols)

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

    # -- help / palette / input --------------------------------------------------------------------
    def help_rows(self) -> list[tuple[str, Binding]]:
        return help_rows()

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        yield from system_commands(self)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        """Enter in any text field of the controls generates."""
        if self.controls in event.input.ancestors:
            self.action_generate()
