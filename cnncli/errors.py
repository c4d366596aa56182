"""Errors a user can cause. The CLI turns each into one line on stderr and an exit code."""

from __future__ import annotations


class CnnError(Exception):
    """Base of every error caused by input: a file, an option or a shape.

    ``source`` names what was wrong (a file path, or a layer name) and is printed before the
    message: ``cnn: SOURCE: MESSAGE``. ``param`` names the option or argument at fault, as data: the
    name a Python caller passes (``"model"``, ``"stride"``), which the CLI alone turns into its flag
    (``--model``) and shows in place of a missing source.
    """

    def __init__(self, message: str, *, source: str | None = None, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.source = source
        self.param = param

    def __str__(self) -> str:
        return f"{self.source}: {self.message}" if self.source else self.message

    def within(self, source: str) -> CnnError:
        """Return the same error, placed inside ``source`` (a file or an image)."""
        inner = f"{self.source}: {self.message}" if self.source else self.message
        placed = type(self)(inner, source=source)
        placed.param = self.param
        return placed


class ImageError(CnnError):
    """An image file that cannot be read, or that is not what was expected."""


class SpecError(CnnError):
    """A kernel, weights or model file whose content is malformed."""


class ShapeError(CnnError):
    """Settings or weights whose shapes do not fit the data they are applied to."""


class GraphError(CnnError):
    """A network whose layers are not joined into one graph: an unknown or later input, a repeated
    name, a layer that reaches no output. ``layer`` is the index of the layer at fault and ``field``
    its setting ("inputs", "name"), so that a model file can point at its JSON path."""

    def __init__(self, message: str, *, source: str | None = None, layer: int | None = None,
                 field: str = "") -> None:
        super().__init__(message, source=source)
        self.layer = layer
        self.field = field

    def within(self, source: str) -> GraphError:
        inner = f"{self.source}: {self.message}" if self.source else self.message
        return GraphError(inner, source=source, layer=self.layer, field=self.field)


class OutputError(CnnError):
    """An output file or folder that cannot be written."""


class UsageError(CnnError):
    """Arguments or options that cannot be used together or as given (bad usage, not bad data).

    ``param`` names the argument or option at fault: an argument as the usage line shows it
    (``IMAGES``), or an option by its Python name (``top``, ``negative_slope``; ``kernels`` for
    ``--kernel``), which the CLI turns into its flag. The CLI reports it as a usage error (exit 2).
    """

    param: str  # always given

    def __init__(self, message: str, *, param: str, source: str | None = None) -> None:
        super().__init__(message, source=source)
        self.param = param

    def within(self, source: str) -> UsageError:
        inner = f"{self.source}: {self.message}" if self.source else self.message
        return UsageError(inner, source=source, param=self.param)


class LimitError(CnnError):
    """Input or work over a resource limit; ``limit`` names the Limits field (and flag) that sets it."""

    def __init__(self, message: str, *, source: str | None = None, limit: str) -> None:
        super().__init__(message, source=source)
        self.limit = limit

    def within(self, source: str) -> LimitError:
        inner = f"{self.source}: {self.message}" if self.source else self.message
        return LimitError(inner, source=source, limit=self.limit)


def describe(err: Exception) -> str:
    """A library's exception on bad input in a few words, for a CnnError; its type is named unless it
    is a ValueError or OSError with a message (which read as plain words)."""
    text = " ".join(str(err).split())[:200]
    return text if isinstance(err, (ValueError, OSError)) and text else f"{type(err).__name__}: {text}".rstrip(": ")
