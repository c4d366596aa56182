"""Naive loop implementations of PyTorch's layer definitions: the tests' independent oracle.

Deliberately slow and literal: one Python loop per output cell, written from the formulas in
PyTorch's documentation, sharing no code with cnncli.engine.ops.
"""

import math

import numpy as np


def conv2d(x, weight, bias=None, stride=(1, 1), pads=(0, 0, 0, 0), dilation=(1, 1), groups=1):
    """Cross-correlation of a (C, H, W) map with zero padding (top, bottom, left, right)."""
    top, bottom, left, right = pads
    xp = np.zeros((x.shape[0], x.shape[1] + top + bottom, x.shape[2] + left + right))
    xp[:, top:top + x.shape[1], left:left + x.shape[2]] = x
    filters, group_channels, kh, kw = weight.shape
    per_group = filters // groups
    out_h = (xp.shape[1] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    out_w = (xp.shape[2] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    out = np.zeros((filters, out_h, out_w))
    for f in range(filters):
        g = f // per_group
        for i in range(out_h):
            for j in range(out_w):
                total = 0.0 if bias is None else bias[f]
                for c in range(group_channels):
                    for a in range(kh):
                        for b in range(kw):
                            total += weight[f, c, a, b] * xp[g * group_channels + c, i * stride[0] + a * dilation[0],
                                                              j * stride[1] + b * dilation[1]]
                out[f, i, j] = total
    return out


def pool2d(x, kind, kernel, stride, padding, dilation=(1, 1), ceil_mode=False, count_include_pad=True):
    """Max or average pooling of a (C, H, W) map, window by window, with PyTorch's size rules."""
    def out_size(size, k, s, p, d):
        span = size + 2 * p - d * (k - 1) - 1
        n = (math.ceil(span / s) if ceil_mode else span // s) + 1
        if ceil_mode and (n - 1) * s >= size + p:
            n -= 1
        return n

    channels, height, width = x.shape
    out_h = out_size(height, kernel[0], stride[0], padding[0], dilation[0])
    out_w = out_size(width, kernel[1], stride[1], padding[1], dilation[1])
    out = np.zeros((channels, out_h, out_w))
    for c in range(channels):
        for i in range(out_h):
            for j in range(out_w):
                r0, c0 = i * stride[0] - padding[0], j * stride[1] - padding[1]
                values, cells = [], 0
                for a in range(kernel[0]):
                    for b in range(kernel[1]):
                        r, q = r0 + a * dilation[0], c0 + b * dilation[1]
                        inside_pad = -padding[0] <= r < height + padding[0] and -padding[1] <= q < width + padding[1]
                        if 0 <= r < height and 0 <= q < width:
                            values.append(x[c, r, q])
                            cells += 1
                        elif inside_pad and count_include_pad:
                            cells += 1
                if kind == "max":
                    out[c, i, j] = max(values)
                else:
                    out[c, i, j] = sum(values) / cells
    return out
