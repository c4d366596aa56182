"""Consoles and writers shared by the commands: results to stdout, messages to stderr."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any, Callable, cast

from ..display import shown

if TYPE_CHECKING:
    from typing import Literal

    from rich.console import Console

    # The colour systems Rich's Console takes, and names in its color_system.
    ColorSystem = Literal["auto", "standard", "256", "truecolor", "windows"]


# What the tables' few non-ASCII characters become on a stream that cannot encode them
# (PYTHONIOENCODING=ascii, an old locale); Rich already draws ASCII boxes there.
_ASCII = {"\u22ee": ":", "\u2026": "~", "\u2588": "#", "\u258f": "|", "\u258e": "|", "\u258d": "|",
          "\u258c": "|", "\u258b": "|", "\u258a": "|", "\u2589": "|"}


def _ascii_fallback(err: UnicodeEncodeError) -> tuple[str, int]:
    text = err.object[err.start:err.end]
    return "".join(_ASCII.get(char, "?") for char in text), err.end


def _encodable(stream) -> None:
    """Let ``stream`` print any text: characters its encoding lacks get an ASCII stand-in."""
    import codecs

    encoding = (getattr(stream, "encoding", None) or "utf-8").lower().replace("-", "")
    if encoding not in ("utf8", "utf16", "utf32") and hasattr(stream, "reconfigure"):
        try:
            codecs.lookup_error("cnn-ascii")
        except LookupError:
            # Only stdout's and stderr's encoders use it, which pass a UnicodeEncodeError; typeshed's
            # handler takes any UnicodeError.
            handler = cast("Callable[[UnicodeError], tuple[str, int]]", _ascii_fallback)
            codecs.register_error("cnn-ascii", handler)
        stream.reconfigure(errors="cnn-ascii")


_no_color = False  # set by --no-color; NO_COLOR in the environment does the same through Rich


def set_no_color(value: bool) -> None:
    global _no_color
    _no_color = _no_color or value


def stdout_console(width: int | None = None) -> Console:
    from rich.console import Console

    from ..io.targets import stdout_closed

    if sys.stdout is None:  # started with stdout closed (`cnn ... >&-`)
        raise stdout_closed()
    _encodable(sys.stdout)
    # Rich drops colour when stdout is not a terminal and honours NO_COLOR; highlight would
    # colour numbers of its own accord, which the heat colours already do; emoji codes such as
    # :x: in a file name must stay as written (and their table costs start-up time).
    class StdoutConsole(Console):
        def on_broken_pipe(self) -> None:
            self.quiet = True
            raise BrokenPipeError  # main() then stops quietly, with the same exit code for every output

    return StdoutConsole(highlight=False, emoji=False, width=width, no_color=_no_color or None)


class Look:
    """How stdout shows text, decided once in the parent: a worker renders to a string with it.

    (A plain class: a dataclass would cost every `cnn` start-up its generated methods.)
    """

    def __init__(self, width: int, color_system: ColorSystem | None) -> None:
        self.width = width
        self.color_system = color_system  # None: plain text, no escape codes (a pipe, NO_COLOR, --no-color)

    @classmethod
    def of_stdout(cls) -> Look:
        console = stdout_console()
        # Rich types its color_system property as str; it is one of its own names for them.
        color_system = cast("ColorSystem | None", console.color_system)
        return cls(console.width, None if console.no_color else color_system)

    def render(self, renderable, width: int | None = None) -> str:
        """``renderable`` as the text stdout would show."""
        import io

        from rich.console import Console

        buffer = io.StringIO()
        console = Console(file=buffer, width=width or self.width, color_system=self.color_system,
                          force_terminal=self.color_system is not None, highlight=False, emoji=False,
                          legacy_windows=False)
        # Lines of text are never broken (a long path stays whole, as a terminal wraps it for show
        # and grep sees one line); plain text loses the spaces Rich pads table rows with.
        console.print(renderable, soft_wrap=True)
        text = buffer.getvalue()
        if self.color_system is None:
            text = "\n".join(line.rstrip() for line in text.split("\n"))
        return text

    @property
    def palette(self) -> str:
        return palette(self.color_system)


def palette(color_system: str | None) -> str:
    """Blended heat colours where the terminal has them, the nearest of its 256 that keep the hue where
    it has those, named ones where it has only 8 or 16."""
    if color_system is None:
        return "none"
    if color_system == "256":
        return "256"
    return "basic" if color_system in ("standard", "windows") else "rgb"


def write_text(text: str) -> None:
    """Text on stdout as it is; a reader that leaves early raises BrokenPipeError for main()."""
    sys.stdout.write(text)


def stderr_console() -> Console:
    from rich.console import Console

    _encodable(sys.stderr)
    return Console(stderr=True, highlight=False, emoji=False)


def print_json(document: Any) -> None:
    stdout_console()  # refuses a closed stdout
    sys.stdout.write(json.dumps(document, allow_nan=False))
    sys.stdout.write("\n")
    sys.stdout.flush()


above_bar: Callable[[str], None] | None = None  # while a progress bar shows, a callable that prints a line above it


def tell(message: str) -> None:
    """A message for the person at the terminal, on stderr, on one line whatever it holds.

    Plain print, not a Rich console: a message is one line of text, and Rich's console costs a
    run that prints nothing else about 17 ms of start-up. While a progress bar shows, the line goes
    above it rather than onto its line.
    """
    if sys.stderr is None:  # started with 2>&-
        return
    if above_bar is not None:
        above_bar(shown(message))
        return
    _encodable(sys.stderr)
    print(shown(message), file=sys.stderr, flush=True)


def warn(message: str) -> None:
    tell(f"cnn: warning: {message}")


def warn_each(warnings) -> None:
    for warning in warnings:
        warn(warning)
