"""Feature maps drawn in the terminal as coloured half blocks: whole maps, at terminal width.

Each text cell is an upper half block, its foreground the colour of the map pixel above and its
background the colour of the pixel below, so a line shows two rows of the map and, a cell being
about twice as tall as wide, a pixel comes out about square. A map wider than the terminal (or
taller than ``MAX_LINES`` lines) is averaged down to fit; a tiny one is blown up by a whole
factor. The colours are those of the tables and PNG pictures (cnncli.views.colors), on one scale per layer.
Without colour (a pipe, NO_COLOR) each cell is a character of a shade ramp instead, so the
output stays readable with no escape codes. Never prints, never exits.
"""

from __future__ import annotations

import math
import os
from typing import Sequence

import numpy as np
from rich.color import Color
from rich.console import Group, RenderableType
from rich.style import Style
from rich.text import Span, Text

from . import colors, pictures, steps
from ..engine.graph import Step
from .tables import step_title

UPPER_HALF = "\u2580"
SHADES = " .:-=+*#%@"  # low to high, for output without colour
NAN_SHADE = "?"
MAX_LINES = 60  # text lines per map: a big map fits one screen
TINY_COLUMNS = 48  # how wide a tiny map (5x5) alone is blown up to
TINY_COLUMNS_BESIDE = 24  # the same for maps shown side by side (a layer of several channels)
MAX_CHANNELS = 16  # shown unless full
GAP = 2  # columns between maps side by side
VECTOR_CELL = 6  # columns per unit at most, for a short vector
BAR_CELLS = 24


def heatmap_view(step: Step, width: int, color_system: str | None, full: bool = False, graph: bool = False
                 ) -> RenderableType:
    """A step's output as heatmaps: each channel of a (C, H, W) map, or a vector as one row of cells.

    Parameters
    ----------
    step : a step of a forward pass; its output is (C, H, W) or (N,)
    width : columns available (the console's width)
    color_system : the console's, e.g. "truecolor" or "256"; None draws with the shade ramp instead
    full : every channel; else the first ``MAX_CHANNELS`` and a note
    graph : name what the step read in its title (a network that is not a chain)

    Channels share one colour scale (as in the pictures), drawn once with its ends; maps that fit
    go side by side.
    """
    width = max(int(width), 8)
    output = pictures.as_maps(step.output)
    low, high, diverging = colors.value_range(output)
    color, eight_bit = color_system is not None, color_system == "256"
    parts: list[RenderableType] = [Text(step_title(step, graph), style="bold", no_wrap=True, overflow="ellipsis")]
    picture = steps.input_picture(step)
    if picture is not None and picture.top is not None:  # an input image: drawn as it looks, not on a heat scale
        lines, note = _picture(output, picture, width, color)
        return Group(*parts, *lines, *_picture_scale(picture, low, high, color, width, note))
    if output.ndim == 1:
        parts += _vector(output, step.labels, width, low, high, diverging, color, eight_bit)
        note = f"{output.size} values" + (f", averaged into {width} cells" if output.size > width else "")
    else:
        maps, note = _maps(output, step.labels, width, full, low, high, diverging, color, eight_bit)
        parts += maps
    parts += _scale(low, high, diverging, color, width, note, eight_bit)
    if picture is not None:  # an input that is not a picture's values any more: say why it is drawn so
        parts.append(_note_line(picture.note, width))
    return Group(*parts)


def _note_line(text: str, width: int) -> Text:
    line = Text(text, style="dim", no_wrap=True, overflow="ellipsis")
    line.truncate(width, overflow="ellipsis")
    return line


def _picture(output: np.ndarray, picture: steps.Picture, width: int, color: bool) -> tuple[list[Text], str]:
    """An input image (C, H, W) as one drawing in its own colours (or gray), sized as a map is."""
    _, rows, cols = output.shape
    height, columns, factor = fit(rows, cols, width, MAX_LINES, TINY_COLUMNS)
    if factor:
        rgb = picture.rgb(output)  # (H, W, 3)
        rgb = np.repeat(np.repeat(rgb, factor, axis=0), factor, axis=1)  # (H*f, W*f, 3)
    else:
        rgb = picture.rgb(np.stack([pictures.area_resize(plane, height, columns) for plane in output]))
    return draw_rgb(rgb, color, blend=factor <= 1), _scale_note(rows, cols, height, columns, factor)


def draw_rgb(rgb: np.ndarray, color: bool, blend: bool = True) -> list[Text]:
    """An (H, W, 3) uint8 picture as lines of half blocks in its own colours, two rows a line;
    without colour, each cell a shade for the lightness (luma) of its pixels (``draw_indices``)."""
    luma = np.round(rgb.astype(np.float64) @ [0.299, 0.587, 0.114]).astype(np.int32)  # (H, W) 0..255
    if not color:
        return draw_indices(luma, False, False, blend=blend)
    packed = (rgb[..., 0].astype(np.int64) << 16) | (rgb[..., 1].astype(np.int64) << 8) | rgb[..., 2]  # (H, W)
    if packed.shape[0] % 2:  # an odd last row has nothing beneath it
        packed = np.concatenate([packed, np.full((1, packed.shape[1]), -1, np.int64)])  # (H+1, W)
    upper, lower = packed[0::2], packed[1::2]  # (lines, W) each
    codes = upper * (1 << 25) + (lower + 1)  # one number per pair of colours
    lines = []
    for line, tops, bottoms in zip(codes, upper, lower):
        starts = np.flatnonzero(np.diff(line)) + 1  # where the pair of colours changes: draw runs, not cells
        bounds = [0, *starts.tolist(), line.size]
        spans = []
        for begin, end in zip(bounds[:-1], bounds[1:]):
            top, bottom = int(tops[begin]), int(bottoms[begin])
            style = Style(color=_unpacked(top), bgcolor=None if bottom < 0 else _unpacked(bottom))
            spans.append(Span(begin, end, style))
        lines.append(Text(UPPER_HALF * line.size, spans=spans, no_wrap=True))
    return lines


def _unpacked(rgb: int) -> Color:
    return Color.from_rgb(rgb >> 16, (rgb >> 8) & 255, rgb & 255)


def _picture_scale(picture: steps.Picture, low: float, high: float, color: bool, width: int,
                   note: str) -> list[Text]:
    """Under a picture: a gray one's ramp from black to white with its ends, and what was drawn how."""
    lines = []
    if picture.kind == "gray":
        line = Text("0 ", no_wrap=True, overflow="ellipsis")
        if color:
            for entry in np.arange(BAR_CELLS) * 256 // BAR_CELLS:
                line.append(" ", style=Style(bgcolor=Color.from_rgb(int(entry), int(entry), int(entry))))
        else:
            line.append(f"[{SHADES}]")
        line.append(f" {picture.top:g}")
        line.truncate(width, overflow="ellipsis")
        lines.append(line)
    return [*lines, _note_line(f"values {low:.4g} .. {high:.4g}; {note}", width), _note_line(picture.note, width)]


def _maps(output: np.ndarray, labels: Sequence[str], width: int, full: bool, low: float, high: float,
          diverging: bool, color: bool, eight_bit: bool = False) -> tuple[list[RenderableType], str]:
    channels, rows, cols = output.shape
    shown = channels if full else min(channels, MAX_CHANNELS)
    tiny = TINY_COLUMNS if channels == 1 else TINY_COLUMNS_BESIDE
    height, columns, factor = fit(rows, cols, width, MAX_LINES, tiny)
    block = max(columns, min(width, 12))  # room for a short title above a narrow map
    per_row = max(1, (width + GAP) // (block + GAP))
    blocks = []
    names = _distinct_names(labels[:shown], block - len(f"channel {shown - 1}: "))
    for c in range(shown):
        name = names[c] if c < len(names) else ""
        heading = f"channel {c}: {name}" if name else f"channel {c}"
        title = Text(heading, style="bold", no_wrap=True)
        title.truncate(block, overflow="ellipsis")
        pixels = _pixels(output[c], height, columns, factor)
        blocks.append([title, *draw(pixels, low, high, diverging, color, factor, eight_bit)])
    parts: list[RenderableType] = []
    for start in range(0, len(blocks), per_row):
        row = blocks[start:start + per_row]
        parts += row[0] if len(row) == 1 else beside(row, [block] * len(row))
    if shown < channels:
        parts.append(Text(f"... {channels - shown} more channels not shown; --full shows all", style="dim"))
    return parts, _scale_note(rows, cols, height, columns, factor)


def _distinct_names(labels: Sequence[str], room: int) -> list[str]:
    """Channel names that fit in ``room`` characters keep what tells them apart: when they are too
    long and share a beginning (gabor:theta=0, gabor:theta=45), that beginning becomes "…"."""
    names = list(labels)
    longest = max(map(len, names), default=0)
    cut = min(len(os.path.commonprefix(names)), longest - room + 1)  # enough of the shared beginning to fit
    if len(set(names)) < 2 or longest <= room or cut < 1:
        return names
    return ["…" + name[cut:] for name in names]


def _scale_note(rows: int, cols: int, height: int, columns: int, factor: int) -> str:
    """What drawing a rows x cols map at ``fit``'s (height, columns, factor) did to it, in words."""
    if factor > 1:
        return f"{rows}x{cols}, each cell {factor} pixels wide"
    if factor == 0:
        return f"{rows}x{cols} averaged down to {height}x{columns}"
    return f"{rows}x{cols}, one cell a pixel wide"


def fit(rows: int, cols: int, width: int, max_lines: int = MAX_LINES, tiny: int = TINY_COLUMNS) -> tuple[int, int, int]:
    """(pixel rows, columns, factor) to draw a rows x cols map in: blown up by a whole factor (at
    most ``tiny`` columns) when it fits, else averaged down (factor 0) to at most ``width`` columns
    and ``max_lines`` lines, keeping the aspect ratio. Two pixel rows make one line."""
    max_rows = 2 * max_lines
    if cols <= width and rows <= max_rows:
        factor = max(1, min(tiny // cols, width // cols, max_rows // rows))
        return rows * factor, cols * factor, factor
    scale = min(width / cols, max_rows / rows)
    return max(1, min(rows, math.floor(rows * scale))), max(1, min(cols, math.floor(cols * scale))), 0


def _pixels(plane: np.ndarray, height: int, columns: int, factor: int) -> np.ndarray:
    """The plane at the size it is drawn: blown up by ``factor`` (later, as colour indices), or averaged down."""
    return plane if factor else pictures.area_resize(plane, height, columns)


def draw(plane: np.ndarray, low: float, high: float, diverging: bool, color: bool, factor: int = 0,
         eight_bit: bool = False) -> list[Text]:
    """An (H, W) plane, one character per column and two rows per line, on the layer's scale.

    ``factor`` > 1 repeats every pixel that many times each way (a tiny map blown up); ``eight_bit``
    takes a 256-colour terminal's colours (``colors.xterm_indices``).
    """
    index = colors.color_indices(plane, low, high, diverging)  # (H, W), -1 for NaN
    if factor > 1:
        index = np.repeat(np.repeat(index, factor, axis=0), factor, axis=1)  # (H*f, W*f)
    return draw_indices(index, diverging, color, blend=factor <= 1, eight_bit=eight_bit)


def draw_indices(index: np.ndarray, diverging: bool, color: bool, blend: bool = True,
                 eight_bit: bool = False) -> list[Text]:
    """Colour-table indices (``colors.color_indices``) of an (H, W) plane as lines of half blocks.

    Without colour a line's character shows the mean of its two rows (``blend``), or the upper
    row alone: for a map blown up by an odd factor, whose rows do not fall on line boundaries, a
    mean would draw a row of in-between shades that is not in the map.
    """
    if index.shape[0] % 2:  # an odd last row has nothing beneath it
        index = np.concatenate([index, np.full((1, index.shape[1]), -2, index.dtype)])  # (H+1, W)
    upper, lower = index[0::2], index[1::2]  # (lines, W) each
    if not color:
        return _shade_lines(upper, lower if blend else upper)
    if eight_bit:
        palette = [Color.from_ansi(number) for number in colors.xterm_indices(diverging)]  # -1: NaN's grey
    else:
        palette = [Color.from_rgb(*rgb) for rgb in colors.color_table(diverging).tolist()]  # -1: NaN's grey
    styles: dict[int, Style] = {}
    codes = (upper.astype(np.int32) + 2) * 512 + (lower + 2)  # one number per pair of colours
    lines = []
    for line in codes:
        starts = np.flatnonzero(np.diff(line)) + 1  # where the colour pair changes: draw runs, not cells
        bounds = [0, *starts.tolist(), line.size]
        spans = []
        for begin, end in zip(bounds[:-1], bounds[1:]):
            code = int(line[begin])
            style = styles.get(code)
            if style is None:
                top, bottom = code // 512 - 2, code % 512 - 2
                style = styles[code] = Style(color=palette[top], bgcolor=None if bottom == -2 else palette[bottom])
            spans.append(Span(begin, end, style))
        lines.append(Text(UPPER_HALF * line.size, spans=spans, no_wrap=True))
    return lines


def _shade_lines(upper: np.ndarray, lower: np.ndarray) -> list[Text]:
    """Without colour: one shade character per cell for the mean of its two pixels."""
    nan = (upper == -1) | (lower == -1)
    both = np.where(lower == -2, upper, (upper.astype(np.int32) + lower) // 2)  # (lines, W) 0..255
    ramp = np.array(list(SHADES + NAN_SHADE))
    chars = ramp[np.where(nan, len(SHADES), both * len(SHADES) // 256)]  # (lines, W)
    return [Text("".join(row), no_wrap=True) for row in chars]


def beside(blocks: list[list[Text]], widths: list[int]) -> list[Text]:
    """Blocks of lines next to each other, each padded to its width, ``GAP`` columns apart."""
    height = max(len(block) for block in blocks)
    lines = []
    for i in range(height):
        line = Text(no_wrap=True)
        for j, (block, width) in enumerate(zip(blocks, widths)):
            part = block[i].copy() if i < len(block) else Text()
            part.truncate(width, pad=j < len(blocks) - 1)
            line.append_text(part)
            if j < len(blocks) - 1:
                line.append(" " * GAP)
        lines.append(line)
    return lines


def _vector(values: np.ndarray, labels: Sequence[str], width: int, low: float, high: float, diverging: bool,
            color: bool, eight_bit: bool = False) -> list[Text]:
    """A (N,) vector as one row of cells, with its indices (or labels) beneath when they fit."""
    count = values.size
    if count == 0:
        return [Text("(no values)", style="dim")]
    shown = pictures.group_means(values, width) if count > width else values  # (cells,)
    cell = max(1, min(VECTOR_CELL, width // shown.size))
    index = np.repeat(colors.color_indices(shown, low, high, diverging), cell)  # (cells * cell,)
    row = draw_indices(np.stack([index, index]), diverging, color, eight_bit=eight_bit)[0]  # both pixels alike
    names = [_one_line(labels[i]) if i < len(labels) and labels[i] else str(i) for i in range(count)]
    if count == shown.size and max(len(name) for name in names) < cell:
        beneath = "".join(name.ljust(cell) for name in names)  # every unit named under its cell
    elif index.size > len(str(count - 1)) + 1:
        beneath = "0" + str(count - 1).rjust(index.size - 1)  # the first and last index at the ends
    else:
        beneath = ""
    return [row, Text(beneath.rstrip(), style="dim", no_wrap=True)]


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _scale(low: float, high: float, diverging: bool, color: bool, width: int, note: str,
           eight_bit: bool = False) -> list[Text]:
    """The layer's colour scale on one line, its ends written beside it, and what was drawn how."""
    bottom, top = colors.scale_bounds(low, high, diverging)
    line = Text(f"{bottom:.4g} ", no_wrap=True, overflow="ellipsis")
    if color:
        table = colors.color_table(diverging)
        for entry in np.arange(BAR_CELLS) * 256 // BAR_CELLS:
            bar = (Color.from_ansi(colors.xterm_indices(diverging)[entry]) if eight_bit
                   else Color.from_rgb(*table[entry].tolist()))
            line.append(" ", style=Style(bgcolor=bar))
    else:
        line.append(f"[{SHADES}]")
    line.append(f" {top:.4g}")
    if diverging:
        line.append("  (0 is white)" if color else "  (0 in the middle)")
    caption = Text(f"values {low:.4g} .. {high:.4g}; {note}; one scale for the layer", style="dim", no_wrap=True,
                   overflow="ellipsis")
    line.truncate(width, overflow="ellipsis")
    caption.truncate(width, overflow="ellipsis")
    return [line, caption]
