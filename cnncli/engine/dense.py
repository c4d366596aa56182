"""Flatten and the dense layer it feeds (``linear``: x W^T + b, as torch.nn.functional.linear), and
inference batch norm (a scale and a shift per channel, from running statistics): the layers that
apply stored weights without windows. Each has its ``*_workspace`` twin, and linear its ``*_kept``.

Batch norm is here, not in normalization.py, whose norms use each input's own statistics.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from ..errors import ShapeError
from .scratch import BLAS_BYTES, _call_bytes


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
