"""Options shared by `cnn run`, `cnn inspect` and `cnn explain`, gathered into the core's LayerOptions;
and the one place that turns an option's Python name (``UsageError.param``) into its flag."""

from __future__ import annotations

import contextlib
import functools
import inspect
from dataclasses import fields
from typing import Annotated, Any, Callable, Iterator, Literal, Optional, cast

import typer

from ..errors import UsageError
from ..run import LayerOptions  # noqa: F401  (commands take it as `opt.LayerOptions`)

INPUT, MODEL, CONV, LAYERS, OUTPUT, BATCH, LIMITS = ("Input", "Model", "Convolution", "Layers", "Output",
                                                    "Many images", "Limits")

Image = Annotated[str, typer.Argument(help="Image file (PNG, JPEG, BMP, GIF, TIFF, WebP), or - for stdin.",
                                      metavar="IMAGE", show_default=False)]
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
PoolSize = Annotated[Optional[int], typer.Option(min=1, rich_help_panel=LAYERS, show_default="2",
                                                 help="Pooling window.")]
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
    rich_help_panel=INPUT, show_default="gray; a model's own",
    help="gray: one channel, Pillow's L luma. rgb: three channels.")]
Scale = Annotated[Optional[Literal["raw", "unit"]], typer.Option(
    rich_help_panel=INPUT, show_default="raw; a model's own",
    help="raw: pixel values 0..255 (16-bit images scaled to it). unit: 0..1.")]
ResizeOpt = Annotated[Optional[int], typer.Option(
    "--resize", rich_help_panel=INPUT, show_default=False, metavar="N",
    help="Resize the shorter side to N keeping the aspect ratio (Pillow bilinear on 8-bit pixels, as torchvision's "
         "Resize(N)), then crop the centre to the model's size or --crop.")]
CropOpt = Annotated[Optional[str], typer.Option(
    "--crop", rich_help_panel=INPUT, show_default=False, metavar="H[,W]",
    help="Cut the centre H x W pixels (zero-padded if smaller), instead of stretching to a model's size; a "
         "model's crop must be its input size, or gives the size its ONNX graph leaves free.")]
MeanOpt = Annotated[Optional[str], typer.Option(
    "--mean", rich_help_panel=INPUT, show_default="0; a model's own", metavar="M[,M,M]",
    help="Normalise last: (x - mean) / std on the 0..1 or 0..255 values; one number, or one per channel.")]
StdOpt = Annotated[Optional[str], typer.Option(
    "--std", rich_help_panel=INPUT, show_default="1; a model's own", metavar="S[,S,S]",
    help="The std of that normalisation, above 0; one number, or one per channel.")]
InvertOpt = Annotated[Optional[Literal["yes", "no", "auto"]], typer.Option(
    "--invert", rich_help_panel=INPUT, show_default="a model's own: auto for one that fits the ink",
    help="Whether the picture is dark ink on light paper, to be inverted so that ink is high: yes, no, or auto: "
         "when its border (the paper) is light.")]
ModelOpt = Annotated[Optional[str], typer.Option(
    "--model", "-m", rich_help_panel=MODEL, show_default=False, metavar="NAME|FILE",
    help="A whole network instead of --kernel: a bundled model (`cnn models`) or a model JSON or .onnx file. "
         "The image is resized and scaled as the model expects.")]
Top = Annotated[Optional[int], typer.Option(
    "--top", min=1, rich_help_panel=MODEL, show_default="5 with --model",
    help="Show the K most probable classes of the output vector.")]
PresetOpt = Annotated[Optional[Literal["imagenet"]], typer.Option(
    "--preset", rich_help_panel=INPUT, show_default=False,
    help="Prepare the image as a model trained with this recipe expects, in place of the model's own rule; the "
         "other Input options change its parts. imagenet: torchvision's shorter side 256, centre 224x224 crop, "
         "RGB 0..1, ImageNet mean and std.")]
# For the commands that read a model without an image (summary, filters): the size of the network's
# input, which an ONNX graph may leave free; the rest of the input rule does not matter there.
SizeCrop = Annotated[Optional[str], typer.Option(
    "--crop", rich_help_panel=INPUT, show_default=False, metavar="H[,W]",
    help="The input size, as `cnn run --crop` gives it: for an ONNX graph that leaves its height and width free; "
         "a fixed model's must be its size.")]
SizePreset = Annotated[Optional[Literal["imagenet"]], typer.Option(
    "--preset", rich_help_panel=INPUT, show_default=False,
    help="The input size of this recipe, as `cnn run --preset` gives it: imagenet, 224x224 RGB.")]
LabelsOpt = Annotated[Optional[str], typer.Option(
    "--labels", rich_help_panel=MODEL, show_default=False, metavar="FILE",
    help="Class names, one per line (e.g. imagenet_classes.txt), for the output vector's values; "
         "they replace a model's own.")]
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
Dtype = Annotated[Literal["float32", "float64"], typer.Option(rich_help_panel=INPUT,
                                                              help="Precision of the computation.")]


_SHARED = {
    "image": Image, "kernel": Kernels, "stride": Stride, "padding": Padding, "padding_mode": PaddingMode,
    "dilation": Dilation, "flip": Flip, "activation": ActivationOpt, "negative_slope": NegativeSlope,
    "pool": Pool, "pool_size": PoolSize, "pool_stride": PoolStride, "ceil_mode": CeilMode, "dense": DenseFile,
    "dense_random": DenseRandom,
    "seed": Seed, "softmax": SoftmaxOpt, "color": Color, "scale": Scale, "resize": ResizeOpt, "crop": CropOpt,
    "mean": MeanOpt, "std": StdOpt, "invert": InvertOpt, "preset": PresetOpt, "alpha": AlphaOpt, "dtype": Dtype,
    "model": ModelOpt,
    "labels": LabelsOpt,
    "top": Top, "max_pixels": MaxPixels, "max_memory": MaxMemory, "max_file_size": MaxFileSize,
}


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




def flag(param: str) -> str:
    """The flag of an option the core names by its Python name (``negative_slope`` -> ``--negative-slope``,
    ``kernels`` -> ``--kernel``); an argument (``IMAGES``) or a flag already is left as it is."""
    if param.isupper() or param.startswith("-"):
        return param
    return "--" + _FLAGS.get(param, param).replace("_", "-")


_FLAGS = {"kernels": "kernel"}


@contextlib.contextmanager
def usage_errors() -> Iterator[None]:
    """Inside an image's job, the core's UsageError becomes Click's usage error: a mistake in the
    options ends a batch (exit 2) instead of failing each image in turn as bad data would."""
    try:
        yield
    except UsageError as err:
        # A UsageError always names its param; the attribute it shares with CnnError is Optional.
        raise typer.BadParameter(err.message, param_hint=flag(cast(str, err.param))) from None
