"""The control panel: class/mix, sampler and its options, steps, guidance, palette, seed, grid and backend.

It only edits and validates values. The sampler list, its labels and each sampler's options (eta for
DDIM, variance for DDPM, ...) come from the sampler registry; only the selected sampler's options are
shown. A blank sampler field means "the model's default": :meth:`ControlPanel.set_card` fills blanks in
from :func:`difftool.runtime.defaults.resolve`. :meth:`ControlPanel.read` turns the widgets into a
:class:`~difftool.tui.settings.Settings` (raising ``DifftoolError`` on bad text) and
:meth:`ControlPanel.apply` writes one back (history restore). Enter in any input bubbles up as
``Input.Submitted``, which the app turns into "generate". Selects do not type-to-search, so the
app's letter keys (g, s, a, ...) still work while one has focus.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from textual.app import ComposeResult
from textual.containers import Horizontal, VerticalScroll
from textual.message import Message
from textual.widget import Widget
from textual.widgets import Checkbox, Input, Label, Select

from difftool.config import ModelCard
from difftool.errors import DifftoolError
from difftool.runtime.defaults import resolve
from difftool.runtime.samplers import SAMPLERS, Option, get_sampler
from difftool.tui.settings import Settings, parse_grid

DEFAULT = "default"  # placeholder of a blank field: the model's default


def sampler_options() -> dict[str, Option]:
    """Every sampler option by name, once (the first sampler that declares it gives its type and help)."""
    options: dict[str, Option] = {}
    for spec in SAMPLERS.values():
        for option in spec.options:
            options.setdefault(option.name, option)
    return options


def _field(label: str, widget: Widget, tooltip: str, *, id: str | None = None) -> Horizontal:
    widget.tooltip = tooltip
    return Horizontal(Label(label, classes="field-label"), widget, classes="field", id=id)


def _text(value: Any) -> str:
    if value is None:
        return ""
    return f"{value:g}" if isinstance(value, float) else str(value)


def _option_widget(option: Option, value: Any) -> Widget:
    widget_id = f"opt-{option.name}"
    if option.choices:
        return Select([(c, c) for c in option.choices], id=widget_id, value=value if value is not None else Select.NULL,
                      prompt=DEFAULT, compact=True, type_to_search=False)
    kind = "integer" if option.kind is int else "number" if option.kind is float else "text"
    return Input(_text(value), id=widget_id, type=kind, placeholder=DEFAULT, compact=True)


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
        self._options = sampler_options()

    def compose(self) -> ComposeResult:
        s = self._initial
        yield Label("Sprite", classes="section")
        yield _field("class", Select([], id="class", prompt="(mix)", compact=True, type_to_search=False),
                     "Pick one class (fills the mix field)")
        yield _field("mix", Input(s.mix, id="mix", placeholder="hero=0.6,food=0.4", compact=True),
                     "One class, or a mixture: name=weight,... (weights as written; blank = unconditional)")
        yield Label("Sampler", classes="section")
        yield _field("sampler", Select([(spec.label, name) for name, spec in SAMPLERS.items()], id="sampler",
                                       value=s.sampler or Select.NULL, prompt=DEFAULT, compact=True,
                                       type_to_search=False),
                     "\n".join(f"{spec.label}: {spec.summary}" for spec in SAMPLERS.values()))
        yield _field("steps", Input(_text(s.steps), id="steps", type="integer", placeholder=DEFAULT, compact=True),
                     "Number of denoising steps")
        for name, option in self._options.items():
            yield _field(name, _option_widget(option, s.options.get(name)), option.help, id=f"field-{name}")
        yield _field("guidance", Input(_text(s.guidance), id="guidance", type="number", placeholder=DEFAULT,
                                       compact=True),
                     "Classifier-free guidance scale (1 = off)")
        yield _field("palette", Input(s.palette or "", id="palette", placeholder=DEFAULT, compact=True),
                     "auto: the palette the model learned from its training data | none: raw output | a .gpl, "
                     "hex-list or PNG file | #rrggbb,... colours; x0 is projected onto it in the last steps")
        yield Label("Seed & grid", classes="section")
        yield _field("seed", Input(str(s.seed), id="seed", type="integer", compact=True),
                     "Base seed: sprite i uses seed + i")
        yield Checkbox("random seed", s.random_seed, id="random-seed", compact=True)
        yield _field("grid", Input(f"{s.rows}x{s.cols}", id="grid", placeholder="4x4", compact=True),
                     "ROWSxCOLS, each 1..8 ([ and ] change it)")
        yield _field("backend", Select([(b, b) for b in self._backends], id="backend", value=self._backend,
                                       allow_blank=False, compact=True, type_to_search=False),
                     "Inference backend")

    def on_mount(self) -> None:
        self._show_options(self.sampler)

    def _show_options(self, sampler: str | None) -> None:
        """Show only the option fields of ``sampler`` (none while it is blank)."""
        names = get_sampler(sampler).option_names() if sampler else ()
        for name in self._options:
            self.query_one(f"#field-{name}").display = name in names

    # -- card-dependent state ------------------------------------------------------------------------
    def set_card(self, card: ModelCard) -> None:
        """Adapt to a model: class list, unconditional models, guidance support, default settings."""
        self.card = card
        names = list(card.class_names) or [str(i) for i in range(card.num_classes)]
        self._class_names = names
        select: Select[str] = self.query_one("#class", Select)
        mix_input = self.query_one("#mix", Input)
        with select.prevent(Select.Changed):
            select.set_options([(name, name) for name in names])
        select.disabled = mix_input.disabled = not card.conditional
        guidance = self.query_one("#guidance", Input)
        guidance.disabled = not card.supports_guidance
        if card.conditional and not mix_input.value.strip():
            mix_input.value = names[0]
        elif not card.conditional:
            mix_input.value = ""
        if not card.supports_guidance:
            guidance.value = ""  # filled with 1 below: an unconditional model has nothing to guide
        self._sync_class_select(mix_input.value)
        self._fill_defaults(card)

    def _fill_defaults(self, card: ModelCard) -> None:
        """Blank sampler fields take the model's defaults (:func:`difftool.runtime.defaults.resolve`)."""
        conditioned = card.conditional and bool(self.mix_text)
        sampler = self._select("sampler")
        base = resolve(card, conditioned=conditioned, sampler=sampler)
        if sampler is None:
            self.set_sampler(base.sampler)
        palette = str(card.recommended("palette") or "none")
        for widget_id, value in (("steps", base.steps), ("guidance", base.guidance), ("palette", palette)):
            widget = self.query_one(f"#{widget_id}", Input)
            if not widget.value.strip():
                widget.value = _text(value)
        for spec in SAMPLERS.values():
            for name, value in resolve(card, conditioned=conditioned, sampler=spec.name).options.items():
                try:
                    blank = self._option(name) is None
                except DifftoolError:  # bad text stays for read() to report
                    blank = False
                if blank:
                    self._set_option(name, value)

    def _sync_class_select(self, mix: str) -> None:
        select: Select[str] = self.query_one("#class", Select)
        value = mix.strip()
        with select.prevent(Select.Changed):
            select.value = value if value in self._class_names else Select.NULL

    def on_select_changed(self, event: Select.Changed) -> None:
        if event.select.id == "class" and event.value is not Select.NULL:
            self.query_one("#mix", Input).value = str(event.value)
        elif event.select.id == "sampler":
            self._show_options(None if event.value is Select.NULL else str(event.value))
        elif event.select.id == "backend" and event.value is not Select.NULL:
            self.post_message(self.BackendChosen(str(event.value)))

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "mix":
            self._sync_class_select(event.value)

    # -- read / write ----------------------------------------------------------------------------------
    def _select(self, widget_id: str) -> str | None:
        value = self.query_one(f"#{widget_id}", Select).value
        return None if value is Select.NULL else str(value)

    def _number(self, widget_id: str, kind: type, label: str | None = None) -> Any:
        """The field's value as ``kind``; None when blank."""
        text = self.query_one(f"#{widget_id}", Input).value.strip()
        if not text:
            return None
        try:
            return kind(text)
        except ValueError:
            what = "a number" if kind in (int, float) else f"a {kind.__name__}"
            raise DifftoolError(f"{label or widget_id} must be {what}, got {text!r}") from None

    def _option(self, name: str) -> Any:
        """Option ``name`` as typed (None when blank: the model's default)."""
        option = self._options[name]
        if option.choices:
            return self._select(f"opt-{name}")
        return self._number(f"opt-{name}", option.kind, name)

    def _set_option(self, name: str, value: Any) -> None:
        widget = self.query_one(f"#opt-{name}")
        if isinstance(widget, Select):
            widget.value = Select.NULL if value is None else value
        elif isinstance(widget, Input):
            widget.value = _text(value)

    @property
    def mix_text(self) -> str:
        """The mix field as typed (the app checks it with the runtime's mix parser)."""
        return self.query_one("#mix", Input).value.strip()

    def read(self) -> Settings:
        """The settings in the widgets (blank sampler fields: None); raises :class:`DifftoolError` with a
        hint on bad input."""
        rows, cols = parse_grid(self.query_one("#grid", Input).value)
        sampler = self._select("sampler")
        names = get_sampler(sampler).option_names() if sampler else ()
        seed = self._number("seed", int)
        if seed is None:
            raise DifftoolError("seed must be a number, got ''")
        guidance = self.query_one("#guidance", Input)
        settings = Settings(
            mix=self.mix_text,
            sampler=sampler,
            steps=self._number("steps", int),
            guidance=None if guidance.disabled else self._number("guidance", float),
            options={name: self._option(name) for name in names},
            seed=seed,
            random_seed=self.query_one("#random-seed", Checkbox).value,
            rows=rows,
            cols=cols,
            palette=self.query_one("#palette", Input).value.strip() or None,
        )
        max_steps = self.card.schedule.num_timesteps if self.card is not None else None
        return settings.validate(max_steps)

    def apply(self, settings: Settings) -> None:
        """Show ``settings`` in the widgets (the backend is left alone)."""
        self.query_one("#mix", Input).value = settings.mix
        if settings.sampler is not None:
            self.set_sampler(settings.sampler)
        self.query_one("#steps", Input).value = _text(settings.steps)
        self.query_one("#guidance", Input).value = _text(settings.guidance)
        self.query_one("#palette", Input).value = settings.palette or ""
        for name, value in settings.options.items():
            if name in self._options:
                self._set_option(name, value)
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
    def sampler(self) -> str | None:
        return self._select("sampler")

    def toggle_random_seed(self) -> bool:
        box = self.query_one("#random-seed", Checkbox)
        box.value = not box.value
        return box.value
