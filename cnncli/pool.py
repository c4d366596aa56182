"""Running a job on many images, in this process or in worker processes forked from it, with the
results handed back in the order of the images.

A job turns one image into an Outcome: its rendered outputs (``parts``), the warnings to print and
a few facts for the closing message. An image whose job raises a CnnError (or an OS or memory
error) becomes a Result holding its error line, and the batch goes on.

Workers are plain forked processes, each fed images one at a time through its own pipe, a few
ahead; the parent keeps a bounded window of results to reorder. A worker's big outputs come back
through files in a spool folder rather than in memory. A worker that dies (the OOM killer's
SIGKILL) fails the image it was running and is replaced; its other images run elsewhere. Stopping
early (Ctrl-C, SIGTERM, --fail-fast, a closed pipe) stops every worker and removes the spool.
"""

from __future__ import annotations

import os
import signal
import sys
from collections import deque
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator

from .errors import CnnError

if TYPE_CHECKING:  # imported when a batch runs, not at every start-up
    import selectors

Describe = Callable[[BaseException], str]
AHEAD = 2  # images sent to a worker before it finishes the one it is running
MAX_REPLACEMENTS = 8  # workers that die beyond the first few mean something is wrong with all of them
STOP_SECONDS = 2.0  # how long stopped workers get to remove their temporary files


class Outcome:
    """What a job made of one image: ``parts`` by output kind, ``warnings`` and ``facts``."""

    def __init__(self, parts: dict[str, Any], warnings: Iterable[str] = (), facts: dict[str, Any] | None = None):
        self.parts = parts
        self.warnings = list(warnings)
        self.facts = facts or {}

    def release(self) -> None:
        for part in self.parts.values():
            if hasattr(part, "release"):
                part.release()


class Result:
    """One image's Outcome, or its error line, by its position in the command's list of images."""

    __slots__ = ("position", "source", "outcome", "error")

    def __init__(self, position: int, source: str, outcome: Outcome | None = None, error: str | None = None) -> None:
        self.position, self.source, self.outcome, self.error = position, source, outcome, error


class WorkerBug(Exception):
    """A job raised something other than a user's error in a worker: a bug, reported as one."""

    def __init__(self, summary: str, details: str) -> None:
        super().__init__(summary)
        self.details = details  # the worker's traceback, for --debug

    def __reduce__(self):  # it travels from the worker by pickle, with its details
        return (WorkerBug, (self.args[0], self.details))


def guarded(job: Callable[[int, str], Outcome], position: int, source: str, describe: Describe) -> Result:
    """``job(position, source)``; a CnnError, OSError or MemoryError becomes the result's error line.

    A usage error, Ctrl-C and bugs are not about this image: they pass through and end the batch.
    """
    try:
        return Result(position, source, job(position, source))
    except (CnnError, OSError, MemoryError) as err:
        return Result(position, source, error=describe(err))


def ordered_results(job: Callable[[int, str], Outcome], sources: list[str], workers: int, describe: Describe,
                    ship: Callable[[Outcome, str], Outcome] | None = None) -> Iterator[Result]:
    """Results in the order of ``sources``. With ``workers`` > 1, the first image runs here (what it
    loads, forked workers then share) and the rest in the workers; ``ship(outcome, spool_folder)``
    turns a worker's outcome into one that can travel (see cnncli.io.parts.Spool).

    Close the iterator (or let it finish) to stop: workers are stopped and waited for.
    """
    if workers <= 1 or len(sources) < 3 or ship is None:
        for position, source in enumerate(sources):
            yield guarded(job, position, source, describe)
        return
    yield guarded(job, 0, sources[0], describe)
    pool = _Pool(job, describe, ship, workers)
    try:
        yield from pool.results(list(enumerate(sources))[1:])
    finally:
        pool.stop()


class _Worker:
    def __init__(self, pid: int, conn) -> None:
        self.pid, self.conn = pid, conn
        self.running: deque[tuple[int, str]] = deque()  # sent, not yet answered, in order


class _Stop(BaseException):
    """SIGTERM in a worker: unwind (temporary files are removed on the way), then exit quietly."""


class _Pool:
    def __init__(self, job, describe: Describe, ship, size: int) -> None:
        self.job, self.describe, self.ship = job, describe, ship
        self.folder = _spool_folder()
        self.workers: list[_Worker] = []
        self.selector: selectors.BaseSelector | None = None  # while results() runs: the workers' pipes, ready to read
        self.replaced = 0
        self.finished = False
        try:
            for _ in range(size):
                self.workers.append(self._start())
        except BaseException:
            self.stop()
            raise

    def _start(self) -> _Worker:
        from multiprocessing.connection import Pipe

        ours, theirs = Pipe()
        for stream in (sys.stdout, sys.stderr):  # a child must not inherit unwritten text (None: closed)
            if stream is not None:
                stream.flush()
        pid = os.fork()
        if pid == 0:  # the worker
            code = 0
            try:
                ours.close()
                for other in self.workers:
                    other.conn.close()  # or a sibling's death would never reach the parent as EOF
                code = _serve(self.job, self.describe, self.ship, self.folder, theirs)
            finally:
                os._exit(code)
        theirs.close()
        worker = _Worker(pid, ours)
        if self.selector is not None:  # a replacement during a batch: watched with the others
            import selectors

            self.selector.register(ours, selectors.EVENT_READ, worker)
        return worker

    def results(self, items: list[tuple[int, str]]) -> Iterator[Result]:
        import selectors

        pending = deque(items)
        done: dict[int, Result] = {}
        expected = items[0][0] if items else 0
        end = expected + len(items)
        window = 2 * AHEAD * len(self.workers)  # results held ahead of the one awaited, at most
        with selectors.DefaultSelector() as self.selector:  # one for the batch: cheaper than a wait() each time
            for worker in self.workers:
                self.selector.register(worker.conn, selectors.EVENT_READ, worker)
            while expected < end:
                # Emit first, then send: the window moves with what was emitted. (Sending first stalled
                # the batch when the awaited result came back last: the window it filled had moved on.)
                while expected in done:
                    yield done.pop(expected)
                    expected += 1
                if expected >= end:
                    break
                for worker in list(self.workers):
                    while len(worker.running) < AHEAD and pending and pending[0][0] < expected + window:
                        item = pending.popleft()
                        try:
                            worker.conn.send(item)
                        except OSError:  # it died before taking this one (EPIPE): replace it, this one waits
                            pending.appendleft(item)
                            self._replace(worker, pending, done)
                            break
                        worker.running.append(item)
                if expected in done:  # a worker that died on a send failed the awaited image just now
                    continue
                for key, _ in self.selector.select():
                    worker = key.data
                    try:
                        message = worker.conn.recv()
                    except (EOFError, OSError):
                        self._replace(worker, pending, done)
                        continue
                    if isinstance(message, WorkerBug):
                        raise message
                    worker.running.popleft()
                    done[message.position] = message
        self.selector = None
        self.finished = True

    def _replace(self, worker: _Worker, pending: deque, done: dict[int, Result]) -> None:
        """A worker died: the image it was running fails, naming how; its others go back in line."""
        _, status = os.waitpid(worker.pid, 0)
        if self.selector is not None:
            self.selector.unregister(worker.conn)
        worker.conn.close()
        self.workers.remove(worker)
        how = _death(status)
        if worker.running:
            position, source = worker.running.popleft()
            hint = " (out of memory?)" if "SIGKILL" in how else ""
            done[position] = Result(position, source, error=f"{source}: the worker process running it {how}{hint}")
            pending.extendleft(reversed(worker.running))
        self.replaced += 1
        if self.replaced > MAX_REPLACEMENTS + len(self.workers):
            raise CnnError(f"worker processes keep dying (the last {how}); stopped", source="batch")
        self.workers.append(self._start())

    def stop(self) -> None:
        """Stop every worker: idle ones finish at once; busy ones (an early stop) are told to stop,
        then killed if they take longer than STOP_SECONDS; then the spool folder goes."""
        import shutil
        import time

        previous = _ignore_signals()  # a second Ctrl-C must not cut this short
        try:
            for worker in self.workers:
                try:
                    if self.finished:
                        worker.conn.send(None)
                    else:
                        os.kill(worker.pid, signal.SIGTERM)
                except OSError:
                    pass
            deadline = time.monotonic() + STOP_SECONDS
            alive = {worker.pid for worker in self.workers}
            while alive and time.monotonic() < deadline:
                for pid in list(alive):
                    if _reaped(pid):
                        alive.discard(pid)
                time.sleep(0.01)
            for pid in alive:
                try:
                    os.kill(pid, signal.SIGKILL)
                    os.waitpid(pid, 0)
                except OSError:
                    pass
            for worker in self.workers:
                worker.conn.close()
            self.workers = []
            shutil.rmtree(self.folder, ignore_errors=True)
        finally:
            _restore_signals(previous)


SPOOL_PREFIX = "cnn-spool-"


def _spool_folder() -> str:
    """A new folder for the workers' big results, named after this process; folders left by runs
    that were killed (SIGKILL leaves no chance to clean) are removed on the way."""
    import shutil
    import tempfile

    root = tempfile.gettempdir()
    try:
        for entry in os.scandir(root):
            if entry.name.startswith(SPOOL_PREFIX) and not _alive(entry.name[len(SPOOL_PREFIX):].split("-")[0]):
                shutil.rmtree(entry.path, ignore_errors=True)
        return tempfile.mkdtemp(prefix=f"{SPOOL_PREFIX}{os.getpid()}-", dir=root)
    except OSError as err:
        raise CnnError(f"cannot make a folder for the workers' results: {err.strerror or err} (TMPDIR chooses "
                       "where)", source=root) from None


def _alive(pid: str) -> bool:
    if not pid.isdigit():
        return True  # not a name this code makes: leave it alone
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's process
        return True
    return True


def _serve(job, describe: Describe, ship, folder: str, conn) -> int:
    """A worker's life: run each image the parent sends, send back its result, until told to stop."""

    stopping = []

    def stop(signum, frame):
        stopping.append(signum)
        raise _Stop

    def unraisable(info, default=sys.unraisablehook):  # _Stop raised inside a finalizer is lost there
        if not isinstance(info.exc_value, _Stop):
            default(info)

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    signal.signal(signal.SIGTERM, stop)
    sys.unraisablehook = unraisable
    try:
        while not stopping:
            item = conn.recv()
            if item is None:
                return 0
            position, source = item
            result = guarded(job, position, source, describe)
            if result.outcome is not None:
                try:
                    result.outcome = ship(result.outcome, folder)
                except OSError as err:  # the spool folder's disk is full: this image fails, saying where
                    result = Result(result.position, result.source,
                                    error=f"{result.source}: cannot pass its output on through {folder}: "
                                          f"{err.strerror or err} (TMPDIR chooses where)")
            if stopping:  # a SIGTERM that a finalizer swallowed: stop now, as it asked
                return 0
            conn.send(result)
        return 0
    except (_Stop, EOFError, BrokenPipeError, ConnectionResetError):
        return 0  # told to stop, or the parent is gone
    except BaseException as err:  # noqa: B036  (a bug: the parent reports it as one)
        import traceback

        try:
            conn.send(WorkerBug(f"{type(err).__name__}: {err}", traceback.format_exc()))
        except BaseException:  # noqa: B036
            pass
        return 1


def _death(status: int) -> str:
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        try:
            name = signal.Signals(number).name
        except ValueError:
            name = f"signal {number}"
        return f"was killed by {name}"
    return f"ended with exit code {os.WEXITSTATUS(status)}"


def _reaped(pid: int) -> bool:
    try:
        return os.waitpid(pid, os.WNOHANG)[0] == pid
    except ChildProcessError:
        return True


def _ignore_signals() -> dict:
    previous = {}
    for number in (signal.SIGINT, signal.SIGTERM):
        try:
            previous[number] = signal.signal(number, signal.SIG_IGN)
        except ValueError:  # not the main thread
            pass
    return previous


def _restore_signals(previous: dict) -> None:
    for number, handler in previous.items():
        signal.signal(number, handler)
