"""Every node of an ONNX model against ONNX Runtime: what `cnn check` reports.

ONNX Runtime runs the model as written (graph optimisations off, so that every node's tensor
exists) with every node whose output is one of our steps made a graph output; each step's map is
compared with the tensor of the same name. A difference is judged against the tensor's scale (its
largest magnitude): within ``atol + rtol * scale``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from ...errors import CnnError

# float32 meets these on every model the tests build: sums of a few thousand terms, in another order
RTOL, ATOL = 1e-4, 1e-5


@dataclass(frozen=True)
class NodeCheck:
    name: str  # our step's name: the node's first output
    op: str  # the ONNX operator
    shape: tuple[int, ...]
    max_abs: float  # the largest absolute difference
    max_rel: float  # max_abs over the tensor's scale (its largest magnitude; 1 when it is all 0)
    passed: bool

    def record(self) -> dict[str, Any]:
        return {"name": self.name, "op": self.op, "shape": list(self.shape), "max_abs": self.max_abs,
                "max_rel": self.max_rel, "passed": self.passed}


def reference_values(data: bytes, x: np.ndarray, names: Sequence[str],
                     source: str) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """ONNX Runtime's value of each tensor in ``names`` for the input ``x`` (C, H, W), as a batch of
    one; and each node's operator, by each of its outputs' names (from the same parse)."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise CnnError("comparing with ONNX Runtime needs the onnxruntime package: pip install onnxruntime",
                       source=source) from None
    import onnx
    from onnx import helper

    model = onnx.load_model_from_string(data)
    ops = {output: node.op_type for node in model.graph.node for output in node.output}
    initializers = {tensor.name for tensor in model.graph.initializer}
    inputs = [value.name for value in model.graph.input if value.name not in initializers]
    present = {value.name for value in model.graph.output}
    # Layers the importer added (a pad before an uneven pool) or renamed have no tensor of their name.
    model.graph.output.extend(helper.make_value_info(name, onnx.TypeProto()) for name in names
                              if name in ops and name not in present)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    try:
        session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        wanted = [value.name for value in model.graph.output]
        values = session.run(wanted, {inputs[0]: x[None].astype(np.float32)})
    except Exception as err:  # noqa: BLE001  (ORT's own errors are many kinds)
        raise CnnError(f"ONNX Runtime cannot run it: {' '.join(str(err).split())[:300]}", source=source) from None
    return dict(zip(wanted, values)), ops


def check_steps(steps: Sequence[Any], reference: dict[str, np.ndarray], ops: dict[str, str],
                rtol: float = RTOL, atol: float = ATOL) -> list[NodeCheck]:
    """Each step with an ONNX Runtime tensor of its name, compared; in the order the steps ran."""
    checks = []
    for step in steps[1:]:
        if step.name not in reference:
            continue
        expected = np.asarray(reference[step.name], dtype=np.float64)
        expected = expected[0] if expected.ndim == step.output.ndim + 1 else expected  # the batch of one
        if expected.shape != step.output.shape:
            checks.append(NodeCheck(step.name, ops.get(step.name, "?"), tuple(step.output.shape), float("inf"),
                                    float("inf"), False))
            continue
        difference = np.abs(step.output.astype(np.float64) - expected)
        max_abs = float(difference.max()) if difference.size else 0.0
        scale = float(np.abs(expected).max()) if expected.size else 0.0
        max_rel = max_abs / (scale or 1.0)
        checks.append(NodeCheck(step.name, ops.get(step.name, "?"), tuple(step.output.shape), max_abs, max_rel,
                                bool(np.isfinite(max_abs)) and max_abs <= atol + rtol * scale))
    return checks
