"""The slice of ``difftool.runtime.pipeline`` the TUI uses, as a duck-typed Protocol.

Tests and the demo pass their own objects with this shape. :func:`make_request` builds the runtime's
``SampleRequest`` when that module is importable, and an identical local dataclass otherwise.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from difftool.config import ModelCard
from difftool.runtime.denoiser import StepCallback


class _Named(Protocol):
    name: str


class SpritePipeline(Protocol):
    card: ModelCard
    denoiser: _Named

    def sample(self, request: Any, callback: StepCallback | None = None) -> np.ndarray: ...

    def context_from_spec(self, spec: str, n: int) -> np.ndarray: ...


PipelineFactory = Callable[[], SpritePipeline]


@dataclass
class _LocalSampleRequest:
    """Same fields and defaults as ``difftool.runtime.pipeline.SampleRequest``."""

    n: int = 16
    context: np.ndarray | None = None
    sampler: str = "ddim"
    steps: int = 25
    eta: float = 0.0
    guidance: float = 1.0
    seed: int = 0
    seeds: list[int] | None = None
    spacing: str | None = None
    variance: str = "posterior"


def make_request(**fields: Any) -> Any:
    """A ``SampleRequest`` (the runtime's class if it exists yet)."""
    try:
        from difftool.runtime.pipeline import SampleRequest
    except ImportError:
        return _LocalSampleRequest(**fields)
    return SampleRequest(**fields)


def backend_label(pipeline: SpritePipeline, fallback: str) -> str:
    denoiser = getattr(pipeline, "denoiser", None)
    return str(getattr(denoiser, "name", "") or fallback)
