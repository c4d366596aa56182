"""Files other than images and kernels: dense weights in, arrays and inspection folders out.

Every output is written to a temporary file beside its destination and renamed into place, so
a failed or interrupted run never leaves a half-written file where a good one is expected.
"""

from __future__ import annotations

import functools
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Callable, Sequence

import numpy as np

from . import jsonspec
from ..errors import OutputError, SpecError
from .reading import load_npy, load_npz, read_bytes
from .limits import DEFAULT_LIMITS, Limits
from .jsontext import jsonable
from .targets import (NO_INPUTS, InputSet, check_output, create_from, default_mode, is_special,
                      refuse_terminal_stdout, temporary_beside, unwritable, write_atomic)
from .trace import INSPECT_FORMAT, inspect_document, layer_records

if TYPE_CHECKING:
    from .images import LoadedImage
    from ..engine.graph import Step



def save_npy(path: str | Path, array: np.ndarray, force: bool = False) -> None:
    """Write ``array`` as a .npy file, atomically; ``-`` is standard output (never a terminal).

    An existing file is replaced only with ``force``.
    """
    if str(path) != "-" and Path(path).suffix.lower() != ".npy" and not is_special(path):
        raise OutputError("expected a file name ending in .npy (the array is written in NumPy's .npy format)",
                          source=str(path))
    if str(path) == "-":
        refuse_terminal_stdout("npy")
    from .sinks import target

    to = target(str(path), force)
    try:
        write_npy(to.stream, array)
    except BaseException:
        to.discard()
        raise
    to.commit()


def save_bytes(path: str | Path, data: bytes, kind: str, force: bool = False) -> None:
    """Write ``data`` (a whole binary file of ``kind``, such as onnx) atomically; ``-`` is standard
    output (never a terminal). An existing file is replaced only with ``force``."""
    if str(path) == "-":
        refuse_terminal_stdout(kind)
    from .sinks import target

    to = target(str(path), force)
    try:
        to.stream.write(data)
    except BaseException:
        to.discard()
        raise
    to.commit()


def save_json(path: str | Path, document: Any, force: bool = False) -> None:
    """Write a JSON document laid out for people (rows of numbers on one line), atomically."""
    text = jsonspec.dumps(document) + "\n"
    write_atomic(path, lambda stream: stream.write(text.encode()), force)


def save_png(path: str | Path, data: bytes, force: bool = False) -> None:
    """Write a picture's PNG bytes (cnncli.views.pictures draws them), atomically
    (``targets.write_atomic``).

    The name must end in .png (a device or FIFO is written as it is). An existing file is replaced
    only with ``force``. Raises OutputError.
    """
    if Path(path).suffix.lower() != ".png" and not is_special(path):
        raise OutputError("expected a file name ending in .png (the picture is written as PNG)", source=str(path))
    write_atomic(path, lambda stream: stream.write(data), force)


def layer_file_name(step: Step) -> str:
    """``03_conv2.npy``: the index keeps the files in order; a name from a model file is reduced to
    safe characters, so that ``../x`` cannot write outside the folder."""
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", step.name).lstrip(".") or "layer"
    return f"{step.index:02d}_{safe}.npy"


def layer_picture_name(step: Step) -> str:
    """``03_conv2.png``: the name of a layer's picture, beside its ``layer_file_name``."""
    return layer_file_name(step)[:-len(".npy")] + ".png"


def save_inspection(directory: str | Path, image: LoadedImage, steps: Sequence[Step], force: bool = False,
                    extras: dict | None = None, inputs: InputSet = NO_INPUTS,
                    picture: Callable[[Step], bytes] | None = None, timing: bool = False,
                    limits: Limits = DEFAULT_LIMITS) -> dict:
    """Write one .npy (and one .png) per layer and DIR/manifest.json listing them; return the manifest.

    A layer's record (``trace.layer_records``) names its array (``"file": "03_relu1.npy"``) and,
    given ``picture`` (a step's PNG bytes, e.g. cnncli.views.pictures.step_pngs), its montage
    (``"picture": "03_relu1.png"``). Nothing is left
    half-done: every file is first written beside its place as a hidden temporary file, and only
    when all are written are they moved into place, the manifest last. A new name is linked into
    place, so that if another run made it meanwhile this one stops and takes back what it placed.
    A folder with an earlier inspection, or any file of the same name, is refused unless
    ``force``; then the layer files the old manifest lists and the new one does not are removed
    (only files named as this tool names them, never one of the run's ``inputs``).
    """
    directory = Path(directory)
    source = str(directory)
    manifest_path = directory / "manifest.json"
    if manifest_path.exists() and not force:
        raise OutputError("holds an earlier inspection (manifest.json); --force replaces it", source=source)
    if directory.exists() and not directory.is_dir():
        raise OutputError("is a file; expected a folder for the layer files", source=source)
    names = [layer_file_name(step) for step in steps]
    picture_names = [layer_picture_name(step) for step in steps] if picture is not None else []
    for name in (*names, *picture_names, "manifest.json"):
        check_output(directory / name, force, inputs, special=False)
    stale = {name: digest for name, digest in _listed_files(manifest_path, manifest_limit(limits)).items()
             if name not in names and name not in picture_names}
    created = not directory.exists()
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutputError(f"cannot create the folder: {err.strerror or err}", source=source) from None
    staged: list[tuple[str, Path]] = []
    written: dict[str, str] = {}  # file name -> its SHA-256, so that a later --force knows its own files
    try:
        layers = layer_records(steps, timing)
        for i, (step, name, record) in enumerate(zip(steps, names, layers)):
            staged.append((_stage(directory / name, functools.partial(_write_map, step.output), source, written),
                           directory / name))
            record["file"] = name
            if picture is not None:
                png = picture(step)
                target = directory / picture_names[i]
                staged.append((_stage(target, functools.partial(_write_bytes, png), source, written), target))
                record["picture"] = picture_names[i]
        manifest = {**inspect_document(image, layers, extras), "sha256": written}
        text = (jsonspec.dumps(jsonable(manifest)) + "\n").encode()
        staged.append((_stage(manifest_path, functools.partial(_write_bytes, text), source), manifest_path))
        _place_all(staged, force, inputs, source)
    except BaseException as err:
        for temporary, _ in staged:
            Path(temporary).unlink(missing_ok=True)
        if created:
            _remove_if_empty(directory)
        if isinstance(err, OSError):
            raise OutputError(f"cannot write: {err.strerror or err}", source=source) from None
        raise
    for name, digest in stale.items():
        _remove_own(directory / name, digest, inputs)
    return manifest


def write_npy(stream: Any, array: np.ndarray) -> None:  # any object with write(bytes)
    """``array`` in NumPy's .npy format, written to ``stream`` without a copy of its bytes in memory."""
    np.lib.format.write_array(stream, np.ascontiguousarray(array), allow_pickle=False)


def _write_map(array: np.ndarray, stream: Any) -> None:
    write_npy(stream, array)


def _write_bytes(data: bytes, stream: Any) -> None:
    stream.write(data)


class _Hashing:
    """A stream that also feeds what is written to a SHA-256."""

    def __init__(self, stream: BinaryIO) -> None:
        import hashlib

        self.stream, self.digest = stream, hashlib.sha256()

    def write(self, data) -> int:
        self.digest.update(data)
        return self.stream.write(data)


def _stage(path: Path, write: Callable[[Any], object], source: str, digests: dict[str, str] | None = None) -> str:
    """Write a hidden temporary file beside ``path``, flushed to disk, and return its name (removed
    again on any failure, Ctrl-C included); its SHA-256 goes in ``digests`` under its name."""
    try:
        handle = temporary_beside(path)
    except OSError as err:
        raise OutputError(unwritable("cannot write here", err, path), source=source) from None
    try:
        with handle:
            hashing = _Hashing(handle)
            write(hashing)
            if digests is not None:
                digests[path.name] = hashing.digest.hexdigest()
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(handle.name, default_mode())
        return handle.name
    except BaseException as err:
        Path(handle.name).unlink(missing_ok=True)
        if isinstance(err, OSError):
            raise OutputError(f"cannot write: {err.strerror or err}", source=source) from None
        raise


def _place_all(staged: list[tuple[str, Path]], force: bool, inputs: InputSet, source: str) -> None:
    """Move every staged file into place, in order. A new name is linked, failing if it appeared
    meanwhile (another run saving into the same folder); then the files this call placed are
    taken back, so two runs never both report a whole inspection."""
    placed: list[tuple[Path, int]] = []
    try:
        for temporary, target in staged:
            try:
                status = os.stat(target)
            except FileNotFoundError:
                status = None
            if status is None:
                create_from(temporary, target)
                placed.append((target, os.stat(target).st_ino))
                Path(temporary).unlink(missing_ok=True)  # a link made the new name; the temporary one goes
                continue
            if inputs.holding(status) is not None or not force:
                raise OutputError(f"{target.name} appeared while this run was writing (another run saving here?); "
                                  "nothing was saved", source=source)
            os.replace(temporary, target)
    except BaseException:
        for target, inode in placed:
            try:
                if os.lstat(target).st_ino == inode:
                    target.unlink()
            except OSError:
                pass
        raise


def _remove_own(path: Path, digest: str, inputs: InputSet) -> None:
    """Remove a file an earlier inspection wrote: a regular file (not a link), never an input, and
    only while its content is what that inspection's manifest says it wrote (its SHA-256)."""
    import hashlib
    import stat

    try:
        status = os.lstat(path)
        if not stat.S_ISREG(status.st_mode) or inputs.holding(status) is not None:
            return
        sha = hashlib.sha256()
        with open(path, "rb") as stream:
            while block := stream.read(1 << 20):
                sha.update(block)
        if sha.hexdigest() == digest:
            path.unlink()
    except OSError:
        pass


def _remove_if_empty(directory: Path) -> None:
    try:
        directory.rmdir()
    except OSError:
        pass


def clear_single_inspection(directory: str | Path, force: bool, inputs: InputSet = NO_INPUTS,
                            remove: bool = True, limits: Limits = DEFAULT_LIMITS) -> None:
    """Make ``directory`` ready for a batch's one folder per image: an earlier single-image
    inspection in it (its manifest and layer files) is refused, or with ``force`` removed (when
    ``remove``: after the batch has saved something), so that no stale layer is left beside the
    new folders. Only this tool's files go, never an input."""
    manifest = Path(directory) / "manifest.json"
    if not manifest.is_file():
        return
    if not force:
        raise OutputError("holds an earlier inspection; --force replaces it", source=str(directory))
    if not remove:
        return
    for name, digest in _listed_files(manifest, manifest_limit(limits)).items():
        _remove_own(Path(directory) / name, digest, inputs)
    manifest.unlink(missing_ok=True)


def manifest_limit(limits: Limits) -> int:
    """How much of an earlier manifest.json is read: what the memory limit leaves for parsing JSON."""
    return min(MAX_MANIFEST_BYTES, limits.read_limit("model")[0])


MAX_MANIFEST_BYTES = 64 << 20  # 10,000 layers' records take about 5 MB
MAX_LISTED_FILES = 2 * 10_000 + 1  # a .npy and a .png for each of a model's layers at most
LAYER_FILE = re.compile(r"[0-9]{2,}_[A-Za-z0-9_.-]+\.(?:npy|png)")  # as layer_file_name writes them


def _listed_files(manifest_path: Path, limit: int = MAX_MANIFEST_BYTES) -> dict[str, str]:
    """The files an earlier manifest of this tool says it wrote, with their SHA-256: only names this
    tool writes (``03_conv2.npy``), so that a crafted manifest cannot name other files or point
    outside, and cannot name a file whose content its author does not know. A manifest that is not
    a regular file (a FIFO, a link to a device), larger than ``limit`` bytes, nested deeper than
    JSON of ours is, or listing more files than a model can have layers is not one of ours."""
    import json
    import stat

    try:
        descriptor = os.open(manifest_path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return {}
    with open(descriptor, "rb") as stream:
        try:
            if not stat.S_ISREG(os.fstat(stream.fileno()).st_mode):
                return {}
            data = stream.read(limit + 1)
        except OSError:
            return {}
    if len(data) > limit:
        return {}
    try:
        old = json.loads(data)
        if old.get("format") != INSPECT_FORMAT or not isinstance(old.get("sha256"), dict):
            return {}
        listed = old["sha256"]
    except (ValueError, TypeError, AttributeError, RecursionError):
        return {}
    if len(listed) > MAX_LISTED_FILES:
        return {}
    return {name: digest for name, digest in listed.items()
            if isinstance(name, str) and LAYER_FILE.fullmatch(name) and isinstance(digest, str)}


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
