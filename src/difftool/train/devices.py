"""Which device and process-group backend each training process uses.

A pure function of the request (``--device``), the process's local rank, the number of processes
(on this node and in total) and the CUDA devices visible, so it is testable without a GPU. The rules:

* NCCL needs one GPU per process. Under ``torchrun --nproc_per_node=N`` with ``--device auto``, the
  ranks use ``cuda:<local rank>`` when the node has at least N devices; with fewer, every rank trains on
  CPU with gloo (all ranks must agree on one backend), and rank 0 says why.
* ``--device cuda`` asks for GPUs explicitly, so too few of them is an error, as is ``cuda:N`` for a
  device that does not exist or for several processes at once.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from difftool.errors import DifftoolError


@dataclass(frozen=True)
class DevicePlan:
    device: str  # "cpu", "cuda:0", ...
    backend: str  # torch.distributed backend when world size > 1: "gloo" or "nccl"
    note: str = ""  # why ``auto`` did not pick the GPU (shown once, by rank 0)


@dataclass(frozen=True)
class DistEnv:
    """What torchrun (or a compatible launcher) put in the environment."""

    rank: int = 0
    local_rank: int = 0
    world: int = 1
    local_world: int = 1

    @classmethod
    def from_environ(cls, environ=None) -> DistEnv:
        env = os.environ if environ is None else environ
        world = int(env.get("WORLD_SIZE", "1"))
        return cls(rank=int(env.get("RANK", "0")), local_rank=int(env.get("LOCAL_RANK", "0")), world=world,
                   local_world=int(env.get("LOCAL_WORLD_SIZE", str(world))))


def plan_device(requested: str, env: DistEnv, device_count: int) -> DevicePlan:
    """The device and process-group backend for this process (DifftoolError for impossible requests)."""
    name = requested.strip().lower()
    if name == "cpu":
        return DevicePlan("cpu", "gloo")
    if name == "auto":
        return _auto(env, device_count)
    if name == "cuda" or name.startswith("cuda:"):
        return _cuda(name, env, device_count)
    return DevicePlan(name, "gloo")  # another torch device type (mps, xpu, ...): passed through


def _auto(env: DistEnv, device_count: int) -> DevicePlan:
    if device_count == 0:
        return DevicePlan("cpu", "gloo")
    if env.world == 1:
        return DevicePlan("cuda:0", "nccl")
    if env.local_world > device_count:
        return DevicePlan("cpu", "gloo", note=(
            f"{env.local_world} processes on this node but {device_count} CUDA device(s); NCCL needs one GPU "
            f"per process, so every rank trains on CPU with gloo (use --nproc_per_node={device_count} to "
            "train on the GPU)"))
    return DevicePlan(f"cuda:{env.local_rank}", "nccl")


def _cuda(name: str, env: DistEnv, device_count: int) -> DevicePlan:
    if device_count == 0:
        raise DifftoolError(f"--device {name} was asked for but no CUDA GPU is visible; use --device cpu")
    if name == "cuda":
        if env.world == 1:
            return DevicePlan("cuda:0", "nccl")
        if env.local_world > device_count:
            raise DifftoolError(f"--device cuda with {env.local_world} processes per node needs {env.local_world} "
                                f"CUDA devices, this machine has {device_count}; use "
                                f"--nproc_per_node={device_count} or --device cpu")
        return DevicePlan(f"cuda:{env.local_rank}", "nccl")
    index = name.removeprefix("cuda:")
    if not index.isdigit():
        raise DifftoolError(f"--device must be auto, cpu, cuda or cuda:N; got {name!r}")
    if int(index) >= device_count:
        raise DifftoolError(f"--device {name}: no such device; this machine has {device_count} CUDA device(s) "
                            f"(cuda:0 to cuda:{device_count - 1})")
    if env.world > 1:
        raise DifftoolError(f"--device {name} would put all {env.world} processes on one GPU, which NCCL refuses; "
                            "use --device cuda (one GPU per process) or --device cpu")
    return DevicePlan(name, "nccl")


def cuda_device_count() -> int:
    """CUDA devices torch can use here (0 without a GPU or with a CPU-only torch)."""
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0
