"""Typed, torch-free configuration shared by checkpoints, exported artifacts and the runtime.

A difftool model is fully described by one :class:`ModelCard`: the architecture config, the noise
schedule, the class names and the data conventions. The card is stored as JSON in the safetensors
header of a checkpoint and in the ``metadata_props`` of an exported ONNX graph, so every consumer
(export, runtime, TUI, bench) rebuilds what it needs from the file alone.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

from difftool.errors import DifftoolError

CARD_KEY = "difftool"  # metadata key (safetensors header / ONNX metadata_props)
CARD_VERSION = 1


def _from_dict(cls, data: dict[str, Any]):
    """Build dataclass ``cls`` from ``data``, ignoring unknown keys and turning lists into tuples."""
    kwargs = {}
    for f in fields(cls):
        if f.name in data:
            value = data[f.name]
            if isinstance(value, list):
                value = tuple(value)
            kwargs[f.name] = value
    return cls(**kwargs)


@dataclass(frozen=True)
class ScheduleConfig:
    """A discrete DDPM noise schedule.

    ``convention``:
      * ``"standard"`` (explainingai, diffusers, difftool): ``num_timesteps`` entries, timesteps
        ``0..T-1``, ``alpha_bar[0] = 1 - beta_0``.
      * ``"course"`` (DeepLearning.AI ContextUnet): ``T + 1`` entries, timesteps ``1..T``, and the
        slot 0 overwritten with ``alpha_bar = 1`` (the clean image).
    ``kind``: ``"linear"`` betas (diffusers ``linear``), ``"scaled_linear"`` (betas linear in sqrt(beta),
    diffusers ``scaled_linear``) or ``"cosine"`` (Nichol & Dhariwal, diffusers ``squaredcos_cap_v2``: the same
    formula, s = 0.008, betas capped at 0.999; ``beta_start``/``beta_end`` unused).
    ``time_input`` says what the network is fed: ``"index"`` the integer timestep (as float32),
    ``"fraction"`` the timestep divided by ``num_timesteps``.
    """

    kind: Literal["linear", "scaled_linear", "cosine"] = "linear"
    num_timesteps: int = 1000
    beta_start: float = 1e-4
    beta_end: float = 0.02
    convention: Literal["standard", "course"] = "standard"
    time_input: Literal["index", "fraction"] = "index"

    @classmethod
    def course(cls) -> ScheduleConfig:
        return cls(kind="linear", num_timesteps=500, beta_start=1e-4, beta_end=0.02,
                   convention="course", time_input="fraction")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ScheduleConfig:
        return _from_dict(cls, data)


@dataclass(frozen=True)
class ContextUnetConfig:
    """The DeepLearning.AI course ContextUnet (values as the course notebooks build it)."""

    arch: Literal["context_unet"] = "context_unet"
    in_channels: int = 3
    n_feat: int = 64
    n_cfeat: int = 5
    height: int = 16

    @property
    def image_size(self) -> int:
        return self.height

    @property
    def channels(self) -> int:
        return self.in_channels

    @property
    def num_classes(self) -> int:
        return self.n_cfeat

    null_context = True  # zeros context = unconditional (the course's context mask)


@dataclass(frozen=True)
class UnetConfig:
    """The explainingai-style U-Net (sinusoidal time, ResNet blocks, self-attention).

    Defaults are the explainingai ``config/default.yaml`` values so its checkpoints load as they are.
    ``attention`` switches self-attention per down level (mirrored on the way up; mid blocks always
    attend). ``num_classes > 0`` adds a learned class embedding plus a null embedding: the network
    takes a real context vector ``c`` (B, num_classes) and adds ``c @ E + (1 - sum(c)) * null`` to the
    time embedding, so one-hot = that class, zeros = unconditional, fractions = a mix.
    """

    arch: Literal["unet"] = "unet"
    im_channels: int = 1
    im_size: int = 28
    down_channels: tuple[int, ...] = (32, 64, 128, 256)
    mid_channels: tuple[int, ...] = (256, 256, 128)
    down_sample: tuple[bool, ...] = (True, True, False)
    attention: tuple[bool, ...] = (True, True, True)
    time_emb_dim: int = 128
    num_down_layers: int = 2
    num_mid_layers: int = 2
    num_up_layers: int = 2
    num_heads: int = 4
    out_width: int = 16
    num_classes: int = 0
    context_init_std: float = 0.02  # std of the class embeddings at initialisation (training only)
    # Non-empty: a palette head ("#rrggbb" colours). A second output conv gives one logit per colour and pixel,
    # the clean-image estimate is the softmax mixture of these colours (on the palette wherever the network is
    # sure), and the module still returns eps, converted with the card's schedule (models.palette_head).
    palette: tuple[str, ...] = ()

    @property
    def image_size(self) -> int:
        return self.im_size

    @property
    def channels(self) -> int:
        return self.im_channels

    null_context = True  # zeros context = the learned null embedding


@dataclass(frozen=True, eq=True)
class DiffusersUnetConfig:
    """A diffusers ``UNet2DModel``; ``unet`` holds its ``config.json`` (constructor keywords, JSON form).

    Class conditioning is diffusers' ``num_class_embeds`` (an ``nn.Embedding``, ``class_embed_type`` null);
    difftool feeds it a context vector as ``context @ embedding.weight``. ``null_class``: the last embedding
    row is a reserved "no class" label (models trained by ``difftool train --model diffusers``), so zeros
    context means unconditional and classifier-free guidance works; imported models have no such row.
    """

    arch: Literal["diffusers_unet2d"] = "diffusers_unet2d"
    unet: dict[str, Any] = field(default_factory=dict)
    null_class: bool = False

    def __post_init__(self):  # JSON form (lists, not tuples) so a card round-trips to an equal config
        object.__setattr__(self, "unet", json.loads(json.dumps(dict(self.unet))))

    __hash__ = None  # holds a dict

    @property
    def image_size(self) -> int:
        size = self.unet.get("sample_size")
        return int(size[0] if isinstance(size, list | tuple) else size)

    @property
    def channels(self) -> int:
        return int(self.unet.get("in_channels", 3))

    @property
    def num_class_embeds(self) -> int:
        return int(self.unet.get("num_class_embeds") or 0)

    @property
    def num_classes(self) -> int:
        return max(0, self.num_class_embeds - int(self.null_class))

    @property
    def null_context(self) -> bool:
        """Whether a zeros context means 'unconditional' (needs the reserved null class)."""
        return self.null_class


ModelConfig = ContextUnetConfig | UnetConfig | DiffusersUnetConfig


def model_config_from_dict(data: dict[str, Any]) -> ModelConfig:
    arch = data.get("arch")
    if arch == "context_unet":
        return _from_dict(ContextUnetConfig, data)
    if arch == "unet":
        return _from_dict(UnetConfig, data)
    if arch == "diffusers_unet2d":
        return _from_dict(DiffusersUnetConfig, data)
    raise DifftoolError(f"unknown model architecture {arch!r} (expected 'context_unet', 'unet' or "
                        "'diffusers_unet2d')")


# How imported models sample by default: as their own code does. The course's DDPM loop uses
# sigma = sqrt(beta) over all 500 steps without guidance; explainingai's uses the posterior variance over all
# 1000 steps (its models are unconditional).
ORIGIN_SAMPLING: dict[str, dict[str, Any]] = {
    "course": {"sampler": "ddpm", "variance": "beta", "guidance": 1.0},
    "explainingai": {"sampler": "ddpm", "variance": "posterior", "guidance": 1.0},
}


@dataclass(frozen=True)
class ModelCard:
    """Everything needed to use a trained denoiser, stored beside its weights."""

    model: ModelConfig
    schedule: ScheduleConfig
    class_names: tuple[str, ...] = ()
    # What the network predicts: the noise (epsilon), v = sqrt(ab) eps - sqrt(1 - ab) x0 (v_prediction) or
    # x0 itself (sample); the runtime converts every kind to eps in one place (runtime.guidance).
    prediction: Literal["epsilon", "v_prediction", "sample"] = "epsilon"
    value_range: tuple[float, float] = (-1.0, 1.0)
    source: str = "difftool"  # difftool | course | explainingai | diffusers
    # Clamp the x0 estimate to +-clip at every sampler step (None: never). "auto" (also what cards written
    # before this field existed get) resolves to the value range for difftool-trained models and to None for
    # imported ones, whose own sampling loops do not clamp.
    clip: float | None | Literal["auto"] = "auto"
    credit: str = ""
    license: str = ""
    training: dict[str, Any] = field(default_factory=dict)
    # Recommended sampling defaults of this model (any of sampler, steps, eta, guidance); the CLI, TUI,
    # demo and eval use them wherever the user does not choose. Empty: the generic defaults below.
    sampling: dict[str, Any] = field(default_factory=dict)
    # The colours of the training data ("#rrggbb", most frequent first; empty for cards written before palettes
    # were learned): what `--palette auto` projects samples onto.
    palette: tuple[str, ...] = ()
    version: int = CARD_VERSION

    # -- derived -------------------------------------------------------------------------------
    @property
    def clip_limit(self) -> float | None:
        """The x0 clamp the samplers use by default (``clip`` with "auto" resolved)."""
        if self.clip == "auto":
            return float(max(abs(float(v)) for v in self.value_range)) if self.source == "difftool" else None
        return None if self.clip is None else float(self.clip)

    @property
    def image_size(self) -> int:
        return self.model.image_size

    @property
    def channels(self) -> int:
        return self.model.channels

    @property
    def num_classes(self) -> int:
        return self.model.num_classes

    @property
    def conditional(self) -> bool:
        return self.num_classes > 0

    @property
    def supports_guidance(self) -> bool:
        """Guidance needs an unconditional branch: a model whose zeros context means 'no class' (difftool's
        archs always; a diffusers UNet2DModel only with a reserved null class)."""
        return self.conditional and self.model.null_context

    @property
    def no_guidance_reason(self) -> str:
        """Why classifier-free guidance is unavailable ('' when it is available)."""
        if not self.conditional:
            return "this model is unconditional: classifier-free guidance needs a class-conditional model"
        if not self.model.null_context:
            return ("this class-conditional model has no unconditional (null) class, so classifier-free "
                    "guidance is not possible")
        return ""

    def recommended(self, key: str) -> Any:
        """The model's recommended sampling setting ``key`` (sampler, steps, eta, variance, guidance, spacing,
        palette: "auto"/"none", palette_last: the share of final steps projected onto it), else its origin's
        default (:data:`ORIGIN_SAMPLING`: a course model samples as the course does), else the generic default:
        DDIM, 25 steps, eta 0, guidance 2 for guidable models (1 otherwise), the sampler's own spacing (None)."""
        generic = {"sampler": "ddim", "steps": 25, "eta": 0.0, "variance": "posterior",
                   "guidance": 2.0 if self.supports_guidance else 1.0, "spacing": None, "palette": "none",
                   "palette_last": 0.3}
        if key not in generic:
            raise KeyError(key)
        origin = ORIGIN_SAMPLING.get(self.source, {})
        return self.sampling.get(key, origin.get(key, generic[key]))

    def class_index(self, name: str) -> int:
        if name in self.class_names:
            return self.class_names.index(name)
        if name.isdigit() and int(name) < self.num_classes:
            return int(name)
        known = ", ".join(self.class_names) or f"0..{self.num_classes - 1}"
        raise DifftoolError(f"unknown class {name!r}; this model knows: {known}")

    # -- (de)serialisation -------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelCard:
        try:
            model = model_config_from_dict(dict(data["model"]))
            schedule = ScheduleConfig.from_dict(dict(data["schedule"]))
        except (KeyError, TypeError) as exc:
            raise DifftoolError(f"difftool metadata is incomplete or malformed ({exc})") from None
        rest = {k: v for k, v in data.items() if k not in ("model", "schedule")}
        card = _from_dict(cls, {"model": model, "schedule": schedule, **rest})
        from difftool.cardcheck import check_card

        check_card(card)  # one line naming the first bad field (a header may lie)
        if card.version > CARD_VERSION:
            raise DifftoolError(
                f"this file was written by a newer difftool (format {card.version}); upgrade difftool"
            )
        return card

    @classmethod
    def from_json(cls, text: str) -> ModelCard:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DifftoolError(f"difftool metadata is not valid JSON ({exc})") from None
        return cls.from_dict(data)


DAWNLIKE_CREDIT = (
    "Trained on DawnLike 16x16 Universal Rogue-like tileset v1.81 by DragonDePlatino, palette by "
    "DawnBringer (CC-BY-SA 3.0, https://opengameart.org/content/dawnlike-16x16-universal-rogue-like-tileset-v181); "
    "and Kenney Tiny Dungeon (CC0 1.0, https://kenney.nl)."
)
DAWNLIKE_LICENSE = "CC-BY-SA-3.0"
