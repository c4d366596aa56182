"""The walk that turns an ONNX graph into a Network: one layer per node, named by its first output.

Each ONNX tensor name stands for either a constant, known when the model loads (an initializer, a
``Constant`` node, or shape arithmetic on them such as PyTorch's Shape -> Gather -> Unsqueeze ->
Concat -> Reshape), or a value the network computes: the input (``INPUT``) or a layer's output,
whose shape for one sample (without the batch) is known too. Nodes whose inputs are all constants
are folded here, with ONNX's own reference implementation; the others become layers (ops.py).

A node that cannot be imported does not stop the walk: it is noted, the tensors it makes are
marked unknown (nodes reading them are skipped), and all such nodes are reported in one error at
the end, before anything runs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from ...engine.graph import INPUT
from ...errors import CnnError, ShapeError, SpecError, describe

Shape = tuple[int, ...]
# Ops folded when every input is a constant (shape arithmetic, weights prepared in the graph).
FOLDABLE = frozenset({
    "Add", "Sub", "Mul", "Div", "Neg", "Abs", "Sqrt", "Pow", "Reciprocal", "Floor", "Ceil", "Cast", "CastLike",
    "Gather", "Unsqueeze", "Squeeze", "Concat", "Slice", "Reshape", "Transpose", "Identity", "Flatten", "Range",
    "ReduceProd", "ReduceSum", "ReduceMean", "Equal", "Where", "Min", "Max", "Sum", "Expand", "Tile",
    "ConstantOfShape", "Shape", "Size", "Not", "And", "Or", "Less", "Greater",
})
FOLD_MAX_VALUES = 1 << 22  # what a folded constant may hold: shape arithmetic is tiny; 16 MB of float32


class Unsupported(Exception):
    """A node this importer cannot turn into layers; ``why`` says what about it, if not its op type."""

    def __init__(self, why: str = "") -> None:
        super().__init__(why)
        self.why = why


@dataclass
class Importer:
    """The state of the walk: constants by tensor name, computed tensors (layer name, sample shape),
    and the layers made so far, each with the names it reads."""

    source: str
    opset: int
    consts: dict[str, np.ndarray] = field(default_factory=dict)
    tensors: dict[str, tuple[str, Shape]] = field(default_factory=dict)
    layers: list[Any] = field(default_factory=list)
    reads: list[tuple[str, ...]] = field(default_factory=list)
    shapes: dict[str, Shape] = field(default_factory=dict)  # layer name -> sample shape
    consumers: dict[str, int] = field(default_factory=dict)  # tensor name -> how many nodes read it
    readers_left: dict[str, int] = field(default_factory=dict)  # of those, how many have not been imported yet
    graph_outputs: tuple[str, ...] = ()
    unknown: set[str] = field(default_factory=set)  # tensors made by nodes that could not be imported
    # 5-D views of a map on the way to a channel shuffle (tensor_ops.reshape): tensor -> (step, layer, groups)
    views: dict[str, tuple[str, str, int]] = field(default_factory=dict)
    unsupported: list[tuple[str, str, str]] = field(default_factory=list)  # (op type, node, why)
    node: Any = None  # the node being imported
    node_label: str = ""
    external: Any = None  # external.ExternalData: where tensors stored outside the file are read from

    # -- reading a node's inputs --------------------------------------------------------------
    def fail(self, message: str, error: type[CnnError] = SpecError) -> CnnError:
        return error(f"{self.node_label}: {message}", source=self.source)

    def _known(self, name: str) -> None:
        if name not in self.consts and name not in self.tensors and name not in self.views:
            raise self.fail(f"input {name!r} is neither an initializer, the graph's input nor an output of an "
                            "earlier node")

    def has(self, index: int) -> bool:
        """Whether input ``index`` is given (ONNX marks a skipped optional input with an empty name)."""
        return index < len(self.node.input) and self.node.input[index] != ""

    def is_const(self, index: int) -> bool:
        return self.has(index) and self.node.input[index] in self.consts

    def const(self, index: int, what: str) -> np.ndarray:
        """Input ``index``, which must be given and be a constant (an initializer or folded)."""
        value = self.optional(index, what)
        if value is None:
            raise self.fail(f"needs input {index} ({what})")
        return value

    def optional(self, index: int, what: str) -> np.ndarray | None:
        """Input ``index``, a constant, or None when it is not given (an optional input)."""
        if not self.has(index):
            return None
        name = self.node.input[index]
        self._known(name)
        if name not in self.consts:
            raise Unsupported(f"{what} ({name!r}) is computed by the network; cnn imports it only as a constant")
        return self.consts[name]

    def tensor(self, index: int = 0) -> tuple[str, Shape]:
        """Input ``index`` as a computed value: (the layer that makes it, its sample shape)."""
        if not self.has(index):
            raise self.fail(f"needs input {index}")
        name = self.node.input[index]
        self._known(name)
        if name in self.consts:
            raise Unsupported(f"input {name!r} is a constant where cnn expects a map computed by the network")
        if name in self.views:
            raise Unsupported(f"input {name!r} is a 5-D view of a map; cnn imports such views only as a channel "
                              "shuffle (Reshape to (N, G, C/G, H, W), Transpose 0,2,1,3,4, Reshape back)")
        return self.tensors[name]

    # -- making layers ----------------------------------------------------------------------------
    def name_for(self, tensor: str) -> str:
        """A layer name for an output tensor: the tensor's name, printable and unique."""
        name = "".join(c if c.isprintable() else "?" for c in tensor) or "node"
        taken = set(self.shapes) | {INPUT}
        while name in taken:
            name += "'"
        return name

    def emit(self, layer: Any, reads: Sequence[str], output: str | None = None) -> Shape:
        """Add ``layer`` reading the layers ``reads``; it stands for the tensor ``output`` (default:
        the node's first output). Returns its sample shape; a shape that does not fit is an error
        naming the node."""
        given = [self.shapes[name] for name in reads]
        try:
            shape = tuple(layer.output_shape(*given))
        except CnnError as err:
            shown = ", ".join(str(s) for s in given)
            raise self.fail(f"{err} (input {shown})", ShapeError) from None
        self.layers.append(layer)
        self.reads.append(tuple(reads))
        self.shapes[layer.name] = shape
        if output is not None:
            self.tensors[output] = (layer.name, shape)
        return shape

    def output(self, index: int = 0) -> str:
        return self.node.output[index]

    # -- the walk -----------------------------------------------------------------------------------
    def run(self, nodes: Sequence[Any], converters: dict[str, Any]) -> None:
        for node in nodes:
            self.node = node
            label = node.name or (node.output[0] if node.output else "?")
            self.node_label = f"node {label} ({node.op_type})"
            if any(name in self.unknown for name in node.input if name):
                self.unknown.update(node.output)
                continue
            try:
                self._one(node, converters)
            except Unsupported as err:
                self.unsupported.append((node.op_type, label, err.why))
                self.unknown.update(node.output)
            except (ValueError, TypeError, IndexError, KeyError, ZeroDivisionError, OverflowError) as err:
                # an attribute of the wrong kind or length (a hostile or damaged file): one line, no traceback
                raise self.fail(f"has attributes or inputs cnn cannot read: {describe(err)}") from None
            self._let_go(node)

    def _let_go(self, node: Any) -> None:
        """Drop the constants no later node reads: a layer that made its own copy of a weight (a
        transposed one, a folded one) does not hold it twice while the rest of the model loads."""
        for name in node.input:
            if not name:
                continue
            left = self.readers_left.get(name, self.consumers.get(name, 0)) - 1
            self.readers_left[name] = left
            if left <= 0 and name in self.consts and name not in self.graph_outputs:
                del self.consts[name]

    def _one(self, node: Any, converters: dict[str, Any]) -> None:
        from onnx import helper

        if node.domain not in ("", "ai.onnx"):
            raise Unsupported(f"domain {node.domain}")
        _check_opset(node.op_type, self.opset, self)
        attrs = {a.name: _attribute(helper.get_attribute_value(a)) for a in node.attribute}
        for name in node.input:
            if name:
                self._known(name)
        if node.op_type == "Constant":
            self.consts[node.output[0]] = _constant(attrs, self)
            return
        if node.op_type == "Shape" and node.input[0] in self.tensors:
            full = np.array((1, *self.tensors[node.input[0]][1]), dtype=np.int64)  # the batch counts as 1
            start, end = attrs.get("start", 0), attrs.get("end")
            self.consts[node.output[0]] = full[start:end]
            return
        given = [name for name in node.input if name]
        if node.op_type in FOLDABLE and all(name in self.consts for name in given):
            for name, value in zip(node.output, self._fold(node)):
                self.consts[name] = value
            return
        convert = converters.get(node.op_type)
        if convert is None:
            if node.op_type in FOLDABLE:
                raise Unsupported("runs on a map computed by the network; cnn folds it only on constants")
            raise Unsupported()
        convert(self, attrs)

    def _fold(self, node: Any) -> list[np.ndarray]:
        """The outputs of a node whose inputs are all constants, by ONNX's reference evaluator."""
        from onnx import helper
        from onnx.reference import ReferenceEvaluator

        inputs = [self.consts[name] for name in node.input if name]
        if sum(a.size for a in inputs) > FOLD_MAX_VALUES or _fold_size(node.op_type, inputs) > FOLD_MAX_VALUES:
            raise Unsupported("makes a constant too large to fold when the model loads")
        names = [f"i{i}" for i in range(len(node.input))]
        copy = helper.make_node(node.op_type, [n if name else "" for n, name in zip(names, node.input)],
                                [f"o{i}" for i in range(len(node.output))])
        copy.attribute.extend(node.attribute)
        graph = helper.make_graph([copy], "fold", [
            helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(a.dtype), a.shape)
            for n, a in zip([n for n, name in zip(names, node.input) if name], inputs)],
            [helper.make_tensor_value_info(f"o{i}", 0, None) for i in range(len(node.output))])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", self.opset)])
        feeds = {n: a for n, a in zip([n for n, name in zip(names, node.input) if name], inputs)}
        try:
            outputs = ReferenceEvaluator(model).run(None, feeds)
        except Exception as err:  # the reference evaluator's errors on bad attributes or shapes
            raise self.fail(f"cannot be computed on its constant inputs: {describe(err)}") from None
        results = [np.asarray(value) for value in outputs]
        if any(a.size > FOLD_MAX_VALUES for a in results):
            raise Unsupported("makes a constant too large to fold when the model loads")
        return results


def _check_opset(op: str, opset: int, importer: Importer) -> None:
    """Refuse an operator the model's opset does not have yet (HardSwish before 14), as runtimes do."""
    from onnx import defs

    if not defs.has(op):
        return  # not an ONNX operator at all: reported as unsupported
    try:
        defs.get_schema(op, opset, "")
    except defs.SchemaError:
        since = min(schema.since_version for schema in defs.get_all_schemas_with_history()
                    if schema.name == op and schema.domain == "")
        raise importer.fail(f"{op} is defined from opset {since}, but the model declares opset {opset}") from None


def _fold_size(op: str, inputs: list[np.ndarray]) -> int:
    """How many values the ops that make more values than they read would make (0 for the others),
    so that a shape claiming 10^12 values is refused before it is allocated."""
    if op == "ConstantOfShape" and inputs:
        return math.prod(int(d) for d in inputs[0].reshape(-1))
    if op == "Expand" and len(inputs) == 2:
        return math.prod(max(int(d), 1) for d in inputs[1].reshape(-1)) * max(inputs[0].size, 1)
    if op == "Tile" and len(inputs) == 2:
        return inputs[0].size * math.prod(int(d) for d in inputs[1].reshape(-1))
    if op == "Range" and len(inputs) == 3:
        start, limit, delta = (float(a.reshape(-1)[0]) for a in inputs)
        return 0 if delta == 0 else max(math.ceil((limit - start) / delta), 0)
    return 0


def _attribute(value: Any) -> Any:
    """An attribute's value with bytes as text, as the converters read them."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, list) and value and isinstance(value[0], bytes):
        return [v.decode("utf-8", "replace") for v in value]
    return value


def _constant(attrs: dict[str, Any], importer: Importer) -> np.ndarray:
    """The value of a Constant node (``value`` a tensor, or from opset 12 ``value_float(s)/int(s)``)."""
    from .tensors import to_array

    if "value" in attrs:
        from onnx import TensorProto

        if not isinstance(attrs["value"], TensorProto):
            raise importer.fail(f"value is {type(attrs['value']).__name__}; expected a tensor")
        return to_array(attrs["value"], importer.source, importer.node_label, importer.external)
    for key, dtype in (("value_float", np.float32), ("value_floats", np.float32), ("value_int", np.int64),
                       ("value_ints", np.int64)):
        if key in attrs:
            return np.asarray(attrs[key], dtype=dtype)
    raise Unsupported("a Constant other than a dense tensor, floats or ints")


def shape_text(shape: Shape) -> str:
    return "(N, " + ", ".join(str(d) for d in shape) + ")"

