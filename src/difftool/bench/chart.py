"""Bar chart of a benchmark record, drawn with Pillow (no matplotlib): one panel per model, one group
of bars per batch size, one bar per backend; bar height = U-Net steps/s relative to torch eager."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont

PALETTE = ["#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860", "#da8bc3", "#8c8c8c",
           "#ccb974", "#64b5cd"]
PANEL_W, PANEL_H, MARGIN = 560, 360, 56


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def _ratios(model: dict[str, Any]) -> tuple[list[int], list[str], dict[tuple[str, int], float]]:
    batches = sorted({r["batch"] for r in model["rows"]})
    runners = list(dict.fromkeys(r["runner"] for r in model["rows"] if "vs_python_loop" not in r))  # per-step rows
    values = {(r["runner"], r["batch"]): r["vs_eager"] for r in model["rows"] if r.get("vs_eager")}
    return batches, runners, values


def _scale(values: list[float]) -> tuple[float, float, bool, list[float]]:
    """(low, high, log, ticks): linear from 0 up to 8x, log10 beyond (ratios can reach 100x)."""
    hi = max([1.0, *values])
    lo = min([1.0, *values])
    if hi <= 8 and lo > 0.05:
        step = 0.5 if hi <= 4 else 1.0
        ticks = [i * step for i in range(int(hi * 1.15 / step) + 1)]
        return 0.0, hi * 1.15, False, ticks
    lo_exp, hi_exp = math.floor(math.log10(lo)), math.ceil(math.log10(hi * 1.15))
    ticks = [m * 10.0**e for e in range(lo_exp, hi_exp + 1) for m in (1, 2, 5) if lo_exp <= math.log10(m * 10.0**e) <= hi_exp]
    return 10.0**lo_exp, 10.0**hi_exp, True, ticks


def _panel(draw: ImageDraw.ImageDraw, model: dict[str, Any], x0: int, y0: int, colors: dict[str, str]) -> None:
    batches, runners, values = _ratios(model)
    font, small = _font(15), _font(12)
    lo, hi, log, ticks = _scale(list(values.values()))
    draw.text((x0 + MARGIN, y0 + 6), f"{model['title']}: steps/s relative to torch eager"
              + (" (log scale)" if log else ""), fill="black", font=font)
    plot_l, plot_r, plot_t, plot_b = x0 + MARGIN, x0 + PANEL_W - 12, y0 + 34, y0 + PANEL_H - 40
    draw.line([(plot_l, plot_t), (plot_l, plot_b), (plot_r, plot_b)], fill="black")

    def y_of(v: float) -> float:
        if log:
            frac = (math.log10(max(v, lo)) - math.log10(lo)) / (math.log10(hi) - math.log10(lo))
        else:
            frac = v / hi
        return plot_b - (plot_b - plot_t) * frac

    for tick in ticks:
        y = y_of(tick)
        draw.line([(plot_l - 4, y), (plot_l, y)], fill="black")
        draw.text((x0 + 6, y - 7), f"{tick:g}x", fill="black", font=small)
    draw.line([(plot_l, y_of(1.0)), (plot_r, y_of(1.0))], fill="#999999")  # torch eager = 1
    group_w = (plot_r - plot_l) / max(1, len(batches))
    bar_w = group_w * 0.8 / max(1, len(runners))
    for gi, batch in enumerate(batches):
        gx = plot_l + gi * group_w + group_w * 0.1
        for ri, runner in enumerate(runners):
            v = values.get((runner, batch))
            if v is None:
                continue
            bx = gx + ri * bar_w
            draw.rectangle([bx, y_of(v), bx + max(1.0, bar_w - 2), plot_b], fill=colors[runner])
            if bar_w >= 24:
                draw.text((bx, y_of(v) - 14), f"{v:.2g}" if v < 10 else f"{v:.0f}", fill="black", font=small)
        draw.text((gx + group_w * 0.3, plot_b + 6), f"batch {batch}", fill="black", font=small)


def render_chart(record: dict[str, Any], path: str | Path) -> Path:
    """Write the PNG to ``path``; returns it."""
    models = [m for m in record["models"] if m["rows"]]
    runners = list(dict.fromkeys(r["runner"] for m in models for r in m["rows"] if "vs_python_loop" not in r))
    colors = {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(runners)}
    width = PANEL_W * max(1, len(models))
    cols = max(1, (width - 16) // 180)
    legend_h = 26 * ((len(runners) + cols - 1) // cols) + 54
    img = Image.new("RGB", (width, PANEL_H + legend_h), "white")
    draw = ImageDraw.Draw(img)
    for i, model in enumerate(models):
        _panel(draw, model, i * PANEL_W, 0, colors)
    font = _font(13)
    for i, name in enumerate(runners):
        lx, ly = 16 + (i % cols) * 180, PANEL_H + 8 + 26 * (i // cols)
        draw.rectangle([lx, ly + 2, lx + 14, ly + 16], fill=colors[name])
        draw.text((lx + 20, ly), name, fill="black", font=font)
    m, load = record["machine"], record["load_average"]
    footer = (f"{m.get('cpu_model')}, {record['threads']} threads, fp32 peak {record['peak']['gflops']:.0f} GFLOP/s; "
              f"load {load['start'][:1]} -> {load['end'][:1]}; {record['created']}")
    draw.text((16, PANEL_H + legend_h - 22), footer, fill="#444444", font=_font(11))
    from difftool.fileio import atomic_write

    return atomic_write(Path(path), lambda tmp: img.save(tmp, format="PNG"))
