"""Unlabelled RGB images: seeded random square crops from every png/jpg under a folder."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from difftool.errors import DifftoolError
from difftool.train.datasets.base import ImageDataset, composite_over_black, read_rgba, to_signed

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
_CREDIT_FILES = ("credit", "credits", "readme", "artists")  # checked in this order (by file stem)
_MAX_CREDIT = 300


def find_images(folder: Path) -> list[Path]:
    """Every png/jpg/jpeg under ``folder`` (recursively), sorted by relative path."""
    return sorted(
        (p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES),
        key=lambda p: p.relative_to(folder).as_posix(),
    )


def folder_credit(folder: Path) -> str:
    """First paragraph of a CREDIT, README (or *_README) or ARTISTS file at the top of ``folder``, or '' if none."""
    docs: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if p.is_file() and p.suffix.lower() in ("", ".md", ".txt"):
            stem = p.stem.lower()
            docs.setdefault("readme" if stem.endswith("_readme") else stem, p)  # e.g. CRAWL_TILES_README.md
    for stem in _CREDIT_FILES:
        if stem in docs:
            text = docs[stem].read_text(encoding="utf-8", errors="replace")
            for para in re.split(r"\n\s*\n", text):
                line = " ".join(para.replace("#", " ").split())
                if line:
                    return line if len(line) <= _MAX_CREDIT else line[: _MAX_CREDIT - 3] + "..."
    return ""


def _random_crops(rgb: np.ndarray, size: int, count: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` random (size, size, 3) crops of an (H, W, 3) image."""
    h, w = rgb.shape[:2]
    ys = rng.integers(0, h - size + 1, count)
    xs = rng.integers(0, w - size + 1, count)
    return np.stack([rgb[y : y + size, x : x + size] for y, x in zip(ys, xs, strict=True)])


def load_images(
    path: Path, *, size: int = 32, crops_per_image: int = 8, seed: int = 0, credit: str | None = None
) -> ImageDataset:
    """Random ``size`` px RGB crops (alpha over black), ``crops_per_image`` per image; one group per image.

    ``credit`` overrides the credit read from the folder's CREDIT/README/ARTISTS file.
    """
    if not isinstance(size, int) or size < 4 or size % 4:
        raise DifftoolError(f"images size must be a positive multiple of 4 (e.g. 32), got {size!r}")
    if not isinstance(crops_per_image, int) or crops_per_image < 1:
        raise DifftoolError(f"crops_per_image must be a positive integer, got {crops_per_image!r}")
    if not path.is_dir():
        raise DifftoolError(f"image folder {path} does not exist; pass a folder of .png/.jpg images")
    files = find_images(path)
    if not files:
        raise DifftoolError(f"no .png/.jpg images under {path}; pass a folder that contains images")
    rng = np.random.default_rng(seed)
    crops, groups = [], []
    for gid, file in enumerate(files):
        rgb = composite_over_black(read_rgba(file))
        if min(rgb.shape[:2]) < size:
            continue
        crops.append(_random_crops(rgb, size, crops_per_image, rng))
        groups.append(np.full(crops_per_image, gid, dtype=np.int64))
    if not crops:
        raise DifftoolError(f"every image under {path} is smaller than {size} px; pass a smaller size option")
    images = to_signed(np.concatenate(crops)).transpose(0, 3, 1, 2)
    all_groups = np.concatenate(groups)
    return ImageDataset(
        images=np.ascontiguousarray(images),
        labels=np.full(len(all_groups), -1, dtype=np.int64),
        class_names=(),
        groups=all_groups,
        name=path.resolve().name,
        credit=folder_credit(path) if credit is None else credit,
        license="",
    )
