"""Regenerate the sample images shipped in ``sample_images/``.

Run from the repository root::

    python sample_images/make_samples.py

Everything is deterministic: there is no randomness and no network access, so
running the script twice writes byte-identical files (with the same Pillow /
zlib / libjpeg versions).  The synthetic images need only NumPy and Pillow.
The two photographs are converted from files bundled with scikit-image; if
scikit-image is not installed they are skipped and the committed copies are
left untouched.  See README.md in this folder for provenance and licences.
The handwritten digits ``digit_0.png`` .. ``digit_9.png`` are not made here: they
are written by ``training/train_digits.py`` (see README.md in this folder).
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

OUT_DIR = Path(__file__).resolve().parent

# The 5x5 example image of the tutorial the project started from.
SEED_5X5 = np.array(
    [
        [1, 2, 3, 0, 1],
        [4, 5, 6, 1, 2],
        [7, 8, 9, 2, 3],
        [1, 2, 3, 4, 5],
        [6, 7, 8, 5, 6],
    ],
    dtype=np.uint8,
)

# Photo settings (fixed so output is reproducible).
PHOTO_GRAY_SIZE = (192, 192)  # camera.png is 512x512 -> 192x192
PHOTO_COLOR_SIZE = (192, 128)  # chelsea.png is 451x300 -> 192x128 (same aspect)
JPEG_QUALITY = 85

# SHA-256 of the source files as listed in skimage/data/_registry.py
# (scikit-image 0.26.0).  A mismatch only triggers a warning.
SOURCE_SHA256 = {
    "camera.png": "b0793d2adda0fa6ae899c03989482bff9a42d3d5690fc7e3648f2795d730c23a",
    "chelsea.png": "596aa1e7cb875eb79f437e310381d26b338a81c2da23439704a73c4651e8c4bb",
}


def _save_png(arr: np.ndarray, name: str, mode: str) -> Path:
    """Save a uint8 array as PNG with no metadata (keeps output reproducible).

    The array's shape determines the mode (2-D -> "L", HxWx3 -> "RGB");
    ``mode`` is only checked.
    """
    img = Image.fromarray(np.ascontiguousarray(arr, dtype=np.uint8))
    if img.mode != mode:
        raise ValueError(f"{name}: expected mode {mode}, got {img.mode}")
    path = OUT_DIR / name
    img.save(path, format="PNG", optimize=True)
    return path


# --------------------------------------------------------------------------
# Synthetic images
# --------------------------------------------------------------------------


def make_seed_5x5() -> Path:
    """5x5 grayscale image whose pixel values are exactly SEED_5X5."""
    return _save_png(SEED_5X5, "seed_5x5.png", "L")


def make_shapes(size: int = 64) -> Path:
    """Rectangle, circle and triangle (no anti-aliasing) on a dark background."""
    img = Image.new("L", (size, size), 30)
    d = ImageDraw.Draw(img)
    d.rectangle([6, 6, 27, 23], fill=220)  # rectangle, top-left
    d.ellipse([36, 8, 57, 29], fill=160)  # circle, top-right
    d.polygon([(32, 36), (54, 58), (10, 58)], fill=255)  # triangle, bottom
    return _save_png(np.asarray(img), "shapes.png", "L")


def make_checkerboard(size: int = 32, square: int = 8) -> Path:
    """Black/white checkerboard; top-left square is black."""
    yy, xx = np.indices((size, size))
    board = (((yy // square) + (xx // square)) % 2) * 255
    return _save_png(board.astype(np.uint8), "checkerboard.png", "L")


def make_gradient(size: int = 64) -> Path:
    """Horizontal ramp from 0 (left column) to 255 (right column)."""
    row = np.round(np.linspace(0, 255, size)).astype(np.uint8)
    return _save_png(np.tile(row, (size, 1)), "gradient.png", "L")


def make_rgb_bars(size: int = 48) -> Path:
    """Six vertical colour bars (8 px each) over a bottom strip of gray levels.

    Top 32 rows: red, green, blue, yellow, cyan, magenta.
    Bottom 16 rows: white, light gray, mid gray, dark gray, black, orange.
    """
    top = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (0, 255, 255), (255, 0, 255)]
    bottom = [(255, 255, 255), (192, 192, 192), (128, 128, 128), (64, 64, 64), (0, 0, 0), (255, 128, 0)]
    arr = np.zeros((size, size, 3), dtype=np.uint8)
    bar = size // len(top)
    split = size * 2 // 3
    for i, (ct, cb) in enumerate(zip(top, bottom)):
        arr[:split, i * bar:(i + 1) * bar] = ct
        arr[split:, i * bar:(i + 1) * bar] = cb
    return _save_png(arr, "rgb_bars.png", "RGB")


# --------------------------------------------------------------------------
# Photographs (need scikit-image's bundled data files)
# --------------------------------------------------------------------------


def make_page_3() -> Path:
    """A printed 3 (Pillow's built-in font) off the centre of a grey page lit unevenly, as a phone
    photo of a printout: for `cnn run page_3.png --model digits`."""
    light = np.linspace(215, 180, 120)[None, :].repeat(90, axis=0)  # 90 rows, 120 columns
    img = Image.fromarray(np.round(light).astype(np.uint8), "L")
    ImageDraw.Draw(img).text((70, 22), "3", fill=45, font=ImageFont.load_default(size=44))
    return _save_png(np.asarray(img), "page_3.png", "L")


def make_chalk_3() -> Path:
    """A big light 3 drawn with a round pen on a dark board, filling most of it."""
    img = Image.new("L", (64, 64), 25)
    draw = ImageDraw.Draw(img)
    upper = [(20 + 13 * np.cos(a), 19 + 11 * np.sin(a)) for a in np.radians(np.arange(200, 451, 10))]
    lower = [(32 + 15 * np.cos(a), 43 + 13 * np.sin(a)) for a in np.radians(np.arange(270, 521, 10))]
    points = [(float(x) + 12, float(y)) for x, y in upper[:-1]] + [(float(x), float(y)) for x, y in lower]
    draw.line(points, fill=235, width=6, joint="curve")
    return _save_png(np.asarray(img), "chalk_3.png", "L")


def _skimage_data_file(name: str) -> Path | None:
    try:
        import skimage.data  # only used to locate the bundled photo files
    except ImportError:
        return None
    path = Path(skimage.data.__file__).resolve().parent / name
    if not path.is_file():
        return None
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != SOURCE_SHA256.get(name):
        print(f"warning: {path} differs from the scikit-image 0.26.0 file (sha256 {digest})")
    return path


def _resized_photo(name: str, mode: str, size: tuple[int, int]) -> Image.Image | None:
    """A scikit-image photo converted to ``mode`` and resized (LANCZOS); None without scikit-image."""
    src = _skimage_data_file(name)
    if src is None:
        return None
    with Image.open(src) as im:
        return im.convert(mode).resize(size, Image.Resampling.LANCZOS)


def make_photo_camera() -> Path | None:
    """skimage 'camera' (512x512, L) -> 192x192 grayscale PNG (LANCZOS)."""
    img = _resized_photo("camera.png", "L", PHOTO_GRAY_SIZE)
    if img is None:
        return None
    return _save_png(np.asarray(img), "photo_camera.png", "L")


def make_photo_chelsea() -> Path | None:
    """skimage 'chelsea' (451x300, RGB) -> 192x128 colour JPEG (LANCZOS, q=85)."""
    img = _resized_photo("chelsea.png", "RGB", PHOTO_COLOR_SIZE)
    if img is None:
        return None
    # Rebuild from the pixel array so no ICC profile / XMP / EXIF is carried over.
    clean = Image.fromarray(np.asarray(img, dtype=np.uint8))
    path = OUT_DIR / "photo_chelsea.jpg"
    clean.save(path, format="JPEG", quality=JPEG_QUALITY, optimize=True, subsampling="4:2:0")
    return path


SYNTHETIC = [make_seed_5x5, make_shapes, make_checkerboard, make_gradient, make_rgb_bars, make_page_3, make_chalk_3]
PHOTOS = [make_photo_camera, make_photo_chelsea]


def main() -> int:
    for fn in SYNTHETIC:
        path = fn()
        print(f"wrote {path.name}")
    for fn in PHOTOS:
        path = fn()
        if path is None:
            print(
                f"skipped {fn.__name__}: scikit-image (or its bundled data file) is not "
                "installed; keeping the committed photo. Install scikit-image to regenerate it."
            )
        else:
            print(f"wrote {path.name}")

    # Sanity check: the seed image must round-trip exactly.
    with Image.open(OUT_DIR / "seed_5x5.png") as im:
        back = np.asarray(im)
        assert im.mode == "L" and np.array_equal(back, SEED_5X5), back
    return 0


if __name__ == "__main__":
    sys.exit(main())
