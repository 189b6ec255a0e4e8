"""Array -> pixels: uint8 conversion, tiling, NEAREST upscaling and atomic PNG/GIF writes.

Small private equivalents of ``difftool.runtime.images`` so the TUI does not depend on its progress;
saved files always come from the raw arrays, never from what the terminal shows.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from difftool.fileio import atomic_write


def to_uint8(x: np.ndarray, value_range: tuple[float, float] = (-1.0, 1.0)) -> np.ndarray:
    """(B, C, H, W) float in ``value_range`` -> (B, H, W, C) uint8, clipped."""
    lo, hi = value_range
    scaled = (np.asarray(x, dtype=np.float32) - lo) * (255.0 / (hi - lo))
    out = np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(out.transpose(0, 2, 3, 1))


def to_rgb(images: np.ndarray) -> np.ndarray:
    """(B, H, W, C) uint8 with C in {1, 3, 4} -> (B, H, W, 3) uint8."""
    channels = images.shape[-1]
    if channels == 1:
        return np.repeat(images, 3, axis=-1)
    if channels >= 3:
        return images[..., :3]
    raise ValueError(f"cannot show images with {channels} channels")


def tile(images: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """(rows*cols, H, W, C) -> (rows*H, cols*W, C), row-major, no gaps (a sprite sheet)."""
    n, h, w, c = images.shape
    if n != rows * cols:
        raise ValueError(f"{n} images do not fill a {rows}x{cols} grid")
    return images.reshape(rows, cols, h, w, c).transpose(0, 2, 1, 3, 4).reshape(rows * h, cols * w, c)


def upscale(image: np.ndarray, scale: int) -> np.ndarray:
    """NEAREST upscale of an (H, W, C) image by an integer factor."""
    if scale == 1:
        return image
    return np.repeat(np.repeat(image, scale, axis=0), scale, axis=1)


def _pil(image: np.ndarray) -> Image.Image:
    return Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)


def save_png(path: Path, image: np.ndarray, scale: int = 1) -> None:
    """Save one (H, W, C) uint8 image, upscaled ``scale`` times with NEAREST."""
    pil = _pil(upscale(image, scale))
    atomic_write(path, lambda tmp: pil.save(tmp, format="PNG"))


def save_gif(path: Path, frames: Sequence[np.ndarray], duration_ms: int = 60, scale: int = 1,
             hold_last_ms: int = 1500) -> None:
    """Save (H, W, C) uint8 frames as a looping GIF; the last frame is held ``hold_last_ms``."""
    if not frames:
        raise ValueError("no frames to save")
    images = [_pil(upscale(f, scale)).convert("RGB") for f in frames]
    durations = [duration_ms] * (len(images) - 1) + [max(duration_ms, hold_last_ms)]

    def write(tmp: Path) -> None:
        images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:], duration=durations,
                       loop=0, disposal=1)

    atomic_write(path, write)
