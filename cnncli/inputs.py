"""Reading an input file whole, with a size cap, turning OS errors into the caller's CnnError."""

from __future__ import annotations

from pathlib import Path

from .errors import CnnError


def read_bytes(path: str | Path, *, limit: int, error: type[CnnError], expected: str) -> bytes:
    """The bytes of ``path``; ``error`` names the file when it is missing, a folder, unreadable or over ``limit``.

    ``expected`` says what the file should have been, e.g. "an image file".
    """
    source = str(path)
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > limit:
            raise error(f"is {size:,} bytes, over the limit of {limit:,} for {expected}", source=source)
        return path.read_bytes()
    except FileNotFoundError:
        raise error("no such file", source=source) from None
    except IsADirectoryError:
        raise error(f"is a folder; expected {expected}", source=source) from None
    except OSError as err:
        raise error(f"cannot read: {err.strerror or err}", source=source) from None
