"""What a cluster's workers run for a batch (cnncli.cluster): a chunk of images with the job the
client packed, each Result made ready to travel; and the marks that tell a job an image ran before.

Everything here is pickled by reference, so the workers need the same cnncli as the client (the
client checks it before a batch; ``unpacked`` checks it again for workers that join later).
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from typing import TYPE_CHECKING, Any, Iterator

from .. import __version__
from ..pool import Outcome, Result, WorkerBug, guarded

if TYPE_CHECKING:
    from ..pool import Describe


class Packed:
    """A job pickled once on the client, with the cnncli version that pickled it: workers unpickle it
    once each (``unpacked``) and refuse it if their own cnncli differs."""

    __slots__ = ("data", "version")

    def __init__(self, data: bytes, version: str = __version__) -> None:
        self.data, self.version = data, version

    def __reduce__(self):
        return (Packed, (self.data, self.version))


class Chunk:
    """A task's images: (position, source, bytes or None), and the client's working directory,
    against which the workers resolve relative paths (shared storage: the same paths everywhere)."""

    __slots__ = ("items", "cwd")

    def __init__(self, items: list[tuple[int, str, bytes | None]], cwd: str) -> None:
        self.items, self.cwd = items, cwd

    def __reduce__(self):
        return (Chunk, (self.items, self.cwd))


class Ended(Exception):
    """An error that ends the batch, as the worker's CLI worded it: its line and exit code (a usage
    error, or another cnncli on the worker). The CLI reports it like Click's usage errors."""

    def __init__(self, line: str, exit_code: int) -> None:
        super().__init__(line)
        self.line, self.exit_code = line, exit_code

    def format_message(self) -> str:
        return self.line

    def __reduce__(self):
        return (Ended, (self.line, self.exit_code))


_LOCK = threading.Lock()  # one image at a time per process, as the memory limits assume
_JOBS: dict[tuple[bytes, str], Any] = {}


def run_chunk(packed: Packed, chunk: Chunk) -> tuple[list[Result], float, int]:
    """A task: run each image of ``chunk`` with the packed job; each Result's parts as bytes and
    arrays, the seconds the images took and the bytes their parts hold."""
    import time

    from ..io.shipped import image_bytes

    job, describe = unpacked(packed)
    results = []
    size = 0
    with _LOCK:
        started = time.perf_counter()
        previous = os.getcwd()
        try:
            os.chdir(chunk.cwd)
        except OSError:
            pass  # not here: relative paths fail each image, naming them; absolute ones work
        try:
            for position, source, data in chunk.items:
                try:
                    if data is None:
                        result = guarded(job, position, source, describe)
                    else:
                        with image_bytes(source, data):
                            result = guarded(job, position, source, describe)
                except Exception as err:  # a usage error or a bug: the batch ends, saying which
                    raise _travelling(err) from None
                if result.outcome is not None:
                    result.outcome = portable(result.outcome)
                    size += sum(_bytes(part) for part in result.outcome.parts.values())
                results.append(result)
        finally:
            os.chdir(previous)
        return results, time.perf_counter() - started, size


def unpacked(packed: Packed) -> tuple[Any, Describe]:
    """The job and its describe function, unpickled once per worker process and batch."""
    import pickle

    key = (packed.data, packed.version)
    if key not in _JOBS:
        if packed.version != __version__:
            raise Ended(version_line(_worker_name(), __version__, packed.version), 1)
        if len(_JOBS) >= 4:
            _JOBS.pop(next(iter(_JOBS)))
        _JOBS[key] = pickle.loads(packed.data)
    return _JOBS[key]


def portable(outcome: Outcome) -> Outcome:
    """An outcome as it can travel: renderings to bytes (they hold the image's maps and the model)."""
    from ..io.parts import Layers, Rendered, Spool

    spool = Spool("", threshold=sys.maxsize)  # everything in memory: Dask sends it

    def part(value):
        if isinstance(value, Rendered):
            return spool.capture(value.render)
        if isinstance(value, Layers):
            return Layers([(name, part(item)) for name, item in value.items])
        return value  # text, bytes, and ArrayPart (an array, which Dask sends without a copy)

    return Outcome({kind: part(value) for kind, value in outcome.parts.items()}, outcome.warnings, outcome.facts)


def _bytes(part: Any) -> int:
    """About how much memory a portable part holds."""
    from ..io.parts import ArrayPart, Layers, Stored

    if isinstance(part, Layers):
        return sum(_bytes(item) for _, item in part.items)
    if isinstance(part, ArrayPart):
        return int(part.array.nbytes)
    if isinstance(part, Stored):
        return len(part.data or b"")
    return len(part) if isinstance(part, (str, bytes)) else 0


def _travelling(err: Exception) -> Exception:
    if hasattr(err, "exit_code") and hasattr(err, "format_message"):  # Click's usage error
        return Ended(err.format_message(), err.exit_code)
    if isinstance(err, (Ended, WorkerBug)):
        return err
    import traceback

    return WorkerBug(f"{type(err).__name__}: {err}", traceback.format_exc())


def _worker_name() -> str:
    try:
        from distributed import get_worker

        return get_worker().address
    except (ImportError, ValueError):
        return "a Dask worker"


class Attempts:
    """Which images of a cluster batch a worker started before, by a marker file per image in
    ``folder`` (on the storage the workers write to; the client makes it and removes it after).

    Dask runs an image again when its worker dies, even after its files were placed (a result held
    by a dead worker is computed again): the second run may replace what the first placed.
    """

    def __init__(self, folder: str) -> None:
        self.folder = folder

    def first(self, position: int) -> bool:
        """Whether this is the first run of the image at ``position`` (and mark it run)."""
        try:
            os.close(os.open(os.path.join(self.folder, str(position)), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        except FileExistsError:
            return False
        except OSError:  # the folder is gone (the batch ended) or cannot be written: nothing to tell
            pass
        return True

    def forget(self, position: int) -> None:
        """The image's run placed nothing (it was refused): a next run must be refused alike."""
        try:
            os.unlink(os.path.join(self.folder, str(position)))
        except OSError:
            pass


@contextlib.contextmanager
def attempts_beside(folder: str) -> Iterator[Attempts | None]:
    """Attempts for a batch, in a hidden folder beside ``folder`` (an image's folder: in the folder
    images are saved to), removed after the batch; None when it cannot be made from here."""
    import shutil
    import uuid

    parent = os.path.dirname(os.path.abspath(folder))
    existed = os.path.isdir(parent)
    marks = os.path.join(parent, f".cnn-attempts-{uuid.uuid4().hex[:12]}")
    try:
        os.makedirs(marks)
    except OSError:
        yield None
        return
    try:
        yield Attempts(marks)
    finally:
        shutil.rmtree(marks, ignore_errors=True)
        if not existed:
            try:
                os.rmdir(parent)  # made for the marks alone: no image was saved
            except OSError:
                pass



def version_line(worker: str, theirs: str | None, ours: str) -> str:
    if theirs is None:
        return (f"{worker}: this Dask worker has no cnncli (this client has cnncli {ours}); "
                f"pip install cnncli=={ours} on every worker")
    return (f"{worker}: this Dask worker has cnncli {theirs}, this client cnncli {ours}; "
            f"install the same version on every worker")


