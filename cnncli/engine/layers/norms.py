"""Normalisation layers that use each input's own statistics (batch norm, with stored ones, is in
core.py): layernorm, groupnorm, instancenorm2d and AlexNet's lrn, with PyTorch's settings.

Their learned scale and shift (``weight``, ``bias``) come inline or from the weights file as
``<name>.weight`` and ``<name>.bias``, as conv's do. The formulas are in ../normalization.py.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from .. import normalization
from ...errors import ShapeError
from .base import Shape, register, require_map

if TYPE_CHECKING:
    from ...io.modelfile import LayerSpec


def _scale_and_shift(spec: LayerSpec, shape: tuple[int, ...], affine: bool, flag: str,
                     bias: bool = True) -> tuple[np.ndarray | None, np.ndarray | None]:
    """weight and bias of ``shape`` when ``affine`` (the key ``flag``), else None, refusing arrays
    given to a layer that has none."""
    if not affine:
        for key in ("weight", "bias"):
            if spec.has(key) and not isinstance(spec.get(key), bool):
                raise spec.fail(key, f"is given but {flag} is false; a layer without a learned scale takes no weight "
                                     "or bias")
        return None, None
    return spec.weight("weight", shape), spec.weight("bias", shape) if bias else None


def _count(*arrays: np.ndarray | None) -> int:
    return sum(0 if a is None else a.size for a in arrays)


class _Norm:
    """What the normalisations share: one input, the shape kept."""

    inputs: ClassVar[tuple[int, int | None]] = (1, 1)
    view: ClassVar = False

    @property
    def type(self) -> str:
        return self.types[0]  # type: ignore[attr-defined]

    def macs(self, out_shape: Shape) -> int:
        return math.prod(out_shape)  # a multiply-add per value to scale and shift, as batch norm counts


@register
@dataclass(frozen=True, eq=False, repr=False)
class LayerNorm(_Norm):
    """Normalises each sample over its last dimensions (normalized_shape), as torch.nn.LayerNorm:
    (x - mean) / sqrt(var + eps) * weight + bias, weight and bias of normalized_shape."""

    normalized_shape: tuple[int, ...]
    weight: np.ndarray | None = None
    bias: np.ndarray | None = None
    eps: float = 1e-5
    name: str = "layernorm"
    types: ClassVar = ("layernorm",)
    keys: ClassVar = ("normalized_shape", "eps", "elementwise_affine", "bias", "weight")
    required: ClassVar = ("normalized_shape",)

    @classmethod
    def from_spec(cls, spec: LayerSpec) -> LayerNorm:
        normalized = spec.integers("normalized_shape", None, 1, 1 << 24)
        shape = spec.shape
        if len(normalized) > len(shape) or tuple(shape[len(shape) - len(normalized):]) != normalized:
            raise spec.fail("normalized_shape", f"is {list(normalized)}, but the layer before gives shape {shape}; "
                                                "expected its last dimensions, e.g. "
                                                f"{list(shape[-1:])} or {list(shape)}")
        eps = spec.number("eps", 1e-5, minimum=0)
        affine = spec.boolean("elementwise_affine", True)
        weight, bias = _scale_and_shift(spec, normalized, affine, "elementwise_affine", spec.has_bias())
        return cls(normalized, weight, bias, eps, spec.name)

    def output_shape(self, shape: Shape) -> Shape:
        k = len(self.normalized_shape)
        if k > len(shape) or tuple(shape[len(shape) - k:]) != self.normalized_shape:
            raise ShapeError(f"normalized_shape {list(self.normalized_shape)} is not the last dimensions of the "
                             f"input's shape {tuple(shape)}")
        return shape

    def forward(self, x: np.ndarray, batched: bool = False) -> np.ndarray:
        return normalization.layer_norm(x, len(self.normalized_shape), self.weight, self.bias, self.eps)

    def working_bytes(self, in_shape: Shape, itemsize: int = 4) -> int:
        rows = math.prod(in_shape) // math.prod(self.normalized_shape)
        return normalization.norm_workspace(in_shape, itemsize, rows)

    @property
    def params(self) -> int:
        return _count(self.weight, self.bias)

    def settings(self) -> dict[str, Any]:
        return {"normalized_shape": list(self.normalized_shape), "eps": self.eps,
                "elementwise_affine": self.weight is not None, "bias": self.bias is not None}

    def describe(self) -> str:
        return f"over {'x'.join(str(s) for s in self.normalized_shape)}, eps {self.eps:g}"


@register
@dataclass(frozen=True, eq=False, repr=False)
class GroupNorm(_Norm):
    """Normalises each of num_groups groups of consecutive channels over its channels and positions,
    as torch.nn.GroupNorm; weight and bias per channel."""

    num_groups: int
    weight: np.ndarray | None = None
    bias: np.ndarray | None = None
    eps: float = 1e-5
    num_channels: int | None = None  # None: any number that num_groups divides
    name: str = "groupnorm"
    types: ClassVar = ("groupnorm",)
    keys: ClassVar = ("num_groups", "num_channels", "eps", "affine", "weight", "bias")
    required: ClassVar = ("num_groups",)

    @classmethod
    def from_spec(cls, spec: LayerSpec) -> GroupNorm:
        groups = spec.integer("num_groups", None, 1, 1 << 24)
        if not spec.shape:
            raise ShapeError("takes a map or a vector, got a scalar")
        channels = spec.shape[0]
        if spec.has("num_channels") and spec.integer("num_channels", None, 1) != channels:
            raise spec.fail("num_channels", f"is {spec.get('num_channels')}, but the layer before gives {channels}")
        if channels % groups:
            raise spec.fail("num_groups", f"must divide the {channels} channels of the layer before, got {groups}")
        eps = spec.number("eps", 1e-5, minimum=0)
        weight, bias = _scale_and_shift(spec, (channels,), spec.boolean("affine", True), "affine")
        return cls(groups, weight, bias, eps, channels, spec.name)

    def output_shape(self, shape: Shape) -> Shape:
        if not shape:
            raise ShapeError("takes a map or a vector, got a scalar")
        channels = shape[0]
        if self.num_channels is not None and channels != self.num_channels:
            raise ShapeError(f"normalises {self.num_channels} channels, but the input has {channels}")
        if channels % self.num_groups:
            raise ShapeError(f"the input's {channels} channels do not split into {self.num_groups} groups "
                             "(num_groups must divide them)")
        return shape

    def forward(self, x: np.ndarray, batched: bool = False) -> np.ndarray:
        return normalization.group_norm(x, self.num_groups, self.weight, self.bias, self.eps, batched)

    def working_bytes(self, in_shape: Shape, itemsize: int = 4) -> int:
        return normalization.norm_workspace(in_shape, itemsize, self.num_groups)

    @property
    def params(self) -> int:
        return _count(self.weight, self.bias)

    def settings(self) -> dict[str, Any]:
        settings: dict[str, Any] = {"num_groups": self.num_groups, "eps": self.eps, "affine": self.weight is not None}
        if self.num_channels is not None:
            settings["num_channels"] = self.num_channels
        return settings

    def describe(self) -> str:
        return f"{self.num_groups} groups, eps {self.eps:g}"


@register
@dataclass(frozen=True, eq=False, repr=False)
class InstanceNorm2d(_Norm):
    """Normalises each channel of each map over its positions, as torch.nn.InstanceNorm2d in eval
    mode: with the map's own mean and variance (track_running_stats false, PyTorch's default), or
    with stored running_mean and running_var when track_running_stats is true. affine (weight and
    bias per channel) is false by default, as in PyTorch."""

    weight: np.ndarray | None = None
    bias: np.ndarray | None = None
    eps: float = 1e-5
    running_mean: np.ndarray | None = None
    running_var: np.ndarray | None = None
    num_features: int | None = None  # None: any number of channels
    name: str = "instancenorm"
    types: ClassVar = ("instancenorm2d", "instancenorm")
    keys: ClassVar = ("num_features", "eps", "momentum", "affine", "track_running_stats", "weight", "bias",
                      "running_mean", "running_var")
    required: ClassVar = ()

    @classmethod
    def from_spec(cls, spec: LayerSpec) -> InstanceNorm2d:
        channels = spec.channels()
        if spec.has("num_features") and spec.integer("num_features", None, 1) != channels:
            raise spec.fail("num_features", f"is {spec.get('num_features')}, but the layer before gives {channels}")
        eps = spec.number("eps", 1e-5, minimum=0)
        spec.number("momentum", 0.1)  # a training setting, read only to check it
        weight, bias = _scale_and_shift(spec, (channels,), spec.boolean("affine", False), "affine")
        running: list[np.ndarray | None] = [None, None]
        if spec.boolean("track_running_stats", False):
            running = [spec.weight(key, (channels,)) for key in ("running_mean", "running_var")]
            if np.any(np.asarray(running[1]) < 0):
                raise spec.fail_weight("running_var", "has negative values; expected variances, which are at least 0")
        else:
            for key in ("running_mean", "running_var"):
                if spec.has(key):
                    raise spec.fail(key, "is given but track_running_stats is false, so the map's own statistics "
                                         "are used; set it true to use stored ones")
        return cls(weight, bias, eps, running[0], running[1], channels, spec.name)

    def output_shape(self, shape: Shape) -> Shape:
        require_map(shape)
        features = self.num_features or next((a.size for a in (self.weight, self.running_mean) if a is not None), None)
        if features is not None and shape[0] != features:
            raise ShapeError(f"normalises {features} channels, but the input has {shape[0]}")
        return shape

    def forward(self, x: np.ndarray, batched: bool = False) -> np.ndarray:
        return normalization.instance_norm(x, self.weight, self.bias, self.eps, self.running_mean, self.running_var,
                                           batched)

    def working_bytes(self, in_shape: Shape, itemsize: int = 4) -> int:
        return normalization.norm_workspace(in_shape, itemsize, in_shape[0], 0 if self.running_mean is not None else 1)

    @property
    def params(self) -> int:
        return _count(self.weight, self.bias)  # as PyTorch counts them: not the running statistics

    def settings(self) -> dict[str, Any]:
        settings: dict[str, Any] = {"eps": self.eps, "affine": self.weight is not None,
                                    "track_running_stats": self.running_mean is not None}
        if self.num_features is not None:
            settings["num_features"] = self.num_features
        return settings

    def describe(self) -> str:
        stats = "stored statistics" if self.running_mean is not None else "each map's own statistics"
        return f"{stats}, eps {self.eps:g}" + (", affine" if self.weight is not None else "")


@register
@dataclass(frozen=True, eq=False, repr=False)
class LocalResponseNorm(_Norm):
    """x / (k + alpha / size * sum of x^2 over size neighbouring channels)^beta, as
    torch.nn.LocalResponseNorm (AlexNet's: size 5, alpha 1e-4, beta 0.75, k 2)."""

    size: int
    alpha: float = 1e-4
    beta: float = 0.75
    k: float = 1.0
    name: str = "lrn"
    types: ClassVar = ("lrn", "localresponsenorm")
    keys: ClassVar = ("size", "alpha", "beta", "k")
    required: ClassVar = ("size",)
    params: ClassVar = 0

    @classmethod
    def from_spec(cls, spec: LayerSpec) -> LocalResponseNorm:
        spec.channels()
        return cls(spec.integer("size", None, 1, 1 << 16), spec.number("alpha", 1e-4), spec.number("beta", 0.75),
                   spec.number("k", 1.0), spec.name)

    def output_shape(self, shape: Shape) -> Shape:
        require_map(shape)
        return shape

    def forward(self, x: np.ndarray, batched: bool = False) -> np.ndarray:
        return normalization.local_response_norm(x, self.size, self.alpha, self.beta, self.k, batched)

    def working_bytes(self, in_shape: Shape, itemsize: int = 4) -> int:
        return normalization.norm_workspace(in_shape, itemsize)

    def macs(self, out_shape: Shape) -> int:
        return math.prod(out_shape) * min(self.size, out_shape[0])  # the window's squares, summed

    def settings(self) -> dict[str, Any]:
        return {"size": self.size, "alpha": self.alpha, "beta": self.beta, "k": self.k}

    def describe(self) -> str:
        return f"size {self.size}, alpha {self.alpha:g}, beta {self.beta:g}, k {self.k:g}"
