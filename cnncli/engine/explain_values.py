"""Explainers of layers that make each value from the one value at the same cell: activations,
element-wise math, dropout and identity (``cnn explain``).

Each writes its formula in symbols, then with the cell's numbers, and recomputes it in float64
from PyTorch's definition (math.erf, math.tanh, numpy's exp), not by calling the layer. A constant
the layer multiplies by (a slope, an alpha) is taken in the run's precision, as the layer uses it.
"""

from __future__ import annotations

import math

import numpy as np

from .explain_layer import Context, Source, Working, explains
from .layers import Activation, Dropout
from .layers.activations import ELU, GELU, Hardsigmoid, Hardswish, Hardtanh, Mish, PReLU, ReLU6, SiLU, Softplus
from .layers.shaping import Identity
from .layers.unary import Abs, Erf, Exp, Log, Neg, Pow, Reciprocal, Sqrt

# The error function's computation in the layers (Numerical Recipes' erfc, ../pointwise.py) is
# good to a fractional error of 1.2e-7; twice that bounds what it may differ from math.erf.
ERF_ERROR = 2.4e-7


def _worked(ctx: Context, formula: str, steps: tuple[str, ...], numbers: dict[str, float], value: float,
            text: str = "", count: int = 4, magnitude: float | None = None, approx: float = 0.0) -> Working:
    """y = ``formula``, then each of ``steps`` (with the numbers), then the value; x read at the cell.
    A step that is x itself is left out when it is the value (identity, dropout)."""
    if value == numbers["x"] or (math.isnan(value) and math.isnan(numbers["x"])):
        steps = tuple(step for step in steps if step != "{x}")
    lines = (f"y = {formula}", *(f"  = {step}" for step in steps), "  = {y!}")
    return Working(lines, {**numbers, "y": value}, value, text, (Source("x", ctx.source.name, ctx.cell),),
                   count=count, magnitude=magnitude, approx=approx)


def _constant(value: float, ctx: Context) -> float:
    """A setting as the layer uses it: rounded to the run's precision."""
    return float(np.asarray(value, dtype=ctx.dtype()))


def _sigmoid(x: float) -> float:
    """1 / (1 + exp(-x)), from e = exp(-|x|), which cannot overflow."""
    if math.isnan(x):
        return math.nan
    e = math.exp(-abs(x))
    return 1 / (1 + e) if x >= 0 else e / (1 + e)


def _sign_text(x: float, unchanged: str, changed: str) -> str:
    return unchanged if x >= 0 else changed


@explains(Activation)
def _activation(ctx: Context) -> Working:
    x, kind = ctx.read(), ctx.layer.kind
    if kind == "relu":
        y = float(np.maximum(x, 0.0))
        return _worked(ctx, "max(x, 0)", ("max({x}, 0)",), {"x": x}, y,
                       _sign_text(x, "relu keeps a value of 0 or more as it is", "relu turns a negative value into 0"))
    if kind == "leaky_relu":
        slope = _constant(ctx.layer.negative_slope, ctx)
        if x >= 0 or math.isnan(x):
            return _worked(ctx, "x if x >= 0, else negative_slope * x", ("{x}",), {"x": x, "negative_slope": slope},
                           x, "x >= 0: leaky_relu keeps it as it is")
        return _worked(ctx, "x if x >= 0, else negative_slope * x", ("{negative_slope} * {x}",),
                       {"x": x, "negative_slope": slope}, slope * x, "x < 0: leaky_relu scales it by its slope")
    if kind == "sigmoid":
        e = float(np.exp(np.float64(-x)))
        return _worked(ctx, "1 / (1 + exp(-x))", ("1 / (1 + exp(-{x}))", "1 / (1 + {e})"), {"x": x, "e": e},
                       _sigmoid(x), "sigmoid squashes any value into 0..1")
    if kind == "tanh":
        return _worked(ctx, "tanh(x)", ("tanh({x})",), {"x": x}, math.tanh(x),
                       "tanh squashes any value into -1..1")
    return _worked(ctx, "x (no activation)", ("{x}",), {"x": x}, x)


@explains(ReLU6)
def _relu6(ctx: Context) -> Working:
    x = ctx.read()
    return _worked(ctx, "min(max(x, 0), 6)", ("min(max({x}, 0), 6)",), {"x": x}, float(np.clip(x, 0.0, 6.0)),
                   "relu6 clips the value to 0..6")


@explains(Hardtanh)
def _hardtanh(ctx: Context) -> Working:
    x = ctx.read()
    low, high = _constant(ctx.layer.min_val, ctx), _constant(ctx.layer.max_val, ctx)
    return _worked(ctx, "min(max(x, min_val), max_val)", ("min(max({x}, {min_val}), {max_val})",),
                   {"x": x, "min_val": low, "max_val": high}, float(np.clip(x, low, high)),
                   "hardtanh clips the value to min_val..max_val")


@explains(Hardswish)
def _hardswish(ctx: Context) -> Working:
    x = ctx.read()
    gate = float(np.clip(x + 3, 0.0, 6.0)) / 6
    return _worked(ctx, "x * min(max(x + 3, 0), 6) / 6", ("{x} * min(max({x} + 3, 0), 6) / 6", "{x} * {gate}"),
                   {"x": x, "gate": gate}, x * gate, "hardswish scales x by a gate that rises from 0 at -3 to 1 at 3",
                   magnitude=abs(x))


@explains(Hardsigmoid)
def _hardsigmoid(ctx: Context) -> Working:
    x, layer = ctx.read(), ctx.layer
    if layer.pytorch:
        return _worked(ctx, "min(max(x + 3, 0), 6) / 6", ("min(max({x} + 3, 0), 6) / 6",), {"x": x},
                       float(np.clip(x + 3, 0.0, 6.0)) / 6,
                       "hardsigmoid rises in a straight line from 0 at -3 to 1 at 3", magnitude=abs(x) / 6 + 0.5)
    alpha, beta = _constant(layer.alpha, ctx), _constant(layer.beta, ctx)
    return _worked(ctx, "min(max(alpha * x + beta, 0), 1)", ("min(max({alpha} * {x} + {beta}, 0), 1)",),
                   {"x": x, "alpha": alpha, "beta": beta}, float(np.clip(alpha * x + beta, 0.0, 1.0)),
                   "hardsigmoid (ONNX's) clips alpha * x + beta to 0..1", magnitude=abs(alpha * x) + abs(beta))


@explains(SiLU)
def _silu(ctx: Context) -> Working:
    x = ctx.read()
    s = _sigmoid(x)
    return _worked(ctx, "x * sigmoid(x) = x / (1 + exp(-x))", ("{x} * {sigmoid}",), {"x": x, "sigmoid": s}, x * s,
                   "silu (swish) scales x by its sigmoid", count=6)


def _softplus_value(z: float) -> float:
    """log(1 + exp(z)) without overflow."""
    return max(z, 0.0) + math.log1p(math.exp(-abs(z))) if math.isfinite(z) else max(z, 0.0)


@explains(Mish)
def _mish(ctx: Context) -> Working:
    x = ctx.read()
    softplus = _softplus_value(x)
    t = math.tanh(softplus)
    return _worked(ctx, "x * tanh(softplus(x)), softplus(x) = log(1 + exp(x))",
                   ("{x} * tanh({softplus})", "{x} * {tanh}"), {"x": x, "softplus": softplus, "tanh": t}, x * t,
                   "mish scales x by tanh of its softplus", count=8)


@explains(GELU)
def _gelu(ctx: Context) -> Working:
    x = ctx.read()
    if ctx.layer.approximate == "tanh":
        with np.errstate(all="ignore"):
            u = float(math.sqrt(2 / math.pi) * (np.float64(x) + 0.044715 * np.float64(x) ** 3))
        t = math.tanh(u)
        return _worked(ctx, "0.5 * x * (1 + tanh(sqrt(2 / pi) * (x + 0.044715 * x^3)))",
                       ("0.5 * {x} * (1 + tanh({u}))", "0.5 * {x} * (1 + {tanh})"), {"x": x, "u": u, "tanh": t},
                       0.5 * x * (1 + t), "gelu (tanh approximation) scales x by about the chance that a normal "
                                          "variable is below x", count=8, magnitude=abs(x) * (1 + abs(u)))
    phi = 0.5 * math.erfc(-x / math.sqrt(2)) if not math.isnan(x) else math.nan
    return _worked(ctx, "x * Phi(x), Phi(x) = (1 + erf(x / sqrt(2))) / 2", ("{x} * {Phi}",), {"x": x, "Phi": phi},
                   x * phi, "gelu scales x by Phi(x), the chance that a standard normal variable is below x",
                   magnitude=abs(x), approx=ERF_ERROR)


@explains(ELU)
def _elu(ctx: Context) -> Working:
    x = ctx.read()
    alpha = _constant(ctx.layer.alpha, ctx)
    if x > 0 or math.isnan(x):
        return _worked(ctx, "x if x > 0, else alpha * (exp(x) - 1)", ("{x}",), {"x": x, "alpha": alpha}, x,
                       "x > 0: elu keeps it as it is")
    em1 = math.expm1(x)
    return _worked(ctx, "x if x > 0, else alpha * (exp(x) - 1)", ("{alpha} * (exp({x}) - 1)", "{alpha} * {expm1}"),
                   {"x": x, "alpha": alpha, "expm1": em1}, alpha * em1,
                   "x <= 0: elu bends it smoothly towards -alpha")


@explains(Softplus)
def _softplus(ctx: Context) -> Working:
    x = ctx.read()
    beta, threshold = _constant(ctx.layer.beta, ctx), ctx.layer.threshold
    scaled = float(np.float64(x) * beta)
    numbers = {"x": x, "beta": beta, "threshold": threshold, "beta_x": scaled}
    formula = "log(1 + exp(beta * x)) / beta, or x where beta * x > threshold"
    if scaled > threshold:
        return _worked(ctx, formula, ("{x}",), numbers, x, "beta * x = {beta_x} is above the threshold {threshold}: "
                                                           "softplus gives x itself there")
    return _worked(ctx, formula, ("log(1 + exp({beta} * {x})) / {beta}", "log(1 + exp({beta_x})) / {beta}"), numbers,
                   _softplus_value(scaled) / beta, "softplus is a smooth relu", count=6,
                   magnitude=abs(_softplus_value(scaled) / beta) + abs(x))


@explains(PReLU)
def _prelu(ctx: Context) -> Working:
    x = ctx.read()
    weight = np.asarray(ctx.layer.weight, dtype=ctx.dtype()).reshape(-1)
    slope = float(weight[ctx.cell[0] if weight.size > 1 else 0])
    whose = f"channel {ctx.cell[0]}'s learned slope" if weight.size > 1 else "its learned slope"
    if x > 0 or math.isnan(x):
        return _worked(ctx, "x if x > 0, else weight * x", ("{x}",), {"x": x, "weight": slope}, x,
                       "x > 0: prelu keeps it as it is")
    return _worked(ctx, "x if x > 0, else weight * x", ("{weight} * {x}",), {"x": x, "weight": slope}, slope * x,
                   f"x <= 0: prelu scales it by {whose}")


@explains(Dropout)
def _dropout(ctx: Context) -> Working:
    x = ctx.read()
    return _worked(ctx, "x", ("{x}",), {"x": x}, x, "dropout does nothing at inference: it drops values only while "
                                                    "a network trains")


@explains(Identity)
def _identity(ctx: Context) -> Working:
    x = ctx.read()
    return _worked(ctx, "x", ("{x}",), {"x": x}, x, "identity passes its input on unchanged")


_UFUNCS = {  # formula, its written form, the function in float64, what it does
    Exp: ("exp(x)", "exp({x})", np.exp, "e to the power x"),
    Log: ("log(x)", "log({x})", np.log, "the natural logarithm: -inf at 0, nan below"),
    Sqrt: ("sqrt(x)", "sqrt({x})", np.sqrt, "the square root: nan below 0"),
    Neg: ("-x", "-{x}", np.negative, "x with its sign changed"),
    Abs: ("|x|", "|{x}|", np.abs, "x without its sign"),
    Reciprocal: ("1 / x", "1 / {x}", np.reciprocal, "one over x: inf at 0"),
}


@explains(*_UFUNCS)
def _ufunc(ctx: Context) -> Working:
    formula, written, function, words = _UFUNCS[type(ctx.layer)]
    x = ctx.read()
    return _worked(ctx, formula, (written,), {"x": x}, float(function(np.float64(x))), f"{ctx.step.type}: {words}")


@explains(Pow)
def _pow(ctx: Context) -> Working:
    x = ctx.read()
    exponent = _constant(ctx.layer.exponent, ctx)
    y = float(np.power(np.float64(x), exponent))
    return _worked(ctx, "x ^ exponent", ("{x} ^ {exponent}",), {"x": x, "exponent": exponent}, y,
                   "x to a constant power")


@explains(Erf)
def _erf(ctx: Context) -> Working:
    x = ctx.read()
    y = math.erf(x) if not math.isnan(x) else math.nan
    return _worked(ctx, "erf(x) = 2 / sqrt(pi) * (the integral of exp(-t^2) from 0 to x)", ("erf({x})",), {"x": x},
                   y, "the error function: from -1 to 1, through 0", approx=ERF_ERROR)
