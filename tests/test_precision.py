"""Run-time precision of the PyTorch backend: bf16 autocast chosen from the CPU's flags, never assumed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import difftool.runtime.cpu as cpu
from difftool.errors import DifftoolError
from difftool.models.checkpoint import load
from difftool.models.denoiser import TorchDenoiser
from difftool.runtime.cpu import choose_precision

BUNDLED = Path(__file__).resolve().parents[1] / "src" / "difftool" / "assets" / "sprites.safetensors"


def test_auto_follows_the_cpu_flags(monkeypatch):
    monkeypatch.setattr(cpu, "flags", lambda info=None: {"avx2", "fma"})
    assert choose_precision("auto", "cpu")[0] == "fp32"
    assert "neither amx_bf16 nor avx512_bf16" in choose_precision("auto", "cpu")[1]
    monkeypatch.setattr(cpu, "flags", lambda info=None: {"avx2", "avx512f", "amx_bf16"})
    assert choose_precision("auto", "cpu") == ("bf16", "auto: the CPU has bf16 matrix units")
    assert choose_precision("auto", "cuda")[0] == "fp32"  # autocast is chosen on CPUs only
    assert choose_precision("fp32", "cpu") == ("fp32", "asked for")
    with pytest.raises(DifftoolError, match="unknown precision 'fp8'"):
        choose_precision("fp8", "cpu")


def test_bf16_autocast_is_close_to_fp32_but_not_equal():
    loaded = load(BUNDLED)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 3, 16, 16)).astype(np.float32)
    t = np.array([50, 300, 600, 900], dtype=np.float32)
    ctx = np.eye(5, dtype=np.float32)[[0, 1, 2, 3]]
    fp32 = TorchDenoiser(loaded.module, loaded.card, precision="fp32")(x, t, ctx)
    bf16 = TorchDenoiser(loaded.module, loaded.card, precision="bf16")(x, t, ctx)
    assert bf16.dtype == np.float32 and bf16.shape == fp32.shape
    rel = float(np.sqrt(np.mean((bf16 - fp32) ** 2) / np.mean(fp32 ** 2)))
    assert 1e-4 < rel < 0.03, rel  # bf16 really ran (8-bit mantissa) and the eps stays within ~1-3 %
