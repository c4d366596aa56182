"""The Python API: ``load_model``, ``read_image``, ``Model.run`` -> ``Trace``, ``Model.predict``.

The same steps as ``cnn run`` (cnncli.run), for Python callers: a path or a PIL image is read and
prepared by the model's input rule exactly as the CLI does, so a trace here holds the arrays that
``cnn run IMAGE --model NAME -f json`` prints. Every error a caller can cause is a CnnError
subclass (cnncli.errors) whose message says what was wrong.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Sequence, Union

import numpy as np

from .errors import ShapeError, UsageError
from .io.images import LoadedImage, is_tensor_file, read_tensor
from .io.limits import DEFAULT_LIMITS, Limits
from .run import Prepared, check_network_memory, forward, load_model_once, model_alpha, model_input, ranked

if TYPE_CHECKING:
    from PIL.Image import Image as PILImage

    from .engine.graph import Step
    from .engine.predictions import Prediction
    from .io import modelfile

ImageInput = Union[str, "os.PathLike[str]", "PILImage", np.ndarray]
DTYPES = {"float32": np.float32, "float64": np.float64}


def load_model(name_or_path: str | os.PathLike[str], *, limits: Limits | None = None, preset: str | None = None,
               resize: int | None = None, crop: int | tuple[int, int] | None = None,
               mean: float | Sequence[float] | None = None, std: float | Sequence[float] | None = None,
               color: str | None = None, scale: str | None = None, invert: bool | str | None = None) -> Model:
    """A bundled model by name (``"digits"``; ``cnn models`` lists them), a model JSON file or an
    .onnx file; with the options of ``cnn run --model`` that change how images are prepared.

    Parameters
    ----------
    name_or_path : a bundled model's name, or the path of a model file (format version 1 or 2).
    limits : size limits for the files read (cnncli.Limits); the CLI's defaults if None.
    preset : a named input rule in place of the model's own: ``"imagenet"``.
    resize : the shorter side's length before a centre crop to the model's size (torchvision's Resize).
    crop : the centre (H, W) to cut instead of stretching the picture; it must be the model's size,
        or, for an ONNX graph that leaves its height and width free, it fixes them (as ``preset`` does).
    mean, std : one number or one per channel: (x - mean) / std, applied last.
    color : ``"gray"`` or ``"rgb"``, as the model's channels; scale : ``"unit"`` (0..1) or ``"raw"`` (0..255).
    invert : whether the picture is dark ink on light paper (``True``, ``"yes"``), light ink on dark
        (``False``, ``"no"``), or ``"auto"``: decided from its border; a model that fits the ink
        (``digits``) decides by itself unless told.

    Each given part replaces that field of the model's rule (or the preset's); ``Model.prepare``
    and ``run`` then use it, as the CLI does.

    Raises SpecError for a name that is neither, or a malformed model file; GraphError for layers
    that are not joined into one graph; LimitError for a file over the limits; UsageError naming
    the argument for a part of the input rule that is malformed or does not fit the model.
    """
    from .io.input_rule import input_overrides, with_overrides

    if not isinstance(name_or_path, (str, os.PathLike)):
        raise UsageError(f"name_or_path is of type {type(name_or_path).__name__}; expected a bundled model's name "
                         "or a model file's path", param="name_or_path")
    limits = limits or DEFAULT_LIMITS
    try:  # the core names the argument as data (the CLI shows its flag); here the message names it
        given = input_overrides(preset=preset, resize=resize, crop=crop, mean=mean, std=std, color=color,
                                scale=scale, invert=invert)
        file = load_model_once(os.fspath(name_or_path), limits, given.size)  # the size an ONNX graph leaves free
        if given:
            file = replace(file, input=with_overrides(file.input, given, file.name))
    except UsageError as err:
        raise UsageError(f"{err.param}: {err.message}", param=err.param) from None
    return Model(file, limits)


def read_image(path: str | os.PathLike[str], *, color: str = "gray", scale: str = "raw", alpha: str = "drop",
               dtype: str = "float32", limits: Limits | None = None) -> LoadedImage:
    """An image file as a (C, H, W) array, as ``cnn run IMAGE --kernel ...`` reads it.

    Parameters
    ----------
    color : "gray" (one channel, Pillow's L luma) or "rgb" (three).
    scale : "raw" (0..255; 16-bit images scaled to it) or "unit" (0..1).
    alpha : transparency: "drop" it, composite over "white" or "black", or "keep" it as a channel.
    dtype : "float32" or "float64".

    Returns the image: ``.array`` (C, H, W), ``.notes`` (every conversion made, in words),
    ``.channel_names``, ``.source``, ``.format``, ``.mode``.

    Raises ImageError for a missing, unreadable or unsupported file, LimitError over the limits.
    """
    from .io.images import read_image as read

    for name, value, choices in (("color", color, ("gray", "rgb")), ("scale", scale, ("raw", "unit")),
                                 ("alpha", alpha, ("drop", "white", "black", "keep")), ("dtype", dtype, tuple(DTYPES))):
        if value not in choices:
            raise UsageError(f"{name} is {value!r}; expected one of {', '.join(choices)}", param=name)
    return read(os.fspath(path), color=color, scale=scale, alpha=alpha,  # type: ignore[arg-type]  # checked above
                dtype=DTYPES[dtype], limits=limits or DEFAULT_LIMITS)


class Model:
    """A network with the input rule it was trained with (size, color, scale, invert, normalisation).

    ``file`` is the model file as read (cnncli.io.modelfile.Model); ``network`` runs the layers.
    """

    def __init__(self, file: modelfile.Model, limits: Limits = DEFAULT_LIMITS) -> None:
        self.file = file
        self.limits = limits

    name = property(lambda self: self.file.name, doc="The model's name.")
    labels = property(lambda self: self.file.labels, doc="One label per output class; () if the file has none.")
    network = property(lambda self: self.file.network, doc="The layers (a cnncli.Network).")
    input_shape = property(lambda self: self.file.input.shape, doc="(C, H, W) the network takes.")
    description = property(lambda self: self.file.description, doc="The model file's description.")

    def __repr__(self) -> str:
        return f"<cnncli.Model {self.name!r}: {len(self.network.layers)} layers, input {self.input_shape}>"

    def run(self, image: ImageInput, *, dtype: str = "float32") -> Trace:
        """Run the network on one image and keep every layer's output.

        ``image`` is a path or a PIL image, read and prepared by the model's input rule (resized,
        scaled, inverted, normalised) as ``cnn run IMAGE --model`` does; or a float (C, H, W)
        NumPy array of the model's input shape, taken as the network's input as it is.

        Raises ImageError for an image that cannot be read, ShapeError for an array of another
        shape, UsageError for anything else given as ``image``, LimitError over the limits.
        """
        prepared = self._prepared(image, dtype)
        steps, warnings = forward(prepared)
        return Trace(prepared.image, tuple(steps), ranked(prepared, steps), tuple(warnings), self)

    def prepare(self, image: ImageInput, *, dtype: str = "float32") -> LoadedImage:
        """The image as the network takes it, without running it: ``.array`` (C, H, W) and
        ``.notes``; stack the arrays of several for ``predict``. Raises as ``run`` does."""
        return self._prepared(image, dtype).image

    def _prepared(self, image: ImageInput, dtype: str) -> Prepared:
        if dtype not in DTYPES:
            raise UsageError(f"dtype is {dtype!r}; expected float32 or float64", param="dtype")
        check_network_memory(self.network, self.input_shape, np.dtype(dtype).itemsize, self.limits, self.name)
        if isinstance(image, np.ndarray):
            return Prepared(self._as_input(image, dtype), self.network, self.file)
        return model_input(self.file, self._read(image, dtype), self.limits)

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """The network's output for a batch of prepared inputs, (N, C, H, W) -> (N, ...), at once.

        Inputs must already be as the network takes them (``Model.prepare(image).array`` of each
        image, stacked); no map is kept (``Network.predict``). Raises ShapeError for another shape.
        """
        batch = _float_array(batch, "batch", None)
        if batch.ndim != 4 or batch.shape[1:] != self.input_shape or not len(batch):
            raise ShapeError(f"batch of shape {batch.shape}: expected (N, {', '.join(map(str, self.input_shape))}), "
                             f"N >= 1 inputs of the input shape of the model {self.name}", param="batch")
        return self.network.predict(batch)

    def _read(self, image: Any, dtype: str) -> LoadedImage:
        """A path or a PIL image, read as the model's input rule says (color, scale, alpha)."""
        spec = self.file.input
        if isinstance(image, (str, os.PathLike)) and is_tensor_file(os.fspath(image)):
            return read_tensor(os.fspath(image), dtype=DTYPES[dtype], limits=self.limits)  # used as given
        if isinstance(image, (str, os.PathLike)):
            return read_image(image, color=spec.color, scale=spec.read_scale, alpha=model_alpha(self.file), dtype=dtype,
                              limits=self.limits)
        if _is_pil_image(image):
            return _read_pil(image, spec.color, spec.read_scale, model_alpha(self.file), dtype, self.limits)
        raise UsageError(f"image is of type {type(image).__name__}; expected a path, a PIL image or a float (C, H, W) "
                         "NumPy array", param="image")

    def _as_input(self, array: np.ndarray, dtype: str) -> LoadedImage:
        array = _float_array(array, "image", dtype)
        if array.shape != self.input_shape:
            hint = " (add the channel axis: array[None])" if array.shape == self.input_shape[1:] else ""
            raise ShapeError(f"image array of shape {array.shape}: expected the input shape of the model {self.name}, "
                             f"{self.input_shape}{hint}", param="image")
        names = ("R", "G", "B") if self.file.input.color == "rgb" else ("gray",)
        return LoadedImage(array, "array", "array", "", names, ())


@dataclass(frozen=True, eq=False, repr=False)
class Trace:
    """One forward pass: the input, every layer's output, and the ranked classes.

    ``steps`` are in order, the input first (name ``"input"``); each has ``.name``, ``.type``,
    ``.output`` (the array), ``.inputs`` (the names of the steps it read) and ``.stats`` (min, max,
    mean, std, share of zeros). ``predictions`` ranks every class of a vector output, best first,
    each with ``.label``, ``.index``, ``.probability``, ``.rank`` and ``.score``; it is empty when the
    network ends in a map. Labels are the model's, or the class indices as text.
    """

    image: LoadedImage  # the network's input, as prepared: .array (C, H, W), .notes, .source
    steps: tuple[Step, ...]
    predictions: list[Prediction]
    warnings: tuple[str, ...]  # what the CLI would warn about: an image that looks inverted, overflow
    model: Model

    @property
    def maps(self) -> dict[str, np.ndarray]:
        """Every step's output by name, the input included."""
        return {step.name: step.output for step in self.steps}

    @property
    def output(self) -> np.ndarray:
        """The last layer's output."""
        return self.steps[-1].output

    @property
    def outputs(self) -> dict[str, np.ndarray]:
        """The network's outputs by name: the last layer's, then those the model file names in
        ``outputs`` (auxiliary heads)."""
        names = (self.steps[-1].name, *self.model.network.outputs)
        maps = self.maps
        return {name: maps[name] for name in dict.fromkeys(names)}

    @property
    def notes(self) -> tuple[str, ...]:
        """How the image was read and prepared (resized, inverted, normalised), in words."""
        return self.image.notes

    def __repr__(self) -> str:
        best = f", best {self.predictions[0].label!r}" if self.predictions else ""
        return f"<cnncli.Trace of {self.image.source}: {len(self.steps) - 1} layers, output {self.output.shape}{best}>"


def _float_array(array: Any, what: str, dtype: str | None) -> np.ndarray:
    """A real float array (cast to ``dtype`` if given); anything else is a clear error, not a cast
    that would silently change what the values mean (0..255 integers are not the network's input)."""
    array = np.asarray(array)
    if array.dtype.kind != "f":
        raise UsageError(f"{what} holds {array.dtype} values; expected floats, prepared as the network takes them "
                         "(Model.run on a path or a PIL image prepares them)", param=what)
    if not np.all(np.isfinite(array)):  # as images with such pixels are refused
        raise UsageError(f"{what} holds NaN or infinite values; expected finite numbers", param=what)
    return np.ascontiguousarray(array, dtype=DTYPES[dtype] if dtype else None)


def _is_pil_image(image: Any) -> bool:
    return type(image).__module__.startswith("PIL.") and hasattr(image, "save") and hasattr(image, "mode")


LOSSLESS_PNG_MODES = ("1", "L", "LA", "P", "RGB", "RGBA")  # the rest (I;16, I, F, CMYK) go through TIFF


def _read_pil(image: PILImage, color: str, scale: str, alpha: str, dtype: str, limits: Limits) -> LoadedImage:
    """A PIL image, read by the same code as a file: stored losslessly in memory, then decoded."""
    from .io.images import read_image as read

    kind = "PNG" if image.mode in LOSSLESS_PNG_MODES else "TIFF"
    buffer = io.BytesIO()
    try:
        image.save(buffer, format=kind)
    except (OSError, ValueError) as err:
        raise UsageError(f"a PIL image of mode {image.mode} cannot be read: {err}", param="image") from None
    # str: a model's rule, checked when it was read
    loaded = read("PIL image", buffer.getvalue(), color=color, scale=scale, alpha=alpha,  # type: ignore[arg-type]
                  dtype=DTYPES[dtype], limits=limits)
    return replace(loaded, format=image.format or "PIL", mode=image.mode)
