"""Explainers of layers that sum or pick among many values: dense, transposed conv, pooling (max,
average, global, adaptive), softmax and log-softmax, bilinear upsampling (``cnn explain``).

A sum is shown as a table of its terms, the largest first, with the total; a pooling cell as the
window it reads, padding included, with the max's place or the average's divisor. Every value is
recomputed in float64 from the layer's input and weights (in the run's precision, as the layer
multiplies them).
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from . import ops, resample
from .explain_layer import Context, Source, Terms, Window, Working, explains
from .follow import keeps_place
from .graph import Step
from .layers import Dense, GlobalAvgPool2d, Pool2d, Softmax
from .layers.base import axis, pair_text
from .layers.spatial import AdaptivePool2d, ConvTranspose2d, GlobalMaxPool2d, Upsample
from .layers.unary import LogSoftmax
from .pooling import _window_counts


def _largest_first(contributions: np.ndarray) -> np.ndarray:
    """The order of the terms by |contribution|, the largest first (the first index on a tie)."""
    return np.argsort(-np.abs(np.nan_to_num(contributions, nan=np.inf)), kind="stable")


@explains(Dense)
def _dense(ctx: Context) -> Working:
    unit = ctx.cell[0]
    x = ctx.source.output.astype(np.float64)  # in
    weight = np.asarray(ctx.layer.weight[unit], dtype=ctx.dtype()).astype(np.float64)  # in
    products = x * weight + 0.0  # + 0.0 turns -0.0 into 0.0
    total = float(products.sum())
    bias = None if ctx.layer.bias is None else float(np.asarray(ctx.layer.bias, dtype=ctx.dtype()).reshape(-1)[unit])
    value = total + (bias or 0.0)
    names = input_names(ctx, ctx.source)
    order = _largest_first(products)
    with_names = any(names)
    rows = tuple((int(i), *([names[i]] if with_names else []), float(x[i]), float(weight[i]), float(products[i]))
                 for i in order)
    columns = ("input", *(["from"] if with_names else []), "x", "weight", "x * weight")
    terms = Terms(columns, rows, "the largest |x * weight| first", total=len(columns) - 1)
    n = x.size
    symbols = f"x[0] * weight[{unit}, 0] + ... + x[{n - 1}] * weight[{unit}, {n - 1}]" if n > 1 else \
        f"x[0] * weight[{unit}, 0]"
    lines: tuple[str, ...]
    if bias is None:
        lines = (f"y = {symbols} (no bias)", "  = {y!}")
        numbers = {"sum": total, "y": value}
    else:
        lines = (f"y = {symbols} + bias", "  = {sum} + {bias}", "  = {y!}")
        numbers = {"sum": total, "bias": bias, "y": value}
    text = f"each of the {n} inputs (values of {ctx.source.name}) times unit {unit}'s weight for it, summed"
    return Working(lines, numbers, value, text, terms=terms,
                   magnitude=float(np.abs(products).sum()) + abs(bias or 0.0), count=n + 1)


def input_names(ctx: Context, source: Step) -> list[str]:
    """For each value of a vector ``source``, where it came from: "pool2[3, 1, 0]" when the vector
    is a map flattened (through layers that keep each value's place), else its label, else ""."""
    step = source
    while step.index > 0 and step.output.shape == source.output.shape and keeps_place(step):
        step = ctx.steps[step.index - 1] if not step.inputs else next(s for s in ctx.steps if s.name == step.inputs[0])
    if step.type == "flatten" and step.output.shape == source.output.shape:
        flattened = step.inputs[0] if step.inputs else ctx.steps[step.index - 1].name
        shape = step.in_shape
        return [f"{flattened}[{', '.join(map(str, np.unravel_index(i, shape)))}]" for i in range(source.output.size)]
    return [ctx.label(source, (i,)) for i in range(source.output.size)]


@explains(ConvTranspose2d)
def _conv_transpose(ctx: Context) -> Working:
    layer = ctx.layer
    f, row, col = ctx.cell
    x = ctx.source.output  # C, H, W
    channels, height, width = x.shape
    _, per_group, kh, kw = layer.weight.shape
    group = f // per_group
    group_channels = channels // layer.groups
    weight = np.asarray(layer.weight, dtype=ctx.dtype())
    taps_h = _landing(row, kh, layer.stride[0], layer.padding[0], layer.dilation[0], height)
    taps_w = _landing(col, kw, layer.stride[1], layer.padding[1], layer.dilation[1], width)
    rows = []
    for c in range(group * group_channels, (group + 1) * group_channels):
        for i, h in taps_h:
            for j, w in taps_w:
                value, tap = float(x[c, h, w]), float(weight[c, f - group * per_group, i, j])
                rows.append((c, h, w, f"{i},{j}", value, tap, value * tap + 0.0))
    products = np.array([r[-1] for r in rows], dtype=np.float64)
    order = _largest_first(products) if rows else np.zeros(0, dtype=int)
    total = float(products.sum())
    bias = None if layer.bias is None else float(np.asarray(layer.bias, dtype=ctx.dtype()).reshape(-1)[f])
    value = total + (bias or 0.0)
    terms = Terms(("channel", "row", "col", "tap", "x", "weight", "x * weight"), tuple(rows[k] for k in order),
                  "the largest |x * weight| first", total=6)
    n = len(rows)
    text = (f"each input cell adds its value times the kernel to the output, {pair_text(layer.stride)} apart "
            f"(stride); {n} input cell-and-tap pairs land on row {row}, col {col} of filter {f}")
    if not n:
        text = f"no input cell's kernel reaches row {row}, col {col}: it holds the bias alone"
    lines = ("y = the sum of x * weight over the input cells and taps landing here" +
             (" + bias" if bias is not None else ""),
             *(("  = {sum} + {bias}",) if bias is not None else ()), "  = {y!}")
    numbers = {"sum": total, **({"bias": bias} if bias is not None else {}), "y": value}
    return Working(lines, numbers, value, text, terms=terms,
                   magnitude=float(np.abs(products).sum()) + abs(bias or 0.0), count=n + 1)


def _landing(out: int, kernel: int, stride: int, padding: int, dilation: int, size: int) -> list[tuple[int, int]]:
    """The (tap, input index) pairs along one axis whose input cell lands on output ``out``:
    h * stride - padding + tap * dilation = out, h inside the input."""
    found = []
    for tap in range(kernel):
        start = out + padding - tap * dilation
        if start % stride == 0 and 0 <= start // stride < size:
            found.append((tap, start // stride))
    return found


# --- Pooling ----------------------------------------------------------------------------------

def _window(ctx: Context, channel: int, rows: Sequence[int], cols: Sequence[int]) -> Window:
    """The cells of ``ctx.source``'s ``channel`` at ``rows`` x ``cols`` (outside the plane: padding, NaN)."""
    plane = ctx.source.output[channel]
    height, width = plane.shape
    inside = np.logical_and.outer([0 <= r < height for r in rows], [0 <= c < width for c in cols])  # KH, KW
    values = np.full(inside.shape, np.nan)
    values[inside] = plane[np.ix_([min(max(r, 0), height - 1) for r in rows],
                                  [min(max(c, 0), width - 1) for c in cols])][inside]
    return Window(ctx.source.name, channel, tuple(rows), tuple(cols), values, ~inside)


def _max(ctx: Context, window: Window, what: str) -> Working:
    """The window's largest value (padding takes no part; NaN wins, as in PyTorch)."""
    inside = window.values[~window.padding]
    value = float(np.max(inside)) if inside.size else -math.inf
    winners = tuple((int(i), int(j)) for i, j in zip(*np.nonzero(window.values == value)))
    if math.isnan(value):
        winners = tuple((int(i), int(j)) for i, j in zip(*np.nonzero(np.isnan(window.values) & ~window.padding)))
    window = Window(window.step, window.channel, window.rows, window.cols, window.values, window.padding, winners)
    places = "; ".join(f"row {window.rows[i]}, col {window.cols[j]}" for i, j in winners[:4])
    ties = f" ({len(winners)} cells hold it)" if len(winners) > 1 else ""
    text = f"the largest of the {inside.size} values {what}: at {window.step} channel {window.channel}, {places}{ties}"
    if window.padding.any():
        text += "; padding takes no part"
    return Working(("y = max of the window's values", "  = {y!}"), {"y": value}, value, text, window=window,
                   count=1)


def _mean(window: Window, divisor: int, what: str, note: str = "") -> Working:
    """The sum of the window's values (padding counts 0) over ``divisor``."""
    inside = window.values[~window.padding]
    total = float(inside.sum())
    value = total / divisor
    text = f"the sum of the {inside.size} values {what}, divided by {divisor}" + (f"; {note}" if note else "")
    return Working(("y = (the sum of the window's values) / divisor", "  = {sum} / {divisor}", "  = {y!}"),
                   {"sum": total, "divisor": float(divisor), "y": value}, value, text, window=window,
                   magnitude=float(np.abs(inside).sum()) / divisor, count=inside.size + 2)


@explains(Pool2d)
def _pool(ctx: Context) -> Working:
    layer = ctx.layer
    c, i, j = ctx.cell
    size = ctx.source.output.shape[1:]
    dilation = layer.dilation if layer.kind == "max" else (1, 1)  # avg_pool2d has no dilation
    k, s, d, p, out, _ = ops.pool_geometry(size, layer.kernel_size, layer.stride, layer.padding, dilation,
                                           layer.ceil_mode)
    rows = [i * s[0] - p[0] + a * d[0] for a in range(k[0])]
    cols = [j * s[1] - p[1] + b * d[1] for b in range(k[1])]
    window = _window(ctx, c, rows, cols)
    where = f"in its {k[0]}x{k[1]} window (stride {pair_text(s)})"
    if layer.kind == "max":
        return _max(ctx, window, where)
    counts = [int(_window_counts(size[a], k[a], s[a], p[a], out[a], layer.count_include_pad)[o])
              for a, o in ((0, i), (1, j))]
    divisor = counts[0] * counts[1]
    padded = int(window.padding.sum())
    note = ""
    if padded and layer.count_include_pad:
        note = (f"count_include_pad: the divisor counts the padding's zeros ({counts[0]}x{counts[1]} cells inside "
                "the padded input)")
    elif padded:
        note = "count_include_pad false: only the cells inside the input count"
    return _mean(window, divisor, where, note)


@explains(GlobalAvgPool2d)
def _global_avg(ctx: Context) -> Working:
    c = ctx.cell[0]
    height, width = ctx.source.output.shape[1:]
    window = _window(ctx, c, range(height), range(width))
    return _mean(window, height * width, f"of channel {c} ({height}x{width})")


@explains(GlobalMaxPool2d)
def _global_max(ctx: Context) -> Working:
    c = ctx.cell[0]
    height, width = ctx.source.output.shape[1:]
    return _max(ctx, _window(ctx, c, range(height), range(width)), f"of channel {c} ({height}x{width})")


@explains(AdaptivePool2d)
def _adaptive(ctx: Context) -> Working:
    c, i, j = ctx.cell
    (height, width), (out_h, out_w) = ctx.source.output.shape[1:], ctx.step.output.shape[1:]
    row_bins, col_bins = resample.adaptive_bins(height, out_h), resample.adaptive_bins(width, out_w)
    rows = range(int(row_bins[0][i]), int(row_bins[1][i]))
    cols = range(int(col_bins[0][j]), int(col_bins[1][j]))
    window = _window(ctx, c, rows, cols)
    where = (f"in its bin (rows floor({i}*{height}/{out_h}) to ceil({i + 1}*{height}/{out_h}) - 1, cols likewise: "
             "PyTorch's adaptive bins)")
    if ctx.layer.kind == "max":
        return _max(ctx, window, where)
    return _mean(window, len(rows) * len(cols), where)


# --- Softmax ----------------------------------------------------------------------------------

def _along(ctx: Context, dim: int) -> tuple[int, tuple, np.ndarray, list[str]]:
    """The axis of ``dim``, the index of the vector along it through the cell, that vector (float64)
    and its values' labels."""
    ndim = ctx.step.output.ndim
    along = axis(dim, ndim, False) % ndim
    index = tuple(slice(None) if k == along else i for k, i in enumerate(ctx.cell))
    vector = ctx.source.output[index].astype(np.float64)
    labels = [ctx.label(ctx.source, tuple(m if k == along else i for k, i in enumerate(ctx.cell)))
              for m in range(vector.size)]
    return along, index, vector, labels


def _exponentials(ctx: Context, dim: int) -> tuple[dict[str, float], Terms, str, float]:
    """x, max, exp(x - max) and their sum for the cell's vector; the table of them, the largest x
    first; the words for the vector; the largest |x - max| of a value that counts."""
    along, _, vector, labels = _along(ctx, dim)
    k = ctx.cell[along]
    top = float(np.max(vector))
    with np.errstate(all="ignore"):
        shifted = vector - top
        exps = np.exp(shifted)
    total = float(exps.sum())
    order = np.argsort(-np.nan_to_num(vector, nan=np.inf), kind="stable")
    with_labels = any(labels)
    rows = tuple((int(m), *([labels[m]] if with_labels else []), float(vector[m]), float(shifted[m]),
                  float(exps[m])) for m in order)
    columns = ("index", *(["label"] if with_labels else []), "x", "x - max", "exp(x - max)")
    terms = Terms(columns, rows, "the largest x first", total=len(columns) - 1,
                  marked=int(np.nonzero(order == k)[0][0]))
    numbers = {"x": float(vector[k]), "max": top, "e": float(exps[k]), "sum": total}
    n = vector.size
    what = f"the {n} values of the vector" if ctx.step.output.ndim == 1 else \
        f"the {n} channels at this row and col" if along == 0 and ctx.step.output.ndim == 3 else \
        f"the {n} values along dim {dim}"
    counted = np.abs(shifted[exps > 1e-30])
    reach = float(counted.max()) if counted.size else 0.0
    return numbers, terms, what, reach


@explains(Softmax)
def _softmax(ctx: Context) -> Working:
    numbers, terms, what, reach = _exponentials(ctx, ctx.layer.dim)
    value = numbers["e"] / numbers["sum"]
    lines = ("y = exp(x - max) / (the sum of exp(x - max) over the vector)",
             "  = exp({x} - {max}) / {sum}", "  = {e} / {sum}", "  = {y!}")
    text = (f"softmax over {what}: each value's exponential (less the max, so none overflows) as a share of "
            "their sum; the shares add up to 1")
    return Working(lines, {**numbers, "y": value}, value, text, (Source("x", ctx.source.name, ctx.cell),),
                   terms=terms, magnitude=abs(value) * (2 + reach + abs(numbers["x"] - numbers["max"])),
                   count=len(terms.rows) + 4)


@explains(LogSoftmax)
def _log_softmax(ctx: Context) -> Working:
    numbers, terms, what, reach = _exponentials(ctx, ctx.layer.dim)
    log_sum = math.log(numbers["sum"]) if numbers["sum"] > 0 else -math.inf
    value = numbers["x"] - numbers["max"] - log_sum
    lines = ("y = x - max - log(the sum of exp(x - max) over the vector)",
             "  = {x} - {max} - log({sum})", "  = {y!}")
    text = f"log-softmax over {what}: the log of softmax's share, computed without overflow"
    return Working(lines, {**numbers, "y": value}, value, text, (Source("x", ctx.source.name, ctx.cell),),
                   terms=terms, magnitude=2 + reach + abs(numbers["x"]) + abs(numbers["max"]) + abs(log_sum),
                   count=len(terms.rows) + 4)


# --- Upsampling -------------------------------------------------------------------------------

@explains(Upsample)
def _upsample(ctx: Context) -> Working:
    layer = ctx.layer
    c, row, col = ctx.cell
    x = ctx.source.output
    (height, width), (out_h, out_w) = x.shape[1:], ctx.step.output.shape[1:]
    scales = (None, None) if layer.scale_factor is None or layer.recompute_scale_factor else layer.scale_factor
    if layer.mode == "nearest":
        r = int(resample.nearest_indices(height, out_h, scales[0])[row])
        q = int(resample.nearest_indices(width, out_w, scales[1])[col])
        value = float(x[c, r, q])
        text = (f"nearest: output row {row}, col {col} copies input row {r}, col {q} (each index scaled down, "
                f"{height}->{out_h} rows and {width}->{out_w} cols, rounded down)")
        return Working(("y = x, the nearest input cell", "  = {y!}"), {"x": value, "y": value}, value, text,
                       (Source("x", ctx.source.name, (c, r, q)),), count=1)
    dtype = ctx.dtype()
    r0, r1, rw0, rw1 = (a[row] for a in resample.linear_taps(height, out_h, scales[0], layer.align_corners, dtype))
    c0, c1, cw0, cw1 = (a[col] for a in resample.linear_taps(width, out_w, scales[1], layer.align_corners, dtype))
    weights: dict[tuple[int, int], float] = {}  # at an edge both taps of an axis are one cell: its weights add
    for r, rw in ((int(r0), float(rw0)), (int(r1), float(rw1))):
        for q, cw in ((int(c0), float(cw0)), (int(c1), float(cw1))):
            weights[(r, q)] = weights.get((r, q), 0.0) + rw * cw
    rows = [(r, q, weight, float(x[c, r, q]), weight * float(x[c, r, q])) for (r, q), weight in weights.items()]
    total = float(sum(term[-1] for term in rows))
    corners = "align_corners: the corner cells line up" if layer.align_corners else "half-pixel centres"
    text = (f"bilinear ({corners}): the two nearest input rows ({int(r0)}, {int(r1)}) and cols ({int(c0)}, "
            f"{int(c1)}), each weighted by how near it is; weight = row weight x col weight")
    terms = Terms(("row", "col", "weight", "x", "weight * x"), tuple(rows), "by row, then col", total=4)
    return Working(("y = the sum of weight * x over the nearest input cells", "  = {y!}"), {"y": total}, total,
                   text, terms=terms, magnitude=float(sum(abs(term[-1]) for term in rows)), count=6)

