"""The process group of a multi-process (torchrun / DDP) run, and the check that its ranks agree."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

from difftool.errors import DifftoolError
from difftool.fileio import atomic_write
from difftool.train.devices import DistEnv


class _Dist:
    """torchrun / DistributedDataParallel set-up (gloo on CPU, nccl on CUDA: see ``train.devices``)."""

    def __init__(self, device: torch.device, backend: str | None = None):
        env = DistEnv.from_environ()
        self.world, self.rank, self.local_rank = env.world, env.rank, env.local_rank
        self.enabled = self.world > 1
        if self.enabled and not torch.distributed.is_initialized():
            backend = backend or ("nccl" if device.type == "cuda" else "gloo")
            extra = {"device_id": device} if backend == "nccl" else {}
            torch.distributed.init_process_group(backend=backend, **extra)

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self):
        if self.enabled:
            torch.distributed.barrier()

    def close(self):
        if self.enabled and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def weights_digest(model: torch.nn.Module) -> str:
    """SHA-256 of all parameters and buffers (exact bytes, in state-dict order)."""
    h = hashlib.sha256()
    for v in model.state_dict().values():
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def _check_ranks_in_sync(out: Path, model, dist: _Dist) -> None:
    """DDP must leave every rank with identical weights: gather digests, record them, fail loudly if not."""
    digests: list = [None] * dist.world
    torch.distributed.all_gather_object(digests, weights_digest(model))
    if dist.main:
        text = json.dumps({"world_size": dist.world, "digests": digests})
        atomic_write(out / "ddp_check.json", lambda tmp: tmp.write_text(text))
    if len(set(digests)) != 1:
        raise DifftoolError(f"DDP ranks ended with different weights: {digests}")
