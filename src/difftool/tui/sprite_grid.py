"""The sprite grid: pixel art drawn with half blocks through Textual's line API.

Every character cell is "▀" with the foreground set to the upper pixel and the background to the lower
one, so one terminal row shows two pixel rows and 16x16 sprites stay square. The widget keeps one RGB
canvas (sprites at ``zoom`` with 1-pixel gutters and a highlight frame around the cursor cell);
``render_line`` cuts two canvas rows into run-length-merged segments, each with explicit colours.
"""

from __future__ import annotations

import numpy as np
from rich.color import Color, ColorType
from rich.color_triplet import ColorTriplet
from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.binding import Binding
from textual.geometry import Region, Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip

HALF = "▀"
GAP = 1  # gutter between sprites, in pixels
MIN_ZOOM, MAX_ZOOM = 1, 4
BACKGROUND = (14, 14, 22)
EMPTY = (38, 38, 52)
CURSOR_FOCUSED = (255, 196, 0)
CURSOR_BLURRED = (96, 96, 120)


def to_rgb(images: np.ndarray) -> np.ndarray:
    """(B, H, W, C) uint8 with C in {1, 3, 4} -> (B, H, W, 3) uint8 (grey drawn as equal RGB)."""
    channels = images.shape[-1]
    if channels == 1:
        return np.repeat(images, 3, axis=-1)
    if channels >= 3:
        return images[..., :3]
    raise ValueError(f"cannot show images with {channels} channels")


def _pack(rgb: np.ndarray) -> np.ndarray:
    """(..., 3) uint8 -> (...) int64 0xRRGGBB."""
    rgb = rgb.astype(np.int64)
    return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]


# Colour and style caches keyed by packed ints. Noise frames make most cells unique, so building
# styles is the hot path: construct Color/Style directly instead of through the parsing helpers.
_COLORS: dict[int, Color] = {}
_STYLES: dict[int, Style] = {}
_COLOR_LIMIT = 1 << 16  # holds every preview colour (see preview_colours) plus the exact ones on screen
_CACHE_LIMIT = 4096  # pairs: small, noise pairs rarely repeat and big caches make every gen-2 GC slow


def preview_colours(images: np.ndarray) -> np.ndarray:
    """``images`` (uint8) with 5 bits per channel (32768 colours), for the live preview while sampling:
    every colour is then built once and cached, which makes drawing a noisy frame ~3x cheaper."""
    return (images & 0xF8) | 0x04


def _color(value: int) -> Color:
    color = _COLORS.get(value)
    if color is None:
        if len(_COLORS) > _COLOR_LIMIT:
            _COLORS.clear()
        triplet = ColorTriplet(value >> 16, (value >> 8) & 255, value & 255)
        color = _COLORS[value] = Color(f"#{value:06x}", ColorType.TRUECOLOR, None, triplet)
    return color


def _style(pair: int) -> Style:
    """Style for a packed (top << 24 | bottom) pair: fg = top pixel, bg = bottom pixel."""
    style = _STYLES.get(pair)
    if style is None:
        if len(_STYLES) > _CACHE_LIMIT:
            _STYLES.clear()
        style = _STYLES[pair] = Style.from_color(_color(pair >> 24), _color(pair & 0xFFFFFF))
    return style


def _rgb_style(rgb: tuple[int, int, int]) -> Style:
    return Style(bgcolor=Color.from_rgb(*rgb))


class SpriteGrid(ScrollView, can_focus=True):
    """A rows x cols grid of same-size sprites with a movable cursor cell."""

    DEFAULT_CSS = """
    SpriteGrid {
        width: 1fr;
        height: 1fr;
        background: rgb(14, 14, 22);
        scrollbar-size: 1 1;
    }
    """

    BINDINGS = [
        Binding("up", "move(0, -1)", "Cursor up", show=False, id="grid.up"),
        Binding("down", "move(0, 1)", "Cursor down", show=False, id="grid.down"),
        Binding("left", "move(-1, 0)", "Cursor left", show=False, id="grid.left"),
        Binding("right", "move(1, 0)", "Cursor right", show=False, id="grid.right"),
        Binding("enter", "app.generate", "Generate", show=False, id="grid.generate"),
    ]

    zoom: reactive[int] = reactive(1)
    cursor: reactive[int] = reactive(0)

    class CellSelected(Message):
        """The cursor moved to cell ``index`` (by keys or a click)."""

        def __init__(self, index: int) -> None:
            super().__init__()
            self.index = index

    def __init__(self, cell_size: tuple[int, int] = (16, 16), rows: int = 4, cols: int = 4, zoom: int = 1,
                 *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.cell_size = cell_size
        self.rows = rows
        self.cols = cols
        self._images: np.ndarray | None = None  # (n, H, W, 3) uint8
        self._canvas = np.zeros((0, 0, 3), np.uint8)
        self._pairs: list[list[int]] = []  # per character row: packed (top << 24 | bottom) colours
        self._strips: dict[tuple[int, int, int], Strip] = {}
        self.set_reactive(SpriteGrid.zoom, self._clamp_zoom(zoom))
        self._rebuild()

    # -- state ---------------------------------------------------------------------------------
    @property
    def images(self) -> np.ndarray | None:
        """The RGB sprites shown, (rows*cols, H, W, 3) uint8, or None before the first frame."""
        return self._images

    @property
    def canvas(self) -> np.ndarray:
        """The full RGB canvas being drawn (pixel space, gutters and cursor frame included)."""
        return self._canvas

    def show(self, images: np.ndarray | None, rows: int | None = None, cols: int | None = None) -> None:
        """Show (n, H, W, C) uint8 sprites (C = 1 or 3) in a rows x cols grid (None = empty cells)."""
        self.rows = rows or self.rows
        self.cols = cols or self.cols
        if images is not None:
            if images.shape[0] != self.rows * self.cols:
                raise ValueError(f"{images.shape[0]} sprites for a {self.rows}x{self.cols} grid")
            self.cell_size = (images.shape[1], images.shape[2])
            images = to_rgb(images)
        self._images = images
        self.set_reactive(SpriteGrid.cursor, self.validate_cursor(self.cursor))
        self._rebuild()

    @staticmethod
    def _clamp_zoom(zoom: int) -> int:
        return max(MIN_ZOOM, min(MAX_ZOOM, int(zoom)))

    def validate_zoom(self, zoom: int) -> int:
        return self._clamp_zoom(zoom)

    def validate_cursor(self, cursor: int) -> int:
        return max(0, min(self.rows * self.cols - 1, cursor))

    def watch_zoom(self) -> None:
        self._rebuild()
        self._scroll_to_cursor()

    def watch_cursor(self, cursor: int) -> None:
        self._rebuild()
        self._scroll_to_cursor()
        self.post_message(self.CellSelected(cursor))

    def on_focus(self) -> None:
        self._rebuild()

    def on_blur(self) -> None:
        self._rebuild()

    def on_resize(self) -> None:
        self._strips.clear()

    # -- canvas ----------------------------------------------------------------------------------
    def _cell_origin(self, index: int) -> tuple[int, int]:
        h, w = (d * self.zoom for d in self.cell_size)
        row, col = divmod(index, self.cols)
        return GAP + row * (h + GAP), GAP + col * (w + GAP)

    def _rebuild(self) -> None:
        """Redraw the pixel canvas from the sprites, zoom and cursor, then repaint the widget."""
        rows, cols, z = self.rows, self.cols, self.zoom
        h, w = self.cell_size[0] * z, self.cell_size[1] * z
        cells = np.empty((rows, h + GAP, cols, w + GAP, 3), np.uint8)
        cells[:] = BACKGROUND
        if self._images is None:
            cells[:, :h, :, :w] = EMPTY
        else:
            big = self._images.repeat(z, axis=1).repeat(z, axis=2)  # NEAREST zoom
            cells[:, :h, :, :w] = big.reshape(rows, cols, h, w, 3).transpose(0, 2, 1, 3, 4)
        body = cells.reshape(rows * (h + GAP), cols * (w + GAP), 3)
        height = GAP + body.shape[0]
        height += height % 2  # whole character rows
        canvas = np.empty((height, GAP + body.shape[1], 3), np.uint8)
        canvas[:] = BACKGROUND
        canvas[GAP:GAP + body.shape[0], GAP:] = body
        y0, x0 = self._cell_origin(self.cursor)
        colour = CURSOR_FOCUSED if self.has_focus else CURSOR_BLURRED
        canvas[y0 - 1, x0 - 1:x0 + w + 1] = colour
        canvas[y0 + h, x0 - 1:x0 + w + 1] = colour
        canvas[y0 - 1:y0 + h + 1, x0 - 1] = colour
        canvas[y0 - 1:y0 + h + 1, x0 + w] = colour
        self._canvas = canvas
        packed = _pack(canvas)
        self._pairs = ((packed[0::2] << 24) | packed[1::2]).tolist()
        self._strips.clear()
        size = Size(canvas.shape[1], canvas.shape[0] // 2)
        if size != self.virtual_size:
            self.virtual_size = size
        self.refresh()

    def _padding(self) -> tuple[int, int]:
        """Left/top offsets that centre a canvas smaller than the view."""
        view = self.scrollable_content_region.size
        width, height = self.virtual_size
        return max(0, (view.width - width) // 2), max(0, (view.height - height) // 2)

    def _scroll_to_cursor(self) -> None:
        if not self.is_mounted:
            return
        h, w = (d * self.zoom for d in self.cell_size)
        y0, x0 = self._cell_origin(self.cursor)
        top = (y0 - 1) // 2
        self.scroll_to_region(Region(x0 - 1, top, w + 2, (y0 + h) // 2 - top + 1), animate=False)

    # -- line API --------------------------------------------------------------------------------
    def render_line(self, y: int) -> Strip:
        width = self.scrollable_content_region.width
        pad_x, pad_y = self._padding()
        scroll_x, scroll_y = self.scroll_offset
        line = y + scroll_y - pad_y
        if not 0 <= line < len(self._pairs):
            return Strip([Segment(" " * width, _rgb_style(BACKGROUND))], width)
        start = scroll_x if pad_x == 0 else 0
        stop = min(self._canvas.shape[1], start + width - pad_x)
        key = (line, start, stop)
        strip = self._strips.get(key)
        if strip is None:
            strip = self._strips[key] = self._line(line, start, stop)
        if pad_x:
            left = Segment(" " * pad_x, _rgb_style(BACKGROUND))
            strip = Strip([left, *strip], strip.cell_length + pad_x)
        return strip.extend_cell_length(width, _rgb_style(BACKGROUND))

    def _line(self, line: int, start: int, stop: int) -> Strip:
        """Columns ``start:stop`` of character row ``line`` as half-block segments."""
        row = self._pairs[line]
        segments: list[Segment] = []
        first, current = start, row[start]
        for x in range(start + 1, stop + 1):  # run-length merge equal cells into one segment
            pair = row[x] if x < stop else -1
            if pair != current:
                segments.append(Segment(HALF * (x - first), _style(current)))
                first, current = x, pair
        return Strip(segments, stop - start)

    # -- input -------------------------------------------------------------------------------------
    def action_move(self, dx: int, dy: int) -> None:
        row, col = divmod(self.cursor, self.cols)
        row = max(0, min(self.rows - 1, row + dy))
        col = max(0, min(self.cols - 1, col + dx))
        self.cursor = row * self.cols + col

    def cell_at(self, x: int, y: int) -> int | None:
        """The cell index under character cell (x, y) of the widget, or None outside the sprites."""
        pad_x, pad_y = self._padding()
        scroll_x, scroll_y = self.scroll_offset
        px, py = x - pad_x + scroll_x, 2 * (y - pad_y + scroll_y) + 1
        h, w = (d * self.zoom for d in self.cell_size)
        if px < GAP or py < GAP:
            return None
        col, row = (px - GAP) // (w + GAP), (py - GAP) // (h + GAP)
        if not (0 <= row < self.rows and 0 <= col < self.cols):
            return None
        return row * self.cols + col

    def on_click(self, event: events.Click) -> None:
        index = self.cell_at(event.x, event.y)
        if index is not None:
            self.focus()
            self.cursor = index
