"""Feature maps as pictures: one labelled montage per layer, as PNG bytes.

Every channel of a layer shares one colour scale (cnncli.views.colors, the scale of the tables
and heatmaps too), so channels compare at a glance: sequential dark-to-bright when no value is
negative, blue-white-red about 0 otherwise; NaN grey, infinities at the ends.

Only NumPy is imported with this module; Pillow is imported when a picture is drawn, so ``cnn``
starts no slower. Nothing here prints or imports Typer or Rich.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

from .colors import color_table, colorize, scale_bounds, value_range
from .steps import Picture, input_picture, with_class_labels

if TYPE_CHECKING:
    from PIL import Image

    from ..engine.graph import Step

BACKGROUND = (255, 255, 255)
INK = (0, 0, 0)
FRAME = (190, 190, 190)

MAX_SIDE = 4096  # pixels: no montage is wider or taller
TILE_TARGET = 192  # pixels: the side a small map (5x5, 8x8) is blown up to, by a whole factor
MONTAGE_PIXELS = 300_000  # ... with fewer pixels a tile when many channels would pass this in all
MIN_TILE_TARGET = 64
MARGIN = 16
GAP = 10  # between tiles
BAR_WIDTH, BAR_HEIGHT = 256, 14
FONT_SIZE, TITLE_SIZE = 13, 16
VECTOR_CELL = 48  # pixels: the side of one unit's cell in a strip
VECTOR_LABELLED = 20  # up to this many values (a classifier's classes) are one labelled strip; more wrap into rows


def area_resize(plane: np.ndarray, height: int, width: int) -> np.ndarray:
    """Shrink an (H, W) plane to (height, width) <= (H, W): each cell the mean of the block it covers.

    Blocks split the rows and columns as evenly as whole pixels allow (H // height or one more).
    Sums run in float64; NaN spreads to its block, which then shows as NaN.
    """
    rows, cols = plane.shape
    if not (0 < height <= rows and 0 < width <= cols):
        raise ValueError(f"cannot shrink {rows}x{cols} to {height}x{width}")
    row_starts = np.arange(height) * rows // height  # (height,) first row of each block
    col_starts = np.arange(width) * cols // width  # (width,)
    with np.errstate(invalid="ignore", over="ignore"):
        sums = np.add.reduceat(plane, col_starts, axis=1, dtype=np.float64)  # (H, width)
        sums = np.add.reduceat(sums, row_starts, axis=0)  # (height, width)
        counts = np.diff(row_starts, append=rows)[:, None] * np.diff(col_starts, append=cols)[None, :]
        return sums / counts


def group_means(values: np.ndarray, groups: int) -> np.ndarray:
    """A vector shrunk to ``groups`` cells, each the mean of a run of consecutive values."""
    return area_resize(np.asarray(values).reshape(1, -1), 1, groups)[0]


# --- drawing -------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def _font(size: int):
    """Pillow's built-in font (Aileron) at ``size``; the bitmap font where Pillow has no FreeType."""
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size)
    except (ImportError, OSError, TypeError):
        return ImageFont.load_default()


def _line_height(font) -> int:
    return int(font.getbbox("Hg|0")[3]) + 3


def printable(text: str) -> str:
    """Printable ASCII only: the built-in font has no other glyphs, and a newline would break a label."""
    return "".join(ch if " " <= ch <= "~" else "?" for ch in str(text))


def fit_text(text: str, font, width: float) -> str:
    """``text``, or its longest start ending in ".." that fits ``width`` pixels, or "" if not even that."""
    if font.getlength(text) <= width:
        return text
    low, high = 0, len(text)  # the longest prefix that fits, by bisection
    while low < high:
        mid = (low + high + 1) // 2
        if font.getlength(text[:mid] + "..") <= width:
            low = mid
        else:
            high = mid - 1
    return text[:low] + ".." if low else ""


def _fmt(value: float) -> str:
    return f"{value:.4g}"


def _short_number(value: float, font, width: float) -> str:
    """``value`` with as many significant digits (3 to 1) as fit ``width`` pixels."""
    for spec in (".3g", ".2g", ".1g", ".0e"):
        text = f"{value:{spec}}"
        if font.getlength(text) <= width:
            return text
    return text


class Layout:
    """Text lines of a montage: measured before the canvas exists, drawn after."""

    def __init__(self) -> None:
        self.font, self.title_font = _font(FONT_SIZE), _font(TITLE_SIZE)
        self.line, self.title_line = _line_height(self.font), _line_height(self.title_font)


def shape_text(shape: Sequence[int]) -> str:
    """A shape as the views write it: "16x8x8"."""
    return "x".join(str(size) for size in shape)


def step_head(step: Step, graph: bool = False) -> str:
    """A step's name, with its type when that differs, and with ``graph`` the names it read:
    "conv1 (conv2d)", "add (reads conv2, relu1)", "gate (globalavgpool2d, reads add)"."""
    notes = [step.type] if step.name != step.type else []
    if graph and step.inputs:
        notes.append("reads " + ", ".join(step.inputs))
    return f"{step.name} ({', '.join(notes)})" if notes else step.name


def as_maps(output: np.ndarray) -> np.ndarray:
    """A layer's output as what pictures draw: a vector (N,) stays one; a map becomes (C, H, W)."""
    output = np.asarray(output)
    if output.ndim == 0:
        return output.reshape(1)
    if output.ndim == 2:
        return output[None]  # (1, H, W)
    if output.ndim > 3:
        return output.reshape(-1, *output.shape[-2:])  # (C, H, W)
    return output


def layer_montage(output: np.ndarray, labels: Sequence[str] = (), title: str = "",
                  picture: Picture | None = None) -> Image.Image:
    """One layer's output as a labelled RGB picture on a white ground.

    Parameters
    ----------
    output : (C, H, W) map, (H, W) plane or (N,) vector
    labels : a name per channel (per unit for a vector), shown after its index: "0 sobel_x"
    title : drawn at the top; a newline starts a second line
    picture : for an input image (``input_picture``): drawn as the picture it is, one gray or
        colour tile with a gray bar (gray) or none (RGB); or, when it cannot be, on the heat
        scale with the reason written under it

    A map gives a grid of every channel, ceil(sqrt(C)) columns, each tile blown up by a whole
    factor to about ``TILE_TARGET`` pixels (NEAREST), or averaged down to fit; a vector gives a
    strip of cells, wrapped into rows when long. One colour scale for the whole layer, drawn as a
    bar with its ends (and 0 when diverging) and the values' actual min and max. The picture is at
    most ``MAX_SIDE`` pixels each way.
    """
    from PIL import Image, ImageDraw

    output = as_maps(output)
    low, high, diverging = value_range(output)
    as_picture = picture is not None and picture.top is not None
    lay = Layout()
    titles = [printable(line) for line in str(title).split("\n") if line.strip()]
    header = len(titles) * lay.title_line + (6 if titles else 0)
    bar = not (as_picture and picture is not None and picture.kind == "RGB")  # a colour picture has no scale
    footer = (8 + BAR_HEIGHT + 4 + lay.line if bar else 8) + lay.line
    # The body's own one-pixel border (for the tiles' frames) comes out of the budget too.
    body_budget = (MAX_SIDE - 2 * MARGIN - 2, MAX_SIDE - 2 * MARGIN - header - footer - 2)
    if as_picture:
        assert picture is not None
        body, draw_labels, note = _picture_body(output, picture, body_budget)
    elif output.ndim == 1:
        body, draw_labels, note = _vector_body(output, labels, low, high, diverging, lay, body_budget)
    else:
        body, draw_labels, note = _grid_body(output, labels, low, high, diverging, lay, body_budget)
    info = [f"values {_fmt(low)} .. {_fmt(high)}" if output.size else "no values", note,
            picture.note if picture is not None else "", *_nonfinite_notes(output)]
    info_text = "; ".join(part for part in info if part)
    text_width = max([lay.title_font.getlength(t) for t in titles] + [lay.font.getlength(info_text)])
    width = int(min(MAX_SIDE, max(body.shape[1], BAR_WIDTH, 320, math.ceil(text_width)) + 2 * MARGIN))
    height = MARGIN + header + body.shape[0] + footer + MARGIN
    canvas = np.empty((height, width, 3), dtype=np.uint8)
    canvas[:] = BACKGROUND
    top = MARGIN + header
    canvas[top:top + body.shape[0], MARGIN:MARGIN + body.shape[1]] = body
    bar_top = top + body.shape[0] + 8
    if bar:
        paste_bar(canvas, bar_top, MARGIN, diverging, GRAY_RAMP if as_picture else None)

    image = Image.fromarray(canvas, "RGB")
    draw = ImageDraw.Draw(image)
    inner = width - 2 * MARGIN
    for i, line in enumerate(titles):
        draw.text((MARGIN, MARGIN + i * lay.title_line), fit_text(line, lay.title_font, inner), fill=INK,
                  font=lay.title_font)
    for x, y, text in draw_labels:
        draw.text((MARGIN + x, top + y), text, fill=INK, font=lay.font)
    info_y = bar_top
    if bar:
        lo_end, hi_end = (0.0, picture.top) if as_picture and picture is not None and picture.top is not None \
            else scale_bounds(low, high, diverging)
        ticks_y = bar_top + BAR_HEIGHT + 3
        ticks = [(_fmt(lo_end), 0.0), (_fmt(hi_end), 1.0)] + ([("0", 0.5)] if diverging and not as_picture else [])
        for text, at in ticks:
            length = lay.font.getlength(text)
            x = MARGIN + at * BAR_WIDTH - length * at  # left end left-aligned, right end right-aligned
            draw.text((x, ticks_y), text, fill=INK, font=lay.font)
        info_y = ticks_y + lay.line
    draw.text((MARGIN, info_y), fit_text(info_text, lay.font, inner), fill=INK, font=lay.font)
    return image


GRAY_RAMP = np.repeat(np.arange(256, dtype=np.uint8)[:, None], 3, axis=1)  # (256, 3) black to white


def _picture_body(output: np.ndarray, picture: Picture, budget: tuple[int, int]):
    """An input image as one tile, as it looks: gray or colour, blown up by a whole factor toward
    ``TILE_TARGET`` (NEAREST) or averaged down to fit, framed."""
    channels, rows, cols = output.shape
    height, width, factor = _tile_size(rows, cols, budget[1], budget[0], TILE_TARGET)
    if factor:
        rgb = picture.rgb(output)  # (H, W, 3)
        tile = np.repeat(np.repeat(rgb, factor, axis=0), factor, axis=1)  # (H*f, W*f, 3)
    else:
        tile = picture.rgb(np.stack([area_resize(plane, height, width) for plane in output]))  # (height, width, 3)
    body = np.empty((height + 2, width + 2, 3), dtype=np.uint8)
    body[:] = BACKGROUND
    body[1:-1, 1:-1] = tile
    _frame(body, 1, 1, height, width)
    size = f"{rows}x{cols}"
    note = (f"{size}, each pixel drawn {factor}x{factor}" if factor > 1 else
            f"{size} averaged down to {height}x{width}" if factor == 0 else size)
    return body, [], note


def _nonfinite_notes(output: np.ndarray) -> list[str]:
    if output.size == 0 or np.isfinite(output.min()) and np.isfinite(output.max()):
        return []
    nan = int(np.count_nonzero(np.isnan(output)))
    inf = int(np.count_nonzero(np.isinf(output)))
    return [f"{nan:,} NaN (grey)" if nan else "", f"{inf:,} infinite (at the ends)" if inf else ""]


def paste_bar(canvas: np.ndarray, top: int, left: int, diverging: bool, table: np.ndarray | None = None) -> None:
    """The colour scale (or ``table``'s 256 colours), low to high, framed, at (top, left)."""
    entries = np.arange(BAR_WIDTH) * 256 // BAR_WIDTH  # (BAR_WIDTH,)
    colours = color_table(diverging) if table is None else table
    canvas[top:top + BAR_HEIGHT, left:left + BAR_WIDTH] = colours[entries][None]
    _frame(canvas, top, left, BAR_HEIGHT, BAR_WIDTH)


def _frame(canvas: np.ndarray, top: int, left: int, height: int, width: int) -> None:
    """A one-pixel grey line just outside the box, where it is inside the canvas: a white tile
    (zero on a diverging scale) must not melt into the white ground."""
    y0, y1 = max(top - 1, 0), min(top + height, canvas.shape[0] - 1)
    x0, x1 = max(left - 1, 0), min(left + width, canvas.shape[1] - 1)
    canvas[y0, x0:x1 + 1] = FRAME
    canvas[y1, x0:x1 + 1] = FRAME
    canvas[y0:y1 + 1, x0] = FRAME
    canvas[y0:y1 + 1, x1] = FRAME


def _tile(plane: np.ndarray, size: tuple[int, int], factor: int, low: float, high: float,
          diverging: bool) -> np.ndarray:
    """A plane coloured at ``size`` (height, width): averaged down to it, or blown up by ``factor``."""
    if factor:
        rgb = colorize(plane, low, high, diverging)  # (H, W, 3)
        return np.repeat(np.repeat(rgb, factor, axis=0), factor, axis=1)  # (H*f, W*f, 3)
    return colorize(area_resize(plane, *size), low, high, diverging)  # (height, width, 3)


def _tile_size(rows: int, cols: int, max_height: int, max_width: int, target: int) -> tuple[int, int, int]:
    """(height, width, factor) of a rows x cols map blown up by a whole factor toward ``target``
    pixels within the bounds; factor 0 means averaged down to (height, width) instead."""
    factor = min(max(1, target // max(rows, cols)), max_height // rows, max_width // cols)
    if factor >= 1:
        return rows * factor, cols * factor, factor
    scale = min(max_height / rows, max_width / cols)
    return max(1, min(rows, math.floor(rows * scale))), max(1, min(cols, math.floor(cols * scale))), 0


def _grid_body(output: np.ndarray, labels: Sequence[str], low: float, high: float, diverging: bool,
               lay: Layout, budget: tuple[int, int]):
    """Every channel of a (C, H, W) map as a grid of tiles, each under its index and label."""
    channels, rows, cols = output.shape
    grid_cols = math.ceil(math.sqrt(channels))
    grid_rows = math.ceil(channels / grid_cols)
    gap = GAP if channels > 1 else 0
    label = lay.line
    max_w = (budget[0] + gap) // grid_cols - gap
    max_h = (budget[1] + gap) // grid_rows - gap - label
    if max_h < 2 * label or max_w < 2 * label:  # thousands of channels: tiles before labels
        gap, label = min(gap, 2), 0
        max_w = max(1, (budget[0] + gap) // grid_cols - gap)
        max_h = max(1, (budget[1] + gap) // grid_rows - gap)
    # Many channels get smaller tiles: a montage of about MONTAGE_PIXELS draws and encodes in tens
    # of milliseconds, where 64 tiles of 192 px took a quarter of a second.
    target = int(min(TILE_TARGET, max(MIN_TILE_TARGET, math.sqrt(MONTAGE_PIXELS / channels))))
    height, width, factor = _tile_size(rows, cols, max_h, max_w, target)
    cell_w, cell_h = width + gap, label + height + gap
    # One pixel of ground around the grid, for the frames of the tiles at its edges.
    body = np.empty((grid_rows * cell_h - gap + 2, grid_cols * cell_w - gap + 2, 3), dtype=np.uint8)
    body[:] = BACKGROUND
    texts = []
    for c in range(channels):
        y, x = 1 + (c // grid_cols) * cell_h, 1 + (c % grid_cols) * cell_w
        body[y + label:y + label + height, x:x + width] = _tile(output[c], (height, width), factor, low, high,
                                                                diverging)
        if gap:
            _frame(body, y + label, x, height, width)
        if label:
            name = printable(labels[c]) if c < len(labels) else ""
            text = fit_text(f"{c} {name}".rstrip(), lay.font, width + gap - 2)
            if text:
                texts.append((x, y, text))
    if factor > 1:
        note = f"{channels} x {rows}x{cols}, each pixel drawn {factor}x{factor}"
    elif factor == 0:
        note = f"{channels} x {rows}x{cols}, averaged down to {height}x{width}"
    else:
        note = f"{channels} x {rows}x{cols}"
    return body, texts, note + ", one colour scale"


def _vector_body(values: np.ndarray, labels: Sequence[str], low: float, high: float, diverging: bool,
                 lay: Layout, budget: tuple[int, int]):
    """A (N,) vector as a strip of cells: one row with index, label and value under each cell when
    short (VECTOR_LABELLED), else rows of cells with the first index of each row on the left."""
    count = values.size
    if count == 0:
        return np.empty((0, 0, 3), dtype=np.uint8), [], ""
    if count <= VECTOR_LABELLED:
        text_lines = 2 + bool(labels)
        cell = max(1, min(VECTOR_CELL, budget[0] // count))
        strip = colorize(values[None], low, high, diverging)  # (1, N, 3)
        strip = np.repeat(np.repeat(strip, cell, axis=0), cell, axis=1)  # (cell, N*cell, 3)
        if cell >= 8:  # a light line between cells, so equal neighbours stay countable
            strip[:, cell - 1:-1:cell] = FRAME
        body = np.empty((cell + 6 + text_lines * lay.line, strip.shape[1] + 2, 3), dtype=np.uint8)
        body[:] = BACKGROUND
        body[1:cell + 1, 1:-1] = strip
        _frame(body, 1, 1, cell, strip.shape[1])
        texts = []
        for i in range(count):
            parts = [str(i)] + ([printable(labels[i]) if i < len(labels) else ""] if labels else []) \
                + [_short_number(float(values[i]), lay.font, cell - 6)]
            for line, part in enumerate(parts):
                text = fit_text(part, lay.font, cell - 6)
                if text:
                    texts.append((i * cell + 2, cell + 6 + line * lay.line, text))
        return body, texts, f"{count} values"
    index_width = math.ceil(lay.font.getlength(str(count - 1))) + 6
    per_row = 10 * math.ceil(math.sqrt(count) / 10)
    cells = count
    limit = (budget[0] - index_width) * budget[1]
    if count > limit:  # more values than pixels: each cell averages a run of them
        cells = limit
        per_row = budget[0] - index_width
    rows = math.ceil(cells / per_row)
    cell = max(1, min(VECTOR_CELL // 2, (budget[0] - index_width) // per_row, budget[1] // rows))
    shown = group_means(values, cells) if cells < count else values
    padded = np.concatenate([shown, np.zeros(rows * per_row - cells, shown.dtype)])  # (rows * per_row,)
    padded = padded.reshape(rows, per_row)  # (rows, per_row)
    rgb = colorize(padded, low, high, diverging)
    rgb.reshape(-1, 3)[cells:] = BACKGROUND  # the unused end of the last row
    body = np.empty((rows * cell + 2, index_width + per_row * cell + 1, 3), dtype=np.uint8)
    body[:] = BACKGROUND
    body[1:-1, index_width:-1] = np.repeat(np.repeat(rgb, cell, axis=0), cell, axis=1)  # (rows*cell, per_row*cell, 3)
    _frame(body, 1, index_width, rows * cell, per_row * cell)
    step = max(1, math.ceil(lay.line / cell))  # label every row that leaves room for its text
    per_cell = count / cells
    texts = []
    for r in range(0, rows, step):
        text = str(int(r * per_row * per_cell))
        texts.append((index_width - 4 - int(lay.font.getlength(text)), 1 + r * cell, text))
    note = f"{count:,} values in rows of {per_row}"
    if cells < count:
        note = f"{count:,} values, each cell the mean of about {per_cell:.3g}, in rows of {per_row}"
    return body, texts, note


def step_caption(step: Step, graph: bool = False) -> str:
    """A picture's title: "layer 1: conv1 (conv2d) -> 1x3x3" and, on a second line, the layer's settings.

    With ``graph`` (a network that is not a chain) it names what the step read:
    "layer 4: add (reads conv2, relu1) -> 2x8x8".
    """
    shape = shape_text(step.output.shape)
    head = f"layer {step.index}: {step_head(step, graph)}"
    describe = step.layer.describe() if step.layer is not None else ""
    return f"{head} -> {shape}" + (f"\n{describe}" if describe else "")


def step_picture(step: Step, graph: bool = False) -> Image.Image:
    """The montage of one step of a forward pass (``layer_montage``), titled by ``step_caption``.

    This is the picture ``cnn inspect --save`` writes per layer and ``cnn run -o x.png`` writes for
    the final layer.
    """
    return layer_montage(step.output, step.labels, step_caption(step, graph), input_picture(step))


PNG_COMPRESS_LEVEL = 3  # zlib level: maps blown up by whole factors compress well even so, and fast


def png_bytes(image: Image.Image) -> bytes:
    """``image`` encoded as PNG."""
    import io

    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    return buffer.getvalue()


def step_pngs(steps: Sequence[Step], class_labels: Sequence[str] = ()) -> Callable[[Step], bytes]:
    """A step's picture as PNG bytes, captioned as among ``steps`` (naming what it read when they are
    not a chain), its class scores named by ``class_labels`` (``with_class_labels``): what
    ``cnn inspect --save`` passes to io.saving.save_inspection."""
    from ..engine.graph import is_chain

    graph = not is_chain(steps)
    labelled = {step.name: step for step in with_class_labels(steps, class_labels)}
    return lambda step: png_bytes(step_picture(labelled.get(step.name, step), graph))


def save_png(path: str | Path, image: Image.Image, force: bool = False) -> None:
    """Write ``image`` as a PNG file, atomically (``io.saving.save_png``).

    The name must end in .png (a device or FIFO is written as it is). An existing file is replaced
    only with ``force``. Raises OutputError.
    """
    from ..io.saving import save_png as save_bytes

    save_bytes(path, png_bytes(image), force)
