"""difftool command line (Typer). Every command imports its heavy dependencies lazily.

Exit codes: 0 ok; 1 user/runtime error (one red line on stderr, no traceback); 2 usage error
(Typer); 130 interrupted. Progress and errors go to stderr; ``--json`` results go to stdout.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from difftool import cli_export, cli_sampling
from difftool import cli_options as opt
from difftool.errors import DifftoolError
from difftool.service.config import DEFAULTS as _SERVE  # standard library only (difftool --help stays fast)
from difftool.service.config import SCHEDULERS

app = typer.Typer(
    name="difftool",
    help="Train small diffusion models, export them to ONNX/TensorRT, sample fast without torch.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)


_stderr = opt.stderr_console
bundled_model = opt.bundled_model


# -- train -------------------------------------------------------------------------------------------


@app.command()
def train(
    dataset: Annotated[str, typer.Option(help="sprites | mnist | images | digits")] = "sprites",
    data: Annotated[list[Path] | None, typer.Option(help="dataset folder/file (repeat to combine sprite folders)")] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="run folder (checkpoints, samples, log)")] = Path("runs/run"),
    model: Annotated[str, typer.Option(help="model preset: sprite | tiny | mnist (explainingai's size, for GPUs) | "
                                            "mnist-cpu | course | diffusers (a diffusers UNet2DModel); default: per "
                                            "dataset and device (mnist: mnist-cpu on a CPU)")] = "",
    unet_config: Annotated[Path | None, typer.Option(help="--model diffusers: a UNet2DModel config JSON (default: "
                                                          "sized like the bundled model)")] = None,
    epochs: Annotated[int, typer.Option(min=1)] = 100,
    max_steps: Annotated[int, typer.Option(min=0, help="stop after this many steps (0: epochs decide)")] = 0,
    stop_after: Annotated[int, typer.Option(min=0, help="stop at this step (resume later with the same command)")] = 0,
    batch_size: Annotated[int, typer.Option(min=1)] = 64,
    lr: Annotated[float, typer.Option(min=0.0)] = 1e-3,
    schedule: Annotated[str, typer.Option(help="cosine | linear")] = "cosine",
    timesteps: Annotated[int, typer.Option(min=2)] = 1000,
    ema_decay: Annotated[float, typer.Option(min=0.0, max=1.0)] = 0.999,
    cond_drop: Annotated[float, typer.Option(min=0.0, max=1.0, help="context dropout (for guidance)")] = 0.1,
    hflip: Annotated[bool | None, typer.Option(help="random horizontal flips (default: per dataset: on for sprites "
                                                    "and images, off for digits and mnist)")] = None,
    class_balance: Annotated[float, typer.Option(
        min=0.0, max=1.0, help="draw tiles with weight count(class)^-x: 0 as in the data, 1 every class equally")] = 0.0,
    seed: Annotated[int, typer.Option()] = 0,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda | cuda:N")] = "auto",
    threads: Annotated[int, typer.Option(min=0, help="torch CPU threads (0: default)")] = 0,
    sample_every: Annotated[int, typer.Option(min=0)] = 1000,
    save_every: Annotated[int, typer.Option(min=1)] = 500,
    resume: Annotated[bool, typer.Option(help="continue from OUT/train_state.pt if present")] = True,
    loss_weight: Annotated[str, typer.Option(help="none | min_snr (eps loss weighted min(SNR, gamma) / SNR)")] = "none",
    snr_gamma: Annotated[float, typer.Option(min=0.0, help="gamma of --loss-weight min_snr")] = 5.0,
    init: Annotated[Path | None, typer.Option(help="fine-tune: start from this .safetensors (same --model) "
                                                    "unless OUT/train_state.pt exists")] = None,
    precision: Annotated[str, typer.Option(help="CPU: fp32 | bf16 (autocast) | auto (bf16 where the CPU has bf16 "
                                                "matrix units); CUDA always uses fp16 autocast")] = "fp32",
    head: Annotated[str, typer.Option(help="eps (the network regresses the noise) | palette (U-Net presets on sprite "
                                           "data: x0 as a mixture of the data's colours, returned as eps; "
                                           "--init may be an eps model of the same preset)")] = "eps",
    train_only: Annotated[str, typer.Option(help="head: only the palette head learns; the --init eps model stays "
                                                 "as it is (default: everything learns)")] = "",
    dropout: Annotated[float, typer.Option(min=0.0, max=0.9, help="U-Net presets: dropout in every ResNet layer "
                                                                  "while training (a regulariser for small data; "
                                                                  "sampling is unaffected)")] = 0.0,
    input_perturbation: Annotated[float, typer.Option(
        min=0.0, max=1.0, help="DDPM-IP: make the network's input with noise + x * extra noise while it regresses "
                               "the noise alone, against exposure bias (0.1 is usual; 0: off)")] = 0.0,
):
    """Train a diffusion model (resumable; run under [bold]torchrun[/] for multi-process DDP)."""
    from difftool.train.loop import HEADS, TRAIN_ONLY, TrainConfig
    from difftool.train.loop import train as run

    if schedule not in ("cosine", "linear"):
        raise typer.BadParameter("must be 'cosine' or 'linear'", param_hint="--schedule")
    if unet_config is not None and model != "diffusers":
        raise typer.BadParameter("needs --model diffusers", param_hint="--unet-config")
    if loss_weight not in ("none", "min_snr"):
        raise typer.BadParameter("must be 'none' or 'min_snr'", param_hint="--loss-weight")
    opt.check_precision(precision)
    if head not in HEADS:
        raise typer.BadParameter(f"must be one of: {', '.join(HEADS)}", param_hint="--head")
    if train_only and train_only not in TRAIN_ONLY:
        raise typer.BadParameter(f"must be one of: {', '.join(TRAIN_ONLY)}", param_hint="--train-only")
    cfg = TrainConfig(dataset=dataset, data=tuple(str(p) for p in data or ()), out=str(out), model=model,
                      unet_config=str(unet_config or ""),
                      schedule=schedule, timesteps=timesteps, epochs=epochs, max_steps=max_steps, stop_after=stop_after,
                      batch_size=batch_size, lr=lr, ema_decay=ema_decay, cond_drop=cond_drop, hflip=hflip,
                      class_balance=class_balance,
                      seed=seed, device=device, threads=threads, sample_every=sample_every,
                      save_every=save_every, resume=resume, loss_weight=loss_weight, snr_gamma=snr_gamma,
                      init=str(init) if init else "", precision=precision, head=head, train_only=train_only,
                      dropout=dropout, input_perturbation=input_perturbation)
    path = run(cfg, console=_stderr())
    _stderr().print(f"[green]saved[/] {path}")


# -- info --------------------------------------------------------------------------------------------


@app.command()
def info(
    path: Annotated[Path, typer.Argument(help="checkpoint (.safetensors/.pth), artifact (.onnx) or diffusers folder")],
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
    table.add_row("prediction", card.prediction + (f", x0 clipped to +-{card.clip_limit:g}" if card.clip_limit else ""))
    head = getattr(card.model, "palette", ())
    table.add_row("output head", f"palette: x0 is a mixture of {len(head)} colours (returned as eps)" if head
                  else "direct")
    if isinstance(card.training, dict) and "diffusers" in card.training:
        d = card.training["diffusers"]
        table.add_row("diffusers", f"{d.get('layout')} layout, U-Net {d.get('unet')}/{d.get('weights')}, "
                      f"{d.get('scheduler', {}).get('_class_name', 'DDPMScheduler')}")
    shown = {k: v for k, v in card.model.__dict__.items() if k != "palette"}
    if card.model.arch == "diffusers_unet2d":  # the UNet2DModel keys that describe its shape
        keys = ("block_out_channels", "down_block_types", "up_block_types", "layers_per_block", "num_class_embeds")
        shown = {**{k: card.model.unet.get(k) for k in keys}, "null_class": card.model.null_class}
    table.add_row("model config", ", ".join(f"{k}={v}" for k, v in shown.items()))
    keys = ("sampler", "steps", "eta", "variance", "guidance", "palette",
            *(k for k in ("spacing",) if k in card.sampling))
    table.add_row("sampling", ", ".join(f"{k}={card.recommended(k)}" for k in keys)
                  + ("" if card.sampling else " (generic defaults)"))
    training = {k: v for k, v in card.training.items() if k != "diffusers"}
    if training:
        table.add_row("training", ", ".join(f"{k}={v}" for k, v in training.items()))
    if card.palette:
        table.add_row("palette", f"{len(card.palette)} colours learned from the training data: "
                      + " ".join(card.palette))
    if card.training:
        table.add_row("training", ", ".join(f"{k}={v}" for k, v in card.training.items()))
    if card.credit:
        table.add_row("credit", card.credit)
    if card.license:
        table.add_row("license", card.license)
    for key, value in _generator_rows(path):
        table.add_row(key, value)
    _stderr().print(table)


def _generator_rows(path: Path) -> list[tuple[str, str]]:
    """The baked sampler and input contract of a generator file (nothing for other files)."""
    from difftool.runtime.generator import generator_info, info_rows

    info = generator_info(path)
    return info_rows(info) if info is not None else []


# -- generate / sample / demo (difftool.cli_sampling) ---------------------------------------------------

cli_sampling.register(app)
_Json, _Threads, _Backend, _Seed = opt.Json, opt.Threads, opt.Backend, opt.Seed
_check_choice, _load_pipeline = opt.check_choice, opt.load_pipeline


# -- export (difftool.cli_export) -------------------------------------------------------------------

cli_export.register(app)


# -- tui --------------------------------------------------------------------------------------------


@app.command()
def tui(
    artifact: Annotated[Path | None, typer.Argument(help="ONNX artifact or checkpoint (default: bundled)")] = None,
    threads: _Threads = None,
    out_dir: Annotated[Path, typer.Option(help="where PNG/GIF/JSON saves go")] = Path("."),
    palette: opt.PaletteOpt = None,
):
    """Generate sprites interactively in the terminal."""
    from difftool.tui.launch import launch

    launch(artifact if artifact is not None else bundled_model(), threads=threads, out_dir=out_dir,
           palette=palette)


# -- serve ------------------------------------------------------------------------------------------


@app.command()
def serve(
    artifact: Annotated[Path | None, typer.Argument(help="ONNX artifact, engine or checkpoint (default: bundled)")] = None,
    host: Annotated[str, typer.Option(help="address to listen on (loopback by default)")] = _SERVE.host,
    port: Annotated[int, typer.Option(min=0, max=65535, help="port (0: a free one)")] = _SERVE.port,
    max_batch: Annotated[int, typer.Option(min=1, help="network rows per tick, all requests together "
                                                       "(a guided sprite counts 2)")] = _SERVE.max_batch,
    max_queue: Annotated[int, typer.Option(min=1, help="requests waiting to join; beyond: 503 with Retry-After")]
    = _SERVE.max_queue,
    max_n: Annotated[int, typer.Option(min=1, help="most sprites per request")] = _SERVE.max_n,
    max_steps: Annotated[int, typer.Option(min=1, help="most sampling steps per request")] = _SERVE.max_steps,
    scheduler: Annotated[str, typer.Option(help="step: batch every running request per step | serial: one "
                                                "request at a time (a baseline)")] = _SERVE.scheduler,
    backend: _Backend = "auto", threads: _Threads = None,
    access_log: Annotated[bool, typer.Option(help="log every HTTP request")] = False,
):
    """Serve the model over HTTP: JSON API (docs at /docs), step-level batching, SSE progress, /metrics."""
    from difftool.service import require_extra

    _check_choice(scheduler, SCHEDULERS, "--scheduler")
    require_extra()
    from difftool.service.config import ServeConfig
    from difftool.service.server import make_service
    from difftool.service.server import serve as run_server

    config = ServeConfig(host=host, port=port, max_batch=max_batch, max_queue=max_queue, max_n=max_n,
                         max_steps=max_steps, scheduler=scheduler, threads=threads, backend=backend,
                         access_log=access_log)
    service = make_service(artifact if artifact is not None else bundled_model(), config)
    console = _stderr()
    run_server(service, config, announce=lambda text: console.print(text, markup=False, soft_wrap=True))


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
    sampler: Annotated[str, typer.Option(help=opt.sampler_registry.help_text() + " (the timed loop)")] = "ddim",
    steps: Annotated[int, typer.Option(min=1, help="sampling steps of the timed loop")] = 25,
    batch: Annotated[str, typer.Option(help="batch sizes, comma separated")] = "1,16,64",
    backend: Annotated[str, typer.Option(help="backends, comma separated: ort, torch, cuda, trt, generator "
                                              "(or ort-cpu, torch-cpu, ort-cuda, tensorrt, torch-cuda; generator: "
                                              "the one-file generator vs the Python loop)")] = "ort,torch",
    threads: _Threads = None,
    repeats: Annotated[int, typer.Option(min=1, help="timed repeats of the sampling loop (median, min/max)")] = 5,
    guidance: Annotated[float, typer.Option(min=0.0, max=opt.MAX_GUIDANCE, help="guidance scale of the timed loop (1: one pass per step)")] = 1.0,
    precision: Annotated[str, typer.Option(help="torch backends: fp32 | bf16 | auto (bf16 autocast where the CPU "
                                                "has bf16 matrix units, else fp32)")] = "fp32",
    json_out: _Json = False,
):
    """Steps per second per backend and batch, loop overhead, GFLOP/s vs this machine's peak, peak RSS."""
    from difftool.bench.run import canonical_backend

    opt.check_sampler(sampler)
    opt.check_finite(guidance, "--guidance", minimum=0.0)
    opt.check_precision(precision)
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
                       guidance=guidance, precision=precision, console=console)
    console.print(render_table(result))
    if json_out:
        print(to_json(result))


# -- doctor -----------------------------------------------------------------------------------------


@app.command()
def doctor(
    require: Annotated[list[str] | None, typer.Option(
        help="exit 1 unless this backend can run here (repeatable), e.g. --require ort-cuda")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="print the report as JSON on stdout")] = False,
):
    """Which backends can run here and why not: library versions, providers that load, CPU features, GPUs."""
    from difftool.runtime.backends import available_backends

    known = tuple(available_backends())
    for name in require or ():
        _check_choice(name, known, "--require")
    import json

    from difftool.doctor import collect, missing, render_table

    report = collect()
    _stderr().print(render_table(report))
    if json_out:
        print(json.dumps(report))
    problem = missing(report, list(require or ()))
    if problem:
        raise DifftoolError(f"required backend not usable here: {problem}")


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
    palette: Annotated[str, typer.Option(help="what the palette rows (in-loop, snap) project onto: auto (the "
                                              "model's learned palette) | FILE | none (no palette rows)")] = "auto",
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
    opt.check_backend(backend)
    pipe = _load_pipeline(artifact, backend, threads)
    if not pipe.card.conditional:
        raise DifftoolError("difftool eval judges class-conditioned samples; this model is unconditional")
    configs = [dict(c) for c in (QUICK_CONFIGS if quick else DEFAULT_CONFIGS)]
    if not ddpm:
        configs = [c for c in configs if not opt.sampler_registry.get_sampler(str(c["sampler"])).all_steps]
    per_class = per_class or (QUICK_PER_CLASS if quick else DEFAULT_PER_CLASS)
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), TimeRemainingColumn(), console=console,
                  transient=True) as bar:
        task = bar.add_task("eval", total=1.0)
        report = evaluate(pipe, data=[str(p) for p in data] if data else None, configs=configs,
                          per_class=per_class, seed=seed, palette=palette,
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
