"""Maps resampled to another size: adaptive pooling, global max pooling and upsampling, each as
PyTorch computes it on CPU (torch.nn.AdaptiveAvgPool2d / AdaptiveMaxPool2d, AdaptiveMaxPool2d(1),
nn.Upsample in modes "nearest" and "bilinear").

Every function takes a (C, H, W) map or an (N, C, H, W) batch (any leading axes) and works on the
last two axes, one axis at a time: both poolings and bilinear interpolation are separable (a
rectangle's max, mean or bilinear weight is the row's of the column's), so no loop runs over
output pixels. Each has a ``*_workspace`` twin: the bytes it allocates at most, output included.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np

from ..errors import ShapeError
from .scratch import CALL_BYTES

SizeOpt = tuple[Optional[int], Optional[int]]
UPSAMPLE_MODES = ("nearest", "bilinear")


def _call_bytes(itemsize: int) -> int:
    """Small things one call allocates besides its arrays (views, NumPy's iterator buffers), as ops counts them."""
    return CALL_BYTES + 3 * np.getbufsize() * itemsize


# ---------------------------------------------------------------------------------------------- pooling


def adaptive_output_size(size: Sequence[int], output_size: SizeOpt) -> tuple[int, int]:
    """(H_out, W_out) of an adaptive pooling of an (H, W) map: ``output_size`` with None as "keep that size".

    Raises ShapeError when a size is below 1.
    """
    out = tuple(int(s) if o is None else int(o) for o, s in zip(output_size, size))
    if min(out) < 1:
        raise ShapeError(f"output size must be at least 1x1, got {out[0]}x{out[1]}", source="output_size")
    return out  # type: ignore[return-value]


def adaptive_bins(size: int, out: int) -> tuple[np.ndarray, np.ndarray]:
    """PyTorch's adaptive bins of ``size`` cells into ``out``: bin i is [start_i, end_i) with
    start_i = floor(i * size / out) and end_i = ceil((i + 1) * size / out). Bins overlap when
    ``out`` does not divide ``size``; each holds at least one cell."""
    i = np.arange(out, dtype=np.int64)
    return (i * size) // out, -((-(i + 1) * size) // out)


def _pool_axis(x: np.ndarray, axis: int, out: int, kind: str) -> np.ndarray:
    """Adaptive max ("max") or mean ("avg") along ``axis`` (-2 or -1) into ``out`` bins.

    Fewer bins than cells: one reduceat over the bins' [start, end) pairs, whose every other
    result is a bin (end_i < size for i < out - 1 there, so every index is in range). More bins
    than cells: each bin holds one or two cells (its length is below size/out + 2 < 3), so it is
    the max or mean of its first and last cell (a/2 + a/2 = a exactly for a bin of one)."""
    size = x.shape[axis]
    if out == size:
        return x
    start, end = adaptive_bins(size, out)
    if out > size:
        first = np.take(x, start, axis=axis)
        last = np.take(x, end - 1, axis=axis)
        if kind == "max":
            return np.maximum(first, last, out=first)
        half = np.asarray(0.5, first.dtype)  # halves first: a + a would overflow near the dtype's max
        first *= half
        last *= half
        first += last
        return first
    ufunc = np.maximum if kind == "max" else np.add
    pairs = np.empty(2 * out - 1, np.intp)
    pairs[0::2], pairs[1::2] = start, end[:-1]
    y = ufunc.reduceat(x, pairs, axis=axis)  # (..., 2*out - 1 along axis, ...)
    y = y[..., ::2, :] if axis == -2 else y[..., ::2]  # (..., out along axis, ...): a view
    if kind == "avg":
        lengths = (end - start).astype(x.dtype)
        y /= lengths[:, None] if axis == -2 else lengths
    return y


def adaptive_pool2d(x: np.ndarray, output_size: SizeOpt, kind: str = "avg") -> np.ndarray:
    """Adaptive average ("avg") or max ("max") pooling, exactly PyTorch's bins (``adaptive_bins``).

    Parameters
    ----------
    x : (..., H, W) array
    output_size : (H_out or None, W_out or None); None keeps that size
    kind : "avg" or "max"

    Returns
    -------
    (..., H_out, W_out) array of x's dtype. Output cell (i, j) is the mean or max of rows
    [floor(i*H/H_out), ceil((i+1)*H/H_out)) and columns likewise. NaN propagates through max.

    Raises
    ------
    ShapeError
        When an output size is below 1.
    """
    x = np.asarray(x)
    out_h, out_w = adaptive_output_size(x.shape[-2:], output_size)
    y = _pool_axis(x, -2, out_h, kind)  # (..., H_out, W)
    y = _pool_axis(y, -1, out_w, kind)  # (..., H_out, W_out)
    return np.array(y, copy=True) if y is x or not y.flags.c_contiguous else y


def adaptive_pool2d_workspace(shape: Sequence[int], output_size: SizeOpt, itemsize: int = 4) -> int:
    """Bytes ``adaptive_pool2d`` allocates at most for an input of ``shape`` (..., H, W): the rows'
    result (2*H_out - 1 rows of reduceat, or two gathers of H_out rows), the columns' likewise, and
    the contiguous output."""
    shape = tuple(shape)
    planes, (height, width) = math.prod(shape[:-2]), shape[-2:]
    out_h, out_w = adaptive_output_size((height, width), output_size)
    rows = 0 if out_h == height else 2 * out_h * width
    cols = 0 if out_w == width else 2 * out_h * out_w
    elements = planes * (rows + cols + out_h * out_w) + out_h + out_w
    return elements * itemsize + 4 * 8 * (out_h + out_w) + _call_bytes(itemsize)


def global_max_pool2d(x: np.ndarray) -> np.ndarray:
    """Max over H and W, keeping them as 1 x 1: (..., H, W) -> (..., 1, 1); NaN propagates, as in PyTorch."""
    x = np.asarray(x)
    return x.max(axis=(-2, -1), keepdims=True)


def global_max_pool2d_workspace(shape: Sequence[int], itemsize: int = 4) -> int:
    """Bytes ``global_max_pool2d`` allocates: its (..., 1, 1) output; the max runs without a copy."""
    return math.prod(tuple(shape)[:-2]) * itemsize + _call_bytes(itemsize)


# ---------------------------------------------------------------------------------------------- upsampling


def upsample_size(size: Sequence[int], out_size: Sequence[int] | None = None,
                  scale_factor: Sequence[float] | None = None) -> tuple[int, int]:
    """(H_out, W_out) of nn.Upsample on an (H, W) map: ``out_size``, or floor(H * scale_factor) in
    double precision, as PyTorch; exactly one of the two.

    Raises ShapeError when both or neither are given, or a size is below 1.
    """
    if (out_size is None) == (scale_factor is None):
        raise ShapeError("give exactly one of size and scale_factor")
    if out_size is not None:
        out = tuple(int(v) for v in out_size)
    else:
        out = tuple(int(math.floor(float(s) * float(f))) for s, f in zip(size, scale_factor))  # type: ignore[arg-type]
    if min(out) < 1:
        how = "" if scale_factor is None else f" (scale_factor {_factors(scale_factor)} of {size[0]}x{size[1]})"
        raise ShapeError(f"output size must be at least 1x1, got {out[0]}x{out[1]}{how}")
    return out  # type: ignore[return-value]


def _factors(values: Sequence[float]) -> str:
    return f"{values[0]:g}" if values[0] == values[1] else f"{values[0]:g},{values[1]:g}"


def _ratio(size: int, out: int, scale: float | None, dtype: type[np.floating]) -> np.generic:
    """PyTorch's source-per-destination ratio, in the map's float type (its ``opmath``):
    1/scale_factor when one was given, else size / out."""
    kind = np.dtype(dtype).type
    return kind(1.0 / scale) if scale else kind(size) / kind(out)


def nearest_indices(size: int, out: int, scale: float | None = None) -> np.ndarray:
    """Source index of each output cell in mode "nearest", as PyTorch's ``nearest_idx``: i when
    the size does not change, i // 2 when it doubles, else min(floor(i * ratio), size - 1) with the
    product in float32 whatever the map's type (with scale_factor 1.5, ratio float32(1/1.5))."""
    cells = np.arange(out, dtype=np.int64)
    if out == size:
        return cells
    if out == 2 * size:
        return cells >> 1
    src = np.floor(cells.astype(np.float32) * _ratio(size, out, scale, np.float32)).astype(np.int64)
    return np.minimum(src, size - 1)


def linear_taps(size: int, out: int, scale: float | None = None, align_corners: bool = False,
                dtype=np.float32) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The two source cells and their weights for each output cell in mode "bilinear", along one
    axis, as PyTorch: (index0, index1, lambda0, lambda1).

    align_corners: src = i * (size - 1) / (out - 1). Otherwise src = ratio * (i + 0.5) - 0.5,
    clamped at 0 (ratio as ``nearest_indices``). index0 = floor(src), index1 = index0 + 1 except
    at the last cell, lambda1 = src - index0. An axis whose size does not change is copied.
    """
    kind = np.dtype(dtype).type
    cells = np.arange(out, dtype=np.int64)
    if out == size:
        return cells, cells, np.ones(out, dtype), np.zeros(out, dtype)
    i = np.arange(out, dtype=dtype)
    if align_corners:
        ratio = kind(size - 1) / kind(out - 1) if out > 1 else kind(0)
        src = ratio * i
    else:
        src = _ratio(size, out, scale, dtype) * (i + kind(0.5)) - kind(0.5)
        src = np.maximum(src, kind(0))
    index0 = np.minimum(np.floor(src).astype(np.int64), size - 1)
    lambda1 = np.clip(src - index0.astype(dtype), kind(0), kind(1)).astype(dtype)
    index1 = index0 + (index0 < size - 1)
    return index0, index1, (kind(1) - lambda1).astype(dtype), lambda1


def upsample(x: np.ndarray, out_size: Sequence[int] | None = None, scale_factor: Sequence[float] | None = None,
             mode: str = "nearest", align_corners: bool = False, recompute_scale_factor: bool = False) -> np.ndarray:
    """Resize the last two axes as torch.nn.Upsample (F.interpolate) on CPU.

    Parameters
    ----------
    x : (..., H, W) array
    out_size : (H_out, W_out), or None with ``scale_factor``
    scale_factor : (rows, cols) factors, or None with ``out_size``; H_out = floor(H * factor)
    mode : "nearest" (src = floor(dst * ratio)) or "bilinear" (two taps an axis, rows after columns)
    align_corners : bilinear only: the corner cells of input and output line up
    recompute_scale_factor : compute the ratio as H / H_out instead of 1 / scale_factor

    Returns
    -------
    (..., H_out, W_out) array of x's dtype.

    Raises
    ------
    ShapeError
        When both or neither of out_size and scale_factor are given, an output size is below 1,
        or ``mode`` is unknown.
    """
    x = np.asarray(x)
    if mode not in UPSAMPLE_MODES:
        raise ShapeError(f"expected one of {', '.join(UPSAMPLE_MODES)}, got {mode!r}", source="mode")
    height, width = x.shape[-2:]
    out_h, out_w = upsample_size((height, width), out_size, scale_factor)
    scales = (None, None) if scale_factor is None or recompute_scale_factor else tuple(scale_factor)
    ftype = x.dtype if x.dtype.kind == "f" else np.dtype(np.float32)  # what PyTorch's opmath is for it
    if mode == "nearest":
        rows = nearest_indices(height, out_h, scales[0])
        cols = nearest_indices(width, out_w, scales[1])
        return x[..., rows[:, None], cols[None, :]]  # (..., H_out, W_out)
    c0, c1, cw0, cw1 = linear_taps(width, out_w, scales[1], align_corners, ftype)
    r0, r1, rw0, rw1 = linear_taps(height, out_h, scales[0], align_corners, ftype)
    across = np.take(x, c0, axis=-1)  # (..., H, W_out)
    across *= cw0
    right = np.take(x, c1, axis=-1)  # (..., H, W_out)
    right *= cw1
    across += right
    del right
    out = np.take(across, r0, axis=-2)  # (..., H_out, W_out)
    out *= rw0[:, None]
    below = np.take(across, r1, axis=-2)  # (..., H_out, W_out)
    below *= rw1[:, None]
    out += below
    return out


def upsample_workspace(shape: Sequence[int], out_size: Sequence[int] | None = None,
                       scale_factor: Sequence[float] | None = None, mode: str = "nearest",
                       itemsize: int = 4) -> int:
    """Bytes ``upsample`` allocates at most for an input of ``shape`` (..., H, W): the output;
    for bilinear also the two column gathers (..., H, W_out) and the second row gather."""
    shape = tuple(shape)
    planes, (height, width) = math.prod(shape[:-2]), shape[-2:]
    out_h, out_w = upsample_size((height, width), out_size, scale_factor)
    elements = planes * out_h * out_w
    if mode == "bilinear":
        elements += planes * (2 * height * out_w + out_h * out_w)
    indices = 8 * 4 * (out_h + out_w) + itemsize * 4 * (out_h + out_w)  # index and weight arrays, temporaries
    return elements * itemsize + indices + _call_bytes(itemsize)
