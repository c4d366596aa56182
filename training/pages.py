"""Training pictures for the digits model: digits printed in the URW base fonts, and simulated
photographs of a page, each made 8x8 by cnn's own ``fit_ink`` (NumPy and Pillow only, no torch).

A digit becomes a 32x32 ink coverage bitmap, as scikit-learn's digits were before their 4x4
blocks were counted: a handwritten one redrawn from its 8x8 counts, a printed one rendered. Its
pages are that bitmap with a thicker or finer pen, turned, slanted, stretched, in other
proportions and bent (``warp``), then put on a page and photographed (``photograph``).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))  # cnn's own ink fitting, so that training sees what a run sees
from cnncli.io.ink import fit_ink  # noqa: E402

SIZE = (8, 8)
BITMAP = 32  # the side of a digit's bitmap, as the data set's were
# The printed digits: the URW base 35 fonts (clones of the PostScript standard fonts: Helvetica,
# Times, Courier, Palatino, Century Schoolbook, Bookman, Avant Garde, Zapf Chancery), found by
# family. tests/digit_pictures.py leaves these out, so the test set's fonts are never trained on.
TRAINING_FONTS = ("C059", "NimbusMonoPS", "NimbusRoman", "NimbusSans", "NimbusSansNarrow", "P052", "URWBookman",
                  "URWGothic", "Z003")
FONT_FOLDER = Path("/usr/share/fonts/opentype/urw-base35")  # Debian's fonts-urw-base35 (Ghostscript's)


# -- the digits as bitmaps ----------------------------------------------------------------------------
def printed_digits(folder: Path = FONT_FOLDER) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Every digit in every TRAINING_FONTS font of ``folder``: (bitmaps float32 (M, 32, 32), ink
    coverage 0..1 with the longer side 32 and centred, labels int64 (M,), font names (M,)).

    Raises SystemExit naming the folder when it holds none of them."""
    files = sorted(path for path in folder.glob("*.otf") if path.stem.split("-")[0] in TRAINING_FONTS)
    if not files:
        raise SystemExit(f"no URW base fonts in {folder}: install them (Debian and Ubuntu: fonts-urw-base35)")
    bitmaps, labels, names = [], [], []
    for path in files:
        font = ImageFont.truetype(str(path), 160)
        for digit in range(10):
            canvas = Image.new("L", (320, 320), 0)
            ImageDraw.Draw(canvas).text((80, 40), str(digit), fill=255, font=font)
            glyph = canvas.crop(canvas.getbbox())
            scale = BITMAP / max(glyph.size)
            size = (max(1, round(glyph.width * scale)), max(1, round(glyph.height * scale)))
            small = np.asarray(glyph.resize(size, Image.Resampling.BOX), dtype=np.float32) / 255  # h, w
            bitmap = np.zeros((BITMAP, BITMAP), np.float32)
            top, left = (BITMAP - size[1]) // 2, (BITMAP - size[0]) // 2
            bitmap[top:top + size[1], left:left + size[0]] = small
            bitmaps.append(bitmap)
            labels.append(digit)
            names.append(path.stem)
    return np.stack(bitmaps), np.asarray(labels, dtype=np.int64), names


def as_pixels(bitmaps: np.ndarray) -> np.ndarray:
    """32x32 ink coverage bitmaps (M, 32, 32) as 8x8 ink-on-white PNG pixels (M, 8, 8) uint8: the
    mean of each 4x4 block, as the data set counted its bitmaps' blocks."""
    blocks = bitmaps.reshape(len(bitmaps), 8, 4, 8, 4).mean(axis=(2, 4))  # M, 8, 8
    return (255 - np.round(blocks * 255)).astype(np.uint8)


def fitted(pixels: np.ndarray) -> np.ndarray:
    """What cnn makes of 8-bit pictures (M, H, W) for this model: read in unit scale (divided by
    255, in float32), then fitted by ``fit_ink`` (polarity from the border): float32 (M, 1, 8, 8)."""
    inputs = np.empty((len(pixels), 1, *SIZE), dtype=np.float32)  # plain C-order strides
    for i, picture in enumerate(pixels):
        inputs[i, 0] = fit_ink(picture.astype(np.float32) / np.float32(255), SIZE).array
    return inputs


def handwriting_bitmap(pixels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A handwritten digit's 8x8 pixels redrawn as a 32x32 bitmap: the counts upsampled (bicubic)
    and cut at a random level with a soft edge, which makes strokes thicker or thinner."""
    counts = 1 - pixels.astype(np.float32) / 255  # 8, 8
    smooth = np.asarray(Image.fromarray(counts).resize((BITMAP, BITMAP), Image.Resampling.BICUBIC))  # 32, 32
    level = rng.uniform(0.3, 0.8)
    return np.clip((smooth - level) / 0.2 + 0.5, 0, 1).astype(np.float32)


# -- pages ----------------------------------------------------------------------------------------------
def pen(bitmap: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The bitmap drawn with a thicker pen (grown by a pixel, 15% of the time) or a finer one
    (shrunk by a pixel, 30%)."""
    choice = rng.random()
    if choice >= 0.45:
        return bitmap
    grow = ImageFilter.MaxFilter(3) if choice < 0.15 else ImageFilter.MinFilter(3)
    return np.asarray(Image.fromarray(bitmap).filter(grow))


def warp(bitmap: np.ndarray, rng: np.random.Generator) -> Image.Image:
    """The 32x32 bitmap as another writer might have drawn it, on a 64x64 canvas that keeps it
    whole, cropped to its ink ("F" image): turned (up to 12 degrees), slanted, stretched, its parts
    in other proportions (a bigger or smaller top half, left or right half), and bent by a smooth
    random field (elastic distortion, as Simard et al. 2003 did for MNIST); sampled bilinearly."""
    side = 64
    angle = np.radians(rng.uniform(-12, 12))
    shear = rng.uniform(-0.3, 0.3)
    stretch = np.exp(rng.uniform(-0.35, 0.35))  # width against height
    # Output (u, v) -> input (x, y) about the centres: the inverse of rotate . shear . stretch.
    forward = (np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
               @ np.array([[1, shear], [0, 1]]) @ np.diag([stretch, 1.0]))
    inverse = np.linalg.inv(forward)
    v, u = np.mgrid[0:side, 0:side].astype(np.float64) - side / 2  # side, side: about the canvas centre
    x = inverse[0, 0] * u + inverse[0, 1] * v  # side, side: about the bitmap's centre, in its pixels
    y = inverse[1, 0] * u + inverse[1, 1] * v
    # Proportions: t -> t + a t (1 - t) across the bitmap (t from 0 to 1) moves its middle.
    half = BITMAP / 2
    x = _bend((x + half) / BITMAP, rng.uniform(-0.15, 0.15)) * BITMAP - half
    y = _bend((y + half) / BITMAP, rng.uniform(-0.35, 0.35)) * BITMAP - half
    coarse = rng.normal(0, 1.2, (2, 4, 4)).astype(np.float32)  # pixels of displacement at 4x4 knots
    field = [np.asarray(Image.fromarray(c).resize((side, side), Image.Resampling.BICUBIC)) for c in coarse]
    x, y = x + field[0] + half - 0.5, y + field[1] + half - 0.5  # side, side: pixel centres are at 0..31
    out = _bilinear(bitmap, x, y)  # side, side
    box = Image.fromarray((out > 0.02).astype(np.uint8)).getbbox()
    warped = Image.fromarray(out)
    return warped.crop(box) if box else warped


def _bend(t: np.ndarray, amount: float) -> np.ndarray:
    return t + amount * t * (1 - t)


def _bilinear(image: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``image`` (H, W) sampled at pixel coordinates ``x``, ``y`` (any shape), 0 outside it."""
    height, width = image.shape
    padded = np.pad(image.astype(np.float32), 1)  # H + 2, W + 2: paper around it
    x, y = np.clip(x + 1, 0, width + 1), np.clip(y + 1, 0, height + 1)
    x0, y0 = np.minimum(np.floor(x).astype(np.int64), width), np.minimum(np.floor(y).astype(np.int64), height)
    wx, wy = (x - x0).astype(np.float32), (y - y0).astype(np.float32)
    top = (1 - wx) * padded[y0, x0] + wx * padded[y0, x0 + 1]
    bottom = (1 - wx) * padded[y0 + 1, x0] + wx * padded[y0 + 1, x0 + 1]
    return ((1 - wy) * top + wy * bottom).astype(np.float32)


def photograph(glyph: Image.Image, rng: np.random.Generator) -> np.ndarray:
    """The glyph (an "F" image of ink coverage 0..1) on a page, photographed: 8-bit gray pixels (H, W).

    The page is 40 to 128 pixels high and 0.6 to 1.6 times as wide; the digit 25 to 95% of its
    height, anywhere on it. Half the pages are dark ink on paper (white, or grey down to 0.4),
    half light ink on dark; the contrast 0.3 or more; the light uneven; then a blur of up to 3%
    of the digit's height and noise of up to 12 grey levels."""
    page_h = int(rng.integers(40, 129))
    page_w = max(8, int(page_h * rng.uniform(0.6, 1.6)))
    height = rng.uniform(0.25, 0.95) * page_h
    width = min(glyph.width * height / glyph.height, 0.98 * page_w)
    size = (max(1, round(width)), max(1, round(height)))
    mark = np.asarray(glyph.resize(size, Image.Resampling.BOX), dtype=np.float32)  # h, w
    left = int(rng.integers(0, page_w - size[0] + 1))
    top = int(rng.integers(0, page_h - size[1] + 1))
    coverage = np.zeros((page_h, page_w), np.float32)
    coverage[top:top + size[1], left:left + size[0]] = np.clip(mark, 0, 1)
    if rng.random() < 0.5:
        paper = rng.uniform(0.8, 1.0) if rng.random() < 0.6 else rng.uniform(0.4, 0.8)
        ink = paper - rng.uniform(0.3, paper)
    else:
        paper = rng.uniform(0.0, 0.35)
        ink = paper + rng.uniform(0.3, 1.0 - paper)
    light = (rng.normal(0, 0.06) * np.linspace(-0.5, 0.5, page_w)[None, :]
             + rng.normal(0, 0.06) * np.linspace(-0.5, 0.5, page_h)[:, None])  # page_h, page_w
    values = paper + (ink - paper) * coverage + light
    picture = Image.fromarray(np.clip(np.rint(values * 255), 0, 255).astype(np.uint8))
    radius = rng.uniform(0, 0.03) * height
    if radius > 0.3:
        picture = picture.filter(ImageFilter.GaussianBlur(radius))
    noisy = np.asarray(picture, dtype=np.float64) + rng.normal(0, rng.uniform(0, 12), (page_h, page_w))
    return np.clip(np.rint(noisy), 0, 255).astype(np.uint8)


def pages(digits: Sequence[np.ndarray], rng: np.random.Generator, count: int) -> np.ndarray:
    """``count`` simulated photographs of each digit, fitted as cnn fits a picture it reads
    (``fitted``): float32 (N, count, 1, 8, 8). A digit is the 8x8 uint8 pixels of a handwritten
    one (its bitmap redrawn for each page) or the 32x32 float bitmap of a printed one."""
    out = np.empty((len(digits), count, 1, *SIZE), dtype=np.float32)
    for i, digit in enumerate(digits):
        pictures = []
        for _ in range(count):
            bitmap = handwriting_bitmap(digit, rng) if digit.shape == SIZE else digit
            pictures.append(photograph(warp(pen(bitmap, rng), rng), rng))
        for k, picture in enumerate(pictures):
            out[i, k, 0] = fit_ink(picture.astype(np.float32) / np.float32(255), SIZE).array
    return out
