"""`cnn check`: every node of an ONNX model, run on an image, against ONNX Runtime."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer

from . import app, options as opt
from .helptext import PanelledCommand
from .output import print_json, stdout_console

Format = Annotated[Literal["table", "json"], typer.Option("--format", "-f", help="table or json.")]


@app.command(cls=PanelledCommand)
def check(
    model: Annotated[str, typer.Argument(help="An .onnx model file, or a bundled model or model JSON file (written "
                                              "as ONNX in memory first).", metavar="MODEL", show_default=False)],
    image: Annotated[str, typer.Argument(help="An image file, or an .npy tensor used as given.", metavar="IMAGE",
                                         show_default=False)],
    color: opt.Color = None,
    scale: opt.Scale = None,
    resize: opt.ResizeOpt = None,
    crop: opt.CropOpt = None,
    mean: opt.MeanOpt = None,
    std: opt.StdOpt = None,
    preset: opt.PresetOpt = None,
    rtol: Annotated[float, typer.Option(min=0, help="Allowed difference relative to a tensor's largest magnitude.")
                    ] = 1e-4,
    atol: Annotated[float, typer.Option(min=0, help="Allowed absolute difference, added to rtol's.")] = 1e-5,
    format: Format = "table",
) -> None:
    """Run an ONNX model on an image with cnn and with ONNX Runtime and compare every node's output.

    Exit 1 when any node differs by more than atol + rtol x the tensor's largest magnitude. Nodes of a
    kind where ONNX Runtime departs from the ONNX spec (AveragePool with ceil_mode before opset 19)
    are held to the onnx package's reference evaluator instead; the reference column says which.

    Example: cnn check net.onnx photo.jpg --preset imagenet; cnn check net.onnx photo.jpg --resize 160 --crop 128
    """
    from .. import run as core
    from ..errors import CnnError
    from ..io.onnx_import.check import check_steps, references

    options = core.LayerOptions(image=image, kernels=None, model=model, preset=preset, resize=resize, crop=crop,
                                mean=mean, std=std, color=color, scale=scale)
    prepared = core.prepare(options)
    steps, _ = core.forward(prepared)
    assert prepared.model is not None  # prepare loads it
    if prepared.model.onnx_file is not None:  # an .onnx file, or a model JSON's "graph": ORT reads that file
        from ..io.reading import read_bytes

        data = read_bytes(prepared.model.onnx_file, kind="onnx", error=CnnError, expected="an ONNX file",
                          limits=options.limits)
    else:  # a model file: written as ONNX in memory, every layer's output under the layer's name
        from ..io.onnx_export import export_model

        data = export_model(prepared.model)
    folder = None if prepared.model.onnx_file is None else str(Path(prepared.model.onnx_file).parent)
    refs = references(data, prepared.image.array, [step.name for step in steps[1:]], model, folder=folder)
    checks = check_steps(steps, refs.values, refs.ops, rtol, atol, refs)
    failed = [c for c in checks if not c.passed]
    reasons = sorted({kind.why for kind in refs.held.values()})  # why nodes were held to the onnx reference
    if format == "json":
        print_json({"format": "cnn-check", "version": 1, "model": model, "image": image, "rtol": rtol, "atol": atol,
                    "nodes": [c.record() for c in checks], "failed": len(failed), "onnx_reference": reasons})
    else:
        stdout_console().print(_table(checks, rtol, atol, reasons))
    if failed:
        against = "their reference" if refs.held else "ONNX Runtime"
        raise CnnError(f"{len(failed)} of {len(checks)} nodes differ from {against} beyond atol {atol:g} + "
                       f"rtol {rtol:g} x scale: {', '.join(c.name for c in failed[:5])}", source=model)


def _table(checks, rtol: float, atol: float, reasons: list[str]):
    """One row a node; the lines under it say what they were held to and why, then each node's note
    (at the terminal's width: as a caption they wrapped mid-phrase at a narrow table's)."""
    from rich import box
    from rich.console import Group
    from rich.markup import escape
    from rich.table import Table
    from rich.text import Text

    held = sum(c.reference != "onnxruntime" for c in checks)
    lines = [f"{len(checks) - held} nodes against ONNX Runtime"
             + (f", {held} against the onnx reference evaluator" if held else "")
             + f"; allowed: {atol:g} + {rtol:g} x scale"]
    lines += [f"onnx reference: {why}" for why in reasons]
    lines += [f"{c.name}: {c.note}" for c in checks if c.note]
    table = Table(box=box.SIMPLE_HEAD, show_edge=False)
    # The node's name is what tells nodes apart (PyTorch's are 30-60 characters): it comes last and
    # folds onto more lines rather than being cut; the other columns are short and never wrap.
    # "held to" only when some node is held to the onnx reference; the rest are all ONNX Runtime's.
    columns = ["verdict", "op", "shape", "max abs", "max rel"] + (["held to"] if held else [])
    for name in columns:
        table.add_column(name, justify="right" if name.startswith("max") else "left", no_wrap=True,
                         max_width=10 if name == "op" else None, overflow="ellipsis")
    table.add_column("node", overflow="fold", ratio=1)
    for c in checks:
        cells = ["ok" if c.passed else "DIFFERS", escape(c.op), "x".join(map(str, c.shape)), f"{c.max_abs:.2g}",
                 f"{c.max_rel:.2g}"] + ([HELD_TO.get(c.reference, c.reference)] if held else [])
        table.add_row(*cells, escape(c.name))
    return Group(table, Text("\n".join(lines), style="italic"))


HELD_TO = {"onnxruntime": "ORT", "onnx reference": "onnx ref"}  # the table's short names of the references
