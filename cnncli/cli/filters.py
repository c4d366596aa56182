"""`cnn filters`: a model's learned conv filters, as tables or heatmaps, a picture grid, or JSON."""

from __future__ import annotations

from typing import Annotated, Literal, Optional

import typer

from . import app
from .helptext import PanelledCommand
from .options import MaxFileSize, MaxMemory, SizeCrop, SizePreset
from .output import palette, set_no_color, stdout_console, tell, write_text
from .run import NoColor

LayerName = Annotated[Optional[str], typer.Option(
    "--layer", metavar="NAME|#", show_default="the first conv layer",
    help="The conv or transposed conv layer, by name or by its number in `cnn summary`.")]
Output = Annotated[Optional[str], typer.Option(
    "--output", "-o", metavar="FILE.png", show_default=False,
    help="Write the filters as a picture grid (- for stdout); stdout then gets --format only if given.")]
Force = Annotated[bool, typer.Option("--force", help="Let -o replace an existing file.")]
Format = Annotated[Optional[Literal["table", "json"]], typer.Option(
    "--format", "-f", show_default="table",
    help="table: the weights as numbers coloured by value, or drawn when there are many. json: every weight, "
         "by output filter (F, C, KH, KW), and the bias.")]
View = Annotated[Literal["auto", "table", "heatmap"], typer.Option(
    "--view", help="How --format table shows kernels: numbers, heatmap (half blocks), or auto: numbers for up to "
                   "64 kernels of up to 9x9.")]


@app.command(cls=PanelledCommand)
def filters(
    model: Annotated[str, typer.Argument(help="A bundled model's name (`cnn models`) or a model JSON or .onnx file.",
                                         metavar="MODEL", show_default=False)],
    layer: LayerName = None,
    output: Output = None,
    force: Force = False,
    format: Format = None,
    view: View = "auto",
    no_color: NoColor = False,
    crop: SizeCrop = None,
    preset: SizePreset = None,
    max_memory: MaxMemory = None,
    max_file_size: MaxFileSize = None,
) -> None:
    """Show a model's learned conv filters: a first RGB layer's as colour tiles, deeper ones per input channel.

    Examples: cnn filters digits; cnn filters digits --layer conv2 -o conv2.png
    """
    from ..io.limits import Limits
    from ..run import model_at_size
    from ..views.filters import find_filters

    set_no_color(no_color)
    if output is not None and not output.strip():
        raise typer.BadParameter("is empty; expected a file name ending in .png, or -", param_hint="--output")
    to_stdout = format or (None if output is not None else "table")
    if output == "-" and to_stdout is not None:
        raise typer.BadParameter("- writes the picture to stdout, which --format would write too; choose one",
                                 param_hint="--output")
    given = {"max_memory": max_memory, "max_file_size": max_file_size}
    limits = Limits(**{name: value for name, value in given.items() if value is not None})
    loaded = model_at_size(model, "cnn filters", limits, crop, preset)
    chosen = find_filters(loaded, layer)
    if output is not None:
        _save(chosen, loaded.name, output, force)
    if to_stdout == "json":
        from ..views.filters import filters_json

        stdout_console()  # refuses a closed stdout
        write_text(filters_json(chosen, loaded).decode("ascii") + "\n")
    elif to_stdout == "table":
        from ..views.filter_tables import filters_view

        console = stdout_console()
        console.print(filters_view(chosen, loaded.name, console.width,
                                   None if console.no_color else console.color_system, palette(console.color_system),
                                   view))


def _save(chosen, model_name: str, output: str, force: bool) -> None:
    """The picture grid to ``output`` (a .png file, or - for stdout), and a line saying so."""
    from ..views.filters import filters_picture
    from ..views.pictures import png_bytes

    data = png_bytes(filters_picture(chosen, model_name))
    if output == "-":
        from ..io.saving import save_bytes

        save_bytes("-", data, "png", force)
        return
    from ..io.saving import save_png

    save_png(output, data, force)
    count = chosen.bank.shape[0]
    tell(f"wrote the {count} filter{'s' * (count != 1)} of {chosen.name} to {output}")

