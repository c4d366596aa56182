"""Element-wise activations (relu, leaky_relu, sigmoid, tanh, none) by name in ``ACTIVATIONS``, and
softmax, each with its ``*_workspace`` twin; more activations are in pointwise.py.

Big maps are worked through one cache-sized chunk at a time, so that a temporary (a mask, 1 + exp)
never takes a map's size; every result has the values of the plain NumPy expression.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np

from .scratch import _call_bytes, _zeros


# Element-wise ops work through big maps this many values at a time, so that a temporary (a mask,
# 1 + exp) is one cache-sized chunk, never a map-sized array.
_CHUNK = 1 << 15
_RELU_CHUNK = _CHUNK


def _chunks(x: np.ndarray):
    """(input chunk, output chunk) pairs over a new array shaped like the C-contiguous ``x``, and that array."""
    flat = x.reshape(-1)
    out = np.empty_like(flat)
    pieces = ((flat[start:start + _CHUNK], out[start:start + _CHUNK]) for start in range(0, flat.size, _CHUNK))
    return pieces, out.reshape(x.shape)


def _chunked(x: np.ndarray) -> bool:
    """Whether an element-wise op takes the chunked, in-place path: a big float map in C order
    (what every op returns); anything else takes a plain NumPy expression with the same values."""
    return x.dtype in (np.float32, np.float64) and x.size >= _CHUNK and x.flags.c_contiguous


def relu(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """max(x, 0), NaN kept; into ``out`` when given (which may be x itself: in place).

    np.maximum against a scalar misses NumPy's SIMD loop (3x slower than against an array), so
    the maximum is taken against a cached block of zeros, one cache-sized chunk at a time.
    """
    x = np.asarray(x)
    if x.dtype not in (np.float32, np.float64) or x.size < _RELU_CHUNK or not (out is None or out.flags.c_contiguous):
        return np.maximum(x, 0, out=out)
    flat = np.ascontiguousarray(x).reshape(-1)
    if out is None:
        out = np.empty_like(flat)
    into = out.reshape(-1)  # a view: ``out`` is C-contiguous, as conv2d's and every op's output is
    zeros = _zeros(_RELU_CHUNK, x.dtype)
    for start in range(0, flat.size, _RELU_CHUNK):
        stop = min(start + _RELU_CHUNK, flat.size)
        np.maximum(flat[start:stop], zeros[:stop - start], out=into[start:stop])
    return into.reshape(x.shape)


def leaky_relu(x: np.ndarray, negative_slope: float = 0.01) -> np.ndarray:
    """x where x >= 0, negative_slope * x elsewhere.

    For a slope in (0, 1] that is max(x, slope * x), and for a slope above 1 min(x, slope * x):
    the same values, infinities, NaN and signed zeros included (slope * x keeps the sign of x and
    rounds towards x), computed in the output itself, 10x faster than selecting with np.where.
    """
    x = np.asarray(x)
    slope = np.asarray(negative_slope, dtype=x.dtype)
    if x.dtype in (np.float32, np.float64) and slope > 0:
        out = np.multiply(x, slope)
        return (np.maximum if slope <= 1 else np.minimum)(x, out, out=out)
    if not _chunked(x):
        return np.where(x >= 0, x, x * slope)
    mask, scaled = np.empty(_CHUNK, dtype=bool), np.empty(_CHUNK, dtype=x.dtype)
    pieces, out = _chunks(x)
    for part, into in pieces:
        size = part.size
        scaled_part = np.multiply(part, slope, out=scaled[:size])
        into[...] = np.where(np.greater_equal(part, 0, out=mask[:size]), part, scaled_part)
    return out


def sigmoid(x: np.ndarray) -> np.ndarray:
    """1 / (1 + exp(-x)), computed from e = exp(-|x|) so that no exp overflows: 1 / (1 + e) where
    x >= 0, e / (1 + e) elsewhere."""
    x = np.asarray(x)
    if not _chunked(x):
        e = np.exp(-np.abs(x))
        return np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype, copy=False)
    mask, one_plus_e, at_least_0 = (np.empty(_CHUNK, dtype=dtype) for dtype in (bool, x.dtype, x.dtype))
    pieces, out = _chunks(x)
    for part, e in pieces:
        size = part.size
        np.negative(np.abs(part, out=e), out=e)
        np.exp(e, out=e)
        np.add(e, 1, out=one_plus_e[:size])
        np.divide(1, one_plus_e[:size], out=at_least_0[:size])
        np.divide(e, one_plus_e[:size], out=e)
        e[...] = np.where(np.greater_equal(part, 0, out=mask[:size]), at_least_0[:size], e)
    return out


def tanh(x: np.ndarray) -> np.ndarray:
    """Hyperbolic tangent."""
    return np.tanh(x)


def identity(x: np.ndarray) -> np.ndarray:
    """x unchanged (the activation "none")."""
    return x


def activation_workspace(kind: str, shape: Sequence[int], itemsize: int = 4, negative_slope: float = 0.01) -> int:
    """Bytes that activation ``kind`` allocates for a C-contiguous float input of ``shape``: the
    output (none for "none", which returns its input), plus for a big map relu's block of zeros
    (kept per thread until ``release_buffers``), or sigmoid's chunk of a mask, of 1 + exp, of
    1 / (1 + exp) and of the selection (leaky_relu's as much, for a slope of 0 or below)."""
    size = math.prod(shape)
    if kind == "none":
        return 0
    extra = 0
    if size >= _CHUNK:
        selects = kind == "sigmoid" or (kind == "leaky_relu" and not negative_slope > 0)
        extra = _RELU_CHUNK * itemsize if kind == "relu" else _CHUNK * (1 + 3 * itemsize) if selects else 0
    return size * itemsize + extra + _call_bytes(itemsize)


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """exp(x) / sum(exp(x)) along ``axis``, after subtracting the maximum so nothing overflows.
    The output holds every step (no map-sized temporary)."""
    x = np.asarray(x)
    if x.dtype not in (np.float32, np.float64):
        x = x.astype(np.float64)  # as exp would compute an integer input
    out = np.subtract(x, np.max(x, axis=axis, keepdims=True))
    np.exp(out, out=out)
    out /= out.sum(axis=axis, keepdims=True)
    return out


def softmax_workspace(shape: Sequence[int], itemsize: int = 4, axis: int = -1) -> int:
    """Bytes ``softmax`` allocates: the output, and the maxima and sums along ``axis``."""
    size = math.prod(shape)
    return (size + 2 * (size // max(1, shape[axis]))) * itemsize + _call_bytes(itemsize)


ACTIVATIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "relu": relu, "leaky_relu": leaky_relu, "sigmoid": sigmoid, "tanh": tanh, "none": identity}
