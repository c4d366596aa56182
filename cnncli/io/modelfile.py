"""Model files: a whole network, the input it expects and its class labels, in one JSON file.

    {"format": "cnn-model", "version": 1, "name": "digits", "description": "...",
     "input": {"size": [8, 8], "color": "gray", "scale": "unit", "invert": true,
               "mean": [0.0], "std": [1.0]},
     "labels": ["0", "1", ...], "weights": "digits.npz",
     "layers": [{"name": "conv1", "type": "conv2d", "out_channels": 16, "kernel_size": 3,
                 "padding": 1}, {"name": "bn1", "type": "batchnorm2d"}, ...],
     "metadata": {...}}

Or, for an ONNX network, ``"graph": "net.onnx"`` (a file beside it) in place of ``layers`` and
``weights``: the JSON then carries what an ONNX file does not, the input rule and the labels
(model_links.py). The input rule is io/input_rule.py's.

Weights are inline (``weight``, ``bias``, ``running_mean``, ``running_var`` keys of a layer) or
in a .npz beside the file, keyed by PyTorch's state_dict names: ``conv1.weight`` (F, C, KH, KW),
``conv1.bias``, ``fc1.weight`` (out, in), ``bn1.running_mean``... The whole network is built and
every weight checked against the shape the layers before it imply before anything runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..engine.graph import INPUT, Network
from ..engine.layers import ALIASES, layer_class, type_names
from ..engine.layers.base import input_counts, keys_of
from ..display import shown
from ..errors import GraphError, ShapeError, SpecError
from .input_rule import INPUT_KEYS, MAX_SIDE, PRESETS, InputSpec, read_input_spec  # noqa: F401  (re-exported)
from .reading import load_npz, read_bytes
from .limits import DEFAULT_LIMITS, Limits
from .jsonspec import Reader, loads
from .kernels import parse_conv_settings

MODEL_FORMAT = "cnn-model"
MODEL_VERSION = 2  # version 2 adds graphs: a layer's ``inputs``, the model's ``outputs``
BUNDLED = Path(__file__).parent.parent / "models"
TOP_KEYS = ("format", "version", "name", "description", "input", "labels", "weights", "layers", "outputs", "graph",
            "metadata")
ONNX_MAGIC = b"\x08"  # an ONNX ModelProto starts with ir_version: field 1, varint
# Layers in one model file. Real networks fit with room to spare: ResNet-152 or DenseNet-201 exported
# node by node has 500 to 1,000 nodes, EfficientNet-B7 about 2,000. 300,000 relu layers ended in an
# internal error after 5.8 GB.
MAX_LAYERS = 10_000


@dataclass(frozen=True, eq=False, repr=False)
class Model:
    name: str
    input: InputSpec
    labels: tuple[str, ...]
    network: Network
    source: str  # the model file
    description: str = ""
    weights_source: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    paths: tuple[Path, ...] = ()  # the files read: the model's own, its weights, its graph and labels
    onnx_file: Path | None = None  # the ONNX file the network was read from, if it was

    @property
    def params(self) -> int:
        return sum(getattr(layer, "params", 0) for layer in self.network.layers)


def bundled_models() -> list[Path]:
    """The model files that ship with cnn, by name."""
    return sorted(BUNDLED.glob("*.json"))


def resolve_model(spec: str, option: str | None = None) -> Path:
    """A bundled model's name, or a path to a model file.

    Raises SpecError for a name that is neither: its source is ``option`` when given (what asked
    for the model, such as ``cnn summary``), else its ``param`` is ``"model"``.
    """
    names = {path.stem: path for path in bundled_models()}
    text = spec.strip()
    if text in names and not Path(text).is_file():
        return names[text]
    path = Path(text)
    if path.exists() or path.suffix.lower() in (".json", ".onnx") or "/" in text:
        return path
    import difflib  # only errors pay for its import

    hint = difflib.get_close_matches(text, names, n=1)
    suggestion = f" (did you mean {hint[0]}?)" if hint else f"; the bundled ones are {', '.join(names) or 'none'}"
    raise SpecError(f"{text!r} is neither a model file nor a bundled model{suggestion}", source=option,
                    param=None if option else "model")


def load_model(spec: str, option: str | None = None, limits: Limits = DEFAULT_LIMITS,
               size: tuple[int, int] | None = None) -> Model:
    """Read, build and check a model from a bundled name or a file. ``size`` (H, W), the input
    rule's from the caller's options (a crop, a preset), fixes the height and width an ONNX graph
    leaves free, in place of a model JSON's own; a size the network fixes is left for the caller
    to check against its options (input_rule.with_overrides)."""
    path = resolve_model(spec, option)
    source = str(path) if path.parent != BUNDLED else path.stem
    kind = "onnx" if path.suffix.lower() == ".onnx" else "model"
    if kind == "onnx" and path.is_file():  # its weights are read from the file one by one: never held twice
        from .onnx_import import load_onnx_file

        onnx_model = load_onnx_file(path, source, limits, size)
        return replace(onnx_model, paths=(path, *onnx_model.paths), onnx_file=path)
    data = read_bytes(path, kind=kind, error=SpecError, expected="a model JSON or ONNX file", limits=limits)
    if kind == "onnx" or data[:1] == ONNX_MAGIC:  # a JSON model starts with "{": its runs import no ONNX code
        from .onnx_import import load_onnx

        onnx_model = load_onnx(data, source, limits, path.parent, size)  # its external data files are beside it
        return replace(onnx_model, paths=(path, *onnx_model.paths), onnx_file=path)
    model = parse_model(loads(data, source), source, path.parent, limits, size)
    return replace(model, paths=(path, *model.paths))


def parse_model(document: Any, source: str, folder: Path, limits: Limits = DEFAULT_LIMITS,
                size: tuple[int, int] | None = None) -> Model:
    """Build a Model from a parsed model document; ``folder`` is where its weights file is looked for.
    ``size`` fixes what an ONNX graph the document names (``graph``) leaves free (``load_model``)."""
    read = Reader(source)
    if isinstance(document, list) or isinstance(document, dict) and "format" not in document \
            and isinstance(document.get("weights"), list) and "layers" not in document:  # a kernel file's array
        raise SpecError("is a kernel file (weights, no \"format\": \"cnn-model\" and no layers); give it as "
                        "--kernel, not --model", source=source)
    graph = isinstance(document, dict) and "graph" in document  # the network is an ONNX file beside this one
    read.object(document, "", TOP_KEYS, required=("format", "version") if graph else ("format", "version", "input",
                                                                                      "layers"))
    fmt = read.string(document["format"], "format")
    if fmt != MODEL_FORMAT:
        raise read.fail("format", f"expected {MODEL_FORMAT!r}, got {fmt!r}")
    version = read.integer(document["version"], "version")
    if not 1 <= version <= MODEL_VERSION:
        raise read.fail("version", f"this cnn reads versions 1 to {MODEL_VERSION}, got {version}")
    # Names, descriptions, labels and the weights file's name are shown to people: printable text.
    name = read.text(document["name"], "name", empty=False) if "name" in document else shown(Path(source).stem)
    description = read.text(document.get("description", ""), "description")
    metadata = document.get("metadata", {})
    if not isinstance(metadata, dict):
        raise read.fail("metadata", "expected an object (free-form: data set, accuracy, ...)")
    read.unicode(metadata, "metadata")  # free-form, but written out as JSON
    if graph:  # the network, its input shape and default rule from the ONNX file; the rest from here
        from .model_links import graph_model

        model = graph_model(read, document, version, folder, limits, size)
        return replace(model, name=name, source=source, description=description or model.description,
                       metadata={**metadata, **model.metadata})
    spec = read_input_spec(read.within("input"), document["input"])
    weights_source: str | None = None
    stored: dict[str, np.ndarray] = {}
    paths: tuple[Path, ...] = ()
    if "weights" in document:
        from .model_links import file_in_folder

        weights_path = file_in_folder(read, document["weights"], "weights", folder)
        weights_source = str(weights_path) if folder != BUNDLED else weights_path.name
        try:
            data = read_bytes(weights_path, kind="weights", error=SpecError, expected="a .npz weights file",
                              limits=limits, regular_only=True)  # named by the file: never a device or FIFO
        except SpecError as err:  # say which model asked for the file
            raise read.fail("weights", f"{weights_source}: {err.message}") from None
        stored = load_npz(data, weights_source, SpecError, limits.max_memory)
        paths = (weights_path,)
    weights = _Weights(stored, weights_source)
    network, out_shape = _build_network(read, document, spec, weights, version)
    weights.check_all_used()
    labels, labels_paths = labels_field(read, document.get("labels"), out_shape, folder, limits)
    return Model(name, spec, labels, network, source, description, weights_source, metadata, paths + labels_paths)


def labels_field(read: Reader, value: Any, out_shape: tuple[int, ...], folder: Path,
                 limits: Limits = DEFAULT_LIMITS) -> tuple[tuple[str, ...], tuple[Path, ...]]:
    """The class names of a model file's ``labels``: a list of unique names, or the name of a text
    file beside it, one name per line (as ``--labels``); one per value of the output vector.
    Returns them and the file read, if any."""
    if value is None:
        return (), ()
    paths: tuple[Path, ...] = ()
    if isinstance(value, str):
        from .model_links import labels_file

        labels, path = labels_file(read, value, folder, limits)
        paths = (path,)
    elif not isinstance(value, list) or not value:
        raise read.fail("labels", "expected a list of class names, or the name of a text file of them beside the "
                                  "model file")
    else:
        labels = tuple(read.text(v, f"labels[{i}]", empty=False) for i, v in enumerate(value))
        for i, label in enumerate(labels):
            if label in labels[:i]:
                raise read.fail(f"labels[{i}]", f"{label!r} is also labels[{labels.index(label)}]; names must be "
                                                "unique")
    if len(out_shape) != 1 or out_shape[0] != len(labels):
        raise read.fail("labels", f"has {len(labels)} names but the network's output has shape {out_shape}; "
                                  "expected one name per output value")
    return labels, paths


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
            array, where, path = self.stored[full], Reader(self.source or ""), full
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


def _build_network(read: Reader, document: dict, spec: InputSpec, weights: _Weights,
                   version: int) -> tuple[Network, tuple]:
    """The network, each layer built for the shapes of what it reads; and its output shape."""
    value = document["layers"]
    if not isinstance(value, list) or not value:
        raise read.fail("layers", "expected a list of layers")
    if len(value) > MAX_LAYERS:  # before any is built
        raise read.fail("layers", f"has {len(value):,} layers, over the limit of {MAX_LAYERS:,} for a model file")
    built: list[Any] = []
    reads: list[tuple[str, ...]] = []
    shapes: dict[str, tuple[int, ...]] = {INPUT: spec.shape}
    names: dict[str, int] = {}
    declared = layer_names(value)  # each layer's name, given or by default: to tell "later" from "none"
    for index, item in enumerate(value):
        r = read.within(f"layers[{index}]")
        if not isinstance(item, dict):
            raise r.fail("", "expected an object with a 'type'")
        if "type" not in item:
            raise r.fail("", "missing key 'type'")
        kind = r.string(item["type"], "type", type_names())
        kind = ALIASES.get(kind, kind)
        cls: Any = layer_class(kind)  # a registered type: r.string checked it
        r.object(item, "", ("name", "type", "inputs") + keys_of(cls, kind), cls.required)
        name = r.text(item.get("name", declared[index]), "name", empty=False)  # shown, and it names files
        if name in names or name == INPUT:
            why = "the network's input" if name == INPUT else f"the name of layers[{names[name]}]"
            raise r.fail("name", f"{name!r} is also {why}; names must be unique")
        names[name] = index
        given = _inputs(r, item, index, built, names, version, name, declared)
        least, most = input_counts(cls)
        if not least <= len(given) <= (most if most is not None else len(given)):
            wanted = f"{least}" if least == most else (f"at least {least}" if most is None else f"{least} to {most}")
            raise r.fail("inputs", f"{kind} reads {wanted} input{'s' if wanted != '1' else ''}, got {len(given)}")
        in_shapes = tuple(shapes[n] for n in given)
        try:
            layer = cls.from_spec(LayerSpec(r, item, kind, name, in_shapes, weights))
            shapes[name] = tuple(layer.output_shape(*in_shapes))
        except ShapeError as err:
            shown_in = ", ".join(str(s) for s in in_shapes)
            given_text = "" if len(in_shapes) > 1 else f" (input {shown_in})"  # a merge's message lists its inputs
            raise ShapeError(f"layer {name} ({r.prefix}): {err}{given_text}", source=read.source) from None
        built.append(layer)
        reads.append(given)
    outputs = _outputs(read, document.get("outputs"), names, version)
    try:
        network = Network(tuple(built), tuple(reads), outputs)
    except GraphError as err:
        where = read.within(f"layers[{err.layer}]") if err.layer is not None else read
        raise where.fail(err.field if err.layer is not None else "", f"layer {err.source}: {err.message}"
                         if err.layer is not None else err.message) from None
    return network, shapes[built[-1].name]


def layer_names(items: list) -> list[str | None]:
    """Each layer's name, read loosely (checked when the layer is built): its own ``name``, or one
    made as a PyTorch module's author names its parts and as `cnn run --kernel` names its stages:
    the type without "2d"/"1d", numbered from 1 among the layers of that type in the file
    (``conv1``, ``relu1``, ``maxpool1``, ``conv2``, ``globalavgpool1``, ``flatten1``, ``dense1``).
    A number that a layer's own name already takes is skipped, so a made name never clashes.
    None for an item with no usable type (its error comes when it is built).
    """
    given = {item["name"] for item in items if isinstance(item, dict) and isinstance(item.get("name"), str)}
    counts: dict[str, int] = {}
    names: list[str | None] = []
    for item in items:
        kind = item.get("type") if isinstance(item, dict) else None
        if not isinstance(kind, str):
            names.append(None)
            continue
        base = _name_base(ALIASES.get(kind, kind))
        counts[base] = counts.get(base, 0) + 1
        if isinstance(item.get("name"), str):
            names.append(item["name"])
            continue
        while f"{base}{counts[base]}" in given:
            counts[base] += 1
        names.append(f"{base}{counts[base]}")
    return names


def _name_base(kind: str) -> str:
    """``maxpool2d`` -> ``maxpool``, ``batchnorm1d`` -> ``batchnorm``; ``relu6`` -> ``relu6_``, so that
    its number reads apart (``relu6_1``)."""
    base = kind[:-2] if kind.endswith(("1d", "2d")) and len(kind) > 2 else kind
    return base + "_" if base[-1:].isdigit() else base


def _inputs(r: Reader, item: dict, index: int, built: list, names: dict[str, int], version: int, layer: str,
            declared: list[str | None]) -> tuple[str, ...]:
    """The names a layer reads: its ``inputs``, or the layer before it (the input for the first)."""
    if "inputs" not in item:
        return (built[-1].name if built else INPUT,)
    if version < 2:
        raise r.fail("inputs", f'layer {layer} names its inputs, which needs "version": 2 (a graph); version 1 '
                               "files are chains")
    value = item["inputs"]
    value = [value] if isinstance(value, str) else value
    if not isinstance(value, list) or not value:
        raise r.fail("inputs", "expected a list of earlier layer names, or \"input\"")
    given = tuple(r.text(v, f"inputs[{i}]", empty=False) for i, v in enumerate(value))
    for i, name in enumerate(given):
        if name != INPUT and names.get(name, index) >= index:
            if names.get(name) == index:
                why = "itself; a layer reads the input or layers before it"
            elif name in declared[index + 1:]:
                later = declared.index(name, index + 1)
                why = (f"{name!r}, which comes later (layers[{later}]); a layer reads the input or layers before "
                       "it: list layers in the order they run, without cycles")
            else:
                why = f"{name!r}, which names no layer"
            raise r.fail(f"inputs[{i}]", f"layer {layer} reads {why}")
    return given


def _outputs(read: Reader, value: Any, names: dict[str, int], version: int) -> tuple[str, ...]:
    if value is None:
        return ()
    if version < 2:
        raise read.fail("outputs", 'needs "version": 2 (a graph)')
    if not isinstance(value, list):
        raise read.fail("outputs", "expected a list of layer names whose values are outputs too")
    outputs = tuple(read.text(v, f"outputs[{i}]", empty=False) for i, v in enumerate(value))
    for i, name in enumerate(outputs):
        if name not in names:
            raise read.fail(f"outputs[{i}]", f"{name!r} names no layer")
        if name in outputs[:i]:
            raise read.fail(f"outputs[{i}]", f"{name!r} is also outputs[{outputs.index(name)}]; name each layer once")
    return outputs


class LayerSpec:
    """One layer object of a model file, as a layer class reads it (``from_spec``): its settings,
    each checked with its JSON path, its weights (inline or from the weights file) and the shapes
    of what it reads."""

    def __init__(self, read: Reader, item: dict, type_name: str, name: str, shapes: tuple[tuple[int, ...], ...],
                 weights: _Weights) -> None:
        self.read, self.item, self.type, self.name, self.shapes = read, item, type_name, name, shapes
        self.weights = weights

    @property
    def shape(self) -> tuple[int, ...]:
        """The shape of the first (often only) input."""
        return self.shapes[0]

    def has(self, key: str) -> bool:
        return key in self.item

    def get(self, key: str, default: Any = None) -> Any:
        return self.item.get(key, default)

    def fail(self, key: str, message: str) -> SpecError:
        return self.read.fail(key, message)

    def fail_weight(self, key: str, message: str) -> SpecError:
        """An error about an array, at its inline path or as the weights file's ``<layer>.<key>``."""
        if key in self.item:
            return self.read.fail(key, message)
        return SpecError(f"{self.name}.{key}: {message}", source=self.weights.source)

    def _bounded(self, key: str, value: float, minimum: float | None, maximum: float | None) -> None:
        if minimum is not None and maximum is not None and not minimum <= value <= maximum:
            raise self.fail(key, f"must be between {minimum:g} and {maximum:g}, got {value:g}")
        if minimum is not None and value < minimum:
            raise self.fail(key, f"must be at least {minimum:g}, got {value:g}")
        if maximum is not None and value > maximum:
            raise self.fail(key, f"must be at most {maximum:g}, got {value:g}")

    def number(self, key: str, default: float | None = None, minimum: float | None = None,
               maximum: float | None = None) -> float:
        if key not in self.item:
            return default  # type: ignore[return-value]
        value = self.read.number(self.item[key], key)
        self._bounded(key, value, minimum, maximum)
        return value

    def integer(self, key: str, default: int | None = None, minimum: int | None = None,
                maximum: int | None = None) -> int:
        if key not in self.item:
            return default  # type: ignore[return-value]
        return self.read.integer(self.item[key], key, minimum, maximum)

    def integers(self, key: str, default: Any = None, minimum: int | None = None,
                 maximum: int | None = None) -> tuple[int, ...]:
        """A list of integers, or one integer as a list of one."""
        if key not in self.item:
            return default
        value = self.item[key]
        if not isinstance(value, list):
            return (self.read.integer(value, key, minimum, maximum),)
        if not value:
            raise self.fail(key, "expected one or more integers, got an empty list")
        return tuple(self.read.integer(v, f"{key}[{i}]", minimum, maximum) for i, v in enumerate(value))

    def numbers(self, key: str, default: Any = None) -> tuple[float, ...]:
        """A list of numbers, or one number as a list of one."""
        if key not in self.item:
            return default
        value = self.item[key]
        if not isinstance(value, list):
            return (self.read.number(value, key),)
        return tuple(self.read.number(v, f"{key}[{i}]") for i, v in enumerate(value))

    def boolean(self, key: str, default: bool) -> bool:
        return self.read.boolean(self.item[key], key) if key in self.item else default

    def pair(self, key: str, default: Any = None, minimum: int = 1) -> Any:
        """A pair of integers (one integer gives both), or ``default`` as a pair when the key is absent
        (None stays None)."""
        if key not in self.item:
            return default if default is None else self.read.pair(default, key, minimum)
        return self.read.pair(self.item[key], key, minimum)

    def choice(self, key: str, default: str, choices: tuple[str, ...]) -> str:
        return self.read.string(self.item[key], key, choices) if key in self.item else default

    def conv_settings(self) -> dict[str, Any]:
        """stride, dilation, padding and padding_mode as conv kernels take them (io/kernels.py)."""
        return parse_conv_settings(self.read, self.item)

    def channels(self) -> int:
        """The channels of the (first) input, which must be a (C, H, W) map."""
        if len(self.shape) != 3:
            raise ShapeError(f"takes a (C, H, W) map, but the layer before gives a vector of shape {self.shape}")
        return self.shape[0]

    def has_bias(self) -> bool:
        """``bias`` is true or false as in PyTorch (the values then come from the weights file), or the values."""
        value = self.item.get("bias", True)
        return True if isinstance(value, list) else self.read.boolean(value, "bias")

    def weight(self, key: str, shape: tuple[int, ...], required: bool = True) -> np.ndarray:
        """The array ``key`` of this layer, inline or as ``<layer>.<key>`` in the weights file, of ``shape``."""
        return self.weights.take(self.read, self.item, self.name, key, shape, required)  # type: ignore[return-value]

