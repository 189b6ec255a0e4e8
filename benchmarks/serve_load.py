#!/usr/bin/env python
"""Load test of ``difftool serve``: the step-level scheduler against a serial one, and against offline sampling.

Starts two real ``difftool serve`` processes on free 127.0.0.1 ports (``--scheduler step`` and
``--scheduler serial``, same model, same pinned threads, same max batch), then for each concurrency level
(1, 4, 16 clients) runs a bounded closed loop on each server in turn (interleaved, so drifting machine load
hits both alike): every client asks for 16 sprites, one request after another, a fixed number of times.
Reports requests/s, sprites/s, p50/p99 latency, the mean batch occupancy (from ``/metrics``) and the served
sprite-steps/s as a share of offline ``difftool bench`` (the same sampling loop in-process, no HTTP) at the
batch each server actually ran: ``min(clients x 16, max_batch / 2)`` sprites for step, 16 for serial.

    python benchmarks/serve_load.py                       # a few minutes on 2 cores
    python benchmarks/serve_load.py --clients 1,4 --requests 2,2 --steps 4    # smoke
    python benchmarks/serve_load.py --n 1 --requests 24,12,6 --tag n1    # one sprite per request (a game)

Only 127.0.0.1 is contacted; every loop is bounded in requests and time; the servers are stopped at the end.
Writes ``<out-dir>/serve-<date>-<host>.json`` and ``<out-dir>/serve_latest.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from difftool.bench.measure import load_average, machine_info
from difftool.bench.run import bundled_artifact, run_bench
from difftool.runtime.artifact import read_card
from difftool.service.metrics import parse

REPO = Path(__file__).resolve().parents[1]
SCHEDULERS = ("step", "serial")
HOST = "127.0.0.1"  # never anything else


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def options(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--artifact", type=Path, default=None, help="model (default: the bundled sprite model)")
    p.add_argument("--clients", type=_ints, default=[1, 4, 16], help="concurrency levels")
    p.add_argument("--requests", type=_ints, default=[3, 2, 1], help="requests per client at each level")
    p.add_argument("--n", type=int, default=16, help="sprites per request")
    p.add_argument("--steps", type=int, default=10, help="sampling steps per request (the model's sampler)")
    p.add_argument("--threads", type=int, default=1, help="onnxruntime threads of the servers and of the bench")
    p.add_argument("--max-batch", type=int, default=128, help="network rows per tick of both servers")
    p.add_argument("--level-timeout", type=float, default=240.0, help="seconds one level may take")
    p.add_argument("--out-dir", type=Path, default=REPO / "benchmarks" / "results")
    p.add_argument("--tag", default="", help="suffix of the result files (e.g. n1: serve_latest-n1.md)")
    args = p.parse_args(argv)
    if len(args.requests) != len(args.clients):
        p.error("--requests needs one count per --clients level")
    return args


# -- servers -------------------------------------------------------------------------------------------------


class Server:
    """A ``difftool serve`` subprocess on a free loopback port."""

    def __init__(self, scheduler: str, args: argparse.Namespace):
        env = {**os.environ, "OMP_NUM_THREADS": str(args.threads),
               "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")])}
        cmd = [sys.executable, "-m", "difftool", "serve", "--host", HOST, "--port", "0",
               "--threads", str(args.threads), "--max-batch", str(args.max_batch), "--max-queue", "64",
               "--scheduler", scheduler]
        if args.artifact is not None:
            cmd.insert(4, str(args.artifact))
        self.scheduler = scheduler
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
        match = re.search(r"http://127\.0\.0\.1:\d+", self.proc.stderr.readline())
        if not match:
            self.stop()
            raise SystemExit(f"the {scheduler} server did not start")
        self.url = match.group(0)
        self.log: list[str] = []  # its later stderr lines, drained so the pipe never fills
        threading.Thread(target=lambda: self.log.extend(self.proc.stderr), daemon=True).start()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


async def _wait_healthy(client: httpx.AsyncClient, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if (await client.get("/healthz")).status_code == 200:
                return
        except httpx.TransportError:
            pass
        await asyncio.sleep(0.1)
    raise SystemExit("a server did not become healthy")


# -- one level ------------------------------------------------------------------------------------------------


def body(args: argparse.Namespace, classes: tuple[str, ...], i: int) -> dict[str, Any]:
    return {"class": classes[i % len(classes)], "n": args.n, "steps": args.steps, "seed": 1000 * i}


async def run_level(server: Server, clients: int, per_client: int, args: argparse.Namespace,
                    classes: tuple[str, ...]) -> dict[str, Any]:
    """``clients`` closed-loop clients, ``per_client`` requests each; latencies, wall time, metrics delta."""
    limits = httpx.Limits(max_connections=clients + 2)
    async with httpx.AsyncClient(base_url=server.url, timeout=args.level_timeout, limits=limits) as client:
        before = parse((await client.get("/metrics")).text)
        latencies: list[float] = []
        failures: list[str] = []

        async def one_client(c: int) -> None:
            for k in range(per_client):
                t0 = time.perf_counter()
                response = await client.post("/v1/generate", json=body(args, classes, c * per_client + k))
                if response.status_code != 200:
                    failures.append(f"{response.status_code} {response.text[:120]}")
                    continue
                latencies.append(time.perf_counter() - t0)

        start = time.perf_counter()
        tasks = [asyncio.create_task(one_client(c)) for c in range(clients)]
        done, pending = await asyncio.wait(tasks, timeout=args.level_timeout)
        for task in pending:
            task.cancel()
        wall = time.perf_counter() - start
        after = parse((await client.get("/metrics")).text)
    ticks = after["difftool_ticks_total"] - before["difftool_ticks_total"]
    rows = after["difftool_batch_rows_total"] - before["difftool_batch_rows_total"]
    ok = len(latencies)
    return {
        "scheduler": server.scheduler, "clients": clients, "requests": ok, "failed": len(failures) + len(pending),
        "failures": failures[:5], "wall_s": wall, "requests_per_s": ok / wall, "sprites_per_s": ok * args.n / wall,
        "sprite_steps_per_s": ok * args.n * args.steps / wall,
        "p50_s": float(np.percentile(latencies, 50)) if latencies else None,
        "p99_s": float(np.percentile(latencies, 99)) if latencies else None,
        "ticks": ticks, "occupancy": rows / (ticks * args.max_batch) if ticks else 0.0,
        "load_average": load_average(),
    }


def served_batch(scheduler: str, clients: int, args: argparse.Namespace) -> int:
    """Sprites per forward the server ran at this level (guided: 2 rows each)."""
    return args.n if scheduler == "serial" else min(clients * args.n, args.max_batch // 2)


# -- the report -----------------------------------------------------------------------------------------------


def offline(args: argparse.Namespace, guidance: float) -> dict[int, float]:
    """Offline ``difftool bench`` sampling-loop sprite-steps/s at each batch the servers run."""
    batches = sorted({served_batch(s, c, args) for s in SCHEDULERS for c in args.clients})
    record = run_bench(args.artifact, steps=args.steps, batches=tuple(batches), backends=("ort",),
                       threads=args.threads, repeats=3, guidance=guidance)
    return {row["batch"]: row["batch"] * row["loop"]["steps"] / row["loop"]["median_s"] for row in record["results"]}


def table(levels: list[dict[str, Any]], bench: dict[int, float], args: argparse.Namespace) -> str:
    lines = ["| scheduler | clients | requests | req/s | sprites/s | p50 s | p99 s | occupancy | "
             "sprite-steps/s | offline bench (batch) | share |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in levels:
        batch = served_batch(r["scheduler"], r["clients"], args)
        ref = bench.get(batch)
        share = f"{100 * r['sprite_steps_per_s'] / ref:.0f} %" if ref else "-"
        lines.append(f"| {r['scheduler']} | {r['clients']} | {r['requests']} | {r['requests_per_s']:.3f} | "
                     f"{r['sprites_per_s']:.2f} | {r['p50_s']:.2f} | {r['p99_s']:.2f} | {100 * r['occupancy']:.0f} % | "
                     f"{r['sprite_steps_per_s']:.0f} | {ref:.0f} ({batch}) | {share} |")
    return "\n".join(lines)


def comparison(levels: list[dict[str, Any]]) -> list[str]:
    by = {(r["scheduler"], r["clients"]): r for r in levels}
    out = []
    for (name, clients), r in sorted(by.items()):
        serial = by.get(("serial", clients))
        if name == "step" and serial:
            out.append(f"- {clients} clients: step/serial throughput {r['sprites_per_s'] / serial['sprites_per_s']:.2f}x, "
                       f"p50 {r['p50_s']:.2f} s vs {serial['p50_s']:.2f} s")
    return out


async def drive(args: argparse.Namespace, classes: tuple[str, ...]) -> list[dict[str, Any]]:
    servers = [Server(s, args) for s in SCHEDULERS]
    try:
        async with httpx.AsyncClient(timeout=120) as client:
            for server in servers:
                client.base_url = server.url
                await _wait_healthy(client)
                await client.post("/v1/generate", json=body(args, classes, 0))  # warm-up
        levels = []
        for clients, per_client in zip(args.clients, args.requests, strict=True):
            for server in servers:
                result = await run_level(server, clients, per_client, args, classes)
                print(f"{server.scheduler:>6} {clients:>2} clients: {result['sprites_per_s']:.2f} sprites/s, "
                      f"p50 {result['p50_s']:.2f} s", file=sys.stderr)
                levels.append(result)
        return levels
    finally:
        for server in servers:
            server.stop()


def main(argv: list[str] | None = None) -> None:
    args = options(argv)
    artifact = args.artifact or bundled_artifact()
    card = read_card(artifact)
    guidance = float(card.recommended("guidance")) if card.supports_guidance else 1.0
    started = time.perf_counter()
    load_start = load_average()
    bench = offline(args, guidance)
    levels = asyncio.run(drive(args, card.class_names or ("",)))
    record = {"created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "artifact": str(artifact),
              "n": args.n, "steps": args.steps, "sampler": card.recommended("sampler"), "guidance": guidance,
              "threads": args.threads, "max_batch": args.max_batch, "offline_sprite_steps_per_s": bench,
              "levels": levels, "machine": machine_info(), "load_average": {"start": load_start, "end": load_average()},
              "seconds": time.perf_counter() - started}
    text = "\n".join([
        f"# difftool serve load test ({record['created']})", "",
        f"{args.n} sprites per request, {card.recommended('sampler')}-{args.steps}, guidance {guidance:g} "
        f"({2 * args.n if guidance != 1 else args.n} network rows per step), {args.threads} onnxruntime thread(s), "
        f"max batch {args.max_batch} rows; load average {load_start} at start, {record['load_average']['end']} "
        f"at end; {record['seconds']:.0f} s in all.", "",
        table(levels, bench, args), "", *comparison(levels), ""])
    args.out_dir.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now().strftime("%Y-%m-%dT%H%M")
    tag = f"-{args.tag}" if args.tag else ""
    (args.out_dir / f"serve{tag}-{stamp}-{socket.gethostname()}.json").write_text(json.dumps(record, indent=1))
    (args.out_dir / f"serve_latest{tag}.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
