"""The `cnn` command line: Typer commands that parse options, call the core and render results.

``main`` is the one place where errors become exit codes: a CnnError (bad data, a failed run) is
one line on stderr and exit 1; a usage error is one line and exit 2; Ctrl-C is exit 130.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Annotated, Any, Optional, Sequence, cast

import typer

from .. import __version__
from ..errors import CnnError
from .helptext import PanelledGroup

if TYPE_CHECKING:
    from typer._click.exceptions import NoArgsIsHelpError
    from typer.models import CommandInfo

_APP_SETTINGS: dict[str, Any] = dict(
    cls=PanelledGroup,
    name="cnn",
    help="Run convolutional-network layers on images and see every intermediate feature map.\n\n"
         "Example: cnn run sample_images/seed_5x5.png --kernel vertical_edge",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app = typer.Typer(**_APP_SETTINGS)


def _version(value: bool) -> None:
    if value:
        print(f"cnn {__version__}")
        raise typer.Exit()


_debug = False  # set by --debug: errors show their traceback too


def _set_debug(value: bool) -> None:
    global _debug
    _debug = _debug or value


@app.callback()
def _root(
    version: Annotated[Optional[bool], typer.Option("--version", callback=_version, is_eager=True,
                                                    help="Print the version and exit.")] = None,
    debug: Annotated[bool, typer.Option("--debug", callback=_set_debug, is_eager=True,
                                        help="Show the traceback of an error (also CNN_DEBUG=1).")] = False,
) -> None:
    """Run convolutional-network layers on images and see every intermediate feature map."""


from . import inspect as _inspect  # noqa: E402,F401  (commands register themselves on `app`)
from . import explain as _explain_command  # noqa: E402,F401
from . import kernels as _kernels  # noqa: E402,F401
from . import models as _models  # noqa: E402,F401
from . import check as _check  # noqa: E402,F401
from . import run as _run  # noqa: E402,F401
from . import filters as _filters  # noqa: E402,F401


from ..pool import WorkerBug  # noqa: E402  (a bug in a worker process)
from ..signals import Terminated  # noqa: E402  (SIGTERM, raised like Ctrl-C)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; return the exit code (the console script passes it to sys.exit).

    Every failure is one line on stderr: ``cnn: SOURCE: what is wrong``. Exit 1 for bad data, a
    limit or a failed write; 2 for bad usage; 130 for Ctrl-C; 143 for SIGTERM. A reader that
    leaves a pipe early is no error to report: exit 1, quietly.
    """
    global _debug
    _debug = os.environ.get("CNN_DEBUG", "") not in ("", "0")
    _drop_unusable_sizes()
    _warnings_as_lines()
    try:
        args = list(argv) if argv is not None else sys.argv[1:]
        result = _app_for(args)(args=args, prog_name="cnn", standalone_mode=False)
        if result == 130:  # Typer turns Ctrl-C into Exit(130) and says nothing
            _fail("interrupted")
        return result if isinstance(result, int) else 0
    except BrokenPipeError:
        # The reader went away (`cnn ... | head`): stop quietly with 1, as the Python docs advise
        # and as Typer does when the pipe breaks inside a command.
        _drop_stdout()
        return 1
    except BaseException as err:  # noqa: B036  (every way out becomes one line and an exit code)
        message, code = _explain(err)
        if isinstance(err, OSError) and err.filename is None:
            _drop_stdout()  # a full disk behind `> file`: the exit's flush would fail again, with a traceback
        if code is None:
            raise
        if _debug and sys.stderr is not None:  # with 2>&- there is nowhere to show it (not stdout)
            import traceback

            traceback.print_exc(file=sys.stderr)
            if isinstance(err, WorkerBug):
                sys.stderr.write(err.details)
        if message:
            _fail(message)
        return code


def _warnings_as_lines() -> None:
    """A library's warning (NumPy's overflow, Pillow's notes) is one `cnn: warning:` line, not two
    lines quoting our source code."""
    import warnings

    def show(message, category, filename, lineno, file=None, line=None):
        from .output import warn

        warn(" ".join(str(message).split()))

    warnings.showwarning = show


MIN_COLUMNS, MAX_COLUMNS = 20, 10_000  # narrower than 20, a table shows no value at all


def _drop_unusable_sizes() -> None:
    """COLUMNS and LINES that are not a size to draw in (COLUMNS=99999999999999999999, -3, 1,
    words) are ignored, as if unset, rather than sizing every table and help screen by them."""
    for name, low in (("COLUMNS", MIN_COLUMNS), ("LINES", 1)):
        value = os.environ.get(name)
        if value is not None and not (value.strip().isdigit() and low <= int(value) <= MAX_COLUMNS):
            del os.environ[name]


def _app_for(args: list[str]) -> typer.Typer:
    """The app with only the command being run. Typer builds the options of every command on each
    start (10-15 ms for all six, most of it run, inspect and explain), and a run needs one; help,
    completion and a mistyped command get the whole app, which lists and suggests the others."""
    if any(name.startswith("_CNN_COMPLETE") for name in os.environ):
        return app
    name = next((arg for arg in args if not arg.startswith("-")), None)
    chosen = [info for info in app.registered_commands if _name_of(info) == name]
    if not chosen and not (name is None and "--version" in args):  # --version needs no command
        return app
    lean = typer.Typer(**_APP_SETTINGS)
    lean.registered_callback = app.registered_callback  # --version, --debug; and it keeps lean a group
    lean.registered_commands = chosen
    return lean


def _name_of(info: CommandInfo) -> str:
    """A registered command's name: its own, or its function's."""
    if info.name:
        return info.name
    assert info.callback is not None  # every command has its function (Typer asserts it too)
    return info.callback.__name__


def _explain(err: BaseException) -> tuple[str, int | None]:
    """The line to print for an error and the exit code; code None lets it through (SystemExit)."""
    from ..errors import LimitError, UsageError
    from .options import flag

    if isinstance(err, UsageError):
        # A UsageError always names its param; the attribute it shares with CnnError is Optional.
        return f"Invalid value for {flag(cast(str, err.param))}: {err.message}", 2
    if isinstance(err, CnnError):
        # An option's value that is wrong as data (not as usage) is named by its flag.
        text = f"{flag(err.param)}: {err.message}" if err.param and not err.source else str(err)
        return (f"{text} ({flag(err.limit)} raises it)" if isinstance(err, LimitError) else text), 1
    if isinstance(err, KeyboardInterrupt):
        return "interrupted", 130
    if isinstance(err, Terminated):
        return "terminated", 143
    if isinstance(err, MemoryError):
        return "out of memory; use a smaller image, stride or layer, or a lower --max-memory", 1
    if type(err).__name__ == "NoArgsIsHelpError":  # a bare `cnn`: the help is the message, not a line
        no_args = cast("NoArgsIsHelpError", err)  # known by its name, without importing Click's exceptions
        sys.stderr.write(no_args.ctx.get_help() + "\n")
        return "", no_args.exit_code
    if hasattr(err, "exit_code") and hasattr(err, "format_message"):  # a click usage error
        return err.format_message(), err.exit_code
    if isinstance(err, OSError):
        where = err.filename if err.filename is not None else "stdout"  # e.g. a full disk behind `> file`
        return f"{where}: {err.strerror or err}", 1
    if isinstance(err, (SystemExit, GeneratorExit)):
        return "", None
    detail = str(err)
    detail = detail if len(detail) <= 200 else detail[:200] + "..."
    return (f"internal error: {type(err).__name__}: {detail} (a bug in cnn; rerun with --debug for the "
            "traceback and report it)"), 1


def _drop_stdout() -> None:
    """Point stdout at /dev/null, so that what is left in its buffer is not flushed to a dead end at exit."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, AttributeError, ValueError):  # no stdout at all
        pass


def _fail(message: str) -> None:
    """One line, whatever a file name or a library's message holds: newlines and escapes are shown, not obeyed."""
    from .output import tell

    tell(f"cnn: {message}")  # one line, escapes shown; nothing with 2>&-: the exit code alone tells


def run_main() -> None:
    """Run the command line and exit with its code; Ctrl-C and SIGTERM are handled by
    cnncli.signals (installed here too, for callers that start here)."""
    from .. import signals

    signals.install()
    code: int | None = main()
    if signals.stop_requested is not None and code not in (130, 143):
        message, code = _explain(signals.stop_requested())
        _fail(message)
    sys.exit(code)
