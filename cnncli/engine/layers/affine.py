"""A layer that multiplies its input by constants and adds constants: what an imported graph's
arithmetic with a stored tensor becomes (ONNX ``Add``, ``Sub``, ``Mul`` or ``Div`` with an
initializer, a normalisation folded into the network, a bias after ``MatMul``).

The constants broadcast against a sample as NumPy does, aligned from the right: a (C, 1, 1) scale
is one factor per channel of a (C, H, W) map, a scalar one for every value. A batch (N, C, H, W)
broadcasts the same way, so ``forward`` is the same for both.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from ...errors import ShapeError
from .base import Shape, map_bytes, register

if TYPE_CHECKING:
    from ...io.modelfile import LayerSpec


@register
@dataclass(frozen=True, eq=False, repr=False)
class Affine:
    """y = x * scale + shift, with ``scale`` and ``shift`` arrays (or None: 1 and 0) that broadcast
    against a sample and have at most its number of dimensions. In a model file both are numbers
    or one value per channel of a map."""

    scale: np.ndarray | None = None
    shift: np.ndarray | None = None
    name: str = "affine"
    type = "affine"
    types: ClassVar = ("affine",)
    keys: ClassVar = ("scale", "shift")
    required: ClassVar = ()
    inputs: ClassVar[tuple[int, int | None]] = (1, 1)

    @classmethod
    def from_spec(cls, spec: LayerSpec) -> Affine:
        arrays = []
        for key in ("scale", "shift"):
            values = spec.numbers(key)
            if values is None:
                arrays.append(None)
                continue
            if len(values) not in (1, spec.shape[0] if spec.shape else 1):
                raise spec.fail(key, f"expected one number or one per channel ({spec.shape[0]}), got {len(values)}")
            shape = (len(values),) + (1,) * (len(spec.shape) - 1) if len(values) > 1 else ()
            arrays.append(np.asarray(values, dtype=np.float32).reshape(shape))
        return cls(arrays[0], arrays[1], spec.name)

    def output_shape(self, shape: Shape) -> Shape:
        for what, array in (("scale", self.scale), ("shift", self.shift)):
            if array is None:
                continue
            if array.ndim > len(shape):
                raise ShapeError(f"{what} has shape {array.shape}, more dimensions than the input {shape}")
            try:
                out = np.broadcast_shapes(shape, array.shape)
            except ValueError:
                raise ShapeError(f"{what} of shape {array.shape} does not broadcast with the input {shape}") from None
            if out != tuple(shape):
                raise ShapeError(f"{what} of shape {array.shape} would grow the input {shape} to {out}; expected "
                                 "constants no larger than the input along each dimension")
        return tuple(shape)

    def forward(self, x: np.ndarray, batched: bool = False) -> np.ndarray:
        out = x if self.scale is None else np.multiply(x, self.scale.astype(x.dtype, copy=False))
        if self.shift is not None:
            if out is x:
                out = np.add(x, self.shift.astype(x.dtype, copy=False))
            else:
                out += self.shift.astype(x.dtype, copy=False)
        return out if out is not x else x.copy()

    def working_bytes(self, in_shape: Shape, itemsize: int = 4) -> int:
        return map_bytes(math.prod(in_shape), itemsize) + (1 << 12)

    @property
    def params(self) -> int:
        return 0  # constants of the graph, not learned parameters of a layer

    def macs(self, out_shape: Shape) -> int:
        return math.prod(out_shape)

    def settings(self) -> dict[str, Any]:
        return {key: _listed(array) for key, array in (("scale", self.scale), ("shift", self.shift))
                if array is not None}

    def describe(self) -> str:
        parts = []
        if self.scale is not None:
            parts.append(f"x {_text(self.scale)}")
        if self.shift is not None:
            parts.append(f"+ {_text(self.shift)}")
        return " ".join(parts) or "x"


def _listed(array: np.ndarray) -> Any:
    flat = array.reshape(-1)
    return float(flat[0]) if flat.size == 1 else [float(v) for v in flat]


def _text(array: np.ndarray) -> str:
    if array.size == 1:
        return f"{float(array.reshape(-1)[0]):g}"
    return f"{array.shape} {float(array.min()):g}..{float(array.max()):g}"
