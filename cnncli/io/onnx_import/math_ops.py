"""ONNX's element-wise math and reductions over a map: Exp, Log, Sqrt, Neg, Abs, Erf, Reciprocal,
Pow with a constant exponent, and ReduceMean / ReduceMax / ReduceSum over H and W (axes [2, 3]) as
global pools (a sum: then scaled by H*W; keepdims=0: then flattened). Registered in ops.CONVERTERS
when imported (the package imports it). Max and Min of maps are in tensor_ops, with Sum and Mean;
LogSoftmax is in ops.py, beside Softmax, whose axis rule it shares.

With every input a constant these nodes are folded when the model loads (build.FOLDABLE), not
converted here.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ...engine import layers as L
from .build import Importer, Unsupported, shape_text
from .ops import converts, layer_name, require_map, unary

UNARY = {"Exp": "Exp", "Log": "Log", "Sqrt": "Sqrt", "Neg": "Neg", "Abs": "Abs", "Erf": "Erf",
         "Reciprocal": "Reciprocal"}


@converts(*UNARY)
def elementwise(imp: Importer, attrs: dict[str, Any]) -> None:
    unary(imp, getattr(L, UNARY[imp.node.op_type])(name=layer_name(imp)))


@converts("Pow")
def power(imp: Importer, attrs: dict[str, Any]) -> None:
    source, _ = imp.tensor(0)
    exponent = imp.const(1, "the exponent Y")
    if exponent.size != 1:
        raise Unsupported(f"exponent of shape {exponent.shape}: cnn's pow takes one number")
    imp.emit(L.Pow(float(exponent.reshape(-1)[0]), layer_name(imp)), [source], imp.output())


@converts("ReduceMean", "ReduceMax", "ReduceSum")
def reduce(imp: Importer, attrs: dict[str, Any]) -> None:
    """Over axes [2, 3] with keepdims=1 a global pool; axes are an attribute before opset 18 and an
    input from it. Any other axes (or none: every axis) are refused."""
    source, shape = imp.tensor(0)
    require_map(imp, shape)
    if imp.opset < (13 if imp.node.op_type == "ReduceSum" else 18):  # axes became an input: ReduceSum's at 13
        given = attrs.get("axes")
    else:
        array = imp.optional(1, "axes")
        given = None if array is None else array.reshape(-1).tolist()
    if given is None or len(given) == 0:
        raise Unsupported(f"no axes (every axis of {shape_text(shape)}): cnn reduces axes [2, 3] only")
    axes = sorted(int(a) % 4 for a in given)
    if axes != [2, 3]:
        raise Unsupported(f"axes {list(given)}: cnn reduces axes [2, 3] (H and W) only")
    kind = L.GlobalMaxPool2d if imp.node.op_type == "ReduceMax" else L.GlobalAvgPool2d
    steps: list[Any] = [kind]
    if imp.node.op_type == "ReduceSum":  # the mean times the cells it was taken over
        steps.append(lambda name: L.Affine(np.asarray(shape[1] * shape[2], dtype=np.float32), None, name))
    if not attrs.get("keepdims", 1):
        steps.append(L.Flatten)  # (N, C, 1, 1) to (N, C), as ONNX gives
    reads = source
    for index, make in enumerate(steps):
        last = index == len(steps) - 1
        name = layer_name(imp) if last else imp.name_for(f"{imp.output()}/{('pool', 'sum')[index]}")
        imp.emit(make(name), [reads], imp.output() if last else None)
        reads = name
