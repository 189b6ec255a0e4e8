"""Messages the worker threads post to the app (``post_message`` is thread-safe and never blocks).

:class:`FrameReady` defines ``can_replace`` so that a backlog of frames from a fast model collapses to
the newest one: the UI draws at its own pace and the sampler never waits on drawing.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from textual.message import Message

from difftool.tui.generation import Generation


class FrameReady(Message):
    """One sampling step of job ``job_id``: the grid's x_t and predicted x0 as (n, H, W, C) uint8."""

    def __init__(self, job_id: int, index: int, total: int, xt: np.ndarray, x0: np.ndarray,
                 steps_per_s: float) -> None:
        super().__init__()
        self.job_id = job_id
        self.index = index
        self.total = total
        self.xt = xt
        self.x0 = x0
        self.steps_per_s = steps_per_s

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, FrameReady) and message.job_id == self.job_id


class GenerationFinished(Message):
    """Job ``job_id`` finished; ``generation`` is ready for the history."""

    def __init__(self, job_id: int, generation: Generation) -> None:
        super().__init__()
        self.job_id = job_id
        self.generation = generation


class GenerationCancelled(Message):
    """Job ``job_id`` stopped after ``steps_done`` of ``total`` steps."""

    def __init__(self, job_id: int, steps_done: int, total: int) -> None:
        super().__init__()
        self.job_id = job_id
        self.steps_done = steps_done
        self.total = total


class GenerationFailed(Message):
    """Job ``job_id`` raised; ``error`` is a user-facing message."""

    def __init__(self, job_id: int, error: str) -> None:
        super().__init__()
        self.job_id = job_id
        self.error = error


class BackendLoaded(Message):
    """The factory of backend ``name`` returned ``pipeline``."""

    def __init__(self, name: str, pipeline: Any) -> None:
        super().__init__()
        self.name = name
        self.pipeline = pipeline


class BackendFailed(Message):
    """The factory of backend ``name`` raised; ``error`` is a user-facing message."""

    def __init__(self, name: str, error: str) -> None:
        super().__init__()
        self.name = name
        self.error = error
