"""The Rich table of an eval report."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from difftool.eval.metrics import DUPLICATE_RMS
from difftool.runtime.samplers import get_sampler

if TYPE_CHECKING:
    from difftool.eval.report import EvalReport


def _fmt(value: float | None, spec: str) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    return format(value, spec)


def _pct(value: float | None, digits: int) -> str:
    """A fraction as a percentage number without the sign (the column header carries it)."""
    return "—" if value is None or not math.isfinite(value) else f"{100 * value:.{digits}f}"


def render_table(report: EvalReport):
    """A rich Table: one row per configuration, best FID / accuracy in bold, references in the caption."""
    from rich import box
    from rich.table import Table

    heldout = report.judge.get("heldout_accuracy", {})
    judge_acc, judge_bal = heldout.get("overall"), heldout.get("balanced")
    title = f"Sample quality ({report.per_class} per class, seed {report.seed})"
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAVY, pad_edge=False, collapse_padding=True)
    table.add_column("sampler", no_wrap=True)
    table.add_column("steps", justify="right")
    table.add_column("pal", no_wrap=True)
    table.add_column("cfg", justify="right")
    table.add_column("acc", justify="right")
    for name in report.class_names:
        table.add_column(name, justify="right", style="dim")
    table.add_column("FID↓", justify="right")
    table.add_column("div", justify="right")
    table.add_column("dup", justify="right")
    table.add_column("on-pal", justify="right")
    table.add_column("colours", justify="right")
    table.add_column("s", justify="right")
    best_fid, best_acc = report.best("fid"), report.best("accuracy")
    for row in report.rows:
        acc = _pct(row.accuracy, 1)
        fid = _fmt(row.fid, ".2f")
        if row is best_acc and len(report.rows) > 1:
            acc = f"[bold]{acc}[/]"
        if row is best_fid and len(report.rows) > 1:
            fid = f"[bold]{fid}[/]"
        sampler = get_sampler(row.sampler).short.lower() + (f" η{row.eta:g}" if row.eta else "")
        sampler += f" σ²={row.variance}" if row.variance else ""
        table.add_row(
            sampler,
            str(row.steps),
            {"none": "raw", "sample": "in-loop", "post": "snap"}.get(row.palette, row.palette),
            f"{row.guidance:g}",
            acc,
            *[_pct(row.per_class_accuracy.get(name), 0) for name in report.class_names],
            fid,
            _fmt(row.diversity, ".1f"),
            _pct(row.duplicate_rate, 1),
            _pct(row.palette_fidelity, 1),
            "—" if row.distinct_colors is None else str(row.distinct_colors),
            f"{row.seconds:.0f}",
        )
    caption = []
    if judge_bal is not None:
        caption.append(f"acc, per-class and dup in %; acc is class-balanced; the judge scores {judge_bal:.1%} class-balanced "
                       f"({judge_acc:.1%} overall) on held-out real sprites: about what a perfect model gets")
    elif judge_acc is not None:
        caption.append(f"judge held-out accuracy {judge_acc:.1%} (a perfect model scores about this)")
    if report.fid_floor is not None:
        caption.append(f"FID floor (real vs real, same sample size) {report.fid_floor:.2f}")
    if report.diversity_real is not None:
        caption.append(f"div = mean pairwise RMS x 100 (real sprites {report.diversity_real:.2f})")
    caption.append(f"dup = share within RMS {DUPLICATE_RMS:g} of a real tile or its mirror")
    ref = report.palette or {}
    if ref.get("reference_colors"):
        caption.append(f"pal: raw output, in-loop = x0 projected onto the palette in the last steps, snap = raw "
                       f"then snapped; on-pal = % of non-background pixels within RMS {ref['tolerance_rms']:g}/255 of "
                       f"the {ref['reference_colors']}-colour training palette; colours = distinct colours in the row")
    for metric, why in report.unavailable.items():
        caption.append(f"{metric} unavailable: {why}")
    caption.extend(report.notes)
    table.caption = "; ".join(caption)
    table.caption_justify = "left"
    return table
