"""The torch-free sampling runtime: schedules, seeded noise, samplers, guidance, pipeline, images.

Importing this package never imports torch, onnxruntime or Pillow; its names load on first use, so the
registries (``runtime.samplers``, ``runtime.kinds``) can be read without numpy (``difftool --help``).
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "Denoiser": "denoiser", "EpsFn": "denoiser", "Step": "denoiser", "StepCallback": "denoiser",
    "guided_eps": "guidance", "grid": "images", "save_gif": "images", "save_png": "images",
    "to_uint8": "images", "Noise": "noise", "NoiseSource": "noise", "Pipeline": "pipeline",
    "SampleRequest": "pipeline", "SAMPLERS": "samplers", "get_sampler": "samplers", "Schedule": "schedules",
    "make_schedule": "schedules", "timesteps": "timesteps",
}


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"difftool.runtime.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = sorted(_EXPORTS)
