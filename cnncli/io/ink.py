"""Fitting the ink of a picture to a small network input, the way scikit-learn's digits were made.

scikit-learn's ``load_digits`` (UCI optdigits) are 32x32 bitmaps of handwriting, normalised by
NIST's programs so that the ink's longer side fills the frame, then reduced to 8x8 by counting the
ink in 4x4 blocks. Measured on the 1,797 of them: every digit's ink spans all 8 rows (no margin on
the longer side), it is 5 to 7 columns wide (the aspect ratio kept), and its centre of mass lies
within a third of a pixel of the centre. ``fit_ink`` makes any picture of one symbol into that:

1. polarity: which of dark or light is ink, from the border (paper surrounds the symbol), or given;
2. contrast: the paper (the border's median) becomes 0 and the ink (its strongest pixels) 1;
3. the ink's bounding box, found from connected blobs of ink so that specks of dirt do not count;
4. scale: the box's longer side becomes the frame's, keeping the aspect ratio;
5. place: the centre of mass at the frame's centre, moved only as far as keeps the box inside;
6. reduce: each output pixel the average of the picture's area under it (exact overlaps).

Everything is NumPy (and Pillow's integer-factor ``reduce`` for large pictures); nothing loops
over pixels in Python. The result is ink high: 0 paper, 1 ink.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# The ink's longer side spans this share of the frame: 1.0, as in every load_digits image (above).
INK_SPAN = 1.0
# A pixel is ink from this share of the ink's contrast: the edge of a blurred stroke is at half.
INK_LEVEL = 0.5
# Below this contrast between paper and ink (on a 0..1 scale, above the paper's noise), the
# picture holds no ink: 0.1 is 25 grey levels, below a faint pencil line on paper.
MIN_CONTRAST = 0.1
# Pictures larger than this on their longer side are first reduced by an integer factor (area
# averaging): 32 times the frame (256 pixels for 8x8), so a symbol down to a third of the picture
# keeps 10 pixels of detail per output pixel, and a 12-megapixel photo is analysed in tens of
# milliseconds; at most WORK_MOST pixels, however large the frame.
WORK_SCALE = 32
WORK_MOST = 1024
# Blobs of ink holding less than this share of the ink are specks (dust, noise): left out.
SPECK = 0.02
# Blobs holding at least this share each are separate marks: a note says the picture has several.
BLOB = 0.1
# Ink whose longer side is under this share of the picture's shorter side is a speck, not a symbol.
TINY = 0.05


@dataclass(frozen=True, eq=False, repr=False)  # no repr: it would print the array
class InkFit:
    """A picture's ink fitted to a frame, and what was found on the way.

    ``box`` is (left, top, width, height) of the ink in the picture's pixels; ``shift`` is (x, y),
    how far the centre of mass placed the ink from where its box's centre would have, in output
    pixels (positive: right, down). ``notes`` say each step; ``warnings`` say why the picture may
    not be a symbol the network can read (none when it looks like one)."""

    array: np.ndarray  # (H, W): 0 paper, 1 ink
    dark_ink: bool
    polarity_from: str  # "border" or "given"
    paper: float  # the paper's level on the picture's 0..1 scale
    ink: float  # the ink's level
    box: tuple[int, int, int, int] | None  # None when no ink was found
    scale: float
    shift: tuple[float, float]
    blobs: int
    notes: tuple[str, ...]
    warnings: tuple[str, ...]


def fit_ink(plane: np.ndarray, size: tuple[int, int], dark_ink: bool | None = None, full_scale: float = 1.0) -> InkFit:
    """Fit the ink of one picture, a (H, W) array of values 0..``full_scale``, to ``size`` (h, w).

    Parameters
    ----------
    plane : (H, W) gray values, 0 black to ``full_scale`` white.
    size : (h, w) of the result.
    dark_ink : whether the ink is darker than the paper; None decides it from the border.
    full_scale : the value of white (1 for unit values, 255 for raw ones).

    Returns an InkFit whose array is (h, w) float32, 0 for paper and 1 for full ink. A picture
    without ink (no contrast) gives zeros and a warning; so does one whose ink is a speck; one
    with several separate blobs of ink fits them all and warns.
    """
    height, width = plane.shape
    work, factor = _working_copy(np.asarray(plane, dtype=np.float32) / np.float32(full_scale), size)
    border_says, paper = dark_ink_from_border(work)
    polarity_from = "border" if dark_ink is None else "given"
    dark_ink = border_says if dark_ink is None else dark_ink
    strength = (paper - work) if dark_ink else (work - paper)  # ink above 0, paper about 0
    grain = _grain(_border(strength))
    floor = 2 * grain  # the paper's own noise reaches this far, 98% of the time
    peak = float(np.percentile(strength, 99.9, method="higher"))  # a pixel's own value: a blown-up copy's too
    how = f"found from the border, {_level(paper, full_scale)}" if polarity_from == "border" else "as given"
    notes = [f"{'dark ink on light' if dark_ink else 'light ink on dark'} paper ({how})"]
    if peak - floor < max(MIN_CONTRAST, 2 * grain):  # no ink, or none that stands out of the paper's grain
        if dark_ink != border_says:  # told the wrong polarity, most likely
            why = (f"no {_dark(dark_ink)} ink found, as given, but its border looks like {_paper_word(paper)} paper "
                   f"({_level(paper, full_scale)}), with {_dark(border_says)} ink")
        else:
            why = (f"no ink found: nothing stands out of the paper (contrast {max(peak - floor, 0):.2f}, the paper's "
                   f"own grain {grain:.2f})")
        return InkFit(np.zeros(size, dtype=np.float32), dark_ink, polarity_from, paper, paper, None, 0.0, (0.0, 0.0),
                      0, tuple(notes + ["no ink found"]), (f"{why}; the answer means nothing",))
    ink = (strength - np.float32(floor)) / np.float32(peak - floor)
    np.clip(ink, 0, 1, out=ink)  # work_h, work_w
    ink_level = paper - peak if dark_ink else paper + peak
    notes.append(f"paper {_level(paper, full_scale)} -> 0, ink {_level(ink_level, full_scale)} -> 1")
    ink, blobs = _without_specks(ink)
    rows, cols = np.flatnonzero((ink >= INK_LEVEL).any(axis=1)), np.flatnonzero((ink >= INK_LEVEL).any(axis=0))
    edges = (int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1)  # left, top, right, bottom in work px
    box = _picture_box(edges, factor, (height, width))
    notes.append(f"ink box {box[2]}x{box[3]} at ({box[0]}, {box[1]})")
    array, scale, shift = _placed(ink, edges, size)
    notes.append(f"scaled x{scale / factor:.3g}, aspect ratio kept (longer side {max(box[2:])} -> "
                 f"{max(box[2], box[3]) * scale / factor:.3g} px)")
    notes.append(f"centred by its centre of mass ({shift[0]:+.2f} px right, {shift[1]:+.2f} px down of the box's "
                 "centre)")
    notes.append(f"reduced to {size[1]}x{size[0]} by area averaging")
    darkest = float(array.max())
    if 0 < darkest < 1:  # every training digit has a cell of full ink; a thin stroke is made as dark
        array = array / np.float32(darkest)
        notes.append(f"ink darkened x{1 / darkest:.3g} (its darkest cell to 1)")
    warnings = []
    if dark_ink != border_says:
        warnings.append(f"its border looks like {_paper_word(paper)} paper with {_dark(border_says)} ink, but "
                        f"{_dark(dark_ink)} ink was taken (as given); the answer may be wrong")
    if max(box[2], box[3]) < TINY * min(height, width):
        warnings.append(f"nearly blank: the only ink is a speck ({box[2]}x{box[3]} px in a {width}x{height} "
                        "picture); the answer may mean nothing")
    if blobs > 1:
        warnings.append(f"{blobs} separate blobs of ink; the model reads one symbol, so the answer may be wrong")
    return InkFit(np.clip(array, 0, 1).astype(np.float32), dark_ink, polarity_from, paper, ink_level, box,
                  scale / factor, shift, blobs, tuple(notes), tuple(warnings))


def _placed(ink: np.ndarray, edges: tuple[int, int, int, int], size: tuple[int, int]
            ) -> tuple[np.ndarray, float, tuple[float, float]]:
    """The ink (H, W) reduced into the frame ``size`` (h, w): its box (``edges``: left, top, right,
    bottom) scaled to span the frame on its longer side (INK_SPAN), its centre of mass at the
    frame's centre, moved only as far as keeps the box inside. Returns the (h, w) array, the scale
    (output pixels per ink pixel) and the shift (x, y) from where box-centring would have put it, in
    output pixels (positive: right, down)."""
    left, top, right, bottom = edges
    out_h, out_w = size
    scale = min(out_h * INK_SPAN / (bottom - top), out_w * INK_SPAN / (right - left))
    mass = float(ink.sum())
    centre_y = float(ink.sum(axis=1) @ (np.arange(ink.shape[0]) + 0.5)) / mass
    centre_x = float(ink.sum(axis=0) @ (np.arange(ink.shape[1]) + 0.5)) / mass
    frame_h, frame_w = out_h / scale, out_w / scale  # in ink pixels
    y0 = min(max(centre_y - frame_h / 2, bottom - frame_h), top)
    x0 = min(max(centre_x - frame_w / 2, right - frame_w), left)
    shift = (_no_minus_zero(((left + right - frame_w) / 2 - x0) * scale),
             _no_minus_zero(((top + bottom - frame_h) / 2 - y0) * scale))
    rows = area_matrix(y0, frame_h / out_h, out_h, ink.shape[0])  # out_h, H
    cols = area_matrix(x0, frame_w / out_w, out_w, ink.shape[1])  # out_w, W
    return rows @ ink @ cols.T, scale, shift  # out_h, out_w


def dark_ink_from_border(plane: np.ndarray) -> tuple[bool, float]:
    """Whether a (H, W) picture's ink is dark, and its paper's level: the paper surrounds the
    symbol, so the border's median is the paper, and the ink lies at the other end of the range
    (dark ink when the paper is nearer the brightest value than the darkest; dark on a uniform
    picture)."""
    paper = float(np.median(_border(plane)))
    return paper - float(plane.min()) >= float(plane.max()) - paper, paper


def fit_bytes(shape: tuple[int, int], size: tuple[int, int]) -> int:
    """An upper estimate of the memory ``fit_ink`` holds at once for a (H, W) picture: its float32
    copy and Pillow's, and per pixel of the working copy a few float32 planes and the int64
    labels of its blobs with their copies."""
    height, width = shape
    factor = _work_factor(shape, size)
    work = math.ceil(height / factor) * math.ceil(width / factor)
    return 2 * 4 * height * width + 96 * work


def area_matrix(start: float, cell: float, count: int, length: int) -> np.ndarray:
    """The (count, length) matrix averaging ``length`` pixels into ``count`` cells of ``cell``
    pixels each, the first starting at ``start`` (fractional): each weight is the overlap of a
    pixel with a cell, divided by the cell's size. Pixels outside 0..length are paper (0)."""
    low = start + cell * np.arange(count)[:, None]  # count, 1
    pixel = np.arange(length)[None, :]  # 1, length
    overlap = np.minimum(low + cell, pixel + 1) - np.maximum(low, pixel)  # count, length
    return (np.clip(overlap, 0, None) / cell).astype(np.float32)


def label_components(mask: np.ndarray) -> np.ndarray:
    """Connected components of a (H, W) boolean mask, 8-connected: each True pixel gets the flat
    index of its component's first pixel (in row-major order); False pixels get H * W.

    Vectorised: every pixel takes the smallest label among itself and its neighbours, then follows
    its label's own label (pointer jumping), until nothing changes; the number of rounds grows
    with the logarithm of a component's length, not with it."""
    height, width = mask.shape
    background = height * width
    labels = np.where(mask, np.arange(background).reshape(height, width), background)  # H, W
    padded = np.full((height + 2, width + 2), background)  # H + 2, W + 2: the border stays background
    while True:
        padded[1:-1, 1:-1] = labels
        smallest = labels.copy()
        for dy in range(3):
            for dx in range(3):
                if dy != 1 or dx != 1:
                    np.minimum(smallest, padded[dy:dy + height, dx:dx + width], out=smallest)
        smallest[~mask] = background
        flat = np.append(smallest.ravel(), background)  # a label is a pixel's index: follow it
        jumped = flat[flat[smallest]]  # H, W
        if np.array_equal(jumped, labels):
            return labels
        labels = jumped


def _without_specks(ink: np.ndarray) -> tuple[np.ndarray, int]:
    """The ink without its specks (blobs under SPECK of the ink), and the number of blobs of at
    least BLOB each. Blobs are found on the ink mask grown by one pixel, so a stroke broken by a
    hairline (a thin anti-aliased line at the threshold) stays one blob; faint ink off the blobs
    (a stroke's blurred edge) stays."""
    mask = ink >= INK_LEVEL
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    top, bottom = max(rows[0] - 1, 0), min(rows[-1] + 2, mask.shape[0])
    left, right = max(cols[0] - 1, 0), min(cols[-1] + 2, mask.shape[1])
    inside = mask[top:bottom, left:right]  # h, w: the mask's box and a pixel around it
    grown = np.zeros_like(inside)
    padded = np.pad(inside, 1)  # h + 2, w + 2
    for dy in range(3):
        for dx in range(3):
            grown |= padded[dy:dy + inside.shape[0], dx:dx + inside.shape[1]]
    labels = label_components(grown)
    found, which = np.unique(labels, return_inverse=True)
    which = which.reshape(labels.shape)  # h, w: the index of each pixel's blob in found
    masses = np.bincount(which.ravel(), weights=(ink[top:bottom, left:right] * inside).ravel())
    share = masses / masses.sum()  # the background's is 0: it holds no pixel of the mask
    speck = (share < SPECK) & (found != labels.size)
    cleaned = ink.copy()
    cleaned[top:bottom, left:right][speck[which]] = 0
    return cleaned, int(np.sum(share >= BLOB))


def _working_copy(plane: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, int]:
    """The picture reduced by an integer factor (area averaging) to at most WORK_SCALE times the
    frame's longer side (and WORK_MOST), and the factor (1 when it is small enough)."""
    factor = _work_factor(plane.shape, size)
    if factor <= 1:
        return plane, 1
    from PIL import Image

    return np.asarray(Image.fromarray(plane).reduce(factor)), factor


def _work_factor(shape: tuple[int, ...], size: tuple[int, int]) -> int:
    return max(1, math.ceil(max(shape) / min(WORK_SCALE * max(size), WORK_MOST)))


def _border(plane: np.ndarray) -> np.ndarray:
    """The pixels of the picture's outer ring, 2% of its shorter side deep (at least one pixel)."""
    depth = max(1, min(plane.shape) // 50)
    if min(plane.shape) <= 2 * depth:
        return plane.ravel()
    sides = (plane[:depth], plane[-depth:], plane[depth:-depth, :depth], plane[depth:-depth, -depth:])
    return np.concatenate([side.ravel() for side in sides])


def _grain(border: np.ndarray) -> float:
    """The paper's own grain (noise): a robust standard deviation of the border (1.4826 times its
    median absolute deviation), which ink in up to half the border leaves alone."""
    deviation = np.abs(border - np.median(border))
    return 1.4826 * float(np.median(deviation))


def _picture_box(box: tuple[int, int, int, int], factor: int, shape: tuple[int, int]) -> tuple[int, int, int, int]:
    """A (left, top, right, bottom) box in work pixels as (left, top, width, height) in the picture's."""
    left, top, right, bottom = (int(v) * factor for v in box)
    right, bottom = min(right, shape[1]), min(bottom, shape[0])
    return left, top, right - left, bottom - top


def _level(value: float, full_scale: float) -> str:
    """A level on the 0..1 scale as the picture's own values say it: 0.97, or 247 for 0..255."""
    return f"{value:.2f}" if full_scale == 1 else f"{value * full_scale:.0f}"


def _dark(dark: bool) -> str:
    return "dark" if dark else "light"


def _paper_word(level: float) -> str:
    return "light" if level > 2 / 3 else "dark" if level < 1 / 3 else "grey"


def _no_minus_zero(value: float) -> float:
    return 0.0 if abs(value) < 0.005 else value
