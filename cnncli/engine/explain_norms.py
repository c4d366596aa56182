"""Explainers of normalisations and constant arithmetic: batch norm, instance, group and layer norm,
local response norm and affine (``cnn explain``).

Each writes (x - mean) / sqrt(var + eps) * weight + bias (or its own formula) with the cell's
numbers: stored statistics for batch norm, or the mean and biased variance of the values the layer
normalises together, recomputed in float64 from the layer's input.
"""

from __future__ import annotations

import math

import numpy as np

from .explain_layer import Context, Source, Terms, Working, explains
from .layers import BatchNorm
from .layers.affine import Affine
from .layers.norms import GroupNorm, InstanceNorm2d, LayerNorm, LocalResponseNorm


def _param(array: np.ndarray | None, index, ctx: Context, default: float | None) -> float | None:
    """One value of a layer's parameter array, in the run's precision; ``default`` when it has none."""
    if array is None:
        return default
    return float(np.asarray(array, dtype=ctx.dtype())[index])


def _normalised(ctx: Context, mean: float, var: float, eps: float, weight: float | None, bias: float | None,
                text: str, spread: float, count: int) -> Working:
    """(x - mean) / sqrt(var + eps), times weight and plus bias when the layer has them.

    ``spread`` is the largest |value| the statistics were taken over, and ``count`` how many
    values: the rounding the forward pass's own statistics carry."""
    x = ctx.read()
    deviation = x - mean
    sd = math.sqrt(var + eps)
    y = deviation / sd
    formula, written = "(x - mean) / sqrt(var + eps)", "({x} - {mean}) / sqrt({var} + {eps})"
    numbers = {"x": x, "mean": mean, "var": var, "eps": eps}
    middle = "{deviation} / {sd}"
    if weight is not None:
        formula, written, middle = f"{formula} * weight", f"{written} * {{weight}}", f"{middle} * {{weight}}"
        numbers["weight"] = weight
        y *= weight
    if bias is not None:
        formula, written, middle = f"{formula} + bias", f"{written} + {{bias}}", f"{middle} + {{bias}}"
        numbers["bias"] = bias
        y += bias
    numbers |= {"deviation": deviation, "sd": sd, "y": y}
    scale = abs(weight if weight is not None else 1.0) / sd
    magnitude = (abs(x) + spread) * scale + abs(bias or 0.0) + abs(y)
    return Working((f"y = {formula}", f"  = {written}", f"  = {middle}", "  = {y!}"), numbers, y, text,
                   (Source("x", ctx.source.name, ctx.cell),), magnitude=magnitude, count=count + 4)


@explains(BatchNorm)
def _batch_norm(ctx: Context) -> Working:
    layer, f = ctx.layer, ctx.cell[0]
    what = "channel" if layer.kind == "batchnorm2d" else "feature"
    stored = [float(np.asarray(a, dtype=np.float64)[f]) for a in (layer.running_mean, layer.running_var)]
    weight = None if layer.weight is None else float(np.asarray(layer.weight, dtype=np.float64)[f])
    bias = None if layer.bias is None else float(np.asarray(layer.bias, dtype=np.float64)[f])
    text = (f"mean and var are {what} {f}'s running statistics, kept from training" +
            ("; weight and bias its learned scale and shift" if weight is not None else "; no learned scale (affine "
                                                                                          "false)"))
    return _normalised(ctx, stored[0], stored[1], layer.eps, weight, bias, text, abs(stored[0]), 1)


@explains(InstanceNorm2d)
def _instance_norm(ctx: Context) -> Working:
    layer, c = ctx.layer, ctx.cell[0]
    weight, bias = _param(layer.weight, c, ctx, None), _param(layer.bias, c, ctx, None)
    if layer.running_mean is not None and layer.running_var is not None:
        mean, var = _param(layer.running_mean, c, ctx, 0.0), _param(layer.running_var, c, ctx, 1.0)
        return _normalised(ctx, mean or 0.0, var or 0.0, _eps(layer.eps, ctx), weight, bias,
                           f"mean and var are channel {c}'s stored statistics (track_running_stats)",
                           abs(mean or 0.0), 1)
    plane = ctx.source.output[c]
    return _over(ctx, plane, layer.eps, weight, bias,
                 f"mean and var are those of the {plane.size} values of channel {c} of {ctx.source.name} "
                 "(this map's own statistics; the variance divides by their number)")


@explains(GroupNorm)
def _group_norm(ctx: Context) -> Working:
    layer, c = ctx.layer, ctx.cell[0]
    x = ctx.source.output
    per = x.shape[0] // layer.num_groups
    group = c // per
    block = x[group * per:(group + 1) * per]
    weight, bias = _param(layer.weight, c, ctx, None), _param(layer.bias, c, ctx, None)
    channels = f"channel {group * per}" if per == 1 else f"channels {group * per}..{(group + 1) * per - 1}"
    return _over(ctx, block, layer.eps, weight, bias,
                 f"mean and var are those of the {block.size} values of group {group} of {layer.num_groups} "
                 f"({channels}) of {ctx.source.name}; weight and bias are channel {c}'s")


@explains(LayerNorm)
def _layer_norm(ctx: Context) -> Working:
    layer = ctx.layer
    k = len(layer.normalized_shape)
    lead, tail = ctx.cell[:len(ctx.cell) - k], ctx.cell[len(ctx.cell) - k:]
    block = ctx.source.output[lead]
    weight, bias = _param(layer.weight, tail, ctx, None), _param(layer.bias, tail, ctx, None)
    shape = list(layer.normalized_shape)
    if not lead:
        whose = "the whole sample"
    elif len(ctx.cell) == 3:
        whose = f"channel {lead[0]}"
    else:
        whose = f"index {', '.join(map(str, lead))} of the dimensions before them"
    return _over(ctx, block, layer.eps, weight, bias,
                 f"mean and var are those of the {block.size} values normalized_shape {shape} covers, here of "
                 f"{whose} of {ctx.source.name}" + ("; weight and bias are this position's" if weight is not None
                                                    else ""))


def _over(ctx: Context, block: np.ndarray, eps: float, weight: float | None, bias: float | None,
          text: str) -> Working:
    """Normalised with the mean and biased variance of ``block``, the values normalised together.

    The statistics are taken in the run's precision, two passes as the layer takes them: where
    the squares overflow it (values past 1e19 in float32), the variance is inf there too, and the
    explanation shows the value the network gave, saying why."""
    block = block.astype(ctx.dtype())
    mean = block.mean(dtype=block.dtype)
    var = float(np.square(block - mean).mean(dtype=block.dtype))
    if not math.isfinite(var) and all(math.isfinite(v) for v in (float(mean), ctx.read())):
        text += f"; the squared deviations overflow {block.dtype} (var is inf), so x - mean counts as 0"
    spread = float(np.abs(block.astype(np.float64)).max()) if block.size else 0.0
    return _normalised(ctx, float(mean), var, _eps(eps, ctx), weight, bias, text, spread, block.size)


def _eps(eps: float, ctx: Context) -> float:
    return float(np.asarray(eps, dtype=ctx.dtype()))


@explains(LocalResponseNorm)
def _local_response_norm(ctx: Context) -> Working:
    layer = ctx.layer
    c, *position = ctx.cell
    x = ctx.source.output
    first, last = max(0, c - layer.size // 2), min(x.shape[0] - 1, c + (layer.size - 1) // 2)
    values = x[(slice(first, last + 1),) + tuple(position)]  # the neighbouring channels' values
    squares = np.square(values)  # in the run's precision, as the layer: a square past its range is inf there too
    total = float(squares.sum(dtype=squares.dtype))
    base = layer.k + layer.alpha / layer.size * total
    power = float(np.power(np.float64(base), layer.beta))
    value = ctx.read()
    y = value / power
    rows = tuple((first + i, ctx.label(ctx.source, (first + i, *position)), float(v), float(s))
                 for i, (v, s) in enumerate(zip(values, squares)))
    numbers = {"x": value, "k": layer.k, "alpha": layer.alpha, "size": layer.size, "s": total, "beta": layer.beta,
               "d": power, "y": y}
    lines = ("y = x / (k + alpha / size * s)^beta, s the sum of x^2 over the neighbouring channels",
             "  = {x} / ({k} + {alpha} / {size} * {s})^{beta}", "  = {x} / {d}", "  = {y!}")
    channels = f"channels {first}..{last}" if last > first else f"channel {first}"
    text = (f"local response norm divides by the energy of {channels} at this row and col (size {layer.size}, "
            "centred on the channel; those past either end count as 0)")
    terms = Terms(("channel", "label", "x", "x^2"), rows, "by channel")
    log_base = abs(math.log(base)) if base > 0 and math.isfinite(base) else 0.0
    return Working(lines, numbers, y, text, (Source("x", ctx.source.name, ctx.cell),), terms=terms,
                   magnitude=abs(y) * (1 + abs(layer.beta) * (1 + log_base)), count=layer.size + 6)


@explains(Affine)
def _affine(ctx: Context) -> Working:
    layer = ctx.layer
    x = ctx.read()
    numbers = {"x": x}
    formula, written, y = "x", "{x}", x
    magnitude = abs(x)
    words = []
    for key, array in (("scale", layer.scale), ("shift", layer.shift)):
        if array is None:
            continue
        array = np.asarray(array, dtype=ctx.dtype())
        index = _aligned(array.shape, ctx.cell)
        value = float(array[index])
        numbers[key] = value
        words.append(f"{key} {'one number' if array.size == 1 else 'at ' + ', '.join(map(str, index))}")
        if key == "scale":
            formula, written, y = f"{formula} * scale", f"{written} * {{scale}}", y * value
            magnitude = abs(y)
        else:
            formula, written, y = f"{formula} + shift", f"{written} + {{shift}}", y + value
            magnitude += abs(value)
    numbers["y"] = y
    text = "constants of the network's arithmetic (" + ("; ".join(words) or "none") + "), broadcast over the input"
    return Working((f"y = {formula}", f"  = {written}", "  = {y!}"), numbers, y, text,
                   (Source("x", ctx.source.name, ctx.cell),), magnitude=magnitude)


def _aligned(shape: tuple[int, ...], cell: tuple[int, ...]) -> tuple[int, ...]:
    """The index of ``cell`` in an array of ``shape`` that broadcasts against it, aligned from the
    right: 0 along its dimensions of size 1."""
    tail = cell[len(cell) - len(shape):] if shape else ()
    return tuple(0 if size == 1 else i for size, i in zip(shape, tail))
