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
    help="Also write the final output array to a .npy file.")]
Full = Annotated[bool, typer.Option("--full", rich_help_panel=opt.OUTPUT,
                                    help="Print every value and channel of big maps instead of eliding them.")]


@app.command()
@opt.layer_command
def run(
    options: opt.LayerOptions,
    format: Format = "table",
    output: Output = None,
    full: Full = False,
) -> None:
    """Run conv -> activation -> pooling (-> dense) on an image and print every feature map.

    Example: cnn run sample_images/seed_5x5.png --kernel vertical_edge
    """
    loaded = opt.load_image(options)
    network = opt.build_network(options, loaded)
    steps = network.forward(loaded.array)
    if output is not None:
        from ..files import save_npy

        save_npy(output, steps[-1].output)
    if format == "json":
        from ..trace import trace_document

        print_json(trace_document(loaded, steps))
    else:
        _print_tables(loaded, steps, full)
    if output is not None:
        tell(f"wrote {steps[-1].name} {tuple(steps[-1].output.shape)} to {output}")


def _print_tables(loaded, steps, full: bool) -> None:
    from rich.console import Group
    from rich.text import Text

    from .. import render

    console = stdout_console()
    parts = [render.image_header(loaded)]
    for step in steps:
        if step is steps[-1]:
            parts.append(Text("Output", style="bold underline"))
        parts += [render.step_view(step, console.width, full=full), Text()]
    view = Group(*parts)
    # Elided tables fit the terminal; with --full they take the width they need.
    console.print(view, width=max(console.width, console.measure(view).maximum) if full else None)
