"""The history panel: one line per finished generation, newest first; selecting one restores it."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import Label, OptionList
from textual.widgets.option_list import Option

from difftool.tui.generation import Generation

MAX_HISTORY = 50  # older entries are dropped
KEEP_FRAMES = 8  # only the newest entries keep their animation frames (memory)


class HistoryPanel(Vertical):
    """Past generations; Enter or a click on an entry posts :class:`HistoryPanel.Restore`."""

    class Restore(Message):
        """The user picked ``generation`` from the history."""

        def __init__(self, generation: Generation) -> None:
            super().__init__()
            self.generation = generation

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.entries: list[Generation] = []  # newest first

    def compose(self) -> ComposeResult:
        yield Label("History", classes="section")
        yield OptionList(id="history-list")

    def add(self, generation: Generation) -> None:
        """Put ``generation`` on top (the list keeps at most ``MAX_HISTORY``)."""
        self.entries.insert(0, generation)
        del self.entries[MAX_HISTORY:]
        for old in self.entries[KEEP_FRAMES:]:
            if len(old.frames) > 1:
                old.frames, old.frames_x0 = [old.image], [old.x0]
        options = self.query_one(OptionList)
        options.clear_options()
        options.add_options(Option(g.label(), id=str(g.id)) for g in self.entries)
        options.highlighted = 0

    def find(self, generation_id: int) -> Generation | None:
        return next((g for g in self.entries if g.id == generation_id), None)

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        generation = self.find(int(event.option.id or -1))
        if generation is not None:
            self.post_message(self.Restore(generation))
