"""Shared pytest fixtures."""

from __future__ import annotations

import numpy as np
import pytest

from difftool.config import ModelCard, ScheduleConfig, UnetConfig


def _gpu_skip_reason() -> str | None:
    """Why ``@pytest.mark.gpu`` tests cannot run here (None: they can). No CUDA library is imported."""
    from difftool.runtime.backends import cuda_device_present

    if not cuda_device_present():
        return "needs a CUDA GPU (no NVIDIA device found: /dev/nvidia0, /proc/driver/nvidia/gpus)"
    return None


def pytest_collection_modifyitems(config, items):
    reason = _gpu_skip_reason()
    if reason is None:
        return
    skip = pytest.mark.skip(reason=reason)
    for item in items:
        if item.get_closest_marker("gpu") is not None:
            item.add_marker(skip)

# -- runtime fixtures (sampling core) ----------------------------------------------------------------

FAKE_CLASSES = ("hero", "monster", "food", "weapon", "item")


class FakeDenoiser:
    """A numpy Denoiser whose eps depends on x, t and the context; records every call.

    eps = 0.1 * x + 0.001 * t + context @ w, with w = (0.1, 0.2, ..., 0.1 K) per row.
    """

    name = "fake-numpy"

    def __init__(self, card: ModelCard):
        self.card = card
        self.calls: list[tuple[int, np.ndarray, np.ndarray]] = []  # (batch, t (B,), context (B, K))
        self.weights = 0.1 * np.arange(1, card.num_classes + 1, dtype=np.float32)  # (K,)

    def __call__(self, x: np.ndarray, t: np.ndarray, context: np.ndarray) -> np.ndarray:
        assert x.dtype == np.float32 and t.dtype == np.float32 and context.dtype == np.float32
        assert t.shape == (x.shape[0],) and context.shape == (x.shape[0], self.card.num_classes)
        self.calls.append((x.shape[0], t.copy(), context.copy()))
        offset = context @ self.weights  # (B,)
        eps = 0.1 * x + 0.001 * t[:, None, None, None] + offset[:, None, None, None]
        return eps.astype(np.float32)  # (B, C, H, W)


@pytest.fixture
def fake_card() -> ModelCard:
    """A small conditional card: 3x8x8 images, 5 classes, 100-step linear schedule."""
    model = UnetConfig(im_channels=3, im_size=8, down_channels=(8, 8), mid_channels=(8, 8),
                       down_sample=(True,), attention=(False,), num_classes=len(FAKE_CLASSES))
    return ModelCard(model=model, schedule=ScheduleConfig(num_timesteps=100), class_names=FAKE_CLASSES)


@pytest.fixture
def fake_denoiser_cls() -> type[FakeDenoiser]:
    """The FakeDenoiser class, to build one for another card."""
    return FakeDenoiser


@pytest.fixture
def fake_denoiser(fake_card: ModelCard) -> FakeDenoiser:
    """A fresh recording FakeDenoiser for ``fake_card``."""
    return FakeDenoiser(fake_card)
