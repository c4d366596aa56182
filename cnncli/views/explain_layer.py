"""Rich renderables for `cnn explain` on a layer other than a conv. Never prints, never exits.

The cell and its value; in words what the layer did with it and which input cells it read; the
window a pooling cell covers (padding in parentheses) or the table of terms a sum is made of (the
largest first); then the formula, written in symbols and again with the cell's numbers, down to
the value; and what the layers that consume it do with it.
"""

from __future__ import annotations

import math
import re
from typing import Any, Sequence

import numpy as np
from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from . import colors
from ..engine.explain_layer import LayerExplanation, Terms, Window, Working, cell_text
from ..engine.graph import Step
from .explain import MAX_SIDE, _exact, _signed, _span, after_line
from .tables import heat_grid, number_format, shown_indices, step_title

MAX_TERMS = 12  # rows of a table of terms shown without --full: the largest ones
_PLACEHOLDER = re.compile(r"\{(\w+)(!?)\}")


def layer_explanation_view(e: LayerExplanation, steps: Sequence[Step], width: int, palette: str = "rgb",
                           full: bool = False) -> RenderableType:
    """The layer, the cell, the words, the window or terms, the formula with its numbers, what follows.

    ``steps`` is the forward pass the explanation came from (for the layer's title and the scale
    of a window's colours); ``palette`` is "rgb", "256", "basic" or "none" as for the tables.
    """
    w = e.working
    step = steps[e.layer_index]
    parts: list[RenderableType] = [Text(step_title(step, e.reads is not None), style="bold"), _cell_line(e)]
    if w.text:
        parts.append(Text(fill(w.text, w.numbers)))
    parts += [Text(line, style="dim") for line in _source_lines(w)]
    if w.window is not None:
        source = next(s for s in steps if s.name == w.window.step)
        parts += [Text(), _window_view(w.window, source, w, palette, full)]
    if w.terms is not None:
        parts += [Text(), *_terms_view(w.terms, full)]
    parts.append(Text())
    parts += [Text(fill(line, w.numbers)) for line in w.lines]
    shown = number_format(step.output[e.cell[0]] if step.output.ndim == 3 else step.output)(e.layer_value)
    overflowed = " (it overflowed in the run's precision; --dtype float64 may help)" \
        if math.isfinite(e.value) and not math.isfinite(e.layer_value) else ""
    parts.append(Text(f"{e.layer_name}'s table shows {shown} at {cell_text(e.cell)}{overflowed}", style="dim"))
    where = f"row {e.cell[1]}, col {e.cell[2]}" if len(e.cell) == 3 else cell_text(e.cell)
    parts += [after_line(after, where) for after in e.after]
    return Group(*parts)


def fill(template: str, numbers: dict[str, float]) -> str:
    """``template`` with each ``{name}`` replaced by its number: 6 significant digits, a negative one
    in parentheses (``{name!}``: bare, as a result is written)."""
    def number(match: re.Match) -> str:
        if match.group(1) not in numbers:
            return match.group(0)
        value = numbers[match.group(1)]
        return _exact(value) if match.group(2) else _signed(value)

    return _PLACEHOLDER.sub(number, template)


def _cell_line(e: LayerExplanation) -> Text:
    """"Cell: fc2 unit 7 (class 7) = 9.87"; a map's label after its channel, as a conv's."""
    name = f" (class {e.label})" if e.is_class else f" ({e.label})" if e.label else ""
    where = f"{cell_text(e.cell)}{name}"
    if len(e.cell) == 3 and name:
        where = f"channel {e.cell[0]}{name}, row {e.cell[1]}, col {e.cell[2]}"
    return Text.assemble(("Cell: ", "bold"), f"{e.layer_name} {where} = ", (_exact(e.layer_value), "bold"))


def _source_lines(w: Working) -> list[str]:
    """"x = 0.5 is relu1's value at channel 0, row 1, col 2" for each number read from a map."""
    lines = []
    for source in w.sources:
        if source.cell is None:
            continue
        note = f" ({source.note})" if source.note else ""
        lines.append(f"{source.name} = {_exact(w.numbers[source.name])} is {source.step}'s value at "
                     f"{cell_text(source.cell)}{note}")
    return lines


def _window_view(window: Window, source: Step, w: Working, palette: str, full: bool) -> RenderableType:
    """The window's values as a grid headed by the input rows and columns; padding in parentheses,
    as the pooling sees it: -inf for a max, 0 for an average."""
    is_max = "divisor" not in w.numbers
    shown = np.where(window.padding, -np.inf if is_max else 0.0, window.values)  # KH, KW
    finite = shown[np.isfinite(shown)]
    fmt = number_format(finite if finite.size else shown)
    row_idx = shown_indices(len(window.rows), len(window.rows) if full else MAX_SIDE)
    col_idx = shown_indices(len(window.cols), len(window.cols) if full else MAX_SIDE)
    low, high, signed = colors.value_range(source.output)  # the input's scale, as its table shows it
    grid = heat_grid(shown, row_idx, col_idx, fmt, (low, high), signed, palette, window.rows, window.cols,
                     window.padding)
    title = f"window on {window.step} channel {window.channel}, rows {_span(window.rows)}, cols {_span(window.cols)}"
    parts: list[RenderableType] = [Text(title, style="bold"), grid]
    if window.padding.any():
        parts.append(Text("(v) marks padding, outside the input" +
                          (": a max pool leaves it out" if is_max else ""), style="dim"))
    if None in row_idx or None in col_idx:
        parts.append(Text(f"showing part of the {len(window.rows)}x{len(window.cols)} window; --full shows all, "
                          "--format json gives every value", style="dim"))
    return Group(*parts)


def _terms_view(terms: Terms, full: bool) -> list[RenderableType]:
    """The terms as a table, the first ``MAX_TERMS`` (and the explained cell's own row) unless ``full``;
    what the rows left out add up to."""
    rows = list(terms.rows)
    if not rows:  # a transposed conv's cell no input reaches: its bias alone, as the text says
        return []
    keep = list(range(len(rows))) if full or len(rows) <= MAX_TERMS else list(range(MAX_TERMS))
    if terms.marked is not None and terms.marked not in keep:
        keep.append(terms.marked)
    columns = [k for k, name in enumerate(terms.columns) if any(row[k] != "" for row in rows)]  # no empty column
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    formats = {}
    for k in columns:
        numeric = all(isinstance(row[k], (int, float)) for row in rows)
        table.add_column(terms.columns[k], justify="right" if numeric else "left", no_wrap=True)
        if all(isinstance(row[k], float) for row in rows):
            formats[k] = _column_format(np.array([rows[i][k] for i in keep], dtype=np.float64))
    marker = [] if terms.marked is None else [""]
    if marker:
        table.add_column("", no_wrap=True)  # points at the explained cell's own row, in words as in colour
    previous = -1
    for i in keep:
        if i != previous + 1:
            table.add_row(*["\u22ee"] * len(columns), *marker)
        mine = i == terms.marked
        table.add_row(*[_cell(rows[i][k], formats.get(k)) for k in columns], *(["<- this cell"] if mine else marker),
                      style="bold" if mine else "")
        previous = i
    parts: list[RenderableType] = [Text(f"{len(rows)} terms, {terms.order}" if len(rows) != 1 else "1 term",
                                        style="bold"), table]
    left_out = [i for i in range(len(rows)) if i not in set(keep)]
    if left_out:
        note = f"{len(left_out)} more not shown; --full shows all, --format json gives every value"
        if terms.total is not None:
            rest = float(np.sum([rows[i][terms.total] for i in left_out], dtype=np.float64))
            note = f"the other {len(left_out)} add up to {_exact(rest)}; --full shows all"
        parts.append(Text(note, style="dim"))
    if terms.total is not None and len(rows) > 1:
        total = float(np.sum([row[terms.total] for row in rows], dtype=np.float64))
        parts.append(Text(f"all {len(rows)} {terms.columns[terms.total]} add up to {_exact(total)}"))
    return parts


def _column_format(values: np.ndarray):
    """The tables' number format, or 3 significant digits for a column whose values span more than
    four orders of magnitude (a softmax's exponentials), where fixed decimals would show 0.00."""
    finite = np.abs(values[np.isfinite(values) & (values != 0)])
    if finite.size and finite.max() / finite.min() > 1e4:
        return lambda v: f"{v:.3g}"
    return number_format(values)


def _cell(value: Any, fmt) -> str:
    if isinstance(value, float) and fmt is not None:
        return fmt(value)
    return str(value)
