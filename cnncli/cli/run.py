"""`cnn run`: every feature map of a forward pass, on one image or many, as tables, heatmaps,
JSON, CSV, .npy/.npz arrays or PNG pictures."""

from __future__ import annotations

import dataclasses
import sys
from typing import TYPE_CHECKING, Annotated, Any, Literal, Optional, cast

import typer

from .. import run as core
from . import app, options as opt
from .helptext import PanelledCommand
from .output import Look, set_no_color, tell, warn_each

if TYPE_CHECKING:
    from rich.console import RenderableType

    from ..cluster import ClusterSettings
    from ..io.images import Alpha, Color

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
    help="Write the output to FILE instead of stdout, in the format its extension names (.npy .npz .png .json "
         ".jsonl .csv); stdout then gets --format only if it names another format. - is stdout (in --format, npy "
         "if none). For "
         "several images, .png needs a folder: -o DIR/.")]
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
Scheduler = Annotated[Optional[str], typer.Option(
    "--scheduler", envvar="CNN_SCHEDULER", rich_help_panel=opt.BATCH, show_default=False, metavar="ADDRESS",
    help="Run a batch's images on a Dask cluster: its scheduler's address (tcp://host:8786), or local for a "
         "cluster on this machine for the run (--workers processes). Needs pip install 'cnncli[dask]'.")]
ShipBytes = Annotated[bool, typer.Option(
    "--ship-bytes", rich_help_panel=opt.BATCH,
    help="With --scheduler: read the images here and send their bytes, for workers that cannot read these paths.")]
ConnectTimeout = Annotated[Optional[float], typer.Option(
    "--connect-timeout", min=0.1, rich_help_panel=opt.BATCH, show_default="5", metavar="SECONDS",
    help="With --scheduler: how long to try to reach the scheduler, and to wait for a worker.")]

Values = Annotated[Optional[Literal["all", "final", "none"]], typer.Option(
    "--values", rich_help_panel=opt.OUTPUT, show_default="all; for csv: the predictions, or else final",
    help="Which layers' values json, jsonl, csv and npz carry: all, the final one, or none (json and jsonl keep "
         "the records and statistics; csv of a run with predictions then holds one row per image).")]
Timing = Annotated[bool, typer.Option("--timing", rich_help_panel=opt.OUTPUT,
                                      help="Put each layer's time (seconds) in json, jsonl and the manifest; "
                                           "without it two runs write the same bytes.")]

FILE_KINDS = {".npy": "npy", ".npz": "npz", ".png": "png", ".json": "json", ".jsonl": "jsonl", ".csv": "csv"}
BINARY = ("npy", "npz", "png")
TAKES_VALUES = ("json", "jsonl", "csv", "npz")


@app.command(cls=PanelledCommand)
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
    values: Values = None,
    timing: Timing = False,
    workers: Workers = 1,
    fail_fast: FailFast = False,
    scheduler: Scheduler = None,
    ship_bytes: ShipBytes = False,
    connect_timeout: ConnectTimeout = None,
) -> None:
    """Run conv -> activation -> pooling (-> dense), or a whole model, on images; print every feature map.

    Examples: cnn run sample_images/seed_5x5.png --kernel vertical_edge;
    cnn run sample_images/digit_7.png --model digits;
    cnn run sample_images/ --model digits -f jsonl --workers 2
    """
    from ..io.paths import expand_images
    from .batch import cluster_settings

    set_no_color(no_color)
    cluster = cluster_settings(scheduler, ship_bytes, connect_timeout, workers)
    if output is not None and not output.strip():
        raise typer.BadParameter("is empty; expected a file name, a folder ending in /, or -", param_hint="--output")
    if output in STDOUT_NAMES:
        output = "-"  # written in place, like -o -, not replaced by a temporary file
    paths, batch = expand_images(images)
    # -o FILE takes the output off stdout, as in every other tool: stdout then carries nothing
    # unless --format asks for it too.
    to_stdout = format or ("npy" if output == "-" else None if output is not None else "table")
    folder = output not in (None, "-") and _names_a_folder(output)
    to_file = None if output in (None, "-") else "png" if folder else _file_kind(output, format)
    if to_file is not None and format == to_file:  # -f names the file's own format: the file gets it, not stdout
        to_stdout = None
    kinds = tuple(dict.fromkeys(kind for kind in (to_file, to_stdout) if kind))
    if view != "table" and to_stdout != "table":
        shown = f"--format {to_stdout}" if to_stdout else "-o without --format (stdout shows nothing)"
        raise typer.BadParameter(f"draws the maps of --format table; {shown} has none to draw", param_hint="--view")
    if values is not None and not set(kinds) & set(TAKES_VALUES):
        raise typer.BadParameter(f"chooses what {', '.join(TAKES_VALUES)} carry; {' and '.join(kinds)} has no "
                                 "such choice", param_hint="--values")
    if timing and not set(kinds) & {"json", "jsonl"}:
        raise typer.BadParameter(f"puts each layer's time in json and jsonl; {' and '.join(kinds)} has no such "
                                 "field", param_hint="--timing")
    if to_stdout == "png" and batch:
        raise typer.BadParameter("gives one picture per image; for several, write them with -o FOLDER/",
                                 param_hint="--format")
    if to_file == "png" and batch and not folder:
        raise typer.BadParameter(f"{output}: several images give several pictures; name a folder, e.g. -o pictures/",
                                 param_hint="--output")
    if to_stdout in BINARY:
        from ..io.targets import refuse_terminal_stdout

        refuse_terminal_stdout(to_stdout)  # before the work, not after a whole batch
    look = Look.of_stdout() if to_stdout == "table" else Look(80, None)
    classes = core.check_sources(options)  # a bad kernel or model file ends the command, not each image
    # A run ranks classes with --top (which requires a vector), or a model whose output is a vector.
    has_predictions = options.top is not None or (options.model is not None and classes is not None)
    ranked = "csv" in kinds and values in (None, "none") and has_predictions
    if "csv" in kinds and values == "none" and not ranked:
        raise typer.BadParameter("leaves csv nothing to write: its rows are values, or predictions of a --model or "
                                 "--top run", param_hint="--values")
    rendered = kinds + (("heatmap",) if view == "heatmap" else ())
    options = dataclasses.replace(options, outputs=rendered)  # the memory limit counts their rendering
    columns = min(options.top or 1, classes or options.top or 1)  # no more ranks than classes
    job = RunJob(options, kinds, look, view, full, values, timing, columns if ranked else 0)
    _run(job, paths, batch, to_stdout, output, to_file, force, workers, fail_fast, folder, cluster)


STDOUT_NAMES = ("/dev/stdout", "/dev/fd/1", "/proc/self/fd/1")


def _names_a_folder(output: str) -> bool:
    """-o DIR/ (or an existing folder not named like a file) takes one picture per image, however many
    images there are; -o out.npy that is a folder is an error (check_output says so)."""
    import os

    if output.endswith(("/", os.sep)):
        return True
    return os.path.isdir(output) and os.path.splitext(output)[1].lower() not in FILE_KINDS


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
    """One image in, every requested kind of output out (rendered where the image ran, so that
    workers do the work).

    ``ranked`` > 0 makes the CSV one row per image with that many classes (predictions_header).
    """

    def __init__(self, options: opt.LayerOptions, kinds: tuple[str, ...], look: Look, view: str, full: bool,
                 values: str | None = None, timing: bool = False, ranked: int = 0) -> None:
        self.options, self.kinds, self.look, self.view, self.full = options, kinds, look, view, full
        self.values, self.timing, self.ranked = values, timing, ranked

    def __call__(self, position: int, source: str):
        from ..pool import Outcome

        options = dataclasses.replace(self.options, image=source)
        with opt.usage_errors():  # a usage error ends a batch; it is not this image's failure
            prepared = core.prepare(options)
            steps, warnings = core.forward(prepared, core.keeps_maps(options.outputs))
            predictions = core.predictions(options, prepared, steps)
        parts = {kind: self._render(kind, prepared, steps, predictions) for kind in self.kinds}
        # What a message says was written: the final map, or for the whole-trace kinds, the trace.
        final = f"{steps[-1].name} {tuple(steps[-1].output.shape)}"
        what = {kind: {"npz": f"{len(steps)} layers", "json": "the trace", "jsonl": "the trace"}.get(kind, final)
                for kind in self.kinds}
        return Outcome(parts, warnings, {"what": what})

    def _render(self, kind: str, prepared, steps, predictions) -> Any:
        from ..io.parts import ArrayPart, Layers, Rendered

        source = prepared.image.source
        if kind == "table":
            return _tables(prepared, steps, predictions, self.look, self.view, self.full)
        if kind in ("json", "jsonl"):
            from ..io.trace import run_extras, write_trace

            extras = run_extras(prepared.model, predictions, steps[-1].output.dtype)
            return Rendered(lambda write: write_trace(write, prepared.image, steps, extras, self.values or "all",
                                                      self.timing))
        if kind == "csv":
            from ..io.trace import predictions_line, with_values, write_csv_maps

            if self.ranked:
                line = predictions_line(source, predictions, self.ranked, steps[-1].output.dtype)
                return Rendered(lambda write: write(line))
            chosen = [steps[i] for i in with_values(steps, self.values or "final")]
            return Rendered(lambda write: write_csv_maps(write, source, chosen, prepared.class_labels))
        if kind == "npy":
            return ArrayPart(steps[-1].output)
        if kind == "npz":
            from ..io.trace import INPUTS_MEMBER, inputs_table, with_values

            reads = inputs_table(steps)  # a graph's archive names what each layer read
            return Layers([(steps[i].name, ArrayPart(steps[i].output))
                           for i in with_values(steps, self.values or "all")]
                          + ([(INPUTS_MEMBER, ArrayPart(reads))] if reads is not None else []))
        from ..engine.graph import is_chain
        from ..views.pictures import layer_montage, png_bytes, step_caption

        step = steps[-1]
        return png_bytes(layer_montage(step.output, step.labels or prepared.class_labels,
                                       f"{prepared.image.source}\n{step_caption(step, not is_chain(steps))}"))


def _run(job: RunJob, paths: list[str], batch: bool, to_stdout: str | None, output: str | None, to_file: str | None,
         force: bool, workers: int, fail_fast: bool, folder: bool, cluster: ClusterSettings | None = None) -> None:
    """One image or a batch; what goes to stdout is written as each image is done, in the given order.

    In a batch each failing image is one line naming it, keeps its place in every output (an
    error record or row, a NaN row), and the batch goes on, ending with exit 1; a single image's
    error ends the command, as it always has (with its traceback under --debug).
    """
    from ..io.sinks import NOT_RUN
    from . import _drop_stdout, _fail
    from .batch import failure, run_all

    every_shape_known = True
    if batch and "npy" in (to_file, to_stdout) and job.options.model is None:
        # (a file kind comes from -o alone, so output is set when to_file is)
        every_shape_known = _check_stackable(job.options, paths,
                                             cast(str, output) if to_file == "npy" else "--format npy")
    # A stacked .npy on stdout of images whose shapes could not be read ahead (stdin, a pipe) waits
    # in a temporary file until complete: stdout gets the whole array or nothing.
    hold_stdout = to_stdout == "npy" and batch and not every_shape_known
    to_file_sink, to_stdout_sink = _sinks(job, paths, batch, to_stdout, output, to_file, force, folder, hold_stdout)
    outputs = [(kind, sink) for kind, sink in ((to_file, to_file_sink), (to_stdout, to_stdout_sink))
               if kind is not None and sink is not None]  # a sink is made exactly for a kind asked for
    sinks = [sink for _, sink in outputs]
    failed = written = 0
    last = None
    try:
        if not batch:  # one image: its error ends the command; its file first, so a failed write leaves stdout empty
            outcome = job(0, paths[0])
            warn_each(outcome.warnings)
            for kind, sink in outputs:
                sink.add(0, paths[0], outcome.parts[kind])
                sink.close()
            written, last = 1, outcome.facts
        else:
            done, reader_left = 0, False
            for result in run_all(job, paths, workers, fail_fast, cluster):
                done += 1
                if result.error is not None:
                    failed += 1
                    _fail(result.error)
                else:
                    assert result.outcome is not None  # a result holds its outcome or its error
                    warn_each(result.outcome.warnings)
                for kind, sink in outputs:
                    try:
                        if result.error is not None:
                            sink.fail(result.position, result.source, result.error)
                        else:
                            assert result.outcome is not None
                            sink.add(result.position, result.source, result.outcome.parts[kind])
                    except BrokenPipeError:
                        # stdout's reader left (`| head -1`): the file is still wanted whole, if there is one
                        if sink is not to_stdout_sink or to_file is None or to_file_sink is None:
                            raise
                        outputs, reader_left = [(to_file, to_file_sink)], True
                        _drop_stdout()
                if result.outcome is not None:
                    result.outcome.release()
                    # Let this image's maps go now, not when the next image's result replaces this one.
                    written, last, result.outcome = written + 1, result.outcome.facts, None
            for position in range(done, len(paths)):  # stopped early (--fail-fast): keep their places too
                for _, sink in outputs:
                    sink.fail(position, paths[position], f"{paths[position]}: {NOT_RUN}")
            for _, sink in outputs:
                sink.close()
            if reader_left:
                _tell_written(to_file, output, folder, batch, written, failed, len(paths), last)
                raise BrokenPipeError  # main() ends quietly, with 1, as for any reader that leaves
    except BaseException:
        for sink in sinks:
            sink.discard()
        raise
    _tell_written(to_file, output, folder, batch, written, failed, len(paths), last)
    if failed:
        raise failure(failed, len(paths), fail_fast)


def _tell_written(to_file: str | None, output: str | None, folder: bool, batch: bool, written: int, failed: int,
                  total: int, last: dict | None) -> None:
    """The closing message: what went to the -o file or folder."""
    from .batch import count

    if to_file is None or not written:
        return
    if folder:
        tell(f"wrote {count(written, 'picture')} to {output}")
    elif batch:
        tell(f"wrote {to_file} of {count(total, 'image')} to {output}" +
             (f" ({count(failed, 'failure')} in place)" if failed else ""))
    else:
        assert last is not None  # the facts of the image written
        tell(f"wrote {last['what'][to_file]} to {output}")


def _check_stackable(options: opt.LayerOptions, paths: list[str], where: str) -> bool:
    """Refuse, before any work, a stacked .npy of images whose outputs would differ in shape, from
    their headers: the output shape of each distinct input shape (a model's input is fixed).
    Return whether every image's shape was known (stdin and pipes cannot be read ahead)."""
    import numpy as np

    from ..errors import CnnError, UsageError
    from ..io.images import LoadedImage, peek_shape

    # LayerOptions holds them as str; here they come from the options' choices.
    color = cast("Color", core.kernel_color(options))
    alpha = cast("Alpha", options.alpha or "drop")
    first: dict[tuple, tuple[str, tuple]] = {}  # input shape -> (an image of it, its output shape)
    outputs: dict[tuple, str] = {}  # output shape -> the first image giving it
    known = True
    for path in paths:
        shape = peek_shape(path, color, alpha, options.limits)
        known = known and shape is not None
        if shape is None:
            continue
        shape = core.kernel_input_shape(options, shape)  # resized or cropped as the options say
        if shape in first:
            continue
        names = ("gray",) if color == "gray" else ("R", "G", "B")
        stub = LoadedImage(np.broadcast_to(np.zeros((), options.dtype), shape), path, "", "",
                           names + ("alpha",) * (shape[0] - len(names)), ())
        try:
            output = core.build_network(options, stub).shapes(shape)[-1]
        except UsageError:
            raise  # the options, not this image: the command ends now
        except CnnError:
            continue  # this image fails in its turn, with its own message
        first[shape] = (path, output)
        outputs.setdefault(output, path)
        if len(outputs) > 1:
            from ..io.sinks import unstackable

            (one, a), (other, b) = [(name, out) for out, name in outputs.items()]
            raise unstackable(other, b, one, a, where, ahead=True)
    return known


def _sinks(job: RunJob, paths: list[str], batch: bool, to_stdout: str | None, output: str | None, to_file: str | None,
           force: bool, folder: bool, hold_stdout: bool = False):
    """The file's sink and stdout's, each None when not asked for. The file's targets are checked
    before the work: none may exist (without --force) or be one of the run's inputs."""
    from ..io.sinks import Stdout, TextSink, target
    from ..io.targets import NO_INPUTS, InputSet
    from .batch import unique_names

    names = unique_names(paths)
    inputs = NO_INPUTS
    if to_file is not None or (to_stdout is not None and _stdout_is_a_file()):
        inputs = InputSet(core.input_files(job.options, images=paths), stdin="-" in paths)
    file_sink = None
    if folder:
        from ..io.sinks import PictureFolder
        from ..io.targets import check_output

        assert output is not None  # a folder is what -o names
        _make_folder(output)
        file_sink = PictureFolder(output, names, force, inputs)
        for path in file_sink.paths:
            check_output(path, force, inputs)
    elif to_file is not None:
        assert output is not None  # a file kind comes from -o alone
        file_sink = _sink(to_file, target(output, force, inputs, to_file in BINARY), job, batch, paths, names)
    stdout_sink = None
    if to_stdout == "table":
        Stdout(inputs)  # refuses a stdout that is one of the inputs (1<> image.png)
        stdout_sink = TextSink()
    elif to_stdout is not None:
        stdout_sink = _sink(to_stdout, Stdout(inputs, held=hold_stdout), job, batch, paths, names)
    return file_sink, stdout_sink


def _stdout_is_a_file() -> bool:
    """Whether stdout is a regular file (``> out``, ``1<> x``), which could be one of the inputs."""
    import os
    import stat

    try:
        return stat.S_ISREG(os.fstat(sys.stdout.fileno()).st_mode)
    except (OSError, ValueError, AttributeError):
        return False


def _sink(kind: str, to, job: RunJob, batch: bool, paths: list[str], names: list[str]):
    from ..io.sinks import BytesSink, CsvSink, JsonSink, NpySink, NpzSink

    if kind in ("json", "jsonl"):
        return JsonSink(to, kind == "jsonl", batch)
    if kind == "csv":
        from ..io.trace import CSV_HEADER, predictions_header

        return CsvSink(to, predictions_header(job.ranked) if job.ranked else CSV_HEADER)
    if kind == "npy":
        return NpySink(to, batch, len(paths))
    if kind == "npz":
        return NpzSink(to, batch, names, paths)
    return BytesSink(to)


def _make_folder(path: str) -> None:
    import os

    from ..errors import OutputError

    try:
        os.makedirs(path, exist_ok=True)
    except OSError as err:
        raise OutputError(f"cannot create the folder: {err.strerror or err}", source=path) from None


def _tables(prepared, steps, predictions, look: Look, view: str, full: bool) -> str:
    from rich.console import Group
    from rich.text import Text

    from ..engine.graph import is_chain
    from ..views import tables as render
    from ..views.steps import with_class_labels
    from ..errors import CnnError

    if full:
        values = sum(step.output.size for step in steps)
        if values > render.MAX_FULL_VALUES:
            raise CnnError(f"would print {values:,} values as tables (the limit is {render.MAX_FULL_VALUES:,}); "
                           "--format json or -o FILE.npy give every value", source="--full")
    parts: list[RenderableType] = [render.image_header(prepared.image)]
    if prepared.model is not None:
        from ..views.models import model_header

        parts.insert(0, model_header(prepared.model))
    hidden = range(MAX_TABLE_LAYERS // 2, len(steps) - MAX_TABLE_LAYERS // 2) if not full else range(0)
    graph = not is_chain(steps)  # titles name what each map read
    steps = with_class_labels(steps, prepared.class_labels)  # the dense and softmax tables name their classes
    for index, step in enumerate(steps):
        if index in hidden:
            if index == hidden.start:
                parts += [Text(f"... {len(hidden):,} layers not shown ({hidden.start} to {hidden.stop - 1}); "
                               "--full shows every layer, cnn inspect summarises them", style="dim"), Text()]
            continue
        if step is steps[-1]:
            parts.append(Text("Output", style="bold underline"))
        if view == "heatmap":
            from ..views.heatmap import heatmap_view

            parts += [heatmap_view(step, look.width, look.color_system, full, graph), Text()]
        else:
            parts += [render.step_view(step, look.width, full, look.palette, graph), Text()]
    if predictions:
        from ..views.models import prediction_view

        parts.append(prediction_view(predictions, color=look.color_system is not None))
    group = Group(*parts)
    # --full: every column, however wide: a console as wide as the widest table
    return look.render(group, max(look.width, render.natural_width(group)) if full else None)


MAX_TABLE_LAYERS = 100  # layers shown as tables without --full: the first and last half of them
