"""Training on GPUs: the device each rank gets (a pure function), the AMP GradScaler in the checkpoint, and
the GPU runs themselves (marked ``gpu``: skipped with the reason where there is none)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace

import pytest

from difftool.errors import DifftoolError
from difftool.train.devices import DevicePlan, DistEnv, plan_device

ONE = DistEnv()


def _ranks(local_world: int, world: int | None = None) -> list[DistEnv]:
    world = world or local_world
    return [DistEnv(rank=r, local_rank=r % local_world, world=world, local_world=local_world) for r in range(world)]


def test_single_process_device_plans():
    assert plan_device("auto", ONE, 0) == DevicePlan("cpu", "gloo")
    assert plan_device("auto", ONE, 1) == DevicePlan("cuda:0", "nccl")
    assert plan_device("cpu", ONE, 4) == DevicePlan("cpu", "gloo")
    assert plan_device("cuda", ONE, 2) == DevicePlan("cuda:0", "nccl")
    assert plan_device("cuda:1", ONE, 2) == DevicePlan("cuda:1", "nccl")
    assert plan_device("mps", ONE, 0) == DevicePlan("mps", "gloo")  # other torch devices pass through
    with pytest.raises(DifftoolError, match="no CUDA GPU is visible; use --device cpu"):
        plan_device("cuda", ONE, 0)
    with pytest.raises(DifftoolError, match=r"--device cuda:1: no such device; this machine has 1 CUDA device\(s\) "
                                            r"\(cuda:0 to cuda:0\)"):
        plan_device("cuda:1", ONE, 1)
    with pytest.raises(DifftoolError, match="--device must be auto, cpu, cuda or cuda:N; got 'cuda:x'"):
        plan_device("cuda:x", ONE, 1)


def test_two_processes_on_one_gpu_train_on_cpu_together():
    """The H200 box: torchrun --nproc_per_node=2 --device auto. Rank 1 must not get cuda:1, and both
    ranks must pick the same backend."""
    plans = [plan_device("auto", env, 1) for env in _ranks(2)]
    assert [p.device for p in plans] == ["cpu", "cpu"] and {p.backend for p in plans} == {"gloo"}
    assert "2 processes on this node but 1 CUDA device(s)" in plans[0].note
    assert "--nproc_per_node=1" in plans[0].note
    with pytest.raises(DifftoolError, match="--device cuda with 2 processes per node needs 2 CUDA devices, "
                                            "this machine has 1"):
        plan_device("cuda", _ranks(2)[1], 1)
    with pytest.raises(DifftoolError, match="would put all 2 processes on one GPU"):
        plan_device("cuda:0", _ranks(2)[0], 1)


def test_one_gpu_per_process_uses_nccl_on_the_local_rank():
    assert [plan_device("auto", env, 2) for env in _ranks(2)] == [DevicePlan("cuda:0", "nccl"),
                                                                   DevicePlan("cuda:1", "nccl")]
    # two nodes of 4 processes, 4 GPUs each: the device is the *local* rank
    assert [plan_device("cuda", env, 4).device for env in _ranks(4, world=8)] == [f"cuda:{i}" for i in
                                                                                 (0, 1, 2, 3) * 2]
    assert plan_device("auto", _ranks(2)[1], 8) == DevicePlan("cuda:1", "nccl")  # more GPUs than ranks
    assert [plan_device("cpu", env, 2).backend for env in _ranks(2)] == ["gloo", "gloo"]


def test_dist_env_reads_torchrun_variables():
    env = DistEnv.from_environ({"WORLD_SIZE": "4", "RANK": "3", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2"})
    assert env == DistEnv(rank=3, local_rank=1, world=4, local_world=2)
    assert DistEnv.from_environ({}) == ONE
    assert DistEnv.from_environ({"WORLD_SIZE": "2", "RANK": "1", "LOCAL_RANK": "1"}).local_world == 2


# -- the AMP GradScaler in the checkpoint -------------------------------------------------------------------


def _state(tmp_path):
    torch = pytest.importorskip("torch")
    from difftool.config import ModelCard, ScheduleConfig
    from difftool.models import build
    from difftool.models.presets import tiny
    from difftool.train.loop import TrainConfig

    torch.manual_seed(0)
    cfg = tiny(channels=1, size=8, num_classes=0)
    card = ModelCard(model=cfg, schedule=ScheduleConfig())
    model = build(cfg)
    ema = build(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    return torch, model, ema, opt, card, TrainConfig(out=str(tmp_path))


def _scaler_after_steps(torch, model, opt):
    """An enabled GradScaler after real steps, one of them with an inf gradient (scale backs off)."""
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 16, growth_interval=100)
    x = torch.randn(2, 1, 8, 8)
    for i in range(5):
        opt.zero_grad()
        loss = model(x, torch.full((2,), 10.0)).square().mean() * (float("inf") if i == 1 else 1.0)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
    return scaler


def test_grad_scaler_state_round_trips_through_the_checkpoint(tmp_path):
    from difftool.train.loop import _load_state, _save_all

    torch, model, ema, opt, card, cfg = _state(tmp_path)
    scaler = _scaler_after_steps(torch, model, opt)
    saved = scaler.state_dict()
    assert saved["scale"] == 2.0 ** 15 and saved["_growth_tracker"] == 3  # backed off once, 3 good steps since
    _save_all(tmp_path, model, ema, opt, card, cfg, 5, 10, 10, 0.0, scaler)
    fresh = torch.amp.GradScaler("cpu", init_scale=2.0 ** 16, growth_interval=100)
    assert fresh.state_dict() != saved
    assert _load_state(tmp_path / "train_state.pt", model, ema, opt, card, fresh) == 5
    assert fresh.state_dict() == saved


def test_checkpoints_without_scaler_state_still_resume(tmp_path):
    from difftool.train.loop import _load_state, _save_all

    torch, model, ema, opt, card, cfg = _state(tmp_path)
    _save_all(tmp_path, model, ema, opt, card, cfg, 3, 10, 6, 0.0)  # a CPU run: no scaler
    assert torch.load(tmp_path / "train_state.pt", weights_only=True)["scaler"] == {}
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 16)
    assert _load_state(tmp_path / "train_state.pt", model, ema, opt, card, scaler) == 3
    assert scaler.state_dict()["scale"] == 2.0 ** 16  # nothing saved: starts where a new run starts


# -- on a GPU ------------------------------------------------------------------------------------------------


def _base():
    pytest.importorskip("sklearn", reason="the digits dataset needs scikit-learn")
    from difftool.train.loop import TrainConfig

    return TrainConfig(dataset="digits", model="tiny", max_steps=12, batch_size=16, warmup_steps=4,
                       sample_every=0, save_every=6, log_every=3, threads=1, seed=3, device="cuda")


@pytest.mark.gpu
def test_amp_resume_restores_the_loss_scale_on_cuda(tmp_path):
    torch = pytest.importorskip("torch")
    from difftool.train.loop import train

    base = _base()
    train(replace(base, out=str(tmp_path / "full")))
    part = tmp_path / "part"
    train(replace(base, out=str(part), stop_after=6))
    train(replace(base, out=str(part)))
    full = torch.load(tmp_path / "full" / "train_state.pt", weights_only=True)["scaler"]
    resumed = torch.load(part / "train_state.pt", weights_only=True)["scaler"]
    assert full and resumed == full  # same loss scale and growth tracker as the uninterrupted run


@pytest.mark.gpu
def test_two_ranks_with_device_auto_finish_on_any_gpu_count(tmp_path):
    """torchrun with 2 processes and --device auto: NCCL with 2+ GPUs, CPU/gloo with one (not cuda:1)."""
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "difftool",
           "train", "--dataset", "digits", "--model", "tiny", "--max-steps", "4", "--batch-size", "8",
           "--sample-every", "0", "--save-every", "4", "--threads", "1", "--device", "auto", "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    check = json.loads((out / "ddp_check.json").read_text())
    assert check["world_size"] == 2 and check["digests"][0] == check["digests"][1]
