"""Sinks: one output of a run (stdout or a file, in one format) fed image by image, in order.

Every image of a batch keeps its place in a stacked output, so that scripts can join rows to
files without guessing: an image that failed is an error record in JSON and JSON Lines, a row
with an ``error`` in CSV, a row of NaN in a stacked .npy, and a message in an .npz's ``errors``
array (beside ``sources``, the images' names in order). A file is written beside its place and
renamed in only when complete (``close``); ``discard`` removes it after a failure.
"""

from __future__ import annotations

import sys
from typing import IO, TYPE_CHECKING, Any, Callable, Sequence, cast

import numpy as np

from ..errors import CnnError
from .jsontext import dumps
from .parts import ArrayPart, Layers, write_npy_header
from .targets import NO_INPUTS, InputSet, StagedFile, stdout_bytes, write_atomic
from .trace import CSV_HEADER, TRACE_FORMAT, csv_error_line, csv_line, error_record

if TYPE_CHECKING:  # imported when an .npz is written, not at every start-up
    import zipfile

NOT_RUN = "not run: the batch stopped at the first failure (--fail-fast)"

# Memory that rendering outputs takes beside the run's maps: text is written a chunk of values at a
# time (measured: 10 MB above the maps for JSON of a 2000x2000 map); a picture or a heatmap works on
# a map in float64 and Pillow buffers (measured: 29 MB for a 999x999 map's montage).
TEXT_BYTES = 16 << 20
PICTURE_BYTES_PER_VALUE = 24
PICTURE_BYTES = 8 << 20


def output_bytes(kinds, shapes) -> int:
    """An upper estimate of the memory rendering ``kinds`` takes beside the maps of ``shapes`` (one
    per step): text kinds, a picture of the final map ("png"), pictures of every map ("pictures",
    "heatmap"), tables. Arrays (npy, npz) are written straight from the maps."""
    kinds = set(kinds)
    if not kinds or not shapes:
        return 0
    sizes = [int(np.prod(shape)) for shape in shapes]
    total = TEXT_BYTES if kinds & {"json", "jsonl", "csv", "table"} else 0
    if kinds & {"pictures", "heatmap"}:
        total += PICTURE_BYTES_PER_VALUE * max(sizes) + PICTURE_BYTES
    elif "png" in kinds:
        total += PICTURE_BYTES_PER_VALUE * sizes[-1] + PICTURE_BYTES
    return total


class Stdout:
    """Standard output as a sink's target: bytes after whatever text was printed before. It may be
    a file (``> out.npy``, ``1<> image.png``): never one of the run's inputs."""

    source = "stdout"

    def __init__(self, inputs: InputSet = NO_INPUTS, held: bool = False) -> None:
        import os

        from ..errors import OutputError
        from .targets import _Written

        write: Callable[[bytes | memoryview], Any] = stdout_bytes()  # refuses a closed stdout
        try:
            holder = inputs.holding(os.fstat(sys.stdout.fileno()))
        except (OSError, ValueError, AttributeError):  # no file behind it (a test's capture)
            holder = None
        if holder is not None:
            raise OutputError(f"is {holder}, one of this run's inputs; write the output elsewhere", source="stdout")
        self._stdout = write
        self._held = None
        if held:  # everything waits in an unnamed temporary file until commit
            import tempfile

            self._held = tempfile.TemporaryFile()
            write = self._held.write
        self.stream = _Written(sys.stdout.buffer, "stdout", seekable=False, write=write)
        self.write = self.stream.write

    def commit(self) -> None:
        if self._held is not None:
            self._held.seek(0)
            while block := self._held.read(1 << 20):
                self._stdout(block)
            self._held.close()
            self._held = None
        sys.stdout.flush()

    def discard(self) -> None:
        if self._held is not None:
            self._held.close()
            self._held = None


def target(path: str, force: bool = False, inputs: InputSet = NO_INPUTS, binary: bool = True) -> Stdout | StagedFile:
    """``-`` is standard output; anything else a file written beside its place (see StagedFile)."""
    return Stdout(inputs) if path == "-" else StagedFile(path, force, inputs, binary)


class Sink:
    """Outputs of one format, fed in the order of the images: ``add`` a part or ``fail`` an image.

    Nothing is written before the first image is done (a header, an opening bracket), so that a
    single image that fails leaves standard output empty.
    """

    def __init__(self, to: Stdout | StagedFile) -> None:
        self.to = to
        self.started = False

    def add(self, position: int, source: str, part: Any) -> None:
        self._start()
        self._add(position, source, part)

    def fail(self, position: int, source: str, message: str) -> None:
        self._start()
        self._fail(position, source, message)

    def _start(self) -> None:
        if not self.started:
            self.started = True
            self._begin()

    def _begin(self) -> None:
        pass

    def _add(self, position: int, source: str, part: Any) -> None:
        raise NotImplementedError

    def _fail(self, position: int, source: str, message: str) -> None:
        """Keep a failed image's place; an output without places (a picture) has nothing to say."""

    def close(self) -> None:
        self.to.commit()

    def discard(self) -> None:
        self.to.discard()


class JsonSink(Sink):
    """json: one document, or a list of them for a batch; jsonl: one line an image."""

    def __init__(self, to, lines: bool, batch: bool, error_format: str = TRACE_FORMAT) -> None:
        super().__init__(to)
        self.lines, self.batch, self.error_format = lines, batch, error_format
        self.count = 0

    def _begin(self) -> None:
        if self.batch and not self.lines:
            self.to.write(b"[")

    def _item(self, write_item) -> None:
        if self.batch and not self.lines:
            self.to.write(b"\n" if not self.count else b",\n")
        write_item(self.to.write)
        if self.lines or not self.batch:
            self.to.write(b"\n")
        self.count += 1

    def _add(self, position: int, source: str, part: Any) -> None:
        self._item(part.write_to)

    def _fail(self, position: int, source: str, message: str) -> None:
        record = dumps(error_record(source, message, self.error_format))
        self._item(lambda write: write(record))

    def close(self) -> None:
        if self.batch and not self.lines and self.started:
            self.to.write(b"\n]\n")
        super().close()


class CsvSink(Sink):
    """A header, then the rows each image renders; a failed image is one row naming its error."""

    def __init__(self, to, header: Sequence[str] = CSV_HEADER) -> None:
        super().__init__(to)
        self.header = tuple(header)

    def _begin(self) -> None:
        self.to.write(csv_line(self.header))

    def _add(self, position: int, source: str, part: Any) -> None:
        part.write_to(self.to.write)

    def _fail(self, position: int, source: str, message: str) -> None:
        self.to.write(csv_error_line(source, message, len(self.header)))


def unstackable(source: str, shape: tuple, other: str, other_shape: tuple, where: str, ahead: bool = False) -> CnnError:
    """The error for a stacked .npy whose image ``source`` gives ``shape`` but ``other`` gave
    ``other_shape``; ``ahead``: found from the images' headers, before the work."""
    gives, gave = ("would give", "gives") if ahead else ("gives", "gave")
    return CnnError(f"{source} {gives} an output of shape {shape} but {other} {gave} {other_shape}; one .npy stacks "
                    "outputs of one shape: use --format npz, or resize the images", source=where)


class NpySink(Sink):
    """The final array; for a batch, every image's stacked under one header (N, ...), a failed
    image's row all NaN. The header is written at the first image that succeeds; an image of
    another shape stops the run, naming both files."""

    def __init__(self, to, batch: bool, total: int = 1) -> None:
        super().__init__(to)
        self.batch, self.total = batch, total
        self.first: tuple[str, tuple[int, ...], np.dtype] | None = None
        self.waiting = 0  # failures before the first success, whose NaN rows follow the header

    def _add(self, position: int, source: str, part: ArrayPart) -> None:
        if not self.batch:
            part.write_to(self.to.write)
            return
        if self.first is None:
            self.first = (source, tuple(part.shape), part.dtype)
            write_npy_header(self.to.write, (self.total, *part.shape), part.dtype)
            for _ in range(self.waiting):
                self._nan_row()
        elif tuple(part.shape) != self.first[1]:
            first, shape, _ = self.first
            raise unstackable(source, tuple(part.shape), first, shape, self.to.source)
        part.write_data(self.to.write)

    def _fail(self, position: int, source: str, message: str) -> None:
        if self.first is None:
            self.waiting += 1
        else:
            self._nan_row()

    def _nan_row(self) -> None:
        assert self.first is not None  # called once the first array has given the shape
        _, shape, dtype = self.first
        size = int(np.prod(shape))
        block = np.full(min(size, 1 << 18), np.nan, dtype=dtype)
        for start in range(0, size, block.size):
            self.to.write(block[:min(block.size, size - start)].data.cast("B"))  # .data: memoryview(...)

    def close(self) -> None:
        if self.batch and self.first is None:  # no image gave an array: nothing to stack, no file
            self.discard()
            return
        super().close()


class NpzSink(Sink):
    """Every layer's array; for a batch keyed IMAGE/LAYER, with ``sources`` (the images in order)
    and ``errors`` (the message of each that failed, empty for the others) as string arrays."""

    def __init__(self, to, batch: bool, names: Sequence[str] = (), sources: Sequence[str] = ()) -> None:
        super().__init__(to)
        self.batch, self.names, self.sources = batch, list(names), list(sources)
        self.errors = [""] * len(self.sources)
        self.archive: zipfile.ZipFile | None = None

    def _begin(self) -> None:
        import zipfile

        # typeshed asks a file to write to for close() too, which zipfile never calls on a file it is given.
        stream = cast(IO[bytes], self.to.stream)
        self.archive = zipfile.ZipFile(stream, "w", zipfile.ZIP_STORED, allowZip64=True)  # as numpy.savez

    def _member(self, name: str, part: ArrayPart) -> None:
        assert self.archive is not None  # opened by _begin, before the first member
        with self.archive.open(name + ".npy", "w", force_zip64=True) as member:
            part.write_to(member.write)

    def _add(self, position: int, source: str, part: Layers) -> None:
        taken: set[str] = set()
        for layer, array in part.items:
            key = member_name(layer, taken)
            self._member(f"{member_name(self.names[position])}/{key}" if self.batch else key, array)

    def _fail(self, position: int, source: str, message: str) -> None:
        self.errors[position] = message

    def close(self) -> None:
        self._start()
        if self.batch:
            self._member("sources", ArrayPart(np.array(self.sources, dtype=str)))
            self._member("errors", ArrayPart(np.array(self.errors, dtype=str)))
        assert self.archive is not None  # opened by _start
        self.archive.close()
        super().close()

    def discard(self) -> None:
        if self.archive is not None:
            # Not closed, now or by its finalizer: that would write a directory making a partial
            # archive look whole (and, on a broken stream, fail again with a traceback).
            self.archive.fp = None
            self.archive = None
        super().discard()


def member_name(name: str, taken: set[str] | None = None) -> str:
    """A name as an .npz member: no path separators, no ``..``, printable, so that unzipping the
    archive writes only inside its folder; a name made distinct from those ``taken`` (updated)."""
    import re

    from ..display import shown

    safe = re.sub(r"[/\\]", "_", shown(name))
    if safe.startswith(".") or not safe:
        safe = "_" + safe
    if taken is not None:
        base, number = safe, 2
        while safe in taken:
            safe, number = f"{base}_{number}", number + 1
        taken.add(safe)
    return safe


class BytesSink(Sink):
    """One image's bytes as they are (a PNG picture)."""

    def _add(self, position: int, source: str, part: bytes) -> None:
        self.to.write(part)


class PictureFolder:
    """``-o DIR/``: one PNG per image, each written whole as its image is done."""

    def __init__(self, folder: str, names: Sequence[str], force: bool, inputs: InputSet) -> None:
        import os

        self.paths = [os.path.join(folder, f"{name}.png") for name in names]
        self.force, self.inputs = force, inputs

    def add(self, position: int, source: str, part: bytes) -> None:
        write_atomic(self.paths[position], lambda stream: stream.write(part), self.force, self.inputs)

    def fail(self, position: int, source: str, message: str) -> None:
        pass

    def close(self) -> None:
        pass

    def discard(self) -> None:
        pass


class TextSink:
    """Tables for people on stdout, as text; ``between`` goes between two images' text."""

    def __init__(self, between: str = "") -> None:
        self.between = between
        self.count = 0

    def add(self, position: int, source: str, part: str) -> None:
        sys.stdout.write(part if not self.count else self.between + part)
        self.count += 1

    def fail(self, position: int, source: str, message: str) -> None:
        pass

    def close(self) -> None:
        sys.stdout.flush()

    def discard(self) -> None:
        pass
