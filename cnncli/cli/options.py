"""Options shared by `cnn run` and `cnn inspect`, and turning them into an image and a Network."""

from __future__ import annotations

import dataclasses
import functools
import inspect
import math
import os
import sys
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Annotated, Any, Callable, Literal, Optional

import typer

from ..errors import CnnError

if TYPE_CHECKING:  # the core is imported when a command runs, so --help and completion stay fast
    from ..io.images import LoadedImage
    from ..io.limits import Limits
    from ..engine.graph import Network, StageOptions
    from ..engine.layers import Dense
    from ..io.modelfile import Model

INPUT, MODEL, CONV, LAYERS, OUTPUT, BATCH, LIMITS = ("Input", "Model", "Convolution", "Layers", "Output",
                                                    "Many images", "Limits")

Image = Annotated[str, typer.Argument(help="Image file (PNG, JPEG, BMP, GIF, TIFF, WebP), or - for stdin.",
                                      show_default=False)]
Images = Annotated[list[str], typer.Argument(metavar="IMAGE...",
    help="Image files (PNG, JPEG, BMP, GIF, TIFF, WebP), folders of them, quoted globs such as 'photos/**/*.jpg', "
         "or - for stdin.", show_default=False)]
Kernels = Annotated[Optional[list[str]], typer.Option(
    "--kernel", "-k", rich_help_panel=CONV, show_default=False,
    help="Built-in name (`cnn kernels`), JSON file, or inline JSON like '[[1,0],[0,1]]'. "
         "Repeat to stack: one output channel each.")]
Stride = Annotated[Optional[int], typer.Option(min=1, rich_help_panel=CONV, show_default="1", help="Conv stride.")]
Padding = Annotated[Optional[str], typer.Option(
    rich_help_panel=CONV, show_default="valid", metavar="MODE|N",
    help="valid, same, full, N, or per axis ROWS,COLS, or per side T,B,L,R (top, bottom, left, right).")]
PaddingMode = Annotated[Optional[Literal["zeros", "reflect", "replicate", "circular"]], typer.Option(
    rich_help_panel=CONV, show_default="zeros", help="What the padding holds, with PyTorch's names.")]
Dilation = Annotated[Optional[int], typer.Option(min=1, rich_help_panel=CONV, show_default="1",
                                                 help="Gap between kernel taps.")]
Flip = Annotated[Optional[bool], typer.Option("--flip/--no-flip", rich_help_panel=CONV, show_default="no-flip",
                                              help="Flip the kernel: true convolution. CNNs correlate.")]
ActivationOpt = Annotated[Optional[Literal["relu", "leaky_relu", "sigmoid", "tanh", "none"]], typer.Option(
    rich_help_panel=LAYERS, show_default="relu", help="Activation after the convolution.")]
Pool = Annotated[Optional[Literal["max", "avg", "none"]], typer.Option(
    rich_help_panel=LAYERS, show_default="max", help="Pooling after the activation.")]
PoolSize = Annotated[Optional[int], typer.Option(min=1, rich_help_panel=LAYERS, show_default="2", help="Pooling window.")]
PoolStride = Annotated[Optional[int], typer.Option(min=1, rich_help_panel=LAYERS, show_default="pool size",
                                                   help="Pooling stride.")]
NegativeSlope = Annotated[Optional[float], typer.Option(rich_help_panel=LAYERS, show_default="0.01",
                                                        help="Slope of leaky_relu below zero.")]
CeilMode = Annotated[bool, typer.Option("--ceil-mode", rich_help_panel=LAYERS,
                                        help="Keep a last, partial pooling window (PyTorch's ceil_mode).")]
DenseFile = Annotated[Optional[str], typer.Option(
    "--dense", rich_help_panel=LAYERS, show_default=False, metavar="FILE",
    help="Add a dense layer with weights (out, in) from a .npy, .npz (weight, bias) or .json file.")]
DenseRandom = Annotated[Optional[int], typer.Option(
    "--dense-random", min=1, rich_help_panel=LAYERS, show_default=False, metavar="UNITS",
    help="Add a dense layer of UNITS units with random weights from --seed, as the seed tutorial does.")]
Seed = Annotated[Optional[int], typer.Option(min=0, max=2**63 - 1, rich_help_panel=LAYERS, show_default="0",
                                             help="Seed of --dense-random's weights.")]
SoftmaxOpt = Annotated[bool, typer.Option("--softmax", rich_help_panel=LAYERS,
                                          help="Softmax after the dense layer.")]
Color = Annotated[Optional[Literal["gray", "rgb"]], typer.Option(
    rich_help_panel=INPUT, show_default="gray; a model sets its own",
    help="gray: one channel, Pillow's L luma. rgb: three channels.")]
Scale = Annotated[Optional[Literal["raw", "unit"]], typer.Option(
    rich_help_panel=INPUT, show_default="raw; a model sets its own",
    help="raw: pixel values 0..255 (16-bit images scaled to it). unit: 0..1.")]
ModelOpt = Annotated[Optional[str], typer.Option(
    "--model", "-m", rich_help_panel=MODEL, show_default=False, metavar="NAME|FILE",
    help="A whole network instead of --kernel: a bundled model (`cnn models`) or a model JSON file. "
         "The image is resized and scaled as the model expects.")]
Top = Annotated[Optional[int], typer.Option(
    "--top", min=1, rich_help_panel=MODEL, show_default="5 with --model",
    help="Show the K most probable classes of the output vector.")]
AlphaOpt = Annotated[Optional[Literal["drop", "white", "black", "keep"]], typer.Option(
    rich_help_panel=INPUT, show_default="drop; white for a model that inverts",
    help="Transparency: drop it, composite over white or black, or keep it as a channel.")]


def _size(text: str) -> int:
    from ..io.limits import parse_size

    try:
        return parse_size(text)
    except ValueError as err:
        raise typer.BadParameter(str(err)) from None


MaxPixels = Annotated[Optional[int], typer.Option(
    min=1, rich_help_panel=LIMITS, show_default="67108864 (8192 x 8192)", metavar="N",
    help="Refuse an image with more pixels, read from its header before decoding.")]
MaxMemory = Annotated[Optional[int], typer.Option(
    parser=_size, rich_help_panel=LIMITS, show_default="4G", metavar="SIZE",
    help="Refuse a run whose arrays would need more memory, estimated from shapes before allocating.")]
MaxFileSize = Annotated[Optional[int], typer.Option(
    parser=_size, rich_help_panel=LIMITS, show_default="256M image, 16M kernel, 64M model, 1G weights",
    metavar="SIZE", help="Refuse a larger input file (image, kernel, model or weights).")]
Dtype = Annotated[Literal["float32", "float64"], typer.Option(rich_help_panel=INPUT, help="Precision of the computation.")]


@dataclass(frozen=True)
class LayerOptions:
    """Everything `cnn run` and `cnn inspect` need to load an image and build a network."""

    image: str
    kernels: list[str] | None
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
    alpha: str | None = None
    dtype: str = "float32"
    model: str | None = None
    top: int | None = None
    max_pixels: int | None = None
    max_memory: int | None = None
    max_file_size: int | None = None
    outputs: tuple[str, ...] = ()  # what the command renders (sinks.output_bytes), not an option

    @property
    def limits(self) -> Limits:
        from ..io.limits import Limits

        given = {name: getattr(self, name) for name in ("max_pixels", "max_memory", "max_file_size")}
        return Limits(**{name: value for name, value in given.items() if value is not None})

    def given(self, names: tuple[str, ...]) -> list[str]:
        """Which of these options were given on the command line (None and False mean not given)."""
        return [name for name in names if getattr(self, name) not in (None, False, [])]


_SHARED = {
    "image": Image, "kernel": Kernels, "stride": Stride, "padding": Padding, "padding_mode": PaddingMode,
    "dilation": Dilation, "flip": Flip, "activation": ActivationOpt, "negative_slope": NegativeSlope,
    "pool": Pool, "pool_size": PoolSize, "pool_stride": PoolStride, "ceil_mode": CeilMode, "dense": DenseFile,
    "dense_random": DenseRandom,
    "seed": Seed, "softmax": SoftmaxOpt, "color": Color, "scale": Scale, "alpha": AlphaOpt, "dtype": Dtype,
    "model": ModelOpt, "top": Top, "max_pixels": MaxPixels, "max_memory": MaxMemory, "max_file_size": MaxFileSize,
}
# The options that describe a --kernel run's layers; a model file describes its own.
KERNEL_ONLY = ("kernels", "stride", "padding", "padding_mode", "dilation", "flip", "activation", "negative_slope",
               "pool", "pool_size", "pool_stride", "ceil_mode", "dense", "dense_random", "seed", "softmax")


def layer_command(command: Callable[..., Any] | None = None, *, many: bool = False) -> Callable[..., Any]:
    """Give a command that takes ``options: LayerOptions`` every shared layer option.

    Typer reads a command's signature; this one shows the shared options (defaults from
    LayerOptions) followed by the command's own, and the command receives them as one LayerOptions.
    With ``many``, the command takes several images: it receives ``images`` (the arguments as
    given) and ``options.image`` is the first of them.
    """
    if command is None:
        return functools.partial(layer_command, many=many)
    defaults = {f.name: f.default for f in fields(LayerOptions)} | {"kernel": None}
    annotations = _SHARED | {"image": Images} if many else _SHARED
    shared = [
        inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=annotation,
                          default=inspect.Parameter.empty if name == "image" else defaults[name])
        for name, annotation in annotations.items()
    ]
    own = [p for p in inspect.signature(command, eval_str=True).parameters.values()
           if p.name not in ("options", "images")]

    @functools.wraps(command)
    def with_options(**arguments: Any) -> Any:
        values = {name: arguments.pop(name) for name in _SHARED}
        values["kernels"] = values.pop("kernel")
        if many:
            arguments["images"] = list(values["image"])
            values["image"] = arguments["images"][0]
        return command(options=LayerOptions(**values), **arguments)

    with_options.__signature__ = inspect.Signature(shared + own)  # type: ignore[attr-defined]
    with_options.__annotations__ = {p.name: p.annotation for p in shared + own}
    return with_options


@dataclass(frozen=True, eq=False)
class Prepared:
    """An image ready for a network, the network, the model file it came from (if any), and the
    warnings to give about them."""

    image: LoadedImage
    network: Network
    model: Model | None = None
    warnings: tuple[str, ...] = ()


def prepare(options: LayerOptions) -> Prepared:
    """Load the image and build the network, from --model or from --kernel and the layer options.

    Both give a Network; everything after this point is one code path.
    """
    if options.model is None:
        if options.top is not None and not (options.dense or options.dense_random):
            raise typer.BadParameter("needs an output vector of class scores: a --model, or --dense/--dense-random",
                                     param_hint="--top")
        image = load_image(options, options.color or "gray", options.scale or "raw", options.alpha or "drop")
        return Prepared(image, build_network(options, image))
    clashes = options.given(KERNEL_ONLY)
    if clashes:
        name = "--" + clashes[0].replace("_", "-").replace("kernels", "kernel")
        raise typer.BadParameter("describes a --kernel run's layers; --model brings its own, so leave it out",
                                 param_hint=name)
    model = load_model_once(options.model, options.limits)
    for name in options.given(("color", "scale")):
        raise typer.BadParameter(f"the model {model.name} sets its input ({model.input.describe()}); leave it out",
                                 param_hint=f"--{name}")
    if options.alpha == "keep":
        raise typer.BadParameter(f"keep would add a channel that the model {model.name} does not take; use drop, "
                                 "white or black", param_hint="--alpha")
    # The network's size is the model's, whatever the image: refuse a run too big before reading it.
    itemsize = 4 if options.dtype == "float32" else 8
    check_network_memory(model.network, model.input.shape, itemsize, options.limits, options.model, options.outputs)
    # Paper is white: a transparent background under dark ink must not become ink once inverted.
    alpha = options.alpha or ("white" if model.input.invert else "drop")
    loaded = load_image(options, model.input.color, model.input.scale, alpha)
    options.limits.check_memory(model.input.apply_bytes(loaded.array), loaded.source,
                                f"resizing it to {model.input.size[1]}x{model.input.size[0]}")
    image = model.input.apply(loaded)
    warning = _looks_inverted(model, image)
    return Prepared(image, model.network, model, (warning,) if warning else ())


def input_files(options: LayerOptions, prepared: Prepared | None = None, images: list[str] | None = None) -> list[str]:
    """Every file this run reads (``images`` instead of options.image for a batch), which no output may overwrite."""
    names = [*(images or [options.image]), *(options.kernels or ()), options.dense]
    model = prepared.model if prepared is not None else None
    if model is None and options.model is not None:
        model = load_model_once(options.model, options.limits)
    if model is not None:
        names += [str(path) for path in model.paths]
    return [name for name in names if name and name != "-"]


def load_model_once(spec: str, limits: Limits) -> Model:
    """A model file, read once per process however many images a batch runs it on."""
    from ..io.modelfile import load_model

    return _once(load_model, spec, limits)


def _once(read: Callable[..., Any], spec: str, limits: Limits) -> Any:
    """``read(spec, limits=limits)``, remembered while the file ``spec`` names (if any) is unchanged."""
    try:
        status = os.stat(spec)
        stamp = (status.st_ino, status.st_size, status.st_mtime_ns)
    except (OSError, ValueError):  # a built-in name, inline JSON, a missing file
        stamp = None
    key = (read.__module__, read.__name__, spec, limits, stamp)
    if key not in _READ:
        if len(_READ) > 64:
            _READ.clear()
        _READ[key] = read(spec, limits=limits)
    return _READ[key]


_READ: dict[tuple, Any] = {}


def _looks_inverted(model: Model, image: LoadedImage) -> str | None:
    """A model that inverts expects dark ink on light paper; after inverting, most cells are then low."""
    if not model.input.invert or model.input.normalises:  # normalised values have no fixed middle
        return None
    half = 0.5 if model.input.scale == "unit" else 127.5
    mean = float(image.array.mean())
    if mean <= half:
        return None
    return (f"{image.source}: mostly dark ({mean:.2f} on average once inverted); the model {model.name} expects "
            "dark ink on a light background, so its prediction may be wrong")


def load_image(options: LayerOptions, color: str, scale: str, alpha: str) -> LoadedImage:
    import numpy as np

    from ..io.images import read_image

    data = None
    source = options.image
    if source == "-":
        source = "stdin"
        if sys.stdin is None:
            raise CnnError("is closed (started with <&-); pipe an image in, e.g. `cnn run - -k sobel_x < photo.png`",
                           source=source)
        if sys.stdin.isatty():
            raise CnnError("is a terminal; pipe an image in, e.g. `cnn run - -k sobel_x < photo.png`", source=source)
        from ..io.reading import read_stream

        data = read_stream(sys.stdin.buffer, source, "image", "an image", options.limits)
    return read_image(source, data, color=color, scale=scale, alpha=alpha,
                      dtype=np.float32 if options.dtype == "float32" else np.float64, limits=options.limits)


def build_network(options: LayerOptions, image: LoadedImage) -> Network:
    """The conv stage from the kernels and options; an option given overrides the kernel file's setting.

    The network depends on the image only through its shape and channel names: a batch of images
    of one shape shares one network (and its memory check), built once.
    """
    key = (dataclasses.replace(options, image="", kernels=tuple(options.kernels or ())), image.array.shape,
           image.array.dtype.str, tuple(image.channel_names))
    if key not in _NETWORKS:
        if len(_NETWORKS) > 64:
            _NETWORKS.clear()
        _NETWORKS[key] = _build_network(options, image)
    return _NETWORKS[key]


_NETWORKS: dict[tuple, Network] = {}


def _build_network(options: LayerOptions, image: LoadedImage) -> Network:
    from ..io.kernels import build_filter_bank, merged_settings
    from ..engine.graph import StageOptions, single_stage

    if not options.kernels:
        raise typer.BadParameter("give at least one kernel, e.g. --kernel sobel_x (`cnn kernels` lists them), "
                                 "or a whole network with --model (`cnn models` lists them)", param_hint="--kernel")
    _refuse_unused(options)
    kernels = [_resolve_kernel(spec, options.limits) for spec in options.kernels]
    bank = build_filter_bank(kernels, image.channel_names)
    settings = merged_settings(kernels)
    given = {"stride": options.stride, "dilation": options.dilation, "padding_mode": options.padding_mode,
             "flip": options.flip, "padding": None if options.padding is None else parse_padding(options.padding)}
    settings.update({key: value for key, value in given.items() if value is not None})
    stage = StageOptions(
        stride=_pair(settings.get("stride", 1)), padding=settings.get("padding", "valid"),
        padding_mode=settings.get("padding_mode", "zeros"), dilation=_pair(settings.get("dilation", 1)),
        flip=settings.get("flip", False), activation=options.activation or "relu",
        negative_slope=0.01 if options.negative_slope is None else options.negative_slope,
        pool=options.pool or "max", pool_size=_pair(options.pool_size or 2),
        pool_stride=None if options.pool_stride is None else _pair(options.pool_stride),
        ceil_mode=options.ceil_mode, softmax=options.softmax)
    dense = _dense_layer(options, image, bank, stage)
    network = single_stage(bank.weight, bank.bias, bank.groups, bank.labels, stage, dense)
    check_run_memory(network, image, options.limits, options.outputs)
    return network


def check_sources(options: LayerOptions) -> int | None:
    """Read the kernels, dense weights and model file a command names, once, before any image: a bad
    one ends the command then, rather than failing every image of a batch the same way. Return the
    number of class scores the network gives, when that is known before an image (else None)."""
    if options.model is not None:
        model = load_model_once(options.model, options.limits)
        out = model.network.shapes(model.input.shape)[-1]
        return out[0] if len(out) == 1 else None
    if options.dense is not None and options.dense_random is not None:
        raise typer.BadParameter("give either --dense FILE or --dense-random UNITS, not both", param_hint="--dense")
    for spec in options.kernels or ():
        _resolve_kernel(spec, options.limits)
    if options.dense is not None:
        return _dense_weights(options.dense, options.limits)[0].shape[0]
    return options.dense_random


def _refuse_unused(options: LayerOptions) -> None:
    """An option that would change nothing is a mistake to point out, not to accept in silence."""
    if options.seed is not None and options.dense_random is None:
        raise typer.BadParameter("seeds --dense-random's weights, and there is none; add --dense-random UNITS or "
                                 "leave it out", param_hint="--seed")
    if options.negative_slope is not None and options.activation != "leaky_relu":
        raise typer.BadParameter("is the slope of --activation leaky_relu; add it or leave this out",
                                 param_hint="--negative-slope")
    if options.pool == "none":
        for name in options.given(("pool_size", "pool_stride", "ceil_mode")):
            raise typer.BadParameter("shapes a pooling layer, and --pool none has none; leave it out",
                                     param_hint="--" + name.replace("_", "-"))


def _resolve_kernel(spec: str, limits: Limits):
    """A kernel (built-in, file or inline JSON), read once per process for a whole batch."""
    from ..io.kernels import resolve_kernel

    return _once(resolve_kernel, spec, limits)


def _dense_weights(path: str, limits: Limits):
    from ..io.saving import read_dense_weights

    return _once(read_dense_weights, path, limits)


def check_run_memory(network: Network, image: LoadedImage, limits: Limits, outputs: tuple[str, ...] = ()) -> None:
    """Check the network's shapes on the image, then refuse a run over the memory limit before it starts."""
    check_network_memory(network, image.array.shape, image.array.itemsize, limits, image.source, outputs)


def check_network_memory(network: Network, shape: tuple[int, ...], itemsize: int, limits: Limits, source: str,
                         outputs: tuple[str, ...] = ()) -> None:
    """Check the network's shapes on an input of ``shape``, and refuse a run over the memory limit:
    its maps and work buffers, and what rendering ``outputs`` takes beside them."""
    from ..io.sinks import output_bytes

    try:
        estimate = network.memory_estimate(shape, itemsize) + output_bytes(outputs, network.shapes(shape))
    except CnnError as err:
        raise err.within(source) from None
    what = "the run's maps and weights" + (" and its outputs" if outputs else "")
    limits.check_memory(estimate, source, what)


def forward(prepared: Prepared) -> tuple[list, list[str]]:
    """Run the network on the image; return every step and the warnings to give (the prepared
    image's, and one if a map overflowed)."""
    from ..io.trace import nonfinite_warning

    steps = prepared.network.forward(prepared.image.array, prepared.image.channel_names)
    overflow = nonfinite_warning(steps)  # named with its image: in a batch, warnings come from many
    return steps, [*prepared.warnings, *([f"{prepared.image.source}: {overflow}"] if overflow else [])]


DEFAULT_TOP = 5


def predictions(options: LayerOptions, prepared: Prepared, steps: list) -> list | None:
    """The top classes of the output vector: always for a model, with --top for a --kernel run."""
    if prepared.model is None and options.top is None:
        return None
    from ..engine.layers import Softmax
    from ..engine.predictions import top_k

    output = steps[-1].output
    if output.ndim != 1:
        if options.top is None:
            return None  # a model whose output is a map: nothing to rank
        raise typer.BadParameter(f"the network ends in a map of shape {output.shape}, not a vector of class scores",
                                 param_hint="--top")
    labels = prepared.model.labels if prepared.model is not None else ()
    is_probability = isinstance(prepared.network.layers[-1], Softmax)
    return top_k(output, labels, options.top or DEFAULT_TOP, is_probability)


def _dense_layer(options: LayerOptions, image: LoadedImage, bank, stage: StageOptions) -> Dense | None:
    if options.dense is not None and options.dense_random is not None:
        raise typer.BadParameter("give either --dense FILE or --dense-random UNITS, not both", param_hint="--dense")
    if options.dense is None and options.dense_random is None:
        if options.softmax:
            raise typer.BadParameter("needs a dense layer (--dense or --dense-random) to apply to",
                                     param_hint="--softmax")
        return None
    from ..io.saving import random_dense  # only runs with a dense layer pay for this
    from ..engine.graph import single_stage
    from ..engine.layers import Dense

    if options.dense is not None:
        weight, bias = _dense_weights(options.dense, options.limits)
        return Dense(weight, bias, "dense1", options.dense)
    # Random weights take as many inputs as the conv stage gives this image.
    conv_only = single_stage(bank.weight, bank.bias, bank.groups, bank.labels, stage)
    try:
        in_features = math.prod(conv_only.shapes(image.array.shape)[-1])
    except CnnError as err:
        raise err.within(image.source) from None
    options.limits.check_memory(options.dense_random * in_features * image.array.itemsize, "--dense-random",
                                "its weights")
    seed = options.seed or 0
    weight, bias = random_dense(options.dense_random, in_features, seed, image.array.dtype)
    return Dense(weight, bias, "dense1", f"random (seed {seed})")


def _pair(value: Any) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


def parse_padding(text: str) -> Any:
    """valid | same | full | N | ROWS,COLS | TOP,BOTTOM,LEFT,RIGHT."""
    text = text.strip().lower()
    if text in ("valid", "same", "full"):
        return text
    try:
        values = [int(part) for part in text.split(",")]
    except ValueError:
        values = []
    if len(values) not in (1, 2, 4) or min(values) < 0:
        raise typer.BadParameter(
            f"expected valid, same, full, N, ROWS,COLS or TOP,BOTTOM,LEFT,RIGHT with N >= 0, got {text!r}",
            param_hint="--padding")
    return values[0] if len(values) == 1 else tuple(values)
