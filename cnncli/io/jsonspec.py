"""Strict JSON for kernel and model files: every error names the file and the field's JSON path.

Python's json module accepts NaN, Infinity, 1e400 (as inf) and repeated keys without a word; a
file that says any of these is almost surely wrong, so here each is an error.
"""

from __future__ import annotations

import json
import math
import sys
from typing import Any, Iterable

import numpy as np

from ..errors import SpecError

MAX_DEPTH = 32


class NonFinite(str):
    """Stands in the parsed document for NaN, Infinity or a number too large for a float, so
    that the Reader, which knows the field's path, reports it there."""


def loads(text: str | bytes, source: str) -> Any:
    """Parse JSON text, rejecting repeated keys and deep nesting; non-finite numbers become NonFinite."""

    def parse_float(literal: str) -> float | NonFinite:
        value = float(literal)
        return value if math.isfinite(value) else NonFinite(literal)

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        result = dict(items)  # in C: a model of 300,000 layers is as many objects
        if len(result) != len(items):
            seen: set[str] = set()
            for key, _ in items:
                if key in seen:
                    raise SpecError(f"key {key!r} appears twice in one object", source=source)
                seen.add(key)
        return result

    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8-sig")
        except UnicodeDecodeError as err:
            raise SpecError(f"not UTF-8 text (byte {err.start}); expected a JSON file", source=source) from None
    if _depth_exceeds(text, MAX_DEPTH):
        raise SpecError(f"nested deeper than {MAX_DEPTH} levels", source=source)
    try:
        return json.loads(text, parse_constant=NonFinite, parse_float=parse_float, object_pairs_hook=pairs)
    except json.JSONDecodeError as err:
        raise SpecError(f"invalid JSON at line {err.lineno} column {err.colno}: {err.msg}", source=source) from None
    except ValueError:  # an integer with more digits than Python converts
        raise SpecError(f"has an integer over {sys.get_int_max_str_digits()} digits long; expected a number",
                        source=source) from None


def _depth_exceeds(text: str, limit: int) -> bool:
    """True when brackets nest deeper than ``limit`` (strings do not count; an unterminated one
    runs to the end; a backslash escapes the next character, also where JSON allows none).
    Vectorised over the text's bytes, four million at a time: a loop over the characters took
    0.5 s for a model of 300,000 layers and 2 s for a 16 MB kernel."""
    opens = text.count("[") + text.count("{")
    if opens <= limit:
        return False
    if "\\" in text:
        import re

        text = re.sub(r"\\.", "", text, flags=re.DOTALL)  # an escaped character neither ends a string nor nests
    data = np.frombuffer(text.encode("utf-8", "surrogatepass"), np.uint8)  # non-ASCII bytes are all >= 0x80
    depth, inside = 0, False
    for start in range(0, len(data), 1 << 22):
        chunk = data[start:start + (1 << 22)]
        in_string = np.logical_xor.accumulate(chunk == ord('"')) ^ inside  # True from an opening quote on
        step = ((chunk == ord("[")) | (chunk == ord("{"))).astype(np.int8) - ((chunk == ord("]")) | (chunk == ord("}")))
        step[in_string] = 0
        running = np.cumsum(step, dtype=np.int32) + depth
        if running.max() > limit:
            return True
        depth, inside = int(running[-1]), bool(in_string[-1])
    return False


class Reader:
    """Typed access to the fields of one JSON document, raising SpecError with the field's path."""

    def __init__(self, source: str, prefix: str = "") -> None:
        self.source = source
        self.prefix = prefix  # the path of the part being read, e.g. "layers[2]"

    def within(self, prefix: str) -> Reader:
        """A reader of one part of the document, whose errors give the whole path: ``layers[2].stride``."""
        return Reader(self.source, _join(self.prefix, prefix))

    def fail(self, path: str, message: str) -> SpecError:
        path = _join(self.prefix, path)
        return SpecError(f"{path}: {message}" if path else message, source=self.source)

    def object(self, value: Any, path: str, allowed: Iterable[str], required: Iterable[str] = ()) -> dict[str, Any]:
        """Check that ``value`` is an object with only ``allowed`` keys and every ``required`` one."""
        if not isinstance(value, dict):
            raise self.fail(path, f"expected an object, got {_kind(value)}")
        allowed = list(allowed)
        for key in value:
            if key not in allowed:
                import difflib  # only errors pay for its import

                hint = difflib.get_close_matches(key, allowed, n=1)
                suggestion = f" (did you mean {hint[0]!r}?)" if hint else f"; expected one of {', '.join(allowed)}"
                raise self.fail(_join(path, _key_text(key)), f"unknown key{suggestion}")
        for key in required:
            if key not in value:
                raise self.fail(path, f"missing key {key!r}")
        return value

    def string(self, value: Any, path: str, choices: Iterable[str] | None = None) -> str:
        """A string of valid Unicode: JSON's escapes can spell a lone surrogate (``"\\ud800"``), which
        no output can encode, so it is refused here, where the field's path is known."""
        if not isinstance(value, str):
            raise self.fail(path, f"expected a string, got {_kind(value)}")
        if not value.isascii():
            try:
                value.encode("utf-8")
            except UnicodeEncodeError as err:
                raise self.fail(path, f"holds a lone surrogate {value[err.start]!r} at character {err.start}, which "
                                      "is not valid Unicode; expected text") from None
        if choices is not None and value not in (choices := tuple(choices)):
            raise self.fail(path, f"expected one of {', '.join(choices)}, got {value!r}")
        return value

    def text(self, value: Any, path: str, *, empty: bool = True) -> str:
        """A string shown to people (a name, a label, a description): valid Unicode and printable
        (str.isprintable), so that no line break, escape code or bidirectional control reaches a
        table, a CSV cell, a chart or a terminal; with ``empty`` false, not empty either."""
        text = self.string(value, path)
        if not text and not empty:
            raise self.fail(path, "is empty; expected a name of printable characters")
        if not text.isprintable():
            index, char = next((i, c) for i, c in enumerate(text) if not c.isprintable())
            raise self.fail(path, f"holds {char!r} at character {index}; expected printable text, without control "
                                  "characters, line breaks or escape codes")
        return text

    def unicode(self, value: Any, path: str) -> None:
        """Check that every string in a free-form value (keys too) is valid Unicode, as ``string`` does."""
        if isinstance(value, str):
            self.string(value, path)
        elif isinstance(value, list):
            for index, item in enumerate(value):
                self.unicode(item, f"{path}[{index}]")
        elif isinstance(value, dict):
            for key, item in value.items():
                self.string(key, _join(path, _key_text(key)))
                self.unicode(item, _join(path, _key_text(key)))

    def boolean(self, value: Any, path: str) -> bool:
        if not isinstance(value, bool):
            raise self.fail(path, f"expected true or false, got {_kind(value)}")
        return value

    def number(self, value: Any, path: str) -> float:
        if isinstance(value, NonFinite):
            raise self.fail(path, f"{value} is not a finite number; expected a finite number")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.fail(path, f"expected a number, got {_kind(value)}")
        try:
            result = float(value)
        except OverflowError:
            result = math.inf
        if not math.isfinite(result):
            raise self.fail(path, "is too large; expected a finite number")
        return result

    def integer(self, value: Any, path: str, minimum: int | None = None, maximum: int | None = None) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(path, f"expected a whole number, got {_kind(value)}")
        if minimum is not None and value < minimum:
            raise self.fail(path, f"must be at least {minimum}, got {value}")
        if maximum is not None and value > maximum:
            raise self.fail(path, f"must be at most {maximum}, got {value}")
        return value

    def pair(self, value: Any, path: str, minimum: int = 1, maximum: int = 1 << 16) -> tuple[int, int]:
        """An integer, or a list of two: (rows, cols)."""
        if isinstance(value, list):
            if len(value) != 2:
                raise self.fail(path, f"expected one integer or [rows, cols], got {len(value)} values")
            return tuple(self.integer(v, f"{path}[{i}]", minimum, maximum) for i, v in enumerate(value))  # type: ignore
        number = self.integer(value, path, minimum, maximum)
        return number, number

    def array(self, value: Any, path: str, ndims: Iterable[int]) -> np.ndarray:
        """A rectangular nested list of finite numbers with one of the allowed ranks, as float64."""
        ndims = tuple(ndims)
        shape = self._shape(value, path)
        if len(shape) not in ndims:
            allowed = " or ".join(f"{n}-D" for n in ndims)
            raise self.fail(path, f"expected a {allowed} array, got {len(shape)}-D with shape {shape}")
        if 0 in shape:
            raise self.fail(path, f"is empty (shape {shape})")
        return np.array(value, dtype=np.float64)

    def _shape(self, value: Any, path: str) -> tuple[int, ...]:
        """The shape of a nested list, checking every row has the same length and every leaf is a number."""
        if not isinstance(value, list):
            self.number(value, path)
            return ()
        if not value:
            return (0,)
        inner = [self._shape(item, f"{path}[{i}]") for i, item in enumerate(value)]
        for i, shape in enumerate(inner):
            if shape != inner[0]:
                raise self.fail(
                    f"{path}[{i}]", f"has shape {list(shape)} but {path}[0] has {list(inner[0])} (rows must match)"
                )
        return (len(value),) + inner[0]


def _key_text(key: str) -> str:
    """A key as it goes in a path: ``stride``, or ``['in\\nplace']`` when it is not a plain name,
    so that a key holding a newline or an escape sequence cannot break the one-line message."""
    return key if key.isidentifier() else f"[{key!r}]"


def _join(path: str, part: str) -> str:
    """``layers[2]`` + ``stride`` is ``layers[2].stride``; + ``[0]`` is ``layers[2][0]``."""
    if not path or not part:
        return path or part
    return path + part if part.startswith("[") else f"{path}.{part}"


def _kind(value: Any) -> str:
    if isinstance(value, NonFinite):
        return f"the non-finite number {value}"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"{str(value).lower()}"
    if isinstance(value, str):
        return f"the string {value!r}" if len(value) < 40 else "a string"
    if isinstance(value, (int, float)):
        return f"the number {value}"
    if isinstance(value, list):
        return "a list"
    return "an object"


def dumps(document: Any, indent: str = "  ", _level: int = 0) -> str:
    """JSON laid out for people: objects and nested lists one item per line, rows of numbers inline."""
    pad, inner = indent * _level, indent * (_level + 1)
    if isinstance(document, dict) and document:
        items = [f"{inner}{json.dumps(key)}: {dumps(value, indent, _level + 1)}" for key, value in document.items()]
        return "{\n" + ",\n".join(items) + f"\n{pad}}}"
    if isinstance(document, list) and any(isinstance(item, (list, dict)) for item in document):
        items = [f"{inner}{dumps(item, indent, _level + 1)}" for item in document]
        return "[\n" + ",\n".join(items) + f"\n{pad}]"
    return json.dumps(document, allow_nan=False)
