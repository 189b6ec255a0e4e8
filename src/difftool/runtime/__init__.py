"""The torch-free sampling runtime: schedules, seeded noise, samplers, guidance, pipeline, images.

Importing this package never imports torch, onnxruntime or Pillow (images import Pillow lazily).
"""

from __future__ import annotations

from difftool.runtime import samplers
from difftool.runtime.denoiser import Denoiser, EpsFn, Step, StepCallback
from difftool.runtime.guidance import guided_eps
from difftool.runtime.images import grid, save_gif, save_png, to_uint8
from difftool.runtime.noise import Noise, NoiseSource
from difftool.runtime.pipeline import Pipeline, SampleRequest
from difftool.runtime.samplers import SAMPLERS, get_sampler
from difftool.runtime.schedules import Schedule, make_schedule
from difftool.runtime.timesteps import timesteps

__all__ = [
    "SAMPLERS",
    "Denoiser",
    "EpsFn",
    "Noise",
    "NoiseSource",
    "Pipeline",
    "SampleRequest",
    "Schedule",
    "Step",
    "StepCallback",
    "get_sampler",
    "grid",
    "guided_eps",
    "make_schedule",
    "samplers",
    "save_gif",
    "save_png",
    "timesteps",
    "to_uint8",
]
