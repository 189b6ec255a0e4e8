"""difftool -> diffusers: ``train --model diffusers`` (EMA, class dropout onto a null class, resume) and
``export --format diffusers``, round-tripped through diffusers' own ``DDPMPipeline.from_pretrained``."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")
pytest.importorskip("sklearn")  # the digits dataset

from difftool.errors import DifftoolError  # noqa: E402
from difftool.export.diffusers_out import export_diffusers  # noqa: E402
from difftool.models import presets  # noqa: E402
from difftool.models.checkpoint import load  # noqa: E402
from difftool.runtime.artifact import read_card  # noqa: E402
from difftool.train.loop import TrainConfig, train  # noqa: E402

torch.set_num_threads(1)
UNET = {"block_out_channels": [16, 32], "norm_num_groups": 8, "layers_per_block": 1, "attention_head_dim": 8,
        "down_block_types": ["DownBlock2D", "AttnDownBlock2D"], "up_block_types": ["AttnUpBlock2D", "UpBlock2D"]}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("train")
    (root / "unet.json").write_text(json.dumps({"_class_name": "UNet2DModel", **UNET}))
    cfg = TrainConfig(dataset="digits", out=str(root / "run"), model="diffusers", unet_config=str(root / "unet.json"),
                      max_steps=6, stop_after=3, batch_size=16, sample_every=0, save_every=3, warmup_steps=1,
                      ema_decay=0.5, threads=1)
    train(cfg)
    first = read_card(root / "run" / "model.safetensors").training["step"]
    path = train(TrainConfig(**{**cfg.__dict__, "stop_after": 0}))  # resumes at step 3
    return {"root": root, "ckpt": path, "first_stop": first}


def test_train_builds_a_diffusers_unet_and_resumes(run):
    card = read_card(run["ckpt"])
    assert run["first_stop"] == 3 and card.training["step"] == 6
    assert card.model.arch == "diffusers_unet2d" and card.model.null_class
    assert card.model.unet["num_class_embeds"] == 11 and card.num_classes == 10 and card.supports_guidance
    assert card.model.unet["block_out_channels"] == [16, 32] and card.model.unet["sample_size"] == 8
    loaded = load(run["ckpt"])
    raw = torch.load(run["ckpt"].parent / "train_state.pt", weights_only=True)
    ema, model = loaded.module.state_dict(), raw["model"]
    assert any(not torch.equal(ema[k], model[k]) for k in model)  # the checkpoint holds the EMA weights


@pytest.fixture(scope="module")
def folder(run):
    out = run["root"] / "exported"
    summary = export_diffusers(run["ckpt"], out)
    assert summary["format"] == "diffusers" and "unet/diffusion_pytorch_model.safetensors" in summary["files"]
    return out


def test_ddpm_pipeline_loads_the_export_and_matches(run, folder):
    pipe = diffusers.DDPMPipeline.from_pretrained(str(folder))
    assert type(pipe.scheduler).__name__ == "DDPMScheduler"
    cfg = pipe.scheduler.config
    assert cfg.beta_schedule == "squaredcos_cap_v2" and cfg.num_train_timesteps == 1000
    assert cfg.prediction_type == "epsilon" and cfg.clip_sample and cfg.clip_sample_range == 1.0
    ours = load(run["ckpt"]).module
    gen = torch.Generator().manual_seed(0)
    x, t = torch.randn(3, 1, 8, 8, generator=gen), torch.tensor([3, 500, 999])
    with torch.no_grad():
        theirs = pipe.unet(x, t, class_labels=torch.tensor([0, 7, 10])).sample  # 10: the null class
        mine = ours(x, t.float(), torch.cat([torch.eye(10)[[0, 7]], torch.zeros(1, 10)]))
    assert torch.allclose(theirs, mine, atol=1e-6) and theirs.abs().max() > 0.01


def test_difftool_reads_its_export_back(run, folder):
    card, trained = read_card(folder), read_card(run["ckpt"])
    assert card.model.unet["num_class_embeds"] == 11 and card.model.null_class and card.supports_guidance
    assert card.class_names == trained.class_names and card.schedule == trained.schedule
    assert card.clip_limit == 1.0 and card.credit == trained.credit
    a, b = load(folder).module.state_dict(), load(run["ckpt"]).module.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_guided_sampling_matches_diffusers_with_the_null_label(folder):
    """Classifier-free guidance through the null class: difftool's DDIM vs diffusers' DDIMScheduler with
    eps = eps(null) + g (eps(class) - eps(null)), same x_T."""
    from difftool.models.denoiser import TorchDenoiser
    from difftool.runtime.guidance import guided_eps
    from difftool.runtime.noise import Noise
    from difftool.runtime.samplers import ddim
    from difftool.runtime.schedules import make_schedule

    pipe = diffusers.DDPMPipeline.from_pretrained(str(folder))
    card, g, steps = read_card(folder), 3.0, 10
    x_T = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    scheduler = diffusers.DDIMScheduler.from_config(pipe.scheduler.config)
    scheduler.set_timesteps(steps)
    x, labels = x_T.clone(), torch.tensor([3, 5])
    with torch.no_grad():
        for t in scheduler.timesteps:
            eps_c = pipe.unet(x, t, class_labels=labels).sample
            eps_u = pipe.unet(x, t, class_labels=torch.full((2,), 10)).sample
            x = scheduler.step(eps_u + g * (eps_c - eps_u), t, x, eta=0.0, use_clipped_model_output=True).prev_sample
    den = TorchDenoiser(load(folder).module, card)
    schedule = make_schedule(card.schedule)
    ctx = np.eye(10, dtype=np.float32)[[3, 5]]
    ours = ddim(guided_eps(den, schedule, ctx, g), x_T.numpy(), schedule, steps=steps, noise=Noise([0, 1]),
                spacing=card.recommended("spacing"), clip=card.clip_limit)
    assert np.abs(ours - x.numpy()).max() <= 1e-3


def test_presets_size_like_the_bundled_model():
    sprite = presets.diffusers(channels=3, size=16, num_classes=5)
    assert sprite.unet["block_out_channels"] == [24, 48, 96, 128] and sprite.unet["num_class_embeds"] == 6
    assert sprite.unet["down_block_types"] == ["DownBlock2D", "DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"]
    mnist = presets.diffusers(channels=1, size=28, num_classes=0)  # 28 halves twice: three levels
    assert mnist.unet["block_out_channels"] == [24, 48, 96] and mnist.unet["num_class_embeds"] is None
    from difftool.models import build

    with torch.no_grad():
        out = build(mnist)(torch.zeros(1, 1, 28, 28), torch.tensor([5.0]), None)
    assert out.shape == (1, 1, 28, 28)
    with pytest.raises(DifftoolError, match="num_class_embeds 5"):
        presets.diffusers(3, 16, 5, unet={**UNET, "num_class_embeds": 5})


def _cli(*args):
    env = {"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin", "COLUMNS": "200", "HOME": "/tmp",
           **({"PYTHONPATH": os.environ["PYTHONPATH"]} if "PYTHONPATH" in os.environ else {})}
    return subprocess.run([sys.executable, "-m", "difftool", *map(str, args)], capture_output=True, text=True,
                          timeout=300, env=env)


def test_own_architectures_say_so_in_one_line(tmp_path):
    from difftool.cli import bundled_model

    ckpt = bundled_model().with_suffix(".safetensors")
    proc = _cli("export", ckpt, "--format", "diffusers", "-o", tmp_path / "out")
    lines = [x for x in proc.stderr.strip().splitlines() if x.strip()]
    assert proc.returncode == 1 and len(lines) == 1, proc.stderr
    assert "does not map onto diffusers' UNet2DModel" in lines[0]
    assert not (tmp_path / "out").exists()
    proc = _cli("train", "--unet-config", tmp_path / "u.json", "--out", tmp_path / "never")
    assert proc.returncode == 2 and "--model diffusers" in proc.stderr


def test_export_refuses_a_non_empty_output_folder(run, tmp_path):
    (tmp_path / "keep.txt").write_text("mine")
    with pytest.raises(DifftoolError, match="not an empty folder"):
        export_diffusers(run["ckpt"], tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]
