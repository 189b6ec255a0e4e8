"""Training throughput per preset: images/s of the real training loop (``difftool train``), a few steps each.

Each case runs :func:`difftool.train.loop.train` for ``steps`` optimizer steps on its dataset (the shared
data folder when present, else skipped with the reason), in a scratch folder, at the given threads, and
reads the loop's own rate from ``log.jsonl`` (logged every ``steps // 2``: the second record covers the
steady half, after the first steps' warm-up). ``bf16``: also time the case under CPU bf16 autocast where the
CPU has bf16 matrix units (:func:`difftool.runtime.cpu.bf16_units`); elsewhere that row says why it is not run.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from difftool.errors import DifftoolError


@dataclass(frozen=True)
class TrainCase:
    preset: str
    dataset: str
    data: str  # folder under the shared data root ("" for the bundled digits)
    batch: int = 64


CASES = (
    TrainCase("sprite", "sprites", "dawnlike"),
    TrainCase("course", "sprites", "dawnlike", batch=100),
    TrainCase("mnist-cpu", "mnist", "mnist"),
    TrainCase("mnist", "mnist", "mnist"),
    TrainCase("tiny", "digits", ""),
)


def run_case(case: TrainCase, data_root: Path, steps: int, threads: int, precision: str = "fp32") -> dict[str, Any]:
    """One preset's images/s in ``precision`` (fp32 or bf16 autocast), or ``skipped`` with the reason."""
    from rich.console import Console

    from difftool.train.loop import TrainConfig, train

    row: dict[str, Any] = {"preset": case.preset, "dataset": case.dataset, "batch": case.batch, "steps": steps,
                           "precision": precision}
    data = () if not case.data else (str(data_root / case.data),)
    if data and not Path(data[0]).is_dir():
        return {**row, "skipped": f"no data at {data[0]}"}
    with tempfile.TemporaryDirectory(prefix="difftool-train-bench-") as tmp:
        cfg = TrainConfig(dataset=case.dataset, data=data, out=tmp, model=case.preset, max_steps=steps,
                          batch_size=case.batch, sample_every=0, save_every=10 * steps, log_every=max(1, steps // 2),
                          threads=threads, device="cpu", resume=False, warmup_steps=1, precision=precision)
        try:
            train(cfg, console=Console(quiet=True))  # the benchmark prints its own table
        except DifftoolError as exc:
            return {**row, "skipped": str(exc)}
        records = [json.loads(line) for line in (Path(tmp) / "log.jsonl").read_text().splitlines() if line.strip()]
    return {**row, "images_per_s": records[-1]["images_per_s"], "loss": records[-1]["loss"]}


def train_throughput(data_root: Path, steps: int = 20, threads: int = 2,
                     cases: tuple[TrainCase, ...] = CASES) -> dict[str, Any]:
    """Every case's images/s, plus whether bf16 autocast applies on this CPU."""
    import torch

    from difftool.runtime.cpu import bf16_units

    torch.set_num_threads(threads)
    missing = bf16_units()
    precisions = ("fp32",) if missing else ("fp32", "bf16")  # bf16 only where the CPU has the units
    return {"threads": threads, "bf16": missing or "available",
            "rows": [run_case(case, data_root, steps, threads, p) for case in cases for p in precisions]}


def table(result: dict[str, Any]) -> str:
    lines = ["| preset | dataset | batch | precision | images/s |", "|---|---|---:|---|---:|"]
    for r in result["rows"]:
        rate = f"{r['images_per_s']:.1f}" if "images_per_s" in r else f"skipped: {r['skipped']}"
        lines.append(f"| {r['preset']} | {r['dataset']} | {r['batch']} | {r.get('precision', 'fp32')} | {rate} |")
    return "\n".join(lines)
