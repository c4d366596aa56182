"""Many images in one command: each image run on its own (in worker processes with --workers),
failures reported with their path while the batch goes on, and a progress bar on stderr. Folders
and globs are expanded by cnncli.io.paths.

A job turns one image into an Outcome holding what the command prints or writes for it; the
parent writes results in the order the images were given (cnncli.pool), so a batch prints the
same with one worker or eight.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Callable, Generator, Iterable, Iterator, Literal, cast

from ..errors import CnnError

if TYPE_CHECKING:
    from ..cluster import ClusterSettings
    from ..pool import Result


def run_all(job: Callable, sources: list[str], workers: int, fail_fast: bool,
            cluster: ClusterSettings | None = None) -> Iterator[Result]:
    """Results in the order of ``sources``; with ``fail_fast`` stop after the first failure.

    ``workers`` > 1 runs images in that many forked processes (cnncli.pool), at most one per
    image and WORKERS_PER_CORE per core; ``cluster`` runs them on a Dask cluster instead
    (cnncli.cluster). What the caller writes to stdout after each result is flushed at most ten
    times a second: a reader of the pipe sees results as they come, and a fast batch does not pay
    a system call per image. Closing the iterator stops the workers.
    """
    import time

    from ..pool import ordered_results
    from ..signals import check_stop

    # Generators (closing one stops its workers), which cnncli.pool and cluster annotate as Iterators.
    if cluster is not None:
        import functools

        from ..cluster import cluster_results, read_input

        read = functools.partial(read_input, limits=job.options.limits)  # type: ignore[attr-defined]
        results = cast("Generator[Result, None, None]", cluster_results(job, sources, describe, cluster, read))
    else:
        workers = worker_count(workers, len(sources))
        results = cast("Generator[Result, None, None]", ordered_results(job, sources, workers, describe, ship))
    bar: _Bar | Literal[False] | None = None  # False: no bar (not a terminal, one image)
    flushed = time.monotonic()
    try:
        for result in results:
            check_stop()
            if bar is None:  # after the first image, which runs before the workers are forked
                bar = _progress(len(sources)) or False
            if bar:
                bar.advance()
            yield result
            if time.monotonic() - flushed > 0.1 and sys.stdout is not None:  # None: closed, -o takes it all
                sys.stdout.flush()
                flushed = time.monotonic()
            if result.error is not None and fail_fast:
                return
    finally:
        results.close()
        if bar:
            bar.stop()


def describe(err: BaseException) -> str:
    """An image's failure as its line says it (a module function: Dask's workers get it by name)."""
    from . import _explain

    return _explain(err)[0]


def cluster_settings(scheduler: str | None, ship_bytes: bool, connect_timeout: float | None,
                     workers: int) -> ClusterSettings | None:
    """Where --scheduler sends a batch (None: this machine); the Dask options without it are refused."""
    import typer

    if scheduler is None or not scheduler.strip():
        for given, flag in ((ship_bytes, "--ship-bytes"), (connect_timeout is not None, "--connect-timeout")):
            if given:
                raise typer.BadParameter("applies to a batch on a Dask cluster; give --scheduler too", param_hint=flag)
        return None
    from ..cluster import LOCAL, ClusterSettings

    scheduler = scheduler.strip()
    if workers != 1 and scheduler != LOCAL:
        raise typer.BadParameter(f"sizes this machine's pool (or --scheduler local); the cluster at {scheduler} "
                                 "has its own workers", param_hint="--workers")
    return ClusterSettings(scheduler, ship_bytes, 5.0 if connect_timeout is None else connect_timeout,
                           workers if workers != 1 else None)


WORKERS_PER_CORE = 4


def worker_count(asked: int, images: int) -> int:
    """The workers a batch gets: as asked, but no more than its images, nor WORKERS_PER_CORE a core
    (a note says so when that lowers the number asked for)."""
    cap = WORKERS_PER_CORE * (os.cpu_count() or 1)
    if asked > cap and images > cap:
        from .output import tell

        tell(f"cnn: note: --workers {asked:,} lowered to {cap}, {WORKERS_PER_CORE} per core of this machine")
    return max(1, min(asked, images, cap))


def ship(outcome, folder: str):
    """A worker's outcome as it travels to the parent: big renderings through the spool folder."""
    from ..io.parts import Spool
    from ..pool import Outcome

    spool = Spool(folder)
    return Outcome({kind: spool.ship(part) for kind, part in outcome.parts.items()}, outcome.warnings,
                   outcome.facts)


class _Bar:
    """A Rich progress bar on stderr: images done, rate, elapsed and remaining time."""

    def __init__(self, total: int) -> None:
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                                   TimeRemainingColumn)

        from .output import stderr_console

        # redirect_stdout=False: Rich would otherwise route what the command prints on stdout (a
        # pipe, a file) through the bar's console, onto the terminal.
        self._progress = Progress(TextColumn("images"), BarColumn(), MofNCompleteColumn(),
                                  TextColumn("{task.fields[rate]}"), TextColumn("elapsed"), TimeElapsedColumn(),
                                  TextColumn("left"), TimeRemainingColumn(), console=stderr_console(),
                                  transient=True, redirect_stdout=False, redirect_stderr=False)
        self._task = self._progress.add_task("images", total=total, rate="")
        self._progress.start()
        from . import output

        output.above_bar = lambda line: self._progress.console.print(line, markup=False, highlight=False,
                                                                     soft_wrap=True)

    def advance(self) -> None:
        task = self._progress.tasks[0]
        speed = task.speed
        self._progress.update(self._task, advance=1, rate=f"{speed:.1f}/s" if speed else "")

    def stop(self) -> None:
        from . import output

        output.above_bar = None
        self._progress.stop()


def _progress(total: int) -> _Bar | None:
    """A bar for a batch when stderr is a terminal; nothing in a pipe, a log or a test."""
    if total < 2 or sys.stderr is None or not sys.stderr.isatty():
        return None
    return _Bar(total)


def unique_names(sources: Iterable[str]) -> list[str]:
    """A short, distinct folder or file name for each image, by position: its stem, with the parent
    folder's name (and then a number) added where two images would share one; an image given twice
    gets two names."""
    sources = list(sources)
    # os.path rather than pathlib: a batch of thousands of images waits for this before it starts.
    stems = ["stdin" if source == "-" else os.path.splitext(os.path.basename(source))[0] or "image"
             for source in sources]
    folders: dict[str, set[str]] = {}
    for source, stem in zip(sources, stems):
        folders.setdefault(stem, set()).add(os.path.dirname(source))
    names: list[str] = []
    taken: set[str] = set()
    for source, stem in zip(sources, stems):
        name = stem
        if len(folders[stem]) > 1 and source != "-":  # the same name in different folders
            parent = os.path.basename(os.path.dirname(source))
            name = f"{parent}_{stem}" if parent else stem
        base, number = name, 2
        while name in taken:
            name, number = f"{base}_{number}", number + 1
        taken.add(name)
        names.append(name)
    return names


def count(number: int, noun: str) -> str:
    """"1 image", "40 images"."""
    return f"{number:,} {noun}" + ("" if number == 1 else "s")


def failure(failed: int, total: int, fail_fast: bool) -> CnnError:
    """The error a batch ends with when images failed (each was reported in its own line)."""
    how = "stopped at the first failure (--fail-fast)" if fail_fast else "each is named above"
    return CnnError(f"{failed} of {count(total, 'image')} failed; {how}", source="batch")
