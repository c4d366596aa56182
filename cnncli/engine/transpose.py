"""Transposed convolution, as torch.nn.ConvTranspose2d: the gradient of conv2d with respect to its
input, used to upsample with learned weights.

Each input cell scatters its value times the kernel into the output: input cell (h, w) adds
x[c, h, w] * weight[c, f, i, j] to output cell (h*stride - padding + i*dilation, likewise w), for
every tap (i, j). As a computation: one matrix product gives every cell's contribution to every
tap ("columns"), and the taps are added into the output with strided slices (col2im, a loop
over the KH*KW taps only):

    columns = weight^T @ x      (F*KH*KW, C) @ (C, H*W) per group
    out[:, :, i*d - p :: s, j*d - p :: s] += columns[:, i, j]      for each tap (i, j), clipped

Work is done in tiles of input rows and samples, so the columns never exceed COLUMNS_ELEMENTS.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from ..errors import ShapeError
from .scratch import CALL_BYTES

Pair = tuple[int, int]
# At most this many values of columns at once (4 MiB of float32): a (64, 56, 56) -> 32-channel 3x3
# layer fits in one tile, a 4x4 one takes two bands of rows. Measured on 2 shared cores, one BLAS
# thread: 4 MiB tiles were 10-40% faster than 16 MiB ones (cache), smaller ones no faster.
COLUMNS_ELEMENTS = 1 << 20


def conv_transpose_output_size(size: int, kernel: int, stride: int, padding: int, output_padding: int,
                               dilation: int) -> int:
    """(size - 1)*stride - 2*padding + dilation*(kernel - 1) + output_padding + 1."""
    return (size - 1) * stride - 2 * padding + dilation * (kernel - 1) + output_padding + 1


def conv_transpose_geometry(in_shape: Sequence[int], weight_shape: Sequence[int], stride: Pair = (1, 1),
                            padding: Pair = (0, 0), output_padding: Pair = (0, 0), dilation: Pair = (1, 1),
                            groups: int = 1) -> tuple[int, int, int]:
    """Check a transposed conv's settings against a (C, H, W) input; return (F, H_out, W_out).

    Raises ShapeError for anything PyTorch refuses: weight not (C, F/groups, KH, KW), channels
    that do not match or do not divide by groups, a stride or dilation below 1, a negative padding,
    an output_padding not below stride or dilation, an output below 1x1.
    """
    if len(weight_shape) != 4:
        raise ShapeError(f"weight must be (in_channels, out_channels/groups, KH, KW), got shape {tuple(weight_shape)}")
    channels, height, width = in_shape
    in_channels, per_group, kh, kw = weight_shape
    if groups < 1 or in_channels % groups:
        raise ShapeError(f"groups={groups} must divide the {in_channels} input channels")
    if in_channels != channels:
        raise ShapeError(f"weight {tuple(weight_shape)} takes {in_channels} input channels, the input has {channels}")
    for name, value, least in (("stride", stride, 1), ("dilation", dilation, 1), ("padding", padding, 0),
                               ("output_padding", output_padding, 0)):
        if min(value) < least:
            raise ShapeError(f"must be at least {least}, got {_text(value)}", source=name)
    for axis in (0, 1):
        if output_padding[axis] >= stride[axis] and output_padding[axis] >= dilation[axis]:
            raise ShapeError(f"output_padding {_text(output_padding)} must be smaller than either stride "
                             f"{_text(stride)} or dilation {_text(dilation)}", source="output_padding")
    out_h = conv_transpose_output_size(height, kh, stride[0], padding[0], output_padding[0], dilation[0])
    out_w = conv_transpose_output_size(width, kw, stride[1], padding[1], output_padding[1], dilation[1])
    if out_h < 1 or out_w < 1:
        spread = (out_h + 2 * padding[0], out_w + 2 * padding[1])
        raise ShapeError(f"padding {_text(padding)} on each side crops the {spread[0]}x{spread[1]} cells that the "
                         f"{height}x{width} input spreads to down to {out_h}x{out_w}; expected at least 1x1")
    return per_group * groups, out_h, out_w


def _text(value: Pair) -> str:
    return str(value[0]) if value[0] == value[1] else f"{value[0]},{value[1]}"


def _tap_span(first: int, count: int, tap: int, stride: int, padding: int, dilation: int,
              out: int) -> tuple[slice, slice] | None:
    """For input cells first..first+count-1 along one axis and kernel tap ``tap``: the slice of
    those cells that land inside the output, and the strided output slice they land on; None when
    none do. Cell h lands on h*stride + tap*dilation - padding."""
    offset = tap * dilation - padding
    low = max(first, -(offset // stride))  # first h with h*stride + offset >= 0
    high = min(first + count - 1, (out - 1 - offset) // stride)  # last h with h*stride + offset <= out - 1
    if low > high:
        return None
    return (slice(low - first, high - first + 1),
            slice(low * stride + offset, high * stride + offset + 1, stride))


def _tiles(n: int, height: int, row_columns: int) -> tuple[int, int]:
    """(samples, rows) of a tile whose columns hold at most COLUMNS_ELEMENTS values (one row at least)."""
    rows = max(1, min(height, COLUMNS_ELEMENTS // max(1, row_columns)))
    samples = max(1, min(n, COLUMNS_ELEMENTS // max(1, row_columns * height))) if rows == height else 1
    return samples, rows


def conv_transpose2d(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None = None, stride: Pair = (1, 1),
                     padding: Pair = (0, 0), output_padding: Pair = (0, 0), groups: int = 1,
                     dilation: Pair = (1, 1)) -> np.ndarray:
    """Transposed 2-D convolution, as torch.nn.functional.conv_transpose2d (PyTorch's argument order).

    Parameters
    ----------
    x : (C, H, W) or (N, C, H, W) array
    weight : (C, F/groups, KH, KW) array, as PyTorch stores it (input channels first)
    bias : (F,) array, optional
    stride, padding, output_padding, dilation : (rows, cols); output_padding adds cells at the
        bottom and right only, and must be below stride or dilation
    groups : C and F both divide by it; group g maps input channels g*C/groups.. to outputs g*F/groups..

    Returns
    -------
    (F, H_out, W_out) or (N, F, H_out, W_out) array of x's dtype, with
    H_out = (H - 1)*stride - 2*padding + dilation*(KH - 1) + output_padding + 1, likewise W_out.

    Raises
    ------
    ShapeError
        As ``conv_transpose_geometry``.
    """
    x = np.asarray(x)
    batched = x.ndim == 4
    if not batched:
        x = x[None]  # (1, C, H, W)
    n, channels, height, width = x.shape
    n_filters, out_h, out_w = conv_transpose_geometry(x.shape[1:], weight.shape, stride, padding, output_padding,
                                                      dilation, groups)
    _, per_group, kh, kw = weight.shape
    group_channels = channels // groups
    # (C, F/g, KH, KW) -> (g, C/g, F/g*KH*KW) -> (g, F/g*KH*KW, C/g): each group's weight^T, contiguous
    columns_weight = np.ascontiguousarray(
        weight.astype(x.dtype, copy=False).reshape(groups, group_channels, per_group * kh * kw).transpose(0, 2, 1))
    out = np.zeros((n, n_filters, out_h, out_w), dtype=x.dtype)
    samples, rows = _tiles(n, height, n_filters * kh * kw * width)
    buffer = np.empty(samples * n_filters * kh * kw * rows * width, dtype=x.dtype)
    for first_sample in range(0, n, samples):
        tile_n = min(samples, n - first_sample)
        for first_row in range(0, height, rows):
            tile_h = min(rows, height - first_row)
            tile = x[first_sample:first_sample + tile_n, :, first_row:first_row + tile_h]
            tile = tile.reshape(tile_n, groups, group_channels, tile_h * width)  # (n, g, C/g, h*W): a copy if banded
            columns = buffer[:tile_n * n_filters * kh * kw * tile_h * width].reshape(
                tile_n, groups, per_group * kh * kw, tile_h * width)  # (n, g, F/g*KH*KW, h*W)
            np.matmul(columns_weight, tile, out=columns)
            del tile
            columns = columns.reshape(tile_n, n_filters, kh, kw, tile_h, width)  # (n, F, KH, KW, h, W)
            target = out[first_sample:first_sample + tile_n]
            for i in range(kh):
                span_h = _tap_span(first_row, tile_h, i, stride[0], padding[0], dilation[0], out_h)
                if span_h is None:
                    continue
                for j in range(kw):
                    span_w = _tap_span(0, width, j, stride[1], padding[1], dilation[1], out_w)
                    if span_w is not None:
                        target[:, :, span_h[1], span_w[1]] += columns[:, :, i, j, span_h[0], span_w[0]]
    if bias is not None:
        out += np.asarray(bias, dtype=x.dtype)[:, None, None]
    return out if batched else out[0]


def conv_transpose2d_workspace(in_shape: Sequence[int], weight_shape: Sequence[int], stride: Pair = (1, 1),
                               padding: Pair = (0, 0), output_padding: Pair = (0, 0), groups: int = 1,
                               dilation: Pair = (1, 1), itemsize: int = 4, weight_itemsize: int | None = None) -> int:
    """Bytes ``conv_transpose2d`` allocates at most for an input of ``in_shape`` (C, H, W) or
    (N, C, H, W): the output, the columns of one tile (``_tiles``), the tile's input rows when it
    is a band (a copy), the weight transposed (and converted when its dtype differs)."""
    shape = tuple(in_shape)
    n = shape[0] if len(shape) == 4 else 1
    channels, height, width = shape[-3:]
    n_filters, out_h, out_w = conv_transpose_geometry(shape[-3:], weight_shape, stride, padding, output_padding,
                                                      dilation, groups)
    kh, kw = weight_shape[2:]
    samples, rows = _tiles(n, height, n_filters * kh * kw * width)
    elements = n * n_filters * out_h * out_w + samples * n_filters * kh * kw * rows * width
    elements += samples * channels * rows * width  # a copy when the tile is a band, or x is not contiguous
    weights = math.prod(weight_shape)
    elements += weights * (1 if weight_itemsize in (None, itemsize) else 2) + n_filters
    return elements * itemsize + CALL_BYTES + 3 * np.getbufsize() * itemsize


def conv_transpose_macs(in_shape: Sequence[int], weight_shape: Sequence[int]) -> int:
    """Multiply-adds of a transposed conv, as fvcore counts them: each input value times the
    F/groups * KH * KW weights it scatters with (N*C*H*W * F/groups * KH * KW)."""
    return math.prod(in_shape) * math.prod(weight_shape[1:])
