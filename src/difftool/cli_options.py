"""Shared pieces of the command line: consoles, option types and choice checks read from the registries."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated

import typer

from difftool.errors import DifftoolError
from difftool.runtime import kinds
from difftool.runtime import samplers as sampler_registry


def stderr_console():
    from rich.console import Console

    return Console(stderr=True, highlight=False)


def stdout_console():
    from rich.console import Console

    return Console(highlight=False)


def bundled_model() -> Path:
    """The ONNX artifact shipped inside the package."""
    from importlib.resources import files

    path = Path(str(files("difftool") / "assets" / "sprites.onnx"))
    if not path.is_file():
        raise DifftoolError(f"the bundled sprite model is missing from the installation ({path}); "
                            "reinstall difftool or pass an artifact path")
    return path


def load_pipeline(path: Path | None, backend: str, threads: int | None):
    from difftool.runtime.loader import load

    return load(path if path is not None else bundled_model(), backend=backend, threads=threads)


def check_choice(value, choices, flag) -> None:
    if value is not None and value not in choices:
        raise typer.BadParameter(f"must be one of: {', '.join(choices)}", param_hint=flag)


def check_precision(value: str, flag: str = "--precision") -> None:
    """A usage error (exit 2) unless ``value`` is a PyTorch run precision (``runtime.cpu.RUN_PRECISIONS``)."""
    from difftool.runtime.cpu import RUN_PRECISIONS

    check_choice(value, RUN_PRECISIONS, flag)


def check_sampler(value: str | None, flag: str = "--sampler") -> None:
    """A usage error (exit 2) unless ``value`` is a registered sampler or alias."""
    if value is not None and value.strip().lower() not in sampler_registry.choices():
        raise typer.BadParameter(f"must be one of: {', '.join(sampler_registry.choices())}", param_hint=flag)


def check_finite(value: float | None, flag: str, minimum: float | None = None) -> None:
    """A usage error for NaN/inf (and values below ``minimum``)."""
    if value is None:
        return
    if not math.isfinite(value):
        raise typer.BadParameter(f"must be a finite number, got {value}", param_hint=flag)
    if minimum is not None and value < minimum:
        raise typer.BadParameter(f"must be >= {minimum:g}, got {value:g}", param_hint=flag)


def check_backend(value: str, flag: str = "--backend") -> None:
    try:
        kinds.canonical_backend(value)
    except DifftoolError as exc:
        raise typer.BadParameter(str(exc), param_hint=flag) from None


_DDPM_VARIANCES = next(o.choices for o in sampler_registry.get_sampler("ddpm").options if o.name == "variance")

Class = Annotated[str | None, typer.Option("--class", "-c", help="class name or index (e.g. hero)")]
Mix = Annotated[str | None, typer.Option(help="mixed context, e.g. hero=0.5,food=0.5 (the course's mixtures)")]
N = Annotated[int, typer.Option("--n", "-n", min=1, max=1024, help="number of samples")]
Sampler = Annotated[str | None, typer.Option(help=sampler_registry.help_text() + " (default: the model's)")]
MAX_STEPS = 100_000  # beyond any schedule difftool reads; a model's own limit is checked when it is loaded
MAX_GUIDANCE = 100.0
Steps = Annotated[int | None, typer.Option(min=1, max=MAX_STEPS, help="sampling steps (default: the model's, else 25; ddpm: all)")]
Eta = Annotated[float | None, typer.Option(min=0.0, help="DDIM eta (0 = deterministic, 1 = DDPM's noise, > 1 extra noise; default: the model's, else 0)")]
Variance = Annotated[str | None, typer.Option(help=f"DDPM variance: {' | '.join(_DDPM_VARIANCES)} (beta: the "
                                                   "course's sigma = sqrt(beta); default: the model's)")]
Guidance = Annotated[float | None, typer.Option(min=0.0, max=MAX_GUIDANCE, help="classifier-free guidance scale (default with a class: the model's)")]
Seed = Annotated[int, typer.Option(min=0, help="seed of sample 0 (sample i uses seed + i)")]
Spacing = Annotated[str | None, typer.Option(help="timestep spacing: trailing | leading | linspace (default: the sampler's)")]
Out = Annotated[Path, typer.Option("--out", "-o", help="PNG grid to write")]
Gif = Annotated[Path | None, typer.Option(help="also write a GIF of the denoising")]
GifFrames = Annotated[str, typer.Option(help="what the GIF shows per step: x (noisy sample) or x0 (prediction)")]
Scale = Annotated[int, typer.Option(min=1, max=32, help="pixel upscaling of the PNG/GIF")]
Backend = Annotated[str, typer.Option(help=kinds.backend_help())]
Threads = Annotated[int | None, typer.Option(min=1, help="CPU threads for the backend")]
Json = Annotated[bool, typer.Option("--json", help="print a JSON summary on stdout")]
PaletteOpt = Annotated[str | None, typer.Option(
    "--palette", help="auto (the palette the model learned from its training data) | FILE (.gpl, hex list or PNG) | "
                      "none (raw output); projected onto in the last steps (default: the model's)")]
