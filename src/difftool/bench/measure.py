"""Timing helpers (warm-up, time-boxed repeats, median/min/max), memory and machine facts.

Torch-free. A measurement is a list of *samples*; each sample is the mean time per call over a block of
calls long enough (``block_s``) for the timer to be exact, and a measurement stops after ``repeats``
samples or once it has spent ``max_s`` (keeping at least ``min_repeats`` samples), so one slow case
(batch 64 on a 2-core CPU) cannot blow the time budget of a whole benchmark run.
"""

from __future__ import annotations

import os
import platform
import resource
import socket
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any


@dataclass
class Timing:
    """Seconds per call: one sample per repeat (each sample averages ``calls_per_sample`` calls)."""

    samples: list[float] = field(default_factory=list)
    calls_per_sample: int = 1

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def min(self) -> float:
        return min(self.samples)

    @property
    def max(self) -> float:
        return max(self.samples)

    @property
    def calls(self) -> int:
        return self.calls_per_sample * len(self.samples)

    def add(self, seconds_per_call: float) -> None:
        self.samples.append(seconds_per_call)

    def to_dict(self, scale: float = 1e3, unit: str = "ms") -> dict[str, Any]:
        """``{median_ms, min_ms, max_ms, repeats, calls}`` (or another unit via ``scale``)."""
        return {
            f"median_{unit}": self.median * scale,
            f"min_{unit}": self.min * scale,
            f"max_{unit}": self.max * scale,
            "repeats": len(self.samples),
            "calls": self.calls,
        }


@dataclass(frozen=True)
class Budget:
    """How hard to measure one quantity.

    ``warmup`` untimed calls; then samples of ``calls_per_sample(...)`` calls each, each block lasting at
    least ``block_s``; stop at ``repeats`` samples, or after ``max_s`` once ``min_repeats`` are taken.
    """

    repeats: int = 5
    warmup: int = 1
    block_s: float = 0.06
    max_s: float = 2.0
    min_repeats: int = 1


def timed(fn: Callable[[], object], calls: int = 1) -> float:
    """Mean seconds per call of ``calls`` back-to-back calls of ``fn``."""
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls


def calls_per_sample(fn: Callable[[], object], block_s: float) -> int:
    """How many calls of ``fn`` make a block of at least ``block_s`` (times one call to find out)."""
    one = timed(fn)
    return max(1, int(-(-block_s // max(one, 1e-9))))  # ceil(block_s / one)


def measure(fn: Callable[[], object], budget: Budget = Budget()) -> Timing:
    """Warm ``fn`` up, then take up to ``budget.repeats`` time-boxed samples of seconds per call."""
    for _ in range(budget.warmup):
        fn()
    per = calls_per_sample(fn, budget.block_s) if budget.block_s > 0 else 1
    timing = Timing(calls_per_sample=per)
    start = time.perf_counter()
    while len(timing.samples) < budget.repeats:
        timing.add(timed(fn, timing.calls_per_sample))
        if len(timing.samples) >= budget.min_repeats and time.perf_counter() - start >= budget.max_s:
            break
    return timing


# -- memory --------------------------------------------------------------------------------------------


def peak_rss_mb() -> float:
    """This process's peak resident set size so far (MiB; a high-water mark, it never goes down)."""
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return kb / 1024.0


def current_rss_mb() -> float | None:
    """This process's resident set size now (MiB), from /proc (None where /proc is missing)."""
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


# -- machine ---------------------------------------------------------------------------------------------


def load_average() -> list[float]:
    """The 1, 5 and 15 minute load averages (empty where the OS has none)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def machine_info() -> dict[str, Any]:
    """CPU model, cores, affinity, SIMD flags, OS, Python and library versions (no heavy imports)."""
    from difftool.runtime import cpu as cpu_features

    cpu = cpu_features.cpuinfo()
    try:
        affinity = sorted(os.sched_getaffinity(0))
    except AttributeError:
        affinity = []
    return {
        "host": socket.gethostname(),
        "cpu_model": cpu.get("model name") or platform.processor() or platform.machine(),
        "cpu_family": cpu.get("cpu family"),
        "cpu_mhz": float(cpu["cpu MHz"]) if "cpu MHz" in cpu else None,
        "logical_cpus": os.cpu_count(),
        "available_cores": cpu_features.cores(),
        "affinity": affinity,
        "simd": cpu_features.features(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "versions": {d: _version(d) for d in ("difftool", "numpy", "onnxruntime", "onnx", "torch")},
    }


# -- interleaved comparison ------------------------------------------------------------------------------


SETTLE_S = 0.2  # idle time before a block: onnxruntime's spinning pools stay busy for more than 10 ms


def interleaved(fns: dict[str, Callable[[], object]], budget: Budget = Budget(),
                settle_s: float = SETTLE_S) -> dict[str, Timing]:
    """Time several callables round-robin: each round takes one sample (a block of calls) of every
    callable, in an order rotated by one each round, so machine noise (other processes, turbo,
    thermal) hits all of them alike. ``settle_s`` of idle time between blocks lets one library's
    spinning worker threads go quiet before the next library runs (measured on 2 cores: with 10 ms,
    torch eager after an onnxruntime block ran 2.7x slower at batch 1; with 200 ms, unaffected). ``budget.max_s`` caps the rounds
    (at least ``budget.min_repeats`` are taken)."""
    names = list(fns)
    for name in names:
        for _ in range(budget.warmup):
            fns[name]()
    timings = {name: Timing(calls_per_sample=calls_per_sample(fns[name], budget.block_s)
                            if budget.block_s > 0 else 1) for name in names}
    start = time.perf_counter()
    for rnd in range(budget.repeats):
        for name in names[rnd % len(names):] + names[:rnd % len(names)]:
            time.sleep(settle_s)
            timings[name].add(timed(fns[name], timings[name].calls_per_sample))
        if rnd + 1 >= budget.min_repeats and time.perf_counter() - start >= budget.max_s:
            break
    return timings
