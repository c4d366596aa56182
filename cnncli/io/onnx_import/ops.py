"""One converter per ONNX operator, for the operators on maps (conv, norms, activations, pools;
tensor_ops.py has those that reshape, join and do arithmetic, math_ops.py element-wise math and
reductions). A converter reads a node's attributes and inputs (through the Importer) and emits the
layers that compute it. Each follows the operator's definition at the model's opset (onnx
docs/Operators.md and Changelog.md), where it differs from PyTorch's: pads listed as all begins
then all ends, HardSigmoid's defaults 0.2/0.5, Softmax's and LogSoftmax's 2-D coercion before
opset 13, Clip's bounds as attributes before opset 11, broadcast attributes before opset 7.

A converter raises Unsupported for a use of its operator that has no layer here (a 1-D conv, a
Reshape that is not a flatten, a Softmax over several axes) and SpecError or ShapeError for a
node that is wrong whatever reads it.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np

from ...engine import layers as L
from ...errors import ShapeError
from .build import Importer, Unsupported, shape_text

Converter = Callable[[Importer, dict[str, Any]], None]
CONVERTERS: dict[str, Converter] = {}


def converts(*ops: str) -> Callable[[Converter], Converter]:
    def register(function: Converter) -> Converter:
        for op in ops:
            CONVERTERS[op] = function
        return function
    return register


def layer_name(imp: Importer) -> str:
    return imp.name_for(imp.output())


def unary(imp: Importer, layer: Any) -> None:
    source, _ = imp.tensor(0)
    imp.emit(layer, [source], imp.output())


def _spatial(imp: Importer, attrs: dict[str, Any], key: str, default: int, shape: tuple[int, ...]) -> tuple[int, int]:
    value = attrs.get(key, [default, default])
    if len(value) != 2:
        raise Unsupported(f"{key} {list(value)}: cnn imports 2-D (N, C, H, W) operators only")
    return int(value[0]), int(value[1])


def _pads(imp: Importer, attrs: dict[str, Any], in_hw: tuple[int, int], kernel: tuple[int, int],
          stride: tuple[int, int], dilation: tuple[int, int]) -> tuple[int, int, int, int]:
    """ONNX pads [top, left, bottom, right] (all begins, then all ends), or what ``auto_pad`` makes
    them, as (top, bottom, left, right)."""
    auto = attrs.get("auto_pad", "NOTSET")
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        sides: list[tuple[int, int]] = []  # (before, after) of rows, then of columns
        for size, k, s, d in zip(in_hw, kernel, stride, dilation):
            out = -(-size // s)
            total = max((out - 1) * s + (k - 1) * d + 1 - size, 0)
            small, large = total // 2, total - total // 2
            sides.append((small, large) if auto == "SAME_UPPER" else (large, small))  # the odd cell at the end (UPPER)
        return sides[0][0], sides[0][1], sides[1][0], sides[1][1]
    if auto == "VALID":
        return 0, 0, 0, 0
    if auto != "NOTSET":
        raise imp.fail(f"auto_pad {auto!r}: expected NOTSET, SAME_UPPER, SAME_LOWER or VALID")
    pads = [int(p) for p in attrs.get("pads", [0, 0, 0, 0])]
    if len(pads) != 4:
        raise Unsupported(f"pads {pads}: cnn imports 2-D operators only (4 pads)")
    if min(pads) < 0:
        raise imp.fail(f"pads {pads} must not be negative")
    top, left, bottom, right = pads
    return top, bottom, left, right


def require_map(imp: Importer, shape: tuple[int, ...]) -> None:
    if len(shape) != 3:
        raise Unsupported(f"input of shape {shape_text(shape)}: cnn imports this operator on (N, C, H, W) maps only")


def conv_operands(imp: Importer, attrs: dict[str, Any],
                  kind: str) -> tuple[str, tuple[int, ...], np.ndarray, np.ndarray | None, int]:
    """A Conv's or ConvTranspose's input (name, shape), 4-D weight, optional bias and group, with the
    weight's kernel checked against ``kernel_shape``; ``kind`` names the operator in errors."""
    source, shape = imp.tensor(0)
    weight = imp.const(1, "the weight W")
    bias = imp.optional(2, "the bias B")
    if weight.ndim != 4:
        raise Unsupported(f"weight of shape {weight.shape}: cnn imports 2-D {kind} only")
    require_map(imp, shape)
    if "kernel_shape" in attrs and tuple(attrs["kernel_shape"]) != weight.shape[2:]:
        raise imp.fail(f"kernel_shape {list(attrs['kernel_shape'])} does not match the weight {weight.shape}",
                       ShapeError)
    return source, shape, weight, bias, int(attrs.get("group", 1))


@converts("Conv")
def conv(imp: Importer, attrs: dict[str, Any]) -> None:
    source, shape, weight, bias, groups = conv_operands(imp, attrs, "convolutions")
    f, c, kh, kw = weight.shape
    if groups < 1 or f % groups or c * groups != shape[0]:
        raise imp.fail(f"weight {imp.node.input[1]!r} of shape {weight.shape} with group {groups} takes "
                       f"{c * groups} input channels, but input {imp.node.input[0]!r} has shape {shape_text(shape)}",
                       ShapeError)
    if bias is not None and bias.shape != (f,):
        raise imp.fail(f"bias {imp.node.input[2]!r} has shape {bias.shape}; the weight {weight.shape} needs ({f},)",
                       ShapeError)
    stride = _spatial(imp, attrs, "strides", 1, shape)
    dilation = _spatial(imp, attrs, "dilations", 1, shape)
    padding = _pads(imp, attrs, (shape[1], shape[2]), (kh, kw), stride, dilation)
    imp.emit(L.Conv2d(weight, bias, stride, padding, "zeros", dilation, groups, False, layer_name(imp)), [source],
             imp.output())


@converts("BatchNormalization")
def batch_norm(imp: Importer, attrs: dict[str, Any]) -> None:
    source, shape = imp.tensor(0)
    if attrs.get("spatial", 1) == 0:
        raise Unsupported("spatial=0 (statistics per value, not per channel)")
    if attrs.get("training_mode", 0):
        raise Unsupported("training_mode=1")
    arrays = [imp.const(i, what) for i, what in enumerate(("the scale", "the bias B", "the mean", "the variance"),
                                                           start=1)]
    channels = shape[0] if shape else 0
    for index, array in enumerate(arrays, start=1):
        if array.shape != (channels,):
            raise imp.fail(f"input {imp.node.input[index]!r} has shape {array.shape}; input {imp.node.input[0]!r} "
                           f"of shape {shape_text(shape)} needs ({channels},)", ShapeError)
    if np.any(arrays[3] < 0):
        raise imp.fail(f"variance {imp.node.input[4]!r} has negative values")
    kind = "batchnorm2d" if len(shape) == 3 else "batchnorm1d"
    imp.emit(L.BatchNorm(arrays[2], arrays[3], arrays[0], arrays[1], float(attrs.get("epsilon", 1e-5)), layer_name(imp),
                         kind), [source], imp.output())


@converts("Relu", "Sigmoid", "Tanh")
def activation(imp: Importer, attrs: dict[str, Any]) -> None:
    unary(imp, L.Activation(imp.node.op_type.lower(), 0.01, layer_name(imp)))


@converts("LeakyRelu")
def leaky_relu(imp: Importer, attrs: dict[str, Any]) -> None:
    unary(imp, L.Activation("leaky_relu", float(attrs.get("alpha", 0.01)), layer_name(imp)))


@converts("Elu")
def elu(imp: Importer, attrs: dict[str, Any]) -> None:
    unary(imp, L.ELU(float(attrs.get("alpha", 1.0)), layer_name(imp)))


@converts("Selu")
def selu(imp: Importer, attrs: dict[str, Any]) -> None:
    """gamma * elu(x, alpha): an elu layer, then the scale as an affine layer named by the node's output."""
    source, _ = imp.tensor(0)
    alpha = float(attrs.get("alpha", 1.6732632423543772))
    gamma = float(attrs.get("gamma", 1.0507009873554805))
    elu_name = imp.name_for(imp.output() + "/elu")
    imp.emit(L.ELU(alpha, elu_name), [source])
    imp.emit(L.Affine(np.asarray(gamma, np.float32), None, layer_name(imp)), [elu_name], imp.output())


@converts("Mish")
def mish(imp: Importer, attrs: dict[str, Any]) -> None:
    unary(imp, L.Mish(layer_name(imp)))


@converts("Softplus")
def softplus(imp: Importer, attrs: dict[str, Any]) -> None:
    # ONNX's is log(1 + exp(x)) everywhere; PyTorch's threshold 20 differs from it by < 2.1e-9.
    unary(imp, L.Softplus(1.0, 20.0, layer_name(imp)))


@converts("Gelu")
def gelu(imp: Importer, attrs: dict[str, Any]) -> None:
    approximate = attrs.get("approximate", "none")
    if approximate not in ("none", "tanh"):
        raise imp.fail(f"approximate {approximate!r}: expected none or tanh")
    unary(imp, L.GELU(approximate, layer_name(imp)))


@converts("HardSigmoid")
def hard_sigmoid(imp: Importer, attrs: dict[str, Any]) -> None:
    # ONNX's defaults (Keras's), not PyTorch's 1/6: a PyTorch export writes alpha=1/6 explicitly.
    unary(imp, L.Hardsigmoid(layer_name(imp), float(attrs.get("alpha", 0.2)), float(attrs.get("beta", 0.5))))


@converts("HardSwish")
def hard_swish(imp: Importer, attrs: dict[str, Any]) -> None:
    unary(imp, L.Hardswish(layer_name(imp)))


@converts("PRelu")
def prelu(imp: Importer, attrs: dict[str, Any]) -> None:
    source, shape = imp.tensor(0)
    slope = imp.const(1, "the slope")
    channels = shape[0] if shape else 1
    squeezed = slope.reshape(slope.shape[next((i for i, d in enumerate(slope.shape) if d != 1), slope.ndim):])
    per_channel = (channels,) + (1,) * (len(shape) - 1)
    if slope.size == 1:
        weight = slope.reshape(1)
    elif squeezed.shape == per_channel or slope.shape == per_channel:
        weight = slope.reshape(channels)
    else:
        raise Unsupported(f"slope of shape {slope.shape} on {shape_text(shape)}: cnn takes one slope or one per "
                          "channel")
    imp.emit(L.PReLU(weight.astype(np.float32), layer_name(imp)), [source], imp.output())


@converts("Clip")
def clip(imp: Importer, attrs: dict[str, Any]) -> None:
    if imp.opset < 11:  # bounds are attributes before opset 11, inputs from it
        low, high = float(attrs.get("min", -np.inf)), float(attrs.get("max", np.inf))
    else:
        bounds = [imp.optional(i, what) for i, what in ((1, "min"), (2, "max"))]
        for array, what in zip(bounds, ("min", "max")):
            if array is not None and array.size != 1:
                raise imp.fail(f"{what} has shape {array.shape}; expected one number")
        low = -np.inf if bounds[0] is None else float(bounds[0].reshape(-1)[0])
        high = np.inf if bounds[1] is None else float(bounds[1].reshape(-1)[0])
    name = layer_name(imp)
    if low == 0 and high == 6:
        layer: Any = L.ReLU6(name)
    elif low == 0 and high == np.inf:
        layer = L.Activation("relu", 0.01, name)
    else:
        if not high >= low:
            raise imp.fail(f"max {high:g} is below min {low:g}")
        layer = L.Hardtanh(low, high, name)
    unary(imp, layer)


@converts("Softmax", "LogSoftmax")
def softmax(imp: Importer, attrs: dict[str, Any]) -> None:
    source, shape = imp.tensor(0)
    op = imp.node.op_type
    rank = len(shape) + 1
    axis = int(attrs.get("axis", 1 if imp.opset < 13 else -1))
    if not -rank <= axis < rank:
        raise imp.fail(f"axis {axis} is out of range for an input of {rank} dimensions")
    axis %= rank
    if axis == 0:
        raise Unsupported("axis 0 is the batch")
    if imp.opset < 13 and any(d != 1 for d in shape[axis:]):
        # Before 13 the input is seen as 2-D at axis and normalised over every axis from it on.
        raise Unsupported(f"opset {imp.opset} {op} at axis {axis} of {shape_text(shape)} normalises over "
                          f"several axes at once; cnn's {op.lower()} takes one axis")
    cls = L.Softmax if op == "Softmax" else L.LogSoftmax
    imp.emit(cls(layer_name(imp), axis), [source], imp.output())


@converts("Dropout")
def dropout(imp: Importer, attrs: dict[str, Any]) -> None:
    ratio = imp.optional(1, "ratio")
    p = float(ratio.reshape(-1)[0]) if ratio is not None and ratio.size == 1 else float(attrs.get("ratio", 0.5))
    unary(imp, L.Dropout(min(max(p, 0.0), 1.0), layer_name(imp)))


@converts("Identity")
def identity(imp: Importer, attrs: dict[str, Any]) -> None:
    unary(imp, L.Identity(layer_name(imp)))


@converts("Cast", "CastLike")
def cast(imp: Importer, attrs: dict[str, Any]) -> None:
    """A map cast to another float type (a float16 model's Casts around its float32 input and output):
    an identity, for cnn computes every map in float32; a cast to integers is refused."""
    from .tensors import FLOATS

    if imp.node.op_type == "Cast":
        to = int(attrs.get("to", 0))
    else:
        like = imp.optional(1, "target_type") if imp.is_const(1) else None
        to = 1 if like is None or like.dtype.kind == "f" else 7  # a map, or a float constant: float
    if to not in FLOATS:
        raise Unsupported(f"casts a map to data type {to}; cnn computes maps as floats")
    unary(imp, L.Identity(layer_name(imp)))


@converts("LRN")
def lrn(imp: Importer, attrs: dict[str, Any]) -> None:
    size = int(attrs.get("size", 0))
    if size < 1:
        raise imp.fail("needs size, a positive integer")
    if size % 2 == 0:  # ONNX puts the larger half above the channel, PyTorch below; ORT refuses even sizes
        raise Unsupported(f"even size {size}: ONNX and PyTorch place the window differently")
    unary(imp, L.LocalResponseNorm(size, float(attrs.get("alpha", 1e-4)), float(attrs.get("beta", 0.75)),
                                    float(attrs.get("bias", 1.0)), layer_name(imp)))


@converts("MaxPool", "AveragePool")
def pool(imp: Importer, attrs: dict[str, Any]) -> None:
    source, shape = imp.tensor(0)
    require_map(imp, shape)
    kind = "max" if imp.node.op_type == "MaxPool" else "avg"
    if "kernel_shape" not in attrs:
        raise imp.fail("needs kernel_shape")
    kernel = _spatial(imp, attrs, "kernel_shape", 1, shape)
    stride = _spatial(imp, attrs, "strides", 1, shape)  # 1, not the kernel as in PyTorch
    dilation = _spatial(imp, attrs, "dilations", 1, shape)
    if kind == "avg" and dilation != (1, 1):
        raise Unsupported(f"dilations {list(dilation)} on an average pool")
    top, bottom, left, right = _pads(imp, attrs, (shape[1], shape[2]), kernel, stride, dilation)
    ceil_mode = bool(attrs.get("ceil_mode", 0))
    include_pad = bool(attrs.get("count_include_pad", 0))  # absent before opset 7: pads excluded
    name = layer_name(imp)
    symmetric = top == bottom and left == right and top <= kernel[0] // 2 and left <= kernel[1] // 2
    if symmetric:
        imp.emit(L.Pool2d(kind, kernel, stride, (top, left), dilation, ceil_mode, include_pad, name), [source],
                 imp.output())
        return
    if ceil_mode or (kind == "avg" and not include_pad):
        raise Unsupported(f"pads {[top, left, bottom, right]} that differ between sides (or exceed half the kernel) "
                          "with ceil_mode or count_include_pad=0")
    # Uneven pads: a pad layer (-inf for max: never the maximum; 0 for an average that counts them) first.
    padded = imp.name_for(imp.output() + "/pad")
    imp.emit(L.Pad((left, right, top, bottom), "constant", -math.inf if kind == "max" else 0.0, padded), [source])
    imp.emit(L.Pool2d(kind, kernel, stride, (0, 0), dilation, False, True, name), [padded], imp.output())


@converts("GlobalAveragePool")
def global_average_pool(imp: Importer, attrs: dict[str, Any]) -> None:
    source, shape = imp.tensor(0)
    require_map(imp, shape)
    imp.emit(L.GlobalAvgPool2d(layer_name(imp)), [source], imp.output())


@converts("GlobalMaxPool")
def global_max_pool(imp: Importer, attrs: dict[str, Any]) -> None:
    source, shape = imp.tensor(0)
    require_map(imp, shape)
    imp.emit(L.GlobalMaxPool2d(layer_name(imp)), [source], imp.output())
