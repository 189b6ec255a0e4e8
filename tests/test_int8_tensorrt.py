"""int8 for TensorRT: the Q/DQ format TensorRT's ONNX parser takes (signed int8, zero-point 0), checked on
the graph itself; no TensorRT needed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, numpy_helper

from difftool.errors import DifftoolError
from difftool.export import int8
from difftool.runtime.artifact import onnx_metadata, read_card

BUNDLED = Path(__file__).resolve().parents[1] / "src" / "difftool" / "assets" / "sprites.onnx"


def _zero_points(path: Path) -> list[tuple[int, np.ndarray]]:
    """(data type, values) of every Q/DQ zero-point in the graph at ``path``."""
    model = onnx.load(str(path))
    inits = {i.name: i for i in model.graph.initializer}
    out = []
    for node in model.graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            assert len(node.input) == 3 and node.input[2] in inits, f"{node.name}: no constant zero-point"
            zp = inits[node.input[2]]
            out.append((zp.data_type, numpy_helper.to_array(zp)))
    return out


@pytest.fixture(scope="module")
def feeds():
    card = read_card(BUNDLED)
    images = np.random.default_rng(0).integers(0, 256, size=(16, 16, 16, 3), dtype=np.uint8)
    return int8.noisy_batches(card, int8.as_x0(images, card), num_batches=3, batch=8)


@pytest.fixture(scope="module")
def quantized(feeds, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("int8")
    return {target: (int8.quantize_int8(BUNDLED, root / f"{target}.onnx", feeds, target=target),
                     root / f"{target}.onnx")[1] for target in ("cpu", "tensorrt")}


def test_tensorrt_target_writes_symmetric_signed_int8(quantized):
    zps = _zero_points(quantized["tensorrt"])
    assert len(zps) > 10  # activations and per-channel weights of every Conv
    assert all(dtype == TensorProto.INT8 for dtype, _ in zps)
    assert all(np.all(values == 0) for _, values in zps)
    assert int8.tensorrt_qdq_problems(onnx.load(str(quantized["tensorrt"]))) == []
    int8.check_tensorrt_qdq(quantized["tensorrt"])  # no error
    meta = onnx_metadata(quantized["tensorrt"])
    assert meta["int8_target"] == "tensorrt" and "symmetric" in meta["quantization"]


def test_cpu_target_is_rejected_for_tensorrt_in_one_line(quantized):
    zps = _zero_points(quantized["cpu"])
    assert any(dtype == TensorProto.UINT8 for dtype, _ in zps)  # ORT's fast CPU format: uint8 activations
    problems = int8.tensorrt_qdq_problems(onnx.load(str(quantized["cpu"])))
    assert problems and any("zero-point is uint8, TensorRT needs int8" in p for p in problems)
    with pytest.raises(DifftoolError, match=r"Q/DQ node\(s\) TensorRT cannot parse") as err:
        int8.check_tensorrt_qdq(quantized["cpu"])
    assert "\n" not in str(err.value)


def test_tensorrt_int8_still_runs_close_to_fp32_on_cpu(quantized, feeds):
    from difftool.export import parity

    card = read_card(BUNDLED)
    rep = parity.compare_precision(BUNDLED, quantized["tensorrt"], card, "int8", feeds=feeds[0], threads=1)
    assert np.isfinite(rep.rel_err) and rep.rel_err < 0.5


def test_asymmetric_int8_zero_point_is_found():
    """A hand-made graph: int8 type but zero-point 3 (asymmetric) is also rejected."""
    from onnx import helper

    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"], name="q0"),
             helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"], name="dq0")]
    inits = [numpy_helper.from_array(np.array(0.1, np.float32), "s"),
             numpy_helper.from_array(np.array(3, np.int8), "z")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])], inits)
    problems = int8.tensorrt_qdq_problems(helper.make_model(graph))
    assert problems == ["QuantizeLinear q0: zero-point is not 0 (asymmetric), TensorRT needs symmetric",
                        "DequantizeLinear dq0: zero-point is not 0 (asymmetric), TensorRT needs symmetric"]


def test_unknown_target_fails_before_calibration(feeds, tmp_path):
    with pytest.raises(DifftoolError, match="unknown int8 target 'gpu'"):
        int8.quantize_int8(BUNDLED, tmp_path / "x.onnx", feeds, target="gpu")
    assert not (tmp_path / "x.onnx").exists()


def test_export_tensorrt_int8_hands_tensorrt_a_symmetric_graph(tmp_path, monkeypatch):
    """The checkpoint -> int8 -> TensorRT path: what reaches the TensorRT build is symmetric int8
    (the TensorRT-only steps, import and build, are replaced; everything before them is real)."""
    torch = pytest.importorskip("torch")
    from difftool.config import ModelCard, ScheduleConfig
    from difftool.export import tensorrt_build
    from difftool.models import build
    from difftool.models.checkpoint import save
    from difftool.models.presets import tiny

    torch.manual_seed(0)
    cfg = tiny(channels=3, size=8, num_classes=5)
    ckpt = save(tmp_path / "tiny.safetensors", build(cfg), ModelCard(model=cfg, schedule=ScheduleConfig()))
    seen = {}

    def fake_build(onnx_path, engine_path, **opts):
        seen["zero_points"] = _zero_points(Path(onnx_path))
        seen["problems"] = int8.tensorrt_qdq_problems(onnx.load(str(onnx_path)))
        return "built"

    from difftool.export import onnx_export

    monkeypatch.setattr(tensorrt_build, "_import_trt", lambda: None)
    monkeypatch.setattr(tensorrt_build, "build_engine", fake_build)
    monkeypatch.setattr(onnx_export, "CALIBRATION_BATCHES", 2)  # a quick calibration is enough here
    images = np.random.default_rng(1).integers(0, 256, size=(8, 8, 8, 3), dtype=np.uint8)
    assert tensorrt_build.export_tensorrt(ckpt, tmp_path / "m.engine", precision="int8",
                                          calibration_images=images) == "built"
    assert seen["zero_points"] and seen["problems"] == []
    assert all(dtype == TensorProto.INT8 and not values.any() for dtype, values in seen["zero_points"])


def test_build_engine_rejects_a_cpu_int8_graph_before_tensorrt_work(quantized, tmp_path, monkeypatch):
    from difftool.export import tensorrt_build

    monkeypatch.setattr(tensorrt_build, "_import_trt", lambda: None)  # no TensorRT call may happen
    with pytest.raises(DifftoolError, match="TensorRT cannot parse"):
        tensorrt_build.build_engine(quantized["cpu"], tmp_path / "m.engine")
    assert list(tmp_path.iterdir()) == []


def test_onnx_source_precision_request_is_not_ignored(quantized, tmp_path, monkeypatch):
    from difftool.export import tensorrt_build

    monkeypatch.setattr(tensorrt_build, "_import_trt", lambda: None)
    with pytest.raises(DifftoolError, match="is a fp32 graph; --precision int8 applies when building from"):
        tensorrt_build.export_tensorrt(BUNDLED, tmp_path / "m.engine", precision="int8")
    with pytest.raises(DifftoolError, match="fixed at image size 16"):
        tensorrt_build.export_tensorrt(BUNDLED, tmp_path / "m.engine", image_size=32)
