"""The control panel: class/mix, sampler, steps, eta, guidance, seed, grid size and backend.

It only edits and validates values. :meth:`ControlPanel.read` turns the widgets into a
:class:`~difftool.tui.settings.Settings` (raising ``DifftoolError`` on bad text) and
:meth:`ControlPanel.apply` writes one back (history restore). Enter in any input bubbles up as
``Input.Submitted``, which the app turns into "generate". Selects do not type-to-search, so the
app's letter keys (g, s, a, ...) still work while one has focus.
"""

from __future__ import annotations

from collections.abc import Sequence

from textual.app import ComposeResult
from textual.containers import Horizontal, VerticalScroll
from textual.message import Message
from textual.widget import Widget
from textual.widgets import Checkbox, Input, Label, Select

from difftool.config import ModelCard
from difftool.errors import DifftoolError
from difftool.tui.settings import SAMPLERS, Settings, format_mix, parse_grid, parse_mix


def _field(label: str, widget: Widget, tooltip: str) -> Horizontal:
    widget.tooltip = tooltip
    return Horizontal(Label(label, classes="field-label"), widget, classes="field")


class ControlPanel(VerticalScroll):
    """Left-hand panel of generation settings."""

    class BackendChosen(Message):
        """The user picked backend ``name`` in the backend select."""

        def __init__(self, name: str) -> None:
            super().__init__()
            self.name = name

    def __init__(self, backends: Sequence[str], settings: Settings, backend: str,
                 *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._backends = list(backends)
        self._initial = settings
        self._backend = backend
        self.card: ModelCard | None = None
        self._class_names: list[str] = []

    def compose(self) -> ComposeResult:
        s = self._initial
        yield Label("Sprite", classes="section")
        yield _field("class", Select([], id="class", prompt="(mix)", compact=True, type_to_search=False),
                     "Pick one class (fills the mix field)")
        yield _field("mix", Input(s.mix, id="mix", placeholder="hero=0.6,food=0.4", compact=True),
                     "One class, or a mixture: name=weight,... (weights as written; blank = unconditional)")
        yield Label("Sampler", classes="section")
        yield _field("sampler", Select([(label, key) for key, label in SAMPLERS.items()], id="sampler",
                                       value=s.sampler, allow_blank=False, compact=True,
                                       type_to_search=False),
                     "DDPM (stochastic), DDIM (eta=0 deterministic), DPM-Solver++ 2M (few steps)")
        yield _field("steps", Input(str(s.steps), id="steps", type="integer", compact=True),
                     "Number of denoising steps")
        yield _field("eta", Input(f"{s.eta:g}", id="eta", type="number", compact=True),
                     "DDIM eta: 0 = deterministic, 1 = DDPM-like noise")
        yield _field("guidance", Input(f"{s.guidance:g}", id="guidance", type="number", compact=True),
                     "Classifier-free guidance scale (1 = off)")
        yield Label("Seed & grid", classes="section")
        yield _field("seed", Input(str(s.seed), id="seed", type="integer", compact=True),
                     "Base seed: sprite i uses seed + i")
        yield Checkbox("random seed", s.random_seed, id="random-seed", compact=True)
        yield _field("grid", Input(f"{s.rows}x{s.cols}", id="grid", placeholder="4x4", compact=True),
                     "ROWSxCOLS, each 1..8 ([ and ] change it)")
        yield _field("backend", Select([(b, b) for b in self._backends], id="backend", value=self._backend,
                                       allow_blank=False, compact=True, type_to_search=False),
                     "Inference backend")

    # -- card-dependent state ------------------------------------------------------------------------
    def set_card(self, card: ModelCard) -> None:
        """Adapt to a model: class list, unconditional models, guidance support."""
        self.card = card
        names = list(card.class_names) or [str(i) for i in range(card.num_classes)]
        self._class_names = names
        select: Select[str] = self.query_one("#class", Select)
        mix_input = self.query_one("#mix", Input)
        with select.prevent(Select.Changed):
            select.set_options([(name, name) for name in names])
        select.disabled = mix_input.disabled = not card.conditional
        self.query_one("#guidance", Input).disabled = not card.supports_guidance
        if card.conditional and not mix_input.value.strip():
            mix_input.value = names[0]
        elif not card.conditional:
            mix_input.value = ""
        self._sync_class_select(mix_input.value)

    def _sync_class_select(self, mix: str) -> None:
        select: Select[str] = self.query_one("#class", Select)
        value = mix.strip()
        with select.prevent(Select.Changed):
            select.value = value if value in self._class_names else Select.NULL

    def on_select_changed(self, event: Select.Changed) -> None:
        if event.select.id == "class" and event.value is not Select.NULL:
            self.query_one("#mix", Input).value = str(event.value)
        elif event.select.id == "backend" and event.value is not Select.NULL:
            self.post_message(self.BackendChosen(str(event.value)))

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "mix":
            self._sync_class_select(event.value)

    # -- read / write ----------------------------------------------------------------------------------
    def _number(self, widget_id: str, kind: type[int] | type[float]) -> int | float:
        text = self.query_one(f"#{widget_id}", Input).value.strip()
        try:
            return kind(text)
        except ValueError:
            raise DifftoolError(f"{widget_id} must be a number, got {text!r}") from None

    def read_mix(self) -> str:
        """The canonical mix text, validated against the model's classes when one is loaded."""
        text = self.query_one("#mix", Input).value.strip()
        if self.card is None:
            return text
        if not self.card.conditional:
            return ""
        return format_mix(parse_mix(text, self.card.class_names, self.card.num_classes))

    def read(self) -> Settings:
        """The settings in the widgets; raises :class:`DifftoolError` with a hint on bad input."""
        rows, cols = parse_grid(self.query_one("#grid", Input).value)
        sampler = self.query_one("#sampler", Select).value
        settings = Settings(
            mix=self.read_mix(),
            sampler=str(sampler),
            steps=int(self._number("steps", int)),
            eta=float(self._number("eta", float)),
            guidance=float(self._number("guidance", float)),
            seed=int(self._number("seed", int)),
            random_seed=self.query_one("#random-seed", Checkbox).value,
            rows=rows,
            cols=cols,
        )
        max_steps = self.card.schedule.num_timesteps if self.card is not None else None
        return settings.validate(max_steps)

    def apply(self, settings: Settings) -> None:
        """Show ``settings`` in the widgets (the backend is left alone)."""
        self.query_one("#mix", Input).value = settings.mix
        self.set_sampler(settings.sampler)
        self.query_one("#steps", Input).value = str(settings.steps)
        self.query_one("#eta", Input).value = f"{settings.eta:g}"
        self.query_one("#guidance", Input).value = f"{settings.guidance:g}"
        self.set_seed(settings.seed)
        self.query_one("#random-seed", Checkbox).value = settings.random_seed
        self.set_grid(settings.rows, settings.cols)

    def set_seed(self, seed: int) -> None:
        self.query_one("#seed", Input).value = str(seed)

    def set_grid(self, rows: int, cols: int) -> None:
        self.query_one("#grid", Input).value = f"{rows}x{cols}"

    def set_sampler(self, sampler: str) -> None:
        self.query_one("#sampler", Select).value = sampler

    def set_backend(self, name: str) -> None:
        """Show ``name`` as the backend without announcing it as a user choice."""
        select: Select[str] = self.query_one("#backend", Select)
        with select.prevent(Select.Changed):
            select.value = name

    @property
    def sampler(self) -> str:
        return str(self.query_one("#sampler", Select).value)

    def toggle_random_seed(self) -> bool:
        box = self.query_one("#random-seed", Checkbox)
        box.value = not box.value
        return box.value
