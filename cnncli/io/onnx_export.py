"""Model files out as ONNX (opset 17), for ONNX Runtime and every other ONNX tool: `cnn export`.

Each layer becomes the ONNX nodes that compute it, reading the tensors named by the layers it
reads (``input`` is the network's input, ``(N, C, H, W)`` with a free N); its output tensor takes
the layer's name, so a node-by-node comparison (`cnn check`) lines up. Weights become
initializers under PyTorch's state_dict names. A network with a layer type that has no exporter
here is refused in one error listing every such type, before anything is written.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from ..engine import ops
from ..errors import CnnError
from .modelfile import Model
from .onnx_import.tensor_ops import PAD_MODES  # ONNX's pad mode -> ours

OPSET = 17


class _Graph:
    """The nodes and initializers being written, with names made unique."""

    def __init__(self, helper: Any, numpy_helper: Any) -> None:
        self.helper, self.numpy_helper = helper, numpy_helper
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self.names: set[str] = set()

    def constant(self, name: str, array: np.ndarray) -> str:
        name = self._unique(name)
        self.initializers.append(self.numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

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


def _conv(g: _Graph, layer: Any, x: list[str], out: str, shape: tuple) -> None:
    weight = layer.weight[:, :, ::-1, ::-1] if layer.flip else layer.weight
    pads, _ = ops.conv_geometry(shape, layer.weight.shape, layer.stride, layer.padding, layer.dilation,
                                layer.groups, layer.padding_mode)
    top, bottom, left, right = pads
    source = x[0]
    if layer.padding_mode != "zeros" and any(pads):  # the padding holds copies: a Pad node first
        mode = {ours: theirs for theirs, ours in PAD_MODES.items()}[layer.padding_mode]
        padded = g.temporary(f"{out}/pad")
        g.node("Pad", [source, g.constant(f"{out}/pads", np.array([0, 0, top, left, 0, 0, bottom, right],
                                                                     np.int64))], padded, mode=mode)
        source, top, bottom, left, right = padded, 0, 0, 0, 0
    inputs = [source, g.constant(f"{layer.name}.weight", _f32(weight))]
    if layer.bias is not None:
        inputs.append(g.constant(f"{layer.name}.bias", _f32(layer.bias)))
    g.node("Conv", inputs, out, kernel_shape=list(layer.weight.shape[2:]), strides=list(layer.stride),
           dilations=list(layer.dilation), group=layer.groups, pads=[top, left, bottom, right])


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
        g.node("Clip", [x[0], g.constant(f"{out}/min", np.array(low, np.float32)),
                        g.constant(f"{out}/max", np.array(high, np.float32))], out)
    return write


def _prelu(g: _Graph, layer: Any, x: list[str], out: str, shape: tuple) -> None:
    slope = _f32(layer.weight).reshape(-1, *([1] * (len(shape) - 1)))  # one per channel, broadcast over H, W
    g.node("PRelu", [x[0], g.constant(f"{layer.name}.weight", slope)], out)


def _silu(g: _Graph, layer: Any, x: list[str], out: str, shape: tuple) -> None:
    gate = g.node("Sigmoid", x, g.temporary(f"{out}/sigmoid"))
    g.node("Mul", [x[0], gate], out)


def _upsample(g: _Graph, layer: Any, x: list[str], out: str, shape: tuple, out_shape: tuple) -> None:
    sizes = np.array([0, shape[0], *out_shape[1:]], np.int64)  # N is filled in from the input below
    batch = g.node("Shape", x, g.temporary(f"{out}/shape"), start=0, end=1)
    whole = g.node("Concat", [batch, g.constant(f"{out}/chw", sizes[1:])], g.temporary(f"{out}/sizes"), axis=0)
    if layer.mode == "nearest":
        attributes = {"mode": "nearest", "coordinate_transformation_mode": "asymmetric", "nearest_mode": "floor"}
    else:
        attributes = {"mode": "linear",
                      "coordinate_transformation_mode": "align_corners" if layer.align_corners else "half_pixel"}
    g.node("Resize", [x[0], "", "", whole], out, **attributes)


WRITERS: dict[str, Callable[..., None]] = {
    "conv2d": _conv, "relu": _activation, "leaky_relu": _activation, "sigmoid": _activation, "tanh": _activation,
    "maxpool2d": _pool, "avgpool2d": _pool, "dense": _dense, "batchnorm2d": _batch_norm, "batchnorm1d": _batch_norm,
    "globalavgpool2d": lambda g, layer, x, out, shape: g.node("GlobalAveragePool", x, out),
    "globalmaxpool2d": lambda g, layer, x, out, shape: g.node("GlobalMaxPool", x, out),
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
    "silu": _silu, "prelu": _prelu,
    "exp": _op("Exp"), "log": _op("Log"), "sqrt": _op("Sqrt"), "neg": _op("Neg"), "abs": _op("Abs"),
    "erf": _op("Erf"), "reciprocal": _op("Reciprocal"), "max": _op("Max"), "min": _op("Min"),
    "pow": lambda g, layer, x, out, shape: g.node("Pow", [x[0], g.constant(f"{out}/exponent",
                                                                            np.array(layer.exponent, np.float32))],
                                                  out),
    "logsoftmax": lambda g, layer, x, out, shape: g.node("LogSoftmax", x, out, axis=layer.dim),
}
NEEDS_OUTPUT_SHAPE = {"upsample": _upsample}


def export_model(model: Model) -> bytes:
    """The model as an ONNX file's bytes. Raises CnnError naming every layer type it cannot write."""
    try:
        import onnx
        from onnx import TensorProto, helper, numpy_helper
    except ImportError:
        raise CnnError("writing ONNX needs the onnx package: pip install 'cnncli[onnx]'", source="cnn export") \
            from None
    network = model.network
    missing: dict[str, list[str]] = {}
    for layer in network.layers:
        if layer.type not in WRITERS and layer.type not in NEEDS_OUTPUT_SHAPE:
            missing.setdefault(layer.type, []).append(layer.name)
    if missing:
        listed = "; ".join(f"{kind} ({', '.join(names[:3])}{', ...' if len(names) > 3 else ''})"
                           for kind, names in missing.items())
        raise CnnError(f"cannot write {sum(map(len, missing.values()))} layers as ONNX yet: {listed}",
                       source=model.source)
    shapes = network.shapes(model.input.shape)
    positions = {"input": 0} | {layer.name: i for i, layer in enumerate(network.layers, start=1)}
    g = _Graph(helper, numpy_helper)
    g.names.update({"input", *(layer.name for layer in network.layers)})
    for layer, reads in zip(network.layers, network.reads):
        shape = shapes[positions[reads[0]]]
        if layer.type in NEEDS_OUTPUT_SHAPE:
            NEEDS_OUTPUT_SHAPE[layer.type](g, layer, list(reads), layer.name, shape, shapes[positions[layer.name]])
        else:
            WRITERS[layer.type](g, layer, list(reads), layer.name, shape)
    outputs = list(dict.fromkeys((network.layers[-1].name, *network.outputs)))
    graph = helper.make_graph(
        g.nodes, model.name,
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", *model.input.shape])],
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, ["N", *shapes[positions[name]]]) for name in outputs],
        g.initializers)
    exported = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="cnn")
    exported.ir_version = min(exported.ir_version, 8)  # opset 17's IR, which every ONNX Runtime since 1.13 reads
    onnx.checker.check_model(exported)
    return exported.SerializeToString()
