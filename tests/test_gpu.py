"""The CUDA paths themselves (marked ``gpu``: skipped with the reason on machines without an NVIDIA GPU):
CUDA graphs against eager CUDA, capture while another thread allocates (the TUI's two workers), ort-cuda
on the GPU with IOBinding, and the backend check agreeing with what runs."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from difftool.runtime.backends import available_backends, make_denoiser

pytestmark = pytest.mark.gpu
ASSETS = Path(__file__).resolve().parents[1] / "src" / "difftool" / "assets"


def _feeds(card, batch: int, seed: int):
    from difftool.export.parity import parity_inputs

    f = parity_inputs(card, batch, seed=seed)
    return f["x"], f["t"], f.get("context", np.zeros((batch, 0), np.float32))


def _needs(backend: str) -> None:
    if reason := available_backends()[backend]:
        pytest.skip(f"{backend}: {reason}")


@pytest.fixture(scope="module")
def sprite_cuda():
    _needs("torch-cuda")
    from difftool.models.checkpoint import load
    from difftool.models.denoiser import TorchDenoiser

    loaded = load(ASSETS / "sprites.safetensors")
    return (TorchDenoiser(loaded.module, loaded.card, device="cuda", cuda_graphs=True),
            TorchDenoiser(loaded.module, loaded.card, device="cuda", cuda_graphs=False), loaded.card)


def test_cuda_graphs_match_eager_cuda_and_cpu(sprite_cuda):
    graphs, eager, card = sprite_cuda
    cpu = make_denoiser(ASSETS / "sprites.onnx", backend="ort-cpu", threads=1)
    for batch in (1, 3, 16, 32):
        x, t, c = _feeds(card, batch, batch)
        first, replay = graphs(x, t, c).copy(), graphs(x, t, c).copy()
        np.testing.assert_array_equal(first, replay)  # replay after capture
        assert np.max(np.abs(first - eager(x, t, c))) <= 1e-4
        assert np.max(np.abs(first - cpu(x, t, c))) <= 5e-3  # TF32 on the GPU
    assert len(graphs._graphs) >= 4


def test_capture_survives_allocations_in_another_thread(sprite_cuda):
    """capture_error_mode="thread_local": a loader thread allocating on the GPU while the sampling thread
    captures its first graph for a shape must not invalidate the capture."""
    import torch

    graphs, eager, card = sprite_cuda
    stop, errors = threading.Event(), []

    def allocate():
        try:
            while not stop.is_set():
                torch.empty(1 << 20, device="cuda").fill_(1.0)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    worker = threading.Thread(target=allocate, daemon=True)
    worker.start()
    try:
        for batch in (5, 7, 9):  # new shapes: each call captures
            x, t, c = _feeds(card, batch, batch)
            assert np.max(np.abs(graphs(x, t, c) - eager(x, t, c))) <= 1e-4
    finally:
        stop.set()
        worker.join(timeout=30)
    assert not errors, errors


def test_ort_cuda_runs_on_the_gpu_with_iobinding():
    _needs("ort-cuda")
    den = make_denoiser(ASSETS / "sprites.onnx", backend="ort-cuda")
    assert den.name == "ort-cuda" and den.io_binding and den.session.get_providers()[0] == "CUDAExecutionProvider"
    cpu = make_denoiser(ASSETS / "sprites.onnx", backend="ort-cpu", threads=1)
    for batch in (1, 3, 16):
        x, t, c = _feeds(den.card, batch, batch)
        assert np.max(np.abs(den(x, t, c) - cpu(x, t, c))) <= 5e-3


def test_auto_picks_the_gpu_when_it_runs():
    den = make_denoiser(ASSETS / "sprites.onnx")
    expected = "ort-cuda" if available_backends()["ort-cuda"] is None else "ort-cpu"
    assert den.name == expected
