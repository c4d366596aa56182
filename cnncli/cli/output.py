"""Consoles and writers shared by the commands: results to stdout, messages to stderr."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console


def stdout_console(width: int | None = None) -> Console:
    from rich.console import Console

    from ..errors import OutputError

    if sys.stdout is None:  # started with stdout closed (`cnn ... >&-`)
        raise OutputError("is closed; nothing can be printed", source="stdout")
    # Rich drops colour when stdout is not a terminal and honours NO_COLOR; highlight would
    # colour numbers of its own accord, which the heat colours already do; emoji codes such as
    # :x: in a file name must stay as written (and their table costs start-up time).
    return Console(highlight=False, emoji=False, width=width)


def stderr_console() -> Console:
    from rich.console import Console

    return Console(stderr=True, highlight=False, emoji=False)


def print_json(document: Any) -> None:
    stdout_console()  # refuses a closed stdout
    sys.stdout.write(json.dumps(document, allow_nan=False))
    sys.stdout.write("\n")
    sys.stdout.flush()


def tell(message: str) -> None:
    """A message for the person at the terminal, on stderr."""
    stderr_console().print(message, markup=False, soft_wrap=True)  # one line, however long
