"""``difftool generate``, ``sample`` and ``demo``: user choices -> one request -> PNG (with its record)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Annotated

import typer

from difftool import cli_options as opt
from difftool.errors import DifftoolError


@dataclass(frozen=True)
class GenerateArgs:
    """What ``generate``/``sample`` were asked for (None: the model's default)."""

    path: Path | None
    backend: str = "auto"
    threads: int | None = None
    class_name: str | None = None
    mix: str | None = None
    n: int = 16
    nrow: int = 0
    sampler: str | None = None
    steps: int | None = None
    eta: float | None = None
    variance: str | None = None
    guidance: float | None = None
    seed: int = 0
    spacing: str | None = None
    out: Path = Path("out.png")
    gif: Path | None = None
    gif_frames: str = "x0"
    scale: int = 4
    json_out: bool = False
    from_png: Path | None = None
    palette: str | None = None

    def check(self) -> GenerateArgs:
        """Usage errors (exit 2) for flags that can be judged without the model."""
        opt.check_sampler(self.sampler)
        opt.check_choice(self.spacing, ("trailing", "leading", "linspace"), "--spacing")
        opt.check_choice(self.gif_frames, ("x", "x0"), "--gif-frames")
        opt.check_choice(self.variance, opt._DDPM_VARIANCES, "--variance")
        opt.check_finite(self.guidance, "--guidance", minimum=0.0)
        opt.check_finite(self.eta, "--eta", minimum=0.0)
        opt.check_backend(self.backend)
        return self


def run_generate(args: GenerateArgs) -> None:
    from difftool import generate as gen_mod
    from difftool.runtime.palette import palette_spec, resolve_palette
    from difftool.runtime.record import GenerationRecord

    console = opt.stderr_console()
    request, nrow, scale, gap, args = _request(args)
    pipe = opt.load_pipeline(args.path, args.backend, args.threads)
    if request is None:
        request = gen_mod.build_request(pipe, n=args.n, class_name=args.class_name, mix=args.mix,
                                        sampler=args.sampler, steps=args.steps, eta=args.eta,
                                        guidance=args.guidance, seed=args.seed, spacing=args.spacing,
                                        variance=args.variance)
    request = replace(request, palette=resolve_palette(args.palette, pipe.card))
    nrow = nrow or min(request.n, 8)
    with step_progress(console, request.steps) as advance:
        result = gen_mod.run(pipe, request, nrow=nrow, frames=args.gif_frames if args.gif else None, progress=advance)
    record = GenerationRecord.from_request(request, card=pipe.card, model=args.path or opt.bundled_model(),
                                           nrow=nrow, scale=scale, gap=gap,
                                           palette=palette_spec(request.palette))
    written = gen_mod.write_outputs(result, nrow=nrow, png=args.out, gif=args.gif, scale=scale,
                                    text=record.png_text(), gap=gap)
    _report(console, args, pipe, request, result, written)


def _request(args: GenerateArgs):
    """(request, nrow, scale, gap, args) from ``--from-png`` (the recorded request), else (None, ...)."""
    if args.from_png is None:
        return None, args.nrow, args.scale, 1, args
    from difftool.runtime.record import read_png

    record = read_png(args.from_png)
    if args.palette is None:
        args = replace(args, palette=record.palette or "none")
    if args.path is None and record.model and record.model != opt.bundled_model().name:
        beside = args.from_png.parent / record.model
        if not beside.is_file():
            raise DifftoolError(f"{args.from_png} was made with {record.model}; pass that model file as the "
                                "first argument")
        args = replace(args, path=beside)
    return record.to_request(), args.nrow or record.nrow, record.scale, record.gap, args


def _report(console, args: GenerateArgs, pipe, request, result, written) -> None:
    from difftool import generate as gen_mod

    if args.json_out:
        import json

        summary = {"artifact": str(args.path or "bundled"), "backend": pipe.denoiser.name, "n": request.n,
                   "sampler": request.sampler, "steps": request.steps, "eta": request.eta,
                   "variance": request.variance, "guidance": request.guidance, "seed": request.seed,
                   "seconds": round(result.seconds, 4), "unet_steps_per_s": round(result.steps_per_s, 2),
                   "outputs": [str(p) for p in written]}
        print(json.dumps(summary))
        return
    console.print(f"[green]wrote[/] {', '.join(map(str, written))}  ({gen_mod.describe(request)}; "
                  f"{result.seconds:.2f} s, {result.steps_per_s:.1f} U-Net steps/s, {pipe.denoiser.name})")


class step_progress:
    """A transient Rich progress bar on stderr, advanced once per sampler step."""

    def __init__(self, console, total: int):
        self.console, self.total = console, total

    def __enter__(self):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        self.bar = Progress(TextColumn("sampling"), BarColumn(), MofNCompleteColumn(), console=self.console,
                            transient=True)
        task = self.bar.add_task("s", total=self.total)
        self.bar.start()
        return lambda step: self.bar.update(task, completed=step.index + 1)

    def __exit__(self, *exc):
        self.bar.stop()


def register(app: typer.Typer) -> None:
    """Add generate, sample and demo to ``app``."""
    app.command()(generate)
    app.command()(sample)
    app.command()(demo)


def generate(
    artifact: Annotated[Path | None, typer.Argument(help="ONNX artifact, engine, checkpoint or diffusers folder (default: bundled)")] = None,
    class_name: opt.Class = None, mix: opt.Mix = None, n: opt.N = 16, nrow: Annotated[int, typer.Option(min=0)] = 0,
    sampler: opt.Sampler = None, steps: opt.Steps = None, eta: opt.Eta = None, variance: opt.Variance = None,
    guidance: opt.Guidance = None, seed: opt.Seed = 0, spacing: opt.Spacing = None, out: opt.Out = Path("out.png"),
    gif: opt.Gif = None, gif_frames: opt.GifFrames = "x0", scale: opt.Scale = 4, backend: opt.Backend = "auto",
    threads: opt.Threads = None, json_out: opt.Json = False,
    from_png: Annotated[Path | None, typer.Option("--from-png", help="regenerate the PNG difftool saved here "
                                                  "(its recorded settings; the model argument wins)")] = None,
    palette: opt.PaletteOpt = None,
):
    """Generate a PNG grid (and optional GIF) from an exported artifact or a checkpoint."""
    run_generate(GenerateArgs(artifact, backend, threads, class_name, mix, n, nrow, sampler, steps, eta, variance,
                              guidance, seed, spacing, out, gif, gif_frames, scale, json_out, from_png,
                              palette).check())


def sample(
    checkpoint: Annotated[Path, typer.Argument(help="checkpoint: difftool .safetensors, course or explainingai .pth, diffusers folder")],
    class_name: opt.Class = None, mix: opt.Mix = None, n: opt.N = 16, nrow: Annotated[int, typer.Option(min=0)] = 0,
    sampler: opt.Sampler = None, steps: opt.Steps = None, eta: opt.Eta = None, variance: opt.Variance = None,
    guidance: opt.Guidance = None, seed: opt.Seed = 0, spacing: opt.Spacing = None,
    out: opt.Out = Path("samples.png"), gif: opt.Gif = None, gif_frames: opt.GifFrames = "x0",
    scale: opt.Scale = 4, device: Annotated[str, typer.Option(help="cpu | cuda")] = "cpu",
    threads: opt.Threads = None, json_out: opt.Json = False, palette: opt.PaletteOpt = None,
):
    """Sample from a checkpoint with the PyTorch backend (PNG grid, optional GIF)."""
    opt.check_choice(device, ("cpu", "cuda"), "--device")
    run_generate(GenerateArgs(checkpoint, f"torch-{device}", threads, class_name, mix, n, nrow, sampler, steps, eta,
                              variance, guidance, seed, spacing, out, gif, gif_frames, scale, json_out,
                              palette=palette).check())


def demo(
    per_class: Annotated[int, typer.Option(min=1, max=16, help="sprites per row")] = 8,
    sampler: opt.Sampler = None, steps: opt.Steps = None, eta: opt.Eta = None, variance: opt.Variance = None,
    guidance: opt.Guidance = None, seed: opt.Seed = 0, out: opt.Out = Path("demo.png"), scale: opt.Scale = 4,
    threads: opt.Threads = None,
    mix: Annotated[str, typer.Option(help="context of the extra mixed row")] = "hero=0.5,creature=0.5",
    palette: opt.PaletteOpt = None,
):
    """Generate one row of sprites per class plus a mixed-context row with the bundled model (no torch)."""
    import numpy as np

    from difftool import generate as gen_mod
    from difftool.runtime.palette import palette_spec, resolve_palette
    from difftool.runtime.record import GenerationRecord

    opt.check_sampler(sampler)
    opt.check_finite(guidance, "--guidance", minimum=0.0)
    opt.check_choice(variance, opt._DDPM_VARIANCES, "--variance")
    console = opt.stderr_console()
    pipe = opt.load_pipeline(None, "auto", threads)
    ctx, _ = pipe.contexts_per_class(per_class)
    ctx = np.concatenate([ctx, pipe.context_from_spec(mix, per_class)])
    request = gen_mod.request_for(pipe, ctx, conditioned=True, sampler=sampler, steps=steps, eta=eta,
                                  guidance=guidance, seed=seed, variance=variance)
    request = replace(request, palette=resolve_palette(palette, pipe.card))
    with step_progress(console, request.steps) as advance:
        result = gen_mod.run(pipe, request, nrow=per_class, progress=advance)
    _print_rows(pipe.card, result.images, per_class, [*pipe.card.class_names, f"mix {mix}"])
    record = GenerationRecord.from_request(request, card=pipe.card, model=opt.bundled_model(), nrow=per_class,
                                           scale=scale, palette=palette_spec(request.palette))
    gen_mod.write_outputs(result, nrow=per_class, png=out, gif=None, scale=scale, text=record.png_text())
    _demo_footer(console, pipe, request, result, out, len(ctx))


def _print_rows(card, images, per_class: int, labels: list[str]) -> None:
    from difftool.render import halfblock_text
    from difftool.runtime.images import grid

    out_console = opt.stdout_console()
    fit = max(1, (out_console.width - 1) // (card.image_size + 1))  # sprites per terminal line
    for row, label in enumerate(labels):
        sprites = images[row * per_class:(row + 1) * per_class]
        out_console.print(f"[bold]{label}[/]")
        out_console.print(halfblock_text(grid(sprites, nrow=min(per_class, fit)), scale=1))


def _demo_footer(console, pipe, request, result, out: Path, count: int) -> None:
    from difftool import generate as gen_mod
    from difftool.render import truecolor_hint

    hint = truecolor_hint()
    if hint:
        console.print(f"[yellow]note:[/] {hint}")
    console.print(f"[green]wrote[/] {out}: {count} sprites, {gen_mod.describe(request)}, "
                  f"{result.seconds:.2f} s ({result.steps_per_s:.1f} U-Net steps/s, {pipe.denoiser.name})")
    if pipe.card.credit:
        console.print(f"[dim]{pipe.card.credit}[/]")
