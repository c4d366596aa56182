"""Model files out as ONNX (opset 17), for ONNX Runtime and every other ONNX tool: `cnn export`.

Each layer becomes the ONNX nodes that compute it, reading the tensors named by the layers it
reads (``input`` is the network's input, ``(N, C, H, W)`` with a free N). Its last node and that
node's output take the layer's name, so a node-by-node comparison (`cnn check`) lines up and an
import gives the name back; helper nodes and constants get names of their own under it
(``conv/pad``). Weights become initializers under PyTorch's state_dict names.

Where opset 17 has no operator with the layer's meaning the layer is written as the arithmetic
that computes it, as PyTorch's exporter does: group norm (GroupNormalization is opset 18, and
scales per group there until 21), gelu and mish (operators of opsets 20 and 18), softplus's beta
and threshold, circular padding (Pad's ``wrap`` is opset 19), LRN of an even size (ONNX centres
the window the other way), adaptive pooling into bins that overlap, and an upsampling scale_factor
whose steps are not size in / size out (Resize's). A layer type without a writer,
or a setting no writer can express, is refused in one error listing every such layer, before
anything is written.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Optional

import numpy as np

from ..engine import ops, resample
from ..errors import CnnError
from .modelfile import Model
from .onnx_metadata import metadata_entries

OPSET = 17
MAX_BINS = 512  # uneven adaptive bins along one axis: each is a Slice and a pool node
PAD_MODES = {"zeros": "constant", "constant": "constant", "reflect": "reflect", "replicate": "edge"}  # ours -> ONNX's


class Unwritable(Exception):
    """A layer's setting that its writer cannot express in ONNX; the message says why."""


class _Graph:
    """The nodes and initializers being written, with names made unique."""

    def __init__(self, helper: Any) -> None:
        self.helper = helper
        self.nodes: list[Any] = []
        self.constants: list[tuple[str, np.ndarray]] = []  # made initializers once the model exists
        self.names: set[str] = set()

    def constant(self, name: str, array: np.ndarray) -> str:
        name = self._unique(name)
        self.constants.append((name, np.asarray(array)))
        return name

    def ints(self, name: str, values: Any) -> str:
        return self.constant(name, np.asarray(values, dtype=np.int64))

    def scalar(self, name: str, value: float) -> str:
        return self.constant(name, np.array(value, dtype=np.float32))

    def node(self, op: str, inputs: list[str], output: str, **attributes: Any) -> str:
        self.nodes.append(self.helper.make_node(op, inputs, [output], name=output, **attributes))
        return output

    def temporary(self, name: str) -> str:
        return self._unique(name)

    def _unique(self, name: str) -> str:
        candidate, n = name, 1
        while candidate in self.names:
            n += 1
            candidate = f"{name}_{n}"
        self.names.add(candidate)
        return candidate


def _f32(array: Any) -> np.ndarray:
    return np.asarray(array, dtype=np.float32)


def _per_channel(array: Any, shape: tuple) -> np.ndarray:
    """A (C,) array as (C, 1, 1) on a (C, H, W) map, (C,) on a vector: it broadcasts along C."""
    return _f32(array).reshape(-1, *([1] * (len(shape) - 1)))


def _scale_and_shift(g: _Graph, source: str, out: str, scale: Optional[tuple[str, np.ndarray]],
                     shift: Optional[tuple[str, np.ndarray]]) -> None:
    """``source * scale + shift`` (each a (name, array) or None), the last node named ``out``."""
    if scale is None and shift is None:
        g.node("Identity", [source], out)
        return
    if scale is not None:
        source = g.node("Mul", [source, g.constant(*scale)], out if shift is None else g.temporary(f"{out}/scaled"))
    if shift is not None:
        g.node("Add", [source, g.constant(*shift)], out)


def _slice(g: _Graph, source: str, axis: int, start: int, end: int, step: int, out: str) -> str:
    return g.node("Slice", [source, g.ints(f"{out}/starts", [start]), g.ints(f"{out}/ends", [end]),
                            g.ints(f"{out}/axes", [axis]), g.ints(f"{out}/steps", [step])], out)


def _pad(g: _Graph, source: str, shape: tuple, sides: tuple, mode: str, value: float, out: str) -> str:
    """``source`` (N, C, H, W) padded by ``sides`` (top, bottom, left, right) in one of our modes."""
    top, bottom, left, right = sides
    if not any(sides):
        return g.node("Identity", [source], out)
    if mode == "circular":
        return _wrap(g, source, shape, sides, out)
    inputs = [source, g.ints(f"{out}/pads", [0, 0, top, left, 0, 0, bottom, right])]  # begins, then ends
    if mode == "constant" and value != 0:
        inputs.append(g.scalar(f"{out}/value", value))
    return g.node("Pad", inputs, out, mode=PAD_MODES[mode])


def _wrap(g: _Graph, source: str, shape: tuple, sides: tuple, out: str) -> str:
    """Circular padding as Slices of the far edges concatenated on: the columns, then the rows of
    the widened map, so corners wrap both ways as in PyTorch."""
    top, bottom, left, right = sides
    steps = [step for step in ((3, shape[2], ("left", left), ("right", right)),
                               (2, shape[1], ("top", top), ("bottom", bottom))) if step[2][1] or step[3][1]]
    for index, (axis, size, (first, before), (last, after)) in enumerate(steps):
        parts = [source]
        if before:  # the far end comes first
            parts.insert(0, _slice(g, source, axis, size - before, size, 1, g.temporary(f"{out}/{first}")))
        if after:
            parts.append(_slice(g, source, axis, 0, after, 1, g.temporary(f"{out}/{last}")))
        source = g.node("Concat", parts, out if index == len(steps) - 1 else g.temporary(f"{out}/columns"), axis=axis)
    return source


def _conv(g: _Graph, layer: Any, x: list[str], out: str, shape: tuple) -> None:
    weight = layer.weight[:, :, ::-1, ::-1] if layer.flip else layer.weight
    pads, _ = ops.conv_geometry(shape, layer.weight.shape, layer.stride, layer.padding, layer.dilation,
                                layer.groups, layer.padding_mode)
    top, bottom, left, right = pads
    source = x[0]
    if layer.padding_mode != "zeros" and any(pads):  # the padding holds copies: a Pad node first
        source = _pad(g, source, shape, pads, layer.padding_mode, 0.0, g.temporary(f"{out}/pad"))
        top, bottom, left, right = 0, 0, 0, 0
    inputs = [source, g.constant(f"{layer.name}.weight", _f32(weight))]
    if layer.bias is not None:
        inputs.append(g.constant(f"{layer.name}.bias", _f32(layer.bias)))
    g.node("Conv", inputs, out, kernel_shape=list(layer.weight.shape[2:]), strides=list(layer.stride),
           dilations=list(layer.dilation), group=layer.groups, pads=[top, left, bottom, right])


def _transpose_crop(padding: int, output_padding: int, stride: int) -> tuple[int, int, int]:
    """(pads end, output_padding, zero cells added after) along one axis of a transposed conv."""
    if output_padding < stride:
        return padding, output_padding, 0
    if output_padding <= padding:
        return padding - output_padding, 0, 0
    if output_padding - padding < stride:
        return 0, output_padding - padding, 0
    return 0, 0, output_padding - padding


def _conv_transpose(g: _Graph, layer: Any, x: list[str], out: str, shape: tuple) -> None:
    """ONNX Runtime refuses output_padding >= stride, which PyTorch allows below the dilation: then
    the extra cells come from cropping the end less (pads end = padding - output_padding), and
    those past the full transposed conv are zeros and the bias, as in PyTorch."""
    ends, extra, fill = zip(*map(_transpose_crop, layer.padding, layer.output_padding, layer.stride))
    out_shape = layer.output_shape(shape)
    inputs = [x[0], g.constant(f"{layer.name}.weight", _f32(layer.weight))]
    if layer.bias is not None and not any(fill):
        inputs.append(g.constant(f"{layer.name}.bias", _f32(layer.bias)))
    source = g.node("ConvTranspose", inputs, g.temporary(f"{out}/full") if any(fill) else out,
                    kernel_shape=list(layer.weight.shape[2:]), strides=list(layer.stride),
                    dilations=list(layer.dilation), group=layer.groups, pads=[*layer.padding, *ends],
                    output_padding=list(extra))
    if any(fill):
        padded = _pad(g, source, out_shape, (0, fill[0], 0, fill[1]), "constant", 0.0,
                      out if layer.bias is None else g.temporary(f"{out}/pad"))
        if layer.bias is not None:
            g.node("Add", [padded, g.constant(f"{layer.name}.bias", _per_channel(layer.bias, out_shape))], out)


def _activation(g: _Graph, layer: Any, x: list[str], out: str, shape: tuple) -> None:
    if layer.kind == "leaky_relu":
        g.node("LeakyRelu", x, out, alpha=float(layer.negative_slope))
    else:
        g.node({"relu": "Relu", "sigmoid": "Sigmoid", "tanh": "Tanh", "none": "Identity"}[layer.kind], x, out)


def _pool(g: _Graph, layer: Any, x: list[str], out: str, shape: tuple) -> None:
    ph, pw = layer.padding
    attributes = {"kernel_shape": list(layer.kernel_size), "strides": list(layer.stride or layer.kernel_size),
                  "pads": [ph, pw, ph, pw], "ceil_mode": int(layer.ceil_mode)}
    if layer.kind == "max":
        g.node("MaxPool", x, out, dilations=list(layer.dilation), **attributes)
    else:
        g.node("AveragePool", x, out, count_include_pad=int(layer.count_include_pad), **attributes)


def _adaptive_pool(g: _Graph, layer: Any, x: list[str], out: str, shape: tuple) -> None:
    """One pool where the output divides the input (its bins tile it; 1x1 a global pool). Along an
    axis it does not divide the bins overlap: each is a Slice pooled whole, and the pooled rows (then
    columns) are concatenated. Rows then columns is the same mean, or max, as both at once: every
    row bin holds the same columns."""
    op = "MaxPool" if layer.kind == "max" else "AveragePool"
    sizes = layer.output_shape(shape)[1:]
    if tuple(sizes) == (1, 1):
        g.node("Global" + op, x, out)
        return
    axes = [(axis, size, cells) for axis, size, cells in zip((2, 3), shape[1:], sizes)]
    kernel = [size // cells if size % cells == 0 else 1 for _, size, cells in axes]
    uneven = [(axis, size, cells) for axis, size, cells in axes if size % cells]
    for axis, size, cells in uneven:
        if cells > MAX_BINS:
            raise Unwritable(f"output_size {cells} does not divide the input's {size} "
                             f"{'rows' if axis == 2 else 'columns'}, so each bin is a Slice and a pool node; cnn "
                             f"writes at most {MAX_BINS} such bins an axis")
    stages = int(kernel != [1, 1]) + len(uneven)
    targets = [g.temporary(f"{out}/{stage}") for stage in range(stages - 1)] + [out]
    if stages == 0:
        g.node("Identity", x, out)
        return
    source = x[0]
    if kernel != [1, 1]:
        source = g.node(op, [source], targets.pop(0), kernel_shape=kernel, strides=kernel)
    for axis, size, cells in uneven:
        starts, ends = resample.adaptive_bins(size, cells)
        pooled = []
        for i, (start, end) in enumerate(zip(starts.tolist(), ends.tolist())):
            name = g.temporary(f"{out}/{'row' if axis == 2 else 'col'}{i}")
            window = [end - start, 1] if axis == 2 else [1, end - start]
            cut = _slice(g, source, axis, start, end, 1, g.temporary(f"{name}/cut"))
            pooled.append(g.node(op, [cut], name, kernel_shape=window, strides=window))
        source = g.node("Concat", pooled, targets.pop(0), axis=axis)


def _dense(g: _Graph, layer: Any, x: list[str], out: str, shape: tuple) -> None:
    inputs = [x[0], g.constant(f"{layer.name}.weight", _f32(layer.weight))]
    if layer.bias is not None:
        inputs.append(g.constant(f"{layer.name}.bias", _f32(layer.bias)))
    g.node("Gemm", inputs, out, transB=1)


def _batch_norm(g: _Graph, layer: Any, x: list[str], out: str, shape: tuple) -> None:
    features = layer.running_mean.shape[0]
    weight = np.ones(features) if layer.weight is None else layer.weight
    bias = np.zeros(features) if layer.bias is None else layer.bias
    inputs = [x[0]] + [g.constant(f"{layer.name}.{key}", _f32(value)) for key, value in
                       (("weight", weight), ("bias", bias), ("running_mean", layer.running_mean),
                        ("running_var", layer.running_var))]
    g.node("BatchNormalization", inputs, out, epsilon=float(layer.eps))


def _learned(g: _Graph, layer: Any, out: str, key: str, array: Optional[np.ndarray], default: np.ndarray) -> str:
    """The layer's ``weight`` or ``bias`` under its state_dict name, or ``default`` (ones, zeros)
    that ONNX's operator needs where the layer has none."""
    if array is None:
        return g.constant(f"{out}/{'ones' if key == 'weight' else 'zeros'}", _f32(default))
    return g.constant(f"{layer.name}.{key}", _f32(array).reshape(default.shape))


def _layer_norm(g: _Graph, layer: Any, x: list[str], out: str, shape: tuple) -> None:
    normalized = tuple(layer.normalized_shape)
    inputs = [x[0], _learned(g, layer, out, "weight", layer.weight, np.ones(normalized))]
    if layer.bias is not None:
        inputs.append(_learned(g, layer, out, "bias", layer.bias, np.zeros(normalized)))
    g.node("LayerNormalization", inputs, out, axis=-len(normalized), epsilon=float(layer.eps))


def _group_norm(g: _Graph, layer: Any, x: list[str], out: str, shape: tuple) -> None:
    """As PyTorch exports it: the groups as the channels of an InstanceNormalization, then the scale
    and shift per channel."""
    groups = layer.num_groups
    learned = layer.weight is not None or layer.bias is not None
    grouped = g.node("Reshape", [x[0], g.ints(f"{out}/grouped_shape", [0, groups, -1])],
                     g.temporary(f"{out}/grouped"))  # N, G, C/G * H * W
    normed = g.node("InstanceNormalization", [grouped, g.constant(f"{out}/ones", np.ones(groups, np.float32)),
                                              g.constant(f"{out}/zeros", np.zeros(groups, np.float32))],
                    g.temporary(f"{out}/normalized"), epsilon=float(layer.eps))
    restored = g.node("Reshape", [normed, g.ints(f"{out}/shape", [0, *shape])],
                      g.temporary(f"{out}/ungrouped") if learned else out)  # N, C, H, W
    if learned:
        _scale_and_shift(g, restored, out,
                         None if layer.weight is None else (f"{layer.name}.weight", _per_channel(layer.weight, shape)),
                         None if layer.bias is None else (f"{layer.name}.bias", _per_channel(layer.bias, shape)))


def _instance_norm(g: _Graph, layer: Any, x: list[str], out: str, shape: tuple) -> None:
    """With the map's own statistics InstanceNormalization; with stored ones (track_running_stats)
    it is a batch norm."""
    channels = shape[0]
    inputs = [x[0], _learned(g, layer, out, "weight", layer.weight, np.ones(channels)),
              _learned(g, layer, out, "bias", layer.bias, np.zeros(channels))]
    if layer.running_mean is None:
        g.node("InstanceNormalization", inputs, out, epsilon=float(layer.eps))
        return
    inputs += [g.constant(f"{layer.name}.{key}", _f32(getattr(layer, key))) for key in ("running_mean", "running_var")]
    g.node("BatchNormalization", inputs, out, epsilon=float(layer.eps))


def _lrn(g: _Graph, layer: Any, x: list[str], out: str, shape: tuple) -> None:
    """LRN for an odd size. For an even one ONNX puts the larger half of the window above the channel
    and PyTorch below (and ONNX Runtime refuses it), so: x * (k + alpha/size * the window's sum of
    squares)^-beta, the window sum a 1x1 conv whose weight is alpha/size on PyTorch's band."""
    size, alpha, beta, k = layer.size, float(layer.alpha), float(layer.beta), float(layer.k)
    if size % 2:
        g.node("LRN", x, out, size=size, alpha=alpha, beta=beta, bias=k)
        return
    channels = np.arange(shape[0])
    offset = channels[None, :] - channels[:, None]  # C_out, C_in: which channel each output channel reads
    band = (offset >= -(size // 2)) & (offset <= (size - 1) // 2)
    weight = np.where(band, alpha / size, 0.0).astype(np.float32)[:, :, None, None]  # C, C, 1, 1
    squares = g.node("Mul", [x[0], x[0]], g.temporary(f"{out}/squares"))
    base = g.node("Conv", [squares, g.constant(f"{out}/window", weight),
                           g.constant(f"{out}/k", np.full(shape[0], k, np.float32))],
                  g.temporary(f"{out}/base"), kernel_shape=[1, 1])
    factor = g.node("Pow", [base, g.scalar(f"{out}/exponent", -beta)], g.temporary(f"{out}/factor"))
    g.node("Mul", [x[0], factor], out)


def _pad_layer(g: _Graph, layer: Any, x: list[str], out: str, shape: tuple) -> None:
    left, right, top, bottom = layer.padding
    _pad(g, x[0], shape, (top, bottom, left, right), layer.mode, float(layer.value), out)


def _channel_shuffle(g: _Graph, layer: Any, x: list[str], out: str, shape: tuple) -> None:
    """Reshape -> Transpose -> Reshape, as PyTorch exports it (and the importer reads it back); 0 in
    a shape copies the batch."""
    channels, *rest = shape
    grouped = g.node("Reshape", [x[0], g.ints(f"{out}/grouped_shape", [0, layer.groups, channels // layer.groups,
                                                                        *rest])],
                     g.temporary(f"{out}/grouped"))  # N, G, C/G, H, W
    swapped = g.node("Transpose", [grouped], g.temporary(f"{out}/transposed"), perm=[0, 2, 1, 3, 4])  # N, C/G, G, H, W
    g.node("Reshape", [swapped, g.ints(f"{out}/shape", [0, -1, *rest])], out)  # N, C, H, W


def _slice_layer(g: _Graph, layer: Any, x: list[str], out: str, shape: tuple) -> None:
    along = layer.dim - 1 if layer.dim > 0 else len(shape) + layer.dim  # the sample's axis
    start, end, step = slice(layer.start, layer.end, layer.step).indices(shape[along])  # clamped, as Python's
    _slice(g, x[0], along + 1, start, end, step, out)


def _gelu(g: _Graph, layer: Any, x: list[str], out: str, shape: tuple) -> None:
    """0.5 x (1 + erf(x / sqrt 2)), or with tanh(sqrt(2/pi) (x + 0.044715 x^3)) for erf: the nodes
    PyTorch writes below opset 20's Gelu."""
    if layer.approximate == "tanh":
        cube = g.node("Pow", [x[0], g.scalar(f"{out}/three", 3.0)], g.temporary(f"{out}/cube"))
        term = g.node("Mul", [cube, g.scalar(f"{out}/coefficient", 0.044715)], g.temporary(f"{out}/term"))
        inner = g.node("Add", [x[0], term], g.temporary(f"{out}/inner"))
        scaled = g.node("Mul", [inner, g.scalar(f"{out}/sqrt_2_over_pi", math.sqrt(2 / math.pi))],
                        g.temporary(f"{out}/scaled"))
        phi = g.node("Tanh", [scaled], g.temporary(f"{out}/tanh"))
    else:
        scaled = g.node("Div", [x[0], g.scalar(f"{out}/sqrt2", math.sqrt(2))], g.temporary(f"{out}/scaled"))
        phi = g.node("Erf", [scaled], g.temporary(f"{out}/erf"))
    shifted = g.node("Add", [phi, g.scalar(f"{out}/one", 1.0)], g.temporary(f"{out}/plus_one"))
    product = g.node("Mul", [x[0], shifted], g.temporary(f"{out}/product"))
    g.node("Mul", [product, g.scalar(f"{out}/half", 0.5)], out)


# From here on log(1 + exp(x)) rounds to x in float32 (the rest is below half an ulp of x), so
# ONNX's Softplus, which has no threshold, equals PyTorch's with beta 1 and a threshold at least this.
EXACT_FROM = 15.0


def _softplus(g: _Graph, layer: Any, x: list[str], out: str, shape: tuple) -> None:
    """log(1 + exp(beta x)) / beta, and x where beta x > threshold: ONNX's Softplus alone where that
    is the same in float32, else Softplus of beta x over beta with a Where for the threshold."""
    beta, threshold = float(layer.beta), float(layer.threshold)
    if beta == 1 and threshold >= EXACT_FROM:
        g.node("Softplus", x, out)
        return
    scaled = x[0] if beta == 1 else g.node("Mul", [x[0], g.scalar(f"{out}/beta", beta)], g.temporary(f"{out}/scaled"))
    smooth = g.node("Softplus", [scaled], g.temporary(f"{out}/softplus"))
    if beta != 1:
        smooth = g.node("Div", [smooth, g.scalar(f"{out}/beta", beta)], g.temporary(f"{out}/divided"))
    linear = g.node("Greater", [scaled, g.scalar(f"{out}/threshold", threshold)], g.temporary(f"{out}/linear"))
    g.node("Where", [linear, x[0], smooth], out)


def _mish(g: _Graph, layer: Any, x: list[str], out: str, shape: tuple) -> None:
    """x * tanh(softplus(x)): Mish is an operator from opset 18."""
    smooth = g.node("Softplus", x, g.temporary(f"{out}/softplus"))
    g.node("Mul", [x[0], g.node("Tanh", [smooth], g.temporary(f"{out}/tanh"))], out)


def _affine(g: _Graph, layer: Any, x: list[str], out: str, shape: tuple) -> None:
    _scale_and_shift(g, x[0], out, None if layer.scale is None else (f"{out}/scale", _f32(layer.scale)),
                     None if layer.shift is None else (f"{out}/shift", _f32(layer.shift)))


def _fold(op: str) -> Callable[..., None]:
    def write(g: _Graph, layer: Any, x: list[str], out: str, shape: tuple) -> None:
        current = x[0]
        for i, other in enumerate(x[1:], start=1):
            current = g.node(op, [current, other], out if i == len(x) - 1 else g.temporary(f"{out}/{i}"))
    return write


def _op(op: str) -> Callable[..., None]:
    """One node of ``op`` reading every input as it is (unary ops; Max and Min take any number)."""
    def write(g: _Graph, layer: Any, x: list[str], out: str, shape: tuple) -> None:
        g.node(op, x, out)
    return write


def _clip(low: float, high: float) -> Callable[..., None]:
    def write(g: _Graph, layer: Any, x: list[str], out: str, shape: tuple) -> None:
        g.node("Clip", [x[0], g.scalar(f"{out}/min", low), g.scalar(f"{out}/max", high)], out)
    return write


def _prelu(g: _Graph, layer: Any, x: list[str], out: str, shape: tuple) -> None:
    slope = _per_channel(layer.weight, shape)  # one per channel, broadcast over H, W
    g.node("PRelu", [x[0], g.constant(f"{layer.name}.weight", slope)], out)


def _silu(g: _Graph, layer: Any, x: list[str], out: str, shape: tuple) -> None:
    gate = g.node("Sigmoid", x, g.temporary(f"{out}/sigmoid"))
    g.node("Mul", [x[0], gate], out)


def _upsample(g: _Graph, layer: Any, x: list[str], out: str, shape: tuple, out_shape: tuple) -> None:
    """Resize to the output size, whose cells are PyTorch's where it steps in/out cells an output
    cell: a size given, the scale recomputed, align_corners, or a whole factor. A scale_factor that
    does not give its size exactly (1.5 of 5 rows: 7, stepped 1/1.5, not 5/7) picks other cells:
    then Gathers of the rows and columns nearest takes, or bilinear's weights as two MatMuls."""
    axes = list(zip(shape[1:], out_shape[1:], (None, None) if layer.scale_factor is None
                    or layer.recompute_scale_factor else layer.scale_factor))
    if layer.mode == "nearest":
        picks = [resample.nearest_indices(size, cells, scale) for size, cells, scale in axes]
        if all(np.array_equal(pick, resample.nearest_indices(size, cells)) for pick, (size, cells, _) in
               zip(picks, axes)):
            _resize(g, x, out, shape, out_shape, {"mode": "nearest", "coordinate_transformation_mode": "asymmetric",
                                                  "nearest_mode": "floor"})
            return
        rows = g.node("Gather", [x[0], g.ints(f"{out}/rows", picks[0])], g.temporary(f"{out}/rows"), axis=2)
        g.node("Gather", [rows, g.ints(f"{out}/cols", picks[1])], out, axis=3)  # N, C, H_out, W_out
        return
    corners = bool(layer.align_corners)
    weights = [_interpolation(size, cells, scale, corners) for size, cells, scale in axes]
    if all(np.array_equal(w, _interpolation(size, cells, None, corners)) for w, (size, cells, _) in zip(weights, axes)):
        _resize(g, x, out, shape, out_shape, {"mode": "linear", "coordinate_transformation_mode":
                                              "align_corners" if corners else "half_pixel"})
        return
    across = g.node("MatMul", [x[0], g.constant(f"{out}/cols", weights[1].T)],
                    g.temporary(f"{out}/across"))  # N, C, H, W_out
    g.node("MatMul", [g.constant(f"{out}/rows", weights[0]), across], out)  # N, C, H_out, W_out


def _interpolation(size: int, cells: int, scale: Optional[float], corners: bool) -> np.ndarray:
    """(cells, size): the bilinear weights of each output cell along one axis, as a matrix."""
    index0, index1, weight0, weight1 = resample.linear_taps(size, cells, scale, corners)
    matrix = np.zeros((cells, size), np.float32)
    np.add.at(matrix, (np.arange(cells), index0), weight0)
    np.add.at(matrix, (np.arange(cells), index1), weight1)
    return matrix


def _resize(g: _Graph, x: list[str], out: str, shape: tuple, out_shape: tuple, attributes: dict) -> None:
    batch = g.node("Shape", x, g.temporary(f"{out}/shape"), start=0, end=1)
    sizes = g.node("Concat", [batch, g.ints(f"{out}/chw", [shape[0], *out_shape[1:]])], g.temporary(f"{out}/sizes"),
                   axis=0)
    g.node("Resize", [x[0], "", "", sizes], out, **attributes)


WRITERS: dict[str, Callable[..., None]] = {
    "conv2d": _conv, "relu": _activation, "leaky_relu": _activation, "sigmoid": _activation, "tanh": _activation,
    "maxpool2d": _pool, "avgpool2d": _pool, "dense": _dense, "batchnorm2d": _batch_norm, "batchnorm1d": _batch_norm,
    "globalavgpool2d": lambda g, layer, x, out, shape: g.node("GlobalAveragePool", x, out),
    "globalmaxpool2d": lambda g, layer, x, out, shape: g.node("GlobalMaxPool", x, out),
    "adaptiveavgpool2d": _adaptive_pool, "adaptivemaxpool2d": _adaptive_pool,
    "conv_transpose2d": _conv_transpose, "convtranspose2d": _conv_transpose,
    "flatten": lambda g, layer, x, out, shape: g.node("Flatten", x, out, axis=1),
    "dropout": lambda g, layer, x, out, shape: g.node("Identity", x, out),
    "identity": lambda g, layer, x, out, shape: g.node("Identity", x, out),
    "softmax": lambda g, layer, x, out, shape: g.node("Softmax", x, out, axis=layer.dim),
    "concat": lambda g, layer, x, out, shape: g.node("Concat", x, out, axis=layer.dim),
    "mean": lambda g, layer, x, out, shape: g.node("Mean", x, out),
    "add": _fold("Add"), "mul": _fold("Mul"), "sub": _fold("Sub"),
    "relu6": _clip(0.0, 6.0),
    "hardtanh": lambda g, layer, x, out, shape: _clip(layer.min_val, layer.max_val)(g, layer, x, out, shape),
    "hardswish": lambda g, layer, x, out, shape: g.node("HardSwish", x, out),
    "hardsigmoid": lambda g, layer, x, out, shape: g.node("HardSigmoid", x, out, alpha=float(layer.alpha),
                                                          beta=float(layer.beta)),
    "elu": lambda g, layer, x, out, shape: g.node("Elu", x, out, alpha=float(layer.alpha)),
    "silu": _silu, "prelu": _prelu, "gelu": _gelu, "softplus": _softplus, "mish": _mish,
    "exp": _op("Exp"), "log": _op("Log"), "sqrt": _op("Sqrt"), "neg": _op("Neg"), "abs": _op("Abs"),
    "erf": _op("Erf"), "reciprocal": _op("Reciprocal"), "max": _op("Max"), "min": _op("Min"),
    "pow": lambda g, layer, x, out, shape: g.node("Pow", [x[0], g.scalar(f"{out}/exponent", layer.exponent)], out),
    "logsoftmax": lambda g, layer, x, out, shape: g.node("LogSoftmax", x, out, axis=layer.dim),
    "layernorm": _layer_norm, "groupnorm": _group_norm, "instancenorm2d": _instance_norm,
    "instancenorm": _instance_norm, "lrn": _lrn, "localresponsenorm": _lrn,
    "pad": _pad_layer, "channel_shuffle": _channel_shuffle, "slice": _slice_layer, "affine": _affine,
    "reshape": lambda g, layer, x, out, shape: g.node("Reshape", [x[0], g.ints(f"{out}/shape", [0, *layer.shape])],
                                                      out),  # 0: the batch as it is
}
NEEDS_OUTPUT_SHAPE = {"upsample": _upsample, "upsamplingnearest2d": _upsample, "upsamplingbilinear2d": _upsample}


def _listed(found: dict[str, list[str]]) -> str:
    return "; ".join(f"{kind} ({', '.join(names[:3])}{', ...' if len(names) > 3 else ''})"
                     for kind, names in found.items())


def export_model(model: Model) -> bytes:
    """The model as an ONNX file's bytes. Raises CnnError naming every layer type it cannot write,
    or every layer whose settings it cannot, and why."""
    try:
        import onnx
        from onnx import TensorProto, helper
    except ImportError:
        raise CnnError("writing ONNX needs the onnx package: pip install 'cnncli[onnx]'", source="cnn export") \
            from None
    network = model.network
    missing: dict[str, list[str]] = {}
    for layer in network.layers:
        if layer.type not in WRITERS and layer.type not in NEEDS_OUTPUT_SHAPE:
            missing.setdefault(layer.type, []).append(layer.name)
    if missing:
        raise CnnError(f"cannot write {sum(map(len, missing.values()))} layers as ONNX yet: {_listed(missing)}",
                       source=model.source)
    shapes = network.shapes(model.input.shape)
    positions = {"input": 0} | {layer.name: i for i, layer in enumerate(network.layers, start=1)}
    g = _Graph(helper)
    g.names.update({"input", *(layer.name for layer in network.layers)})
    refused: list[str] = []
    for layer, reads in zip(network.layers, network.reads):
        shape = shapes[positions[reads[0]]]
        try:
            if layer.type in NEEDS_OUTPUT_SHAPE:
                NEEDS_OUTPUT_SHAPE[layer.type](g, layer, list(reads), layer.name, shape,
                                               shapes[positions[layer.name]])
            else:
                WRITERS[layer.type](g, layer, list(reads), layer.name, shape)
        except Unwritable as why:
            refused.append(f"{layer.name} ({layer.type}): {why}")
    if refused:
        raise CnnError(f"cannot write {len(refused)} layer{'s' if len(refused) > 1 else ''} as ONNX: "
                       + "; ".join(refused), source=model.source)
    outputs = list(dict.fromkeys((network.layers[-1].name, *network.outputs)))
    graph = helper.make_graph(
        g.nodes, model.name,
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", *model.input.shape])],
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, ["N", *shapes[positions[name]]]) for name in outputs])
    exported = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="cnn")
    exported.ir_version = min(exported.ir_version, 8)  # opset 17's IR, which every ONNX Runtime since 1.13 reads
    exported.doc_string = model.description
    for key, value in metadata_entries(model):  # the input rule and labels, which ONNX has no field for
        exported.metadata_props.add(key=key, value=value)
    types = {np.dtype(np.float32): TensorProto.FLOAT, np.dtype(np.int64): TensorProto.INT64}
    for name, array in g.constants:  # written into the model in place: make_graph and make_model copy what they get
        tensor = exported.graph.initializer.add()
        tensor.name, tensor.data_type = name, types[array.dtype]
        tensor.dims.extend(array.shape)
        tensor.raw_data = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()
    data = exported.SerializeToString()
    onnx.checker.check_model(data)
    return data
