"""ONNX export: parity (reported and recomputed), dynamic batch, metadata, atomicity, int8, fp16, optimize."""

from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from difftool.config import ContextUnetConfig, ModelCard, ScheduleConfig, UnetConfig
from difftool.errors import DifftoolError
from difftool.export import onnx_export, parity
from difftool.export.onnx_export import export_onnx
from difftool.models import build
from difftool.models.checkpoint import load, save
from difftool.models.presets import tiny
from difftool.runtime.artifact import onnx_metadata, read_card

torch.set_num_threads(1)

# explainingai layout, small: attention on, 4 heads (the default, not recorded in the weights).
EXPLAININGAI = UnetConfig(im_channels=1, im_size=28, down_channels=(16, 32, 32), mid_channels=(32, 32),
                          down_sample=(True, False), attention=(True, True), time_emb_dim=32,
                          num_down_layers=1, num_mid_layers=1, num_up_layers=1, out_width=16)


def _randomize_bn(module: torch.nn.Module, seed: int) -> None:
    """Non-trivial BatchNorm running stats so eval-mode folding is exercised."""
    gen = torch.Generator().manual_seed(seed)
    for m in module.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(0.1 * torch.randn(m.num_features, generator=gen))
            m.running_var.copy_(0.5 + torch.rand(m.num_features, generator=gen))


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory) -> dict[str, Path]:
    """A difftool safetensors, a course .pth and an explainingai .pth (random weights)."""
    root = tmp_path_factory.mktemp("ckpt")
    torch.manual_seed(0)
    cfg = tiny(channels=3, size=8, num_classes=5)
    card = ModelCard(model=cfg, schedule=ScheduleConfig(), class_names=("a", "b", "c", "d", "e"),
                     credit="test credit", license="MIT")
    save(root / "tiny.safetensors", build(cfg), card)
    course = build(ContextUnetConfig(in_channels=3, n_feat=16, n_cfeat=5, height=16))
    _randomize_bn(course, 1)
    torch.save(course.state_dict(), root / "course.pth")
    torch.save(build(EXPLAININGAI).state_dict(), root / "explainingai.pth")
    return {"tiny": root / "tiny.safetensors", "course": root / "course.pth",
            "explainingai": root / "explainingai.pth"}


@pytest.fixture(scope="module")
def exported(ckpts, tmp_path_factory) -> dict[str, onnx_export.ExportReport]:
    out = tmp_path_factory.mktemp("onnx")
    sizes = {"tiny": None, "course": None, "explainingai": 12}
    return {name: export_onnx(ckpts[name], out / name / f"{name}.onnx", image_size=sizes[name])
            for name in ckpts}


def _module(ckpts, name: str):
    loaded = load(ckpts[name])
    return loaded.module.eval()


def _feeds(card: ModelCard, batch: int, seed: int) -> dict[str, np.ndarray]:
    """Independent test inputs (not the exporter's own generator)."""
    rng = np.random.default_rng(1000 + seed)
    s, c, T = card.image_size, card.channels, card.schedule.num_timesteps
    steps = rng.integers(1, T, size=batch)
    t = steps / T if card.schedule.time_input == "fraction" else steps.astype(np.float64)
    feeds = {"x": rng.standard_normal((batch, c, s, s)).astype(np.float32), "t": t.astype(np.float32)}
    if card.conditional:
        ctx = rng.dirichlet(np.ones(card.num_classes), size=batch).astype(np.float32)
        ctx[0] = np.eye(card.num_classes, dtype=np.float32)[batch % card.num_classes]
        feeds["context"] = ctx
    return feeds


def _torch(module, card, feeds) -> np.ndarray:
    with torch.no_grad():
        ctx = torch.from_numpy(feeds["context"]) if "context" in feeds else None
        return module(torch.from_numpy(feeds["x"]), torch.from_numpy(feeds["t"]), ctx).numpy()


@pytest.mark.parametrize("name", ["tiny", "course", "explainingai"])
def test_parity_reported_and_recomputed(name, ckpts, exported):
    report = exported[name]
    assert set(report.max_abs_err) == {1, 3}
    assert all(0 <= e <= 1e-4 for e in report.max_abs_err.values()), report.max_abs_err
    assert report.exporter == "dynamo" and report.opset >= 17 and report.notes == []
    assert report.file_size == report.path.stat().st_size > 0
    sess = parity.cpu_session(report.path)
    module, card = _module(ckpts, name), read_card(report.path)
    for batch in (1, 3, 5):  # 5: the dynamic batch axis beyond the traced batch
        feeds = _feeds(card, batch, batch)
        got = sess.run(["eps"], feeds)[0]
        assert got.shape == feeds["x"].shape
        assert np.max(np.abs(got - _torch(module, card, feeds))) <= 1e-4


@pytest.mark.parametrize("name", ["tiny", "course", "explainingai"])
def test_graph_contract(name, exported):
    model = onnx.load(str(exported[name].path))
    card = read_card(exported[name].path)
    inputs = {i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in model.graph.input}
    s, c = card.image_size, card.channels
    expected = {"x": ["batch", c, s, s], "t": ["batch"]}
    if card.conditional:
        expected["context"] = ["batch", card.num_classes]
    assert inputs == expected
    assert [o.name for o in model.graph.output] == ["eps"]
    assert all(i.type.tensor_type.elem_type == onnx.TensorProto.FLOAT for i in model.graph.input)
    assert not any(n.op_type == "BatchNormalization" for n in model.graph.node)  # eval mode: folded


def test_metadata_round_trip(ckpts, exported):
    assert read_card(exported["tiny"].path) == load(ckpts["tiny"]).card
    course_card = load(ckpts["course"]).card
    assert read_card(exported["course"].path) == course_card
    ea = read_card(exported["explainingai"].path)
    assert ea.image_size == 12 and ea.source == "explainingai"
    assert ea == dataclasses.replace(load(ckpts["explainingai"]).card, model=dataclasses.replace(EXPLAININGAI, im_size=12))
    meta = onnx_metadata(exported["tiny"].path)
    assert meta["class_names"] == "a,b,c,d,e" and meta["credit"] == "test credit" and meta["license"] == "MIT"
    assert meta["prediction"] == "epsilon" and "0..999" in meta["time_convention"]
    assert meta["difftool_version"] and meta["precision"] == "fp32"
    assert "t/500" in onnx_metadata(exported["course"].path)["time_convention"].replace("i/", "t/")


def test_single_file_no_external_data(exported):
    for report in exported.values():
        assert os.listdir(report.path.parent) == [report.path.name]
        model = onnx.load(str(report.path), load_external_data=False)
        assert not any(onnx.external_data_helper.uses_external_data(t) for t in model.graph.initializer)


def _fake_tracer(src: Path):
    """A torch_export stand-in that copies an already exported graph (skips the slow trace)."""
    def fake(module, card, path, opset=None):
        shutil.copyfile(src, path)
        return "dynamo", []
    return fake


def test_parity_failure_leaves_nothing(ckpts, exported, tmp_path, monkeypatch):
    monkeypatch.setattr(onnx_export, "torch_export", _fake_tracer(exported["tiny"].path))
    monkeypatch.setattr(parity, "measure", lambda *a, **k: {1: 0.5, 3: 2e-3})
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(DifftoolError, match=r"^parity check failed: max abs error 0\.5 > 1e-4$"):
        export_onnx(ckpts["tiny"], out / "m.onnx")
    assert os.listdir(out) == []


def test_any_failure_leaves_nothing_and_keeps_old_file(ckpts, exported, tmp_path, monkeypatch):
    monkeypatch.setattr(onnx_export, "torch_export", _fake_tracer(exported["tiny"].path))
    target = tmp_path / "m.onnx"
    target.write_bytes(b"old")

    def boom(*a, **k):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(onnx_export, "finalize", boom)
    with pytest.raises(RuntimeError):
        export_onnx(ckpts["tiny"], target)
    assert os.listdir(tmp_path) == ["m.onnx"] and target.read_bytes() == b"old"


def test_torchscript_fallback_when_dynamo_fails(ckpts, tmp_path, monkeypatch):
    real = torch.onnx.export

    def no_dynamo(*args, **kwargs):
        if kwargs.get("dynamo"):
            raise RuntimeError("simulated dynamo failure")
        return real(*args, **kwargs)

    monkeypatch.setattr(torch.onnx, "export", no_dynamo)
    report = export_onnx(ckpts["tiny"], tmp_path / "legacy.onnx")
    assert report.exporter == "torchscript" and report.opset == 17
    assert "simulated dynamo failure" in report.notes[0] and "TorchScript" in report.notes[0]
    assert max(report.max_abs_err.values()) <= 1e-4
    sess = parity.cpu_session(report.path)
    feeds = _feeds(read_card(report.path), 5, 0)
    assert sess.run(["eps"], feeds)[0].shape == (5, 3, 8, 8)


def test_int8_export(ckpts, tmp_path):
    report = export_onnx(ckpts["tiny"], tmp_path / "q.onnx", precision="int8")
    q = report.precision_report
    assert report.precision == "int8" and q is not None
    assert all(np.isfinite(v) for v in (q.max_abs_err, q.rel_err, q.fp32_ms, q.low_ms))
    assert q.rel_err < 0.5 and q.batch == 16 and q.threads == 1
    assert "DDIM samples" in q.calibration
    model = onnx.load(str(report.path))
    ops = {n.op_type for n in model.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    assert read_card(report.path) == load(ckpts["tiny"]).card
    assert onnx_metadata(report.path)["precision"] == "int8"
    from difftool.runtime.backends.ort import OrtDenoiser

    den = OrtDenoiser(report.path, threads=1, providers=["CPUExecutionProvider"])
    feeds = _feeds(den.card, 4, 0)
    eps = den(feeds["x"], feeds["t"], feeds["context"])
    assert eps.shape == (4, 3, 8, 8) and np.all(np.isfinite(eps))


def test_int8_calibrated_on_real_images(exported, tmp_path):
    from difftool.export import int8

    src = exported["tiny"].path
    card = read_card(src)
    images = np.random.default_rng(0).integers(0, 256, size=(20, 8, 8, 3), dtype=np.uint8)  # NHWC uint8
    x0, what = int8.calibration_x0(src, card, images)
    assert x0.shape == (20, 3, 8, 8) and x0.min() >= -1 and x0.max() <= 1 and what == "20 real images"
    feeds = int8.noisy_batches(card, x0, 4, 8)
    assert feeds[0]["t"].dtype == np.float32 and feeds[0]["context"].shape == (8, 5)
    int8.quantize_int8(src, tmp_path / "q.onnx", feeds)
    rep = parity.compare_precision(src, tmp_path / "q.onnx", card, "int8", batch=16)
    assert np.isfinite(rep.rel_err) and rep.rel_err < 0.5
    with pytest.raises(DifftoolError, match="calibration images must be"):
        int8.as_x0(np.zeros((2, 5, 5, 3), np.uint8), card)


def test_fp16_file_loads_and_runs_on_cpu(exported, tmp_path):
    from difftool.export.fp16 import convert_fp16

    src = exported["tiny"].path
    out = convert_fp16(src, tmp_path / "h.onnx")
    onnx.checker.check_model(onnx.load(str(out)))
    assert read_card(out) == read_card(src) and onnx_metadata(out)["precision"] == "fp16"
    rep = parity.compare_precision(src, out, read_card(src), "fp16", batch=4)
    assert rep.max_abs_err < 5e-2


def test_optimized_export_loads_and_matches(ckpts, exported, tmp_path):
    report = export_onnx(ckpts["tiny"], tmp_path / "opt.onnx", optimize=True)
    assert report.optimized and max(report.max_abs_err.values()) <= 1e-4
    meta = onnx_metadata(report.path)
    assert "ORT_ENABLE_EXTENDED" in meta["ort_optimization"]
    assert read_card(report.path) == read_card(exported["tiny"].path)
    card = read_card(report.path)
    feeds = _feeds(card, 3, 7)
    a = parity.cpu_session(report.path).run(["eps"], feeds)[0]
    b = parity.cpu_session(exported["tiny"].path).run(["eps"], feeds)[0]
    assert np.max(np.abs(a - b)) <= 1e-4
    assert os.listdir(tmp_path) == ["opt.onnx"]


def test_image_size_rules(ckpts):
    card = load(ckpts["course"]).card
    with pytest.raises(DifftoolError, match="tied to its height 16"):
        onnx_export.with_image_size(card, 20)
    ea = load(ckpts["explainingai"]).card
    assert onnx_export.with_image_size(ea, 32).image_size == 32
    with pytest.raises(DifftoolError, match="multiple of 2"):
        onnx_export.with_image_size(ea, 13)


def test_unknown_precision_is_rejected(ckpts, tmp_path):
    with pytest.raises(DifftoolError, match="unknown precision"):
        export_onnx(ckpts["tiny"], tmp_path / "x.onnx", precision="int4")
    assert not (tmp_path / "x.onnx").exists()


def test_fp16_stored_weights_halve_the_file_and_run_like_rounded_fp32(exported, tmp_path):
    """export.compact: fp16 initializers + Cast, folded back to fp32 by onnxruntime at load time."""
    import onnx
    from onnx import numpy_helper

    from difftool.export.compact import store_weights_fp16
    from difftool.export.metadata import save_single_file
    from difftool.runtime.backends.ort import OrtDenoiser

    src = exported["course"].path
    model = onnx.load(str(src))
    rounded = onnx.load(str(src))
    for init in rounded.graph.initializer:  # the reference: same graph, weights rounded through fp16
        arr = numpy_helper.to_array(init)
        if arr.dtype == np.float32 and arr.size >= 256:
            init.CopyFrom(numpy_helper.from_array(arr.astype(np.float16).astype(np.float32), init.name))
    n = store_weights_fp16(model)
    assert n > 0
    compact, ref = tmp_path / "compact.onnx", tmp_path / "rounded.onnx"
    save_single_file(model, compact)
    save_single_file(rounded, ref)
    assert compact.stat().st_size < 0.75 * src.stat().st_size  # small test model: many tensors stay fp32
    rng = np.random.default_rng(0)
    card = OrtDenoiser(compact, threads=1).card  # the card survives (metadata untouched)
    x = rng.standard_normal((3, card.channels, card.image_size, card.image_size), dtype=np.float32)
    t = np.array([0.1, 0.5, 0.9], dtype=np.float32)
    ctx = np.eye(card.num_classes, dtype=np.float32)[[0, 1, 2]]
    a = OrtDenoiser(compact, threads=1)(x, t, ctx).copy()
    b = OrtDenoiser(ref, threads=1)(x, t, ctx)
    np.testing.assert_allclose(a, b, atol=1e-5)
    full = OrtDenoiser(src, threads=1)(x, t, ctx)
    assert 0 < float(np.abs(a - full).max()) < 5e-2  # rounding is real but small


def test_fp16_storage_lossless_keeps_tables_float16_cannot_hold():
    """``lossless=True`` (the bundle script): weights rounded beforehand go to fp16, exact tables (a palette
    head's schedule rows) stay fp32."""
    from onnx import TensorProto, helper, numpy_helper

    from difftool.export.compact import store_weights_fp16

    rounded = np.linspace(-1, 1, 512, dtype=np.float32).astype(np.float16).astype(np.float32)
    table = np.sqrt(1 - np.linspace(0.0, 0.999, 512)).astype(np.float32)
    inits = [numpy_helper.from_array(rounded, "w"), numpy_helper.from_array(table, "tab")]
    node = helper.make_node("Add", ["w", "tab"], ["y"])
    graph = helper.make_graph([node], "g", [], [helper.make_tensor_value_info("y", TensorProto.FLOAT, [512])], inits)
    model = helper.make_model(graph)
    assert store_weights_fp16(model, lossless=True) == 1
    kept = {i.name: i.data_type for i in model.graph.initializer}
    assert kept == {"w__fp16": TensorProto.FLOAT16, "tab": TensorProto.FLOAT}
