"""Where outputs go: files written beside their place and renamed in at the end, never over an input.

A run's inputs are known by device and inode (``InputSet``), so that no output replaces one under
any name, link or /dev/fd path. A new file is linked into place, which fails if another process
made it meanwhile; an existing one is replaced only with ``force``. A device or a FIFO (/dev/null,
a named pipe) cannot be renamed over and is written in place. On any failure, Ctrl-C included, the
temporary file is removed and the destination is as it was.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any, Callable, Iterable

from ..errors import OutputError


class InputSet:
    """The files a run reads, by (device, inode): images, kernels, weights, models, and stdin when read."""

    def __init__(self, names: Iterable[str | Path] = (), stdin: bool = False) -> None:
        self._ids: dict[tuple[int, int], str] = {}
        for name in names:
            self.add(name)
        if stdin:
            try:
                self._remember(os.fstat(0), "stdin")
            except (OSError, ValueError):
                pass

    def add(self, name: str | Path) -> None:
        try:
            self._remember(os.stat(name), str(name))
        except (OSError, ValueError):  # not a file: a built-in name, inline JSON, a missing image
            pass

    def _remember(self, status: os.stat_result, name: str) -> None:
        self._ids.setdefault((status.st_dev, status.st_ino), name)

    def holding(self, status: os.stat_result) -> str | None:
        """The input that is the file of ``status``, if any."""
        return self._ids.get((status.st_dev, status.st_ino))

    def __len__(self) -> int:
        return len(self._ids)


NO_INPUTS = InputSet()


def check_output(path: str | Path, force: bool = False, inputs: InputSet = NO_INPUTS, special: bool = True) -> None:
    """Refuse, before any work, an output that is a folder, that is one of the run's ``inputs``
    under any name or link (even with ``force``), or that exists (unless ``force``). Devices and
    FIFOs (/dev/null, a named pipe) are written in place and allowed, unless they are an input
    or ``special`` is False (files of a folder, which are always renamed into place).
    """
    source = str(path)
    try:
        status = os.stat(path)
    except FileNotFoundError:
        return
    except OSError as err:
        raise OutputError(f"cannot write: {err.strerror or err}", source=source) from None
    except ValueError:  # a NUL byte in the name
        raise OutputError("is not a possible file name", source=repr(source)) from None
    if stat.S_ISDIR(status.st_mode):
        raise OutputError("is a folder; expected a file name", source=source)
    _refuse_input(status, source, inputs)
    if (stat.S_ISREG(status.st_mode) or not special) and not force:
        raise OutputError("already exists; --force replaces it", source=source)


def _refuse_input(status: os.stat_result, source: str, inputs: InputSet) -> None:
    name = inputs.holding(status)
    if name is not None:
        alias = f" (as {name})" if name != source else ""
        raise OutputError(f"is also an input of this run{alias}; write the output elsewhere", source=source)


class StagedFile:
    """A binary output file: written to a hidden temporary file beside ``path``, then moved into
    place by ``commit`` (or removed by ``discard``); a device or a FIFO (/dev/null, a named pipe,
    ``>(gzip > x.gz)``'s /dev/fd path) is written in place.

    A symbolic link has its target replaced, not the link. ``binary`` output is refused for a
    terminal (/dev/tty). Every write error names the file.
    """

    def __init__(self, path: str | Path, force: bool = False, inputs: InputSet = NO_INPUTS,
                 binary: bool = True) -> None:
        self.source = str(path)
        self.force = force
        self.inputs = inputs
        check_output(path, force, inputs)
        self.temporary: str | None = None
        if is_special(path):  # /dev/fd/N of a pipe resolves to "pipe:[...]": open the name as given
            self.path = Path(path)
            self._file = self._open(lambda: open(self.path, "wb"), "cannot write")
            if binary and self._file.isatty():
                self._file.close()
                raise OutputError("is a terminal; binary output needs a file or a pipe", source=self.source)
            self.stream = _Written(self._file, self.source, seekable=False)
            return
        self.path = Path(os.path.realpath(path))
        self._file = self._open(lambda: temporary_beside(self.path), "cannot write here")
        self.temporary = self._file.name
        self.stream = _Written(self._file, self.source, seekable=True)

    def _open(self, opener: Callable[[], Any], what: str) -> Any:
        try:
            return opener()
        except OSError as err:
            raise OutputError(unwritable(what, err, self.path), source=self.source) from None

    def write(self, data: bytes | memoryview) -> None:
        self.stream.write(data)

    def commit(self) -> None:
        """Move the written file into place: a new name is linked (failing if it appeared meanwhile),
        an existing file replaced with ``force``; never over an input."""
        try:
            self._file.flush()
            if self.temporary is None:
                self._file.close()
                return
            os.fsync(self._file.fileno())
            self._file.close()
            try:
                status = os.stat(self.path)
            except FileNotFoundError:
                status = None
            if status is not None:
                _refuse_input(status, self.source, self.inputs)
                if not self.force:
                    raise OutputError("already exists (made while this run was writing); --force replaces it",
                                      source=self.source)
            # A temporary file is private (0600); the result gets the old file's mode, or the umask's.
            os.chmod(self.temporary, default_mode() if status is None else stat.S_IMODE(status.st_mode))
            if status is None:
                create_from(self.temporary, self.path)
            else:
                os.replace(self.temporary, self.path)
        except FileExistsError:
            raise OutputError("already exists (made while this run was writing); --force replaces it",
                              source=self.source) from None
        except BrokenPipeError:
            raise OutputError("the reader of this pipe left", source=self.source) from None
        except OSError as err:
            raise OutputError(f"cannot write: {err.strerror or err}", source=self.source) from None
        finally:
            self.discard()

    def discard(self) -> None:
        """Remove the temporary file (after a commit, only its name is left to remove, if any)."""
        try:
            self._file.close()
        except OSError:
            pass
        if self.temporary is not None:
            Path(self.temporary).unlink(missing_ok=True)
            self.temporary = None


class _Written:
    """A file as writers (zipfile, np.lib.format) see it: a write error names the file, and a
    stream that cannot seek (a FIFO, /dev/null, stdout) says so, so that zipfile never seeks it."""

    def __init__(self, file: Any, source: str, seekable: bool,
                 write: Callable[[bytes | memoryview], Any] | None = None) -> None:
        self._file, self._source, self._seekable = file, source, seekable
        self._write = write or file.write

    def write(self, data: bytes | memoryview) -> int:
        try:
            self._write(data)
        except BrokenPipeError:
            if self._source == "stdout":
                raise  # the reader of stdout left: main() ends quietly
            raise OutputError("the reader of this pipe left", source=self._source) from None
        except OSError as err:
            raise OutputError(f"cannot write: {err.strerror or err}", source=self._source) from None
        return len(memoryview(data).cast("B")) if not isinstance(data, bytes) else len(data)

    def flush(self) -> None:
        self._file.flush()

    def seekable(self) -> bool:
        return self._seekable

    def tell(self) -> int:
        if not self._seekable:
            raise OSError("not seekable")
        return self._file.tell()

    def seek(self, *args) -> int:
        if not self._seekable:
            raise OSError("not seekable")
        return self._file.seek(*args)


MAX_NAME_BYTES = 255  # a file name's length on Linux file systems
_TEMPORARY_EXTRA = len(".") + len(".0123456789ab.tmp")


def unwritable(what: str, err: OSError, path: Path) -> str:
    """Why ``path`` cannot be written, naming its folder when that is what is missing."""
    if isinstance(err, FileNotFoundError) and not path.parent.is_dir():
        return f"{what}: the folder {path.parent} does not exist; create it first"
    return f"{what}: {err.strerror or err}"


def temporary_beside(path: Path):
    """A new hidden file ``.NAME.RANDOM.tmp`` beside ``path`` (NAME cut short if the whole would be
    too long a file name), open for binary writing, mode 0600; its ``name`` is its path. Made with
    O_EXCL, as tempfile does, without the cost of importing it."""
    stem = os.fsdecode(os.fsencode(path.name)[:MAX_NAME_BYTES - _TEMPORARY_EXTRA])
    for _ in range(100):
        name = str(path.parent / f".{stem}.{os.urandom(6).hex()}.tmp")
        try:
            return open(name, "xb", opener=lambda file, flags: os.open(file, flags, 0o600))
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name beside {path}")


def write_atomic(path: str | Path, write: Callable[[_Written], object], force: bool = False,
                 inputs: InputSet = NO_INPUTS) -> None:
    """Write a file through ``write(stream)`` so that it is never seen half-written (see StagedFile)."""
    target = StagedFile(path, force, inputs)
    try:
        write(target.stream)
    except BaseException as err:
        target.discard()
        if isinstance(err, OSError):
            raise OutputError(f"cannot write: {err.strerror or err}", source=str(path)) from None
        raise
    target.commit()


def create_from(temporary: str, path: Path) -> None:
    """Give ``temporary``'s content the new name ``path``, failing with FileExistsError if it exists."""
    try:
        os.link(temporary, path)  # atomic, and never replaces
    except FileExistsError:
        raise
    except OSError:  # a file system without hard links
        if path.exists():
            raise FileExistsError(path) from None
        os.replace(temporary, path)


def default_mode() -> int:
    """0666 less the umask: the mode open() would give a new file."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def is_special(path: str | Path) -> bool:
    """True for an existing device, FIFO or socket: written in place, and not named like a file."""
    try:
        return not stat.S_ISREG(os.stat(path).st_mode)
    except (OSError, ValueError):
        return False


def stdout_closed() -> OutputError:
    """The error for a command started with stdout closed (``>&-``) that has something to write there."""
    return OutputError("is closed (started with >&-); give -o FILE, or leave stdout open", source="stdout")


def refuse_terminal_stdout(what: str) -> None:
    """Binary data is never written to a terminal (nor to a closed stdout)."""
    import sys

    if sys.stdout is None:
        raise stdout_closed()
    if sys.stdout.isatty():
        raise OutputError(f"is a terminal; binary .{what} output needs a file or a pipe, e.g. > out.{what} "
                          "or -o FILE", source="stdout")


def stdout_bytes() -> Callable[[bytes | memoryview], None]:
    """A writer of bytes to standard output (after what its text layer holds); every byte is written:
    when a pipe's reader leaves mid-write, the write cut short reports fewer bytes rather than an
    error, and only the next one raises BrokenPipeError."""
    import sys

    if sys.stdout is None:
        raise stdout_closed()
    sys.stdout.flush()
    buffer = sys.stdout.buffer

    def write(data: bytes | memoryview) -> None:
        view = memoryview(data).cast("B")
        while view:
            view = view[buffer.write(view):]

    return write
