"""Tensors stored beside the .onnx file (``data_location`` EXTERNAL), read from the model's own folder only.

ONNX's external data (onnx docs/ExternalData.md) names a file by ``location``, relative to the
model's folder, and a byte range in it by ``offset`` and ``length``. A file from anywhere could
name /etc/passwd, ../../secret or a link that leads out (docs/ExternalDataSecurity.md), so a
location is refused when it is absolute, when a part of it is ``..``, or when it resolves, links
followed, outside the folder; and what it names must be a regular file. The model and its data
files count together against the ONNX size limit (``Limits.read_limit("onnx")``): their bytes are
all held while the tensors are made. Each file is read once, whole, and sliced.

``checksum`` is accepted and not verified, as onnx and ONNX Runtime do; ``basepath``, which
onnx's writer may add, is ignored: the folder is always the model's.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from ...errors import CnnError, LimitError, SpecError
from ..limits import Limits, format_bytes
from ..reading import read_bytes

KEYS = ("location", "offset", "length", "checksum", "basepath")
# Bits a value of each TensorProto data type takes in raw little-endian bytes (onnx.proto); STRING (8)
# has no raw form and cannot be stored externally.
BITS = {1: 32, 2: 8, 3: 8, 4: 16, 5: 16, 6: 32, 7: 64, 9: 8, 10: 16, 11: 64, 12: 32, 13: 64, 14: 64, 15: 128,
        16: 16, 17: 8, 18: 8, 19: 8, 20: 8, 21: 4, 22: 4, 23: 4, 24: 8, 25: 2, 26: 2}


class ExternalData:
    """The data files of one model: where they may be (``folder``, None when the model came as bytes
    alone), the limits, and how many bytes the model and the files read so far hold."""

    def __init__(self, folder: Path | None, source: str, limits: Limits, model_bytes: int) -> None:
        self.folder = folder
        self.source = source
        self.limits = limits
        self.held = model_bytes
        self.files: dict[str, bytes] = {}  # resolved path -> its bytes
        self.paths: list[Path] = []  # the files read, as the model names them (no output may overwrite them)

    def fail(self, where: str, message: str) -> SpecError:
        return SpecError(f"{where}: {message}", source=self.source)

    def inline(self, tensor: Any, where: str) -> Any:
        """A copy of the external ``tensor`` with its bytes in ``raw_data``, after checking them
        against its dims and data type; SpecError (LimitError) naming ``where`` for anything else."""
        from onnx import TensorProto

        fields = self._fields(tensor, where)
        count = _values(tensor, where, self.source)
        bits = BITS.get(tensor.data_type)
        if bits is None:
            raise self.fail(where, f"data type {tensor.data_type} cannot be stored as external data "
                                   "(raw bytes); expected a numeric type")
        need = (count * bits + 7) // 8
        location = fields["location"]
        blob = self._file(location, where)
        offset = _whole(fields.get("offset", "0"), "offset", where, self)
        if offset > len(blob):
            raise self.fail(where, f"external data offset {offset:,} is past the end of {location!r} "
                                   f"({len(blob):,} bytes)")
        length = len(blob) - offset if "length" not in fields else _whole(fields["length"], "length", where, self)
        if offset + length > len(blob):
            raise self.fail(where, f"external data length {length:,} from offset {offset:,} runs past the end of "
                                   f"{location!r} ({len(blob):,} bytes)")
        if length != need:
            dims = tuple(int(d) for d in tensor.dims)
            kind = TensorProto.DataType.Name(tensor.data_type).lower()
            raise self.fail(where, f"external data in {location!r} holds {length:,} bytes; its dims {dims} of "
                                   f"{kind} need {need:,}")
        copy = TensorProto()
        copy.name = tensor.name
        copy.data_type = tensor.data_type
        copy.dims.extend(tensor.dims)
        copy.raw_data = blob[offset:offset + length]
        return copy

    def _fields(self, tensor: Any, where: str) -> dict[str, str]:
        fields: dict[str, str] = {}
        for entry in tensor.external_data:
            if not (isinstance(entry.key, str) and isinstance(entry.value, str)):  # protobuf's bytes: not UTF-8
                raise self.fail(where, "external_data holds text that is not valid UTF-8")
            if entry.key not in KEYS:
                raise self.fail(where, f"external_data key {entry.key[:40]!r} is not one of {', '.join(KEYS)}")
            if entry.key in fields:
                raise self.fail(where, f"external_data gives {entry.key!r} twice")
            fields[entry.key] = entry.value
        if not fields.get("location"):
            raise self.fail(where, "is stored as external data but names no file; expected external_data with "
                                   "a 'location'")
        return fields

    def _file(self, location: str, where: str) -> bytes:
        """The bytes of the data file at ``location``, read once, after the checks that keep it inside
        the model's folder and the model's files within the limit."""
        if self.folder is None:
            raise self.fail(where, f"is stored in the external data file {location!r}, which cnn reads only beside "
                                   "a model file (the model came without its folder)")
        shown = repr(location[:200])
        if "\0" in location:
            raise self.fail(where, f"external data location {shown} holds a NUL character; expected a file name")
        if location.startswith(("/", "\\")) or os.path.isabs(location) or location[1:3] in (":/", ":\\"):
            raise self.fail(where, f"external data location {shown} is an absolute path; expected a file inside "
                                   "the model's folder")
        if ".." in location.replace("\\", "/").split("/"):
            raise self.fail(where, f"external data location {shown} climbs out with '..'; expected a file inside "
                                   "the model's folder")
        path = self.folder / location
        try:
            real = os.path.realpath(path)
            base = os.path.realpath(self.folder)
        except (OSError, ValueError) as err:
            raise self.fail(where, f"external data location {shown} cannot be resolved: {err}") from None
        if os.path.commonpath([real, base]) != base:
            raise self.fail(where, f"external data location {shown} is a symbolic link (or passes through one) "
                                   "that leads outside the model's folder; expected a file inside it")
        if real in self.files:
            return self.files[real]
        limit, field = self.limits.read_limit("onnx")
        try:
            size = os.stat(real).st_size
        except OSError:
            size = 0  # read_bytes says why it cannot be read
        if self.held + size > limit:
            raise self._over(where, location, self.held + size, limit, field)
        try:
            blob = read_bytes(real, kind="onnx", error=SpecError, expected="an ONNX external data file",
                              limits=self.limits, regular_only=True)  # never a FIFO or a device
        except CnnError as err:
            if isinstance(err, LimitError):
                raise LimitError(f"{where}: external data file {shown}: {err.message}", source=self.source,
                                 limit=err.limit) from None
            raise self.fail(where, f"external data file {shown}: {err.message}") from None
        if self.held + len(blob) > limit:  # it grew after the check
            raise self._over(where, location, self.held + len(blob), limit, field)
        self.held += len(blob)
        self.files[real] = blob
        self.paths.append(path)
        return blob

    def _over(self, where: str, location: str, total: int, limit: int, field: str) -> LimitError:
        what = "the limit" if field == "max_file_size" else "what the memory limit leaves"
        return LimitError(f"{where}: with its external data file {location[:200]!r} the model comes to "
                          f"{_size(total)}, over {what} ({_size(limit)}) for an ONNX model and its data files",
                          source=self.source, limit=field)


def _size(size: int) -> str:
    """1.5 GiB (1,610,612,736 bytes): exact where the short form rounds."""
    return format_bytes(size) + (f" ({size:,} bytes)" if size >= 1024 else "")


def _whole(text: str, key: str, where: str, external: ExternalData) -> int:
    """An offset or length: a whole number of bytes from 0, written in decimal digits."""
    if not (text.isascii() and text.isdigit()) or len(text) > 19:
        raise external.fail(where, f"external_data {key} {text[:40]!r} is not a whole number of bytes from 0")
    return int(text)


def _values(tensor: Any, where: str, source: str) -> int:
    """How many values ``tensor``'s dims hold; SpecError for a negative dim."""
    dims = [int(d) for d in tensor.dims]
    if any(d < 0 for d in dims):
        raise SpecError(f"{where}: dims {tuple(dims)} hold a negative size", source=source)
    return math.prod(dims)
