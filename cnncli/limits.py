"""Resource limits: how large an input file, an image and a run may be, checked before the work.

A file from anywhere can claim a 20000 x 20000 image in a few bytes, or a network whose maps need
more memory than the machine has; under Linux's overcommit such a run is killed without a word
long after it started. So sizes are checked from headers and shapes, before anything is
allocated, and each limit says which flag raises it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import LimitError

# The largest file of each kind read by default. Text is parsed into Python objects (about 30
# bytes a number), so JSON gets less room than binary arrays and images.
FILE_SIZE_DEFAULTS = {
    "image": 256 << 20,
    "kernel": 16 << 20,
    "model": 64 << 20,
    "weights": 1 << 30,
}


@dataclass(frozen=True)
class Limits:
    """The limits of one run; every field has a command-line flag of the same name."""

    max_pixels: int = 1 << 26  # 8192 x 8192
    max_memory: int = 4 << 30  # bytes of arrays alive at once, estimated from shapes
    max_file_size: int | None = None  # bytes of any input file; None: FILE_SIZE_DEFAULTS by kind

    def file_size(self, kind: str) -> int:
        return FILE_SIZE_DEFAULTS[kind] if self.max_file_size is None else self.max_file_size

    def check_file_size(self, size: int, kind: str, source: str, expected: str) -> None:
        limit = self.file_size(kind)
        if size > limit:
            exact = f" ({size:,} bytes)" if size >= 1024 else ""
            raise LimitError(f"is {format_bytes(size)}{exact}, over the limit of {format_bytes(limit)} for {expected}",
                             source=source, limit="max_file_size")

    def check_pixels(self, width: int, height: int, source: str) -> None:
        if width * height > self.max_pixels:
            raise LimitError(f"is {width}x{height} ({width * height:,} pixels), over the limit of "
                             f"{self.max_pixels:,} pixels", source=source, limit="max_pixels")

    def check_memory(self, estimate: int, source: str, what: str) -> None:
        """Refuse work that would need ``estimate`` bytes at once; ``what`` says what needs them."""
        if estimate > self.max_memory:
            raise LimitError(f"{what} would need about {format_bytes(estimate)}, over the memory limit of "
                             f"{format_bytes(self.max_memory)}", source=source, limit="max_memory")


DEFAULT_LIMITS = Limits()

_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*", re.IGNORECASE)


def parse_size(text: str) -> int:
    """Bytes from ``512M``, ``2G``, ``1.5GiB``, ``64KB`` or a plain number; units are powers of 1024.

    Raises ValueError for anything else.
    """
    match = _SIZE.fullmatch(text)
    if match is None:
        raise ValueError(f"expected a size such as 512M, 2G or 1048576, got {text!r}")
    number, unit = match.groups()
    return int(float(number) * _UNITS[unit.lower()])


def format_bytes(size: int) -> str:
    """1.5 GiB, 12.0 MiB, 900 bytes: the unit that keeps the number short."""
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} bytes"
