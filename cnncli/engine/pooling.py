"""Pooling over the last two axes, as PyTorch computes it: max and average pooling with padding,
dilation and ceil_mode, and global average pooling, each with its ``*_workspace`` twin.

A pool is a maximum or a sum over strided slices, one per kernel tap, never a loop over pixels:
small inputs are padded once, big ones pooled in place with each tap clipped to the cells it covers,
and the common 2x2 stride-2 max-pool runs in two long passes. ``pool_geometry`` checks the settings
before any of it, so a network can be checked before it runs.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from ..errors import ShapeError
from .geometry import Pair, _as_batch, _positive, pair
from .padding import pad2d
from .scratch import _call_bytes


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
