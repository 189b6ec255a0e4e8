"""The help screen (``?`` / F1): every key binding with its description and keymap id."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from rich.table import Table
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Label, Static

INTRO = (
    "Edit a control and press Enter (or g / space) to generate. Arrow keys or a click pick a sprite for "
    "r (re-roll) and v (vary with the current mix). Tab moves between panels; ctrl+p opens the command "
    "palette."
)


def keys_text(binding: Binding, key_display: Callable[[Binding], str]) -> str:
    """All keys of a binding ("g / space"), each as the footer would show it."""
    keys = [key.strip() for key in binding.key.split(",")]
    return " / ".join(key_display(Binding(key, binding.action)) for key in keys)


def bindings_table(rows: Iterable[tuple[str, Binding]], key_display: Callable[[Binding], str]) -> Table:
    table = Table(box=None, expand=True, pad_edge=False, show_edge=False)
    table.add_column("key", style="bold", no_wrap=True)
    table.add_column("action")
    table.add_column("where", style="dim", no_wrap=True)
    table.add_column("keymap id", style="dim", no_wrap=True)
    for where, binding in rows:
        text = binding.tooltip or binding.description
        table.add_row(keys_text(binding, key_display), text, where, binding.id or "")
    return table


class HelpScreen(ModalScreen[None]):
    """A modal listing the bindings; Esc, q, ? or F1 closes it."""

    BINDINGS = [
        Binding("escape,q,question_mark,f1", "dismiss", "Close help", id="help.close"),
    ]

    def __init__(self, rows: list[tuple[str, Binding]]) -> None:
        super().__init__()
        self._rows = rows

    def compose(self) -> ComposeResult:
        with Vertical(id="help-box"):
            yield Label("difftool sprites — keys", id="help-title")
            yield Static(INTRO, id="help-intro")
            yield Static(bindings_table(self._rows, self.app.get_key_display), id="help-table")
            yield Label("Esc closes", id="help-close")
