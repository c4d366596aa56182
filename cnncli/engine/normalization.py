"""Normalisations that use each input's own statistics, as PyTorch computes them at inference:
layer norm, group norm, instance norm, and AlexNet's local response norm.

Statistics are two-pass in the input's dtype (the mean, then the mean of squared deviations:
NumPy's pairwise sums along contiguous rows), with the biased variance, as PyTorch. Each function
holds its output, one more array of the input's size and the statistics (``norm_workspace``).
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from .layers.base import map_bytes
from .scratch import _call_bytes


def _standardize(rows: np.ndarray, eps: float) -> np.ndarray:
    """(x - mean) / sqrt(var + eps) along the last axis of ``rows`` (..., K): a new array."""
    out = rows - rows.mean(axis=-1, keepdims=True)
    var = np.square(out).mean(axis=-1, keepdims=True)  # ..., 1: the biased variance
    var += eps
    np.sqrt(var, out=var)
    out /= var
    return out


def _affine(out: np.ndarray, weight: np.ndarray | None, bias: np.ndarray | None, shape: tuple[int, ...]) -> None:
    """out * weight + bias in place, ``weight`` and ``bias`` reshaped to ``shape`` to broadcast."""
    if weight is not None:
        out *= np.asarray(weight, dtype=out.dtype).reshape(shape)
    if bias is not None:
        out += np.asarray(bias, dtype=out.dtype).reshape(shape)


def layer_norm(x: np.ndarray, normalized_ndim: int, weight: np.ndarray | None = None,
               bias: np.ndarray | None = None, eps: float = 1e-5) -> np.ndarray:
    """Normalise over the last ``normalized_ndim`` dimensions, as torch.nn.LayerNorm; ``weight``
    and ``bias`` have the shape of those dimensions (PyTorch's normalized_shape). Whether ``x``
    is one sample or a batch makes no difference."""
    normalized = x.shape[x.ndim - normalized_ndim:]
    out = _standardize(x.reshape(-1, math.prod(normalized)), eps)  # rows, K
    out = out.reshape(x.shape)
    _affine(out, weight, bias, normalized)
    return out


def group_norm(x: np.ndarray, num_groups: int, weight: np.ndarray | None = None, bias: np.ndarray | None = None,
               eps: float = 1e-5, batched: bool = False) -> np.ndarray:
    """Normalise each group of ``num_groups`` consecutive channels of each sample over its channels
    and positions, as torch.nn.GroupNorm; ``weight`` and ``bias`` are per channel (C,). ``x`` is a
    sample (C, ...) or, ``batched``, (N, C, ...)."""
    sample = x.shape[1:] if batched else x.shape
    n = x.shape[0] if batched else 1
    out = _standardize(x.reshape(n, num_groups, -1), eps)  # N, G, C/G * H * W
    out = out.reshape(x.shape)
    _affine(out, weight, bias, (sample[0],) + (1,) * (len(sample) - 1))  # C, 1, 1 on a map
    return out


def instance_norm(x: np.ndarray, weight: np.ndarray | None = None, bias: np.ndarray | None = None,
                  eps: float = 1e-5, running_mean: np.ndarray | None = None, running_var: np.ndarray | None = None,
                  batched: bool = False) -> np.ndarray:
    """Normalise each channel of each sample over its positions, as torch.nn.InstanceNorm2d in eval
    mode: with the map's own statistics (track_running_stats=False, PyTorch's default), or with
    ``running_mean`` and ``running_var`` (C,) when given, as batch norm. ``weight`` and ``bias``
    are per channel (affine=True)."""
    channels = x.shape[1] if batched else x.shape[0]
    shape = (channels,) + (1,) * (x.ndim - (2 if batched else 1))  # C, 1, 1
    if running_mean is None or running_var is None:
        out = group_norm(x, channels, None, None, eps, batched)
    else:
        out = np.subtract(x, np.asarray(running_mean, dtype=x.dtype).reshape(shape))
        scale = np.sqrt(np.asarray(running_var, dtype=x.dtype) + np.asarray(eps, dtype=x.dtype))
        out /= scale.reshape(shape)
    _affine(out, weight, bias, shape)
    return out


def local_response_norm(x: np.ndarray, size: int, alpha: float = 1e-4, beta: float = 0.75, k: float = 1.0,
                        batched: bool = False) -> np.ndarray:
    """x / (k + alpha / size * sum of x^2 over ``size`` neighbouring channels)^beta, as
    torch.nn.LocalResponseNorm (AlexNet's): channel c sums channels c - size//2 .. c + (size-1)//2,
    those past either end counting as 0, and alpha is divided by ``size`` whatever the number of
    channels summed. ``x`` is a sample (C, ...) or, ``batched``, (N, C, ...)."""
    axis = 1 if batched else 0
    channels = x.shape[axis]
    squares = np.square(x)
    moved_squares = np.moveaxis(squares, axis, 0)  # C, ...: a view
    out = np.zeros_like(x)
    moved = np.moveaxis(out, axis, 0)
    before, after = size // 2, (size - 1) // 2
    for offset in range(-min(before, channels - 1), min(after, channels - 1) + 1):  # window offsets, not pixels
        # channel c adds the square of channel c + offset, where that exists
        moved[max(0, -offset):channels - max(0, offset)] += moved_squares[max(0, offset):channels + min(0, offset)]
    del squares, moved_squares
    out *= alpha / size
    out += k
    np.power(out, beta, out=out)
    np.divide(x, out, out=out)
    return out


def norm_workspace(shape: Sequence[int], itemsize: int = 4, statistics: int = 0, copies: int = 1) -> int:
    """Bytes a function of this module allocates for an input of ``shape``: its output, ``copies``
    more arrays as large (one; none for instance_norm with running statistics), ``statistics``
    values of each of two statistics, and NumPy's call buffers."""
    size = math.prod(shape)
    return ((1 + copies) * map_bytes(size, itemsize) + 2 * map_bytes(statistics, itemsize)
            + _call_bytes(itemsize))
