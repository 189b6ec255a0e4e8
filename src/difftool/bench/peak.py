"""This machine's fp32 matmul peak: numpy sgemm at 1024^3 .. 2048^3, BLAS threads pinned, best of N.

The figure the benchmark divides achieved GFLOP/s by. It is a *measured* ceiling (what a good sgemm
reaches here, now), not the datasheet peak: on a shared or throttled machine both move together.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

SIZES = (1024, 1536, 2048)


@dataclass
class Peak:
    """Best GFLOP/s over sizes and repeats (2 n^3 FLOPs per n x n x n sgemm)."""

    gflops: float
    threads: int | None
    by_size: dict[int, float] = field(default_factory=dict)  # best GFLOP/s per n
    blas: str = ""
    seconds: float = 0.0  # time spent measuring

    def to_dict(self) -> dict[str, object]:
        return {"gflops": self.gflops, "threads": self.threads, "blas": self.blas,
                "by_size": {str(k): v for k, v in self.by_size.items()}, "seconds": self.seconds}


@contextlib.contextmanager
def blas_threads(threads: int | None) -> Iterator[str]:
    """Limit numpy's BLAS to ``threads`` threads inside the block (threadpoolctl when installed);
    yields a short description of the BLAS library."""
    try:
        from threadpoolctl import threadpool_info, threadpool_limits
    except ImportError:
        yield "unknown BLAS (threadpoolctl missing: threads not pinned)"
        return
    blas = [i for i in threadpool_info() if i.get("user_api") == "blas"]
    name = ", ".join(f"{i.get('internal_api')} {i.get('version')}" for i in blas) or "unknown BLAS"
    if threads is None:
        yield name
        return
    with threadpool_limits(limits=threads, user_api="blas"):
        yield name


def _best_gflops(matmul, n: int, repeats: int) -> float:
    """GFLOP/s of the fastest of ``repeats`` timed calls of an n x n x n ``matmul`` (after one warm-up
    call: thread pool start, page faults)."""
    matmul()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        matmul()
        best = min(best, time.perf_counter() - t0)
    return 2.0 * n**3 / best / 1e9


def measure_peak(threads: int | None = None, sizes: tuple[int, ...] = SIZES, repeats: int = 5,
                 seed: int = 0) -> Peak:
    """Best sgemm GFLOP/s with ``threads`` BLAS threads (None: the library's default)."""
    rng = np.random.default_rng(seed)
    by_size: dict[int, float] = {}
    start = time.perf_counter()
    with blas_threads(threads) as blas:
        for n in sizes:
            a = rng.standard_normal((n, n), dtype=np.float32)
            b = rng.standard_normal((n, n), dtype=np.float32)
            out = np.empty((n, n), dtype=np.float32)
            by_size[n] = _best_gflops(lambda: np.matmul(a, b, out=out), n, repeats)  # noqa: B023
    return Peak(max(by_size.values()), threads, by_size, blas, time.perf_counter() - start)


def measure_torch_peak(threads: int, sizes: tuple[int, ...] = SIZES, repeats: int = 5) -> Peak:
    """The same measurement with ``torch.mm`` (MKL/oneDNN sgemm): a cross-check of the numpy figure,
    since which BLAS reaches the higher rate differs between machines. Needs torch."""
    import torch

    torch.set_num_threads(threads)
    by_size: dict[int, float] = {}
    start = time.perf_counter()
    gen = torch.Generator().manual_seed(0)
    for n in sizes:
        a, b = torch.randn(n, n, generator=gen), torch.randn(n, n, generator=gen)
        out = torch.empty(n, n)
        by_size[n] = _best_gflops(lambda: torch.mm(a, b, out=out), n, repeats)  # noqa: B023
    return Peak(max(by_size.values()), threads, by_size, f"torch {torch.__version__} mm",
                time.perf_counter() - start)
