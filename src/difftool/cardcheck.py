"""Sanity checks of a :class:`~difftool.config.ModelCard` read from a file (torch-free).

A card comes from a file header and may lie: a negative timestep count, a 10^9-channel model, class names
that do not match the class count, a reversed value range. ``check_card`` rejects such a card with one
line naming the field, before anything is built from it. Limits are generous (far beyond any model
difftool trains or imports); they exist so that a hostile header cannot allocate the machine away.
"""

from __future__ import annotations

import math
from dataclasses import fields
from typing import Any

from difftool.errors import DifftoolError

MAX_WIDTH = 8192  # channels / features of any layer
MAX_IMAGE = 4096
MAX_CLASSES = 100_000
MAX_TIMESTEPS = 100_000
MAX_LEVELS = 16


def _fail(field: str, need: str, got: Any) -> None:
    raise DifftoolError(f"difftool metadata: {field} must be {need}, got {got!r}")


def _int(field: str, value: Any, lo: int, hi: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        _fail(field, f"an integer from {lo} to {hi}", value)


def _float(field: str, value: Any, lo: float, hi: float, open_lo: bool = False) -> None:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value > hi or value < lo or (open_lo and value == lo):
        _fail(field, f"a finite number in {'(' if open_lo else '['}{lo}, {hi}]", value)


def _choice(field: str, value: Any, choices) -> None:
    if value not in choices:
        _fail(field, "one of " + ", ".join(map(str, choices)), value)


def check_model(model) -> None:
    if model.arch not in ("unet", "context_unet"):  # diffusers UNet2DModel configs are checked by diffusers_io
        return
    for f in fields(model):
        value = getattr(model, f.name)
        name = f"model.{f.name}"
        if f.name == "arch":
            continue
        if f.name == "palette":  # the palette head's colours (empty: an eps head)
            _colors(name, value)
        elif "tuple" in str(f.type):
            if not isinstance(value, tuple) or not 1 <= len(value) <= MAX_LEVELS:
                _fail(name, f"a list of 1 to {MAX_LEVELS} entries", list(value))
            for i, item in enumerate(value):
                if "bool" in str(f.type):
                    if not isinstance(item, bool):
                        _fail(f"{name}[{i}]", "true or false", item)
                else:
                    _int(f"{name}[{i}]", item, 1, MAX_WIDTH)
        elif f.name in ("im_size", "height"):
            _int(name, value, 1, MAX_IMAGE)
        elif f.name in ("num_classes", "n_cfeat"):
            _int(name, value, 0, MAX_CLASSES)
        elif f.name in ("num_down_layers", "num_mid_layers", "num_up_layers"):
            _int(name, value, 0 if f.name == "num_mid_layers" else 1, MAX_LEVELS)
        elif f.name == "context_init_std":  # training only; a bad value must still not load silently
            _float(name, value, 0.0, 100.0)
        else:
            _int(name, value, 1, MAX_WIDTH)


def _colors(field: str, value: Any) -> None:
    from difftool.runtime.palette import MAX_COLORS

    if not isinstance(value, tuple) or len(value) > MAX_COLORS:
        _fail(field, f"a list of at most {MAX_COLORS} colours", value)
    for i, item in enumerate(value):
        if not (isinstance(item, str) and len(item) == 7 and item[0] == "#"
                and all(ch in "0123456789abcdefABCDEF" for ch in item[1:])):
            _fail(f"{field}[{i}]", "a '#rrggbb' colour", item)


def check_schedule(s) -> None:
    _choice("schedule.kind", s.kind, ("linear", "cosine", "scaled_linear"))
    _choice("schedule.convention", s.convention, ("standard", "course"))
    _choice("schedule.time_input", s.time_input, ("index", "fraction"))
    _int("schedule.num_timesteps", s.num_timesteps, 2, MAX_TIMESTEPS)
    _float("schedule.beta_start", s.beta_start, 0.0, 1.0, open_lo=True)
    _float("schedule.beta_end", s.beta_end, 0.0, 1.0, open_lo=True)
    if s.beta_end < s.beta_start or s.beta_end >= 1.0:
        _fail("schedule.beta_end", f"at least beta_start ({s.beta_start}) and below 1", s.beta_end)


def check_card(card) -> None:
    """Raise DifftoolError on the first field of ``card`` that is out of range or inconsistent."""
    _int("version", card.version, 1, 1_000_000)
    for name in ("source", "credit", "license"):
        if not isinstance(getattr(card, name), str):
            _fail(name, "a string", getattr(card, name))
    if not isinstance(card.training, dict):
        _fail("training", "an object", card.training)
    check_model(card.model)
    check_schedule(card.schedule)
    names = card.class_names
    if not isinstance(names, tuple) or not all(isinstance(n, str) and n.strip() for n in names):
        _fail("class_names", "a list of non-empty strings", names)
    if names and len(names) != card.num_classes:
        _fail("class_names", f"{card.num_classes} names (the model's class count)", list(names))
    if len(set(names)) != len(names):
        _fail("class_names", "unique", list(names))
    _choice("prediction", card.prediction, ("epsilon", "v_prediction", "sample"))
    vr = card.value_range
    if not (isinstance(vr, tuple) and len(vr) == 2):
        _fail("value_range", "[low, high]", vr)
    _float("value_range[0]", vr[0], -1e6, 1e6)
    _float("value_range[1]", vr[1], -1e6, 1e6)
    if not vr[1] > vr[0]:
        _fail("value_range", "[low, high] with high > low", list(vr))
    if card.clip not in (None, "auto"):
        _float("clip", card.clip, 0.0, 1e6, open_lo=True)
    _check_sampling(card.sampling)


def _check_sampling(sampling: Any) -> None:
    if not isinstance(sampling, dict):
        _fail("sampling", "an object", sampling)
    if "sampler" in sampling:
        _choice("sampling.sampler", sampling["sampler"], _sampler_choices())
    if "steps" in sampling:
        _int("sampling.steps", sampling["steps"], 1, MAX_TIMESTEPS)
    if "eta" in sampling:
        _float("sampling.eta", sampling["eta"], 0.0, 100.0)
    if "guidance" in sampling:
        _float("sampling.guidance", sampling["guidance"], 0.0, 100.0)
    if "variance" in sampling:
        _choice("sampling.variance", sampling["variance"], _option_choices("variance"))


def _option_choices(name: str) -> tuple[str, ...]:
    """The choices of a sampler option (e.g. DDPM's variance), read from the registry."""
    from difftool.runtime.samplers import SAMPLERS

    return next(o.choices for spec in SAMPLERS.values() for o in spec.options if o.name == name)


def _sampler_choices() -> tuple[str, ...]:
    """Every registered sampler name and alias (the registry is the one list)."""
    from difftool.runtime.samplers import choices

    return choices()
