"""``difftool export``: a checkpoint (or diffusers folder) to a self-describing ONNX artifact, a TensorRT engine,
a Triton repository, a diffusers folder, a one-file generator or a static web page."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from difftool import cli_options as opt


def register(app: typer.Typer) -> None:
    app.command()(export)


def export(
    checkpoint: Annotated[Path, typer.Argument(help="difftool .safetensors, course or explainingai .pth, diffusers "
                                                    "folder (or, for --generator / web, an exported U-Net .onnx)")],
    out: Annotated[Path | None, typer.Option("--out", "-o", help="output path (default: beside the checkpoint)")] = None,
    format: Annotated[str, typer.Option("--format", "-f", help="onnx | tensorrt | triton | web | diffusers (a "
                                                              "DDPMPipeline folder)")] = "onnx",
    precision: Annotated[str, typer.Option(help="fp32 | fp16 | int8")] = "fp32",
    optimize: Annotated[bool, typer.Option(help="also save the ORT-optimised graph")] = False,
    image_size: Annotated[int | None, typer.Option(min=4, help="image size (explainingai checkpoints)")] = None,
    calibration: Annotated[list[Path] | None, typer.Option(help="int8: sprite data folder(s) for calibration")] = None,
    classes: Annotated[str | None, typer.Option(help="class names in index order, e.g. hero,creature,food "
                                                     "(stored in the card; course/explainingai files are unnamed)")] = None,
    generator: Annotated[bool, typer.Option("--generator", help="one file with the whole sampling loop: "
                                            "noise + context -> images (onnx, triton; web always)")] = False,
    sampler: opt.Sampler = None, steps: opt.Steps = None, eta: opt.Eta = None, spacing: opt.Spacing = None,
    guidance: Annotated[float | None, typer.Option(help="generator: default guidance recorded for clients "
                                                        "(guidance is an input; default: the model's)")] = None,
    ort_web: Annotated[Path | None, typer.Option(help="web: onnxruntime-web dist folder (default: $DIFFTOOL_ORT_WEB "
                                                      "or ~/.cache/difftool/ort-web)")] = None,
    json_out: opt.Json = False,
):
    """Export a checkpoint to a self-describing ONNX artifact (or a TensorRT engine / Triton repository / diffusers
    folder), or a one-file generator (--generator) / a static web page (--format web)."""
    opt.check_choice(format, ("onnx", "tensorrt", "triton", "web", "diffusers"), "--format")
    opt.check_choice(precision, ("fp32", "fp16", "int8"), "--precision")
    opt.check_sampler(sampler)
    opt.check_choice(spacing, ("trailing", "leading", "linspace"), "--spacing")
    from difftool.export.driver import run_export

    settings = _generator_settings(generator or format == "web", sampler, steps, eta, spacing, guidance)
    report = run_export(checkpoint, out=out, format=format, precision=precision, optimize=optimize,
                        image_size=image_size, calibration=[str(p) for p in calibration or ()],
                        generator=settings, ort_web=ort_web, classes=classes, console=opt.stderr_console())
    if json_out:
        import json

        print(json.dumps(report, default=str))


def _generator_settings(wanted: bool, sampler, steps, eta, spacing, guidance):
    """GeneratorSettings for --generator / web (None otherwise; sampler flags then are an error)."""
    if not wanted:
        if any(v is not None for v in (sampler, steps, eta, spacing, guidance)):
            raise typer.BadParameter("sampler settings apply to --generator and --format web", param_hint="--sampler")
        return None
    from difftool.export.generator import GeneratorSettings

    return GeneratorSettings(sampler=sampler, steps=steps, eta=eta, spacing=spacing, guidance=guidance)


