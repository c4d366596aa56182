"""Reading images into (C, H, W) float arrays with Pillow, saying what was done on the way.

By default an image becomes one gray channel (Pillow's "L" luma: 0.299 R + 0.587 G + 0.114 B,
rounded as Pillow rounds) with raw values 0..255, as in the seed tutorial, so that a person can
check the numbers by hand. Options give RGB channels, values scaled to 0..1, and a choice of what
to do with transparency. 16-bit images are scaled to the same 0..255 range rather than clipped.
"""

from __future__ import annotations

import io
import os
import re
import sys
import warnings
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Literal

import numpy as np

from ..errors import CnnError, ImageError, LimitError, describe
from .reading import read_bytes
from .limits import DEFAULT_LIMITS, Limits

if TYPE_CHECKING:  # Pillow is imported when an image is read, not at every start-up
    from PIL.Image import Image as PillowImage

ALLOWED_FORMATS = ("PNG", "JPEG", "BMP", "GIF", "TIFF", "WEBP")
TIFF_MAGIC = (b"II*\0", b"MM\0*", b"II+\0", b"MM\0+")  # classic and BigTIFF, either byte order
MAX_DECODER_TEXT = 1 << 16  # bytes of libtiff's messages kept
MAX_FRAMES = 10_000  # frames counted in a TIFF or GIF; a file with more is "first of over 10,000 frames"
MAX_TIFF_ENTRIES = 0xFFFF  # entries in one TIFF directory: classic TIFF's most; BigTIFF's count could claim 2**64

Color = Literal["gray", "rgb"]
Scale = Literal["raw", "unit"]
Alpha = Literal["drop", "white", "black", "keep"]
_COLOUR_MODES = ("CMYK", "YCbCr", "LAB", "HSV", "RGBX")


@dataclass(frozen=True, eq=False, repr=False)  # no repr: it would print the arrays
class LoadedImage:
    """An image as a (C, H, W) array, and what it was before."""

    array: np.ndarray  # (C, H, W)
    source: str
    format: str
    mode: str  # Pillow's mode of the file, before any conversion
    channel_names: tuple[str, ...]
    notes: tuple[str, ...]  # every conversion made, in words
    file_size: tuple[int, int] | None = None  # (W, H) in the file, when the array was resized since
    warnings: tuple[str, ...] = ()  # what makes a network's answer on it doubtful (input_rule: no ink found)

    @property
    def description(self) -> str:
        c, h, w = self.array.shape
        w, h = self.file_size or (w, h)
        return f"{self.format} {w}x{h} {self.mode} -> {'/'.join(self.channel_names)} {self.array.dtype}"


NPY_MAGIC = b"\x93NUMPY"
TENSOR_MODE = "tensor"  # LoadedImage.mode of a .npy input, which no image rule changes


def is_tensor_file(source: str, data: bytes | None = None) -> bool:
    """Whether an input is a .npy array (by its bytes when given, else by its name)."""
    return data.startswith(NPY_MAGIC) if data is not None else source.lower().endswith(".npy")


def read_tensor(source: str, data: bytes | None = None, *, dtype: type = np.float32,
                limits: Limits = DEFAULT_LIMITS) -> LoadedImage:
    """A .npy file (or ``data``, its bytes) as a network input, exactly as given: a (C, H, W) or
    (1, C, H, W) array of real, finite numbers, cast to ``dtype``. Nothing is resized, scaled or
    normalised. Raises ImageError naming ``source`` for anything else."""
    from .reading import load_npy

    if data is None:
        data = read_bytes(source, kind="image", error=ImageError, expected="a .npy array", limits=limits)
    array = load_npy(data, source, ImageError)
    if array.ndim == 4 and array.shape[0] == 1:
        array = array[0]
    if array.ndim != 3 or 0 in array.shape:
        raise ImageError(f"holds an array of shape {array.shape}; expected a tensor (C, H, W) or (1, C, H, W)",
                         source=source)
    if array.dtype.kind not in "iuf":
        raise ImageError(f"holds {array.dtype} values; expected real numbers", source=source)
    limits.check_memory(array.size * np.dtype(dtype).itemsize * 2, source, "reading it")
    tensor: np.ndarray = np.ascontiguousarray(array, dtype=dtype)
    if not np.all(np.isfinite(tensor)):
        raise ImageError("has NaN or infinite values", source=source)
    names = tuple(f"c{i}" for i in range(tensor.shape[0]))
    return LoadedImage(tensor, source, "NPY", TENSOR_MODE, names, ("a tensor, used as given",))


def read_image(
    source: str,
    data: bytes | None = None,
    *,
    color: Color = "gray",
    scale: Scale = "raw",
    alpha: Alpha = "drop",
    dtype: type = np.float32,
    limits: Limits = DEFAULT_LIMITS,
) -> LoadedImage:
    """Read an image file (or ``data``, the bytes of one, named ``source``) as a (C, H, W) array.

    Raises ImageError naming ``source`` for a missing, unreadable, unsupported or truncated
    image, and LimitError for a file, an image or a decoding over ``limits``, checked from the
    file's header before any pixel is decoded.
    """
    from PIL import Image, UnidentifiedImageError

    if data is None:
        data = read_bytes(source, kind="image", error=ImageError, expected="an image file", limits=limits)
    if not data:
        raise ImageError("is empty; expected an image", source=source)
    im: PillowImage | None = None
    notes: list[str] = []
    pillow_cap = Image.MAX_IMAGE_PIXELS
    with warnings.catch_warnings(record=True) as warned, _DecoderMessages(data.startswith(TIFF_MAGIC)) as decoders:
        warnings.simplefilter("always")  # Pillow's warnings (a corrupt EXIF block) become notes
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            # Pillow's cap guards what happens inside open(): a GIF frame may grow the canvas
            # there, and its disposal buffer is allocated at once.
            Image.MAX_IMAGE_PIXELS = limits.max_pixels
            # Before open(): Pillow reads the first directory entry by entry, as many as it claims.
            counted = tiff_frames(data) if data.startswith(TIFF_MAGIC) else None
            im = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
            width, height = im.size
            if width < 1 or height < 1:
                raise ImageError(f"has no pixels ({width}x{height})", source=source)
            channels = 1 if color == "gray" else 3
            limits.check_memory(decoding_bytes(width, height, channels + (alpha == "keep"), np.dtype(dtype)),
                                source, f"decoding {width}x{height} pixels")
            # Before load(): Pillow's TIFF reader applies the orientation there.
            orientation = _orientation(im, notes)
            im.load()
            # Every frame's header is read, so a file cut short in a later frame fails here.
            frames = counted if im.format == "TIFF" and counted is not None else _frame_count(im, data)
            file_format, file_mode = im.format or "image", im.mode
            if orientation in range(2, 9):
                from PIL import ImageOps

                im = ImageOps.exif_transpose(im)
                notes.append(f"EXIF orientation {orientation} applied")
            planes, names, full_scale = _to_planes(im, color, alpha, notes)
        except CnnError as err:
            raise err if err.source else err.within(source) from None
        except UnidentifiedImageError:
            raise ImageError(f"not a supported image{decoders.last()}; expected one of {', '.join(ALLOWED_FORMATS)}",
                             source=source) from None
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
            raise _over_pixel_cap(err, source, limits) from None
        except Exception as err:  # noqa: BLE001
            # A crafted file makes Pillow raise more than its documented OSError and ValueError:
            # KeyError and AttributeError from TIFF tags, OverflowError from sizes, found by
            # tests/fuzz. Inside these calls, any exception means the bytes are not a good image.
            what = getattr(im, "format", None) or "image"
            raise ImageError(f"cannot decode the {what}: {describe(err)}{decoders.last()}", source=source) from None
        finally:
            Image.MAX_IMAGE_PIXELS = pillow_cap
    notes += [f"Pillow: {' '.join(str(w.message).split())}" for w in warned] + decoders.said()
    if frames > 1:
        notes.insert(0, f"first of {'over ' if frames > MAX_FRAMES else ''}{min(frames, MAX_FRAMES):,} frames")
    array: np.ndarray = np.stack(planes).astype(dtype)  # C, H, W
    if full_scale is None:
        if not np.all(np.isfinite(array)):
            raise ImageError("has NaN or infinite pixel values", source=source)
    elif scale == "unit":
        array /= dtype(full_scale)
        notes.append(f"values scaled to 0..1 (divided by {full_scale})")
    elif full_scale != 255:
        array *= dtype(255 / full_scale)
        if array.min() < 0:  # a signed 32-bit image keeps its sign
            notes.append(f"values scaled from -{full_scale}..{full_scale} to -255..255")
        else:
            notes.append(f"values scaled from 0..{full_scale} to 0..255")
    return LoadedImage(array, source, file_format, file_mode, names, tuple(notes))


class _DecoderMessages:
    """What the decoders say while they run, kept for notes and error messages instead of reaching
    stderr ahead of cnn's one line: Pillow's log records and, with ``c_library`` (for TIFF), what
    libtiff writes straight to file descriptor 2, which Python cannot intercept otherwise."""

    def __init__(self, c_library: bool) -> None:
        import logging

        self._log: list[str] = []
        self._c_library = c_library
        self._sink: IO[bytes] | None = None  # where fd 2 points while the decoders run
        self._saved_fd = -1  # fd 2 as it was, while _sink is set
        self._c_lines: list[str] = []
        log = self._log

        class Collect(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                log.append(f"Pillow: {' '.join(record.getMessage().split())}")

        self._handler = Collect(logging.WARNING)
        self._pillow = logging.getLogger("PIL")

    def __enter__(self) -> _DecoderMessages:
        self._pillow.addHandler(self._handler)
        if self._c_library:
            import tempfile  # only TIFF needs it; start-up does not pay for it

            sys.stderr.flush()
            self._sink, self._saved_fd = tempfile.TemporaryFile(), os.dup(2)
            os.dup2(self._sink.fileno(), 2)
        return self

    def __exit__(self, *exc) -> None:
        self._pillow.removeHandler(self._handler)
        if self._sink is not None:
            os.dup2(self._saved_fd, 2)
            os.close(self._saved_fd)
            self._c_lines = self._read_sink(self._sink)
            self._sink.close()
            self._sink = None

    def _read_sink(self, sink: IO[bytes]) -> list[str]:
        sink.seek(0)
        text = sink.read(MAX_DECODER_TEXT).decode("utf-8", "replace")
        sink.seek(0, os.SEEK_END)  # fd 2 shares this offset while it points here
        return [f"libtiff: {' '.join(line.split())}" for line in text.splitlines() if line.strip()]

    def said(self) -> list[str]:
        """Every message so far, each once, in order."""
        lines = self._log + (self._read_sink(self._sink) if self._sink is not None else self._c_lines)
        return list(dict.fromkeys(lines))

    def last(self) -> str:
        """The decoders' last word, to end an error message with."""
        said = self.said()
        return f" ({said[-1]})" if said else ""


def _frame_count(im, data: bytes) -> int:
    """The number of frames in the image, or MAX_FRAMES + 1 when there are more.

    Pillow's n_frames reads every frame header, which for TIFF costs time quadratic in the number
    of frames (each new directory's offset is looked up in a list: 50,000 frames of 1x1 took 31 s)
    and for GIF a few microseconds a frame in Python, unbounded. TIFF and GIF are walked here, in
    linear time and up to MAX_FRAMES; PNG (APNG states its count), WebP (libwebp's demuxer, in C,
    fast) and MPO keep Pillow's count. Raises ImageError for a later frame whose header is cut
    short, as reading it with Pillow did.
    """
    if im.format == "TIFF":
        return tiff_frames(data) or 1
    if im.format == "GIF":
        return gif_frames(data)
    return getattr(im, "n_frames", 1)


def tiff_frames(data: bytes) -> int | None:
    """Frames of a TIFF: its chain of image file directories (IFDs), classic or BigTIFF, in either
    byte order; None when the header is too short to hold the first offset. A chain that comes
    back to a directory already seen ends there, as in Pillow; a first directory cut short counts
    as one frame, which Pillow reads as far as it can or refuses. Raises ImageError for a later
    directory cut short or past the end of the file, and for any of over MAX_TIFF_ENTRIES entries.
    """
    import struct

    order = "<" if data.startswith(b"II") else ">"
    big = data[2:4] in (b"+\0", b"\0+")  # BigTIFF: 64-bit counts and offsets
    if len(data) < (16 if big else 8):
        return None
    count = struct.Struct(order + ("Q" if big else "H"))  # entries in a directory
    link = struct.Struct(order + ("Q" if big else "I"))  # the offset of the next directory
    entry = 20 if big else 12
    (offset,) = link.unpack_from(data, 8 if big else 4)
    seen: set[int] = set()
    while offset and offset not in seen:
        if len(seen) == MAX_FRAMES:
            return MAX_FRAMES + 1
        seen.add(offset)
        first = len(seen) == 1  # Pillow reads what it can of the first directory, and judges the image
        if offset + count.size > len(data):
            if first:
                return 1
            raise ImageError(f"cannot decode the TIFF: frame {len(seen)}'s directory would start at byte {offset:,}, "
                             f"past the end of the file ({len(data):,} bytes)")
        (entries,) = count.unpack_from(data, offset)
        if entries > MAX_TIFF_ENTRIES:
            raise ImageError(f"cannot decode the TIFF: frame {len(seen)}'s directory claims {entries:,} entries; "
                             f"expected at most {MAX_TIFF_ENTRIES:,}")
        end = offset + count.size + entries * entry
        if end + link.size > len(data):
            if first:
                return 1
            raise ImageError(f"cannot decode the TIFF: frame {len(seen)}'s directory ({entries:,} entries from byte "
                             f"{offset:,}) is cut short by the end of the file ({len(data):,} bytes)")
        (offset,) = link.unpack_from(data, end)
    return len(seen)


def gif_frames(data: bytes) -> int:
    """Frames of a GIF: its image descriptors, found by walking its blocks exactly as Pillow's
    n_frames does, so the counts agree: a stray byte between blocks is passed over, a frame's data
    may end with the file, and an extension whose first sub-block is the empty one is read on past
    it, as Pillow reads it (a comment's excepted)."""
    size = len(data)
    flags = data[10]
    position = 13 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)  # after the global colour table
    frames = 0
    while position < size:
        block = data[position]
        if block == 0x3B:  # the trailer
            break
        if block == 0x21:  # an extension: its label, then sub-blocks
            if position + 1 >= size:
                raise ImageError(f"cannot decode the GIF: an extension after frame {frames} is cut short")
            label, position = data[position + 1], position + 2
            length = data[position] if position < size else 0
            first = data[position + 1:position + 1 + length]  # the first sub-block
            position += 1 + length if position < size else 0
            if label == 0xF9 and length and len(first) < (4 if first and first[0] & 1 else 3):
                # Pillow reads the graphic control block's flags, delay and transparent index
                raise ImageError(f"cannot decode the GIF: the graphic control block after frame {frames} is cut short")
            if label == 0xFE and not length:
                continue  # an empty comment ends at its first sub-block
            if label == 0xFF and not frames and length and first.startswith(b"NETSCAPE2.0"):
                position += 1 + data[position] if position < size else 0  # the loop count, read before the rest
            position = _gif_sub_blocks_end(data, position)
        elif block == 0x2C:  # an image descriptor, a colour table, the LZW code size, sub-blocks
            if position + 10 > size:
                raise ImageError(f"cannot decode the GIF: frame {frames + 1}'s descriptor is cut short")
            local = data[position + 9]
            position += 10 + (3 << ((local & 7) + 1) if local & 0x80 else 0)
            if position >= size:
                raise ImageError(f"cannot decode the GIF: frame {frames + 1} is cut short before its data")
            frames += 1
            if frames > MAX_FRAMES:
                break
            position = _gif_sub_blocks_end(data, position + 1)
        else:
            position += 1
    return frames


def _gif_sub_blocks_end(data: bytes, position: int) -> int:
    """Where the sub-blocks starting at ``position`` end: after the empty one, or at the end of the file."""
    size = len(data)
    while position < size:
        length = data[position]
        position += 1 + length
        if not length:
            break
    return position


def _over_pixel_cap(err: Exception, source: str, limits: Limits) -> LimitError:
    """Pillow's decompression-bomb check, which fired inside open() or on a later frame, as our limit."""
    claimed = re.search(r"\((\d+) pixels\)", str(err))  # Pillow names the count, not the sides
    return limits.pixels_error(int(claimed[1]) if claimed else None, source)


def _orientation(im, notes: list[str]) -> int:
    """The EXIF orientation (1 to 8), or 1 when there is none or it cannot be read.

    EXIF is metadata: a broken block gets a note, not an error that would refuse the pixels.
    Only files that carry EXIF pay for parsing it (getexif loads the TIFF plugin).
    """
    if im.format != "TIFF" and "exif" not in im.info:
        return 1
    try:
        orientation = im.getexif().get(0x0112, 1)
    except Exception as err:  # noqa: BLE001  (any parser failure in metadata)
        notes.append(f"EXIF unreadable, orientation not applied ({type(err).__name__})")
        return 1
    return orientation if isinstance(orientation, int) else 1


def decoding_bytes(width: int, height: int, channels: int, dtype: np.dtype) -> int:
    """An upper estimate of the memory alive at once while an image becomes a (C, H, W) array.

    Pillow holds up to 4 bytes a pixel, and a converted copy as large; the planes are then stacked
    (as float64 for deep images) and cast to ``dtype``. Beside them, Pillow's decoder reads in
    blocks of up to 1 MiB (ImageFile.SAFEBLOCK), and a tiny image measured just that: 2 MiB more.
    """
    return width * height * (2 * 4 + channels * (8 + dtype.itemsize)) + (2 << 20)


def _to_planes(im, color: Color, alpha: Alpha, notes: list[str]):
    """Split a loaded Pillow image into 2-D planes; return them, their names and the full scale.

    The full scale is the value of white (255 for 8-bit, 65535 for 16-bit), or None for float
    images, whose values are used as they are.
    """
    from PIL import Image

    mode = im.mode
    if mode == "1":
        im = im.convert("L")
        notes.append("1-bit pixels read as 0 and 255")
    elif mode in ("P", "PA"):
        im = im.convert("RGBA" if mode == "PA" or "transparency" in im.info else "RGB")
        notes.append("palette colours expanded")
    elif mode in ("La", "RGBa"):
        im = im.convert(mode.upper())
    elif mode in _COLOUR_MODES:
        im = im.convert("RGB")
        notes.append(f"{mode} converted to RGB")
    if im.mode in ("I", "F") or im.mode.startswith("I;16"):
        return _deep_planes(im, color, notes)
    if im.mode not in ("L", "LA", "RGB", "RGBA"):
        raise ImageError(f"pixel mode {im.mode} is not supported")
    alpha_plane = None
    if im.mode in ("LA", "RGBA"):
        if alpha == "keep":
            alpha_plane = np.asarray(im.getchannel("A"))
            notes.append("alpha kept as a channel")
        elif alpha in ("white", "black"):
            background = Image.new("RGBA", im.size, (255, 255, 255, 255) if alpha == "white" else (0, 0, 0, 255))
            im = Image.alpha_composite(background, im.convert("RGBA"))
            notes.append(f"transparent pixels composited over {alpha}")
        else:
            notes.append("alpha channel dropped")
        im = im.convert("RGB" if im.mode == "RGBA" else "L")
    if color == "gray":
        if im.mode != "L":
            im = im.convert("L")
            notes.append("RGB converted to gray (Pillow L: 0.299 R + 0.587 G + 0.114 B)")
        planes, names = [np.asarray(im)], ["gray"]
    else:
        if im.mode == "L":
            notes.append("gray repeated in R, G and B")
        rgb = np.asarray(im.convert("RGB"))
        planes, names = [rgb[..., i] for i in range(3)], ["R", "G", "B"]
    if alpha_plane is not None:
        planes, names = planes + [alpha_plane], names + ["alpha"]
    return planes, tuple(names), 255


def _deep_planes(im, color: Color, notes: list[str]):
    """Planes of a 16-bit, 32-bit integer or float gray image, which Pillow's 8-bit paths would clip."""
    values = np.asarray(im)
    if im.mode == "F":
        full_scale = None
        notes.append("32-bit float values used as they are")
    elif im.mode == "I" and (values.min() < 0 or values.max() > 65535):
        full_scale = int(max(abs(int(values.min())), int(values.max()), 1))  # the note says the scale
    else:
        full_scale = 65535
    planes = [values.astype(np.float64)]
    if color == "rgb":
        notes.append("gray repeated in R, G and B")
        return planes * 3, ("R", "G", "B"), full_scale
    return planes, ("gray",), full_scale


def resize(array: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, str]:
    """Resize a (C, H, W) float array to ``size`` (H, W) with Pillow, channel by channel, in float.

    The rule: area averaging (Pillow's BOX filter) when the image shrinks or keeps its size on both
    axes, which is how scikit-learn's 8x8 digits were made from 32x32 bitmaps; bilinear when it
    grows on either axis. The aspect ratio is not kept: the image is stretched to the size.
    Returns the array and the rule's name.
    """
    from PIL import Image

    height, width = size
    shrinks = height <= array.shape[1] and width <= array.shape[2]
    method = Image.Resampling.BOX if shrinks else Image.Resampling.BILINEAR
    planes = [np.asarray(Image.fromarray(np.asarray(plane, dtype=np.float32)).resize((width, height), method))
              for plane in array]
    how = "area average" if shrinks else "bilinear"
    if array.shape[1] * width != array.shape[2] * height:
        how += ", aspect ratio not kept"
    return np.stack(planes).astype(array.dtype, copy=False), how


def shorter_side_size(height: int, width: int, shorter: int) -> tuple[int, int]:
    """(H, W) after torchvision's ``Resize(shorter)``: the shorter side ``shorter``, the longer
    ``int(shorter * long / short)``, truncated."""
    if height <= width:
        return shorter, int(shorter * width / height)
    return int(shorter * height / width), shorter


def resize_and_crop(array: np.ndarray, shorter: int, size: tuple[int, int]) -> tuple[np.ndarray, list[str]]:
    """torchvision's ``Resize(shorter)`` then ``CenterCrop(size)`` on the PIL image of a (C, H, W)
    array of 0..255 values, with its arithmetic: the shorter side becomes ``shorter`` and the longer
    ``int(shorter * long / short)`` (truncated), by Pillow's bilinear filter on 8-bit pixels (whose
    support widens when shrinking: antialiased); then ``centre_crop``. Returns the (C, h, w) array
    and notes."""
    from PIL import Image

    channels, height, width = array.shape
    pixels = np.clip(np.rint(array), 0, 255).astype(np.uint8)  # the 8-bit picture torchvision resizes
    new_h, new_w = shorter_side_size(height, width, shorter)
    notes = []
    if (new_h, new_w) != (height, width):
        # Plane by plane: Pillow resamples each band of an RGB image with the same 8-bit arithmetic.
        planes = [np.asarray(Image.fromarray(plane).resize((new_w, new_h), Image.Resampling.BILINEAR))
                  for plane in pixels]
        pixels = np.stack(planes)  # C, new_h, new_w
        notes.append(f"resized {width}x{height} -> {new_w}x{new_h} (shorter side {shorter}, bilinear, as torchvision)")
    pixels, cropped = centre_crop(pixels, size)
    return np.ascontiguousarray(pixels, dtype=array.dtype), notes + cropped


def centre_crop(array: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, list[str]]:
    """torchvision's ``CenterCrop(size)`` on a (C, H, W) array: the centre ``size`` (h, w), top
    ``int(round((H - h) / 2))`` and left likewise; a side shorter than the crop is zero-padded
    first, floor half before and the rest after. Returns the (C, h, w) array and notes (none when
    the array is already of that size)."""
    crop_h, crop_w = size
    notes = []
    pad_h, pad_w = max(crop_h - array.shape[1], 0), max(crop_w - array.shape[2], 0)
    if pad_h or pad_w:
        before = array_size(array)
        array = np.pad(array, ((0, 0), (pad_h // 2, pad_h - pad_h // 2), (pad_w // 2, pad_w - pad_w // 2)))
        notes.append(f"zero-padded {before} -> {array_size(array)} (smaller than the crop, as torchvision)")
    if array.shape[1:] != (crop_h, crop_w):
        top = int(round((array.shape[1] - crop_h) / 2))
        left = int(round((array.shape[2] - crop_w) / 2))
        array = array[:, top:top + crop_h, left:left + crop_w]  # C, crop_h, crop_w
        notes.append(f"centre {crop_w}x{crop_h} cropped")
    return array, notes


def array_size(array: np.ndarray) -> str:
    """W x H of a (C, H, W) array, as images are sized."""
    return f"{array.shape[2]}x{array.shape[1]}"


def peek_shape(source: str, color: Color = "gray", alpha: Alpha = "drop",
               limits: Limits = DEFAULT_LIMITS) -> tuple[int, int, int] | None:
    """The (C, H, W) shape ``read_image`` would give, from the file's header alone (its size, EXIF
    orientation and transparency); None when the header cannot tell (stdin, an unreadable file),
    which then fails in its turn."""
    from PIL import Image

    import stat

    try:
        if not stat.S_ISREG(os.stat(source).st_mode):  # stdin, a FIFO: reading would consume it
            return None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(source, formats=ALLOWED_FORMATS) as im:
                width, height = im.size
                if width * height > limits.max_pixels:
                    return None
                if _orientation(im, []) in (5, 6, 7, 8):  # a quarter turn swaps the sides
                    width, height = height, width
                transparent = im.mode in ("LA", "RGBA", "PA", "La", "RGBa") or "transparency" in im.info
    except Exception:  # noqa: BLE001  (the run reads it properly and says what is wrong)
        return None
    channels = (1 if color == "gray" else 3) + (alpha == "keep" and transparent)
    return channels, height, width
