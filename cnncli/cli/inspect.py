"""`cnn inspect`: a per-layer summary, and every layer saved as .npy and PNG with a JSON manifest,
for one image or many."""

from __future__ import annotations

import contextlib
import dataclasses
from typing import TYPE_CHECKING, Annotated, Iterator, Literal, Optional

import typer

from .. import run as core
from . import app, options as opt
from .helptext import PanelledCommand
from .output import Look, set_no_color, tell, warn_each
from .run import ConnectTimeout, FailFast, NoColor, Scheduler, ShipBytes, Timing, Workers

if TYPE_CHECKING:
    from ..cluster import ClusterSettings
    from ..cluster.tasks import Attempts

Save = Annotated[Optional[str], typer.Option(
    "--save", rich_help_panel=opt.OUTPUT, show_default=False, metavar="DIR",
    help="Write DIR/manifest.json and one .npy and one .png per layer (the input included); for several "
         "images, one folder per image inside DIR.")]
Force = Annotated[bool, typer.Option(
    "--force", rich_help_panel=opt.OUTPUT,
    help="Let --save replace an earlier inspection, or files of the same names, in DIR.")]
NoPictures = Annotated[bool, typer.Option("--no-pictures", rich_help_panel=opt.OUTPUT,
                                          help="With --save, write the .npy files and the manifest but no PNG "
                                               "pictures (which take seconds for big maps).")]
Format = Annotated[Literal["table", "json", "jsonl"], typer.Option(
    "--format", "-f", rich_help_panel=opt.OUTPUT,
    help="table: the summary as a table. json: the same per-layer records as the manifest, on stdout; "
         "jsonl: one line per image.")]


@app.command(cls=PanelledCommand)
@opt.layer_command(many=True)
def inspect(
    options: opt.LayerOptions,
    images: list[str],
    save: Save = None,
    force: Force = False,
    no_pictures: NoPictures = False,
    format: Format = "table",
    no_color: NoColor = False,
    timing: Timing = False,
    workers: Workers = 1,
    fail_fast: FailFast = False,
    scheduler: Scheduler = None,
    ship_bytes: ShipBytes = False,
    connect_timeout: ConnectTimeout = None,
) -> None:
    """Summarise every layer: type, settings, shape, parameters, multiply-adds, statistics, time.

    Examples: cnn inspect sample_images/shapes.png --kernel sobel_x --save out/;
    cnn inspect sample_images/digit_3.png --model digits --save acts/;
    cnn inspect 'sample_images/digit_*.png' --model digits --save acts/ -f jsonl
    """
    from ..io.paths import expand_images
    from .batch import cluster_settings, unique_names

    set_no_color(no_color)
    cluster = cluster_settings(scheduler, ship_bytes, connect_timeout, workers)
    paths, batch = expand_images(images)
    sink = _sink(format, batch)  # refuses a closed stdout before the work
    look = Look.of_stdout() if format == "table" else Look(80, None)
    folders = inputs = None
    if save is not None:
        from pathlib import Path

        from ..io.targets import InputSet

        folders = [str(Path(save) / name) if batch else save for name in unique_names(paths)]
        inputs = InputSet(core.input_files(options, images=paths), stdin="-" in paths)
    if timing and save is None and format == "table":
        raise typer.BadParameter("puts each layer's time in json, jsonl and the manifest of --save; the table "
                                 "shows it already", param_hint="--timing")
    core.check_sources(options)  # a bad kernel or model file ends the command, not each image
    rendered = (format,) + (("pictures",) if save is not None and not no_pictures else ())
    options = dataclasses.replace(options, outputs=rendered)  # the memory limit counts their rendering
    job = InspectJob(options, format, look, folders, force, inputs, not no_pictures, timing)
    if not batch:
        outcome = job(0, paths[0])
        warn_each(outcome.warnings)
        sink.add(0, paths[0], outcome.parts[format])
        if save is not None:
            tell(f"saved {outcome.facts['layers']} layers to {save} (manifest.json lists them)")
        return
    if save is not None:
        from ..io.saving import clear_single_inspection

        assert inputs is not None  # set with save, above
        clear_single_inspection(save, force, inputs, remove=False)  # refused now, without --force
    _inspect_batch(job, paths, sink, save, workers, fail_fast, cluster)


class InspectJob:
    """One image in, its summary or records out, its layers saved when --save is given."""

    def __init__(self, options: opt.LayerOptions, format: str, look: Look, folders: list[str] | None,
                 force: bool, inputs=None, pictures: bool = True, timing: bool = False) -> None:
        self.options, self.format, self.look, self.folders, self.force = options, format, look, folders, force
        self.inputs = inputs  # every file the command reads: no layer file may overwrite one
        self.pictures, self.timing = pictures, timing
        self.attempts: Attempts | None = None  # set while a cluster runs the batch (on_cluster)

    @contextlib.contextmanager
    def on_cluster(self) -> Iterator[None]:
        """While a Dask cluster runs the batch: with --save, the images it runs again are told
        (cnncli.cluster.Attempts, in a hidden folder of the save folder, removed after)."""
        if self.folders is None:
            yield
            return
        from ..cluster.tasks import attempts_beside

        with attempts_beside(self.folders[0]) as self.attempts:
            try:
                yield
            finally:
                self.attempts = None

    def __call__(self, position: int, source: str):
        from ..errors import CnnError
        from ..pool import Outcome
        from ..io.trace import inspect_document, layer_records, run_extras

        options = dataclasses.replace(self.options, image=source)
        with opt.usage_errors():  # a usage error ends a batch; it is not this image's failure
            prepared = core.prepare(options)
            steps, warnings = core.forward(prepared)
            predictions = core.predictions(options, prepared, steps)
        extras = run_extras(prepared.model, predictions, steps[-1].output.dtype)
        manifest = None
        if self.folders is not None:
            from ..io.saving import save_inspection
            from ..views.pictures import step_pngs

            picture = step_pngs(steps, prepared.class_labels) if self.pictures else None
            # Dask runs an image again when its worker dies: that run replaces what the first one placed.
            force = self.force or (self.attempts is not None and not self.attempts.first(position))
            try:
                manifest = save_inspection(self.folders[position], prepared.image, steps, force, extras,
                                           self.inputs, picture=picture, timing=self.timing, limits=options.limits)
            except CnnError:
                if self.attempts is not None:
                    self.attempts.forget(position)  # refused, nothing placed: a run again is refused too
                raise
        if self.format in ("json", "jsonl"):
            from ..io.jsontext import dumps
            from ..io.parts import Rendered

            document = dumps(manifest or inspect_document(prepared.image, layer_records(steps, self.timing), extras))
            part: Rendered | str = Rendered(lambda write: write(document))
        else:
            part = self._tables(prepared, steps, predictions)
        return Outcome({self.format: part}, warnings, {"layers": len(steps)})

    def _tables(self, prepared, steps, predictions) -> str:
        from rich.console import Group

        from ..views import tables as render
        from ..display import shown

        parts = [render.image_header(prepared.image),
                 render.summary_view(steps, f"Layers of the forward pass on {shown(prepared.image.source)}",
                                     self.look.width)]
        if prepared.model is not None:
            from ..views.models import model_header

            parts.insert(0, model_header(prepared.model))
        if predictions:
            from ..views.models import prediction_view

            parts.append(prediction_view(predictions, color=self.look.color_system is not None))
        return self.look.render(Group(*parts))


def _sink(format: str, batch: bool):
    from ..io.sinks import JsonSink, Stdout, TextSink

    if format == "table":
        return TextSink(between="\n")  # each image's summary, a blank line between two
    from ..io.trace import INSPECT_FORMAT

    return JsonSink(Stdout(), format == "jsonl", batch, INSPECT_FORMAT)


def _inspect_batch(job: InspectJob, paths: list[str], sink, save: str | None, workers: int, fail_fast: bool,
                   cluster: ClusterSettings | None = None) -> None:
    """Run the batch, writing each image's summary or records in order; once one is saved, an
    earlier single-image inspection in ``save`` goes (it was refused before the work without --force)."""
    from ..io.sinks import NOT_RUN
    from . import _fail
    from .batch import count, failure, run_all

    failed = written = done = 0
    for result in run_all(job, paths, workers, fail_fast, cluster):
        done += 1
        if result.error is not None:
            failed += 1
            _fail(result.error)
            sink.fail(result.position, result.source, result.error)
            continue
        assert result.outcome is not None  # a result holds its outcome or its error
        warn_each(result.outcome.warnings)
        sink.add(result.position, result.source, result.outcome.parts[job.format])
        result.outcome.release()
        result.outcome = None  # its maps go now, not when the next image's result replaces it
        written += 1
    for position in range(done, len(paths)):  # stopped early (--fail-fast): their places are kept too
        sink.fail(position, paths[position], f"{paths[position]}: {NOT_RUN}")
    sink.close()
    if save is not None and written:
        from ..io.saving import clear_single_inspection

        clear_single_inspection(save, job.force, job.inputs, limits=job.options.limits)
        tell(f"saved {count(written, 'inspection')} to {save}, one folder per image")
    if failed:
        raise failure(failed, len(paths), fail_fast)
