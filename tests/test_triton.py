"""Triton model repository: layout, config.pbtxt fields (parsed), atomic replace, the graph runs."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from difftool.config import ModelCard, ScheduleConfig
from difftool.errors import DifftoolError
from difftool.export import triton
from difftool.export.parity import cpu_session
from difftool.export.triton import config_pbtxt, export_triton
from difftool.models import build
from difftool.models.checkpoint import save
from difftool.models.presets import tiny
from difftool.runtime.artifact import read_card

torch.set_num_threads(1)

TOKEN = re.compile(r'\s*(?:(#[^\n]*)|("(?:[^"\\]|\\.)*")|([{}\[\]:,])|([^\s{}\[\]:,"]+))')


def parse_pbtxt(text: str) -> dict:
    """A small protobuf text-format parser: messages -> dicts, repeated fields -> lists."""
    tokens = [m for m in TOKEN.findall(text) if not m[0]]
    tokens = [s or p or a for _, s, p, a in tokens]
    pos = 0

    def value():
        nonlocal pos
        tok = tokens[pos]
        pos += 1
        if tok == "{":
            return message("}")
        if tok == "[":
            items = []
            while tokens[pos] != "]":
                items.append(value())
                if tokens[pos] == ",":
                    pos += 1
            pos += 1
            return items
        if tok.startswith('"'):
            return json.loads(tok)  # the escapes we emit are JSON-compatible
        return int(tok) if re.fullmatch(r"-?\d+", tok) else tok

    def message(end):
        nonlocal pos
        out: dict = {}
        while pos < len(tokens) and tokens[pos] != end:
            key = tokens[pos]
            pos += 1
            if tokens[pos] == ":":
                pos += 1
            val = value()
            if key in out:  # a repeated field written as several entries
                prev = out[key]
                out[key] = (prev if isinstance(prev, list) else [prev]) + [val]
            else:
                out[key] = val
        pos += 1
        return out

    return message(None)


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> tuple[Path, ModelCard]:
    root = tmp_path_factory.mktemp("triton")
    torch.manual_seed(0)
    cfg = tiny(channels=3, size=8, num_classes=5)
    card = ModelCard(model=cfg, schedule=ScheduleConfig(), class_names=('a"quoted"', "b", "c", "d", "e\\x"))
    ckpt = save(root / "sprite.safetensors", build(cfg), card)
    export_triton(ckpt, root / "models", model_name="sprite")
    return root / "models", card


def test_layout(repo):
    models, _ = repo
    assert sorted(os.listdir(models)) == ["sprite"]
    assert sorted(os.listdir(models / "sprite")) == ["1", "config.pbtxt", "difftool.json"]
    assert os.listdir(models / "sprite" / "1") == ["model.onnx"]


def test_config_fields(repo):
    models, card = repo
    cfg = parse_pbtxt((models / "sprite" / "config.pbtxt").read_text())
    assert cfg["name"] == "sprite" and cfg["platform"] == "onnxruntime_onnx" and cfg["max_batch_size"] == 64
    inputs = {i["name"]: i for i in cfg["input"]}
    assert list(inputs) == ["x", "t", "context"]
    assert inputs["x"]["dims"] == [3, 8, 8] and inputs["x"]["data_type"] == "TYPE_FP32"  # batch excluded
    assert inputs["t"]["dims"] == [1] and inputs["t"]["reshape"] == {"shape": []}
    assert inputs["context"]["dims"] == [5]
    assert all(i["data_type"] == "TYPE_FP32" for i in inputs.values())
    (out,) = cfg["output"]
    assert out == {"name": "eps", "data_type": "TYPE_FP32", "dims": [3, 8, 8]}
    assert cfg["dynamic_batching"] == {"preferred_batch_size": [16, 32], "max_queue_delay_microseconds": 100}
    assert cfg["instance_group"] == [{"count": 1, "kind": "KIND_CPU"}]
    assert cfg["parameters"]["key"] == "difftool"
    assert ModelCard.from_json(cfg["parameters"]["value"]["string_value"]) == card
    side = json.loads((models / "sprite" / "difftool.json").read_text())
    assert ModelCard.from_dict(side["card"]) == card


def test_model_runs_like_triton_feeds_it(repo):
    models, card = repo
    graph = models / "sprite" / "1" / "model.onnx"
    assert read_card(graph) == card
    sess = cpu_session(graph)
    rng = np.random.default_rng(0)
    t_triton = rng.integers(0, 1000, size=(4, 1)).astype(np.float32)  # dims [1] per request row
    feeds = {"x": rng.standard_normal((4, 3, 8, 8)).astype(np.float32), "t": t_triton.reshape(4),
             "context": np.eye(5, dtype=np.float32)[[0, 1, 2, 3]]}
    eps = sess.run(["eps"], feeds)[0]
    assert eps.shape == (4, 3, 8, 8) and np.all(np.isfinite(eps))


def test_from_onnx_replaces_atomically_with_gpu_kind(repo, tmp_path):
    models, card = repo
    src = models / "sprite" / "1" / "model.onnx"
    out = tmp_path / "repo"
    first = export_triton(src, out, model_name="m", kind="KIND_GPU", count=2, max_batch_size=24)
    cfg = parse_pbtxt((first / "config.pbtxt").read_text())
    assert cfg["instance_group"] == [{"count": 2, "kind": "KIND_GPU"}]
    assert cfg["max_batch_size"] == 24 and cfg["dynamic_batching"]["preferred_batch_size"] == [16]
    second = export_triton(src, out, model_name="m")
    assert second == first and sorted(os.listdir(out)) == ["m"]  # no temp folders left
    assert parse_pbtxt((second / "config.pbtxt").read_text())["instance_group"][0]["kind"] == "KIND_CPU"
    assert (second / "1" / "model.onnx").read_bytes() == src.read_bytes()


def test_failure_leaves_old_model_in_place(repo, tmp_path, monkeypatch):
    models, _ = repo
    src = models / "sprite" / "1" / "model.onnx"
    out = tmp_path / "repo"
    export_triton(src, out, model_name="m")
    before = (out / "m" / "config.pbtxt").read_text()

    def boom(*a, **k):
        raise RuntimeError("no space")

    monkeypatch.setattr(triton, "config_pbtxt", boom)
    with pytest.raises(RuntimeError):
        export_triton(src, out, model_name="m")
    assert sorted(os.listdir(out)) == ["m"] and (out / "m" / "config.pbtxt").read_text() == before


def test_rejects_non_difftool_onnx(repo, tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07garbage")
    with pytest.raises(DifftoolError, match="not a readable ONNX file"):
        export_triton(bad, tmp_path / "repo")
    assert os.listdir(tmp_path / "repo") == []
    with pytest.raises(DifftoolError, match="invalid Triton model name"):
        export_triton(bad, tmp_path / "repo", model_name="../evil")


def test_unconditional_config_has_no_context():
    card = ModelCard(model=tiny(channels=1, size=8, num_classes=0), schedule=ScheduleConfig())
    cfg = parse_pbtxt(config_pbtxt(card, "digits"))
    assert [i["name"] for i in cfg["input"]] == ["x", "t"]
    assert cfg["input"][0]["dims"] == [1, 8, 8]
    with pytest.raises(DifftoolError, match="unknown instance kind"):
        config_pbtxt(card, "digits", kind="KIND_TPU")


# -- generator models: whole generations server-side -------------------------------------------------------

BUNDLED = Path(__file__).resolve().parents[1] / "src" / "difftool" / "assets" / "sprites.onnx"


@pytest.fixture(scope="module")
def generator_repo(tmp_path_factory) -> Path:
    from difftool.export.generator import GeneratorSettings
    from difftool.export.triton import export_triton_generator

    out = tmp_path_factory.mktemp("triton-gen") / "models"
    summary = export_triton_generator(BUNDLED, out, GeneratorSettings(steps=5, eta=1.0))
    assert summary["path"] == str(out / "sprites_generator") and summary["parity_max_abs_err"] <= 1e-4
    return out


def test_generator_layout_and_config_match_the_graph(generator_repo):
    import onnx
    from onnx import helper

    model_dir = generator_repo / "sprites_generator"
    assert sorted(os.listdir(generator_repo)) == ["sprites_generator"]
    assert sorted(os.listdir(model_dir)) == ["1", "config.pbtxt", "difftool.json"]
    cfg = parse_pbtxt((model_dir / "config.pbtxt").read_text())
    assert cfg["platform"] == "onnxruntime_onnx" and cfg["max_batch_size"] == 64
    assert cfg["dynamic_batching"] == {"preferred_batch_size": [16, 32], "max_queue_delay_microseconds": 1000}
    graph = onnx.load(str(model_dir / "1" / "model.onnx")).graph
    triton_type = {"float32": "TYPE_FP32", "uint8": "TYPE_UINT8"}

    def graph_side(values):
        out = {}
        for v in values:
            dims = [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]
            dtype = helper.tensor_dtype_to_np_dtype(v.type.tensor_type.elem_type).name
            out[v.name] = (dims, triton_type[dtype])
        return out

    for section, values in (("input", graph.input), ("output", graph.output)):
        declared = {e["name"]: (["batch", *e["dims"]], e["data_type"]) for e in cfg[section]}
        assert declared == graph_side(values), section  # same names, order, batch-first dims and types
    inputs = {e["name"]: e["dims"] for e in cfg["input"]}
    assert inputs == {"x_T": [3, 16, 16], "context": [5], "guidance": [1], "noise": [4, 3, 16, 16]}
    assert {e["name"]: e["dims"] for e in cfg["output"]} == {"images": [16, 16, 3], "sample": [3, 16, 16]}
    keys = [p["key"] for p in (cfg["parameters"] if isinstance(cfg["parameters"], list) else [cfg["parameters"]])]
    assert keys == ["difftool", "difftool_generator"]


def test_batched_requests_equal_separate_generations(generator_repo, tmp_path):
    """What the dynamic batcher does: stack 3 requests with their own guidance; each row equals the
    request run alone through the default-layout generator."""
    from difftool.export.generator import GeneratorSettings, export_generator
    from difftool.runtime.generator import GeneratorSession

    sess = cpu_session(generator_repo / "sprites_generator" / "1" / "model.onnx")
    alone = tmp_path / "g.onnx"
    export_generator(BUNDLED, alone, GeneratorSettings(steps=5, eta=1.0), check=False)
    single = GeneratorSession(alone, threads=1, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 3, 16, 16), dtype=np.float32)
    noise = rng.standard_normal((3, 4, 3, 16, 16), dtype=np.float32)  # (B, N, C, H, W): batch first
    ctx = np.eye(5, dtype=np.float32)[[0, 2, 4]]
    guidance = np.array([[1.0], [3.0], [5.0]], dtype=np.float32)
    images, sample = sess.run(["images", "sample"], {"x_T": x, "context": ctx, "guidance": guidance, "noise": noise})
    assert images.dtype == np.uint8 and images.shape == (3, 16, 16, 3)
    for i in range(3):
        want_images, want = single.run(x[i:i + 1], ctx[i:i + 1], float(guidance[i, 0]), noise[i:i + 1].transpose(1, 0, 2, 3, 4))
        assert np.abs(sample[i] - want[0]).max() <= 1e-4
        assert np.abs(images[i].astype(int) - want_images[0]).max() <= 1
