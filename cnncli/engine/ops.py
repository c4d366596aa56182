"""Pure NumPy layer functions, with PyTorch's semantics and argument names.

Feature maps are (C, H, W); batches are (N, C, H, W). Conv weights are (F, C/groups, KH, KW)
with bias (F,); dense weights are (out, in). Every function works in the floating dtype of its
input (float32 unless the caller chose float64) and never loops in Python over pixels: convolution
runs either as shift-and-add over kernel taps in row strips (few channels) or as one matrix product
over a read-only window view (many channels); pooling is a maximum or sum over strided slices.
"""

from __future__ import annotations

import math
import os
import threading
from dataclasses import dataclass
from typing import Callable, Literal, Sequence, Union

import numpy as np
from numpy.lib.stride_tricks import as_strided, sliding_window_view

from ..errors import ShapeError

Pair = tuple[int, int]
Method = Literal["taps", "gemm", "depthwise"]  # how conv2d computes: shift-and-add over taps, matrix
# products, or (one input channel per group) shift-and-add over flat padded rows in cache-sized blocks
Padding = Union[str, int, Sequence[int]]
PADDING_MODES = ("zeros", "reflect", "replicate", "circular")

# Strip sizes: a shift-and-add strip of output stays in L2 cache; an im2col block stays small
# enough that a huge image never needs more than a few tens of MB on top of its output.
_STRIP_ELEMENTS = 1 << 16
_DEPTHWISE_BLOCK = 1 << 16  # cells of one depthwise block's products (256 KiB; with the partial sum, in L2)
_DEPTHWISE_GATHER_LENGTH = 1024  # cells per channel up to which a depthwise block gathers its taps
IM2COL_ELEMENTS = 1 << 23
_THREADED_ELEMENTS = 1 << 20
# Bytes of small things one call allocates besides its arrays: views, shapes, and the buffers of
# NumPy's iterator, which a ufunc over strided views may fill (up to getbufsize() values for each
# of three operands); per thread for threaded calls.
CALL_BYTES = 16 << 10


def _call_bytes(itemsize: int, threads: int = 1) -> int:
    return threads * (CALL_BYTES + 3 * np.getbufsize() * itemsize)


# What stays allocated in libraries once an op has used them (``*_kept``), counted once a run:
# OpenBLAS packs blocks of both operands of a product into buffers it keeps per thread, touched
# the first time a product runs (measured 0.2-3 MiB after the products that conv2d's "gemm" and
# linear make, 2.9 MiB for 512 x 4608 x 1820); importing the thread pool costs 0.8 MiB.
BLAS_BYTES = 4 << 20
THREAD_POOL_BYTES = 1 << 20
# What a thread of _run_strips adds besides its arrays: the pages of its stack it touches and its
# malloc arena, which keeps the thread's freed strips after it ends (measured: 0.1 MiB a thread).
THREAD_BYTES = 256 << 10


def pair(value: int | Sequence[int], name: str) -> Pair:
    """Return ``value`` as (rows, cols); an int stands for both."""
    if isinstance(value, (int, np.integer)):
        return int(value), int(value)
    values = tuple(int(v) for v in value)
    if len(values) != 2:
        raise ShapeError(f"expected one integer or two (rows, cols), got {len(values)}", source=name)
    return values[0], values[1]


def _positive(value: Pair, name: str) -> Pair:
    if min(value) < 1:
        raise ShapeError(f"must be at least 1, got {value[0] if value[0] == value[1] else value}", source=name)
    return value


def conv_padding(
    padding: Padding,
    kernel_size: Pair,
    stride: Pair = (1, 1),
    dilation: Pair = (1, 1),
    in_size: Pair | None = None,
) -> tuple[int, int, int, int]:
    """Resolve a padding setting to (top, bottom, left, right).

    ``"valid"`` is no padding; ``"full"`` pads dilation*(k-1) on every side; ``"same"`` gives an
    output of ceil(size / stride) and puts an odd extra cell at the bottom/right (PyTorch's rule at
    stride 1, TensorFlow's and ONNX SAME_UPPER's at any stride). An int pads every side; two ints
    are (rows, cols); four are (top, bottom, left, right).
    """
    if isinstance(padding, str):
        extents = [dilation[a] * (kernel_size[a] - 1) for a in range(2)]
        if padding == "valid":
            return 0, 0, 0, 0
        if padding == "full":
            return extents[0], extents[0], extents[1], extents[1]
        if padding == "same":
            if in_size is None:
                raise ValueError("'same' padding needs the input size")
            sides = []
            for a in range(2):
                out = -(-in_size[a] // stride[a])
                total = max((out - 1) * stride[a] + extents[a] + 1 - in_size[a], 0)
                sides += [total // 2, total - total // 2]
            return tuple(sides)  # type: ignore[return-value]
        raise ShapeError(f"expected valid, same, full or integers, got {padding!r}", source="padding")
    if isinstance(padding, (int, np.integer)):
        values: tuple[int, ...] = (int(padding),) * 4
    else:
        values = tuple(int(p) for p in padding)
        if len(values) == 2:
            values = (values[0], values[0], values[1], values[1])
        elif len(values) != 4:
            raise ShapeError(f"expected 1, 2 or 4 integers, got {len(values)}", source="padding")
    if min(values) < 0:
        raise ShapeError(f"must not be negative, got {values}", source="padding")
    return values[0], values[1], values[2], values[3]


def conv_output_size(size: int, kernel: int, stride: int, dilation: int, pad_before: int, pad_after: int) -> int:
    """Output length along one axis: floor((size + pads - dilation*(kernel-1) - 1) / stride) + 1."""
    return (size + pad_before + pad_after - dilation * (kernel - 1) - 1) // stride + 1


def pad2d(x: np.ndarray, pads: tuple[int, int, int, int], mode: str = "zeros", value: float = 0.0) -> np.ndarray:
    """Pad the last two axes by (top, bottom, left, right) with PyTorch's padding modes.

    ``zeros`` fills with ``value``; ``reflect`` mirrors without repeating the edge (dcb|abcd);
    ``replicate`` repeats the edge (aaa|abcd); ``circular`` wraps around (bcd|abcd). The result is
    a new array (x itself when every pad is 0); no other array is allocated (``pad2d_workspace``).
    """
    if not any(pads):
        return x
    if mode not in PADDING_MODES:
        raise ShapeError(f"expected one of {', '.join(PADDING_MODES)}, got {mode!r}", source="padding_mode")
    top, bottom, left, right = pads
    height, width = x.shape[-2:]
    _check_pad_mode(pads, mode, height, width)
    out = np.empty(x.shape[:-2] + (height + top + bottom, width + left + right), dtype=x.dtype)
    _pad_into(out, x, pads, mode, value)
    return out


def pad2d_workspace(shape: Sequence[int], pads: tuple[int, int, int, int], itemsize: int) -> int:
    """Bytes ``pad2d`` allocates for an input of ``shape``: the padded array, or nothing without padding."""
    if not any(pads):
        return 0
    top, bottom, left, right = pads
    return math.prod(shape[:-2]) * (shape[-2] + top + bottom) * (shape[-1] + left + right) * itemsize


def _pad_bands(size: int, before: int, after: int, mode: str) -> list[tuple[slice, slice, bool]]:
    """Along one axis of ``size`` padded by (before, after): for the band before, the input and the
    band after, (where it goes in the padded axis, where it comes from in the input, reversed?).
    A replicate band reads one cell and is broadcast; ``_check_pad_mode`` has ruled out pads that
    would read past the input (reflect: before, after < size; circular: at most size)."""
    inner = (slice(before, before + size), slice(0, size), False)
    if mode == "reflect":  # dcb|abcd|cba
        sources = [(slice(1, before + 1), True), (slice(size - 1 - after, size - 1), True)]
    elif mode == "replicate":  # aaa|abcd|ddd
        sources = [(slice(0, 1), False), (slice(size - 1, size), False)]
    else:  # circular: bcd|abcd|abc
        sources = [(slice(size - before, size), False), (slice(0, after), False)]
    places = [slice(0, before), slice(before + size, before + size + after)]
    return [(places[0], *sources[0]), inner, (places[1], *sources[1])]


def _check_pad_mode(pads: tuple[int, int, int, int], mode: str, height: int, width: int) -> None:
    """PyTorch's limits: reflect padding below the input size, circular padding at most it."""
    top, bottom, left, right = pads
    if mode == "reflect" and (max(top, bottom) >= height or max(left, right) >= width):
        raise ShapeError(
            f"reflect padding {pads} needs each padding smaller than the input {height}x{width}",
            source="padding",
        )
    if mode == "circular" and (max(top, bottom) > height or max(left, right) > width):
        raise ShapeError(
            f"circular padding {pads} needs each padding at most the input {height}x{width}",
            source="padding",
        )


def conv_geometry(
    in_shape: Sequence[int],
    weight_shape: Sequence[int],
    stride: int | Sequence[int] = 1,
    padding: Padding = 0,
    dilation: int | Sequence[int] = 1,
    groups: int = 1,
    padding_mode: str = "zeros",
) -> tuple[tuple[int, int, int, int], tuple[int, int, int]]:
    """Check a conv's settings against a (C, H, W) input; return its pads and (F, H_out, W_out).

    Raises ShapeError for anything conv2d would not accept, so a whole network can be checked
    before any computation.
    """
    if len(weight_shape) != 4:
        raise ShapeError(f"conv weight must be (F, C, KH, KW), got shape {tuple(weight_shape)}")
    n_filters, group_channels, kh, kw = weight_shape
    channels, height, width = in_shape
    if groups < 1 or channels % groups or n_filters % groups:
        raise ShapeError(f"groups={groups} must divide both the {channels} input and {n_filters} output channels")
    if group_channels * groups != channels:
        raise ShapeError(
            f"weight {tuple(weight_shape)} expects {group_channels * groups} input channels, input has {channels}"
        )
    stride_hw = _positive(pair(stride, "stride"), "stride")
    dilation_hw = _positive(pair(dilation, "dilation"), "dilation")
    if padding_mode not in PADDING_MODES:
        raise ShapeError(f"expected one of {', '.join(PADDING_MODES)}, got {padding_mode!r}", source="padding_mode")
    pads = conv_padding(padding, (kh, kw), stride_hw, dilation_hw, (height, width))
    _check_pad_mode(pads, padding_mode, height, width)
    out_h = conv_output_size(height, kh, stride_hw[0], dilation_hw[0], pads[0], pads[1])
    out_w = conv_output_size(width, kw, stride_hw[1], dilation_hw[1], pads[2], pads[3])
    if out_h < 1 or out_w < 1:
        reach = (dilation_hw[0] * (kh - 1) + 1, dilation_hw[1] * (kw - 1) + 1)
        padded = (height + pads[0] + pads[1], width + pads[2] + pads[3])
        raise ShapeError(f"kernel reaches {reach[0]}x{reach[1]} but the padded input is only {padded[0]}x{padded[1]}")
    return pads, (n_filters, out_h, out_w)


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
    if not _uses_windows(pair(stride, "stride"), hp, wp, out_h, out_w):
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


def _as_batch(x: np.ndarray) -> tuple[np.ndarray, bool]:
    """View a map (C, H, W) as a batch of one; keep float32/float64, cast anything else to float32."""
    x = np.asarray(x)
    if x.dtype not in (np.float32, np.float64):
        x = x.astype(np.float32)
    if x.ndim == 3:
        return x[None], False
    if x.ndim == 4:
        return x, True
    raise ShapeError(f"expected a (C, H, W) map or an (N, C, H, W) batch, got shape {x.shape}")


def _conv_taps(xpad: np.ndarray, weight: np.ndarray, groups: int, geometry) -> np.ndarray:
    """Shift-and-add: out += w[f, c, i, j] * (input shifted by tap i, j), one row strip at a time."""
    out_h, out_w, (sh, sw), (dh, dw) = geometry
    n = xpad.shape[0]
    n_filters, group_channels, kh, kw = weight.shape
    per_group = n_filters // groups
    xg = xpad.reshape(n, groups, group_channels, *xpad.shape[2:])  # N, G, Cg, Hp, Wp
    wg = weight.reshape(groups, per_group, group_channels, kh, kw)  # G, M, Cg, KH, KW
    out = np.empty((n, groups, per_group, out_h, out_w), dtype=xpad.dtype)  # N, G, M, Ho, Wo
    rows, _ = _taps_plan(n, n_filters, out_h, out_w)

    def strip(r0: int, r1: int) -> None:
        acc = out[:, :, :, r0:r1]
        tmp = np.empty_like(acc)
        first = True
        for c in range(group_channels):
            for i in range(kh):
                top = r0 * sh + i * dh
                for j in range(kw):
                    left = j * dw
                    window = xg[:, :, c, top:top + (r1 - r0 - 1) * sh + 1:sh, left:left + (out_w - 1) * sw + 1:sw]
                    tap = wg[:, :, c, i, j][None, :, :, None, None]  # 1, G, M, 1, 1
                    if first:
                        np.multiply(window[:, :, None], tap, out=acc)
                        first = False
                    else:
                        np.multiply(window[:, :, None], tap, out=tmp)
                        acc += tmp

    _run_strips(out_h, rows, strip, out.size)
    return out.reshape(n, n_filters, out_h, out_w)


def _depthwise_plan(channels: int, hp: int, wp: int, stride: Pair, out_h: int, out_w: int) -> tuple[int, int, int, int]:
    """The layout of ``_conv_depthwise``: the padded input split into stride phases of (Hq, Wq) cells,
    the flat length of one channel's products (out_h rows of Wq cells) and the channels per block
    (each block's products and their partial sum stay in cache: about _DEPTHWISE_BLOCK cells)."""
    (sh, sw) = stride
    hq, wq = -(-hp // sh), -(-wp // sw)
    length = out_h * wq
    return hq, wq, length, max(1, min(channels, _DEPTHWISE_BLOCK // length))


def _depthwise_gathers(length: int) -> bool:
    """Whether a depthwise block copies its taps side by side and sums them by one product per channel
    (a short call each) rather than multiplying and adding tap by tap over the block: on short
    channels (a small map) the products are quicker, 0.74 vs 1.23 ms for 192 channels of 28 x 28,
    and on long ones the passes (1.60 vs 1.93 ms for 144 channels of 56 x 56)."""
    return length <= _DEPTHWISE_GATHER_LENGTH


def _conv_depthwise(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None, pads, padding_mode: str, geometry,
                    out: np.ndarray) -> None:
    """One input channel per filter group (MobileNet's depthwise layers), for one (C, H, W) image.

    The padded input is split into its stride phases (one for stride 1, four for stride 2), each a
    flat row-major buffer, so that every kernel tap reads one contiguous slice of a phase: output
    cell (y, x) of tap (i, j) is phase (i*dh % sh, j*dw % sw) at (y + i*dh // sh, x + j*dw // sw).
    The taps are multiplied and summed over whole channel blocks at a time, computing Wq - out_w
    extra cells per row that are dropped; a filter of group g reads channel g (a channel
    multiplier above 1 repeats the channels first).
    """
    out_h, out_w, (sh, sw), (dh, dw) = geometry
    n_filters, _, kh, kw = weight.shape
    if n_filters != x.shape[0]:
        x = np.repeat(x, n_filters // x.shape[0], axis=0)  # channel multiplier: filter f reads channel f // m
    channels, height, width = x.shape
    top, bottom, left, right = pads
    hp, wp = height + top + bottom, width + left + right
    hq, wq, length, block = _depthwise_plan(channels, hp, wp, (sh, sw), out_h, out_w)
    tail = ((kw - 1) * dw) // sw + 1  # the last row's taps read this far past the phase's last row
    plane = hq * wq + tail
    phases = _buffer("phases", sh * sw * channels * plane, x.dtype).reshape(sh * sw, channels, plane)
    if sh == sw == 1:
        phases[0, :, hp * wp:] = 0
        _pad_into(phases[0, :, :hp * wp].reshape(channels, hp, wp), x, pads, padding_mode)
    elif padding_mode == "zeros":  # each phase takes every sh-th row and sw-th column of the input, in place
        phases[...] = 0
        for pi in range(sh):
            for pj in range(sw):
                y0, x0 = (pi - top) % sh, (pj - left) % sw  # the first input row and column in this phase
                part = x[:, y0::sh, x0::sw]
                r0, c0 = (top + y0) // sh, (left + x0) // sw
                grid = phases[pi * sw + pj, :, :hq * wq].reshape(channels, hq, wq)
                grid[:, r0:r0 + part.shape[1], c0:c0 + part.shape[2]] = part
    else:
        padded = pad2d(x, pads, padding_mode)
        phases[...] = 0
        for pi in range(sh):
            for pj in range(sw):
                part = padded[:, pi::sh, pj::sw]
                phases[pi * sw + pj, :, :hq * wq].reshape(channels, hq, wq)[:, :part.shape[1], :part.shape[2]] = part
        del padded
    taps = weight.reshape(n_filters, kh * kw)
    reads = [((i * dh % sh) * sw + j * dw % sw, (i * dh // sh) * wq + j * dw // sw)  # (phase, offset) of each tap
             for i in range(kh) for j in range(kw)]

    def channel_block(c0: int, c1: int) -> None:
        acc = _buffer("acc", (c1 - c0) * length, x.dtype).reshape(c1 - c0, length)
        if _depthwise_gathers(length):  # the taps side by side, then one small product per channel
            cols = _buffer("cols", (c1 - c0) * len(reads) * length, x.dtype).reshape(c1 - c0, len(reads), length)
            for t, (phase, offset) in enumerate(reads):
                cols[:, t] = phases[phase, c0:c1, offset:offset + length]
            np.matmul(taps[c0:c1, None, :], cols, out=acc[:, None, :])  # block, 1, length
        else:
            tmp = _buffer("tmp", (c1 - c0) * length, x.dtype).reshape(c1 - c0, length)
            for t, (phase, offset) in enumerate(reads):
                source = phases[phase, c0:c1, offset:offset + length]
                np.multiply(source, taps[c0:c1, t, None], out=acc if t == 0 else tmp)
                if t:
                    acc += tmp
        cells = acc.reshape(c1 - c0, out_h, wq)[:, :, :out_w]
        if bias is not None:
            np.add(cells, bias[c0:c1, None, None], out=out[c0:c1])
        else:
            out[c0:c1] = cells

    _run_strips(channels, block, channel_block, channels * length)


def _taps_plan(n: int, n_filters: int, out_h: int, out_w: int) -> tuple[int, int]:
    """Output rows per shift-and-add strip, and how many strips run at once (one per thread)."""
    rows = max(1, _STRIP_ELEMENTS // max(1, n * n_filters * out_w))
    return rows, _strip_workers(-(-out_h // rows), n * n_filters * out_h * out_w)


def _strip_workers(strips: int, size: int) -> int:
    """Threads that ``_run_strips`` uses for ``strips`` strips of an output of ``size`` elements."""
    workers = min(os.cpu_count() or 1, strips)
    return 1 if size < _THREADED_ELEMENTS or workers < 2 else workers


def _run_strips(total_rows: int, rows: int, work, size: int) -> None:
    """Run ``work(r0, r1)`` over row strips; big outputs are split in one run of strips per core
    and run on threads (NumPy releases the GIL inside its loops)."""
    bounds = [(r0, min(r0 + rows, total_rows)) for r0 in range(0, total_rows, rows)]
    workers = _strip_workers(len(bounds), size)
    if workers == 1:
        for r0, r1 in bounds:
            work(r0, r1)
        return
    from concurrent.futures import ThreadPoolExecutor  # only big maps pay for the import

    def run(share):
        for r0, r1 in share:
            work(r0, r1)

    shares = [bounds[w::workers] for w in range(workers)]
    with ThreadPoolExecutor(workers) as pool:
        for future in [pool.submit(run, share) for share in shares]:
            future.result()


_scratch = threading.local()


def _buffer(name: str, size: int, dtype: np.dtype) -> np.ndarray:
    """A 1-D work buffer of at least ``size`` elements, kept per thread and reused across calls.

    Fresh large arrays cost a page fault per 4 KiB on first touch, which made a 56 x 56 layer up
    to 5x slower in a new process; reuse pays that once. Only buffers up to the im2col block are
    kept, so a huge image does not leave its padded copy held after the call. ``release_buffers``
    lets them go (``Network.forward`` does after each layer, so a layer's buffers are its own).
    """
    if size > IM2COL_ELEMENTS:
        return np.empty(size, dtype=dtype)
    buffers = _scratch.__dict__.setdefault("buffers", {})
    held = buffers.get(name)
    if held is None or held.size < size or held.dtype != dtype:
        buffers.pop(name, None)  # the old one goes before the new one comes, so that both are never held
        held = buffers[name] = np.empty(size, dtype=dtype)
    return held[:size]


def release_buffers() -> None:
    """Free what this thread keeps between calls: the work buffers (``_buffer``) and relu's zeros."""
    _scratch.__dict__.pop("buffers", None)
    _scratch.__dict__.pop("zeros", None)


def _conv_gemm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None, pads, padding_mode: str, geometry,
               out: np.ndarray) -> None:
    """Matrix products (F, C*KH*KW) @ (C*KH*KW, rows*W) per block of output rows, written to ``out``."""
    out_h, out_w, stride, _ = geometry
    if _is_pointwise(weight.shape, stride, pads):  # 1x1: the input's own layout is the matrix
        n_filters, channels, cells = weight.shape[0], x.shape[1], out_h * out_w
        flat_weight = weight.reshape(n_filters, -1)  # F, C
        folded = bias is not None and _folds_bias(channels, n_filters, cells)
        if bias is not None and folded:
            flat_weight = _with_bias(flat_weight, bias)  # F, C+1
            inputs = _buffer("inputs", (channels + 1) * cells, x.dtype).reshape(channels + 1, cells)
            inputs[channels] = 1
        for b in range(x.shape[0]):
            block = out[b].reshape(n_filters, -1)  # F, H*W: a view of the contiguous output
            if folded:
                inputs[:channels] = x[b].reshape(channels, -1)
                np.matmul(flat_weight, inputs, out=block)
                continue
            np.matmul(flat_weight, x[b].reshape(channels, -1), out=block)
            if bias is not None:
                block += bias[:, None]
        return
    top, bottom, left, right = pads
    hp, wp = x.shape[2] + top + bottom, x.shape[3] + left + right
    if _uses_windows(stride, hp, wp, out_h, out_w):
        _conv_gemm_windows(pad2d(x, pads, padding_mode), weight, bias, geometry, out)
    else:
        _conv_gemm_rows(x, weight, bias, pads, padding_mode, geometry, out)


def _folds_bias(depth: int, n_filters: int, cells: int) -> bool:
    """Whether a product (F, depth) @ (depth, cells) takes its bias as one more column of weights
    times a row of ones, rather than a pass over its output afterwards: when copying the weights
    and a row of ones is less than that pass (a 1x1 conv that widens the channels: 0.49 vs 0.69 ms
    for 64 -> 256 channels on 56 x 56, 0.34 vs 0.50 ms for MobileNetV2's 16 -> 96 on 112 x 112; a
    7x7 conv over three colours), not for deep kernels over small maps."""
    return (depth + 1) * (n_filters + 1) < n_filters * cells


def _with_bias(flat_weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """(F, depth + 1): the weights with the bias as a last column, in a work buffer."""
    n_filters, depth = flat_weight.shape
    extended = _buffer("weights", n_filters * (depth + 1), flat_weight.dtype).reshape(n_filters, depth + 1)
    extended[:, :depth] = flat_weight
    extended[:, depth] = bias
    return extended


@dataclass(frozen=True)
class _RowsPlan:
    """How ``_conv_gemm_rows`` cuts its work: ``images`` stacked per product (0: one image in blocks of
    ``rows`` output rows instead), each product ``length`` cells long; the sizes in elements of its
    buffers ``padded`` (the padded input and a zero tail), ``cols`` (the KW column shifts) and
    ``block`` (one product, and ``partial`` as large when KH > 1); ``tiled``: the shifts are copied
    once per kernel row instead of once for all of them."""

    images: int
    rows: int
    length: int
    tail: int
    tiled: bool
    padded: int
    cols: int
    block: int


def _rows_plan(n: int, channels: int, n_filters: int, hp: int, wp: int, kernel: Pair, dilation: Pair,
               out_h: int) -> _RowsPlan:
    """The blocks of ``_conv_gemm_rows`` for N images of (C, Hp, Wp) padded input: each work buffer
    holds at most IM2COL_ELEMENTS, unless a single row of the padded input is larger than that.

    One copy of the column shifts serves every kernel row when it spans the block plus the rows
    the kernel reaches below it ((KH-1)*dilation). When the block is shorter than the dilation
    (a large dilation, or rows so wide that the budget allows few), one copy per kernel row of
    just the block's rows does instead: KH times the block, where the single copy was the block
    plus the reach (a one-row block, a 3x3 kernel and a dilation of 100: 201 rows). The products
    keep their sizes, so BLAS gives the same bits.
    """
    (kh, kw), (dh, dw) = kernel, dilation
    reach = (kh - 1) * dh  # rows below an output row that its kernel reads
    budget = IM2COL_ELEMENTS // max(1, channels * kw * wp, n_filters * wp)  # padded rows per product
    if budget - reach >= hp:  # whole images per product, stacked; the last one's kernel reads past it
        images = min(n, (budget - reach) // hp)
        length = images * hp * wp
        tail = reach * wp + (kw - 1) * dw
        return _RowsPlan(images, 0, length, tail, False, channels * (length + tail),
                         channels * kw * (length + reach * wp), n_filters * length)
    rows = max(1, min(out_h, budget - reach))
    tiled = rows < dh  # the block is shorter than the kernel's dilated step: copy per kernel row
    length = rows * wp
    tail = (kw - 1) * dw  # the last block reads past the last row only by dropped cells
    cols = channels * kw * (length if tiled else length + reach * wp)
    return _RowsPlan(0, rows, length, tail, tiled, channels * (hp * wp + tail), cols, n_filters * length)


def _conv_gemm_rows(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None, pads, padding_mode: str, geometry,
                    out: np.ndarray) -> None:
    """Stride 1: products over the padded input in its own row layout, one per kernel row.

    Each output row is computed over the whole padded width (the extra columns are dropped), so
    moving down one kernel row is moving one padded row along the flat buffer. Only the KW
    column shifts are copied (KW times the input, not KH*KW), and each kernel row's product
    reads a plain slice of that copy. Small images of a batch are stacked in the buffer, one
    under the other, so that one product serves many of them (the rows that straddle two
    images are computed and dropped); a big image is done in blocks of rows instead.
    """
    out_h, out_w, _, (dh, dw) = geometry
    n, channels, height, width = x.shape
    n_filters, _, kh, kw = weight.shape
    top, bottom, left, right = pads
    hp, wp = height + top + bottom, width + left + right
    plan = _rows_plan(n, channels, n_filters, hp, wp, (kh, kw), (dh, dw), out_h)
    # (KH, F, C*KW): kernel row i as a matrix whose columns follow the copy's (C, KW) order.
    row_weights = np.ascontiguousarray(weight.transpose(2, 0, 1, 3)).reshape(kh, n_filters, channels * kw)
    flat = _buffer("padded", plan.padded, x.dtype).reshape(channels, -1)  # C, rows*Wp + tail
    body = flat.shape[1] - plan.tail
    flat[:, body:] = 0
    if plan.images:
        images = plan.images
        for b0 in range(0, n, images):
            k = min(images, n - b0)
            _pad_into(flat[:, :k * hp * wp].reshape(channels, k, hp, wp), x[b0:b0 + k].transpose(1, 0, 2, 3),
                      pads, padding_mode)
            if k < images:  # rows after the last image are read by dropped cells only; keep them finite
                flat[:, k * hp * wp:images * hp * wp] = 0
            block = _row_products(flat, 0, k * hp * wp, row_weights, kw, dh, dw, wp, bias, plan.tiled)
            out[b0:b0 + k] = block.reshape(n_filters, k, hp, wp)[:, :, :out_h, :out_w].transpose(1, 0, 2, 3)
            del block
        return
    rows = plan.rows
    for b in range(n):
        _pad_into(flat[:, :hp * wp].reshape(channels, hp, wp), x[b], pads, padding_mode)
        for r0 in range(0, out_h, rows):
            r1 = min(r0 + rows, out_h)
            block = _row_products(flat, r0 * wp, (r1 - r0) * wp, row_weights, kw, dh, dw, wp, bias, plan.tiled)
            out[b, :, r0:r1] = block.reshape(n_filters, r1 - r0, wp)[:, :, :out_w]
            del block  # a block over IM2COL_ELEMENTS is not kept; it goes before the next one comes


def _row_products(flat: np.ndarray, start: int, length: int, row_weights: np.ndarray, kw: int, dh: int, dw: int,
                  wp: int, bias: np.ndarray | None, tiled: bool = False) -> np.ndarray:
    """(F, length): output cells start..start+length of the flat padded rows, summed over kernel rows.

    The column shifts are copied once over the block and the rows its kernel reaches below it, or
    with ``tiled`` once per kernel row over the block alone; the products and their sum are the same.
    """
    channels = flat.shape[0]
    kh, n_filters, _ = row_weights.shape
    es = flat.itemsize
    span = length if tiled else length + (kh - 1) * dh * wp
    cols = _buffer("cols", channels * kw * span, flat.dtype).reshape(channels * kw, span)  # C*KW, span
    block = _buffer("block", n_filters * length, flat.dtype).reshape(n_filters, length)  # F, length
    partial = _buffer("partial", n_filters * length, flat.dtype).reshape(n_filters, length) if kh > 1 else None
    for i in range(kh):
        if i == 0 or tiled:
            shifts = as_strided(flat[:, start + i * dh * wp:], shape=(channels, kw, span),
                                strides=(flat.strides[0], dw * es, es), writeable=False)  # C, KW, span
            np.copyto(cols.reshape(channels, kw, span), shifts)
        offset = 0 if tiled else i * dh * wp
        np.matmul(row_weights[i], cols[:, offset:offset + length], out=block if i == 0 else partial)
        if i:
            block += partial
    if bias is not None:
        block += bias[:, None]
    return block


def _pad_into(dest: np.ndarray, src: np.ndarray, pads, mode: str, value: float = 0.0) -> None:
    """Write ``src`` padded by (top, bottom, left, right) into ``dest``, allocating nothing.

    Every band of ``dest`` (3 x 3 of them: before, inside and after the input along each axis) is
    one assignment from a view of ``src``, which never overlaps ``dest``, so NumPy needs no
    temporary copy; the values are those of ``np.pad``.
    """
    top, bottom, left, right = pads
    height, width = src.shape[-2:]
    if mode == "zeros":
        dest[..., :top, :] = value
        dest[..., top + height:, :] = value
        dest[..., top:top + height, :left] = value
        dest[..., top:top + height, left + width:] = value
        dest[..., top:top + height, left:left + width] = src
        return
    for rows, from_rows, flip_rows in _pad_bands(height, top, bottom, mode):
        if rows.stop == rows.start:
            continue
        band = src[..., from_rows, :]
        band = band[..., ::-1, :] if flip_rows else band
        for cols, from_cols, flip_cols in _pad_bands(width, left, right, mode):
            if cols.stop > cols.start:
                dest[..., rows, cols] = band[..., from_cols][..., ::-1] if flip_cols else band[..., from_cols]


@dataclass(frozen=True)
class _WindowsPlan:
    """How ``_conv_gemm_windows`` cuts its work: ``images`` whole images stacked per product (0: each
    image in blocks of ``rows`` output rows, every product written straight into the output); the
    sizes in elements of its buffers ``cols`` (the windows: C*KH*KW by cells) and ``block`` (the
    stacked product, F by cells; 0 when products go straight into the output)."""

    images: int
    rows: int
    cols: int
    block: int


# One image's windows go in blocks of output rows of at most this many elements (2 MiB of float32):
# a block and the product reading it stay in cache, and a fresh buffer is few pages (ResNet's 7x7/2
# first conv: 147 x 12,544 windows, 7 MiB in one block; 1.5-2 ms of it was page faults in a forward).
WINDOWS_BLOCK_ELEMENTS = 1 << 19


def _windows_plan(n: int, n_filters: int, depth: int, out_h: int, out_w: int) -> _WindowsPlan:
    """The blocks of ``_conv_gemm_windows``. A batch of small images stacks them, so that one product
    serves several: the windows (depth, cells) and the product (F, cells) hold at most
    IM2COL_ELEMENTS each. Otherwise each image goes in blocks of output rows whose windows hold at
    most WINDOWS_BLOCK_ELEMENTS (and IM2COL_ELEMENTS), or one output row."""
    pixels = out_h * out_w
    widest = max(1, depth, n_filters)
    if n > 1 and 2 * widest * pixels <= IM2COL_ELEMENTS:
        images = min(n, IM2COL_ELEMENTS // (widest * pixels))
        return _WindowsPlan(images, out_h, depth * images * pixels, n_filters * images * pixels)
    budget = min(IM2COL_ELEMENTS, WINDOWS_BLOCK_ELEMENTS)
    rows = max(1, min(out_h, budget // max(1, depth * out_w)))
    return _WindowsPlan(0, rows, depth * rows * out_w, 0)


def _is_pointwise(weight_shape: Sequence[int], stride: Pair, pads: Sequence[int]) -> bool:
    """A 1x1 kernel at stride 1 without padding: each image is one product (F, C) @ (C, H*W), no copy."""
    return tuple(weight_shape[2:]) == (1, 1) and stride == (1, 1) and not any(pads)


def _uses_windows(stride: Pair, hp: int, wp: int, out_h: int, out_w: int) -> bool:
    """Whether the GEMM path copies whole windows (im2col) rather than column shifts per kernel row.

    Strided convs always do. At stride 1 the per-row products compute every padded column and,
    stacked, every padded row, which costs little on big maps but 1.3x (14x14, padding 1) to 1.65x
    (7x7) the cells on small ones, and rearrange the weights by kernel row on every call (4 ms
    for ResNet's 512 x 512 x 3 x 3); a small map whose padded area exceeds its output's by a fifth
    takes the windows instead (2.7 vs 8.5 ms on 512 x 7 x 7, 2.1 vs 3.8 ms on 256 x 14 x 14), and
    so does any map of at most 32 x 32 outputs, where one long product beats three short ones and
    their sums (128 x 28 x 28: 2.2-2.3 vs 2.5-2.7 ms, on one thread or two).
    """
    if stride != (1, 1):
        return True
    return out_h * out_w <= 1024 or (out_h * out_w <= 4096 and 5 * hp * wp > 6 * out_h * out_w)


def _conv_gemm_windows(xpad: np.ndarray, weight: np.ndarray, bias: np.ndarray | None, geometry,
                       out: np.ndarray) -> None:
    """Any stride: im2col of stacked images (or of a block of one image's output rows) from a strided
    window view, then one product (F, C*KH*KW) @ (C*KH*KW, cells)."""
    out_h, out_w, (sh, sw), (dh, dw) = geometry
    n, channels = xpad.shape[:2]
    n_filters, _, kh, kw = weight.shape
    depth = channels * kh * kw
    flat_weight = weight.reshape(n_filters, depth)  # F, C*KH*KW
    plan = _windows_plan(n, n_filters, depth, out_h, out_w)
    reach_h, reach_w = dh * (kh - 1) + 1, dw * (kw - 1) + 1
    windows = sliding_window_view(xpad, (reach_h, reach_w), axis=(2, 3))[:, :, ::sh, ::sw, ::dh, ::dw]
    # windows: N, C, Ho, Wo, KH, KW
    cells = plan.cols // depth  # of the largest block
    folded = bias is not None and _folds_bias(depth, n_filters, cells)
    if bias is not None and folded:  # a row of ones under the windows meets the bias as the weights' last column
        flat_weight = _with_bias(flat_weight, bias)  # F, C*KH*KW + 1
    cols_buffer = _buffer("cols", plan.cols + folded * cells, xpad.dtype)  # once: a block never has two alive

    def product(cols: np.ndarray, block: np.ndarray) -> None:
        """block (F, cells) = the weights @ the windows ``cols`` (C, KH, KW, ...), bias included."""
        rows = cols.reshape(depth, -1)  # C*KH*KW, cells
        if folded:
            rows = cols_buffer[:(depth + 1) * rows.shape[1]].reshape(depth + 1, -1)  # the same cells, and ones
            rows[depth] = 1
        np.matmul(flat_weight, rows, out=block)
        if bias is not None and not folded:
            block += bias[:, None]

    if plan.images:
        images = plan.images
        block_buffer = _buffer("block", plan.block, xpad.dtype)
        for b0 in range(0, n, images):
            k = min(images, n - b0)
            cols = cols_buffer[:depth * k * out_h * out_w].reshape(channels, kh, kw, k, out_h, out_w)
            np.copyto(cols, windows[b0:b0 + k].transpose(1, 4, 5, 0, 2, 3))  # C, KH, KW, k, Ho, Wo
            block = block_buffer[:n_filters * k * out_h * out_w].reshape(n_filters, -1)
            product(cols, block)  # F, k*Ho*Wo
            out[b0:b0 + k] = block.reshape(n_filters, k, out_h, out_w).transpose(1, 0, 2, 3)
        return
    rows = plan.rows
    for b in range(n):
        for r0 in range(0, out_h, rows):
            r1 = min(r0 + rows, out_h)
            cols = cols_buffer[:depth * (r1 - r0) * out_w].reshape(channels, kh, kw, r1 - r0, out_w)
            np.copyto(cols, windows[b, :, r0:r1].transpose(0, 3, 4, 1, 2))  # C, KH, KW, rows, Wo
            # F, rows*Wo: a view of the output (out[b] is contiguous: conv2d's output, or a run of its
            # channels), each filter's rows one stretch; BLAS writes it with a leading dimension of Ho*Wo
            product(cols, out[b, :, r0:r1].reshape(n_filters, -1))


# --- Pooling ---------------------------------------------------------------------------------


def pool_output_size(size: int, kernel: int, stride: int, padding: int, dilation: int, ceil_mode: bool) -> int:
    """PyTorch's pooling output length: floor or ceil of (size + 2p - d(k-1) - 1)/s, plus 1.

    With ceil_mode a last window that would start inside the right padding is dropped.
    """
    span = size + 2 * padding - dilation * (kernel - 1) - 1
    out = (span + (stride - 1 if ceil_mode else 0)) // stride + 1
    if ceil_mode and (out - 1) * stride >= size + padding:
        out -= 1
    return out


def pool_geometry(size: Sequence[int], kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
    """Check pooling settings against an (H, W) input.

    Returns kernel, stride, dilation, padding (each (rows, cols)), the output (H, W) and the
    padding needed after the input (the requested padding plus any ceil_mode overhang).
    """
    k = _positive(pair(kernel_size, "kernel_size"), "kernel_size")
    s = _positive(pair(k if stride is None else stride, "stride"), "stride")
    d = _positive(pair(dilation, "dilation"), "dilation")
    p = pair(padding, "padding")
    if min(p) < 0 or p[0] > k[0] // 2 or p[1] > k[1] // 2:
        raise ShapeError(f"pool padding {p} must be between 0 and half the kernel size {k}", source="padding")
    out = tuple(pool_output_size(size[a], k[a], s[a], p[a], d[a], ceil_mode) for a in range(2))
    if min(out) < 1:
        raise ShapeError(f"a {k[0]}x{k[1]} pool does not fit the {size[0]}x{size[1]} input")
    # Padding after the input: the requested padding, plus what a ceil_mode window hangs over.
    after = tuple(max(0, (out[a] - 1) * s[a] + d[a] * (k[a] - 1) + 1 - size[a] - p[a]) for a in range(2))
    return k, s, d, p, out, after


def max_pool2d(
    x: np.ndarray,
    kernel_size: int | Sequence[int] = 2,
    stride: int | Sequence[int] | None = None,
    padding: int | Sequence[int] = 0,
    dilation: int | Sequence[int] = 1,
    ceil_mode: bool = False,
) -> np.ndarray:
    """Max pooling over (…, H, W), as ``torch.nn.functional.max_pool2d``.

    ``stride`` defaults to ``kernel_size``; padding is implicit -inf and at most half the kernel.
    Output size: see ``pool_output_size``.
    """
    x, batched = _as_batch(x)
    k, s, d, p, out, after = pool_geometry(x.shape[-2:], kernel_size, stride, padding, dilation, ceil_mode)
    if k == s == (2, 2) and d == (1, 1) and not any(p) and not any(after):
        result = _max_pool_2x2(x, out)
        return result if batched else result[0]
    pads = (p[0], after[0], p[1], after[1])
    if _pool_copies_padding(x.shape, pads):
        xpad = pad2d(x, pads, value=-np.inf)
        result = _tap_slice(xpad, 0, 0, out, s).copy()
        for i in range(k[0]):
            for j in range(k[1]):
                if i or j:
                    np.maximum(result, _tap_slice(xpad, i * d[0], j * d[1], out, s), out=result)
        return result if batched else result[0]
    # Each tap reads only the cells it covers, as if the padding were there: max(v, -inf) = v.
    result = np.full(x.shape[:2] + out, -np.inf, dtype=x.dtype)
    for i in range(k[0]):
        for j in range(k[1]):
            taken = _clipped_tap(x.shape[-2:], i * d[0] - p[0], j * d[1] - p[1], out, s)
            if taken is not None:
                into, read = taken
                np.maximum(result[into], x[read], out=result[into])
    return result if batched else result[0]


def avg_pool2d(
    x: np.ndarray,
    kernel_size: int | Sequence[int] = 2,
    stride: int | Sequence[int] | None = None,
    padding: int | Sequence[int] = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
) -> np.ndarray:
    """Average pooling over (…, H, W), as ``torch.nn.functional.avg_pool2d``.

    With ``count_include_pad`` the zero padding counts in each window's divisor (PyTorch's
    default); cells of a ceil_mode window that hang past the padding never count.
    """
    x, batched = _as_batch(x)
    k, s, _, p, out, after = pool_geometry(x.shape[-2:], kernel_size, stride, padding, 1, ceil_mode)
    total = np.zeros(x.shape[:2] + out, dtype=x.dtype)
    pads = (p[0], after[0], p[1], after[1])
    if _pool_copies_padding(x.shape, pads):
        xpad = pad2d(x, pads)
        for i in range(k[0]):
            for j in range(k[1]):
                total += _tap_slice(xpad, i, j, out, s)
    else:  # each tap adds only the cells it covers: a padded zero would change no sum
        for i in range(k[0]):
            for j in range(k[1]):
                taken = _clipped_tap(x.shape[-2:], i - p[0], j - p[1], out, s)
                if taken is not None:
                    into, read = taken
                    total[into] += x[read]
    counts = [_window_counts(x.shape[2 + a], k[a], s[a], p[a], out[a], count_include_pad) for a in range(2)]
    # Small integers, exact in float: their product rounds once, as the int64 product cast to float would.
    total /= np.multiply.outer(counts[0].astype(x.dtype), counts[1].astype(x.dtype))  # Ho, Wo
    return total if batched else total[0]


def pool2d_workspace(kind: str, in_shape: Sequence[int], kernel_size, stride=None, padding=0, dilation=1,
                     ceil_mode: bool = False, itemsize: int = 4) -> int:
    """Bytes that ``max_pool2d`` (kind "max") or ``avg_pool2d`` ("avg") allocates at most for an input
    of ``in_shape`` (C, H, W) or (N, C, H, W): the output; a padded copy of a small input
    (``_pool_copies_padding``, at most _POOL_COPY_ELEMENTS values); one pass of the 2x2 max-pool's
    row maxima (``_pairs_per_pass``); the average's (H_out, W_out) divisors.
    """
    shape = tuple(in_shape)
    k, s, d, p, out, after = pool_geometry(shape[-2:], kernel_size, stride, padding,
                                           dilation if kind == "max" else 1, ceil_mode)
    planes = math.prod(shape[:-2])  # a batch's maps are pooled as one run of passes
    elements = planes * out[0] * out[1]
    pads = (p[0], after[0], p[1], after[1])
    if any(pads) and _pool_copies_padding(shape, pads):
        elements += planes * (shape[-2] + pads[0] + pads[1]) * (shape[-1] + pads[2] + pads[3])
    if kind == "avg":
        elements += out[0] * out[1]
    elif k == s == (2, 2) and d == (1, 1) and not any(p) and not any(after):
        elements += _pairs_per_pass(planes, out)[2]
    return elements * itemsize + _call_bytes(itemsize)


# Pooling copies its input with the padding when the copy holds at most this many values (there
# the clipped taps' strided writes cost more than the copy: 10-17% on (64, 112, 112)); a bigger
# input is pooled in place, each tap reading only the cells it covers (10-25% faster there).
_POOL_COPY_ELEMENTS = 1 << 20


def _pool_copies_padding(shape: Sequence[int], pads: tuple[int, int, int, int]) -> bool:
    """Whether pooling an input of ``shape`` with ``pads`` works on a padded copy (no pads: the input)."""
    padded = math.prod(shape[:-2]) * (shape[-2] + pads[0] + pads[1]) * (shape[-1] + pads[2] + pads[3])
    return not any(pads) or padded <= _POOL_COPY_ELEMENTS


_POOL_PASS_ELEMENTS = 1 << 16  # row maxima that the 2x2 max-pool makes per pass: within L2


def _pairs_per_pass(planes: int, out: Pair) -> tuple[int, int, int]:
    """For the 2x2 max-pool of ``planes`` maps into ``out``: planes per pass, output rows per pass,
    and the elements of the buffer of row maxima that a pass fills."""
    per_row = 2 * out[1]  # maxima of two rows, one output row's worth
    rows = max(1, _POOL_PASS_ELEMENTS // per_row)
    if rows >= out[0]:
        group = max(1, min(planes, rows // out[0]))
        return group, out[0], group * out[0] * per_row
    return 1, rows, rows * per_row


def _max_pool_2x2(x: np.ndarray, out: Pair) -> np.ndarray:
    """The common 2x2, stride-2 max-pool of (N, C, H, W) into ``out`` in two long passes instead of
    four short ones: maxima of pairs of rows first (whole rows at a time), then of neighbours along
    the flat result. A big input goes a few rows (or maps) at a time, so that the row maxima take
    one pass's worth (``_pairs_per_pass``), not half the input."""
    n, channels, height, width = x.shape
    h, w = out
    if x.flags.c_contiguous:
        if height == 2 * h and width == 2 * w and n * channels * h * width <= _POOL_PASS_ELEMENTS:
            row_pairs = x.reshape(-1, 2, width)  # small: the whole batch in one pass; N*C*Ho, (upper, lower), W
            pairs = np.maximum(row_pairs[:, 0], row_pairs[:, 1]).reshape(-1)
            return np.maximum(pairs[0::2], pairs[1::2]).reshape(n, channels, h, w)
        maps = [x.reshape(1, n * channels, height, width)]  # every map of the batch in one run of passes
    else:
        maps = [x[b:b + 1] for b in range(n)]
    result = np.empty((n, channels, h, w), dtype=x.dtype)
    into = result.reshape(len(maps), -1, h, w)  # per run of passes: maps, Ho, Wo
    planes = into.shape[1]
    group, rows, size = _pairs_per_pass(planes, out)
    pairs = np.empty(size, dtype=x.dtype)
    for m, source in enumerate(maps):
        quads = source[0, :, :2 * h, :2 * w].reshape(planes, h, 2, 2 * w)  # maps, Ho, (upper, lower), 2*Wo
        for c0 in range(0, planes, group):
            c1 = min(c0 + group, planes)
            for r0 in range(0, h, rows):
                r1 = min(r0 + rows, h)
                block = pairs[:(c1 - c0) * (r1 - r0) * 2 * w]
                upper, lower = quads[c0:c1, r0:r1, 0], quads[c0:c1, r0:r1, 1]  # maps, rows, 2*Wo
                np.maximum(upper, lower, out=block.reshape(upper.shape))
                shape = (c1 - c0, r1 - r0, w)
                np.maximum(block[0::2].reshape(shape), block[1::2].reshape(shape), out=into[m, c0:c1, r0:r1])
    return result


def _clipped_tap(size: Pair, top: int, left: int, out: Pair, stride: Pair):
    """For the tap reading input cell (r*stride + top, c*stride + left) of output (r, c): the output
    cells whose read falls inside the input and the input cells they read, as index tuples (or
    None when no read does); reads outside are the padding."""
    into, read = [], []
    for a, offset in enumerate((top, left)):
        first = max(0, -(offset // stride[a]))  # ceil(-offset / stride): the first read at 0 or after
        last = min(out[a] - 1, (size[a] - 1 - offset) // stride[a])
        if last < first:
            return None
        into.append(slice(first, last + 1))
        start = first * stride[a] + offset
        read.append(slice(start, start + (last - first) * stride[a] + 1, stride[a]))
    return (Ellipsis, *into), (Ellipsis, *read)


def _tap_slice(xpad: np.ndarray, top: int, left: int, out: Pair, stride: Pair) -> np.ndarray:
    """The strided view of ``xpad`` that tap (top, left) of every window reads."""
    rows = slice(top, top + (out[0] - 1) * stride[0] + 1, stride[0])
    cols = slice(left, left + (out[1] - 1) * stride[1] + 1, stride[1])
    return xpad[..., rows, cols]


def _window_counts(size: int, kernel: int, stride: int, padding: int, out: int, include_pad: bool) -> np.ndarray:
    """How many cells each window along one axis averages over (PyTorch's divisor rule)."""
    start = np.arange(out) * stride - padding
    end = np.minimum(start + kernel, size + padding)
    if not include_pad:
        start, end = np.maximum(start, 0), np.minimum(end, size)
    return end - start


def global_avg_pool2d(x: np.ndarray) -> np.ndarray:
    """Mean over H and W, keeping them as 1 x 1: (C, H, W) -> (C, 1, 1)."""
    x = np.asarray(x)
    return x.mean(axis=(-2, -1), keepdims=True, dtype=x.dtype)


def global_avg_pool2d_workspace(shape: Sequence[int], itemsize: int = 4) -> int:
    """Bytes ``global_avg_pool2d`` allocates: its (…, 1, 1) output; the sum runs without a copy."""
    return math.prod(tuple(shape)[:-2]) * itemsize + _call_bytes(itemsize)


def batch_norm_terms(running_mean: np.ndarray, running_var: np.ndarray, weight: np.ndarray | None = None,
                     bias: np.ndarray | None = None, eps: float = 1e-5) -> tuple[np.ndarray, np.ndarray]:
    """Inference batch norm as y = x * scale + shift per channel, as PyTorch folds it on CPU:
    scale = weight / sqrt(var + eps), shift = bias - mean * scale; both in float64."""
    scale = 1 / np.sqrt(np.asarray(running_var, dtype=np.float64) + eps)
    if weight is not None:
        scale = scale * np.asarray(weight, dtype=np.float64)
    shift = -np.asarray(running_mean, dtype=np.float64) * scale
    if bias is not None:
        shift = shift + np.asarray(bias, dtype=np.float64)
    return scale, shift


def batch_norm(x: np.ndarray, running_mean: np.ndarray, running_var: np.ndarray, weight: np.ndarray | None = None,
               bias: np.ndarray | None = None, eps: float = 1e-5, axis: int = 0) -> np.ndarray:
    """Inference batch normalisation along ``axis`` (the channels), as PyTorch in eval mode
    (``batch_norm_terms``; the terms are cast to x's dtype)."""
    x = np.asarray(x)
    scale, shift = batch_norm_terms(running_mean, running_var, weight, bias, eps)
    where = (-1,) + (1,) * (x.ndim - axis - 1)
    y = x * scale.astype(x.dtype).reshape(where)
    y += shift.astype(x.dtype).reshape(where)
    return y


def batch_norm_workspace(shape: Sequence[int], features: int, itemsize: int = 4) -> int:
    """Bytes ``batch_norm`` allocates: the output, and its per-feature terms (a few float64 arrays
    of ``features`` values while they are worked out, then cast)."""
    return math.prod(shape) * itemsize + features * (8 * 8 + 2 * itemsize) + _call_bytes(itemsize)


# --- Activations, flatten, dense -------------------------------------------------------------

# Element-wise ops work through big maps this many values at a time, so that a temporary (a mask,
# 1 + exp) is one cache-sized chunk, never a map-sized array.
_CHUNK = 1 << 15
_RELU_CHUNK = _CHUNK


def _chunks(x: np.ndarray):
    """(input chunk, output chunk) pairs over a new array shaped like the C-contiguous ``x``, and that array."""
    flat = x.reshape(-1)
    out = np.empty_like(flat)
    pieces = ((flat[start:start + _CHUNK], out[start:start + _CHUNK]) for start in range(0, flat.size, _CHUNK))
    return pieces, out.reshape(x.shape)


def _chunked(x: np.ndarray) -> bool:
    """Whether an element-wise op takes the chunked, in-place path: a big float map in C order
    (what every op returns); anything else takes a plain NumPy expression with the same values."""
    return x.dtype in (np.float32, np.float64) and x.size >= _CHUNK and x.flags.c_contiguous


def relu(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """max(x, 0), NaN kept; into ``out`` when given (which may be x itself: in place).

    np.maximum against a scalar misses NumPy's SIMD loop (3x slower than against an array), so
    the maximum is taken against a cached block of zeros, one cache-sized chunk at a time.
    """
    x = np.asarray(x)
    if x.dtype not in (np.float32, np.float64) or x.size < _RELU_CHUNK or not (out is None or out.flags.c_contiguous):
        return np.maximum(x, 0, out=out)
    flat = np.ascontiguousarray(x).reshape(-1)
    if out is None:
        out = np.empty_like(flat)
    into = out.reshape(-1)  # a view: ``out`` is C-contiguous, as conv2d's and every op's output is
    zeros = _zeros(_RELU_CHUNK, x.dtype)
    for start in range(0, flat.size, _RELU_CHUNK):
        stop = min(start + _RELU_CHUNK, flat.size)
        np.maximum(flat[start:stop], zeros[:stop - start], out=into[start:stop])
    return into.reshape(x.shape)


def _zeros(size: int, dtype: np.dtype) -> np.ndarray:
    held = _scratch.__dict__.setdefault("zeros", {})
    key = np.dtype(dtype).str
    if key not in held or held[key].size < size:
        held[key] = np.zeros(size, dtype=dtype)
    return held[key]


def leaky_relu(x: np.ndarray, negative_slope: float = 0.01) -> np.ndarray:
    """x where x >= 0, negative_slope * x elsewhere.

    For a slope in (0, 1] that is max(x, slope * x), and for a slope above 1 min(x, slope * x):
    the same values, infinities, NaN and signed zeros included (slope * x keeps the sign of x and
    rounds towards x), computed in the output itself, 10x faster than selecting with np.where.
    """
    x = np.asarray(x)
    slope = np.asarray(negative_slope, dtype=x.dtype)
    if x.dtype in (np.float32, np.float64) and slope > 0:
        out = np.multiply(x, slope)
        return (np.maximum if slope <= 1 else np.minimum)(x, out, out=out)
    if not _chunked(x):
        return np.where(x >= 0, x, x * slope)
    mask, scaled = np.empty(_CHUNK, dtype=bool), np.empty(_CHUNK, dtype=x.dtype)
    pieces, out = _chunks(x)
    for part, into in pieces:
        size = part.size
        scaled_part = np.multiply(part, slope, out=scaled[:size])
        into[...] = np.where(np.greater_equal(part, 0, out=mask[:size]), part, scaled_part)
    return out


def sigmoid(x: np.ndarray) -> np.ndarray:
    """1 / (1 + exp(-x)), computed from e = exp(-|x|) so that no exp overflows: 1 / (1 + e) where
    x >= 0, e / (1 + e) elsewhere."""
    x = np.asarray(x)
    if not _chunked(x):
        e = np.exp(-np.abs(x))
        return np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype, copy=False)
    mask, one_plus_e, at_least_0 = (np.empty(_CHUNK, dtype=dtype) for dtype in (bool, x.dtype, x.dtype))
    pieces, out = _chunks(x)
    for part, e in pieces:
        size = part.size
        np.negative(np.abs(part, out=e), out=e)
        np.exp(e, out=e)
        np.add(e, 1, out=one_plus_e[:size])
        np.divide(1, one_plus_e[:size], out=at_least_0[:size])
        np.divide(e, one_plus_e[:size], out=e)
        e[...] = np.where(np.greater_equal(part, 0, out=mask[:size]), at_least_0[:size], e)
    return out


def tanh(x: np.ndarray) -> np.ndarray:
    """Hyperbolic tangent."""
    return np.tanh(x)


def identity(x: np.ndarray) -> np.ndarray:
    """x unchanged (the activation "none")."""
    return x


def activation_workspace(kind: str, shape: Sequence[int], itemsize: int = 4, negative_slope: float = 0.01) -> int:
    """Bytes that activation ``kind`` allocates for a C-contiguous float input of ``shape``: the
    output (none for "none", which returns its input), plus for a big map relu's block of zeros
    (kept per thread until ``release_buffers``), or sigmoid's chunk of a mask, of 1 + exp, of
    1 / (1 + exp) and of the selection (leaky_relu's as much, for a slope of 0 or below)."""
    size = math.prod(shape)
    if kind == "none":
        return 0
    extra = 0
    if size >= _CHUNK:
        selects = kind == "sigmoid" or (kind == "leaky_relu" and not negative_slope > 0)
        extra = _RELU_CHUNK * itemsize if kind == "relu" else _CHUNK * (1 + 3 * itemsize) if selects else 0
    return size * itemsize + extra + _call_bytes(itemsize)


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """exp(x) / sum(exp(x)) along ``axis``, after subtracting the maximum so nothing overflows.
    The output holds every step (no map-sized temporary)."""
    x = np.asarray(x)
    if x.dtype not in (np.float32, np.float64):
        x = x.astype(np.float64)  # as exp would compute an integer input
    out = np.subtract(x, np.max(x, axis=axis, keepdims=True))
    np.exp(out, out=out)
    out /= out.sum(axis=axis, keepdims=True)
    return out


def softmax_workspace(shape: Sequence[int], itemsize: int = 4, axis: int = -1) -> int:
    """Bytes ``softmax`` allocates: the output, and the maxima and sums along ``axis``."""
    size = math.prod(shape)
    return (size + 2 * (size // max(1, shape[axis]))) * itemsize + _call_bytes(itemsize)


ACTIVATIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "relu": relu, "leaky_relu": leaky_relu, "sigmoid": sigmoid, "tanh": tanh, "none": identity}


def flatten(x: np.ndarray, batched: bool = False) -> np.ndarray:
    """(C, H, W) -> (C*H*W,) in C order (channel slowest, as PyTorch); a batch keeps its N axis.
    A view of a C-contiguous input, a copy otherwise."""
    x = np.asarray(x)
    return x.reshape(x.shape[0], -1) if batched else x.reshape(-1)


def linear(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None = None) -> np.ndarray:
    """y = x W^T + b, as ``torch.nn.functional.linear``; x is (in,) or (N, in), W is (out, in)."""
    x = np.asarray(x)
    weight = np.asarray(weight, dtype=x.dtype)
    if weight.ndim != 2 or weight.shape[1] != x.shape[-1]:
        raise ShapeError(f"dense weight {weight.shape} does not take {x.shape[-1]} inputs; "
                         f"expected (out, {x.shape[-1]})")
    y = x @ weight.T
    if bias is not None:
        bias = np.asarray(bias, dtype=x.dtype).reshape(-1)
        if bias.shape != (weight.shape[0],):
            raise ShapeError(f"dense bias has {bias.size} values, expected {weight.shape[0]}")
        y += bias
    return y


def linear_workspace(in_shape: Sequence[int], weight_shape: Sequence[int], itemsize: int = 4,
                     weight_itemsize: int | None = None) -> int:
    """Bytes ``linear`` allocates for an input of ``in_shape`` ((in,) or (N, in)): the output, and a
    converted copy of the weights and bias when they are not in the input's dtype."""
    out = math.prod(tuple(in_shape)[:-1]) * weight_shape[0]
    copy = math.prod(weight_shape) + weight_shape[0] if weight_itemsize not in (None, itemsize) else 0
    return (out + copy) * itemsize + _call_bytes(itemsize)


def linear_kept() -> dict[str, int]:
    """What ``linear`` leaves allocated in libraries after it returns: OpenBLAS's buffers."""
    return {"blas": BLAS_BYTES}


def conv_macs(out_shape: Sequence[int], weight_shape: Sequence[int]) -> int:
    """Multiply-adds of a conv: every output cell costs C/groups * KH * KW of them."""
    return math.prod(out_shape) * math.prod(weight_shape[1:])
