"""Benchmarking: timing helpers, FLOP counting, this machine's matmul peak, ``difftool bench``.

Torch-free at import; ``run_bench`` imports torch only for torch backends and FLOP counting.
"""

from __future__ import annotations

from difftool.bench.run import run_bench
from difftool.bench.table import render_table, to_json

__all__ = ["render_table", "run_bench", "to_json"]
