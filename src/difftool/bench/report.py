"""Markdown report of a ``benchmarks/run_benchmarks.py`` record (machine, targets, one table per model,
end-to-end times, int8 parity, profile)."""

from __future__ import annotations

from typing import Any


def _f(value: float | None, fmt: str = ".1f", suffix: str = "") -> str:
    return "-" if value is None else f"{format(value, fmt)}{suffix}"


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.2f}" if value < 10 else f"{value:.1f}" if value < 100 else f"{value:.0f}"


def machine_lines(record: dict[str, Any]) -> list[str]:
    m, peak, load = record["machine"], record["peak"], record["load_average"]
    v = m.get("versions", {})
    return [
        f"- **Machine**: {m.get('cpu_model')} (family {m.get('cpu_family')}, {m.get('cpu_mhz')} MHz), "
        f"{m.get('logical_cpus')} logical CPUs, affinity {m.get('affinity')}, SIMD {', '.join(m.get('simd', []))}; "
        f"host `{m.get('host')}`; {m.get('os')}",
        f"- **Threads pinned**: {record['threads']} (onnxruntime intra-op, torch.set_num_threads, BLAS of the peak)",
        f"- **fp32 matmul peak (measured in this run)**: {peak['gflops']:.1f} GFLOP/s "
        f"({peak['blas']}, best sgemm of n = {', '.join(peak['by_size'])})"
        + (f"; cross-check torch.mm: {record['torch_peak']['gflops']:.1f} GFLOP/s" if record.get("torch_peak") else ""),
        f"- **Load average (1/5/15 min)**: start {load['start']}, end {load['end']}"
        + (" — **the machine was busy: treat absolute numbers as indications**"
           if load["start"] and max(load["start"][0], load["end"][0]) >= 1.5 else ""),
        f"- **Versions**: python {m.get('python')}, numpy {v.get('numpy')}, onnxruntime {v.get('onnxruntime')}, "
        f"onnx {v.get('onnx')}, torch {v.get('torch')}, diffusers {record.get('diffusers_version')}",
        f"- **Method**: interleaved round-robin per repeat (order rotated), {record['options']['repeats']} forward "
        f"samples of >= {record['options']['block_s']} s each, {record['options']['loop_repeats']} sampling loops; "
        "median with min-max; FLOPs by FlopCounterMode (2 per multiply-add); "
        "loop overhead = share of the loop spent outside the network, timed inside the same loops",
    ]


def targets_table(targets: list[dict[str, Any]]) -> list[str]:
    lines = ["| target | required | measured | status |", "|---|---:|---:|---|"]
    for t in targets:
        status = "n/a" if t["pass"] is None else ("**met**" if t["pass"] else "**missed**")
        lines.append(f"| {t['name']} | {t['required']} | {t['measured']} | {status} |")
    return lines


def model_table(model: dict[str, Any]) -> list[str]:
    steps = model["steps"]
    lines = [
        f"| backend | batch | ms/forward median (min-max) | U-Net steps/s | img·steps/s | × torch eager | "
        f"GFLOP/s | % peak | DDIM-{steps} loop s | loop overhead |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in model["rows"]:
        fwd = r["forward"]
        lines.append(
            f"| {r['runner']} | {r['batch']} | {_ms(fwd['median_ms'])} ({_ms(fwd['min_ms'])}-{_ms(fwd['max_ms'])}) | "
            f"{r['steps_per_s']:.1f} | {r['images_steps_per_s']:.0f} | "
            f"{_f(r.get('vs_eager'), '.2f', '×') if 'vs_python_loop' not in r else _f(r['vs_python_loop'], '.2f', '× py loop')} | "
            f"{_f(r.get('gflops'))} | {_f(100 * r['peak_fraction'] if r.get('peak_fraction') else None, '.0f', ' %')} | "
            f"{_f(r['loop']['median_s'], '.3f') if r.get('loop') else '-'} | "
            f"{_f(r.get('loop_overhead_pct'), '.1f', ' %')} |")
    return lines


def model_section(model: dict[str, Any]) -> list[str]:
    lines = [f"## {model['title']}", "",
             f"{model['flops_per_sample'] / 1e9:.3f} GFLOP per sample-step (FlopCounterMode), "
             f"{model['params'] / 1e6:.2f} M parameters; {model['weights']}. Load average at start "
             f"{model['load_average']}.", ""]
    lines += model_table(model)
    lines.append("")
    for note in model.get("notes", []):
        lines.append(f"- {note}")
    for skip in model["skipped"]:
        lines.append(f"- skipped **{skip['name']}**: {skip['reason']}")
    if model.get("compile_s"):
        per = ", ".join(f"batch {b}: {s:.1f} s" for b, s in model["compile_s"].items())
        lines.append(f"- torch.compile time (first call per batch shape, not in the table): {per}")
    return lines + [""]


def extras_section(extras: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    e2e = extras.get("e2e")
    if e2e:
        lines += ["## End to end: 16 class-conditioned sprites, guidance 2 (bundled model)", "",
                  "| backend | sampler | steps | forwards (batch 32) | load s | sample s median (min-max) | "
                  "img/s |", "|---|---|---:|---:|---:|---:|---:|"]
        for e in e2e:
            lines.append(f"| {e['backend']} | {e['sampler']} | {e['steps']} | {e['forwards']} | {e['load_s']:.2f} | "
                         f"{e['median_s']:.3f} ({e['min_s']:.3f}-{e['max_s']:.3f}) | {16 / e['median_s']:.1f} |")
        lines.append("")
    for key, q in extras.get("int8", {}).items():
        lines += [f"## int8 vs fp32 ({key})", "",
                  f"- speed: {q['speed']}",
                  f"- eps parity on held-out noisy inputs (batch {q.get('batch')}): max |Δ| {q['max_abs_err']:.4f}, "
                  f"relative L2 error {q['rel_err']:.4f}",
                  f"- DDIM-25 samples, same seeds (16 images, uint8): max |Δ| {q['sample_max_abs']:.0f}, "
                  f"mean |Δ| {q['sample_mean_abs']:.2f}, PSNR {q['sample_psnr']:.1f} dB",
                  f"- calibration: {q.get('calibration')}", ""]
    prof = extras.get("profile")
    if prof:
        lines += [f"## onnxruntime profile: {prof['title']}", "",
                  "| op type | share of node time | ms/forward | nodes |", "|---|---:|---:|---:|"]
        for op in prof["ops"]:
            lines.append(f"| {op['op']} | {100 * op['share']:.1f} % | {op['ms']:.3f} | {op['nodes']} |")
        lines += ["", *(f"- {line}" for line in prof.get("notes", []))]
        lines.append("")
    training = extras.get("training")
    if training:
        from difftool.bench.training import table

        lines += [f"## Training throughput ({training['threads']} threads, the real training loop)", "",
                  table(training), "", f"- bf16 autocast: {training['bf16']}", ""]
    return lines


def render_markdown(record: dict[str, Any]) -> str:
    lines = [f"# difftool benchmarks, {record['created']}", ""]
    lines += machine_lines(record) + ["", "## Targets (course ContextUnet unless noted; ratios from this one run)", ""]
    lines += targets_table(record["targets"]) + [""]
    for model in record["models"]:
        lines += model_section(model)
    lines += extras_section(record.get("extras", {}))
    return "\n".join(lines).rstrip() + "\n"
