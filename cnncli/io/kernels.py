"""Kernels: the built-in library, kernel files (JSON), and stacking kernels into a filter bank.

A kernel file is JSON: either a bare 2-D array, or an object

    {"name": "sobel_x", "description": "...", "weights": [[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]],
     "divisor": 1, "bias": 0, "stride": 1, "padding": "valid", "padding_mode": "zeros",
     "dilation": 1, "flip": false}

where only ``weights`` is required. ``weights`` is 2-D (KH, KW), a bank of 2-D kernels (F, KH, KW),
or a full conv weight (F, C, KH, KW); ``divisor`` divides every weight (so a blur can be written in
whole numbers); the last five keys are conv settings that apply unless an option overrides them.
Kernels are applied as cross-correlation, as every CNN library does; ``flip`` makes a true
convolution.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np

from ..errors import ShapeError, SpecError
from .reading import read_bytes
from .limits import DEFAULT_LIMITS, Limits
from ..engine.padding import PADDING_MODES

if TYPE_CHECKING:
    from .jsonspec import Reader

SETTING_KEYS = ("stride", "padding", "padding_mode", "dilation", "flip")
FILE_KEYS = ("name", "description", "weights", "divisor", "bias") + SETTING_KEYS


@dataclass(frozen=True, eq=False, repr=False)  # no repr: it would print the arrays
class Kernel:
    """Weights as written (``raw``) and divided by ``divisor``, with what the file said about them."""

    name: str
    raw: np.ndarray  # (KH, KW), (F, KH, KW) or (F, C, KH, KW), float64
    divisor: float = 1.0
    description: str = ""
    bias: np.ndarray | None = None  # (F,)
    settings: Mapping[str, Any] = field(default_factory=dict)
    source: str = "built-in"
    names: tuple[str, ...] = ()  # of a bank's filters, when they have their own (a parametric family's)

    @property
    def weights(self) -> np.ndarray:
        return self.raw / self.divisor

    @property
    def planar(self) -> bool:
        """True for 2-D kernels and banks of them, which apply to each image channel on its own."""
        return self.raw.ndim in (2, 3)

    @property
    def filters(self) -> int:
        return 1 if self.raw.ndim == 2 else self.raw.shape[0]

    @property
    def size(self) -> tuple[int, int]:
        return self.raw.shape[-2:]

    def to_json(self) -> dict[str, Any]:
        """The kernel as a kernel-file object; ``parse_kernel`` reads it back unchanged."""
        document: dict[str, Any] = {"name": self.name, "description": self.description}
        document["weights"] = _plain(self.raw)
        if self.divisor != 1:
            document["divisor"] = _plain(self.divisor)
        if self.bias is not None:
            document["bias"] = _plain(self.bias)
        document.update(self.settings)
        return document


def _plain(values: Any) -> Any:
    """Numbers as JSON would write them by hand: 2 rather than 2.0."""
    array = np.asarray(values, dtype=np.float64)
    if np.all(array == np.round(array)) and np.all(np.abs(array) < 2**53):
        return array.astype(np.int64).tolist()
    return array.tolist()


def _builtin(name: str, description: str, rows: Sequence[Sequence[float]], divisor: float = 1) -> Kernel:
    return Kernel(name, np.array(rows, dtype=np.float64), float(divisor), description)


def _gaussian_5x5() -> list[list[int]]:
    binomial = np.array([1, 4, 6, 4, 1])
    return np.outer(binomial, binomial).tolist()


LIBRARY: dict[str, Kernel] = {
    k.name: k
    for k in (
        _builtin("identity", "Leaves the image unchanged.", [[0, 0, 0], [0, 1, 0], [0, 0, 0]]),
        _builtin("box_blur", "Mean of the 3x3 neighbourhood.", [[1, 1, 1], [1, 1, 1], [1, 1, 1]], 9),
        _builtin("gaussian_3x3", "Binomial approximation of a Gaussian blur (sigma about 0.85).",
                 [[1, 2, 1], [2, 4, 2], [1, 2, 1]], 16),
        _builtin("gaussian_5x5", "Binomial approximation of a Gaussian blur (sigma about 1.0).", _gaussian_5x5(), 256),
        _builtin("sharpen", "Boosts the centre against its four neighbours.", [[0, -1, 0], [-1, 5, -1], [0, -1, 0]]),
        _builtin("emboss", "Relief lit from the top left.", [[-2, -1, 0], [-1, 1, 1], [0, 1, 2]]),
        _builtin("outline", "Bright where a pixel differs from all eight neighbours.",
                 [[-1, -1, -1], [-1, 8, -1], [-1, -1, -1]]),
        _builtin("sobel_x", "Horizontal gradient: positive where the image gets brighter to the right.",
                 [[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]]),
        _builtin("sobel_y", "Vertical gradient: positive where the image gets brighter downwards.",
                 [[-1, -2, -1], [0, 0, 0], [1, 2, 1]]),
        _builtin("prewitt_x", "Horizontal gradient with equal row weights.", [[-1, 0, 1], [-1, 0, 1], [-1, 0, 1]]),
        _builtin("prewitt_y", "Vertical gradient with equal column weights.", [[-1, -1, -1], [0, 0, 0], [1, 1, 1]]),
        _builtin("scharr_x", "Horizontal gradient, more rotation-invariant than Sobel.",
                 [[-3, 0, 3], [-10, 0, 10], [-3, 0, 3]]),
        _builtin("scharr_y", "Vertical gradient, more rotation-invariant than Sobel.",
                 [[-3, -10, -3], [0, 0, 0], [3, 10, 3]]),
        _builtin("laplacian_4", "Second derivative over the 4 nearest neighbours.", [[0, 1, 0], [1, -4, 1], [0, 1, 0]]),
        _builtin("laplacian_8", "Second derivative over all 8 neighbours.", [[1, 1, 1], [1, -8, 1], [1, 1, 1]]),
        _builtin("vertical_edge", "The seed tutorial's edge kernel: positive where the image gets darker to the right.",
                 [[1, 0, -1], [1, 0, -1], [1, 0, -1]]),
        _builtin("horizontal_edge", "Positive where the image gets darker downwards.",
                 [[1, 1, 1], [0, 0, 0], [-1, -1, -1]]),
    )
}


def parse_kernel(document: Any, source: str, default_name: str = "kernel") -> Kernel:
    """Build a Kernel from a parsed kernel file (a bare array or an object); see the module doc."""
    from .jsonspec import Reader  # the built-in kernels need no JSON: keep start-up lean

    read = Reader(source)
    if isinstance(document, list):
        document = {"weights": document}
    if isinstance(document, dict) and (document.get("format") == "cnn-model" or "layers" in document):
        raise SpecError('is a model file ("format": "cnn-model", layers); give it as --model, not --kernel',
                        source=source)
    read.object(document, "", FILE_KEYS, required=("weights",))
    raw = read.array(document["weights"], "weights", ndims=(2, 3, 4))
    # Both are shown in tables, CSV headers and charts: printable text (a default name is the file's).
    name = read.text(document["name"], "name", empty=False) if "name" in document else default_name
    description = read.text(document.get("description", ""), "description")
    divisor = 1.0
    if "divisor" in document:
        divisor = read.number(document["divisor"], "divisor")
        if divisor == 0:
            raise read.fail("divisor", "must not be 0")
    filters = 1 if raw.ndim == 2 else raw.shape[0]
    bias = None
    if "bias" in document:
        value = document["bias"]
        if isinstance(value, list):
            bias = read.array(value, "bias", ndims=(1,))
            if bias.shape != (filters,):
                raise read.fail("bias", f"has {bias.size} values, expected one per filter ({filters})")
        else:
            bias = np.full(filters, read.number(value, "bias"))
    return Kernel(name, raw, divisor, description, bias, parse_conv_settings(read, document), source)


def parse_conv_settings(read: Reader, document: Mapping[str, Any]) -> dict[str, Any]:
    settings: dict[str, Any] = {}
    for key in ("stride", "dilation"):
        if key in document:
            settings[key] = list(read.pair(document[key], key))
    if "padding" in document:
        value = document["padding"]
        if isinstance(value, str):
            settings["padding"] = read.string(value, "padding", ("valid", "same", "full"))
        elif isinstance(value, list) and len(value) in (2, 4):
            settings["padding"] = [read.integer(v, f"padding[{i}]", 0, 1 << 16) for i, v in enumerate(value)]
        elif isinstance(value, list):
            raise read.fail("padding", "expected valid, same, full, an integer, [rows, cols] or "
                                       f"[top, bottom, left, right], got {len(value)} values")
        else:
            settings["padding"] = read.integer(value, "padding", 0, 1 << 16)
    if "padding_mode" in document:
        settings["padding_mode"] = read.string(document["padding_mode"], "padding_mode", PADDING_MODES)
    if "flip" in document:
        settings["flip"] = read.boolean(document["flip"], "flip")
    return settings


def load_kernel_file(path: str | Path, limits: Limits = DEFAULT_LIMITS) -> Kernel:
    """Read and parse a kernel JSON file."""
    path = Path(path)
    source = str(path)
    text = read_bytes(path, kind="kernel", error=SpecError, expected="a kernel JSON file", limits=limits)
    from .jsonspec import loads

    from ..display import shown

    # A name taken from the file's own name is shown escaped, as file names are (it may hold anything).
    return parse_kernel(loads(text, source), source, default_name=shown(path.stem))


def resolve_kernel(spec: str, option: str = "--kernel", limits: Limits = DEFAULT_LIMITS) -> Kernel:
    """Turn one ``--kernel`` value into a Kernel: inline JSON (an array or object), a file, or a built-in name."""
    text = spec.strip()
    if text.startswith(("[", "{")):
        from .jsonspec import loads

        return parse_kernel(loads(text, option), option, default_name="inline")
    if text.lower() in LIBRARY and not Path(text).exists():
        return LIBRARY[text.lower()]
    path = Path(text)
    if ":" in text and not path.exists():
        from .parametric import is_parametric, parametric_kernel

        if is_parametric(text):
            return parametric_kernel(text, option)
    if path.exists() or path.suffix.lower() == ".json" or "/" in text:
        return load_kernel_file(path, limits)
    raise SpecError(f"{text!r} is neither a kernel file nor a built-in kernel{_suggestion(text)}", source=option)


def _suggestion(text: str) -> str:
    """Every built-in name or family that starts with ``text`` (sobel: sobel_x, sobel_y, and the
    sobel:angle=... family), else the closest name; or where to find the names."""
    from .parametric import FAMILIES

    key = text.lower().split(":", 1)[0]
    starting = [name for name in LIBRARY if name.startswith(key)]
    starting += [f"{family}:..." for family in FAMILIES if family.startswith(key)]
    if not starting:
        import difflib  # only errors pay for its import

        starting = difflib.get_close_matches(key, [*LIBRARY, *FAMILIES], n=1)
    if starting:
        return f" (did you mean {', '.join(starting[:-1]) + ' or ' if len(starting) > 1 else ''}{starting[-1]}?)"
    return "; `cnn kernels` lists the built-in ones, and README the families (gaussian:sigma=2, gabor:theta=45, ...)"


@dataclass(frozen=True, eq=False, repr=False)
class FilterBank:
    """Conv weights assembled from kernels for an image with a given number of channels."""

    weight: np.ndarray  # (F, C/groups, KH, KW)
    bias: np.ndarray | None  # (F,)
    groups: int
    labels: tuple[str, ...]  # one per output channel


def build_filter_bank(kernels: Sequence[Kernel], channel_names: Sequence[str]) -> FilterBank:
    """Stack kernels into one conv layer for an image whose channels are ``channel_names``.

    2-D kernels (and 3-D banks of them) filter each image channel on its own, as image editors
    do: on a 3-channel image, every 2-D kernel gives 3 maps (a depthwise conv, groups = C). 4-D
    kernels (F, C, KH, KW) mix channels as a CNN layer does; their C must equal the image's.
    """
    if not kernels:
        raise SpecError("no kernel given; expected at least one --kernel", source="--kernel")
    channels = len(channel_names)
    planar = [k.planar for k in kernels]
    if any(planar) and not all(planar):
        flat, full = kernels[planar.index(True)], kernels[planar.index(False)]
        raise ShapeError(
            f"cannot stack {flat.name}, which filters each channel on its own (2-D or 3-D weights), with "
            f"{full.name} ({full.source}), which mixes channels (4-D weights); give kernels of one kind",
            source="--kernel",
        )
    sizes = {k.size for k in kernels}
    if len(sizes) > 1:
        listing = ", ".join(f"{k.name} is {k.size[0]}x{k.size[1]}" for k in kernels)
        largest = max(max(k.size) for k in kernels)
        hint = (f"; a kernel formula takes size=N, e.g. size={largest | 1}" if any(":" in k.name for k in kernels)
                else "")
        raise ShapeError(f"stacked kernels must share one size: {listing}{hint}", source="--kernel")
    labels: list[str] = []
    if all(planar):
        bank = np.concatenate([k.weights.reshape(-1, *k.size) for k in kernels])  # K, KH, KW
        names = [_filter_label(k, f) for k in kernels for f in range(k.filters)]
        biases = _stack_biases(kernels)
        weight = np.tile(bank, (channels, 1, 1))[:, None]  # C*K, 1, KH, KW
        if channels == 1:
            return FilterBank(weight, biases, 1, tuple(names))
        labels = [f"{channel}:{name}" for channel in channel_names for name in names]
        bias = None if biases is None else np.tile(biases, channels)
        return FilterBank(weight, bias, channels, tuple(labels))
    for k in kernels:
        if k.raw.shape[1] != channels:
            hint = "; --color rgb reads the image as R, G, B" if k.raw.shape[1] == 3 and channels == 1 else ""
            raise ShapeError(
                f"kernel {k.name} has weights {k.raw.shape} for {k.raw.shape[1]} input channel(s), "
                f"but the image has {channels} ({', '.join(channel_names)}){hint}",
                source=k.source,
            )
    weight = np.concatenate([k.weights for k in kernels])
    names = [_filter_label(k, f) for k in kernels for f in range(k.filters)]
    return FilterBank(weight, _stack_biases(kernels), 1, tuple(names))


def _filter_label(kernel: Kernel, index: int) -> str:
    if kernel.names:
        return kernel.names[index]
    return kernel.name if kernel.filters == 1 else f"{kernel.name}[{index}]"


def _stack_biases(kernels: Sequence[Kernel]) -> np.ndarray | None:
    if all(k.bias is None for k in kernels):
        return None
    return np.concatenate([np.zeros(k.filters) if k.bias is None else k.bias for k in kernels])


def merged_settings(kernels: Sequence[Kernel]) -> dict[str, Any]:
    """The conv settings the kernel files give, which must agree where two files both give one."""
    merged: dict[str, Any] = {}
    origin: dict[str, Kernel] = {}
    for kernel in kernels:
        for key, value in kernel.settings.items():
            if key in merged and merged[key] != value:
                first = origin[key]
                raise SpecError(
                    f"{key} is {json.dumps(merged[key])} in {first.source} but {json.dumps(value)} in "
                    f"{kernel.source}; give it once with --{key.replace('_', '-')}",
                    source="--kernel",
                )
            merged[key] = value
            origin[key] = kernel
    return merged
