"""Pictures of digits that the digits model never trained on, as people would give it: printed in
the fonts on this machine (and Pillow's built-in one, so a bare CI machine has some), and drawn
with a pen (polylines of each digit's shape, of varying widths, jittered and slanted); from 30 to
90% of the page's height, anywhere on the page, dark on light or light on dark, white or grey
paper, blurred and noisy as a photo is. Seeded: the same pictures every time on one machine.

``python tests/digit_pictures.py`` runs the bundled model on them and prints the accuracy, the
confusion matrix and how many got a note: the figures in README's digits section.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

FONT_FOLDERS = (Path("/usr/share/fonts"), Path("/usr/local/share/fonts"), Path("/Library/Fonts"),
                Path("C:/Windows/Fonts"))
NOT_DIGITS = ("symbol", "dingbat", "d050000l", "droidsansfallback", "math")  # fonts whose digits are other signs
# The font families the model was trained on (training/pages.py's TRAINING_FONTS): never tested on.
TRAINING_FONTS = ("C059", "NimbusMonoPS", "NimbusRoman", "NimbusSans", "NimbusSansNarrow", "P052", "URWBookman",
                  "URWGothic", "Z003")
GLYPH_SIZE = 160  # digits are drawn this tall, then resized to the page (anti-aliased by area)


@dataclass(frozen=True)
class Picture:
    image: Image.Image  # mode L
    label: int
    kind: str  # "font: <name>" or "pen"


# -- the digits' shapes, as pen strokes ---------------------------------------------------------------
def _arc(cx: float, cy: float, rx: float, ry: float, start: float, end: float, points: int = 24) -> list[tuple]:
    """Points along an ellipse from angle ``start`` to ``end`` in degrees (0 right, 90 down: y grows down)."""
    angles = np.radians(np.linspace(start, end, points))
    return list(zip(cx + rx * np.cos(angles), cy + ry * np.sin(angles)))


def _strokes(digit: int, style: int) -> list[list[tuple]]:
    """The strokes of ``digit`` in a unit box (x right, y down), in one of two styles people write."""
    if digit == 0:
        return [_arc(0.5, 0.5, 0.45, 0.5, -90, 275, 40)]
    if digit == 1:
        if style:
            return [[(0.2, 0.25), (0.6, 0.0), (0.6, 1.0)], [(0.25, 1.0), (0.95, 1.0)]]
        return [[(0.25, 0.2), (0.55, 0.0), (0.55, 1.0)]]
    if digit == 2:
        return [_arc(0.5, 0.3, 0.42, 0.3, 190, 390) + [(0.05, 1.0), (0.95, 1.0)]]
    if digit == 3:
        return [_arc(0.5, 0.26, 0.4, 0.26, 200, 440) + _arc(0.5, 0.74, 0.45, 0.26, 270, 520)]
    if digit == 4:
        if style:
            return [[(0.3, 0.0), (0.08, 0.62), (0.95, 0.62)], [(0.72, 0.3), (0.72, 1.0)]]
        return [[(0.72, 1.0), (0.72, 0.0), (0.04, 0.68), (0.96, 0.68)]]
    if digit == 5:
        return [[(0.9, 0.0), (0.2, 0.0), (0.14, 0.46)] + _arc(0.5, 0.68, 0.44, 0.32, 215, 520)]
    if digit == 6:
        return [_arc(0.68, 0.62, 0.6, 0.62, 285, 175) + _arc(0.5, 0.72, 0.42, 0.28, 180, 540)]
    if digit == 7:
        strokes = [[(0.04, 0.0), (0.96, 0.0), (0.4, 1.0)]]
        return strokes + [[(0.35, 0.52), (0.85, 0.52)]] if style else strokes
    if digit == 8:
        return [_arc(0.5, 0.25, 0.34, 0.25, 90, 450), _arc(0.5, 0.74, 0.44, 0.26, -90, 270)]
    if style:  # 9 with a curved tail
        return [_arc(0.5, 0.3, 0.42, 0.3, 0, 360) + _arc(0.2, 0.3, 0.72, 0.7, 0, 100)]
    return [_arc(0.5, 0.3, 0.42, 0.3, 0, 360) + [(0.9, 1.0)]]


def pen_digit(digit: int, rng: np.random.Generator) -> Image.Image:
    """A digit drawn with a round pen on a GLYPH_SIZE-tall canvas: 255 ink, 0 paper, cropped to the ink."""
    aspect = rng.uniform(0.5, 0.8)  # width / height of the digit's box
    slant = rng.uniform(-0.25, 0.25)
    width = rng.uniform(0.05, 0.16) * GLYPH_SIZE
    wobble = rng.normal(0, 0.02, size=(2, 3))  # a smooth distortion of the whole shape
    margin = GLYPH_SIZE
    canvas = Image.new("L", (3 * GLYPH_SIZE, 3 * GLYPH_SIZE), 0)
    draw = ImageDraw.Draw(canvas)
    for stroke in _strokes(digit, int(rng.integers(2))):
        points = np.asarray(stroke, dtype=np.float64)  # n, 2: x, y in the unit box
        points += rng.normal(0, 0.012, size=points.shape)
        x, y = points[:, 0], points[:, 1]
        x2 = x + wobble[0, 0] * np.sin(math.pi * y) + wobble[0, 1] * (y - 0.5) ** 2 + wobble[0, 2] * x * y
        y2 = y + wobble[1, 0] * np.sin(math.pi * x) + wobble[1, 1] * (x - 0.5) ** 2 + wobble[1, 2] * x * y
        xs = margin + GLYPH_SIZE * (aspect * x2 + slant * (0.5 - y2))
        ys = margin + GLYPH_SIZE * y2
        line = [(float(a), float(b)) for a, b in zip(xs, ys)]
        draw.line(line, fill=255, width=max(1, round(width)), joint="curve")
        for end in (line[0], line[-1]):  # round ends, as a pen leaves
            draw.ellipse([end[0] - width / 2, end[1] - width / 2, end[0] + width / 2, end[1] + width / 2], fill=255)
    return canvas.crop(canvas.getbbox())


def font_digit(digit: int, font: ImageFont.FreeTypeFont) -> Image.Image:
    """A digit printed in ``font``: 255 ink, 0 paper, cropped to the ink."""
    canvas = Image.new("L", (3 * GLYPH_SIZE, 3 * GLYPH_SIZE), 0)
    ImageDraw.Draw(canvas).text((GLYPH_SIZE // 2, GLYPH_SIZE // 2), str(digit), fill=255, font=font)
    return canvas.crop(canvas.getbbox())


def fonts() -> list[tuple[str, ImageFont.FreeTypeFont]]:
    """Pillow's built-in font (Aileron, in every Pillow since 10.1) and the TrueType and OpenType
    fonts found in the usual folders, except those whose digits are other signs and those the model
    was trained on; by name."""
    found = [("Pillow built-in", ImageFont.load_default(size=GLYPH_SIZE))]
    files = sorted({path for folder in FONT_FOLDERS if folder.is_dir()
                    for pattern in ("*.ttf", "*.otf") for path in folder.rglob(pattern)}, key=lambda p: p.name)
    for path in files:
        if any(word in path.name.lower() for word in NOT_DIGITS) or path.stem.split("-")[0] in TRAINING_FONTS:
            continue
        try:
            found.append((path.stem, ImageFont.truetype(str(path), GLYPH_SIZE)))
        except OSError:  # a font FreeType cannot read
            continue
    return found


# -- a page, photographed -----------------------------------------------------------------------------
def on_page(glyph: Image.Image, rng: np.random.Generator) -> Image.Image:
    """The glyph (255 ink on 0) turned a little, at 30-90% of a page's height, anywhere on it;
    dark on light or light on dark paper, white or grey; blurred and noisy as a photo."""
    glyph = glyph.rotate(rng.uniform(-8, 8), resample=Image.Resampling.BICUBIC, expand=True)
    glyph = glyph.crop(glyph.getbbox())
    page_h = int(rng.integers(48, 160))
    page_w = int(page_h * rng.uniform(0.7, 1.5))
    height = rng.uniform(0.3, 0.9) * page_h
    width = glyph.width * height / glyph.height
    if width > 0.95 * page_w:  # a wide glyph on a narrow page: the page grows
        page_w = int(width / 0.9)
    size = (max(1, round(width)), max(1, round(height)))
    mark = np.asarray(glyph.resize(size, Image.Resampling.BOX), dtype=np.float32) / 255  # h, w coverage
    left = int(rng.integers(0, page_w - size[0] + 1))
    top = int(rng.integers(0, page_h - size[1] + 1))
    coverage = np.zeros((page_h, page_w), np.float32)
    coverage[top:top + size[1], left:left + size[0]] = mark
    if rng.random() < 0.5:  # dark ink on white or grey paper
        paper = rng.uniform(0.85, 1.0) if rng.random() < 0.6 else rng.uniform(0.45, 0.8)
        ink = paper - rng.uniform(0.35, paper)
    else:  # light ink on dark paper (a blackboard, a screen)
        paper = rng.uniform(0.0, 0.3)
        ink = paper + rng.uniform(0.35, 1.0 - paper)
    shade = np.linspace(0, rng.normal(0, 0.05), page_w, dtype=np.float32)[None, :]  # uneven light
    values = paper + (ink - paper) * coverage + shade
    picture = Image.fromarray(np.clip(values * 255, 0, 255).astype(np.uint8))
    picture = picture.filter(ImageFilter.GaussianBlur(rng.uniform(0, 0.02) * height))
    noisy = np.asarray(picture, dtype=np.float32) + rng.normal(0, rng.uniform(0, 10), (page_h, page_w))
    return Image.fromarray(np.clip(np.rint(noisy), 0, 255).astype(np.uint8))


def pictures(seed: int = 0, printed: int = 400, drawn: int = 300) -> list[Picture]:
    """``printed`` digits in the fonts (taken in turn) and ``drawn`` pen digits, each digit equally
    often, each on its own page."""
    rng = np.random.default_rng(seed)
    available = fonts()
    made = []
    for i in range(printed):
        name, font = available[(i // 10) % len(available)]
        made.append(Picture(on_page(font_digit(i % 10, font), rng), i % 10, f"font: {name}"))
    for i in range(drawn):
        made.append(Picture(on_page(pen_digit(i % 10, rng), rng), i % 10, "pen"))
    return made


# -- the figures for README ---------------------------------------------------------------------------
def measure(made: list[Picture] | None = None) -> dict:
    """Run the bundled digits model on the pictures (``pictures()`` if None): accuracy, the 10x10
    confusion matrix (rows: the true digit, columns: the answer), the accuracy of printed and drawn
    ones, and the notes given."""
    from cnncli import api

    model = api.load_model("digits")
    made = pictures() if made is None else made
    confusion = np.zeros((10, 10), dtype=np.int64)
    right = {"font": [0, 0], "pen": [0, 0]}
    noted = []
    for picture in made:
        trace = model.run(picture.image)
        answer = int(trace.predictions[0].label)
        confusion[picture.label, answer] += 1
        kind = picture.kind.split(":")[0]
        right[kind][0] += answer == picture.label
        right[kind][1] += 1
        noted.append((answer == picture.label, bool(trace.warnings)))
    return {"accuracy": float(np.trace(confusion) / confusion.sum()), "confusion": confusion,
            "count": len(made), "by_kind": {k: (r / n if n else 0.0, n) for k, (r, n) in right.items()},
            "fonts": len(fonts()), "noted_right": sum(n for ok, n in noted if ok),
            "noted_wrong": sum(n for ok, n in noted if not ok), "wrong": sum(1 for ok, _ in noted if not ok)}


def main() -> int:
    result = measure()
    print(f"{result['count']} pictures ({result['fonts']} fonts), accuracy {result['accuracy']:.3f}")
    for kind, (accuracy, count) in result["by_kind"].items():
        print(f"  {'printed' if kind == 'font' else 'drawn'}: {accuracy:.3f} of {count}")
    print(f"a note (any kind) on {result['noted_wrong']} of the {result['wrong']} wrong answers, "
          f"{result['noted_right']} of the {result['count'] - result['wrong']} right ones")
    print("true \\ answer " + " ".join(f"{d:>4}" for d in range(10)))
    for digit, row in enumerate(result["confusion"]):
        print(f"{digit:>13} " + " ".join(f"{n:>4}" for n in row))
    return 0


if __name__ == "__main__":
    sys.exit(main())
