"""What the layers that consume a layer's output cell do with it, as plain data (``cnn explain``).

``follow`` walks the steps of a forward pass after the layer, in the order they ran, and follows
the cell's value while it stays one cell: through element-wise layers (activations, batch norm,
dropout, identity, element-wise math; a softmax, which turns it into its share), into the pooling
windows that hold it, and through merges (add, mul, sub, mean with each input's value at the cell;
concat, which moves the cell). Never prints and never imports the CLI libraries; each record's
``record()`` is its JSON layout.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence, Union

import numpy as np

from . import ops
from .graph import Step
from .layers import Activation, Add, BatchNorm, Concat, Dropout, GlobalAvgPool2d, Mean, Mul, Pool2d, Softmax, Sub
from .layers import base
from .layers.base import axis
from .pooling import _window_counts


@dataclass(frozen=True, eq=False, repr=False)
class Elementwise:
    """A layer after the explained one that changes each value on its own: an activation, a batch
    norm, dropout, element-wise math; or a softmax, which makes the value its share.

    ``before`` and ``after`` are the cell's value in the maps before and after the layer; a batch
    norm is after = before * scale + shift, with this channel's ``scale`` and ``shift``.
    """

    index: int
    name: str
    type: str
    before: float
    after: float
    negative_slope: float | None = None  # leaky_relu and prelu only
    scale: float | None = None  # batch norm only
    shift: float | None = None
    reads: str | None = None  # in a graph: the step whose value it takes (None in a chain: the one before)

    def record(self) -> dict[str, Any]:
        record = {"index": self.index, "name": self.name, "type": self.type, **_reads(self.reads),
                  "before": json_number(self.before), "after": json_number(self.after)}
        for key in ("negative_slope", "scale", "shift"):
            if getattr(self, key) is not None:
                record[key] = json_number(getattr(self, key))
        return record


@dataclass(frozen=True, eq=False, repr=False)
class PoolCell:
    """One pooling output cell whose window holds the explained cell.

    ``rows`` and ``cols`` are the window's rows and columns in the pooling layer's input (outside it:
    padding); ``window`` holds the values it pools (KH, KW), NaN on padding; None for a global pool.
    """

    row: int
    col: int
    value: float
    rows: tuple[int, ...]
    cols: tuple[int, ...]
    window: np.ndarray | None
    is_max: bool | None = None  # max pooling: does the explained cell hold the window's maximum?
    tied: bool = False  # ... shared with another cell of the window
    divisor: int | None = None  # average pooling: the number of cells the sum is divided by

    def record(self) -> dict[str, Any]:
        record: dict[str, Any] = {"row": self.row, "col": self.col, "value": json_number(self.value),
                                  "rows": list(self.rows), "cols": list(self.cols)}
        if self.window is not None:
            record["window"] = json_values(self.window)
        if self.is_max is not None:
            record["is_max"] = self.is_max
            record["tied"] = self.tied
        if self.divisor is not None:
            record["divisor"] = self.divisor
        return record


@dataclass(frozen=True, eq=False, repr=False)
class Pooling:
    """A pooling layer after the conv, and the output cells whose windows hold the explained cell.

    ``cells`` is empty when no window reaches the cell (a last row or column the pool drops).
    """

    index: int
    name: str
    type: str
    kind: str  # max, avg or global
    kernel_size: tuple[int, int]
    stride: tuple[int, int]
    cells: tuple[PoolCell, ...]
    reads: str | None = None  # as Elementwise.reads

    def record(self) -> dict[str, Any]:
        return {"index": self.index, "name": self.name, "type": self.type, **_reads(self.reads), "kind": self.kind,
                "kernel_size": list(self.kernel_size), "stride": list(self.stride),
                "cells": [cell.record() for cell in self.cells]}


@dataclass(frozen=True, eq=False, repr=False)
class Merge:
    """A layer that joins the cell's value with other maps: add, mul, sub, mean or concat.

    ``terms`` holds each input's name and its value at the cell (broadcast: a (C, 1, 1) gate's
    value for the cell's channel), in the layer's order; for a concat, only the followed input's.
    ``cell`` is the output cell the value lands in (a concat shifts it by ``offset`` along its
    dimension); None when the followed value is broadcast over many output cells.
    """

    index: int
    name: str
    type: str
    inputs: tuple[str, ...]  # everything the layer reads
    reads: str  # the one whose cell is followed
    terms: tuple[tuple[str, float], ...]
    cell: tuple[int, ...] | None
    value: float | None  # the merge's output at ``cell``
    offset: int | None = None  # concat only

    def record(self) -> dict[str, Any]:
        record: dict[str, Any] = {"index": self.index, "name": self.name, "type": self.type,
                                  "inputs": list(self.inputs), "input": self.reads,
                                  "terms": [{"name": name, "value": json_number(value)} for name, value in self.terms],
                                  "cell": None if self.cell is None else list(self.cell),
                                  "value": None if self.value is None else json_number(self.value)}
        if self.offset is not None:
            record["offset"] = self.offset
        return record


After = Union[Elementwise, Pooling, Merge]


def follow_cell(steps: Sequence[Step], index: int, channel: int, row: int, col: int, graph: bool = False
                ) -> list[After]:
    """What the layers that consume a conv's cell (channel, row, col) do to it: ``follow``."""
    return follow(steps, index, (channel, row, col), graph)


def follow(steps: Sequence[Step], index: int, cell: tuple[int, ...], graph: bool = False) -> list[After]:
    """What the layers that consume ``cell`` of step ``index`` do to it, in the order they run.

    A value is followed while it stays one cell: through element-wise layers (activations, batch
    norm, dropout, identity, element-wise math, and a softmax, where it becomes its share),
    through a merge whose output has the followed input's shape (add, mul, sub, mean; a concat
    shifts the cell), and into the pooling windows that hold it, where it stops. Other consumers
    (a conv, a flatten, a dense layer) are not followed. In a chain this is the layers right after
    the explained one, as far as the first pooling layer.
    """
    by_name = {step.name: step for step in steps}
    reached: dict[str, tuple[int, ...]] = {steps[index].name: tuple(cell)}  # value -> its cell
    found: list[After] = []
    for step in steps[index + 1:]:
        names = step.inputs or (steps[step.index - 1].name,)
        layer = step.layer
        for followed in [name for name in dict.fromkeys(names) if name in reached]:  # a merge may read two
            cell, before = reached[followed], by_name[followed]
            reads = followed if graph else None
            if keeps_place(step) and step.output.shape == before.output.shape:
                found.append(_elementwise(step, float(before.output[cell]), float(step.output[cell]), cell[0], reads))
                reached[step.name] = cell
            elif isinstance(layer, (Pool2d, GlobalAvgPool2d)) and before.output.ndim == 3:
                channel, row, col = cell
                found.append(_pooling(step, before.output[channel], channel, row, col, reads=reads))
            elif isinstance(layer, (Add, Mul, Sub, Mean, Concat)):
                merge = _merge(step, [by_name[name] for name in names], followed, cell)
                found.append(merge)
                if merge.cell is not None:
                    reached.setdefault(step.name, merge.cell)  # followed on from the first input that reaches it
                break  # one line per merge: its terms already show every input's value at the cell
    return found


def keeps_place(step: Step) -> bool:
    """Whether ``step``'s layer makes each value from the input's value at the same place (an
    activation, a batch norm, dropout, identity, element-wise math) or its share (a softmax)."""
    return len(step.inputs) <= 1 and (isinstance(step.layer, (Activation, Dropout, BatchNorm, Softmax,
                                                              base.Elementwise))
                                      or step.type in ("identity", "logsoftmax", "affine"))


def _merge(step: Step, inputs: Sequence[Step], followed: str, cell: tuple[int, ...]) -> Merge:
    """What a merge layer does with the value at ``cell`` of its input ``followed``."""
    layer = step.layer
    names = tuple(s.name for s in inputs)
    position = [s.name for s in inputs].index(followed)
    if isinstance(layer, Concat):
        along = axis(layer.dim, step.output.ndim, False) % step.output.ndim
        offset = sum(s.output.shape[along] for s in inputs[:position])
        out_cell = tuple(i + offset if k == along else i for k, i in enumerate(cell))
        value = float(inputs[position].output[cell])
        return Merge(step.index, step.name, step.type, names, followed, ((followed, value),), out_cell,
                     float(step.output[out_cell]), offset)
    if inputs[position].output.shape != step.output.shape:  # a (C, 1, 1) gate: it reaches many cells
        value = float(inputs[position].output[cell])
        return Merge(step.index, step.name, step.type, names, followed, ((followed, value),), None, None)
    # add, mul, sub, mean: each input's value at the cell, a size-1 dimension broadcast (a gate)
    terms = tuple((s.name, float(s.output[_broadcast_index(s.output.shape, cell)])) for s in inputs)
    return Merge(step.index, step.name, step.type, names, followed, terms, cell, float(step.output[cell]))


def _broadcast_index(shape: Sequence[int], cell: Sequence[int]) -> tuple[int, ...]:
    """The index of ``cell`` of a broadcast output in an input of ``shape``: 0 where its size is 1."""
    return tuple(0 if size == 1 else i for size, i in zip(shape, cell))


def _elementwise(step: Step, before: float, after: float, channel: int, reads: str | None = None) -> Elementwise:
    layer = step.layer
    if isinstance(layer, BatchNorm):
        scale, shift = ops.batch_norm_terms(layer.running_mean, layer.running_var, layer.weight, layer.bias, layer.eps)
        return Elementwise(step.index, step.name, step.type, before, after, scale=float(scale[channel]),
                           shift=float(shift[channel]), reads=reads)
    slope = layer.negative_slope if isinstance(layer, Activation) and layer.kind == "leaky_relu" else None
    if step.type == "prelu":  # one learned slope, or one per channel
        weight = np.asarray(layer.weight).reshape(-1)  # type: ignore[union-attr]
        slope = float(weight[channel if weight.size > 1 else 0])
    return Elementwise(step.index, step.name, step.type, before, after, negative_slope=slope, reads=reads)


def _pooling(step: Step, plane: np.ndarray, channel: int, row: int, col: int, reads: str | None = None) -> Pooling:
    """The pooling output cells whose windows hold (row, col) of ``plane``, the pool's input channel (H, W)."""
    layer = step.layer
    height, width = plane.shape
    if isinstance(layer, GlobalAvgPool2d):
        cell = PoolCell(0, 0, float(step.output[channel, 0, 0]), tuple(range(height)), tuple(range(width)), None,
                        divisor=height * width)
        return Pooling(step.index, step.name, step.type, "global", (height, width), (height, width), (cell,), reads)
    assert isinstance(layer, Pool2d)  # the caller follows a cell only into these two kinds of pooling
    dilation = layer.dilation if layer.kind == "max" else (1, 1)  # avg_pool2d has no dilation
    k, s, d, p, out, _ = ops.pool_geometry((height, width), layer.kernel_size, layer.stride, layer.padding,
                                           dilation, layer.ceil_mode)
    out_rows = _windows_holding(row, k[0], s[0], p[0], d[0], out[0])
    out_cols = _windows_holding(col, k[1], s[1], p[1], d[1], out[1])
    cells = []
    for i in out_rows:
        for j in out_cols:
            rows = [i * s[0] - p[0] + a * d[0] for a in range(k[0])]
            cols = [j * s[1] - p[1] + b * d[1] for b in range(k[1])]
            inside = np.logical_and.outer([0 <= r < height for r in rows], [0 <= c < width for c in cols])
            window = np.full(k, np.nan)
            window[inside] = plane[np.ix_([min(max(r, 0), height - 1) for r in rows],
                                          [min(max(c, 0), width - 1) for c in cols])][inside]
            value = float(step.output[channel, i, j])
            if layer.kind == "max":
                held = float(plane[row, col])
                pooled = window[inside & ~np.isnan(window)]  # np.nanmax would warn on a window of NaN alone
                best = pooled.max() if pooled.size else np.nan
                ties = int(np.count_nonzero(window[inside] == best))
                cells.append(PoolCell(i, j, value, tuple(rows), tuple(cols), window,
                                      is_max=bool(held == best), tied=bool(held == best and ties > 1)))
            else:
                counts = [_window_counts(size, k[a], s[a], p[a], out[a], layer.count_include_pad)[o]
                          for a, (size, o) in enumerate(((height, i), (width, j)))]
                cells.append(PoolCell(i, j, value, tuple(rows), tuple(cols), window,
                                      divisor=int(counts[0] * counts[1])))
    return Pooling(step.index, step.name, step.type, layer.kind, k, s, tuple(cells), reads)


def _windows_holding(index: int, kernel: int, stride: int, padding: int, dilation: int, out: int) -> list[int]:
    """The pooling outputs o along one axis whose window o*stride - padding + a*dilation (a < kernel) holds
    ``index``."""
    found = []
    for a in range(kernel):
        start = index + padding - a * dilation
        if start >= 0 and start % stride == 0 and start // stride < out:
            found.append(start // stride)
    return sorted(set(found))


def _reads(name: str | None) -> dict[str, str]:
    """``{"input": name}`` for a record in a graph; nothing in a chain (records as before)."""
    return {} if name is None else {"input": name}


def json_number(value: float) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def json_values(array: np.ndarray) -> Any:
    """Nested lists of Python floats (exactly the array's values); NaN and infinities become null."""
    values = np.asarray(array, dtype=np.float64)
    if np.all(np.isfinite(values)):
        return values.tolist()
    objects = values.astype(object)
    objects[~np.isfinite(values)] = None
    return objects.tolist()
