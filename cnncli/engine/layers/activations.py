"""Activations beyond relu, leaky_relu, sigmoid and tanh (core.py): the ones MobileNet, EfficientNet,
transformers and their kin use, each a layer type with PyTorch's name, settings and meaning.

Each keeps its input's shape and dtype; the formulas and their memory are in ../pointwise.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from .. import pointwise
from ...errors import ShapeError
from .base import Elementwise, Shape, register

if TYPE_CHECKING:
    from ...io.modelfile import LayerSpec


class _Pointwise(Elementwise):
    """An activation of ../pointwise.py named by its type: ``forward`` calls it with ``settings()``."""

    def working_bytes(self, *shapes: Shape, itemsize: int = 4) -> int:
        return pointwise.pointwise_workspace(self.type, shapes[0], itemsize)

    def forward(self, x: np.ndarray, batched: bool = False) -> np.ndarray:
        return getattr(pointwise, self.type)(x, **self.settings())


@register
@dataclass(frozen=True, eq=False, repr=False)
class ReLU6(_Pointwise):
    """min(max(x, 0), 6), as torch.nn.ReLU6 (MobileNet's)."""

    name: str = "relu6"
    types: ClassVar = ("relu6",)


@register
@dataclass(frozen=True, eq=False, repr=False)
class Hardtanh(_Pointwise):
    """x clipped to [min_val, max_val], as torch.nn.Hardtanh."""

    min_val: float = -1.0
    max_val: float = 1.0
    name: str = "hardtanh"
    types: ClassVar = ("hardtanh",)
    keys: ClassVar = ("min_val", "max_val")

    @classmethod
    def from_spec(cls, spec: LayerSpec) -> Hardtanh:
        low, high = spec.number("min_val", -1.0), spec.number("max_val", 1.0)
        if not high > low:
            raise spec.fail("max_val", f"must be above min_val ({low:g}), got {high:g}")
        return cls(low, high, spec.name)

    def settings(self) -> dict[str, Any]:
        return {"min_val": self.min_val, "max_val": self.max_val}

    def describe(self) -> str:
        return f"clip to [{self.min_val:g}, {self.max_val:g}]"


@register
@dataclass(frozen=True, eq=False, repr=False)
class Hardswish(_Pointwise):
    """x * relu6(x + 3) / 6, as torch.nn.Hardswish (MobileNetV3's)."""

    name: str = "hardswish"
    types: ClassVar = ("hardswish",)


@register
@dataclass(frozen=True, eq=False, repr=False)
class Hardsigmoid(_Pointwise):
    """relu6(x + 3) / 6, as torch.nn.Hardsigmoid; or, with ``alpha`` and ``beta`` given,
    min(max(alpha x + beta, 0), 1), as ONNX's HardSigmoid (whose defaults are 0.2 and 0.5)."""

    name: str = "hardsigmoid"
    alpha: float = 1 / 6
    beta: float = 0.5
    types: ClassVar = ("hardsigmoid",)
    keys: ClassVar = ("alpha", "beta")

    @classmethod
    def from_spec(cls, spec: LayerSpec) -> Hardsigmoid:
        return cls(spec.name, spec.number("alpha", 1 / 6), spec.number("beta", 0.5))

    @property
    def pytorch(self) -> bool:
        return self.alpha == 1 / 6 and self.beta == 0.5

    def forward(self, x: np.ndarray, batched: bool = False) -> np.ndarray:
        if self.pytorch:
            return pointwise.hardsigmoid(x)
        return pointwise.hardsigmoid_affine(x, self.alpha, self.beta)

    def settings(self) -> dict[str, Any]:
        return {} if self.pytorch else {"alpha": self.alpha, "beta": self.beta}

    def describe(self) -> str:
        return "" if self.pytorch else f"alpha {self.alpha:g}, beta {self.beta:g}"


@register
@dataclass(frozen=True, eq=False, repr=False)
class SiLU(_Pointwise):
    """x * sigmoid(x) (swish), as torch.nn.SiLU."""

    name: str = "silu"
    types: ClassVar = ("silu",)


@register
@dataclass(frozen=True, eq=False, repr=False)
class Mish(_Pointwise):
    """x * tanh(softplus(x)), as torch.nn.Mish."""

    name: str = "mish"
    types: ClassVar = ("mish",)


@register
@dataclass(frozen=True, eq=False, repr=False)
class GELU(_Pointwise):
    """x * Phi(x), as torch.nn.GELU: exact (erf) or with its tanh approximation."""

    approximate: str = "none"
    name: str = "gelu"
    types: ClassVar = ("gelu",)
    keys: ClassVar = ("approximate",)

    def __post_init__(self) -> None:
        if self.approximate not in ("none", "tanh"):
            raise ShapeError(f"expected none or tanh, got {self.approximate!r}", source="approximate")

    @classmethod
    def from_spec(cls, spec: LayerSpec) -> GELU:
        return cls(spec.choice("approximate", "none", ("none", "tanh")), spec.name)

    def working_bytes(self, *shapes: Shape, itemsize: int = 4) -> int:
        kind = "gelu_tanh" if self.approximate == "tanh" else "gelu"
        return pointwise.pointwise_workspace(kind, shapes[0], itemsize)

    def settings(self) -> dict[str, Any]:
        return {"approximate": self.approximate}

    def describe(self) -> str:
        return "tanh approximation" if self.approximate == "tanh" else "exact (erf)"


@register
@dataclass(frozen=True, eq=False, repr=False)
class ELU(_Pointwise):
    """x for x > 0, alpha * (exp(x) - 1) elsewhere, as torch.nn.ELU."""

    alpha: float = 1.0
    name: str = "elu"
    types: ClassVar = ("elu",)
    keys: ClassVar = ("alpha",)

    @classmethod
    def from_spec(cls, spec: LayerSpec) -> ELU:
        return cls(spec.number("alpha", 1.0), spec.name)

    def settings(self) -> dict[str, Any]:
        return {"alpha": self.alpha}

    def describe(self) -> str:
        return f"alpha {self.alpha:g}"


@register
@dataclass(frozen=True, eq=False, repr=False)
class Softplus(_Pointwise):
    """log(1 + exp(beta x)) / beta, x itself where beta x > threshold, as torch.nn.Softplus."""

    beta: float = 1.0
    threshold: float = 20.0
    name: str = "softplus"
    types: ClassVar = ("softplus",)
    keys: ClassVar = ("beta", "threshold")

    @classmethod
    def from_spec(cls, spec: LayerSpec) -> Softplus:
        beta = spec.number("beta", 1.0)
        if not beta > 0:
            raise spec.fail("beta", f"must be above 0, got {beta:g}")
        return cls(beta, spec.number("threshold", 20.0), spec.name)

    def settings(self) -> dict[str, Any]:
        return {"beta": self.beta, "threshold": self.threshold}

    def describe(self) -> str:
        return f"beta {self.beta:g}, threshold {self.threshold:g}"


@register
@dataclass(frozen=True, eq=False, repr=False)
class PReLU(_Pointwise):
    """x for x > 0, weight * x elsewhere, as torch.nn.PReLU: one learned slope, or one per channel
    of a map (per feature of a vector). weight (num_parameters,), inline or ``<name>.weight``."""

    weight: np.ndarray
    name: str = "prelu"
    types: ClassVar = ("prelu",)
    keys: ClassVar = ("num_parameters", "init", "weight")

    @classmethod
    def from_spec(cls, spec: LayerSpec) -> PReLU:
        count = spec.integer("num_parameters", 1, 1, 1 << 24)
        channels = spec.shape[0]
        if count not in (1, channels):
            what = "channels" if len(spec.shape) > 1 else "features"
            raise spec.fail("num_parameters", f"must be 1 or the {channels} {what} of the layer before, got {count}")
        init = spec.number("init", 0.25)
        weight = spec.weight("weight", (count,), required=not spec.has("init"))
        return cls(np.full(count, init) if weight is None else weight, spec.name)

    def output_shape(self, *shapes: Shape) -> Shape:
        shape = shapes[0]
        if not shape:
            raise ShapeError("takes a map or a vector, got a scalar")
        if self.weight.size not in (1, shape[0]):
            raise ShapeError(f"has {self.weight.size} slopes (num_parameters), but the input has {shape[0]} "
                             f"{'channels' if len(shape) > 1 else 'features'}; expected 1 or one per channel")
        return shape

    def forward(self, x: np.ndarray, batched: bool = False) -> np.ndarray:
        return pointwise.prelu(x, self.weight, axis=1 if batched else 0)

    @property
    def params(self) -> int:  # type: ignore[override]
        return self.weight.size

    def settings(self) -> dict[str, Any]:
        return {"num_parameters": int(self.weight.size)}

    def describe(self) -> str:
        if self.weight.size == 1:
            return f"slope {float(self.weight[0]):g}"
        return f"{self.weight.size} slopes, {float(self.weight.min()):g}..{float(self.weight.max()):g}"
