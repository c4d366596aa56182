"""2-D convolution, the entry point: ``conv2d`` checks its settings, picks a method for the shapes
and runs it; ``conv2d_workspace`` and ``conv2d_kept`` say what memory it takes, from the same plans
the methods cut their work by; ``unrolled_conv_matrix`` writes a conv as one matrix.

The methods are apart (conv_taps.py: shift-and-add over kernel taps, and depthwise; conv_gemm.py:
matrix products), so that this module reads as the choice between them and its costs.
"""

from __future__ import annotations

import math
from typing import Literal, Sequence

import numpy as np

from ..errors import ShapeError
from .conv_gemm import _conv_gemm, _folds_bias, _is_pointwise, _rows_plan, _uses_windows, _windows_plan
from .conv_taps import _conv_depthwise, _conv_taps, _depthwise_gathers, _depthwise_plan, _taps_plan
from .geometry import Pair, Padding, _as_batch, conv_geometry, pair
from .padding import pad2d, pad2d_workspace
from .scratch import BLAS_BYTES, THREAD_BYTES, THREAD_POOL_BYTES, _call_bytes, _strip_workers

Method = Literal["taps", "gemm", "depthwise"]  # how conv2d computes: shift-and-add over taps, matrix
# products, or (one input channel per group) shift-and-add over flat padded rows in cache-sized blocks


def conv2d(
    x: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray | None = None,
    stride: int | Sequence[int] = 1,
    padding: Padding = 0,
    dilation: int | Sequence[int] = 1,
    groups: int = 1,
    padding_mode: str = "zeros",
    flip: bool = False,
    method: Literal["auto"] | Method = "auto",
) -> np.ndarray:
    """2-D cross-correlation, exactly as ``torch.nn.functional.conv2d`` (the kernel is not flipped).

    Parameters
    ----------
    x : (C, H, W) or (N, C, H, W) array
    weight : (F, C/groups, KH, KW) array
    bias : (F,) array, optional
    stride, dilation : int or (rows, cols)
    padding : "valid", "same", "full", int, (rows, cols) or (top, bottom, left, right)
    groups : C and F must both divide by it; groups == C is a depthwise convolution
    padding_mode : "zeros", "reflect", "replicate" or "circular"
    flip : bool
        Flip the kernel in both axes first: a true convolution, as in scipy.signal.convolve2d.
    method : "auto", "taps" or "gemm"
        Shift-and-add over kernel taps, or one matrix product per block of rows; both give the
        same numbers, "auto" picks the faster one for these shapes.

    Returns
    -------
    (F, H_out, W_out) or (N, F, H_out, W_out) array, with
    H_out = floor((H + pad_top + pad_bottom - dilation*(KH-1) - 1) / stride) + 1, likewise W_out.

    Raises
    ------
    ShapeError
        When channels do not match, settings are out of range, or the kernel is larger than the
        padded input.
    """
    x, batched = _as_batch(x)
    dtype = x.dtype
    weight = np.asarray(weight, dtype=dtype)
    pads, (n_filters, out_h, out_w) = conv_geometry(x.shape[1:], weight.shape, stride, padding, dilation, groups,
                                                    padding_mode)
    _, group_channels, kh, kw = weight.shape
    stride_hw, dilation_hw = pair(stride, "stride"), pair(dilation, "dilation")
    if flip:
        weight = weight[:, :, ::-1, ::-1]
    if bias is not None:
        bias = np.asarray(bias, dtype=dtype).reshape(-1)
        if bias.shape != (n_filters,):
            raise ShapeError(f"bias has {bias.size} values, expected one per filter ({n_filters})")

    per_group = n_filters // groups
    if method == "auto":
        method = _choose_method(x.shape[0], group_channels, per_group, groups, (kh, kw), out_h * out_w)
    geometry = (out_h, out_w, stride_hw, dilation_hw)
    if method == "taps":
        out = _conv_taps(pad2d(x, pads, padding_mode), weight, groups, geometry)
        if bias is not None:
            out += bias[:, None, None]
    elif method == "depthwise":
        if group_channels != 1:
            raise ShapeError(f"method depthwise takes one input channel per group, got {group_channels}")
        out = np.empty((x.shape[0], n_filters, out_h, out_w), dtype=dtype)
        for b in range(x.shape[0]):
            _conv_depthwise(x[b], weight, bias, pads, padding_mode, geometry, out[b])
    else:  # the bias is added to each product's block, where rows are long and contiguous
        out = np.empty((x.shape[0], n_filters, out_h, out_w), dtype=dtype)
        for g in range(groups):
            part = slice(g * per_group, (g + 1) * per_group)
            _conv_gemm(x[:, g * group_channels:(g + 1) * group_channels], weight[part],
                       None if bias is None else bias[part], pads, padding_mode, geometry, out[:, part])
    return out if batched else out[0]


def conv2d_workspace(
    in_shape: Sequence[int],
    weight_shape: Sequence[int],
    stride: int | Sequence[int] = 1,
    padding: Padding = 0,
    dilation: int | Sequence[int] = 1,
    groups: int = 1,
    padding_mode: str = "zeros",
    flip: bool = False,
    method: Literal["auto"] | Method = "auto",
    itemsize: int = 4,
    weight_itemsize: int | None = None,
    bias: bool = True,
) -> int:
    """Bytes that ``conv2d`` has allocated at once, at most, besides its input.

    Parameters
    ----------
    in_shape : (C, H, W) or (N, C, H, W)
    weight_shape : (F, C/groups, KH, KW)
    stride, padding, dilation, groups, padding_mode, flip, method : as for ``conv2d``
    itemsize : bytes per value of the input (4 for float32, 8 for float64)
    weight_itemsize : bytes per value of the weights given; when it differs from ``itemsize``,
        conv2d works on a converted copy of the weights and bias.
    bias : whether a bias is given (a product may take it as one more column of its weights).

    Returns
    -------
    int: the output, plus what the chosen method allocates, from the same block rules as the
    computation: shift-and-add holds the padded input and one strip of products per thread
    (``_taps_plan``); the stride-1 product holds the group's kernel rows as matrices, the padded
    rows, their column shifts, a block of products and a partial one (``_rows_plan``); the windows
    product (strided, or a small map) holds a group's padded input, a block of windows and its
    product unless written straight into the output, and a reshaped copy of a flipped kernel
    (``_windows_plan``). Work buffers stay held after the call until
    ``release_buffers``; threads add their stacks (``THREAD_BYTES`` each).
    """
    shape = tuple(in_shape)
    n, (channels, height, width) = (shape[0] if len(shape) == 4 else 1), shape[-3:]
    pads, (n_filters, out_h, out_w) = conv_geometry(shape[-3:], weight_shape, stride, padding, dilation, groups,
                                                    padding_mode)
    _, group_channels, kh, kw = weight_shape
    hp, wp = height + pads[0] + pads[1], width + pads[2] + pads[3]
    per_group = n_filters // groups
    if method == "auto":
        method = conv2d_method(shape, weight_shape, (n_filters, out_h, out_w), groups)
    elements = n * n_filters * out_h * out_w  # the output
    if weight_itemsize not in (None, itemsize):
        elements += math.prod(weight_shape) + n_filters
    if method == "taps":
        rows, workers = _taps_plan(n, n_filters, out_h, out_w)
        elements += workers * n * n_filters * min(rows, out_h) * out_w
        threads = THREAD_BYTES * workers if workers > 1 else 0
        return (elements * itemsize + pad2d_workspace((n, channels, height, width), pads, itemsize) + threads
                + _call_bytes(itemsize, workers))
    if method == "depthwise":
        hq, wq, length, block = _depthwise_plan(n_filters, hp, wp, pair(stride, "stride"), out_h, out_w)
        workers = _strip_workers(-(-n_filters // block), n_filters * length)
        sh, sw = pair(stride, "stride")
        tail = ((kw - 1) * pair(dilation, "dilation")[1]) // sw + 1
        work = kh * kw + 1 if _depthwise_gathers(length) else 2  # the gathered taps and their sums, or two sums
        elements += sh * sw * n_filters * (hq * wq + tail) + workers * work * block * length
        if per_group > 1:
            elements += n_filters * height * width  # the repeated channels
        if (sh, sw) != (1, 1) and padding_mode != "zeros":
            elements += n_filters * hp * wp  # the padded image, before it is split into phases
        threads = THREAD_BYTES * workers if workers > 1 else 0
        return elements * itemsize + threads + _call_bytes(itemsize, workers)
    group_weight = per_group * group_channels * kh * kw
    if _is_pointwise(weight_shape, pair(stride, "stride"), pads):  # a copy of an image that is not contiguous
        elements += (group_weight if flip else 0) + group_channels * height * width
        if bias and _folds_bias(group_channels, per_group, height * width):  # the input and weights, extended
            elements += (group_channels + 1) * (height * width + per_group)
        return elements * itemsize + _call_bytes(itemsize)
    if not _uses_windows(pair(stride, "stride"), hp, wp, out_h, out_w, group_channels * kw):
        plan = _rows_plan(n, group_channels, per_group, hp, wp, (kh, kw), pair(dilation, "dilation"), out_h)
        elements += group_weight + plan.padded + plan.cols + plan.block * (2 if kh > 1 else 1)
        return elements * itemsize + _call_bytes(itemsize)
    depth = group_channels * kh * kw
    windows = _windows_plan(n, per_group, depth, out_h, out_w)
    elements += (group_weight if flip else 0) + windows.cols + windows.block
    cells = windows.cols // depth
    if bias and _folds_bias(depth, per_group, cells):  # a row of ones under the windows; the weights, extended
        elements += cells + per_group * (depth + 1)
    padded = pad2d_workspace((n, group_channels, height, width), pads, itemsize)  # one group's at a time
    return elements * itemsize + padded + _call_bytes(itemsize)


def conv2d_kept(
    in_shape: Sequence[int],
    weight_shape: Sequence[int],
    stride: int | Sequence[int] = 1,
    padding: Padding = 0,
    dilation: int | Sequence[int] = 1,
    groups: int = 1,
    padding_mode: str = "zeros",
    method: Literal["auto"] | Method = "auto",
    itemsize: int = 4,
) -> dict[str, int]:
    """What ``conv2d`` leaves allocated in libraries after it returns, by library: OpenBLAS's
    buffers after the matrix products (``BLAS_BYTES``), or after shift-and-add on threads the
    thread pool's module and what each thread's malloc arena keeps (its last strip)."""
    shape = tuple(in_shape)
    n = shape[0] if len(shape) == 4 else 1
    _, (n_filters, out_h, out_w) = conv_geometry(shape[-3:], weight_shape, stride, padding, dilation, groups,
                                                 padding_mode)
    if method == "auto":
        method = conv2d_method(shape, weight_shape, (n_filters, out_h, out_w), groups)
    if method == "gemm":
        return {"blas": BLAS_BYTES}
    if method == "depthwise":
        return {}  # numpy only; its thread pool (big maps) is counted with the threads of shift-and-add
    rows, workers = _taps_plan(n, n_filters, out_h, out_w)
    if workers == 1:
        return {}
    strip = n * n_filters * min(rows, out_h) * out_w * itemsize
    return {"threads": THREAD_POOL_BYTES + workers * (THREAD_BYTES + strip)}


def unrolled_conv_matrix(in_shape: Sequence[int], weight: np.ndarray, stride=1, padding: Padding = 0, dilation=1,
                         groups: int = 1, padding_mode: str = "zeros") -> np.ndarray:
    """The convolution of one (C, H, W) map as a matrix M (C*H*W, F*H_out*W_out): conv(x) = x.ravel() @ M.

    Built by convolving each one-hot input, so every setting (padding modes included) carries over.
    For a batch of small maps, one product with M beats any window copying: (N, C*H*W) @ M is a
    single large, well-shaped BLAS call, although M holds mostly zeros.
    """
    size = math.prod(in_shape)
    basis = np.eye(size, dtype=weight.dtype).reshape(size, *in_shape)
    return conv2d(basis, weight, None, stride, padding, dilation, groups, padding_mode, method="gemm").reshape(size, -1)


def conv2d_method(in_shape: Sequence[int], weight_shape: Sequence[int], out_shape: Sequence[int],
                  groups: int = 1) -> Method:
    """The method ("taps" or "gemm") that ``conv2d(method="auto")`` picks for an input of
    ``in_shape`` ((C, H, W) or (N, C, H, W)) and a (F, H_out, W_out) output."""
    n = in_shape[0] if len(in_shape) == 4 else 1
    n_filters, group_channels, kh, kw = weight_shape
    return _choose_method(n, group_channels, n_filters // groups, groups, (kh, kw), out_shape[-2] * out_shape[-1])


def _choose_method(n: int, group_channels: int, per_group: int, groups: int, kernel: Pair,
                   out_pixels: int) -> Method:
    """Shift-and-add or GEMM, by a rule fitted to timings of both on 265 shapes (benchmarks/README.md).

    Shift-and-add makes one pass over the output per tap and input channel, so it wins only when a
    group has one or two filters over a big output, or for depthwise layers on small maps.
    """
    if group_channels == 1 and groups > 1:
        return "depthwise"
    pixels = n * out_pixels
    few_taps = group_channels * kernel[0] * kernel[1] <= 81
    if few_taps and ((per_group == 1 and pixels >= 1 << 18) or (per_group == 2 and pixels >= 1 << 20)):
        return "taps"
    return "gemm"
