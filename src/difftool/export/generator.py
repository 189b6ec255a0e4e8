"""``difftool export MODEL --generator``: one self-describing ONNX file mapping noise + context to images.

The sampler settings default to the model card's recommended ones (``card.recommended``); the
coefficient table comes from the sampler registry (the same table the numpy loop applies) and
:mod:`~difftool.export.generator_graph` turns it into an ONNX ``Loop`` around the U-Net graph. The
source is an exported U-Net ``.onnx`` (no torch needed) or a checkpoint (exported first, parity-checked).
The file is written atomically; a short run checks it against the numpy loop before it is moved in place.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from difftool.config import ModelCard
from difftool.errors import DifftoolError
from difftool.runtime.generator import GENERATOR_KEY, GeneratorInfo, contract
from difftool.runtime.samplers import Coefficients, get_sampler
from difftool.runtime.schedules import make_schedule

LAYOUTS = ("default", "batched")
GENERATOR_IO = ("generator: inputs x_T float32[B,C,H,W], context float32[B,K] and guidance float32 scalar "
                "(conditional models), noise float32[N,B,C,H,W] (stochastic samplers: the N steps with "
                "sigma > 0); outputs images uint8[B,H,W,C], sample float32[B,C,H,W]; see difftool_generator")


@dataclass(frozen=True)
class GeneratorSettings:
    """The sampler a generator is built for; None fields resolve to the card's recommended settings."""

    sampler: str | None = None
    steps: int | None = None
    eta: float | None = None
    spacing: str | None = None
    guidance: float | None = None  # the default recorded for clients (guidance itself is an input)
    variance: str | None = None  # DDPM: posterior | beta


def resolve(card: ModelCard, settings: GeneratorSettings) -> tuple[str, int, dict, str, float]:
    """(sampler, steps, options, spacing, default guidance) with the card's defaults filled in by the one
    resolver every front end uses (:func:`difftool.runtime.defaults.resolve`)."""
    from difftool.runtime.defaults import resolve as resolve_defaults

    spec = get_sampler(settings.sampler or str(card.recommended("sampler")))
    eta = settings.eta
    if eta is not None and "eta" not in spec.option_names():
        if eta != 0.0:
            raise DifftoolError(f"{spec.name} takes no eta (only DDIM does)")
        eta = None
    if settings.guidance is not None and not np.isfinite(settings.guidance):
        raise DifftoolError(f"guidance must be a finite number, got {settings.guidance}")
    resolved = resolve_defaults(card, conditioned=card.supports_guidance, sampler=spec.name, steps=settings.steps,
                                guidance=settings.guidance, spacing=settings.spacing, eta=eta,
                                variance=settings.variance)
    return (resolved.sampler, int(resolved.steps), dict(resolved.options),
            resolved.spacing or spec.default_spacing, float(resolved.guidance))


def plan_for(card: ModelCard, settings: GeneratorSettings, layout: str = "default"):
    """(GraphPlan, GeneratorInfo, Coefficients) for ``card`` and ``settings``."""
    from difftool.export.generator_graph import GraphPlan

    if layout not in LAYOUTS:
        raise DifftoolError(f"unknown generator layout {layout!r}; choose one of: {', '.join(LAYOUTS)}")
    if card.prediction != "epsilon":
        raise DifftoolError(f"the generator supports epsilon-prediction models; this one predicts {card.prediction}")
    name, steps, options, spacing, guidance = resolve(card, settings)
    spec = get_sampler(name)
    schedule = make_schedule(card.schedule)
    table: Coefficients = spec.table(schedule, steps, spacing, **options)
    times = np.array([schedule.model_time(int(t)) for t in table.t], dtype=np.float32)
    plan = GraphPlan(table, times, card.channels, card.image_size, card.num_classes, card.clip_limit,
                     tuple(card.value_range), layout)
    inputs, outputs = contract(card, plan.noise_rows, layout)
    info = GeneratorInfo(sampler=name, label=spec.label, steps=len(table), spacing=spacing, options=options,
                         guidance=guidance, clip=card.clip_limit, timesteps=tuple(int(t) for t in table.t),
                         noise_steps=plan.noise_rows, layout=layout, inputs=inputs, outputs=outputs)
    return plan, info, table


def generator_card(card: ModelCard, info: GeneratorInfo) -> ModelCard:
    """The card stored in the generator: its recommended sampling settings are the file's own."""
    sampling = {**card.sampling, "sampler": info.sampler, "steps": info.steps, "eta": info.eta,
                "guidance": info.guidance}
    return dataclasses.replace(card, sampling=sampling)


def build_generator(unet_path: str | Path, settings: GeneratorSettings = GeneratorSettings(),
                    layout: str = "default"):
    """(onnx.ModelProto with metadata, GeneratorInfo) for the U-Net graph at ``unet_path``."""
    import onnx

    from difftool.export.generator_graph import build_generator_graph
    from difftool.export.metadata import get_props, pin_ir_version, set_props
    from difftool.runtime.artifact import onnx_card

    card = onnx_card(Path(unet_path))
    unet = onnx.load(str(unet_path))
    props = get_props(unet)
    if props.get("difftool_generator"):
        raise DifftoolError(f"{unet_path} is already a generator; give the U-Net graph or the checkpoint")
    plan, info, _ = plan_for(card, settings, layout)
    model = build_generator_graph(unet, plan)
    props.update({"difftool": generator_card(card, info).to_json(), GENERATOR_KEY: info.to_json(),
                  "io": GENERATOR_IO if layout == "default" else GENERATOR_IO.replace(
                      "guidance float32 scalar", "guidance float32[B,1]").replace("[N,B,", "[B,N,"),
                  "sampler": info.describe()})
    set_props(model, props)
    pin_ir_version(model)
    onnx.checker.check_model(model)
    return model, info


def export_generator(src: str | Path, out_path: str | Path, settings: GeneratorSettings = GeneratorSettings(),
                     *, layout: str = "default", check: bool = True, image_size: int | None = None) -> dict:
    """Write the generator for ``src`` (a U-Net ``.onnx`` or a checkpoint) to ``out_path`` atomically;
    returns a summary (path, bytes, settings, parity vs the numpy loop when ``check``)."""
    from difftool.export.metadata import save_single_file

    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}.") as tmp_dir:
        unet = _unet_graph(Path(src), Path(tmp_dir), image_size)
        model, info = build_generator(unet, settings, layout)
        staged = save_single_file(model, Path(tmp_dir) / "generator.onnx")
        parity = check_against_loop(staged, unet) if check else None
        os.replace(staged, out)
    return {"path": str(out), "format": "generator", "bytes": out.stat().st_size, "sampler": info.describe(),
            "noise_steps": info.noise_steps, "layout": layout, "inputs": list(info.inputs),
            "parity_max_abs_err": parity}


def _unet_graph(src: Path, tmp: Path, image_size: int | None) -> Path:
    """The U-Net graph for ``src``: itself when it is an ``.onnx``, else exported into ``tmp``."""
    if not src.is_file():
        raise DifftoolError(f"model file not found: {src}")
    if src.suffix.lower() == ".onnx":
        if image_size is not None:
            raise DifftoolError("--image-size applies to checkpoints; this ONNX graph's size is fixed")
        return src
    from difftool.export.onnx_export import export_onnx

    return export_onnx(src, tmp / "unet.onnx", image_size=image_size).path


def check_against_loop(generator: Path, unet: Path, batch: int = 2, seed: int = 0) -> float:
    """Max abs difference between the generator and the numpy loop over ``unet`` (same noise, guided
    when the model is conditional); DifftoolError above 1e-4."""
    from difftool.runtime.generator import GeneratorSession
    from difftool.runtime.loader import load

    gen = GeneratorSession(generator, threads=1, providers=["CPUExecutionProvider"])
    pipe = load(unet, backend="ort-cpu", threads=1)
    err = float(np.abs(generator_vs_loop(gen, pipe, batch, seed)).max())
    if not err <= 1e-4:
        raise DifftoolError(f"the generator differs from the numpy sampling loop by {err:.3g} (max abs); "
                            "not written")
    return err


def generator_vs_loop(gen, pipe, batch: int, seed: int, guidance: float | None = None,
                      context: np.ndarray | None = None) -> np.ndarray:
    """generator sample - numpy loop sample for one request with the generator's settings (B, C, H, W)."""
    from difftool.runtime.generator import GeneratorPipeline
    from difftool.runtime.pipeline import SampleRequest

    info, card = gen.info, gen.card
    if context is None and card.num_classes:
        context = np.eye(card.num_classes, dtype=np.float32)[np.arange(batch) % card.num_classes]
    request = SampleRequest(n=batch, context=context, sampler=info.sampler, steps=info.steps, seed=seed,
                            guidance=info.guidance if guidance is None else guidance, spacing=info.spacing,
                            **info.options)
    return GeneratorPipeline(gen).sample(request) - pipe.sample(request)
