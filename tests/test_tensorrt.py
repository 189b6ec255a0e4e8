"""TensorRT: engine build + parity vs ORT where tensorrt and a CUDA GPU exist; error paths everywhere."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from difftool.config import ModelCard, ScheduleConfig
from difftool.errors import DifftoolError
from difftool.models.presets import tiny
from difftool.runtime.backends import cuda_device_present
from difftool.runtime.backends.tensorrt import check_compatible, read_sidecar

HAS_TRT = importlib.util.find_spec("tensorrt") is not None
HAS_GPU = cuda_device_present()
needs_trt = pytest.mark.skipif(not (HAS_TRT and HAS_GPU),
                               reason="tensorrt not installed" if not HAS_TRT else "no CUDA GPU")


def test_missing_tensorrt_message(tmp_path):
    if HAS_TRT:
        pytest.skip("tensorrt is installed: the missing-package message cannot be shown")
    from difftool.export.tensorrt_build import build_engine, export_tensorrt

    expected = ("TensorRT export needs the tensorrt package and an NVIDIA GPU; install it with "
                "`pip install 'difftool[tensorrt]'`")
    for call in (lambda: build_engine(tmp_path / "m.onnx", tmp_path / "m.engine"),
                 lambda: export_tensorrt(tmp_path / "m.safetensors", tmp_path / "m.engine")):
        with pytest.raises(DifftoolError) as err:
            call()
        assert str(err.value) == expected
    assert list(tmp_path.iterdir()) == []


def test_sidecar_checks(tmp_path):
    engine = tmp_path / "m.engine"
    with pytest.raises(DifftoolError, match="sidecar m.engine.json with the model card is missing"):
        read_sidecar(engine)
    card = ModelCard(model=tiny(channels=3, size=8, num_classes=5), schedule=ScheduleConfig())
    side = {"card": card.to_dict(), "tensorrt_version": "10.13.0", "gpu_name": "NVIDIA H100 80GB HBM3"}
    (tmp_path / "m.engine.json").write_text(json.dumps(side))
    assert ModelCard.from_dict(read_sidecar(engine)["card"]) == card
    check_compatible(engine, side, "10.13.0", "NVIDIA H100 80GB HBM3")
    with pytest.raises(DifftoolError, match="built with TensorRT 10.13.0 but TensorRT 11.4.0 is installed"):
        check_compatible(engine, side, "11.4.0", "NVIDIA H100 80GB HBM3")
    with pytest.raises(DifftoolError, match="built for a NVIDIA H100 80GB HBM3 but this GPU is a NVIDIA L4"):
        check_compatible(engine, side, "10.13.0", "NVIDIA L4")


@pytest.fixture(scope="module")
def onnx_model(tmp_path_factory) -> Path:
    import torch

    from difftool.export.onnx_export import export_onnx
    from difftool.models import build
    from difftool.models.checkpoint import save

    torch.set_num_threads(1)
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("trt")
    cfg = tiny(channels=3, size=8, num_classes=5)
    ckpt = save(root / "tiny.safetensors", build(cfg), ModelCard(model=cfg, schedule=ScheduleConfig()))
    return export_onnx(ckpt, root / "tiny.onnx").path


@needs_trt
def test_build_and_parity(onnx_model, tmp_path):
    from difftool.export.tensorrt_build import build_engine, engine_parity
    from difftool.runtime.backends import make_denoiser

    engine = tmp_path / "tiny.engine"
    report = build_engine(onnx_model, engine, opt_batch=8, max_batch=32)
    assert engine.is_file() and report.timing_cache.is_file() and report.sidecar.is_file()
    side = json.loads(report.sidecar.read_text())
    assert set(side) >= {"card", "tensorrt_version", "gpu_name", "compute_capability", "profile"}
    assert side["profile"] == {"min": 1, "opt": 8, "max": 32}
    errors = engine_parity(engine, onnx_model, batch_sizes=(1, 3, 40))  # 40 > max: chunked
    assert max(errors.values()) < 5e-3, errors  # TF32 may be on for fp32 layers
    den = make_denoiser(engine)
    assert den.name == "tensorrt"
    x = np.zeros((2, 3, 8, 8), np.float32)
    assert den(x, np.zeros(2, np.float32), np.zeros((2, 5), np.float32)).shape == (2, 3, 8, 8)
    cache_before = report.timing_cache.read_bytes()
    rebuilt = build_engine(onnx_model, engine, opt_batch=8, max_batch=32)  # reuses the timing cache
    assert rebuilt.path.is_file() and len(rebuilt.timing_cache.read_bytes()) >= len(cache_before)
