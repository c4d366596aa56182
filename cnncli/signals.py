"""Ctrl-C and SIGTERM as exceptions, from the first instant of a run, so that temporary files are
removed on the way out and the run ends with one line and 130 or 143.

An exception raised by a signal handler lands wherever the program is. If that place is an
object's finalizer, Python prints "Exception ignored" and goes on; so the signal is also
remembered (``stop_requested``), that message is not printed, a batch checks after each image
(``check_stop``), and the exit code tells, however the command ended.
"""

from __future__ import annotations

import signal
import sys


class Terminated(BaseException):
    """SIGTERM, raised like Ctrl-C's KeyboardInterrupt."""


stop_requested: type[BaseException] | None = None


def install() -> None:
    """Handle SIGINT and SIGTERM in this process from now on (call it before the heavy imports)."""

    def stop(exception: type[BaseException]):
        def handler(signum, frame):
            global stop_requested
            stop_requested = exception
            raise exception
        return handler

    def unraisable(info, default=sys.unraisablehook):
        if not isinstance(info.exc_value, (Terminated, KeyboardInterrupt)):
            default(info)

    sys.unraisablehook = unraisable
    signal.signal(signal.SIGTERM, stop(Terminated))
    signal.signal(signal.SIGINT, stop(KeyboardInterrupt))


def check_stop() -> None:
    """Raise the Ctrl-C or SIGTERM that arrived, if its exception was lost in a finalizer."""
    if stop_requested is not None:
        raise stop_requested


def console() -> None:
    """The `cnn` console script: signals are handled before the command line is even imported, so
    that Ctrl-C in the first instant is one line, not an import's traceback."""
    install()
    try:
        from .cli import run_main
    except (KeyboardInterrupt, Terminated) as stop:
        interrupted = isinstance(stop, KeyboardInterrupt)
        if sys.stderr is not None:
            print(f"cnn: {'interrupted' if interrupted else 'terminated'}", file=sys.stderr)
        sys.exit(130 if interrupted else 143)
    run_main()
