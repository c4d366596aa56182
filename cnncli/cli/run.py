"""`cnn run`: every feature map of a forward pass, as tables, JSON or a .npy file."""

from __future__ import annotations

from typing import Annotated, Literal, Optional

import typer

from . import app, options as opt
from .output import print_json, stdout_console, tell

Format = Annotated[Literal["table", "json"], typer.Option(
    "--format", "-f", rich_help_panel=opt.OUTPUT,
    help="table: a coloured table per map. json: the whole trace (every layer's settings, shape, "
         "statistics and values) as one JSON document.")]
Output = Annotated[Optional[str], typer.Option(
    "--output", "-o", rich_help_panel=opt.OUTPUT, show_default=False, metavar="FILE.npy",
    help="Also write the final output array to a .npy file; - writes it to stdout instead of the tables.")]
Force = Annotated[bool, typer.Option("--force", rich_help_panel=opt.OUTPUT,
                                     help="Let -o replace an existing file.")]
Full = Annotated[bool, typer.Option("--full", rich_help_panel=opt.OUTPUT,
                                    help="Print every value and channel of big maps instead of eliding them.")]


@app.command()
@opt.layer_command
def run(
    options: opt.LayerOptions,
    format: Format = "table",
    output: Output = None,
    full: Full = False,
    force: Force = False,
) -> None:
    """Run conv -> activation -> pooling (-> dense), or a whole model, on an image; print every feature map.

    Examples: cnn run sample_images/seed_5x5.png --kernel vertical_edge;
    cnn run sample_images/digit_7.png --model digits
    """
    prepared = opt.prepare(options)
    if output is not None and output != "-":
        from ..files import check_output

        check_output(output, force, opt.input_files(options, prepared))  # before the work, not after
    loaded = prepared.image
    steps = opt.forward(prepared)
    predictions = opt.predictions(options, prepared, steps)
    if output is not None:
        from ..files import save_npy

        save_npy(output, steps[-1].output, force)
    if output == "-":
        return  # stdout carries the array alone
    if format == "json":
        from ..trace import run_extras, trace_document

        print_json(trace_document(loaded, steps, run_extras(prepared.model, predictions)))
    else:
        _print_tables(prepared, steps, predictions, full)
    if output is not None:
        tell(f"wrote {steps[-1].name} {tuple(steps[-1].output.shape)} to {output}")


MAX_FULL_VALUES = 100_000


def _print_tables(prepared, steps, predictions, full: bool) -> None:
    from rich.console import Group
    from rich.text import Text

    from .. import render
    from ..errors import CnnError

    console = stdout_console()
    if full:
        values = sum(step.output.size for step in steps)
        if values > MAX_FULL_VALUES:
            raise CnnError(f"would print {values:,} values as tables (the limit is {MAX_FULL_VALUES:,}); "
                           "--format json or -o FILE.npy give every value", source="--full")
    parts = [render.image_header(prepared.image)]
    if prepared.model is not None:
        from ..render_model import model_header

        parts.insert(0, model_header(prepared.model))
    for step in steps:
        if step is steps[-1]:
            parts.append(Text("Output", style="bold underline"))
        parts += [render.step_view(step, console.width, full, _palette(console)), Text()]
    if predictions:
        from ..render_model import prediction_view

        parts.append(prediction_view(predictions, color=console.color_system is not None))
    view = Group(*parts)
    if full:  # every column, however wide: a console as wide as the widest table
        console = stdout_console(width=max(console.width, render.natural_width(view)))
    console.print(view)


def _palette(console) -> str:
    """Blended colours where the terminal has them, named ones where it has only 8 or 16."""
    if console.color_system is None:
        return "none"
    return "basic" if console.color_system in ("standard", "windows") else "rgb"
