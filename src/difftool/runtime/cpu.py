"""What this CPU reports: its /proc/cpuinfo fields, the SIMD and matrix features difftool cares about, and the
run-time choices that read them (bf16 and int8 matrix units). Standard library only.

Every fast path that depends on the CPU is chosen from these flags at run time, never assumed: the last
machines of this kind were an AMD Zen3 (AVX2 only) and an Intel Xeon with AVX-512, AVX512-BF16 and AMX.
"""

from __future__ import annotations

import os
from functools import lru_cache

# The features shown by `difftool doctor` and recorded by the benchmarks, in this order.
FEATURES = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni",
            "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16", "amx_int8", "asimd", "sve")
BF16_UNITS = ("amx_bf16", "avx512_bf16")  # bf16 matrix / dot-product instructions (else bf16 is emulated)
INT8_UNITS = ("amx_int8", "avx512_vnni", "avx_vnni")  # int8 dot products (else u8s8 via vpmaddubsw)
RUN_PRECISIONS = ("auto", "fp32", "bf16")  # of the PyTorch backend and of training (choose_precision)


def parse_cpuinfo(text: str) -> dict[str, str]:
    """The first processor block of a /proc/cpuinfo text as a dict."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if fields:
                break
            continue
        key, sep, value = line.partition(":")
        if sep and key.strip() not in fields:
            fields[key.strip()] = value.strip()
    return fields


@lru_cache(maxsize=1)
def cpuinfo() -> dict[str, str]:
    """This machine's first /proc/cpuinfo block (empty where it is not readable)."""
    try:
        with open("/proc/cpuinfo") as f:
            return parse_cpuinfo(f.read())
    except OSError:
        return {}


def flags(info: dict[str, str] | None = None) -> set[str]:
    """The CPU's feature flags (x86 ``flags`` or Arm ``Features``)."""
    info = cpuinfo() if info is None else info
    return set((info.get("flags") or info.get("Features") or "").split())


def features(info: dict[str, str] | None = None) -> list[str]:
    """The :data:`FEATURES` present, in that order."""
    have = flags(info)
    return [f for f in FEATURES if f in have]


def cores() -> int:
    """The cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def bf16_units(have: set[str] | None = None) -> str | None:
    """None when the CPU reports bf16 units (:data:`BF16_UNITS`; ``have``: these flags instead of this
    CPU's), else why not (bf16 would be emulated, slower than fp32): the run-time choice of a bf16 path."""
    if any(f in (flags() if have is None else have) for f in BF16_UNITS):
        return None
    return "this CPU reports neither amx_bf16 nor avx512_bf16 (bf16 would be emulated, slower than fp32)"


def int8_units(have: set[str] | None = None) -> str | None:
    """None when the CPU reports int8 dot-product units (:data:`INT8_UNITS`), else why not."""
    if any(f in (flags() if have is None else have) for f in INT8_UNITS):
        return None
    return ("this CPU reports none of amx_int8, avx512_vnni, avx_vnni (int8 runs as u8s8 through vpmaddubsw "
            "with 7-bit weights)")


def choose_precision(precision: str, device: str) -> tuple[str, str]:
    """(precision, why) of a PyTorch run on ``device`` ("cpu", "cuda"): ``auto`` is fp32, except bf16 autocast on a
    CPU that reports bf16 matrix units (:func:`bf16_units`); ``fp32`` and ``bf16`` are honoured as asked (bf16
    without the units is emulated and slow: for checking its numbers)."""
    from difftool.errors import DifftoolError

    if precision not in RUN_PRECISIONS:
        raise DifftoolError(f"unknown precision {precision!r}; choose one of: {', '.join(RUN_PRECISIONS)}")
    if precision != "auto":
        return precision, "asked for"
    if device != "cpu":
        return "fp32", "auto: bf16 autocast is chosen on CPUs only"
    missing = bf16_units()
    return ("fp32", f"auto: {missing}") if missing else ("bf16", "auto: the CPU has bf16 matrix units")
