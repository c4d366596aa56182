"""Pure NumPy layer functions, with PyTorch's semantics and argument names: the one import for all of
them (``from cnncli.engine import ops``; ``ops.conv2d``, ``ops.max_pool2d``, ``ops.relu``, ...).

Feature maps are (C, H, W); batches are (N, C, H, W). Conv weights are (F, C/groups, KH, KW)
with bias (F,); dense weights are (out, in). Every function works in the floating dtype of its
input (float32 unless the caller chose float64) and never loops in Python over pixels: convolution
runs either as shift-and-add over kernel taps in row strips (few channels) or as one matrix product
over a read-only window view (many channels); pooling is a maximum or sum over strided slices.

The code lives in focused modules, re-exported here:

    geometry     settings as pairs, padding settings resolved to pads, output sizes, conv checks
    padding      pad2d and its four modes
    conv         conv2d: the method choice, its workspace and kept formulas, the unrolled matrix
    conv_gemm    the matrix-product methods (1x1, per kernel row, im2col windows), bias folding
    conv_taps    shift-and-add over taps in row strips, and depthwise over stride phases
    scratch      work buffers kept per thread, strips on threads, per-call and library bytes
    pooling      max, average and global average pooling
    activations  relu, leaky_relu, sigmoid, tanh, softmax
    dense        flatten, linear, inference batch norm

A constant re-exported here is a copy: code reads it where it is defined (``scratch.IM2COL_ELEMENTS``),
so that is where to change it.
"""

from __future__ import annotations

from .activations import (ACTIVATIONS, activation_workspace, identity, leaky_relu, relu, sigmoid, softmax,
                          softmax_workspace, tanh)
from .conv import Method, conv2d, conv2d_kept, conv2d_method, conv2d_workspace, unrolled_conv_matrix
from .conv_gemm import WINDOWS_BLOCK_ELEMENTS
from .dense import batch_norm, batch_norm_terms, batch_norm_workspace, flatten, linear, linear_kept, linear_workspace
from .geometry import Padding, Pair, conv_geometry, conv_macs, conv_output_size, conv_padding, pair
from .padding import PADDING_MODES, pad2d, pad2d_workspace
from .pooling import (avg_pool2d, global_avg_pool2d, global_avg_pool2d_workspace, max_pool2d, pool2d_workspace,
                      pool_geometry, pool_output_size)
from .scratch import BLAS_BYTES, CALL_BYTES, IM2COL_ELEMENTS, THREAD_BYTES, THREAD_POOL_BYTES, release_buffers

__all__ = [
    # geometry and padding
    "Pair", "Padding", "pair", "conv_padding", "conv_output_size", "conv_geometry", "conv_macs",
    "PADDING_MODES", "pad2d", "pad2d_workspace",
    # convolution
    "Method", "conv2d", "conv2d_workspace", "conv2d_kept", "conv2d_method", "unrolled_conv_matrix",
    "WINDOWS_BLOCK_ELEMENTS",
    # work buffers and memory accounting
    "IM2COL_ELEMENTS", "CALL_BYTES", "BLAS_BYTES", "THREAD_POOL_BYTES", "THREAD_BYTES", "release_buffers",
    # pooling
    "pool_output_size", "pool_geometry", "max_pool2d", "avg_pool2d", "pool2d_workspace", "global_avg_pool2d",
    "global_avg_pool2d_workspace",
    # activations and softmax
    "relu", "leaky_relu", "sigmoid", "tanh", "identity", "ACTIVATIONS", "activation_workspace", "softmax",
    "softmax_workspace",
    # dense and batch norm
    "flatten", "linear", "linear_workspace", "linear_kept", "batch_norm_terms", "batch_norm",
    "batch_norm_workspace",
]
