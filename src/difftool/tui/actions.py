"""The app's view, save and switching actions (each bound to a key in :mod:`difftool.tui.bindings` and
listed in the command palette by :mod:`difftool.tui.commands`)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from textual import work
from textual.widgets import Input

from difftool.errors import DifftoolError
from difftool.runtime.samplers import SAMPLERS, get_sampler
from difftool.tui.generation import Generation
from difftool.tui.help_screen import HelpScreen
from difftool.tui.jobs import error_text
from difftool.tui.saving import View, save_animation, save_sheet, stem_for
from difftool.tui.settings import MAX_GRID, MIN_GRID, parse_grid

if TYPE_CHECKING:
    from difftool.tui.app import SpriteApp

    _Base = SpriteApp
else:
    _Base = object


class ActionsMixin(_Base):
    """Actions of :class:`~difftool.tui.app.SpriteApp` that do not start sampling."""

    output_dir: Path
    save_scale: int
    gif_scale: int

    # -- view --------------------------------------------------------------------------------------
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
            self.call_from_thread(self._error, error_text(exc), f"Could not save {kind.upper()}")
            return
        self.call_from_thread(self.notify, f"{path} (+ {path.with_suffix('.json').name})",
                              title=f"Saved {kind.upper()}", markup=False)

    def action_save_png(self) -> None:
        self._save("png")

    def action_save_gif(self) -> None:
        self._save("gif")

    # -- sampler / backend / seed ------------------------------------------------------------------
    def action_set_sampler(self, sampler: str) -> None:
        spec = get_sampler(sampler)
        self.controls.set_sampler(spec.name)
        self.notify(f"Sampler: {spec.label}", timeout=2)

    def action_cycle_sampler(self) -> None:
        names = list(SAMPLERS)
        current = self.controls.sampler
        self.action_set_sampler(names[(names.index(current) + 1) % len(names)] if current in names else names[0])

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

    # -- help --------------------------------------------------------------------------------------
    def action_show_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen(self.help_rows()))
