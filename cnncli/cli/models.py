"""`cnn summary` (a model's layers, shapes, parameters and multiply-adds) and `cnn models`."""

from __future__ import annotations

from typing import Annotated, Literal

import typer

from . import app
from .helptext import PanelledCommand
from .options import MaxFileSize, MaxMemory
from .output import print_json, stdout_console

Format = Annotated[Literal["table", "json"], typer.Option("--format", "-f", help="table or json.")]


@app.command(cls=PanelledCommand)
def summary(
    model: Annotated[str, typer.Argument(help="A bundled model's name (`cnn models`) or a model JSON file.",
                                         show_default=False)],
    format: Format = "table",
    max_memory: MaxMemory = None,
    max_file_size: MaxFileSize = None,
) -> None:
    """Print a model's layers: type, settings, output shape, parameters and multiply-adds, with totals.

    Example: cnn summary digits
    """
    from ..io.limits import Limits
    from ..io.modelfile import load_model
    from ..io.trace import model_record

    given = {"max_memory": max_memory, "max_file_size": max_file_size}
    limits = Limits(**{name: value for name, value in given.items() if value is not None})
    loaded = load_model(model, "cnn summary", limits)
    shape = loaded.input.shape
    rows = loaded.network.table(shape)
    if format == "json":
        print_json({"format": "cnn-summary", "version": 1, "model": model_record(loaded), "input_shape": list(shape),
                    "layers": [{"name": row["name"], "type": row["type"], "params": row["settings"],
                                "shape": list(row["shape"]), "parameters": row["params"], "macs": row["macs"]}
                               for row in rows],
                    "total": {"parameters": loaded.params, "macs": sum(row["macs"] for row in rows)}})
        return
    from ..views.models import model_summary

    stdout_console().print(model_summary(loaded, rows, shape))


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
