"""Help screens in plain text, options grouped under their panels (Convolution, Layers, Output...).

Typer draws help with Rich, whose help renderer imports Markdown, syntax highlighting and tracebacks
(about 100 ms, longer than NumPy's import) for a screen of text. This draws the same sections with
Click's own formatter, which Typer already holds, and shows the usage as it is typed: `IMAGE...`,
not `{IMAGE...}`.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from typer.core import TyperCommand, TyperGroup

if TYPE_CHECKING:
    from typing import Any, Protocol

    class _HelpSections(Protocol):
        """The sections of Click's help that a class mixing in _PlainHelp has, from its Click command."""

        def format_usage(self, ctx: Any, formatter: Any) -> None: ...
        def format_help_text(self, ctx: Any, formatter: Any) -> None: ...
        def format_options(self, ctx: Any, formatter: Any) -> None: ...
        def format_epilog(self, ctx: Any, formatter: Any) -> None: ...

OTHER = "Options"
# Typer's metavars for plain types, as Click writes them; choices as [a|b|c].
_METAVARS = {"<int range>": "N", "<int>": "N", "<float>": "NUMBER", "<str>": "TEXT", "<path>": "PATH"}


class _PlainHelp:
    """Click's own help layout (usage, description, options, epilog), which Typer replaces with Rich's."""

    def format_help(self: _HelpSections, ctx, formatter) -> None:
        self.format_usage(ctx, formatter)
        self.format_help_text(ctx, formatter)
        self.format_options(ctx, formatter)
        self.format_epilog(ctx, formatter)


class PanelledCommand(_PlainHelp, TyperCommand):
    """A command whose help is plain text: usage, description, then a section per help panel."""

    def format_options(self, ctx, formatter) -> None:
        write_panels(self, ctx, formatter)

    def collect_usage_pieces(self, ctx) -> list[str]:
        return [piece.strip("{}") for piece in super().collect_usage_pieces(ctx)]


class PanelledGroup(_PlainHelp, TyperGroup):
    """The app: its options and its commands, in plain text."""

    def format_options(self, ctx, formatter) -> None:
        write_panels(self, ctx, formatter)
        self.format_commands(ctx, formatter)


def write_panels(command, ctx, formatter) -> None:
    """The arguments, then the options under their panel's title, in the order they were declared."""
    sections: dict[str, list[tuple[str, str]]] = {}
    for param in command.get_params(ctx):
        record = param.get_help_record(ctx)
        if record is None:
            continue
        if param.param_type_name == "argument":
            title = "Arguments"
        else:
            title = getattr(param, "rich_help_panel", None) or OTHER
        name, description = record
        sections.setdefault(title, []).append((_tidy(name), _tidy(description)))
    for title, rows in sections.items():
        with formatter.section(title):
            formatter.write_dl(rows)


def _tidy(text: str) -> str:
    """``--stride <int range>  [default: (1); x>=1]`` as ``--stride N  [default: 1; x>=1]``."""
    for typer_name, plain in _METAVARS.items():
        text = text.replace(typer_name, plain)
    text = re.sub(r"<([\w|-]+)>", r"[\1]", text)
    return re.sub(r"default: \((.*?)\)(?=[;\]])", r"default: \1", text)
