"""Validation of ``POST /v1/generate`` bodies, with one error per request naming the field.

The body is a JSON object; every field is optional (see :data:`FIELDS`). Sampler names and sampler options
(``eta``, ``variance``, ...) come from the sampler registry, classes from the model card, limits from
:class:`~difftool.service.config.ServeConfig`. :func:`to_sample_request` is the one place that turns the
validated fields into a :class:`~difftool.runtime.pipeline.SampleRequest` (through the same front end as
``difftool generate``, so the same settings give the same pixels).
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from typing import Any

from difftool.errors import DifftoolError
from difftool.runtime import samplers
from difftool.runtime.palette import palette_spec, resolve_palette
from difftool.runtime.pipeline import Pipeline, SampleRequest
from difftool.runtime.timesteps import SPACINGS
from difftool.service.config import ServeConfig

FORMATS = ("png", "json")
MAX_SEED = 2**63 - 1
MAX_SCALE = 16

# name -> (type, default, help): the request body, as /docs and the README show it.
FIELDS: dict[str, tuple[str, str, str]] = {
    "class": ("string | integer", "none", "class name or index, e.g. \"hero\" (omit class and mix: unconditional)"),
    "mix": ("string | object", "none", "mixed context: \"hero=0.5,food=0.5\" or {\"hero\": 0.5, \"food\": 0.5}"),
    "n": ("integer", "16", "number of sprites (1..max_n)"),
    "seed": ("integer", "0", "seed of sprite 0; sprite i uses seed + i (as difftool generate)"),
    "sampler": ("string", "the model's", "a registered sampler name or alias"),
    "steps": ("integer", "the model's", "sampling steps (1..max_steps); ddpm: every timestep"),
    "guidance": ("number", "the model's with a class", "classifier-free guidance scale, finite and >= 0"),
    "spacing": ("string", "the sampler's", "timestep spacing: " + " | ".join(SPACINGS)),
    "palette": ("string | array", "the model's", "auto (the palette the model learned from its training data) | "
                "none (raw output) | a list of \"#rrggbb\" colours; x0 is projected onto it in the last steps"),
    "format": ("string", "png", "png: the PNG grid; json: base64 PNGs (grid and each sprite) and the settings"),
    "nrow": ("integer", "min(n, 8)", "sprites per grid row"),
    "scale": ("integer", "4", f"pixel upscaling of the PNGs (1..{MAX_SCALE})"),
}
STREAM_FIELDS: dict[str, tuple[str, str, str]] = {
    "preview_every": ("integer", "0", "stream only: attach an x0 preview grid (PNG, scale 1) every k steps; 0: none"),
}


class FieldError(Exception):
    """A bad request: ``field`` (None: the body as a whole), a message, the HTTP status."""

    def __init__(self, field: str | None, message: str, status: int = 422):
        super().__init__(message)
        self.field, self.message, self.status = field, message, status

    def body(self) -> dict[str, Any]:
        return {"error": {"field": self.field, "message": self.message}}


@dataclass(frozen=True)
class GenerateParams:
    """A validated request body (None: the model's recommended setting)."""

    class_name: str | None = None
    mix: str | None = None
    n: int = 16
    seed: int = 0
    sampler: str | None = None
    steps: int | None = None
    guidance: float | None = None
    spacing: str | None = None
    format: str = "png"
    nrow: int = 8
    scale: int = 4
    preview_every: int = 0
    palette: str | None = None  # a --palette value: auto | none | "#rrggbb,..." (None: the model's)
    options: dict[str, Any] = field(default_factory=dict)  # sampler options given (eta, variance, ...)


# -- the body --------------------------------------------------------------------------------------------


def parse_body(body: bytes, config: ServeConfig) -> dict[str, Any]:
    """The JSON object in ``body``; FieldError 413 when too large, 400 when not a JSON object."""
    if len(body) > config.max_body_bytes:
        raise FieldError(None, f"the body is {len(body)} bytes; the limit is {config.max_body_bytes}", 413)
    try:
        data = json.loads(body.decode("utf-8") if body else "{}")
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FieldError(None, f"malformed JSON: {exc}", 400) from None
    if not isinstance(data, dict):
        raise FieldError(None, f"the body must be a JSON object, got {type(data).__name__}", 400)
    return data


def parse_generate(data: dict[str, Any], pipe: Pipeline, config: ServeConfig, *, stream: bool = False
                   ) -> GenerateParams:
    """Validate a body against the model and the limits; FieldError naming the first bad field."""
    accepted = (*FIELDS, *(STREAM_FIELDS if stream else ()), *samplers.option_names())
    for name in data:
        if name not in accepted:
            raise FieldError(name, f"unknown field; accepted: {', '.join(accepted)}")
    n = _int(data, "n", 16, 1, config.max_n)
    class_name, mix = _context(data, pipe)
    sampler = _sampler(data, pipe)
    return GenerateParams(
        class_name=class_name, mix=mix, n=n, seed=_int(data, "seed", 0, 0, MAX_SEED - n + 1, over=422),
        sampler=sampler, steps=_steps(data, pipe, config), guidance=_guidance(data, pipe),
        spacing=_choice(data, "spacing", SPACINGS), format=_format(data, stream),
        nrow=_int(data, "nrow", min(n, 8), 1, n, over=422), scale=_int(data, "scale", 4, 1, MAX_SCALE, over=422),
        preview_every=_int(data, "preview_every", 0, 0, config.max_steps, over=422) if stream else 0,
        palette=_palette(data, pipe),
        options=_options(data, sampler or str(pipe.card.recommended("sampler"))),
    )


# -- the adapter onto the sampling front end --------------------------------------------------------------


def to_sample_request(pipe: Pipeline, params: GenerateParams) -> SampleRequest:
    """The SampleRequest ``difftool generate`` builds for the same settings (its ``build_request``)."""
    from difftool.generate import build_request

    options = dict(params.options)
    try:
        request = build_request(pipe, n=params.n, class_name=params.class_name, mix=params.mix,
                                sampler=params.sampler, steps=params.steps, eta=options.pop("eta", None),
                                guidance=params.guidance, seed=params.seed, spacing=params.spacing,
                                variance=options.pop("variance", None))
    except DifftoolError as exc:
        raise FieldError(None, str(exc)) from None
    options["palette"] = _load_palette(params.palette, pipe)
    return dataclasses.replace(request, **options)


def check_request(request: SampleRequest, pipe: Pipeline, config: ServeConfig) -> None:
    """Limits that only the resolved request shows (a default step count above ``max_steps``)."""
    steps = request.steps if request.steps is not None else pipe.schedule.t_max - pipe.schedule.t_min + 1
    if steps > config.max_steps:
        raise FieldError("steps", f"{request.sampler} would run {steps} steps; this server allows at most "
                         f"{config.max_steps} (give a smaller steps)", 413)


def settings(request: SampleRequest, params: GenerateParams) -> dict[str, Any]:
    """The settings a result was sampled with (every default resolved)."""
    spec = samplers.get_sampler(request.sampler)
    out: dict[str, Any] = {"class": params.class_name, "mix": params.mix, "n": request.n, "seed": request.seed,
                           "sampler": spec.name, "steps": request.steps}
    out.update({name: getattr(request, name) for name in spec.option_names()})
    out.update({"guidance": request.guidance, "spacing": request.spacing or spec.default_spacing,
                "palette": palette_spec(request.palette) or "none", "nrow": params.nrow, "scale": params.scale})
    return out


# -- fields ---------------------------------------------------------------------------------------------


def _int(data: dict[str, Any], name: str, default: int, lo: int, hi: int, over: int = 413) -> int:
    """An integer field in [lo, hi]; above hi: status ``over`` (413: a limit of this server)."""
    value = data.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise FieldError(name, f"must be an integer, got {json.dumps(value)}")
    if value < lo:
        raise FieldError(name, f"must be at least {lo}, got {value}")
    if value > hi:
        raise FieldError(name, f"must be at most {hi}, got {value}", over)
    return value


def _number(data: dict[str, Any], name: str) -> float | None:
    value = data.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise FieldError(name, f"must be a number, got {json.dumps(value)}")
    if not math.isfinite(value):
        raise FieldError(name, f"must be finite, got {value}")
    return float(value)


def _choice(data: dict[str, Any], name: str, choices: tuple[str, ...]) -> str | None:
    value = data.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or value not in choices:
        raise FieldError(name, f"must be one of: {', '.join(choices)}; got {json.dumps(value)}")
    return value


def _format(data: dict[str, Any], stream: bool) -> str:
    value = _choice(data, "format", FORMATS) or ("json" if stream else "png")
    if stream and value != "json":
        raise FieldError("format", "the stream's result event is always JSON; drop format or give \"json\"")
    return value


def _steps(data: dict[str, Any], pipe: Pipeline, config: ServeConfig) -> int | None:
    timesteps = pipe.schedule.t_max - pipe.schedule.t_min + 1
    steps = _int(data, "steps", 0, 1, config.max_steps)
    if steps > timesteps:
        raise FieldError("steps", f"must be at most {timesteps} (this model's schedule has {timesteps} timesteps)")
    return steps or None


def _guidance(data: dict[str, Any], pipe: Pipeline) -> float | None:
    value = _number(data, "guidance")
    if value is None:
        return None
    if value < 0:
        raise FieldError("guidance", f"must be >= 0, got {value:g}")
    if value != 1.0 and not pipe.card.supports_guidance:
        raise FieldError("guidance", "this model is unconditional: guidance needs a class-conditional model")
    return value


def _sampler(data: dict[str, Any], pipe: Pipeline) -> str | None:
    value = data.get("sampler")
    if value is None:
        return None
    if not isinstance(value, str):
        raise FieldError("sampler", f"must be a string, got {json.dumps(value)}")
    try:
        return samplers.canonical_name(value)
    except DifftoolError as exc:
        raise FieldError("sampler", str(exc)) from None


def _options(data: dict[str, Any], sampler: str) -> dict[str, Any]:
    """The sampler options given, checked by the sampler's own option specs."""
    spec = samplers.get_sampler(sampler)
    out: dict[str, Any] = {}
    for name in samplers.option_names():
        if data.get(name) is None:
            continue
        option = next((o for o in spec.options if o.name == name), None)
        if option is None:
            takes = ", ".join(spec.option_names()) or "none"
            raise FieldError(name, f"sampler {spec.name} takes no {name} (its options: {takes})")
        value = _number(data, name) if option.kind in (int, float) else data[name]
        if option.kind is str and not isinstance(value, str):
            raise FieldError(name, f"must be a string, got {json.dumps(value)}")
        try:
            out[name] = option.check(value, spec.name)
        except DifftoolError as exc:
            raise FieldError(name, str(exc)) from None
    return out


def _palette(data: dict[str, Any], pipe: Pipeline) -> str | None:
    """``auto`` | ``none`` | colours (a list or a comma-separated string of ``#rrggbb``), as a --palette value;
    never a file name (a server does not read files a client names)."""
    value = data.get("palette")
    if value is None:
        return None
    if isinstance(value, list) and value and all(isinstance(c, str) for c in value):
        value = ",".join(c.strip() for c in value)
    if not isinstance(value, str):
        raise FieldError("palette", f"must be \"auto\", \"none\" or a list of \"#rrggbb\" colours, got {json.dumps(value)}")
    text = value.strip()
    if text.lower() not in ("auto", "none") and not text.startswith("#"):
        raise FieldError("palette", f"must be \"auto\", \"none\" or \"#rrggbb\" colours, got {json.dumps(value)}")
    _load_palette(text, pipe)  # the card has one (auto), the colours parse
    return text


def _load_palette(spec: str | None, pipe: Pipeline):
    try:
        return resolve_palette(spec, pipe.card)
    except DifftoolError as exc:
        raise FieldError("palette", str(exc)) from None


def _context(data: dict[str, Any], pipe: Pipeline) -> tuple[str | None, str | None]:
    """(class name, canonical mix string), at most one of them."""
    cls, mix = data.get("class"), data.get("mix")
    if cls is not None and mix is not None:
        raise FieldError("mix", "give either class or mix, not both")
    card = pipe.card
    if (cls is not None or mix is not None) and card.num_classes == 0:
        raise FieldError("class" if cls is not None else "mix", "this model is unconditional; it takes no class")
    if cls is not None:
        return _class_name(cls, "class", pipe), None
    if mix is not None:
        return None, _mix(mix, pipe)
    return None, None


def _class_name(value: Any, name: str, pipe: Pipeline) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise FieldError(name, f"must be a class name or index, got {json.dumps(value)}")
    try:
        return pipe.card.class_names[pipe.card.class_index(str(value).strip())]
    except (DifftoolError, IndexError):
        known = ", ".join(pipe.card.class_names) or f"0..{pipe.card.num_classes - 1}"
        raise FieldError(name, f"unknown class {json.dumps(value)}; this model knows: {known}") from None


def _mix(value: Any, pipe: Pipeline) -> str:
    """``"a=0.5,b=0.5"`` or ``{"a": 0.5, "b": 0.5}`` -> the canonical ``"a=0.5,b=0.5"`` (weights exact)."""
    if isinstance(value, str):
        items = [item.partition("=") for item in value.split(",")]
        pairs = [(k.strip(), w.strip() if sep else "1") for k, sep, w in items]
    elif isinstance(value, dict):
        pairs = list(value.items())
    else:
        raise FieldError("mix", f"must be a string like \"hero=0.5,food=0.5\" or an object, got {json.dumps(value)}")
    if not pairs or any(not str(k) for k, _ in pairs):
        raise FieldError("mix", f"empty class name in mix {json.dumps(value)} (use e.g. \"hero=0.5,food=0.5\")")
    out = []
    for key, weight in pairs:
        name = _class_name(key, "mix", pipe)
        out.append(f"{name}={_weight(weight, key)!r}")
    return ",".join(out)


def _weight(weight: Any, key: Any) -> float:
    try:
        value = float(weight) if not isinstance(weight, bool) else math.nan
    except (TypeError, ValueError):
        value = math.nan
    if not math.isfinite(value):
        raise FieldError("mix", f"the weight of {key} must be a finite number, got {json.dumps(weight)}")
    return value
