"""Every key binding of the app, each with an id (remap with ``SpriteApp(keymap={id: keys})``)."""

from __future__ import annotations

from textual.binding import Binding

from difftool.runtime.samplers import SAMPLERS
from difftool.tui.sprite_grid import SpriteGrid

SAMPLER_CYCLE = " / ".join(spec.short for spec in SAMPLERS.values())  # the short labels, in registry order

APP_BINDINGS: list[Binding] = [
    Binding("g,space", "generate", "Generate", key_display="g", id="difftool.generate",
            tooltip="Sample a new grid with the current settings"),
    Binding("escape", "cancel", "Cancel", key_display="esc", id="difftool.cancel",
            tooltip="Stop the running sampler after the current step"),
    Binding("s", "save_png", "PNG", id="difftool.save_png",
            tooltip="Save the grid as a PNG sprite sheet (with its generation record) + sidecar JSON"),
    Binding("a", "save_gif", "GIF", id="difftool.save_gif",
            tooltip="Save the denoising animation as a GIF + sidecar JSON"),
    Binding("x", "toggle_x0", "x_t/x0", id="difftool.toggle_x0",
            tooltip="Show the noisy sample x_t or the predicted clean image x0"),
    Binding("r", "reroll", "Re-roll", id="difftool.reroll",
            tooltip="Re-roll the highlighted sprite with a new seed (others kept)"),
    Binding("v", "vary", "Vary", id="difftool.vary",
            tooltip="Resample the highlighted sprite: same seed, the class/mix in the controls"),
    Binding("plus,equals_sign", "zoom(1)", "Zoom in", key_display="+", show=False, id="difftool.zoom_in",
            tooltip="Bigger sprites (up to 4x)"),
    Binding("minus", "zoom(-1)", "Zoom out", key_display="-", show=False, id="difftool.zoom_out",
            tooltip="Smaller sprites (down to 1x)"),
    Binding("right_square_bracket", "grid(1)", "Grid bigger", key_display="]", show=False,
            id="difftool.grid_bigger", tooltip="One more row and column (up to 8x8); g to apply"),
    Binding("left_square_bracket", "grid(-1)", "Grid smaller", key_display="[", show=False,
            id="difftool.grid_smaller", tooltip="One less row and column (down to 1x1); g to apply"),
    Binding("n", "new_seed", "New seed", show=False, id="difftool.new_seed",
            tooltip="Pick a random seed and generate"),
    Binding("m", "cycle_sampler", "Sampler", show=False, id="difftool.cycle_sampler",
            tooltip=f"Next sampler: {SAMPLER_CYCLE}"),
    Binding("b", "cycle_backend", "Backend", show=False, id="difftool.cycle_backend",
            tooltip="Next inference backend"),
    Binding("question_mark,f1", "show_help", "Help", key_display="?", id="difftool.help",
            tooltip="Show all keys"),
]


def help_rows() -> list[tuple[str, Binding]]:
    """(where, binding) rows for the help screen: the app's keys, the grid's, and Textual's own."""
    rows = [("app", b) for b in APP_BINDINGS]
    rows += [("grid", b) for b in SpriteGrid.BINDINGS if isinstance(b, Binding)]
    rows += [
        ("app", Binding("ctrl+p", "command_palette", "Command palette: every action by name")),
        ("app", Binding("tab", "focus_next", "Next panel or control (shift+tab: previous)")),
        ("controls", Binding("enter", "generate", "Generate (in any text field)")),
        ("app", Binding("ctrl+q", "quit", "Quit")),
    ]
    return rows
