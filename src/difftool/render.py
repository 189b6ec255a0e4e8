"""Print images in the terminal as truecolor half-blocks (torch-free).

Each character cell shows two pixel rows: "▀" with the top pixel as foreground colour and the bottom
pixel as background colour, so a 16x16 sprite takes 16 columns x 8 rows at scale 1.
"""

from __future__ import annotations

import os

import numpy as np


def halfblock_text(image: np.ndarray, scale: int = 1):
    """A rich ``Text`` for one (H, W, 3) uint8 image (H even after scaling)."""
    from rich.style import Style
    from rich.text import Text

    img = np.repeat(np.repeat(image, scale, axis=0), scale, axis=1)
    if img.shape[0] % 2:
        img = np.concatenate([img, np.zeros_like(img[:1])], axis=0)
    text = Text()
    styles: dict[tuple, Style] = {}
    for y in range(0, img.shape[0], 2):
        for top, bottom in zip(img[y], img[y + 1], strict=True):
            key = (*top[:3], *bottom[:3])
            style = styles.get(key)
            if style is None:
                style = styles[key] = Style(color=f"rgb({top[0]},{top[1]},{top[2]})",
                                            bgcolor=f"rgb({bottom[0]},{bottom[1]},{bottom[2]})")
            text.append("▀", style)
        if y + 2 < img.shape[0]:
            text.append("\n")
    return text


def truecolor_hint() -> str | None:
    """A one-line hint when the terminal probably cannot show 24-bit colour, else None."""
    colorterm = os.environ.get("COLORTERM", "").lower()
    forced = os.environ.get("TEXTUAL_COLOR_SYSTEM", "").lower() == "truecolor"
    if colorterm in ("truecolor", "24bit") or forced:
        return None
    where = "tmux" if os.environ.get("TMUX") else "this terminal"
    return (f"{where} does not advertise truecolor (COLORTERM is {colorterm or 'unset'}), so sprite colours "
            "are approximated; run `export COLORTERM=truecolor` if your terminal supports 24-bit colour"
            + (" (and in tmux `set -as terminal-features ',*:RGB'`)" if os.environ.get("TMUX") else ""))
