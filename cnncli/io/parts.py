"""One image's outputs as parts that a sink writes: rendered when written, in the process that ran
the image, or rendered by a worker process into memory or a spool file and sent to the parent.

Either way a part writes itself through a ``write(bytes)`` callable, in pieces, so that the text of
a big map or a stack of arrays is never held whole: a worker's output of more than SPOOL_BYTES
goes to a file in the run's spool folder, which the parent copies to its place and removes.
"""

from __future__ import annotations

import os
from typing import IO, Any, Callable, Sequence

import numpy as np

Write = Callable[[bytes | memoryview], Any]
SPOOL_BYTES = 1 << 20  # a worker's output up to this size travels in memory
COPY_BLOCK = 1 << 20


class Rendered:
    """Output rendered when it is written: ``render(write)``."""

    def __init__(self, render: Callable[[Write], None]) -> None:
        self.render = render

    def write_to(self, write: Write) -> None:
        self.render(write)

    def release(self) -> None:
        pass


class Stored:
    """Bytes rendered by a worker: in memory (``data``), or in a spool file (``path``, ``size``)."""

    __slots__ = ("data", "path")

    def __init__(self, data: bytes | None = None, path: str | None = None) -> None:
        self.data, self.path = data, path

    def write_to(self, write: Write) -> None:
        if self.path is None:
            assert self.data is not None  # one of the two is always given
            write(self.data)
            return
        with open(self.path, "rb") as stream:
            while block := stream.read(COPY_BLOCK):
                write(block)

    def release(self) -> None:
        if self.path is not None:
            try:
                os.unlink(self.path)
            except OSError:
                pass


class ArrayPart:
    """An array written as a whole .npy file (``write_to``), or as its bytes alone (``write_data``)
    for a sink that stacks arrays under one header."""

    def __init__(self, array: np.ndarray) -> None:
        self.array = np.ascontiguousarray(array)
        self.shape, self.dtype = self.array.shape, self.array.dtype

    def write_to(self, write: Write) -> None:
        write_npy_header(write, self.shape, self.dtype)
        self.write_data(write)

    def write_data(self, write: Write) -> None:
        write(self.array.data.cast("B") if self.array.size else b"")  # .data: memoryview(self.array)

    def release(self) -> None:
        pass


class ShippedArray(ArrayPart):
    """An ArrayPart that a worker sent: its shape and dtype, and its bytes stored."""

    def __init__(self, shape: tuple[int, ...], dtype: np.dtype, data: Stored) -> None:
        self.shape, self.dtype, self.data = shape, dtype, data

    def write_data(self, write: Write) -> None:
        self.data.write_to(write)

    def release(self) -> None:
        self.data.release()


class Layers:
    """Every layer's array of one image, by name: what an .npz holds."""

    def __init__(self, items: Sequence[tuple[str, ArrayPart]]) -> None:
        self.items = list(items)

    def release(self) -> None:
        for _, part in self.items:
            part.release()


def write_npy_header(write: Write, shape: tuple[int, ...], dtype: np.dtype) -> None:
    """The .npy header of a C-ordered array of ``shape`` and ``dtype`` (format 1.0, or 2.0 if it must)."""
    import io

    buffer = io.BytesIO()
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False, "shape": tuple(shape)}
    try:
        np.lib.format.write_array_header_1_0(buffer, header)
    except ValueError:  # a header over 64 KiB: only format 2.0 holds it
        buffer = io.BytesIO()
        np.lib.format.write_array_header_2_0(buffer, header)
    write(buffer.getvalue())


class Spool:
    """Renders parts in a worker: into memory up to SPOOL_BYTES, then into a file in ``folder``."""

    def __init__(self, folder: str, threshold: int = SPOOL_BYTES) -> None:
        self.folder, self.threshold = folder, threshold

    def capture(self, render: Callable[[Write], None]) -> Stored:
        pieces: list[bytes] = []
        size = 0
        file: IO[bytes] | None = None

        def write(data: bytes | memoryview) -> None:
            nonlocal size, file
            if file is not None:
                file.write(data)
            else:
                pieces.append(bytes(data))
            size += len(memoryview(data).cast("B"))
            if file is None and size > self.threshold:
                import tempfile

                file = tempfile.NamedTemporaryFile(dir=self.folder, delete=False)
                file.write(b"".join(pieces))
                pieces.clear()

        try:
            render(write)
        except BaseException:
            if file is not None:
                file.close()
                os.unlink(file.name)
            raise
        if file is None:
            return Stored(data=b"".join(pieces))
        file.close()
        return Stored(path=file.name)

    def ship(self, part: Any) -> Any:
        """``part`` as it can travel to the parent: text and bytes as they are, renderings stored."""
        if isinstance(part, Rendered):
            return self.capture(part.render)
        if isinstance(part, ArrayPart):
            return ShippedArray(part.shape, part.dtype, self.capture(part.write_data))
        if isinstance(part, Layers):
            return Layers([(name, self.ship(item)) for name, item in part.items])
        return part
