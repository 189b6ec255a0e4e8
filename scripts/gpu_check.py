#!/usr/bin/env python3
"""Check difftool's GPU paths in one command, on the bundled sprite model (src/difftool/assets/sprites.onnx).

    python scripts/gpu_check.py              # on a machine with an NVIDIA GPU: everything
    python scripts/gpu_check.py --cpu-only   # CI / no GPU: the CPU parts; GPU parts listed as skipped
    python scripts/gpu_check.py --json       # also a JSON report on stdout (table and progress on stderr)

CPU parts (always): the ORT CPU reference (eps at batches 1, 3, 16 and a whole DDIM-25 loop, 8 images
with guidance, i.e. forwards of 16); torch CPU against it; the int8 graph quantised for TensorRT
(signed int8, zero-point 0: checked in the graph) and the fp16 graph, both run on ORT CPU.
GPU parts: TensorRT engines built from the fp32, fp16 and int8 graphs; ort-cuda with IOBinding;
torch-cuda with CUDA graphs (also against eager CUDA, and replay against the first call). Every
backend is compared with the ORT CPU fp32 reference: eps relative L2 error (worst batch) and the mean
absolute pixel difference after the DDIM-25 loop, with the tolerances in TOLERANCE, and its U-Net
steps/s is printed next to ort-cpu's.

Exit codes: 0 every check passed (with --cpu-only: every check that ran; the GPU parts are skipped);
1 a check failed; 2 usage error; 3 nothing failed but some parts were skipped (no GPU, or a library
missing: the reason is in the table) and --cpu-only was not given.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

ASSETS = Path(__file__).resolve().parents[1] / "src" / "difftool" / "assets"
BUNDLED, CHECKPOINT = ASSETS / "sprites.onnx", ASSETS / "sprites.safetensors"
SCHEMA = "difftool.gpu_check/1"
BATCHES = (1, 3, 16)
LOOP = {"n": 8, "steps": 25, "guidance": 2.0, "seed": 0}
# precision -> (eps relative L2 error vs ORT CPU fp32, DDIM-25 mean abs pixel difference on [-1, 1]).
# fp32 allows TF32 on GPU; fp16/int8 are first estimates, to be tightened from measured runs.
TOLERANCE = {"fp32": (2e-3, 1e-2), "fp16": (2e-2, 5e-2), "int8": (0.25, 0.2)}
CPU_TOLERANCE = (1e-4, 1e-3)  # torch CPU vs ORT CPU: the same fp32 arithmetic


@dataclass
class Result:
    name: str
    status: str  # pass | fail | skip
    detail: str = ""
    eps_rel: float | None = None
    loop_mad: float | None = None
    steps_per_s: float | None = None
    gpu: bool = False


class Skip(Exception):
    """This part cannot run here; the message is the reason."""


@dataclass
class Reference:
    card: object
    feeds: dict
    eps: dict
    images: np.ndarray
    steps_per_s: float


# -- measuring ----------------------------------------------------------------------------------------


def _feeds(card) -> dict[int, dict[str, np.ndarray]]:
    from difftool.export.parity import parity_inputs

    return {b: parity_inputs(card, b, seed=b) for b in BATCHES}


def _call(denoiser, feed: dict[str, np.ndarray]) -> np.ndarray:
    ctx = feed.get("context", np.zeros((feed["x"].shape[0], 0), np.float32))
    return np.array(denoiser(feed["x"], feed["t"], ctx), copy=True)


def eps_rel(denoiser, ref: Reference) -> float:
    """Worst relative L2 error of ``denoiser``'s eps against the reference over BATCHES."""
    worst = 0.0
    for batch, feed in ref.feeds.items():
        got, want = _call(denoiser, feed).astype(np.float64), ref.eps[batch].astype(np.float64)
        worst = max(worst, float(np.linalg.norm(got - want) / max(np.linalg.norm(want), 1e-30)))
    return worst


def ddim_loop(denoiser) -> tuple[np.ndarray, float]:
    """(images, U-Net steps/s) of a DDIM-25 loop, after one untimed forward of the loop's batch (CUDA
    graph capture, cuDNN/TensorRT autotune happen there)."""
    from difftool.runtime.pipeline import Pipeline, SampleRequest

    pipe = Pipeline(denoiser)
    k, n = pipe.card.num_classes, LOOP["n"]
    ctx = np.eye(k, dtype=np.float32)[np.arange(n) % k] if k else None
    request = SampleRequest(n=n, context=ctx, sampler="ddim", steps=LOOP["steps"], eta=0.0,
                            guidance=LOOP["guidance"] if k else 1.0, seed=LOOP["seed"])
    rows = 2 * n if k and request.guidance != 1.0 else n
    size = (rows, pipe.card.channels, pipe.card.image_size, pipe.card.image_size)
    denoiser(np.zeros(size, np.float32), np.full(rows, 500.0, np.float32), np.zeros((rows, k), np.float32))
    start = time.perf_counter()
    images = pipe.sample(request)
    return images, LOOP["steps"] / (time.perf_counter() - start)


def judge(name: str, denoiser, ref: Reference, tolerance: tuple[float, float], gpu: bool = True) -> Result:
    err = eps_rel(denoiser, ref)
    images, rate = ddim_loop(denoiser)
    mad = float(np.mean(np.abs(images - ref.images)))
    ok = err <= tolerance[0] and mad <= tolerance[1]
    detail = "" if ok else f"over tolerance (eps rel <= {tolerance[0]:g}, DDIM-25 mean abs <= {tolerance[1]:g})"
    return Result(name, "pass" if ok else "fail", detail, err, mad, rate, gpu)


# -- the parts ----------------------------------------------------------------------------------------


def reference(threads: int | None) -> Reference:
    from difftool.runtime.backends import make_denoiser

    den = make_denoiser(BUNDLED, backend="ort-cpu", threads=threads)
    feeds = _feeds(den.card)
    images, rate = ddim_loop(den)
    return Reference(den.card, feeds, {b: _call(den, f) for b, f in feeds.items()}, images, rate)


def check_torch_cpu(ref: Reference, threads: int | None) -> Result:
    from difftool.runtime.backends import available_backends, make_denoiser

    if reason := available_backends()["torch-cpu"]:
        raise Skip(reason)
    return judge("torch-cpu vs ort-cpu", make_denoiser(CHECKPOINT, backend="torch-cpu", threads=threads), ref,
                 CPU_TOLERANCE, gpu=False)


def make_int8(ref: Reference, work: Path) -> tuple[Result, Path]:
    """The int8 graph for TensorRT: quantised S8S8 symmetric, checked in the graph, run on ORT CPU."""
    import onnx

    from difftool.export import int8
    from difftool.runtime.backends.ort import OrtDenoiser

    x0, _ = int8.calibration_x0(BUNDLED, ref.card)
    path = work / "sprites.int8-tensorrt.onnx"
    int8.quantize_int8(BUNDLED, path, int8.noisy_batches(ref.card, x0, 4, 16), target="tensorrt")
    problems = int8.tensorrt_qdq_problems(onnx.load(str(path)))
    err = eps_rel(OrtDenoiser(path, providers=["CPUExecutionProvider"]), ref)
    ok = not problems and err <= TOLERANCE["int8"][0]
    detail = problems[0] if problems else ("" if ok else f"eps rel over {TOLERANCE['int8'][0]:g}")
    return Result("int8 graph for TensorRT (ORT CPU)", "pass" if ok else "fail", detail, err), path


def make_fp16(ref: Reference, work: Path) -> tuple[Result, Path]:
    from difftool.export.fp16 import convert_fp16
    from difftool.runtime.backends.ort import OrtDenoiser

    path = convert_fp16(BUNDLED, work / "sprites.fp16.onnx")
    err = eps_rel(OrtDenoiser(path, providers=["CPUExecutionProvider"]), ref)
    ok = err <= TOLERANCE["fp16"][0]
    return Result("fp16 graph (ORT CPU)", "pass" if ok else "fail", "" if ok else "eps rel over tolerance", err), path


def check_tensorrt(ref: Reference, precision: str, graph: Path | None, work: Path) -> Result:
    from difftool.export.tensorrt_build import build_engine
    from difftool.runtime.backends import available_backends
    from difftool.runtime.backends.tensorrt import TensorRTDenoiser

    if reason := available_backends()["tensorrt"]:
        raise Skip(reason)
    if graph is None:
        raise Skip(f"the {precision} graph was not made (see its CPU check)")
    engine = work / f"sprites.{precision}.engine"
    report = build_engine(graph, engine, opt_batch=16, max_batch=64)
    result = judge(f"tensorrt {precision}", TensorRTDenoiser(engine), ref, TOLERANCE[precision])
    result.detail = (result.detail + "; " if result.detail else "") + f"built in {report.seconds:.0f} s"
    return result


def check_ort_cuda(ref: Reference) -> Result:
    from difftool.runtime.backends import available_backends, make_denoiser

    if reason := available_backends()["ort-cuda"]:
        raise Skip(reason)
    den = make_denoiser(BUNDLED, backend="ort-cuda")
    if den.name != "ort-cuda" or not den.io_binding:
        return Result("ort-cuda (IOBinding)", "fail", f"runs as {den.name}, io_binding={den.io_binding}", gpu=True)
    return judge("ort-cuda (IOBinding)", den, ref, TOLERANCE["fp32"])


def check_torch_cuda(ref: Reference) -> Result:
    from difftool.models.checkpoint import load
    from difftool.models.denoiser import TorchDenoiser
    from difftool.runtime.backends import available_backends

    if reason := available_backends()["torch-cuda"]:
        raise Skip(reason)
    loaded = load(CHECKPOINT)
    graphs = TorchDenoiser(loaded.module, loaded.card, device="cuda", cuda_graphs=True)
    eager = TorchDenoiser(loaded.module, loaded.card, device="cuda", cuda_graphs=False)
    result = judge("torch-cuda (CUDA graphs)", graphs, ref, TOLERANCE["fp32"])
    problems = []
    for feed in ref.feeds.values():
        first, replay, plain = _call(graphs, feed), _call(graphs, feed), _call(eager, feed)
        if not np.array_equal(first, replay):
            problems.append("graph replay differs from its first call")
        if np.max(np.abs(first - plain)) > 1e-4:
            problems.append(f"graph vs eager CUDA max abs {np.max(np.abs(first - plain)):.2e} > 1e-4")
    if len(graphs._graphs) < len(BATCHES):
        problems.append(f"only {len(graphs._graphs)} CUDA graphs captured for {len(BATCHES)} shapes")
    if problems:
        result.status, result.detail = "fail", "; ".join([result.detail, *problems]).strip("; ")
    return result


# -- running ------------------------------------------------------------------------------------------


def attempt(name: str, fn, *args, backend: str | None = None, cpu_only: bool = False):
    """Run one part: its Result (or (Result, value)); failures and skips become Results, never tracebacks.
    ``backend``: the GPU backend the part needs (skipped with --cpu-only, saying whether it could run)."""
    gpu = backend is not None
    if gpu and cpu_only:
        from difftool.runtime.backends import available_backends

        why = available_backends()[backend]
        return Result(name, "skip", f"--cpu-only; {f'here: {why}' if why else 'it could run here'}", gpu=True)
    try:
        return fn(*args)
    except Skip as exc:
        return Result(name, "skip", str(exc), gpu=gpu)
    except Exception as exc:  # a check that crashes is a failed check, with its one-line reason
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:240]
        return Result(name, "fail", f"{type(exc).__name__}: {first}", gpu=gpu)


def run_checks(cpu_only: bool, threads: int | None, work: Path, say=print) -> list[Result]:
    say("ORT CPU reference ...")
    ref = reference(threads)
    results = [Result("ort-cpu reference", "pass", "", 0.0, 0.0, ref.steps_per_s)]
    say("torch CPU ...")
    results.append(attempt("torch-cpu vs ort-cpu", check_torch_cpu, ref, threads))
    graphs: dict[str, Path | None] = {"fp32": BUNDLED}
    for precision, make in (("int8", make_int8), ("fp16", make_fp16)):
        say(f"{precision} graph ...")
        made = attempt(f"{precision} graph", make, ref, work)
        result, graphs[precision] = made if isinstance(made, tuple) else (made, None)
        results.append(result)
    for precision in ("fp32", "fp16", "int8"):
        say(f"TensorRT {precision} ...")
        results.append(attempt(f"tensorrt {precision}", check_tensorrt, ref, precision, graphs[precision], work,
                               backend="tensorrt", cpu_only=cpu_only))
    say("ort-cuda ...")
    results.append(attempt("ort-cuda (IOBinding)", check_ort_cuda, ref, backend="ort-cuda", cpu_only=cpu_only))
    say("torch-cuda ...")
    results.append(attempt("torch-cuda (CUDA graphs)", check_torch_cuda, ref, backend="torch-cuda",
                           cpu_only=cpu_only))
    return results


def exit_code(results: list[Result], cpu_only: bool) -> int:
    if any(r.status == "fail" for r in results):
        return 1
    if not cpu_only and any(r.status == "skip" for r in results):
        return 3
    return 0


def render(results: list[Result], cpu_rate: float):
    from rich.table import Table

    table = Table(title="difftool GPU check (bundled sprite model, vs ORT CPU fp32)")
    for col in ("check", "status", "eps rel err", "DDIM-25 mean abs", "U-Net steps/s", "x ort-cpu", "detail"):
        table.add_column(col, overflow="fold")
    style = {"pass": "[green]pass[/]", "fail": "[red]FAIL[/]", "skip": "[yellow]skip[/]"}

    def num(v, fmt):
        return "" if v is None else format(v, fmt)

    for r in results:
        ratio = f"{r.steps_per_s / cpu_rate:.2f}x" if r.steps_per_s and cpu_rate else ""
        table.add_row(r.name, style[r.status], num(r.eps_rel, ".2e"), num(r.loop_mad, ".2e"),
                      num(r.steps_per_s, ".1f"), ratio, r.detail)
    return table


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cpu-only", action="store_true", help="run only the CPU parts (GPU parts: skipped, exit 0)")
    ap.add_argument("--json", action="store_true", help="print a JSON report on stdout")
    ap.add_argument("--threads", type=int, default=None, help="CPU threads for the CPU backends (default: all)")
    ap.add_argument("--workdir", type=Path, default=None, help="keep the graphs and engines here")
    args = ap.parse_args(argv)
    if args.threads is not None and args.threads < 1:
        ap.error("--threads must be at least 1")
    from rich.console import Console

    console = Console(stderr=True, highlight=False)
    with tempfile.TemporaryDirectory(prefix="difftool-gpu-check-") as tmp:
        work = args.workdir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        try:
            results = run_checks(args.cpu_only, args.threads, work, say=lambda m: console.print(f"[dim]{m}[/]"))
        except Exception as exc:  # the ORT CPU reference itself: nothing can be compared without it
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:240]
            console.print(f"[bold red]error:[/] the ORT CPU reference failed: {first}")
            return 1
    code = exit_code(results, args.cpu_only)
    console.print(render(results, results[0].steps_per_s or 0.0))
    console.print({0: "[green]all checks passed[/]", 1: "[red]a check failed[/]",
                   3: "[yellow]no failures, but parts were skipped (see detail)[/]"}[code])
    if args.json:
        from difftool.doctor import collect

        print(json.dumps({"schema": SCHEMA, "exit_code": code, "cpu_only": args.cpu_only,
                          "tolerance": TOLERANCE, "results": [asdict(r) for r in results],
                          "machine": {k: v for k, v in collect().items() if k in ("libraries", "cpu", "gpus")}}))
    return code


if __name__ == "__main__":
    sys.exit(main())
