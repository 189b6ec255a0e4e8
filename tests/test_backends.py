"""Runtime backends: OrtDenoiser parity and validation, the backend registry, make_denoiser, load."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

import difftool.runtime.backends as backends
from difftool.config import CARD_KEY, ModelCard, ScheduleConfig
from difftool.errors import DifftoolError, MissingDependency
from difftool.export.onnx_export import export_onnx
from difftool.models import build
from difftool.models.checkpoint import save
from difftool.models.denoiser import TorchDenoiser
from difftool.models.presets import tiny
from difftool.runtime.backends import available_backends, make_denoiser
from difftool.runtime.backends.ort import OrtDenoiser

torch.set_num_threads(1)
CPU = ["CPUExecutionProvider"]


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    """Conditional and unconditional tiny models: checkpoints and their ONNX exports."""
    root = tmp_path_factory.mktemp("backends")
    torch.manual_seed(0)
    out = {}
    for name, k in (("cond", 5), ("uncond", 0)):
        cfg = tiny(channels=3, size=8, num_classes=k)
        card = ModelCard(model=cfg, schedule=ScheduleConfig(), class_names=tuple("abcde"[:k]))
        out[f"{name}_ckpt"] = save(root / f"{name}.safetensors", build(cfg), card)
        out[f"{name}_onnx"] = export_onnx(out[f"{name}_ckpt"], root / f"{name}.onnx").path
    return out


def _inputs(card: ModelCard, batch: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, card.channels, card.image_size, card.image_size)).astype(np.float32)
    t = rng.integers(0, 1000, size=batch).astype(np.float32)
    ctx = np.zeros((batch, card.num_classes), np.float32)
    if card.num_classes:
        ctx[np.arange(batch), rng.integers(0, card.num_classes, size=batch)] = 1.0
        ctx[-1] = 0.0  # one unconditional row
    return x, t, ctx


@pytest.mark.parametrize("name", ["cond", "uncond"])
def test_ort_matches_torch(models, name):
    ort_den = OrtDenoiser(models[f"{name}_onnx"], threads=1, providers=CPU)
    torch_den = make_denoiser(models[f"{name}_ckpt"], backend="torch-cpu", threads=1)
    assert isinstance(torch_den, TorchDenoiser) and torch_den.name == "torch-cpu"
    assert ort_den.name == "ort-cpu" and ort_den.card == torch_den.card
    for batch in (1, 3, 8):
        x, t, ctx = _inputs(ort_den.card, batch, batch)
        a, b = ort_den(x, t, ctx), torch_den(x, t, ctx)
        assert a.shape == x.shape and a.dtype == np.float32
        assert np.max(np.abs(a - b)) <= 1e-4


def test_iobinding_cpu_path_matches_plain_run(models):
    plain = OrtDenoiser(models["cond_onnx"], threads=1, providers=CPU, io_binding=False)
    bound = OrtDenoiser(models["cond_onnx"], threads=1, providers=CPU, io_binding=True)
    for batch in (2, 5, 2):
        x, t, ctx = _inputs(plain.card, batch, batch)
        np.testing.assert_array_equal(plain(x, t, ctx), bound(x, t, ctx).copy())


@pytest.mark.parametrize("shards", [2, 3])
def test_row_shards_are_bit_identical_to_one_run(models, shards):
    whole = OrtDenoiser(models["cond_onnx"], threads=1, providers=CPU, shards=1)
    split = OrtDenoiser(models["cond_onnx"], threads=shards, providers=CPU)
    assert (whole.shards, split.shards) == (1, shards)
    for batch in (1, 2, 5, 7):  # fewer rows than shards, uneven shards, one row (the N-thread session)
        x, t, ctx = _inputs(whole.card, batch, batch)
        np.testing.assert_array_equal(whole(x, t, ctx).copy(), split(x, t, ctx))
    assert split._row_shards._pool is not None and split._row_shards._whole is not None  # both paths ran
    with pytest.raises(DifftoolError, match="inference failed"):
        split(x[:, :, :4], t, ctx)


def test_non_float32_and_bad_shapes(models):
    den = OrtDenoiser(models["cond_onnx"], threads=1, providers=CPU)
    x, t, ctx = _inputs(den.card, 2)
    np.testing.assert_allclose(den(x.astype(np.float64), t.astype(np.int64), ctx), den(x, t, ctx), atol=1e-6)
    with pytest.raises(DifftoolError, match="inference failed"):
        den(x[:, :, :4], t, ctx)


def test_truncated_file(models, tmp_path):
    bad = tmp_path / "cut.onnx"
    bad.write_bytes(models["cond_onnx"].read_bytes()[:100])
    with pytest.raises(DifftoolError, match=r"cut\.onnx is not a readable ONNX file \("):
        OrtDenoiser(bad, threads=1)


def _plain_onnx(path: Path, names=("x", "t"), ranks=(4, 1), card: ModelCard | None = None) -> Path:
    """A tiny valid graph (eps = x + 0) with chosen input names, with or without difftool metadata."""
    shapes = {1: ["batch"], 2: ["batch", 5], 4: ["batch", 3, 8, 8]}
    inputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, shapes[r]) for n, r in zip(names, ranks, strict=True)]
    out = helper.make_tensor_value_info("eps", TensorProto.FLOAT, ["batch", 3, 8, 8])
    graph = helper.make_graph([helper.make_node("Identity", [names[0]], ["eps"])], "g", inputs, [out])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=10)
    if card is not None:
        model.metadata_props.add(key=CARD_KEY, value=card.to_json())
    onnx.save(model, str(path))
    return path


def test_onnx_without_metadata(tmp_path):
    path = _plain_onnx(tmp_path / "plain.onnx")
    with pytest.raises(DifftoolError) as err:
        OrtDenoiser(path, threads=1)
    assert str(err.value) == (f"{path}: not a difftool artifact (no difftool metadata); "
                              "export it with `difftool export`")


def test_wrong_input_names(tmp_path):
    card = ModelCard(model=tiny(channels=3, size=8, num_classes=0), schedule=ScheduleConfig())
    path = _plain_onnx(tmp_path / "names.onnx", names=("sample", "timestep"), card=card)
    with pytest.raises(DifftoolError) as err:
        OrtDenoiser(path, threads=1)
    assert str(err.value) == (f"{path}: input names ['sample', 'timestep'] do not match the difftool "
                              "contract (x, t, context)")
    cond = ModelCard(model=tiny(channels=3, size=8, num_classes=5), schedule=ScheduleConfig())
    missing_ctx = _plain_onnx(tmp_path / "noctx.onnx", card=cond)  # conditional card, no context input
    with pytest.raises(DifftoolError, match=r"input names \['t', 'x'\] do not match"):
        OrtDenoiser(missing_ctx, threads=1)
    rank = _plain_onnx(tmp_path / "rank.onnx", names=("x", "t"), ranks=(4, 2), card=card)
    with pytest.raises(DifftoolError, match="input t has rank 2, the difftool contract needs rank 1"):
        OrtDenoiser(rank, threads=1)


def test_available_backends_reports_reasons(monkeypatch):
    found = available_backends()
    assert set(found) == {"ort-cpu", "ort-cuda", "ort-tensorrt", "tensorrt", "torch-cpu", "torch-cuda"}
    assert found["ort-cpu"] is None and found["torch-cpu"] is None
    assert all(v is None or (isinstance(v, str) and v) for v in found.values())
    import onnxruntime

    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        assert "onnxruntime-gpu not installed" in found["ort-cuda"]
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        assert found["tensorrt"] == "tensorrt not installed"
    real = backends._installed
    monkeypatch.setattr(backends, "_installed", lambda m: False if m in ("torch", "tensorrt") else real(m))
    monkeypatch.setattr(backends, "cuda_device_present", lambda: False)
    found = available_backends()
    assert found["torch-cpu"].startswith("torch not installed")
    assert found["torch-cuda"].startswith("torch not installed")
    assert found["tensorrt"] == "tensorrt not installed"


def test_torch_cuda_reason_without_importing_torch(monkeypatch):
    monkeypatch.setattr(backends, "_torch_cuda_version", lambda: None)
    assert available_backends()["torch-cuda"] == "torch is a CPU-only build"
    monkeypatch.setattr(backends, "_torch_cuda_version", lambda: "13.0")
    monkeypatch.setattr(backends, "cuda_device_present", lambda: False)
    assert available_backends()["torch-cuda"] == "no CUDA device"
    monkeypatch.undo()
    assert backends._torch_cuda_version() == torch.version.cuda


def test_make_denoiser_dispatch(models, tmp_path, monkeypatch):
    den = make_denoiser(models["cond_onnx"], threads=1)
    auto = "ort-cuda" if available_backends()["ort-cuda"] is None else "ort-cpu"  # auto: GPU when it runs
    assert isinstance(den, OrtDenoiser) and den.name == auto
    assert isinstance(make_denoiser(models["cond_onnx"], backend="ort-cpu", threads=1), OrtDenoiser)
    assert isinstance(make_denoiser(models["cond_ckpt"], threads=1), TorchDenoiser)
    assert isinstance(make_denoiser(models["cond_ckpt"], backend="torch", threads=1), TorchDenoiser)
    with pytest.raises(DifftoolError, match="the torch backend needs a checkpoint"):
        make_denoiser(models["cond_onnx"], backend="torch")
    with pytest.raises(DifftoolError, match="tensorrt backend needs an engine"):
        make_denoiser(models["cond_onnx"], backend="tensorrt")
    with pytest.raises(DifftoolError, match="export it first"):
        make_denoiser(models["cond_ckpt"], backend="ort-cpu")
    with pytest.raises(DifftoolError, match="unknown backend"):
        make_denoiser(models["cond_onnx"], backend="jax")
    with pytest.raises(DifftoolError, match="file not found"):
        make_denoiser(tmp_path / "nope.onnx")
    (tmp_path / "m.txt").write_text("x")
    with pytest.raises(DifftoolError, match="unknown file type .txt"):
        make_denoiser(tmp_path / "m.txt")
    if available_backends()["ort-cuda"]:
        with pytest.raises(DifftoolError, match="backend ort-cuda is not available here"):
            make_denoiser(models["cond_onnx"], backend="ort-cuda")
    real = backends._installed
    monkeypatch.setattr(backends, "_installed", lambda m: False if m == "torch" else real(m))
    with pytest.raises(MissingDependency, match=r"sampling from a checkpoint needs torch.*difftool\[train\]"):
        make_denoiser(models["cond_ckpt"])


def test_engine_dispatch_checks_sidecar_then_tensorrt(models, tmp_path):
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"not really an engine")
    with pytest.raises(DifftoolError, match="sidecar m.engine.json"):
        make_denoiser(engine)
    card = ModelCard(model=tiny(channels=3, size=8, num_classes=5), schedule=ScheduleConfig())
    side = {"card": card.to_dict(), "tensorrt_version": "0.0", "gpu_name": "none", "compute_capability": "0.0",
            "profile": {"min": 1, "opt": 16, "max": 64}}
    (tmp_path / "m.engine.json").write_text(json.dumps(side))
    from difftool.runtime.artifact import read_card

    assert read_card(engine) == card
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        with pytest.raises(DifftoolError, match="needs the tensorrt package and an NVIDIA GPU"):
            make_denoiser(engine)
    with pytest.raises(DifftoolError, match="runs only with the tensorrt backend"):
        make_denoiser(engine, backend="ort-cpu")


def test_loader_returns_pipeline(models):
    from difftool.runtime.loader import load
    from difftool.runtime.pipeline import Pipeline, SampleRequest

    pipe = load(models["cond_onnx"], threads=1)
    assert isinstance(pipe, Pipeline) and isinstance(pipe.denoiser, OrtDenoiser)
    out = pipe.sample(SampleRequest(n=2, steps=3, sampler="ddim", seed=1))
    assert out.shape == (2, 3, 8, 8) and np.all(np.isfinite(out))


def test_runtime_path_does_not_import_torch(models):
    code = (
        "import sys\n"
        "import difftool.runtime, difftool.runtime.loader, difftool.runtime.backends.tensorrt\n"
        "from difftool.runtime.backends import available_backends, make_denoiser\n"
        "available_backends()\n"
        f"d = make_denoiser({str(models['cond_onnx'])!r}, threads=1)\n"
        "import numpy as np\n"
        "d(np.zeros((1, 3, 8, 8), np.float32), np.zeros(1, np.float32), np.zeros((1, 5), np.float32))\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
