"""Reading an input file whole, with a size cap, turning OS errors into the caller's CnnError."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from .errors import CnnError, LimitError, describe
from .limits import DEFAULT_LIMITS, Limits, format_bytes

if TYPE_CHECKING:
    import numpy as np


def read_bytes(path: str | Path, *, kind: str, error: type[CnnError], expected: str,
               limits: Limits = DEFAULT_LIMITS) -> bytes:
    """The bytes of ``path``; ``error`` names the file when it is missing, a folder or unreadable.

    ``kind`` picks the size limit (see Limits.file_size); ``expected`` says what the file should
    have been, e.g. "an image file". A FIFO or a device (``<(cmd)``, /dev/stdin) has no size to
    check first, so it is read up to the limit and refused if there is more.
    """
    source = str(path)
    path = Path(path)
    try:
        size = path.stat().st_size
        if path.is_dir():
            raise IsADirectoryError
        limits.check_file_size(size, kind, source, expected)
        with open(path, "rb") as stream:
            if path.is_file():
                return stream.read()
            return read_stream(stream, source, kind, expected, limits)
    except FileNotFoundError:
        raise error("no such file", source=source) from None
    except IsADirectoryError:
        raise error(f"is a folder; expected {expected}", source=source) from None
    except OSError as err:
        raise error(f"cannot read: {err.strerror or err}", source=source) from None
    except ValueError:  # a name from a file, holding a NUL byte, which no file system allows
        raise error(f"is not a possible file name; expected {expected}", source=repr(source)) from None


def read_stream(stream, source: str, kind: str, expected: str, limits: Limits = DEFAULT_LIMITS) -> bytes:
    """Everything ``stream`` holds, refusing (before reading it all) more than the size limit allows."""
    limit = limits.file_size(kind)
    chunks, size = [], 0
    while chunk := stream.read(min(1 << 20, limit + 1 - size)):  # read(n) would allocate n bytes at once
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            raise LimitError(f"holds more than the limit of {format_bytes(limit)} for {expected}", source=source,
                             limit="max_file_size")
    return b"".join(chunks)


MAX_NPZ_MEMBERS = 1024
NPZ_METHODS = (0, 8)  # zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED


def load_npy(data: bytes, source: str, error: type[CnnError]) -> np.ndarray:
    """A .npy array from its bytes, never unpickled, after checking its header against its size.

    A forged header can claim any shape, and NumPy allocates the array before reading it; so the
    bytes the header promises must be present first.
    """
    import io

    import numpy as np
    from numpy.lib import format as npy_format

    stream = io.BytesIO(data)
    try:
        version = npy_format.read_magic(stream)
        read_header = npy_format.read_array_header_1_0 if version == (1, 0) else npy_format.read_array_header_2_0
        shape, _, dtype = read_header(stream)
    except Exception as err:  # noqa: BLE001
        # NumPy parses the header (at most 10,000 bytes) with ast.literal_eval, which a forged one
        # makes raise SyntaxError, RecursionError, MemoryError and more: all mean a bad header.
        raise error(f"not a readable .npy array: {describe(err)}", source=source) from None
    if dtype.hasobject:
        raise error("holds Python objects, which would need unpickling; expected numbers", source=source)
    if not all(type(size) is int and 0 <= size < 1 << 62 for size in shape):
        raise error(f"its header claims shape {shape}; expected sizes that are whole numbers from 0", source=source)
    promised = dtype.itemsize
    for size in shape:
        promised *= size
    present = len(data) - stream.tell()
    if promised > present:
        raise error(f"its header claims shape {shape} of {dtype} ({promised:,} bytes) but only {present:,} "
                    "bytes follow", source=source)
    try:
        return np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError, EOFError, TypeError, OverflowError) as err:
        raise error(f"not a readable .npy array: {describe(err)}", source=source) from None


def load_npz(data: bytes, source: str, error: type[CnnError], limit: int) -> dict[str, np.ndarray]:
    """The arrays of a .npz archive, each checked as load_npy does, with at most ``limit`` bytes in all
    (the memory limit: they are all held at once).

    Sizes are read from the zip's directory before anything is inflated, so a small archive that
    would inflate to gigabytes (a zip bomb) is refused; reading stops at each member's stated size.
    """
    import io
    import zipfile

    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        members = archive.infolist()
    except Exception as err:  # noqa: BLE001  (zipfile raises IndexError, struct.error... on forged directories)
        raise error(f"not a readable .npz archive: {describe(err)}", source=source) from None
    if len(members) > MAX_NPZ_MEMBERS:
        raise error(f"holds {len(members):,} arrays, over the limit of {MAX_NPZ_MEMBERS:,}", source=source)
    inflated = sum(member.file_size for member in members)
    Limits(max_memory=limit).check_memory(inflated, source, f"its {len(members)} arrays (inflated)")
    arrays = {}
    for member in members:
        name = member.filename.removesuffix(".npy") or "''"
        # numpy.savez writes stored or deflated members, never encrypted ones; other methods (LZMA's
        # dictionary is sized by the file) are refused before a decompressor allocates anything.
        if member.compress_type not in NPZ_METHODS:
            raise error(f"{name}: compressed with zip method {member.compress_type}; expected stored or deflated "
                        "(as numpy.savez writes)", source=source)
        if member.flag_bits & 0x1:
            raise error(f"{name}: is encrypted; expected a plain .npz", source=source)
        try:
            content = archive.read(member)
        except Exception as err:  # noqa: BLE001  (zlib.error, BadZipFile, EOFError... on corrupt data)
            raise error(f"{name}: cannot inflate: {describe(err)}", source=source) from None
        arrays[name] = load_npy(content, f"{source}: {name}", error)
    return arrays
