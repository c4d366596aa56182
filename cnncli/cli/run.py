"""`cnn run`: every feature map of a forward pass, on one image or many, as tables, heatmaps,
JSON, CSV, .npy/.npz arrays or PNG pictures."""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any, Literal, Optional

import typer

from . import app, options as opt
from .output import Look, set_no_color, tell

Format = Annotated[Optional[Literal["table", "json", "jsonl", "csv", "npy", "npz", "png"]], typer.Option(
    "--format", "-f", rich_help_panel=opt.OUTPUT, show_default="table",
    help="What stdout gets. table: every map for people (see --view). json: the whole trace (settings, shapes, "
         "statistics, values) as one document; jsonl: one per line, one line per image. csv: the final map, "
         "one value a row. npy: the final array; npz: every layer's array; png: the final map as a picture.")]
View = Annotated[Literal["table", "heatmap"], typer.Option(
    "--view", rich_help_panel=opt.OUTPUT,
    help="How --format table shows maps: numbers in tables, or heatmap: coloured blocks at terminal width, "
         "big maps whole.")]
Output = Annotated[Optional[str], typer.Option(
    "--output", "-o", rich_help_panel=opt.OUTPUT, show_default=False, metavar="FILE",
    help="Also write the output to FILE, in the format its extension names (.npy .npz .png .json .jsonl .csv); "
         "- is stdout (in --format, npy if none). For several images, .png needs a folder: -o DIR/.")]
Force = Annotated[bool, typer.Option("--force", rich_help_panel=opt.OUTPUT,
                                     help="Let -o replace an existing file.")]
Full = Annotated[bool, typer.Option("--full", rich_help_panel=opt.OUTPUT,
                                    help="Print every value and channel of big maps instead of eliding them.")]
NoColor = Annotated[bool, typer.Option("--no-color", rich_help_panel=opt.OUTPUT,
                                       help="Plain text, no colours (also NO_COLOR=1; piped output has none).")]
Workers = Annotated[int, typer.Option("--workers", "-j", min=1, rich_help_panel=opt.BATCH,
                                      help="Run images in this many processes.")]
FailFast = Annotated[bool, typer.Option("--fail-fast", rich_help_panel=opt.BATCH,
                                        help="Stop at the first image that fails (by default it is reported and "
                                             "the batch goes on).")]

FILE_KINDS = {".npy": "npy", ".npz": "npz", ".png": "png", ".json": "json", ".jsonl": "jsonl", ".csv": "csv"}
BINARY = ("npy", "npz", "png")


@app.command()
@opt.layer_command(many=True)
def run(
    options: opt.LayerOptions,
    images: list[str],
    format: Format = None,
    view: View = "table",
    output: Output = None,
    full: Full = False,
    force: Force = False,
    no_color: NoColor = False,
    workers: Workers = 1,
    fail_fast: FailFast = False,
) -> None:
    """Run conv -> activation -> pooling (-> dense), or a whole model, on images; print every feature map.

    Examples: cnn run sample_images/seed_5x5.png --kernel vertical_edge;
    cnn run sample_images/digit_7.png --model digits;
    cnn run sample_images/ --model digits -f jsonl --workers 2
    """
    from .batch import expand_images

    set_no_color(no_color)
    if output in STDOUT_NAMES:
        output = "-"  # written in place, like -o -, not replaced by a temporary file
    paths, batch = expand_images(images)
    to_stdout = format or ("npy" if output == "-" else "table")
    folder = output not in (None, "-") and _names_a_folder(output)
    to_file = None if output in (None, "-") else "png" if folder else _file_kind(output, format)
    if view != "table" and to_stdout != "table":
        raise typer.BadParameter(f"draws the maps of --format table; --format {to_stdout} has none to draw",
                                 param_hint="--view")
    if to_stdout == "png" and batch:
        raise typer.BadParameter("gives one picture per image; for several, write them with -o FOLDER/",
                                 param_hint="--format")
    if to_file == "png" and batch and not folder:
        raise typer.BadParameter(f"{output}: several images give several pictures; name a folder, e.g. -o pictures/",
                                 param_hint="--output")
    if to_stdout in BINARY:
        from ..files import refuse_terminal_stdout

        refuse_terminal_stdout(to_stdout)  # before the work, not after a whole batch
    look = Look.of_stdout() if to_stdout == "table" else Look(80, None)
    job = RunJob(options, tuple(dict.fromkeys(kind for kind in (to_stdout, to_file) if kind)), look, view, full)
    _run(job, paths, batch, to_stdout, output, to_file, force, workers, fail_fast, folder)


STDOUT_NAMES = ("/dev/stdout", "/dev/fd/1", "/proc/self/fd/1")


def _names_a_folder(output: str) -> bool:
    """-o DIR/ (or an existing folder) takes one picture per image, however many images there are."""
    import os

    return output.endswith(("/", os.sep)) or os.path.isdir(output)


def _file_kind(output: str, format: str | None) -> str:
    from pathlib import Path

    kind = FILE_KINDS.get(Path(output).suffix.lower())
    if kind is None:
        if format not in (None, "table"):
            return format
        if Path(output).exists() and not Path(output).is_file():
            return "npy"  # a device or a FIFO (/dev/null, a named pipe): the array, as -o always wrote
        raise typer.BadParameter(f"{output}: cannot tell what to write from its name; end it in "
                                 f"{', '.join(FILE_KINDS)}, or give --format", param_hint="--output")
    return kind


class RunJob:
    """One image in, every requested kind of output out (rendered here, so that workers do the work)."""

    def __init__(self, options: opt.LayerOptions, kinds: tuple[str, ...], look: Look, view: str, full: bool) -> None:
        self.options, self.kinds, self.look, self.view, self.full = options, kinds, look, view, full

    def __call__(self, position: int, source: str) -> dict[str, Any]:
        options = dataclasses.replace(self.options, image=source)
        prepared = opt.prepare(options)
        steps = opt.forward(prepared)
        predictions = opt.predictions(options, prepared, steps)
        outputs = {kind: self._render(kind, prepared, steps, predictions) for kind in self.kinds}
        final = f"{steps[-1].name} {tuple(steps[-1].output.shape)}"
        # What a message says was written: the final map, or for the whole-trace kinds, the trace.
        outputs["what"] = {kind: {"npz": f"{len(steps)} layers", "json": "the trace", "jsonl": "the trace"}.get(
            kind, final) for kind in self.kinds}
        return outputs

    def _render(self, kind: str, prepared, steps, predictions) -> Any:
        if kind == "table":
            return _tables(prepared, steps, predictions, self.look, self.view, self.full)
        if kind in ("json", "jsonl"):
            import json

            from ..trace import run_extras, trace_document

            document = trace_document(prepared.image, steps, run_extras(prepared.model, predictions))
            return json.dumps(document, allow_nan=False)
        if kind == "csv":
            from ..trace import csv_rows

            return csv_rows(prepared.image.source, steps[-1], _class_labels(prepared))
        if kind == "npy":
            return steps[-1].output
        if kind == "npz":
            return {step.name: step.output for step in steps}
        from ..pictures import layer_montage, png_bytes, step_caption

        step = steps[-1]
        return png_bytes(layer_montage(step.output, step.labels or _class_labels(prepared),
                                       f"{prepared.image.source}\n{step_caption(step)}"))


def _class_labels(prepared) -> tuple[str, ...]:
    """What names a model's output vector, whose step has no channel labels of its own."""
    return prepared.model.labels if prepared.model is not None else ()


def _run(job: RunJob, paths: list[str], batch: bool, to_stdout: str, output: str | None, to_file: str | None,
         force: bool, workers: int, fail_fast: bool, folder: bool) -> None:
    """One image or a batch; text goes to stdout as each image is done, in the given order.

    In a batch each failing image is one line naming it and the batch goes on, ending with exit 1;
    a single image's error ends the command, as it always has (with its traceback under --debug).
    """
    from pathlib import Path

    from . import _fail
    from .batch import Result, count, failure, run_all, unique_names
    from .output import write_text

    if folder:
        _make_folder(output)
    elif to_file is not None:
        from ..files import check_output

        check_output(output, force, opt.input_files(job.options, images=paths))  # before the work
    names = unique_names(paths)
    results = run_all(job, paths, workers, fail_fast) if batch else [Result(paths[0], 0, job(0, paths[0]))]
    kept_for_stdout: list[tuple[str, Any]] = []
    kept_for_file: list[tuple[str, Any]] = []
    failed, written = 0, 0
    if batch and to_stdout in ("json", "csv"):  # before the first image, even if every one fails
        write_text("[" if to_stdout == "json" else _csv_header())
    for result in results:
        if result.error is not None:
            failed += 1
            _fail(result.error)
            continue
        name = names[result.position]
        if folder:
            target = str(Path(output) / f"{name}.png")
            _write_binary_outputs(target, "png", [(name, result.outputs["png"])], force, batch=False)
        elif to_file is not None:
            kept_for_file.append((name, result.outputs[to_file]))
            if not batch:  # one image: its file first, so that a failed write leaves stdout empty
                _write_file(output, to_file, kept_for_file, force, batch)
        payload = result.outputs[to_stdout]
        if to_stdout == "json" and batch:
            write_text(("\n" if not written else ",\n") + payload)
        elif to_stdout in ("json", "jsonl"):
            write_text(payload + "\n")
        elif to_stdout in BINARY:
            kept_for_stdout.append((name, payload))
        elif to_stdout == "csv" and not batch:
            write_text(_csv_header() + payload)
        else:
            write_text(payload)
        written += 1
    if to_stdout == "json" and batch:
        write_text("\n]\n" if written else "]\n")
    if kept_for_stdout:
        _write_binary_outputs("-", to_stdout, kept_for_stdout, False, batch)
    if kept_for_file and batch:
        _write_file(output, to_file, kept_for_file, force, batch)
    if to_file is not None and written:
        if batch:
            tell(f"wrote {to_file} of {count(written, 'image')} to {output}")
        else:
            tell(f"wrote {results[0].outputs['what'][to_file]} to {target if folder else output}")
    if failed:
        raise failure(failed, len(paths), fail_fast)


def _make_folder(path: str) -> None:
    import os

    from ..errors import OutputError

    try:
        os.makedirs(path, exist_ok=True)
    except OSError as err:
        raise OutputError(f"cannot create the folder: {err.strerror or err}", source=path) from None


def _csv_header() -> str:
    from ..trace import CSV_HEADER

    return ",".join(CSV_HEADER) + "\n"


def _write_file(path: str, kind: str, items: list[tuple[str, Any]], force: bool, batch: bool) -> None:
    """Every image's output of ``kind`` in one file: text kinds joined, arrays stacked or keyed."""
    from ..files import write_atomic

    if kind in BINARY:
        _write_binary_outputs(path, kind, items, force, batch)
        return
    if kind == "json":
        text = items[0][1] + "\n" if not batch else "[\n" + ",\n".join(text for _, text in items) + "\n]\n"
    elif kind == "jsonl":
        text = "".join(text + "\n" for _, text in items)
    else:
        text = _csv_header() + "".join(text for _, text in items)
    write_atomic(path, lambda stream: stream.write(text.encode()), force)


def _write_binary_outputs(path: str, kind: str, items: list[tuple[str, Any]], force: bool, batch: bool) -> None:
    """npy: the final array, stacked (N, ...) for a batch (a folder or a glob, even of one image)
    of one shape; npz: every layer's array, keyed IMAGE/LAYER for a batch; png: one picture."""
    import io

    import numpy as np

    from ..errors import CnnError
    from ..files import npy_bytes, write_bytes

    if kind == "npy":
        arrays = [array for _, array in items]
        if len(arrays) > 1 and len({array.shape for array in arrays}) > 1:
            shapes = sorted({str(array.shape) for array in arrays})
            raise CnnError(f"the images gave outputs of different shapes ({', '.join(shapes[:3])}), which one "
                           ".npy cannot stack; use --format npz, or resize the images", source=path)
        data = npy_bytes(np.stack(arrays) if batch else arrays[0])  # (N, C, H, W) for a batch
    elif kind == "npz":
        buffer = io.BytesIO()
        members = ({f"{name}/{layer}": array for name, layers in items for layer, array in layers.items()}
                   if batch else items[0][1])
        np.savez(buffer, **members)
        data = buffer.getvalue()
    else:
        data = items[0][1]
    write_bytes(path, data, force, kind)


def _tables(prepared, steps, predictions, look: Look, view: str, full: bool) -> str:
    from rich.console import Group
    from rich.text import Text

    from .. import render
    from ..errors import CnnError

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
        if view == "heatmap":
            from ..render_heatmap import heatmap_view

            parts += [heatmap_view(step, look.width, look.color_system, full), Text()]
        else:
            parts += [render.step_view(step, look.width, full, look.palette), Text()]
    if predictions:
        from ..render_model import prediction_view

        parts.append(prediction_view(predictions, color=look.color_system is not None))
    group = Group(*parts)
    # --full: every column, however wide: a console as wide as the widest table
    return look.render(group, max(look.width, render.natural_width(group)) if full else None)


MAX_FULL_VALUES = 100_000
