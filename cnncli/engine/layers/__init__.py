"""Every layer type, one class each, registered by the names model files use (see base.py)."""

from .base import ALIASES, REGISTRY, Layer, Shape, layer_class, register, type_names
from .core import Activation, BatchNorm, Conv2d, Dense, Dropout, Flatten, GlobalAvgPool2d, Pool2d, Softmax
from .merge import Add, Concat, Mean, Mul, Sub
from .activations import ELU, GELU, Hardsigmoid, Hardswish, Hardtanh, Mish, PReLU, ReLU6, SiLU, Softplus
from .norms import GroupNorm, InstanceNorm2d, LayerNorm, LocalResponseNorm
from .shaping import ChannelShuffle, Identity, Pad
from .spatial import AdaptivePool2d, ConvTranspose2d, GlobalMaxPool2d, Upsample
from .affine import Affine

__all__ = [
    "ALIASES", "REGISTRY", "Layer", "Shape", "layer_class", "register", "type_names",
    "Activation", "BatchNorm", "Conv2d", "Dense", "Dropout", "Flatten", "GlobalAvgPool2d", "Pool2d", "Softmax",
    "Add", "Concat", "Mean", "Mul", "Sub",
    "ELU", "GELU", "Hardsigmoid", "Hardswish", "Hardtanh", "Mish", "PReLU", "ReLU6", "SiLU", "Softplus",
    "GroupNorm", "InstanceNorm2d", "LayerNorm", "LocalResponseNorm",
    "ChannelShuffle", "Identity", "Pad", "Affine",
    "AdaptivePool2d", "ConvTranspose2d", "GlobalMaxPool2d", "Upsample",
]
