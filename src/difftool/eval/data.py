"""Labelled sprite tiles with a per-sprite identity, and the leak-free split the judge was trained on.

Torch-free. Images come from :func:`difftool.train.data.load_dataset` (``"sprites"``); this module only
adds a *sprite identity* per tile: in DawnLike, ``X0.png`` and ``X1.png`` are two animation frames of the
same sprites at the same tile positions, so tile ``i`` of ``X0.png`` and tile ``i`` of ``X1.png`` share an
identity (the dataset's own ``groups`` are coarser: one per sheet pair). Splitting by identity keeps both
frames of a sprite on the same side, while still letting every sheet (e.g. the single hero sheet pair)
contribute to both sides.
"""

from __future__ import annotations

import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from difftool.errors import DifftoolError

SPRITE_CLASSES = ("hero", "creature", "food", "weapon", "item")
DEFAULT_SOURCES = ("dawnlike", "kenney-tiny-dungeon")


@dataclass
class SpriteTiles:
    """Labelled 16x16 RGB tiles in [-1, 1] with one identity per distinct sprite."""

    images: np.ndarray  # (N, 3, 16, 16) float32 in [-1, 1]
    labels: np.ndarray  # (N,) int64 class index into class_names
    identity: np.ndarray  # (N,) int64; both animation frames of one sprite share an id
    class_names: tuple[str, ...]
    name: str
    credit: str
    license: str

    def __len__(self) -> int:
        return len(self.images)

    def subset(self, mask_or_index: np.ndarray) -> SpriteTiles:
        idx = np.asarray(mask_or_index)
        return SpriteTiles(
            self.images[idx],
            self.labels[idx],
            self.identity[idx],
            self.class_names,
            self.name,
            self.credit,
            self.license,
        )

    def class_counts(self) -> dict[str, int]:
        counts = np.bincount(self.labels, minlength=len(self.class_names))
        return {n: int(c) for n, c in zip(self.class_names, counts, strict=True)}


def default_sprite_paths() -> list[Path]:
    """The shared-data sprite folders that exist (``$DIFFTOOL_SHARED_DATA`` or ``../shared/data``)."""
    from difftool.train.data import shared_data_dir

    root = shared_data_dir()
    return [root / name for name in DEFAULT_SOURCES if (root / name).is_dir()]


def _dawnlike_identities(folder: Path) -> list[str] | None:
    """Identity keys (frame-0 sheet, tile index) of a dawnlike-format folder, in load order; None otherwise."""
    from difftool.train.datasets.base import read_rgba
    from difftool.train.datasets.sprites import grid_tiles, nonempty_mask

    toml_path = folder / "labels.toml"
    if not toml_path.is_file():
        return None
    doc = tomllib.loads(toml_path.read_text(encoding="utf-8", errors="replace"))
    if "sheets" not in doc:
        return None
    tile = int(doc.get("tile_size", 16))
    frame0_of = {str(f1): str(f0) for f0, f1 in doc.get("frame_pairs", {}).items()}
    excluded = doc.get("exclude_tiles", {})
    keys: list[str] = []
    for rel in doc["sheets"]:
        sheet = grid_tiles(read_rgba(folder / rel), tile)
        keep = nonempty_mask(sheet)
        for i in excluded.get(rel, ()):
            if 0 <= int(i) < len(keep):
                keep[int(i)] = False
        owner = frame0_of.get(rel, rel)
        keys.extend(f"{owner}#{i}" for i in np.flatnonzero(keep))
    return keys


def load_sprite_tiles(paths: Sequence[str | Path] | None = None) -> SpriteTiles:
    """Labelled sprites from ``paths`` (default: the shared dawnlike + kenney folders) with identities.

    Raises :class:`DifftoolError` when no folder is given or found, or the folders are not labelled
    with the five sprite classes.
    """
    from difftool.train.data import load_dataset

    sources = [Path(p) for p in paths] if paths else default_sprite_paths()
    if not sources:
        raise DifftoolError(
            "no sprite data found: pass the dawnlike / kenney-tiny-dungeon folders (or set DIFFTOOL_SHARED_DATA)"
        )
    images, labels, identity, credits, licenses, names = [], [], [], [], [], []
    class_names: tuple[str, ...] | None = None
    offset = 0
    for src in sources:
        ds = load_dataset("sprites", src)
        if class_names is None:
            class_names = ds.class_names
        if set(ds.class_names) != set(class_names):
            raise DifftoolError(f"{src} is labelled {ds.class_names}, not {class_names}; cannot combine")
        remap = np.array([class_names.index(c) for c in ds.class_names] + [-1], dtype=np.int64)
        keys = _dawnlike_identities(src) if src.is_dir() else None
        if keys is not None:
            if len(keys) != len(ds):
                raise DifftoolError(
                    f"{src}: {len(keys)} tile positions for {len(ds)} tiles; labels.toml changed?"
                )
            _, ident = np.unique(np.array(keys), return_inverse=True)
        else:  # one tile per sprite (kenney, course arrays): the dataset's groups are already per item
            _, ident = np.unique(ds.groups, return_inverse=True)
        keep = ds.labels >= 0
        images.append(ds.images[keep])
        labels.append(remap[ds.labels[keep]])
        identity.append(ident[keep].astype(np.int64) + offset)
        offset += int(ident.max()) + 1 if len(ident) else 0
        credits.append(ds.credit)
        licenses.append(ds.license)
        names.append(ds.name)
    from difftool.train.datasets.base import most_restrictive

    return SpriteTiles(
        images=np.ascontiguousarray(np.concatenate(images), dtype=np.float32),
        labels=np.concatenate(labels),
        identity=np.concatenate(identity),
        class_names=tuple(class_names or ()),
        name="+".join(names),
        credit="; ".join(dict.fromkeys(c for c in credits if c)),
        license=most_restrictive(licenses),
    )


def split_by_identity(
    identity: np.ndarray, labels: np.ndarray, holdout: float = 0.2, seed: int = 0
) -> np.ndarray:
    """Boolean (N,) mask of held-out tiles: whole identities, ~``holdout`` of each class's identities.

    Deterministic for a given (identity, labels, holdout, seed). Per class, the identities are shuffled
    with ``np.random.default_rng(seed)`` and the first ``round(holdout * n_identities)`` (at least one)
    are held out, so both frames of a sprite always land on the same side.
    """
    if not 0.0 < holdout < 1.0:
        raise DifftoolError(f"holdout fraction must be in (0, 1), got {holdout}")
    uniq, first = np.unique(identity, return_index=True)
    cls_of = labels[first]
    rng = np.random.default_rng(seed)
    held_ids = []
    for c in np.unique(cls_of):
        members = uniq[cls_of == c]
        k = max(1, int(round(holdout * len(members))))
        held_ids.append(rng.permutation(members)[:k])
    held = np.concatenate(held_ids) if held_ids else np.zeros(0, dtype=np.int64)
    return np.isin(identity, held)
