"""The generation record in every PNG: written by generate/demo, read back by `generate --from-png` to the
same pixels; A1111-style `parameters` line; bad PNGs and flags rejected in one line (real subprocesses)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from difftool.runtime.record import GenerationRecord, mix_text, read_png

BUNDLED = Path(__file__).resolve().parents[1] / "src" / "difftool" / "assets" / "sprites.onnx"


def difftool(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "difftool", *map(str, args)], capture_output=True, text=True,
                          timeout=240, cwd=cwd, env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin",
                                                     "COLUMNS": "200", "HOME": "/tmp"})


def pixels(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def test_generate_writes_the_record_and_from_png_regenerates_the_same_pixels(tmp_path):
    first = tmp_path / "a.png"
    proc = difftool("generate", "--mix", "hero=0.5,food=0.5", "-n", "3", "--steps", "4", "--sampler", "ddim",
                    "--eta", "0.7", "--seed", "11", "--guidance", "2.5", "-o", first)
    assert proc.returncode == 0, proc.stderr
    record = read_png(first)
    assert (record.sampler, record.steps, record.guidance, record.seeds) == ("ddim", 4, 2.5, (11, 12, 13))
    assert record.options == {"eta": 0.7} and record.model == "sprites.onnx" and len(record.model_sha256) == 16
    assert mix_text(record.context[0], record.class_names) == "hero=0.5,food=0.5"
    with Image.open(first) as im:
        line = im.text["parameters"]
    assert line.startswith("hero=0.5,food=0.5\n") and "Steps: 4, Sampler: DDIM, CFG scale: 2.5, Seed: 11" in line
    again = tmp_path / "b.png"
    proc = difftool("generate", "--from-png", first, "-o", again)
    assert proc.returncode == 0, proc.stderr
    np.testing.assert_array_equal(pixels(first), pixels(again))
    other = tmp_path / "c.png"  # a different seed really changes the pixels (the round trip is not trivial)
    assert difftool("generate", "--mix", "hero=0.5,food=0.5", "-n", "3", "--steps", "4", "--eta", "0.7",
                    "--seed", "12", "--guidance", "2.5", "-o", other).returncode == 0
    assert not np.array_equal(pixels(first), pixels(other))


def test_record_json_round_trip_and_request():
    record = GenerationRecord(sampler="ddpm", steps=5, guidance=1.0, seeds=(3, 4), context=((0, 1), (1, 0)),
                              options={"variance": "beta"}, class_names=("a", "b"), image_size=8)
    back = GenerationRecord.from_json(record.to_json())
    assert back == record
    request = back.to_request()
    assert (request.sampler, request.variance, request.seeds, request.context.shape) == ("ddpm", "beta", [3, 4], (2, 2))
    assert "a; b" in record.a1111().splitlines()[0] or "b; a" in record.a1111().splitlines()[0]


@pytest.mark.parametrize("content, message", [
    (None, "no difftool settings"),
    (b"not a png at all", "not a readable PNG"),
])
def test_from_png_bad_files_are_one_line_errors(tmp_path, content, message):
    bad = tmp_path / "bad.png"
    if content is None:
        Image.new("RGB", (4, 4)).save(bad)
    else:
        bad.write_bytes(content)
    proc = difftool("generate", "--from-png", bad, "-o", tmp_path / "out.png")
    lines = [x for x in proc.stderr.strip().splitlines() if x.strip()]
    assert proc.returncode == 1 and len(lines) == 1 and message in lines[0] and "Traceback" not in proc.stderr
    assert not (tmp_path / "out.png").exists()


@pytest.mark.parametrize("flags", [["--variance", "wide"], ["--guidance", "nan"], ["--guidance", "-inf"],
                                   ["--sampler", "euler"], ["--eta", "nan"], ["--backend", "gpu9"]])
def test_bad_sampling_flags_are_usage_errors(tmp_path, flags):
    proc = difftool("generate", *flags, "-o", tmp_path / "x.png")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert not (tmp_path / "x.png").exists()


def test_variance_flag_reaches_the_sampler(tmp_path):
    out = {}
    for variance in ("beta", "posterior"):
        path = tmp_path / f"{variance}.png"
        proc = difftool("generate", "--class", "food", "-n", "2", "--sampler", "ddpm", "--steps", "5",
                        "--variance", variance, "-o", path, "--json")
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout)["variance"] == variance
        out[variance] = pixels(path)
    assert not np.array_equal(out["beta"], out["posterior"])
