"""Element-wise activations beyond ops' relu/sigmoid/tanh, each as PyTorch defines it (torch.nn.*),
vectorised and in the input's dtype (float32 in, float32 out).

Each function computes in its output and at most two more arrays the size of the input, plus a
boolean mask, and says so in ``WORK`` (what ``pointwise_workspace`` counts). None overflows or
makes NaN from a finite input, however large: exponentials only ever see -|x|, polynomials a
clipped x, so no warning is raised either (NaN in gives NaN out).
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from .layers.base import map_bytes
from .scratch import _call_bytes

# Numerical Recipes' erfc (Press et al., 3rd ed., 6.2.2): erfc(z) = t exp(-z^2 + P(t)), t = 1 / (1 + z/2),
# for z >= 0, with a fractional error below 1.2e-7 everywhere: float32's own precision.
_ERFC = (-1.26551223, 1.00002368, 0.37409196, 0.09678418, -0.18628806, 0.27886807, -1.13520398, 1.48851587,
         -0.82215223, 0.17087277)
# Past this |x| Phi(x) is 0 or 1 even in float64 (erfc(40 / sqrt 2) underflows, tanh(sqrt(2/pi) * 2900)
# = 1), so x is clipped there before any power of it is taken, which could overflow.
_GELU_REACH = 40.0


def relu6(x: np.ndarray) -> np.ndarray:
    """min(max(x, 0), 6), as torch.nn.ReLU6 (hardtanh from 0 to 6)."""
    return np.clip(x, 0, 6)


def hardtanh(x: np.ndarray, min_val: float = -1.0, max_val: float = 1.0) -> np.ndarray:
    """x clipped to [min_val, max_val], as torch.nn.Hardtanh (NaN stays NaN)."""
    return np.clip(x, min_val, max_val)


def hardsigmoid(x: np.ndarray) -> np.ndarray:
    """min(max(x + 3, 0), 6) / 6: 0 up to -3, 1 from 3, a straight line between."""
    out = np.add(x, 3)
    np.clip(out, 0, 6, out=out)
    out /= 6
    return out


def hardsigmoid_affine(x: np.ndarray, alpha: float, beta: float) -> np.ndarray:
    """min(max(alpha x + beta, 0), 1), ONNX's HardSigmoid (its defaults are alpha 0.2, beta 0.5;
    PyTorch's Hardsigmoid is alpha 1/6, beta 0.5)."""
    out = np.multiply(x, np.asarray(alpha, dtype=x.dtype))
    out += np.asarray(beta, dtype=x.dtype)
    np.clip(out, 0, 1, out=out)
    return out


def hardswish(x: np.ndarray) -> np.ndarray:
    """x * min(max(x + 3, 0), 6) / 6, as torch.nn.Hardswish; the factor is taken first (at most 1),
    so that x near the dtype's largest value gives x, not inf."""
    out = hardsigmoid(x)
    out *= x
    return out


def silu(x: np.ndarray) -> np.ndarray:
    """x * sigmoid(x) (swish), as torch.nn.SiLU. With e = exp(-|x|), which cannot overflow:
    sigmoid(x) = 1 / (1 + e) for x >= 0 and e / (1 + e) below."""
    out = np.abs(x)
    np.negative(out, out=out)
    np.exp(out, out=out)  # e, in (0, 1]
    denominator = out + 1
    np.copyto(out, 1, where=x >= 0)
    out /= denominator
    out *= x
    return out


def _erfc_nonnegative(z: np.ndarray) -> np.ndarray:
    """erfc(z) for z >= 0 (the array z is used as work space and left holding -z^2)."""
    t = np.multiply(z, 0.5)
    t += 1
    np.divide(1, t, out=t)
    out = np.multiply(t, _ERFC[-1])
    for c in _ERFC[-2:0:-1]:  # Horner: P(t) = c0 + t (c1 + t (c2 + ... + t c9))
        out += c
        out *= t
    out += _ERFC[0]
    np.square(z, out=z)
    out -= z
    np.exp(out, out=out)  # underflows quietly to 0 for large z
    out *= t
    return out


def gelu(x: np.ndarray, approximate: str = "none") -> np.ndarray:
    """GELU as torch.nn.GELU: x * Phi(x), Phi the normal distribution function, exactly
    (``approximate="none"``: Phi(x) = erfc(-x / sqrt 2) / 2) or with PyTorch's tanh formula
    (``"tanh"``: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))). NumPy has no erf: erfc is
    Numerical Recipes' (fractional error < 1.2e-7), which also keeps Phi's own precision for
    negative x, where 1 + erf(x) would cancel. Raises ValueError for another ``approximate``."""
    if approximate == "tanh":
        clipped = np.clip(x, -_GELU_REACH, _GELU_REACH)
        out = np.square(clipped)
        out *= 0.044715
        out += 1
        out *= clipped
        del clipped
        out *= math.sqrt(2 / math.pi)
        np.tanh(out, out=out)
        out += 1
        out *= 0.5  # at most 1, before x: 0.5 (1 + t) x cannot overflow
        out *= x
        return out
    if approximate != "none":
        raise ValueError(f"approximate must be 'none' or 'tanh', got {approximate!r}")
    z = np.clip(x, -_GELU_REACH, _GELU_REACH)
    np.abs(z, out=z)
    z *= 1 / math.sqrt(2)
    out = _erfc_nonnegative(z)  # erfc(|x| / sqrt 2)
    del z
    out *= 0.5  # Phi(-|x|)
    np.subtract(1, out, out=out, where=x >= 0)  # Phi(x)
    out *= x
    return out


def elu(x: np.ndarray, alpha: float = 1.0) -> np.ndarray:
    """x for x > 0, alpha * (exp(x) - 1) elsewhere (with expm1, exact near 0), as torch.nn.ELU."""
    out = np.minimum(x, 0)
    np.expm1(out, out=out)
    out *= alpha
    np.copyto(out, x, where=x > 0)
    return out


def prelu(x: np.ndarray, weight: np.ndarray, axis: int = 0) -> np.ndarray:
    """x for x > 0, weight * x elsewhere, as torch.nn.PReLU: ``weight`` has one value, or one per
    index of ``axis`` (the channels of a map, the features of a vector)."""
    weight = np.asarray(weight, dtype=x.dtype).reshape(-1)
    if weight.size > 1:
        weight = weight.reshape((-1,) + (1,) * (x.ndim - axis % x.ndim - 1))  # C, 1, 1 on a map
    out = np.multiply(x, weight)
    np.copyto(out, x, where=x > 0)
    return out


def softplus(x: np.ndarray, beta: float = 1.0, threshold: float = 20.0) -> np.ndarray:
    """log(1 + exp(beta x)) / beta, and x itself where beta x > threshold, as torch.nn.Softplus.

    Below the threshold it is computed as max(beta x, 0) + log1p(exp(-|beta x|)), which cannot
    overflow: with a threshold above ~88 / beta PyTorch's float32 gives inf there, this the value.
    """
    with np.errstate(over="ignore"):  # beta x past the dtype's largest is inf: above any threshold, as it should
        scaled = np.multiply(x, beta)
    linear = scaled > threshold
    out = _softplus_of(scaled)
    if beta != 1:
        out /= beta
    np.copyto(out, x, where=linear)
    return out


def _softplus_of(y: np.ndarray) -> np.ndarray:
    """log(1 + exp(y)) without overflow, written over ``y`` (which is returned)."""
    e = np.abs(y)
    np.negative(e, out=e)
    np.exp(e, out=e)
    np.log1p(e, out=e)
    np.maximum(y, 0, out=y)
    y += e
    return y


def mish(x: np.ndarray) -> np.ndarray:
    """x * tanh(softplus(x)), as torch.nn.Mish (softplus computed without overflow)."""
    out = _softplus_of(np.array(x, copy=True))
    np.tanh(out, out=out)
    out *= x
    return out


# For each function, the arrays of the input's size it holds at once besides its output, and
# whether it makes a boolean mask of that size too.
WORK = {
    "relu6": (0, False), "hardtanh": (0, False), "hardsigmoid": (0, False), "hardswish": (0, False),
    "silu": (1, True), "gelu": (2, True), "gelu_tanh": (1, False), "elu": (0, True), "prelu": (0, True),
    "softplus": (1, True), "mish": (1, False),
}


def pointwise_workspace(kind: str, shape: Sequence[int], itemsize: int = 4) -> int:
    """Bytes the function ``kind`` allocates for an input of ``shape``: its output, its work
    arrays and mask (``WORK``; gelu with approximate="tanh" is "gelu_tanh"), each rounded as the
    allocator does, and NumPy's call buffers."""
    size = math.prod(shape)
    copies, mask = WORK[kind]
    return ((1 + copies) * map_bytes(size, itemsize) + (map_bytes(size, 1) if mask else 0)
            + _call_bytes(itemsize))


