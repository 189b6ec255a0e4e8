"""Command palette entries (ctrl+p) for every TUI action, as Textual system commands."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Protocol

from textual.app import SystemCommand

from difftool.runtime.samplers import SAMPLERS
from difftool.tui.bindings import SAMPLER_CYCLE


class _Actions(Protocol):
    backend_names: list[str]

    def run_action(self, action: str) -> object: ...


def _do(app: _Actions, action: str) -> Callable[[], object]:
    return lambda: app.run_action(action)


ACTIONS: list[tuple[str, str, str]] = [
    ("Generate", "Sample a new grid with the current settings (g, space)", "generate"),
    ("Cancel generation", "Stop the running sampler after the current step (esc)", "cancel"),
    ("Save grid as PNG", "Write the sprite sheet (with its generation record) and a sidecar JSON (s)", "save_png"),
    ("Save animation as GIF", "Write the denoising animation and a sidecar JSON (a)", "save_gif"),
    ("Toggle x_t / predicted x0", "Show the noisy sample or the model's clean-image guess (x)", "toggle_x0"),
    ("Zoom in", "Bigger sprites, up to 4x (+)", "zoom(1)"),
    ("Zoom out", "Smaller sprites, down to 1x (-)", "zoom(-1)"),
    ("Grid bigger", "One more row and column, up to 8x8 (])", "grid(1)"),
    ("Grid smaller", "One less row and column, down to 1x1 ([)", "grid(-1)"),
    ("Re-roll selected sprite", "New seed for the highlighted sprite only (r)", "reroll"),
    ("Vary selected sprite", "Same seed, the class/mix now in the controls (v)", "vary"),
    ("New seed", "Pick a random seed and generate (n)", "new_seed"),
    ("Toggle new seed each time", "Random seed on every generate, or keep the seed fixed", "toggle_random_seed"),
    ("Next sampler", f"Cycle {SAMPLER_CYCLE} (m)", "cycle_sampler"),
    ("Next backend", "Cycle the available inference backends (b)", "cycle_backend"),
    ("Keys", "Show all key bindings (? / F1)", "show_help"),
]


def system_commands(app: _Actions) -> Iterator[SystemCommand]:
    for title, help_text, action in ACTIONS:
        yield SystemCommand(title, help_text, _do(app, action))
    for name, spec in SAMPLERS.items():
        yield SystemCommand(f"Sampler: {spec.label}", f"Use {spec.summary or spec.label}",
                            _do(app, f"set_sampler('{name}')"))
    for name in app.backend_names:
        yield SystemCommand(f"Backend: {name}", f"Switch inference to {name}", _do(app, f"set_backend('{name}')"))
