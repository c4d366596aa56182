"""Every node of an ONNX model against ONNX Runtime: what `cnn check` reports.

ONNX Runtime runs the model as written (graph optimisations off, so that every node's tensor
exists) with every node whose output is one of our steps made a graph output; each step's map is
compared with the tensor of the same name. A difference is judged against the tensor's scale (its
largest magnitude): within ``atol + rtol * scale``.

Where ONNX Runtime is known to depart from the ONNX specification (``DEPARTURES``, decided from a
node's operator, attributes and opset, never from its values), the node is held to the onnx
package's reference evaluator instead: the evaluator runs that node alone, on ONNX Runtime's values
of its inputs, and ONNX Runtime runs the rest of the graph again with the reference's value fed in
its place, so that no node after it inherits the departure. The evaluator is slow (a Python loop
per window), so it gets a budget; a node past it stays with ONNX Runtime, and the report says so.

Checked by experiment (onnx 1.23.2; onnxruntime 1.22.0 and 1.32.0; tests/test_onnx_check.py):
- AveragePool with ceil_mode=1 and count_include_pad=1 at opsets 11 and 18: onnxruntime 1.22
  divides a last window that hangs past the padded input by the whole kernel (input 1..6, kernel 3,
  stride 2, pads 1: the last window holds 6 and a pad, 6 / 2 = 3; 1.22 gives 6 / 3 = 2). 1.32
  computes the spec at opsets 11, 18 and 19, and both do with count_include_pad=0.
- The evaluator's own ceil_mode is wrong for AveragePool when the last window overhangs by 2 or
  more cells (stride 3 or more): it moves half the overhang before the input, which shifts every
  window (1..7, kernel 3, stride 3: [1.5, 4, 6], not [2, 5, 7]). So it is given the node without
  ceil_mode, as the spec defines it: the node's pads added to the input as zeros (they count) and
  the overhang as end pads that never count.
- Resize nearest at ties (round_prefer_floor/ceil) is not held: each of the two misrounds exact
  ties the other gets right. onnxruntime 1.22 rounds 20 -> 6, half_pixel, round_prefer_ceil,
  output 4 (14.5) down (onnx/onnx#7841), which 1.32 and the evaluator round up; the evaluator,
  computing in float64, rounds 14 -> 17, half_pixel, round_prefer_floor, output 8 (6.5) up, which
  both onnxruntime versions round down. cnn imports neither mode.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping, Optional, Sequence

import numpy as np

from ...errors import CnnError

if TYPE_CHECKING:
    from onnx import ModelProto, NodeProto

# float32 meets these on every model the tests build: sums of a few thousand terms, in another order
RTOL, ATOL = 1e-4, 1e-5

# Window cells the reference evaluator may add up for one check, all held nodes together: about
# 10 s at its 2 to 3.5 microseconds a cell (a 64x56x56 map, 3x3 windows, stride 2: 64x29x29
# windows, 0.5 million cells, 1 to 1.7 s here).
REFERENCE_BUDGET = 3_000_000

ONNXRUNTIME, ONNX_REFERENCE = "onnxruntime", "onnx reference"


class Departure:
    """A kind of node where ONNX Runtime departs from the ONNX specification, held to the onnx
    reference evaluator: which nodes (``applies``, from operator, attributes and opset), how much
    work the evaluator has with one (``taps``) and its value (``evaluate``). ``why`` is the report's
    footnote; ``believe`` what to believe where cnn agrees with ONNX Runtime but not the reference."""

    name = why = believe = ""

    def applies(self, node: NodeProto, opset: int) -> bool:
        raise NotImplementedError

    def taps(self, node: NodeProto, x: np.ndarray) -> int:
        raise NotImplementedError

    def evaluate(self, node: NodeProto, x: np.ndarray, opset: int) -> np.ndarray:
        raise NotImplementedError


class AveragePoolCeilMode(Departure):
    name = "AveragePool ceil_mode before opset 19"
    why = ("AveragePool with ceil_mode=1 and count_include_pad=1 before opset 19: ONNX Runtime's kernel for these "
           "opsets divides a last window that hangs past the padding by the whole kernel (onnxruntime 1.22 does, "
           "1.32 does not; microsoft/onnxruntime#16203)")
    believe = "believe the onnx reference: ONNX Runtime's kernel departs from the spec here, and cnn with it"

    def applies(self, node: NodeProto, opset: int) -> bool:
        attrs = _attributes(node)
        return (node.op_type == "AveragePool" and opset < 19 and attrs.get("ceil_mode", 0) == 1
                and attrs.get("count_include_pad", 0) == 1 and attrs.get("auto_pad", "NOTSET") == "NOTSET")

    def taps(self, node: NodeProto, x: np.ndarray) -> int:
        """About how many cells the evaluator adds up: windows (a ceil_mode count) x their size."""
        attrs = _attributes(node)
        kernel = [int(k) for k in attrs["kernel_shape"]]
        strides = attrs.get("strides", [1] * len(kernel))
        pads = attrs.get("pads", [0] * 2 * len(kernel))
        windows = [-(-(n + pads[i] + pads[len(kernel) + i] - k) // s) + 1
                   for i, (n, k, s) in enumerate(zip(x.shape[2:], kernel, strides))]
        return int(x.shape[0] * x.shape[1] * np.prod(windows) * np.prod(kernel))

    def evaluate(self, node: NodeProto, x: np.ndarray, opset: int) -> np.ndarray:
        rewritten, padded = _average_pool_without_ceil(node, x)
        return _run_reference(rewritten, {"x": padded}, opset)


DEPARTURES: tuple[Departure, ...] = (AveragePoolCeilMode(),)


@dataclass(frozen=True)
class NodeCheck:
    name: str  # our step's name: the node's first output
    op: str  # the ONNX operator
    shape: tuple[int, ...]
    max_abs: float  # the largest absolute difference from the reference
    max_rel: float  # max_abs over the tensor's scale (its largest magnitude; 1 when it is all 0)
    passed: bool
    reference: str = ONNXRUNTIME  # what the node was held to: ONNXRUNTIME or ONNX_REFERENCE
    note: str = ""  # why, where ONNX Runtime and the reference disagree, or why a held kind was not held

    def record(self) -> dict[str, Any]:
        record = {"name": self.name, "op": self.op, "shape": list(self.shape), "max_abs": self.max_abs,
                  "max_rel": self.max_rel, "passed": self.passed, "reference": self.reference}
        if self.note:
            record["note"] = self.note
        return record


@dataclass
class References:
    """The value each tensor is held to, and which nodes the onnx reference evaluator computed."""

    values: dict[str, np.ndarray]  # ONNX Runtime's, or the reference's for a held node
    ops: dict[str, str]  # each node's operator, by each of its outputs' names
    held: dict[str, Departure] = field(default_factory=dict)  # tensor -> why the reference computed it
    runtime: dict[str, np.ndarray] = field(default_factory=dict)  # ONNX Runtime's own value of a held tensor
    not_held: dict[str, str] = field(default_factory=dict)  # tensor of a held kind -> why ONNX Runtime kept it


def reference_values(data: bytes, x: np.ndarray, names: Sequence[str],
                     source: str) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """ONNX Runtime's value of each tensor in ``names`` for the input ``x`` (C, H, W), as a batch of
    one; and each node's operator, by each of its outputs' names (from the same parse)."""
    import onnx

    model = onnx.load_model_from_string(data)
    return _run_onnxruntime(model, _feeds(model, x), _wanted(model, names), source), _operators(model)


def references(data: bytes, x: np.ndarray, names: Sequence[str], source: str,
               budget: int = REFERENCE_BUDGET, folder: str | None = None) -> References:
    """What each tensor in ``names`` is held to for the input ``x`` (C, H, W): ONNX Runtime's value,
    or for a node of a kind in ``DEPARTURES`` the onnx reference evaluator's, with every later node
    run by ONNX Runtime from it. The evaluator runs only if the model has such nodes, and only
    while the window taps it adds up stay within ``budget``. ``folder`` holds the model's external
    data files (the importer has checked that each lies inside it)."""
    import onnx

    model = onnx.load_model_from_string(data)
    opset = _opset(model)
    kinds = [(node, kind) for node in model.graph.node for kind in DEPARTURES if kind.applies(node, opset)]
    feeds = _feeds(model, x)
    wanted = _wanted(model, [*names, *(name for node, _ in kinds for name in (node.input[0], node.output[0]))])
    result = References(_run_onnxruntime(model, feeds, wanted, source, folder), _operators(model))
    fed: dict[str, np.ndarray] = {}  # the reference's values, fed to ONNX Runtime in their nodes' place
    unseen: set[str] = set()  # those whose later nodes ONNX Runtime has not yet run from them
    makers = {output: node for node in model.graph.node for output in node.output}
    spent = 0
    for node, kind in kinds:
        name = node.output[0]
        if unseen & _upstream(node, makers):  # computed from a departed value: run ONNX Runtime again first
            result.values.update(_run_onnxruntime(_cut(model, fed), {**feeds, **fed}, wanted - set(fed), source,
                                                  folder))
            unseen.clear()
        x_in = {**feeds, **result.values}.get(node.input[0])
        if x_in is None:  # a constant input: ONNX Runtime's value, whatever the node's kind
            result.not_held[name] = f"{kind.name}: left to ONNX Runtime; its input is a constant"
            continue
        taps = kind.taps(node, x_in)
        if spent + taps > budget:
            result.not_held[name] = (f"{kind.name}: left to ONNX Runtime; the onnx reference would add up "
                                     f"{taps:,} window cells, past its budget of {budget - spent:,}")
            continue
        spent += taps
        try:
            value = kind.evaluate(node, x_in, opset)
        except Exception as err:  # noqa: BLE001  (the evaluator's errors are many kinds)
            result.not_held[name] = (f"{kind.name}: left to ONNX Runtime; the onnx reference cannot run it: "
                                     f"{' '.join(str(err).split())[:200]}")
            continue
        result.held[name] = kind
        result.runtime[name] = result.values[name]
        result.values[name] = fed[name] = value
        if value.shape != result.runtime[name].shape or not np.array_equal(value, result.runtime[name]):
            unseen.add(name)
    if unseen:
        result.values.update(_run_onnxruntime(_cut(model, fed), {**feeds, **fed}, wanted - set(fed), source, folder))
    return result


def check_steps(steps: Sequence[Any], reference: Mapping[str, np.ndarray], ops: Mapping[str, str],
                rtol: float = RTOL, atol: float = ATOL,
                held: Optional[References] = None) -> list[NodeCheck]:
    """Each step with a reference tensor of its name, compared; in the order the steps ran. With
    ``held`` (what ``references`` found), a held node is judged against the onnx reference and
    its note says where ONNX Runtime disagrees."""
    checks = []
    for step in steps[1:]:
        if step.name not in reference:
            continue
        op = ops.get(step.name, "?")
        max_abs, max_rel, passed = _compare(step.output, reference[step.name], rtol, atol)
        if held is None or step.name not in held.held:
            note = held.not_held.get(step.name, "") if held is not None else ""
            checks.append(NodeCheck(step.name, op, tuple(step.output.shape), max_abs, max_rel, passed, note=note))
            continue
        kind = held.held[step.name]
        runtime_abs, _, runtime_agrees = _compare(step.output, held.runtime[step.name], rtol, atol)
        if passed and runtime_agrees:
            note = ""
        elif passed:
            note = (f"ONNX Runtime differs by {runtime_abs:.3g}, its departure ({kind.name}); cnn agrees with the "
                    "onnx reference")
        elif runtime_agrees:
            note = f"cnn agrees with ONNX Runtime, not with the onnx reference: {kind.believe}"
        else:
            note = f"ONNX Runtime differs too, by {runtime_abs:.3g}"
        checks.append(NodeCheck(step.name, op, tuple(step.output.shape), max_abs, max_rel, passed, ONNX_REFERENCE,
                                note))
    return checks


def _compare(ours: np.ndarray, theirs: np.ndarray, rtol: float, atol: float) -> tuple[float, float, bool]:
    """(max abs difference, over the reference's scale, within atol + rtol x scale)."""
    expected = np.asarray(theirs, dtype=np.float64)
    expected = expected[0] if expected.ndim == ours.ndim + 1 else expected  # the batch of one
    if expected.shape != ours.shape:
        return float("inf"), float("inf"), False
    difference = np.abs(ours.astype(np.float64) - expected)
    max_abs = float(difference.max()) if difference.size else 0.0
    scale = float(np.abs(expected).max()) if expected.size else 0.0
    return max_abs, max_abs / (scale or 1.0), bool(np.isfinite(max_abs)) and max_abs <= atol + rtol * scale


# -- ONNX Runtime ----------------------------------------------------------------------------------------
def _run_onnxruntime(model: ModelProto, feeds: dict[str, np.ndarray], wanted: set[str],
                     source: str, folder: str | None = None) -> dict[str, np.ndarray]:
    """ONNX Runtime's value of each name in ``wanted`` (graph outputs and node outputs alike)."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise CnnError("comparing with ONNX Runtime needs the onnxruntime package: pip install onnxruntime",
                       source=source) from None
    import onnx
    from onnx import helper

    exposed = onnx.ModelProto()
    exposed.CopyFrom(model)
    present = {value.name for value in exposed.graph.output}
    exposed.graph.output.extend(helper.make_value_info(name, onnx.TypeProto()) for name in sorted(wanted - present))
    names = [value.name for value in exposed.graph.output]
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 3  # errors only: its shape-inference warnings are not the user's to read
    if folder is not None:  # a model given as bytes finds its external data files there
        options.add_session_config_entry("session.model_external_initializers_file_folder_path", folder)
    try:
        session = ort.InferenceSession(exposed.SerializeToString(), options, providers=["CPUExecutionProvider"])
        values = session.run(names, feeds)
    except Exception as err:  # noqa: BLE001  (ORT's own errors are many kinds)
        raise CnnError(f"ONNX Runtime cannot run it: {' '.join(str(err).split())[:300]}", source=source) from None
    return dict(zip(names, values))


def _feeds(model: ModelProto, x: np.ndarray) -> dict[str, np.ndarray]:
    initializers = {tensor.name for tensor in model.graph.initializer}
    inputs = [value.name for value in model.graph.input if value.name not in initializers]
    return {inputs[0]: x[None].astype(np.float32)}


def _wanted(model: ModelProto, names: Sequence[str]) -> set[str]:
    """The graph's outputs and those of ``names`` that a node makes. (Layers the importer added,
    a pad before an uneven pool, or renamed have no tensor of their name.)"""
    made = {output for node in model.graph.node for output in node.output}
    return {value.name for value in model.graph.output} | {name for name in names if name in made}


def _cut(model: ModelProto, fed: Mapping[str, np.ndarray]) -> ModelProto:
    """``model`` with the nodes that make the tensors in ``fed`` taken out and those tensors made
    graph inputs, so that ONNX Runtime runs what follows them from the values given."""
    import onnx
    from onnx import helper

    cut = onnx.ModelProto()
    cut.CopyFrom(model)
    nodes = [node for node in cut.graph.node if not set(node.output) & fed.keys()]
    outputs = [value for value in cut.graph.output if value.name not in fed]
    del cut.graph.node[:], cut.graph.output[:]
    cut.graph.node.extend(nodes)
    cut.graph.output.extend(outputs)
    cut.graph.input.extend(helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(value.dtype),
                                                         value.shape) for name, value in fed.items())
    return cut


def _upstream(node: NodeProto, makers: Mapping[str, NodeProto]) -> set[str]:
    """The names of every tensor ``node``'s inputs are computed from, its inputs included."""
    seen: set[str] = set()
    stack = [name for name in node.input if name]
    while stack:
        name = stack.pop()
        if name not in seen:
            seen.add(name)
            maker = makers.get(name)
            stack.extend(name for name in (maker.input if maker is not None else ()) if name)
    return seen


def _operators(model: ModelProto) -> dict[str, str]:
    return {output: node.op_type for node in model.graph.node for output in node.output}


def _opset(model: ModelProto) -> int:
    return next((entry.version for entry in model.opset_import if entry.domain in ("", "ai.onnx")), 1)


def _attributes(node: NodeProto) -> dict[str, Any]:
    from onnx import helper

    values = {attribute.name: helper.get_attribute_value(attribute) for attribute in node.attribute}
    return {name: value.decode() if isinstance(value, bytes) else value for name, value in values.items()}


# -- the onnx reference evaluator -------------------------------------------------------------------------
def _run_reference(node: NodeProto, feeds: dict[str, np.ndarray], opset: int) -> np.ndarray:
    """The onnx reference evaluator's value of ``node``'s first output, the node alone in a graph."""
    from onnx import TensorProto, helper
    from onnx.reference import ReferenceEvaluator

    inputs = [helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(value.dtype), value.shape)
              for name, value in feeds.items()]
    graph = helper.make_graph([node], "held", inputs, [helper.make_tensor_value_info(node.output[0],
                                                                                      TensorProto.FLOAT, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    outputs: Any = ReferenceEvaluator(model).run(None, feeds)  # a list (a dict only with intermediate=True)
    return np.asarray(outputs[0])


def _average_pool_without_ceil(node: NodeProto, x: np.ndarray) -> tuple[NodeProto, np.ndarray]:
    """An AveragePool with ceil_mode=1 and count_include_pad=1 as the same windows without
    ceil_mode: (the node, its input). The node's pads become zeros of the input, counted; the
    cells past them that ceil_mode's last window reaches become end pads of count_include_pad=0,
    never counted. Per axis, over the padded length L, there are ceil((L - k) / s) + 1 windows, less
    a last one that would start in the end pads; with pads below the kernel (as ONNX Runtime
    requires) the windows without ceil_mode over L and the overhang are exactly those."""
    from onnx import helper

    attrs = _attributes(node)
    kernel = [int(k) for k in attrs["kernel_shape"]]
    dims = len(kernel)
    strides = [int(s) for s in attrs.get("strides", [1] * dims)]
    pads = [int(p) for p in attrs.get("pads", [0] * 2 * dims)]
    padded = np.pad(x, [(0, 0), (0, 0), *((pads[i], pads[dims + i]) for i in range(dims))])  # (N, C, *L)
    overhang = []
    for i in range(dims):
        size, length, k, s = x.shape[2 + i], padded.shape[2 + i], kernel[i], strides[i]
        windows = -(-(length - k) // s) + 1
        if (windows - 1) * s >= size + pads[i]:
            windows -= 1
        overhang.append(max(0, (windows - 1) * s + k - length))
    rewritten = helper.make_node("AveragePool", ["x"], [node.output[0]], kernel_shape=kernel, strides=strides,
                                 pads=[0] * dims + overhang, count_include_pad=0)
    return rewritten, padded
