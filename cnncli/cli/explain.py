"""`cnn explain`: where one number of a layer's output comes from, term by term."""

from __future__ import annotations

from typing import Annotated, Literal, Optional

import typer

from .. import run as core
from . import app, options as opt
from .helptext import PanelledCommand
from .output import palette, print_json, set_no_color, stdout_console, warn_each
from .run import NoColor

EXPLAIN = "Cell"

At = Annotated[Optional[str], typer.Option(
    "--at", rich_help_panel=EXPLAIN, metavar="ROW,COL|CHANNEL,ROW,COL|INDEX|max|min",
    show_default="the layer's largest value",
    help="The output cell to explain, 0-based as in the tables of `cnn run`: ROW,COL (of --channel) or "
         "CHANNEL,ROW,COL of a map, INDEX of a vector (a dense layer's unit); max or min: the layer's (or "
         "--channel's) largest or smallest value.")]
LayerName = Annotated[Optional[str], typer.Option(
    "--layer", rich_help_panel=EXPLAIN, metavar="NAME|#", show_default="the first conv layer",
    help="The layer, by name or by its number in `cnn inspect` / `cnn summary`: any type (conv, dense, pooling, "
         "batch norm, activation, softmax, merge, ...).")]
Channel = Annotated[Optional[int], typer.Option(
    "--channel", rich_help_panel=EXPLAIN, show_default="0 with --at ROW,COL",
    help="The output channel of a map: which filter of a conv layer.")]
Format = Annotated[Literal["table", "json"], typer.Option(
    "--format", "-f", rich_help_panel=opt.OUTPUT,
    help="table: the patch, kernel and products (or the window, or the terms) as grids, and the formula written "
         "out with its numbers. json: the same numbers as one JSON document.")]
Full = Annotated[bool, typer.Option("--full", rich_help_panel=opt.OUTPUT,
                                    help="Show every input channel, kernel tap, term and window cell instead of "
                                         "eliding them.")]


@app.command(cls=PanelledCommand)
@opt.layer_command
def explain(
    options: opt.LayerOptions,
    at: At = None,
    layer: LayerName = None,
    channel: Channel = None,
    format: Format = "table",
    full: Full = False,
    no_color: NoColor = False,
) -> None:
    """Show where one output cell of a layer comes from: a conv's input patch x kernel, a dense unit's inputs x
    weights, a pooling window, a norm's or an activation's formula with its numbers, a softmax's exponentials.

    Examples: cnn explain sample_images/seed_5x5.png -k vertical_edge --at 0,1;
    cnn explain sample_images/digit_7.png --model digits --layer conv2 --channel 5 --at max;
    cnn explain sample_images/digit_7.png --model digits --layer fc2
    """
    from ..errors import CnnError
    from ..engine.explain import CellError
    from ..engine.explain_at import extreme_cell, find_layer, resolve_cell
    from ..engine.explain_layer import explain_layer

    set_no_color(no_color)
    if options.top is not None:
        raise typer.BadParameter("ranks a run's classes; explain shows one cell", param_hint="--top")
    position = _parse_at(at)
    prepared = core.prepare(options)
    network = prepared.network
    try:
        index = find_layer(network.layers, layer)
        out_shape = network.shapes(prepared.image.array.shape)[index]
        cell = resolve_cell(out_shape, position if isinstance(position, tuple) else None, channel,
                            network.layers[index - 1].name)
    except CellError as err:
        raise typer.BadParameter(err.message, param_hint=f"--{err.param}") from None
    except CnnError as err:
        raise err.within(prepared.image.source) from None
    steps, warnings = core.forward(prepared)
    warn_each(warnings)
    output = steps[index].output
    if cell is None:
        which = position if isinstance(position, str) else "max"
        cell = extreme_cell(output, which, channel if output.ndim == 3 else None)
    explanation = explain_layer(steps, index, cell, prepared.class_labels)
    if format == "json":
        from ..engine.explain import EXPLAIN_FORMAT, EXPLAIN_VERSION
        from ..io.trace import document_head, model_record

        document = document_head(EXPLAIN_FORMAT, prepared.image, EXPLAIN_VERSION)
        if prepared.model is not None:
            document["model"] = model_record(prepared.model)
        print_json({**document, **explanation.record()})
        return
    from ..engine.explain import Explanation
    from ..views import tables as render

    console = stdout_console()
    if prepared.model is not None:
        from ..views.models import model_header

        console.print(model_header(prepared.model))
    console.print(render.image_header(prepared.image))
    if isinstance(explanation, Explanation):
        from ..views.explain import explanation_view

        console.print(explanation_view(explanation, steps, console.width, palette(console.color_system), full))
    else:
        from ..views.explain_layer import layer_explanation_view

        console.print(layer_explanation_view(explanation, steps, console.width, palette(console.color_system), full))


def _parse_at(text: str | None) -> tuple[int, ...] | str | None:
    """ROW,COL, CHANNEL,ROW,COL or INDEX as non-negative integers (which fit the layer is checked
    once it is known), max or min; None when not given."""
    if text is None:
        return None
    words = text.strip().lower()
    if words in ("max", "min"):
        return words
    parts = [part.strip() for part in words.split(",")]
    if not 1 <= len(parts) <= 3 or not all(part.isascii() and part.isdigit() for part in parts):
        raise typer.BadParameter(f"expected ROW,COL (or CHANNEL,ROW,COL, or the INDEX of a vector: integers from 0, "
                                 f"as in the tables), max or min; got {text!r}", param_hint="--at")
    return tuple(int(part) for part in parts)
