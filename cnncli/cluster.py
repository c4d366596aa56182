"""Running a job on many images on a Dask cluster (``--scheduler``), with the results handed back in
the order of the images, as cnncli.pool does on this machine.

The client keeps a window of images on the cluster (WINDOW, or more for a big cluster), and a
reorder buffer keyed by position: each result is emitted once, in order, then dropped, and so is
its future, which lets Dask free it on the worker. A task runs a chunk of images: one at first,
then as many as make TASK_SECONDS of work, so that Dask's few milliseconds a task stay small beside
quick images. It returns each image's Result with its parts rendered to bytes and arrays, never
the model or the maps.

Faults: Dask runs again the tasks of a worker that dies (and the results it held), so a batch loses
no image, and the buffer emits each position once. A task whose workers keep dying (Dask's
KilledWorker) is run again image by image, and then fails only the image that kills them. A file an
image's job writes on the workers (inspect --save) must be idempotent: Attempts tells a job that an
earlier run of its image may have placed files.

The model is loaded once per worker process: the job travels pickled once per batch (``Packed``)
and is unpickled once per worker, and the models it loads are kept by the core's per-process cache
(stage.once), keyed by file and limits. A WorkerPlugin would do the same through state registered
on the scheduler, which outlives a client that is killed and is set up again on every worker that
joins later; a cache keyed by the job leaves nothing behind on a shared cluster.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import threading
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterator

from . import __version__
from .errors import CnnError
from .pool import Outcome, Result, WorkerBug, guarded

if TYPE_CHECKING:
    from .io.limits import Limits
    from .pool import Describe

WINDOW = 64  # images on the cluster or waiting to be written, at most (or 4 per worker thread, if more)
MAX_CHUNK = 16  # images a task, at most
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
    distributed = _import_distributed()
    client, cluster = _connect(distributed, settings)
    futures: dict[Any, list[int]] = {}
    try:
        threads = _check_workers(client, settings)
        with getattr(job, "on_cluster", contextlib.nullcontext)():  # a job that writes files gets ready for reruns
            yield from _Batch(client, job, sources, describe, settings, read, threads, futures).results()
    finally:
        from .pool import _ignore_signals, _restore_signals

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


class _Batch:
    def __init__(self, client, job, sources: list[str], describe: Describe, settings: ClusterSettings,
                 read: Callable[[str], bytes], threads: int, futures: dict) -> None:
        import pickle
        import uuid

        self.client, self.sources, self.describe, self.settings, self.read = client, sources, describe, settings, read
        self.packed = Packed(pickle.dumps((job, describe), protocol=pickle.HIGHEST_PROTOCOL))
        self.window = max(WINDOW, 4 * threads)
        self.most = max(1, min(MAX_CHUNK, self.window // (2 * threads)))  # two tasks a thread fill the window
        self.chunk = 1  # images a task, from how long images take (the first ones: as soon as may be)
        self.token = uuid.uuid4().hex[:12]  # unique task keys: another batch on the same cluster has its own
        self.serial = 0
        self.futures = futures  # submitted, not yet back: future -> its images' positions
        self.cwd = os.getcwd()

    def results(self) -> Iterator[Result]:
        from distributed import as_completed

        count = len(self.sources)
        sent = 0  # images before this one are submitted (or done)
        again: deque[int] = deque()  # images to run again one a task (their task's workers kept dying)
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
            while sent < min(count, expected + self.window):
                size = min(self.chunk, count - sent, expected + self.window - sent)
                self._submit(list(range(sent, sent + size)), done, arrived)
                sent += size
            if expected in done:  # read here and failed (--ship-bytes): nothing to wait for
                continue
            future = next(arrived)
            positions = self.futures.pop(future)
            try:
                results, seconds = future.result()
                for result in results:
                    done[result.position] = result
                self._resize(seconds / len(positions))
                continue
            except (Exception, asyncio.CancelledError) as err:  # (CancelledError is no Exception)
                error = err
            finally:
                del future  # Dask frees the task's results on the worker
            if _killed_worker(error) and len(positions) > 1:  # find the image that kills them: one by one
                again.extend(positions)
            elif _killed_worker(error):
                position = positions[0]
                done[position] = Result(position, self.sources[position],
                                        error=f"{self.sources[position]}: the Dask workers running it kept dying "
                                              "(out of memory?); the scheduler gave up on it")
            else:
                ended[positions[0]] = _ending(error, self.settings.address)

    def _resize(self, seconds: float) -> None:
        """Images a task from here on: TASK_SECONDS of work, so that Dask's few milliseconds a task
        stay small beside it, and slow images still come back one by one."""
        self.chunk = max(1, min(self.most, int(TASK_SECONDS / max(seconds, 1e-4))))

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


# --- on the workers ---------------------------------------------------------------------------


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


def run_chunk(packed: Packed, chunk: Chunk) -> tuple[list[Result], float]:
    """A task: run each image of ``chunk`` with the packed job; each Result's parts as bytes and
    arrays, and the seconds the images took."""
    import time

    from .io.shipped import image_bytes

    job, describe = unpacked(packed)
    results = []
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
                results.append(result)
        finally:
            os.chdir(previous)
        return results, time.perf_counter() - started


def unpacked(packed: Packed) -> tuple[Any, Describe]:
    """The job and its describe function, unpickled once per worker process and batch."""
    import pickle

    key = (packed.data, packed.version)
    if key not in _JOBS:
        if packed.version != __version__:
            raise Ended(_version_line(_worker_name(), __version__, packed.version), 1)
        if len(_JOBS) >= 4:
            _JOBS.pop(next(iter(_JOBS)))
        _JOBS[key] = pickle.loads(packed.data)
    return _JOBS[key]


def portable(outcome: Outcome) -> Outcome:
    """An outcome as it can travel: renderings to bytes (they hold the image's maps and the model)."""
    from .io.parts import Layers, Rendered, Spool

    spool = Spool("", threshold=sys.maxsize)  # everything in memory: Dask sends it

    def part(value):
        if isinstance(value, Rendered):
            return spool.capture(value.render)
        if isinstance(value, Layers):
            return Layers([(name, part(item)) for name, item in value.items])
        return value  # text, bytes, and ArrayPart (an array, which Dask sends without a copy)

    return Outcome({kind: part(value) for kind, value in outcome.parts.items()}, outcome.warnings, outcome.facts)


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


# --- on the client ----------------------------------------------------------------------------


def read_input(source: str, limits: Limits) -> bytes:
    """An image's bytes, read as its job would read them: the same reader, limit and messages."""
    if source == "-":
        from .run import read_stdin

        return read_stdin(limits)
    from .errors import ImageError
    from .io.images import is_tensor_file
    from .io.reading import read_bytes

    expected = "a .npy array" if is_tensor_file(source) else "an image file"
    return read_bytes(source, kind="image", error=ImageError, expected=expected, limits=limits)


def _import_distributed():
    try:
        import distributed
    except ImportError:
        raise CnnError("runs batches on Dask's distributed scheduler, which is not installed: "
                       "pip install 'cnncli[dask]'", param="scheduler") from None
    import logging

    # Dask's own log lines (a worker restarted, a slow event loop) are not this command's messages.
    logging.getLogger("distributed").setLevel(logging.ERROR)
    return distributed


def _connect(distributed, settings: ClusterSettings):
    """A client of the scheduler at ``settings.address`` (and the LocalCluster it names), or one
    CnnError line when it cannot be reached within the connect timeout."""
    import logging

    if settings.address == LOCAL:
        # Any free port for its web server (8787 may be another cluster's); its workers' logs (a task
        # that raised: a usage error) are not this command's messages.
        cluster = distributed.LocalCluster(n_workers=settings.workers, threads_per_worker=1, processes=True,
                                           dashboard_address=":0", silence_logs=logging.CRITICAL)
        try:
            return distributed.Client(cluster, set_as_default=False), cluster
        except BaseException:
            cluster.close()
            raise
    _reach(settings.address, settings.connect_timeout)
    try:
        client = distributed.Client(settings.address, timeout=settings.connect_timeout, set_as_default=False)
    except (OSError, ValueError) as err:  # it went away since _reach
        raise _unreachable(settings, err) from None
    return client, None


def _reach(address: str, timeout: float) -> None:
    """Knock on the scheduler's door (Dask's handshake) before making a Client, which, when it cannot
    connect, takes twice its timeout more to close and then complains at exit."""
    import asyncio

    from distributed.comm import connect
    from distributed.security import Security

    async def knock() -> None:
        comm = await connect(address, timeout=timeout, **Security().get_connection_args("client"))
        await comm.close()

    settings = ClusterSettings(address, connect_timeout=timeout)
    try:
        asyncio.run(knock())
    except ValueError as err:  # not an address: no scheme it knows, no port
        raise CnnError(f"is not a Dask scheduler's address ({err}); expected e.g. tcp://host:8786, or local",
                       source=address) from None
    except Exception as err:  # refused, timed out, no such host, or not a Dask scheduler
        raise _unreachable(settings, err) from None


def _unreachable(settings: ClusterSettings, err: BaseException) -> CnnError:
    # Dask says "Timed out trying to connect"; why is in its cause: "in <TCPConnector ...>: ConnectionRefusedError: ..."
    cause = str(err.__cause__ or "") or str(err)
    detail = " ".join(cause.split(">: ", 1)[-1].split())
    if not detail or detail.startswith("Timed out trying to connect"):
        detail = "no answer"
    detail = detail if len(detail) <= 160 else detail[:160] + "..."
    return CnnError(f"cannot reach the Dask scheduler within {settings.connect_timeout:g} s (--connect-timeout): "
                    f"{detail}", source=settings.address)


def _check_workers(client, settings: ClusterSettings) -> int:
    """Wait for a worker; refuse workers whose cnncli is missing or another version (one line naming
    the first); return the number of worker threads."""

    def cnncli_version() -> str | None:  # defined in here: Dask sends it by value, so a worker without cnncli runs it
        try:
            import cnncli
        except ImportError:
            return None
        return str(getattr(cnncli, "__version__", "unknown"))

    try:
        client.wait_for_workers(1, timeout=settings.connect_timeout)
    except TimeoutError:
        raise CnnError(f"the Dask scheduler has no workers (waited {settings.connect_timeout:g} s, "
                       f"--connect-timeout); start some, e.g. dask worker {settings.address}",
                       source=settings.address) from None
    versions = client.run(cnncli_version, on_error="return")
    for worker, version in sorted(versions.items()):
        if isinstance(version, BaseException):
            raise CnnError(f"cannot ask the worker its cnncli version: {type(version).__name__}: {version}",
                           source=worker)
        if version != __version__:
            raise CnnError(_version_line(worker, version, __version__))
    return max(1, sum(client.nthreads().values()))


def _version_line(worker: str, theirs: str | None, ours: str) -> str:
    if theirs is None:
        return (f"{worker}: this Dask worker has no cnncli (this client has cnncli {ours}); "
                f"pip install cnncli=={ours} on every worker")
    return (f"{worker}: this Dask worker has cnncli {theirs}, this client cnncli {ours}; "
            f"install the same version on every worker")


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
