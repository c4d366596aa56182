"""Options shared by `cnn run` and `cnn inspect`, and turning them into an image and a Network."""

from __future__ import annotations

import functools
import inspect
import math
import sys
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Annotated, Any, Callable, Literal, Optional

import typer

from ..errors import CnnError

if TYPE_CHECKING:  # the core is imported when a command runs, so --help and completion stay fast
    from ..images import LoadedImage
    from ..model import Dense, Network, StageOptions

INPUT, CONV, LAYERS, OUTPUT = "Input", "Convolution", "Layers", "Output"

Image = Annotated[str, typer.Argument(help="Image file (PNG, JPEG, BMP, GIF, TIFF, WebP), or - for stdin.",
                                      show_default=False)]
Kernels = Annotated[Optional[list[str]], typer.Option(
    "--kernel", "-k", rich_help_panel=CONV, show_default=False,
    help="Built-in name (`cnn kernels`), JSON file, or inline JSON like '[[1,0],[0,1]]'. "
         "Repeat to stack: one output channel each.")]
Stride = Annotated[Optional[int], typer.Option(min=1, rich_help_panel=CONV, show_default="1", help="Conv stride.")]
Padding = Annotated[Optional[str], typer.Option(
    rich_help_panel=CONV, show_default="valid", metavar="MODE|N",
    help="valid, same, full, N, or per axis ROWS,COLS, or per side TOP,BOTTOM,LEFT,RIGHT.")]
PaddingMode = Annotated[Optional[Literal["zeros", "reflect", "replicate", "circular"]], typer.Option(
    rich_help_panel=CONV, show_default="zeros", help="What the padding holds, with PyTorch's names.")]
Dilation = Annotated[Optional[int], typer.Option(min=1, rich_help_panel=CONV, show_default="1",
                                                 help="Gap between kernel taps.")]
Flip = Annotated[Optional[bool], typer.Option("--flip/--no-flip", rich_help_panel=CONV, show_default="no-flip",
                                              help="Flip the kernel: true convolution. CNNs correlate.")]
ActivationOpt = Annotated[Literal["relu", "leaky_relu", "sigmoid", "tanh", "none"], typer.Option(
    rich_help_panel=LAYERS, help="Activation after the convolution.")]
Pool = Annotated[Literal["max", "avg", "none"], typer.Option(rich_help_panel=LAYERS, help="Pooling after the activation.")]
PoolSize = Annotated[int, typer.Option(min=1, rich_help_panel=LAYERS, help="Pooling window.")]
PoolStride = Annotated[Optional[int], typer.Option(min=1, rich_help_panel=LAYERS, show_default="pool size",
                                                   help="Pooling stride.")]
NegativeSlope = Annotated[float, typer.Option(rich_help_panel=LAYERS, help="Slope of leaky_relu below zero.")]
CeilMode = Annotated[bool, typer.Option("--ceil-mode", rich_help_panel=LAYERS,
                                        help="Keep a last, partial pooling window (PyTorch's ceil_mode).")]
DenseFile = Annotated[Optional[str], typer.Option(
    "--dense", rich_help_panel=LAYERS, show_default=False, metavar="FILE",
    help="Add a dense layer with weights (out, in) from a .npy, .npz (weight, bias) or .json file.")]
DenseRandom = Annotated[Optional[int], typer.Option(
    "--dense-random", min=1, rich_help_panel=LAYERS, show_default=False, metavar="UNITS",
    help="Add a dense layer of UNITS units with random weights from --seed, as the seed tutorial does.")]
Seed = Annotated[int, typer.Option(rich_help_panel=LAYERS, help="Seed of --dense-random's weights.")]
SoftmaxOpt = Annotated[bool, typer.Option("--softmax", rich_help_panel=LAYERS,
                                          help="Softmax after the dense layer.")]
Color = Annotated[Literal["gray", "rgb"], typer.Option(
    rich_help_panel=INPUT, help="gray: one channel, Pillow's L luma. rgb: three channels.")]
Scale = Annotated[Literal["raw", "unit"], typer.Option(
    rich_help_panel=INPUT, help="raw: pixel values 0..255 (16-bit images scaled to it). unit: 0..1.")]
AlphaOpt = Annotated[Literal["drop", "white", "black", "keep"], typer.Option(
    rich_help_panel=INPUT, help="Transparency: drop it, composite over white or black, or keep it as a channel.")]
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
    activation: str = "relu"
    negative_slope: float = 0.01
    pool: str = "max"
    pool_size: int = 2
    pool_stride: int | None = None
    ceil_mode: bool = False
    dense: str | None = None
    dense_random: int | None = None
    seed: int = 0
    softmax: bool = False
    color: str = "gray"
    scale: str = "raw"
    alpha: str = "drop"
    dtype: str = "float32"


_SHARED = {
    "image": Image, "kernel": Kernels, "stride": Stride, "padding": Padding, "padding_mode": PaddingMode,
    "dilation": Dilation, "flip": Flip, "activation": ActivationOpt, "negative_slope": NegativeSlope,
    "pool": Pool, "pool_size": PoolSize, "pool_stride": PoolStride, "ceil_mode": CeilMode, "dense": DenseFile,
    "dense_random": DenseRandom,
    "seed": Seed, "softmax": SoftmaxOpt, "color": Color, "scale": Scale, "alpha": AlphaOpt, "dtype": Dtype,
}


def layer_command(command: Callable[..., Any]) -> Callable[..., Any]:
    """Give a command that takes ``options: LayerOptions`` every shared layer option.

    Typer reads a command's signature; this one shows the shared options (defaults from
    LayerOptions) followed by the command's own, and the command receives them as one LayerOptions.
    """
    defaults = {f.name: f.default for f in fields(LayerOptions)} | {"kernel": None}
    shared = [
        inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=annotation,
                          default=inspect.Parameter.empty if name == "image" else defaults[name])
        for name, annotation in _SHARED.items()
    ]
    own = [p for p in inspect.signature(command, eval_str=True).parameters.values() if p.name != "options"]

    @functools.wraps(command)
    def with_options(**arguments: Any) -> Any:
        values = {name: arguments.pop(name) for name in _SHARED}
        values["kernels"] = values.pop("kernel")
        return command(options=LayerOptions(**values), **arguments)

    with_options.__signature__ = inspect.Signature(shared + own)  # type: ignore[attr-defined]
    with_options.__annotations__ = {p.name: p.annotation for p in shared + own}
    return with_options


def load_image(options: LayerOptions) -> LoadedImage:
    import numpy as np

    from ..images import read_image

    data = None
    source = options.image
    if source == "-":
        source = "stdin"
        if sys.stdin is None or sys.stdin.isatty():
            raise CnnError("is a terminal; pipe an image in, e.g. `cnn run - -k sobel_x < photo.png`", source=source)
        data = sys.stdin.buffer.read()
    return read_image(source, data, color=options.color, scale=options.scale, alpha=options.alpha,
                      dtype=np.float32 if options.dtype == "float32" else np.float64)


def build_network(options: LayerOptions, image: LoadedImage) -> Network:
    """The conv stage from the kernels and options; an option given overrides the kernel file's setting."""
    from ..kernels import build_filter_bank, merged_settings, resolve_kernel
    from ..model import StageOptions, single_stage

    if not options.kernels:
        raise typer.BadParameter("give at least one kernel, e.g. --kernel sobel_x (`cnn kernels` lists them)",
                                 param_hint="--kernel")
    kernels = [resolve_kernel(spec) for spec in options.kernels]
    bank = build_filter_bank(kernels, image.channel_names)
    settings = merged_settings(kernels)
    given = {"stride": options.stride, "dilation": options.dilation, "padding_mode": options.padding_mode,
             "flip": options.flip, "padding": None if options.padding is None else parse_padding(options.padding)}
    settings.update({key: value for key, value in given.items() if value is not None})
    stage = StageOptions(
        stride=_pair(settings.get("stride", 1)), padding=settings.get("padding", "valid"),
        padding_mode=settings.get("padding_mode", "zeros"), dilation=_pair(settings.get("dilation", 1)),
        flip=settings.get("flip", False), activation=options.activation, negative_slope=options.negative_slope,
        pool=options.pool,
        pool_size=_pair(options.pool_size), pool_stride=None if options.pool_stride is None else _pair(options.pool_stride),
        ceil_mode=options.ceil_mode, softmax=options.softmax)
    dense = _dense_layer(options, image, bank, stage)
    network = single_stage(bank.weight, bank.bias, bank.groups, bank.labels, stage, dense)
    try:
        shapes = network.shapes(image.array.shape)
    except CnnError as err:
        raise err.within(image.source) from None
    check_memory(sum(math.prod(shape) for shape in shapes) * image.array.itemsize, image.source)
    return network


MAX_MEMORY = 4 << 30


def check_memory(estimate: int, source: str) -> None:
    """Refuse, before allocating, a run whose maps (all kept) or weights would need over MAX_MEMORY."""
    if estimate > MAX_MEMORY:
        raise CnnError(f"the run would need about {estimate / 2**30:.1f} GiB for its maps and weights, over "
                       f"the limit of {MAX_MEMORY >> 30} GiB; use a smaller image, stride or layer", source=source)


def forward(options: LayerOptions, image: LoadedImage) -> list:
    """Build the network for this image and run it; warn on stderr when a map overflowed."""
    from .output import tell

    steps = build_network(options, image).forward(image.array, image.channel_names)
    for step in steps[1:]:
        # An infinity or NaN anywhere makes the max or mean non-finite; the stats are reused later.
        if not all(math.isfinite(step.stats[key]) for key in ("min", "max", "mean")):
            tell(f"cnn: warning: {step.name} has infinite or NaN values (overflow in {step.output.dtype}; "
                 "--dtype float64 or smaller weights may help)")
            break
    return steps


def _dense_layer(options: LayerOptions, image: LoadedImage, bank, stage: StageOptions) -> Dense | None:
    from ..files import random_dense, read_dense_weights
    from ..model import Dense, single_stage

    if options.dense is not None and options.dense_random is not None:
        raise typer.BadParameter("give either --dense FILE or --dense-random UNITS, not both", param_hint="--dense")
    if options.dense is None and options.dense_random is None:
        if options.softmax:
            raise typer.BadParameter("needs a dense layer (--dense or --dense-random) to apply to",
                                     param_hint="--softmax")
        return None
    if options.dense is not None:
        weight, bias = read_dense_weights(options.dense)
        return Dense(weight, bias, "dense1", options.dense)
    # Random weights take as many inputs as the conv stage gives this image.
    conv_only = single_stage(bank.weight, bank.bias, bank.groups, bank.labels, stage)
    try:
        in_features = math.prod(conv_only.shapes(image.array.shape)[-1])
    except CnnError as err:
        raise err.within(image.source) from None
    check_memory(options.dense_random * in_features * image.array.itemsize, "--dense-random")
    weight, bias = random_dense(options.dense_random, in_features, options.seed, image.array.dtype)
    return Dense(weight, bias, "dense1", f"random (seed {options.seed})")


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
