"""ONNX models in: a .onnx file read into the graph engine, as a Model like a model JSON file gives.

Each ONNX node becomes a layer named by its (first) output and reading the layers named by its
inputs; initializers become weights; the graph's one real input is the network's "input". Shape
arithmetic on constants is folded when the model loads (build.py); ops.py maps each operator to
layers. The ``onnx`` package is imported only here, when an .onnx file is loaded.

Files come as exporters write them: nodes out of topological order are sorted (as ONNX Runtime
sorts them; a cycle or a tensor with two writers is refused), tensors in external data files are
read from the model's folder only (external.py), and of several graph outputs the first is the
prediction: the network's last step.

The InputSpec comes from the input's declared shape (N, C, H, W): size (H, W), gray for 1 channel
and rgb for 3, values 0..1, no normalisation. A height or width the file leaves free (PyTorch's
``dynamic_axes``) is the ``size`` the caller's input rule gives (a crop, a preset, a model JSON's
``input.size``), fixed before the walk: shape arithmetic then folds as for a fixed graph. A
model's preprocessing (ImageNet's mean and std, a resize and crop) is not in an ONNX file: images
go in as 0..1 unless --preset says otherwise; a file `cnn export` wrote carries the rule and the
labels in its metadata (onnx_metadata.py).
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


class FreeSizeError(SpecError):
    """An ONNX graph whose input leaves its height or width free, loaded with no size to fix them.
    ``input`` names the input and ``dims`` the free dimensions, in words."""

    input = dims = ""


def load_onnx(data: bytes, source: str, limits: Limits = DEFAULT_LIMITS, folder: Path | None = None,
              size: tuple[int, int] | None = None) -> Any:
    """Build a Model from the bytes of an ONNX file named ``source``, whose external data files (if
    it has any) are read from ``folder``, the model file's own (None: refused, for bytes alone).
    ``size`` (H, W) fixes the height and width the graph's input leaves free; dimensions the file
    fixes keep its values (whoever gave ``size`` checks that they agree).

    Raises CnnError (one line, naming the file and the node) for a file that is not a model, a
    tensor that does not fit, or operators cnn cannot import: those are listed all at once;
    FreeSizeError when the input leaves a dimension free and ``size`` is None.
    """
    import io

    return _load(io.BytesIO(data), len(data), source, limits, folder, size)


def load_onnx_file(path: Path, source: str, limits: Limits = DEFAULT_LIMITS,
                   size: tuple[int, int] | None = None) -> Any:
    """Build a Model from the ONNX file ``path`` (a regular file, within the size limit), reading each
    weight from the file into its array (wire.py): the file is never held whole. Its external data
    files are read from its folder. ``size`` and errors as ``load_onnx``."""
    from ..reading import open_regular

    with open_regular(path, kind="onnx", error=SpecError, expected="an ONNX file", limits=limits) as (stream, length):
        return _load(stream, length, source, limits, path.parent, size)


def _load(stream: Any, size: int, source: str, limits: Limits, folder: Path | None,
          input_size: tuple[int, int] | None) -> Any:
    try:
        import onnx
    except ImportError:
        raise CnnError("reading ONNX models needs the onnx package: pip install 'cnncli[onnx]'",
                       source=source) from None
    from ..modelfile import Model
    from ..onnx_metadata import with_metadata
    from .build import Importer
    from . import math_ops, norm_ops, spatial_ops, tensor_ops  # noqa: F401  (register their converters)
    from .external import ExternalData
    from .ops import CONVERTERS
    from .tensors import to_array
    from .wire import read_payload, split_weights

    stream.seek(0)
    kind = _other_kind(stream.read(16))
    if kind:
        raise SpecError(f"is {kind}, not an ONNX model; expected a protobuf ModelProto (.onnx)", source=source)
    skeleton, payloads = split_weights(stream, size, source)
    model = _parse(onnx, skeleton, source)
    graph = model.graph
    opset = _opset(onnx, model, source)
    nodes = _in_order(graph, source)
    external = ExternalData(folder, source, limits, size)
    importer = Importer(source, opset, external=external)
    if graph.sparse_initializer:
        raise SpecError("has sparse initializers, which cnn does not read yet", source=source)
    values = {payload.index: payload for payload in payloads}
    limits.check_memory(sum(payload.length for payload in payloads), source, "holding its weights")
    for index, tensor in enumerate(graph.initializer):
        if tensor.name in importer.consts:  # ONNX Runtime warns and takes one of them: which is not said
            raise SpecError(f"initializer {tensor.name}: is given twice; expected one tensor of each name",
                            source=source)
        where = f"initializer {tensor.name}"
        importer.consts[tensor.name] = (read_payload(stream, values[index], tensor, source, where, external)
                                        if index in values else to_array(tensor, source, where, external))
    limits.check_memory(sum(a.nbytes for a in importer.consts.values()), source, "holding its weights")
    # Old files (IR < 4) list every initializer as a graph input too; the real input is the rest.
    inputs = [value for value in graph.input if value.name not in importer.consts]
    if len(inputs) != 1:
        names = ", ".join(repr(value.name) for value in inputs) or "none"
        raise SpecError(f"has {len(inputs)} inputs besides its initializers ({names}); cnn runs models with one "
                        "image input", source=source)
    spec = _input_spec(inputs[0], source, input_size)
    importer.tensors[inputs[0].name] = (INPUT, spec.shape)
    importer.shapes[INPUT] = spec.shape
    for node in nodes:
        for name in node.input:
            importer.consumers[name] = importer.consumers.get(name, 0) + 1
    importer.graph_outputs = tuple(value.name for value in graph.output)
    importer.run(nodes, CONVERTERS)
    external.files.clear()  # the data files' bytes: every tensor has been made from them
    if importer.unsupported:
        raise SpecError(_unsupported_text(importer.unsupported), source=source)
    network = _network(importer, [value.name for value in graph.output], source)
    metadata = {"onnx": {"ir_version": model.ir_version, "opset": opset, "producer": model.producer_name,
                         "producer_version": model.producer_version, "graph": graph.name,
                         "input": inputs[0].name, "outputs": list(importer.graph_outputs),
                         "preprocessing": "not in the file: images go in as 0..1, not normalised, unless --preset"}}
    metadata["onnx"]["input_shape"] = _declared_shape(inputs[0])  # free dimensions by name: "H", "W"
    name = Path(source).stem  # exporters name graphs torch_jit or main_graph: the file says more
    imported = Model(name, spec, (), network, source, _printable(model.doc_string or graph.doc_string)[:500],
                     None, metadata, tuple(external.paths))
    return with_metadata(imported, model.metadata_props, source)  # what `cnn export` keeps there: rule, labels


def _parse(onnx: Any, data: bytes, source: str) -> Any:
    """The ModelProto in ``data`` (without its weights' values), checked for what the walk relies on:
    nodes, outputs, text names, an op_type on every node."""
    try:
        model = onnx.load_model_from_string(data)
    except Exception as err:  # protobuf's DecodeError, or onnx's own on a damaged file
        raise SpecError(f"is not a readable ONNX model ({describe(err)})", source=source) from None
    if model.ir_version > onnx.IR_VERSION:
        raise SpecError(f"has IR version {model.ir_version}; the installed onnx {onnx.__version__} reads IR versions "
                        f"up to {onnx.IR_VERSION} (pip install -U onnx)", source=source)
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
        if not node.op_type:
            raise SpecError(f"node {node.name or (node.output[0] if node.output else index)}: has an empty op_type; "
                            "expected the operator it runs (Conv, Relu, ...)", source=source)
    for what, values in (("initializer", graph.initializer), ("input", graph.input), ("output", graph.output)):
        for index, value in enumerate(values):
            if not isinstance(value.name, str):
                raise SpecError(f"{what} {index}: has a name that is not valid UTF-8", source=source)
    return model


# The first bytes of files that are mistaken for models, and what they are.
OTHER_KINDS = ((b"\x89PNG", "a PNG image"), (b"\xff\xd8\xff", "a JPEG image"), (b"GIF8", "a GIF image"),
               (b"PK\x03\x04", "a zip archive (an .npz?)"), (b"\x93NUMPY", "a NumPy .npy array"),
               (b"{", "JSON text (a model JSON file?)"), (b"[", "JSON text"))


def _other_kind(data: bytes) -> str:
    """What ``data`` is when it is plainly not a ModelProto (empty, an image, JSON...); "" otherwise."""
    if not data:
        return "empty (0 bytes)"
    head = data[:16].lstrip(b" \t\r\n")
    if head.startswith(b"\xef\xbb\xbf"):  # a UTF-8 byte order mark, then JSON
        head = head[3:].lstrip()
    return next((what for magic, what in OTHER_KINDS if head.startswith(magic)), "")


def _opset(onnx: Any, model: Any, source: str) -> int:
    """The model's opset of the default domain: declared once, from 1 to the newest the installed
    onnx knows (ONNX Runtime refuses newer ones too). Other domains may be declared: only nodes in
    them are refused, as unsupported operators."""
    versions = sorted({o.version for o in model.opset_import if o.domain in ("", "ai.onnx")})
    if not versions or versions[0] < 1:
        raise SpecError("declares no opset of the default ONNX domain", source=source)
    if len(versions) > 1:
        raise SpecError(f"declares the default ONNX domain at opsets {versions}; expected one", source=source)
    newest = onnx.defs.onnx_opset_version()
    if versions[0] > newest:
        raise SpecError(f"declares opset {versions[0]} of the default ONNX domain; the installed onnx "
                        f"{onnx.__version__} knows opsets up to {newest} (pip install -U onnx)", source=source)
    return versions[0]


def _in_order(graph: Any, source: str) -> list[Any]:
    """The graph's nodes in topological order: as they are when they are in it (as ONNX requires),
    else sorted, as ONNX Runtime sorts them, each as early as its inputs allow and ties in file
    order. SpecError names the two nodes that write one tensor, or the nodes of a cycle."""
    import heapq

    nodes = list(graph.node)
    written: dict[str, int] = {}  # tensor -> the node that writes it
    given = {t.name: "an initializer" for t in graph.initializer} | {v.name: "a graph input" for v in graph.input}
    for index, node in enumerate(nodes):
        for name in node.output:
            if not name:
                continue  # an optional output left out
            if name in written:
                raise SpecError(f"{_label(node)}: writes {name!r}, which {_label(nodes[written[name]])} writes too; "
                                "each tensor has one writer", source=source)
            if name in given:
                raise SpecError(f"{_label(node)}: writes {name!r}, which is {given[name]}; each tensor has one "
                                "writer", source=source)
            written[name] = index
    waits = [0] * len(nodes)
    readers: list[list[int]] = [[] for _ in nodes]
    for index, node in enumerate(nodes):
        for name in dict.fromkeys(node.input):
            if name in written:  # a name nothing writes is the walk's to report, naming its node
                waits[index] += 1
                readers[written[name]].append(index)
    ready = [index for index, count in enumerate(waits) if count == 0]
    heapq.heapify(ready)
    order: list[int] = []
    while ready:
        index = heapq.heappop(ready)
        order.append(index)
        for reader in readers[index]:
            waits[reader] -= 1
            if waits[reader] == 0:
                heapq.heappush(ready, reader)
    if len(order) < len(nodes):
        raise SpecError(_cycle_text(nodes, written, waits), source=source)
    return [nodes[index] for index in order]


def _cycle_text(nodes: list[Any], written: dict[str, int], waits: list[int]) -> str:
    """The nodes of one cycle, found by following, from a node left waiting, an input written by
    another node left waiting until a node comes round again."""
    at = next(index for index, count in enumerate(waits) if count)
    path: list[int] = []
    while at not in path:
        path.append(at)
        at = next(written[name] for name in nodes[at].input if name in written and waits[written[name]])
    cycle = path[path.index(at):]
    steps = " -> ".join(f"{_label(nodes[i])}" for i in reversed(cycle))
    return (f"has a cycle: {steps} -> {_label(nodes[cycle[-1]])}, each reading the one before; an ONNX graph has "
            "none")


def _label(node: Any) -> str:
    return f"node {node.name or (node.output[0] if node.output else '?')} ({node.op_type})"


def _input_spec(value: Any, source: str, size: tuple[int, int] | None) -> Any:
    """The InputSpec of the graph's input: a float (N, C, H, W) tensor with C fixed at 1 or 3, and H
    and W fixed by the file or, where it leaves them free, by ``size``."""
    from ..modelfile import InputSpec

    where = f"input {value.name!r}"
    kind = value.type.WhichOneof("value")
    if kind != "tensor_type":
        raise SpecError(f"{where} is not a tensor ({kind or 'no type'}); cnn feeds images as float tensors",
                        source=source)
    elem = value.type.tensor_type.elem_type
    if elem not in FLOAT_TYPES:
        from onnx import TensorProto

        name = TensorProto.DataType.Name(elem).lower() if elem in TensorProto.DataType.values() else f"type {elem}"
        raise SpecError(f"{where} takes {name} values; cnn feeds images as floats (float, float16, double or "
                        "bfloat16)", source=source)
    dims = value.type.tensor_type.shape.dim
    if len(dims) != 4:
        raise SpecError(f"{where} has {len(dims)} dimensions; cnn feeds images as (N, C, H, W)", source=source)
    if dims[1].WhichOneof("value") != "dim_value":
        raise SpecError(f"{where}: dimension 1 (channels) is {dims[1].dim_param or 'unknown'}; cnn needs a fixed "
                        "number of channels, 1 (gray) or 3 (rgb)", source=source)
    free = tuple((index, what, dims[index].dim_param) for index, what in ((2, "height"), (3, "width"))
                 if dims[index].WhichOneof("value") != "dim_value")
    if free and size is None:
        named = " and ".join(f"{what} (dimension {index}, {name!r})" if name else f"{what} (dimension {index}, "
                             "unnamed)" for index, what, name in free)
        error = FreeSizeError(f"{where} leaves its {named} free; expected a size from the input rule: --crop H,W or "
                              "--preset imagenet (crop=(H, W) or preset= in Python), or \"size\": [H, W] in the "
                              "\"input\" of a model JSON whose \"graph\" is this file", source=source)
        error.input, error.dims = value.name, named
        raise error
    sizes = []
    for index, (dim, what) in enumerate(zip(dims[1:], ("channels", "height", "width")), start=1):
        if dim.WhichOneof("value") != "dim_value":
            assert size is not None  # refused above
            sizes.append(size[index - 2])  # free: the input rule's
            continue
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


def _declared_shape(value: Any) -> list[int | str]:
    """The input's shape as the file declares it: a fixed dimension's size, a free one's name ("?" unnamed)."""
    return [dim.dim_value if dim.WhichOneof("value") == "dim_value" else dim.dim_param or "?"
            for dim in value.type.tensor_type.shape.dim]


def _network(importer: Any, outputs: list[str], source: str) -> Network:
    """The layers that lead to the graph's outputs, the first output's last: it is the prediction
    (top-k, the final map), and the others are the network's ``outputs``, each shown as a step."""
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
    layers = [layer for layer, kept in zip(importer.layers, keep) if kept]
    reads = [read for read, kept in zip(importer.reads, keep) if kept]
    first = names[0]
    if layers[-1].name != first:
        if any(first in read for read in reads):  # a later output reads it: a copy of it goes last
            from ...engine.layers import Identity

            layers.append(Identity(importer.name_for("prediction")))
            reads.append((first,))
        else:  # nothing reads it: it can run last
            at = next(index for index, layer in enumerate(layers) if layer.name == first)
            layers.append(layers.pop(at))
            reads.append(reads.pop(at))
    others = tuple(dict.fromkeys(name for name in names if name != layers[-1].name))
    try:
        return Network(tuple(layers), tuple(reads), others)
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
