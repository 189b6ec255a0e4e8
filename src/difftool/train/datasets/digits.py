"""scikit-learn's bundled 8x8 UCI optdigits (1797 images), imported lazily."""

from __future__ import annotations

import numpy as np

from difftool.errors import DifftoolError, MissingDependency
from difftool.train.datasets.base import ImageDataset

DIGITS_CREDIT = "UCI optdigits via scikit-learn (CC BY 4.0)"
DIGITS_LICENSE = "CC-BY-4.0"
_SIZES = (8, 16)


def load_digits(*, size: int = 8) -> ImageDataset:
    """Digits as (1797, 1, size, size) in [-1, 1]; size 16 is a nearest-neighbour 2x upscale."""
    if size not in _SIZES:
        raise DifftoolError(f"digits size must be 8 or 16, got {size!r}")
    try:
        from sklearn.datasets import load_digits as sk_load_digits
    except ImportError:
        raise MissingDependency("scikit-learn", "train", "the digits dataset") from None
    bunch = sk_load_digits()
    images = bunch.images.astype(np.float32) / np.float32(8.0) - np.float32(1.0)  # 0..16 -> [-1, 1]
    factor = size // 8
    images = images.repeat(factor, axis=1).repeat(factor, axis=2)
    return ImageDataset(
        images=np.ascontiguousarray(images[:, None], dtype=np.float32),
        labels=bunch.target.astype(np.int64),
        class_names=tuple(str(d) for d in range(10)),
        groups=np.arange(len(images), dtype=np.int64),
        name="digits",
        credit=DIGITS_CREDIT,
        license=DIGITS_LICENSE,
    )
