"""Which layer and which cell of it `cnn explain` is asked about (``--layer``, ``--at``, ``--channel``),
as plain data: found by name or number, checked against the output's shape, or the cell of the
largest or smallest value. Raises CellError naming the setting at fault; never prints.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .explain import CellError, check_cell
from .layers import Conv2d, Layer

__all__ = ["check_at", "extreme_cell", "find_layer", "resolve_cell"]


def find_layer(layers: Sequence[Layer], name: str | None = None) -> int:
    """The step index (1 for the first layer, as in ``cnn inspect``) of the layer called ``name`` or
    numbered so; for None, the first conv layer (the last layer when there is none).

    Raises CellError (param "layer") when there is no such layer; its message lists them.
    """
    if name is None:
        convs = [i for i, layer in enumerate(layers, start=1) if isinstance(layer, Conv2d)]
        return convs[0] if convs else len(layers)
    listing = _listing(layers)
    matches = [i for i, layer in enumerate(layers, start=1) if layer.name == name]
    number = name.strip()
    if not matches and number.isascii() and number.isdigit():
        if int(number) == 0:
            raise CellError(f"#0 is the input, which no layer computed; the layers are {listing}", param="layer")
        if int(number) > len(layers):
            raise CellError(f"no layer #{int(number)}: the network has {len(layers)}; the layers are {listing}",
                            param="layer")
        matches = [int(number)]
    if not matches:
        raise CellError(f"no layer called {name!r}; the layers are {listing}", param="layer")
    return matches[0]


def _listing(layers: Sequence[Layer], most: int = 16) -> str:
    """"conv1 (#1), relu1 (#2), ..." up to ``most`` layers, the first and last ones of a longer network."""
    names = [f"{layer.name} (#{i})" for i, layer in enumerate(layers, start=1)]
    if len(names) <= most:
        return ", ".join(names)
    return ", ".join(names[:most - 4]) + f", ... ({len(names)} in all), " + ", ".join(names[-3:])


def check_at(shape: Sequence[int], cell: Sequence[int], name: str) -> None:
    """Raise CellError (param "at") unless ``cell`` is a cell of an output of ``shape``."""
    shape = tuple(shape)
    if len(cell) != len(shape):
        raise CellError(f"{name}'s output is {_shape_words(shape)}; expected {_at_form(shape)}, got "
                        f"{','.join(str(i) for i in cell)}", param="at")
    if not all(0 <= i < size for i, size in zip(cell, shape)):
        ranges = ", ".join(f"{word} in 0..{size - 1}" for word, size in zip(_at_words(shape), shape))
        raise CellError(f"{','.join(str(i) for i in cell)} is outside {name}'s {'x'.join(map(str, shape))} output; "
                        f"expected {ranges}", param="at")


def _at_words(shape: Sequence[int]) -> tuple[str, ...]:
    if len(shape) == 3:
        return ("CHANNEL", "ROW", "COL")
    if len(shape) == 1:
        return ("INDEX",)
    return tuple(f"I{k}" for k in range(len(shape)))


def _at_form(shape: Sequence[int]) -> str:
    if len(shape) == 3:
        return "ROW,COL (with --channel) or CHANNEL,ROW,COL"
    return ",".join(_at_words(shape))


def _shape_words(shape: Sequence[int]) -> str:
    if len(shape) == 1:
        return f"a vector of {shape[0]} values"
    if len(shape) == 3:
        return f"a {shape[0]}x{shape[1]}x{shape[2]} map"
    return f"of shape {tuple(shape)}"


def resolve_cell(shape: Sequence[int], at: tuple[int, ...] | None, channel: int | None, name: str
                 ) -> tuple[int, ...] | None:
    """The cell ``--at`` and ``--channel`` name in an output of ``shape``, checked; None when it is
    to be found in the values (``--at max`` or ``min``, or no ``--at``: ``at`` None).

    ``at`` is ROW,COL (with ``channel``, 0 by default) or CHANNEL,ROW,COL for a (C, H, W) map, INDEX
    for a vector, one index per dimension otherwise. Raises CellError naming "at" or "channel".
    """
    shape = tuple(shape)
    if channel is not None and len(shape) != 3:
        raise CellError(f"{name}'s output is {_shape_words(shape)}, which has no channels; give the cell with "
                        f"--at {_at_form(shape)}", param="channel")
    if len(shape) == 3 and channel is not None:
        check_cell(shape, channel, 0, 0, name)  # the channel first: its own message
    if at is None:
        return None
    if len(shape) == 3 and len(at) == 2:
        check_cell(shape, channel or 0, at[0], at[1], name)
        return (channel or 0, *at)
    if len(shape) == 3 and len(at) == 3 and channel is not None and channel != at[0]:
        raise CellError(f"--channel {channel} and --at {','.join(map(str, at))} name different channels; give "
                        "the channel once", param="channel")
    check_at(shape, at, name)
    return tuple(at)


def extreme_cell(output: np.ndarray, which: str, channel: int | None = None) -> tuple[int, ...]:
    """The cell of ``output`` holding its largest (``which`` "max") or smallest ("min") value; within
    ``channel`` of a map when given. The first on a tie, in C order; NaN ignored."""
    values = output if channel is None else output[channel]
    values = np.where(np.isnan(values), -np.inf if which == "max" else np.inf, values)
    flat = int(np.argmax(values) if which == "max" else np.argmin(values))
    cell = tuple(int(i) for i in np.unravel_index(flat, values.shape))
    return cell if channel is None else (channel, *cell)
