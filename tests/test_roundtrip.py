"""End to end: train a tiny model -> export -> generate without torch; whole-loop backend parity."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="round-trip tests train and export with torch")
pytest.importorskip("sklearn", reason="the digits dataset needs scikit-learn")

from difftool.runtime.loader import load  # noqa: E402
from difftool.runtime.pipeline import SampleRequest  # noqa: E402

HERE = Path(__file__).parent


def run(*args, timeout=300):
    return subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True, timeout=timeout,
                          env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin", "HOME": "/tmp"})


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny digits model trained for a few steps and exported (module-scoped: done once)."""
    root = tmp_path_factory.mktemp("rt")
    proc = run("-m", "difftool", "train", "--dataset", "digits", "--model", "tiny", "--max-steps", "30",
               "--batch-size", "32", "--sample-every", "0", "--threads", "1", "--out", root / "run")
    assert proc.returncode == 0, proc.stderr[-2000:]
    ckpt = root / "run" / "model.safetensors"
    proc = run("-m", "difftool", "export", ckpt, "-o", root / "digits.onnx", "--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    return ckpt, root / "digits.onnx"


def test_export_reports_parity(trained):
    from difftool.runtime.artifact import read_card

    ckpt, onnx_path = trained
    assert read_card(onnx_path) == read_card(ckpt)


def test_generate_without_torch_writes_png_byte_identical(trained, tmp_path):
    from PIL import Image

    _, onnx_path = trained
    outs = []
    for name in ("a.png", "b.png"):
        out = tmp_path / name
        proc = run(HERE / "_notorch.py", "generate", onnx_path, "--class", "7", "--n", "6", "--steps", "10",
                   "--seed", "3", "-o", out, "--gif", tmp_path / "anim.gif")
        assert proc.returncode == 0, proc.stderr[-2000:]
        outs.append(out.read_bytes())
    assert hashlib.sha256(outs[0]).digest() == hashlib.sha256(outs[1]).digest()
    assert Image.open(tmp_path / "a.png").size == ((6 * 8 + 7) * 4, (8 + 2) * 4)
    assert Image.open(tmp_path / "anim.gif").n_frames >= 10


@pytest.mark.parametrize("sampler, steps, guidance", [("ddim", 25, 2.0), ("ddpm", 1000, 1.0), ("dpmpp_2m", 12, 3.0)])
def test_whole_loop_parity_onnx_vs_torch(trained, sampler, steps, guidance):
    ckpt, onnx_path = trained
    ort_pipe = load(onnx_path, backend="ort-cpu", threads=1)
    torch_pipe = load(ckpt, backend="torch-cpu", threads=1)
    ctx = ort_pipe.context_from_spec("3=0.5,8=0.5", 4)
    req = SampleRequest(n=4, context=ctx, sampler=sampler, steps=steps, guidance=guidance, seed=11)
    a, b = ort_pipe.sample(req), torch_pipe.sample(req)
    assert np.isfinite(a).all()
    assert float(np.abs(a - b).max()) <= 1e-4
