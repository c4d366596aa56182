"""Convolution as shift-and-add over kernel taps: each tap multiplies a shifted view of the padded
input by one weight and adds it to the output, so nothing is copied into windows.

Two forms: ``_conv_taps`` for any groups, over row strips of the output that stay in cache (run on
threads for big maps), which wins when a group has one or two filters over a big output; and
``_conv_depthwise`` for one input channel per group (MobileNet's depthwise layers), over flat rows
of the padded input's stride phases in blocks of channels. conv.py chooses between these and the
matrix products of conv_gemm.py, and counts their memory from the plans here.
"""

from __future__ import annotations

import numpy as np

from .geometry import Pair
from .padding import _pad_into, pad2d
from .scratch import _buffer, _run_strips, _strip_workers

_STRIP_ELEMENTS = 1 << 16  # a shift-and-add strip of output stays in L2 cache
_DEPTHWISE_BLOCK = 1 << 16  # cells of one depthwise block's products (256 KiB; with the partial sum, in L2)
_DEPTHWISE_GATHER_LENGTH = 1024  # cells per channel up to which a depthwise block gathers its taps


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


def _taps_plan(n: int, n_filters: int, out_h: int, out_w: int) -> tuple[int, int]:
    """Output rows per shift-and-add strip, and how many strips run at once (one per thread)."""
    rows = max(1, _STRIP_ELEMENTS // max(1, n * n_filters * out_w))
    return rows, _strip_workers(-(-out_h // rows), n * n_filters * out_h * out_w)


def _depthwise_plan(channels: int, hp: int, wp: int, stride: Pair, out_h: int, out_w: int) -> tuple[int, int, int, int]:
    """The layout of ``_conv_depthwise``: the padded input split into stride phases of (Hq, Wq) cells,
    the flat length of one channel's products (out_h rows of Wq cells) and the channels per block
    (each block's products and their partial sum stay in cache: about _DEPTHWISE_BLOCK cells, a
    quarter of that when the block gathers its taps, nine copies of it: 10.8-11.3 vs 12.2-12.6 ms
    over MobileNetV2's small depthwise layers)."""
    (sh, sw) = stride
    hq, wq = -(-hp // sh), -(-wp // sw)
    length = out_h * wq
    cells = _DEPTHWISE_BLOCK // 4 if _depthwise_gathers(length) else _DEPTHWISE_BLOCK
    return hq, wq, length, max(1, min(channels, cells // length))


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
