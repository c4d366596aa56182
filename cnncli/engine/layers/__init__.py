"""Every layer type, one class each, registered by the names model files use (see base.py).

core.py's types load with this package; the other families (merges, activations, norms, shaping,
spatial, affine, unary) load when a model names one of their types or when a class is asked for by name.
"""

from __future__ import annotations

import importlib
from typing import Any

from .base import ALIASES, FAMILIES, REGISTRY, Layer, Shape, all_types, layer_class, register, type_names
from .core import Activation, BatchNorm, Conv2d, Dense, Dropout, Flatten, GlobalAvgPool2d, Pool2d, Softmax

_LAZY_CLASSES = {
    "merge": ("Add", "Concat", "Max", "Mean", "Min", "Mul", "Sub"),
    "activations": ("ELU", "GELU", "Hardsigmoid", "Hardswish", "Hardtanh", "Mish", "PReLU", "ReLU6", "SiLU",
                    "Softplus"),
    "norms": ("GroupNorm", "InstanceNorm2d", "LayerNorm", "LocalResponseNorm"),
    "shaping": ("ChannelShuffle", "Identity", "Pad", "Reshape", "Slice"),
    "spatial": ("AdaptivePool2d", "ConvTranspose2d", "GlobalMaxPool2d", "Upsample"),
    "affine": ("Affine",),
    "unary": ("Abs", "Erf", "Exp", "Log", "LogSoftmax", "Neg", "Pow", "Reciprocal", "Sqrt"),
}
_MODULE_OF = {name: module for module, names in _LAZY_CLASSES.items() for name in names}


def __getattr__(name: str) -> Any:  # PEP 562: a family's class imports its module
    if name in _MODULE_OF:
        return getattr(importlib.import_module(f"{__name__}.{_MODULE_OF[name]}"), name)
    if name in _LAZY_CLASSES:  # a family module itself, e.g. layers.spatial
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "ALIASES", "FAMILIES", "REGISTRY", "Layer", "Shape", "all_types", "layer_class", "register", "type_names",
    "Activation", "BatchNorm", "Conv2d", "Dense", "Dropout", "Flatten", "GlobalAvgPool2d", "Pool2d", "Softmax",
    *_MODULE_OF,
]
