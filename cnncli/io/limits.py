"""Resource limits: how large an input file, an image and a run may be, checked before the work.

A file from anywhere can claim a 20000 x 20000 image in a few bytes, or a network whose maps need
more memory than the machine has; under Linux's overcommit such a run is killed without a word
long after it started. So sizes are checked from headers and shapes, before anything is
allocated, and each limit says which flag raises it.
"""

from __future__ import annotations

from ..errors import LimitError

# The largest file of each kind read by default. Text is parsed into Python objects (about 30
# bytes a number), so JSON gets less room than binary arrays and images.
FILE_SIZE_DEFAULTS = {
    "image": 256 << 20,
    "kernel": 16 << 20,
    "model": 64 << 20,
    "onnx": 1 << 30,  # weights stored as binary tensors, as a .npz
    "weights": 1 << 30,
}


# Memory a byte of each kind of file takes once read: JSON becomes Python lists, floats and dicts
# (a 64 MB model file of numbers took about 900 MB while parsing), the others are held as bytes.
# An ONNX file is held as bytes, as parsed protobuf messages, then as float32 arrays: three copies.
PARSED_BYTES = {"kernel": 16, "model": 16, "onnx": 3}


class Limits:
    """The limits of one run; every field has a command-line flag of the same name.

    Immutable and hashable (readers are cached per file and limits). A plain class, not a frozen
    dataclass, whose six generated methods would cost every `cnn` start-up about 1 ms.
    """

    __slots__ = ("max_pixels", "max_memory", "max_file_size")
    # Declared for the type checker only: annotations without a value create no class attribute,
    # so they do not clash with the slots.
    max_pixels: int
    max_memory: int
    max_file_size: int | None

    def __init__(self, max_pixels: int = 1 << 26, max_memory: int = 4 << 30, max_file_size: int | None = None):
        object.__setattr__(self, "max_pixels", max_pixels)  # 8192 x 8192
        object.__setattr__(self, "max_memory", max_memory)  # bytes of arrays alive at once, from shapes
        object.__setattr__(self, "max_file_size", max_file_size)  # any input file; None: by kind

    def __setattr__(self, name, value):
        raise AttributeError(f"Limits are immutable; make new ones instead of setting {name}")

    def __reduce__(self):  # pickling (to worker processes) goes through __init__, not __setattr__
        return (Limits, self._key())

    def _key(self) -> tuple:
        return (self.max_pixels, self.max_memory, self.max_file_size)

    def __eq__(self, other) -> bool:
        return isinstance(other, Limits) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return "Limits(max_pixels={}, max_memory={}, max_file_size={})".format(*self._key())

    def file_size(self, kind: str) -> int:
        return FILE_SIZE_DEFAULTS[kind] if self.max_file_size is None else self.max_file_size

    def read_limit(self, kind: str) -> tuple[int, str]:
        """The most bytes of a ``kind`` input read into memory, and the field (flag) that sets it:
        the file-size limit, or what the memory limit leaves room for when that is lower, since a
        file is read whole (and JSON parsed into Python objects takes many times its size)."""
        size = self.file_size(kind)
        room = self.max_memory // PARSED_BYTES.get(kind, 1)
        return (room, "max_memory") if room < size else (size, "max_file_size")

    def check_file_size(self, size: int, kind: str, source: str, expected: str) -> None:
        """Refuse a file of ``size`` bytes over read_limit(kind), naming the limit that refuses it."""
        limit, field = self.read_limit(kind)
        if size > limit:
            exact = f" ({size:,} bytes)" if size >= 1024 else ""
            parsed = PARSED_BYTES.get(kind, 1)
            if field == "max_file_size":
                over = f"the limit of {format_bytes(limit)} for {expected}"
            elif parsed == 1:
                over = f"the memory limit of {format_bytes(limit)} for reading it whole"
            else:
                over = (f"the {format_bytes(limit)} that the memory limit of {format_bytes(self.max_memory)} leaves "
                        f"for parsing it (JSON takes about {parsed} bytes a byte)")
            raise LimitError(f"is {format_bytes(size)}{exact}, over {over}", source=source, limit=field)

    def pixels_error(self, pixels: int | None, source: str) -> LimitError:
        """The error for an image or frame claiming ``pixels`` (None: not known) over max_pixels.
        Pillow's own check, set to this limit while a file is opened, is what finds it."""
        size = f"{pixels:,} pixels" if pixels is not None else "more pixels"
        return LimitError(f"claims {size}, over the limit of {self.max_pixels:,} pixels", source=source,
                          limit="max_pixels")

    def check_memory(self, estimate: int, source: str, what: str) -> None:
        """Refuse work that would need ``estimate`` bytes at once; ``what`` says what needs them."""
        if estimate > self.max_memory:
            raise LimitError(f"{what} would need about {format_bytes(estimate)}, over the memory limit of "
                             f"{format_bytes(self.max_memory)}", source=source, limit="max_memory")


DEFAULT_LIMITS = Limits()

_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
_SIZE = r"\s*(\d+)(?:\.(\d+))?\s*([kmgt]?)(?:i?b)?\s*"
MAX_SIZE = 1 << 60  # 1 EiB: more than any machine holds, and far from where integers misbehave
_SIZE_FORM = "a size from 1 byte to 1 EiB, such as 512M, 1.5G or 1048576 (K, M, G, T are powers of 1024)"


def parse_size(text: str) -> int:
    """Bytes from ``512M``, ``2G``, ``1.5GiB``, ``64KB`` or a plain number; units are powers of 1024.

    Parsed exactly, in integers (a fraction of a byte is dropped), so that a number of any length
    gives an answer or this error instead of a float's OverflowError. Raises ValueError, saying
    the accepted form, for anything else, for 0 and for more than MAX_SIZE (1 EiB).
    """
    import re

    match = re.fullmatch(_SIZE, text, re.IGNORECASE)
    if match is None:
        raise ValueError(f"expected {_SIZE_FORM}, got {_shown(text)}")
    whole, fraction, unit = match.groups()
    whole = whole.lstrip("0")
    if len(whole) > len(str(MAX_SIZE)):  # before int(), which refuses over 4,300 digits
        raise ValueError(f"{_shown(text)} is over 1 EiB; expected {_SIZE_FORM}")
    # A unit is at most 2**40, so 40 decimals of the fraction decide every whole byte: n / 2**40
    # has at most 40 of them, and cutting later digits cannot take a value below one.
    fraction = (fraction or "")[:40]
    scale = 10 ** len(fraction)
    size = (int(whole or "0") * scale + int(fraction or "0")) * _UNITS[unit.lower()] // scale
    if size > MAX_SIZE:
        raise ValueError(f"{_shown(text)} is over 1 EiB; expected {_SIZE_FORM}")
    if size < 1:
        raise ValueError(f"{_shown(text)} is less than 1 byte; expected {_SIZE_FORM}")
    return size


def _shown(text: str) -> str:
    """The text as given, shortened when long, for a message that must stay one line."""
    return repr(text) if len(text) <= 40 else f"{text[:20]!r}... ({len(text):,} characters)"


def format_bytes(size: int) -> str:
    """1.5 GiB, 12.0 MiB, 900 bytes: the unit that keeps the number short."""
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} bytes"
