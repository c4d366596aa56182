"""The `cnn` command line: Typer commands that parse options, call the core and render results.

``main`` is the one place where errors become exit codes: a CnnError (bad data, a failed run) is
one line on stderr and exit 1; a usage error is one line and exit 2; Ctrl-C is exit 130.
"""

from __future__ import annotations

import os
import sys
from typing import Annotated, Optional, Sequence

import typer

from .. import __version__
from ..errors import CnnError

app = typer.Typer(
    name="cnn",
    help="Run convolutional-network layers on images and see every intermediate feature map.\n\n"
         "Example: cnn run sample_images/seed_5x5.png --kernel vertical_edge",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        print(f"cnn {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[Optional[bool], typer.Option("--version", callback=_version, is_eager=True,
                                                    help="Print the version and exit.")] = None,
) -> None:
    """Run convolutional-network layers on images and see every intermediate feature map."""


from . import inspect as _inspect  # noqa: E402,F401  (commands register themselves on `app`)
from . import kernels as _kernels  # noqa: E402,F401
from . import models as _models  # noqa: E402,F401
from . import run as _run  # noqa: E402,F401


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; return the exit code (the console script passes it to sys.exit)."""
    try:
        result = app(args=list(argv) if argv is not None else None, prog_name="cnn", standalone_mode=False)
        return result if isinstance(result, int) else 0
    except CnnError as err:
        _fail(str(err))
        return 1
    except KeyboardInterrupt:
        _fail("interrupted")
        return 130
    except MemoryError:
        _fail("out of memory; use a smaller image, stride or layer")
        return 1
    except BrokenPipeError:
        # The reader went away (`cnn ... | head`): stop quietly, as the Python docs advise.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141
    except OSError as err:
        if err.filename is not None:
            raise
        _fail(f"stdout: cannot write: {err.strerror or err}")  # e.g. a full disk behind `> file`
        return 1
    except Exception as err:
        if hasattr(err, "exit_code") and hasattr(err, "format_message"):  # a click usage error
            _fail(err.format_message())
            return err.exit_code
        raise


def _fail(message: str) -> None:
    print(f"cnn: {message}", file=sys.stderr)


def run_main() -> None:
    """The `cnn` console script."""
    sys.exit(main())
