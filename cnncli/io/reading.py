"""Reading an input file whole, with a size cap, turning OS errors into the caller's CnnError."""

from __future__ import annotations

import os
import stat
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Iterator

from ..errors import CnnError, LimitError, describe
from .limits import DEFAULT_LIMITS, Limits, format_bytes

if TYPE_CHECKING:
    import numpy as np


def read_bytes(path: str | Path, *, kind: str, error: type[CnnError], expected: str,
               limits: Limits = DEFAULT_LIMITS, regular_only: bool = False) -> bytes:
    """The bytes of ``path``; ``error`` names the file when it is missing, a folder or unreadable.

    ``kind`` picks the size limit (see Limits.read_limit: the file-size limit of that kind, or the
    memory limit when it is lower); ``expected`` says what the file should have been, e.g. "an
    image file". A FIFO or a device (``<(cmd)``, /dev/stdin) has no size to check first, so it
    is read up to the limit and refused if there is more; so is a regular file, whose size may
    change after it is checked. With ``regular_only`` (a file named inside another file) anything
    but a regular file is refused before a byte is read: it is opened without waiting for a
    FIFO's writer, and what was opened is checked, not what the name pointed at before.
    """
    source = str(path)
    with _open(path, error, expected, nonblocking=regular_only) as stream:
        try:
            status = os.fstat(stream.fileno())
            regular = stat.S_ISREG(status.st_mode)
            if regular_only and not regular:
                raise error(f"is {_file_type(status.st_mode)}; expected {expected} (a regular file)", source=source)
            if regular:
                limits.check_file_size(status.st_size, kind, source, expected)
            return read_stream(stream, source, kind, expected, limits, status.st_size if regular else 0)
        except OSError as err:
            raise error(f"cannot read: {err.strerror or err}", source=source) from None


@contextmanager
def open_regular(path: str | Path, *, kind: str, error: type[CnnError], expected: str,
                 limits: Limits = DEFAULT_LIMITS) -> Iterator[tuple[BinaryIO, int]]:
    """``path`` open for reading, with its size: a regular file within the file-size limit of
    ``kind``, read piece by piece by the caller (an ONNX model's weights); ``error`` names the file
    when it is missing, a folder, not a regular file or too big."""
    with _open(path, error, expected, nonblocking=True) as stream:
        status = os.fstat(stream.fileno())
        if not stat.S_ISREG(status.st_mode):
            raise error(f"is {_file_type(status.st_mode)}; expected {expected} (a regular file)", source=str(path))
        limits.check_file_size(status.st_size, kind, str(path), expected)
        yield stream, status.st_size


def _open(path: str | Path, error: type[CnnError], expected: str, nonblocking: bool) -> BinaryIO:
    """``path`` open for reading; ``error`` naming it when it is missing, a folder or cannot be opened.
    ``nonblocking`` opens a FIFO without waiting for its writer (so that it can be refused)."""
    source = str(path)
    try:
        return open(path, "rb", opener=_nonblocking if nonblocking else None)
    except FileNotFoundError:
        raise error("no such file", source=source) from None
    except IsADirectoryError:
        raise error(f"is a folder; expected {expected}", source=source) from None
    except OSError as err:
        raise error(f"cannot read: {err.strerror or err}", source=source) from None
    except ValueError:  # a name from a file, holding a NUL byte, which no file system allows
        raise error(f"is not a possible file name; expected {expected}", source=repr(source)) from None


def _nonblocking(path: str, flags: int) -> int:
    return os.open(path, flags | os.O_NONBLOCK)


def _file_type(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def read_stream(stream, source: str, kind: str, expected: str, limits: Limits = DEFAULT_LIMITS,
                size: int = 0) -> bytes:
    """Everything ``stream`` holds, refusing (before reading it all) more than Limits.read_limit allows.

    ``size`` is what the file's status says it holds (0 if unknown): that much is read at once,
    then the rest, if the file grew, in chunks up to the limit.
    """
    limit, field = limits.read_limit(kind)
    chunks: list[bytes] = []
    total = 0
    if 0 < size <= limit:
        chunks.append(stream.read(size))
        total = len(chunks[0])
    while chunk := stream.read(min(1 << 20, limit + 1 - total)):  # read(n) would allocate n bytes at once
        chunks.append(chunk)
        total += len(chunk)
        if total > limit:
            over = (f"the limit of {format_bytes(limit)} for {expected}" if field == "max_file_size"
                    else f"the memory limit of {format_bytes(limit)} for reading it whole")
            raise LimitError(f"holds more than {over}", source=source, limit=field)
    return b"".join(chunks)  # one chunk is returned as it is, without a copy


MAX_NPZ_MEMBERS = 1024
MAX_NPZ_DIRECTORY = MAX_NPZ_MEMBERS * 1024  # bytes of zip directory: 46 an entry, with a name of up to ~1 KiB
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

    The zip's end record is read first (zip_directory_claims), so that a directory of a million
    entries is refused before zipfile builds an object for each. Sizes are read from the directory
    before anything is inflated, so a small archive that would inflate to gigabytes (a zip bomb)
    is refused; reading stops at each member's stated size.
    """
    import io
    import zipfile

    claimed = zip_directory_claims(data)
    if claimed is not None:
        entries, size = claimed
        if entries > MAX_NPZ_MEMBERS:
            raise error(f"holds {entries:,} arrays, over the limit of {MAX_NPZ_MEMBERS:,} (as its zip directory's end "
                        "record says)", source=source)
        if size > MAX_NPZ_DIRECTORY:
            raise error(f"its zip directory is {size:,} bytes, over the {MAX_NPZ_DIRECTORY:,} that "
                        f"{MAX_NPZ_MEMBERS:,} arrays may need", source=source)
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        members = archive.infolist()
    except Exception as err:  # noqa: BLE001  (zipfile raises IndexError, struct.error... on forged directories)
        raise error(f"not a readable .npz archive: {describe(err)}", source=source) from None
    if len(members) > MAX_NPZ_MEMBERS:
        raise error(f"holds {len(members):,} arrays, over the limit of {MAX_NPZ_MEMBERS:,}", source=source)
    inflated = sum(member.file_size for member in members)
    # Held at once while the largest member is read: the file's bytes, the arrays before it, and
    # that member twice (its inflated bytes and the array made from them).
    largest = max((member.file_size for member in members), default=0)
    Limits(max_memory=limit).check_memory(len(data) + inflated + largest, source,
                                          f"its {len(members)} arrays (inflated)")
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


_END = b"PK\x05\x06"  # the end of central directory record
_END64_LOCATOR = b"PK\x06\x07"
_END64 = b"PK\x06\x06"  # the ZIP64 end of central directory record


def zip_directory_claims(data: bytes) -> tuple[int, int] | None:
    """(entries, bytes) of a zip's central directory as its end records state them, or None when
    there is no end record (zipfile then says the file is not a zip).

    The end record is found where zipfile looks: the last 22 bytes, or else the last signature in
    the final 64 KiB (after which an archive comment may follow). When a ZIP64 locator precedes
    it, the ZIP64 record's 64-bit counts replace the 16- and 32-bit ones (0xFFFF and 0xFFFFFFFF
    there mean "see ZIP64"); the record is looked for both just before the locator (where Python's
    zipfile reads it) and where the locator points, and the larger claims are kept.
    """
    import struct

    end = len(data) - 22
    if end >= 0 and data.startswith(_END, end) and data.endswith(b"\0\0"):
        found = end
    else:
        found = data.rfind(_END, max(end - 0xFFFF, 0))
        if found < 0 or found > end:
            return None
    on_disk, entries, size = struct.unpack_from("<8xHHI", data, found)
    entries = max(on_disk, entries)
    locator = found - 20
    if locator >= 0 and data.startswith(_END64_LOCATOR, locator):
        (pointed,) = struct.unpack_from("<8xQ", data, locator)
        records = [start for start in {locator - 56, pointed}
                   if 0 <= start <= len(data) - 56 and data.startswith(_END64, start)]
        if records:
            claims = [struct.unpack_from("<24xQQQ", data, start) for start in records]
            entries = max(max(on_disk64, entries64) for on_disk64, entries64, _ in claims)
            size = max(size64 for _, _, size64 in claims)
    return entries, size


def read_labels(path: str, limits: Limits = DEFAULT_LIMITS, regular_only: bool = False) -> tuple[str, ...]:
    """Class names from a text file, one per line (as torchvision's imagenet_classes.txt): UTF-8,
    blank lines at the end ignored. Names may repeat (ImageNet has two "crane"s); a blank line
    between names, or a control character, is an error naming its line. ``regular_only`` for a
    file named inside another file (read_bytes)."""
    from ..errors import SpecError

    data = read_bytes(path, kind="model", error=SpecError, expected="a text file of class names, one per line",
                      limits=limits, regular_only=regular_only)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise SpecError(f"not UTF-8 text (byte {err.start}); expected class names, one per line",
                        source=path) from None
    lines = [line.strip() for line in text.splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    if not lines:
        raise SpecError("holds no class names; expected one per line", source=path)
    for number, line in enumerate(lines, start=1):
        if not line:
            raise SpecError(f"line {number} is blank; expected one class name per line", source=path)
        if not line.isprintable():
            raise SpecError(f"line {number} holds a control character; expected a class name", source=path)
    return tuple(lines)
