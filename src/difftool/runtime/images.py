"""Image helpers: float samples to uint8, grids, atomic PNG/GIF writing (Pillow, imported lazily)."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from difftool.errors import DifftoolError


def to_uint8(x: np.ndarray, value_range: tuple[float, float] = (-1.0, 1.0)) -> np.ndarray:
    """(B, C, H, W) floats in ``value_range`` -> (B, H, W, C) uint8: clip, map to 0..255, round."""
    x = np.asarray(x)
    if x.ndim != 4:
        raise DifftoolError(f"to_uint8 expects a (batch, channels, height, width) array, got {x.shape}")
    lo, hi = float(value_range[0]), float(value_range[1])
    if not hi > lo:
        raise DifftoolError(f"value_range must be (low, high) with high > low, got {value_range}")
    check_finite(x)
    scaled = (np.clip(x.astype(np.float32), lo, hi) - lo) * (255.0 / (hi - lo))
    return np.rint(scaled).astype(np.uint8).transpose(0, 2, 3, 1).copy()  # (B, H, W, C)


def check_finite(x: np.ndarray) -> np.ndarray:
    """``x`` itself; a sample with NaN or inf is an error, never a silently black/white image."""
    if x.size and not np.isfinite(x).all():
        bad = int((~np.isfinite(x.reshape(len(x), -1))).any(axis=1).sum())
        raise DifftoolError(
            f"sampling produced non-finite values (NaN or inf) in {bad} of {len(x)} image(s): the model's "
            "weights are broken or the settings make it diverge (try a lower --guidance or eta, or more --steps)")
    return x


def grid(images: np.ndarray, nrow: int, gap: int = 1) -> np.ndarray:
    """Tile (B, H, W, C) uint8 images, ``nrow`` per row, with ``gap``-px black gutters (also around the edge;
    ``gap=0``: a gapless sprite sheet)."""
    images = np.asarray(images)
    if images.ndim != 4:
        raise DifftoolError(f"grid expects (batch, height, width, channels) images, got {images.shape}")
    if nrow < 1:
        raise DifftoolError(f"nrow must be at least 1, got {nrow}")
    b, h, w, c = images.shape
    cols = min(nrow, max(b, 1))
    rows = -(-b // cols)
    g = int(gap)
    out = np.zeros((rows * (h + g) + g, cols * (w + g) + g, c), dtype=np.uint8)  # (H', W', C)
    for i, image in enumerate(images):
        r, q = divmod(i, cols)
        out[g + r * (h + g): g + r * (h + g) + h, g + q * (w + g): g + q * (w + g) + w] = image
    return out


def save_png(path: str | os.PathLike[str], array: np.ndarray, scale: int = 1,
             text: dict[str, str] | None = None) -> Path:
    """Write an (H, W, C) or (H, W) uint8 image as PNG, upscaled ``scale``x (NEAREST), atomically;
    ``text`` becomes tEXt/iTXt chunks (difftool's generation record, see :mod:`~difftool.runtime.record`)."""
    image = _to_pil(array, scale)
    info = None
    if text:
        from PIL.PngImagePlugin import PngInfo

        info = PngInfo()
        for key, value in text.items():
            info.add_itxt(key, value)
    return _atomic_write(Path(path), lambda f: image.save(f, format="PNG", pnginfo=info))


def encode_png(array: np.ndarray, scale: int = 1) -> bytes:
    """The PNG file bytes of an (H, W, C) or (H, W) uint8 image, upscaled ``scale``x (NEAREST), as
    :func:`save_png` writes them (for HTTP responses)."""
    import io

    buf = io.BytesIO()
    _to_pil(array, scale).save(buf, format="PNG")
    return buf.getvalue()


def save_gif(
    path: str | os.PathLike[str], frames: Sequence[np.ndarray], duration_ms: int = 200, scale: int = 1
) -> Path:
    """Write (H, W, C) uint8 frames as a looping animated GIF, upscaled ``scale``x, atomically."""
    if len(frames) == 0:
        raise DifftoolError("save_gif needs at least one frame")
    images = [_to_pil(frame, scale) for frame in frames]

    def write(f: Any) -> None:
        images[0].save(f, format="GIF", save_all=True, append_images=images[1:],
                       duration=int(duration_ms), loop=0)

    return _atomic_write(Path(path), write)


def _to_pil(array: np.ndarray, scale: int) -> Any:
    """A PIL image from (H, W), (H, W, 1), (H, W, 3) or (H, W, 4) uint8, NEAREST-upscaled."""
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - Pillow is a core dependency
        raise DifftoolError("writing images needs Pillow; install it with `pip install pillow`") from None
    array = np.asarray(array)
    if array.dtype != np.uint8:
        raise DifftoolError(f"images must be uint8 (use to_uint8 first), got {array.dtype}")
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)):
        raise DifftoolError(f"an image must be (H, W) or (H, W, 1|3|4), got {array.shape}")
    if scale < 1:
        raise DifftoolError(f"scale must be at least 1, got {scale}")
    image = Image.fromarray(np.ascontiguousarray(array))
    if scale != 1:
        image = image.resize((image.width * scale, image.height * scale), Image.Resampling.NEAREST)
    return image


def _atomic_write(path: Path, write: Callable[[Any], None]) -> Path:
    """Write through a binary file object to a temp file beside ``path``, then rename it into place."""
    from difftool.fileio import atomic_write

    folder = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise DifftoolError(f"cannot write {path}: it is a folder (give a file name, e.g. {path / 'out.png'})")
    if not folder.is_dir():
        raise DifftoolError(f"cannot write {path}: folder {folder} does not exist")

    def to_file(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            write(f)

    return atomic_write(path, to_file)
