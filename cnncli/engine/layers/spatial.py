"""Layers that change a map's height and width by other means than a conv's window: global max
pooling, adaptive pooling to any size, upsampling and transposed convolution, each as the PyTorch
module of the same name (nn.AdaptiveMaxPool2d(1), nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d,
nn.Upsample, nn.ConvTranspose2d) computes it at inference."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Optional

import numpy as np

from .. import resample
from ..scratch import BLAS_BYTES
from ...errors import ShapeError
from ..transpose import conv_transpose2d, conv_transpose2d_workspace, conv_transpose_geometry, conv_transpose_macs
from .base import Shape, Simple, pair_text, register, require_map

if TYPE_CHECKING:
    from ...io.modelfile import LayerSpec

MAX_SIDE = 1 << 16  # the largest output size a file may ask for, as for a kernel
MAX_SCALE = 1 << 12


def _size_text(size: tuple[Optional[int], Optional[int]]) -> str:
    """"3x3"; "5 rows (columns kept)" when a size is None; "input size" when both are."""
    rows, cols = size
    if rows is not None and cols is not None:
        return f"{rows}x{cols}"
    if rows is not None:
        return f"{rows} rows (columns kept)"
    return "input size" if cols is None else f"{cols} columns (rows kept)"


@register
@dataclass(frozen=True, eq=False, repr=False)
class GlobalMaxPool2d(Simple):
    """Max of each channel: (C, H, W) -> (C, 1, 1), as nn.AdaptiveMaxPool2d(1)."""

    name: str = "globalmaxpool"
    type = "globalmaxpool2d"
    types: ClassVar = ("globalmaxpool2d",)

    def output_shape(self, shape: Shape) -> Shape:
        require_map(shape)
        return (shape[0], 1, 1)

    def forward(self, x: np.ndarray, batched: bool = False) -> np.ndarray:
        return resample.global_max_pool2d(x)

    def working_bytes(self, in_shape: Shape, itemsize: int = 4) -> int:
        return resample.global_max_pool2d_workspace(in_shape, itemsize)


@register
@dataclass(frozen=True, eq=False, repr=False)
class AdaptivePool2d:
    """Average or max pooling to a given output size, with PyTorch's bins: output row i covers
    input rows floor(i*H/H_out) to ceil((i+1)*H/H_out) - 1 (bins overlap when H_out does not divide H)."""

    kind: str = "avg"
    output_size: tuple[Optional[int], Optional[int]] = (1, 1)  # None keeps that size
    name: str = "adaptivepool"
    types: ClassVar = ("adaptiveavgpool2d", "adaptivemaxpool2d")
    keys: ClassVar = ("output_size", "return_indices")
    type_keys: ClassVar = {"adaptiveavgpool2d": ("output_size",),
                           "adaptivemaxpool2d": ("output_size", "return_indices")}
    required: ClassVar = ("output_size",)
    params: ClassVar = 0

    def __post_init__(self) -> None:
        if self.kind not in ("avg", "max"):
            raise ShapeError(f"expected avg or max, got {self.kind!r}", source="kind")

    @classmethod
    def from_spec(cls, spec: LayerSpec) -> AdaptivePool2d:
        if spec.boolean("return_indices", False):
            raise spec.fail("return_indices", "must be false: a layer here gives one map, not the map and its indices")
        value = spec.get("output_size")
        if isinstance(value, list):
            if len(value) != 2:
                raise spec.fail("output_size", f"expected one integer or [rows, cols], got {len(value)} values")
            size = tuple(None if v is None else spec.read.integer(v, f"output_size[{i}]", 1, MAX_SIDE)
                         for i, v in enumerate(value))
        else:
            side = spec.read.integer(value, "output_size", 1, MAX_SIDE)
            size = (side, side)
        return cls(spec.type[8:11], size, spec.name)  # type: ignore[arg-type]

    @property
    def type(self) -> str:
        return f"adaptive{self.kind}pool2d"

    def output_shape(self, shape: Shape) -> Shape:
        require_map(shape)
        return (shape[0], *resample.adaptive_output_size(shape[1:], self.output_size))

    def forward(self, x: np.ndarray, batched: bool = False) -> np.ndarray:
        return resample.adaptive_pool2d(x, self.output_size, self.kind)

    def working_bytes(self, in_shape: Shape, itemsize: int = 4) -> int:
        return resample.adaptive_pool2d_workspace(in_shape, self.output_size, itemsize)

    def macs(self, out_shape: Shape) -> int:
        return 0

    def settings(self) -> dict[str, Any]:
        return {"output_size": list(self.output_size)}

    def describe(self) -> str:
        return f"to {_size_text(self.output_size)}"


@register
@dataclass(frozen=True, eq=False, repr=False)
class Upsample:
    """A map resized to ``size`` or by ``scale_factor`` (exactly one), as nn.Upsample: mode
    "nearest" copies cell floor(dst * ratio), "bilinear" weighs the two nearest cells of each axis.
    upsamplingnearest2d and upsamplingbilinear2d are PyTorch's fixed-mode classes (the latter
    with align_corners)."""

    size: Optional[tuple[int, int]] = None
    scale_factor: Optional[tuple[float, float]] = None
    mode: str = "nearest"
    align_corners: bool = False
    recompute_scale_factor: bool = False
    name: str = "upsample"
    type = "upsample"
    types: ClassVar = ("upsample", "upsamplingnearest2d", "upsamplingbilinear2d")
    keys: ClassVar = ("size", "scale_factor", "mode", "align_corners", "recompute_scale_factor")
    type_keys: ClassVar = {"upsamplingnearest2d": keys[:2], "upsamplingbilinear2d": keys[:2]}
    required: ClassVar = ()
    params: ClassVar = 0

    def __post_init__(self) -> None:
        if self.mode not in resample.UPSAMPLE_MODES:
            raise ShapeError(f"expected one of {', '.join(resample.UPSAMPLE_MODES)}, got {self.mode!r}", source="mode")

    @classmethod
    def from_spec(cls, spec: LayerSpec) -> Upsample:
        size = spec.pair("size", minimum=1) if spec.get("size") is not None else None
        scale, value = None, spec.get("scale_factor")
        if value is not None:
            scale = spec.numbers("scale_factor")
            if not isinstance(value, list):
                scale = scale * 2
            elif len(scale) != 2:
                raise spec.fail("scale_factor", f"expected one number or [rows, cols], got {len(scale)} values")
            for i, factor in enumerate(scale):
                if not 0 < factor <= MAX_SCALE:
                    where = f"scale_factor[{i}]" if isinstance(value, list) else "scale_factor"
                    raise spec.fail(where, f"must be above 0 and at most {MAX_SCALE}, got {factor:g}")
        if size is not None and scale is not None:
            raise spec.fail("scale_factor", "is given with size; give one of them, as PyTorch")
        if size is None and scale is None:
            raise spec.fail("", f"{spec.type} needs size or scale_factor (one of them)")
        if spec.type == "upsample":
            mode = spec.choice("mode", "nearest", resample.UPSAMPLE_MODES)
            corners = spec.get("align_corners")
            if corners is not None and mode == "nearest":
                raise spec.fail("align_corners", "applies to mode bilinear only; leave it out (or null) for nearest")
            align = False if corners is None else spec.boolean("align_corners", False)
            recompute = spec.get("recompute_scale_factor")
            recompute = False if recompute is None else spec.boolean("recompute_scale_factor", False)
            if recompute and size is not None:
                raise spec.fail("recompute_scale_factor", "applies with scale_factor only; with size there is no "
                                                          "scale to recompute")
        else:
            mode = spec.type[len("upsampling"):-2]
            align, recompute = mode == "bilinear", False
        return cls(size, scale, mode, align, recompute, spec.name)  # type: ignore[arg-type]

    def output_shape(self, shape: Shape) -> Shape:
        require_map(shape)
        return (shape[0], *resample.upsample_size(shape[1:], self.size, self.scale_factor))

    def forward(self, x: np.ndarray, batched: bool = False) -> np.ndarray:
        return resample.upsample(x, self.size, self.scale_factor, self.mode, self.align_corners,
                                 self.recompute_scale_factor)

    def working_bytes(self, in_shape: Shape, itemsize: int = 4) -> int:
        return resample.upsample_workspace(in_shape, self.size, self.scale_factor, self.mode, itemsize)

    def macs(self, out_shape: Shape) -> int:
        return 0

    def settings(self) -> dict[str, Any]:
        settings: dict[str, Any] = {"mode": self.mode}
        if self.size is not None:
            settings["size"] = list(self.size)
        else:
            settings["scale_factor"] = list(self.scale_factor)  # type: ignore[arg-type]
            settings["recompute_scale_factor"] = self.recompute_scale_factor
        if self.mode == "bilinear":
            settings["align_corners"] = self.align_corners
        return settings

    def describe(self) -> str:
        if self.size is not None:
            how = f"to {self.size[0]}x{self.size[1]}"
        else:
            how = "x" + resample._factors(self.scale_factor)  # type: ignore[arg-type]
        return f"{self.mode} {how}" + (", align_corners" if self.align_corners else "")


@register
@dataclass(frozen=True, eq=False, repr=False)
class ConvTranspose2d:
    """A transposed conv (PyTorch's ConvTranspose2d): each input cell adds its value times the kernel
    to the output, ``stride`` apart; weight (C, F/groups, KH, KW), input channels first as PyTorch
    stores it. H_out = (H - 1)*stride - 2*padding + dilation*(KH - 1) + output_padding + 1."""

    weight: np.ndarray
    bias: np.ndarray | None = None
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    output_padding: tuple[int, int] = (0, 0)
    groups: int = 1
    dilation: tuple[int, int] = (1, 1)
    name: str = "convtranspose"
    type = "conv_transpose2d"
    types: ClassVar = ("conv_transpose2d", "convtranspose2d")
    keys: ClassVar = ("in_channels", "out_channels", "kernel_size", "stride", "padding", "output_padding", "groups",
                      "bias", "dilation", "padding_mode", "weight")
    required: ClassVar = ("out_channels", "kernel_size")

    @classmethod
    def from_spec(cls, spec: LayerSpec) -> ConvTranspose2d:
        channels = spec.channels()
        out_channels = spec.integer("out_channels", None, 1, 1 << 16)
        kh, kw = spec.pair("kernel_size")
        if spec.has("in_channels") and spec.integer("in_channels", None, 1) != channels:
            raise spec.fail("in_channels", f"is {spec.get('in_channels')}, but the layer before gives {channels} "
                                           "channels")
        groups = spec.integer("groups", 1, 1, 1 << 16)
        if channels % groups or out_channels % groups:
            raise spec.fail("groups", f"must divide in_channels ({channels}) and out_channels ({out_channels}), "
                                      f"got {groups}")
        if spec.get("padding_mode", "zeros") != "zeros":
            spec.read.string(spec.get("padding_mode"), "padding_mode")
            raise spec.fail("padding_mode", f"only 'zeros' is supported for a transposed conv (as in PyTorch), got "
                                            f"{spec.get('padding_mode')!r}")
        stride, dilation = spec.pair("stride", 1), spec.pair("dilation", 1)
        padding, output_padding = spec.pair("padding", 0, minimum=0), spec.pair("output_padding", 0, minimum=0)
        for axis in (0, 1):
            if output_padding[axis] >= stride[axis] and output_padding[axis] >= dilation[axis]:
                raise spec.fail("output_padding", f"must be smaller than either stride ({pair_text(stride)}) or "
                                                  f"dilation ({pair_text(dilation)}), got {pair_text(output_padding)}")
        weight_shape = (channels, out_channels // groups, kh, kw)
        conv_transpose_geometry(spec.shape, weight_shape, stride, padding, output_padding, dilation, groups)
        weight = spec.weight("weight", weight_shape)
        bias = spec.weight("bias", (out_channels,)) if spec.has_bias() else None
        return cls(weight, bias, stride, padding, output_padding, groups, dilation, spec.name)

    def output_shape(self, shape: Shape) -> Shape:
        require_map(shape)
        return conv_transpose_geometry(shape, self.weight.shape, self.stride, self.padding, self.output_padding,
                                       self.dilation, self.groups)

    def forward(self, x: np.ndarray, batched: bool = False) -> np.ndarray:
        return conv_transpose2d(x, self.weight, self.bias, self.stride, self.padding, self.output_padding,
                                self.groups, self.dilation)

    def working_bytes(self, in_shape: Shape, itemsize: int = 4) -> int:
        return conv_transpose2d_workspace(in_shape, self.weight.shape, self.stride, self.padding, self.output_padding,
                                          self.groups, self.dilation, itemsize, self.weight.dtype.itemsize)

    def kept_bytes(self, in_shape: Shape, itemsize: int = 4) -> dict[str, int]:
        """What ``forward`` leaves allocated in libraries: OpenBLAS's buffers after the product, as conv2d's."""
        return {"blas": BLAS_BYTES}

    @property
    def params(self) -> int:
        return self.weight.size + (0 if self.bias is None else self.bias.size)

    def _in_size(self, out_shape: Shape) -> tuple[int, int]:
        """The input (H, W) that gives ``out_shape``: the output-size formula solved for H."""
        _, _, kh, kw = self.weight.shape
        return tuple((out - 1 - extra + 2 * pad - dil * (k - 1)) // s + 1 for out, extra, pad, dil, k, s in zip(
            out_shape[1:], self.output_padding, self.padding, self.dilation, (kh, kw), self.stride))

    def macs(self, out_shape: Shape) -> int:
        """As fvcore counts a transposed conv: every input value times its (F/groups)*KH*KW weights."""
        return conv_transpose_macs((self.weight.shape[0], *self._in_size(out_shape)), self.weight.shape)

    def settings(self) -> dict[str, Any]:
        c, per_group, kh, kw = self.weight.shape
        return {
            "kernel_size": [kh, kw], "in_channels": c, "out_channels": per_group * self.groups,
            "stride": list(self.stride), "padding": list(self.padding), "output_padding": list(self.output_padding),
            "dilation": list(self.dilation), "groups": self.groups, "bias": self.bias is not None,
        }

    def describe(self) -> str:
        _, _, kh, kw = self.weight.shape
        parts = [f"{kh}x{kw}", f"stride {pair_text(self.stride)}"]
        if any(self.padding):
            parts.append(f"padding {pair_text(self.padding)}")
        if any(self.output_padding):
            parts.append(f"output_padding {pair_text(self.output_padding)}")
        if self.dilation != (1, 1):
            parts.append(f"dilation {pair_text(self.dilation)}")
        if self.groups > 1:
            parts.append(f"groups {self.groups}")
        return ", ".join(parts)
