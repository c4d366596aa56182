"""`cnn explain`: where one number of a conv layer's output comes from, term by term."""

from __future__ import annotations

from typing import Annotated, Literal, Optional

import typer

from .. import run as core
from . import app, options as opt
from .helptext import PanelledCommand
from .output import palette, print_json, set_no_color, stdout_console, warn_each
from .run import NoColor

EXPLAIN = "Cell"

At = Annotated[str, typer.Option(
    "--at", rich_help_panel=EXPLAIN, metavar="ROW,COL|max|min", show_default=False,
    help="The output cell to explain, 0-based as in the tables of `cnn run`; max or min: the channel's "
         "largest or smallest cell.")]
LayerName = Annotated[Optional[str], typer.Option(
    "--layer", rich_help_panel=EXPLAIN, metavar="NAME|#", show_default="the first conv layer",
    help="The conv layer, by name or by its number in `cnn inspect` / `cnn summary`.")]
Channel = Annotated[int, typer.Option(
    "--channel", rich_help_panel=EXPLAIN, help="The output channel: which filter of the layer.")]
Format = Annotated[Literal["table", "json"], typer.Option(
    "--format", "-f", rich_help_panel=opt.OUTPUT,
    help="table: the patch, kernel and products as grids, and the sum written out. json: the same numbers "
         "as one JSON document.")]
Full = Annotated[bool, typer.Option("--full", rich_help_panel=opt.OUTPUT,
                                    help="Show every input channel and kernel tap instead of eliding them.")]


@app.command(cls=PanelledCommand)
@opt.layer_command
def explain(
    options: opt.LayerOptions,
    at: At = ...,  # type: ignore[assignment]  # required: Typer reads ... as no default
    layer: LayerName = None,
    channel: Channel = 0,
    format: Format = "table",
    full: Full = False,
    no_color: NoColor = False,
) -> None:
    """Show where one output cell of a conv layer comes from: input patch x kernel, summed, plus bias, activation.

    Examples: cnn explain sample_images/seed_5x5.png -k vertical_edge --at 0,1;
    cnn explain sample_images/digit_7.png --model digits --layer conv2 --channel 5 --at max
    """
    from ..errors import CnnError
    from ..engine.explain import CellError, check_cell, explain_cell, find_conv_layer

    set_no_color(no_color)
    if options.top is not None:
        raise typer.BadParameter("ranks a run's classes; explain shows one cell", param_hint="--top")
    position = _parse_at(at)
    prepared = core.prepare(options)
    network = prepared.network
    try:
        index = find_conv_layer(network.layers, layer)
        conv = network.layers[index - 1]
        out_shape = network.shapes(prepared.image.array.shape)[index]
        check_cell(out_shape, channel, *(position if isinstance(position, tuple) else (0, 0)), conv.name)
    except CellError as err:
        raise typer.BadParameter(err.message, param_hint=f"--{err.param}") from None
    except CnnError as err:
        raise err.within(prepared.image.source) from None
    steps, warnings = core.forward(prepared)
    warn_each(warnings)
    if not isinstance(position, tuple):
        position = _extreme_cell(steps[index].output[channel], position)
    explanation = explain_cell(steps, index, channel, *position)
    if format == "json":
        from ..engine.explain import EXPLAIN_FORMAT, EXPLAIN_VERSION
        from ..io.trace import document_head, model_record

        document = document_head(EXPLAIN_FORMAT, prepared.image, EXPLAIN_VERSION)
        if prepared.model is not None:
            document["model"] = model_record(prepared.model)
        print_json({**document, **explanation.record()})
        return
    from ..views import tables as render
    from ..views.explain import explanation_view

    console = stdout_console()
    if prepared.model is not None:
        from ..views.models import model_header

        console.print(model_header(prepared.model))
    console.print(render.image_header(prepared.image))
    console.print(explanation_view(explanation, steps, console.width, palette(console.color_system), full))


def _parse_at(text: str) -> tuple[int, int] | str:
    """ROW,COL as two non-negative integers, or max / min."""
    words = text.strip().lower()
    if words in ("max", "min"):
        return words
    parts = [part.strip() for part in words.split(",")]
    if len(parts) != 2 or not all(part.isascii() and part.isdigit() for part in parts):
        raise typer.BadParameter(f"expected ROW,COL (two integers from 0, as in the tables), max or min; got {text!r}",
                                 param_hint="--at")
    return int(parts[0]), int(parts[1])


def _extreme_cell(plane, which: str) -> tuple[int, int]:
    """The (row, col) of the largest or smallest value of a (H, W) plane; the first one on a tie, NaN ignored."""
    import numpy as np

    values = np.where(np.isnan(plane), -np.inf if which == "max" else np.inf, plane)
    flat = int(np.argmax(values) if which == "max" else np.argmin(values))
    row, col = divmod(flat, plane.shape[1])
    return row, col
