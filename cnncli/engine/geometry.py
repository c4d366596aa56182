"""The arithmetic of windows over a map, before any value moves: settings as (rows, cols) pairs,
padding settings resolved to (top, bottom, left, right), output sizes, a conv's settings checked
against its input (``conv_geometry``, so a whole network is checked before it runs), its
multiply-adds, and a map viewed as a batch of one.

conv, pooling and the layers read their shapes here; nothing here allocates more than a shape.
"""

from __future__ import annotations

import math
from typing import Sequence, Union

import numpy as np

from ..errors import ShapeError
from .padding import PADDING_MODES, _check_pad_mode

Pair = tuple[int, int]
Padding = Union[str, int, Sequence[int]]


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


def conv_macs(out_shape: Sequence[int], weight_shape: Sequence[int]) -> int:
    """Multiply-adds of a conv: every output cell costs C/groups * KH * KW of them."""
    return math.prod(out_shape) * math.prod(weight_shape[1:])
