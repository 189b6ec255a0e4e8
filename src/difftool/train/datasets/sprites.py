"""Sprite datasets: 16x16 tiles sliced from labelled sheets (DawnLike, Kenney) or the course ``.npy`` arrays."""

from __future__ import annotations

import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from difftool.errors import DifftoolError
from difftool.train.datasets.base import ImageDataset, composite_over_black, concat, read_rgba, to_signed

DAWNLIKE_CREDIT = "DawnLike v1.81 by DragonDePlatino, palette by DawnBringer (CC-BY-SA 3.0)"
KENNEY_CREDIT = "Kenney Tiny Dungeon (CC0 1.0)"
COURSE_CREDIT = "ElvGames, FrootsnVeggies, kyrise (DeepLearning.AI course sprites)"
COURSE_LICENSE = "unspecified (DeepLearning.AI course material)"
COURSE_CLASSES = ("hero", "non-hero", "food", "spell", "side-facing")
COURSE_LABELS_FILE = "sprite_labels_nc_1788_16x16.npy"

# (marker found in labels.toml / README / License text, credit, license id), checked in order.
_KNOWN_PACKS = (
    ("dawnlike", DAWNLIKE_CREDIT, "CC-BY-SA-3.0"),
    ("kenney", KENNEY_CREDIT, "CC0-1.0"),
)
_FORMAT_HELP = (
    "a sprite folder needs labels.toml in the dawnlike format (tile_size, classes, [sheets]) or the kenney "
    "format (sheet, cols, rows, [labels]); see ../shared/data/README.md"
)


def load_sprites(
    path: Path | None,
    *,
    paths: Sequence[str | Path] | None = None,
    include_unlabeled: bool = False,
) -> ImageDataset:
    """Load one or more sprite sources (folders with labels.toml, or course ``.npy`` files) combined."""
    sources = ([Path(path)] if path is not None else []) + [Path(p) for p in (paths or ())]
    if not sources:
        raise DifftoolError(
            "the sprites dataset needs a path: a folder with labels.toml (e.g. ../shared/data/dawnlike)"
        )
    return concat([_load_source(src, include_unlabeled) for src in sources])


def _load_source(path: Path, include_unlabeled: bool) -> ImageDataset:
    """Load a single sprite folder or course ``.npy`` file."""
    if path.suffix == ".npy":
        return load_course_npy(path)
    if path.is_file() and path.name == "labels.toml":
        path = path.parent
    if not path.is_dir():
        raise DifftoolError(f"sprite folder {path} does not exist; pass a folder holding labels.toml")
    toml_path = path / "labels.toml"
    if not toml_path.is_file():
        raise DifftoolError(f"{path} has no labels.toml; {_FORMAT_HELP}")
    text = toml_path.read_text(encoding="utf-8", errors="replace")
    try:
        doc = tomllib.loads(text)
        if "sheets" in doc:
            tiles, labels, groups, classes = _dawnlike_tiles(path, doc)
        elif "sheet" in doc:
            tiles, labels, groups, classes = _kenney_tiles(path, doc, include_unlabeled)
        else:
            raise DifftoolError(f"{toml_path} has neither [sheets] nor sheet = ...; {_FORMAT_HELP}")
    except (tomllib.TOMLDecodeError, KeyError, TypeError, ValueError) as exc:
        raise DifftoolError(
            f"{toml_path} is malformed ({type(exc).__name__}: {exc}); {_FORMAT_HELP}"
        ) from None
    credit, license_id = _credit_for(path, doc, text)
    images = to_signed(composite_over_black(tiles)).transpose(0, 3, 1, 2)
    return ImageDataset(
        images=np.ascontiguousarray(images),
        labels=labels,
        class_names=classes,
        groups=groups,
        name=path.resolve().name,
        credit=credit,
        license=license_id,
    )


def grid_tiles(
    rgba: np.ndarray, tile: int, spacing: int = 0, cols: int | None = None, rows: int | None = None
) -> np.ndarray:
    """Slice an (H, W, 4) sheet into (rows*cols, tile, tile, 4) tiles, row-major; partial tiles are dropped."""
    h, w = rgba.shape[:2]
    step = tile + spacing
    max_rows, max_cols = (h + spacing) // step, (w + spacing) // step
    rows = max_rows if rows is None else rows
    cols = max_cols if cols is None else cols
    if rows > max_rows or cols > max_cols:
        raise DifftoolError(f"a {w}x{h} px sheet is too small for {cols}x{rows} tiles of {tile} px")
    ys = (np.arange(rows) * step)[:, None] + np.arange(tile)
    xs = (np.arange(cols) * step)[:, None] + np.arange(tile)
    grid = rgba[ys[:, :, None, None], xs[None, None, :, :]]  # (rows, tile, cols, tile, 4)
    return grid.transpose(0, 2, 1, 3, 4).reshape(rows * cols, tile, tile, rgba.shape[2])


def nonempty_mask(tiles: np.ndarray) -> np.ndarray:
    """True for tiles that are not empty (empty = all alpha 0, or every pixel the same RGBA)."""
    flat = tiles.reshape(len(tiles), -1, tiles.shape[-1])
    transparent = (flat[..., 3] == 0).all(axis=1)
    uniform = (flat == flat[:, :1]).all(axis=(1, 2))
    return ~(transparent | uniform)


def _exclude(keep: np.ndarray, indices: Sequence[int]) -> None:
    """Clear ``keep`` at the given tile indices (those past the end are ignored)."""
    idx = [int(i) for i in indices if 0 <= int(i) < len(keep)]
    keep[idx] = False


def _dawnlike_tiles(
    folder: Path, doc: dict[str, Any]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[str, ...]]:
    """Tiles of every sheet in [sheets]; one group per sheet, shared by both frames of a pair."""
    tile = int(doc.get("tile_size", 16))
    classes = tuple(str(c) for c in doc["classes"])
    frame0_of = {str(f1): str(f0) for f0, f1 in doc.get("frame_pairs", {}).items()}
    excluded = doc.get("exclude_tiles", {})
    group_ids: dict[str, int] = {}
    tiles, labels, groups = [], [], []
    for rel, cls in doc["sheets"].items():
        if cls not in classes:
            raise DifftoolError(
                f"{folder / 'labels.toml'}: sheet {rel} has class {cls!r}, not one of {classes}"
            )
        sheet = grid_tiles(read_rgba(folder / rel), tile)
        keep = nonempty_mask(sheet)
        _exclude(keep, excluded.get(rel, ()))
        gid = group_ids.setdefault(frame0_of.get(rel, rel), len(group_ids))
        n = int(keep.sum())
        tiles.append(sheet[keep])
        labels.append(np.full(n, classes.index(cls), dtype=np.int64))
        groups.append(np.full(n, gid, dtype=np.int64))
    return np.concatenate(tiles), np.concatenate(labels), np.concatenate(groups), classes


def _kenney_tiles(
    folder: Path, doc: dict[str, Any], include_unlabeled: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[str, ...]]:
    """Tiles of one packed sheet labelled by index ranges; one group per tile."""
    ranges_by_class: dict[str, Any] = doc.get("labels", {})
    classes = tuple(str(c) for c in doc.get("classes", list(ranges_by_class)))
    tile = int(doc.get("tile_size", 16))
    sheet = grid_tiles(
        read_rgba(folder / doc["sheet"]), tile, int(doc.get("spacing", 0)), int(doc["cols"]), int(doc["rows"])
    )
    labels = np.full(len(sheet), -1, dtype=np.int64)
    for cls, ranges in ranges_by_class.items():
        if cls not in classes:
            raise DifftoolError(f"{folder / 'labels.toml'}: [labels] class {cls!r} is not one of {classes}")
        for first, last in ranges:
            if not 0 <= int(first) <= int(last) < len(sheet):
                raise DifftoolError(
                    f"{folder / 'labels.toml'}: range [{first}, {last}] is outside 0..{len(sheet) - 1}"
                )
            span = slice(int(first), int(last) + 1)
            if (labels[span] >= 0).any():
                raise DifftoolError(
                    f"{folder / 'labels.toml'}: range [{first}, {last}] overlaps another label"
                )
            labels[span] = classes.index(cls)
    keep = nonempty_mask(sheet)
    _exclude(keep, doc.get("exclude_tiles", ()))
    if not include_unlabeled:
        keep &= labels >= 0
    idx = np.flatnonzero(keep)
    return sheet[idx], labels[idx], idx.astype(np.int64), classes


def _credit_for(folder: Path, doc: dict[str, Any], toml_text: str) -> tuple[str, str]:
    """(credit, license id) from labels.toml keys, else recognised from the pack's own text files."""
    if "credit" in doc:
        return str(doc["credit"]), str(doc.get("license", ""))
    texts = [
        p.read_text(encoding="utf-8", errors="replace")[:4000]
        for p in sorted(folder.iterdir())
        if p.is_file() and p.stem.lower() in ("readme", "license", "licence")
    ]
    for text in [*texts, toml_text]:  # the pack's own files first: labels.toml may mention other packs
        for marker, credit, license_id in _KNOWN_PACKS:
            if marker in text.lower():
                return credit, license_id
    return "", ""


def _load_npy(path: Path) -> np.ndarray:
    """np.load with a one-line DifftoolError for missing or corrupt files."""
    if not path.is_file():
        raise DifftoolError(
            f"{path} does not exist; the course format needs sprites_*.npy with {COURSE_LABELS_FILE} beside it"
        )
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise DifftoolError(f"cannot read {path} ({exc}); the file is corrupt or not a .npy array") from None


def load_course_npy(path: Path) -> ImageDataset:
    """The DeepLearning.AI course arrays: (N, 16, 16, 3) uint8 sprites + (N, 5) one-hot labels beside them."""
    labels_path = path.with_name(path.name.replace("sprites_", "sprite_labels_nc_", 1))
    if labels_path == path or not labels_path.is_file():
        labels_path = path.with_name(COURSE_LABELS_FILE)
    sprites, onehot = _load_npy(path), _load_npy(labels_path)
    if sprites.ndim != 4 or sprites.shape[-1] != 3:
        raise DifftoolError(f"{path} has shape {sprites.shape}; expected (N, H, W, 3) RGB sprites")
    if onehot.shape != (len(sprites), len(COURSE_CLASSES)):
        raise DifftoolError(
            f"{labels_path} has shape {onehot.shape}; expected ({len(sprites)}, {len(COURSE_CLASSES)}) one-hot labels"
        )
    images = to_signed(np.clip(sprites, 0, 255)).transpose(0, 3, 1, 2)
    return ImageDataset(
        images=np.ascontiguousarray(images),
        labels=np.argmax(onehot, axis=1).astype(np.int64),
        class_names=COURSE_CLASSES,
        groups=np.arange(len(sprites), dtype=np.int64),
        name="course-sprites",
        credit=COURSE_CREDIT,
        license=COURSE_LICENSE,
    )
