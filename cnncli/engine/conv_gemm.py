"""Convolution as matrix products (GEMM), the method for most layers: the weights (F, C*KH*KW) times
the input's windows laid out as a matrix, in blocks that bound the memory.

Three layouts, each with the plan that cuts its blocks (conv.py counts a conv's memory from the same
plans): a 1x1 kernel at stride 1 uses the input's own layout (``_conv_gemm``); at stride 1 on big
maps, one product per kernel row over the padded rows, copying only the KW column shifts
(``_conv_gemm_rows``); strided convs and small maps copy whole windows, im2col
(``_conv_gemm_windows``). Where it is cheaper than a pass over the output, the bias rides along as one
more column of weights (``_folds_bias``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence, cast

import numpy as np
from numpy.lib.stride_tricks import as_strided, sliding_window_view

from . import scratch
from .geometry import Pair
from .padding import _pad_into, pad2d
from .scratch import _buffer


def _conv_gemm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None, pads, padding_mode: str, geometry,
               out: np.ndarray) -> None:
    """Matrix products (F, C*KH*KW) @ (C*KH*KW, rows*W) per block of output rows, written to ``out``."""
    out_h, out_w, stride, _ = geometry
    if _is_pointwise(weight.shape, stride, pads):  # 1x1: the input's own layout is the matrix
        n_filters, channels, cells = weight.shape[0], x.shape[1], out_h * out_w
        flat_weight = weight.reshape(n_filters, -1)  # F, C
        folded = bias is not None and _folds_bias(channels, n_filters, cells)
        if folded:
            flat_weight = _with_bias(flat_weight, cast(np.ndarray, bias))  # F, C+1
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
    if _uses_windows(stride, hp, wp, out_h, out_w, x.shape[1] * weight.shape[3]):
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
    budget = scratch.IM2COL_ELEMENTS // max(1, channels * kw * wp, n_filters * wp)  # padded rows per product
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
    if n > 1 and 2 * widest * pixels <= scratch.IM2COL_ELEMENTS:
        images = min(n, scratch.IM2COL_ELEMENTS // (widest * pixels))
        return _WindowsPlan(images, out_h, depth * images * pixels, n_filters * images * pixels)
    budget = min(scratch.IM2COL_ELEMENTS, WINDOWS_BLOCK_ELEMENTS)
    rows = max(1, min(out_h, budget // max(1, depth * out_w)))
    return _WindowsPlan(0, rows, depth * rows * out_w, 0)


def _is_pointwise(weight_shape: Sequence[int], stride: Pair, pads: Sequence[int]) -> bool:
    """A 1x1 kernel at stride 1 without padding: each image is one product (F, C) @ (C, H*W), no copy."""
    return tuple(weight_shape[2:]) == (1, 1) and stride == (1, 1) and not any(pads)


def _uses_windows(stride: Pair, hp: int, wp: int, out_h: int, out_w: int, row_depth: int) -> bool:
    """Whether the GEMM path copies whole windows (im2col) rather than column shifts per kernel row.

    Strided convs always do. At stride 1 the per-row products compute every padded column and,
    stacked, every padded row, which costs little on big maps but 1.3x (14x14, padding 1) to 1.65x
    (7x7) the cells on small ones, and rearrange the weights by kernel row on every call (4 ms
    for ResNet's 512 x 512 x 3 x 3); a small map whose padded area exceeds its output's by a fifth
    takes the windows instead (2.7 vs 8.5 ms on 512 x 7 x 7, 2.1 vs 3.8 ms on 256 x 14 x 14), and
    so does any map of at most 32 x 32 outputs, where one long product beats three short ones and
    their sums (128 x 28 x 28: 2.2-2.3 vs 2.5-2.7 ms, on one thread or two). So does a kernel row
    over few channels (``row_depth`` = C*KW of at most 24), whose products are too thin for BLAS:
    VGG's first conv, 3 -> 64 channels on 224 x 224, 1.85 vs 7.1 ms (one long product over 27 rows
    against three over 9 and their sums); 8 channels 2.5 vs 2.8 ms, 16 channels 5.2 vs 4.1.
    """
    if stride != (1, 1) or row_depth <= 24:
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
    if folded:  # a row of ones under the windows meets the bias as the weights' last column
        flat_weight = _with_bias(flat_weight, cast(np.ndarray, bias))  # F, C*KH*KW + 1
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
