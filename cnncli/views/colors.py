"""The one colour scale of every view: a value gets the same colour in a table cell, a heatmap cell
and a PNG pixel.

A layer with no negative value uses a sequential dark-to-bright scale (viridis-like); a layer with
any negative value a diverging blue-white-red scale symmetric about 0 (-m..m, m the largest
magnitude), so that white is exactly 0. NaN is grey; -inf and +inf take the two ends. Each scale
is a table of 256 colours; ``color_indices`` maps values to entries, and every view looks the
entries up here: pictures as RGB pixels, heatmaps and tables as Rich colours (``rich_style``), on
256-colour terminals as the nearest of theirs that keeps the hue (``xterm_indices``), and tables on
terminals of 8 or 16 colours as named colours (``basic_style``).

Only NumPy is imported here: pictures use it without Rich.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

# Anchor colours, equally spaced, interpolated linearly into 256 entries. Sequential: viridis
# sampled at every eighth. Diverging: ColorBrewer's RdBu reversed, with its near-white middle made
# pure white.
_SEQUENTIAL_ANCHORS = ((68, 1, 84), (72, 40, 120), (62, 74, 137), (49, 104, 142), (38, 130, 142),
                       (31, 158, 137), (53, 183, 121), (109, 205, 89), (253, 231, 37))
_DIVERGING_ANCHORS = ((5, 48, 97), (33, 102, 172), (67, 147, 195), (146, 197, 222), (209, 229, 240),
                      (255, 255, 255),
                      (253, 219, 199), (244, 165, 130), (214, 96, 77), (178, 24, 43), (103, 0, 31))
NAN_COLOR = (128, 128, 128)  # in neither table, so a NaN never reads as a value
# The same scales in named colours, for terminals that have only 8 or 16, where blended colours
# would round to the same few: strong and weak negative, about zero, weak and strong positive;
# and four steps from low to high. "" is the terminal's own background.
BASIC_DIVERGING = ("white on blue", "black on cyan", "", "black on yellow", "white on red")
BASIC_SEQUENTIAL = ("", "white on blue", "white on magenta", "black on yellow")
_CHUNK = 1 << 20  # values coloured at a time: bounds the float64 temporaries


def _ramp(anchors: Sequence[tuple[int, int, int]], size: int) -> np.ndarray:
    """``size`` colours from the first anchor to the last, linear between equally spaced anchors."""
    stops = np.asarray(anchors, dtype=np.float64)  # (K, 3)
    at = np.linspace(0, len(stops) - 1, size)  # (size,) position of each entry among the anchors
    ramp = np.stack([np.interp(at, np.arange(len(stops)), stops[:, c]) for c in range(3)], axis=1)  # (size, 3)
    return np.round(ramp).astype(np.uint8)


SEQUENTIAL = _ramp(_SEQUENTIAL_ANCHORS, 256)  # (256, 3) uint8, dark to bright
# Each half is built on its own so that entries 127 and 128 are both pure white: a value of 0
# lands on one of them whichever way it rounds.
DIVERGING = np.concatenate([_ramp(_DIVERGING_ANCHORS[:6], 128), _ramp(_DIVERGING_ANCHORS[5:], 128)])  # (256, 3)
# The same tables with NaN's grey appended, so that index -1 picks it.
_TABLES = {False: np.vstack([SEQUENTIAL, NAN_COLOR]).astype(np.uint8),
           True: np.vstack([DIVERGING, NAN_COLOR]).astype(np.uint8)}


def color_table(diverging: bool) -> np.ndarray:
    """The (257, 3) uint8 table: 256 colours of the scale, then NaN's grey (index -1)."""
    return _TABLES[bool(diverging)]


def value_range(values: np.ndarray) -> tuple[float, float, bool]:
    """The finite minimum and maximum of ``values``, and whether a diverging scale suits them.

    Diverging means some finite value is negative. With no finite value at all the range is (0, 0).
    """
    values = np.asarray(values)
    if values.size == 0:
        return 0.0, 0.0, False
    low, high = float(values.min()), float(values.max())
    if not (math.isfinite(low) and math.isfinite(high)):  # the rare map with NaN or inf: look closer
        finite = values[np.isfinite(values)]
        low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
    return low, high, low < 0


def scale_bounds(vmin: float, vmax: float, diverging: bool) -> tuple[float, float]:
    """The ends of the colour scale: (vmin, vmax), or (-m, m) with m = max(|vmin|, |vmax|) if diverging."""
    if not (math.isfinite(vmin) and math.isfinite(vmax)):
        raise ValueError(f"vmin and vmax must be finite, got {vmin} and {vmax}")
    if diverging:
        m = max(abs(vmin), abs(vmax))
        return -m, m
    return float(vmin), float(vmax)


def color_indices(plane: np.ndarray, vmin: float, vmax: float, diverging: bool) -> np.ndarray:
    """Each value's entry in the 256-colour table: int16 of the plane's shape, -1 for NaN.

    With t = (value - low) / (high - low) over the scale's ends (``scale_bounds``), the entry is
    floor(256 t) clipped to 0..255: low is 0, high is 255, and a diverging 0 is 128 (white).
    Infinities clip to the ends. A constant map (high == low) takes entry 0, or 128 if diverging.
    """
    low, high = scale_bounds(vmin, vmax, diverging)
    values = np.asarray(plane)
    flat = values.reshape(-1)  # (N,)
    out = np.empty(flat.shape, dtype=np.int16)
    # 128 / (high/2 - low/2) rather than 256 / (high - low): finite for any finite ends, even +-1e308.
    half_span = high * 0.5 - low * 0.5
    slope = 128.0 / half_span if half_span > 0 else 0.0
    middle = 128.0 if diverging else 0.0
    with np.errstate(invalid="ignore", over="ignore"):  # inf - inf is NaN, and is reported as NaN
        for start in range(0, flat.size, _CHUNK):
            chunk = flat[start:start + _CHUNK].astype(np.float64)
            if slope:
                t = np.floor(chunk * slope - low * slope)
            else:  # one value: everything at it is the middle (or the bottom), anything else an end
                t = np.where(chunk > low, 255.0, np.where(chunk < low, 0.0, middle))
                t[np.isnan(chunk)] = np.nan
            nan = np.isnan(t)
            np.clip(t, 0, 255, out=t)
            t[nan] = -1
            out[start:start + chunk.size] = t
    return out.reshape(values.shape)


def colorize(plane: np.ndarray, vmin: float, vmax: float, diverging: bool) -> np.ndarray:
    """An (H, W) plane as (H, W, 3) uint8 RGB on the sequential or diverging scale.

    Parameters
    ----------
    plane : (H, W) array (any shape works; the colour axis is appended)
    vmin, vmax : finite ends of the scale; a diverging scale widens them to -m..m about 0
    diverging : blue-white-red about 0, else dark-to-bright

    NaN is grey; -inf and +inf take the ends; a constant map never divides by zero.
    """
    return color_table(diverging)[color_indices(plane, vmin, vmax, diverging)]


def ink(rgb: Sequence[int]) -> str:
    """"black" or "white": the text colour that reads on a background of ``rgb``."""
    luma = 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]
    return "black" if luma > 140 else "white"


def _rich_styles(diverging: bool) -> tuple[str, ...]:
    return tuple(f"{ink(rgb)} on rgb({rgb[0]},{rgb[1]},{rgb[2]})" for rgb in color_table(diverging).tolist())


_RICH_STYLES = {False: _rich_styles(False), True: _rich_styles(True)}


def rich_style(index: int, diverging: bool, eight_bit: bool = False) -> str:
    """A Rich style string for table entry ``index`` (-1: NaN): the entry as background, readable ink;
    with ``eight_bit``, the entry's colour among a 256-colour terminal's (``xterm_indices``)."""
    if eight_bit:
        number = xterm_indices(diverging)[index]
        return f"{ink(XTERM_RGB[number])} on color({number})"
    return _RICH_STYLES[bool(diverging)][index]


def _xterm_rgb() -> np.ndarray:
    """The (256, 3) colours of a 256-colour terminal: 16 system ones (as xterm sets them), the
    6x6x6 cube, the 24 greys."""
    system = [(0, 0, 0), (128, 0, 0), (0, 128, 0), (128, 128, 0), (0, 0, 128), (128, 0, 128), (0, 128, 128),
              (192, 192, 192), (128, 128, 128), (255, 0, 0), (0, 255, 0), (255, 255, 0), (0, 0, 255),
              (255, 0, 255), (0, 255, 255), (255, 255, 255)]
    levels = (0, 95, 135, 175, 215, 255)
    cube = [(r, g, b) for r in levels for g in levels for b in levels]
    greys = [(8 + 10 * i,) * 3 for i in range(24)]
    return np.array(system + cube + greys, dtype=np.int32)


XTERM_RGB = _xterm_rgb()
_XTERM: dict[bool, tuple[int, ...]] = {}


def xterm_indices(diverging: bool) -> tuple[int, ...]:
    """For each entry of the scale (and NaN's grey, last), the nearest colour of a 256-colour terminal
    (numbers 16-255: the system 16 vary between terminals) that keeps the entry's hue: a grey, or
    more blue than red where the entry is bluer (the reverse where redder) with green from the lesser
    up to below the greater. Rich's own
    rounding to those colours turned the near-white cells about 0 yellow and mint."""
    if diverging not in _XTERM:
        candidates = XTERM_RGB[16:].astype(np.float64)  # (240, 3)
        r, g, b = candidates.T
        chosen = []
        for entry in color_table(diverging).astype(np.float64):
            fits = np.ones(len(candidates), dtype=bool)
            if diverging:
                side = np.sign(entry[2] - entry[0])
                grey = (r == g) & (g == b)
                fits = grey | ((np.sign(b - r) == side) & (g >= np.minimum(r, b)) & (g < np.maximum(r, b)))
            distance = ((candidates - entry) ** 2).sum(axis=1)
            chosen.append(16 + int(np.argmin(np.where(fits, distance, np.inf))))
        _XTERM[diverging] = tuple(chosen)
    return _XTERM[diverging]


def basic_style(index: int, diverging: bool) -> str:
    """The named colour (8/16-colour terminals) for table entry ``index``: the scale in 5 or 4 steps."""
    if index < 0:
        return "reverse"  # NaN: not a value of the scale
    names = BASIC_DIVERGING if diverging else BASIC_SEQUENTIAL
    return names[index * len(names) // 256]
