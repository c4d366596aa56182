"""`cnn inspect`: a per-layer summary, and every layer saved as .npy with a JSON manifest."""

from __future__ import annotations

from typing import Annotated, Literal, Optional

import typer

from . import app, options as opt
from .output import print_json, stdout_console, tell

Save = Annotated[Optional[str], typer.Option(
    "--save", rich_help_panel=opt.OUTPUT, show_default=False, metavar="DIR",
    help="Write DIR/manifest.json and one .npy per layer (the input included).")]
Force = Annotated[bool, typer.Option("--force", rich_help_panel=opt.OUTPUT,
                                     help="Let --save replace an earlier inspection, or files of the same names, in DIR.")]
Format = Annotated[Literal["table", "json"], typer.Option(
    "--format", "-f", rich_help_panel=opt.OUTPUT,
    help="table: the summary as a table. json: the same per-layer records as the manifest, on stdout.")]


@app.command()
@opt.layer_command
def inspect(
    options: opt.LayerOptions,
    save: Save = None,
    force: Force = False,
    format: Format = "table",
) -> None:
    """Summarise every layer: type, settings, shape, parameters, multiply-adds, statistics, time.

    Examples: cnn inspect sample_images/shapes.png --kernel sobel_x --save out/;
    cnn inspect sample_images/digit_3.png --model digits --save acts/
    """
    from ..trace import TRACE_VERSION, image_record, layer_record, run_extras

    prepared = opt.prepare(options)
    loaded = prepared.image
    steps = opt.forward(prepared)
    predictions = opt.predictions(options, prepared, steps)
    extras = run_extras(prepared.model, predictions)
    manifest = None
    if save is not None:
        from ..files import save_inspection

        manifest = save_inspection(save, loaded, steps, force, extras, opt.input_files(options, prepared))
    if format == "json":
        print_json(manifest or {"format": "cnn-inspect", "version": TRACE_VERSION, "image": image_record(loaded),
                                "layers": [layer_record(step) for step in steps], **extras})
    else:
        from .. import render

        console = stdout_console()
        if prepared.model is not None:
            from ..render_model import model_header

            console.print(model_header(prepared.model))
        console.print(render.image_header(loaded))
        console.print(render.summary_view(steps, f"Layers of the forward pass on {loaded.source}", console.width))
        if predictions:
            from ..render_model import prediction_view

            console.print(prediction_view(predictions, color=console.color_system is not None))
    if save is not None:
        tell(f"saved {len(steps)} layers to {save} (manifest.json lists them)")
