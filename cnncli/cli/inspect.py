"""`cnn inspect`: a per-layer summary, and every layer saved as .npy and PNG with a JSON manifest,
for one image or many."""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any, Literal, Optional

import typer

from . import app, options as opt
from .output import Look, set_no_color, tell
from .run import FailFast, NoColor, Workers

Save = Annotated[Optional[str], typer.Option(
    "--save", rich_help_panel=opt.OUTPUT, show_default=False, metavar="DIR",
    help="Write DIR/manifest.json and one .npy and one .png per layer (the input included); for several "
         "images, one folder per image inside DIR.")]
Force = Annotated[bool, typer.Option("--force", rich_help_panel=opt.OUTPUT,
                                     help="Let --save replace an earlier inspection, or files of the same names, in DIR.")]
NoPictures = Annotated[bool, typer.Option("--no-pictures", rich_help_panel=opt.OUTPUT,
                                          help="With --save, write the .npy files and the manifest but no PNG "
                                               "pictures (which take seconds for big maps).")]
Format = Annotated[Literal["table", "json", "jsonl"], typer.Option(
    "--format", "-f", rich_help_panel=opt.OUTPUT,
    help="table: the summary as a table. json: the same per-layer records as the manifest, on stdout; "
         "jsonl: one line per image.")]


@app.command()
@opt.layer_command(many=True)
def inspect(
    options: opt.LayerOptions,
    images: list[str],
    save: Save = None,
    force: Force = False,
    no_pictures: NoPictures = False,
    format: Format = "table",
    no_color: NoColor = False,
    workers: Workers = 1,
    fail_fast: FailFast = False,
) -> None:
    """Summarise every layer: type, settings, shape, parameters, multiply-adds, statistics, time.

    Examples: cnn inspect sample_images/shapes.png --kernel sobel_x --save out/;
    cnn inspect sample_images/digit_3.png --model digits --save acts/;
    cnn inspect 'sample_images/digit_*.png' --model digits --save acts/ -f jsonl
    """
    from .batch import expand_images, unique_names

    set_no_color(no_color)
    paths, batch = expand_images(images)
    look = Look.of_stdout() if format == "table" else Look(80, None)
    folders = None
    if save is not None:
        from pathlib import Path

        folders = [str(Path(save) / name) if batch else save for name in unique_names(paths)]
    job = InspectJob(options, format, look, folders, force, tuple(paths), not no_pictures)
    if not batch:
        result = job(0, paths[0])
        _print(format, result["text"], first=True, batch=False)
        if save is not None:
            tell(f"saved {result['layers']} layers to {save} (manifest.json lists them)")
        return
    if save is not None:
        from ..files import clear_single_inspection

        clear_single_inspection(save, force)
    _inspect_batch(job, paths, format, save, workers, fail_fast)


class InspectJob:
    """One image in, its summary or records out, its layers saved when --save is given."""

    def __init__(self, options: opt.LayerOptions, format: str, look: Look, folders: list[str] | None,
                 force: bool, paths: tuple[str, ...], pictures: bool = True) -> None:
        self.options, self.format, self.look, self.folders, self.force = options, format, look, folders, force
        self.paths = paths  # every image of the command: no layer file may overwrite one
        self.pictures = pictures

    def __call__(self, position: int, source: str) -> dict[str, Any]:
        from ..trace import TRACE_VERSION, image_record, layer_record, run_extras

        options = dataclasses.replace(self.options, image=source)
        prepared = opt.prepare(options)
        steps = opt.forward(prepared)
        predictions = opt.predictions(options, prepared, steps)
        extras = run_extras(prepared.model, predictions)
        manifest = None
        if self.folders is not None:
            from ..files import save_inspection

            inputs = opt.input_files(options, prepared, images=list(self.paths))
            manifest = save_inspection(self.folders[position], prepared.image, steps, self.force, extras, inputs,
                                       pictures=self.pictures)
        if self.format in ("json", "jsonl"):
            import json

            document = manifest or {"format": "cnn-inspect", "version": TRACE_VERSION,
                                    "image": image_record(prepared.image),
                                    "layers": [layer_record(step) for step in steps], **extras}
            return {"text": json.dumps(document, allow_nan=False), "layers": len(steps)}
        return {"text": self._tables(prepared, steps, predictions), "layers": len(steps)}

    def _tables(self, prepared, steps, predictions) -> str:
        from rich.console import Group

        from .. import render

        parts = [render.image_header(prepared.image),
                 render.summary_view(steps, f"Layers of the forward pass on {prepared.image.source}", self.look.width)]
        if prepared.model is not None:
            from ..render_model import model_header

            parts.insert(0, model_header(prepared.model))
        if predictions:
            from ..render_model import prediction_view

            parts.append(prediction_view(predictions, color=self.look.color_system is not None))
        return self.look.render(Group(*parts))


def _print(format: str, text: str, first: bool, batch: bool) -> None:
    from .output import write_text

    if format == "json" and batch:
        write_text(("[\n" if first else ",\n") + text)
    elif format in ("json", "jsonl"):
        write_text(text + "\n")
    else:
        write_text(text if first else "\n" + text)


def _inspect_batch(job: InspectJob, paths: list[str], format: str, save: str | None, workers: int,
                   fail_fast: bool) -> None:
    from . import _fail
    from .batch import count, failure, run_all

    failed = written = 0
    for result in run_all(job, paths, workers, fail_fast):
        if result.error is not None:
            failed += 1
            _fail(result.error)
            continue
        _print(format, result.outputs["text"], first=not written, batch=True)
        written += 1
    if format == "json":
        from .output import write_text

        write_text("\n]\n" if written else "[]\n")
    if save is not None and written:
        tell(f"saved {count(written, 'inspection')} to {save}, one folder per image")
    if failed:
        raise failure(failed, len(paths), fail_fast)
