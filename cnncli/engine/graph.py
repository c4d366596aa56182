"""Layers, networks and the forward pass that keeps every intermediate map.

A Network is an ordered tuple of layers. ``Network.shapes`` checks the whole network against an
input shape before anything is computed; ``Network.forward`` returns one Step per layer, the
input first. The options of ``cnn run`` build the same kind of Network as a model file would.
Each layer also says what its forward allocates (``working_bytes``, from the op's formula in
ops), so that ``Network.memory_estimate`` bounds a run's memory before it starts.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Sequence, Union

import numpy as np

from . import ops
from ..errors import CnnError, ShapeError

Shape = tuple[int, ...]
# Up to this many elements (1 MiB of float32) a conv on a batch runs as one product with its
# unrolled matrix: 2-3x faster than window copies for the digits model's 8x8 and 4x4 maps, slower
# for LeNet-5's 28x28 and 14x14 maps, whose matrices are 3.7M and 1.9M elements (benchmarks/).
UNROLLED_MAX_ELEMENTS = 1 << 18
# Python objects that memory_estimate counts beside the arrays: per layer of a network, the layer
# object and its settings (measured: 100-170 bytes of RSS a layer over 10,000 layers); per map
# of a forward pass, its Step, the Step's statistics, the array object and its shape tuples
# (measured: 800-880 bytes). tests/test_model.py holds a deep network to them.
LAYER_BYTES = 512
STEP_BYTES = 1 << 10


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
    _unrolled: dict = field(default_factory=dict, init=False, repr=False)  # input shape -> matrix

    def output_shape(self, shape: Shape) -> Shape:
        _require_map(shape, self)
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

    def working_bytes(self, in_shape: Shape, itemsize: int) -> int:
        """Bytes ``forward`` allocates for one map of ``in_shape``: its output and ops.conv2d's work."""
        return ops.conv2d_workspace(in_shape, self.weight.shape, self.stride, self.padding, self.dilation, self.groups,
                                    self.padding_mode, self.flip, "auto", itemsize, self.weight.dtype.itemsize)

    def kept_bytes(self, in_shape: Shape, itemsize: int) -> dict[str, int]:
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
            "stride": list(self.stride), "padding": _jsonable(self.padding), "padding_mode": self.padding_mode,
            "dilation": list(self.dilation), "groups": self.groups, "bias": self.bias is not None,
        }

    def describe(self) -> str:
        f, c, kh, kw = self.weight.shape
        parts = [f"{kh}x{kw}", f"stride {_pair_text(self.stride)}", f"padding {_padding_text(self.padding)}"]
        if self.flip:  # cross-correlation goes without saying, as in every CNN library
            parts.insert(1, "convolution (flipped kernel)")
        if self.padding_mode != "zeros" and self.padding != "valid":
            parts.append(self.padding_mode)
        if self.dilation != (1, 1):
            parts.append(f"dilation {_pair_text(self.dilation)}")
        if self.groups > 1:  # c is the channels each group sees: one means depthwise
            parts.append(f"groups {self.groups}" + (" (depthwise: each channel on its own)" if c == 1 else ""))
        return ", ".join(parts)


@dataclass(frozen=True, eq=False, repr=False)
class Activation:
    """An element-wise activation: relu, leaky_relu, sigmoid, tanh or none."""

    kind: str = "relu"
    negative_slope: float = 0.01
    name: str = "relu"

    def __post_init__(self) -> None:
        if self.kind not in ops.ACTIVATIONS:
            raise ShapeError(f"expected one of {', '.join(ops.ACTIVATIONS)}, got {self.kind!r}", source="activation")

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

    def working_bytes(self, in_shape: Shape, itemsize: int) -> int:
        return ops.activation_workspace(self.kind, in_shape, itemsize, self.negative_slope)

    def settings(self) -> dict[str, Any]:
        return {"negative_slope": self.negative_slope} if self.kind == "leaky_relu" else {}

    def describe(self) -> str:
        return f"negative slope {self.negative_slope:g}" if self.kind == "leaky_relu" else ""


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

    @property
    def type(self) -> str:
        return f"{self.kind}pool2d"

    def output_shape(self, shape: Shape) -> Shape:
        _require_map(shape, self)
        *_, out, _ = ops.pool_geometry(shape[1:], self.kernel_size, self.stride, self.padding,
                                       self.dilation, self.ceil_mode)
        return (shape[0], *out)

    def forward(self, x: np.ndarray, batched: bool = False) -> np.ndarray:
        if self.kind == "max":
            return ops.max_pool2d(x, self.kernel_size, self.stride, self.padding, self.dilation, self.ceil_mode)
        return ops.avg_pool2d(x, self.kernel_size, self.stride, self.padding, self.ceil_mode, self.count_include_pad)

    def working_bytes(self, in_shape: Shape, itemsize: int) -> int:
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
        parts = [f"{self.kernel_size[0]}x{self.kernel_size[1]}", f"stride {_pair_text(self.stride or self.kernel_size)}"]
        if any(self.padding):
            parts.append(f"padding {_pair_text(self.padding)}")
        if self.ceil_mode:
            parts.append("ceil_mode")
        return ", ".join(parts)


@dataclass(frozen=True, eq=False, repr=False)
class GlobalAvgPool2d:
    """Mean of each channel: (C, H, W) -> (C, 1, 1)."""

    name: str = "globalavgpool"
    type = "globalavgpool2d"

    def output_shape(self, shape: Shape) -> Shape:
        _require_map(shape, self)
        return (shape[0], 1, 1)

    def forward(self, x: np.ndarray, batched: bool = False) -> np.ndarray:
        return ops.global_avg_pool2d(x)

    def working_bytes(self, in_shape: Shape, itemsize: int) -> int:
        return ops.global_avg_pool2d_workspace(in_shape, itemsize)

    def settings(self) -> dict[str, Any]:
        return {}

    def describe(self) -> str:
        return ""


@dataclass(frozen=True, eq=False, repr=False)
class Flatten:
    """(C, H, W) -> (C*H*W,) in C order: channel slowest, then row, then column (as PyTorch)."""

    name: str = "flatten"
    type = "flatten"
    view = True  # of its C-contiguous input, as every op returns and images are read

    def output_shape(self, shape: Shape) -> Shape:
        return (math.prod(shape),)

    def forward(self, x: np.ndarray, batched: bool = False) -> np.ndarray:
        return ops.flatten(x, batched)

    def working_bytes(self, in_shape: Shape, itemsize: int) -> int:
        return 0

    def settings(self) -> dict[str, Any]:
        return {"order": "CHW"}

    def describe(self) -> str:
        return "C, H, W order"


@dataclass(frozen=True, eq=False, repr=False)
class Dense:
    """A fully-connected layer y = x W^T + b with W (out, in)."""

    weight: np.ndarray
    bias: np.ndarray | None = None
    name: str = "dense"
    origin: str = ""  # where the weights came from, e.g. "random, seed 0" or a file name
    labels: tuple[str, ...] = ()
    type = "dense"

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

    def working_bytes(self, in_shape: Shape, itemsize: int) -> int:
        return ops.linear_workspace(in_shape, self.weight.shape, itemsize, self.weight.dtype.itemsize)

    def kept_bytes(self, in_shape: Shape, itemsize: int) -> dict[str, int]:
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


@dataclass(frozen=True, eq=False, repr=False)
class Softmax:
    """exp(x) / sum(exp(x)) over a flat vector."""

    name: str = "softmax"
    type = "softmax"

    def output_shape(self, shape: Shape) -> Shape:
        return shape

    def forward(self, x: np.ndarray, batched: bool = False) -> np.ndarray:
        return ops.softmax(x, axis=-1)

    def working_bytes(self, in_shape: Shape, itemsize: int) -> int:
        return ops.softmax_workspace(in_shape, itemsize)

    def settings(self) -> dict[str, Any]:
        return {}

    def describe(self) -> str:
        return ""


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

    @property
    def type(self) -> str:
        return self.kind

    @property
    def features(self) -> int:
        return self.running_mean.shape[0]

    def output_shape(self, shape: Shape) -> Shape:
        if self.kind == "batchnorm2d":
            _require_map(shape, self)
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

    def working_bytes(self, in_shape: Shape, itemsize: int) -> int:
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


@dataclass(frozen=True, eq=False, repr=False)
class Dropout:
    """Dropout: nothing at inference. Kept so the network reads as it was trained."""

    p: float = 0.5
    name: str = "dropout"
    type = "dropout"
    view = True  # returns its input

    def output_shape(self, shape: Shape) -> Shape:
        return shape

    def forward(self, x: np.ndarray, batched: bool = False) -> np.ndarray:
        return x

    def working_bytes(self, in_shape: Shape, itemsize: int) -> int:
        return 0

    def settings(self) -> dict[str, Any]:
        return {"p": self.p}

    def describe(self) -> str:
        return f"p {self.p:g} (nothing at inference)"


Layer = Union[Conv2d, Activation, Pool2d, GlobalAvgPool2d, Flatten, Dense, Softmax, BatchNorm, Dropout]


@dataclass(frozen=True, eq=False, repr=False)
class Step:
    """One layer's output in a forward pass; index 0 is the input itself."""

    index: int
    name: str
    type: str
    output: np.ndarray
    seconds: float = 0.0
    layer: Layer | None = None
    in_shape: Shape = ()
    labels: tuple[str, ...] = ()  # one per channel: kernel names, or the image's channel names

    @property
    def settings(self) -> dict[str, Any]:
        return {} if self.layer is None else self.layer.settings()

    @property
    def params(self) -> int:
        return getattr(self.layer, "params", 0)

    @property
    def macs(self) -> int:
        macs = getattr(self.layer, "macs", None)
        return 0 if macs is None else macs(self.output.shape)

    @cached_property
    def stats(self) -> dict[str, float]:
        return map_stats(self.output)


_STATS_CHUNK = 1 << 16


def map_stats(array: np.ndarray) -> dict[str, float]:
    """min, max, mean, std and the share of exact zeros of an array.

    Sums run in float64 over chunks, so a big float32 map needs no float64 copy of itself, only
    one chunk's deviations (``stats_workspace``).
    """
    flat = np.asarray(array).reshape(-1)
    with np.errstate(all="ignore"):  # a map holding infinities has an infinite or NaN mean: say so, quietly
        if flat.size <= _STATS_CHUNK:  # most maps: one chunk, without the loops (10,000 layers, 10,000 maps)
            mean = float(flat.sum(dtype=np.float64)) / flat.size
            squares = float(np.square(flat - mean, dtype=np.float64).sum())
            zeros = flat.size - int(np.count_nonzero(flat))
        else:
            chunks = [flat[i:i + _STATS_CHUNK] for i in range(0, flat.size, _STATS_CHUNK)]
            mean = sum(float(chunk.sum(dtype=np.float64)) for chunk in chunks) / flat.size
            squares = sum(float(np.square(chunk - mean, dtype=np.float64).sum()) for chunk in chunks)
            zeros = flat.size - sum(int(np.count_nonzero(chunk)) for chunk in chunks)
    return {
        "min": float(flat.min()),
        "max": float(flat.max()),
        "mean": mean,
        "std": math.sqrt(squares / flat.size),
        "zeros": zeros / flat.size,
    }


def stats_workspace(size: int, itemsize: int) -> int:
    """Bytes ``map_stats`` allocates for a map of ``size`` values: one chunk's deviations in the
    map's dtype and their squares in float64, and NumPy's buffers for the float64 sums."""
    return min(size, _STATS_CHUNK) * (itemsize + 8) + ops._call_bytes(8)


@dataclass(frozen=True, eq=False, repr=False)
class Network:
    layers: tuple[Layer, ...]

    def shapes(self, input_shape: Shape) -> list[Shape]:
        """The output shape of every layer for one input of ``input_shape``, checking each layer.

        Raises ShapeError naming the first layer that does not fit.
        """
        shapes = [tuple(input_shape)]
        for layer in self.layers:
            try:
                shapes.append(tuple(layer.output_shape(shapes[-1])))
            except CnnError as err:
                message = err.message if err.source == layer.name else str(err)
                raise ShapeError(f"{message} (input {_shape_text(shapes[-1])})", source=layer.name) from None
        return shapes

    def forward(self, x: np.ndarray, labels: Sequence[str] = ()) -> list[Step]:
        """Run every layer on a (C, H, W) map; return the input and each layer's output, in order.

        ``labels`` name the input's channels; a layer that keeps the channels (an activation, a
        pooling) keeps the labels of the layer before it. The work buffers ops keeps between
        calls are let go after each layer, so what a layer holds at once is its own
        (``memory_estimate``).
        """
        self.shapes(x.shape)
        labels = tuple(labels)
        steps = [Step(0, "input", "input", x, labels=labels)]
        ops.release_buffers()
        try:
            with np.errstate(all="ignore"):  # overflow shows as inf in the maps, and the CLI says so
                for index, layer in enumerate(self.layers, start=1):
                    started = time.perf_counter()
                    y = layer.forward(x)
                    elapsed = time.perf_counter() - started
                    ops.release_buffers()
                    own = tuple(getattr(layer, "labels", ()))
                    keeps_channels = y.ndim == x.ndim == 3 and y.shape[0] == x.shape[0]
                    labels = own or (labels if keeps_channels else ())
                    steps.append(Step(index, layer.name, layer.type, y, elapsed, layer, x.shape, labels))
                    x = y
        finally:
            ops.release_buffers()
        return steps

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """Run a batch (N, C, H, W) through every layer at once and return only the last output.

        No map is kept, so the layers may be rewritten into fewer, equal ones (``inference_layers``).
        """
        self.shapes(batch.shape[1:])
        x = batch
        with np.errstate(all="ignore"):
            for layer in self.inference_layers:
                x = layer.forward(x, batched=True)
        return x

    @cached_property
    def inference_layers(self) -> tuple[Layer, ...]:
        """The layers with the rewrites inference runtimes make, none of which changes a result
        beyond float rounding: batch norm folded into the conv before it, dropout dropped, and
        ReLU moved after a max-pool that follows it (max commutes with ReLU; 4x fewer values)."""
        result: list[Layer] = []
        for layer in self.layers:
            before = result[-1] if result else None
            if isinstance(layer, Dropout):
                continue
            if isinstance(layer, BatchNorm) and isinstance(before, Conv2d) and not before.flip:
                result[-1] = _fold_batch_norm(before, layer)
            elif (isinstance(layer, Pool2d) and layer.kind == "max" and isinstance(before, Activation)
                  and before.kind == "relu"):
                result[-1:] = [layer, before]
            else:
                result.append(layer)
        return tuple(result)

    def memory_estimate(self, input_shape: Shape, itemsize: int) -> int:
        """Bytes that a ``forward`` on one input of ``input_shape`` has allocated at once, at most,
        with the statistics of every map computed after it: an upper bound from shapes alone.

        While layer i runs, the process holds the network (its arrays and LAYER_BYTES a layer),
        the input and the maps of layers 1..i-1 (each kept, for they are all shown, but none for a
        layer whose output is a view of its input), a Step per map (STEP_BYTES), and what layer
        i allocates (``working_bytes``: its output, padded copies, work buffers, temporaries);
        and what libraries keep once a layer has used them (``kept_bytes``: OpenBLAS's buffers,
        the thread pool). After the last layer: every map, and one map's statistics at a time
        (``stats_workspace``). The estimate is the largest of these. The input map is counted:
        its caller allocated it within the same run.

        Raises ShapeError as ``shapes`` does.
        """
        shapes = self.shapes(input_shape)
        network = sum(_array_bytes(layer) + LAYER_BYTES for layer in self.layers)
        held = _map_bytes(math.prod(shapes[0]), itemsize) + STEP_BYTES
        kept: dict[str, int] = {}  # by library, the most any layer so far left there
        peak = 0
        for layer, before, after in zip(self.layers, shapes, shapes[1:]):
            if hasattr(layer, "kept_bytes"):
                for name, size in layer.kept_bytes(before, itemsize).items():
                    kept[name] = max(kept.get(name, 0), size)
            peak = max(peak, held + sum(kept.values()) + layer.working_bytes(before, itemsize))
            held += (0 if getattr(layer, "view", False) else _map_bytes(math.prod(after), itemsize)) + STEP_BYTES
        largest = max(math.prod(shape) for shape in shapes)
        peak = max(peak, held + sum(kept.values()) + stats_workspace(largest, itemsize))
        return network + peak

    def table(self, input_shape: Shape) -> list[dict[str, Any]]:
        """One row per layer for one input (name, type, description, output shape, parameters,
        multiply-adds), computed from shapes alone: what ``cnn summary`` prints."""
        shapes = self.shapes(input_shape)
        rows = []
        for layer, shape in zip(self.layers, shapes[1:]):
            macs = getattr(layer, "macs", None)
            rows.append({"name": layer.name, "type": layer.type, "describe": layer.describe(),
                         "settings": layer.settings(), "shape": shape, "params": getattr(layer, "params", 0),
                         "macs": 0 if macs is None else macs(shape)})
        return rows


def _fold_batch_norm(conv: Conv2d, norm: BatchNorm) -> Conv2d:
    """One conv equal to conv then batch norm: weights scaled per filter, the shift added to the bias."""
    scale, shift = ops.batch_norm_terms(norm.running_mean, norm.running_var, norm.weight, norm.bias, norm.eps)
    bias = shift if conv.bias is None else conv.bias * scale + shift
    dtype = conv.weight.dtype
    return Conv2d((conv.weight * scale[:, None, None, None]).astype(dtype), bias.astype(dtype), conv.stride,
                  conv.padding, conv.padding_mode, conv.dilation, conv.groups, False, conv.name, conv.labels)


def _array_bytes(layer: Any) -> int:
    """Bytes of the arrays a layer holds (weights, bias, running statistics)."""
    return sum(value.nbytes for value in vars(layer).values() if isinstance(value, np.ndarray))


def _map_bytes(size: int, itemsize: int) -> int:
    """Bytes a map of ``size`` values takes in memory: a big one in whole pages of its own (4 KiB),
    a small one with its allocator header, rounded to 16 bytes."""
    nbytes = size * itemsize + 16
    return -(-nbytes // 4096) * 4096 if nbytes > 1 << 17 else -(-nbytes // 16) * 16


def _require_map(shape: Shape, layer: Any) -> None:
    if len(shape) != 3:
        raise ShapeError(f"takes a (C, H, W) map, got shape {shape}")


def _jsonable(value: Any) -> Any:
    return value if isinstance(value, (str, int)) else [int(v) for v in value]


def _pair_text(value: Sequence[int]) -> str:
    return str(value[0]) if value[0] == value[1] else ",".join(str(v) for v in value)


def _padding_text(padding: Any) -> str:
    if isinstance(padding, str):
        return padding
    if isinstance(padding, int):
        return str(padding)
    values = list(padding)
    return str(values[0]) if len(set(values)) == 1 else ",".join(str(v) for v in values)


def _shape_text(shape: Shape) -> str:
    return str(tuple(shape))


@dataclass(frozen=True)
class StageOptions:
    """The layer options of ``cnn run``: one conv stage, then an optional dense layer."""

    stride: tuple[int, int] = (1, 1)
    padding: Any = "valid"
    padding_mode: str = "zeros"
    dilation: tuple[int, int] = (1, 1)
    flip: bool = False
    activation: str = "relu"
    negative_slope: float = 0.01
    pool: str = "max"
    pool_size: tuple[int, int] = (2, 2)
    pool_stride: tuple[int, int] | None = None
    ceil_mode: bool = False
    softmax: bool = False


def single_stage(weight: np.ndarray, bias: np.ndarray | None, groups: int, labels: Sequence[str],
                 options: StageOptions, dense: Dense | None = None) -> Network:
    """conv -> activation -> pooling -> (flatten -> dense -> softmax), as ``cnn run`` builds it."""
    layers: list[Layer] = [Conv2d(weight, bias, options.stride, options.padding, options.padding_mode,
                                  options.dilation, groups, options.flip, "conv1", tuple(labels))]
    if options.activation != "none":
        layers.append(Activation(options.activation, options.negative_slope, f"{options.activation}1"))
    if options.pool != "none":
        layers.append(Pool2d(options.pool, options.pool_size, options.pool_stride, ceil_mode=options.ceil_mode,
                             name=f"{options.pool}pool1"))
    if dense is not None:
        layers += [Flatten("flatten1"), dense]
        if options.softmax:
            layers.append(Softmax("softmax1"))
    return Network(tuple(layers))
