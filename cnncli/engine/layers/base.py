"""What every layer type is, and the registry that the model reader, summary, views and explain use.

A layer type is one class. An instance is a node of a network: it has a ``name`` (unique in its
network) and answers, from shapes alone, what it makes of its inputs; then computes it.

    types        the names model files give it ("relu6"); the first is its own
    keys         the model-file keys it reads besides name, type and inputs; ``required`` of them
                 (``type_keys`` when its types differ: maxpool2d has dilation, avgpool2d not)
    inputs       how many inputs it takes: (least, most), most None for any number
    from_spec    builds it from a model file's layer object, through a LayerSpec (io/modelfile.py)
    output_shape (*input shapes) -> shape; raises ShapeError naming what does not fit
    forward      (*inputs, batched) -> output; a map is (C, H, W), a batch (N, C, H, W)
    working_bytes (*input shapes, itemsize) -> what forward allocates at most, its output included
    params, macs(out_shape), settings() (JSON), describe() (one line for people)
    mixes_channels  True when output channel i is not input channel i (a conv, a shuffle): the
                 input's channel labels are not carried over

``register`` adds a class under each of its names. Shapes are a sample's, without the batch
dimension; ``dim`` settings count it, as the PyTorch module a file describes does (``dim=1`` is
the channels of a map). ``axis`` turns one into the other.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Protocol, Sequence

import numpy as np

from ...errors import ShapeError

if TYPE_CHECKING:
    from ...io.modelfile import LayerSpec

Shape = tuple[int, ...]
REGISTRY: dict[str, type] = {}
# Other names model files may use for a type: PyTorch's class names, lower-cased.
ALIASES = {"linear": "dense", "leakyrelu": "leaky_relu"}
# The families of types loaded on first use, by module, with the type names each registers: a run of
# the digits model or a kernel needs only core.py's, and creating a family's classes costs 1-4 ms of
# start-up. tests/test_layer_registry.py checks this table against what each module registers.
FAMILIES = {
    "merge": ("add", "mul", "sub", "mean", "max", "min", "concat"),
    "activations": ("relu6", "hardtanh", "hardswish", "hardsigmoid", "silu", "mish", "gelu", "elu", "softplus",
                    "prelu"),
    "norms": ("layernorm", "groupnorm", "instancenorm2d", "instancenorm", "lrn", "localresponsenorm"),
    "shaping": ("identity", "channel_shuffle", "pad", "slice", "reshape"),
    "spatial": ("globalmaxpool2d", "adaptiveavgpool2d", "adaptivemaxpool2d", "upsample", "upsamplingnearest2d",
                "upsamplingbilinear2d", "conv_transpose2d", "convtranspose2d"),
    "affine": ("affine",),
    "unary": ("exp", "log", "sqrt", "neg", "abs", "erf", "pow", "reciprocal", "logsoftmax"),
}
_FAMILY_OF = {name: family for family, names in FAMILIES.items() for name in names}


class Layer(Protocol):
    """What the network asks of a layer. Single-input layers take one shape and one array; merges
    take several; so the methods are typed loosely here and checked by their classes."""

    @property
    def name(self) -> str: ...

    @property
    def type(self) -> str: ...

    @property
    def output_shape(self) -> Callable[..., Shape]: ...

    @property
    def forward(self) -> Callable[..., np.ndarray]: ...

    @property
    def working_bytes(self) -> Callable[..., int]: ...

    def settings(self) -> dict[str, Any]: ...

    def describe(self) -> str: ...


def register(cls: Any) -> Any:
    """Class decorator: make ``cls`` a layer type under each of its ``types``."""
    for name in cls.types:
        known = REGISTRY.get(name)
        # A module imported again (after an import cut short) registers its own classes anew.
        if known is not None and (known.__module__, known.__qualname__) != (cls.__module__, cls.__qualname__):
            raise ValueError(f"layer type {name!r} registered twice")
        REGISTRY[name] = cls
    return cls


def layer_class(type_name: str) -> type | None:
    """The class of a model file's layer type (its family's module imported on first use), or None."""
    name = ALIASES.get(type_name, type_name)
    if name not in REGISTRY and name in _FAMILY_OF:
        import importlib

        importlib.import_module(f"{__package__}.{_FAMILY_OF[name]}")
    return REGISTRY.get(name)


def type_names() -> tuple[str, ...]:
    """Every type name and alias a model file may use, loaded or not."""
    return tuple(dict.fromkeys((*REGISTRY, *_FAMILY_OF, *ALIASES)))


def all_types() -> dict[str, type]:
    """The registry with every family loaded: each type name and its class."""
    for name in _FAMILY_OF:
        layer_class(name)
    return REGISTRY


def keys_of(cls: Any, type_name: str) -> tuple[str, ...]:
    """The model-file keys of ``type_name``, one of the types of ``cls``."""
    return getattr(cls, "type_keys", {}).get(type_name, cls.keys)


def input_counts(cls: Any) -> tuple[int, int | None]:
    return getattr(cls, "inputs", (1, 1))


class Simple:
    """Defaults for a layer with one input, no parameters and no settings."""

    types: ClassVar[tuple[str, ...]] = ()
    keys: ClassVar[tuple[str, ...]] = ()
    required: ClassVar[tuple[str, ...]] = ()
    inputs: ClassVar[tuple[int, int | None]] = (1, 1)
    view: ClassVar[bool] = False  # True when forward returns its input or a view of it: no memory of its own
    params: ClassVar[int] = 0

    @classmethod
    def from_spec(cls, spec: LayerSpec) -> Any:
        return cls(name=spec.name)  # type: ignore[call-arg]

    @property
    def type(self) -> str:
        return self.types[0]

    def macs(self, out_shape: Shape) -> int:
        return 0

    def settings(self) -> dict[str, Any]:
        return {}

    def describe(self) -> str:
        return ""


class Elementwise(Simple):
    """A layer that keeps its input's shape and makes one value of each: activations and the like.

    ``work_copies`` is how many more arrays the size of the input ``forward`` holds at once
    besides its output (temporaries of the formula)."""

    work_copies: ClassVar[int] = 1

    def output_shape(self, *shapes: Shape) -> Shape:
        return shapes[0]

    def working_bytes(self, *shapes: Shape, itemsize: int = 4) -> int:
        return (1 + self.work_copies) * map_bytes(math.prod(shapes[0]), itemsize) + (1 << 12)


def require_map(shape: Shape) -> None:
    if len(shape) != 3:
        raise ShapeError(f"takes a (C, H, W) map, got shape {shape}")


def axis(dim: int, ndim: int, batched: bool) -> int:
    """The NumPy axis of PyTorch's ``dim`` (which counts the batch) on a sample of ``ndim``
    dimensions, or on a batch of them."""
    if dim < 0:
        return dim
    return dim if batched else dim - 1


def check_dim(dim: int, ndim: int) -> None:
    """``dim`` must name a dimension of a sample: 1..ndim, or -ndim..-1 from the end."""
    if dim == 0:
        raise ShapeError("dim 0 is the batch; expected 1 (channels or features) or another dimension of a sample")
    if not -ndim <= dim <= ndim:
        raise ShapeError(f"dim {dim} is out of range for an input of {ndim} dimensions (expected 1..{ndim} "
                         f"or -{ndim}..-1, counting the batch as dim 0)")


def map_bytes(size: int, itemsize: int) -> int:
    """Bytes a map of ``size`` values takes in memory: a big one in whole pages of its own (4 KiB),
    a small one with its allocator header, rounded to 16 bytes."""
    nbytes = size * itemsize + 16
    return -(-nbytes // 4096) * 4096 if nbytes > 1 << 17 else -(-nbytes // 16) * 16


def jsonable(value: Any) -> Any:
    return value if isinstance(value, (str, int)) else [int(v) for v in value]


def pair_text(value: Sequence[int]) -> str:
    return str(value[0]) if value[0] == value[1] else ",".join(str(v) for v in value)


def padding_text(padding: Any) -> str:
    if isinstance(padding, str):
        return padding
    if isinstance(padding, int):
        return str(padding)
    values = list(padding)
    return str(values[0]) if len(set(values)) == 1 else ",".join(str(v) for v in values)
