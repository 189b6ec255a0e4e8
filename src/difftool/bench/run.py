"""``difftool bench``: time one artifact on each requested backend and batch size.

Per backend and batch: U-Net forward time (steps/s), images x steps per second, the full sampling loop
through the real :class:`~difftool.runtime.pipeline.Pipeline` (DDIM-25 by default), the share of that
loop spent outside the network (sampler overhead), FLOPs per forward, achieved GFLOP/s and its fraction
of this machine's fp32 matmul peak (measured once, in the same run), and peak RSS. Backends that cannot
run here are listed under ``skipped`` with the reason, never dropped. Threads are pinned: onnxruntime
intra-op threads, torch and the BLAS of the peak measurement all use the same N.

Torch is imported only for the torch backends (and, when installed, to count FLOPs).
"""

from __future__ import annotations

import datetime as _dt
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from difftool.bench.artifacts import _onnx_for, bundled_artifact, count_flops, find_checkpoint  # noqa: F401
from difftool.bench.measure import (
    SETTLE_S,
    Budget,
    current_rss_mb,
    load_average,
    machine_info,
    measure,
    peak_rss_mb,
)
from difftool.bench.peak import measure_peak
from difftool.bench.sanity import check_loop
from difftool.config import ModelCard
from difftool.errors import DifftoolError
from difftool.runtime.cpu import cores
from difftool.runtime.denoiser import Denoiser
from difftool.runtime.kinds import FILE_KINDS
from difftool.runtime.kinds import canonical_backend as _canonical
from difftool.runtime.pipeline import Pipeline, SampleRequest
from difftool.runtime.samplers import canonical_name
from difftool.runtime.schedules import make_schedule

SCHEMA = "difftool.bench/1"
DEFAULT_BACKENDS = ("ort", "torch")
CHECKPOINT_SUFFIXES = FILE_KINDS["checkpoint"].suffixes
ENGINE_SUFFIXES = FILE_KINDS["engine"].suffixes
GENERATOR_ROW = ("generator", "gen")  # bench-only row: the whole loop in one ONNX graph (not a Denoiser)

# Time boxes (seconds): sized so the defaults (3 batches x 2 backends, 85 MFLOP model) finish in well
# under a minute on 2 cores, including the peak measurement and session start-up.
FORWARD_BLOCK_S = 0.05  # one forward sample averages calls over at least this long
FORWARD_MAX_S = 0.6  # stop sampling forwards after this (keeping >= 1 sample)
LOOP_MAX_S = 1.5  # stop repeating the sampling loop after this (keeping >= 1 loop)


class Unavailable(Exception):
    """A backend cannot run here; the message is the reason shown in the table and JSON."""


# -- backends --------------------------------------------------------------------------------------------


def canonical_backend(name: str) -> str:
    """A backend name or alias from the registry (``auto`` is not a bench backend), or the generator row."""
    if name.strip().lower() in GENERATOR_ROW:
        return "generator"
    return _canonical(name, allow_auto=False)


def open_backend(backend: str, artifact: Path, card: ModelCard, threads: int, precision: str = "fp32") -> Denoiser:
    """Open ``artifact`` on ``backend`` with ``threads`` CPU threads (torch backends: in ``precision``, see
    :func:`difftool.runtime.cpu.choose_precision`); :class:`Unavailable` if it cannot."""
    from difftool.runtime.backends import available_backends, make_denoiser

    reason = available_backends().get(backend)
    if reason:
        raise Unavailable(reason)
    if backend.startswith("torch"):
        ckpt = find_checkpoint(artifact, card)
        if ckpt is None:
            raise Unavailable(f"needs a checkpoint: no .safetensors/.pth with the same model beside {artifact.name}")
        _pin_torch(threads)
        path = ckpt
    elif backend == "tensorrt":
        path = next((p for p in (artifact.with_suffix(s) for s in ENGINE_SUFFIXES) if p.is_file()), None)
        if path is None:
            raise Unavailable(f"no TensorRT engine beside {artifact.name} (difftool export --format tensorrt)")
    else:
        path = _onnx_for(artifact)
        if path is None:
            raise Unavailable(f"needs an ONNX graph: no {artifact.with_suffix('.onnx').name} beside "
                              f"{artifact.name} (difftool export)")
    opts = {"precision": precision} if backend.startswith("torch") else {}
    try:
        denoiser = make_denoiser(path, backend=backend, threads=threads, **opts)
    except DifftoolError as exc:
        raise Unavailable(str(exc)) from None
    if denoiser.name != backend:  # a row filed under a GPU backend must hold that backend's numbers
        raise Unavailable(f"asked for {backend} but the denoiser runs on {denoiser.name}")
    return denoiser


def _pin_torch(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def thread_counts(denoisers: dict[str, Denoiser], threads: int) -> dict[str, Any]:
    """What each library was actually set to (read back where possible)."""
    out: dict[str, Any] = {"requested": threads}
    for name, den in denoisers.items():
        sess = getattr(den, "session", None)
        if sess is not None:
            opts = sess.get_session_options()
            out[f"{name}.intra_op"] = opts.intra_op_num_threads
            out[f"{name}.inter_op"] = opts.inter_op_num_threads
        if getattr(den, "shards", None):
            out[f"{name}.row_shards"] = den.shards  # concurrent single-threaded runs per batch (ort.py)
    import sys

    if "torch" in sys.modules:
        out["torch"] = sys.modules["torch"].get_num_threads()
    return out


# -- one case --------------------------------------------------------------------------------------------


class TimedDenoiser:
    """A transparent proxy that adds up the time spent inside the wrapped denoiser's forwards, so the
    sampling loop's own cost is measured in the same run as the forwards it surrounds."""

    def __init__(self, inner: Denoiser):
        self.inner = inner
        self.card = inner.card
        self.name = inner.name
        self.seconds = 0.0
        self.calls = 0

    def __call__(self, x: np.ndarray, t: np.ndarray, context: np.ndarray) -> np.ndarray:
        start = time.perf_counter()
        out = self.inner(x, t, context)
        self.seconds += time.perf_counter() - start
        self.calls += 1
        return out

    def reset(self) -> None:
        self.seconds, self.calls = 0.0, 0


def one_hot_context(card: ModelCard, n: int) -> np.ndarray:
    """(n, K): classes cycled one-hot (so guidance really doubles the batch); (n, 0) if unconditional."""
    ctx = np.zeros((n, card.num_classes), dtype=np.float32)
    if card.num_classes:
        ctx[np.arange(n), np.arange(n) % card.num_classes] = 1.0
    return ctx


def forward_batch(card: ModelCard, batch: int, guidance: float) -> int:
    """Rows per network forward: 2B when classifier-free guidance runs both branches."""
    return 2 * batch if (card.conditional and guidance not in (1.0, 0.0)) else batch


def forward_inputs(card: ModelCard, rows: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Random x (rows, C, H, W), a mid-schedule network time (rows,), one-hot contexts (rows, K)."""
    rng = np.random.default_rng(seed)
    schedule = make_schedule(card.schedule)
    x = rng.standard_normal((rows, card.channels, card.image_size, card.image_size), dtype=np.float32)
    t = np.full((rows,), schedule.model_time((schedule.t_min + schedule.t_max) // 2), dtype=np.float32)
    return x, t, one_hot_context(card, rows)


@dataclass
class LoopTiming:
    """Sampling-loop wall times and, per loop, the share spent outside the network."""

    seconds: list[float]
    overhead: list[float]  # (loop - time inside forwards) / loop, per loop
    forwards: int  # network forwards per loop


def time_loop(pipe: Pipeline, proxy: TimedDenoiser, request: SampleRequest, repeats: int,
              max_s: float = LOOP_MAX_S) -> LoopTiming:
    """Run the full sampling loop up to ``repeats`` times (at least once; stop after ``max_s``)."""
    seconds: list[float] = []
    overhead: list[float] = []
    forwards = 0
    start = time.perf_counter()
    while len(seconds) < repeats:
        proxy.reset()
        t0 = time.perf_counter()
        pipe.sample(request)
        wall = time.perf_counter() - t0
        seconds.append(wall)
        overhead.append((wall - proxy.seconds) / wall)
        forwards = proxy.calls
        if time.perf_counter() - start >= max_s:
            break
    return LoopTiming(seconds, overhead, forwards)


def bench_case(denoiser: Denoiser, backend: str, batch: int, *, sampler: str, steps: int, guidance: float,
               repeats: int, flops_per_sample: int | None, peak_gflops: float | None) -> dict[str, Any]:
    """Measure one backend at one batch size; returns the JSON row."""
    card = denoiser.card
    rows = forward_batch(card, batch, guidance)
    x, t, ctx = forward_inputs(card, rows)
    time.sleep(SETTLE_S)  # let the previous backend's spinning worker threads go idle
    load = load_average()
    fwd = measure(lambda: denoiser(x, t, ctx),
                  Budget(repeats=repeats, warmup=2, block_s=FORWARD_BLOCK_S, max_s=FORWARD_MAX_S))
    proxy = TimedDenoiser(denoiser)
    request = SampleRequest(n=batch, context=one_hot_context(card, batch), sampler=sampler, steps=steps,
                            guidance=guidance, seed=0)
    loop = time_loop(Pipeline(proxy), proxy, request, repeats)
    fwd_s, loop_s = fwd.median, float(np.median(loop.seconds))
    flops = flops_per_sample * rows if flops_per_sample else None
    gflops = flops / fwd_s / 1e9 if flops else None
    return {
        "backend": backend,
        "denoiser": denoiser.name,
        "batch": batch,
        "forward_batch": rows,
        "forward": fwd.to_dict(),
        "unet_steps_per_s": 1.0 / fwd_s,
        "images_steps_per_s": batch / fwd_s,
        "loop": {
            "sampler": sampler,
            "steps": steps,
            "forwards": loop.forwards,
            "median_s": loop_s,
            "min_s": min(loop.seconds),
            "max_s": max(loop.seconds),
            "repeats": len(loop.seconds),
        },
        # time in the loop outside the network, measured inside the same loops (primary) ...
        "loop_overhead_pct": 100.0 * float(np.median(loop.overhead)),
        # ... and the definition "loop - forwards x forward time" with the separately timed forward
        "loop_overhead_vs_forward_pct": 100.0 * (loop_s - loop.forwards * fwd_s) / loop_s,
        "flops_per_forward": flops,
        "gflops": gflops,
        "peak_fraction": gflops / peak_gflops if (gflops and peak_gflops) else None,
        "peak_rss_mb": peak_rss_mb(),
        "rss_mb": current_rss_mb(),
        "load_average": load,
    }


# -- driver ----------------------------------------------------------------------------------------------


def _say(console, text: str) -> None:
    if console is not None:
        console.print(text)


def _bench_generator(artifact: Path, results: list, skipped: list, *, console, **options) -> None:
    """Append the generator rows (or a skip with the reason) for ``artifact``'s ONNX graph."""
    from difftool.bench.generator_row import generator_rows
    from difftool.runtime.generator import generator_info

    onnx_path = _onnx_for(artifact)
    if onnx_path is None or generator_info(onnx_path) is not None:
        reason = "needs the U-Net ONNX graph" + (f" (no {artifact.with_suffix('.onnx').name})" if onnx_path is None
                                                 else f" ({onnx_path.name} is already a generator)")
        skipped.append({"backend": "generator", "reason": reason})
        _say(console, f"[yellow]skipped[/] generator: {reason}")
        return
    for row in generator_rows(onnx_path, **options):
        results.append(row)
        _say(console, f"[dim]generator batch {row['batch']}: {row['loop']['median_s']:.3f} s vs Python loop "
                      f"{row['python_loop']['median_s']:.3f} s (x{row['speedup_vs_python_loop']:.2f})[/]")


def run_bench(artifact: Path | None, *, sampler: str = "ddim", steps: int = 25,
              batches: tuple[int, ...] = (1, 16, 64), backends: tuple[str, ...] = DEFAULT_BACKENDS,
              threads: int | None = None, repeats: int = 5, guidance: float = 1.0, precision: str = "fp32",
              console=None) -> dict[str, Any]:
    """Benchmark ``artifact`` (None: the bundled sprite model); returns a JSON-serialisable record.

    ``backends``: registry names or aliases (``difftool.runtime.kinds.BACKENDS``: ort, torch, cuda, trt ...).
    ``threads``: CPU threads for every library (default: the cores this process may use).
    ``precision``: of the torch backends (fp32 | bf16 | auto: bf16 autocast where the CPU has bf16 units).
    """
    started = time.perf_counter()
    artifact = Path(artifact) if artifact is not None else bundled_artifact()
    if artifact.is_dir():  # -- a diffusers model folder: ORT (its graph) vs diffusers' own pipeline, with ratio
        from difftool.bench.diffusers_bench import run_folder_bench

        return run_folder_bench(artifact, sampler=sampler, steps=steps, batches=batches, backends=backends,
                                threads=threads, repeats=repeats, guidance=guidance, console=console)
    if not artifact.is_file():
        raise DifftoolError(f"artifact not found: {artifact}")
    if not batches or any(int(b) < 1 for b in batches):
        raise DifftoolError(f"batch sizes must be positive integers, got {tuple(batches)}")
    if repeats < 1 or steps < 1:
        raise DifftoolError("repeats and steps must be at least 1")
    sampler = canonical_name(sampler)
    names = list(dict.fromkeys(canonical_backend(b) for b in backends))
    from difftool.runtime.artifact import read_card

    card = read_card(artifact)
    if guidance != 1.0 and not card.supports_guidance:
        raise DifftoolError(card.no_guidance_reason)
    threads = int(threads) if threads else cores()
    load_start = load_average()
    _say(console, f"[dim]bench {artifact.name}: {', '.join(names)}; batches {list(batches)}; "
                  f"{threads} threads; load {load_start}[/]")
    peak = measure_peak(threads)
    _say(console, f"[dim]fp32 matmul peak {peak.gflops:.1f} GFLOP/s ({peak.blas})[/]")
    flops = count_flops(artifact, card)
    results: list[dict[str, Any]] = []
    skipped: list[dict[str, str]] = []
    threads_used: dict[str, Any] = {"requested": threads}
    for name in names:
        if name == "generator":  # the whole loop in one graph, timed against the Python loop (ort-cpu)
            _bench_generator(artifact, results, skipped, sampler=sampler, steps=steps, guidance=guidance,
                             batches=batches, threads=threads, repeats=repeats, console=console)
            continue
        try:
            denoiser = open_backend(name, artifact, card, threads, precision)
        except Unavailable as exc:
            skipped.append({"backend": name, "reason": str(exc)})
            _say(console, f"[yellow]skipped[/] {name}: {exc}")
            continue
        threads_used.update(thread_counts({name: denoiser}, threads))
        for batch in batches:
            row = bench_case(denoiser, name, int(batch), sampler=sampler, steps=steps, guidance=guidance,
                             repeats=repeats, flops_per_sample=flops["per_sample"], peak_gflops=peak.gflops)
            row["suspect"] = check_loop(row)  # loop vs steps x forward disagree > 2x: not a figure
            if hasattr(denoiser, "precision"):  # torch: fp32 or bf16 autocast, and why (chosen at run time)
                row["precision"], row["precision_reason"] = denoiser.precision, denoiser.precision_reason
            results.append(row)
            _say(console, f"[dim]{name} batch {batch}: {row['unet_steps_per_s']:.1f} steps/s, "
                          f"loop {row['loop']['median_s']:.3f} s[/]"
                 + (f" [yellow]suspect: {row['suspect']['reason']}[/]" if row["suspect"] else ""))
        del denoiser  # release its thread pool before the next backend runs
    return {
        "schema": SCHEMA,
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "artifact": str(artifact),
        "model": {"arch": card.model.arch, "image_size": card.image_size, "channels": card.channels,
                  "num_classes": card.num_classes},
        "sampler": sampler,
        "steps": steps,
        "guidance": guidance,
        "batches": [int(b) for b in batches],
        "repeats": repeats,
        "threads": threads_used,
        "machine": machine_info(),
        "load_average": {"start": load_start, "end": load_average()},
        "peak": peak.to_dict(),
        "flops": flops,
        "results": results,
        "skipped": skipped,
        "seconds": time.perf_counter() - started,
    }
