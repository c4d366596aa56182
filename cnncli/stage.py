"""The network a kernel run builds: a conv stage (conv -> activation -> pooling) from kernels and
settings, and an optional dense layer; with the memory checks every run makes before it starts.

Errors a caller can cause name the setting at fault as data (``UsageError.param``: ``"padding"``,
``"seed"``, ``"kernels"``); only the CLI turns that into a flag.
"""

from __future__ import annotations

import dataclasses
import math
import os
from typing import TYPE_CHECKING, Any, Callable

from .errors import CnnError, LimitError, UsageError

if TYPE_CHECKING:  # numpy and the engine are imported when a network is built, not with this module
    from .engine.graph import Network, StageOptions
    from .engine.layers import Dense
    from .io.images import LoadedImage
    from .io.limits import Limits
    from .run import LayerOptions


def once(read: Callable[..., Any], spec: str, limits: Limits, **given: Any) -> Any:
    """``read(spec, limits=limits, **given)``, remembered while the file ``spec`` names (if any) is
    unchanged: a kernel, weights or model file is read once per process, however many images a
    batch runs. ``given`` (hashable values) is part of what is remembered."""
    try:
        status = os.stat(spec)
        stamp = (status.st_ino, status.st_size, status.st_mtime_ns)
    except (OSError, ValueError):  # a built-in name, inline JSON, a missing file
        stamp = None
    key = (read.__module__, read.__name__, spec, limits, stamp, *sorted(given.items()))
    if key not in _READ:
        if len(_READ) > 64:
            _READ.clear()
        _READ[key] = read(spec, limits=limits, **given)
    return _READ[key]


_READ: dict[tuple, Any] = {}


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
    from .engine.graph import StageOptions, single_stage
    from .io.kernels import build_filter_bank, merged_settings

    if not options.kernels:
        raise UsageError("give at least one kernel, e.g. --kernel sobel_x (`cnn kernels` lists them), "
                         "or a whole network with --model (`cnn models` lists them)", param="kernels")
    refuse_unused(options)
    kernels = [resolve_kernel(spec, options.limits) for spec in options.kernels]
    bank = build_filter_bank(kernels, image.channel_names)
    settings = merged_settings(kernels)
    given = {"stride": options.stride, "dilation": options.dilation, "padding_mode": options.padding_mode,
             "flip": options.flip, "padding": None if options.padding is None else parse_padding(options.padding)}
    settings.update({key: value for key, value in given.items() if value is not None})
    if options.padding_mode not in (None, "zeros") and _pads_nothing(settings.get("padding", "valid")):
        raise UsageError("fills the padding, and there is none (valid); add --padding same or a number, or leave it "
                         "out", param="padding_mode")
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


def refuse_unused(options: LayerOptions) -> None:
    """A setting that would change nothing is a mistake to point out, not to accept in silence."""
    if options.seed is not None and options.dense_random is None:
        raise UsageError("seeds --dense-random's weights, and there is none; add --dense-random UNITS or "
                         "leave it out", param="seed")
    if options.negative_slope is not None and options.activation != "leaky_relu":
        raise UsageError("is the slope of --activation leaky_relu; add it or leave this out", param="negative_slope")
    if options.pool == "none":
        for name in options.given(("pool_size", "pool_stride", "ceil_mode")):
            raise UsageError("shapes a pooling layer, and --pool none has none; leave it out", param=name)


def _pads_nothing(padding: Any) -> bool:
    """Whether a conv's padding (valid, same, full, N or a tuple of them) adds no cell at all."""
    if isinstance(padding, str):
        return padding == "valid"
    return not any(padding if isinstance(padding, (tuple, list)) else (padding,))


def refuse_two_dense(options: LayerOptions) -> None:
    if options.dense is not None and options.dense_random is not None:
        raise UsageError("give either --dense FILE or --dense-random UNITS, not both", param="dense")


def resolve_kernel(spec: str, limits: Limits):
    """A kernel (built-in, file or inline JSON), read once per process for a whole batch."""
    from .io.kernels import resolve_kernel as resolve

    return once(resolve, spec, limits)


def dense_weights(path: str, limits: Limits):
    """Dense weights (out, in) and bias from a file, read once per process."""
    from .io.saving import read_dense_weights

    return once(read_dense_weights, path, limits)


FINAL_ONLY = frozenset({"npy", "png"})  # outputs that show the last map alone: the run keeps no other map


def keeps_maps(outputs: tuple[str, ...]) -> bool:
    """Whether a run that renders ``outputs`` keeps every map (``Network.forward``'s keep_maps)."""
    return not outputs or not set(outputs) <= FINAL_ONLY


def check_run_memory(network: Network, image: LoadedImage, limits: Limits, outputs: tuple[str, ...] = ()) -> None:
    """Check the network's shapes on the image, then refuse a run over the memory limit before it starts."""
    check_network_memory(network, image.array.shape, image.array.itemsize, limits, image.source, outputs)


def check_network_memory(network: Network, shape: tuple[int, ...], itemsize: int, limits: Limits, source: str,
                         outputs: tuple[str, ...] = ()) -> None:
    """Check the network's shapes on an input of ``shape``, and refuse a run over the memory limit:
    its maps and work buffers, and what rendering ``outputs`` takes beside them.

    Raises ShapeError (placed in ``source``) for an input the network cannot take, and LimitError.
    """
    from .io.sinks import output_bytes

    try:
        estimate = (network.memory_estimate(shape, itemsize, keeps_maps(outputs))
                    + output_bytes(outputs, network.shapes(shape)))
    except CnnError as err:
        raise err.within(source) from None
    what = "the run's maps and weights" + (" and its outputs" if outputs else "")
    limits.check_memory(estimate, source, what)


def _dense_layer(options: LayerOptions, image: LoadedImage, bank, stage: StageOptions) -> Dense | None:
    refuse_two_dense(options)
    if options.dense is None and options.dense_random is None:
        if options.softmax:
            raise UsageError("needs a dense layer (--dense or --dense-random) to apply to", param="softmax")
        return None
    from .engine.graph import single_stage
    from .engine.layers import Dense
    from .io.saving import random_dense  # only runs with a dense layer pay for this

    if options.dense is not None:
        weight, bias = dense_weights(options.dense, options.limits)
        return Dense(weight, bias, "dense1", options.dense)
    # Random weights take as many inputs as the conv stage gives this image.
    assert options.dense_random is not None  # this is called only when a dense layer is asked for
    conv_only = single_stage(bank.weight, bank.bias, bank.groups, bank.labels, stage)
    try:
        in_features = math.prod(conv_only.shapes(image.array.shape)[-1])
    except CnnError as err:
        raise err.within(image.source) from None
    try:
        options.limits.check_memory(options.dense_random * in_features * image.array.itemsize, "", "its weights")
    except LimitError as err:
        err.param = "dense_random"  # the setting whose weights these are
        raise
    seed = options.seed or 0
    weight, bias = random_dense(options.dense_random, in_features, seed, image.array.dtype)
    return Dense(weight, bias, "dense1", f"random (seed {seed})")


def _pair(value: Any) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


def parse_padding(text: str) -> Any:
    """valid | same | full | N | ROWS,COLS | TOP,BOTTOM,LEFT,RIGHT.

    Raises UsageError (param ``"padding"``) for anything else.
    """
    text = text.strip().lower()
    if text in ("valid", "same", "full"):
        return text
    try:
        values = [int(part) for part in text.split(",")]
    except ValueError:
        values = []
    if len(values) not in (1, 2, 4) or min(values) < 0:
        raise UsageError(f"expected valid, same, full, N, ROWS,COLS or TOP,BOTTOM,LEFT,RIGHT with N >= 0, got {text!r}",
                         param="padding")
    return values[0] if len(values) == 1 else tuple(values)
