"""Tests for the numpy dataset loaders in difftool.train.data."""

from __future__ import annotations

import subprocess
import sys
import time
import tomllib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from _paths import requires_shared, shared_path
from difftool.errors import DifftoolError
from difftool.train.data import DATASET_NAMES, ImageDataset, hflip, load_dataset

DAWNLIKE = shared_path("dawnlike")
KENNEY = shared_path("kenney-tiny-dungeon")
MNIST = shared_path("mnist")
TEXTURES = shared_path("textures")
DAWNLIKE_COUNTS = {"hero": 154, "creature": 1264, "food": 104, "weapon": 254, "item": 334}


@pytest.fixture(scope="module")
def dawnlike() -> ImageDataset:
    return load_dataset("sprites", DAWNLIKE)


def _sheet_offsets() -> dict[str, int]:
    """Index of each DawnLike sheet's first tile in the loaded dataset (sheets load in labels.toml order)."""
    doc = tomllib.loads((DAWNLIKE / "labels.toml").read_text())
    offsets, start = {}, 0
    for sheet in doc["sheets"]:
        offsets[sheet] = start
        start += doc["sprite_tiles"][sheet]
    return offsets


def _write_sheet_folder(folder: Path, sheet: Image.Image, *, classes: str = '["a", "b"]') -> Path:
    """A one-sheet dawnlike-format sprite folder."""
    folder.mkdir(parents=True, exist_ok=True)
    sheet.save(folder / "sheet.png")
    (folder / "labels.toml").write_text(f'tile_size = 16\nclasses = {classes}\n[sheets]\n"sheet.png" = "a"\n')
    return folder


# -- DawnLike / Kenney ----------------------------------------------------------------------------


@requires_shared("dawnlike", "labels.toml")
def test_dawnlike_counts_and_metadata(dawnlike: ImageDataset) -> None:
    assert len(dawnlike) == 2110
    assert dawnlike.class_names == ("hero", "creature", "food", "weapon", "item")
    assert dawnlike.class_counts() == DAWNLIKE_COUNTS
    assert dawnlike.credit == "DawnLike v1.81 by DragonDePlatino, palette by DawnBringer (CC-BY-SA 3.0)"
    assert dawnlike.license == "CC-BY-SA-3.0"
    assert dawnlike.name == "dawnlike"


@requires_shared("dawnlike", "labels.toml")
def test_dawnlike_shapes_dtype_range(dawnlike: ImageDataset) -> None:
    assert dawnlike.images.shape == (2110, 3, 16, 16)
    assert dawnlike.images.dtype == np.float32
    assert dawnlike.labels.dtype == np.int64 and dawnlike.groups.dtype == np.int64
    assert dawnlike.images.min() >= -1.0 and dawnlike.images.max() <= 1.0
    assert (dawnlike.images == -1.0).any() and dawnlike.images.max() > 0.5
    assert dawnlike.channels == 3 and dawnlike.image_size == 16 and dawnlike.num_classes == 5
    assert repr(dawnlike).startswith("ImageDataset(name='dawnlike', n=2110, shape=(3, 16, 16)")


@requires_shared("dawnlike", "labels.toml")
def test_dawnlike_loads_fast() -> None:
    start = time.perf_counter()
    load_dataset("sprites", DAWNLIKE)
    assert time.perf_counter() - start < 2.0


@requires_shared("dawnlike", "labels.toml")
@pytest.mark.parametrize("sheet", ["Characters/Aquatic0.png", "Characters/Cat0.png"])  # RGBA and P mode
def test_dawnlike_transparent_pixels_become_minus_one(dawnlike: ImageDataset, sheet: str) -> None:
    index = _sheet_offsets()[sheet]
    source = np.asarray(Image.open(DAWNLIKE / sheet).convert("RGBA"))
    tiles = [source[r : r + 16, c : c + 16] for r in range(0, 64, 16) for c in range(0, 128, 16)]
    first = next(t for t in tiles if t[..., 3].any())  # first non-empty tile of the sheet
    transparent = first[..., 3] == 0
    assert transparent.any() and (~transparent).any()
    image = dawnlike.images[index]
    assert (image[:, transparent] == -1.0).all()
    expected = first[..., :3][~transparent].T.astype(np.float32) / 127.5 - 1.0
    np.testing.assert_allclose(image[:, ~transparent], expected, atol=1e-6)


@requires_shared("dawnlike", "labels.toml")
def test_frame_pairs_share_a_group(dawnlike: ImageDataset) -> None:
    offsets = _sheet_offsets()
    doc = tomllib.loads((DAWNLIKE / "labels.toml").read_text())
    for frame0, frame1 in doc["frame_pairs"].items():
        n0, n1 = doc["sprite_tiles"][frame0], doc["sprite_tiles"][frame1]
        groups = dawnlike.groups[offsets[frame0] : offsets[frame0] + n0]
        groups1 = dawnlike.groups[offsets[frame1] : offsets[frame1] + n1]
        assert len(set(groups) | set(groups1)) == 1, frame0
    ammo = dawnlike.groups[offsets["Items/Ammo.png"]]
    assert ammo != dawnlike.groups[offsets["Items/Amulet.png"]]
    assert len(np.unique(dawnlike.groups)) == 57 - 17


@requires_shared("dawnlike", "labels.toml")
@pytest.mark.parametrize("seed", [0, 1, 7])
def test_split_keeps_groups_together_and_is_deterministic(dawnlike: ImageDataset, seed: int) -> None:
    train, test = dawnlike.split(0.2, seed=seed)
    assert len(train) + len(test) == len(dawnlike) and len(test) > 0
    assert not set(train.groups) & set(test.groups)
    for cls, count in train.class_counts().items():
        assert count > 0, f"class {cls} lost all its training data"
    again_train, again_test = dawnlike.split(0.2, seed=seed)
    np.testing.assert_array_equal(train.images, again_train.images)
    np.testing.assert_array_equal(test.groups, again_test.groups)


@requires_shared("kenney-tiny-dungeon", "labels.toml")
def test_kenney_labelled_and_unlabelled() -> None:
    kenney = load_dataset("sprites", KENNEY)
    assert len(kenney) == 42
    assert kenney.credit == "Kenney Tiny Dungeon (CC0 1.0)" and kenney.license == "CC0-1.0"
    assert kenney.class_counts()["food"] == 0 and (kenney.labels >= 0).all()
    everything = load_dataset("sprites", KENNEY, include_unlabeled=True)
    assert len(everything) > 42 and (everything.labels == -1).sum() == len(everything) - 42


@requires_shared("dawnlike", "labels.toml")
@requires_shared("kenney-tiny-dungeon", "labels.toml")
def test_combined_dawnlike_and_kenney() -> None:
    both = load_dataset("sprites", paths=[DAWNLIKE, KENNEY])
    assert len(both) == 2152
    assert both.class_names == ("hero", "creature", "food", "weapon", "item")
    assert sum(both.class_counts().values()) == 2152
    assert "Kenney Tiny Dungeon (CC0 1.0)" in both.credit and "DawnLike" in both.credit
    assert both.license == "CC-BY-SA-3.0"
    assert not set(both.groups[:2110]) & set(both.groups[2110:])


def test_synthetic_sheet_alpha_and_empty_tiles(tmp_path: Path) -> None:
    rgba = np.zeros((16, 64, 4), dtype=np.uint8)
    rgba[:8, :16] = (255, 0, 0, 255)  # tile 0: top half opaque red, bottom half transparent
    rgba[:, 16:32] = (10, 20, 30, 255)  # tile 1: one solid colour -> empty
    rgba[:, 48:64, :3] = 200  # tile 3: colour but fully transparent -> empty
    folder = _write_sheet_folder(tmp_path / "s", Image.fromarray(rgba, "RGBA"))
    ds = load_dataset("sprites", folder)
    assert len(ds) == 1 and ds.credit == "" and ds.class_counts() == {"a": 1, "b": 0}
    np.testing.assert_array_equal(
        ds.images[0, :, :8], np.broadcast_to([[[1.0]], [[-1.0]], [[-1.0]]], (3, 8, 16))
    )
    assert (ds.images[0, :, 8:] == -1.0).all()


def test_palette_transparency_is_honoured(tmp_path: Path) -> None:
    sheet = Image.new("P", (16, 16), 0)
    sheet.putpalette([255, 255, 255, 0, 255, 0] + [0] * 762)
    sheet.paste(1, (0, 0, 16, 8))
    sheet.info["transparency"] = 0
    folder = _write_sheet_folder(tmp_path / "p", sheet)
    ds = load_dataset("sprites", folder)
    assert (ds.images[0, :, 8:] == -1.0).all()  # white palette entry 0 is transparent
    assert (ds.images[0, 1, :8] == 1.0).all() and (ds.images[0, 0, :8] == -1.0).all()


def test_mismatched_class_names_cannot_be_combined(tmp_path: Path) -> None:
    a = _write_sheet_folder(tmp_path / "a", Image.new("RGBA", (16, 16), (0, 0, 0, 0)))
    Image.fromarray(np.eye(16, dtype=np.uint8)[..., None].repeat(4, axis=2) * 255, "RGBA").save(
        a / "sheet.png"
    )
    b = _write_sheet_folder(tmp_path / "b", Image.open(a / "sheet.png"), classes='["a", "c"]')
    with pytest.raises(DifftoolError, match="class names differ"):
        load_dataset("sprites", paths=[a, b])


# -- course .npy ------------------------------------------------------------------------------------


def test_course_npy_format(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    sprites = rng.integers(0, 256, (6, 16, 16, 3), dtype=np.uint8)
    labels = np.eye(5, dtype=np.float64)[[0, 1, 2, 3, 4, 1]]
    np.save(tmp_path / "sprites_1788_16x16.npy", sprites)
    np.save(tmp_path / "sprite_labels_nc_1788_16x16.npy", labels)
    ds = load_dataset("sprites", tmp_path / "sprites_1788_16x16.npy")
    assert ds.images.shape == (6, 3, 16, 16) and ds.images.dtype == np.float32
    assert ds.class_names == ("hero", "non-hero", "food", "spell", "side-facing")
    np.testing.assert_array_equal(ds.labels, [0, 1, 2, 3, 4, 1])
    np.testing.assert_allclose(ds.images[2, :, 3, 5], sprites[2, 3, 5] / 127.5 - 1.0, atol=1e-6)
    assert ds.credit == "ElvGames, FrootsnVeggies, kyrise (DeepLearning.AI course sprites)"


def test_course_npy_without_labels_file(tmp_path: Path) -> None:
    np.save(tmp_path / "sprites_1788_16x16.npy", np.zeros((2, 16, 16, 3), np.uint8))
    with pytest.raises(DifftoolError, match="sprite_labels_nc_1788_16x16.npy"):
        load_dataset("sprites", tmp_path / "sprites_1788_16x16.npy")


# -- MNIST, digits, images ----------------------------------------------------------------------------


@requires_shared("mnist")
def test_mnist_t10k() -> None:
    ds = load_dataset("mnist", MNIST)
    assert ds.images.shape == (10000, 1, 28, 28) and ds.images.dtype == np.float32
    assert set(np.unique(ds.labels)) == set(range(10))
    assert ds.class_names == tuple(str(d) for d in range(10))
    assert ds.images.min() == -1.0 and ds.images.max() == 1.0
    assert ds.credit == "MNIST (Y. LeCun, C. Cortes, C. Burges), CC BY-SA 3.0"


@requires_shared("mnist")
def test_mnist_pads_to_32() -> None:
    small, big = load_dataset("mnist", MNIST), load_dataset("mnist", MNIST, size=32)
    assert big.images.shape == (10000, 1, 32, 32)
    np.testing.assert_array_equal(big.images[:, :, 2:30, 2:30], small.images)
    border = np.ones((32, 32), bool)
    border[2:30, 2:30] = False
    assert (big.images[:, :, border] == -1.0).all()


def test_digits() -> None:
    pytest.importorskip("sklearn")
    ds = load_dataset("digits")
    assert len(ds) == 1797 and ds.images.shape == (1797, 1, 8, 8)
    assert ds.images.min() == -1.0 and ds.images.max() == 1.0
    assert ds.credit == "UCI optdigits via scikit-learn (CC BY 4.0)"
    big = load_dataset("digits", size=16)
    np.testing.assert_array_equal(big.images[:, :, ::2, ::2], ds.images)
    np.testing.assert_array_equal(big.images[:, :, 1::2, 1::2], ds.images)


def _write_images(folder: Path) -> None:
    rng = np.random.default_rng(1)
    (folder / "sub").mkdir(parents=True)
    Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(folder / "a.png")
    Image.fromarray(rng.integers(0, 256, (36, 36, 3), dtype=np.uint8)).save(folder / "sub" / "b.jpg")
    (folder / "ARTISTS.md").write_text("# Artists\n\nPainted by A. Person.\n\nMore text.\n")


def test_images_crops_are_seeded(tmp_path: Path) -> None:
    _write_images(tmp_path)
    ds = load_dataset("images", tmp_path, size=32, crops_per_image=5, seed=3)
    assert ds.images.shape == (10, 3, 32, 32) and ds.images.dtype == np.float32
    assert (ds.labels == -1).all() and ds.class_names == () and ds.class_counts() == {}
    assert ds.credit == "Artists"
    np.testing.assert_array_equal(ds.groups, [0] * 5 + [1] * 5)
    same = load_dataset("images", tmp_path, size=32, crops_per_image=5, seed=3)
    np.testing.assert_array_equal(ds.images, same.images)
    other = load_dataset("images", tmp_path, size=32, crops_per_image=5, seed=4)
    assert not np.array_equal(ds.images, other.images)


@requires_shared("textures")
def test_images_from_textures() -> None:
    ds = load_dataset("images", TEXTURES, size=16, crops_per_image=2, seed=0)
    assert ds.images.shape[1:] == (3, 16, 16) and len(ds) == 2 * len(np.unique(ds.groups))
    assert ds.images.min() >= -1.0 and ds.images.max() <= 1.0
    assert "Crawl" in ds.credit


# -- helpers ------------------------------------------------------------------------------------------


def test_hflip_subset_and_split_of_per_item_groups() -> None:
    images = np.arange(2 * 1 * 2 * 3, dtype=np.float32).reshape(2, 1, 2, 3)
    np.testing.assert_array_equal(hflip(images)[0, 0, 0], [2.0, 1.0, 0.0])
    np.testing.assert_array_equal(hflip(hflip(images)), images)
    ds = ImageDataset(
        images=np.zeros((100, 1, 4, 4), np.float32),
        labels=np.arange(100) % 4,
        class_names=("a", "b", "c", "d"),
        groups=np.arange(100),
        name="toy",
        credit="",
        license="",
    )
    assert len(ds.subset([1, 2, 5])) == 3 and ds.subset([1, 2, 5]).class_counts() == {
        "a": 0,
        "b": 2,
        "c": 1,
        "d": 0,
    }
    train, test = ds.split(0.2, seed=0)
    assert len(test) == 20 and test.class_counts() == {"a": 5, "b": 5, "c": 5, "d": 5}
    with pytest.raises(DifftoolError):
        ds.split(1.0, seed=0)


def test_module_does_not_import_torch() -> None:
    code = "import sys, difftool.train, difftool.train.data; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


# -- errors -------------------------------------------------------------------------------------------


def test_unknown_dataset_lists_valid_names() -> None:
    with pytest.raises(DifftoolError) as info:
        load_dataset("cifar", "x")
    message = str(info.value)
    assert all(name in message for name in DATASET_NAMES) and "\n" not in message


def test_missing_folder_and_missing_labels(tmp_path: Path) -> None:
    with pytest.raises(DifftoolError, match="does not exist"):
        load_dataset("sprites", tmp_path / "nope")
    with pytest.raises(DifftoolError, match="no labels.toml"):
        load_dataset("sprites", tmp_path)
    with pytest.raises(DifftoolError, match="does not exist"):
        load_dataset("mnist", tmp_path / "nope")
    with pytest.raises(DifftoolError, match="no MNIST IDX files"):
        load_dataset("mnist", tmp_path)
    with pytest.raises(DifftoolError, match="no .png/.jpg images"):
        load_dataset("images", tmp_path)


def test_corrupt_png(tmp_path: Path) -> None:
    folder = _write_sheet_folder(tmp_path / "s", Image.new("RGBA", (16, 16)))
    (folder / "sheet.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not really a png")
    with pytest.raises(DifftoolError, match="corrupt"):
        load_dataset("sprites", folder)
    with pytest.raises(DifftoolError, match="corrupt"):
        load_dataset("images", folder)


@pytest.mark.parametrize(
    ("name", "options", "match"),
    [
        ("mnist", {"size": 30}, "multiple of 4"),
        ("mnist", {"size": 16}, "28 or a larger"),
        ("digits", {"size": 12}, "8 or 16"),
        ("images", {"size": 10}, "multiple of 4"),
        ("images", {"crops_per_image": 0}, "positive integer"),
        ("mnist", {"sise": 32}, "valid options: size"),
    ],
)
def test_bad_options(tmp_path: Path, name: str, options: dict, match: str) -> None:
    path = None if name == "digits" else tmp_path
    with pytest.raises(DifftoolError, match=match):
        load_dataset(name, path, **options)


def test_malformed_labels_toml(tmp_path: Path) -> None:
    (tmp_path / "labels.toml").write_text("tile_size = [\n")
    with pytest.raises(DifftoolError, match="malformed"):
        load_dataset("sprites", tmp_path)
    (tmp_path / "labels.toml").write_text("tile_size = 16\n")
    with pytest.raises(DifftoolError, match="dawnlike format"):
        load_dataset("sprites", tmp_path)
