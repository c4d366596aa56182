"""Tests for cnncli.io.images.read_image: formats, Pillow modes, alpha, scaling, orientation and errors.

Every image is made here with Pillow (in tmp_path or in memory); only seed_5x5.png is read from the
repository. Expected values come from hand arithmetic or from Pillow's own decoding of the same file.
"""

from __future__ import annotations

import resource
import struct
from pathlib import Path

import numpy as np
import pytest
from badfiles import encode, noise, png_claiming
from numpy.testing import assert_allclose, assert_array_equal
from PIL import Image

from cnncli.errors import ImageError, LimitError
from cnncli.io.images import read_image
from cnncli.io.limits import Limits

SEED = Path(__file__).resolve().parents[1] / "sample_images" / "seed_5x5.png"
SEED_VALUES = [[1, 2, 3, 0, 1], [4, 5, 6, 1, 2], [7, 8, 9, 2, 3], [1, 2, 3, 4, 5], [6, 7, 8, 5, 6]]


def save(tmp_path: Path, image: Image.Image, name: str, **params) -> Path:
    """Save ``image`` as tmp_path/name (format from the suffix) and return the path."""
    path = tmp_path / name
    image.save(path, **params)
    return path


def check(actual: np.ndarray, expected, dtype=np.float32, rtol: float = 0.0, atol: float = 0.0) -> None:
    """Shape, then dtype, then values within the given tolerances."""
    expected = np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape
    assert actual.dtype == dtype
    assert_allclose(actual, expected, rtol=rtol, atol=atol)


def pillow_rgb(path: Path) -> np.ndarray:
    """What Pillow itself decodes from ``path``, as (3, H, W)."""
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB")).transpose(2, 0, 1)  # 3, H, W


def smooth_rgb(height: int = 6, width: int = 8) -> np.ndarray:
    """A smooth (H, W, 3) uint8 colour ramp with fewer than 256 colours, so GIF keeps it exactly."""
    y, x = np.mgrid[0:height, 0:width]
    return np.stack([x * 30, y * 40, np.full_like(x, 100)], axis=-1).astype(np.uint8)  # H, W, 3


# --- the shipped sample -------------------------------------------------------------------------


def test_seed_sample_reads_as_the_tutorial_values():
    """sample_images/seed_5x5.png reads as the tutorial's 5x5 values, one float32 gray channel."""
    loaded = read_image(str(SEED))
    check(loaded.array, [SEED_VALUES])
    assert loaded.channel_names == ("gray",)
    assert loaded.format == "PNG" and loaded.mode == "L"
    assert loaded.notes == ()


def test_seed_sample_float64_on_request():
    """dtype=np.float64 gives the same values as float64."""
    check(read_image(str(SEED), dtype=np.float64).array, [SEED_VALUES], dtype=np.float64)


# --- formats ------------------------------------------------------------------------------------

LOSSLESS_FORMATS = [("png", {}), ("bmp", {}), ("gif", {}), ("tiff", {}), ("webp", {"lossless": True})]


@pytest.mark.parametrize(("suffix", "params"), LOSSLESS_FORMATS, ids=[s for s, _ in LOSSLESS_FORMATS])
def test_lossless_formats_round_trip_exactly(tmp_path, suffix, params):
    """Each lossless allowed format gives back the saved RGB bytes, which are what Pillow decodes."""
    pixels = smooth_rgb()
    path = save(tmp_path, Image.fromarray(pixels), f"ramp.{suffix}", **params)
    loaded = read_image(str(path), color="rgb")
    check(loaded.array, pillow_rgb(path))
    check(loaded.array, pixels.transpose(2, 0, 1))  # 3, H, W
    assert loaded.format == {"tiff": "TIFF", "webp": "WEBP"}.get(suffix, suffix.upper())


def test_jpeg_equals_pillow_decode_and_source_within_tolerance(tmp_path):
    """A JPEG reads exactly as Pillow decodes it, and within 8 levels (mean under 2) of what was saved."""
    pixels = smooth_rgb()
    path = save(tmp_path, Image.fromarray(pixels), "ramp.jpg", quality=95, subsampling=0)
    loaded = read_image(str(path), color="rgb")
    check(loaded.array, pillow_rgb(path))
    error = np.abs(loaded.array - pixels.transpose(2, 0, 1))  # 3, H, W
    assert error.max() <= 8 and error.mean() < 2
    assert loaded.format == "JPEG"


# --- colour -------------------------------------------------------------------------------------


def test_gray_default_is_pillow_L_conversion(tmp_path):
    """An RGB image becomes one channel equal to Pillow's convert("L"), about 0.299 R + 0.587 G + 0.114 B."""
    pixels = np.random.default_rng(0).integers(0, 256, (7, 9, 3), dtype=np.uint8)
    path = save(tmp_path, Image.fromarray(pixels), "noise.png")
    loaded = read_image(str(path))
    with Image.open(path) as im:
        expected = np.asarray(im.convert("L"))
    check(loaded.array, expected[None])
    luma = pixels @ np.array([0.299, 0.587, 0.114])  # H, W
    assert_allclose(loaded.array[0], luma, atol=0.51)  # Pillow rounds fixed-point coefficients
    assert loaded.channel_names == ("gray",)
    assert any("RGB converted to gray" in note for note in loaded.notes)


def test_rgb_gives_the_three_colour_bytes(tmp_path):
    """color="rgb" gives channels R, G, B equal to the stored bytes."""
    pixels = np.random.default_rng(1).integers(0, 256, (5, 4, 3), dtype=np.uint8)
    path = save(tmp_path, Image.fromarray(pixels), "noise.png")
    loaded = read_image(str(path), color="rgb")
    check(loaded.array, pixels.transpose(2, 0, 1))  # 3, H, W
    assert loaded.channel_names == ("R", "G", "B")
    assert loaded.notes == ()


def test_gray_image_as_rgb_repeats_the_plane(tmp_path):
    """color="rgb" on a gray image repeats the gray plane three times and says so."""
    path = save(tmp_path, Image.fromarray(np.array([[0, 7, 255]], dtype=np.uint8)), "g.png")
    loaded = read_image(str(path), color="rgb")
    check(loaded.array, [[[0, 7, 255]]] * 3)
    assert "gray repeated in R, G and B" in loaded.notes


def test_unit_scale_divides_8_bit_by_255(tmp_path):
    """scale="unit" divides 8-bit values by 255."""
    path = save(tmp_path, Image.fromarray(np.array([[0, 51, 255]], dtype=np.uint8)), "g.png")
    loaded = read_image(str(path), scale="unit")
    check(loaded.array, [[[0.0, 0.2, 1.0]]], rtol=1e-6)
    assert "values scaled to 0..1 (divided by 255)" in loaded.notes


# --- Pillow modes -------------------------------------------------------------------------------


def test_mode_1_reads_as_0_and_255(tmp_path):
    """A 1-bit image reads as 0 and 255."""
    im = Image.new("1", (3, 2))
    im.putpixel((1, 0), 1)
    im.putpixel((2, 1), 1)
    loaded = read_image(str(save(tmp_path, im, "bits.png")))
    assert loaded.mode == "1"
    check(loaded.array, [[[0, 255, 0], [0, 0, 255]]])
    assert "1-bit pixels read as 0 and 255" in loaded.notes


def test_mode_L_reads_unchanged_without_notes(tmp_path):
    """An 8-bit gray image reads as its values, with nothing to note."""
    values = np.array([[0, 1, 128], [254, 255, 9]], dtype=np.uint8)
    loaded = read_image(str(save(tmp_path, Image.fromarray(values), "g.png")))
    assert loaded.mode == "L"
    check(loaded.array, values[None])
    assert loaded.notes == ()


def test_mode_LA_drops_alpha_by_default(tmp_path):
    """A gray+alpha image reads as its gray plane by default and notes the dropped alpha."""
    im = Image.new("LA", (2, 1))
    im.putdata([(10, 0), (200, 128)])
    loaded = read_image(str(save(tmp_path, im, "la.png")))
    assert loaded.mode == "LA"
    check(loaded.array, [[[10, 200]]])
    assert "alpha channel dropped" in loaded.notes


def palette_image() -> Image.Image:
    """A 3x1 palette image: red, blue, green (palette indices 0, 1, 2)."""
    im = Image.new("P", (3, 1))
    im.putpalette([255, 0, 0, 0, 0, 255, 0, 255, 0])
    im.putdata([0, 1, 2])
    return im


def test_mode_P_expands_the_palette(tmp_path):
    """A palette image reads as its palette colours, and as Pillow's gray of them by default."""
    path = save(tmp_path, palette_image(), "p.png")
    rgb = read_image(str(path), color="rgb")
    assert rgb.mode == "P"
    check(rgb.array, [[[255, 0, 0]], [[0, 0, 255]], [[0, 255, 0]]])
    assert "palette colours expanded" in rgb.notes
    gray = read_image(str(path))
    with Image.open(path) as im:
        check(gray.array, np.asarray(im.convert("RGB").convert("L"))[None])


def test_mode_P_with_transparency_has_alpha(tmp_path):
    """A palette image with a transparent index gets alpha 0 there and 255 elsewhere."""
    path = save(tmp_path, palette_image(), "pt.png", transparency=1)
    with Image.open(path) as im:
        assert im.mode == "P" and im.info["transparency"] == 1
    loaded = read_image(str(path), color="rgb", alpha="keep")
    assert loaded.channel_names == ("R", "G", "B", "alpha")
    check(loaded.array, [[[255, 0, 0]], [[0, 0, 255]], [[0, 255, 0]], [[255, 0, 255]]])
    assert "palette colours expanded" in loaded.notes and "alpha kept as a channel" in loaded.notes
    white = read_image(str(path), color="rgb", alpha="white")
    check(white.array, [[[255, 255, 0]], [[0, 255, 255]], [[0, 255, 0]]])


def test_mode_PA_expands_palette_and_alpha(tmp_path):
    """A palette+alpha image (TIFF, which Pillow can save as PA) reads as palette colours plus its alpha."""
    im = palette_image().convert("PA")
    im.putdata([(0, 255), (1, 128), (2, 0)])
    path = save(tmp_path, im, "pa.tiff")
    with Image.open(path) as reopened:
        assert reopened.mode == "PA"
    loaded = read_image(str(path), color="rgb", alpha="keep")
    assert loaded.mode == "PA"
    check(loaded.array, [[[255, 0, 0]], [[0, 0, 255]], [[0, 255, 0]], [[255, 128, 0]]])
    assert "palette colours expanded" in loaded.notes and "alpha kept as a channel" in loaded.notes


def test_mode_CMYK_is_converted_as_pillow_does(tmp_path):
    """A CMYK image becomes RGB as Pillow converts it: no ink is white, full black is black."""
    im = Image.new("CMYK", (3, 1))
    im.putdata([(0, 0, 0, 0), (0, 0, 0, 255), (10, 20, 30, 40)])
    path = save(tmp_path, im, "cmyk.tiff")
    loaded = read_image(str(path), color="rgb")
    assert loaded.mode == "CMYK"
    expected = np.asarray(im.convert("RGB")).transpose(2, 0, 1)  # 3, 1, 3
    check(loaded.array, expected)
    check(loaded.array[:, 0, :2], [[255, 0], [255, 0], [255, 0]])
    assert "CMYK converted to RGB" in loaded.notes


SIXTEEN_BIT = np.array([[0, 255, 1000, 65535]], dtype=np.uint16)


def test_16_bit_scales_to_255_without_clipping(tmp_path):
    """A 16-bit gray PNG maps 65535 to 255.0 and v to v*255/65535 (not clipped at 255 first)."""
    path = save(tmp_path, Image.fromarray(SIXTEEN_BIT), "deep.png")
    loaded = read_image(str(path))
    assert loaded.mode.startswith("I;16")
    check(loaded.array, SIXTEEN_BIT[None] * (255 / 65535), rtol=1e-6)
    assert loaded.array[0, 0, 3] == 255.0
    assert "values scaled from 0..65535 to 0..255" in loaded.notes


def test_16_bit_unit_scale_divides_by_65535(tmp_path):
    """scale="unit" on a 16-bit image gives value/65535."""
    path = save(tmp_path, Image.fromarray(SIXTEEN_BIT), "deep.png")
    loaded = read_image(str(path), scale="unit", dtype=np.float64)
    check(loaded.array, SIXTEEN_BIT[None] / 65535, dtype=np.float64, rtol=1e-12)
    assert "values scaled to 0..1 (divided by 65535)" in loaded.notes


def test_mode_I_within_16_bits_scales_like_16_bit(tmp_path):
    """A 32-bit integer image with values in 0..65535 is scaled as 16-bit."""
    path = save(tmp_path, Image.fromarray(SIXTEEN_BIT.astype(np.int32)), "int.tiff")
    loaded = read_image(str(path))
    assert loaded.mode == "I"
    check(loaded.array, SIXTEEN_BIT[None] * (255 / 65535), rtol=1e-6)


def test_mode_I_beyond_16_bits_divides_by_largest_magnitude(tmp_path):
    """A 32-bit integer image with values beyond 0..65535 is scaled by its largest magnitude."""
    values = np.array([[-7000, 0, 70000]], dtype=np.int32)
    loaded = read_image(str(save(tmp_path, Image.fromarray(values), "int.tiff")), scale="unit")
    check(loaded.array, values[None] / 70000, rtol=1e-6)
    assert any("divided by 70000" in note for note in loaded.notes)


def test_mode_F_values_pass_through(tmp_path):
    """A 32-bit float image keeps its values, negative and large, with any scale."""
    values = np.array([[1.5, -2.25, 1e6]], dtype=np.float32)
    path = save(tmp_path, Image.fromarray(values), "float.tiff")
    for scale in ("raw", "unit"):
        loaded = read_image(str(path), scale=scale)
        assert loaded.mode == "F"
        check(loaded.array, values[None])
        assert loaded.notes == ("32-bit float values used as they are",)


@pytest.mark.parametrize("bad", [np.nan, np.inf], ids=["nan", "inf"])
def test_mode_F_with_nan_is_an_error(tmp_path, bad):
    """A float image holding NaN or infinity raises ImageError naming the file."""
    path = save(tmp_path, Image.fromarray(np.array([[1.0, bad]], dtype=np.float32)), "float.tiff")
    with pytest.raises(ImageError) as caught:
        read_image(str(path))
    assert str(path) in str(caught.value) and "NaN or infinite" in str(caught.value)


# --- alpha --------------------------------------------------------------------------------------

ALPHAS = np.array([0, 128, 255])  # one pixel fully transparent, one half, one opaque


def over(value: int, alpha: np.ndarray, background: int) -> np.ndarray:
    """``value`` at ``alpha`` composited by hand over an opaque ``background``."""
    return (value * alpha + background * (255 - alpha)) / 255


def test_rgba_alpha_options(tmp_path):
    """RGBA (200, 100, 50) at alpha 0/128/255: drop keeps RGB, white/black composite, keep adds alpha."""
    im = Image.new("RGBA", (3, 1))
    im.putdata([(200, 100, 50, int(a)) for a in ALPHAS])
    path = save(tmp_path, im, "rgba.png")
    colour = np.array([200, 100, 50])[:, None, None] * np.ones((1, 1, 3))  # 3, 1, 3

    dropped = read_image(str(path), color="rgb", alpha="drop")
    check(dropped.array, colour)
    assert "alpha channel dropped" in dropped.notes

    for name, background in (("white", 255), ("black", 0)):
        loaded = read_image(str(path), color="rgb", alpha=name)
        hand = np.stack([[over(v, ALPHAS, background)] for v in (200, 100, 50)])  # 3, 1, 3
        check(loaded.array, hand, atol=1.0)  # Pillow rounds in fixed point
        pillow = Image.alpha_composite(Image.new("RGBA", im.size, (background,) * 3 + (255,)), im)
        check(loaded.array, np.asarray(pillow.convert("RGB")).transpose(2, 0, 1))
        check(loaded.array[:, 0, 0], [background] * 3)  # alpha 0: the background exactly
        check(loaded.array[:, 0, 2], [200, 100, 50])  # alpha 255: the colour exactly
        assert f"transparent pixels composited over {name}" in loaded.notes

    kept = read_image(str(path), color="rgb", alpha="keep")
    assert kept.channel_names == ("R", "G", "B", "alpha")
    check(kept.array, np.concatenate([colour, ALPHAS[None, None]]))
    assert "alpha kept as a channel" in kept.notes


def test_la_alpha_options(tmp_path):
    """LA gray 200 at alpha 0/128/255: drop keeps gray, white/black composite, keep adds alpha."""
    im = Image.new("LA", (3, 1))
    im.putdata([(200, int(a)) for a in ALPHAS])
    path = save(tmp_path, im, "la.png")

    check(read_image(str(path), alpha="drop").array, [[[200, 200, 200]]])
    for name, background in (("white", 255), ("black", 0)):
        loaded = read_image(str(path), alpha=name)
        assert loaded.channel_names == ("gray",)
        check(loaded.array, [[over(200, ALPHAS, background)]], atol=1.0)
        pillow = Image.alpha_composite(Image.new("RGBA", im.size, (background,) * 3 + (255,)), im.convert("RGBA"))
        check(loaded.array, np.asarray(pillow.convert("L"))[None])
        assert loaded.array[0, 0, 0] == background and loaded.array[0, 0, 2] == 200

    kept = read_image(str(path), alpha="keep")
    assert kept.channel_names == ("gray", "alpha")
    check(kept.array, [[[200, 200, 200]], [ALPHAS]])


# --- orientation and frames ---------------------------------------------------------------------

WIDE = (np.arange(8, dtype=np.uint8).reshape(2, 4) * 30)  # 2 rows, 4 columns


@pytest.mark.parametrize(("orientation", "turns"), [(6, -1), (8, 1), (3, 2)])
@pytest.mark.parametrize(("suffix", "params"), [("png", {}), ("webp", {"lossless": True}), ("tiff", {})])
def test_exif_orientation_is_applied_and_noted(tmp_path, suffix, params, orientation, turns):
    """A 4x2 image with EXIF Orientation 6/8/3 comes back turned, exactly, and the note says so."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = save(tmp_path, Image.fromarray(WIDE), f"wide.{suffix}", exif=exif, **params)
    loaded = read_image(str(path))
    check(loaded.array, np.rot90(WIDE, turns)[None])  # 1, 4, 2 for 6 and 8; 1, 2, 4 for 3
    assert f"EXIF orientation {orientation} applied" in loaded.notes


def test_exif_orientation_in_jpeg(tmp_path):
    """A 4x2 JPEG with EXIF Orientation 6 comes back 2 wide and 4 tall, as Pillow's exif_transpose gives."""
    exif = Image.Exif()
    exif[0x0112] = 6
    path = save(tmp_path, Image.fromarray(WIDE), "wide.jpg", exif=exif, quality=95)
    loaded = read_image(str(path))
    assert loaded.array.shape == (1, 4, 2)
    with Image.open(path) as im:
        from PIL import ImageOps

        check(loaded.array, np.asarray(ImageOps.exif_transpose(im).convert("L"))[None])
    assert_allclose(loaded.array[0], np.rot90(WIDE, -1), atol=8)
    assert "EXIF orientation 6 applied" in loaded.notes


def three_frame_gif() -> bytes:
    """An animated GIF of three 3x2 gray frames with values 10, 20 and 30."""
    frames = [Image.new("L", (3, 2), value) for value in (10, 20, 30)]
    return encode(frames[0], "GIF", save_all=True, append_images=frames[1:])


def test_animated_gif_uses_the_first_frame(tmp_path):
    """An animated GIF reads as its first frame, noted as "first of 3 frames"."""
    path = tmp_path / "anim.gif"
    path.write_bytes(three_frame_gif())
    loaded = read_image(str(path))
    check(loaded.array, np.full((1, 2, 3), 10))
    assert "first of 3 frames" in loaded.notes


def test_every_truncation_of_an_animated_gif_is_an_image_error():
    """Any prefix of an animated GIF reads or raises ImageError, never another exception."""
    data = three_frame_gif()
    for cut in range(1, len(data)):
        try:
            read_image("anim.gif", data[:cut])
        except ImageError as err:
            assert str(err).startswith("anim.gif: ")


# --- errors -------------------------------------------------------------------------------------


def raises_image_error(source: str, *words: str, data: bytes | None = None, error=ImageError, **options) -> str:
    """Read and expect ``error`` whose message names ``source`` and contains each of ``words``."""
    with pytest.raises(error) as caught:
        read_image(source, data, **options)
    message = str(caught.value)
    assert source in message
    for word in words:
        assert word in message
    return message


def _tiff_with(samples_per_pixel: int | None = None, corrupt_strip: bool = False) -> bytes:
    """A 64x64 RGB LZW TIFF (Pillow writes it little-endian), its SamplesPerPixel entry rewritten or its
    strip's first bytes zeroed."""
    data = bytearray(encode(noise((64, 64), "RGB"), "TIFF", compression="tiff_lzw"))
    directory = struct.unpack_from("<I", data, 4)[0]
    for i in range(struct.unpack_from("<H", data, directory)[0]):
        entry = directory + 2 + 12 * i
        tag, kind = struct.unpack_from("<HH", data, entry)
        if tag == 273 and corrupt_strip:  # StripOffsets: one strip, its offset in the entry
            offset = struct.unpack_from("<H" if kind == 3 else "<I", data, entry + 8)[0]
            data[offset:offset + 64] = bytes(64)
        if tag == 277 and samples_per_pixel is not None:  # SamplesPerPixel, a SHORT
            struct.pack_into("<H", data, entry + 8, samples_per_pixel)
    return bytes(data)


def test_libtiff_messages_go_into_the_error_not_on_stderr(capfd):
    """libtiff prints its complaints on file descriptor 2 from C; they end the error message instead,
    so that stderr holds cnn's one line (found by tests/fuzz)."""
    data = _tiff_with(corrupt_strip=True)
    message = raises_image_error("bad.tif", "cannot decode the TIFF", "(libtiff: ", data=data)
    assert capfd.readouterr().err == "", message


def test_pillow_log_records_go_into_the_error_not_on_stderr(capfd):
    """Pillow logs an absurd SamplesPerPixel as an error record, which Python's last-resort handler
    would print; it ends the error message instead."""
    raises_image_error("spp.tif", "(Pillow: More samples per pixel than can be decoded: 1694)",
                       data=_tiff_with(samples_per_pixel=1694))
    assert capfd.readouterr().err == ""


def test_missing_file(tmp_path):
    """A missing file is an ImageError saying "no such file"."""
    raises_image_error(str(tmp_path / "absent.png"), "no such file")


def test_folder(tmp_path):
    """A folder is an ImageError saying it is a folder."""
    raises_image_error(str(tmp_path), "is a folder")


def test_empty_file(tmp_path):
    """An empty file is an ImageError saying it is empty."""
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    raises_image_error(str(path), "is empty")


def test_text_file(tmp_path):
    """A text file is an ImageError saying it is not a supported image."""
    path = tmp_path / "notes.png"
    path.write_text("hello, not an image\n")
    raises_image_error(str(path), "not a supported image")


def test_truncated_png(tmp_path):
    """A PNG cut in half is an ImageError saying it cannot be decoded."""
    pixels = np.random.default_rng(2).integers(0, 256, (32, 32), dtype=np.uint8)
    data = encode(Image.fromarray(pixels), "PNG")
    path = tmp_path / "half.png"
    path.write_bytes(data[: len(data) // 2])
    raises_image_error(str(path), "cannot decode the PNG", "truncated")


@pytest.mark.parametrize("suffix", ["ico", "pcx", "tga"])
def test_format_outside_the_allow_list(tmp_path, suffix):
    """A format Pillow reads but the allow-list leaves out is "not a supported image"."""
    path = save(tmp_path, Image.new("L", (16, 16), 99), f"pic.{suffix}")
    message = raises_image_error(str(path), "not a supported image")
    assert "PNG" in message


def test_decompression_bomb_is_refused_without_allocating():
    """A tiny PNG claiming 20000x20000 pixels is refused with the limit named, before any big allocation."""
    data = png_claiming(20000, 20000)
    assert len(data) < 100
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    message = raises_image_error("bomb.png", "400,000,000 pixels", "limit", data=data, error=LimitError)
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grown < 64 * 1024, message  # the image would take 400 MB


def test_over_max_pixels_is_refused():
    """Lowering max_pixels below an image's size gives the "over the limit" error; at the size it reads."""
    data = encode(Image.new("L", (10, 10), 5), "PNG")
    raises_image_error("small.png", "100 pixels", "over the limit of 99", data=data, error=LimitError,
                       limits=Limits(max_pixels=99))
    check(read_image("small.png", data, limits=Limits(max_pixels=100)).array, np.full((1, 10, 10), 5))


def test_image_over_default_limit_but_under_pillows_is_refused():
    """A PNG claiming 9000x9000 (81 MP) is over the default limit of 8192 x 8192 pixels."""
    raises_image_error("big.png", "81,000,000 pixels", "over the limit of 67,108,864 pixels", data=png_claiming(9000, 9000),
                       error=LimitError)


# --- bytes from stdin ---------------------------------------------------------------------------


def test_bytes_named_stdin_read_as_the_file_does(tmp_path):
    """data= bytes named "stdin" give the same array and notes as the file they came from."""
    im = Image.new("RGBA", (3, 2), (30, 60, 90, 128))
    path = save(tmp_path, im, "rgba.png")
    from_file = read_image(str(path), alpha="white")
    from_stdin = read_image("stdin", path.read_bytes(), alpha="white")
    assert from_stdin.source == "stdin"
    assert_array_equal(from_stdin.array, from_file.array)
    assert from_stdin.notes == from_file.notes
    assert from_stdin.description == from_file.description
