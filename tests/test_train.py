"""Training: determinism on CPU, exact resume, checkpoints and sample grids, 2-rank DDP (gloo)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="training tests need torch (pip install 'difftool[train]')")
pytest.importorskip("sklearn", reason="the digits dataset needs scikit-learn")

from difftool.errors import DifftoolError  # noqa: E402
from difftool.models.checkpoint import load  # noqa: E402
from difftool.train.loop import TrainConfig, lr_factor, train, weights_digest  # noqa: E402

# device pinned: these tests compare exact weight digests, which hold on CPU (GPU runs: test_train_devices.py)
BASE = TrainConfig(dataset="digits", model="tiny", max_steps=12, batch_size=16, warmup_steps=4,
                   sample_every=0, save_every=6, log_every=3, threads=1, seed=3, device="cpu")


def _digest(path):
    return weights_digest(load(path).module)


def _resumes_exactly_and_is_recorded(tmp_path, **change):
    """BASE with ``change``, trained whole and in two parts (stop at 6, resume): the same weights, and the
    card's ``training`` records each changed field. Returns the whole run's checkpoint."""
    cfg = replace(BASE, **change)
    full = train(replace(cfg, out=str(tmp_path / "full")))
    for key, value in change.items():
        assert load(full).card.training[key] == value
    part = tmp_path / "part"
    train(replace(cfg, out=str(part), stop_after=6))
    assert _digest(train(replace(cfg, out=str(part)))) == _digest(full)
    return full


def test_training_writes_checkpoint_log_and_card(tmp_path):
    path = train(replace(BASE, out=str(tmp_path / "run")))
    loaded = load(path)
    assert loaded.card.class_names == tuple(str(i) for i in range(10))
    assert loaded.card.training["step"] == 12
    assert loaded.card.training["dataset"] == "digits"
    lines = [json.loads(x) for x in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines] == [3, 6, 9, 12]
    assert all(x["loss"] > 0 for x in lines)
    assert (tmp_path / "run" / "train_state.pt").is_file()


def test_same_seed_same_weights_other_seed_differs(tmp_path):
    a = _digest(train(replace(BASE, out=str(tmp_path / "a"))))
    b = _digest(train(replace(BASE, out=str(tmp_path / "b"))))
    c = _digest(train(replace(BASE, out=str(tmp_path / "c"), seed=4)))
    assert a == b
    assert a != c


def test_resume_continues_exactly(tmp_path):
    full = _digest(train(replace(BASE, out=str(tmp_path / "full"))))
    # Interrupted run: stop after the step-6 checkpoint, then resume with the same config.
    part = tmp_path / "part"
    train(replace(BASE, out=str(part), max_steps=12, save_every=6, stop_after=6))
    assert load(part / "model.safetensors").card.training["step"] == 6
    resumed = _digest(train(replace(BASE, out=str(part))))
    assert resumed == full


def test_loss_goes_down(tmp_path):
    cfg = replace(BASE, out=str(tmp_path / "r"), max_steps=150, log_every=25, save_every=150, lr=2e-3)
    train(cfg)
    losses = [json.loads(x)["loss"] for x in (tmp_path / "r" / "log.jsonl").read_text().splitlines()]
    assert losses[-1] < 0.7 * losses[0]


def test_sample_grid_is_written(tmp_path):
    from PIL import Image

    train(replace(BASE, out=str(tmp_path / "s"), max_steps=4, sample_every=4))
    grids = sorted((tmp_path / "s" / "samples").glob("step_*.png"))
    assert grids
    w, h = Image.open(grids[-1]).size
    assert w > 8 * 4 and h > 8 * 4  # 10 rows of 8 upscaled sprites


def test_lr_schedule_warmup_then_cosine():
    assert lr_factor(0, 100, 10, 0.1) == pytest.approx(0.1)
    assert lr_factor(9, 100, 10, 0.1) == pytest.approx(1.0)
    assert lr_factor(100, 100, 10, 0.1) == pytest.approx(0.1)
    assert lr_factor(55, 100, 10, 0.1) == pytest.approx(0.55)


def test_ddp_two_gloo_ranks_end_identical(tmp_path):
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "difftool",
           "train", "--dataset", "digits", "--model", "tiny", "--max-steps", "5", "--batch-size", "8",
           "--sample-every", "0", "--save-every", "5", "--threads", "1", "--device", "cpu", "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    check = json.loads((out / "ddp_check.json").read_text())
    assert check["world_size"] == 2
    assert len(check["digests"]) == 2 and check["digests"][0] == check["digests"][1]
    assert load(out / "model.safetensors").card.training["step"] == 5


def test_class_weights_balance_the_classes():
    from difftool.errors import DifftoolError
    from difftool.train.loop import class_weights

    labels = np.array([0] * 90 + [1] * 10)
    assert class_weights(labels, 0.0) is None
    assert class_weights(np.zeros(5, dtype=np.int64), 1.0) is None  # one class: nothing to balance
    full = class_weights(labels, 1.0).numpy()
    assert full[:90] == pytest.approx(1 / 90) and full[90:] == pytest.approx(1 / 10)
    share = lambda w: w[90:].sum() / w.sum()  # noqa: E731
    assert share(full) == pytest.approx(0.5)
    assert share(class_weights(labels, 0.5).numpy()) == pytest.approx(np.sqrt(10) / (np.sqrt(10) + np.sqrt(90)))
    # unlabelled tiles (-1) are a group of their own
    mixed = class_weights(np.array([-1, -1, -1, 0]), 1.0).numpy()
    assert mixed == pytest.approx([1 / 3, 1 / 3, 1 / 3, 1.0])
    with pytest.raises(DifftoolError, match="between 0 and 1"):
        class_weights(labels, 1.5)


def test_balanced_epoch_order_is_deterministic_and_balanced():
    from difftool.train.loop import _Dist, _epoch_order, class_weights

    labels = np.array([0] * 900 + [1] * 100)
    weights = class_weights(labels, 1.0)
    dist = _Dist(torch.device("cpu"))
    a = _epoch_order(len(labels), 3, 7, dist, weights)
    assert torch.equal(a, _epoch_order(len(labels), 3, 7, dist, weights))  # resumable: same order again
    assert not torch.equal(a, _epoch_order(len(labels), 3, 8, dist, weights))
    drawn = np.concatenate([labels[_epoch_order(len(labels), 3, e, dist, weights).numpy()] for e in range(10)])
    assert len(drawn) == 10 * len(labels)
    assert 0.46 < drawn.mean() < 0.54  # the 10 % class fills half the batches
    plain = _epoch_order(len(labels), 3, 7, dist)
    assert sorted(plain.tolist()) == list(range(len(labels)))  # uniform: a permutation


def test_class_balanced_run_resumes_exactly_and_is_recorded(tmp_path):
    full = _resumes_exactly_and_is_recorded(tmp_path, class_balance=1.0)
    assert _digest(full) != _digest(train(replace(BASE, out=str(tmp_path / "uniform"))))


def test_dropout_run_resumes_exactly_is_recorded_and_changes_training(tmp_path):
    full = _resumes_exactly_and_is_recorded(tmp_path, dropout=0.1)
    assert load(full).card.model == load(train(replace(BASE, out=str(tmp_path / "plain")))).card.model  # not stored
    assert _digest(full) != _digest(tmp_path / "plain" / "model.safetensors")


def test_dropout_acts_only_in_training_mode():
    from difftool.models.presets import tiny
    from difftool.models.unet import Unet, set_dropout

    torch.manual_seed(0)
    model = Unet(tiny())
    x, t, c = torch.randn(4, 1, 8, 8), torch.full((4,), 50.0), torch.eye(10)[:4]
    keys = list(model.state_dict())
    model.eval()
    with torch.no_grad():
        before = model(x, t, c)
        assert set_dropout(model, 0.3) > 0
        assert torch.equal(model(x, t, c), before)  # eval (sampling, export): no dropout
        model.train()
        a, b = model(x, t, c), model(x, t, c)
        set_dropout(model, 0.0)
        plain = model(x, t, c)
    assert not torch.allclose(a, b) and torch.equal(plain, before)
    assert list(model.state_dict()) == keys  # no new weights: checkpoints and exports are unchanged


def test_dropout_needs_a_unet_preset():
    from difftool.config import ContextUnetConfig
    from difftool.errors import DifftoolError
    from difftool.models.context_unet import ContextUnet
    from difftool.train.loop import _dropout

    with pytest.raises(DifftoolError, match="--dropout applies to the U-Net presets"):
        _dropout(ContextUnet(ContextUnetConfig()), 0.1)
    with pytest.raises(DifftoolError, match=r"--dropout must be in \[0, 1\)"):
        _dropout(ContextUnet(ContextUnetConfig()), 1.5)


def test_flip_defaults_follow_the_dataset():
    from difftool.train.loop import flips

    assert not flips(TrainConfig(dataset="digits")) and not flips(TrainConfig(dataset="mnist"))
    assert flips(TrainConfig(dataset="sprites")) and flips(TrainConfig(dataset="images"))
    assert flips(TrainConfig(dataset="digits", hflip=True)) and not flips(TrainConfig(dataset="sprites", hflip=False))


def test_default_preset_depends_on_dataset_and_device():
    from difftool.models.presets import default_preset, preset

    assert default_preset("mnist", "cpu") == "mnist-cpu" and default_preset("mnist", "cuda") == "mnist"
    assert default_preset("sprites", "cpu") == default_preset("sprites", "cuda") == "sprite"
    small, big = preset("mnist-cpu", 1, 28, 10), preset("mnist", 1, 28, 10)
    assert small.im_size == big.im_size == 28 and not any(small.attention) and all(big.attention)


def test_sprite_wide_preset_doubles_only_the_full_resolution_width():
    from difftool.config import ScheduleConfig
    from difftool.models import build
    from difftool.models.presets import preset

    base, wide = preset("sprite", 3, 16, 5), preset("sprite-wide", 3, 16, 5)
    assert wide.down_channels[0] == wide.out_width == 2 * base.down_channels[0] == 48
    assert wide.down_channels[2:] == base.down_channels[2:] and wide.mid_channels == base.mid_channels
    module = build(replace(wide, palette=("#000000", "#ffffff")), ScheduleConfig())
    with torch.no_grad():
        out = module(torch.zeros(2, 3, 16, 16), torch.tensor([10.0, 900.0]), torch.eye(5)[:2])
    assert out.shape == (2, 3, 16, 16) and torch.isfinite(out).all()
    narrow = sum(p.numel() for p in build(base).parameters())
    assert narrow < sum(p.numel() for p in build(wide).parameters()) < 1.2 * narrow


def test_training_throughput_bench_reads_the_loops_own_rate(tmp_path):
    from difftool.bench.training import TrainCase, table, train_throughput
    from difftool.runtime.cpu import bf16_units

    cases = (TrainCase("tiny", "digits", "", batch=16), TrainCase("sprite", "sprites", "no-such-folder"))
    result = train_throughput(tmp_path, steps=4, threads=1, cases=cases)
    ran, skipped = [r for r in result["rows"] if r["precision"] == "fp32"]
    assert len(result["rows"]) == (2 if bf16_units() else 4)  # a bf16 row per case where the CPU has the units
    assert ran["preset"] == "tiny" and ran["images_per_s"] > 0 and np.isfinite(ran["loss"])
    assert "no data at" in skipped["skipped"] and "skipped: no data" in table(result)
    assert result["bf16"] == (bf16_units() or "available")


def test_cpu_bf16_autocast_training_follows_the_fp32_loss_curve(tmp_path):
    """--precision bf16 (autocast on CPU; emulated, slow, where the CPU lacks bf16 units) trains the same
    model: same seeds and batches, the loss curve within a few percent of fp32's."""
    import json

    from difftool.train.loop import TrainConfig, train

    curves = {}
    for precision in ("fp32", "bf16"):
        out = tmp_path / precision
        cfg = TrainConfig(dataset="digits", out=str(out), model="tiny", max_steps=60, batch_size=32, sample_every=0,
                          save_every=1000, log_every=10, threads=1, device="cpu", resume=False, warmup_steps=5,
                          precision=precision)
        train(cfg)
        curves[precision] = [json.loads(line)["loss"] for line in (out / "log.jsonl").read_text().splitlines()]
    fp32, bf16 = np.array(curves["fp32"]), np.array(curves["bf16"])
    assert len(fp32) == len(bf16) >= 5
    assert not np.array_equal(fp32, bf16)  # autocast really ran in bf16
    assert np.all(np.abs(bf16 - fp32) <= 0.05 * fp32), (fp32, bf16)


def test_input_perturbation_resumes_exactly_is_recorded_and_changes_training(tmp_path):
    full = _resumes_exactly_and_is_recorded(tmp_path, input_perturbation=0.1)
    plain = train(replace(BASE, out=str(tmp_path / "plain")))
    assert load(plain).card.training["input_perturbation"] == 0.0
    assert _digest(full) != _digest(plain)


def test_input_perturbation_noise_is_the_target_plus_scaled_extra_noise():
    from difftool.train.steps import _perturbed

    noise = torch.randn(64, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    assert _perturbed(noise, 0.0, torch.Generator().manual_seed(1), "cpu") is noise  # off: no draw at all
    extra = _perturbed(noise, 0.1, torch.Generator().manual_seed(1), "cpu") - noise
    xi = torch.randn(noise.shape, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(extra, 0.1 * xi, atol=1e-6)


@pytest.mark.parametrize("gamma", [-0.1, 1.5, float("nan")])
def test_bad_input_perturbation_fails_before_training(tmp_path, gamma):
    with pytest.raises(DifftoolError, match="--input-perturbation must be in"):
        train(replace(BASE, input_perturbation=gamma, out=str(tmp_path / "bad")))
    assert not (tmp_path / "bad" / "model.safetensors").exists()
