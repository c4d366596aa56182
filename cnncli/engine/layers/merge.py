"""Layers that read several maps: residual sums, gates, concatenations.

Broadcasting is PyTorch's on a batch (N, C, H, W): shapes are aligned from the right and a size of
1 stretches, so a (C, 1, 1) gate multiplies a (C, H, W) map. The inputs must have as many
dimensions as each other: a sample's shapes then broadcast exactly as the batch's do, whatever N.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from ...errors import ShapeError
from .base import Shape, axis, check_dim, map_bytes, register

if TYPE_CHECKING:
    from ...io.modelfile import LayerSpec


def broadcast_shape(shapes: tuple[Shape, ...]) -> Shape:
    """The shape PyTorch broadcasts ``shapes`` to; ShapeError when they do not broadcast."""
    ranks = {len(shape) for shape in shapes}
    if len(ranks) > 1:
        listed = ", ".join(str(tuple(shape)) for shape in shapes)
        raise ShapeError(f"inputs {listed} have different numbers of dimensions; expected maps with maps and "
                         "vectors with vectors (a gate is (C, 1, 1))")
    out = []
    for sizes in zip(*shapes):
        wider = {size for size in sizes if size != 1}
        if len(wider) > 1:
            listed = ", ".join(str(tuple(shape)) for shape in shapes)
            raise ShapeError(f"inputs {listed} do not broadcast: each dimension must be equal or 1")
        out.append(wider.pop() if wider else 1)
    return tuple(out)


@dataclass(frozen=True, eq=False, repr=False)
class _Elementwise:
    """Shared by add, mul, sub, mean, max and min: one output of the inputs' broadcast shape."""

    name: str
    inputs: ClassVar[tuple[int, int | None]] = (2, None)
    keys: ClassVar = ()
    required: ClassVar = ()
    params: ClassVar = 0

    @classmethod
    def from_spec(cls, spec: LayerSpec) -> Any:
        return cls(spec.name)

    @property
    def type(self) -> str:
        return self.types[0]  # type: ignore[attr-defined]

    def output_shape(self, *shapes: Shape) -> Shape:
        return broadcast_shape(shapes)

    def forward(self, *inputs: np.ndarray, batched: bool = False) -> np.ndarray:
        raise NotImplementedError

    def working_bytes(self, *shapes: Shape, itemsize: int = 4) -> int:
        return map_bytes(math.prod(self.output_shape(*shapes)), itemsize) + (1 << 12)

    def macs(self, out_shape: Shape) -> int:
        return 0

    def settings(self) -> dict[str, Any]:
        return {}

    def describe(self) -> str:
        return ""


def _fold(ufunc: np.ufunc, inputs: tuple[np.ndarray, ...]) -> np.ndarray:
    """``ufunc`` over the inputs left to right, in one new array when the first result already has
    the final shape (in place after that)."""
    out = ufunc(inputs[0], inputs[1])
    for x in inputs[2:]:
        if np.broadcast_shapes(out.shape, x.shape) == out.shape:
            ufunc(out, x, out=out)
        else:
            out = ufunc(out, x)
    return out


@register
@dataclass(frozen=True, eq=False, repr=False)
class Add(_Elementwise):
    """The sum of its inputs, as a residual connection adds a block's input to its output."""

    types: ClassVar = ("add",)

    def forward(self, *inputs: np.ndarray, batched: bool = False) -> np.ndarray:
        return _fold(np.add, inputs)


@register
@dataclass(frozen=True, eq=False, repr=False)
class Mul(_Elementwise):
    """The product of its inputs, as a squeeze-and-excitation gate scales each channel."""

    types: ClassVar = ("mul",)

    def forward(self, *inputs: np.ndarray, batched: bool = False) -> np.ndarray:
        return _fold(np.multiply, inputs)


@register
@dataclass(frozen=True, eq=False, repr=False)
class Sub(_Elementwise):
    """The first input minus the second."""

    types: ClassVar = ("sub",)
    inputs: ClassVar[tuple[int, int | None]] = (2, 2)

    def forward(self, *inputs: np.ndarray, batched: bool = False) -> np.ndarray:
        return np.subtract(inputs[0], inputs[1])


@register
@dataclass(frozen=True, eq=False, repr=False)
class Mean(_Elementwise):
    """The mean of its inputs, value by value (ONNX's Mean)."""

    types: ClassVar = ("mean",)

    def forward(self, *inputs: np.ndarray, batched: bool = False) -> np.ndarray:
        out = _fold(np.add, inputs)
        out /= np.asarray(len(inputs), out.dtype)
        return out


@register
@dataclass(frozen=True, eq=False, repr=False)
class Max(_Elementwise):
    """The largest of its inputs, value by value (torch.maximum, ONNX's Max); nan if any is nan."""

    types: ClassVar = ("max",)

    def forward(self, *inputs: np.ndarray, batched: bool = False) -> np.ndarray:
        return _fold(np.maximum, inputs)


@register
@dataclass(frozen=True, eq=False, repr=False)
class Min(_Elementwise):
    """The smallest of its inputs, value by value (torch.minimum, ONNX's Min); nan if any is nan."""

    types: ClassVar = ("min",)

    def forward(self, *inputs: np.ndarray, batched: bool = False) -> np.ndarray:
        return _fold(np.minimum, inputs)


@register
@dataclass(frozen=True, eq=False, repr=False)
class Concat:
    """Its inputs joined along ``dim`` (default 1: channels of maps, features of vectors), as
    torch.cat; every other dimension must be equal."""

    name: str
    dim: int = 1
    types: ClassVar = ("concat",)
    type: ClassVar = "concat"
    inputs: ClassVar[tuple[int, int | None]] = (1, None)
    keys: ClassVar = ("dim",)
    required: ClassVar = ()
    params: ClassVar = 0

    @classmethod
    def from_spec(cls, spec: LayerSpec) -> Concat:
        return cls(spec.name, spec.integer("dim", 1, -8, 8))

    def output_shape(self, *shapes: Shape) -> Shape:
        ndim = len(shapes[0])
        check_dim(self.dim, ndim)
        along = axis(self.dim, ndim, False) % ndim
        for shape in shapes[1:]:
            if len(shape) != ndim or any(a != b for i, (a, b) in enumerate(zip(shape, shapes[0])) if i != along):
                listed = ", ".join(str(tuple(s)) for s in shapes)
                raise ShapeError(f"inputs {listed} differ outside dim {self.dim}; expected equal sizes but along it")
        return tuple(sum(s[along] for s in shapes) if i == along else size for i, size in enumerate(shapes[0]))

    def forward(self, *inputs: np.ndarray, batched: bool = False) -> np.ndarray:
        return np.concatenate(inputs, axis=axis(self.dim, inputs[0].ndim, batched))

    def working_bytes(self, *shapes: Shape, itemsize: int = 4) -> int:
        return map_bytes(math.prod(self.output_shape(*shapes)), itemsize) + (1 << 12)

    def macs(self, out_shape: Shape) -> int:
        return 0

    def settings(self) -> dict[str, Any]:
        return {"dim": self.dim}

    def describe(self) -> str:
        return "channels" if self.dim == 1 else f"dim {self.dim}"
