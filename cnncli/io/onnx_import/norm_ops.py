"""ONNX's normalisations other than BatchNormalization: InstanceNormalization, LayerNormalization
(opset 17) and GroupNormalization (opset 18; scale and bias per group before opset 21, per channel
from it), as the engine's instancenorm2d, layernorm and groupnorm. Registered in ops.CONVERTERS when
imported (the package imports it)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ...engine import layers as L
from ...errors import ShapeError
from .build import Importer, Unsupported, shape_text
from .ops import converts, layer_name, require_map


def _per_channel(imp: Importer, index: int, what: str, channels: int) -> np.ndarray:
    array = imp.const(index, what)
    if array.shape != (channels,):
        raise imp.fail(f"{what} {imp.node.input[index]!r} has shape {array.shape}; expected ({channels},), one per "
                       "channel", ShapeError)
    return np.ascontiguousarray(array, dtype=np.float32)


@converts("InstanceNormalization")
def instance_norm(imp: Importer, attrs: dict[str, Any]) -> None:
    source, shape = imp.tensor(0)
    require_map(imp, shape)
    scale = _per_channel(imp, 1, "the scale", shape[0])
    bias = _per_channel(imp, 2, "the bias B", shape[0])
    imp.emit(L.InstanceNorm2d(scale, bias, float(attrs.get("epsilon", 1e-5)), name=layer_name(imp)), [source],
             imp.output())


@converts("LayerNormalization")
def layer_norm(imp: Importer, attrs: dict[str, Any]) -> None:
    """Over the axes from ``axis`` (default -1) to the last; Scale and B broadcast to them."""
    source, shape = imp.tensor(0)
    rank = len(shape) + 1
    axis = int(attrs.get("axis", -1)) % rank
    if axis == 0:
        raise Unsupported("axis 0 normalises across the batch")
    if attrs.get("stash_type", 1) != 1:
        raise Unsupported(f"stash_type {attrs['stash_type']}: cnn computes the statistics in float32 or wider")
    if len(imp.node.output) > 1 and any(imp.node.output[1:]):
        raise Unsupported("the Mean and InvStdDev outputs (training)")
    normalized = tuple(shape[axis - 1:])
    arrays: list[np.ndarray | None] = []
    for index, what in ((1, "the scale"), (2, "the bias B")):
        given = imp.optional(index, what) if index == 2 else imp.const(index, what)
        if given is None:
            arrays.append(None)
            continue
        try:
            arrays.append(np.ascontiguousarray(np.broadcast_to(given, normalized), dtype=np.float32))
        except ValueError:
            raise imp.fail(f"{what} {imp.node.input[index]!r} of shape {given.shape} does not broadcast to the "
                           f"normalised axes {normalized} of {shape_text(shape)}", ShapeError) from None
    imp.emit(L.LayerNorm(normalized, arrays[0], arrays[1], float(attrs.get("epsilon", 1e-5)), layer_name(imp)),
             [source], imp.output())


@converts("GroupNormalization")
def group_norm(imp: Importer, attrs: dict[str, Any]) -> None:
    source, shape = imp.tensor(0)
    if not shape:
        raise Unsupported("a scalar per sample")
    groups = int(attrs.get("num_groups", 0))
    channels = shape[0]
    if groups < 1 or channels % groups:
        raise imp.fail(f"num_groups {groups} does not divide the {channels} channels", ShapeError)
    if attrs.get("stash_type", 1) != 1:
        raise Unsupported(f"stash_type {attrs['stash_type']}: cnn computes the statistics in float32 or wider")
    per = groups if imp.opset < 21 else channels  # opset 18's scale and bias are per group; 21's per channel
    scale = _per_channel(imp, 1, "the scale", per)
    bias = _per_channel(imp, 2, "the bias", per)
    if per != channels:
        scale, bias = np.repeat(scale, channels // groups), np.repeat(bias, channels // groups)
    imp.emit(L.GroupNorm(groups, scale, bias, float(attrs.get("epsilon", 1e-5)), channels, layer_name(imp)),
             [source], imp.output())
