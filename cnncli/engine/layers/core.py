"""The layer types cnn has had from the start: conv, activations, pooling, flatten, dense, softmax,
batch norm and dropout. Each reads its own settings from a model file (``from_spec``)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from .. import ops
from ...errors import ShapeError
from .base import Shape, Simple, axis, check_dim, jsonable, padding_text, pair_text, register, require_map

if TYPE_CHECKING:
    from ...io.modelfile import LayerSpec

# Up to this many elements (1 MiB of float32) a conv on a batch runs as one product with its
# unrolled matrix: 2-3x faster than window copies for the digits model's 8x8 and 4x4 maps, slower
# for LeNet-5's 28x28 and 14x14 maps, whose matrices are 3.7M and 1.9M elements (benchmarks/).
UNROLLED_MAX_ELEMENTS = 1 << 18


@register
@dataclass(frozen=True, eq=False, repr=False)  # no repr: it would print the arrays
class Conv2d:
    """A conv layer: cross-correlation unless ``flip``; weight (F, C/groups, KH, KW)."""

    weight: np.ndarray
    bias: np.ndarray | None = None
    stride: tuple[int, int] = (1, 1)
    padding: Any = "valid"
    padding_mode: str = "zeros"
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1
    flip: bool = False
    name: str = "conv"
    labels: tuple[str, ...] = ()  # one per output channel, e.g. the kernel names
    type = "conv2d"
    types: ClassVar = ("conv2d",)
    mixes_channels: ClassVar = True  # each output channel sums them all: the input's labels do not carry over
    keys: ClassVar = ("in_channels", "out_channels", "kernel_size", "stride", "padding", "padding_mode", "dilation",
                      "groups", "bias", "weight")
    required: ClassVar = ("out_channels", "kernel_size")
    _unrolled: dict = field(default_factory=dict, init=False, repr=False)  # input shape -> matrix

    @classmethod
    def from_spec(cls, spec: LayerSpec) -> Conv2d:
        settings = spec.conv_settings()
        groups = spec.integer("groups", 1, 1, 1 << 16)
        out_channels = spec.integer("out_channels", None, 1, 1 << 16)
        kh, kw = spec.pair("kernel_size")
        channels = spec.channels()
        if spec.has("in_channels") and spec.integer("in_channels", None, 1) != channels:
            raise spec.fail("in_channels", f"is {spec.get('in_channels')}, but the layer before gives {channels} "
                                           "channels")
        if channels % groups or out_channels % groups:
            raise spec.fail("groups", f"must divide in_channels ({channels}) and out_channels ({out_channels}), "
                                      f"got {groups}")
        weight_shape = (out_channels, channels // groups, kh, kw)
        stride, dilation = tuple(settings.get("stride", (1, 1))), tuple(settings.get("dilation", (1, 1)))
        padding = settings.get("padding", 0)
        padding = tuple(padding) if isinstance(padding, list) else padding
        mode = settings.get("padding_mode", "zeros")
        ops.conv_geometry(spec.shape, weight_shape, stride, padding, dilation, groups, mode)  # before the weights
        weight = spec.weight("weight", weight_shape)
        bias = spec.weight("bias", (out_channels,)) if spec.has_bias() else None
        return cls(weight, bias, stride, padding, mode, dilation, groups, name=spec.name)

    def output_shape(self, shape: Shape) -> Shape:
        require_map(shape)
        _, out = ops.conv_geometry(shape, self.weight.shape, self.stride, self.padding, self.dilation,
                                   self.groups, self.padding_mode)
        return out

    def forward(self, x: np.ndarray, batched: bool = False) -> np.ndarray:
        if batched and x.shape[0] > 1 and not self.flip:
            matrix = self._unrolled_matrix(x.shape[1:], x.dtype)
            if matrix is not None:
                y = x.reshape(x.shape[0], -1) @ matrix
                if self.bias is not None:
                    y += np.repeat(self.bias.astype(x.dtype), y.shape[1] // self.bias.size)
                return y.reshape(x.shape[0], *self.output_shape(x.shape[1:]))
        return ops.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups,
                          self.padding_mode, self.flip)

    def working_bytes(self, in_shape: Shape, itemsize: int = 4) -> int:
        """Bytes ``forward`` allocates for one map of ``in_shape``: its output and ops.conv2d's work."""
        return ops.conv2d_workspace(in_shape, self.weight.shape, self.stride, self.padding, self.dilation, self.groups,
                                    self.padding_mode, self.flip, "auto", itemsize, self.weight.dtype.itemsize,
                                    self.bias is not None)

    def kept_bytes(self, in_shape: Shape, itemsize: int = 4) -> dict[str, int]:
        """What ``forward`` leaves allocated in libraries (OpenBLAS, the thread pool), by library."""
        return ops.conv2d_kept(in_shape, self.weight.shape, self.stride, self.padding, self.dilation, self.groups,
                               self.padding_mode, "auto", itemsize)

    def _unrolled_matrix(self, shape: Shape, dtype: np.dtype) -> np.ndarray | None:
        """The conv as one matrix for maps of ``shape``, when that matrix is small (a batch of small
        maps, such as 8x8 digits); None otherwise. Kept per input shape and dtype."""
        key = (tuple(shape), np.dtype(dtype).str)
        if key not in self._unrolled:
            size = math.prod(shape) * math.prod(self.output_shape(shape))
            self._unrolled[key] = None if size > UNROLLED_MAX_ELEMENTS else ops.unrolled_conv_matrix(
                shape, self.weight.astype(dtype), self.stride, self.padding, self.dilation, self.groups,
                self.padding_mode)
        return self._unrolled[key]

    @property
    def params(self) -> int:
        return self.weight.size + (0 if self.bias is None else self.bias.size)

    def macs(self, out_shape: Shape) -> int:
        return ops.conv_macs(out_shape, self.weight.shape)

    def settings(self) -> dict[str, Any]:
        f, c, kh, kw = self.weight.shape
        return {
            "operation": "convolution" if self.flip else "cross-correlation",
            "kernel_size": [kh, kw], "in_channels": c * self.groups, "out_channels": f,
            "stride": list(self.stride), "padding": jsonable(self.padding), "padding_mode": self.padding_mode,
            "dilation": list(self.dilation), "groups": self.groups, "bias": self.bias is not None,
        }

    def describe(self) -> str:
        f, c, kh, kw = self.weight.shape
        parts = [f"{kh}x{kw}", f"stride {pair_text(self.stride)}", f"padding {padding_text(self.padding)}"]
        if self.flip:  # cross-correlation goes without saying, as in every CNN library
            parts.insert(1, "convolution (flipped kernel)")
        if self.padding_mode != "zeros" and self.padding != "valid":
            parts.append(self.padding_mode)
        if self.dilation != (1, 1):
            parts.append(f"dilation {pair_text(self.dilation)}")
        if self.groups > 1:  # c is the channels each group sees: one means depthwise
            parts.append(f"groups {self.groups}" + (" (depthwise: each channel on its own)" if c == 1 else ""))
        return ", ".join(parts)


@register
@dataclass(frozen=True, eq=False, repr=False)
class Activation:
    """An element-wise activation: relu, leaky_relu, sigmoid, tanh or none."""

    kind: str = "relu"
    negative_slope: float = 0.01
    name: str = "relu"

    def __post_init__(self) -> None:
        if self.kind not in ops.ACTIVATIONS:
            raise ShapeError(f"expected one of {', '.join(ops.ACTIVATIONS)}, got {self.kind!r}", source="activation")

    types: ClassVar = ("relu", "leaky_relu", "sigmoid", "tanh")
    keys: ClassVar = ()
    type_keys: ClassVar = {"leaky_relu": ("negative_slope",)}
    required: ClassVar = ()

    @classmethod
    def from_spec(cls, spec: LayerSpec) -> Activation:
        return cls(spec.type, spec.number("negative_slope", 0.01), spec.name)

    @property
    def type(self) -> str:
        return self.kind

    def output_shape(self, shape: Shape) -> Shape:
        return shape

    @property
    def view(self) -> bool:
        return self.kind == "none"  # returns its input

    def forward(self, x: np.ndarray, batched: bool = False) -> np.ndarray:
        if self.kind == "leaky_relu":
            return ops.leaky_relu(x, self.negative_slope)
        return ops.ACTIVATIONS[self.kind](x)

    def working_bytes(self, in_shape: Shape, itemsize: int = 4) -> int:
        return ops.activation_workspace(self.kind, in_shape, itemsize, self.negative_slope)

    def settings(self) -> dict[str, Any]:
        return {"negative_slope": self.negative_slope} if self.kind == "leaky_relu" else {}

    def describe(self) -> str:
        return f"negative slope {self.negative_slope:g}" if self.kind == "leaky_relu" else ""


@register
@dataclass(frozen=True, eq=False, repr=False)
class Pool2d:
    """Max or average pooling, with PyTorch's settings; ``stride`` None means the kernel size."""

    kind: str = "max"
    kernel_size: tuple[int, int] = (2, 2)
    stride: tuple[int, int] | None = None
    padding: tuple[int, int] = (0, 0)
    dilation: tuple[int, int] = (1, 1)
    ceil_mode: bool = False
    count_include_pad: bool = True
    name: str = "maxpool"
    types: ClassVar = ("maxpool2d", "avgpool2d")
    keys: ClassVar = ("kernel_size", "stride", "padding", "ceil_mode", "dilation", "count_include_pad")
    type_keys: ClassVar = {"maxpool2d": keys[:5], "avgpool2d": keys[:4] + keys[5:]}
    required: ClassVar = ("kernel_size",)

    @classmethod
    def from_spec(cls, spec: LayerSpec) -> Pool2d:
        kind = spec.type[:3]
        size = spec.pair("kernel_size")
        stride = spec.pair("stride") if spec.get("stride") is not None else None
        return cls(kind, size, stride, spec.pair("padding", 0, minimum=0), spec.pair("dilation", 1),
                   spec.boolean("ceil_mode", False), spec.boolean("count_include_pad", True), spec.name)

    @property
    def type(self) -> str:
        return f"{self.kind}pool2d"

    def output_shape(self, shape: Shape) -> Shape:
        require_map(shape)
        *_, out, _ = ops.pool_geometry(shape[1:], self.kernel_size, self.stride, self.padding,
                                       self.dilation, self.ceil_mode)
        return (shape[0], *out)

    def forward(self, x: np.ndarray, batched: bool = False) -> np.ndarray:
        if self.kind == "max":
            return ops.max_pool2d(x, self.kernel_size, self.stride, self.padding, self.dilation, self.ceil_mode)
        return ops.avg_pool2d(x, self.kernel_size, self.stride, self.padding, self.ceil_mode, self.count_include_pad)

    def working_bytes(self, in_shape: Shape, itemsize: int = 4) -> int:
        return ops.pool2d_workspace(self.kind, in_shape, self.kernel_size, self.stride,
                                    self.padding, self.dilation, self.ceil_mode, itemsize)

    def settings(self) -> dict[str, Any]:
        settings = {"kernel_size": list(self.kernel_size), "stride": list(self.stride or self.kernel_size),
                    "padding": list(self.padding), "ceil_mode": self.ceil_mode}
        if self.kind == "max":
            settings["dilation"] = list(self.dilation)
        else:
            settings["count_include_pad"] = self.count_include_pad
        return settings

    def describe(self) -> str:
        parts = [f"{self.kernel_size[0]}x{self.kernel_size[1]}", f"stride {pair_text(self.stride or self.kernel_size)}"]
        if any(self.padding):
            parts.append(f"padding {pair_text(self.padding)}")
        if self.ceil_mode:
            parts.append("ceil_mode")
        return ", ".join(parts)


@register
@dataclass(frozen=True, eq=False, repr=False)
class GlobalAvgPool2d(Simple):
    """Mean of each channel: (C, H, W) -> (C, 1, 1)."""

    name: str = "globalavgpool"
    type = "globalavgpool2d"
    types: ClassVar = ("globalavgpool2d",)

    def output_shape(self, shape: Shape) -> Shape:
        require_map(shape)
        return (shape[0], 1, 1)

    def forward(self, x: np.ndarray, batched: bool = False) -> np.ndarray:
        return ops.global_avg_pool2d(x)

    def working_bytes(self, in_shape: Shape, itemsize: int = 4) -> int:
        return ops.global_avg_pool2d_workspace(in_shape, itemsize)


@register
@dataclass(frozen=True, eq=False, repr=False)
class Flatten:
    """(C, H, W) -> (C*H*W,) in C order: channel slowest, then row, then column (as PyTorch)."""

    name: str = "flatten"
    type = "flatten"
    types: ClassVar = ("flatten",)
    keys: ClassVar = ()
    required: ClassVar = ()

    @classmethod
    def from_spec(cls, spec: LayerSpec) -> Flatten:
        return cls(spec.name)
    view = True  # of its C-contiguous input, as every op returns and images are read

    def output_shape(self, shape: Shape) -> Shape:
        return (math.prod(shape),)

    def forward(self, x: np.ndarray, batched: bool = False) -> np.ndarray:
        return ops.flatten(x, batched)

    def working_bytes(self, in_shape: Shape, itemsize: int = 4) -> int:
        return 0

    def settings(self) -> dict[str, Any]:
        return {"order": "CHW"}

    def describe(self) -> str:
        return "C, H, W order"


@register
@dataclass(frozen=True, eq=False, repr=False)
class Dense:
    """A fully-connected layer y = x W^T + b with W (out, in)."""

    weight: np.ndarray
    bias: np.ndarray | None = None
    name: str = "dense"
    origin: str = ""  # where the weights came from, e.g. "random, seed 0" or a file name
    labels: tuple[str, ...] = ()
    type = "dense"
    types: ClassVar = ("dense",)
    keys: ClassVar = ("in_features", "out_features", "bias", "weight")
    required: ClassVar = ("out_features",)

    @classmethod
    def from_spec(cls, spec: LayerSpec) -> Dense:
        out_features = spec.integer("out_features", None, 1, 1 << 24)
        shape = spec.shape
        if len(shape) != 1:
            raise ShapeError(f"takes a flat vector, but the layer before gives shape {shape}; "
                             "put a flatten layer first")
        if spec.has("in_features") and spec.integer("in_features", None, 1) != shape[0]:
            raise spec.fail("in_features", f"is {spec.get('in_features')}, but the layer before gives {shape[0]} "
                                           "values")
        weight = spec.weight("weight", (out_features, shape[0]))
        bias = spec.weight("bias", (out_features,)) if spec.has_bias() else None
        return cls(weight, bias, spec.name)  # the model's header says where its weights come from

    def output_shape(self, shape: Shape) -> Shape:
        if len(shape) != 1:
            raise ShapeError(f"takes a flat vector, got shape {shape}; put a flatten layer first")
        if shape[0] != self.weight.shape[1]:
            origin = f" from {self.origin}" if self.origin else ""
            raise ShapeError(f"weight {self.weight.shape}{origin} takes {self.weight.shape[1]} inputs, "
                             f"but the layer before gives {shape[0]}")
        return (self.weight.shape[0],)

    def forward(self, x: np.ndarray, batched: bool = False) -> np.ndarray:
        return ops.linear(x, self.weight, self.bias)

    def working_bytes(self, in_shape: Shape, itemsize: int = 4) -> int:
        return ops.linear_workspace(in_shape, self.weight.shape, itemsize, self.weight.dtype.itemsize)

    def kept_bytes(self, in_shape: Shape, itemsize: int = 4) -> dict[str, int]:
        return ops.linear_kept()

    @property
    def params(self) -> int:
        return self.weight.size + (0 if self.bias is None else self.bias.size)

    def macs(self, out_shape: Shape) -> int:
        return self.weight.size

    def settings(self) -> dict[str, Any]:
        settings = {"in_features": self.weight.shape[1], "out_features": self.weight.shape[0],
                    "bias": self.bias is not None}
        if self.origin:
            settings["weights"] = self.origin
        return settings

    def describe(self) -> str:
        text = f"{self.weight.shape[1]} -> {self.weight.shape[0]}"
        return f"{text}, {self.origin} weights" if self.origin else text


@register
@dataclass(frozen=True, eq=False, repr=False)
class Softmax:
    """exp(x) / sum(exp(x)) along ``dim``, counted as PyTorch counts it on a batch: the default 1
    is the features of a vector and the channels of a map (each pixel's channels sum to 1)."""

    name: str = "softmax"
    dim: int = 1
    type = "softmax"
    types: ClassVar = ("softmax",)
    keys: ClassVar = ("dim",)
    required: ClassVar = ()

    @classmethod
    def from_spec(cls, spec: LayerSpec) -> Softmax:
        return cls(spec.name, spec.integer("dim", 1, -8, 8))

    def output_shape(self, shape: Shape) -> Shape:
        check_dim(self.dim, len(shape))
        return shape

    def forward(self, x: np.ndarray, batched: bool = False) -> np.ndarray:
        return ops.softmax(x, axis=axis(self.dim, x.ndim, batched))

    def working_bytes(self, in_shape: Shape, itemsize: int = 4) -> int:
        return ops.softmax_workspace(in_shape, itemsize, axis(self.dim, len(in_shape), False))

    def settings(self) -> dict[str, Any]:
        return {} if self.dim == 1 else {"dim": self.dim}  # as files before dim was a setting: unchanged

    def describe(self) -> str:
        return "" if self.dim == 1 else f"dim {self.dim}"


@register
@dataclass(frozen=True, eq=False, repr=False)
class BatchNorm:
    """Inference batch normalisation, as PyTorch's eval mode: per channel of a map (batchnorm2d)
    or per feature of a vector (batchnorm1d), y = (x - running_mean) / sqrt(running_var + eps)
    * weight + bias."""

    running_mean: np.ndarray
    running_var: np.ndarray
    weight: np.ndarray | None = None  # None: affine=False, as 1
    bias: np.ndarray | None = None  # None: as 0
    eps: float = 1e-5
    name: str = "bn"
    kind: str = "batchnorm2d"
    types: ClassVar = ("batchnorm2d", "batchnorm1d")
    keys: ClassVar = ("num_features", "eps", "momentum", "affine", "weight", "bias", "running_mean", "running_var")
    required: ClassVar = ()

    @classmethod
    def from_spec(cls, spec: LayerSpec) -> BatchNorm:
        kind, shape = spec.type, spec.shape
        if kind == "batchnorm2d":
            features = spec.channels()
        elif len(shape) != 1:
            raise ShapeError(f"batchnorm1d takes a flat vector, but the layer before gives shape {shape}; "
                             "use batchnorm2d on maps")
        else:
            features = shape[0]
        if spec.has("num_features") and spec.integer("num_features", None, 1) != features:
            raise spec.fail("num_features", f"is {spec.get('num_features')}, but the layer before gives {features}")
        eps = spec.number("eps", 1e-5, minimum=0)
        spec.number("momentum", 0.1)  # a training setting, read only to check it
        affine = spec.boolean("affine", True)
        for key in ("weight", "bias"):
            if not affine and spec.has(key):
                raise spec.fail(key, "is given but affine is false; a layer without a learned scale takes no weight "
                                     "or bias")
        mean, var = (spec.weight(key, (features,)) for key in ("running_mean", "running_var"))
        if np.any(var < 0):
            raise spec.fail_weight("running_var", "has negative values; expected variances, which are at least 0")
        scale = [spec.weight(key, (features,)) if affine else None for key in ("weight", "bias")]
        return cls(mean, var, scale[0], scale[1], eps, spec.name, kind)

    @property
    def type(self) -> str:
        return self.kind

    @property
    def features(self) -> int:
        return self.running_mean.shape[0]

    def output_shape(self, shape: Shape) -> Shape:
        if self.kind == "batchnorm2d":
            require_map(shape)
            what = "channels"
        elif len(shape) != 1:
            raise ShapeError(f"takes a flat vector, got shape {shape}; batchnorm2d normalises maps")
        else:
            what = "features"
        if shape[0] != self.features:
            raise ShapeError(f"normalises {self.features} {what}, but the layer before gives {shape[0]}")
        return shape

    def forward(self, x: np.ndarray, batched: bool = False) -> np.ndarray:
        return ops.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, self.eps,
                              axis=1 if batched else 0)

    def working_bytes(self, in_shape: Shape, itemsize: int = 4) -> int:
        return ops.batch_norm_workspace(in_shape, self.features, itemsize)

    @property
    def params(self) -> int:
        """Learned parameters, as PyTorch counts them: weight and bias, not the running statistics."""
        return sum(0 if p is None else p.size for p in (self.weight, self.bias))

    def macs(self, out_shape: Shape) -> int:
        return math.prod(out_shape)  # one multiply-add per value, with the scale and shift folded

    def settings(self) -> dict[str, Any]:
        return {"num_features": self.features, "eps": self.eps, "affine": self.weight is not None}

    def describe(self) -> str:
        return f"{self.features} {'channels' if self.kind == 'batchnorm2d' else 'features'}, eps {self.eps:g}"


@register
@dataclass(frozen=True, eq=False, repr=False)
class Dropout:
    """Dropout: nothing at inference. Kept so the network reads as it was trained."""

    p: float = 0.5
    name: str = "dropout"
    types: ClassVar = ("dropout",)
    keys: ClassVar = ("p",)
    required: ClassVar = ()

    @classmethod
    def from_spec(cls, spec: LayerSpec) -> Dropout:
        return cls(spec.number("p", 0.5, minimum=0, maximum=1), spec.name)
    type = "dropout"
    view = True  # returns its input

    def output_shape(self, shape: Shape) -> Shape:
        return shape

    def forward(self, x: np.ndarray, batched: bool = False) -> np.ndarray:
        return x

    def working_bytes(self, in_shape: Shape, itemsize: int = 4) -> int:
        return 0

    def settings(self) -> dict[str, Any]:
        return {"p": self.p}

    def describe(self) -> str:
        return f"p {self.p:g} (nothing at inference)"



