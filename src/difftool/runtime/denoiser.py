"""The one interface every backend implements, and the step record samplers report.

A backend (onnxruntime CPU/CUDA, TensorRT, PyTorch) is a :class:`Denoiser`: it maps a noisy batch, the
network time and a context batch to the predicted noise. Samplers never see a backend directly: they
call an :data:`EpsFn` built by :func:`difftool.runtime.guidance.guided_eps`, which binds the context,
converts timesteps to network time and applies classifier-free guidance in one batched forward.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from difftool.config import ModelCard


@runtime_checkable
class Denoiser(Protocol):
    """Predicts the noise in ``x``.

    * ``x``: (B, C, H, W) float32, data scale [-1, 1] plus noise.
    * ``t``: (B,) float32, the *network* time (``Schedule.model_time``: the integer timestep, or
      ``t / T`` for course models).
    * ``context``: (B, K) float32 with K = ``card.num_classes`` (one-hot class, zeros = unconditional,
      any real mix allowed); ignored by unconditional models (K = 0, pass a (B, 0) array).
    * returns (B, C, H, W) float32 predicted noise (v or x0 when ``card.prediction`` says so: the EpsFn
      converts). The returned array may be a buffer the backend
      reuses on the next call: copy it if you keep it.
    """

    card: ModelCard
    name: str  # e.g. "ort-cpu", "torch-cpu", "tensorrt"

    def __call__(self, x: np.ndarray, t: np.ndarray, context: np.ndarray) -> np.ndarray: ...


# A denoiser with the context and guidance bound: eps_fn(x_t (B,C,H,W) float32, timestep int) -> eps.
EpsFn = Callable[[np.ndarray, int], np.ndarray]


@dataclass
class Step:
    """What a sampler reports after each update.

    ``index`` counts from 0 to ``total - 1``; ``t`` is the training timestep just denoised;
    ``x`` is the new sample x_{t_prev}; ``x0`` the model's prediction of the clean image at this step.
    Arrays are the sampler's own: copy them if you keep them past the callback.
    """

    index: int
    total: int
    t: int
    x: np.ndarray
    x0: np.ndarray


StepCallback = Callable[[Step], None]
