"""Numerical parity of an exported graph: onnxruntime (CPU EP) against PyTorch eager.

Inputs are seeded and realistic: Gaussian ``x``, timesteps drawn from the schedule's valid range and
converted to network time exactly as the runtime does, and contexts cycling through one-hot, zeros
(unconditional) and a two-class mix.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from difftool.config import ModelCard
from difftool.errors import DifftoolError
from difftool.runtime.schedules import make_schedule

FP32_TOL = 1e-4
BATCH_SIZES = (1, 3)


def parity_inputs(card: ModelCard, batch: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Seeded graph feeds for ``card``: ``x`` (B,C,H,W), ``t`` (B,) and ``context`` (B,K) if conditional."""
    rng = np.random.default_rng(seed)
    s, c = card.image_size, card.channels
    schedule = make_schedule(card.schedule)
    steps = rng.integers(schedule.t_min, schedule.t_max + 1, size=batch)
    feeds = {
        "x": rng.standard_normal((batch, c, s, s)).astype(np.float32),
        "t": np.array([schedule.model_time(int(i)) for i in steps], dtype=np.float32),
    }
    if card.conditional:
        feeds["context"] = mixed_contexts(rng, batch, card.num_classes)
    return feeds


def mixed_contexts(rng: np.random.Generator, batch: int, k: int) -> np.ndarray:
    """(B, K) rows cycling one-hot / zeros / a two-class fractional mix."""
    ctx = np.zeros((batch, k), dtype=np.float32)
    for row in range(batch):
        kind = row % 3
        if kind == 0:
            ctx[row, rng.integers(k)] = 1.0
        elif kind == 2:
            a, b = rng.choice(k, size=2, replace=k < 2)
            w = float(rng.uniform(0.2, 0.8))
            ctx[row, a] += w
            ctx[row, b] += 1.0 - w
    return ctx


def cpu_session(path: str | Path, threads: int = 1):
    """A plain CPU onnxruntime session with ``threads`` intra-op threads."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def torch_eps(module, card: ModelCard, feeds: dict[str, np.ndarray]) -> np.ndarray:
    """PyTorch eager eps for ``feeds`` (the reference)."""
    import torch

    with torch.inference_mode():
        ctx = torch.from_numpy(feeds["context"]) if card.conditional else None
        out = module.eval()(torch.from_numpy(feeds["x"]), torch.from_numpy(feeds["t"]), ctx)
    return out.float().numpy()


def measure(onnx_path: str | Path, module, card: ModelCard, batch_sizes=BATCH_SIZES,
            seed: int = 0) -> dict[int, float]:
    """Max abs error of ORT vs eager per batch size (no threshold)."""
    sess = cpu_session(onnx_path)
    errors = {}
    for i, batch in enumerate(batch_sizes):
        feeds = parity_inputs(card, batch, seed + i)
        got = sess.run(["eps"], feeds)[0]
        errors[batch] = float(np.max(np.abs(got - torch_eps(module, card, feeds))))
    return errors


def require(errors: dict[int, float], tol: float = FP32_TOL) -> None:
    """DifftoolError when any error exceeds ``tol`` (or is not finite)."""
    worst = max(errors.values())
    if not np.isfinite(worst):
        raise DifftoolError("parity check failed: the model's output is non-finite (NaN or inf) on the parity "
                            "inputs; its weights overflow float32 (a corrupt or diverged checkpoint)")
    if worst > tol:
        raise DifftoolError(f"parity check failed: max abs error {worst:.3g} > {_sci(tol)}")


def _sci(value: float) -> str:
    """1e-4 rather than 0.0001 or 1e-04."""
    mantissa, exp = f"{value:.0e}".split("e")
    return f"{mantissa}e{int(exp)}"


def check_parity(onnx_path: str | Path, module, card: ModelCard, batch_sizes=BATCH_SIZES,
                 tol: float = FP32_TOL, seed: int = 0) -> dict[int, float]:
    """:func:`measure` then :func:`require`; returns the per-batch errors."""
    errors = measure(onnx_path, module, card, batch_sizes, seed)
    require(errors, tol)
    return errors


@dataclass
class PrecisionReport:
    """A reduced-precision graph against its fp32 source, measured in one process."""

    precision: str  # "int8" | "fp16"
    max_abs_err: float  # max |eps_low - eps_fp32|
    rel_err: float  # ||eps_low - eps_fp32||_2 / ||eps_fp32||_2
    fp32_ms: float  # median ms per forward at ``batch`` on the CPU EP
    low_ms: float
    batch: int
    threads: int
    calibration: str = ""

    @property
    def speedup(self) -> float:
        return self.fp32_ms / self.low_ms if self.low_ms > 0 else float("nan")


def time_forward(sessions: list, feeds: dict[str, np.ndarray], rounds: int = 5, per_round: int = 3) -> list[float]:
    """Median ms per forward of each session, interleaved round by round (fair under CPU noise)."""
    for sess in sessions:  # warm up: allocator, kernel selection
        for _ in range(2):
            sess.run(["eps"], feeds)
    samples: list[list[float]] = [[] for _ in sessions]
    for _ in range(rounds):
        for i, sess in enumerate(sessions):
            start = time.perf_counter()
            for _ in range(per_round):
                sess.run(["eps"], feeds)
            samples[i].append((time.perf_counter() - start) * 1e3 / per_round)
    return [float(np.median(s)) for s in samples]


def compare_precision(fp32_path: str | Path, low_path: str | Path, card: ModelCard, precision: str, *,
                      feeds: dict[str, np.ndarray] | None = None, batch: int = 16, threads: int = 1,
                      seed: int = 1234, calibration: str = "") -> PrecisionReport:
    """Error and speed of ``low_path`` vs ``fp32_path`` (both on the CPU EP, ``threads`` threads)."""
    feeds = feeds if feeds is not None else parity_inputs(card, batch, seed)
    ref_sess, low_sess = cpu_session(fp32_path, threads), cpu_session(low_path, threads)
    ref = ref_sess.run(["eps"], feeds)[0].astype(np.float64)
    low = low_sess.run(["eps"], feeds)[0].astype(np.float64)
    diff = low - ref
    rel = float(np.linalg.norm(diff) / max(np.linalg.norm(ref), 1e-30))
    fp32_ms, low_ms = time_forward([ref_sess, low_sess], feeds)
    return PrecisionReport(precision, float(np.max(np.abs(diff))), rel, fp32_ms, low_ms,
                           int(feeds["x"].shape[0]), threads, calibration)
