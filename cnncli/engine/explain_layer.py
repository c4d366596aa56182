"""Where one number of any layer's output comes from, as plain data (``cnn explain``).

``explain_layer`` takes the steps of a forward pass, a step and a cell of its output, and returns
the working that makes that number from the layer's inputs: a conv's ``Explanation``
(engine/explain.py), or for every other type a ``LayerExplanation``: the formula in symbols,
then with its numbers, the cells it read (``Source``), and where many values take part a table of
terms (a dense unit's inputs x weights, a softmax's exponentials) or the window a pooling cell
covers. The value is recomputed in float64 from the formula, never by calling the layer, and
checked against the forward pass's own map: a mismatch is a bug (RuntimeError), never shown.

Each layer class has one explainer, a function of a ``Context`` registered with ``explains``
(explain_values.py: one value through a function; explain_norms.py: normalisations;
explain_sums.py: sums and windows; explain_moves.py: values moved or merged); explain_at.py finds
the layer and the cell a user names. Never prints and never imports the CLI libraries;
``LayerExplanation.record()`` is the JSON layout.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence, Union

import numpy as np

from .explain import CellError, Explanation, _check_value, _read_by, explain_cell
from .explain_at import check_at
from .follow import After, follow, json_number, json_values
from .graph import Step, is_chain
from .layers import Conv2d, Layer

__all__ = ["Context", "LayerExplanation", "Source", "Terms", "Window", "Working", "cell_text", "explain_layer",
           "explainer_of", "explains"]


@dataclass(frozen=True, eq=False, repr=False)
class Source:
    """Where a number of the working was read: ``name`` (a key of the numbers) is ``step``'s value at
    ``cell``; ``cell`` None when it is padding that holds a constant. ``note`` says why that cell
    (a broadcast dimension, a mirrored row)."""

    name: str
    step: str
    cell: tuple[int, ...] | None
    note: str = ""

    def record(self) -> dict[str, Any]:
        record: dict[str, Any] = {"name": self.name, "step": self.step,
                                  "cell": None if self.cell is None else list(self.cell)}
        if self.note:
            record["note"] = self.note
        return record


@dataclass(frozen=True, eq=False, repr=False)
class Terms:
    """The values a number is made of, as a table: every row, under ``columns``, in the order
    ``order`` names (the largest first). ``total`` is the column whose values add up to the sum
    (None when the table is not a sum); ``marked`` the row of the explained cell itself (a
    softmax's own value), which a view shows whatever its place."""

    columns: tuple[str, ...]
    rows: tuple[tuple[Any, ...], ...]
    order: str
    total: int | None = None
    marked: int | None = None

    def record(self) -> dict[str, Any]:
        rows = [[json_number(v) if isinstance(v, float) else v for v in row] for row in self.rows]
        record: dict[str, Any] = {"columns": list(self.columns), "rows": rows, "order": self.order}
        if self.marked is not None:
            record["marked"] = self.marked
        return record


@dataclass(frozen=True, eq=False, repr=False)
class Window:
    """The cells of one plane of ``step`` that a pooling cell reads: ``values`` (KH, KW) from rows
    ``rows`` and columns ``cols`` of channel ``channel``; a row or column outside the plane is
    padding (``padding``), which holds NaN: a max pool leaves it out, an average counts it as 0
    when its divisor counts it. ``winners`` are the (i, j) holding a max pool's maximum."""

    step: str
    channel: int
    rows: tuple[int, ...]
    cols: tuple[int, ...]
    values: np.ndarray  # KH, KW; NaN on padding
    padding: np.ndarray  # KH, KW bool
    winners: tuple[tuple[int, int], ...] = ()

    def record(self) -> dict[str, Any]:
        return {"step": self.step, "channel": self.channel, "rows": list(self.rows), "cols": list(self.cols),
                "values": json_values(self.values), "is_padding": self.padding.tolist(),
                "winners": [list(w) for w in self.winners]}


@dataclass(frozen=True, eq=False, repr=False)
class Working:
    """What an explainer finds. ``lines`` write the computation out: the first in symbols
    ("y = max(x, 0)"), the others with ``{name}`` where a number of ``numbers`` goes (a negative
    one in parentheses; ``{name!}`` bare, as a result). ``text`` says in words what the layer
    did with this cell (it may hold ``{name}`` too).

    The check against the forward pass allows the rounding of ``count`` operations on values of
    total size ``magnitude`` (None: |value|) in the run's precision, plus ``approx`` x magnitude
    where the layer computes an approximation (erf)."""

    lines: tuple[str, ...]
    numbers: dict[str, float]
    value: float
    text: str = ""
    sources: tuple[Source, ...] = ()
    terms: Terms | None = None
    window: Window | None = None
    magnitude: float | None = None
    count: int = 4
    approx: float = 0.0


@dataclass(frozen=True, eq=False, repr=False)
class LayerExplanation:
    """One output cell of a layer other than a conv, worked out (``working``), in float64, with the
    forward pass's own value there (``layer_value``) and what consumes it (``after``)."""

    layer_index: int
    layer_name: str
    layer_type: str
    cell: tuple[int, ...]
    label: str  # the cell's name: its channel's, or a class label for a unit of the network's output
    is_class: bool  # the label is a class label
    out_shape: tuple[int, ...]
    in_shapes: tuple[tuple[int, ...], ...]
    working: Working
    layer_value: float
    reads: tuple[str, ...] | None = None  # in a graph: the names of the steps it read (None in a chain)
    after: tuple[After, ...] = field(default=())

    @property
    def value(self) -> float:
        return self.working.value

    def record(self) -> dict[str, Any]:
        """The explanation as JSON-ready data (NaN and infinities become null). ``formula`` is the
        lines of the working, a ``{name}`` standing for ``numbers[name]``."""
        w = self.working
        layer: dict[str, Any] = {"index": self.layer_index, "name": self.layer_name, "type": self.layer_type}
        if self.reads is not None:
            layer["inputs"] = list(self.reads)
        layer |= {"input_shapes": [list(s) for s in self.in_shapes], "output_shape": list(self.out_shape)}
        record: dict[str, Any] = {
            "layer": layer, "cell": cell_record(self.cell, self.label) | ({"class": True} if self.is_class else {}),
            "formula": [line.replace("!}", "}") for line in w.lines], "text": w.text.replace("!}", "}"),
            "numbers": {name: json_number(v) for name, v in w.numbers.items()},
            "sources": [source.record() for source in w.sources],
        }
        if w.terms is not None:
            record["terms"] = w.terms.record()
        if w.window is not None:
            record["window"] = w.window.record()
        record |= {"value": json_number(w.value), "layer_value": json_number(self.layer_value),
                   "after": [step.record() for step in self.after]}
        return record


AnyExplanation = Union[Explanation, LayerExplanation]


def cell_record(cell: Sequence[int], label: str) -> dict[str, Any]:
    """{"channel", "row", "col"} for a map's cell (as a conv's record), {"index"} for a vector's."""
    if len(cell) == 3:
        return {"channel": cell[0], "row": cell[1], "col": cell[2], "label": label}
    if len(cell) == 1:
        return {"index": cell[0], "label": label}
    return {"indices": list(cell), "label": label}


def cell_text(cell: Sequence[int]) -> str:
    """"channel 1, row 2, col 3" for a map, "unit 7" for a vector, "cell 1, 2" otherwise."""
    if len(cell) == 3:
        return f"channel {cell[0]}, row {cell[1]}, col {cell[2]}"
    if len(cell) == 1:
        return f"unit {cell[0]}"
    return "cell " + ", ".join(str(i) for i in cell)


# --- The explainers' registry -----------------------------------------------------------------

@dataclass(frozen=True, eq=False, repr=False)
class Context:
    """What an explainer is given: the forward pass, the step, the cell, the steps it read."""

    steps: Sequence[Step]
    step: Step
    cell: tuple[int, ...]
    inputs: tuple[Step, ...]
    class_labels: tuple[str, ...] = ()
    labelled: frozenset[int] = frozenset()  # the steps whose units are the class labels

    @property
    def layer(self) -> Any:
        return self.step.layer

    @property
    def source(self) -> Step:
        """The (first) step the layer read."""
        return self.inputs[0]

    def read(self, cell: Sequence[int] | None = None, position: int = 0) -> float:
        """The value the layer read at ``cell`` (its own cell by default) of its input ``position``, in float64."""
        return float(self.inputs[position].output[tuple(self.cell if cell is None else cell)])

    def dtype(self) -> np.dtype:
        """The precision the layer computed in: its input's (float32 unless --dtype float64)."""
        dtype = self.source.output.dtype
        return dtype if dtype.kind == "f" else np.dtype(np.float64)

    def label(self, step: Step, cell: Sequence[int]) -> str:
        """The name of ``cell`` of ``step``: its channel's label, or a class label for an output unit."""
        return label_of(step, cell, self.class_labels, self.labelled)


Explainer = Callable[[Context], Working]
EXPLAINERS: dict[type, Explainer] = {}
_MODULES = ("explain_values", "explain_norms", "explain_sums", "explain_moves")


def explains(*classes: type) -> Callable[[Explainer], Explainer]:
    """Decorator: ``function`` explains the cells of layers of ``classes``."""
    def register(function: Explainer) -> Explainer:
        for cls in classes:
            EXPLAINERS[cls] = function
        return function
    return register


def explainer_of(layer: Layer | type) -> Explainer | None:
    """The explainer of ``layer``'s class, or of the class ``layer`` (or of a class it derives from);
    None when it has none."""
    if not EXPLAINERS:
        import importlib

        for module in _MODULES:
            importlib.import_module(f"{__package__}.{module}")
    for cls in (layer if isinstance(layer, type) else type(layer)).__mro__:
        if cls in EXPLAINERS:
            return EXPLAINERS[cls]
    return None


def _unexplained(ctx: Context) -> Working:
    """A layer type no explainer knows (one added later): its value, said plainly, without a working."""
    value = float(ctx.step.output[ctx.cell])
    return Working(("y = the layer's output at this cell", "  = {y!}"), {"y": value}, value,
                   text=f"cnn explain cannot yet write out how a {ctx.step.type} layer computes its values; "
                        "this is the value of the forward pass")


# --- Labels -----------------------------------------------------------------------------------

def class_steps(steps: Sequence[Step], class_labels: Sequence[str]) -> frozenset[int]:
    """The steps whose units the class labels name: the network's output vector; back from it, the
    steps of the same length it was made from one to one (a softmax's dense layer); and the steps
    made one to one from those (a log-softmax beside the softmax)."""
    from .follow import keeps_place

    found: set[int] = set()
    if not class_labels:
        return frozenset()
    shape = (len(class_labels),)
    step = steps[-1]
    while step.index > 0 and step.output.shape == shape:
        found.add(step.index)
        if len(step.inputs) > 1 or not keeps_place(step):
            break  # the layer that made the vector (a dense layer)
        step = _read_by(steps, step)
    for step in steps[1:]:
        if step.output.shape == shape and keeps_place(step) and _read_by(steps, step).index in found:
            found.add(step.index)
    return frozenset(found)


def label_of(step: Step, cell: Sequence[int], class_labels: Sequence[str] = (),
             labelled: frozenset[int] = frozenset()) -> str:
    """The name of ``cell`` of ``step``: its channel's label on a map, its unit's on a vector (the
    step's own labels, else the class label when the step is one of ``labelled``)."""
    if step.output.ndim in (1, 3) and len(cell) == step.output.ndim:
        if cell[0] < len(step.labels):
            return step.labels[cell[0]]
        if step.output.ndim == 1 and step.index in labelled and cell[0] < len(class_labels):
            return class_labels[cell[0]]
    return ""


# --- The explanation --------------------------------------------------------------------------

def explain_layer(steps: Sequence[Step], index: int, cell: Sequence[int], class_labels: Sequence[str] = ()
                  ) -> AnyExplanation:
    """Explain ``cell`` of step ``steps[index]``'s output, whatever its layer, and follow it on.

    Parameters
    ----------
    steps : the forward pass, ``Network.forward(x)``; steps[0] is the input
    index : the layer's step (1 for the first layer)
    cell : one index per dimension of its output: (channel, row, col) of a map, (unit,) of a vector
    class_labels : the names of the network's output units (a model's labels), shown on them

    Raises
    ------
    CellError
        When ``index`` is not a layer's step or the cell is outside its output.
    RuntimeError
        When the recomputed value differs from the forward pass's beyond rounding (a bug).
    """
    if not 0 < index < len(steps):
        raise CellError(f"step {index} is not a layer's; the steps are 1..{len(steps) - 1}", param="layer")
    step = steps[index]
    cell = tuple(int(i) for i in cell)
    check_at(step.output.shape, cell, step.name)
    if isinstance(step.layer, Conv2d):
        with np.errstate(all="ignore"):  # its check's sums may overflow as the map did
            return explain_cell(steps, index, *cell)
    names = step.inputs or (steps[index - 1].name,)
    inputs = tuple(_read_by(steps, step, k) for k in range(len(names)))
    labels = tuple(class_labels)
    ctx = Context(steps, step, cell, inputs, labels, class_steps(steps, labels))
    explainer = explainer_of(step.layer) if step.layer is not None else None
    with np.errstate(all="ignore"):  # an overflowing map explains as inf, as the table shows it
        working = (explainer or _unexplained)(ctx)
    layer_value = float(step.output[cell])
    magnitude = abs(working.value) if working.magnitude is None else working.magnitude
    _check_value(working.value, layer_value, magnitude, working.count, step.output.dtype, step.name, working.approx)
    graph = not is_chain(steps)
    label = ctx.label(step, cell)
    is_class = bool(label) and step.output.ndim == 1 and cell[0] >= len(step.labels) and index in ctx.labelled
    return LayerExplanation(index, step.name, step.type, cell, label, is_class, tuple(step.output.shape),
                            tuple(tuple(s.output.shape) for s in inputs), working, layer_value,
                            reads=names if graph else None, after=tuple(follow(steps, index, cell, graph)))
