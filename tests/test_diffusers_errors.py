"""Bad diffusers folders: one line naming exactly what is missing or unsupported, exit 1, nothing written."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")

from difftool.errors import DifftoolError  # noqa: E402
from difftool.export.onnx_export import export_onnx  # noqa: E402

SMALL = dict(sample_size=8, block_out_channels=(8, 16), norm_num_groups=4, layers_per_block=1,
             down_block_types=("DownBlock2D", "AttnDownBlock2D"), up_block_types=("AttnUpBlock2D", "UpBlock2D"))


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    root = tmp_path_factory.mktemp("good") / "pipe"
    torch.manual_seed(0)
    diffusers.DDPMPipeline(unet=diffusers.UNet2DModel(**SMALL), scheduler=diffusers.DDPMScheduler()).save_pretrained(root)
    return root


def _copy(good, tmp_path, name="m"):
    import shutil

    dst = tmp_path / name
    shutil.copytree(good, dst)
    return dst


def _edit(path, **changes):
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


def _broken(kind, folder):
    unet, sched = folder / "unet" / "config.json", folder / "scheduler" / "scheduler_config.json"
    if kind == "no unet config":
        unet.unlink()
    elif kind == "malformed unet config":
        unet.write_text('{"sample_size": 8,')
    elif kind == "no scheduler":
        sched.unlink()
    elif kind == "malformed scheduler":
        sched.write_text("[1, 2]")
    elif kind == "bad scheduler value":
        _edit(sched, num_train_timesteps="many")
    elif kind == "no weights":
        (folder / "unet" / "diffusion_pytorch_model.safetensors").unlink()
    elif kind == "weights mismatch":
        _edit(unet, block_out_channels=[8, 32])
    elif kind == "cross-attention block":
        _edit(unet, down_block_types=["DownBlock2D", "CrossAttnDownBlock2D"])
    elif kind == "timestep class embedding":
        _edit(unet, class_embed_type="timestep")
    elif kind == "fourier time":
        _edit(unet, time_embedding_type="fourier")
    elif kind == "learned variance":
        _edit(unet, out_channels=6)
    elif kind == "flow prediction":
        _edit(sched, prediction_type="flow_prediction")
    elif kind == "sigmoid betas":
        _edit(sched, beta_schedule="sigmoid")
    elif kind == "dpm-solver (not ++)":
        _edit(sched, _class_name="DPMSolverMultistepScheduler", algorithm_type="dpmsolver")
    elif kind == "euler scheduler":
        _edit(sched, _class_name="ScoreSdeVeScheduler")
    return folder


CASES = [
    ("no unet config", "m/unet/config.json is missing"),
    ("malformed unet config", "m/unet/config.json is not valid JSON"),
    ("no scheduler", "the scheduler config is missing"),
    ("malformed scheduler", "m/scheduler/scheduler_config.json is not a JSON object"),
    ("bad scheduler value", "malformed value"),
    ("no weights", "no weights in m/unet"),
    ("weights mismatch", "do not match m/unet/config.json: shape"),
    ("cross-attention block", "down block 'CrossAttnDownBlock2D' is not supported"),
    ("timestep class embedding", "class_embed_type 'timestep' is not supported"),
    ("fourier time", "time_embedding_type 'fourier' is not supported"),
    ("learned variance", "out_channels 6 != in_channels 3"),
    ("flow prediction", "prediction_type 'flow_prediction' is not supported"),
    ("sigmoid betas", "beta_schedule 'sigmoid' is not supported"),
    ("euler scheduler", "scheduler ScoreSdeVeScheduler is not supported"),
    ("dpm-solver (not ++)", "DPMSolverMultistepScheduler with algorithm_type='dpmsolver' is not supported"),
]


@pytest.mark.parametrize("kind, needle", CASES)
def test_bad_folder_is_named_and_nothing_is_written(good, tmp_path, kind, needle):
    folder = _broken(kind, _copy(good, tmp_path))
    out = tmp_path / "out" / "m.onnx"
    with pytest.raises(DifftoolError) as err:
        export_onnx(folder, out)
    assert needle in str(err.value) and "\n" not in str(err.value)
    assert not out.parent.exists() or not any(out.parent.iterdir())


def cli(*args):
    env = {"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin", "COLUMNS": "200", "HOME": "/tmp",
           **({"PYTHONPATH": os.environ["PYTHONPATH"]} if "PYTHONPATH" in os.environ else {})}
    return subprocess.run([sys.executable, "-m", "difftool", *map(str, args)], capture_output=True, text=True,
                          timeout=300, env=env)


@pytest.mark.parametrize("kind, needle", [CASES[6], CASES[7]])
def test_cli_export_of_a_bad_folder_is_one_line_exit_1(good, tmp_path, kind, needle):
    folder = _broken(kind, _copy(good, tmp_path))
    proc = cli("export", folder)
    lines = [x for x in proc.stderr.strip().splitlines() if x.strip()]
    assert proc.returncode == 1 and len(lines) == 1 and lines[0].startswith("error:"), proc.stderr
    assert needle in lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]  # no m.onnx, no temporary folder


def test_plain_folder_is_not_a_model(tmp_path):
    (tmp_path / "notes.txt").write_text("hi")
    proc = cli("export", tmp_path)
    assert proc.returncode == 1 and "not a diffusers model folder" in proc.stderr
