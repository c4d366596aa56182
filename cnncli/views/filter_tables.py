"""A conv layer's filters in the terminal: numbers coloured by value when the kernels are few and
small, half-block heatmaps otherwise (cnncli.views.heatmap's drawing), on the layer's blue-white-red
scale symmetric about 0; a first RGB layer's filters as colour tiles. Never prints, never exits.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from rich.console import Group, RenderableType
from rich.text import Text

from .filters import Filters, rgb_tiles
from .heatmap import GAP, beside, draw, draw_rgb
from .tables import GRID_SIDE, heat_style, number_format

MAX_NUMBER_TILES = 64  # kernels written out as numbers at most; more are drawn
MAX_FILTER_ROWS = 32  # filters shown as rows of a filters x channels grid; the picture has them all
MAX_SQUARE_TILES = 128  # filters shown in a square grid (one tile each)


def filters_view(filters: Filters, model_name: str, width: int, color_system: str | None,
                 palette: str = "rgb", view: str = "auto") -> RenderableType:
    """The filters of one layer, titled, for a terminal ``width`` columns wide.

    ``view`` is "table" (numbers), "heatmap" (drawn) or "auto": numbers for at most
    ``MAX_NUMBER_TILES`` kernels of at most ``GRID_SIDE`` x ``GRID_SIDE`` when a filter's kernels fit
    the width side by side, and colour tiles for a layer drawn in RGB. ``palette`` colours the
    numbers as tables.step_view does; ``color_system`` None draws heatmaps in shade characters.
    """
    f, c, kh, kw = filters.bank.shape
    numbers = view == "table" or (view == "auto" and not filters.rgb and f * c <= MAX_NUMBER_TILES
                                  and max(kh, kw) <= GRID_SIDE and (c == 1 or _numbers_fit(filters, width)))
    title = Text(f"{filters.name} ({filters.layer.type}), layer #{filters.index} of {model_name}: "
                 f"{filters.describe()}", style="bold")
    how = Text(f"{filters.how() if not numbers or not filters.rgb else _rgb_numbers_how(filters)}\n"
               "cross-correlation: each kernel is applied as written, not flipped", style="dim")
    square = c == 1 or (filters.rgb and not numbers)
    color, eight_bit = color_system is not None, color_system == "256"
    tiles = _tiles(filters, numbers, color, eight_bit, palette)  # [filter][channel] -> lines
    if square:
        body, notes = _square(filters, [row[0] for row in tiles], width, numbers)
    else:
        names = ("R", "G", "B") if filters.rgb else tuple(f"in {j}" for j in range(c))
        body, notes = _rows(filters, tiles, names, width)
    return Group(title, how, *body, *(Text(note, style="dim") for note in notes))


def _numbers_fit(filters: Filters, width: int) -> bool:
    """Whether a filter's kernels, written out, fit side by side in ``width`` beside its label."""
    c, kw = filters.bank.shape[1], filters.bank.shape[3]
    fmt = number_format(filters.bank)
    cell = max(len(fmt(float(v))) for v in filters.bank.flat)
    label = max(len("filter"), max((len(_bias_text(filters, i)) for i in range(filters.bank.shape[0])), default=0))
    return label + c * (GAP + kw * (cell + 1) - 1) <= width


def _rgb_numbers_how(filters: Filters) -> str:
    reach = float(np.abs(filters.bank).max())
    return f"R, G, B planes: blue < 0 < red, symmetric: -{reach:.4g} .. {reach:.4g} (0 is white)"


def _tiles(filters: Filters, numbers: bool, color: bool, eight_bit: bool, palette: str
           ) -> list[list[list[Text]]]:
    """Every kernel as lines of text: numbers coloured by value, or half blocks (a colour tile per
    filter when the layer is drawn in RGB)."""
    bank = filters.bank
    f, c, kh, kw = bank.shape
    reach = float(np.abs(bank).max())
    if numbers:
        fmt = number_format(bank)  # one format for the layer
        cell = max(len(fmt(float(v))) for v in bank.flat)
        bounds = (-reach, reach)
        return [[_number_tile(bank[i, j], fmt, cell, bounds, palette) for j in range(c)] for i in range(f)]
    factor = max(1, 6 // max(kh, kw))  # a 3x3 kernel 6 columns wide, an 11x11 one 11
    if filters.rgb:
        colours = rgb_tiles(bank)  # (F, KH, KW, 3)
        return [[draw_rgb(np.repeat(np.repeat(colours[i], factor, axis=0), factor, axis=1), color, factor <= 1)]
                for i in range(f)]
    return [[draw(bank[i, j], -reach, reach, True, color, factor, eight_bit) for j in range(c)] for i in range(f)]


def _number_tile(kernel: np.ndarray, fmt, cell: int, bounds: tuple[float, float], palette: str) -> list[Text]:
    lines = []
    for row in kernel:
        line = Text(no_wrap=True)
        for k, value in enumerate(row.tolist()):
            if k:
                line.append(" ")
            line.append(fmt(value).rjust(cell), style=heat_style(value, bounds, True, palette))
        lines.append(line)
    return lines


def _bias_text(filters: Filters, i: int) -> str:
    return "" if filters.bias is None else f"bias {float(filters.bias[i]):.3g}"


def _square(filters: Filters, tiles: list[list[Text]], width: int, numbers: bool
            ) -> tuple[list[Text], list[str]]:
    """One tile per filter, as many to a row as fit, each under its number (and bias)."""
    shown = min(len(tiles), MAX_SQUARE_TILES)
    tile_w = max(line.cell_len for tile in tiles for line in tile)
    block = max(tile_w, 7 if filters.bias is None else max(len(_bias_text(filters, i)) for i in range(shown)))
    per_row = max(1, (width + GAP) // (block + GAP))
    blocks = []
    for i in range(shown):
        head = [Text(f"{i}", style="bold", no_wrap=True)]
        bias = [Text(_bias_text(filters, i), style="dim", no_wrap=True)] if filters.bias is not None else []
        blocks.append(head + tiles[i] + bias)
    lines: list[Text] = []
    for start in range(0, shown, per_row):
        if lines:
            lines.append(Text(""))
        row = blocks[start:start + per_row]
        lines += beside(row, [block] * len(row))
    notes = [] if shown == len(tiles) else [f"... {len(tiles) - shown} more filters not shown; -o filters.png draws "
                                            "every one, --format json gives every weight"]
    return lines, notes


def _rows(filters: Filters, tiles: list[list[list[Text]]], names: Sequence[str], width: int
          ) -> tuple[list[Text], list[str]]:
    """A row per filter (its number and bias on the left) and a column per input channel, as many
    columns as fit ``width``, the rest elided; at most ``MAX_FILTER_ROWS`` rows."""
    f, c = len(tiles), len(tiles[0])
    tile_w = max(line.cell_len for row in tiles for tile in row for line in tile)
    block = max(tile_w, max(len(name) for name in names))
    label = max(len("filter"), len(f"{f - 1}"), max((len(_bias_text(filters, i)) for i in range(f)), default=0))
    fit = max(1, (width - label) // (block + GAP))
    columns = list(range(c)) if c <= fit else list(range(max(1, fit - 1)))
    rows = min(f, MAX_FILTER_ROWS)
    widths = [label] + [block] * len(columns) + ([1] if len(columns) < c else [])
    header = [[Text("filter", style="dim", no_wrap=True)]] + [[Text(names[j], style="dim", no_wrap=True)]
                                                               for j in columns]
    if len(columns) < c:
        header.append([Text("\u2026")])
    lines = beside(header, widths)
    for i in range(rows):
        left = [Text(f"{i}", style="bold", no_wrap=True)]
        if filters.bias is not None:
            left.append(Text(_bias_text(filters, i), style="dim", no_wrap=True))
        row = [left] + [tiles[i][j] for j in columns] + ([[Text("\u2026")]] if len(columns) < c else [])
        lines += beside(row, widths)
    notes = []
    if len(columns) < c:
        notes.append(f"... input channels {len(columns)} to {c - 1} not shown (the terminal is {width} columns)")
    if rows < f:
        notes.append(f"... filters {rows} to {f - 1} not shown")
    if notes:
        notes.append("-o filters.png draws every filter and channel, --format json gives every weight")
    return lines, notes
