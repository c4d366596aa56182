"""Numbers as text for JSON and CSV, written in pieces so that a big map never becomes one string.

A float32 value is written as the shortest text that reads back to the same float32 (0.1, not
0.10000000149011612); a float64 value as Python's repr does. JSON has no words for NaN and the
infinities: they are written null there (the run warns that a map overflowed), and inf, -inf and
nan in CSV.
"""

from __future__ import annotations

import json
import math
from typing import Any, Callable

import numpy as np

Write = Callable[[bytes], Any]
CHUNK_VALUES = 1 << 16  # values formatted at once: a few MB of text at most
_EXACT_INTEGERS = {np.dtype(np.float32): 1 << 24, np.dtype(np.float64): 1 << 53}


def number_texts(values: np.ndarray, null: bytes | None = None) -> list[bytes]:
    """The text of each value of a 1-D float array, shortest first: float32 values as float32.

    Non-finite values become ``null`` when it is given, else b"inf", b"-inf" and b"nan".
    """
    values = np.asarray(values)
    if values.dtype not in _EXACT_INTEGERS:
        values = values.astype(np.float64)
    if values.size == 0:
        return []
    finite = np.isfinite(values)
    every_finite = bool(finite.all())
    if every_finite and _integral(values):
        # Whole numbers (raw pixels, integer kernels) are looked up when small, or formatted as
        # integers, and written with their ".0" so that readers see floats, as the float
        # formatter writes them.
        whole = values.astype(np.int64)
        if -SMALL_WHOLE <= whole.min() and whole.max() < SMALL_WHOLE:
            texts = _small_whole().take(whole + SMALL_WHOLE)
        else:
            texts = np.char.add(whole.astype(bytes), b".0").astype(object)
        negative_zero = np.signbit(values) & (values == 0)
        if negative_zero.any():  # -0.0 keeps its sign, as the float formatter writes it
            texts[negative_zero] = b"-0.0"
        return texts.tolist()
    texts = values.astype(bytes)  # NumPy's shortest round-trip text for the array's own dtype
    if not every_finite and null is not None:
        texts[~finite] = null
    return texts.tolist()


SMALL_WHOLE = 1 << 12  # whole numbers from -4096 to 4095 have their text in a table
_SMALL_WHOLE_TEXTS: list = []


def _small_whole() -> np.ndarray:
    """The texts of -4096.0 .. 4095.0, made once: a lookup is 10x faster than formatting."""
    if not _SMALL_WHOLE_TEXTS:
        texts = np.empty(2 * SMALL_WHOLE, dtype=object)
        texts[:] = [b"%d.0" % n for n in range(-SMALL_WHOLE, SMALL_WHOLE)]
        _SMALL_WHOLE_TEXTS.append(texts)
    return _SMALL_WHOLE_TEXTS[0]


def _integral(values: np.ndarray) -> bool:
    """Whole numbers small enough to be exact."""
    return bool(np.abs(values).max() < _EXACT_INTEGERS[values.dtype]) and np.array_equal(values, np.trunc(values))


def write_array(write: Write, array: np.ndarray) -> None:
    """Write ``array`` as nested JSON lists of numbers, null where a value is not finite.

    The array is formatted CHUNK_VALUES values at a time, a row (its last axis) at a time, so
    the text of a big map is never held whole.
    """
    array = np.asarray(array)
    if array.ndim == 0:
        write(number_texts(array.reshape(1), b"null")[0])
        return
    if array.size == 0:  # no numbers, only brackets: [[], []]
        write(json.dumps(array.tolist(), separators=(",", ":")).encode())
        return
    width = array.shape[-1]
    rows = array.reshape(-1, width)  # (R, W): every run of the last axis
    # Row r opens a bracket for each level whose block of rows starts there, and closes one for
    # each whose block ends after it: for (C, H, W), the whole array, a channel and the row.
    blocks = [math.prod(array.shape[level:-1]) for level in range(array.ndim)]  # rows per bracket
    per_chunk = max(1, CHUNK_VALUES // width)
    for r0 in range(0, rows.shape[0], per_chunk):
        r1 = min(r0 + per_chunk, rows.shape[0])
        opens = [sum(r % size == 0 for size in blocks) for r in range(r0, r1)]
        closes = [sum((r + 1) % size == 0 for size in blocks) for r in range(r0, r1)]
        texts = number_texts(rows[r0:r1].reshape(-1), b"null")
        pieces = [b",".join(texts[i * width:(i + 1) * width]) for i in range(r1 - r0)]
        write(b"".join((b"," if r0 + i else b"") + _OPEN[opens[i]] + piece + _CLOSE[closes[i]]
                       for i, piece in enumerate(pieces)))


_OPEN = [b"[" * n for n in range(33)]  # up to 32 dimensions, as NumPy allows
_CLOSE = [b"]" * n for n in range(33)]


def float32_short(value: float) -> float:
    """The float64 whose repr is the shortest text of float32(value), so json.dumps writes that text."""
    if not math.isfinite(value):
        return value
    return float(str(np.float32(value)))


def jsonable(value: Any) -> Any:
    """``value`` with NaN and infinities replaced by None, and NumPy scalars by Python numbers."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(item) for item in value]
    if isinstance(value, np.generic):
        return jsonable(value.item())
    return value


def dumps(value: Any) -> bytes:
    """Compact JSON bytes (ASCII: any character is escaped), with null for non-finite numbers."""
    try:
        return json.dumps(value, allow_nan=False, separators=(",", ":")).encode("ascii")
    except (ValueError, TypeError):  # NaN or an infinity somewhere, or a NumPy scalar: the slow, careful way
        return json.dumps(jsonable(value), allow_nan=False, separators=(",", ":")).encode("ascii")
