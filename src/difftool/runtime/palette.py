"""Colour palettes for pixel art (torch-free): read, learn from data, project samples onto them.

* :class:`Palette`: the colours (P, 3) uint8 and how many of the last sampler steps it governs.
* :func:`load_palette`: ``--palette`` values: ``auto`` (the palette the model card learned from its training
  data), ``none``, or a file: GIMP ``.gpl``, a hex list (``#140c1c`` / ``140c1c``, one or more per line,
  ``#``/``;``/``//`` comments) or a PNG/GIF/BMP whose distinct colours are the palette.
* :func:`learn_palette`: the palette of a set of images (every distinct colour when they use at most
  ``max_colors``, else the most frequent ones).
* :func:`project` / :class:`PaletteProjection`: nearest-colour projection; as an x0 hook of
  :class:`~difftool.runtime.samplers.engine.SamplerRun` it replaces the x0 estimate by its nearest palette
  colours in the last steps, so the final steps denoise towards colours the palette has.
* :func:`palette_fidelity` / :func:`distinct_colors`: the eval's palette figures.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from difftool.errors import DifftoolError

MAX_COLORS = 256  # a palette file or a learned palette holds at most this many colours
FIDELITY_RMS = 8.0  # per-pixel RMS over R, G, B in 0..255 units: "on the palette" for the eval
DEFAULT_LAST = 0.3  # share of the sampler steps (the last ones) whose x0 estimate is projected
_HEX = re.compile(r"#?([0-9a-fA-F]{6})\b")
_IMAGE_SUFFIXES = (".png", ".gif", ".bmp")


@dataclass(frozen=True)
class Palette:
    """``colors`` (P, 3) uint8 RGB; ``last`` the share of the final sampler steps projected onto it (0: only a
    post-filter on the finished image, see :func:`project`); ``name`` where it came from (recorded in PNGs)."""

    colors: np.ndarray
    name: str = ""
    last: float = DEFAULT_LAST
    ramp: bool = True  # move x0 part of the way in the earlier projected steps (PaletteProjection)

    def __post_init__(self):
        colors = np.asarray(self.colors)
        if colors.ndim != 2 or colors.shape[1] != 3 or len(colors) == 0:
            raise DifftoolError(f"a palette needs (P, 3) RGB colours, got shape {colors.shape}")
        if len(colors) > MAX_COLORS:
            raise DifftoolError(f"a palette holds at most {MAX_COLORS} colours, got {len(colors)}")
        if not 0.0 <= float(self.last) <= 1.0 or not math.isfinite(float(self.last)):
            raise DifftoolError(f"the palette's projected share of steps must be in 0..1, got {self.last}")
        object.__setattr__(self, "colors", np.ascontiguousarray(colors, dtype=np.uint8))

    def __len__(self) -> int:
        return len(self.colors)

    def hex(self) -> tuple[str, ...]:
        """``("#000000", "#140c1c", ...)`` (the model card's form)."""
        return tuple(f"#{r:02x}{g:02x}{b:02x}" for r, g, b in self.colors.tolist())

    @classmethod
    def from_hex(cls, colors: Sequence[str], name: str = "", last: float = DEFAULT_LAST) -> Palette:
        return cls(np.array([_hex_rgb(c) for c in colors], dtype=np.uint8).reshape(-1, 3), name, last)

    def signed(self, value_range: tuple[float, float] = (-1.0, 1.0)) -> np.ndarray:
        """(P, 3) float32 colours in the model's value range (0 -> low, 255 -> high, as ``to_uint8`` inverts)."""
        lo, hi = float(value_range[0]), float(value_range[1])
        return (self.colors.astype(np.float32) * np.float32((hi - lo) / 255.0) + np.float32(lo)).astype(np.float32)

    def spec(self) -> str:
        """The ``--palette`` value that rebuilds it (``auto``, or the colours inline), as PNG records keep it."""
        return "auto" if self.name == "auto" else ",".join(self.hex())

    def hook(self, value_range: tuple[float, float] = (-1.0, 1.0)) -> PaletteProjection:
        return PaletteProjection(self.signed(value_range), self.last, self.ramp)


def _hex_rgb(text: str) -> tuple[int, int, int]:
    m = _HEX.fullmatch(text.strip())
    if m is None:
        raise DifftoolError(f"bad palette colour {text!r}: use 6 hex digits such as #140c1c")
    v = int(m.group(1), 16)
    return v >> 16, (v >> 8) & 0xFF, v & 0xFF


# -- projection ------------------------------------------------------------------------------------------
def nearest_index(pixels: np.ndarray, colors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For (N, 3) ``pixels`` and (P, 3) ``colors`` (same units): ((N,) index of the nearest colour, (N,)
    squared Euclidean distance to it)."""
    p = np.asarray(pixels, dtype=np.float32)
    c = np.asarray(colors, dtype=np.float32)
    d = (p * p).sum(1)[:, None] - 2.0 * (p @ c.T) + (c * c).sum(1)[None, :]  # (N, P)
    idx = d.argmin(axis=1)
    return idx, np.maximum(d[np.arange(len(p)), idx], 0.0)


def project(x: np.ndarray, colors: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Every pixel of ``x`` (B, 3, H, W) replaced by its nearest colour of (P, 3) ``colors`` (same units)."""
    x = np.asarray(x)
    if x.ndim != 4 or x.shape[1] != 3:
        raise DifftoolError(f"palette projection needs (B, 3, H, W) RGB images, got {x.shape}")
    pixels = x.transpose(0, 2, 3, 1).reshape(-1, 3)  # (B*H*W, 3)
    idx, _ = nearest_index(pixels, colors)
    snapped = np.asarray(colors, dtype=x.dtype)[idx].reshape(x.shape[0], x.shape[2], x.shape[3], 3)
    out = np.empty_like(x) if out is None else out
    out[...] = snapped.transpose(0, 3, 1, 2)
    return out


class PaletteProjection:
    """x0 hook (:data:`~difftool.runtime.samplers.engine.X0Hook`): in the last ``ceil(last * total)`` steps
    the x0 estimate is replaced by its nearest palette colours, so the remaining steps re-noise and denoise
    around palette colours and the final step (whose output is x0) lands on the palette exactly. With
    ``ramp`` the estimate moves only part of the way, ``j / k`` in the ``j``-th of the ``k`` projected steps
    (all the way in the last one)."""

    def __init__(self, colors: np.ndarray, last: float = DEFAULT_LAST, ramp: bool = True):
        self.colors = np.asarray(colors, dtype=np.float32)  # (P, 3) in the model's value range
        self.last, self.ramp = float(last), bool(ramp)

    def first_step(self, total: int) -> int:
        """Index of the first projected step of a ``total``-step run (``total``: none)."""
        return total - min(total, math.ceil(self.last * total - 1e-9))

    def __call__(self, index: int, total: int, x0: np.ndarray) -> None:
        first = self.first_step(total)
        if index < first:
            return
        weight = (index - first + 1) / (total - first) if self.ramp else 1.0
        if weight >= 1.0:
            project(x0, self.colors, out=x0)
        else:
            x0 += np.float32(weight) * (project(x0, self.colors) - x0)


def sampling_hook(palette: Palette | None, value_range: tuple[float, float]) -> PaletteProjection | None:
    """The request's x0 hook: None without a palette or with ``last == 0`` (then only a post-filter applies)."""
    if palette is None or palette.last <= 0:
        return None
    return palette.hook(value_range)


def finish(x: np.ndarray, palette: Palette | None, value_range: tuple[float, float]) -> np.ndarray:
    """The finished samples (B, 3, H, W) snapped onto ``palette`` (a no-op on pixels the projected last step
    already put there; the whole filter when ``palette.last == 0``); ``x`` itself without a palette."""
    if palette is None:
        return x
    lo, hi = float(value_range[0]), float(value_range[1])
    return project(np.clip(x, lo, hi), palette.signed(value_range), out=np.empty_like(x))


# -- learning and reading palettes ----------------------------------------------------------------------
def colors_of(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct colours (K, 3) uint8 of (..., 3) uint8 ``images`` and their pixel counts (K,), most frequent
    first (ties in RGB order)."""
    flat = np.asarray(images, dtype=np.uint8).reshape(-1, 3)
    code = (flat[:, 0].astype(np.int64) << 16) | (flat[:, 1].astype(np.int64) << 8) | flat[:, 2]
    uniq, counts = np.unique(code, return_counts=True)
    order = np.lexsort((uniq, -counts))
    uniq, counts = uniq[order], counts[order]
    rgb = np.stack([(uniq >> 16) & 0xFF, (uniq >> 8) & 0xFF, uniq & 0xFF], axis=1).astype(np.uint8)
    return rgb, counts


def learn_palette(images: np.ndarray, value_range: tuple[float, float] = (-1.0, 1.0), *,
                  max_colors: int = 64, name: str = "learned") -> Palette:
    """The palette of (N, 3, H, W) float ``images`` in ``value_range`` (or (N, H, W, 3) uint8): every distinct
    colour if there are at most ``max_colors``, else the ``max_colors`` most frequent ones."""
    from difftool.runtime.images import to_uint8

    arr = np.asarray(images)
    u8 = arr if arr.dtype == np.uint8 else to_uint8(arr, value_range)
    if u8.shape[-1] != 3:
        raise DifftoolError(f"a palette is learned from RGB images, got shape {arr.shape}")
    rgb, _ = colors_of(u8)
    return Palette(rgb[:max_colors], name)


def resolve_palette(spec: str | Path | None, card) -> Palette | None:
    """The palette of a generation: ``spec`` (None: the card's recommendation, ``none`` unless its sampling
    settings say ``auto``), projected over the card's recommended share of the last steps."""
    if spec is None:
        spec = card.recommended("palette") if card is not None else None
    last = float(card.recommended("palette_last")) if card is not None else DEFAULT_LAST
    return load_palette(spec, card, last=last)


def palette_spec(palette: Palette | None) -> str | None:
    """What a generation record stores: None for raw output, else the palette's ``--palette`` value."""
    return None if palette is None else palette.spec()


def load_palette(spec: str | Path | None, card=None, *, last: float = DEFAULT_LAST) -> Palette | None:
    """``--palette`` value -> Palette (None for ``none``/empty): ``auto`` (needs a card with a palette), a
    file, or colours inline (``#000000,#140c1c``)."""
    if spec is None:
        return None
    text = str(spec).strip()
    if text.lower() in ("", "none", "off", "raw"):
        return None
    if text.lower() == "auto":
        colors = tuple(getattr(card, "palette", ()) or ()) if card is not None else ()
        if not colors:
            raise DifftoolError("this model's card has no learned palette (it was trained before palettes were "
                                "stored); pass --palette FILE (.gpl, hex list or PNG) or --palette none")
        return Palette.from_hex(colors, "auto", last)
    path = Path(text).expanduser()
    if text.startswith("#") and not path.is_file():  # inline colours, as PNG records store them
        return Palette(np.array(_hex_colors(text, Path("--palette")), dtype=np.uint8).reshape(-1, 3), "inline",
                       last)
    if not path.is_file():
        raise DifftoolError(f"palette file not found: {path} (use auto, none, or a .gpl / hex list / PNG file)")
    colors = read_palette_file(path)
    return Palette(colors, path.name, last)


def read_palette_file(path: Path) -> np.ndarray:
    """(P, 3) uint8 colours of a GIMP palette, a hex list or an image file (DifftoolError if unreadable)."""
    if path.suffix.lower() in _IMAGE_SUFFIXES:
        return _image_colors(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DifftoolError(f"cannot read palette {path} ({exc}); expected a .gpl, a hex list or a PNG") from None
    colors = _gpl_colors(text, path) if text.lstrip().startswith("GIMP Palette") else _hex_colors(text, path)
    if not colors:
        raise DifftoolError(f"palette {path} has no colours (expected GIMP 'R G B name' lines or hex colours)")
    if len(colors) > MAX_COLORS:
        raise DifftoolError(f"palette {path} has {len(colors)} colours; at most {MAX_COLORS} are allowed")
    return np.array(list(dict.fromkeys(colors)), dtype=np.uint8)  # duplicates dropped, order kept


def _gpl_colors(text: str, path: Path) -> list[tuple[int, int, int]]:
    colors = []
    for n, line in enumerate(text.splitlines()[1:], start=2):
        line = line.strip()
        if not line or line.startswith("#") or line.split(":")[0] in ("Name", "Columns"):
            continue
        parts = line.split()
        try:
            rgb = tuple(int(v) for v in parts[:3])
        except ValueError:
            rgb = ()
        if len(rgb) != 3 or not all(0 <= v <= 255 for v in rgb):
            raise DifftoolError(f"{path}:{n}: bad GIMP palette line {line!r} (expected 'R G B [name]', 0..255)")
        colors.append(rgb)
    return colors


def _hex_colors(text: str, path: Path) -> list[tuple[int, int, int]]:
    colors = []
    for n, line in enumerate(text.splitlines(), start=1):
        body = re.split(r"\s;|^;|//", line, maxsplit=1)[0].strip()
        if re.match(r"#(\s|#|$)", body):
            continue  # a comment line ("# ..."); "#140c1c" is a colour
        for word in re.split(r"[\s,]+", body):
            if not word:
                continue
            if _HEX.fullmatch(word) is None:
                raise DifftoolError(f"{path}:{n}: bad colour {word!r} (expected 6 hex digits such as #140c1c)")
            colors.append(_hex_rgb(word))
    return colors


def _image_colors(path: Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            rgba = np.asarray(image.convert("RGBA"))
    except (UnidentifiedImageError, OSError) as exc:
        raise DifftoolError(f"cannot read palette image {path} ({exc})") from None
    opaque = rgba[rgba[..., 3] > 0][:, :3]
    if len(opaque) == 0:
        raise DifftoolError(f"palette image {path} has no opaque pixels")
    rgb, _ = colors_of(opaque)
    if len(rgb) > MAX_COLORS:
        raise DifftoolError(f"palette image {path} has {len(rgb)} colours; a palette image may hold at most "
                            f"{MAX_COLORS} (use a swatch image or a .gpl file)")
    return rgb


def write_gpl(palette: Palette, path: Path, name: str = "difftool") -> Path:
    """Write ``palette`` as a GIMP palette (round-trips through :func:`read_palette_file`)."""
    lines = ["GIMP Palette", f"Name: {name}", "#"]
    lines += [f"{r:3d} {g:3d} {b:3d}\t{h}" for (r, g, b), h in zip(palette.colors.tolist(), palette.hex(),
                                                                    strict=True)]
    Path(path).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return Path(path)


# -- the eval's figures ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Fidelity:
    on_palette: float  # share of non-background pixels within `tolerance` RMS of a palette colour
    exact: float  # share of non-background pixels exactly on a palette colour
    distinct_colors: int  # distinct RGB colours over all images
    foreground_pixels: int


def palette_fidelity(images_u8: np.ndarray, colors: np.ndarray, background: Sequence[int] = (0, 0, 0),
                     tolerance: float = FIDELITY_RMS) -> Fidelity:
    """Palette figures of (N, H, W, 3) uint8 images against (P, 3) uint8 ``colors``. A pixel is background
    when its RMS distance (over R, G, B, 0..255 units) to ``background`` is at most ``tolerance``; a
    foreground pixel is on the palette when its RMS distance to the nearest palette colour is at most
    ``tolerance``."""
    px = np.asarray(images_u8, dtype=np.uint8).reshape(-1, 3).astype(np.float32)
    bg = np.asarray(background, dtype=np.float32).reshape(1, 3)
    fg = ((px - bg) ** 2).mean(axis=1) > tolerance ** 2 + 1e-6
    fgpx = px[fg]
    distinct = len(colors_of(images_u8)[0])
    if len(fgpx) == 0:
        return Fidelity(float("nan"), float("nan"), distinct, 0)
    _, sq = nearest_index(fgpx, np.asarray(colors, dtype=np.float32))
    mse = sq / 3.0
    return Fidelity(float((mse <= tolerance ** 2 + 1e-6).mean()), float((sq < 0.5).mean()), distinct, len(fgpx))


def distinct_colors(images_u8: np.ndarray) -> int:
    """The number of distinct RGB colours over (N, H, W, 3) uint8 images."""
    return len(colors_of(images_u8)[0])
