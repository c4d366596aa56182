"""Layers that move values without computing new ones: identity, channel_shuffle (ShuffleNet's), pad,
slice and reshape, with PyTorch's settings and meaning."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from .. import ops
from ...errors import ShapeError
from .base import Shape, axis, check_dim, map_bytes, register, require_map

if TYPE_CHECKING:
    from ...io.modelfile import LayerSpec

PAD_MODES = ("constant", "reflect", "replicate", "circular")


class _Moves:
    """What these layers share: one input, no parameters, no multiply-adds."""

    inputs: ClassVar[tuple[int, int | None]] = (1, 1)
    params: ClassVar = 0
    required: ClassVar[tuple[str, ...]] = ()

    @property
    def type(self) -> str:
        return self.types[0]  # type: ignore[attr-defined]

    def macs(self, out_shape: Shape) -> int:
        return 0


@register
@dataclass(frozen=True, eq=False, repr=False)
class Identity(_Moves):
    """Its input, unchanged (torch.nn.Identity): a placeholder where a model had a layer removed."""

    name: str = "identity"
    types: ClassVar = ("identity",)
    keys: ClassVar = ()
    view: ClassVar = True  # returns its input

    @classmethod
    def from_spec(cls, spec: LayerSpec) -> Identity:
        return cls(spec.name)

    def output_shape(self, shape: Shape) -> Shape:
        return shape

    def forward(self, x: np.ndarray, batched: bool = False) -> np.ndarray:
        return x

    def working_bytes(self, in_shape: Shape, itemsize: int = 4) -> int:
        return 0

    def settings(self) -> dict[str, Any]:
        return {}

    def describe(self) -> str:
        return ""


@register
@dataclass(frozen=True, eq=False, repr=False)
class ChannelShuffle(_Moves):
    """Interleaves the channels of ``groups`` groups, as torch.nn.ChannelShuffle (ShuffleNet): the
    channels seen as (groups, C/groups) are transposed, so output channel i * groups + g is input
    channel g * (C/groups) + i."""

    groups: int
    name: str = "channel_shuffle"
    types: ClassVar = ("channel_shuffle",)
    keys: ClassVar = ("groups",)
    required: ClassVar = ("groups",)
    view: ClassVar = False
    mixes_channels: ClassVar = True  # output channel i is not input channel i: its label does not carry over

    @classmethod
    def from_spec(cls, spec: LayerSpec) -> ChannelShuffle:
        groups = spec.integer("groups", None, 1, 1 << 24)
        channels = spec.channels()
        if channels % groups:
            raise spec.fail("groups", f"must divide the {channels} channels of the layer before, got {groups}")
        return cls(groups, spec.name)

    def output_shape(self, shape: Shape) -> Shape:
        require_map(shape)
        if shape[0] % self.groups:
            raise ShapeError(f"the input's {shape[0]} channels do not split into {self.groups} groups "
                             "(groups must divide them)")
        return shape

    def forward(self, x: np.ndarray, batched: bool = False) -> np.ndarray:
        axis = 1 if batched else 0
        channels = x.shape[axis]
        y = x.reshape(x.shape[:axis] + (self.groups, channels // self.groups) + x.shape[axis + 1:])  # (N,) G, C/G, H, W
        y = np.swapaxes(y, axis, axis + 1)  # (N,) C/G, G, H, W
        return np.ascontiguousarray(y).reshape(x.shape)  # (N,) C, H, W

    def working_bytes(self, in_shape: Shape, itemsize: int = 4) -> int:
        return map_bytes(math.prod(in_shape), itemsize) + (1 << 12)

    def settings(self) -> dict[str, Any]:
        return {"groups": self.groups}

    def describe(self) -> str:
        return f"{self.groups} groups"


@register
@dataclass(frozen=True, eq=False, repr=False)
class Pad(_Moves):
    """Pads a map's width and height, as torch.nn.functional.pad and nn.ZeroPad2d / ReflectionPad2d
    / ReplicationPad2d / CircularPad2d: ``padding`` is one number for all four sides or (left,
    right, top, bottom), PyTorch's order (last dimension first). ``constant`` fills with ``value``;
    ``reflect`` mirrors without repeating the edge (each padding below the side's size);
    ``replicate`` repeats the edge; ``circular`` wraps around (each padding at most the size)."""

    padding: tuple[int, int, int, int]  # left, right, top, bottom
    mode: str = "constant"
    value: float = 0.0
    name: str = "pad"
    types: ClassVar = ("pad",)
    keys: ClassVar = ("padding", "mode", "value")
    required: ClassVar = ("padding",)

    def __post_init__(self) -> None:
        if self.mode not in PAD_MODES:
            raise ShapeError(f"expected one of {', '.join(PAD_MODES)}, got {self.mode!r}", source="mode")

    @classmethod
    def from_spec(cls, spec: LayerSpec) -> Pad:
        padding = spec.integers("padding", None, 0, 1 << 16)
        if len(padding) not in (1, 4):
            raise spec.fail("padding", f"expected one integer or [left, right, top, bottom] (PyTorch's order), got "
                                       f"{len(padding)} values")
        mode = spec.choice("mode", "constant", PAD_MODES)
        if spec.has("value") and mode != "constant":
            raise spec.fail("value", f"is for mode constant only; mode {mode} takes its values from the map")
        sides = padding * 4 if len(padding) == 1 else padding
        pad = cls(sides, mode, spec.number("value", 0.0), spec.name)  # type: ignore[arg-type]
        require_map(spec.shape)
        try:
            pad.output_shape(spec.shape)
        except ShapeError as err:
            raise spec.fail("padding", err.message) from None
        return pad

    @property
    def view(self) -> bool:
        return self.padding == (0, 0, 0, 0)  # forward returns its input

    def output_shape(self, shape: Shape) -> Shape:
        require_map(shape)
        left, right, top, bottom = self.padding
        channels, height, width = shape
        if self.mode == "reflect" and (max(left, right) >= width or max(top, bottom) >= height):
            raise ShapeError(f"reflect padding {list(self.padding)} (left, right, top, bottom) needs each padding "
                             f"below the map's size, {width} wide and {height} high")
        if self.mode == "circular" and (max(left, right) > width or max(top, bottom) > height):
            raise ShapeError(f"circular padding {list(self.padding)} (left, right, top, bottom) needs each padding "
                             f"at most the map's size, {width} wide and {height} high")
        return (channels, height + top + bottom, width + left + right)

    def forward(self, x: np.ndarray, batched: bool = False) -> np.ndarray:
        if self.view:
            return x
        left, right, top, bottom = self.padding
        mode = "zeros" if self.mode == "constant" else self.mode
        return ops.pad2d(x, (top, bottom, left, right), mode, self.value)  # ops' order: top, bottom, left, right

    def working_bytes(self, in_shape: Shape, itemsize: int = 4) -> int:
        if self.view:
            return 0
        return map_bytes(math.prod(self.output_shape(in_shape)), itemsize) + (1 << 12)

    def settings(self) -> dict[str, Any]:
        settings: dict[str, Any] = {"padding": list(self.padding), "mode": self.mode}
        if self.mode == "constant":
            settings["value"] = self.value
        return settings

    def describe(self) -> str:
        left, right, top, bottom = self.padding
        sides = str(left) if len(set(self.padding)) == 1 else f"left {left}, right {right}, top {top}, bottom {bottom}"
        fill = f"constant {self.value:g}" if self.mode == "constant" else self.mode
        return f"{sides}, {fill}"


@register
@dataclass(frozen=True, eq=False, repr=False)
class Slice(_Moves):
    """Every ``step``-th index from ``start`` up to (not including) ``end`` along ``dim``, as PyTorch's
    ``x[:, start:end:step]`` for dim 1 (ShuffleNet's channel split; ONNX Slice and Split). Negative
    ``start`` and ``end`` count from the end and both are clamped to the size, as in Python; the
    result must not be empty."""

    dim: int
    start: int
    end: int
    step: int = 1
    name: str = "slice"
    types: ClassVar = ("slice",)
    keys: ClassVar = ("dim", "start", "end", "step")
    required: ClassVar = ("dim", "start", "end")
    view: ClassVar = False

    @classmethod
    def from_spec(cls, spec: LayerSpec) -> Slice:
        limit = 1 << 40
        layer = cls(spec.integer("dim", None, -8, 8), spec.integer("start", None, -limit, limit),
                    spec.integer("end", None, -limit, limit), spec.integer("step", 1, 1, limit), spec.name)
        try:
            layer.output_shape(spec.shape)
        except ShapeError as err:
            raise spec.fail("dim" if err.message.startswith("dim ") else "end", err.message) from None
        return layer

    def _along(self, ndim: int) -> int:
        check_dim(self.dim, ndim)
        return axis(self.dim, ndim, False) % ndim

    def output_shape(self, shape: Shape) -> Shape:
        along = self._along(len(shape))
        size = len(range(*slice(self.start, self.end, self.step).indices(shape[along])))
        if size == 0:
            raise ShapeError(f"start {self.start}, end {self.end} leave nothing of dim {self.dim}, which has "
                             f"{shape[along]} entries")
        return tuple(size if i == along else d for i, d in enumerate(shape))

    def forward(self, x: np.ndarray, batched: bool = False) -> np.ndarray:
        index = [slice(None)] * x.ndim
        index[axis(self.dim, x.ndim - batched, batched)] = slice(self.start, self.end, self.step)
        return np.ascontiguousarray(x[tuple(index)])  # a copy: later layers and views expect contiguous maps

    def working_bytes(self, in_shape: Shape, itemsize: int = 4) -> int:
        return map_bytes(math.prod(self.output_shape(in_shape)), itemsize) + (1 << 12)

    def settings(self) -> dict[str, Any]:
        return {"dim": self.dim, "start": self.start, "end": self.end, "step": self.step}

    def describe(self) -> str:
        step = f":{self.step}" if self.step != 1 else ""
        return f"dim {self.dim} [{self.start}:{self.end}{step}]"


@register
@dataclass(frozen=True, eq=False, repr=False)
class Reshape(_Moves):
    """Each sample's values in row-major order, given the shape ``shape``: x.reshape(N, *shape), as
    torch.nn.Unflatten after a flatten (a dense layer's output made a map, as a generator's first
    layer does; ONNX Reshape and Unsqueeze). The shape is a vector (F,) or a map (C, H, W); one
    entry may be -1, the rest of the values."""

    shape: tuple[int, ...]
    name: str = "reshape"
    types: ClassVar = ("reshape",)
    keys: ClassVar = ("shape",)
    required: ClassVar = ("shape",)
    view: ClassVar = True  # numpy's reshape of a contiguous map is a view of it

    @classmethod
    def from_spec(cls, spec: LayerSpec) -> Reshape:
        values = spec.get("shape")
        if not isinstance(values, list) or not values or any(not isinstance(v, int) or isinstance(v, bool)
                                                                for v in values):
            raise spec.fail("shape", f"expected a list of 1 or 3 whole numbers (one may be -1), got {values!r}")
        layer = cls(tuple(values), spec.name)
        try:
            layer.output_shape(spec.shape)
        except ShapeError as err:
            raise spec.fail("shape", err.message) from None
        return layer

    def output_shape(self, shape: Shape) -> Shape:
        target = list(self.shape)
        if len(target) not in (1, 3):
            raise ShapeError(f"shape {target}: expected a vector (F,) or a map (C, H, W)")
        size = math.prod(shape)
        if target.count(-1) > 1 or any(d < -1 or d == 0 for d in target):
            raise ShapeError(f"shape {target}: expected sizes of 1 or more, one of them -1 at most")
        if -1 in target:
            known = math.prod(d for d in target if d != -1)
            if size % known:
                raise ShapeError(f"the input's {size} values do not fill shape {target}")
            target[target.index(-1)] = size // known
        if math.prod(target) != size:
            raise ShapeError(f"the input's {size} values (shape {tuple(shape)}) do not fill shape {tuple(target)}")
        return tuple(target)

    def forward(self, x: np.ndarray, batched: bool = False) -> np.ndarray:
        sample = x.shape[1:] if batched else x.shape
        target = self.output_shape(sample)
        return np.ascontiguousarray(x).reshape(((x.shape[0],) if batched else ()) + target)

    def working_bytes(self, in_shape: Shape, itemsize: int = 4) -> int:
        return 0

    def settings(self) -> dict[str, Any]:
        return {"shape": list(self.shape)}

    def describe(self) -> str:
        return "to " + "x".join(str(d) for d in self.shape)
