"""``difftool bench FOLDER``: difftool's ORT runtime against diffusers' own pipeline on the same model.

The anchor is what a diffusers user would run: ``DDIMPipeline`` (``--sampler ddim``, eta 0) or
``DDPMPipeline`` (the scheduler class each sampler names in the registry), built from the folder's U-Net
and scheduler config, torch eager on the same CPU threads. Class-conditional U-Nets cannot go through those
pipelines (they pass no ``class_labels``), so for them the anchor is the pipelines' own loop written out with
``class_labels``. The ORT side is the folder's exported graph (``FOLDER.onnx`` beside it when it holds the same
model, else exported into a temporary folder first) run by :func:`difftool.bench.run.run_bench`. The record is
``run_bench``'s, plus one ``diffusers`` row per batch and ``diffusers_ratio`` (loop seconds diffusers / ORT).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from difftool.bench.measure import Budget, measure, peak_rss_mb
from difftool.bench.run import FORWARD_BLOCK_S, FORWARD_MAX_S, LOOP_MAX_S, run_bench
from difftool.config import ModelCard
from difftool.errors import DifftoolError
from difftool.models.diffusers_io import require_folder


def run_folder_bench(folder: Path, *, sampler: str = "ddim", steps: int = 25, batches: tuple[int, ...] = (1, 16),
                     backends: tuple[str, ...] = ("ort",), threads: int | None = None, repeats: int = 5,
                     guidance: float = 1.0, console=None) -> dict[str, Any]:
    """Bench ``folder`` (a diffusers model folder); see the module docstring."""
    from difftool.runtime.artifact import read_card
    from difftool.runtime.samplers import canonical_name

    info = require_folder(folder)
    card = read_card(folder)
    sampler = canonical_name(sampler)
    torch_names = [b for b in backends if b.strip().lower().startswith("torch")]
    others = tuple(b for b in backends if b not in torch_names) or ("ort",)
    with tempfile.TemporaryDirectory(prefix="difftool-bench-") as tmp:
        onnx, note = _onnx_for_folder(folder, card, Path(tmp), console)
        result = run_bench(onnx, sampler=sampler, steps=steps, batches=batches, backends=others,
                           threads=threads, repeats=repeats, guidance=guidance, console=console)
    result["artifact"], result["onnx"] = str(folder), note
    result["skipped"] += [{"backend": name, "reason": "for a diffusers folder the PyTorch run is the diffusers row "
                                                      "(diffusers' own pipeline, torch eager)"} for name in torch_names]
    threads = int(result["threads"]["requested"])
    if guidance != 1.0:
        result["skipped"].append({"backend": "diffusers", "reason": "diffusers' pipelines have no classifier-free "
                                                                    "guidance for UNet2DModel; use --guidance 1"})
        return result
    rows = [diffusers_row(info.root, card, int(b), sampler, steps, repeats, threads) for b in batches]
    for row in rows:
        _say(console, f"[dim]diffusers batch {row['batch']}: {row['unet_steps_per_s']:.1f} steps/s, "
                      f"loop {row['loop']['median_s']:.3f} s[/]")
    per_sample, peak = result["flops"].get("per_sample"), result["peak"].get("gflops")
    for row in rows:
        if per_sample:
            row["flops_per_forward"] = per_sample * row["batch"]
            row["gflops"] = row["flops_per_forward"] / (row["forward"]["median_ms"] / 1e3) / 1e9
            row["peak_fraction"] = row["gflops"] / peak if peak else None
    result["results"] += rows
    result["diffusers_ratio"] = ratios(result["results"])
    result["notes"] = [f"diffusers {rows[0]['loop']['pipeline']} / ORT loop time, same model and "
                       f"{sampler}-{steps}: " + ", ".join(f"batch {r['batch']}: x{r['speedup']:.2f}"
                                                           for r in result["diffusers_ratio"]), note]
    return result


def _onnx_for_folder(folder: Path, card: ModelCard, tmp: Path, console) -> tuple[Path, str]:
    """The exported graph of ``folder``: ``FOLDER.onnx`` if it holds the same model, else a fresh export."""
    from difftool.runtime.artifact import read_card

    beside = folder.parent / f"{folder.name}.onnx"
    if beside.is_file():
        try:
            same = read_card(beside).model == card.model
        except DifftoolError:
            same = False
        if same:
            return beside, f"ORT graph: {beside.name}"
    from difftool.export.onnx_export import export_onnx

    _say(console, f"[dim]exporting {folder.name} to ONNX first (no {beside.name} beside it)[/]")
    path = export_onnx(folder, tmp / "model.onnx").path
    return path, f"ORT graph: exported for this run ({folder.name}.onnx absent)"


def ratios(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per batch: loop seconds of ORT (CPU) and diffusers, and their ratio diffusers / ORT."""
    out = []
    for d in (r for r in rows if r["backend"] == "diffusers"):
        o = next((r for r in rows if r["backend"] == "ort-cpu" and r["batch"] == d["batch"]), None)
        if o is not None:
            ort_s, diff_s = o["loop"]["median_s"], d["loop"]["median_s"]
            out.append({"batch": d["batch"], "ort_s": ort_s, "diffusers_s": diff_s, "speedup": diff_s / ort_s})
    return out


def _scheduler(card: ModelCard, sampler: str):
    import diffusers

    raw = dict(card.training.get("diffusers", {}).get("scheduler", {}))
    config = {k: v for k, v in raw.items() if not k.startswith("_")}
    from difftool.runtime.samplers import get_sampler

    spec = get_sampler(sampler)
    return getattr(diffusers, spec.diffusers_scheduler).from_config({**config, **dict(spec.diffusers_config)})


def diffusers_row(folder: Path, card: ModelCard, batch: int, sampler: str, steps: int, repeats: int,
                  threads: int) -> dict[str, Any]:
    """One bench row for diffusers' own pipeline (torch eager) at ``batch``."""
    import diffusers
    import torch

    torch.set_num_threads(threads)
    info = require_folder(folder)
    unet = diffusers.UNet2DModel.from_pretrained(str(info.unet_dir), low_cpu_mem_usage=False,
                                                 use_safetensors=bool(info.weights and info.weights.suffix
                                                                      == ".safetensors")).eval()
    scheduler = _scheduler(card, sampler)
    k = card.model.num_class_embeds
    labels = torch.arange(batch) % card.num_classes if card.num_classes else None
    shape = (batch, card.channels, card.image_size, card.image_size)
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    t = torch.full((batch,), card.schedule.num_timesteps // 2)
    with torch.no_grad():
        fwd = measure(lambda: unet(x, t, class_labels=labels).sample,
                      Budget(repeats=repeats, warmup=2, block_s=FORWARD_BLOCK_S, max_s=FORWARD_MAX_S))
    if k:
        name, loop = "loop (DDPMPipeline's, with class_labels)", _labelled_loop(unet, scheduler, shape, labels, steps)
    else:
        name, loop = _pipeline_loop(unet, scheduler, sampler, batch, steps)
    loop()  # warm up
    seconds, start = [], time.perf_counter()
    while len(seconds) < repeats and (not seconds or time.perf_counter() - start < LOOP_MAX_S):
        t0 = time.perf_counter()
        loop()
        seconds.append(time.perf_counter() - t0)
    loop_s = sorted(seconds)[len(seconds) // 2]
    return {"backend": "diffusers", "denoiser": f"diffusers {diffusers.__version__} torch-cpu", "batch": batch,
            "forward_batch": batch, "forward": fwd.to_dict(), "unet_steps_per_s": 1.0 / fwd.median,
            "images_steps_per_s": batch / fwd.median,
            "loop": {"sampler": sampler, "steps": steps, "pipeline": name, "median_s": loop_s, "min_s": min(seconds),
                     "max_s": max(seconds), "repeats": len(seconds)},
            "loop_overhead_pct": 100.0 * max(0.0, loop_s - steps * fwd.median) / loop_s,
            "flops_per_forward": None, "gflops": None, "peak_fraction": None, "peak_rss_mb": peak_rss_mb()}


def _pipeline_loop(unet, scheduler, sampler: str, batch: int, steps: int):
    """diffusers' own pipeline call (unconditional U-Nets)."""
    import diffusers
    import torch

    if sampler == "ddim":
        pipe = diffusers.DDIMPipeline(unet=unet, scheduler=scheduler)
        kwargs = {"eta": 0.0}
    else:
        pipe = diffusers.DDPMPipeline(unet=unet, scheduler=scheduler)
        kwargs = {}
    pipe.set_progress_bar_config(disable=True)

    def loop() -> None:
        pipe(batch_size=batch, num_inference_steps=steps, generator=torch.Generator().manual_seed(0),
             output_type="np", **kwargs)

    return type(pipe).__name__, loop


def _labelled_loop(unet, scheduler, shape, labels, steps: int):
    """DDPMPipeline.__call__'s loop with class_labels passed to the U-Net."""
    import torch

    def loop() -> None:
        gen = torch.Generator().manual_seed(0)
        with torch.no_grad():
            image = torch.randn(shape, generator=gen)
            scheduler.set_timesteps(steps)
            for t in scheduler.timesteps:
                out = unet(image, t, class_labels=labels).sample
                image = scheduler.step(out, t, image, generator=gen).prev_sample
            (image / 2 + 0.5).clamp(0, 1).cpu().permute(0, 2, 3, 1).numpy()

    return loop


def _say(console, text: str) -> None:
    if console is not None:
        console.print(text)
