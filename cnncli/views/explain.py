"""Rich renderables for `cnn explain`: one conv output cell, term by term. Never prints, never exits.

For each input channel the filter reads, three grids side by side: the input patch under the
kernel (padding in parentheses, dimmed), the kernel, and their element-wise products; then the
products written out as a sum, the bias, the result, and what the layers that consume it do with it
(in a graph: each consumer, and for a merge the other inputs' values at that cell).
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from . import colors
from ..engine.explain import Elementwise, Explanation, Merge, Pooling
from ..engine.graph import Step
from .tables import MAX_CHANNELS, heat_grid, natural_width, number_format, shown_indices, step_title

MAX_SIDE = 9  # a kernel with more rows or columns shows its first and last ones around an ellipsis
MAX_WRITTEN_TERMS = 25  # up to this many taps per channel, the sum is written out term by term
MAX_CHANNEL_SUMS = 16  # up to this many channel sums are written out in the total


def explanation_view(explanation: Explanation, steps: Sequence[Step], width: int, palette: str = "rgb",
                     full: bool = False) -> RenderableType:
    """The layer, the cell, one block of grids per input channel, then the sum, bias and what follows.

    ``steps`` is the forward pass the explanation came from (for the layer's title and the input's
    colour scale); ``palette`` is "rgb", "basic" or "none" as for ``render.step_view``.
    """
    e = explanation
    step = steps[e.layer_index]
    source = steps[e.source_index]  # the step the conv read: in a graph, not always the one before
    title = step_title(step, e.reads is not None)
    parts: list[RenderableType] = [Text(title, style="bold"), _cell_line(e, step), _reading_line(e, source)]
    note = _padding_note(e)
    if note:
        parts.append(Text(note, style="dim"))
    parts.append(Text())
    low, high, _ = colors.value_range(source.output)  # the input's scale, as its table and heatmap show it
    bounds = (low, high)
    count = len(e.in_channels)
    shown = count if full else min(count, MAX_CHANNELS)
    for k in range(shown):
        parts += [_channel_block(e, k, bounds, width, palette, full), Text()]
    if shown < count:
        hidden = f"{e.in_channels[shown]}..{e.in_channels[-1]}" if count - shown > 1 else str(e.in_channels[shown])
        parts += [Text(f"... {count - shown} more input channels ({hidden}) not shown; their sums are in the total "
                       "below; --full shows all, --format json gives every value", style="dim"), Text()]
    parts += _result_lines(e, step)
    return Group(*parts)


def _cell_line(e: Explanation, step: Step) -> Text:
    name = f" ({e.label})" if e.label else ""
    return Text.assemble(("Cell: ", "bold"), f"{e.layer_name} channel {e.channel}{name}, row {e.row}, col {e.col} = ",
                         (_exact(e.layer_value), "bold"))


def _reading_line(e: Explanation, source: Step) -> Text:
    kh, kw = e.kernel_size
    what = "cross-correlation: the kernel is used as it stands, not flipped"
    if e.flipped:
        what = "a true convolution: the kernel is flipped in both axes, and shown flipped"
    channels = _channels_read(e, source)
    text = (f"The {kh}x{kw} kernel lies on {source.name} rows {_span(e.rows)}, cols {_span(e.cols)}{channels}; "
            f"each value is multiplied by the weight on it and the products are summed ({what}).")
    return Text(text)


def _channels_read(e: Explanation, source: Step) -> str:
    total = e.in_shape[0]
    count = len(e.in_channels)
    if e.groups == 1:
        return "" if total == 1 else f", all {total} channels"
    if count == 1:
        return f", channel {e.in_channels[0]} only (groups {e.groups}: depthwise, each filter reads one channel)"
    return (f", channels {e.in_channels[0]}..{e.in_channels[-1]} only (groups {e.groups}: filter {e.channel} "
            f"is in group {e.group})")


def _padding_note(e: Explanation) -> str:
    if not e.padding.any():
        return ""
    if e.padding_mode == "zeros":
        return "(v) marks padding: zeros outside the input."
    copies = [f"row {r} holds row {s}" for r, s in zip(e.rows, e.source_rows) if r != s]
    copies += [f"col {c} holds col {s}" for c, s in zip(e.cols, e.source_cols) if c != s]
    return f"(v) marks padding, {e.padding_mode} mode: {', '.join(copies)}."


def _channel_block(e: Explanation, k: int, bounds: tuple[float, float], width: int, palette: str,
                   full: bool) -> RenderableType:
    """Input patch x kernel = products for input channel ``k`` of the filter, then its sum written out."""
    channel = e.in_channels[k]
    label = e.in_labels[k]
    heading = f"input channel {channel}" + (f": {label}" if label else "")
    signed_input = bounds[0] < 0
    patch = _grid("input patch", e.patch[k], e.rows, e.cols, palette, full, bounds, signed_input, e.padding)
    kernel = _grid("kernel", e.kernel[k], range(e.kernel_size[0]), range(e.kernel_size[1]), palette, full,
                   _symmetric(e.kernel[k]), True)
    products = _grid("input x kernel", e.products[k], range(e.kernel_size[0]), range(e.kernel_size[1]), palette,
                     full, _symmetric(e.products[k]), True)
    sides = Table.grid(padding=(0, 1))
    for _ in range(5):
        sides.add_column(vertical="top")
    # The operators stand level with the middle row of numbers, below the title, header and rule.
    shown_rows = len(shown_indices(e.kernel_size[0], e.kernel_size[0] if full else MAX_SIDE))
    drop = "\n" * (3 + (shown_rows - 1) // 2)
    sides.add_row(patch, Text(drop + " x "), kernel, Text(drop + " = "), products)
    grids: RenderableType = sides
    if natural_width(sides) > width:  # too wide side by side: one under the other
        grids = Group(patch, Text("x"), kernel, Text("="), products)
    return Group(Text(heading, style="bold"), grids, _sum_line(e, k, width))


def _symmetric(values: np.ndarray) -> tuple[float, float]:
    finite = values[np.isfinite(values)]
    largest = float(np.abs(finite).max()) if finite.size else 0.0
    return -largest, largest


def _grid(title: str, values: np.ndarray, rows: Sequence[int], cols: Sequence[int], palette: str, full: bool,
          bounds: tuple[float, float], signed: bool, padding: np.ndarray | None = None) -> Group:
    """A small grid of numbers under a title, headed by its row and column indices."""
    rows, cols = list(rows), list(cols)
    row_idx = shown_indices(len(rows), len(rows) if full else MAX_SIDE)
    col_idx = shown_indices(len(cols), len(cols) if full else MAX_SIDE)
    fmt = number_format(values)
    table = heat_grid(values, row_idx, col_idx, fmt, bounds, signed, palette, rows, cols, padding)
    return Group(Text(title, style="bold"), table)


def _sum_line(e: Explanation, k: int, width: int) -> Text:
    """ "sum: (2x1) + (3x0) + ... = 12" over the taps in kernel order, or just the sum for a big kernel.

    A sum too long for one line wraps between terms and ends with "= 12" on a line of its own.
    """
    patch, kernel = e.patch[k].reshape(-1), e.kernel[k].reshape(-1)
    prefix = "sum" if len(e.in_channels) == 1 else f"sum of channel {e.in_channels[k]}"
    if patch.size > MAX_WRITTEN_TERMS:
        return Text(f"{prefix}: the {patch.size} products add up to {_exact(e.sums[k])}")
    terms = " + ".join(f"({_short(a)}x{_short(b)})" for a, b in zip(patch, kernel))
    line = f"{prefix}: {terms} = {_exact(e.sums[k])}"
    if len(line) > width:
        line = f"{prefix}: {terms}\n  = {_exact(e.sums[k])}"
    return Text(line)


def _result_lines(e: Explanation, step: Step) -> list[RenderableType]:
    lines: list[RenderableType] = []
    if len(e.in_channels) > 1:
        sums = [_exact(e.sums[0])] + [_signed(s) for s in e.sums[1:]]
        if len(sums) > MAX_CHANNEL_SUMS:
            sums = sums[:MAX_CHANNEL_SUMS] + [f"... ({len(sums) - MAX_CHANNEL_SUMS} more)"]
        lines.append(Text(f"all {len(e.in_channels)} channels: {' + '.join(sums)} = {_exact(e.total)}"))
    if e.bias is None:
        lines.append(Text.assemble("no bias: ", (_exact(e.value), "bold")))
    else:
        lines.append(Text.assemble(f"+ bias: {_exact(e.total)} + {_signed(e.bias)} = ", (_exact(e.value), "bold")))
    shown = number_format(step.output[e.channel])(e.layer_value)
    overflowed = " (it overflowed in the run's precision; --dtype float64 may help)" \
        if math.isfinite(e.value) and not math.isfinite(e.layer_value) else ""
    lines.append(Text(f"{e.layer_name}'s table shows {shown} at channel {e.channel}, row {e.row}, col {e.col}"
                      f"{overflowed}", style="dim"))
    for after in e.after:
        lines.append(after_line(after, f"row {e.row}, col {e.col}"))
    return lines


def after_line(after: Elementwise | Pooling | Merge, where: str) -> Text:
    """One line for a layer that consumes the explained cell; ``where`` names the cell ("row 2, col 3")."""
    reads = ", ".join(after.inputs) if isinstance(after, Merge) else after.reads
    notes = ([after.type] if after.name != after.type else []) + ([f"reads {reads}"] if reads else [])
    head = f"{after.name} ({', '.join(notes)}): " if notes else f"{after.name}: "
    if isinstance(after, Merge):
        return Text(head + _merge_text(after))
    if isinstance(after, Elementwise):
        x, y = _exact(after.before), _exact(after.after)
        if after.scale is not None:
            assert after.shift is not None  # a batch norm's scale comes with its shift
            whose = "feature" if after.type == "batchnorm1d" else "channel"
            return Text(f"{head}{x} x {_exact(after.scale)} + {_signed(after.shift)} = {y} (this {whose}'s mean, "
                        "variance, weight and bias as a scale and a shift)")
        if after.type == "dropout":
            return Text(f"{head}{x} (nothing at inference)")
        if after.type == "none":
            return Text(f"{head}{x} (no activation)")
        if after.type == "identity":
            return Text(f"{head}{x} (unchanged)")
        if after.type in ("softmax", "logsoftmax"):
            share = "its share" if after.type == "softmax" else "the log of its share"
            return Text(f"{head}{x} becomes {y}, {share} of its vector's exponentials")
        slope = f" (negative slope {after.negative_slope:g})" if after.negative_slope is not None else ""
        return Text(f"{head}{after.type}({x}) = {y}{slope}")
    size = f"{after.kernel_size[0]}x{after.kernel_size[1]}"
    if not after.cells:
        return Text(f"{head}no {size} window with stride {_pair(after.stride)} covers {where}: the pool drops "
                    "this cell")
    lines = []
    for cell in after.cells:
        window = f"rows {_span(cell.rows)}, cols {_span(cell.cols)}"
        value = _exact(cell.value)
        if after.kind == "max":
            verdict = ("this cell ties for that max" if cell.tied else "this cell is that max") if cell.is_max \
                else "this cell is not the max"
            lines.append(f"feeds cell row {cell.row}, col {cell.col} = {value}, the max of {window}: {verdict}")
        elif after.kind == "global":
            lines.append(f"feeds the channel's mean, {value}, over all {cell.divisor} cells: this one adds "
                         f"1/{cell.divisor} of itself")
        else:
            lines.append(f"feeds cell row {cell.row}, col {cell.col} = {value}, the mean of {window} (divided by "
                         f"{cell.divisor})")
    return Text(head + "; ".join(lines))


_OPERATORS = {"add": " + ", "mul": " x ", "sub": " - "}


def _merge_text(merge: Merge) -> str:
    """e.g. "conv2 0.5 + relu1 1 = 1.5 at channel 0, row 1, col 2"."""
    value = _exact(merge.terms[0][1]) if merge.terms else ""
    if merge.cell is None:  # a broadcast value (a gate) reaches every cell along its size-1 dimensions
        return f"{merge.reads}'s {value} is taken into every cell it is broadcast over ({merge.type})"
    at = _cell_text(merge.cell)
    if merge.offset is not None:
        where = f", after the {merge.offset} of the inputs before it" if merge.offset else ""
        return f"{merge.reads}'s {value} is {at} of the joined map{where}"
    terms = [f"{name} {_signed(v)}" for name, v in merge.terms]
    if merge.type == "mean":
        written = f"mean({', '.join(terms)})"
    else:
        written = _OPERATORS.get(merge.type, f" {merge.type} ").join(terms)
    assert merge.value is not None  # a merge's value is None only where its cell is
    return f"{written} = {_exact(merge.value)} at {at}"


def _cell_text(cell: Sequence[int]) -> str:
    if len(cell) == 3:
        return f"channel {cell[0]}, row {cell[1]}, col {cell[2]}"
    return "cell " + ", ".join(str(i) for i in cell)


def _span(indices: Sequence[int]) -> str:
    """0..2 for consecutive indices, 0..4 step 2 for evenly spaced ones, else a list."""
    indices = list(indices)
    if len(indices) == 1:
        return str(indices[0])
    steps = {b - a for a, b in zip(indices, indices[1:])}
    if len(steps) == 1:
        step = steps.pop()
        return f"{indices[0]}..{indices[-1]}" + (f" step {step}" if step != 1 else "")
    return ", ".join(str(i) for i in indices)


def _pair(value: Sequence[int]) -> str:
    return str(value[0]) if value[0] == value[1] else f"{value[0]},{value[1]}"


def _short(value: float) -> str:
    """A term of a written-out sum: whole numbers as such, others to 4 significant digits."""
    value = float(value)
    if math.isfinite(value) and value == round(value) and abs(value) < 1e7:
        return str(int(value))
    return f"{value:.4g}"


def _exact(value: float) -> str:
    """A sum or a result: whole numbers as such, others to 6 significant digits."""
    value = float(value)
    if math.isfinite(value) and value == round(value) and abs(value) < 1e9:
        return str(int(value))
    return f"{value:.6g}"


def _signed(value: float) -> str:
    text = _exact(value)
    return f"({text})" if text.startswith("-") else text
