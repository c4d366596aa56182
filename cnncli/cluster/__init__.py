"""Running a job on many images on a Dask cluster (``--scheduler``), with the results handed back in
the order of the images, as cnncli.pool does on this machine.

The client keeps a window of images on the cluster (WINDOW, 64, or 4 a worker thread; wider, up
to MAX_WINDOW, while that many images' results fit in WINDOW_BYTES), and a reorder buffer keyed by
position: each result is emitted once, in order, then dropped, and so is its future, which lets
Dask free it on the worker. A task runs a chunk of images: one at first, then as many as make
TASK_SECONDS of work, so that Dask's few milliseconds a task stay small beside quick images. It
returns each image's Result with its parts rendered to bytes and arrays, never the model or the
maps (cnncli.cluster.tasks, what runs on the workers).

Faults: Dask runs again the tasks of a worker that dies (and the results it held), so a batch loses
no image, and the buffer emits each position once. A task whose workers keep dying (Dask's
KilledWorker) is run again image by image; an image whose own task is given up on is tried once
more, alone, before it fails (Dask also blames the images that only shared the dying worker). A
file an image's job writes on the workers (inspect --save) must be idempotent: tasks.Attempts tells
a job that an earlier run of its image may have placed files.

The model is loaded once per worker process: the job travels pickled once per batch
(``tasks.Packed``) and is unpickled once per worker, and the models it loads are kept by the core's
per-process cache (stage.once), keyed by file and limits. A WorkerPlugin would do the same through
state registered on the scheduler, which outlives a client that is killed and is set up again on
every worker that joins later; a cache keyed by the job leaves nothing behind on a shared cluster.

Nothing here imports Dask at module level: cnncli.cluster.connect does, when a batch starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterator

from .. import __version__
from ..errors import CnnError
from ..pool import Outcome, Result, WorkerBug
from .tasks import Chunk, Ended, Packed, run_chunk

if TYPE_CHECKING:
    from ..io.limits import Limits
    from ..pool import Describe

# Images out on the cluster or waiting to be written, at most: WINDOW (or 4 a worker thread, if more),
# and up to MAX_WINDOW while the results of that many stay under WINDOW_BYTES (by the largest so far).
WINDOW, MAX_WINDOW, WINDOW_BYTES = 64, 512, 64 << 20
MAX_CHUNK = 64  # images a task, at most
TASK_SECONDS = 0.2  # the work a task is given, once the first images tell how long one takes
LOCAL = "local"


@dataclass(frozen=True)
class ClusterSettings:
    """Where a batch runs: a scheduler's address, or ``local`` for a LocalCluster of ``workers``
    single-threaded processes (None: one per core) started for the batch."""

    address: str
    ship_bytes: bool = False  # read images here and send their bytes (workers cannot read the paths)
    connect_timeout: float = 5.0
    workers: int | None = None


def cluster_results(job: Callable[[int, str], Outcome], sources: list[str], describe: Describe,
                    settings: ClusterSettings, read: Callable[[str], bytes]) -> Iterator[Result]:
    """Results in the order of ``sources``, run on the cluster ``settings`` names.

    ``read(source)`` gives an image's bytes here, for --ship-bytes and for stdin (``-``), which a
    worker cannot read. Close the iterator (or let it finish) to stop: the cluster's tasks are
    cancelled and the client (and a local cluster) closed.
    """
    import os

    from . import connect

    environ = dict(os.environ)  # a LocalCluster's nannies set their workers' variables in ours: undone at the end
    try:
        client, cluster = connect.client_for(settings)
    except BaseException:
        _restore_environ(environ)
        raise
    futures: dict[Any, list[int]] = {}
    try:
        threads = connect.check_workers(client, settings)
        with getattr(job, "on_cluster", contextlib.nullcontext)():  # a job that writes files gets ready for reruns
            yield from _Batch(client, job, sources, describe, settings, read, threads, futures).results()
    finally:
        from ..pool import _ignore_signals, _restore_signals

        previous = _ignore_signals()  # a second Ctrl-C must not leave the cluster running our tasks
        try:
            if futures:
                client.cancel(list(futures), force=True)
                futures.clear()
            client.close()
            if cluster is not None:
                cluster.close()
        except Exception:  # a client that lost its scheduler may fail to close: nothing to undo
            pass
        finally:
            _restore_signals(previous)
            _restore_environ(environ)


def _restore_environ(environ: dict[str, str]) -> None:
    """Put back the environment a LocalCluster changed (OMP_NUM_THREADS=1, MALLOC_TRIM_THRESHOLD_, ...
    for its workers), which every later child of this process would inherit."""
    import os

    if os.environ != environ:
        os.environ.clear()
        os.environ.update(environ)


class _Batch:
    def __init__(self, client, job, sources: list[str], describe: Describe, settings: ClusterSettings,
                 read: Callable[[str], bytes], threads: int, futures: dict) -> None:
        import pickle
        import uuid

        self.client, self.sources, self.describe, self.settings, self.read = client, sources, describe, settings, read
        self.packed = Packed(pickle.dumps((job, describe), protocol=pickle.HIGHEST_PROTOCOL))
        self.least = max(WINDOW, 4 * threads)
        self.window = self.least
        self.chunk = 0  # images a task, from how long images take (0: not known yet, one at a time)
        self.threads = threads
        self.largest = 0  # the most bytes an image's results held so far
        self.token = uuid.uuid4().hex[:12]  # unique task keys: another batch on the same cluster has its own
        self.serial = 0
        self.futures = futures  # submitted, not yet back: future -> its images' positions
        self.cwd = os.getcwd()

    def results(self) -> Iterator[Result]:
        from distributed import as_completed

        count = len(self.sources)
        sent = 0  # images before this one are submitted (or done)
        again: deque[int] = deque()  # images to run again one a task (their task's workers kept dying)
        suspects: deque[int] = deque()  # images whose own task was given up on: tried once more, one at a time
        tried: set[int] = set()
        suspect: int | None = None  # the suspect out on the cluster
        done: dict[int, Result] = {}
        ended: dict[int, BaseException] = {}  # an error that ends the batch, raised at its image's turn
        # Results are fetched here, one task at a time, not by as_completed in the background: a fetch
        # under way when a Ctrl-C closes the client would print Dask's complaint about it.
        arrived = as_completed(loop=self.client.loop)
        expected = 0
        while expected < count:
            while expected in done:
                yield done.pop(expected)
                expected += 1
            if expected in ended:
                raise ended.pop(expected)
            if expected >= count:
                break
            while again:
                self._submit([again.popleft()], done, arrived)
            if suspects and suspect is None:
                suspect = suspects.popleft()
                tried.add(suspect)
                self._submit([suspect], done, arrived)
            # Whole chunks only (a window freed image by image would cut them small), and until the
            # first task tells how long an image takes, one image for each worker thread.
            while sent < count and (self.chunk > 0 or len(self.futures) < self.threads):
                size = max(1, min(self.chunk, count - sent))
                if sent + size > expected + self.window:
                    break
                self._submit(list(range(sent, sent + size)), done, arrived)
                sent += size
            if expected in done:  # read here and failed (--ship-bytes): nothing to wait for
                continue
            future = next(arrived)
            positions = self.futures.pop(future)
            if suspect in positions:
                suspect = None
            try:
                results, seconds, size = future.result()
                for result in results:
                    done[result.position] = result
                self._resize(seconds / len(positions), size // len(positions))
                continue
            except (Exception, asyncio.CancelledError) as err:  # (CancelledError is no Exception)
                error = err
            finally:
                del future  # Dask frees the task's results on the worker
            if _killed_worker(error) and len(positions) > 1:  # find the image that kills them: one by one
                again.extend(positions)
            elif _killed_worker(error) and positions[0] not in tried:  # it, or only its neighbour on the worker?
                suspects.append(positions[0])
            elif _killed_worker(error):
                position = positions[0]
                done[position] = Result(position, self.sources[position],
                                        error=f"{self.sources[position]}: the Dask workers running it kept dying "
                                              "(out of memory?); the scheduler gave up on it")
            else:
                ended[positions[0]] = _ending(error, self.settings.address)

    def _resize(self, seconds: float, size: int) -> None:
        """The window and the images a task from here on, from what an image took (``seconds``, and
        ``size`` bytes of results): the window as wide as the bytes allow; a task TASK_SECONDS of
        work, so that Dask's few milliseconds a task stay small beside it, and slow images still
        come back one by one; two tasks a thread at most fill the window, so that each has a next one."""
        self.largest = max(self.largest, size)
        self.window = max(self.least, min(MAX_WINDOW, WINDOW_BYTES // max(self.largest, 1)))
        most = max(1, min(MAX_CHUNK, self.window // (2 * self.threads)))
        self.chunk = max(1, min(most, int(TASK_SECONDS / max(seconds, 1e-4))))

    def _submit(self, positions: list[int], done: dict[int, Result], arrived) -> None:
        items = []
        for position in positions:
            source = self.sources[position]
            data = None
            if self.settings.ship_bytes or source == "-":
                try:
                    data = self.read(source)
                except (CnnError, OSError, MemoryError) as err:  # as the worker would have said it
                    done[position] = Result(position, source, error=self.describe(err))
                    continue
            items.append((position, source, data))
        if not items:
            return
        self.serial += 1
        future = self.client.submit(run_chunk, self.packed, Chunk(items, self.cwd), pure=False,
                                    key=f"cnn-{self.token}-{self.serial}")
        self.futures[future] = [position for position, _, _ in items]
        arrived.add(future)


def read_input(source: str, limits: Limits) -> bytes:
    """An image's bytes, read as its job would read them: the same reader, limit and messages."""
    if source == "-":
        from ..run import read_stdin

        return read_stdin(limits)
    from ..errors import ImageError
    from ..io.images import is_tensor_file
    from ..io.reading import read_bytes

    expected = "a .npy array" if is_tensor_file(source) else "an image file"
    return read_bytes(source, kind="image", error=ImageError, expected=expected, limits=limits)


def _killed_worker(error: BaseException) -> bool:
    return type(error).__name__ == "KilledWorker"


def _ending(error: BaseException, address: str) -> BaseException:
    """What a task's error does to the batch: ours pass as they are, Dask's become one line."""
    if isinstance(error, (Ended, WorkerBug, CnnError)):
        return error
    if type(error).__name__ in ("CancelledError", "FutureCancelledError"):
        return CnnError("cancelled the batch's tasks (the scheduler restarted, or the connection to it was lost)",
                        source=address)
    if isinstance(error, ImportError):  # a worker that joined later, without cnncli
        return CnnError(f"a Dask worker cannot run cnn's tasks: {error}; install cnncli {__version__} on every "
                        "worker", source=address)
    return WorkerBug(f"{type(error).__name__}: {error}", "")
