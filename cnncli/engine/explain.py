"""Where one number of a conv layer's output comes from, as plain data.

``explain_cell`` takes the steps of a forward pass (``Network.forward``), the index of a conv
step and an output cell (channel, row, col), and returns an ``Explanation``: the input patch the
kernel lies on, the kernel, their element-wise products, the sums, the bias and the result, all in
float64, checked against the value the forward pass computed; then what the layers that consume
it do to that number: an activation or a batch norm (followed on to what consumes them), the
pooling windows it falls in, and a merge (add, mul, sub, mean, concat) with the other inputs'
values at that cell. In a graph the conv reads the step it names (``Step.inputs``), not
necessarily the step before, and a value may have several consumers, each shown.

Conv is cross-correlation, as in every CNN library: output cell (r, c) multiplies kernel tap
(i, j) with the input at row r*stride - pad_top + i*dilation and column c*stride - pad_left +
j*dilation. A row or column outside the input is padding: zero, or a copy of an input cell for
reflect, replicate and circular padding (``ops.pad2d``). A layer that flips (a true convolution)
multiplies by the flipped kernel; that flipped kernel is the one recorded.

Never prints and never imports the CLI libraries; ``Explanation.record()`` is the JSON layout.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from . import ops
from ..errors import CnnError
from .follow import After, Elementwise, Merge, PoolCell, Pooling, follow_cell, json_number as _number, \
    json_values as _values
from .graph import Step, is_chain
from .layers import Conv2d, Layer

__all__ = ["EXPLAIN_FORMAT", "EXPLAIN_VERSION", "After", "CellError", "Elementwise", "Explanation", "Merge", "PoolCell",
           "Pooling", "check_cell", "conv_indices", "explain_cell", "find_conv_layer"]

EXPLAIN_FORMAT = "cnn-explain"
EXPLAIN_VERSION = 1


class CellError(CnnError):
    """A layer, channel or cell that cannot be explained; ``param`` names the setting at fault:
    "layer", "channel" or "at" (the cell)."""

    def __init__(self, message: str, *, param: str, source: str | None = None) -> None:
        super().__init__(message, source=source)
        self.param = param


@dataclass(frozen=True, eq=False, repr=False)  # no repr: it would print the arrays
class Explanation:
    """One conv output cell, term by term, in float64.

    The filter ``channel`` reads the input channels ``in_channels`` (all of them, or its group's).
    Kernel row i reads input row ``rows[i]`` and kernel column j input column ``cols[j]``, in the
    unpadded input's coordinates: a row outside 0..H-1 is padding, and ``source_rows[i]`` is the
    input row whose values it copies (None for zero padding); likewise the columns. ``padding``
    marks the taps that read padding.
    """

    layer_index: int
    layer_name: str
    layer_type: str
    channel: int
    row: int
    col: int
    label: str  # the output channel's name (a kernel's), or ""
    in_shape: tuple[int, int, int]
    out_shape: tuple[int, int, int]
    stride: tuple[int, int]
    dilation: tuple[int, int]
    pads: tuple[int, int, int, int]  # top, bottom, left, right
    padding_mode: str
    groups: int
    flipped: bool
    in_channels: tuple[int, ...]
    in_labels: tuple[str, ...]
    rows: tuple[int, ...]
    cols: tuple[int, ...]
    source_rows: tuple[int | None, ...]
    source_cols: tuple[int | None, ...]
    padding: np.ndarray  # (KH, KW) bool
    patch: np.ndarray  # (Cg, KH, KW): the value under each tap, padding included
    kernel: np.ndarray  # (Cg, KH, KW): the weights as multiplied (flipped when the layer flips)
    products: np.ndarray  # (Cg, KH, KW) = patch * kernel
    sums: np.ndarray  # (Cg,): the products of each input channel, summed
    total: float  # sums.sum()
    bias: float | None  # None: the layer has no bias
    value: float  # total + bias
    layer_value: float  # the layer's output at the cell, from the forward pass
    after: tuple[After, ...] = ()
    input_index: int | None = None  # the step the conv read (None: the step before)
    reads: str | None = None  # in a graph: that step's name (None in a chain, whose records are as before)

    @property
    def source_index(self) -> int:
        """The step the conv read: ``steps[source_index]`` is its input."""
        return self.layer_index - 1 if self.input_index is None else self.input_index

    @property
    def kernel_size(self) -> tuple[int, int]:
        return self.kernel.shape[1], self.kernel.shape[2]

    @property
    def group(self) -> int:
        """The group of input channels the filter reads (0 unless the layer is grouped)."""
        return self.channel // (self.out_shape[0] // self.groups)

    def record(self) -> dict[str, Any]:
        """The explanation as JSON-ready data (NaN and infinities become null)."""
        channels = []
        for k, (index, label) in enumerate(zip(self.in_channels, self.in_labels)):
            channels.append({"index": index, "label": label, "patch": _values(self.patch[k]),
                             "kernel": _values(self.kernel[k]), "products": _values(self.products[k]),
                             "sum": _number(self.sums[k])})
        return {
            "layer": {"index": self.layer_index, "name": self.layer_name, "type": self.layer_type,
                      **({} if self.reads is None else {"inputs": [self.reads]}),
                      "input_shape": list(self.in_shape), "output_shape": list(self.out_shape),
                      "kernel_size": list(self.kernel_size), "stride": list(self.stride),
                      "dilation": list(self.dilation), "padding": list(self.pads), "padding_mode": self.padding_mode,
                      "groups": self.groups, "operation": "convolution" if self.flipped else "cross-correlation"},
            "cell": {"channel": self.channel, "row": self.row, "col": self.col, "label": self.label},
            "group": self.group,
            "rows": list(self.rows), "cols": list(self.cols),
            "source_rows": list(self.source_rows), "source_cols": list(self.source_cols),
            "is_padding": self.padding.tolist(),
            "channels": channels,
            "sum": _number(self.total),
            "bias": None if self.bias is None else _number(self.bias),
            "value": _number(self.value),
            "layer_value": _number(self.layer_value),
            "after": [step.record() for step in self.after],
        }


def conv_indices(layers: Sequence[Layer]) -> list[int]:
    """The step indices (1 for the first layer, as in ``cnn inspect``) of the conv layers."""
    return [i for i, layer in enumerate(layers, start=1) if isinstance(layer, Conv2d)]


def find_conv_layer(layers: Sequence[Layer], name: str | None = None) -> int:
    """The step index of the conv layer called ``name`` (or numbered so); the first conv layer for None.

    Raises CellError (param "layer") when there is no such conv layer; its message lists them.
    """
    convs = conv_indices(layers)
    listing = ", ".join(f"{layers[i - 1].name} (#{i})" for i in convs) or "none"
    if not convs:
        raise CellError("the network has no conv layer to explain", param="layer")
    if name is None:
        return convs[0]
    matches = [i for i, layer in enumerate(layers, start=1) if layer.name == name]
    if not matches and name.isascii() and name.strip().isdigit() and 1 <= int(name) <= len(layers):
        matches = [int(name)]
    if not matches and name.strip() == "0":
        raise CellError(f"#0 is the input, which no kernel made; the conv layers are {listing}", param="layer")
    if not matches and name.isascii() and name.strip().isdigit():
        raise CellError(f"no layer #{int(name)}: the network has {len(layers)}; the conv layers are {listing}",
                        param="layer")
    if not matches:
        raise CellError(f"no layer called {name!r}; the conv layers are {listing}", param="layer")
    layer = layers[matches[0] - 1]
    if not isinstance(layer, Conv2d):
        article = "an" if layer.type[:1] in "aeiou" else "a"
        raise CellError(f"{layer.name} is {article} {layer.type} layer, not a convolution; the conv layers are "
                        f"{listing}", param="layer")
    return matches[0]


def check_cell(out_shape: Sequence[int], channel: int, row: int, col: int, name: str) -> None:
    """Raise CellError unless (channel, row, col) is a cell of a conv output of ``out_shape`` (F, H, W)."""
    filters, height, width = out_shape
    if not 0 <= channel < filters:
        expected = "0" if filters == 1 else f"0..{filters - 1}"
        raise CellError(f"{name} has {filters} output channel{'s' if filters != 1 else ''}; expected {expected}, "
                        f"got {channel}", param="channel")
    if not (0 <= row < height and 0 <= col < width):
        raise CellError(f"{row},{col} is outside {name}'s {height}x{width} output; expected ROW in 0..{height - 1} "
                        f"and COL in 0..{width - 1}", param="at")


def explain_cell(steps: Sequence[Step], index: int, channel: int, row: int, col: int) -> Explanation:
    """Explain output cell (channel, row, col) of conv step ``steps[index]``, from the step it read
    (its ``inputs``; the step before when it names none), then follow the cell into its consumers.

    Parameters
    ----------
    steps : the forward pass, ``Network.forward(x)``; steps[0] is the input
    index : the conv layer's step
    channel, row, col : the output cell, 0-based as in the tables

    Raises
    ------
    CellError
        When ``steps[index]`` is not a conv layer or the cell is outside its output.
    RuntimeError
        When the recomputed value differs from the forward pass's beyond rounding (a bug).
    """
    if not 0 < index < len(steps) or not isinstance(steps[index].layer, Conv2d):
        convs = ", ".join(f"{step.name} (#{step.index})" for step in steps if isinstance(step.layer, Conv2d))
        raise CellError(f"step {index} is not a conv layer; the conv layers are {convs or 'none'}", param="layer")
    step = steps[index]
    layer: Conv2d = step.layer  # type: ignore[assignment]
    source = _read_by(steps, step)
    x = source.output  # C, H, W
    check_cell(step.output.shape, channel, row, col, step.name)
    pads, out_shape = ops.conv_geometry(x.shape, layer.weight.shape, layer.stride, layer.padding, layer.dilation,
                                        layer.groups, layer.padding_mode)
    n_filters, group_channels, kh, kw = layer.weight.shape
    stride, dilation = ops.pair(layer.stride, "stride"), ops.pair(layer.dilation, "dilation")
    group = channel // (n_filters // layer.groups)
    in_channels = tuple(range(group * group_channels, (group + 1) * group_channels))
    _, height, width = x.shape

    rows = tuple(row * stride[0] - pads[0] + i * dilation[0] for i in range(kh))
    cols = tuple(col * stride[1] - pads[2] + j * dilation[1] for j in range(kw))
    source_rows = tuple(_source(r, height, layer.padding_mode) for r in rows)
    source_cols = tuple(_source(c, width, layer.padding_mode) for c in cols)
    padding = np.logical_or.outer([not 0 <= r < height for r in rows], [not 0 <= c < width for c in cols])  # KH, KW
    read_rows = [0 if r is None else r for r in source_rows]
    read_cols = [0 if c is None else c for c in source_cols]
    patch = x[np.ix_(in_channels, read_rows, read_cols)].astype(np.float64)  # Cg, KH, KW
    if layer.padding_mode == "zeros":
        patch[:, padding] = 0.0

    # The weights as the forward pass multiplies them: in the input's dtype, flipped for a convolution.
    kernel = np.asarray(layer.weight[channel], dtype=x.dtype).astype(np.float64)  # Cg, KH, KW
    if layer.flip:
        kernel = kernel[:, ::-1, ::-1].copy()
    bias = None if layer.bias is None else float(np.asarray(layer.bias, dtype=x.dtype).reshape(-1)[channel])
    with np.errstate(all="ignore"):  # an overflowing map explains as inf, as the table shows it
        products = patch * kernel + 0.0  # Cg, KH, KW; + 0.0 turns -0.0 into 0.0
        sums = products.sum(axis=(1, 2))  # Cg
        total = float(sums.sum())
        value = total + (bias or 0.0)
    layer_value = float(step.output[channel, row, col])
    _check_value(value, layer_value, float(np.abs(products).sum()) + abs(bias or 0.0), products.size + 1,
                 step.output.dtype, step.name)

    labels = step.labels
    in_labels = tuple(source.labels[c] if c < len(source.labels) else "" for c in in_channels)
    graph = not is_chain(steps)
    return Explanation(
        layer_index=index, layer_name=step.name, layer_type=step.type, channel=channel, row=row, col=col,
        label=labels[channel] if channel < len(labels) else "", in_shape=tuple(x.shape),
        out_shape=(out_shape[0], out_shape[1], out_shape[2]),
        stride=stride, dilation=dilation, pads=(pads[0], pads[1], pads[2], pads[3]), padding_mode=layer.padding_mode,
        groups=layer.groups,
        flipped=layer.flip, in_channels=in_channels, in_labels=in_labels, rows=rows, cols=cols,
        source_rows=source_rows, source_cols=source_cols, padding=padding, patch=patch, kernel=kernel,
        products=products, sums=sums, total=total, bias=bias, value=value, layer_value=layer_value,
        after=tuple(follow_cell(steps, index, channel, row, col, graph)),
        input_index=None if source.index == index - 1 else source.index, reads=source.name if graph else None,
    )


def _read_by(steps: Sequence[Step], step: Step, position: int = 0) -> Step:
    """The step that ``step`` read at ``position`` of its inputs; the step before when it names none."""
    if not step.inputs:
        return steps[step.index - 1]
    name = step.inputs[position]
    return next(s for s in steps[:step.index] if s.name == name)


def _source(index: int, size: int, mode: str) -> int | None:
    """The input index whose value padded position ``index`` holds, as ``ops.pad2d`` fills it; None for zeros.

    reflect mirrors without repeating the edge (index -1 holds 1), replicate repeats the edge,
    circular wraps around. The conv's checks keep every padding within what each mode allows.
    """
    if 0 <= index < size:
        return index
    if mode == "zeros":
        return None
    if mode == "replicate":
        return min(max(index, 0), size - 1)
    if mode == "circular":
        return index % size
    return -index if index < 0 else 2 * (size - 1) - index  # reflect


def _check_value(value: float, expected: float, magnitude: float, terms: int, dtype: np.dtype, name: str,
                 approx: float = 0.0) -> None:
    """The float64 recomputation, rounded to the layer's dtype, must equal the forward pass's value
    within the worst-case rounding of a sum of ``terms`` terms of total ``magnitude``, plus ``approx``
    x ``magnitude`` where the layer computes an approximation of the formula (erf)."""
    dtype = np.dtype(dtype) if np.dtype(dtype).kind == "f" else np.dtype(np.float64)
    with np.errstate(all="ignore"):
        rounded = float(np.asarray(value, dtype=np.float64).astype(dtype))
    if rounded == expected or (math.isnan(rounded) and math.isnan(expected)):
        return
    finfo = np.finfo(dtype)
    if not math.isfinite(expected) and magnitude > float(finfo.max):
        return  # the forward pass overflowed in its dtype (and the CLI warned); float64 did not
    if not math.isfinite(value) and not math.isfinite(magnitude):
        return  # the float64 recomputation itself overflowed (terms past 1e308), in another order than the layer
    tolerance = (2 * terms * float(finfo.eps) + approx) * magnitude + float(finfo.tiny)
    if math.isfinite(rounded) and math.isfinite(expected) and abs(rounded - expected) <= tolerance:
        return
    raise RuntimeError(f"{name}: the cell recomputes to {value!r} but the forward pass gave {expected!r}")
