"""Every layer type, one class each, registered by the names model files use (see base.py)."""

from .base import ALIASES, REGISTRY, Layer, Shape, layer_class, register, type_names
from .core import Activation, BatchNorm, Conv2d, Dense, Dropout, Flatten, GlobalAvgPool2d, Pool2d, Softmax
from .merge import Add, Concat, Mean, Mul, Sub
from .spatial import AdaptivePool2d, ConvTranspose2d, GlobalMaxPool2d, Upsample

__all__ = [
    "ALIASES", "REGISTRY", "Layer", "Shape", "layer_class", "register", "type_names",
    "Activation", "BatchNorm", "Conv2d", "Dense", "Dropout", "Flatten", "GlobalAvgPool2d", "Pool2d", "Softmax",
    "Add", "Concat", "Mean", "Mul", "Sub",
    "AdaptivePool2d", "ConvTranspose2d", "GlobalMaxPool2d", "Upsample",
]
