"""Numpy training datasets: ``load_dataset(name, path, **options)`` -> :class:`ImageDataset` (no torch).

Loaders live in :mod:`difftool.train.datasets`; this module dispatches by name and re-exports the API.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from difftool.errors import DifftoolError
from difftool.train.datasets.base import ImageDataset, hflip
from difftool.train.datasets.digits import load_digits
from difftool.train.datasets.images import load_images
from difftool.train.datasets.mnist import load_mnist
from difftool.train.datasets.sprites import load_sprites

__all__ = ["DATASET_NAMES", "SHARED_DATA_ENV", "ImageDataset", "hflip", "load_dataset", "shared_data_dir"]

SHARED_DATA_ENV = "DIFFTOOL_SHARED_DATA"
DATASET_NAMES = ("sprites", "mnist", "images", "digits")
_LOADERS: dict[str, Callable[..., ImageDataset]] = {
    "sprites": load_sprites,
    "mnist": load_mnist,
    "images": load_images,
    "digits": load_digits,
}
_DEFAULT_SUBDIR = {"sprites": "dawnlike", "mnist": "mnist", "images": "textures"}


def shared_data_dir() -> Path:
    """$DIFFTOOL_SHARED_DATA if set, else ``../shared/data`` beside this source checkout."""
    env = os.environ.get(SHARED_DATA_ENV)
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[3].parent / "shared" / "data"


def _option_names(loader: Callable[..., ImageDataset]) -> list[str]:
    """The keyword-only options a loader accepts."""
    params = inspect.signature(loader).parameters.values()
    return [p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY]


def _default_path(name: str) -> Path:
    """The shared-data folder used when no path is given."""
    candidate = shared_data_dir() / _DEFAULT_SUBDIR[name]
    if not candidate.exists():
        raise DifftoolError(
            f"no path given for the {name} dataset and {candidate} does not exist; pass a path "
            f"(or set {SHARED_DATA_ENV} to the shared data folder)"
        )
    return candidate


def load_dataset(name: str, path: str | Path | None = None, **options: Any) -> ImageDataset:
    """Load dataset ``name`` (sprites, mnist, images, digits) from ``path`` with loader ``options``."""
    key = name.strip().lower()
    loader = _LOADERS.get(key)
    if loader is None:
        raise DifftoolError(f"unknown dataset {name!r}; choose one of: {', '.join(DATASET_NAMES)}")
    valid = _option_names(loader)
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise DifftoolError(
            f"unknown option {unknown[0]!r} for the {key} dataset; valid options: {', '.join(valid) or 'none'}"
        )
    if key == "digits":
        if path is not None:
            raise DifftoolError(
                "the digits dataset is bundled with scikit-learn and takes no path; drop the path"
            )
        return loader(**options)
    if path is None and not (key == "sprites" and options.get("paths")):
        path = _default_path(key)
    return loader(Path(path) if path is not None else None, **options)
