"""Input rules: how an image becomes a network's input (size, colour, scale, resize and crop, or
fitting the ink; inverting, normalisation), read from a model file's ``input`` object, named by a
preset, or given part by part as options (``--resize``, ``--crop``, ``--mean``, ``--std``,
``--color``, ``--scale``, ``--invert``).

Options override the model's own rule, or the preset's that replaces it, field by field:
``with_overrides`` for a model, whose input shape is fixed, and ``kernel_rule`` for a kernel run,
whose input is whatever the image becomes. Errors in options are UsageErrors naming the option
(``param="mean"``); errors in a model file name the file and the field (``input.std[1]``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Literal, Union

import numpy as np

from ..errors import UsageError
from .images import LoadedImage, array_size, centre_crop, resize, resize_and_crop, shorter_side_size
from .jsonspec import Reader, _kind

INPUT_KEYS = ("size", "color", "scale", "fit", "invert", "mean", "std", "resize", "crop")
MAX_SIDE = 1 << 14
Invert = Union[bool, Literal["auto"]]  # auto: decided from the picture's border (a light border is paper)
# Below this probability for its best class, a model that reads one drawn symbol (``fit: ink``)
# gets a note that its answer is doubtful. For the digits model, on simulated photographs of its
# held-out digits, it flags 72% of the wrong answers and 8% of the right ones (1% on the test set
# of README's "Your own digits"); 0.5 would flag only 38% of the wrong ones, 0.9 17% of the right.
LOW_CONFIDENCE = 0.7


@dataclass(frozen=True)
class InputSpec:
    """What the network takes: (H, W), gray or rgb, raw 0..255 or unit 0..1, inverted or not (or
    ``"auto"``: when the picture's border is light), and a per-channel normalisation
    (x - mean) / std applied last.

    With ``resize`` (the shorter side's length) the image is prepared as torchvision's PIL path
    does (``Resize(resize)``, ``CenterCrop(size)``, ``ToTensor``, ``Normalize``): the 8-bit picture
    resized by Pillow's bilinear filter keeping its aspect ratio, then the centre cropped to
    ``size``. With ``crop`` alone the centre is cut to ``size`` without resizing (``CenterCrop``).
    With ``fit="ink"`` the picture's ink is fitted to ``size`` as scikit-learn's digits were made
    (cnncli.io.ink: found dark or light as ``invert`` says, cropped, scaled keeping its aspect
    ratio, centred by its centre of mass, reduced), ink high. Otherwise the picture is stretched
    to ``size`` (area averaging when it shrinks)."""

    size: tuple[int, int]
    color: str = "gray"
    scale: str = "unit"
    invert: Invert = False
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    resize: int | None = None
    crop: bool = False
    fit: str | None = None  # "ink", or None

    @property
    def read_scale(self) -> str:
        """The scale to read an image in: 0..255 for the torchvision path, which resizes 8-bit pixels."""
        return "raw" if self.resize else self.scale

    @property
    def channels(self) -> int:
        return 3 if self.color == "rgb" else 1

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.channels, *self.size)

    @property
    def normalises(self) -> bool:
        return any(self.mean) or any(s != 1 for s in self.std)

    def apply(self, image: LoadedImage) -> LoadedImage:
        """The image as the network takes it: resized, cropped or fitted, inverted and normalised,
        each step noted; what makes its answer doubtful (no ink, several blobs) in its warnings."""
        array, notes, warnings = image.array, list(image.notes), list(image.warnings)
        invert = self.invert
        if invert == "auto" and not self.fit:
            from .ink import dark_ink_from_border

            invert = dark_ink_from_border(array[0] if len(array) == 1 else array.mean(axis=0))[0]
            notes.append(f"{'dark' if invert else 'light'} ink on {'light' if invert else 'dark'} paper, from the "
                         "border")
        if self.fit:
            from .ink import fit_ink

            full = 1 if self.scale == "unit" else 255
            fitted = fit_ink(array[0], self.size, None if invert == "auto" else bool(invert), full)
            array = (fitted.array * np.float32(full))[None].astype(array.dtype, copy=False)  # 1, H, W
            notes.extend(fitted.notes)
            warnings.extend(fitted.warnings)
        elif self.resize:
            array, steps = resize_and_crop(array, self.resize, self.size)
            notes.extend(steps)
            if self.scale == "unit":
                array = array / np.asarray(255, array.dtype)  # ToTensor divides
                notes.append("values scaled to 0..1 (divided by 255)")
        elif self.crop:
            array, steps = centre_crop(array, self.size)
            notes.extend(steps)
        elif array.shape[1:] != self.size:
            array, how = resize(array, self.size)
            notes.append(f"resized {array_size(image.array)} -> {self.size[1]}x{self.size[0]} ({how})")
        if invert is True and not self.fit:
            array = (1 if self.scale == "unit" else 255) - array
            notes.append(f"inverted ({'1' if self.scale == 'unit' else '255'} - x)")
        if self.normalises:
            mean = np.asarray(self.mean, dtype=array.dtype)[:, None, None]
            std = np.asarray(self.std, dtype=array.dtype)[:, None, None]
            with np.errstate(all="ignore"):  # a tiny std overflows to inf, which the run warns about
                array = (array - mean) / std
            notes.append(f"normalised (x - {numbers_text(self.mean)}) / {numbers_text(self.std)}")
        resized = array.shape[1:] != image.array.shape[1:]
        file_size = (image.array.shape[2], image.array.shape[1]) if resized else None
        return replace(image, array=np.ascontiguousarray(array, dtype=image.array.dtype), notes=tuple(notes),
                       file_size=image.file_size or file_size, warnings=tuple(warnings))

    def doubt(self, label: str, probability: float) -> str | None:
        """A note when a model that reads one drawn symbol (``fit``) gives its best class, ``label``,
        a probability under LOW_CONFIDENCE; None otherwise."""
        if not self.fit or probability >= LOW_CONFIDENCE:
            return None
        return (f"low confidence: the best answer, {label}, has {probability:.1%} (under {LOW_CONFIDENCE:.0%}); the "
                "picture may not be one the model knows")

    def apply_bytes(self, array: np.ndarray) -> int:
        """An upper estimate of the memory alive at once while ``apply`` makes ``array`` (C, H, W) the
        network's input: the array, one plane and its Pillow copy, the resized planes stacked, and
        the inverted and normalised copies. With ``resize``, the 8-bit picture, its resized planes
        (a thin picture's longer side grows with them) and their float copy; with ``crop``, the
        array zero-padded to the crop."""
        channels, height, width = array.shape
        out = channels * self.size[0] * self.size[1]
        if self.fit:
            from .ink import fit_bytes

            return array.nbytes + fit_bytes((height, width), self.size) + 3 * array.itemsize * out + (1 << 20)
        if self.resize:
            new_h, new_w = shorter_side_size(height, width, self.resize)
            resized = channels * new_h * new_w
            return (array.nbytes + channels * height * width + 2 * resized + array.itemsize * resized
                    + 3 * array.itemsize * out + (1 << 20))
        if self.crop:
            padded = channels * max(height, self.size[0]) * max(width, self.size[1])
            return array.nbytes + array.itemsize * padded + 3 * array.itemsize * out + (1 << 20)
        return array.nbytes + 2 * 4 * height * width + 2 * 4 * out + 3 * array.itemsize * out + (1 << 20)

    def describe(self) -> str:
        parts = [f"{self.size[1]}x{self.size[0]} {self.color}", "0..1" if self.scale == "unit" else "0..255"]
        if self.fit:
            parts.insert(0, {True: "dark ink fitted", False: "light ink fitted", "auto": "ink fitted"}[self.invert])
        elif self.resize:
            parts.insert(0, f"shorter side {self.resize}, centre crop")
        elif self.crop:
            parts.insert(0, "centre crop")
        if self.invert == "auto" and not self.fit:
            parts.append("inverted if the border is light")
        elif self.invert is True and not self.fit:
            parts.append("inverted")
        if self.normalises:
            parts.append(f"(x - {numbers_text(self.mean)}) / {numbers_text(self.std)}")
        return ", ".join(parts)


# torchvision's ImageNet classification preprocessing (transforms.Resize(256), CenterCrop(224),
# ToTensor, Normalize with the ImageNet statistics), for --preset imagenet.
PRESETS = {"imagenet": InputSpec((224, 224), "rgb", "unit", False, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225),
                                 256)}


# -- a model file's "input" object -----------------------------------------------------------------------
def read_input_spec(read: Reader, value: Any, graph: InputSpec | None = None) -> InputSpec:
    """The input rule of a model file's ``input`` object. ``graph`` is the rule an ONNX graph
    implies (size and channels fixed by its input): ``size`` and ``color`` then default to it, and
    must agree with it when given."""
    sized = graph is not None or (isinstance(value, dict) and "crop" in value)  # else size is required
    read.object(value, "", INPUT_KEYS, required=() if sized else ("size",))
    size = rule_size(read, value)
    crop = read.pair(value["crop"], "crop", 1, MAX_SIDE) if "crop" in value else None
    if graph is not None:
        if size is not None and size != graph.size:
            where = "size" if "size" in value else "crop"
            raise read.fail(where, f"is {list(size)} but the ONNX graph's input is {list(graph.size)}; give that or "
                                   "leave it out")
        size = graph.size
    assert size is not None  # required above unless the graph gives it
    resize = read.integer(value["resize"], "resize", 1, MAX_SIDE) if "resize" in value else None
    if resize is not None and resize < max(size):
        raise read.fail("resize", f"is {resize}, shorter than the {list(size)} crop; expected at least {max(size)}")
    fit = read.string(value["fit"], "fit", ("ink",)) if "fit" in value else None
    if fit is not None and (resize is not None or crop is not None):
        raise read.fail("fit", f"is {fit}: it crops the picture to its ink, so leave out "
                               f"{'resize' if resize is not None else 'crop'}")
    color = read.string(value.get("color", graph.color if graph is not None else "gray"), "color", ("gray", "rgb"))
    if fit is not None and color != "gray":
        raise read.fail("fit", f"is {fit}, which finds ink in one gray channel, but color is {color}; expected gray")
    channels = 3 if color == "rgb" else 1
    if graph is not None and channels != graph.channels:
        raise read.fail("color", f"is {color}, {channels} channel{'s' if channels > 1 else ''}, but the ONNX graph's "
                                 f"input has {graph.channels}; expected {graph.color}")
    mean = _read_per_channel(read, value.get("mean", 0.0), "mean", channels)
    std = _read_per_channel(read, value.get("std", 1.0), "std", channels)
    for i, s in enumerate(std):
        if s <= 0:
            raise read.fail(f"std[{i}]" if isinstance(value.get("std"), list) else "std", f"must be above 0, got {s:g}")
    invert = value.get("invert", "auto" if fit else False)  # a rule that fits ink finds it, unless told
    if not isinstance(invert, bool) and invert != "auto":
        raise read.fail("invert", f"expected true, false or \"auto\" (from the picture's border), got {_kind(invert)}")
    return InputSpec(size, color, read.string(value.get("scale", "unit"), "scale", ("raw", "unit")),
                     invert, mean, std, resize, crop is not None, fit)


def input_object(spec: InputSpec) -> dict[str, Any]:
    """The model file's ``input`` object of ``spec``, every field written out (mean and std one
    number per channel): ``read_input_spec`` reads it back as the same rule."""
    rule: dict[str, Any] = {"size": list(spec.size), "color": spec.color, "scale": spec.scale, "invert": spec.invert,
                            "mean": list(spec.mean), "std": list(spec.std)}
    if spec.fit:
        rule["fit"] = spec.fit
    if spec.resize:
        rule["resize"] = spec.resize
    if spec.crop:
        rule["crop"] = list(spec.size)
    return rule


def rule_size(read: Reader, value: Any) -> tuple[int, int] | None:
    """The (H, W) a model file's ``input`` object gives: its ``size``, else its ``crop`` (which must
    be the same when both are given); None when it gives neither, or is not an object."""
    if not isinstance(value, dict):
        return None
    size = read.pair(value["size"], "size", 1, MAX_SIDE) if "size" in value else None
    crop = read.pair(value["crop"], "crop", 1, MAX_SIDE) if "crop" in value else None
    if size is not None and crop is not None and crop != size:
        raise read.fail("crop", f"is {list(crop)} but size is {list(size)}; the network takes size, so a crop must be "
                                "that size (give one of them)")
    return size or crop


def _read_per_channel(read: Reader, value: Any, path: str, channels: int) -> tuple[float, ...]:
    if not isinstance(value, list):
        return (read.number(value, path),) * channels
    if len(value) not in (1, channels):
        expected = "1 value" if channels == 1 else f"1 or {channels} values (one per channel)"
        raise read.fail(path, f"expected {expected}, got {len(value)}")
    numbers = tuple(read.number(v, f"{path}[{i}]") for i, v in enumerate(value))
    return numbers * channels if len(numbers) == 1 else numbers


# -- options that override a rule ----------------------------------------------------------------------
@dataclass(frozen=True)
class InputOverrides:
    """Parts of an input rule given as options, each checked on its own (None: not given). A preset
    replaces the model's whole rule; the other parts then replace its fields one by one."""

    preset: str | None = None
    resize: int | None = None
    crop: tuple[int, int] | None = None  # (H, W)
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    color: str | None = None
    scale: str | None = None
    invert: Invert | None = None

    def __bool__(self) -> bool:
        return any(value is not None for value in vars(self).values())

    @property
    def size(self) -> tuple[int, int] | None:
        """The (H, W) these options give a network: the crop's, else the preset's; None when they
        leave it to the model. It fixes the height and width an ONNX graph leaves free."""
        return self.crop or (PRESETS[self.preset].size if self.preset else None)


def input_overrides(*, preset: Any = None, resize: Any = None, crop: Any = None, mean: Any = None, std: Any = None,
                    color: Any = None, scale: Any = None, invert: Any = None) -> InputOverrides:
    """Check and normalise the parts of an input rule, as the CLI gives them (text: ``"0.5,0.4,0.3"``,
    ``"224"``, ``"224,200"``, ``"yes"``) or as Python callers do (numbers, sequences, True).

    Raises UsageError naming the part (``param="std"``) for a value of the wrong kind or range:
    a preset that does not exist, a side outside 1 to 16384, a mean or std that is not finite
    numbers, a std at or below 0. How many numbers fit is checked with the channels
    (``with_overrides``, ``kernel_rule``)."""
    if preset is not None and preset not in PRESETS:
        raise UsageError(f"is {preset!r}; expected one of {', '.join(PRESETS)}", param="preset")
    for name, value, choices in (("color", color, ("gray", "rgb")), ("scale", scale, ("raw", "unit"))):
        if value is not None and value not in choices:
            raise UsageError(f"is {value!r}; expected {' or '.join(choices)}", param=name)
    if resize is not None:
        (resize,) = _sides(resize, "resize", 1, "a whole number of pixels from 1 to {max} (the shorter side's "
                                                "length)")
    if crop is not None:
        crop = _sides(crop, "crop", 2, "H or H,W, whole numbers of pixels from 1 to {max}")
        crop = crop * 2 if len(crop) == 1 else crop
    mean = None if mean is None else _numbers(mean, "mean")
    std = None if std is None else _numbers(std, "std")
    for s in std or ():
        if s <= 0:
            raise UsageError(f"must be above 0, got {s:g}; (x - mean) / std divides by it", param="std")
    if invert is not None:
        invert = _invert(invert)
    return InputOverrides(preset, resize, crop, mean, std, color, scale, invert)


def _invert(value: Any) -> Invert:
    """yes / no / auto (as the CLI gives it), or True / False / "auto" (as Python callers do)."""
    choices: dict[Any, Invert] = {"yes": True, "no": False, "auto": "auto", True: True, False: False}
    if isinstance(value, (str, bool)) and value in choices:
        return choices[value]
    raise UsageError(f"is {_given(value)}; expected yes, no or auto (from the picture's border)", param="invert")


def _sides(value: Any, param: str, most: int, form: str) -> tuple[int, ...]:
    """One or up to ``most`` whole numbers of pixels, 1 to MAX_SIDE: text "224,200", an int or a sequence."""
    parts = value.split(",") if isinstance(value, str) else value if isinstance(value, (list, tuple)) else [value]
    expected = f"expected {form.format(max=f'{MAX_SIDE:,}')}, got {_given(value)}"
    try:
        sides = tuple(_whole(part) for part in parts)
    except (TypeError, ValueError):
        raise UsageError(expected, param=param) from None
    if not 1 <= len(sides) <= most or not all(1 <= side <= MAX_SIDE for side in sides):
        raise UsageError(expected, param=param)
    return sides


def _whole(part: Any) -> int:
    if isinstance(part, str):
        return int(part.strip())
    if isinstance(part, (bool, float)) or not isinstance(part, (int, np.integer)):
        raise TypeError(part)
    return int(part)


def _numbers(value: Any, param: str) -> tuple[float, ...]:
    """One or more finite numbers: text "0.485,0.456,0.406", a number or a sequence."""
    parts = value.split(",") if isinstance(value, str) else value if isinstance(value, (list, tuple)) else [value]
    expected = f"expected one number, or one per channel separated by commas, got {_given(value)}"
    try:
        numbers = tuple(float(part) for part in parts if not isinstance(part, bool))
    except (TypeError, ValueError):
        raise UsageError(expected, param=param) from None
    if not numbers or len(numbers) != len(parts):
        raise UsageError(expected, param=param)
    if not all(math.isfinite(n) for n in numbers):
        raise UsageError(f"expected finite numbers, got {_given(value)}", param=param)
    return numbers


def _given(value: Any) -> str:
    """A value as the message quotes it: text in quotes, anything else as Python writes it, cut at 40 characters."""
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= 40 else text[:40] + "..."


def with_overrides(spec: InputSpec, given: InputOverrides, model: str) -> InputSpec:
    """A model's input rule ``spec``, replaced by ``given.preset`` if any, with the given parts in
    place of its fields. The model's input shape is fixed: a colour of another channel count, or a
    crop of another size, is a UsageError naming the option (``color``, ``crop``, else ``preset``);
    so is a crop larger than the resize, or a mean or std of another channel count."""
    base = PRESETS[given.preset] if given.preset else spec
    color = given.color or base.color
    channels = 3 if color == "rgb" else 1
    size = given.crop or base.size
    if (channels, *size) != spec.shape:
        if given.color is not None and channels != spec.channels:
            raise UsageError(f"is {color} ({channels} channel{'s' if channels > 1 else ''}), but the model {model} "
                             f"takes {spec.channels} ({spec.color}); expected {spec.color}", param="color")
        if given.crop is not None and size != spec.size:
            raise UsageError(f"is {_hw(size)} (H,W) but the model {model} takes {_hw(spec.size)}: its input size is "
                             "fixed, so leave the crop out or give that", param="crop")
        raise UsageError(f"{given.preset} prepares {(channels, *size)} inputs, but the model {model} takes "
                         f"{spec.shape}", param="preset")
    resize = given.resize if given.resize is not None else base.resize
    _check_crop_fits(resize, size, given)
    # A resize or a crop asked for replaces fitting the ink, which crops the picture its own way.
    fit = None if resize is not None or given.crop is not None else base.fit
    return InputSpec(spec.size, color, given.scale or base.scale, base.invert if given.invert is None else given.invert,
                     _per_channel(given.mean, base.mean, channels, "mean", given),
                     _per_channel(given.std, base.std, channels, "std", given),
                     resize, base.crop or given.crop is not None, fit)


def kernel_rule(given: InputOverrides, shape: tuple[int, int, int]) -> InputSpec | None:
    """The input rule of a kernel run on an image read as (C, H, W) ``shape`` (by ``kernel_reading``):
    resized, cropped and normalised as given, with the image's own size unless resized or cropped;
    None when nothing is asked beyond reading it. Raises UsageError as ``with_overrides`` does."""
    base = PRESETS[given.preset] if given.preset else None
    if not (base or given.resize or given.crop or given.mean or given.std or given.invert):
        return None
    channels, height, width = shape
    resize = given.resize if given.resize is not None else base.resize if base else None
    crop = given.crop or (base.size if base else None)
    if crop is not None:
        _check_crop_fits(resize, crop, given)
    size = crop or (shorter_side_size(height, width, resize) if resize else (height, width))
    color = kernel_reading(given)[0]
    mean = _per_channel(given.mean, base.mean if base else (0.0,), channels, "mean", given)
    std = _per_channel(given.std, base.std if base else (1.0,), channels, "std", given)
    return InputSpec(size, color, given.scale or (base.scale if base else "raw"), given.invert or False, mean, std,
                     resize, crop is not None)


def kernel_reading(given: InputOverrides) -> tuple[str, str]:
    """The colour and scale a kernel run reads its image in: the options', else the preset's, else
    gray and raw 0..255 (0..255 also when it resizes: torchvision resizes 8-bit pixels)."""
    base = PRESETS[given.preset] if given.preset else None
    color = given.color or (base.color if base else "gray")
    resizes = given.resize is not None or (base is not None and base.resize is not None)
    return color, "raw" if resizes else given.scale or (base.scale if base else "raw")


def _check_crop_fits(resize: int | None, size: tuple[int, int], given: InputOverrides) -> None:
    """After resizing the shorter side to ``resize``, a crop must fit inside it."""
    if resize is None or max(size) <= resize:
        return
    if given.crop is not None:
        raise UsageError(f"is {_hw(size)} (H,W), larger than the shorter side {resize} of the resize; expected at "
                         f"most {resize} on each side", param="crop")
    raise UsageError(f"is {resize}, shorter than the {_hw(size)} (H,W) crop; expected at least {max(size)}",
                     param="resize" if given.resize is not None else "preset")


def _per_channel(values: tuple[float, ...] | None, default: tuple[float, ...], channels: int, param: str,
                 given: InputOverrides) -> tuple[float, ...]:
    """``values`` (else ``default``) as one number per channel; a count that fits neither 1 nor the
    channels is a UsageError naming the option that brought it."""
    chosen = values if values is not None else default
    if len(chosen) == 1 or (values is None and len(set(chosen)) == 1):  # a rule's (0, 0, 0) fits gray too
        return (chosen[0],) * channels
    if len(chosen) == channels:
        return chosen
    expected = "1 number (the image is gray)" if channels == 1 else f"1 or {channels} numbers (one per channel)"
    if values is not None:
        raise UsageError(f"expected {expected}, got {len(values)}", param=param)
    # A preset's (or model's) per-channel values that the given colour does not fit.
    culprit = "color" if given.color is not None else "preset"
    raise UsageError(f"gives {channels} channel{'s' if channels > 1 else ''}, but the {param} of the rule it "
                     f"changes has {len(chosen)} values; give a {param} that fits too", param=culprit)


def _hw(size: tuple[int, int]) -> str:
    return f"{size[0]},{size[1]}"


def numbers_text(values: tuple[float, ...]) -> str:
    return f"{values[0]:g}" if len(set(values)) == 1 else "[" + ", ".join(f"{v:g}" for v in values) + "]"
