"""The command line: exit codes, one-line errors, outputs, determinism (run as real subprocesses)."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

import difftool as difftool_pkg

torch = pytest.importorskip("torch", reason="CLI tests build a checkpoint with torch")

from difftool.config import ModelCard, ScheduleConfig  # noqa: E402
from difftool.models import build, presets  # noqa: E402
from difftool.models.checkpoint import save  # noqa: E402

CLASSES = ("hero", "creature", "food", "weapon", "item")


SRC = str(Path(difftool_pkg.__file__).resolve().parents[1])  # the difftool under test, not another install


def difftool(*args, timeout=180):
    return subprocess.run([sys.executable, "-m", "difftool", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin",
                                                "COLUMNS": "200", "HOME": "/tmp", "PYTHONPATH": SRC})


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    torch.manual_seed(0)
    cfg = presets.tiny(channels=3, size=8, num_classes=5)
    card = ModelCard(model=cfg, schedule=ScheduleConfig(num_timesteps=100), class_names=CLASSES)
    return save(tmp_path_factory.mktemp("ckpt") / "tiny.safetensors", build(cfg), card)


def _one_line_error(proc):
    lines = [x for x in proc.stderr.strip().splitlines() if x.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error:")
    assert "Traceback" not in proc.stderr
    return lines[0]


def test_help_lists_commands():
    proc = difftool("--help")
    assert proc.returncode == 0
    for cmd in ("train", "export", "generate", "sample", "info", "demo", "tui", "doctor"):
        assert cmd in proc.stdout


def test_info_json_round_trips_card(ckpt):
    proc = difftool("info", ckpt, "--json")
    assert proc.returncode == 0, proc.stderr
    card = ModelCard.from_json(proc.stdout)
    assert card.class_names == CLASSES


def test_sample_writes_png_and_is_deterministic(ckpt, tmp_path):
    from PIL import Image

    a, b = tmp_path / "a.png", tmp_path / "b.png"
    for out in (a, b):
        proc = difftool("sample", ckpt, "--class", "food", "--n", "4", "--steps", "5", "--seed", "7",
                        "-o", out, "--scale", "2", "--json")
        assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["steps"] == 5 and summary["guidance"] == 2.0 and summary["backend"] == "torch-cpu"
    assert hashlib.sha256(a.read_bytes()).digest() == hashlib.sha256(b.read_bytes()).digest()
    img = Image.open(a)
    assert img.size == ((4 * 8 + 5) * 2, (8 + 2) * 2)


def test_sample_gif_has_one_frame_per_step(ckpt, tmp_path):
    from PIL import Image

    proc = difftool("sample", ckpt, "--mix", "hero=0.5,food=0.5", "--n", "2", "--steps", "6",
                    "-o", tmp_path / "m.png", "--gif", tmp_path / "m.gif")
    assert proc.returncode == 0, proc.stderr
    gif = Image.open(tmp_path / "m.gif")
    assert gif.n_frames >= 6


@pytest.mark.parametrize("args, needle", [
    (["--class", "dragon"], "unknown class 'dragon'"),
    (["--class", "hero", "--mix", "food=1"], "either --class or --mix"),
    (["--mix", "hero=abc"], "bad weight"),
])
def test_user_errors_are_one_line_exit_1(ckpt, tmp_path, args, needle):
    out = tmp_path / "x.png"
    proc = difftool("sample", ckpt, *args, "--steps", "2", "-o", out)
    assert proc.returncode == 1
    assert needle in _one_line_error(proc)
    assert not out.exists()


def test_bad_files_are_one_line_exit_1(tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    proc = difftool("info", bad)
    assert proc.returncode == 1
    _one_line_error(proc)
    proc = difftool("info", tmp_path / "missing.onnx")
    assert proc.returncode == 1 and "not found" in _one_line_error(proc)


def test_usage_errors_exit_2(ckpt, tmp_path):
    assert difftool("sample", ckpt, "--sampler", "euler").returncode == 2
    assert difftool("sample", ckpt, "--n", "0").returncode == 2
    assert difftool("generate", ckpt, "--bogus-flag").returncode == 2
    proc = difftool("train", "--dataset", "digits", "--class-balance", "1.5", "--out", tmp_path / "never")
    assert proc.returncode == 2 and "class-balance" in proc.stderr
    for flag, value in (("--head", "v"), ("--train-only", "body")):
        proc = difftool("train", "--dataset", "digits", flag, value, "--out", tmp_path / "never")
        assert proc.returncode == 2 and flag in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "never").exists()


def test_bad_artifacts_for_generate_are_one_line_exit_1(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(b"\x08\x07\x12\x04junk" * 10)
    graph = helper.make_graph([helper.make_node("Identity", ["a"], ["b"])], "g",
                              [helper.make_tensor_value_info("a", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("b", TensorProto.FLOAT, [1])])
    plain = tmp_path / "plain.onnx"
    onnx.save(helper.make_model(graph, ir_version=10, opset_imports=[helper.make_opsetid("", 17)]), plain)
    for path, needle in ((truncated, "cannot load"), (plain, "difftool")):
        out = tmp_path / "o.png"
        proc = difftool("generate", path, "-o", out)
        assert proc.returncode == 1, proc.stderr
        assert needle in _one_line_error(proc)
        assert not out.exists()


def test_tensorrt_export_without_tensorrt_is_a_clear_error(ckpt, tmp_path):
    pytest.importorskip("onnxscript")
    try:
        import tensorrt  # noqa: F401
        pytest.skip("tensorrt is installed here")
    except ImportError:
        pass
    out = tmp_path / "m.engine"
    proc = difftool("export", ckpt, "--format", "tensorrt", "-o", out)
    assert proc.returncode == 1
    assert "tensorrt" in _one_line_error(proc).lower()
    assert not out.exists()


def test_bench_json_on_stdout_table_on_stderr_and_skips_with_reason(ckpt):
    pytest.importorskip("onnxscript")
    onnx_path = ckpt.with_suffix(".onnx")
    if not onnx_path.exists():
        proc = difftool("export", ckpt, "-o", onnx_path)
        assert proc.returncode == 0, proc.stderr
    proc = difftool("bench", onnx_path, "--batch", "1,2", "--steps", "3", "--repeats", "1", "--threads", "1",
                    "--backend", "ort,torch,trt", "--json")
    assert proc.returncode == 0, proc.stderr
    record = json.loads(proc.stdout)
    rows = {(r["backend"], r["batch"]) for r in record["results"]}
    assert rows == {("ort-cpu", 1), ("ort-cpu", 2), ("torch-cpu", 1), ("torch-cpu", 2)}
    for row in record["results"]:
        assert row["unet_steps_per_s"] > 0 and row["loop"]["median_s"] > 0
    assert [s["backend"] for s in record["skipped"]] == ["tensorrt"]
    assert record["skipped"][0]["reason"]
    assert record["threads"]["requested"] == 1 and record["steps"] == 3
    assert "difftool bench" in proc.stderr and "skip" in proc.stderr


def test_bench_usage_and_user_errors(ckpt, tmp_path):
    assert difftool("bench", ckpt, "--batch", "0").returncode == 2
    assert difftool("bench", ckpt, "--batch", "a,b").returncode == 2
    assert difftool("bench", ckpt, "--backend", "quantum").returncode == 2
    assert difftool("bench", ckpt, "--sampler", "euler").returncode == 2
    proc = difftool("bench", tmp_path / "missing.onnx")
    assert proc.returncode == 1 and "not found" in _one_line_error(proc)
