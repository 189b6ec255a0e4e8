"""The :class:`ImageDataset` container and helpers shared by every loader."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from PIL import Image

from difftool.errors import DifftoolError

# Least to most restrictive; an unknown non-empty license counts as the most restrictive.
_LICENSE_RANK = {"": -1, "CC0-1.0": 0, "CC-BY-4.0": 1, "CC-BY-SA-3.0": 2, "CC-BY-SA-4.0": 2}


@dataclass
class ImageDataset:
    """Images in [-1, 1] with integer labels and group ids for leak-free splits."""

    images: np.ndarray  # (N, C, H, W) float32 in [-1, 1]
    labels: np.ndarray  # (N,) int64, -1 = unlabelled
    class_names: tuple[str, ...]
    groups: np.ndarray  # (N,) int64; items sharing a group always land on the same side of a split
    name: str
    credit: str = ""
    license: str = ""

    def __post_init__(self) -> None:
        self.labels = np.asarray(self.labels, dtype=np.int64)
        self.groups = np.asarray(self.groups, dtype=np.int64)
        self.class_names = tuple(self.class_names)
        n = len(self.images)
        if self.images.ndim != 4 or len(self.labels) != n or len(self.groups) != n:
            raise ValueError(
                f"inconsistent dataset arrays: images {self.images.shape}, labels {self.labels.shape}, "
                f"groups {self.groups.shape}"
            )

    def __len__(self) -> int:
        return len(self.images)

    def __repr__(self) -> str:
        return (
            f"ImageDataset(name={self.name!r}, n={len(self)}, shape={tuple(self.images.shape[1:])}, "
            f"classes={self.class_names}, license={self.license!r})"
        )

    @property
    def channels(self) -> int:
        return int(self.images.shape[1])

    @property
    def image_size(self) -> int:
        return int(self.images.shape[2])

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def class_counts(self) -> dict[str, int]:
        """Number of items per class name (in class order); unlabelled items are not counted."""
        labelled = self.labels[self.labels >= 0]
        counts = np.bincount(labelled, minlength=self.num_classes)
        return {name: int(c) for name, c in zip(self.class_names, counts, strict=False)}

    def subset(self, indices: Sequence[int] | np.ndarray) -> ImageDataset:
        """A new dataset holding the given items (index array or boolean mask)."""
        idx = np.asarray(indices)
        return replace(self, images=self.images[idx], labels=self.labels[idx], groups=self.groups[idx])

    def split(self, holdout_fraction: float = 0.1, seed: int = 0) -> tuple[ImageDataset, ImageDataset]:
        """Deterministic (train, test) split by group, stratified by each group's class.

        Per class, randomly ordered groups are held out while the held-out item count stays within
        ``holdout_fraction`` of that class, so a class never loses all its groups to the test side.
        """
        if not 0.0 <= holdout_fraction < 1.0:
            raise DifftoolError(f"holdout fraction must be in [0, 1), got {holdout_fraction}")
        uniq, first, inverse, sizes = np.unique(
            self.groups, return_index=True, return_inverse=True, return_counts=True
        )
        strata = self.labels[first]  # a group's class is that of its first item
        rng = np.random.default_rng(seed)
        held = np.zeros(len(uniq), dtype=bool)
        for stratum in np.unique(strata):
            members = np.flatnonzero(strata == stratum)
            budget = holdout_fraction * float(sizes[members].sum())
            taken = 0
            for g in rng.permutation(members):
                if taken + sizes[g] <= budget:
                    held[g] = True
                    taken += int(sizes[g])
        test_mask = held[inverse]
        return self.subset(np.flatnonzero(~test_mask)), self.subset(np.flatnonzero(test_mask))


def hflip(images: np.ndarray) -> np.ndarray:
    """Mirror images left-right along the last (width) axis; returns a new contiguous array."""
    return np.ascontiguousarray(images[..., ::-1])


def to_signed(pixels: np.ndarray) -> np.ndarray:
    """uint8-range values (0..255) -> float32 in [-1, 1]."""
    return (pixels.astype(np.float32) / np.float32(127.5) - np.float32(1.0)).astype(np.float32)


def composite_over_black(rgba: np.ndarray) -> np.ndarray:
    """(..., 4) uint8 RGBA -> (..., 3) float32 RGB in 0..255, alpha-composited over black."""
    alpha = rgba[..., 3:4].astype(np.float32) / np.float32(255.0)
    return rgba[..., :3].astype(np.float32) * alpha


def read_rgba(path: Path) -> np.ndarray:
    """Read any image file as (H, W, 4) uint8 RGBA (palette transparency honoured)."""
    if not path.is_file():
        raise DifftoolError(f"image {path} does not exist; check the path or the dataset's labels.toml")
    try:
        with Image.open(path) as im:
            im.load()
            rgba = im.convert("RGBA")
    except (OSError, SyntaxError, ValueError) as exc:
        raise DifftoolError(
            f"cannot read image {path} ({exc}); the file is corrupt or not an image: replace or remove it"
        ) from None
    return np.asarray(rgba, dtype=np.uint8)


def most_restrictive(licenses: Sequence[str]) -> str:
    """The most restrictive of several license ids ('' = unknown is ignored)."""
    best = ""
    for lic in licenses:
        if _LICENSE_RANK.get(lic, 3) > _LICENSE_RANK.get(best, 3):
            best = lic
    return best


def concat(datasets: Sequence[ImageDataset]) -> ImageDataset:
    """Concatenate datasets with the same image shape; labels are matched by class name."""
    if len(datasets) == 1:
        return datasets[0]
    head = datasets[0]
    names = head.class_names
    images, labels, groups, offset = [], [], [], 0
    for ds in datasets:
        if ds.images.shape[1:] != head.images.shape[1:]:
            raise DifftoolError(
                f"cannot combine {head.name} {head.images.shape[1:]} with {ds.name} {ds.images.shape[1:]}: "
                "image shapes differ"
            )
        if set(ds.class_names) != set(names):
            raise DifftoolError(
                f"cannot combine {head.name} and {ds.name}: class names differ ({', '.join(names)} vs "
                f"{', '.join(ds.class_names)}); combine only datasets labelled with the same classes"
            )
        remap = np.array([names.index(c) for c in ds.class_names] + [-1], dtype=np.int64)
        images.append(ds.images)
        labels.append(remap[ds.labels])  # label -1 picks the trailing -1
        base = int(ds.groups.min()) if len(ds) else 0
        groups.append(ds.groups - base + offset)
        offset = int(groups[-1].max()) + 1 if len(ds) else offset
    credits = list(dict.fromkeys(ds.credit for ds in datasets if ds.credit))
    return ImageDataset(
        images=np.concatenate(images),
        labels=np.concatenate(labels),
        class_names=names,
        groups=np.concatenate(groups),
        name="+".join(ds.name for ds in datasets),
        credit="; ".join(credits),
        license=most_restrictive([ds.license for ds in datasets]),
    )
