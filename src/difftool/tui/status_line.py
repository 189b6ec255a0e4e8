"""A one-line text widget whose updates only repaint (no layout pass), for per-frame status."""

from __future__ import annotations

from textual.reactive import reactive
from textual.widget import Widget


class StatusLine(Widget):
    """One line of text; setting ``text`` repaints just this widget."""

    DEFAULT_CSS = """
    StatusLine {
        height: 1;
    }
    """

    text: reactive[str] = reactive("")

    def render(self) -> str:
        return self.text
