"""Load input -> build network -> run -> trace: what the CLI, the Python API and tests call.

``prepare`` turns a run's options (an image, and kernels with their settings or a model) into an
image ready for a network and the network; ``forward`` runs it; ``predictions`` ranks the classes
of its output. ``Model`` and ``Trace`` (cnncli.api) are the same steps for Python callers.

Errors a caller can cause are CnnError subclasses; an option at fault is named as data
(``UsageError.param``: ``"top"``, ``"color"``), never as a flag: only cnncli.cli knows flags.
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

from .errors import CnnError, ShapeError, UsageError
from .stage import (build_network, check_network_memory, dense_weights, keeps_maps, once, refuse_two_dense,
                    resolve_kernel)

if TYPE_CHECKING:  # numpy, Pillow and the engine load when a run starts, so `cnn --help` stays fast
    from .engine.graph import Network, Step
    from .engine.predictions import Prediction
    from .io.images import LoadedImage
    from .io.input_rule import InputOverrides
    from .io.limits import Limits
    from .io.modelfile import Model

__all__ = ["LayerOptions", "Prepared", "prepare", "forward", "predictions", "ranked", "check_sources",
           "input_files", "load_model_once", "run_model", "model_at_size", "model_input", "model_alpha",
           "build_network", "check_network_memory", "keeps_maps", "with_input_rule", "kernel_input_shape",
           "kernel_color", "DEFAULT_TOP", "KERNEL_ONLY", "INPUT_RULE"]

DEFAULT_TOP = 5  # classes ranked for a model run, unless asked for more or fewer
# From the second image of a process (a batch, the library run again), inputs this large (256 x 256
# gray, 148 x 148 rgb) have the memory freed kept for the next ones (engine.allocator). A single run
# has nothing to reuse it for, and its peak memory stays what the memory estimate bounds; a small
# run would spend more importing ctypes than it saves.
KEEP_MEMORY_FROM = 1 << 16
_forwards = 0  # forward passes this process has run


@dataclass(frozen=True)
class LayerOptions:
    """Everything a run needs to load an image and build a network: the image, and either kernels
    with the conv stage's settings (None: the kernel file's or the default) or a model."""

    image: str
    kernels: Sequence[str] | None  # a list from the CLI; a tuple in the network cache's key
    stride: int | None = None
    padding: str | None = None
    padding_mode: str | None = None
    dilation: int | None = None
    flip: bool | None = None
    activation: str | None = None
    negative_slope: float | None = None
    pool: str | None = None
    pool_size: int | None = None
    pool_stride: int | None = None
    ceil_mode: bool = False
    dense: str | None = None
    dense_random: int | None = None
    seed: int | None = None
    softmax: bool = False
    color: str | None = None
    scale: str | None = None
    resize: int | None = None  # the parts of an input rule, as the CLI gives them (input_rule.input_overrides)
    crop: str | None = None
    mean: str | None = None
    std: str | None = None
    invert: str | None = None  # yes, no or auto (from the border)
    alpha: str | None = None
    dtype: str = "float32"
    model: str | None = None
    labels: str | None = None  # a text file of class names, one per line
    preset: str | None = None  # a named input rule (PRESETS) in place of the model's; the parts above override it
    top: int | None = None
    max_pixels: int | None = None
    max_memory: int | None = None
    max_file_size: int | None = None
    outputs: tuple[str, ...] = ()  # what the caller renders (sinks.output_bytes), for the memory limit

    @property
    def limits(self) -> Limits:
        from .io.limits import Limits

        given = {name: getattr(self, name) for name in ("max_pixels", "max_memory", "max_file_size")}
        return Limits(**{name: value for name, value in given.items() if value is not None})

    def given(self, names: tuple[str, ...]) -> list[str]:
        """Which of these options were given (None and False mean not given)."""
        return [name for name in names if getattr(self, name) not in (None, False, [])]

    @property
    def input_rule(self) -> InputOverrides:
        """The preset and parts of an input rule given, checked (UsageError naming the option)."""
        from .io.input_rule import input_overrides

        return input_overrides(**{name: getattr(self, name) for name in INPUT_RULE})


# The options that describe a kernel run's layers; a model file describes its own.
KERNEL_ONLY = ("kernels", "stride", "padding", "padding_mode", "dilation", "flip", "activation", "negative_slope",
               "pool", "pool_size", "pool_stride", "ceil_mode", "dense", "dense_random", "seed", "softmax")
# The options that make up an input rule: a model's, or a kernel run's image before the kernels.
INPUT_RULE = ("preset", "resize", "crop", "mean", "std", "color", "scale", "invert")


@dataclass(frozen=True, eq=False)
class Prepared:
    """An image ready for a network, the network, the model file it came from (if any), and the
    warnings to give about them."""

    image: LoadedImage
    network: Network
    model: Model | None = None
    warnings: tuple[str, ...] = ()
    labels: tuple[str, ...] = ()  # --labels for a kernel run's classes (a model's are in its labels)

    @property
    def class_labels(self) -> tuple[str, ...]:
        """The names of the output vector's values: --labels, else the model's (none for kernels)."""
        return self.labels or (self.model.labels if self.model is not None else ())


def prepare(options: LayerOptions) -> Prepared:
    """Load the image and build the network, from a model or from kernels and the layer settings.

    Both give a Network; everything after this point is one code path. Raises UsageError naming
    the option at fault for options that do not go together, and CnnError for bad files.
    """
    if options.model is None:
        if options.top is not None and not (options.dense or options.dense_random):
            raise UsageError("needs an output vector of class scores: a --model, or --dense/--dense-random",
                             param="top")
        from .io.input_rule import kernel_reading

        rule = options.input_rule
        image = kernel_input(rule, load_image(options, *kernel_reading(rule), options.alpha or "drop"), options.limits)
        network = build_network(options, image)
        return Prepared(image, network, labels=class_labels(options, network, image.array.shape))
    clashes = options.given(KERNEL_ONLY)
    if clashes:
        raise UsageError("describes a --kernel run's layers; --model brings its own, so leave it out",
                         param=clashes[0])
    model = run_model(options)
    if options.labels is not None:  # the file's names replace the model's, in every view and record
        model = dataclasses.replace(model, labels=class_labels(options, model.network, model.input.shape))
    if options.alpha == "keep":
        raise UsageError(f"keep would add a channel that the model {model.name} does not take; use drop, "
                         "white or black", param="alpha")
    # The network's size is the model's, whatever the image: refuse a run too big before reading it.
    itemsize = 4 if options.dtype == "float32" else 8
    check_network_memory(model.network, model.input.shape, itemsize, options.limits, options.model, options.outputs)
    loaded = load_image(options, model.input.color, model.input.read_scale, options.alpha or model_alpha(model))
    return model_input(model, loaded, options.limits)


def run_model(options: LayerOptions) -> Model:
    """The run's model, read once per process at the size its options give (a crop, a preset: what
    an ONNX graph leaves free), with their input rule in place of its own (``with_input_rule``)."""
    assert options.model is not None  # a model run
    rule = options.input_rule
    return with_input_rule(load_model_once(options.model, options.limits, rule.size), options)


def model_at_size(spec: str, option: str, limits: Limits, crop: str | None, preset: str | None) -> Model:
    """A model read for a command without an image (``option``: ``"cnn summary"``), at the size
    ``crop`` or ``preset`` gives (what an ONNX graph leaves free), which a fixed model's must be.
    Raises UsageError naming the option as ``with_overrides`` does."""
    from .io.input_rule import input_overrides, with_overrides
    from .io.modelfile import load_model

    rule = input_overrides(crop=crop, preset=preset)
    model = load_model(spec, option, limits, rule.size)
    return dataclasses.replace(model, input=with_overrides(model.input, rule, model.name)) if rule else model


def with_input_rule(model: Model, options: LayerOptions) -> Model:
    """The model with the run's preset and parts of an input rule in place of its own rule's fields
    (input_rule.with_overrides); its input shape must fit."""
    from .io.input_rule import with_overrides

    given = options.input_rule
    return dataclasses.replace(model, input=with_overrides(model.input, given, model.name)) if given else model


def kernel_input(rule: InputOverrides, image: LoadedImage, limits: Limits) -> LoadedImage:
    """A kernel run's image, resized, cropped and normalised as the options say (a tensor is as given)."""
    from .io.images import TENSOR_MODE
    from .io.input_rule import kernel_rule

    spec = kernel_rule(rule, image.array.shape) if image.mode != TENSOR_MODE else None
    if spec is None:
        return image
    limits.check_memory(spec.apply_bytes(image.array), image.source,
                        f"preparing it as {spec.size[1]}x{spec.size[0]}")
    return spec.apply(image)


def kernel_color(options: LayerOptions) -> str:
    """The colour a kernel run reads its images in: --color, else the preset's, else gray."""
    from .io.input_rule import kernel_reading

    return kernel_reading(options.input_rule)[0]


def kernel_input_shape(options: LayerOptions, shape: tuple[int, int, int]) -> tuple[int, int, int]:
    """The (C, H, W) a kernel run's network takes from an image read as ``shape`` (resized or cropped)."""
    from .io.input_rule import kernel_rule

    spec = kernel_rule(options.input_rule, shape)
    return shape if spec is None else (shape[0], *spec.size)


def class_labels(options: LayerOptions, network: Network, input_shape: tuple[int, ...]) -> tuple[str, ...]:
    """The names of ``--labels`` (none without it), one per value of the network's output vector."""
    if options.labels is None:
        return ()
    from .io.reading import read_labels

    labels = once(read_labels, options.labels, options.limits)
    out = network.shapes(input_shape)[-1]
    if len(out) != 1:
        raise UsageError(f"names classes, but the network ends in a map of shape {out}, not a vector of class "
                         "scores", param="labels")
    if out[0] != len(labels):
        raise UsageError(f"{options.labels} has {len(labels)} names but the network's output has {out[0]} values; "
                         "expected one name per line per output value", param="labels")
    return labels


def model_alpha(model: Model) -> str:
    """What transparency becomes for a model: paper is white, so a transparent background under dark
    ink must not become ink once inverted; other models drop it."""
    return "white" if model.input.invert else "drop"


def model_input(model: Model, loaded: LoadedImage, limits: Limits) -> Prepared:
    """An image read as the model's input rule says (color, scale, alpha), made the model's input:
    resized, inverted and normalised; with a warning if it looks inverted. A tensor (.npy) is the
    input as given, and must have the model's input shape."""
    from .io.images import TENSOR_MODE

    if loaded.mode == TENSOR_MODE:
        if loaded.array.shape != model.input.shape:
            raise ShapeError(f"holds a tensor of shape {loaded.array.shape}; the model {model.name} takes "
                             f"{model.input.shape} ({model.input.describe()}), and a tensor is used as given",
                             source=loaded.source)
        return Prepared(loaded, model.network, model)
    limits.check_memory(model.input.apply_bytes(loaded.array), loaded.source,
                        f"resizing it to {model.input.size[1]}x{model.input.size[0]}")
    image = model.input.apply(loaded)
    warnings = [f"{image.source}: {warning}" for warning in image.warnings]  # no ink found, several blobs
    looks_inverted = _looks_inverted(model, image)
    return Prepared(image, model.network, model, (*warnings, *([looks_inverted] if looks_inverted else [])))


def input_files(options: LayerOptions, prepared: Prepared | None = None, images: list[str] | None = None) -> list[str]:
    """Every file this run reads (``images`` instead of options.image for a batch), which no output may overwrite."""
    names = [*(images or [options.image]), *(options.kernels or ()), options.dense, options.labels]
    model = prepared.model if prepared is not None else None
    if model is None and options.model is not None:
        model = load_model_once(options.model, options.limits, options.input_rule.size)
    if model is not None:
        names += [str(path) for path in model.paths]
    return [name for name in names if name and name != "-"]


def load_model_once(spec: str, limits: Limits, size: tuple[int, int] | None = None) -> Model:
    """A model file, read once per process however many images a batch runs it on; ``size`` fixes
    what an ONNX graph leaves free (modelfile.load_model)."""
    from .io.modelfile import load_model

    return once(load_model, spec, limits, size=size)


def _looks_inverted(model: Model, image: LoadedImage) -> str | None:
    """A model that inverts expects dark ink on light paper; after inverting, most cells are then low."""
    if model.input.invert is not True or model.input.fit or model.input.normalises:
        return None  # a polarity found from the border, or normalised values, which have no fixed middle
    half = 0.5 if model.input.scale == "unit" else 127.5
    mean = float(image.array.mean())
    if mean <= half:
        return None
    return (f"{image.source}: mostly dark ({mean:.2f} on average once inverted); the model {model.name} expects "
            "dark ink on a light background, so its prediction may be wrong")


def load_image(options: LayerOptions, color: str, scale: str, alpha: str) -> LoadedImage:
    """The run's image (a file, or ``-``: stdin) as a (C, H, W) array of the options' dtype."""
    import numpy as np

    from .io.images import is_tensor_file, read_image, read_tensor
    from .io.shipped import shipped_bytes

    source = "stdin" if options.image == "-" else options.image
    data = shipped_bytes(options.image)  # read by a cluster's client (--ship-bytes), or None
    if options.image == "-" and data is None:
        data = read_stdin(options.limits)
    # stdin is told by its bytes; a file by its name, whoever read it
    if is_tensor_file(source, data if options.image == "-" else None):  # a .npy array: the network's input as given
        for name in options.given((*INPUT_RULE, "alpha")):
            raise UsageError(f"reads pixels of an image file; {source} is a tensor (.npy), used as given",
                             param=name)
        return read_tensor(source, data, dtype=np.float32 if options.dtype == "float32" else np.float64,
                           limits=options.limits)
    return read_image(source, data, color=color, scale=scale, alpha=alpha,  # type: ignore[arg-type]  # str: checked by Click or the model reader
                      dtype=np.float32 if options.dtype == "float32" else np.float64, limits=options.limits)


def read_stdin(limits: Limits) -> bytes:
    """The image piped in on stdin, up to the file-size limit; a closed stdin or a terminal is refused."""
    source = "stdin"
    if sys.stdin is None:
        raise CnnError("is closed (started with <&-); pipe an image in, e.g. `cnn run - -k sobel_x < photo.png`",
                       source=source)
    if sys.stdin.isatty():
        raise CnnError("is a terminal; pipe an image in, e.g. `cnn run - -k sobel_x < photo.png`", source=source)
    from .io.reading import read_stream

    return read_stream(sys.stdin.buffer, source, "image", "an image", limits)


def check_sources(options: LayerOptions) -> int | None:
    """Read the kernels, dense weights, model file and labels a run names, once, before any image:
    a bad one ends a batch then, rather than failing every image the same way. Return the number of
    class scores the network gives, when that is known before an image (else None)."""
    if options.model is not None:
        model = run_model(options)
        class_labels(options, model.network, model.input.shape)
        out = model.network.shapes(model.input.shape)[-1]
        return out[0] if len(out) == 1 else None
    refuse_two_dense(options)
    kernel_color(options)  # the input rule's parts checked before any image; what fits the image, with it
    for spec in options.kernels or ():
        resolve_kernel(spec, options.limits)
    if options.dense is not None:
        return dense_weights(options.dense, options.limits)[0].shape[0]
    return options.dense_random


def forward(prepared: Prepared, keep_maps: bool = True) -> tuple[list[Step], list[str]]:
    """Run the network on the image; return every step (with ``keep_maps`` False, the input and the
    outputs only: the other maps are let go as the graph runs) and the warnings to give (the
    prepared image's, and one if a map overflowed)."""
    from .io.trace import nonfinite_warning

    global _forwards
    _forwards += 1
    if _forwards > 1 and prepared.image.array.size >= KEEP_MEMORY_FROM:
        from .engine.allocator import keep_freed_memory

        keep_freed_memory()
    steps = prepared.network.forward(prepared.image.array, prepared.image.channel_names, keep_maps)
    overflow = nonfinite_warning(steps)  # named with its image: in a batch, warnings come from many
    doubt = None
    model = prepared.model
    if model is not None and model.input.fit and not prepared.image.warnings and steps[-1].output.ndim == 1:
        best = ranked(prepared, steps, 1)[0]  # a model reading one drawn symbol: is it sure? (one note a picture)
        doubt = model.input.doubt(best.label, best.probability)
    return steps, [*prepared.warnings, *(f"{prepared.image.source}: {note}" for note in (overflow, doubt) if note)]


def predictions(options: LayerOptions, prepared: Prepared, steps: Sequence[Step]) -> list[Prediction] | None:
    """The top classes of the output vector: always for a model, with ``top`` for a kernel run.

    Raises UsageError (param ``"top"``) when ``top`` is given and the network ends in a map.
    """
    if prepared.model is None and options.top is None:
        return None
    output = steps[-1].output
    if output.ndim != 1:
        if options.top is None:
            return None  # a model whose output is a map: nothing to rank
        raise UsageError(f"the network ends in a map of shape {output.shape}, not a vector of class scores",
                         param="top")
    return ranked(prepared, steps, options.top or DEFAULT_TOP)


def ranked(prepared: Prepared, steps: Sequence[Step], k: int | None = None) -> list[Prediction]:
    """The ``k`` (default: every) most probable classes of a vector output, best first; [] for a map.

    Labels are the model's, or the class indices as text; a network that does not end in softmax
    has its output taken as logits (probabilities by a softmax).
    """
    from .engine.layers import Softmax
    from .engine.predictions import top_k

    output = steps[-1].output
    if output.ndim != 1:
        return []
    labels = prepared.class_labels
    is_probability = isinstance(prepared.network.layers[-1], Softmax)
    return top_k(output, labels, k or output.size, is_probability)
