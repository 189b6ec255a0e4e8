"""TUI vs ``difftool generate``: the same request on the same pipeline (same threads), timed both ways.

The TUI side is driven by Textual's Pilot (headless, 120x40): the time runs from pressing ``g`` until the
finished grid is on screen (live preview, progress bar and status line included). The generate side is
``difftool.generate.run`` on the same ``Pipeline``. Repeats alternate between the two (the order flips
each round) and the medians are compared, in wall time and in process CPU time (all threads: a
check that holds up on a busy machine). The script checks that both produced the same pixels, so the
requests really are the same, and counts the preview frames the TUI drew.

    python benchmarks/tui_bench.py                          # bundled model, 16 guided sprites, 7 rounds
    python benchmarks/tui_bench.py --threads 2 --rounds 11 --mix food --grid 4x4 --json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from difftool import generate  # noqa: E402
from difftool.runtime.loader import load  # noqa: E402
from difftool.tui.app import SpriteApp  # noqa: E402
from difftool.tui.messages import FrameReady, GenerationFinished  # noqa: E402
from difftool.tui.settings import Settings, parse_grid  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path, default=ROOT / "src" / "difftool" / "assets" / "sprites.onnx")
    p.add_argument("--backend", default="ort-cpu")
    p.add_argument("--threads", type=int, default=None, help="intra-op threads (default: the backend's)")
    p.add_argument("--mix", default="hero", help="class or mix (guided with the model's default guidance)")
    p.add_argument("--grid", default="4x4", help="ROWSxCOLS sprites")
    p.add_argument("--sampler", default=None)
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--rounds", type=int, default=7, help="timed rounds (each: one generate, one TUI run)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    return p.parse_args(argv)


def generate_once(pipe, request, nrow: int) -> tuple[float, float, np.ndarray]:
    t0, c0 = time.perf_counter(), time.process_time()
    result = generate.run(pipe, request, nrow=nrow)
    return time.perf_counter() - t0, time.process_time() - c0, result.images


async def tui_rounds(pipe, settings: Settings, rounds: int, request, nrow: int) -> dict:
    """Alternate TUI runs with generate runs inside one Pilot session; returns the raw times."""
    app = SpriteApp({"bench": lambda: pipe}, settings=settings, rng_seed=0)
    times: dict[str, list[float]] = {"tui_s": [], "generate_s": [], "tui_cpu_s": [], "generate_cpu_s": []}
    images = {}
    previews: list[int] = []
    finished = asyncio.Event()

    def count(message) -> None:  # called on the UI loop for every message handled
        if isinstance(message, FrameReady):
            previews[-1] += 1
        elif isinstance(message, GenerationFinished):
            finished.set()

    async with app.run_test(size=(120, 40), message_hook=count) as pilot:
        while app.pipeline is None:
            await pilot.pause(0.02)
        app.grid.focus()
        await pilot.pause(0.2)
        for i in range(rounds + 1):  # round 0 warms both paths up
            order = ("tui", "gen") if i % 2 == 0 else ("gen", "tui")
            for which in order:
                if which == "gen":
                    seconds, cpu, images["gen"] = generate_once(pipe, request, nrow)
                else:
                    previews.append(0)
                    finished.clear()
                    t0, c0 = time.perf_counter(), time.process_time()
                    await pilot.press("g")
                    await finished.wait()
                    await pilot.pause()  # the finished grid drawn
                    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
                    assert app.current is not None
                    images["tui"] = app.current.image
                if i:
                    times[f"{'tui' if which == 'tui' else 'generate'}_s"].append(seconds)
                    times[f"{'tui' if which == 'tui' else 'generate'}_cpu_s"].append(cpu)
                await pilot.pause(0.2)  # let the network's worker threads go quiet between blocks
    same = bool(np.array_equal(images["gen"], images["tui"]))
    return {**times, "previews": previews[1:], "same_pixels": same}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    rows, cols = parse_grid(args.grid)
    pipe = load(args.model, backend=args.backend, threads=args.threads)
    settings = Settings(mix=args.mix, sampler=args.sampler, steps=args.steps, rows=rows, cols=cols)
    request = generate.build_request(pipe, n=rows * cols, class_name=None, mix=args.mix, sampler=args.sampler,
                                     steps=args.steps, eta=None, guidance=None, seed=0)
    raw = asyncio.run(tui_rounds(pipe, settings, args.rounds, request, cols))
    med = {key: statistics.median(raw[key]) for key in ("tui_s", "generate_s", "tui_cpu_s", "generate_cpu_s")}
    report = {
        "model": args.model.name, "backend": pipe.denoiser.name, "threads": args.threads, "n": request.n,
        "request": generate.describe(request), "rounds": args.rounds,
        **{f"{key.removesuffix('_s')}_median_s": round(value, 4) for key, value in med.items()},
        "ratio": round(med["tui_s"] / med["generate_s"], 3),
        "cpu_ratio": round(med["tui_cpu_s"] / med["generate_cpu_s"], 3),
        "previews_median": statistics.median(raw["previews"]), "same_pixels": raw["same_pixels"],
        "load_avg": round(os.getloadavg()[0], 2), "cpus": os.cpu_count(),
        **{key: [round(v, 4) for v in raw[key]] for key in ("generate_s", "tui_s")},
    }
    if args.json:
        print(json.dumps(report))
    else:
        print(f"{report['n']} sprites, {report['request']}, {report['backend']} (threads {args.threads or 'default'}),"
              f" {args.rounds} rounds, load avg {report['load_avg']:.1f} on {report['cpus']} CPUs")
        print(f"difftool generate: {med['generate_s']:.3f} s ({med['generate_cpu_s']:.2f} CPU-s)   "
              f"TUI (Pilot, g -> done): {med['tui_s']:.3f} s ({med['tui_cpu_s']:.2f} CPU-s, "
              f"{report['previews_median']:g} preview frames)")
        print(f"ratio TUI / generate: {report['ratio']:.2f}x wall, {report['cpu_ratio']:.2f}x CPU   "
              f"same pixels: {raw['same_pixels']}")
    return 0 if raw["same_pixels"] else 1


if __name__ == "__main__":
    sys.exit(main())
