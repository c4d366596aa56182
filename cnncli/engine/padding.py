"""Padding a map's last two axes with PyTorch's four modes: into a new array (``pad2d``) or into a
buffer the caller holds (``_pad_into``, which the convolutions use to pad straight into their work
buffers).

Apart from geometry.py, which only works out the pads, because this is where values move: every band
of the padded array is one assignment from a view of the input, with the values of ``np.pad``.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from ..errors import ShapeError

PADDING_MODES = ("zeros", "reflect", "replicate", "circular")


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
