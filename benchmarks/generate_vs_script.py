#!/usr/bin/env python
"""``difftool generate`` as a whole process against a plain onnxruntime + numpy script doing the same work.

Both run DDIM-25 (eta 0), 16 guided sprites (guidance 3, 32 rows per forward) on the same graph (the bundled
``sprites.onnx``) with the same onnxruntime thread count and write a PNG. Each is started as a fresh process,
interleaved, ``--repeats`` times; reported: median wall time, median peak RSS (``ru_maxrss`` of the child), and
the ratios. Start-up is measured apart: ``python -c 'import difftool.cli'`` and ``difftool --help`` against
``python -c 'import onnxruntime, numpy'``. The plain script is written to a scratch folder from
:data:`PLAIN` (30 lines: the whole DDIM loop with classifier-free guidance, nothing else).

    python benchmarks/generate_vs_script.py               # ~1 min on 2 cores
    python benchmarks/generate_vs_script.py --repeats 9 --threads 1
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MODEL = REPO / "src" / "difftool" / "assets" / "sprites.onnx"

PLAIN = '''
import sys, numpy as np, onnxruntime as ort
from PIL import Image
path, out, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])
so = ort.SessionOptions(); so.intra_op_num_threads = threads; so.inter_op_num_threads = 1
sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
T, n, g, steps = 1000, 16, 3.0, 25
s = 0.008; f = np.cos((np.arange(T + 1) / T + s) / (1 + s) * np.pi / 2) ** 2
ab = np.clip(f[1:] / f[0], 1e-12, 1.0)                       # cosine alpha_bar, t = 0..T-1
ts = np.round(np.arange(T, 0, -T / steps)).astype(int) - 1   # trailing spacing
rng = np.random.default_rng(0)
x = rng.standard_normal((n, 3, 16, 16)).astype(np.float32)
ctx = np.zeros((2 * n, 5), np.float32); ctx[np.arange(n), np.arange(n) % 5] = 1
for i, t in enumerate(ts):
    eps2 = sess.run(None, {"x": np.concatenate([x, x]), "t": np.full(2 * n, t, np.float32), "context": ctx})[0]
    eps = eps2[n:] + g * (eps2[:n] - eps2[n:])
    a = ab[t]; a_prev = ab[ts[i + 1]] if i + 1 < len(ts) else 1.0
    x0 = np.clip((x - np.sqrt(1 - a) * eps) / np.sqrt(a), -1, 1)
    eps = (x - np.sqrt(a) * x0) / np.sqrt(1 - a)
    x = (np.sqrt(a_prev) * x0 + np.sqrt(1 - a_prev) * eps).astype(np.float32)
img = ((x.clip(-1, 1) + 1) * 127.5).round().astype(np.uint8).transpose(0, 2, 3, 1)
grid = img.reshape(2, 8, 16, 16, 3).transpose(0, 2, 1, 3, 4).reshape(32, 128, 3)
Image.fromarray(grid).resize((512, 128), Image.NEAREST).save(out)
'''


def run_child(cmd: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall s, peak RSS MiB) of one fresh child (posix_spawn + wait4; its output goes to /dev/null)."""
    start = time.perf_counter()
    quiet = [(os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0), (os.POSIX_SPAWN_OPEN, 2, os.devnull, os.O_WRONLY, 0)]
    pid = os.posix_spawn(cmd[0], cmd, env, file_actions=quiet)
    _, status, usage = os.wait4(pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(cmd)} exited with {os.waitstatus_to_exitcode(status)}")
    return wall, usage.ru_maxrss / 1024


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--model", type=Path, default=MODEL)
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "generate_vs_script.json")
    args = ap.parse_args(argv)
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    py = sys.executable
    with tempfile.TemporaryDirectory(prefix="difftool-gvs-") as tmp:
        plain = Path(tmp) / "plain.py"
        plain.write_text(PLAIN)
        cases = {
            "difftool generate": [py, "-m", "difftool", "generate", str(args.model), "--class", "hero", "-n", "16",
                                  "--sampler", "ddim", "--steps", "25", "--eta", "0", "--guidance", "3",
                                  "--threads", str(args.threads), "-o", f"{tmp}/g.png"],
            "plain script": [py, str(plain), str(args.model), f"{tmp}/p.png", str(args.threads)],
            "import difftool.cli": [py, "-c", "import difftool.cli"],
            "difftool --help": [py, "-m", "difftool", "--help"],
            "import onnxruntime, numpy": [py, "-c", "import onnxruntime, numpy"],
        }
        samples: dict[str, list[tuple[float, float]]] = {name: [] for name in cases}
        for cmd in cases.values():  # warm the page cache once
            run_child(cmd, env)
        for _ in range(args.repeats):
            for name, cmd in cases.items():
                samples[name].append(run_child(cmd, env))
    rows = {name: {"wall_s": statistics.median(w for w, _ in vals), "rss_mib": statistics.median(m for _, m in vals),
                   "walls": [round(w, 3) for w, _ in vals]} for name, vals in samples.items()}
    gen, plain_row = rows["difftool generate"], rows["plain script"]
    result = {"threads": args.threads, "repeats": args.repeats, "model": str(args.model), "rows": rows,
              "wall_ratio": gen["wall_s"] / plain_row["wall_s"], "rss_ratio": gen["rss_mib"] / plain_row["rss_mib"],
              "load_average": os.getloadavg()}
    lines = ["| process | median wall s | peak RSS MiB |", "|---|---:|---:|"]
    lines += [f"| {name} | {r['wall_s']:.3f} | {r['rss_mib']:.0f} |" for name, r in rows.items()]
    lines.append(f"\ngenerate / plain script: wall {result['wall_ratio']:.2f}x, memory {result['rss_ratio']:.2f}x "
                 f"({args.threads} threads, median of {args.repeats}, interleaved)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
