"""Property-based tests (hypothesis): whatever the schema accepts runs with exactly the shapes the
shape checker predicted; whatever it rejects is a clean one-line CnnError, never another exception.

References: PyTorch's output-size formulas (conv, pooling), recomputed here by the generators; the
naive loop oracles of tests/oracles.py; numpy.pad for the reflect, replicate and circular modes.
Every test is derandomized, so CI sees the same examples on every run.
"""

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import oracles
from conftest import assert_array
from hypothesis import HealthCheck, event, given, note, settings
from hypothesis import strategies as st

from cnncli.engine import ops
from cnncli.errors import CnnError, ShapeError
from cnncli.io.jsonspec import loads
from cnncli.io.kernels import FILE_KEYS, parse_kernel
from cnncli.engine.layers import ALIASES, layer_class
from cnncli.engine.layers.base import keys_of
from cnncli.io.modelfile import INPUT_KEYS, parse_model

SOURCE = "model.json"


def _settings(examples: int) -> settings:
    return settings(max_examples=examples, deadline=None, derandomize=True, database=None, print_blob=False,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


# --- Model documents ---------------------------------------------------------------------------------
#
# The generator walks the layers as the builder will, tracking the shape each one gives by PyTorch's
# formulas, so that inline weights have the shapes the layers need, and noting every fault it puts
# in. About a third of the layers get one value in five from a set of wrong ones (zero, negative,
# too large, a string, a bool, null, NaN, a list of the wrong length...), the others one in a
# hundred; geometry does the rest: kernels larger than the map, groups that do not divide, padding
# over the reflect limit, a dense layer on a map. Between half and two thirds of the documents build.

LAYER_KEYS = {  # every key the generator writes, per layer type; checked against the builder's table
    "conv2d": ("in_channels", "out_channels", "kernel_size", "stride", "padding", "padding_mode", "dilation",
               "groups", "bias", "weight"),
    "maxpool2d": ("kernel_size", "stride", "padding", "ceil_mode", "dilation"),
    "avgpool2d": ("kernel_size", "stride", "padding", "ceil_mode", "count_include_pad"),
    "relu": (), "sigmoid": (), "tanh": (), "leaky_relu": ("negative_slope",),
    "batchnorm2d": ("num_features", "eps", "momentum", "affine", "weight", "bias", "running_mean", "running_var"),
    "batchnorm1d": ("num_features", "eps", "momentum", "affine", "weight", "bias", "running_mean", "running_var"),
    "dropout": ("p",), "flatten": (), "globalavgpool2d": (), "softmax": ("dim",),
    "dense": ("in_features", "out_features", "bias", "weight"),
}
ON_MAPS = ("conv2d",) * 5 + ("maxpool2d", "avgpool2d", "relu", "flatten") * 2 + ("batchnorm2d", "globalavgpool2d")
ON_VECTORS = ("dense",) * 3 + ("linear", "batchnorm1d", "flatten")
ANYWHERE = ("relu", "leaky_relu", "leakyrelu", "sigmoid", "tanh", "dropout", "softmax")
EVERY_TYPE = tuple(LAYER_KEYS) + ("linear", "leakyrelu")
FOLLOWERS = {"conv2d": "batchnorm2d", "relu": "maxpool2d"}  # pairs that Network.predict folds or swaps

WRONG = (-1, 2.5, "2", "", True, False, None, [], {"a": 1}, math.nan, math.inf)  # wrong for any whole number
WRONG_COUNTS = WRONG + (0, -3, 1 << 17, [1, 2, 3])  # wrong for a size, stride, dilation or count


@dataclass
class Doc:
    """A model document, the shapes PyTorch's formulas give for it, and which parts hold a fault."""

    document: dict
    expected: list = field(default_factory=list)  # input shape, then one shape per layer (None: no shape)
    faults: list = field(default_factory=list)  # (JSON path, what) of each value made wrong on purpose
    empty_windows: bool = False  # a dilated max-pool window holding no input cell: -inf, as in PyTorch

    @property
    def fault_path(self) -> str:
        """Where the builder must report the first fault: the top level and input, then the layers in
        order, then the labels."""
        top = [where for where, _ in self.faults if not where.startswith("layers[") and where != "labels"]
        layer = [where for where, _ in self.faults if where.startswith("layers[")]
        return (top or layer or ["labels"])[0]


class _Layers:
    """Draws one layer at a time, keeping the running shape, the expected shapes and the faults."""

    def __init__(self, draw, rng, shape):
        self.draw, self.rng = draw, rng
        self.shape = shape  # what the layer being drawn receives
        self.faults: list[tuple[str, str]] = []
        self.where = ""
        self.empty_windows = False
        self.percent = 0  # how often, in a hundred, a value of the layer being drawn is wrong
        self.previous = ""  # the type of the layer before

    def chance(self, percent: int) -> bool:
        """True ``percent`` times in a hundred; shrinks towards False."""
        return self.draw(st.integers(0, 99)) >= 100 - percent

    def value(self, key: str, good, wrong, percent: int | None = None):
        """A value for ``key``: from ``good`` (a strategy), or ``percent`` % of the time (the layer's
        rate by default) one of ``wrong``."""
        if self.chance(self.percent if percent is None else percent):
            bad = self.draw(st.sampled_from(wrong))
            self.fault(f"{key}={json.dumps(bad)}")
            return bad
        return self.draw(good)

    def fault(self, what: str) -> None:
        self.faults.append((self.where, what))

    def numbers(self, shape, low=-1.0, high=1.0, key="weight") -> list:
        """Inline weights of ``shape``; now and then with a NaN or one row too many."""
        shape = tuple(max(1, n) for n in shape)
        array = np.round(self.rng.uniform(low, high, shape), 2)
        if self.chance(self.percent // 4):
            self.fault(f"{key} with a NaN")
            array.flat[0] = math.nan
        elif self.chance(self.percent // 4):
            self.fault(f"{key} of the wrong shape")
            array = np.concatenate([array, array[:1]])
        return array.tolist()


def _as_pair(value, default):
    """The (rows, cols) a generated value stands for; ``default`` when it is not a valid pair."""
    if isinstance(value, bool) or value is None:
        return default
    if isinstance(value, int):
        return (value, value)
    if isinstance(value, list) and len(value) == 2 and all(isinstance(v, int) and not isinstance(v, bool)
                                                           for v in value):
        return tuple(value)
    return default


def _conv_size(size, k, s, d, before, after):
    """PyTorch's conv output length: floor((size + pads - d(k-1) - 1) / s) + 1."""
    return (size + before + after - d * (k - 1) - 1) // s + 1


def _same_pads(size, k, s, d):
    """'same' pads (before, after): an output of ceil(size / s), the odd cell after (TensorFlow's rule)."""
    out = -(-size // s)
    total = max((out - 1) * s + d * (k - 1) + 1 - size, 0)
    return total // 2, total - total // 2


def _pool_size(size, k, s, p, d, ceil_mode):
    """PyTorch's pooling output length, with its ceil_mode rule for a last window in the padding."""
    span = size + 2 * p - d * (k - 1) - 1
    out = (-(-span // s) if ceil_mode else span // s) + 1
    if ceil_mode and (out - 1) * s >= size + p:
        out -= 1
    return out


def _resolve_pads(padding, k, s, d, size):
    """(top, bottom, left, right) for a valid padding setting, None for an invalid one."""
    if padding in ("valid", "same", "full"):
        if padding == "valid":
            return (0, 0, 0, 0)
        if padding == "full":
            return (d[0] * (k[0] - 1),) * 2 + (d[1] * (k[1] - 1),) * 2
        return _same_pads(size[0], k[0], s[0], d[0]) + _same_pads(size[1], k[1], s[1], d[1])
    if isinstance(padding, bool):
        return None
    if isinstance(padding, int):
        values = [padding] * 4
    elif isinstance(padding, list) and len(padding) in (2, 4) and all(
            isinstance(v, int) and not isinstance(v, bool) for v in padding):
        values = [padding[0], padding[0], padding[1], padding[1]] if len(padding) == 2 else list(padding)
    else:
        return None
    return tuple(values) if all(0 <= v <= 1 << 16 for v in values) else None


def _bias(layers: _Layers, count: int):
    """A layer's ``bias`` entry: inline values, false, or (wrongly, with no weights file) true or left out."""
    choice = layers.draw(st.integers(0, 99))
    if choice >= 100 - layers.percent // 3:
        layers.fault("bias of the wrong length")
        return [0.5] * (count + 1)
    if choice >= 97:
        layers.fault("bias true, but no weights file holds it")
        return True
    if choice >= 94:
        layers.fault("bias missing, but no weights file holds it")
        return "absent"
    return False if choice >= 60 else layers.numbers((count,), key="bias")


def _conv(layers: _Layers, item: dict) -> tuple:
    draw = layers.draw
    c, h, w = layers.shape if len(layers.shape) == 3 else (layers.shape[0], 1, 1)
    if len(layers.shape) != 3:
        layers.fault("conv2d on a vector")
    divisors = [g for g in range(1, c + 1) if c % g == 0]
    groups = layers.value("groups", st.sampled_from(divisors), WRONG + (0, c + 1))
    g = groups if type(groups) is int and groups >= 1 else 1
    if type(groups) is not int or groups != 1 or draw(st.booleans()):  # True == 1, but is no group count
        item["groups"] = groups
    out_channels = layers.value("out_channels", st.integers(1, 3).map(lambda m: m * g), WRONG_COUNTS)
    item["out_channels"] = out_channels
    f = out_channels if type(out_channels) is int and 0 < out_channels < 64 else 2
    kernel_size = layers.value("kernel_size", st.integers(1, 4) | st.lists(st.integers(1, 4), min_size=2, max_size=2),
                               WRONG_COUNTS + ([2], [0, 2]))
    item["kernel_size"] = kernel_size
    k = _as_pair(kernel_size, (1, 1))
    k = k if 0 < min(k) and max(k) <= 6 else (1, 1)
    s, d = (1, 1), (1, 1)
    if draw(st.booleans()):
        item["stride"] = layers.value("stride", st.integers(1, 3) | st.lists(st.integers(1, 3), min_size=2, max_size=2),
                                      WRONG_COUNTS + ([1, 0],))
        s = _as_pair(item["stride"], None)
    if draw(st.booleans()):
        item["dilation"] = layers.value("dilation", st.integers(1, 2) | st.lists(st.integers(1, 2), min_size=2,
                                                                                 max_size=2), WRONG_COUNTS)
        d = _as_pair(item["dilation"], None)
    padding = 0
    if draw(st.booleans()):
        padding = layers.value("padding", st.sampled_from(["valid", "same", "full"]) | st.integers(0, 2)
                               | st.lists(st.integers(0, 2), min_size=2, max_size=2)
                               | st.lists(st.integers(0, 2), min_size=4, max_size=4),
                               WRONG + ("half", [1], [1, 2, 3], [1, -1], 1 << 17))
        item["padding"] = padding
    mode = "zeros"
    if draw(st.booleans()):
        mode = layers.value("padding_mode", st.sampled_from(["zeros", "reflect", "replicate", "circular"]),
                            ("edge", "Zeros", 0, None))
        item["padding_mode"] = mode
    if draw(st.integers(0, 9)) == 0:
        item["in_channels"] = layers.value("in_channels", st.just(c), (c + 1, 0, "3"), percent=2 * layers.percent)
    item["weight"] = layers.numbers((f, c // g, *k))
    bias = _bias(layers, f)
    if bias != "absent":
        item["bias"] = bias
    if None in (s, d) or min(s + d) < 1 or max(s + d) > 1 << 16:
        return None
    pads = _resolve_pads(padding, k, s, d, (h, w))
    if pads is None:
        return None
    limit = {"reflect": lambda p, n: p < n, "circular": lambda p, n: p <= n}.get(mode, lambda p, n: True)
    if not all(limit(p, n) for p, n in zip(pads, (h, h, w, w))):
        layers.fault(f"{mode} padding {pads} too large for {h}x{w}")
        return None
    out = (_conv_size(h, k[0], s[0], d[0], *pads[:2]), _conv_size(w, k[1], s[1], d[1], *pads[2:]))
    if min(out) < 1:
        layers.fault(f"kernel {k} (dilation {d}) larger than the padded {h}x{w} map")
        return None
    return (f, *out)


def _pool(layers: _Layers, item: dict, kind: str) -> tuple:
    draw = layers.draw
    if len(layers.shape) != 3:
        layers.fault(f"{kind}pool2d on a vector")
    c, h, w = layers.shape if len(layers.shape) == 3 else (layers.shape[0], 1, 1)
    item["kernel_size"] = layers.value("kernel_size", st.integers(1, 3) | st.lists(st.integers(1, 3), min_size=2,
                                                                                   max_size=2), WRONG_COUNTS)
    k = _as_pair(item["kernel_size"], None)
    s, p, d = k, (0, 0), (1, 1)
    if draw(st.booleans()):
        item["stride"] = layers.value("stride", st.none() | st.integers(1, 3)
                                      | st.lists(st.integers(1, 3), min_size=2, max_size=2),
                                      tuple(v for v in WRONG_COUNTS if v is not None))
        s = k if item["stride"] is None else _as_pair(item["stride"], None)
    if draw(st.booleans()) and k is not None and min(k) >= 1:
        halves = (max(k[0] // 2, 0), max(k[1] // 2, 0))
        good = st.integers(0, min(halves)) | st.tuples(st.integers(0, halves[0]), st.integers(0, halves[1])).map(list)
        item["padding"] = layers.value("padding", good, WRONG + ([halves[0] + 1, 0], min(halves) + 1))
        p = _as_pair(item["padding"], None)
    if kind == "max" and draw(st.booleans()):
        item["dilation"] = layers.value("dilation", st.integers(1, 2) | st.lists(st.integers(1, 2), min_size=2,
                                                                                 max_size=2), WRONG_COUNTS)
        d = _as_pair(item["dilation"], None)
    ceil_mode = False
    if draw(st.booleans()):
        ceil_mode = item["ceil_mode"] = layers.value("ceil_mode", st.booleans(), ("true", 1, None))
    if kind == "avg" and draw(st.booleans()):
        item["count_include_pad"] = layers.value("count_include_pad", st.booleans(), (0, "no"))
    if None in (k, s, p, d) or min(k + s + d) < 1 or max(k + s + d + p) > 1 << 16 or not isinstance(ceil_mode, bool):
        return None
    if min(p) < 0 or p[0] > k[0] // 2 or p[1] > k[1] // 2:
        layers.fault(f"pool padding {p} over half the kernel {k}")
        return None
    out = tuple(_pool_size(n, k[a], s[a], p[a], d[a], ceil_mode) for a, n in enumerate((h, w)))
    if min(out) < 1:
        layers.fault(f"{k} pool larger than the padded {h}x{w} map")
        return None
    for a, n in enumerate((h, w)):
        if not all(any(0 <= i * s[a] - p[a] + j * d[a] < n for j in range(k[a])) for i in range(out[a])):
            layers.empty_windows = True
    return (c, *out)


def _batch_norm(layers: _Layers, item: dict, kind: str) -> tuple:
    draw, shape = layers.draw, layers.shape
    if (len(shape) == 3) != (kind == "batchnorm2d"):
        layers.fault(f"{kind} on shape {shape}")
    n = shape[0]
    if draw(st.integers(0, 4)) == 0:
        item["num_features"] = layers.value("num_features", st.just(n), (n + 1, 0, "3"), percent=2 * layers.percent)
    if draw(st.booleans()):
        item["eps"] = layers.value("eps", st.sampled_from([1e-5, 1e-3, 0.1, 0]), (-1e-5, "1e-5", None, math.nan))
    if draw(st.integers(0, 3)) == 0:
        item["momentum"] = layers.value("momentum", st.sampled_from([0.1, 0.01]), ("fast", None, math.inf))
    affine = True
    if draw(st.booleans()):
        affine = item["affine"] = layers.value("affine", st.booleans(), ("yes", 1, None))
    item["running_mean"] = layers.numbers((n,), key="running_mean")
    item["running_var"] = layers.numbers((n,), 0.1, 2.0, key="running_var")
    if layers.chance(layers.percent // 4):
        layers.fault("running_var negative")
        item["running_var"][0] = -0.5
    if affine is not False or layers.chance(layers.percent // 4):
        if affine is False:
            layers.fault("weight and bias given with affine false")
        item["weight"] = layers.numbers((n,), 0.5, 1.5)
        item["bias"] = layers.numbers((n,), key="bias")
    return shape if (len(shape) == 3) == (kind == "batchnorm2d") else None


def _dense(layers: _Layers, item: dict) -> tuple:
    shape = layers.shape
    if len(shape) != 1:
        layers.fault(f"dense on shape {shape}")
    n = math.prod(shape)
    out = layers.value("out_features", st.integers(1, 5), WRONG + (0, -3, [2]))
    item["out_features"] = out
    f = out if type(out) is int and out > 0 else 2
    if layers.draw(st.integers(0, 9)) == 0:
        item["in_features"] = layers.value("in_features", st.just(n), (n + 1, 0, "9"), percent=2 * layers.percent)
    item["weight"] = layers.numbers((f, n))
    bias = _bias(layers, f)
    if bias != "absent":
        item["bias"] = bias
    return (f,) if len(shape) == 1 else None


def _layer(layers: _Layers, index: int, names: list) -> tuple[dict, tuple | None]:
    """One layer's object and the shape it gives (None when the generator put a fault in it)."""
    draw, shape = layers.draw, layers.shape
    layers.where = f"layers[{index}]"
    fitting = ON_MAPS if len(shape) == 3 else ON_VECTORS
    kind = draw(st.sampled_from(fitting + ANYWHERE)) if not layers.chance(12) else draw(st.sampled_from(EVERY_TYPE))
    if layers.previous in FOLLOWERS and len(shape) == 3 and layers.chance(50):  # what inference rewrites
        kind = FOLLOWERS[layers.previous]
    layers.previous = kind
    layers.percent = 20 if layers.chance(35) else 1  # a third of the layers hold most of the wrong values
    item: dict = {"type": kind}
    if draw(st.booleans()):
        if names and layers.chance(layers.percent // 5):
            layers.fault("name used twice")
            item["name"] = names[0]
        else:
            item["name"] = draw(st.sampled_from([f"layer{index}", f"l {index}", f"layer\n{index}"]))
            if not item["name"].isprintable():
                layers.fault("a name with a newline, which would break messages and tables")
            names.append(item["name"])
    before = len(layers.faults)
    kind = ALIASES.get(kind, kind)
    if kind == "conv2d":
        out = _conv(layers, item)
    elif kind in ("maxpool2d", "avgpool2d"):
        out = _pool(layers, item, kind[:3])
    elif kind in ("batchnorm2d", "batchnorm1d"):
        out = _batch_norm(layers, item, kind)
    elif kind == "dense":
        out = _dense(layers, item)
    elif kind == "leaky_relu":
        if draw(st.booleans()):
            item["negative_slope"] = layers.value("negative_slope", st.sampled_from([0.01, 0.2, -0.5, 0, 3]),
                                                  ("0.1", None, True, math.nan, math.inf))
        out = shape
    elif kind == "dropout":
        if draw(st.booleans()):
            item["p"] = layers.value("p", st.sampled_from([0, 0.25, 0.5, 1]), (1.5, -0.1, "0.5", None))
        out = shape
    elif kind == "flatten":
        out = (math.prod(shape),)
    elif kind == "globalavgpool2d":
        if len(shape) != 3:
            layers.fault("globalavgpool2d on a vector")
        out = (shape[0], 1, 1) if len(shape) == 3 else None
    elif kind == "softmax":
        out = shape
        if draw(st.booleans()):
            dim = layers.value("dim", st.sampled_from([1, -1, len(shape), -len(shape)]), ("1", None, 1.5, True))
            if isinstance(dim, int) and not isinstance(dim, bool) and not (dim != 0 and -len(shape) <= dim <= len(shape)):
                layers.fault(f"dim {dim} outside a sample of {len(shape)} dimensions")
            if layers.chance(layers.percent // 2):
                dim = draw(st.sampled_from([0, len(shape) + 1]))  # the batch, or past the last dimension
                layers.fault(f"dim {dim} outside a sample of {len(shape)} dimensions")
            item["dim"] = dim
    else:  # relu, sigmoid, tanh
        out = shape
    if layers.chance(layers.percent // 5):
        layers.fault("unknown key")
        item[draw(st.sampled_from(["inplace", "strides", "in\nplace"]))] = 1
    return item, (None if len(layers.faults) > before else out)


@st.composite
def model_documents(draw) -> Doc:
    """A whole model document of 1 to 6 layers, with its expected shapes and the faults drawn into it."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    size = [draw(st.integers(1, 9)), draw(st.integers(1, 9))]
    color = draw(st.sampled_from(["gray", "rgb"]))
    channels = 3 if color == "rgb" else 1
    spec = {"size": size, "color": color}
    spec.update(draw(st.fixed_dictionaries({}, optional={
        "scale": st.sampled_from(["unit", "raw"]), "invert": st.booleans(),
        "mean": st.floats(-1, 1, width=16) | st.lists(st.floats(-1, 1, width=16), min_size=channels,
                                                      max_size=channels),
        "std": st.sampled_from([0.5, 1, 2]) | st.lists(st.sampled_from([0.5, 1, 2]), min_size=1, max_size=1)})))
    document: dict = {"format": "cnn-model", "version": 1, "input": spec}
    document.update(draw(st.fixed_dictionaries({}, optional={
        "name": st.text(min_size=1, max_size=4).filter(str.isprintable),  # shown: printable (test_hostile_inputs)
        "description": st.text(max_size=8).filter(str.isprintable), "metadata": st.just({"accuracy": 0.9})})))
    doc = Doc(document)
    if draw(st.integers(0, 99)) >= 95:  # a fault outside the layers
        key, value = draw(st.sampled_from([
            ("format", "cnn-models"), ("version", 3), ("version", "1"), ("name", 7), ("metadata", []),
            ("extra", {}), ("layers", []), ("layers", {}), ("size", [0, 4]), ("size", [4]), ("size", "4x4"),
            ("size", [1 << 15, 2]), ("color", "grey"), ("scale", 255), ("invert", "yes"), ("std", 0),
            ("std", [1, -1, 1]), ("mean", [0, 0]), ("mean", math.nan)]))
        doc.faults.append((f"input.{key}" if key in INPUT_KEYS else key, json.dumps(value)))
        (spec if key in INPUT_KEYS else document)[key] = value
    shape = (channels, *size)
    layers = _Layers(draw, rng, shape)
    doc.expected.append(shape)
    items, names = [], []
    for index in range(draw(st.integers(1, 6))):
        item, out = _layer(layers, index, names)
        items.append(item)
        doc.expected.append(out)
        if out is None:  # the builder stops at this layer; draw the rest for a plausible shape anyway
            out = layers.shape
        layers.shape = out
    document.setdefault("layers", items)
    doc.faults += layers.faults
    doc.empty_windows = layers.empty_windows
    last = doc.expected[-1]
    if last is not None and len(last) == 1 and draw(st.integers(0, 4)) == 0:
        labels = [f"class {i}" for i in range(last[0])]
        if draw(st.integers(0, 9)) == 0:
            doc.faults.append(("labels", "one short"))
            labels = labels[:-1] or ["a", "a"]
        document["labels"] = labels
    return doc


def test_generator_knows_every_key_of_the_layer_types_it_writes():
    """The model generator writes every key the registry's class allows, for each type it writes (the
    types added with graphs have their own tests against PyTorch: tests/test_layers_torch.py)."""
    assert set(ALIASES) <= set(EVERY_TYPE)
    for kind in LAYER_KEYS:
        cls = layer_class(kind)
        assert cls is not None, kind
        assert set(LAYER_KEYS[kind]) == set(keys_of(cls, kind)), kind
        assert set(cls.required) <= set(LAYER_KEYS[kind])


@_settings(600)
@given(model_documents(), st.sampled_from([np.float32, np.float64]), st.integers(2, 3))
def test_model_document_builds_and_runs_with_the_predicted_shapes_or_fails_cleanly(doc, dtype, batch):
    """Builds and runs in the shapes the checker and PyTorch's formulas give, or is one CnnError line at the fault."""
    text = json.dumps(doc.document)  # through the strict JSON reader, as a file would be: NaN is NonFinite
    try:
        model = parse_model(loads(text, SOURCE), SOURCE, Path("."))
    except CnnError as err:
        message = str(err)
        event(f"rejected: {type(err).__name__}")
        note(f"error: {message}")
        assert "\n" not in message and "\r" not in message, f"error is not one line: {message!r}"
        assert doc.faults, f"rejected a document with no fault in it: {message}"
        assert message.startswith(f"{SOURCE}: {doc.fault_path}") or f"({doc.fault_path})" in message, (
            f"{message!r} does not name {doc.fault_path}, the first fault")
        return
    event("accepted")
    note(f"expected shapes: {doc.expected}")
    rng = np.random.default_rng(0)
    predicted = model.network.shapes(model.input.shape)
    assert predicted == doc.expected, f"checker {predicted} != PyTorch's formulas {doc.expected} (faults {doc.faults})"
    steps = model.network.forward(rng.standard_normal(model.input.shape).astype(dtype))
    assert [step.output.shape for step in steps] == predicted
    finite = not doc.empty_windows  # else -inf, as PyTorch gives, and what follows it may be NaN
    event("a max-pool window holds no input cell" if doc.empty_windows else "accepted: every value finite")
    for step in steps:
        assert step.output.dtype == dtype, f"{step.name}: {step.output.dtype}"
        assert not finite or np.all(np.isfinite(step.output)), f"{step.name} ({step.type}) has non-finite values"
    inputs = rng.standard_normal((batch, *model.input.shape)).astype(dtype)
    together = model.network.predict(inputs)
    assert together.shape == (batch, *predicted[-1]) and together.dtype == dtype
    if not finite:
        return
    assert np.all(np.isfinite(together))
    one = np.stack([model.network.forward(x)[-1].output for x in inputs])
    scale = max(1.0, float(np.abs(one).max()))
    tolerance = 1e-4 if dtype == np.float32 else 1e-10
    assert_array(together, one, rtol=tolerance, atol=tolerance * scale)


# --- ops.conv2d and pooling --------------------------------------------------------------------------

NUMPY_MODES = {"reflect": "reflect", "replicate": "edge", "circular": "wrap"}


def mostly(good, bad, percent: int = 6):
    """A value of ``good``, or of ``bad`` about ``percent`` times in a hundred (shrinking towards ``good``)."""
    return st.integers(0, 99).flatmap(lambda n: bad if n >= 100 - percent else good)


def pairs(low: int, high: int):
    """An integer or a (rows, cols) tuple of integers in [low, high]."""
    return st.integers(low, high) | st.tuples(st.integers(low, high), st.integers(low, high))


@st.composite
def conv_cases(draw):
    """Random small conv shapes and settings, each out of range now and then; the seed of the values."""
    groups = draw(mostly(st.sampled_from([1, 1, 2, 3]), st.just(0)))
    g = max(groups, 1)
    channels = draw(mostly(st.integers(1, 2).map(lambda m: m * g), st.integers(1, 4)))
    filters = draw(mostly(st.integers(1, 2).map(lambda m: m * g), st.integers(1, 4)))
    group_channels = draw(mostly(st.just(channels // g), st.just(channels // g + 1)))
    padding = draw(mostly(st.sampled_from(["valid", "same", "full"]) | st.integers(0, 3)
                          | st.lists(st.integers(0, 3), min_size=2, max_size=2)
                          | st.lists(st.integers(0, 3), min_size=4, max_size=4),
                          st.sampled_from(["half", -1, [1, -1], [0, 0, -1, 0], [1], [0, 1, 2]])))
    return {
        "shape": (channels, draw(st.integers(1, 7)), draw(st.integers(1, 7))),
        "weight_shape": (filters, group_channels, draw(st.integers(1, 4)), draw(st.integers(1, 4))),
        "stride": draw(mostly(pairs(1, 3), pairs(-1, 0))),
        "padding": padding,
        "dilation": draw(mostly(pairs(1, 2), pairs(-1, 0))),
        "groups": groups,
        "padding_mode": draw(mostly(st.sampled_from(["zeros", "reflect", "replicate", "circular"]), st.just("edge"))),
        "flip": draw(st.booleans()),
        "method": draw(st.sampled_from(["auto", "taps", "gemm"])),
        "bias": draw(st.booleans()),
        "batch": draw(st.sampled_from([None, 2])),
        "seed": draw(st.integers(0, 2**16)),
    }


def _conv_expectation(case):
    """(pads, output shape) by PyTorch's rules and the documented pad-mode limits; None if invalid."""
    (channels, h, w), (filters, group_channels, kh, kw) = case["shape"], case["weight_shape"]
    groups = case["groups"]
    s, d = ops.pair(case["stride"], "stride"), ops.pair(case["dilation"], "dilation")
    if groups < 1 or channels % groups or filters % groups or group_channels * groups != channels:
        return None
    if min(s + d) < 1 or case["padding_mode"] not in ("zeros", *NUMPY_MODES):
        return None
    pads = _resolve_pads(case["padding"], (kh, kw), s, d, (h, w))
    if pads is None:
        return None
    if case["padding_mode"] == "reflect" and not all(p < n for p, n in zip(pads, (h, h, w, w))):
        return None
    if case["padding_mode"] == "circular" and not all(p <= n for p, n in zip(pads, (h, h, w, w))):
        return None
    out = (_conv_size(h, kh, s[0], d[0], *pads[:2]), _conv_size(w, kw, s[1], d[1], *pads[2:]))
    return (pads, (filters, *out)) if min(out) >= 1 else None


@_settings(250)
@given(conv_cases())
def test_conv2d_is_a_shape_error_or_the_predicted_shape_and_the_loop_oracles_values(case):
    """conv2d is a ShapeError when conv_geometry and PyTorch say so, else their shape and oracles.conv2d's values."""
    rng = np.random.default_rng(case["seed"])
    lead = () if case["batch"] is None else (case["batch"],)
    x = rng.standard_normal(lead + case["shape"])
    weight = rng.standard_normal(case["weight_shape"])
    bias = rng.standard_normal(case["weight_shape"][0]) if case["bias"] else None
    settings_ = {k: case[k] for k in ("stride", "padding", "dilation", "groups", "padding_mode")}
    expected = _conv_expectation(case)
    try:
        predicted = ops.conv_geometry(case["shape"], case["weight_shape"], **settings_)
    except ShapeError:
        predicted = None
    try:
        y = ops.conv2d(x, weight, bias, flip=case["flip"], method=case["method"], **settings_)
    except ShapeError as err:
        event("conv: ShapeError")
        assert "\n" not in str(err)
        assert predicted is None, f"conv_geometry accepted {predicted}, conv2d raised {err}"
        assert expected is None, f"rejected settings PyTorch accepts, giving {expected[1]}: {err}"
        return
    event("conv: computed")
    assert expected is not None, "accepted settings PyTorch rejects"
    assert predicted == expected, f"conv_geometry {predicted} != PyTorch's formula {expected}"
    pads, out_shape = expected
    assert y.shape == lead + out_shape and y.dtype == np.float64
    kernel = weight[:, :, ::-1, ::-1] if case["flip"] else weight
    reference = []
    for image in x.reshape(-1, *case["shape"]):
        if case["padding_mode"] != "zeros":
            image = np.pad(image, ((0, 0), pads[:2], pads[2:]), mode=NUMPY_MODES[case["padding_mode"]])
        reference.append(oracles.conv2d(image, kernel, bias, ops.pair(case["stride"], "stride"),
                                        pads if case["padding_mode"] == "zeros" else (0, 0, 0, 0),
                                        ops.pair(case["dilation"], "dilation"), case["groups"]))
    assert_array(y, np.reshape(reference, y.shape), dtype=np.float64, rtol=1e-5, atol=1e-9)


@st.composite
def pool_cases(draw):
    """Random small pooling shapes and settings, each out of range now and then; the seed of the values."""
    kind = draw(st.sampled_from(["max", "avg"]))
    kernel = draw(mostly(pairs(1, 4), pairs(-1, 0)).map(lambda k: ops.pair(k, "kernel_size")))
    halves = [max(k // 2, 0) for k in kernel]
    padding = draw(mostly(st.tuples(st.integers(0, halves[0]), st.integers(0, halves[1])),
                          st.tuples(st.integers(-1, halves[0] + 1), st.integers(0, halves[1] + 1)), 10))
    stride = draw(st.none() | mostly(pairs(1, 3), pairs(-1, 0)).map(lambda s: ops.pair(s, "stride")))
    dilation = ops.pair(draw(mostly(pairs(1, 3), pairs(-1, 0))), "dilation") if kind == "max" else (1, 1)
    return {
        "kind": kind,
        "shape": (draw(st.integers(1, 3)), draw(st.integers(1, 7)), draw(st.integers(1, 7))),
        "kernel": kernel,
        "stride": stride,  # None: the kernel size
        "padding": padding,
        "dilation": dilation,
        "ceil_mode": draw(st.booleans()),
        "count_include_pad": draw(st.booleans()),
        "batch": draw(st.sampled_from([None, 2])),
        "seed": draw(st.integers(0, 2**16)),
    }


def _max_pool_loop(x, kernel, stride, padding, dilation, out):
    """Max over the input cells of each window; -inf for a window that holds none, as PyTorch gives."""
    y = np.full((x.shape[0], *out), -np.inf)
    for i in range(out[0]):
        for j in range(out[1]):
            rows = [r for r in (i * stride[0] - padding[0] + a * dilation[0] for a in range(kernel[0]))
                    if 0 <= r < x.shape[1]]
            cols = [q for q in (j * stride[1] - padding[1] + b * dilation[1] for b in range(kernel[1]))
                    if 0 <= q < x.shape[2]]
            if rows and cols:
                y[:, i, j] = x[:, rows][:, :, cols].max(axis=(1, 2))
    return y


@_settings(250)
@given(pool_cases())
def test_pooling_is_a_shape_error_or_the_predicted_shape_and_the_loop_oracles_values(case):
    """Pooling is a ShapeError when pool_geometry and PyTorch say so, else their shape and oracles.pool2d's values."""
    rng = np.random.default_rng(case["seed"])
    lead = () if case["batch"] is None else (case["batch"],)
    x = rng.standard_normal(lead + case["shape"])
    k, s, p, d = case["kernel"], case["stride"] or case["kernel"], case["padding"], case["dilation"]
    expected = None
    if min(k + s + d) >= 1 and 0 <= min(p) and p[0] <= k[0] // 2 and p[1] <= k[1] // 2:
        out = tuple(_pool_size(case["shape"][1 + a], k[a], s[a], p[a], d[a], case["ceil_mode"]) for a in range(2))
        expected = (case["shape"][0], *out) if min(out) >= 1 else None
    try:
        *_, geometry_out, _ = ops.pool_geometry(case["shape"][1:], k, case["stride"], p, d, case["ceil_mode"])
        predicted = (case["shape"][0], *geometry_out)
    except ShapeError:
        predicted = None
    try:
        if case["kind"] == "max":
            y = ops.max_pool2d(x, k, case["stride"], p, d, case["ceil_mode"])
        else:
            y = ops.avg_pool2d(x, k, case["stride"], p, case["ceil_mode"], case["count_include_pad"])
    except ShapeError as err:
        event(f"{case['kind']} pool: ShapeError")
        assert "\n" not in str(err)
        assert predicted is None, f"pool_geometry accepted {predicted}, the pool raised {err}"
        assert expected is None, f"rejected settings that give {expected}: {err}"
        return
    event(f"{case['kind']} pool: computed")
    assert expected is not None, "accepted settings PyTorch rejects"
    assert predicted == expected, f"pool_geometry {predicted} != PyTorch's formula {expected}"
    assert y.shape == lead + expected and y.dtype == np.float64
    reference = []
    for image in x.reshape(-1, *case["shape"]):
        try:
            reference.append(oracles.pool2d(image, case["kind"], k, s, p, d, case["ceil_mode"],
                                            case["count_include_pad"]))
        except ValueError:  # a max window with no input cell: the oracle's max() of nothing
            event("max pool: a window holds no input cell")
            reference.append(_max_pool_loop(image, k, s, p, d, out))
    assert_array(y, np.reshape(reference, y.shape), dtype=np.float64, rtol=1e-5, atol=1e-12)


# --- Kernel files ------------------------------------------------------------------------------------

GOOD_NUMBERS = st.integers(-3, 3) | st.floats(-4, 4, width=16)
ODD_NUMBERS = st.floats() | st.integers() | st.sampled_from([10**400, -(10**400), 1e308, 5e-324, True, None, "1"])
WRONG_SETTINGS = st.sampled_from(["half", "edge", "Zeros", 0, -1, [1, 2, 3], [1], [0, -1], True, None, 1.5, 1 << 17,
                                  {"rows": 1}])


@st.composite
def arrays(draw, ranks=(2, 3, 4)):
    """A nested list of numbers: mostly rectangular with a rank of ``ranks``; now and then of another
    rank, empty, ragged, or holding a value that is not a finite number."""
    rank = draw(mostly(st.sampled_from(ranks), st.integers(0, 5)))
    shape = [draw(mostly(st.integers(1, 3), st.just(0), 3)) for _ in range(rank)]
    leaf = mostly(GOOD_NUMBERS, ODD_NUMBERS, 2)

    def build(dims):
        if not dims:
            return draw(leaf)
        rows = [build(dims[1:]) for _ in range(dims[0])]
        if rows and draw(st.integers(0, 99)) < 2:
            rows.append(build(dims[2:]))  # a ragged row
        return rows

    return build(shape)


@st.composite
def kernel_objects(draw):
    """A kernel-file object: weights, and any of the optional keys, each wrong now and then."""
    weights = draw(arrays())
    document = {"weights": weights}
    rank, first = 0, weights
    while isinstance(first, list) and first:
        rank, first = rank + 1, first[0]
    filters = len(weights) if rank >= 3 else 1
    optional = {
        "name": mostly(st.text(max_size=4), st.integers()), "description": mostly(st.text(max_size=8), st.just([])),
        "divisor": mostly(st.sampled_from([1, 2, 9, 16, 256, 0.5, -4]), st.just(0) | ODD_NUMBERS),
        "bias": mostly(GOOD_NUMBERS | st.lists(GOOD_NUMBERS, min_size=filters, max_size=filters),
                       ODD_NUMBERS | arrays(ranks=(1,))),
        "stride": mostly(pairs(1, 3), WRONG_SETTINGS),
        "dilation": mostly(pairs(1, 3), WRONG_SETTINGS),
        "padding": mostly(st.sampled_from(["valid", "same", "full"]) | st.integers(0, 3)
                          | st.lists(st.integers(0, 3), min_size=2, max_size=2)
                          | st.lists(st.integers(0, 3), min_size=4, max_size=4), WRONG_SETTINGS),
        "padding_mode": mostly(st.sampled_from(["zeros", "reflect", "replicate", "circular"]), WRONG_SETTINGS),
        "flip": mostly(st.booleans(), WRONG_SETTINGS),
    }
    for key, values in optional.items():
        if draw(st.booleans()):
            document[key] = draw(values)
    if draw(st.integers(0, 99)) < 8:  # an unknown key, which the error names
        document[draw(st.sampled_from(["weight", "Stride", "in\nplace"]))] = 1
    return document


JSON_LIKE = st.recursive(
    st.none() | st.booleans() | GOOD_NUMBERS | ODD_NUMBERS | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(FILE_KEYS) | st.text(max_size=4),
                                                                inner, max_size=4),
    max_leaves=20)
RAW_TEXTS = (st.text(max_size=20) | st.integers(1, 3000).map(lambda n: "[" * n + "1" + "]" * n)
             | st.integers(4301, 4400).map(lambda n: f'{{"weights": [[{"9" * n}]]}}')
             | st.just('{"weights": [[1]], "weights": [[2]]}'))


@_settings(300)
@given(st.one_of(kernel_objects(), arrays(), JSON_LIKE).map(json.dumps) | RAW_TEXTS)
def test_kernel_json_parses_and_writes_back_or_fails_cleanly(text):
    """Any JSON text is a kernel that to_json writes back unchanged, or one CnnError line naming the file."""
    try:
        kernel = parse_kernel(loads(text, "k.json"), "k.json")
    except CnnError as err:
        event(f"kernel: {type(err).__name__}")
        assert "\n" not in str(err) and "\r" not in str(err), f"error is not one line: {str(err)!r}"
        assert str(err).startswith("k.json: "), str(err)
        return
    event("kernel: parsed")
    again = parse_kernel(json.loads(json.dumps(kernel.to_json())), "k.json")
    assert again.name == kernel.name and again.description == kernel.description
    assert_array(again.raw, kernel.raw, rtol=0, atol=0)
    assert again.divisor == kernel.divisor and dict(again.settings) == dict(kernel.settings)
    assert (again.bias is None) == (kernel.bias is None)
    if kernel.bias is not None:
        assert_array(again.bias, kernel.bias, rtol=0, atol=0)

