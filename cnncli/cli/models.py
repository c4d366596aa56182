"""`cnn summary` (a model's layers, shapes, parameters and multiply-adds) and `cnn models`."""

from __future__ import annotations

from typing import Annotated, Literal

import typer

from . import app
from .helptext import PanelledCommand
from .options import MaxFileSize, MaxMemory, SizeCrop, SizePreset
from .output import print_json, stdout_console, tell

Format = Annotated[Literal["table", "json"], typer.Option("--format", "-f", help="table or json.")]


@app.command(cls=PanelledCommand)
def summary(
    model: Annotated[str, typer.Argument(help="A bundled model's name (`cnn models`) or a model JSON or .onnx file.",
                                         metavar="MODEL", show_default=False)],
    format: Format = "table",
    crop: SizeCrop = None,
    preset: SizePreset = None,
    max_memory: MaxMemory = None,
    max_file_size: MaxFileSize = None,
) -> None:
    """Print a model's layers: type, settings, output shape, parameters and multiply-adds, with totals.

    Examples: cnn summary digits; cnn summary net.onnx --crop 224 (a graph with a free height and width)
    """
    from ..io.limits import Limits
    from ..run import model_at_size

    given = {"max_memory": max_memory, "max_file_size": max_file_size}
    limits = Limits(**{name: value for name, value in given.items() if value is not None})
    loaded = model_at_size(model, "cnn summary", limits, crop, preset)
    shape = loaded.input.shape
    rows = loaded.network.table(shape)
    if format == "json":
        from ..io.trace import summary_document

        network = loaded.network
        print_json(summary_document(loaded, rows, shape, network.is_chain, network.outputs))
        return
    from ..views.models import model_summary

    console = stdout_console()
    console.print(model_summary(loaded, rows, shape, width=console.width))


@app.command(cls=PanelledCommand)
def models(format: Format = "table") -> None:
    """List the bundled models: cnn run IMAGE --model NAME runs one, cnn summary NAME shows its layers."""
    from ..io.modelfile import bundled_models, load_model
    from ..io.trace import model_record

    found = [load_model(str(path), "cnn models") for path in bundled_models()]
    if format == "json":
        print_json({"format": "cnn-models", "version": 1,
                    "models": [{**model_record(m), "description": m.description, "parameters": m.params,
                                "metadata": m.metadata} for m in found]})
        return
    from ..views.models import models_table

    stdout_console().print(models_table(found))


@app.command(cls=PanelledCommand)
def export(
    model: Annotated[str, typer.Argument(help="A bundled model's name (`cnn models`) or a model JSON file.",
                                         metavar="MODEL", show_default=False)],
    output: Annotated[str, typer.Option("--output", "-o", metavar="FILE.onnx", show_default=False,
                                        help="Where to write the ONNX file (- for stdout).")],
    force: Annotated[bool, typer.Option("--force", help="Replace an existing file.")] = False,
) -> None:
    """Write a model file as ONNX (opset 17), for ONNX Runtime and any other ONNX tool.

    Each layer's output keeps the layer's name, so `cnn check FILE.onnx IMAGE` lines up node by node.
    The input rule, labels and name go into the file's metadata (cnn.input, cnn.labels, cnn.name),
    so that `cnn run IMAGE -m FILE.onnx` prepares images and names classes as the model file does.

    Example: cnn export digits -o digits.onnx
    """
    from ..io.modelfile import load_model
    from ..io.onnx_export import OPSET, export_model
    from ..io.saving import save_bytes
    from ..io.targets import is_special

    if output != "-" and not output.lower().endswith(".onnx") and not is_special(output):  # /dev/null is fine
        raise typer.BadParameter(f"{output + ': ' if output else 'is empty; '}expected a file name ending in .onnx, "
                                 "or - for stdout", param_hint="--output")
    loaded = load_model(model, "cnn export")
    save_bytes(output, export_model(loaded), "onnx", force)
    if output != "-":
        kept = "input rule" + (f" and {len(loaded.labels)} labels" if loaded.labels else "")
        tell(f"wrote {loaded.name} as ONNX (opset {OPSET}; {kept} in its metadata) to {output}")
