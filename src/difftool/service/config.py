"""Typed settings of ``difftool serve``: the server's limits, its scheduler and how it listens.

Nothing here imports more than the standard library, so the CLI can read the defaults for its flags
without slowing ``difftool --help``.
"""

from __future__ import annotations

from dataclasses import dataclass

from difftool.errors import DifftoolError

SCHEDULERS = ("step", "serial")  # step: step-level batching of every running request; serial: one at a time


@dataclass(frozen=True)
class ServeConfig:
    """Limits and knobs of one server.

    ``max_batch`` caps the network rows of one tick, all running requests together (a sprite sampled
    with classifier-free guidance counts twice: conditional and unconditional row). ``max_queue`` caps
    the requests waiting to join (beyond it: 503). ``max_n`` / ``max_steps`` cap one request.
    """

    host: str = "127.0.0.1"
    port: int = 8000
    max_batch: int = 128
    max_queue: int = 32
    max_n: int = 64
    max_steps: int = 1000
    max_body_bytes: int = 64 * 1024
    scheduler: str = "step"
    threads: int | None = None
    backend: str = "auto"
    access_log: bool = False
    graceful_s: float = 5.0  # how long shutdown waits for open requests before cancelling them
    keepalive_s: float = 15.0  # SSE comment interval while a streamed request waits

    def __post_init__(self) -> None:
        if self.scheduler not in SCHEDULERS:
            raise DifftoolError(f"unknown scheduler {self.scheduler!r}; choose one of: {', '.join(SCHEDULERS)}")
        for name in ("max_batch", "max_queue", "max_n", "max_steps", "max_body_bytes"):
            if int(getattr(self, name)) < 1:
                raise DifftoolError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not 0 <= int(self.port) <= 65535:
            raise DifftoolError(f"port must be 0..65535, got {self.port}")

    @property
    def max_running(self) -> int | None:
        """How many requests may share a tick: ``None`` (as many as fit ``max_batch``) or 1 (serial)."""
        return 1 if self.scheduler == "serial" else None


DEFAULTS = ServeConfig()
