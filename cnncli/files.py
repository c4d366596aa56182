"""Files other than images and kernels: dense weights in, arrays and inspection folders out.

Every output is written to a temporary file beside its destination and renamed into place, so
a failed or interrupted run never leaves a half-written file where a good one is expected.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Callable, Sequence

import numpy as np

from . import jsonspec
from .errors import OutputError, SpecError
from .inputs import MAX_WEIGHTS_BYTES, load_npy, load_npz, read_bytes
from .trace import TRACE_VERSION, image_record, layer_record

if TYPE_CHECKING:
    from .images import LoadedImage
    from .model import Step



def write_atomic(path: str | Path, write: Callable[[BinaryIO], None]) -> None:
    """Write a file through ``write(stream)`` so that it is never seen half-written.

    A regular file (or one that does not exist yet) is written to a temporary file beside it and
    renamed into place; a symbolic link has its target replaced, not the link. A device or a FIFO
    (/dev/null, /dev/stdout, a named pipe) cannot be renamed over: it is written in place.
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
        os.replace(handle.name, path)
    except BaseException as err:
        Path(handle.name).unlink(missing_ok=True)
        if isinstance(err, OSError):
            raise OutputError(f"cannot write: {err.strerror or err}", source=source) from None
        raise


def _default_mode() -> int:
    """0666 less the umask: the mode open() would give a new file."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
    return buffer.getvalue()


def save_npy(path: str | Path, array: np.ndarray) -> None:
    """Write ``array`` as a .npy file, atomically; ``-`` is standard output (never a terminal)."""
    import sys

    data = npy_bytes(array)
    if str(path) == "-":
        if sys.stdout is None or sys.stdout.isatty():
            raise OutputError("is a terminal; binary .npy output needs a file or a pipe, e.g. -o - > y.npy",
                              source="stdout")
        sys.stdout.flush()
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
        return
    if Path(path).suffix.lower() != ".npy" and not _is_special(path):
        raise OutputError("expected a file name ending in .npy (the array is written in NumPy's .npy format)",
                          source=str(path))
    write_atomic(path, lambda stream: stream.write(data))


def save_json(path: str | Path, document: Any) -> None:
    """Write a JSON document laid out for people (rows of numbers on one line), atomically."""
    text = jsonspec.dumps(document) + "\n"
    write_atomic(path, lambda stream: stream.write(text.encode()))


def save_inspection(directory: str | Path, image: LoadedImage, steps: Sequence[Step], force: bool = False,
                    extras: dict | None = None) -> dict:
    """Write one .npy per layer and DIR/manifest.json (written last) listing them; return the manifest.

    A folder that holds an earlier manifest is refused unless ``force``; then the files that the
    old manifest lists are removed first, so no stale layer is left beside the new ones.
    """
    directory = Path(directory)
    manifest_path = directory / "manifest.json"
    if manifest_path.exists():
        if not force:
            raise OutputError("holds an earlier inspection (manifest.json); --force replaces it", source=str(directory))
        _remove_listed_files(directory, manifest_path)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutputError(f"cannot create the folder: {err.strerror or err}", source=str(directory)) from None
    layers = []
    for step in steps:
        record = layer_record(step)
        record["file"] = f"{step.index:02d}_{step.name}.npy"
        save_npy(directory / record["file"], step.output)
        layers.append(record)
    manifest = {"format": "cnn-inspect", "version": TRACE_VERSION, "image": image_record(image), "layers": layers,
                **(extras or {})}
    save_json(manifest_path, manifest)
    return manifest


def _remove_listed_files(directory: Path, manifest_path: Path) -> None:
    """Remove the layer files an old manifest lists (only plain names inside ``directory``), then it."""
    import json

    try:
        old = json.loads(manifest_path.read_text())
        names = [layer["file"] for layer in old["layers"]]
    except (OSError, ValueError, KeyError, TypeError):
        names = []
    for name in names:
        if isinstance(name, str) and Path(name).name == name and name.endswith(".npy"):
            (directory / name).unlink(missing_ok=True)
    manifest_path.unlink(missing_ok=True)


def read_dense_weights(path: str | Path) -> tuple[np.ndarray, np.ndarray | None]:
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
    data = read_bytes(path, limit=MAX_WEIGHTS_BYTES, error=SpecError, expected="a dense weights file")
    try:
        if suffix == ".json":
            weight, bias = _dense_from_json(jsonspec.loads(data, source), source)
        elif suffix == ".npy":
            weight, bias = load_npy(data, source, SpecError), None
        else:
            arrays = load_npz(data, source, SpecError, MAX_WEIGHTS_BYTES)
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
