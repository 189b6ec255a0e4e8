"""difftool command line (Typer). Every command imports its heavy dependencies lazily.

Exit codes: 0 ok; 1 user/runtime error (one red line on stderr, no traceback); 2 usage error
(Typer); 130 interrupted. Progress and errors go to stderr; ``--json`` results go to stdout.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from difftool.errors import DifftoolError

app = typer.Typer(
    name="difftool",
    help="Train small diffusion models, export them to ONNX/TensorRT, sample fast without torch.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)


def _stderr():
    from rich.console import Console

    return Console(stderr=True, highlight=False)


# -- train -------------------------------------------------------------------------------------------


@app.command()
def train(
    dataset: Annotated[str, typer.Option(help="sprites | mnist | images | digits")] = "sprites",
    data: Annotated[list[Path] | None, typer.Option(help="dataset folder/file (repeat to combine sprite folders)")] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="run folder (checkpoints, samples, log)")] = Path("runs/run"),
    model: Annotated[str, typer.Option(help="model preset: sprite | tiny | mnist | course (default: per dataset)")] = "",
    epochs: Annotated[int, typer.Option(min=1)] = 100,
    max_steps: Annotated[int, typer.Option(min=0, help="stop after this many steps (0: epochs decide)")] = 0,
    stop_after: Annotated[int, typer.Option(min=0, help="stop at this step (resume later with the same command)")] = 0,
    batch_size: Annotated[int, typer.Option(min=1)] = 64,
    lr: Annotated[float, typer.Option(min=0.0)] = 1e-3,
    schedule: Annotated[str, typer.Option(help="cosine | linear")] = "cosine",
    timesteps: Annotated[int, typer.Option(min=2)] = 1000,
    ema_decay: Annotated[float, typer.Option(min=0.0, max=1.0)] = 0.999,
    cond_drop: Annotated[float, typer.Option(min=0.0, max=1.0, help="context dropout (for guidance)")] = 0.1,
    hflip: Annotated[bool, typer.Option(help="random horizontal flips")] = True,
    class_balance: Annotated[float, typer.Option(
        min=0.0, max=1.0, help="draw tiles with weight count(class)^-x: 0 as in the data, 1 every class equally")] = 0.0,
    seed: Annotated[int, typer.Option()] = 0,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda | cuda:N")] = "auto",
    threads: Annotated[int, typer.Option(min=0, help="torch CPU threads (0: default)")] = 0,
    sample_every: Annotated[int, typer.Option(min=0)] = 1000,
    save_every: Annotated[int, typer.Option(min=1)] = 500,
    resume: Annotated[bool, typer.Option(help="continue from OUT/train_state.pt if present")] = True,
):
    """Train a diffusion model (resumable; run under [bold]torchrun[/] for multi-process DDP)."""
    from difftool.train.loop import TrainConfig
    from difftool.train.loop import train as run

    if schedule not in ("cosine", "linear"):
        raise typer.BadParameter("must be 'cosine' or 'linear'", param_hint="--schedule")
    cfg = TrainConfig(dataset=dataset, data=tuple(str(p) for p in data or ()), out=str(out), model=model,
                      schedule=schedule, timesteps=timesteps, epochs=epochs, max_steps=max_steps, stop_after=stop_after,
                      batch_size=batch_size, lr=lr, ema_decay=ema_decay, cond_drop=cond_drop, hflip=hflip,
                      class_balance=class_balance,
                      seed=seed, device=device, threads=threads, sample_every=sample_every,
                      save_every=save_every, resume=resume)
    path = run(cfg, console=_stderr())
    _stderr().print(f"[green]saved[/] {path}")


# -- info --------------------------------------------------------------------------------------------


@app.command()
def info(
    path: Annotated[Path, typer.Argument(help="checkpoint (.safetensors/.pth) or artifact (.onnx)")],
    json_out: Annotated[bool, typer.Option("--json", help="print the model card as JSON on stdout")] = False,
):
    """Show a checkpoint's or artifact's config, schedule and classes."""
    from difftool.runtime.artifact import read_card

    card = read_card(path)
    if json_out:
        print(card.to_json())
        return
    from rich.table import Table

    table = Table(title=str(path), show_header=False)
    table.add_row("source", card.source)
    table.add_row("architecture", card.model.arch)
    table.add_row("image", f"{card.channels}x{card.image_size}x{card.image_size}, values {card.value_range}")
    table.add_row("classes", ", ".join(card.class_names) or "(unconditional)")
    table.add_row("guidance", "yes" if card.supports_guidance else "no")
    s = card.schedule
    table.add_row("schedule", f"{s.kind}, T={s.num_timesteps}, beta {s.beta_start}..{s.beta_end}, "
                  f"{s.convention} convention, network time = {s.time_input}")
    table.add_row("prediction", card.prediction)
    table.add_row("model config", ", ".join(f"{k}={v}" for k, v in card.model.__dict__.items()))
    table.add_row("sampling", ", ".join(f"{k}={card.recommended(k)}" for k in ("sampler", "steps", "eta", "guidance"))
                  + ("" if card.sampling else " (generic defaults)"))
    if card.training:
        table.add_row("training", ", ".join(f"{k}={v}" for k, v in card.training.items()))
    if card.credit:
        table.add_row("credit", card.credit)
    if card.license:
        table.add_row("license", card.license)
    _stderr().print(table)


# -- generate / sample / demo --------------------------------------------------------------------------

SAMPLER_HELP = "ddim | ddpm | dpmpp_2m"
SAMPLER_CHOICES = ("ddim", "ddpm", "dpmpp_2m", "dpm++")  # what --sampler accepts (dpm++: alias)
MAX_STEPS = 100_000  # beyond any schedule difftool reads; a model's own limit is checked when it is loaded
MAX_GUIDANCE = 100.0


def _load_pipeline(path: Path | None, backend: str, threads: int | None):
    from difftool.runtime.loader import load

    return load(path if path is not None else bundled_model(), backend=backend, threads=threads)


def bundled_model() -> Path:
    """The ONNX artifact shipped inside the package."""
    from importlib.resources import files

    path = Path(str(files("difftool") / "assets" / "sprites.onnx"))
    if not path.is_file():
        raise DifftoolError(f"the bundled sprite model is missing from the installation ({path}); "
                            "reinstall difftool or pass an artifact path")
    return path


def _generate(path, backend, threads, class_name, mix, n, nrow, sampler, steps, eta, guidance, seed,
              spacing, out, gif, gif_frames, scale, json_out):
    from difftool import generate as gen_mod

    console = _stderr()
    pipe = _load_pipeline(path, backend, threads)
    request = gen_mod.build_request(pipe, n=n, class_name=class_name, mix=mix, sampler=sampler, steps=steps,
                                    eta=eta, guidance=guidance, seed=seed, spacing=spacing)
    nrow = nrow or min(n, 8)
    with _step_progress(console, request.steps) as advance:
        result = gen_mod.run(pipe, request, nrow=nrow, frames=gif_frames if gif else None, progress=advance)
    written = gen_mod.write_outputs(result, nrow=nrow, png=out, gif=gif, scale=scale)
    summary = {"artifact": str(path or "bundled"), "backend": pipe.denoiser.name, "n": n,
               "sampler": request.sampler, "steps": request.steps, "eta": request.eta, "guidance": request.guidance,
               "seed": seed, "seconds": round(result.seconds, 4),
               "unet_steps_per_s": round(result.steps_per_s, 2), "outputs": [str(p) for p in written]}
    if json_out:
        import json

        print(json.dumps(summary))
    else:
        console.print(f"[green]wrote[/] {', '.join(map(str, written))}  "
                      f"({gen_mod.describe(request)}; {result.seconds:.2f} s, {result.steps_per_s:.1f} U-Net steps/s, "
                      f"{pipe.denoiser.name})")


class _step_progress:
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


_Class = Annotated[str | None, typer.Option("--class", "-c", help="class name or index (e.g. hero)")]
_Mix = Annotated[str | None, typer.Option(help="mixed context, e.g. hero=0.5,food=0.5 (the course's mixtures)")]
_N = Annotated[int, typer.Option("--n", "-n", min=1, max=1024, help="number of samples")]
_Sampler = Annotated[str | None, typer.Option(help=SAMPLER_HELP + " (default: the model's, else ddim)")]
_Steps = Annotated[int | None, typer.Option(min=1, max=MAX_STEPS, help="sampling steps (default: the model's, else 25; ddpm: all)")]
_Eta = Annotated[float | None, typer.Option(min=0.0, help="DDIM eta (0 = deterministic; default: the model's, else 0)")]
_Guidance = Annotated[float | None, typer.Option(min=0.0, max=MAX_GUIDANCE, help="classifier-free guidance scale (default with a class: the model's, else 2)")]
_Seed = Annotated[int, typer.Option(min=0, help="seed of sample 0 (sample i uses seed + i)")]
_Spacing = Annotated[str | None, typer.Option(help="timestep spacing: trailing | leading | linspace")]
_Out = Annotated[Path, typer.Option("--out", "-o", help="PNG grid to write")]
_Gif = Annotated[Path | None, typer.Option(help="also write a GIF of the denoising")]
_GifFrames = Annotated[str, typer.Option(help="what the GIF shows per step: x (noisy sample) or x0 (prediction)")]
_Scale = Annotated[int, typer.Option(min=1, max=32, help="pixel upscaling of the PNG/GIF")]
_Backend = Annotated[str, typer.Option(help="auto | ort-cpu | ort-cuda | tensorrt | torch-cpu | torch-cuda")]
_Threads = Annotated[int | None, typer.Option(min=1, help="CPU threads for the backend")]
_Json = Annotated[bool, typer.Option("--json", help="print a JSON summary on stdout")]


def _check_choice(value, choices, flag):
    if value is not None and value not in choices:
        raise typer.BadParameter(f"must be one of: {', '.join(choices)}", param_hint=flag)


def _check_backend(backend: str) -> None:
    from difftool.runtime.backends import BACKENDS

    _check_choice(backend, BACKENDS, "--backend")


@app.command()
def generate(
    artifact: Annotated[Path | None, typer.Argument(help="ONNX artifact, engine or checkpoint (default: bundled)")] = None,
    class_name: _Class = None, mix: _Mix = None, n: _N = 16, nrow: Annotated[int, typer.Option(min=0)] = 0,
    sampler: _Sampler = None, steps: _Steps = None, eta: _Eta = None, guidance: _Guidance = None,
    seed: _Seed = 0, spacing: _Spacing = None, out: _Out = Path("out.png"), gif: _Gif = None,
    gif_frames: _GifFrames = "x0", scale: _Scale = 4, backend: _Backend = "auto", threads: _Threads = None,
    json_out: _Json = False,
):
    """Generate a PNG grid (and optional GIF) from an exported artifact or a checkpoint."""
    _check_choice(sampler, SAMPLER_CHOICES, "--sampler")
    _check_choice(spacing, ("trailing", "leading", "linspace"), "--spacing")
    _check_choice(gif_frames, ("x", "x0"), "--gif-frames")
    _check_backend(backend)
    _generate(artifact, backend, threads, class_name, mix, n, nrow, sampler, steps, eta, guidance, seed,
              spacing, out, gif, gif_frames, scale, json_out)


@app.command()
def sample(
    checkpoint: Annotated[Path, typer.Argument(help="checkpoint: difftool .safetensors, course or explainingai .pth")],
    class_name: _Class = None, mix: _Mix = None, n: _N = 16, nrow: Annotated[int, typer.Option(min=0)] = 0,
    sampler: _Sampler = None, steps: _Steps = None, eta: _Eta = None, guidance: _Guidance = None,
    seed: _Seed = 0, spacing: _Spacing = None, out: _Out = Path("samples.png"), gif: _Gif = None,
    gif_frames: _GifFrames = "x0", scale: _Scale = 4, device: Annotated[str, typer.Option(help="cpu | cuda")] = "cpu",
    threads: _Threads = None, json_out: _Json = False,
):
    """Sample from a checkpoint with the PyTorch backend (PNG grid, optional GIF)."""
    _check_choice(sampler, SAMPLER_CHOICES, "--sampler")
    _check_choice(spacing, ("trailing", "leading", "linspace"), "--spacing")
    _check_choice(gif_frames, ("x", "x0"), "--gif-frames")
    _check_choice(device, ("cpu", "cuda"), "--device")
    _generate(checkpoint, f"torch-{device}", threads, class_name, mix, n, nrow, sampler, steps, eta, guidance,
              seed, spacing, out, gif, gif_frames, scale, json_out)


@app.command()
def demo(
    per_class: Annotated[int, typer.Option(min=1, max=16, help="sprites per row")] = 8,
    sampler: _Sampler = None, steps: _Steps = None, eta: _Eta = None, guidance: _Guidance = None,
    seed: _Seed = 0, out: _Out = Path("demo.png"), scale: _Scale = 4, threads: _Threads = None,
    mix: Annotated[str, typer.Option(help="context of the extra mixed row")] = "hero=0.5,creature=0.5",
):
    """Generate one row of sprites per class plus a mixed-context row with the bundled model (no torch)."""
    import numpy as np

    from difftool import generate as gen_mod
    from difftool.render import halfblock_text, truecolor_hint
    from difftool.runtime.images import grid, save_png

    console = _stderr()
    pipe = _load_pipeline(None, "auto", threads)
    card = pipe.card
    ctx, _ = pipe.contexts_per_class(per_class)
    ctx = np.concatenate([ctx, pipe.context_from_spec(mix, per_class)])
    _check_choice(sampler, SAMPLER_CHOICES, "--sampler")
    request = gen_mod.request_for(pipe, ctx, conditioned=True, sampler=sampler, steps=steps, eta=eta,
                                  guidance=guidance, seed=seed)
    with _step_progress(console, request.steps) as advance:
        result = gen_mod.run(pipe, request, nrow=per_class, progress=advance)
    labels = [*card.class_names, f"mix {mix}"]
    out_console = _stdout_console()
    fit = max(1, (out_console.width - 1) // (card.image_size + 1))  # sprites per terminal line
    for row, label in enumerate(labels):
        sprites = result.images[row * per_class:(row + 1) * per_class]
        out_console.print(f"[bold]{label}[/]")
        out_console.print(halfblock_text(grid(sprites, nrow=min(per_class, fit)), scale=1))
    save_png(out, grid(result.images, nrow=per_class), scale=scale)
    hint = truecolor_hint()
    if hint:
        console.print(f"[yellow]note:[/] {hint}")
    console.print(f"[green]wrote[/] {out}: {len(ctx)} sprites, {gen_mod.describe(request)}, "
                  f"{result.seconds:.2f} s ({result.steps_per_s:.1f} U-Net steps/s, {pipe.denoiser.name})")
    if card.credit:
        console.print(f"[dim]{card.credit}[/]")


def _stdout_console():
    from rich.console import Console

    return Console(highlight=False)


# -- export -----------------------------------------------------------------------------------------


@app.command()
def export(
    checkpoint: Annotated[Path, typer.Argument(help="difftool .safetensors, course or explainingai .pth")],
    out: Annotated[Path | None, typer.Option("--out", "-o", help="output path (default: beside the checkpoint)")] = None,
    format: Annotated[str, typer.Option("--format", "-f", help="onnx | tensorrt | triton")] = "onnx",
    precision: Annotated[str, typer.Option(help="fp32 | fp16 | int8")] = "fp32",
    optimize: Annotated[bool, typer.Option(help="also save the ORT-optimised graph")] = False,
    image_size: Annotated[int | None, typer.Option(min=4, help="image size (explainingai checkpoints)")] = None,
    calibration: Annotated[list[Path] | None, typer.Option(help="int8: sprite data folder(s) for calibration")] = None,
    classes: Annotated[str | None, typer.Option(help="class names in index order, e.g. hero,creature,food "
                                                     "(stored in the card; course/explainingai files are unnamed)")] = None,
    json_out: _Json = False,
):
    """Export a checkpoint to a self-describing ONNX artifact (or a TensorRT engine / Triton repository)."""
    _check_choice(format, ("onnx", "tensorrt", "triton"), "--format")
    _check_choice(precision, ("fp32", "fp16", "int8"), "--precision")
    from difftool.export.driver import run_export

    report = run_export(checkpoint, out=out, format=format, precision=precision, optimize=optimize,
                        image_size=image_size, calibration=[str(p) for p in calibration or ()],
                        classes=classes, console=_stderr())
    if json_out:
        import json

        print(json.dumps(report, default=str))


# -- tui --------------------------------------------------------------------------------------------


@app.command()
def tui(
    artifact: Annotated[Path | None, typer.Argument(help="ONNX artifact or checkpoint (default: bundled)")] = None,
    threads: _Threads = None,
    out_dir: Annotated[Path, typer.Option(help="where PNG/GIF/JSON saves go")] = Path("."),
):
    """Generate sprites interactively in the terminal."""
    from difftool.tui.launch import launch

    launch(artifact if artifact is not None else bundled_model(), threads=threads, out_dir=out_dir)


# -- bench ------------------------------------------------------------------------------------------


def _int_list(text: str, flag: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.replace(" ", "").split(",") if v)
    except ValueError:
        values = ()
    if not values or any(v < 1 for v in values):
        raise typer.BadParameter(f"expected positive integers separated by commas, e.g. 1,16,64; got {text!r}",
                                 param_hint=flag)
    return values


@app.command()
def bench(
    artifact: Annotated[Path | None, typer.Argument(help="ONNX artifact or checkpoint (default: bundled)")] = None,
    sampler: Annotated[str, typer.Option(help=SAMPLER_HELP + " (the timed loop)")] = "ddim",
    steps: Annotated[int, typer.Option(min=1, help="sampling steps of the timed loop")] = 25,
    batch: Annotated[str, typer.Option(help="batch sizes, comma separated")] = "1,16,64",
    backend: Annotated[str, typer.Option(help="backends, comma separated: ort, torch, cuda, trt "
                                              "(or ort-cpu, torch-cpu, ort-cuda, tensorrt, torch-cuda)")] = "ort,torch",
    threads: _Threads = None,
    repeats: Annotated[int, typer.Option(min=1, help="timed repeats of the sampling loop (median, min/max)")] = 5,
    guidance: Annotated[float, typer.Option(min=0.0, max=MAX_GUIDANCE, help="guidance scale of the timed loop (1: one pass per step)")] = 1.0,
    json_out: _Json = False,
):
    """Steps per second per backend and batch, loop overhead, GFLOP/s vs this machine's peak, peak RSS."""
    from difftool.bench.run import canonical_backend

    _check_choice(sampler, SAMPLER_CHOICES, "--sampler")
    batches = _int_list(batch, "--batch")
    backends = tuple(b for b in backend.replace(" ", "").split(",") if b)
    for name in backends:
        try:
            canonical_backend(name)
        except DifftoolError as exc:
            raise typer.BadParameter(str(exc), param_hint="--backend") from None
    if not backends:
        raise typer.BadParameter("give at least one backend", param_hint="--backend")
    from difftool.bench.run import run_bench
    from difftool.bench.table import render_table, to_json

    console = _stderr()
    result = run_bench(artifact if artifact is not None else bundled_model(), sampler=sampler, steps=steps,
                       batches=batches, backends=backends, threads=threads, repeats=repeats,
                       guidance=guidance, console=console)
    console.print(render_table(result))
    if json_out:
        print(to_json(result))


# -- eval -------------------------------------------------------------------------------------------


@app.command("eval")
def eval_(
    artifact: Annotated[Path | None, typer.Argument(help="ONNX artifact or checkpoint (default: bundled)")] = None,
    data: Annotated[list[Path] | None, typer.Option(help="real sprite folder(s) for FID/duplicates "
                                                        "(default: ../shared/data dawnlike + kenney)")] = None,
    per_class: Annotated[int | None, typer.Option(min=2, help="samples per class and configuration")] = None,
    quick: Annotated[bool, typer.Option(help="3 fast configurations, 16 per class")] = False,
    ddpm: Annotated[bool, typer.Option(help="include full-step DDPM (slow: every timestep)")] = True,
    seed: _Seed = 0, backend: _Backend = "auto", threads: _Threads = None, json_out: _Json = False,
):
    """Judge class-conditioned samples: accuracy per class, FID, diversity, duplicates (table + JSON)."""
    from difftool.eval.report import (
        DEFAULT_CONFIGS,
        DEFAULT_PER_CLASS,
        QUICK_CONFIGS,
        QUICK_PER_CLASS,
        evaluate,
        render_table,
    )

    console = _stderr()
    _check_backend(backend)
    pipe = _load_pipeline(artifact, backend, threads)
    if not pipe.card.conditional:
        raise DifftoolError("difftool eval judges class-conditioned samples; this model is unconditional")
    configs = [dict(c) for c in (QUICK_CONFIGS if quick else DEFAULT_CONFIGS)]
    if not ddpm:
        configs = [c for c in configs if c["sampler"] != "ddpm"]
    per_class = per_class or (QUICK_PER_CLASS if quick else DEFAULT_PER_CLASS)
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), TimeRemainingColumn(), console=console,
                  transient=True) as bar:
        task = bar.add_task("eval", total=1.0)
        report = evaluate(pipe, data=[str(p) for p in data] if data else None, configs=configs,
                          per_class=per_class, seed=seed,
                          progress=lambda p: bar.update(task, completed=p.fraction, description=p.label))
    if json_out:
        print(report.to_json())
    else:
        console.print(render_table(report))


def main() -> None:
    """Console entry point: user errors are one red line on stderr and exit code 1, usage errors exit 2
    (see :mod:`difftool.cliexit`)."""
    from difftool.cliexit import main as run_main

    run_main(app)
