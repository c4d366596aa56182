"""Networks as graphs, and the forward pass that keeps every intermediate map.

A Network is a tuple of layers in an order where each reads only the input or layers before it
(topological order), with the names each reads: a chain when each reads the one before, as the
options of ``cnn run`` and version-1 model files build it. ``Network.shapes`` checks the whole
graph against an input shape before anything is computed; ``Network.forward`` walks the layers
in order, keeping a dict of outputs by name, and returns one Step per layer, the input first.
Each layer also says what its forward allocates (``working_bytes``, from the op's formula in
ops), so that ``Network.memory_estimate`` bounds a run's memory before it starts.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Sequence, cast

import numpy as np

from . import ops
from ..errors import CnnError, GraphError, ShapeError
from .layers import Activation, BatchNorm, Conv2d, Dense, Dropout, Flatten, Layer, Pool2d, Shape, Softmax
from .layers.base import input_counts, map_bytes as _map_bytes
from .scratch import _call_bytes

INPUT = "input"  # the name layers use for the network's input
# Python objects that memory_estimate counts beside the arrays: per layer of a network, the layer
# object and its settings (measured: 100-170 bytes of RSS a layer over 10,000 layers); per map
# of a forward pass, its Step, the Step's statistics, the array object and its shape tuples
# (measured: 800-880 bytes). tests/test_model.py holds a deep network to them.
LAYER_BYTES = 512
STEP_BYTES = 1 << 10



@dataclass(frozen=True, eq=False, repr=False)
class Step:
    """One layer's output in a forward pass; index 0 is the input itself."""

    index: int
    name: str
    type: str
    output: np.ndarray
    seconds: float = 0.0
    layer: Layer | None = None
    in_shape: Shape = ()
    labels: tuple[str, ...] = ()  # one per channel: kernel names, or the image's channel names
    inputs: tuple[str, ...] = ()  # the names of the steps it read ("input" for the network's input)

    @property
    def settings(self) -> dict[str, Any]:
        return {} if self.layer is None else self.layer.settings()

    @property
    def params(self) -> int:
        return getattr(self.layer, "params", 0)

    @property
    def macs(self) -> int:
        macs = getattr(self.layer, "macs", None)
        return 0 if macs is None else macs(self.output.shape)

    @cached_property
    def stats(self) -> dict[str, float]:
        return map_stats(self.output)


def is_chain(steps: Sequence[Step]) -> bool:
    """Whether each step of a forward pass reads only the step before it, as every version-1 model
    and every kernel run does. A step that names no inputs reads the step before (as a record
    without ``inputs`` does): views name what a step reads only when this is false."""
    return all(not step.inputs or step.inputs == (before.name,) for before, step in zip(steps, steps[1:]))


_STATS_CHUNK = 1 << 16


def map_stats(array: np.ndarray) -> dict[str, float]:
    """min, max, mean, std and the share of exact zeros of an array.

    Sums run in float64 over chunks, so a big float32 map needs no float64 copy of itself, only
    one chunk's deviations (``stats_workspace``).
    """
    flat = np.asarray(array).reshape(-1)
    with np.errstate(all="ignore"):  # a map holding infinities has an infinite or NaN mean: say so, quietly
        if flat.size <= _STATS_CHUNK:  # most maps: one chunk, without the loops (10,000 layers, 10,000 maps)
            mean = float(flat.sum(dtype=np.float64)) / flat.size
            squares = float(np.square(flat - mean, dtype=np.float64).sum())
            zeros = flat.size - int(np.count_nonzero(flat))
        else:
            chunks = [flat[i:i + _STATS_CHUNK] for i in range(0, flat.size, _STATS_CHUNK)]
            mean = sum(float(chunk.sum(dtype=np.float64)) for chunk in chunks) / flat.size
            squares = sum(float(np.square(chunk - mean, dtype=np.float64).sum()) for chunk in chunks)
            zeros = flat.size - sum(int(np.count_nonzero(chunk)) for chunk in chunks)
    return {
        "min": float(flat.min()),
        "max": float(flat.max()),
        "mean": mean,
        "std": math.sqrt(squares / flat.size),
        "zeros": zeros / flat.size,
    }


def stats_workspace(size: int, itemsize: int) -> int:
    """Bytes ``map_stats`` allocates for a map of ``size`` values: one chunk's deviations in the
    map's dtype and their squares in float64, and NumPy's buffers for the float64 sums."""
    return min(size, _STATS_CHUNK) * (itemsize + 8) + _call_bytes(8)


@dataclass(frozen=True, eq=False, repr=False)
class Network:
    """Layers in topological order; ``inputs[i]`` names what layer i reads (None: a chain, each
    layer reading the one before). The last layer is the output; ``outputs`` names more layers
    whose values are outputs too (auxiliary heads). Checked when made: GraphError names the layer."""

    layers: tuple[Layer, ...]
    inputs: tuple[tuple[str, ...], ...] | None = None
    outputs: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.inputs is None:
            names = [INPUT] + [layer.name for layer in self.layers[:-1]]
            object.__setattr__(self, "inputs", tuple((name,) for name in names))
        else:
            object.__setattr__(self, "inputs", tuple(tuple(names) for names in self.inputs))
        object.__setattr__(self, "outputs", tuple(self.outputs))
        check_graph([layer.name for layer in self.layers], self.reads, self.outputs,
                    [input_counts(layer) for layer in self.layers])

    @property
    def reads(self) -> tuple[tuple[str, ...], ...]:
        """What each layer reads, by name (``inputs`` after the chain default is filled in)."""
        return self.inputs  # type: ignore[return-value]

    @cached_property
    def is_chain(self) -> bool:
        return all(names == (INPUT if i == 0 else self.layers[i - 1].name,) for i, names in enumerate(self.reads))

    @cached_property
    def _positions(self) -> tuple[tuple[int, ...], ...]:
        """For each layer, the positions of what it reads in ``shapes``' list: 0 the input, i layer i."""
        index = {INPUT: 0} | {layer.name: i for i, layer in enumerate(self.layers, start=1)}
        return tuple(tuple(index[name] for name in names) for names in self.reads)

    @cached_property
    def consumers(self) -> dict[str, tuple[str, ...]]:
        """For each name (the input's and each layer's), the layers that read it, in order."""
        result: dict[str, list[str]] = {name: [] for name in (INPUT, *(layer.name for layer in self.layers))}
        for layer, names in zip(self.layers, self.reads):
            for name in dict.fromkeys(names):
                result[name].append(layer.name)
        return {name: tuple(readers) for name, readers in result.items()}

    def shapes(self, input_shape: Shape) -> list[Shape]:
        """The input's shape, then the output shape of every layer, for one input of ``input_shape``.

        Raises ShapeError naming the first layer that does not fit.
        """
        shapes = [tuple(input_shape)]
        for layer, positions in zip(self.layers, self._positions):
            given = [shapes[p] for p in positions]
            try:
                shapes.append(tuple(layer.output_shape(*given)))
            except CnnError as err:
                message = err.message if err.source == layer.name else str(err)
                given_text = "" if len(given) > 1 else f" (input {_shapes_text(given)})"  # merges list their inputs
                raise ShapeError(f"{message}{given_text}", source=layer.name) from None
        return shapes

    def forward(self, x: np.ndarray, labels: Sequence[str] = (), keep_maps: bool = True) -> list[Step]:
        """Run every layer on a (C, H, W) map; return the input and each layer's output, in order.

        ``labels`` name the input's channels; a layer that keeps the channels of its first input
        (an activation, a pooling) keeps its labels. The work buffers ops keeps between calls are
        let go after each layer, so what a layer holds at once is its own (``memory_estimate``).
        With ``keep_maps`` False, a map is let go once the last layer reading it has run, and only
        the input and the network's outputs are returned (the last layer's last): for a run that
        writes the output alone, the memory of the maps alive at once instead of all of them.
        """
        self.shapes(x.shape)
        steps: list[Step | None] = [Step(0, INPUT, INPUT, x, labels=tuple(labels))]
        last_read = self._last_reads if not keep_maps else {}
        ops.release_buffers()
        try:
            with np.errstate(all="ignore"):  # overflow shows as inf in the maps, and the CLI says so
                for index, (layer, positions) in enumerate(zip(self.layers, self._positions), start=1):
                    given = [cast(Step, steps[p]) for p in positions]
                    started = time.perf_counter()
                    y = layer.forward(*(step.output for step in given))
                    elapsed = time.perf_counter() - started
                    ops.release_buffers()
                    first = given[0]
                    own = tuple(getattr(layer, "labels", ()))
                    keeps_channels = (y.ndim == first.output.ndim == 3 and y.shape[0] == first.output.shape[0]
                                      and not getattr(layer, "mixes_channels", False))
                    labels = own or (first.labels if keeps_channels else ())
                    steps.append(Step(index, layer.name, layer.type, y, elapsed, layer, first.output.shape, labels,
                                      self.reads[index - 1]))
                    for p in last_read.get(index, ()):
                        steps[p] = None  # read by no later layer, and not an output
                    del given, first
        finally:
            ops.release_buffers()
        return [step for step in steps if step is not None]

    @cached_property
    def _last_reads(self) -> dict[int, tuple[int, ...]]:
        """For each layer (by its position in a forward's steps, 1 for the first), the steps no later
        layer reads and that are not the network's outputs: those a forward that keeps no maps drops
        after it. The input is never dropped (its caller holds it anyway)."""
        position = {layer.name: i for i, layer in enumerate(self.layers, start=1)}
        kept = {position[name] for name in (*self.outputs, self.layers[-1].name)}
        last: dict[int, int] = {}
        for index, positions in enumerate(self._positions, start=1):
            for p in positions:
                last[p] = index
        dropped: dict[int, list[int]] = {}
        for p in range(1, len(self.layers) + 1):
            if p not in kept:
                dropped.setdefault(last.get(p, p), []).append(p)
        return {index: tuple(ps) for index, ps in dropped.items()}

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """Run a batch (N, C, H, W) through every layer at once and return only the last output.

        No map is kept: each is let go once the last layer reading it has run (a ReLU then runs in
        the memory of the input it alone was reading), and the layers may be rewritten into fewer,
        equal ones (``inference_plan``).
        """
        self.shapes(batch.shape[1:])
        values: dict[str, np.ndarray] = {INPUT: batch}
        caller = _root(batch)
        with np.errstate(all="ignore"):
            for layer, names, done in self.inference_plan:
                given = [values[name] for name in names]
                if _relu_in_place(layer, names, done, values, caller):
                    values[layer.name] = ops.relu(given[0], out=given[0])
                else:
                    values[layer.name] = layer.forward(*given, batched=True)
                for name in done:
                    del values[name]
        return values[self._inference[1]]

    @property
    def inference_plan(self) -> tuple[tuple[Layer, tuple[str, ...], tuple[str, ...]], ...]:
        """The layers as batch inference runs them: (layer, names it reads, names no longer needed
        after it); see ``_inference``."""
        return self._inference[0]

    @cached_property
    def _inference(self) -> tuple[tuple[tuple[Any, tuple[str, ...], tuple[str, ...]], ...], str]:
        """The plan of batch inference, and the name its output has in it.

        The layers are rewritten as inference runtimes do, none of which changes a result beyond
        float rounding, and each only where the graph allows it: batch norm folded into the conv
        before it when nothing else reads the conv; dropout dropped (its readers read its input);
        ReLU moved after a max-pool that alone reads it (max commutes with ReLU; 4x fewer values)."""
        kept = set(self.outputs) | {self.layers[-1].name}
        readers = self.consumers
        rename: dict[str, str] = {}  # a dropped layer's name -> the name that stands for it
        plan: list[list[Any]] = []  # [layer, reads]
        by_name: dict[str, int] = {}  # a planned layer's name -> its position in plan
        taken = {INPUT} | {layer.name for layer in self.layers}  # a name made up here must be none of these

        stands_for: dict[str, str] = {}  # a name made up here -> the layer whose value it holds

        def alone(name: str, reader: str) -> bool:  # ``reader`` is all that reads ``name``
            name = stands_for.get(name, name)
            return name not in kept and readers[name] == (reader,)

        for layer, names in zip(self.layers, self.reads):
            names = tuple(rename.get(name, name) for name in names)
            before = plan[by_name[names[0]]] if len(names) == 1 and names[0] in by_name else None
            if isinstance(layer, Dropout) and layer.name not in kept:
                rename[layer.name] = names[0]
                continue
            if (isinstance(layer, BatchNorm) and before is not None and isinstance(before[0], Conv2d)
                    and not before[0].flip and alone(names[0], layer.name)):
                folded = _fold_batch_norm(before[0], layer)
                before[0] = folded
                rename[layer.name] = names[0]
                continue
            if (isinstance(layer, Pool2d) and layer.kind == "max" and before is not None
                    and isinstance(before[0], Activation) and before[0].kind == "relu"
                    and alone(names[0], layer.name) and before is plan[-1]):
                relu, relu_reads = before
                # pool reads what the relu read; the relu reads the pool, under a new name
                alias = layer.name + "/relu"
                while alias in taken:  # a layer of the network may be called that
                    alias += "'"
                taken.add(alias)
                stands_for[alias] = layer.name
                before[0], before[1] = layer, relu_reads
                by_name[layer.name] = by_name.pop(relu.name)
                plan.append([dataclasses.replace(relu, name=alias), (layer.name,)])
                rename[layer.name] = alias
                by_name[alias] = len(plan) - 1
                continue
            plan.append([layer, names])
            by_name[layer.name] = len(plan) - 1
        final = rename.get(self.layers[-1].name, self.layers[-1].name)
        # Let each value go after the last layer that reads it.
        last_use: dict[str, int] = {}
        for position, (_, names) in enumerate(plan):
            for name in names:
                last_use[name] = position
        done: list[list[str]] = [[] for _ in plan]
        for name, position in last_use.items():
            if name != final:
                done[position].append(name)
        return tuple((layer, tuple(names), tuple(gone)) for (layer, names), gone in zip(plan, done)), final

    @property
    def inference_layers(self) -> tuple[Layer, ...]:
        """The layers batch inference runs, in order (``inference_plan`` without the wiring)."""
        return tuple(layer for layer, _, _ in self.inference_plan)

    def memory_estimate(self, input_shape: Shape, itemsize: int, keep_maps: bool = True) -> int:
        """Bytes that a ``forward`` on one input of ``input_shape`` has allocated at once, at most,
        with the statistics of every map computed after it: an upper bound from shapes alone.

        While layer i runs, the process holds the network (its arrays and LAYER_BYTES a layer),
        the input and the maps of layers 1..i-1 (each kept, for they are all shown, but none for a
        layer whose output is a view of its input), a Step per map (STEP_BYTES), and what layer
        i allocates (``working_bytes``: its output, padded copies, work buffers, temporaries);
        and what libraries keep once a layer has used them (``kept_bytes``: OpenBLAS's buffers,
        the thread pool). After the last layer: every map, and one map's statistics at a time
        (``stats_workspace``). The estimate is the largest of these. The input map is counted:
        its caller allocated it within the same run.

        With ``keep_maps`` False (``forward``'s), a map stops counting once the last layer reading it
        has run, unless a view of it (a flatten, an identity) may still hold its memory.

        Raises ShapeError as ``shapes`` does.
        """
        shapes = self.shapes(input_shape)
        network = sum(_array_bytes(layer) + LAYER_BYTES for layer in self.layers)
        held = _map_bytes(math.prod(shapes[0]), itemsize) + STEP_BYTES
        kept: dict[str, int] = {}  # by library, the most any layer so far left there
        viewed = {p for layer, positions in zip(self.layers, self._positions) if getattr(layer, "view", False)
                  for p in positions}
        dropped = {} if keep_maps else self._last_reads
        sizes = [0] * (len(self.layers) + 1)
        peak = 0
        for index, (layer, positions, after) in enumerate(zip(self.layers, self._positions, shapes[1:]), start=1):
            given = [shapes[p] for p in positions]
            if hasattr(layer, "kept_bytes"):
                for name, size in layer.kept_bytes(*given, itemsize=itemsize).items():
                    kept[name] = max(kept.get(name, 0), size)
            peak = max(peak, held + sum(kept.values()) + layer.working_bytes(*given, itemsize=itemsize))
            sizes[index] = (0 if getattr(layer, "view", False) else _map_bytes(math.prod(after), itemsize)) + STEP_BYTES
            held += sizes[index]
            held -= sum(sizes[p] for p in dropped.get(index, ()) if p not in viewed)
        largest = max(math.prod(shape) for shape in shapes) if keep_maps else math.prod(shapes[-1])
        peak = max(peak, held + sum(kept.values()) + stats_workspace(largest, itemsize))
        return network + peak

    def table(self, input_shape: Shape) -> list[dict[str, Any]]:
        """One row per layer for one input (name, type, the names it reads, description, output
        shape, parameters, multiply-adds), from shapes alone: what ``cnn summary`` prints."""
        shapes = self.shapes(input_shape)
        rows = []
        for layer, names, shape in zip(self.layers, self.reads, shapes[1:]):
            macs = getattr(layer, "macs", None)
            rows.append({"name": layer.name, "type": layer.type, "inputs": list(names), "describe": layer.describe(),
                         "settings": layer.settings(), "shape": shape, "params": getattr(layer, "params", 0),
                         "macs": 0 if macs is None else macs(shape)})
        return rows


def check_graph(names: Sequence[str], reads: Sequence[Sequence[str]], outputs: Sequence[str],
                counts: Sequence[tuple[int, int | None]] = ()) -> None:
    """Raise GraphError unless layers named ``names``, reading ``reads``, form one graph in
    topological order: unique names (none of them "input"), each input the network's or an earlier
    layer's, as many inputs as the layer takes, ``outputs`` known, and every layer on a path to an
    output (the last layer or one of ``outputs``)."""
    seen: dict[str, int] = {}
    for index, name in enumerate(names):
        if name == INPUT:
            raise GraphError(f"{INPUT!r} names the network's input; give the layer another name", source=name,
                             layer=index, field="name")
        if name in seen:
            raise GraphError(f"{name!r} is also the name of layer {seen[name]}; names must be unique", source=name,
                             layer=index, field="name")
        given = reads[index]
        if counts:
            least, most = counts[index]
            if not least <= len(given) <= (most if most is not None else len(given)):
                wanted = (f"{least}" if least == most else f"at least {least}" if most is None
                          else f"{least} to {most}")
                raise GraphError(f"reads {len(given)} input{'s' if len(given) != 1 else ''}; expected {wanted}",
                                 source=name, layer=index, field="inputs")
        for read in given:
            if read == name:
                raise GraphError("reads itself; a layer reads the input or layers before it", source=name,
                                 layer=index, field="inputs")
            if read != INPUT and read not in seen:
                later = read in names[index + 1:]
                why = ("comes later; a layer reads the input or layers before it (list layers in the order they run)"
                       if later else "names no layer")
                raise GraphError(f"input {read!r} {why}", source=name, layer=index, field="inputs")
        seen[name] = index
    for index, name in enumerate(outputs):
        if name not in seen:
            raise GraphError(f"output {name!r} names no layer", source="outputs", layer=None, field=f"outputs[{index}]")
    # Walk back from the outputs; a layer not reached feeds nothing that is shown as a result.
    reached = set(outputs) | ({names[-1]} if names else set())
    for index in range(len(names) - 1, -1, -1):
        if names[index] in reached:
            reached.update(reads[index])
    for index, name in enumerate(names):
        if name not in reached:
            raise GraphError("reaches no output: nothing reads it and it is not the last layer nor in 'outputs'",
                             source=name, layer=index, field="name")


def _root(array: np.ndarray) -> np.ndarray:
    """The array that owns ``array``'s memory (itself, or the base its views lead back to)."""
    while isinstance(array.base, np.ndarray):
        array = array.base
    return array


def _relu_in_place(layer: Any, names: tuple[str, ...], done: tuple[str, ...], values: dict[str, np.ndarray],
                   caller: np.ndarray) -> bool:
    """Whether batch inference may run a ReLU in its input's memory: the input is let go right after
    it, is no view of the caller's batch, and shares no memory with another value still held."""
    if not (isinstance(layer, Activation) and layer.kind == "relu") or names[0] not in done:
        return False
    x = values[names[0]]
    if x.dtype not in (np.float32, np.float64) or not (x.flags.c_contiguous and x.flags.writeable):
        return False
    root = _root(x)
    return root is not caller and all(_root(value) is not root for name, value in values.items() if name != names[0])


def _fold_batch_norm(conv: Conv2d, norm: BatchNorm) -> Conv2d:
    """One conv equal to conv then batch norm: weights scaled per filter, the shift added to the bias."""
    scale, shift = ops.batch_norm_terms(norm.running_mean, norm.running_var, norm.weight, norm.bias, norm.eps)
    bias = shift if conv.bias is None else conv.bias * scale + shift
    dtype = conv.weight.dtype
    return Conv2d((conv.weight * scale[:, None, None, None]).astype(dtype), bias.astype(dtype), conv.stride,
                  conv.padding, conv.padding_mode, conv.dilation, conv.groups, False, conv.name, conv.labels)


def _array_bytes(layer: Any) -> int:
    """Bytes of the arrays a layer holds (weights, bias, running statistics)."""
    return sum(value.nbytes for value in vars(layer).values() if isinstance(value, np.ndarray))


def _shapes_text(shapes: Sequence[Shape]) -> str:
    return ", ".join(str(tuple(shape)) for shape in shapes)


@dataclass(frozen=True)
class StageOptions:
    """The layer options of ``cnn run``: one conv stage, then an optional dense layer."""

    stride: tuple[int, int] = (1, 1)
    padding: Any = "valid"
    padding_mode: str = "zeros"
    dilation: tuple[int, int] = (1, 1)
    flip: bool = False
    activation: str = "relu"
    negative_slope: float = 0.01
    pool: str = "max"
    pool_size: tuple[int, int] = (2, 2)
    pool_stride: tuple[int, int] | None = None
    ceil_mode: bool = False
    softmax: bool = False


def single_stage(weight: np.ndarray, bias: np.ndarray | None, groups: int, labels: Sequence[str],
                 options: StageOptions, dense: Dense | None = None) -> Network:
    """conv -> activation -> pooling -> (flatten -> dense -> softmax), as ``cnn run`` builds it."""
    layers: list[Layer] = [Conv2d(weight, bias, options.stride, options.padding, options.padding_mode,
                                  options.dilation, groups, options.flip, "conv1", tuple(labels))]
    if options.activation != "none":
        layers.append(Activation(options.activation, options.negative_slope, f"{options.activation}1"))
    if options.pool != "none":
        layers.append(Pool2d(options.pool, options.pool_size, options.pool_stride, ceil_mode=options.ceil_mode,
                             name=f"{options.pool}pool1"))
    if dense is not None:
        layers += [Flatten("flatten1"), dense]
        if options.softmax:
            layers.append(Softmax("softmax1"))
    return Network(tuple(layers))
