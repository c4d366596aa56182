"""Files other than images and kernels: dense weights in, arrays and inspection folders out.

Every output is written to a temporary file beside its destination and renamed into place, so
a failed or interrupted run never leaves a half-written file where a good one is expected.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Callable, Iterable, Sequence

import numpy as np

from . import jsonspec
from .errors import OutputError, SpecError
from .inputs import load_npy, load_npz, read_bytes
from .limits import DEFAULT_LIMITS, Limits
from .trace import TRACE_VERSION, image_record, layer_record

if TYPE_CHECKING:
    from .images import LoadedImage
    from .model import Step



def check_output(path: str | Path, force: bool = False, inputs: Iterable[str | Path] = ()) -> None:
    """Refuse, before any work, an output that is a folder, that exists (unless ``force``) or that
    is one of the run's ``inputs`` under any name or link (``cnn run x.png -o x.png``), even with
    ``force``. Devices and FIFOs (/dev/null, a named pipe) are written in place and always allowed.
    """
    import stat

    source = str(path)
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return
    except OSError as err:
        raise OutputError(f"cannot write: {err.strerror or err}", source=source) from None
    if stat.S_ISDIR(mode):
        raise OutputError("is a folder; expected a file name", source=source)
    if not stat.S_ISREG(mode):
        return
    for name in inputs:
        try:
            same = os.path.samefile(path, name)
        except OSError:  # an input that is not a file: a built-in name, inline JSON, stdin
            same = False
        if same:
            alias = f" (as {name})" if str(name) != source else ""
            raise OutputError(f"is also an input of this run{alias}; write the output elsewhere", source=source)
    if not force:
        raise OutputError("already exists; --force replaces it", source=source)


def write_atomic(path: str | Path, write: Callable[[BinaryIO], None], force: bool = False) -> None:
    """Write a file through ``write(stream)`` so that it is never seen half-written.

    A regular file (or one that does not exist yet) is written to a temporary file beside it and
    moved into place; an existing file is replaced only with ``force``, and a symbolic link has
    its target replaced, not the link. A device or a FIFO (/dev/null, /dev/stdout, a named pipe)
    cannot be renamed over: it is written in place. On any failure, Ctrl-C included, the
    temporary file is removed and the destination is as it was.
    """
    import stat

    source = str(path)
    path = Path(os.path.realpath(path))
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        mode = None
    except OSError as err:
        raise OutputError(f"cannot write: {err.strerror or err}", source=source) from None
    if mode is not None and stat.S_ISDIR(mode):
        raise OutputError("is a folder; expected a file name", source=source)
    if mode is not None and not stat.S_ISREG(mode):
        _write_in_place(path, write, source)
    elif mode is not None and not force:
        raise OutputError("already exists; --force replaces it", source=source)
    else:
        _write_and_rename(path, write, source, None if mode is None else stat.S_IMODE(mode))


def _is_special(path: str | Path) -> bool:
    """True for an existing device, FIFO or socket: written in place, and not named like a file."""
    import stat

    try:
        return not stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False


def _write_in_place(path: Path, write: Callable[[BinaryIO], None], source: str) -> None:
    try:
        with open(path, "wb") as stream:
            write(stream)
    except OSError as err:
        raise OutputError(f"cannot write: {err.strerror or err}", source=source) from None


def _write_and_rename(path: Path, write: Callable[[BinaryIO], None], source: str, mode: int | None) -> None:
    """Write beside ``path`` and move into place: replacing the file of ``mode``, or creating it
    when ``mode`` is None, by a hard link that fails if another process made the file meanwhile."""
    temporary = _stage(path, write, source, mode)
    try:
        if mode is not None:
            os.replace(temporary, path)
        else:
            _create_from(temporary, path)
    except FileExistsError:
        raise OutputError("already exists (made while this run was writing); --force replaces it",
                          source=source) from None
    except OSError as err:
        raise OutputError(f"cannot write: {err.strerror or err}", source=source) from None
    finally:
        Path(temporary).unlink(missing_ok=True)


def _stage(path: Path, write: Callable[[BinaryIO], None], source: str, mode: int | None = None) -> str:
    """Write a hidden temporary file beside ``path``, flushed to disk, and return its name.

    It gets ``mode``, or the mode a new file would get. On any failure, Ctrl-C included, it is
    removed before the error goes on.
    """
    import tempfile  # only runs that write pay for its import

    try:
        handle = tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False)
    except OSError as err:
        raise OutputError(f"cannot write here: {err.strerror or err}", source=source) from None
    try:
        with handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        # A temporary file is private (0600); the result gets the old file's mode, or the umask's.
        os.chmod(handle.name, _default_mode() if mode is None else mode)
        return handle.name
    except BaseException as err:
        Path(handle.name).unlink(missing_ok=True)
        if isinstance(err, OSError):
            raise OutputError(f"cannot write: {err.strerror or err}", source=source) from None
        raise


def _create_from(temporary: str, path: Path) -> None:
    """Give ``temporary``'s content the new name ``path``, failing with FileExistsError if it exists."""
    try:
        os.link(temporary, path)  # atomic, and never replaces
    except FileExistsError:
        raise
    except OSError:  # a file system without hard links
        if path.exists():
            raise FileExistsError(path) from None
        os.replace(temporary, path)


def _default_mode() -> int:
    """0666 less the umask: the mode open() would give a new file."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
    return buffer.getvalue()


def save_npy(path: str | Path, array: np.ndarray, force: bool = False) -> None:
    """Write ``array`` as a .npy file, atomically; ``-`` is standard output (never a terminal).

    An existing file is replaced only with ``force``.
    """
    if str(path) != "-" and Path(path).suffix.lower() != ".npy" and not _is_special(path):
        raise OutputError("expected a file name ending in .npy (the array is written in NumPy's .npy format)",
                          source=str(path))
    write_bytes(path, npy_bytes(array), force, "npy")


def write_bytes(path: str | Path, data: bytes, force: bool = False, what: str = "npy") -> None:
    """Binary output (``what``: npy, npz or png) to a file, atomically, or to standard output for ``-``."""
    import sys

    if str(path) != "-":
        write_atomic(path, lambda stream: stream.write(data), force)
        return
    refuse_terminal_stdout(what)
    sys.stdout.flush()
    _write_all(sys.stdout.buffer, data)
    sys.stdout.flush()


def refuse_terminal_stdout(what: str) -> None:
    """Binary data is never written to a terminal (nor to a closed stdout)."""
    import sys

    if sys.stdout is None or sys.stdout.isatty():
        raise OutputError(f"is a terminal; binary .{what} output needs a file or a pipe, e.g. > out.{what} "
                          "or -o FILE", source="stdout")


def _write_all(stream: BinaryIO, data: bytes) -> None:
    """Write every byte: when a pipe's reader leaves mid-write, the write that was cut short
    reports fewer bytes rather than an error, and only the next one raises BrokenPipeError."""
    view = memoryview(data)
    while view:
        view = view[stream.write(view):]


def save_json(path: str | Path, document: Any, force: bool = False) -> None:
    """Write a JSON document laid out for people (rows of numbers on one line), atomically."""
    text = jsonspec.dumps(document) + "\n"
    write_atomic(path, lambda stream: stream.write(text.encode()), force)


def layer_file_name(step: Step) -> str:
    """``03_conv2.npy``: the index keeps the files in order; a name from a model file is reduced to
    safe characters, so that ``../x`` cannot write outside the folder."""
    import re

    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", step.name).lstrip(".") or "layer"
    return f"{step.index:02d}_{safe}.npy"


def layer_picture_name(step: Step) -> str:
    """``03_conv2.png``: the name of a layer's picture, beside its ``layer_file_name``."""
    return layer_file_name(step)[:-len(".npy")] + ".png"


def save_inspection(directory: str | Path, image: LoadedImage, steps: Sequence[Step], force: bool = False,
                    extras: dict | None = None, inputs: Iterable[str | Path] = (), pictures: bool = True) -> dict:
    """Write one .npy and one .png per layer and DIR/manifest.json listing them; return the manifest.

    A layer's record names its array (``"file": "03_relu1.npy"``) and, with ``pictures``, its
    montage (``"picture": "03_relu1.png"``, see cnncli.pictures.step_picture). Nothing is left
    half-done: every file is first written beside its place as a hidden temporary file, and only
    when all are written are they renamed into place, the manifest last. A folder with an earlier
    inspection, or any file of the same name, is refused unless ``force``; then the files the old
    manifest lists and the new one does not are removed at the end.
    """
    directory = Path(directory)
    source = str(directory)
    manifest_path = directory / "manifest.json"
    if manifest_path.exists() and not force:
        raise OutputError("holds an earlier inspection (manifest.json); --force replaces it", source=source)
    if directory.exists() and not directory.is_dir():
        raise OutputError("is a file; expected a folder for the layer files", source=source)
    names = [layer_file_name(step) for step in steps]
    picture_names = [layer_picture_name(step) for step in steps] if pictures else []
    for name in (*names, *picture_names, "manifest.json"):
        check_output(directory / name, force, inputs)
    stale = [name for name in _listed_files(manifest_path) if name not in names and name not in picture_names]
    created = not directory.exists()
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutputError(f"cannot create the folder: {err.strerror or err}", source=source) from None
    staged: list[tuple[str, Path]] = []
    try:
        layers = []
        for i, (step, name) in enumerate(zip(steps, names)):
            data = npy_bytes(step.output)
            staged.append((_stage(directory / name, lambda stream, data=data: stream.write(data), source),
                           directory / name))
            record = {**layer_record(step), "file": name}
            if pictures:
                from .pictures import png_bytes, step_picture  # Pillow's drawing code only when saving

                png = png_bytes(step_picture(step))
                target = directory / picture_names[i]
                staged.append((_stage(target, lambda stream, png=png: stream.write(png), source), target))
                record["picture"] = picture_names[i]
            layers.append(record)
        manifest = {"format": "cnn-inspect", "version": TRACE_VERSION, "image": image_record(image),
                    "layers": layers, **(extras or {})}
        text = (jsonspec.dumps(manifest) + "\n").encode()
        staged.append((_stage(manifest_path, lambda stream: stream.write(text), source), manifest_path))
        for temporary, target in staged:
            os.replace(temporary, target)
    except BaseException as err:
        for temporary, _ in staged:
            Path(temporary).unlink(missing_ok=True)
        if created:
            _remove_if_empty(directory)
        if isinstance(err, OSError):
            raise OutputError(f"cannot write: {err.strerror or err}", source=source) from None
        raise
    for name in stale:
        (directory / name).unlink(missing_ok=True)
    return manifest


def _remove_if_empty(directory: Path) -> None:
    try:
        directory.rmdir()
    except OSError:
        pass


def clear_single_inspection(directory: str | Path, force: bool) -> None:
    """Make ``directory`` ready for a batch's one folder per image: an earlier single-image
    inspection in it (its manifest and layer files) is refused, or removed with ``force``, so that
    no stale layer is left beside the new folders."""
    manifest = Path(directory) / "manifest.json"
    if not manifest.is_file():
        return
    if not force:
        raise OutputError("holds an earlier inspection; --force replaces it", source=str(directory))
    for name in [*_listed_files(manifest), "manifest.json"]:
        (Path(directory) / name).unlink(missing_ok=True)


def _listed_files(manifest_path: Path) -> list[str]:
    """The layer files an earlier manifest lists: only plain .npy and .png names, so a forged one
    cannot point outside."""
    import json

    try:
        old = json.loads(manifest_path.read_text())
        names = [layer[key] for layer in old["layers"] for key in ("file", "picture") if key in layer]
    except (OSError, ValueError, KeyError, TypeError):
        return []
    return [name for name in names
            if isinstance(name, str) and Path(name).name == name and name.endswith((".npy", ".png"))]


def read_dense_weights(path: str | Path, limits: Limits = DEFAULT_LIMITS) -> tuple[np.ndarray, np.ndarray | None]:
    """Read dense weights (out, in) and an optional bias (out,) from .npy, .npz or .json.

    A .npy holds the weight alone; a 1-D weight (in,) is one output unit, as in the seed tutorial.
    A .npz holds arrays named ``weight`` and optionally ``bias``; a .json holds an array, or an
    object with ``weight`` and optionally ``bias``. Pickled arrays are never loaded.
    """
    path = Path(path)
    source = str(path)
    suffix = path.suffix.lower()
    if suffix not in (".json", ".npy", ".npz"):
        raise SpecError("expected a .npy, .npz or .json file of dense weights", source=source)
    data = read_bytes(path, kind="weights", error=SpecError, expected="a dense weights file", limits=limits)
    try:
        if suffix == ".json":
            weight, bias = _dense_from_json(jsonspec.loads(data, source), source)
        elif suffix == ".npy":
            weight, bias = load_npy(data, source, SpecError), None
        else:
            arrays = load_npz(data, source, SpecError, limits.max_memory)
            if "weight" not in arrays or set(arrays) - {"weight", "bias"}:
                raise SpecError(f"holds {sorted(arrays)}; expected 'weight' and optionally 'bias'", source=source)
            weight, bias = arrays["weight"], arrays.get("bias")
    except SpecError:
        raise
    except (OSError, ValueError, EOFError) as err:
        raise SpecError(f"cannot read the weights: {err}", source=source) from None
    return _checked_dense(weight, bias, source)


def _dense_from_json(document: Any, source: str) -> tuple[np.ndarray, np.ndarray | None]:
    read = jsonspec.Reader(source)
    if isinstance(document, list):
        return read.array(document, "", ndims=(1, 2)), None
    read.object(document, "", ("weight", "bias"), required=("weight",))
    weight = read.array(document["weight"], "weight", ndims=(1, 2))
    bias = read.array(document["bias"], "bias", ndims=(1,)) if "bias" in document else None
    return weight, bias


def _checked_dense(weight: np.ndarray, bias: np.ndarray | None, source: str) -> tuple[np.ndarray, np.ndarray | None]:
    if weight.dtype.kind not in "iuf" or (bias is not None and bias.dtype.kind not in "iuf"):
        raise SpecError(f"weights must be numbers, got {weight.dtype}", source=source)
    if weight.ndim == 1:
        weight = weight[None]
    if weight.ndim != 2 or 0 in weight.shape:
        raise SpecError(f"weight has shape {weight.shape}; expected (out, in)", source=source)
    if bias is not None and bias.shape != (weight.shape[0],):
        raise SpecError(f"bias has shape {bias.shape}; expected ({weight.shape[0]},) for weight {weight.shape}",
                        source=source)
    for name, array in (("weight", weight), ("bias", bias)):
        if array is not None and not np.all(np.isfinite(array)):
            raise SpecError(f"{name} has NaN or infinite values", source=source)
    return weight.astype(np.float64), None if bias is None else bias.astype(np.float64)


def random_dense(out_features: int, in_features: int, seed: int, dtype=np.float64) -> tuple[np.ndarray, np.ndarray]:
    """Random normal weights scaled by 1/sqrt(in_features) (LeCun's rule), and a zero bias, from a seed.

    The seed tutorial draws unscaled standard-normal weights; scaled ones keep the outputs of a
    layer with many inputs in a range where a softmax is not simply one-hot.
    """
    rng = np.random.default_rng(seed)
    weight = rng.standard_normal((out_features, in_features), dtype=dtype) / np.sqrt(in_features, dtype=dtype)
    return weight, np.zeros(out_features, dtype=dtype)
