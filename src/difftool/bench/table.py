"""Presenting a :func:`~difftool.bench.run.run_bench` record: a Rich table and the JSON text."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from rich import box
from rich.table import Table


def _num(value: float | None, fmt: str = ".1f") -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return format(value, fmt)


def _si(flops: int | None) -> str:
    if not flops:
        return "-"
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if flops >= scale:
            return f"{flops / scale:.3g} {unit}"
    return str(flops)


def render_table(result: dict[str, Any]) -> Table:
    """One row per backend and batch, then one row per skipped backend (reasons in the caption)."""
    loop = f"{result['sampler']}-{result['steps']}"
    peak = result.get("peak", {}).get("gflops")
    load = result.get("load_average", {})
    machine = result.get("machine", {})
    title = (f"difftool bench: {Path(result['artifact']).name}, {loop}, guidance {result['guidance']:g}, "
             f"{result['threads']['requested']} threads")
    lines = [
        f"{machine.get('cpu_model')} ({machine.get('available_cores')} cores), fp32 matmul peak "
        f"{_num(peak)} GFLOP/s, load avg {load.get('start')} -> {load.get('end')}",
        f"FLOPs per sample {_si(result['flops'].get('per_sample'))} ({result['flops'].get('source')}); "
        "fwd ms = median forward (min/max in --json); ovh = share of the loop spent outside the network; "
        "RSS = process peak; x loop = Python loop time / generator time (generator rows, same run)",
    ]
    lines += [f"skipped {s['backend']}: {s['reason']}" for s in result["skipped"]]
    lines += list(result.get("notes", ()))  # e.g. the diffusers-pipeline / ORT ratio of a diffusers folder
    lines += [f"! {r['backend']} batch {r['batch']}: not a figure: {r['suspect']['reason']}"
              for r in result["results"] if r.get("suspect")]
    table = Table(title=title, caption="\n".join(lines), caption_justify="left", box=box.SIMPLE_HEAVY,
                  pad_edge=False, collapse_padding=True)
    table.add_column("backend", min_width=10)
    for name in ("batch", "fwd ms", "steps/s", "img·st/s", f"{loop} s", "ovh %", "GFLOP/s", "% peak",
                 "RSS MB", "x loop"):
        table.add_column(name, justify="right")
    for row in result["results"]:
        fwd = row["forward"]
        fraction = row["peak_fraction"]
        cells = [_num(fwd["median_ms"], ".2f"),
                 _num(row["unet_steps_per_s"]), _num(row["images_steps_per_s"]),
                 _num(row["loop"]["median_s"], ".3f"), _num(row["loop_overhead_pct"]),
                 _num(row["gflops"]), _num(100 * fraction if fraction is not None else None)]
        name = row["backend"]
        if row.get("suspect"):  # timings disturbed: shown struck through, explained in the caption
            cells = [f"[dim strike]{c}[/]" for c in cells]
            name = f"[yellow]! {name}[/]"
        table.add_row(name, str(row["batch"]), *cells, _num(row["peak_rss_mb"], ".0f"),
                      _num(row.get("speedup_vs_python_loop"), ".2f"))
    for skip in result["skipped"]:
        table.add_row(skip["backend"], "-", "[dim]skip[/]", *["-"] * 8)
    return table


def to_json(result: dict[str, Any], indent: int | None = 2) -> str:
    """The record as JSON text (non-finite floats become null, so any JSON reader accepts it)."""
    return json.dumps(_finite(result), indent=indent, sort_keys=False)


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        return _finite(value.item())
    return value


def write_json(result: dict[str, Any], path: str | Path) -> Path:
    """Write the JSON record to ``path`` (parents created)."""
    from difftool.fileio import atomic_write

    text = to_json(result) + "\n"
    return atomic_write(Path(path), lambda tmp: tmp.write_text(text))
