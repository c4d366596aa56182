"""Element-wise math of one input, as ONNX's unary operators and torch's functions of the same name:
exp, log, sqrt, neg, abs, erf, pow (a constant exponent), reciprocal; and logsoftmax along ``dim``.

Each keeps its input's shape and dtype. Values outside a function's domain give what NumPy gives
(log of a negative number is nan, of 0 -inf; 1/0 is inf), quietly: forward runs under
``np.errstate(all="ignore")``, as ONNX Runtime and PyTorch compute them without a word.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from .. import pointwise
from ..scratch import _call_bytes
from .base import Elementwise, Shape, axis, check_dim, map_bytes, register

if TYPE_CHECKING:
    from ...io.modelfile import LayerSpec

# erf(10) is 1 to within 2e-45, below float64's resolution near 1: |x| is clipped there, so that z^2
# inside erfc cannot overflow.
_ERF_REACH = 10.0


class _Ufunc(Elementwise):
    """One NumPy ufunc, value by value: the output and no other array the size of the input."""

    ufunc: ClassVar[Any] = None
    work_copies: ClassVar[int] = 0

    def working_bytes(self, *shapes: Shape, itemsize: int = 4) -> int:
        size = math.prod(shapes[0])
        return (1 + self.work_copies) * map_bytes(size, itemsize) + _call_bytes(itemsize)

    def forward(self, x: np.ndarray, batched: bool = False) -> np.ndarray:
        with np.errstate(all="ignore"):
            return type(self).ufunc(x)


@register
@dataclass(frozen=True, eq=False, repr=False)
class Exp(_Ufunc):
    """e^x, as torch.exp and ONNX's Exp (inf past log of the dtype's largest value)."""

    name: str = "exp"
    types: ClassVar = ("exp",)
    ufunc: ClassVar = np.exp


@register
@dataclass(frozen=True, eq=False, repr=False)
class Log(_Ufunc):
    """The natural logarithm, as torch.log and ONNX's Log: -inf at 0, nan below."""

    name: str = "log"
    types: ClassVar = ("log",)
    ufunc: ClassVar = np.log


@register
@dataclass(frozen=True, eq=False, repr=False)
class Sqrt(_Ufunc):
    """The square root, as torch.sqrt and ONNX's Sqrt: nan below 0."""

    name: str = "sqrt"
    types: ClassVar = ("sqrt",)
    ufunc: ClassVar = np.sqrt


@register
@dataclass(frozen=True, eq=False, repr=False)
class Neg(_Ufunc):
    """-x, as torch.neg and ONNX's Neg."""

    name: str = "neg"
    types: ClassVar = ("neg",)
    ufunc: ClassVar = np.negative


@register
@dataclass(frozen=True, eq=False, repr=False)
class Abs(_Ufunc):
    """|x|, as torch.abs and ONNX's Abs."""

    name: str = "abs"
    types: ClassVar = ("abs",)
    ufunc: ClassVar = np.abs


@register
@dataclass(frozen=True, eq=False, repr=False)
class Reciprocal(_Ufunc):
    """1 / x, as torch.reciprocal and ONNX's Reciprocal: inf at 0 (with 0's sign)."""

    name: str = "reciprocal"
    types: ClassVar = ("reciprocal",)

    def forward(self, x: np.ndarray, batched: bool = False) -> np.ndarray:
        with np.errstate(all="ignore"):
            return np.divide(np.asarray(1, x.dtype), x)


@register
@dataclass(frozen=True, eq=False, repr=False)
class Erf(_Ufunc):
    """The error function, as torch.erf and ONNX's Erf; no scipy at run time. For |x| >= 0.5,
    sign(x) (1 - erfc(|x|)) with Numerical Recipes' erfc (../pointwise.py, fractional error
    < 1.2e-7); below, where 1 - erfc would lose the digits of a small erf, its Maclaurin series
    2/sqrt(pi) sum (-1)^n x^(2n+1) / (n! (2n+1)) to n = 7 (the next term is < 3e-11 of it)."""

    name: str = "erf"
    types: ClassVar = ("erf",)
    work_copies: ClassVar[int] = 3  # |x| clipped and erfc's t; then the small values, their square and sum

    def working_bytes(self, *shapes: Shape, itemsize: int = 4) -> int:
        return super().working_bytes(*shapes, itemsize=itemsize) + map_bytes(math.prod(shapes[0]), 1)  # the mask

    def forward(self, x: np.ndarray, batched: bool = False) -> np.ndarray:
        with np.errstate(all="ignore"):
            z = np.abs(x)
            np.minimum(z, _ERF_REACH, out=z)  # nan stays nan
            out = pointwise._erfc_nonnegative(z)  # erfc(|x|); z is left holding -x^2
            del z
            np.subtract(1, out, out=out)  # erf(|x|)
            np.copysign(out, x, out=out)
            small = np.abs(x) < _ERF_SERIES  # (its temporary is freed before the mask is used)
            if small.any():
                out[small] = _erf_series(x[small])
            return out


def _erf_series(x: np.ndarray) -> np.ndarray:
    """erf(x) for |x| < 0.5 by its Maclaurin series, Horner's rule in x^2, in x's dtype."""
    square = np.square(x)
    total = np.full_like(x, _ERF_TERMS[-1])
    for c in _ERF_TERMS[-2::-1]:
        total *= square
        total += c
    total *= x
    total *= 2 / math.sqrt(math.pi)
    return total


_ERF_SERIES = 0.5
_ERF_TERMS = tuple((-1) ** n / (math.factorial(n) * (2 * n + 1)) for n in range(8))


@register
@dataclass(frozen=True, eq=False, repr=False)
class Pow(_Ufunc):
    """x ** exponent, a constant, as torch.pow(x, exponent) and ONNX's Pow with a constant exponent:
    nan for a negative x and a fractional exponent, inf for 0 and a negative one."""

    exponent: float = 1.0
    name: str = "pow"
    types: ClassVar = ("pow",)
    keys: ClassVar = ("exponent",)
    required: ClassVar = ("exponent",)

    @classmethod
    def from_spec(cls, spec: LayerSpec) -> Pow:
        return cls(spec.number("exponent"), spec.name)

    def forward(self, x: np.ndarray, batched: bool = False) -> np.ndarray:
        with np.errstate(all="ignore"):
            if self.exponent == 2:
                return np.square(x)
            return np.power(x, np.asarray(self.exponent, x.dtype))

    def settings(self) -> dict[str, Any]:
        return {"exponent": self.exponent}

    def describe(self) -> str:
        return f"x^{self.exponent:g}"


@register
@dataclass(frozen=True, eq=False, repr=False)
class LogSoftmax:
    """log(softmax(x)) along ``dim``, as torch.nn.LogSoftmax and ONNX's LogSoftmax (opset 13): with
    the maximum m subtracted first, x - m - log(sum(exp(x - m))), which neither overflows nor takes
    the log of an underflowed 0. ``dim`` counts the batch (1: the channels of a map)."""

    name: str = "logsoftmax"
    dim: int = 1
    type: ClassVar = "logsoftmax"
    types: ClassVar = ("logsoftmax",)
    keys: ClassVar = ("dim",)
    required: ClassVar = ()
    inputs: ClassVar[tuple[int, int | None]] = (1, 1)
    params: ClassVar = 0

    @classmethod
    def from_spec(cls, spec: LayerSpec) -> LogSoftmax:
        return cls(spec.name, spec.integer("dim", 1, -8, 8))

    def output_shape(self, shape: Shape) -> Shape:
        check_dim(self.dim, len(shape))
        return shape

    def forward(self, x: np.ndarray, batched: bool = False) -> np.ndarray:
        along = axis(self.dim, x.ndim, batched)
        with np.errstate(all="ignore"):
            out = np.subtract(x, np.max(x, axis=along, keepdims=True))  # x - m
            total = np.exp(out).sum(axis=along, keepdims=True)  # (.., 1, ..)
            np.log(total, out=total)
            out -= total
            return out

    def working_bytes(self, in_shape: Shape, itemsize: int = 4) -> int:
        size = math.prod(in_shape)
        reduced = size // max(1, in_shape[axis(self.dim, len(in_shape), False)])
        return 2 * map_bytes(size, itemsize) + 2 * map_bytes(reduced, itemsize) + _call_bytes(itemsize)

    def macs(self, out_shape: Shape) -> int:
        return 0

    def settings(self) -> dict[str, Any]:
        return {"dim": self.dim}

    def describe(self) -> str:
        return "channels" if self.dim == 1 else f"dim {self.dim}"
