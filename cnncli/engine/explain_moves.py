"""Explainers of layers that move values or merge maps: flatten, reshape, pad, slice, channel shuffle,
concat; add, sub, mul, mean, max and min (``cnn explain``).

A move says which input cell the value came from (or the constant a padding holds); a merge
shows each input's value at the cell, with the place a broadcast input is read at.
"""

from __future__ import annotations

import math
from functools import reduce

import numpy as np

from .explain import _source as padded_source
from .explain_layer import Context, Source, Working, cell_text, explains
from .layers import Flatten
from .layers.base import axis
from .layers.merge import Add, Concat, Max, Mean, Min, Mul, Sub
from .layers.shaping import ChannelShuffle, Pad, Reshape, Slice


def _moved(ctx: Context, cell: tuple[int, ...], text: str, position: int = 0, note: str = "") -> Working:
    """y is input ``position``'s value at ``cell``, as ``text`` says."""
    value = ctx.read(cell, position)
    return Working(("y = x", "  = {y!}"), {"x": value, "y": value}, value, text,
                   (Source("x", ctx.inputs[position].name, cell, note),), count=1)


@explains(Flatten)
def _flatten(ctx: Context) -> Working:
    shape = ctx.source.output.shape
    cell = tuple(int(i) for i in np.unravel_index(ctx.cell[0], shape))
    order = "channel by channel, each row by row" if len(shape) == 3 else "in C order (the last index fastest)"
    return _moved(ctx, cell, f"flatten lays {ctx.source.name}'s {'x'.join(map(str, shape))} values out in a row, "
                             f"{order}: unit {ctx.cell[0]} is {cell_text(cell)}")


@explains(Reshape)
def _reshape(ctx: Context) -> Working:
    shape = ctx.source.output.shape
    flat = int(np.ravel_multi_index(ctx.cell, ctx.step.output.shape))
    cell = tuple(int(i) for i in np.unravel_index(flat, shape))
    into = "x".join(map(str, ctx.step.output.shape))
    return _moved(ctx, cell, f"reshape reads {ctx.source.name}'s {'x'.join(map(str, shape))} values in row-major "
                             f"order as {into}: value {flat} in that order, {cell_text(cell)} of the input")


@explains(Slice)
def _slice(ctx: Context) -> Working:
    layer = ctx.layer
    along = axis(layer.dim, ctx.step.output.ndim, False) % ctx.step.output.ndim
    start, _, step = slice(layer.start, layer.end, layer.step).indices(ctx.source.output.shape[along])
    taken = start + ctx.cell[along] * step
    cell = tuple(taken if k == along else i for k, i in enumerate(ctx.cell))
    kept = f"{start}, {start + step}, {start + 2 * step}, ..." if step > 1 else f"{start}, {start + 1}, ..."
    return _moved(ctx, cell, f"slice keeps indices {kept} of dim {layer.dim} (start {start}, step {step}): index "
                             f"{ctx.cell[along]} here is index {taken} of {ctx.source.name}")


@explains(ChannelShuffle)
def _channel_shuffle(ctx: Context) -> Working:
    groups = ctx.layer.groups
    channels = ctx.source.output.shape[0]
    out = ctx.cell[0]
    taken = (out % groups) * (channels // groups) + out // groups
    return _moved(ctx, (taken, *ctx.cell[1:]),
                  f"channel shuffle deals the {groups} groups of {channels // groups} channels out in turn: channel "
                  f"{out} is channel {out // groups} of group {out % groups}, input channel {taken}")


@explains(Pad)
def _pad(ctx: Context) -> Working:
    layer = ctx.layer
    left, _, top, _ = layer.padding
    c, row, col = ctx.cell
    height, width = ctx.source.output.shape[1:]
    at = (row - top, col - left)  # in the input's coordinates
    if 0 <= at[0] < height and 0 <= at[1] < width:
        return _moved(ctx, (c, *at), f"not padding: row {row}, col {col} is {ctx.source.name}'s row {at[0]}, col "
                                     f"{at[1]} (the padding adds {_count(top, 'row')} above and "
                                     f"{_count(left, 'col')} to the left)")
    if layer.mode == "constant":
        value = float(np.asarray(layer.value, dtype=ctx.dtype()))
        return Working(("y = the padding's constant", "  = {y!}"), {"y": value}, value,
                       f"row {at[0]}, col {at[1]} of the input's coordinates is outside it: padding, which holds "
                       "the constant", count=1)
    source = (padded_source(at[0], height, layer.mode), padded_source(at[1], width, layer.mode))
    copies = [f"{word} {a} holds {word} {s}" for word, a, s in zip(("row", "col"), at, source) if a != s]
    return _moved(ctx, (c, int(source[0] or 0), int(source[1] or 0)),
                  f"padding, {layer.mode} mode: {', '.join(copies)} (in the input's coordinates)",
                  note=f"{layer.mode} padding")


def _count(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


@explains(Concat)
def _concat(ctx: Context) -> Working:
    along = axis(ctx.layer.dim, ctx.step.output.ndim, False) % ctx.step.output.ndim
    offset, position = 0, 0
    for position, step in enumerate(ctx.inputs):  # noqa: B007 (the input whose slice holds the cell)
        if ctx.cell[along] < offset + step.output.shape[along]:
            break
        offset += step.output.shape[along]
    cell = tuple(i - offset if k == along else i for k, i in enumerate(ctx.cell))
    what = "channels" if along == 0 and ctx.step.output.ndim == 3 else f"dim {ctx.layer.dim}"
    before = f"after the {offset} of the inputs before it" if offset else "first"
    return _moved(ctx, cell, f"concat joins its inputs' {what}: index {ctx.cell[along]} comes from "
                             f"{ctx.inputs[position].name} ({before}), its index {cell[along]}", position)


_MERGES = {Add: " + ", Sub: " - ", Mul: " * ", Mean: None, Max: "max", Min: "min"}
_FOLDS = {Add: np.add, Sub: np.subtract, Mul: np.multiply, Mean: np.add, Max: np.maximum, Min: np.minimum}


@explains(*_MERGES)
def _merge(ctx: Context) -> Working:
    kind = type(ctx.layer)
    names = [step.name for step in ctx.inputs]
    cells = [tuple(0 if size == 1 else i for size, i in zip(step.output.shape, ctx.cell)) for step in ctx.inputs]
    values = [ctx.read(cell, k) for k, cell in enumerate(cells)]
    keys = [f"x{k}" for k in range(len(values))]
    with np.errstate(all="ignore"):
        value = float(reduce(_FOLDS[kind], [np.float64(v) for v in values]))
        if kind is Mean:
            value /= len(values)
    operator = _MERGES[kind]
    placed = ", ".join(f"{{{key}}}" for key in keys)
    if kind is Mean:
        formula, written = f"({' + '.join(names)}) / {len(names)}", f"({' + '.join(f'{{{k}}}' for k in keys)}) / " \
                                                                    f"{len(names)}"
    elif operator in ("max", "min"):
        formula, written = f"{operator}({', '.join(names)})", f"{operator}({placed})"
    else:
        assert operator is not None
        formula, written = operator.join(names), operator.join(f"{{{k}}}" for k in keys)
    sources = tuple(Source(key, step.name, cell, _broadcast_note(step.output.shape, ctx.step.output.shape))
                    for key, step, cell in zip(keys, ctx.inputs, cells))
    text = f"{ctx.step.type} of {len(values)} inputs, value by value at this cell"
    if any(source.note for source in sources):
        text += "; an input with a size-1 dimension is read at index 0 there, for every cell (broadcast)"
    if kind in (Max, Min) and not math.isnan(value):
        winner = names[values.index(value)]
        text += f"; {winner}'s value is the {'largest' if kind is Max else 'smallest'}"
    exact = kind in (Max, Min)
    magnitude = abs(value) * len(values) if kind is Mul else float(sum(abs(v) for v in values))
    return Working((f"y = {formula}", f"  = {written}", "  = {y!}"), {**dict(zip(keys, values)), "y": value}, value,
                   text, sources, magnitude=magnitude, count=1 if exact else len(values) + 1)


def _broadcast_note(shape: tuple[int, ...], out: tuple[int, ...]) -> str:
    """"broadcast over rows and cols" when ``shape`` has size 1 where the output has more."""
    words = ("channels", "rows", "cols") if len(out) == 3 else tuple(f"dim {k + 1}" for k in range(len(out)))
    stretched = [word for word, size, full in zip(words, shape, out) if size == 1 and full > 1]
    return f"broadcast over {' and '.join(stretched)}" if stretched else ""
