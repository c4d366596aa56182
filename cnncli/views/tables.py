"""Rich renderables for feature maps, kernels and layer summaries. Never prints, never exits.

A map is shown one channel per table, each cell coloured by its value on the layer's scale, the
one of the heatmaps and pictures (cnncli.views.colors): blue-white-red when some value is negative
(white is zero), dark-to-bright otherwise; named colours on 8/16-colour terminals. A map
too big for the terminal shows its first and last rows and columns around an ellipsis, and says
so in its caption; ``full=True`` shows every value.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from . import colors
from .pictures import shape_text, step_head
from ..display import shown
from ..io.images import LoadedImage
from ..io.kernels import Kernel
from ..engine.graph import Step, is_chain, map_stats

MAX_ROWS = 16
_ELIDED_ROW, _ELIDED_COLUMN = "\u22ee", "\u2026"  # vertical and horizontal ellipsis, one cell each
MAX_CHANNELS = 8
MAX_FULL_VALUES = 100_000  # values --full prints as tables in a run at most; JSON and .npy give any number


def image_header(image: LoadedImage) -> Text:
    text = Text.assemble((shown(image.source), "bold"), f": {image.description}")
    if image.notes:
        text.append(f" ({'; '.join(image.notes)})", style="dim")
    return text


def step_title(step: Step, graph: bool = False) -> str:
    """e.g. "conv1 (conv2d) -> 1x3x3: 3x3, cross-correlation, stride 1, padding valid"; with ``graph``
    (a network that is not a chain) naming what the step read: "add (reads conv2, relu1) -> 2x8x8"."""
    describe = step.layer.describe() if step.layer is not None else ""
    shape = shape_text(step.output.shape)
    return f"{step_head(step, graph)} -> {shape}{f': {describe}' if describe else ''}"


def step_view(step: Step, width: int, full: bool = False, palette: str = "rgb", graph: bool = False
              ) -> RenderableType:
    """Every channel of a step's output as a table, or a vector as a one-column table.

    ``palette`` is "rgb" (blended colours), "256" (their nearest of a 256-colour terminal's), "basic"
    (named colours for 8/16-colour terminals,
    where blended ones would be rounded to the same grey) or "none"; ``graph`` names what the step
    read in its title (``step_title``). The channels share one colour scale and one number format
    (the layer's), and go side by side, as many to a row as the width holds.
    """
    output = step.output
    title = step_title(step, graph)
    if output.ndim == 1:
        return vector_table(output, title, step.labels, full, step.stats)
    channels, height = output.shape[:2]
    shown = channels if full else min(channels, MAX_CHANNELS)
    labels = step.labels or ()
    low, high, signed = colors.value_range(output)  # the layer's scale, as heatmaps and pictures draw it
    bounds = (low, high)
    rows = [i for i in shown_indices(height, height if full else MAX_ROWS) if i is not None]
    fmt = number_format(output[:shown, rows])  # the values shown, of every channel shown: one format
    blocks = []
    for c in range(shown):
        name = labels[c] if c < len(labels) else ""
        heading = f"channel {c}: {name}" if name else f"channel {c}" if channels > 1 else ""
        plane_stats = step.stats if channels == 1 else None  # a lone channel's stats are the map's
        blocks.append(_map_parts(output[c], heading, width, full, signed, bounds, palette, plane_stats, fmt))
    parts: list[RenderableType] = [Text(title, style="bold"), *_side_by_side(blocks, width)]
    if shown < channels:
        parts.append(Text(f"... {channels - shown} more channels of {step.name} not shown; --full shows all, "
                          "--format json gives every value", style="dim"))
    return Group(*parts)


GAP = 3  # columns between tables side by side
MIN_BLOCK = 24  # columns a table side by side takes at least: its statistics in two or three lines


def map_table(plane: np.ndarray, title: str, width: int, full: bool, signed: bool,
              bounds: tuple[float, float], palette: str = "rgb", stats: dict | None = None, fmt=None) -> Group:
    """One (H, W) plane as a table of numbers, coloured by value, elided to fit ``width``; ``fmt``
    formats its numbers (by default one ``number_format`` for the rows shown)."""
    heading, table, caption, _ = _map_parts(plane, title, width, full, signed, bounds, palette, stats, fmt)
    return _titled(heading, table, "\n".join(caption))


def _map_parts(plane: np.ndarray, title: str, width: int, full: bool, signed: bool, bounds: tuple[float, float],
               palette: str, stats: dict | None, fmt) -> tuple[str, Table, list[str], int]:
    """A plane's heading, table, caption lines (its statistics, then a note if elided) and the
    table's width: its row labels, and each column shown with the space before it."""
    height, cols = plane.shape
    row_idx = shown_indices(height, height if full else MAX_ROWS)
    rows = plane[[i for i in row_idx if i is not None]]  # only the rows shown decide formats and widths
    fmt = fmt or number_format(rows)
    widths = _column_widths(rows, fmt)
    # A column takes its widest cell plus one space; so does the row-label column. Elisions are
    # one character wide, so they never widen a column of one-digit numbers.
    col_idx = list(range(cols)) if full else _fit_columns(widths, width - len(str(height - 1)) - 1)
    table = heat_grid(plane, row_idx, col_idx, fmt, bounds, signed, palette)
    last_row = max(i for i in row_idx if i is not None) if height else 0
    table_width = len(str(last_row)) + sum(1 if j is None else widths[j] for j in col_idx) + len(col_idx)
    return title, table, _caption(plane, row_idx, col_idx, stats).split("\n"), table_width


def _column_widths(rows: np.ndarray, fmt) -> list[int]:
    """Each column's widest text: its header, or its smallest or largest finite value; "-inf" (4)
    where it holds a value that is not finite."""
    finite = np.isfinite(rows)
    lows = np.where(finite, rows, np.inf).min(axis=0, initial=np.inf)  # (W,) inf where none is finite
    highs = np.where(finite, rows, -np.inf).max(axis=0, initial=-np.inf)  # (W,)
    odd = (~finite).any(axis=0)  # (W,)
    return [max(len(str(j)), len(fmt(float(lo))) if np.isfinite(lo) else 0, len(fmt(float(hi))) if np.isfinite(hi)
                else 0, 4 if bad else 0) for j, (lo, hi, bad) in enumerate(zip(lows, highs, odd))]


def _side_by_side(blocks: list[tuple[str, Table, list[str], int]], width: int) -> list[RenderableType]:
    """Map tables (heading, table, caption lines) one under another, or, when two or more fit
    ``width`` with ``GAP`` between, side by side in rows, each block as wide as the widest table
    (or heading, or ``MIN_BLOCK``), its statistics in as many lines as that width takes."""
    if not blocks:
        return []
    block = max([MIN_BLOCK] + [max(table_width, len(heading)) for heading, _, _, table_width in blocks])
    per_row = (width + GAP) // (block + GAP)
    if len(blocks) == 1 or per_row < 2:
        return [_titled(heading, table, "\n".join(caption)) for heading, table, caption, _ in blocks]
    parts: list[RenderableType] = []
    for start in range(0, len(blocks), per_row):
        row = blocks[start:start + per_row]
        if parts:
            parts.append(Text(""))  # a blank line between rows of tables
        grid = Table.grid(padding=(0, GAP, 0, 0))
        for _ in row:
            grid.add_column(width=block, no_wrap=False)
        grid.add_row(*(_titled(heading, table, "\n".join(_packed(caption, block)))
                       for heading, table, caption, _ in row))
        parts.append(grid)
    return parts


def _packed(caption: list[str], width: int) -> list[str]:
    """Caption lines rewrapped to ``width``: the statistics as few lines as their pairs ("max 12")
    allow without splitting one; a note as Rich wraps words."""
    stats, *notes = caption
    pairs = stats.split("  ")
    lines = [pairs[0]]
    for pair in pairs[1:]:
        if len(lines[-1]) + 2 + len(pair) <= width:
            lines[-1] += "  " + pair
        else:
            lines.append(pair)
    return lines + notes


def heat_grid(values: np.ndarray, row_idx: Sequence[int | None], col_idx: Sequence[int | None], fmt,
              bounds: tuple[float, float], signed: bool, palette: str = "rgb",
              row_names: Sequence | None = None, col_names: Sequence | None = None,
              dim: np.ndarray | None = None) -> Table:
    """A (H, W) array as a table of numbers coloured by value, headed by row and column names
    (the indices by default); None in ``row_idx``/``col_idx`` is an elision, and a cell where
    ``dim`` is true is shown in parentheses without colour (padding, in cnn explain)."""
    table = Table(box=box.SIMPLE_HEAD, padding=0, show_edge=False)
    table.add_column("", justify="right", style="dim", no_wrap=True)
    shown_rows = [i for i in row_idx if i is not None]
    shown_cols = [j for j in col_idx if j is not None]
    # Only the cells shown are coloured: one lookup in the shared colour table for all of them.
    index = colors.color_indices(values[np.ix_(shown_rows, shown_cols)], bounds[0], bounds[1], signed)
    at_row = {i: k for k, i in enumerate(shown_rows)}
    at_col = {j: k for k, j in enumerate(shown_cols)}
    for j in col_idx:
        name = _ELIDED_COLUMN if j is None else str(j if col_names is None else col_names[j])
        table.add_column(name, justify="right", no_wrap=True)
    for i in row_idx:
        if i is None:
            table.add_row(_ELIDED_ROW, *[_ELIDED_ROW for _ in col_idx])
            continue
        cells = []
        for j in col_idx:
            if j is None:
                cells.append(Text(_ELIDED_COLUMN))
                continue
            value = float(values[i, j])
            if dim is not None and dim[i, j]:
                cells.append(Text(f"({fmt(value)})", style="dim"))
                continue
            style = _cell_style(int(index[at_row[i], at_col[j]]), signed, palette, math.isfinite(value))
            cells.append(Text(fmt(value), style=style))
        table.add_row(str(i if row_names is None else row_names[i]), *cells)
    return table


def _titled(title: str, body: RenderableType, caption: str) -> Group:
    """A title line (if any), the body, and a caption line, as wide as the terminal (not the table)."""
    heading = [Text(title, style="bold")] if title else []
    return Group(*heading, body, Text(caption, style="dim"))


def _fit_columns(widths: list[int], budget: int) -> list[int | None]:
    """All columns if they fit in ``budget``; else as many from both ends as fit beside an ellipsis column."""
    if sum(w + 1 for w in widths) <= budget:
        return list(range(len(widths)))
    budget -= 2  # the ellipsis column and its space
    left, right = 0, len(widths) - 1
    head: list[int] = []
    tail: list[int] = []
    while left <= right:
        index = left if len(head) <= len(tail) else right
        if widths[index] + 1 > budget:
            break
        budget -= widths[index] + 1
        if index == left:
            head.append(left)
            left += 1
        else:
            tail.insert(0, right)
            right -= 1
    return head + [None] + tail


def shown_indices(size: int, limit: int) -> list[int | None]:
    """All indices if they fit in ``limit``; else the first and last ones around a None."""
    if size <= limit:
        return list(range(size))
    head = limit // 2
    tail = limit - 1 - head
    return list(range(head)) + [None] + list(range(size - tail, size))


def _caption(plane: np.ndarray, rows: list, cols: list, stats: dict | None = None) -> str:
    s = stats or map_stats(plane)
    text = f"min {s['min']:.4g}  max {s['max']:.4g}  mean {s['mean']:.4g}  std {s['std']:.4g}  zeros {s['zeros']:.0%}"
    if None in rows or None in cols:
        shown_rows, shown_cols = len(rows) - (None in rows), len(cols) - (None in cols)
        shown = f"{shown_rows} of {plane.shape[0]} rows, {shown_cols} of {plane.shape[1]} columns"
        text += f"\nshowing {shown}; --full prints every value (up to {MAX_FULL_VALUES:,} a run)"
    return text


def number_format(values: np.ndarray):
    """A formatter that shows whole numbers as such and others with a few meaningful digits."""
    finite = values[np.isfinite(values)]
    largest = float(np.abs(finite).max()) if finite.size else 0.0
    if finite.size and np.all(finite == np.round(finite)) and largest < 1e7:
        return lambda v: f"{v:.0f}" if math.isfinite(v) else str(v)
    if largest >= 1e7 or 0 < largest < 1e-3:
        return lambda v: f"{v:.2e}"
    decimals = 0 if largest >= 1000 else 1 if largest >= 100 else 2 if largest >= 1 else 3
    return lambda v: f"{v:.{decimals}f}"


def heat_style(value: float, bounds: tuple[float, float], signed: bool, palette: str = "rgb") -> str:
    """The style of a cell holding ``value`` on the scale from ``bounds`` (finite; diverging when
    ``signed``): the colour a heatmap or a picture gives it as background, and black or white ink."""
    index = int(colors.color_indices(np.float64(value), bounds[0], bounds[1], signed))
    return _cell_style(index, signed, palette, math.isfinite(value))


def _cell_style(index: int, signed: bool, palette: str, finite: bool = True) -> str:
    """The style of colour-table entry ``index``; a value that is not finite is bold as well."""
    if palette == "none":
        return "" if finite else "bold"
    style = (colors.basic_style(index, signed) if palette == "basic"
             else colors.rich_style(index, signed, eight_bit=palette == "256"))
    return style if finite else f"bold {style}".rstrip()


def vector_table(values: np.ndarray, title: str, labels: Sequence[str], full: bool, stats: dict | None = None) -> Group:
    """A 1-D output (a dense layer's units) as rows of index, label and value."""
    fmt = number_format(values)
    table = Table(box=box.SIMPLE_HEAD, show_edge=False)
    table.add_column("unit", justify="right", style="dim")
    if labels:
        table.add_column("label")
    table.add_column("value", justify="right")
    for i in shown_indices(values.size, values.size if full else MAX_ROWS):
        if i is None:
            table.add_row(*[_ELIDED_ROW] * (3 if labels else 2))
            continue
        row = [str(i)] + ([labels[i] if i < len(labels) else ""] if labels else []) + [fmt(float(values[i]))]
        table.add_row(*row)
    return _titled(title, table, _vector_caption(stats or map_stats(values)))


def _vector_caption(s: dict) -> str:
    return f"min {s['min']:.4g}  max {s['max']:.4g}  mean {s['mean']:.4g}"


SUMMARY_COLUMNS = ("#", "layer", "type", "settings", "output", "params", "mult-adds",
                   "min", "max", "mean", "std", "zeros", "ms")
_LAYOUT_COLUMNS = SUMMARY_COLUMNS[:7]
_VALUE_COLUMNS = SUMMARY_COLUMNS[:2] + SUMMARY_COLUMNS[7:]
_GRAPH_LAYOUT = ("#", "layer", "type", "reads", "output")  # the least a graph's layout table shows


def summary_rows(steps: Sequence[Step]) -> list[dict[str, str]]:
    """Per layer: name, type, what it reads, settings, output shape, parameters, multiply-adds,
    statistics, time."""
    rows = []
    for step in steps:
        s = step.stats
        rows.append({
            "#": str(step.index), "layer": step.name, "type": step.type, "reads": ", ".join(step.inputs),
            "settings": step.layer.describe() if step.layer is not None else "",
            "output": shape_text(step.output.shape),
            "params": f"{step.params:,}", "mult-adds": f"{step.macs:,}",
            "min": f"{s['min']:.4g}", "max": f"{s['max']:.4g}", "mean": f"{s['mean']:.4g}",
            "std": f"{s['std']:.4g}", "zeros": f"{s['zeros']:.0%}",
            "ms": f"{step.seconds * 1e3:.2f}" if step.index else "",
        })
    return rows


def summary_view(steps: Sequence[Step], title: str, width: int) -> RenderableType:
    """One table of every column if it fits ``width``; else one of layout and one of values."""
    rows = summary_rows(steps)
    totals = (sum(step.params for step in steps), sum(step.macs for step in steps))
    caption = f"total: {totals[0]:,} parameters, {totals[1]:,} multiply-adds"
    columns: tuple[str, ...] = SUMMARY_COLUMNS
    layout: tuple[str, ...] = _LAYOUT_COLUMNS
    if not is_chain(steps):  # a graph: what each layer reads, beside its type
        columns, layout = (_with_reads(names) for names in (columns, layout))
    whole = _summary_table(rows, columns)
    if natural_width(whole) <= width:
        return _titled(title, whole, caption)
    if not is_chain(steps):  # keep "reads" whole, leaving out what `cnn summary` also shows
        for fewer in ([c for c in layout if c != "settings"], [c for c in layout if c in _GRAPH_LAYOUT]):
            if natural_width(_summary_table(rows, layout)) <= width:
                break
            layout = tuple(fewer)
    return Group(_titled(title, _summary_table(rows, layout), caption),
                 _titled("Values", _summary_table(rows, _VALUE_COLUMNS), "zeros: share of cells exactly 0"))


def _with_reads(columns: Sequence[str]) -> tuple[str, ...]:
    at = columns.index("type") + 1
    return (*columns[:at], "reads", *columns[at:])


def _summary_table(rows: list[dict[str, str]], columns: Sequence[str]) -> Table:
    table = Table(box=box.SIMPLE_HEAD, show_edge=False)
    for name in columns:
        left = name in ("layer", "type", "reads", "settings", "output")
        table.add_column(name, justify="left" if left else "right", no_wrap=name not in ("settings", "reads"),
                         overflow="fold")
    for row in rows:
        table.add_row(*(row[name] for name in columns))
    return table


def natural_width(table: RenderableType) -> int:
    """The width a renderable takes when nothing constrains it."""
    from rich.console import Console

    console = Console(width=10_000)
    return console.measure(table).maximum


GRID_SIDE = 9  # a kernel wider or taller than this is drawn in heat colours, not written out


def kernel_grid(kernel: Kernel, color: bool = True) -> Text:
    """A kernel's weights as written, one row per line, with its divisor beneath; a big one (a
    Gabor, a wide Gaussian) drawn instead, on a blue-white-red scale symmetric about 0, with its range."""
    raw = kernel.raw.reshape(-1, *kernel.size)
    if max(kernel.size) > GRID_SIDE:
        return _kernel_picture(kernel.weights.reshape(raw.shape), color)
    fmt = number_format(raw)
    width = max(len(fmt(float(v))) for v in raw.flat)
    blocks = []
    for plane in raw:
        blocks.append("\n".join(" ".join(fmt(float(v)).rjust(width) for v in row) for row in plane))
    text = "\n\n".join(blocks)
    if kernel.divisor != 1:
        text += f"\n/ {kernel.divisor:g}"
    return Text(text)


def _kernel_picture(planes: np.ndarray, color: bool) -> Text:
    """Each plane as half blocks (two cells a character, so that it keeps its aspect), then its range:
    on the blue-white-red scale about 0 when some weight is negative, else dark to bright, as maps are."""
    from .heatmap import draw

    low, high = float(planes.min()), float(planes.max())
    diverging = low < 0
    reach = float(np.abs(planes).max()) or 1.0
    lines: list[Text] = []
    for plane in planes:
        if lines:
            lines.append(Text(""))
        factor = 2 if plane.shape[1] <= 16 else 1  # a pixel is half a line high and one column wide: square
        lines.extend(draw(plane, -reach, reach, True, color, factor) if diverging
                     else draw(plane, low, high, False, color, factor))
    scale = " (blue < 0 < red)" if diverging else " (dark to bright)"
    lines.append(Text(f"{low:.3g} .. {high:.3g}" + (scale if color else "")))
    return Text("\n").join(lines)


def kernels_table(kernels: Sequence[Kernel], color: bool = True, title: str | None = None) -> Table:
    table = Table(title=title or "Built-in kernels (use by name: --kernel NAME)", title_justify="left",
                  box=box.SIMPLE_HEAD, show_lines=True)
    table.add_column("name", style="bold", overflow="fold")
    table.add_column("size")
    table.add_column("weights", no_wrap=True)
    table.add_column("description", ratio=1)
    for kernel in kernels:
        table.add_row(kernel.name, shape_text(kernel.raw.shape), kernel_grid(kernel, color), kernel.description)
    return table
