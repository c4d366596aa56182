"""ONNX operators that change a map's height and width other than by a conv's window: ConvTranspose
(as conv_transpose2d) and Resize/Upsample (as upsample). Registered in ops.CONVERTERS when
imported (the package imports it).

Resize is mapped only where ONNX's definition and nn.Upsample compute the same cells: mode linear
with coordinate_transformation_mode half_pixel (align_corners=False), pytorch_half_pixel (the same
when an axis does not shrink to 1) or align_corners; mode nearest with asymmetric coordinates and
nearest_mode floor (PyTorch's nearest). Every other combination is refused, naming the attribute,
rather than approximated. Where ONNX Runtime departs from the spec (the output size of a scale
computed in float32, not exactly; a scale that keeps the size copied, not resampled; nearest at
opset < 11 rounding up when it shrinks) the node is refused too: cnn does not pick one of the two.
"""

from __future__ import annotations

import math
from typing import Any, Optional

import numpy as np

from ...engine import layers as L
from ...engine import resample
from ...errors import ShapeError
from .build import Importer, Unsupported, shape_text
from .ops import _spatial, conv_operands, converts, layer_name, require_map

MAX_SIDE = 1 << 16  # the largest output side a Resize may ask for, as an upsample layer in a model file


# -- ConvTranspose -------------------------------------------------------------------------------------
@converts("ConvTranspose")
def conv_transpose(imp: Importer, attrs: dict[str, Any]) -> None:
    """ONNX: H_out = stride*(H - 1) + output_padding + (KH - 1)*dilation + 1 - pad_begin - pad_end,
    cells [pad_begin, ...) of the full transposed conv. Ours pads both sides by ``padding`` and
    adds ``output_padding`` at the end: padding = pad_begin, output_padding = output_padding +
    pad_begin - pad_end, which must lie in 0 .. max(stride, dilation) - 1."""
    source, shape, weight, bias, groups = conv_operands(imp, attrs, "transposed convolutions")
    channels, per_group, kh, kw = weight.shape
    if groups < 1 or channels % groups or channels != shape[0]:
        raise imp.fail(f"weight {imp.node.input[1]!r} of shape {weight.shape} (C_in, C_out/group, kH, kW) with group "
                       f"{groups} takes {channels} input channels, but input {imp.node.input[0]!r} has shape "
                       f"{shape_text(shape)}", ShapeError)
    features = per_group * groups
    if bias is not None and bias.shape != (features,):
        raise imp.fail(f"bias {imp.node.input[2]!r} has shape {bias.shape}; the weight {weight.shape} with group "
                       f"{groups} needs ({features},)", ShapeError)
    stride = _spatial(imp, attrs, "strides", 1, shape)
    dilation = _spatial(imp, attrs, "dilations", 1, shape)
    extra = _spatial(imp, attrs, "output_padding", 0, shape)
    if min(stride) < 1 or min(dilation) < 1 or min(extra) < 0:
        raise imp.fail(f"strides {list(stride)}, dilations {list(dilation)} must be at least 1 and output_padding "
                       f"{list(extra)} at least 0")
    if any(e >= s for e, s in zip(extra, stride)):  # ORT's check: it refuses the node when it runs
        raise Unsupported(f"output_padding {list(extra)} is not below strides {list(stride)}, which ONNX Runtime "
                          "refuses")
    full = [(size - 1) * s + (k - 1) * d + 1 + e for size, s, k, d, e in zip(shape[1:], stride, (kh, kw), dilation,
                                                                              extra)]
    begins, ends = _transpose_pads(imp, attrs, full, shape, stride)
    padding = (begins[0], begins[1])
    output_padding = (extra[0] + begins[0] - ends[0], extra[1] + begins[1] - ends[1])
    for axis in (0, 1):
        if not 0 <= output_padding[axis] < max(stride[axis], dilation[axis]):
            raise Unsupported(f"pads begin {list(begins)}, end {list(ends)} with output_padding {list(extra)}: cnn's "
                              "conv_transpose2d crops both sides alike and adds at most max(stride, dilation) - 1 "
                              "cells at the end")
    weight = np.ascontiguousarray(weight, dtype=np.float32)
    bias = None if bias is None else np.ascontiguousarray(bias, dtype=np.float32)
    imp.emit(L.ConvTranspose2d(weight, bias, stride, padding, output_padding, groups, dilation, layer_name(imp)),
             [source], imp.output())


def _transpose_pads(imp: Importer, attrs: dict[str, Any], full: list[int], shape: tuple[int, ...],
                    stride: tuple[int, int]) -> tuple[tuple[int, int], tuple[int, int]]:
    """(begin pads, end pads) of rows and columns: from ``output_shape`` (the total split as the
    spec says: the larger half at the start unless auto_pad is SAME_UPPER), else ``pads``."""
    auto = attrs.get("auto_pad", "NOTSET")
    if auto not in ("NOTSET", "VALID", "SAME_UPPER", "SAME_LOWER"):
        raise imp.fail(f"auto_pad {auto!r}: expected NOTSET, SAME_UPPER, SAME_LOWER or VALID")
    target: Optional[list[int]] = None
    if "output_shape" in attrs:
        target = [int(v) for v in attrs["output_shape"]]
        if len(target) != 2:
            raise Unsupported(f"output_shape {target}: cnn reads it as the 2 spatial sizes (H, W) only")
    elif auto in ("SAME_UPPER", "SAME_LOWER"):
        target = [size * s for size, s in zip(shape[1:], stride)]  # H_out = H * stride
    if target is not None:
        begins, ends = [], []
        for total in (f - t for f, t in zip(full, target)):
            if total < 0:
                raise Unsupported(f"output_shape {target} is larger than the {full[0]}x{full[1]} cells the "
                                  f"transposed conv of {shape_text(shape)} makes; cnn does not pad it further")
            small, large = total // 2, total - total // 2
            begins.append(small if auto == "SAME_UPPER" else large)
            ends.append(large if auto == "SAME_UPPER" else small)
        return (begins[0], begins[1]), (ends[0], ends[1])
    if auto == "VALID":
        return (0, 0), (0, 0)
    pads = [int(p) for p in attrs.get("pads", [0, 0, 0, 0])]
    if len(pads) != 4:
        raise Unsupported(f"pads {pads}: cnn imports 2-D operators only (4 pads)")
    if min(pads) < 0:
        raise imp.fail(f"pads {pads} must not be negative")
    return (pads[0], pads[1]), (pads[2], pads[3])


# -- Resize and Upsample ---------------------------------------------------------------------------------
LINEAR_MODES = {"half_pixel": False, "pytorch_half_pixel": False, "align_corners": True}


@converts("Resize", "Upsample")
def resize(imp: Importer, attrs: dict[str, Any]) -> None:
    source, shape = imp.tensor(0)
    require_map(imp, shape)
    op = imp.node.op_type
    old = op == "Upsample" or imp.opset < 11  # asymmetric coordinates, no modes to choose
    mode = attrs.get("mode", "nearest")
    if mode not in ("nearest", "linear"):
        raise Unsupported(f"mode {mode!r}: cnn resizes with nearest or linear only")
    transform = "asymmetric" if old else attrs.get("coordinate_transformation_mode", "half_pixel")
    if old and mode == "linear":
        raise Unsupported(f"mode 'linear' at opset {imp.opset} ({op}) uses asymmetric coordinates (x / scale), which "
                          "no upsample layer computes")
    if not old:
        _check_resize_attributes(attrs, mode, transform)
    scales, sizes = _scales_and_sizes(imp, attrs, op, old)
    channels, height, width = shape
    if scales is not None:
        if scales.size != 4:
            raise imp.fail(f"scales {_listed(scales)} have {scales.size} values; the input {shape_text(shape)} has 4 "
                           "dimensions")
        if not np.all(np.isfinite(scales)) or np.any(scales <= 0):
            raise imp.fail(f"scales {_listed(scales)} must be finite and above 0")
        if scales[0] != 1 or scales[1] != 1:
            raise Unsupported(f"scales {_listed(scales)} resize the batch or the channels; cnn resizes H and W only")
        factors = (float(scales[2]), float(scales[3]))
        out = _scaled_sizes(imp, (height, width), factors, transform == "align_corners")
    else:
        assert sizes is not None
        if sizes.size != 4:
            raise imp.fail(f"sizes {_listed(sizes)} have {sizes.size} values; the input {shape_text(shape)} has 4 "
                           "dimensions")
        if int(sizes[0]) != 1 or int(sizes[1]) != channels:
            raise Unsupported(f"sizes {_listed(sizes)} resize the batch or the channels of {shape_text(shape)}; cnn "
                              "resizes H and W only")
        out = (int(sizes[2]), int(sizes[3]))
        if min(out) < 1 or max(out) > MAX_SIDE:
            raise imp.fail(f"sizes {_listed(sizes)}: H and W must be 1 to {MAX_SIDE:,}")
        factors = (out[0] / height, out[1] / width)
    if transform == "pytorch_half_pixel" and any(o == 1 and i != 1 for o, i in zip(out, (height, width))):
        raise Unsupported("coordinate_transformation_mode 'pytorch_half_pixel' to a side of 1 takes cell 0, which "
                          "nn.Upsample's half_pixel does not")
    if mode == "nearest":
        _check_nearest(imp, (height, width), out, factors, scales is not None, old)
    name = layer_name(imp)
    if scales is not None:
        layer = L.Upsample(None, factors, "nearest" if mode == "nearest" else "bilinear",
                           LINEAR_MODES.get(transform, False), False, name)
    else:
        layer = L.Upsample(out, None, "nearest" if mode == "nearest" else "bilinear",
                           LINEAR_MODES.get(transform, False), False, name)
    imp.emit(layer, [source], imp.output())


def _check_resize_attributes(attrs: dict[str, Any], mode: str, transform: str) -> None:
    """Refuse, naming the attribute, what an upsample layer does not compute (opset 11 on)."""
    if int(attrs.get("antialias", 0)):
        raise Unsupported("antialias=1: cnn's upsample does not filter when it shrinks")
    policy = attrs.get("keep_aspect_ratio_policy", "stretch")
    if policy != "stretch":
        raise Unsupported(f"keep_aspect_ratio_policy {policy!r}: cnn resizes to the sizes given (stretch) only")
    if int(attrs.get("exclude_outside", 0)):
        raise Unsupported("exclude_outside=1: cnn's upsample weighs every tap")
    if mode == "linear" and transform not in LINEAR_MODES:
        raise Unsupported(f"mode 'linear' with coordinate_transformation_mode {transform!r}: cnn maps half_pixel, "
                          "pytorch_half_pixel and align_corners only")
    if mode == "nearest":
        rounding = attrs.get("nearest_mode", "round_prefer_floor")
        if transform != "asymmetric" or rounding != "floor":
            raise Unsupported(f"mode 'nearest' with coordinate_transformation_mode {transform!r} and nearest_mode "
                              f"{rounding!r}: cnn maps asymmetric with floor (PyTorch's nearest) only")


def _scales_and_sizes(imp: Importer, attrs: dict[str, Any], op: str,
                      old: bool) -> tuple[Optional[np.ndarray], Optional[np.ndarray]]:
    """The node's scales or sizes (exactly one), over all 4 axes (opset 18's ``axes`` filled in)."""
    if op == "Upsample" and imp.opset < 9:
        if imp.opset < 7:
            raise Unsupported(f"Upsample at opset {imp.opset} (height_scale, width_scale): cnn reads it from opset 7")
        if "scales" not in attrs:
            raise imp.fail("needs the scales attribute")
        return np.asarray(attrs["scales"], dtype=np.float64), None
    if old:
        return np.asarray(imp.const(1, "scales"), dtype=np.float64).reshape(-1), None
    given = [imp.optional(i, what) for i, what in ((2, "scales"), (3, "sizes"))]
    scales, sizes = (None if a is None or a.size == 0 else a.reshape(-1) for a in given)
    if (scales is None) == (sizes is None):
        raise imp.fail("needs exactly one of scales and sizes (non-empty)")
    axes = attrs.get("axes")
    if axes is not None:
        axes = [int(a) % 4 for a in axes]
        given_values = scales if scales is not None else sizes
        assert given_values is not None
        if len(set(axes)) != len(axes) or len(axes) != given_values.size:
            raise imp.fail(f"axes {list(attrs['axes'])} do not match the {given_values.size} scales or sizes")
        channels = imp.tensor(0)[1][0]
        full = np.array([1.0, 1.0, 1.0, 1.0]) if scales is not None else np.array([1, channels, *imp.tensor(0)[1][1:]])
        for axis, value in zip(axes, given_values):
            full[axis] = value
        return (full, None) if scales is not None else (None, full)
    return (None if scales is None else scales.astype(np.float64)), sizes


def _scaled_sizes(imp: Importer, size: tuple[int, int], factors: tuple[float, float],
                  corners: bool) -> tuple[int, int]:
    """floor(size * scale) per axis, as the spec computes it; refused where ONNX Runtime, which
    multiplies in float32, gets another size, or where a scale other than 1 keeps the size (the
    runtime copies such an axis, the spec resamples it, except with align_corners, whose
    coordinates do not use the scale)."""
    out = []
    for axis, n, s in zip(("H", "W"), size, factors):
        exact = math.floor(n * s)
        single = math.floor(float(np.float32(n) * np.float32(s)))
        if exact != single:
            raise Unsupported(f"scale {s:g} of {axis} {n}: floor({n} x {s:g}) is {exact}, but ONNX Runtime computes "
                              f"{single} in float32; cnn does not pick one")
        if exact < 1 or exact > MAX_SIDE:
            raise imp.fail(f"scale {s:g} makes {axis} {n} into {exact}; expected 1 to {MAX_SIDE:,}")
        if exact == n and s != 1 and not corners:
            raise Unsupported(f"scale {s:g} keeps {axis} at {n}: ONNX Runtime copies that axis, the spec resamples it")
        out.append(exact)
    return out[0], out[1]


def _check_nearest(imp: Importer, size: tuple[int, int], out: tuple[int, int], factors: tuple[float, float],
                   by_scale: bool, old: bool) -> None:
    """Refuse a nearest resize whose source cells (ONNX: floor(i / scale), in float32, the scale
    given or out / in) differ from the upsample layer's (PyTorch's nearest) on either axis."""
    for axis, n, o, s in zip(("H", "W"), size, out, factors):
        if old and o < n:
            raise Unsupported(f"nearest at opset {imp.opset} shrinking {axis} ({n} to {o}): ONNX Runtime rounds up "
                              "when it shrinks before opset 11")
        scale = np.float32(s) if by_scale else np.float32(o) / np.float32(n)
        spec = np.minimum(np.floor(np.arange(o, dtype=np.float32) / scale).astype(np.int64), n - 1)
        ours = resample.nearest_indices(n, o, s if by_scale else None)
        if not np.array_equal(spec, ours):
            at = int(np.argmax(spec != ours))
            raise Unsupported(f"nearest {axis} {n} to {o} (scale {s:g}): ONNX takes cell {spec[at]} for output {at}, "
                              f"PyTorch's nearest cell {ours[at]}")


def _listed(values: np.ndarray) -> str:
    return "[" + ", ".join(f"{float(v):g}" for v in np.asarray(values).reshape(-1)) + "]"
