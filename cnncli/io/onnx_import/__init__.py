"""ONNX models in: a .onnx file read into the graph engine, as a Model like a model JSON file gives.

Each ONNX node becomes a layer named by its (first) output and reading the layers named by its
inputs; initializers become weights; the graph's one real input is the network's "input". Shape
arithmetic on constants is folded when the model loads (build.py); ops.py maps each operator to
layers. The ``onnx`` package is imported only here, when an .onnx file is loaded.

The InputSpec comes from the input's declared shape (N, C, H, W): size (H, W), gray for 1 channel
and rgb for 3, values 0..1, no normalisation. A model's preprocessing (ImageNet's mean and std, a
resize and crop) is not in an ONNX file: images go in as 0..1 unless --preset says otherwise.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ...engine.graph import INPUT, Network
from ...errors import CnnError, GraphError, SpecError, describe
from ..limits import DEFAULT_LIMITS, Limits

MAX_SIDE = 1 << 14  # as a model file's input size
MAX_NODES = 10_000  # as a model file's layers
FLOAT_TYPES = (1, 10, 11, 16)  # TensorProto FLOAT, FLOAT16, DOUBLE, BFLOAT16


def load_onnx(data: bytes, source: str, limits: Limits = DEFAULT_LIMITS) -> Any:
    """Build a Model from the bytes of an ONNX file named ``source``.

    Raises CnnError (one line, naming the file and the node) for a file that is not a model, a
    tensor that does not fit, or operators cnn cannot import: those are listed all at once.
    """
    try:
        import onnx
    except ImportError:
        raise CnnError("reading ONNX models needs the onnx package: pip install 'cnncli[onnx]'",
                       source=source) from None
    from ..modelfile import Model
    from .build import Importer
    from . import math_ops, norm_ops, spatial_ops, tensor_ops  # noqa: F401  (register their converters)
    from .ops import CONVERTERS
    from .tensors import to_array

    model = _parse(onnx, data, source)
    graph = model.graph
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset < 1:
        raise SpecError("declares no opset of the default ONNX domain", source=source)
    importer = Importer(source, opset)
    if graph.sparse_initializer:
        raise SpecError("has sparse initializers, which cnn does not read yet", source=source)
    for tensor in graph.initializer:
        importer.consts[tensor.name] = to_array(tensor, source, f"initializer {tensor.name}")
    limits.check_memory(sum(a.nbytes for a in importer.consts.values()), source, "holding its weights")
    # Old files (IR < 4) list every initializer as a graph input too; the real input is the rest.
    inputs = [value for value in graph.input if value.name not in importer.consts]
    if len(inputs) != 1:
        names = ", ".join(repr(value.name) for value in inputs) or "none"
        raise SpecError(f"has {len(inputs)} inputs besides its initializers ({names}); cnn runs models with one "
                        "image input", source=source)
    spec = _input_spec(inputs[0], source)
    importer.tensors[inputs[0].name] = (INPUT, spec.shape)
    importer.shapes[INPUT] = spec.shape
    for node in graph.node:
        for name in node.input:
            importer.consumers[name] = importer.consumers.get(name, 0) + 1
    importer.graph_outputs = tuple(value.name for value in graph.output)
    importer.run(graph.node, CONVERTERS)
    if importer.unsupported:
        raise SpecError(_unsupported_text(importer.unsupported), source=source)
    network = _network(importer, [value.name for value in graph.output], source)
    metadata = {"onnx": {"ir_version": model.ir_version, "opset": opset, "producer": model.producer_name,
                         "producer_version": model.producer_version, "graph": graph.name,
                         "input": inputs[0].name, "outputs": list(importer.graph_outputs),
                         "preprocessing": "not in the file: images go in as 0..1, not normalised, unless --preset"}}
    name = Path(source).stem  # exporters name graphs torch_jit or main_graph: the file says more
    return Model(name, spec, (), network, source, _printable(model.doc_string or graph.doc_string)[:500],
                 None, metadata)


def _parse(onnx: Any, data: bytes, source: str) -> Any:
    """The ModelProto in ``data``, checked for what the walk relies on: nodes, outputs, text names."""
    try:
        model = onnx.load_model_from_string(data)
    except Exception as err:  # protobuf's DecodeError, or onnx's own on a damaged file
        raise SpecError(f"is not a readable ONNX model ({describe(err)})", source=source) from None
    graph = model.graph
    if not graph.node or not graph.output:
        raise SpecError("is not an ONNX model with nodes and outputs (a truncated or other protobuf file?)",
                        source=source)
    if len(graph.node) > MAX_NODES:
        raise SpecError(f"has {len(graph.node):,} nodes, over the limit of {MAX_NODES:,}", source=source)
    for index, node in enumerate(graph.node):  # protobuf hands a name that is not valid UTF-8 over as bytes
        if not all(isinstance(name, str) for name in (*node.input, *node.output, node.name, node.op_type,
                                                      node.domain)):
            raise SpecError(f"node {index}: holds a name that is not valid UTF-8", source=source)
    for what, values in (("initializer", graph.initializer), ("input", graph.input), ("output", graph.output)):
        for index, value in enumerate(values):
            if not isinstance(value.name, str):
                raise SpecError(f"{what} {index}: has a name that is not valid UTF-8", source=source)
    return model


def _input_spec(value: Any, source: str) -> Any:
    """The InputSpec of the graph's input: a float (N, C, H, W) tensor with C 1 or 3 and H, W fixed."""
    from ..modelfile import InputSpec

    where = f"input {value.name!r}"
    kind = value.type.WhichOneof("value")
    if kind != "tensor_type" or value.type.tensor_type.elem_type not in FLOAT_TYPES:
        raise SpecError(f"{where} is not a float tensor; cnn feeds images as floats", source=source)
    dims = value.type.tensor_type.shape.dim
    if len(dims) != 4:
        raise SpecError(f"{where} has {len(dims)} dimensions; cnn feeds images as (N, C, H, W)", source=source)
    sizes = []
    for index, (dim, what) in enumerate(zip(dims[1:], ("channels", "height", "width")), start=1):
        if dim.WhichOneof("value") != "dim_value":
            raise SpecError(f"{where}: dimension {index} ({what}) is {dim.dim_param or 'unknown'}; cnn needs a fixed "
                            "size", source=source)
        if not 1 <= dim.dim_value <= MAX_SIDE:
            raise SpecError(f"{where}: dimension {index} ({what}) is {dim.dim_value:,}; expected 1 to {MAX_SIDE:,}",
                            source=source)
        sizes.append(dim.dim_value)
    channels, height, width = sizes
    if channels not in (1, 3):
        hint = " (it looks channels-last, (N, H, W, C), which cnn does not feed yet)" if width in (1, 3) else ""
        raise SpecError(f"{where} has {channels} channels; cnn feeds images as 1 (gray) or 3 (rgb){hint}",
                        source=source)
    return InputSpec((height, width), "gray" if channels == 1 else "rgb", "unit", False,
                     (0.0,) * channels, (1.0,) * channels)


def _network(importer: Any, outputs: list[str], source: str) -> Network:
    """The layers that lead to the graph's outputs, the last of them the network's output."""
    names = []
    for name in outputs:
        if name in importer.consts:
            raise SpecError(f"output {name!r} is a constant; nothing to run", source=source)
        if name not in importer.tensors:
            raise SpecError(f"output {name!r} is made by no node", source=source)
        layer = importer.tensors[name][0]
        if layer == INPUT:
            raise SpecError(f"output {name!r} is the input itself; nothing to run", source=source)
        names.append(layer)
    reached = set(names)
    keep = [False] * len(importer.layers)
    for index in range(len(importer.layers) - 1, -1, -1):  # drop layers that lead to no output
        if importer.layers[index].name in reached:
            keep[index] = True
            reached.update(importer.reads[index])
    layers = tuple(layer for layer, kept in zip(importer.layers, keep) if kept)
    reads = tuple(read for read, kept in zip(importer.reads, keep) if kept)
    others = tuple(dict.fromkeys(name for name in names if name != layers[-1].name))
    try:
        return Network(layers, reads, others)
    except GraphError as err:  # a bug here rather than in the file, but say where
        raise SpecError(f"layer {err.source}: {err.message}", source=source) from None


def _unsupported_text(found: list[tuple[str, str, str]]) -> str:
    """Every node that cannot be imported, grouped by op type: one line."""
    groups: dict[str, list[str]] = {}
    for op, node, why in found:
        groups.setdefault(op, []).append(f"{node}: {why}" if why else node)
    listed = "; ".join(f"{op} (node{'s' if len(nodes) > 1 else ''} {', '.join(nodes[:5])}"
                       f"{f' and {len(nodes) - 5} more' if len(nodes) > 5 else ''})" for op, nodes in groups.items())
    return f"cannot import {len(found)} node{'s' if len(found) > 1 else ''}: {listed}; see README, ONNX models"


def _printable(text: str) -> str:
    return "".join(c if c.isprintable() else " " for c in text).strip()
