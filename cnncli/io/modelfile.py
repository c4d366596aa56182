"""Model files: a whole network, the input it expects and its class labels, in one JSON file.

    {"format": "cnn-model", "version": 1, "name": "digits", "description": "...",
     "input": {"size": [8, 8], "color": "gray", "scale": "unit", "invert": true,
               "mean": [0.0], "std": [1.0]},
     "labels": ["0", "1", ...], "weights": "digits.npz",
     "layers": [{"name": "conv1", "type": "conv2d", "out_channels": 16, "kernel_size": 3,
                 "padding": 1}, {"name": "bn1", "type": "batchnorm2d"}, ...],
     "metadata": {...}}

Weights are inline (``weight``, ``bias``, ``running_mean``, ``running_var`` keys of a layer) or
in a .npz beside the file, keyed by PyTorch's state_dict names: ``conv1.weight`` (F, C, KH, KW),
``conv1.bias``, ``fc1.weight`` (out, in), ``bn1.running_mean``... The whole network is built and
every weight checked against the shape the layers before it imply before anything runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..engine import graph as layers, ops
from ..display import shown
from ..errors import ShapeError, SpecError
from .images import LoadedImage, array_size, resize
from .reading import load_npz, read_bytes
from .limits import DEFAULT_LIMITS, Limits
from .jsonspec import Reader, loads
from .kernels import parse_conv_settings

MODEL_FORMAT = "cnn-model"
MODEL_VERSION = 1
BUNDLED = Path(__file__).parent.parent / "models"
TOP_KEYS = ("format", "version", "name", "description", "input", "labels", "weights", "layers", "metadata")
INPUT_KEYS = ("size", "color", "scale", "invert", "mean", "std")
MAX_SIDE = 1 << 14
# Layers in one model file. Real networks fit with room to spare: ResNet-152 or DenseNet-201 exported
# node by node has 500 to 1,000 nodes, EfficientNet-B7 about 2,000. 300,000 relu layers ended in an
# internal error after 5.8 GB.
MAX_LAYERS = 10_000


@dataclass(frozen=True)
class InputSpec:
    """What the network takes: (H, W), gray or rgb, raw 0..255 or unit 0..1, inverted or not, and a
    per-channel normalisation (x - mean) / std applied last."""

    size: tuple[int, int]
    color: str = "gray"
    scale: str = "unit"
    invert: bool = False
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)

    @property
    def channels(self) -> int:
        return 3 if self.color == "rgb" else 1

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.channels, *self.size)

    @property
    def normalises(self) -> bool:
        return any(self.mean) or any(s != 1 for s in self.std)

    def apply(self, image: LoadedImage) -> LoadedImage:
        """The image as the network takes it: resized, inverted and normalised, each step noted."""
        array, notes, file_size = image.array, list(image.notes), None
        if array.shape[1:] != self.size:
            array, how = resize(array, self.size)
            file_size = image.array.shape[2], image.array.shape[1]
            notes.append(f"resized {array_size(image.array)} -> {self.size[1]}x{self.size[0]} ({how})")
        if self.invert:
            array = (1 if self.scale == "unit" else 255) - array
            notes.append(f"inverted ({'1' if self.scale == 'unit' else '255'} - x)")
        if self.normalises:
            mean = np.asarray(self.mean, dtype=array.dtype)[:, None, None]
            std = np.asarray(self.std, dtype=array.dtype)[:, None, None]
            with np.errstate(all="ignore"):  # a tiny std overflows to inf, which the run warns about
                array = (array - mean) / std
            notes.append(f"normalised (x - {_numbers(self.mean)}) / {_numbers(self.std)}")
        return replace(image, array=np.ascontiguousarray(array, dtype=image.array.dtype), notes=tuple(notes),
                       file_size=file_size or image.file_size)

    def apply_bytes(self, array: np.ndarray) -> int:
        """An upper estimate of the memory alive at once while ``apply`` makes ``array`` (C, H, W) the
        network's input: the array, one plane and its Pillow copy, the resized planes stacked, and
        the inverted and normalised copies."""
        channels, height, width = array.shape
        out = channels * self.size[0] * self.size[1]
        return array.nbytes + 2 * 4 * height * width + 2 * 4 * out + 3 * array.itemsize * out + (1 << 20)

    def describe(self) -> str:
        parts = [f"{self.size[1]}x{self.size[0]} {self.color}", "0..1" if self.scale == "unit" else "0..255"]
        if self.invert:
            parts.append("inverted")
        if self.normalises:
            parts.append(f"(x - {_numbers(self.mean)}) / {_numbers(self.std)}")
        return ", ".join(parts)


@dataclass(frozen=True, eq=False, repr=False)
class Model:
    name: str
    input: InputSpec
    labels: tuple[str, ...]
    network: layers.Network
    source: str  # the model file
    description: str = ""
    weights_source: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    paths: tuple[Path, ...] = ()  # the files read: the model's own and its weights

    @property
    def params(self) -> int:
        return sum(getattr(layer, "params", 0) for layer in self.network.layers)


def bundled_models() -> list[Path]:
    """The model files that ship with cnn, by name."""
    return sorted(BUNDLED.glob("*.json"))


def resolve_model(spec: str, option: str = "--model") -> Path:
    """A bundled model's name, or a path to a model file."""
    names = {path.stem: path for path in bundled_models()}
    text = spec.strip()
    if text in names and not Path(text).is_file():
        return names[text]
    path = Path(text)
    if path.exists() or path.suffix.lower() == ".json" or "/" in text:
        return path
    import difflib  # only errors pay for its import

    hint = difflib.get_close_matches(text, names, n=1)
    suggestion = f" (did you mean {hint[0]}?)" if hint else f"; the bundled ones are {', '.join(names) or 'none'}"
    raise SpecError(f"{text!r} is neither a model file nor a bundled model{suggestion}", source=option)


def load_model(spec: str, option: str = "--model", limits: Limits = DEFAULT_LIMITS) -> Model:
    """Read, build and check a model from a bundled name or a file."""
    path = resolve_model(spec, option)
    source = str(path) if path.parent != BUNDLED else path.stem
    data = read_bytes(path, kind="model", error=SpecError, expected="a model JSON file", limits=limits)
    model = parse_model(loads(data, source), source, path.parent, limits)
    return replace(model, paths=(path, *model.paths))


def parse_model(document: Any, source: str, folder: Path, limits: Limits = DEFAULT_LIMITS) -> Model:
    """Build a Model from a parsed model document; ``folder`` is where its weights file is looked for."""
    read = Reader(source)
    read.object(document, "", TOP_KEYS, required=("format", "version", "input", "layers"))
    fmt = read.string(document["format"], "format")
    if fmt != MODEL_FORMAT:
        raise read.fail("format", f"expected {MODEL_FORMAT!r}, got {fmt!r}")
    version = read.integer(document["version"], "version")
    if version != MODEL_VERSION:
        raise read.fail("version", f"this cnn reads version {MODEL_VERSION}, got {version}")
    # Names, descriptions, labels and the weights file's name are shown to people: printable text.
    name = read.text(document["name"], "name", empty=False) if "name" in document else shown(Path(source).stem)
    description = read.text(document.get("description", ""), "description")
    spec = _input_spec(read.within("input"), document["input"])
    metadata = document.get("metadata", {})
    if not isinstance(metadata, dict):
        raise read.fail("metadata", "expected an object (free-form: data set, accuracy, ...)")
    read.unicode(metadata, "metadata")  # free-form, but written out as JSON
    weights_source, stored, paths = None, {}, ()
    if "weights" in document:
        weights_path = folder / read.text(document["weights"], "weights", empty=False)
        weights_source = str(weights_path) if folder != BUNDLED else weights_path.name
        try:
            data = read_bytes(weights_path, kind="weights", error=SpecError, expected="a .npz weights file",
                              limits=limits, regular_only=True)  # named by the file: never a device or FIFO
        except SpecError as err:  # say which model asked for the file
            raise read.fail("weights", f"{weights_source}: {err.message}") from None
        stored = load_npz(data, weights_source, SpecError, limits.max_memory)
        paths = (weights_path,)
    weights = _Weights(stored, weights_source)
    network, out_shape = _build_network(read, document["layers"], spec, weights)
    weights.check_all_used()
    labels = _labels(read, document.get("labels"), out_shape)
    return Model(name, spec, labels, network, source, description, weights_source, metadata, paths)


def _input_spec(read: Reader, value: Any) -> InputSpec:
    read.object(value, "", INPUT_KEYS, required=("size",))
    size = read.pair(value["size"], "size", 1, MAX_SIDE)
    color = read.string(value.get("color", "gray"), "color", ("gray", "rgb"))
    channels = 3 if color == "rgb" else 1
    mean = _per_channel(read, value.get("mean", 0.0), "mean", channels)
    std = _per_channel(read, value.get("std", 1.0), "std", channels)
    for i, s in enumerate(std):
        if s <= 0:
            raise read.fail(f"std[{i}]" if isinstance(value.get("std"), list) else "std", f"must be above 0, got {s:g}")
    return InputSpec(size, color, read.string(value.get("scale", "unit"), "scale", ("raw", "unit")),
                     read.boolean(value.get("invert", False), "invert"), mean, std)


def _per_channel(read: Reader, value: Any, path: str, channels: int) -> tuple[float, ...]:
    if not isinstance(value, list):
        return (read.number(value, path),) * channels
    if len(value) not in (1, channels):
        expected = "1 value" if channels == 1 else f"1 or {channels} values (one per channel)"
        raise read.fail(path, f"expected {expected}, got {len(value)}")
    numbers = tuple(read.number(v, f"{path}[{i}]") for i, v in enumerate(value))
    return numbers * channels if len(numbers) == 1 else numbers


def _labels(read: Reader, value: Any, out_shape: tuple[int, ...]) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not value:
        raise read.fail("labels", "expected a list of class names")
    labels = tuple(read.text(v, f"labels[{i}]", empty=False) for i, v in enumerate(value))
    for i, label in enumerate(labels):
        if label in labels[:i]:
            raise read.fail(f"labels[{i}]", f"{label!r} is also labels[{labels.index(label)}]; names must be unique")
    if len(out_shape) != 1 or out_shape[0] != len(labels):
        raise read.fail("labels", f"has {len(labels)} names but the network's output has shape {out_shape}; "
                                  "expected one name per output value")
    return labels


class _Weights:
    """The arrays of the weights file, handed out by state_dict name and checked for shape and values."""

    IGNORED = (".num_batches_tracked",)  # a BatchNorm counter PyTorch saves; inference has no use for it

    def __init__(self, stored: dict[str, np.ndarray], source: str | None) -> None:
        self.stored = stored
        self.source = source
        self.used: set[str] = set()

    def take(self, read: Reader, layer: dict[str, Any], layer_name: str, key: str, expected: tuple[int, ...],
             required: bool = True) -> np.ndarray | None:
        """The array ``key`` of a layer, inline or as ``<layer>.<key>`` in the file, of shape ``expected``."""
        full = f"{layer_name}.{key}"
        if key in layer and not isinstance(layer[key], bool):
            if full in self.stored:
                raise read.fail(key, f"given both inline and as {full!r} in {self.source}; give it once")
            array, where, path = read.array(layer[key], key, ndims=(len(expected),)), read, key
        elif full in self.stored:
            self.used.add(full)
            array, where, path = self.stored[full], Reader(self.source), full
            if array.dtype.kind not in "iuf":
                raise SpecError(f"{full}: expected real numbers, got {array.dtype}", source=self.source)
            if not np.all(np.isfinite(array)):
                raise SpecError(f"{full}: has NaN or infinite values", source=self.source)
        elif not required:
            return None
        elif self.source is None:
            raise read.fail("", f"layer {layer_name} needs {key!r} {expected}: give it inline or name a "
                                "weights file")
        else:
            raise SpecError(f"no array {full!r} for layer {layer_name} ({read.prefix}), which needs shape "
                            f"{expected}; name the layer as in the state_dict", source=self.source)
        if tuple(array.shape) != tuple(expected):
            raise where.fail(path, f"has shape {tuple(array.shape)}, but layer {layer_name} needs {tuple(expected)} "
                                   "from the layers before it")
        return np.asarray(array, dtype=np.float32 if array.dtype.kind in "iu" else array.dtype)

    def check_all_used(self) -> None:
        extra = sorted(k for k in self.stored if k not in self.used and not k.endswith(self.IGNORED))
        if extra:
            shown = ", ".join(extra[:5]) + (f" and {len(extra) - 5} more" if len(extra) > 5 else "")
            raise SpecError(f"holds arrays that no layer uses: {shown}; check the layer names", source=self.source)


def _build_network(read: Reader, value: Any, spec: InputSpec, weights: _Weights) -> tuple[layers.Network, tuple]:
    """The network, each layer built for the shape the one before gives; and its output shape."""
    if not isinstance(value, list) or not value:
        raise read.fail("layers", "expected a list of layers")
    if len(value) > MAX_LAYERS:  # before any is built
        raise read.fail("layers", f"has {len(value):,} layers, over the limit of {MAX_LAYERS:,} for a model file")
    built: list[Any] = []
    names: dict[str, int] = {}
    shape: tuple[int, ...] = spec.shape
    for index, item in enumerate(value):
        r = read.within(f"layers[{index}]")
        if not isinstance(item, dict):
            raise r.fail("", "expected an object with a 'type'")
        if "type" not in item:
            raise r.fail("", "missing key 'type'")
        kind = r.string(item["type"], "type", LAYER_TYPES)
        kind = ALIASES.get(kind, kind)
        allowed, required, builder = _BUILDERS[kind]
        r.object(item, "", ("name", "type") + allowed, required)
        name = r.text(item.get("name", f"{kind}{index}"), "name", empty=False)  # shown, and it names files
        if name in names:
            raise r.fail("name", f"{name!r} is also the name of layers[{names[name]}]; names must be unique")
        names[name] = index
        try:
            layer = builder(r, item, name, shape, weights)
            shape = layer.output_shape(shape)
        except ShapeError as err:
            raise ShapeError(f"layer {name} ({r.prefix}): {err} (input {shape})", source=read.source) from None
        built.append(layer)
    return layers.Network(tuple(built)), shape


def _conv(r: Reader, item: dict, name: str, shape: tuple, weights: _Weights) -> layers.Conv2d:
    settings = parse_conv_settings(r, item)
    groups = r.integer(item.get("groups", 1), "groups", 1, 1 << 16)
    out_channels = r.integer(item["out_channels"], "out_channels", 1, 1 << 16)
    kh, kw = r.pair(item["kernel_size"], "kernel_size")
    channels = _channels(shape)
    if "in_channels" in item and r.integer(item["in_channels"], "in_channels", 1) != channels:
        raise r.fail("in_channels", f"is {item['in_channels']}, but the layer before gives {channels} channels")
    if channels % groups or out_channels % groups:
        raise r.fail("groups", f"must divide in_channels ({channels}) and out_channels ({out_channels}), got {groups}")
    weight_shape = (out_channels, channels // groups, kh, kw)
    stride, dilation = tuple(settings.get("stride", (1, 1))), tuple(settings.get("dilation", (1, 1)))
    padding, mode = _padding(settings.get("padding", 0)), settings.get("padding_mode", "zeros")
    ops.conv_geometry(shape, weight_shape, stride, padding, dilation, groups, mode)  # before the weights
    weight = weights.take(r, item, name, "weight", weight_shape)
    bias = weights.take(r, item, name, "bias", (out_channels,)) if _has_bias(r, item) else None
    return layers.Conv2d(weight, bias, stride, padding, mode, dilation, groups, name=name)


def _has_bias(r: Reader, item: dict) -> bool:
    """``bias`` is true or false as in PyTorch (the values then come from the weights file), or the values."""
    value = item.get("bias", True)
    return True if isinstance(value, list) else r.boolean(value, "bias")


def _padding(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def _dense(r: Reader, item: dict, name: str, shape: tuple, weights: _Weights) -> layers.Dense:
    out_features = r.integer(item["out_features"], "out_features", 1, 1 << 24)
    if len(shape) != 1:
        raise ShapeError(f"takes a flat vector, but the layer before gives shape {shape}; put a flatten layer first")
    if "in_features" in item and r.integer(item["in_features"], "in_features", 1) != shape[0]:
        raise r.fail("in_features", f"is {item['in_features']}, but the layer before gives {shape[0]} values")
    weight = weights.take(r, item, name, "weight", (out_features, shape[0]))
    bias = weights.take(r, item, name, "bias", (out_features,)) if _has_bias(r, item) else None
    return layers.Dense(weight, bias, name)  # the model's header says where its weights come from


def _batch_norm(kind: str) -> Callable[..., layers.BatchNorm]:
    def build(r: Reader, item: dict, name: str, shape: tuple, weights: _Weights) -> layers.BatchNorm:
        if kind == "batchnorm2d":
            features = _channels(shape)
        elif len(shape) != 1:
            raise ShapeError(f"batchnorm1d takes a flat vector, but the layer before gives shape {shape}; "
                             "use batchnorm2d on maps")
        else:
            features = shape[0]
        if "num_features" in item and r.integer(item["num_features"], "num_features", 1) != features:
            raise r.fail("num_features", f"is {item['num_features']}, but the layer before gives {features}")
        eps = r.number(item.get("eps", 1e-5), "eps")
        if eps < 0:
            raise r.fail("eps", f"must be at least 0, got {eps:g}")
        if "momentum" in item:
            r.number(item["momentum"], "momentum")  # a training setting, read only to check it
        affine = r.boolean(item.get("affine", True), "affine")
        for key in ("weight", "bias"):
            if not affine and key in item:
                raise r.fail(key, "is given but affine is false; a layer without a learned scale takes no weight "
                                  "or bias")
        stats = [weights.take(r, item, name, key, (features,)) for key in ("running_mean", "running_var")]
        if np.any(stats[1] < 0):
            message = "has negative values; expected variances, which are at least 0"
            if "running_var" in item:
                raise r.fail("running_var", message)
            raise SpecError(f"{name}.running_var: {message}", source=weights.source)
        scale = [weights.take(r, item, name, key, (features,)) if affine else None for key in ("weight", "bias")]
        return layers.BatchNorm(stats[0], stats[1], scale[0], scale[1], eps, name, kind)

    return build


def _channels(shape: tuple) -> int:
    if len(shape) != 3:
        raise ShapeError(f"takes a (C, H, W) map, but the layer before gives a vector of shape {shape}")
    return shape[0]


def _pool(kind: str) -> Callable[..., layers.Pool2d]:
    def build(r: Reader, item: dict, name: str, shape: tuple, weights: _Weights) -> layers.Pool2d:
        size = r.pair(item["kernel_size"], "kernel_size")
        stride = r.pair(item["stride"], "stride") if item.get("stride") is not None else None
        padding = r.pair(item.get("padding", 0), "padding", minimum=0)
        dilation = r.pair(item.get("dilation", 1), "dilation")
        ceil_mode = r.boolean(item.get("ceil_mode", False), "ceil_mode")
        include = r.boolean(item.get("count_include_pad", True), "count_include_pad")
        return layers.Pool2d(kind, size, stride, padding, dilation, ceil_mode, include, name)

    return build


def _activation(kind: str) -> Callable[..., layers.Activation]:
    def build(r: Reader, item: dict, name: str, shape: tuple, weights: _Weights) -> layers.Activation:
        return layers.Activation(kind, r.number(item.get("negative_slope", 0.01), "negative_slope"), name)

    return build


def _dropout(r: Reader, item: dict, name: str, shape: tuple, weights: _Weights) -> layers.Dropout:
    p = r.number(item.get("p", 0.5), "p")
    if not 0 <= p <= 1:
        raise r.fail("p", f"must be between 0 and 1, got {p:g}")
    return layers.Dropout(p, name)


def _plain(factory: Callable[[str], Any]) -> Callable[..., Any]:
    return lambda r, item, name, shape, weights: factory(name)


_CONV_KEYS = ("in_channels", "out_channels", "kernel_size", "stride", "padding", "padding_mode", "dilation",
              "groups", "bias", "weight")
_POOL_KEYS = ("kernel_size", "stride", "padding", "ceil_mode")
_BN_KEYS = ("num_features", "eps", "momentum", "affine", "weight", "bias", "running_mean", "running_var")
# type: (allowed keys, required keys, builder)
_BUILDERS: dict[str, tuple[tuple[str, ...], tuple[str, ...], Callable[..., Any]]] = {
    "conv2d": (_CONV_KEYS, ("out_channels", "kernel_size"), _conv),
    "relu": ((), (), _activation("relu")),
    "leaky_relu": (("negative_slope",), (), _activation("leaky_relu")),
    "sigmoid": ((), (), _activation("sigmoid")),
    "tanh": ((), (), _activation("tanh")),
    "maxpool2d": (_POOL_KEYS + ("dilation",), ("kernel_size",), _pool("max")),
    "avgpool2d": (_POOL_KEYS + ("count_include_pad",), ("kernel_size",), _pool("avg")),
    "globalavgpool2d": ((), (), _plain(layers.GlobalAvgPool2d)),
    "flatten": ((), (), _plain(layers.Flatten)),
    "dense": (("in_features", "out_features", "bias", "weight"), ("out_features",), _dense),
    "batchnorm2d": (_BN_KEYS, (), _batch_norm("batchnorm2d")),
    "batchnorm1d": (_BN_KEYS, (), _batch_norm("batchnorm1d")),
    "dropout": (("p",), (), _dropout),
    "softmax": ((), (), _plain(layers.Softmax)),
}
ALIASES = {"linear": "dense", "leakyrelu": "leaky_relu"}
LAYER_TYPES = tuple(_BUILDERS) + tuple(ALIASES)


def _numbers(values: tuple[float, ...]) -> str:
    return f"{values[0]:g}" if len(set(values)) == 1 else "[" + ", ".join(f"{v:g}" for v in values) + "]"
