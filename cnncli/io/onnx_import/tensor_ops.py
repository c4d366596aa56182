"""ONNX operators that reshape, cut, join and do arithmetic: Flatten, Reshape and Squeeze as a flatten,
other Reshapes, Squeezes and Unsqueezes to a vector or a map as a reshape, Reshape -> Transpose ->
Reshape as a channel shuffle, Slice and Split as slices,
Gemm and MatMul (+ Add) as dense layers, Add/Sub/Mul/Div with a map or a constant, Concat, Sum,
Mean, Max, Min and Pad. Registered in ops.CONVERTERS when imported (the package imports it).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ...engine import layers as L
from ...errors import ShapeError
from .build import Importer, Unsupported, shape_text
from .ops import converts, layer_name, require_map, unary


def _flatten(imp: Importer, source: str) -> None:
    imp.emit(L.Flatten(layer_name(imp)), [source], imp.output())


@converts("Flatten")
def flatten(imp: Importer, attrs: dict[str, Any]) -> None:
    source, shape = imp.tensor(0)
    axis = int(attrs.get("axis", 1))
    if axis not in (1, -len(shape)):
        raise Unsupported(f"axis {axis}: cnn flattens at axis 1 (all but the batch) only")
    _flatten(imp, source)


@converts("Reshape")
def reshape(imp: Importer, attrs: dict[str, Any]) -> None:
    target = attrs["shape"] if imp.opset < 5 and "shape" in attrs else imp.const(1, "the shape")
    target = [int(d) for d in np.asarray(target).reshape(-1)]
    if imp.node.input[0] in imp.views:
        _end_of_shuffle(imp, target)
        return
    source, shape = imp.tensor(0)
    full = (1, *shape)  # the batch counts as 1, as Shape folds it
    if not attrs.get("allowzero", 0):
        target = [full[i] if d == 0 and i < len(full) else d for i, d in enumerate(target)]
    if target.count(-1) == 1:
        known = math.prod(d for d in target if d != -1)
        target[target.index(-1)] = math.prod(full) // known if known else 0
    if math.prod(target) != math.prod(full) or min(target, default=0) < 0:
        raise imp.fail(f"cannot reshape {shape_text(shape)} to {target}", ShapeError)
    if target[0] != 1:
        raise Unsupported(f"reshape of {shape_text(shape)} to {target} moves values across the batch")
    if tuple(target[1:]) == shape:
        unary(imp, L.Identity(layer_name(imp)))
    elif len(target) == 2:
        _flatten(imp, source)
    elif len(shape) == 3 and len(target) == 5 and target[1] * target[2] == shape[0] and tuple(target[3:]) == shape[1:]:
        imp.views[imp.output()] = ("grouped", source, target[1])  # the channels as (G, C/G): a shuffle begins
    else:
        _reshaped(imp, source, shape, target[1:], f"reshape of {shape_text(shape)} to {target}")


def _reshaped(imp: Importer, source: str, shape: tuple[int, ...], target: list[int], what: str) -> None:
    """A reshape layer to ``target`` (per sample), which must be a vector or a map."""
    if len(target) not in (1, 3):
        raise Unsupported(f"{what}: cnn's samples are vectors (N, F) or maps (N, C, H, W)")
    imp.emit(L.Reshape(tuple(target), layer_name(imp)), [source], imp.output())


@converts("Unsqueeze")
def unsqueeze(imp: Importer, attrs: dict[str, Any]) -> None:
    """Axes of size 1 put in: (N, C) to (N, C, 1, 1) before a conv or a gate, as a reshape."""
    source, shape = imp.tensor(0)
    given = attrs.get("axes") if imp.opset < 13 else imp.const(1, "axes")
    axes = [int(a) for a in np.asarray(given if given is not None else [], dtype=np.int64).reshape(-1)]
    rank = len(shape) + 1 + len(axes)
    placed = sorted(a % rank for a in axes)
    if not axes or len(set(placed)) != len(placed):
        raise imp.fail(f"axes {axes}: expected distinct axes of the {rank}-D result")
    if 0 in placed:
        raise Unsupported("puts in an axis before the batch")
    dims = iter(shape)
    target = [1 if i in placed else next(dims) for i in range(1, rank)]
    _reshaped(imp, source, shape, target, f"unsqueeze of {shape_text(shape)} at axes {axes}")


@converts("Transpose")
def transpose(imp: Importer, attrs: dict[str, Any]) -> None:
    """Only the middle of a channel shuffle: (N, G, C/G, H, W) with the group axes swapped."""
    view = imp.views.get(imp.node.input[0])
    perm = [int(p) for p in attrs.get("perm", ())]
    if view is None or view[0] != "grouped" or perm != [0, 2, 1, 3, 4]:
        raise Unsupported(f"perm {perm}: cnn imports a Transpose only within a channel shuffle (perm 0,2,1,3,4 "
                          "between two Reshapes)")
    imp.views[imp.output()] = ("shuffled", view[1], view[2])


def _end_of_shuffle(imp: Importer, target: list[int]) -> None:
    step, source, groups = imp.views[imp.node.input[0]]
    shape = imp.shapes[source]
    if step != "shuffled" or target not in ([1, *shape], [1, -1, *shape[1:]], [0, -1, *shape[1:]]):
        raise Unsupported(f"reshape of a 5-D view to {target}: cnn imports these views only as a channel shuffle")
    imp.emit(L.ChannelShuffle(groups, layer_name(imp)), [source], imp.output())


def _slice_layers(imp: Importer, source: str, cuts: list[tuple[int, int, int, int]], output: str) -> None:
    """Layers that cut ``source`` along each (dim, start, end, step); the last one stands for ``output``."""
    for index, (dim, start, end, step) in enumerate(cuts):
        last = index == len(cuts) - 1
        name = imp.name_for(output if last else f"{output}/dim{dim}")
        layer = L.Slice(dim, start, end, step, name)
        imp.emit(layer, [source], output if last else None)
        source = name


@converts("Slice")
def slice_(imp: Importer, attrs: dict[str, Any]) -> None:
    source, shape = imp.tensor(0)
    rank = len(shape) + 1
    if imp.opset < 10:  # attributes; from 10 inputs, with steps
        starts, ends = attrs.get("starts", []), attrs.get("ends", [])
        axes, steps = attrs.get("axes", list(range(len(starts)))), [1] * len(starts)
    else:
        starts = imp.const(1, "starts").reshape(-1).tolist()
        ends = imp.const(2, "ends").reshape(-1).tolist()
        given = imp.optional(3, "axes")
        axes = list(range(len(starts))) if given is None else given.reshape(-1).tolist()
        given = imp.optional(4, "steps")
        steps = [1] * len(starts) if given is None else given.reshape(-1).tolist()
    if not len(starts) == len(ends) == len(axes) == len(steps):
        raise imp.fail(f"starts, ends, axes and steps differ in length ({len(starts)}, {len(ends)}, {len(axes)}, "
                       f"{len(steps)})")
    cuts = []
    for start, end, ax, step in zip(starts, ends, axes, steps):
        dim, size = int(ax) % rank, (1, *shape)[int(ax) % rank]
        if step <= 0:
            raise Unsupported(f"step {step}: cnn slices forwards only")
        if dim == 0:
            if (start, step) == (0, 1) and end >= 1 << 31:  # all of the batch, whatever its size
                continue
            raise Unsupported("slices the batch")
        start, end, _ = slice(int(start), int(end), int(step)).indices(size)  # clamps ONNX's INT64_MAX ends
        if (start, end, step) != (0, size, 1):
            cuts.append((dim, start, end, int(step)))
    if not cuts:
        imp.emit(L.Identity(layer_name(imp)), [source], imp.output())
        return
    _slice_layers(imp, source, cuts, imp.output())


@converts("Split")
def split(imp: Importer, attrs: dict[str, Any]) -> None:
    source, shape = imp.tensor(0)
    rank = len(shape) + 1
    dim = int(attrs.get("axis", 0)) % rank
    if dim == 0:
        raise Unsupported("splits the batch")
    size, parts = shape[dim - 1], len(imp.node.output)
    given = attrs.get("split") if imp.opset < 13 else imp.optional(1, "split")
    if given is not None and len(given):
        sizes = [int(s) for s in np.asarray(given).reshape(-1)]
    else:  # equal parts; from opset 18 num_outputs, the last part smaller when they do not divide
        each = -(-size // parts)
        sizes = [min(each, size - i * each) for i in range(parts)]
    if len(sizes) != parts or sum(sizes) != size or min(sizes) <= 0:
        raise imp.fail(f"split sizes {sizes} do not cut the {size} entries of axis {dim} into {parts} outputs",
                       ShapeError)
    start = 0
    for output, length in zip(imp.node.output, sizes):
        if output:
            _slice_layers(imp, source, [(dim, start, start + length, 1)], output)
        start += length


@converts("Squeeze")
def squeeze(imp: Importer, attrs: dict[str, Any]) -> None:
    source, shape = imp.tensor(0)
    axes = attrs.get("axes") if imp.opset < 13 else imp.optional(1, "axes")
    rank = len(shape) + 1
    axes = [i for i in range(1, rank) if shape[i - 1] == 1] if axes is None else [int(a) % rank for a in axes]
    kept = [d for i, d in enumerate(shape, start=1) if i not in axes]
    if 0 in axes or any(shape[a - 1] != 1 for a in axes):
        raise imp.fail(f"axes {axes} of {shape_text(shape)} are not all of size 1 (or include the batch)")
    if len(kept) == 1:
        _flatten(imp, source)  # (N, C, 1, 1) -> (N, C): the flatten after a global pool
    elif tuple(kept) == shape:
        unary(imp, L.Identity(layer_name(imp)))
    else:
        _reshaped(imp, source, shape, kept, f"squeeze of {shape_text(shape)} to (N, {', '.join(map(str, kept))})")


@converts("Gemm")
def gemm(imp: Importer, attrs: dict[str, Any]) -> None:
    source, shape = imp.tensor(0)
    b = imp.const(1, "B (the weight)")
    c = imp.optional(2, "C (the bias)")
    if attrs.get("transA", 0):
        raise Unsupported("transA=1 (it would mix the batch)")
    if len(shape) != 1 or b.ndim != 2:
        raise imp.fail(f"takes a (N, K) input and a 2-D B; got {shape_text(shape)} and {b.shape}", ShapeError)
    weight = b if attrs.get("transB", 0) else b.T  # (out, in), as PyTorch's Linear stores it (transB=1)
    if weight.shape[1] != shape[0]:
        raise imp.fail(f"B {imp.node.input[1]!r} of shape {b.shape} (transB={attrs.get('transB', 0)}) takes "
                       f"{weight.shape[1]} inputs, but input {imp.node.input[0]!r} has shape {shape_text(shape)}",
                       ShapeError)
    alpha = float(attrs.get("alpha", 1.0))
    if alpha != 1:  # no copy of a weight that stays as it is: VGG's first dense layer holds 411 MB
        weight = weight * np.float32(alpha)
    bias = None
    if c is not None:
        try:
            bias = np.broadcast_to(c, (1, weight.shape[0]))[0] * np.float32(attrs.get("beta", 1.0))
        except ValueError:
            raise imp.fail(f"C of shape {c.shape} does not broadcast to (1, {weight.shape[0]})", ShapeError) from None
        bias = np.ascontiguousarray(bias, dtype=np.float32)
    imp.emit(L.Dense(np.ascontiguousarray(weight, dtype=np.float32), bias, layer_name(imp)), [source], imp.output())


@converts("MatMul")
def matmul(imp: Importer, attrs: dict[str, Any]) -> None:
    source, shape = imp.tensor(0)
    b = imp.const(1, "B (the weight)")
    if len(shape) != 1 or b.ndim != 2:
        raise Unsupported(f"MatMul of {shape_text(shape)} by {b.shape}: cnn imports (N, K) x (K, M) as dense only")
    if b.shape[0] != shape[0]:
        raise imp.fail(f"B of shape {b.shape} takes {b.shape[0]} inputs, but the input has shape {shape_text(shape)}",
                       ShapeError)
    imp.emit(L.Dense(np.ascontiguousarray(b.T, dtype=np.float32), None, layer_name(imp)), [source], imp.output())


def _aligned(imp: Importer, attrs: dict[str, Any], constant: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """A constant operand as it broadcasts against a sample of ``shape``: before opset 7 with
    ``broadcast=1`` placed from ``axis`` on; then, NumPy-style, without the batch dimension."""
    rank = len(shape) + 1
    if imp.opset < 7 and attrs.get("broadcast", 0):
        axis = int(attrs.get("axis", rank - constant.ndim)) % rank
        constant = constant.reshape((1,) * axis + constant.shape + (1,) * (rank - axis - constant.ndim))
    if constant.ndim == rank:
        if constant.shape[0] != 1:
            raise Unsupported(f"a constant of shape {constant.shape} that differs along the batch")
        constant = constant[0]
    elif constant.ndim > rank:
        raise imp.fail(f"constant of shape {constant.shape} has more dimensions than the input {shape_text(shape)}",
                       ShapeError)
    return np.asarray(constant, dtype=np.float32)


@converts("Add", "Sub", "Mul", "Div")
def arithmetic(imp: Importer, attrs: dict[str, Any]) -> None:
    op = imp.node.op_type
    name = layer_name(imp)
    if not imp.is_const(0) and not imp.is_const(1):
        sources = [imp.tensor(0)[0], imp.tensor(1)[0]]
        merges = {"Add": L.Add, "Sub": L.Sub, "Mul": L.Mul}
        if op not in merges:
            raise Unsupported("Div of two computed maps")
        imp.emit(merges[op](name), sources, imp.output())
        return
    first = 1 if imp.is_const(0) else 0  # which input is the computed one
    source, shape = imp.tensor(first)
    constant = _aligned(imp, attrs, imp.const(1 - first, "a constant"), shape)
    if op == "Add" and _bias_of_matmul(imp, source, constant):
        return
    if op == "Add":
        layer = L.Affine(None, constant, name)
    elif op == "Mul":
        layer = L.Affine(constant, None, name)
    elif op == "Sub":
        layer = L.Affine(None, -constant, name) if first == 0 else L.Affine(np.float32(-1).reshape(()), constant, name)
    elif first == 0:  # x / c as x * (1 / c)
        with np.errstate(divide="ignore"):
            layer = L.Affine((1 / constant).astype(np.float32), None, name)
    else:
        raise Unsupported("a constant divided by a computed map")
    imp.emit(layer, [source], imp.output())


def _bias_of_matmul(imp: Importer, source: str, constant: np.ndarray) -> bool:
    """MatMul then Add of a (M,) constant, read by nothing else: one dense layer with that bias,
    named by the Add's output. Returns whether it was folded so."""
    index = next((i for i, layer in enumerate(imp.layers) if layer.name == source), None)
    layer = imp.layers[index] if index is not None else None
    matmul_out = imp.node.input[0] if not imp.is_const(0) else imp.node.input[1]
    if (not isinstance(layer, L.Dense) or layer.bias is not None or imp.consumers.get(matmul_out, 0) != 1
            or matmul_out in imp.graph_outputs or index != len(imp.layers) - 1):
        return False
    out = layer.weight.shape[0]
    if constant.size not in (1, out) or constant.shape not in ((), (1,), (out,)):
        return False
    bias = np.ascontiguousarray(np.broadcast_to(constant.reshape(-1), (out,)), dtype=np.float32)
    del imp.shapes[layer.name]
    imp.layers.pop()
    reads = imp.reads.pop()
    del imp.tensors[matmul_out]
    imp.emit(L.Dense(layer.weight, bias, layer_name(imp)), reads, imp.output())
    return True


@converts("Concat")
def concat(imp: Importer, attrs: dict[str, Any]) -> None:
    sources = [imp.tensor(i)[0] for i in range(len(imp.node.input))]
    shape = imp.tensor(0)[1]
    rank = len(shape) + 1
    axis = int(attrs.get("axis", 1))  # 1 by default in opset 1, required from 4
    if axis % rank == 0:
        raise Unsupported("axis 0 is the batch")
    imp.emit(L.Concat(layer_name(imp), axis % rank), sources, imp.output())


MERGES: dict[str, Any] = {"Sum": L.Add, "Mean": L.Mean, "Max": L.Max, "Min": L.Min}  # any number of maps


@converts(*MERGES)
def merge(imp: Importer, attrs: dict[str, Any]) -> None:
    sources = [imp.tensor(i)[0] for i in range(len(imp.node.input))]
    if len(sources) == 1:
        imp.emit(L.Identity(layer_name(imp)), sources, imp.output())
        return
    imp.emit(MERGES[imp.node.op_type](layer_name(imp)), sources, imp.output())


PAD_MODES = {"constant": "constant", "reflect": "reflect", "edge": "replicate", "wrap": "circular"}


@converts("Pad")
def pad(imp: Importer, attrs: dict[str, Any]) -> None:
    source, shape = imp.tensor(0)
    require_map(imp, shape)
    mode = attrs.get("mode", "constant")
    if mode not in PAD_MODES:
        raise imp.fail(f"mode {mode!r}: expected constant, reflect, edge or wrap")
    if imp.opset < 11:  # opset 1: paddings; 2: pads and value; 11: inputs pads, constant_value, (18) axes
        pads = [int(p) for p in attrs.get("pads", attrs.get("paddings", []))]
        value = float(attrs.get("value", 0.0))
    else:
        pads = [int(p) for p in imp.const(1, "pads").reshape(-1)]
        given = imp.optional(2, "constant_value")
        value = float(given.reshape(-1)[0]) if given is not None and given.size else 0.0
        axes = imp.optional(3, "axes")
        if axes is not None:
            full = [0] * 8
            for i, a in enumerate(int(a) % 4 for a in axes.reshape(-1)):
                full[a], full[a + 4] = pads[i], pads[i + len(axes.reshape(-1))]
            pads = full
    if len(pads) != 8:
        raise imp.fail(f"pads {pads}: expected 8 values (begins, then ends, of N, C, H, W)")
    if pads[0] or pads[1] or pads[4] or pads[5]:
        raise Unsupported(f"pads {pads} pad the batch or the channels")
    if min(pads) < 0:
        raise Unsupported(f"negative pads {pads} (cropping)")
    top, left, bottom, right = pads[2], pads[3], pads[6], pads[7]
    imp.emit(L.Pad((left, right, top, bottom), PAD_MODES[mode], value, layer_name(imp)), [source], imp.output())
