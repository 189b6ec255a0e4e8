"""MNIST from IDX files (``train-*`` preferred, else ``t10k-*``; gzipped or not)."""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

from difftool.errors import DifftoolError
from difftool.train.datasets.base import ImageDataset, to_signed

MNIST_CREDIT = "MNIST (Y. LeCun, C. Cortes, C. Burges), CC BY-SA 3.0"
MNIST_LICENSE = "CC-BY-SA-3.0"
_PREFIXES = ("train", "t10k")


def read_idx(path: Path) -> np.ndarray:
    """Parse an unsigned-byte IDX file (optionally gzipped) into an array of its stated shape."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError, zlib.error) as exc:
        raise DifftoolError(f"cannot read {path} ({exc}); the file is corrupt: download it again") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise DifftoolError(f"{path} is not an unsigned-byte IDX file; download the MNIST files again")
    ndim = data[3]
    header = 4 + 4 * ndim
    dims = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    if len(data) - header != int(np.prod(dims)):
        raise DifftoolError(
            f"{path} is truncated ({len(data) - header} bytes for shape {dims}); download it again"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def _find(folder: Path, prefix: str, kind: str) -> Path | None:
    """The IDX file for ``prefix`` ('train'/'t10k') and ``kind`` ('images'/'labels'), gz or plain."""
    ndim = 3 if kind == "images" else 1
    stem = f"{prefix}-{kind}"
    for name in (f"{stem}-idx{ndim}-ubyte.gz", f"{stem}-idx{ndim}-ubyte", f"{stem}.idx{ndim}-ubyte"):
        if (folder / name).is_file():
            return folder / name
    return None


def load_mnist(path: Path, *, size: int = 28) -> ImageDataset:
    """MNIST digits as (N, 1, size, size); sizes above 28 are zero-padded (value -1) around the centre."""
    if not isinstance(size, int) or size < 28 or size % 4:
        raise DifftoolError(f"mnist size must be 28 or a larger multiple of 4 (e.g. 32), got {size!r}")
    if not path.is_dir():
        raise DifftoolError(
            f"MNIST folder {path} does not exist; pass the folder holding t10k-/train-*-ubyte.gz"
        )
    for prefix in _PREFIXES:
        images_path, labels_path = _find(path, prefix, "images"), _find(path, prefix, "labels")
        if images_path and labels_path:
            break
    else:
        raise DifftoolError(
            f"no MNIST IDX files in {path}; expected train-images-idx3-ubyte.gz + train-labels-idx1-ubyte.gz "
            "(or the t10k-* pair)"
        )
    pixels, labels = read_idx(images_path), read_idx(labels_path)
    if pixels.ndim != 3 or labels.shape != (len(pixels),):
        raise DifftoolError(
            f"{images_path} and {labels_path} do not match ({pixels.shape} vs {labels.shape})"
        )
    pad = (size - pixels.shape[1]) // 2
    images = np.pad(to_signed(pixels), ((0, 0), (pad, pad), (pad, pad)), constant_values=-1.0)
    return ImageDataset(
        images=images[:, None],
        labels=labels.astype(np.int64),
        class_names=tuple(str(d) for d in range(10)),
        groups=np.arange(len(labels), dtype=np.int64),
        name="mnist",
        credit=MNIST_CREDIT,
        license=MNIST_LICENSE,
    )
