"""A conv layer's learned filters: which layers have them, their weights by output filter, and the
picture grid `cnn filters -o` writes.

Two ways to draw them, as the literature does:

- A first layer that reads an RGB picture (3 input channels, no groups) draws each filter as one
  colour tile, its R, G and B planes as the tile's red, green and blue, as in Krizhevsky et al.'s
  AlexNet figure. The weights are scaled by one min-max for the whole layer,
  ``round(255 (w - min) / (max - min))``, so that filters compare: a faint tile is a weak filter,
  where per-filter scaling would stretch every filter to full contrast alike.
- Any other layer draws each filter's kernel per input channel: a grid of filters (rows) by input
  channels (columns), or, with one input channel each, a square grid of filters, on the views'
  blue-white-red scale symmetric about 0 (cnncli.views.colors): white is exactly 0, and the
  strongest weight of the layer takes the scale's end.

Tiles are blown up by a whole factor (nearest neighbour) so that a 3x3 kernel is seen, with a
1-pixel line between tiles. Only NumPy is imported with this module; Pillow when a picture is
drawn. Nothing here prints or imports Typer or Rich.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from . import pictures
from .colors import DIVERGING, colorize
from ..errors import SpecError, UsageError
from ..engine.graph import INPUT

if TYPE_CHECKING:
    from PIL import Image

    from ..engine.graph import Network
    from ..io.modelfile import Model

CONV_TYPES = ("conv2d", "conv_transpose2d")
FILTERS_FORMAT, FILTERS_VERSION = "cnn-filters", 1
TILE_TARGET = 64  # pixels: the side a kernel is blown up toward (3x3: 16 pixels a weight, MAX_FACTOR; 7x7: 9)
MAX_FACTOR = 16
# The 1-pixel line between tiles: white can be a weight of 0 on the blue-white-red scale, whose
# only grey it is, so those tiles are parted by a grey; colour tiles by the white of the page.
RGB_GAP, CHANNEL_GAP = pictures.BACKGROUND, (120, 120, 120)


class Filters:
    """One conv layer's weights as filters: ``bank`` (F, C, KH, KW), filter f's kernel over the c-th
    input channel it reads (a transposed conv's stored (C, F/groups, KH, KW) rearranged so), its
    ``bias`` (F,) or None, and whether it is drawn in colour (``rgb``)."""

    def __init__(self, layer: Any, index: int, bank: np.ndarray, rgb: bool) -> None:
        self.layer, self.index, self.bank, self.rgb = layer, index, bank, rgb
        self.bias = None if layer.bias is None else np.asarray(layer.bias)

    @property
    def name(self) -> str:
        return self.layer.name

    @property
    def groups(self) -> int:
        return int(getattr(self.layer, "groups", 1))

    def describe(self) -> str:
        """e.g. "16 filters x 1 input channel, 3x3"."""
        f, c, kh, kw = self.bank.shape
        text = f"{f} filter{'s' * (f != 1)} x {c} input channel{'s' * (c != 1)}, {kh}x{kw}"
        if self.groups > 1:
            text += f", groups {self.groups} (each filter reads its group's {c})"
        return text

    def how(self) -> str:
        """How the weights become colours, in words."""
        low, high = float(self.bank.min()), float(self.bank.max())
        if self.rgb:
            return (f"R, G, B planes as one colour tile, (w - min) / (max - min) over the layer: min {low:.4g} "
                    f"black, max {high:.4g} white")
        reach = max(abs(low), abs(high))
        return f"blue < 0 < red, symmetric: -{reach:.4g} .. {reach:.4g} (0 is white)"


def conv_layers(network: Network) -> list[tuple[int, Any]]:
    """(step index, layer) of every conv and transposed conv layer; 1 is the first layer, as in
    `cnn summary`."""
    return [(i, layer) for i, layer in enumerate(network.layers, start=1) if layer.type in CONV_TYPES]


def find_filters(model: Model, name: str | None = None) -> Filters:
    """The filters of the conv layer called ``name`` (or numbered so, as in `cnn summary`), or of
    the first conv layer.

    Raises SpecError (the model's source) when the model has no conv layer, and UsageError (param
    "layer") for a name or number that is no conv layer; both list the conv layers.
    """
    network = model.network
    convs = conv_layers(network)
    if not convs:
        raise SpecError("has no conv layer, expected a model with a conv2d or conv_transpose2d layer whose "
                        "weights are filters", source=model.source)
    listing = ", ".join(f"{layer.name} (#{i})" for i, layer in convs)
    if name is None:
        index, layer = convs[0]
    else:
        found = [(i, layer) for i, layer in enumerate(network.layers, start=1) if layer.name == name]
        text = name.strip()
        if not found and text.isascii() and text.isdigit() and 1 <= int(text) <= len(network.layers):
            found = [(int(text), network.layers[int(text) - 1])]
        if not found:
            raise UsageError(f"no layer {name!r} in {model.name}; expected a conv layer: {listing}", param="layer")
        index, layer = found[0]
        if layer.type not in CONV_TYPES:
            article = "an" if layer.type[:1] in "aeiou" else "a"
            raise UsageError(f"{layer.name} is {article} {layer.type} layer, which has no filters; expected a conv "
                             f"layer: {listing}", param="layer")
    bank = filter_bank(layer)
    reads = network.reads[index - 1]
    rgb = (bank.shape[1] == 3 and getattr(layer, "groups", 1) == 1 and reads == (INPUT,)
           and model.input.color == "rgb")
    return Filters(layer, index, bank, rgb)


def filter_bank(layer: Any) -> np.ndarray:
    """A conv layer's weights by output filter, (F, C/groups, KH, KW): a conv's as stored; a
    transposed conv's (C, F/groups, KH, KW) rearranged, filter f of group g taking the kernels
    ``weight[g*C/groups + c, f mod F/groups]``."""
    weight = np.asarray(layer.weight)
    if layer.type == "conv2d":
        return weight
    groups = int(getattr(layer, "groups", 1))
    channels, per_group, kh, kw = weight.shape
    grouped = weight.reshape(groups, channels // groups, per_group, kh, kw)  # (G, C/G, F/G, KH, KW)
    return grouped.transpose(0, 2, 1, 3, 4).reshape(groups * per_group, channels // groups, kh, kw)  # (F, C/G, KH, KW)


def rgb_tiles(bank: np.ndarray) -> np.ndarray:
    """(F, 3, KH, KW) weights as (F, KH, KW, 3) uint8 colours: round(255 (w - min) / (max - min))
    with one min and max for the whole layer; all 128 when every weight is the same."""
    values = np.asarray(bank, dtype=np.float64)
    low, high = float(values.min()), float(values.max())
    scaled = (values - low) / (high - low) * 255.0 if high > low else np.full(values.shape, 128.0)
    return np.round(scaled).astype(np.uint8).transpose(0, 2, 3, 1)  # (F, KH, KW, 3)


def channel_tiles(bank: np.ndarray) -> np.ndarray:
    """(F, C, KH, KW) weights as (F, C, KH, KW, 3) uint8 on the blue-white-red scale over
    -m..m, m the largest magnitude of the layer."""
    reach = float(np.abs(bank).max())
    return colorize(bank, -reach, reach, True)  # (F, C, KH, KW, 3)


def grid_shape(filters: Filters) -> tuple[int, int]:
    """(rows, columns) of tiles: a square grid of filters when each is one tile (colour, or one input
    channel), else one row per filter and one column per input channel."""
    f, c = filters.bank.shape[:2]
    if filters.rgb or c == 1:
        columns = math.ceil(math.sqrt(f))
        return math.ceil(f / columns), columns
    return f, c


def grid_pixels(filters: Filters, max_side: int = pictures.MAX_SIDE) -> tuple[np.ndarray, int, tuple[int, int]]:
    """The tiles laid out as one (H, W, 3) uint8 array, and the factor each weight was blown up by.

    Tile (r, q) starts at row 1 + r (KH f + 1) and column 1 + q (KW f + 1): a 1-pixel line between
    tiles and around them. A grid that is wider or taller than ``max_side`` at factor 1 keeps its
    first rows and columns; the third value is the (rows, columns) of tiles drawn.
    """
    f, c, kh, kw = filters.bank.shape
    rows, columns = grid_shape(filters)
    factor = max(1, min(MAX_FACTOR, TILE_TARGET // max(kh, kw)))
    while factor > 1 and max(columns * (kw * factor + 1), rows * (kh * factor + 1)) + 1 > max_side:
        factor -= 1  # a big grid's tiles are smaller, down to a pixel a weight
    shown = (max(1, min(rows, (max_side - 1) // (kh * factor + 1))),
             max(1, min(columns, (max_side - 1) // (kw * factor + 1))))
    tile_h, tile_w = kh * factor, kw * factor
    gap = RGB_GAP if filters.rgb else CHANNEL_GAP
    canvas = np.empty((shown[0] * (tile_h + 1) + 1, shown[1] * (tile_w + 1) + 1, 3), dtype=np.uint8)
    canvas[:] = gap
    if filters.rgb or c == 1:
        tiles = rgb_tiles(filters.bank) if filters.rgb else channel_tiles(filters.bank)[:, 0]  # (F, KH, KW, 3)
        places = [(divmod(i, columns), tiles[i]) for i in range(f)]
    else:
        colored = channel_tiles(filters.bank)  # (F, C, KH, KW, 3)
        places = [((i, j), colored[i, j]) for i in range(f) for j in range(c)]
    for (r, q), tile in places:
        if r >= shown[0] or q >= shown[1]:
            continue
        top, left = 1 + r * (tile_h + 1), 1 + q * (tile_w + 1)
        canvas[top:top + tile_h, left:left + tile_w] = np.repeat(np.repeat(tile, factor, axis=0), factor, axis=1)
    return canvas, factor, shown


def filters_picture(filters: Filters, model_name: str) -> Image.Image:
    """The grid of ``grid_pixels`` on a white page: a title, the filter (and channel) numbers beside
    the tiles where they fit, the blue-white-red bar for a per-channel grid, and a caption saying
    how weights became colours."""
    from PIL import Image, ImageDraw

    lay = pictures.Layout()
    grid, factor, shown = grid_pixels(filters, pictures.MAX_SIDE - 2 * pictures.MARGIN - 80)
    f, c, kh, kw = filters.bank.shape
    rows, columns = grid_shape(filters)
    per_channel = not (filters.rgb or c == 1)
    step = 1 if per_channel else columns  # a square grid's row starts at filter r * columns
    label_w = int(lay.font.getlength(str((shown[0] - 1) * step))) + 6
    label_h = lay.line
    title = pictures.printable(f"{filters.name} ({filters.layer.type}) of {model_name}: {filters.describe()}")
    notes = [filters.how(), f"each weight drawn {factor}x{factor}" if factor > 1 else ""]
    if shown != (rows, columns):
        notes.append(f"the first {shown[0]} of {rows} rows and {shown[1]} of {columns} columns (--format json "
                     "gives every weight)")
    notes.insert(0, "rows: filters, columns: input channels" if per_channel else
                 "filter number: its row's number plus its column's")
    info = [pictures.printable(text) for text in notes if text]
    bar = 0 if filters.rgb else pictures.BAR_HEIGHT + 4 + lay.line
    top = pictures.MARGIN + lay.title_line + 6 + label_h
    left = pictures.MARGIN + label_w
    text_width = max([lay.title_font.getlength(title)] + [lay.font.getlength(line) for line in info])
    width = int(min(pictures.MAX_SIDE, max(left + grid.shape[1], 2 * pictures.MARGIN + math.ceil(text_width),
                                           2 * pictures.MARGIN + pictures.BAR_WIDTH) + pictures.MARGIN))
    height = top + grid.shape[0] + 8 + bar + len(info) * lay.line + pictures.MARGIN
    canvas = np.empty((height, width, 3), dtype=np.uint8)
    canvas[:] = pictures.BACKGROUND
    canvas[top:top + grid.shape[0], left:left + grid.shape[1]] = grid
    bar_top = top + grid.shape[0] + 8
    if bar:
        pictures.paste_bar(canvas, bar_top, pictures.MARGIN, True, DIVERGING)
    image = Image.fromarray(canvas, "RGB")
    draw = ImageDraw.Draw(image)
    inner = width - 2 * pictures.MARGIN
    draw.text((pictures.MARGIN, pictures.MARGIN), pictures.fit_text(title, lay.title_font, inner),
              fill=pictures.INK, font=lay.title_font)
    _number_rows_and_columns(draw, lay, shown, (top, left), (kh * factor + 1, kw * factor + 1), step)
    y = bar_top
    if bar:
        reach = float(np.abs(filters.bank).max())
        ticks_y = bar_top + pictures.BAR_HEIGHT + 3
        for text, at in ((f"{-reach:.3g}", 0.0), ("0", 0.5), (f"{reach:.3g}", 1.0)):
            x = pictures.MARGIN + at * pictures.BAR_WIDTH - lay.font.getlength(text) * at
            draw.text((x, ticks_y), text, fill=pictures.INK, font=lay.font)
        y = ticks_y + lay.line + 1
    for line in info:
        draw.text((pictures.MARGIN, y), pictures.fit_text(line, lay.font, inner), fill=pictures.INK, font=lay.font)
        y += lay.line
    return image


def _number_rows_and_columns(draw, lay, shown: tuple[int, int], origin: tuple[int, int],
                             pitch: tuple[int, int], step: int = 1) -> None:
    """Numbers left of the rows (``step`` times the row's) and above the columns, every so many
    where tiles are smaller than the text."""
    top, left = origin
    every_row = max(1, math.ceil(lay.line / pitch[0]))
    for r in range(0, shown[0], every_row):
        text = str(r * step)
        draw.text((left - 4 - lay.font.getlength(text), top + 1 + r * pitch[0]), text, fill=pictures.INK,
                  font=lay.font)
    every_column = max(1, math.ceil((lay.font.getlength(str(shown[1] - 1)) + 4) / pitch[1]))
    for q in range(0, shown[1], every_column):
        draw.text((left + 1 + q * pitch[1], top - lay.line), str(q), fill=pictures.INK, font=lay.font)


def filters_json(filters: Filters, model: Model) -> bytes:
    """`cnn filters --format json`: the model, the layer, how it is drawn, and every weight by
    output filter (F, C/groups, KH, KW) and the bias (null without one), as float32's shortest
    texts (io.jsontext)."""
    from ..io.jsontext import dumps, write_array
    from ..io.trace import model_record

    head = {"format": FILTERS_FORMAT, "version": FILTERS_VERSION, "model": model_record(model),
            "layer": {"name": filters.name, "index": filters.index, "type": filters.layer.type,
                      "settings": filters.layer.settings()},
            "drawn": "rgb" if filters.rgb else "per channel", "how": filters.how(),
            "shape": list(filters.bank.shape), "min": float(filters.bank.min()), "max": float(filters.bank.max())}
    parts = [dumps(head)[:-1], b',"weights":']  # the head's closing brace comes last
    write_array(parts.append, filters.bank)
    parts.append(b',"bias":')
    if filters.bias is None:
        parts.append(b"null")
    else:
        write_array(parts.append, filters.bias)
    parts.append(b"}")
    return b"".join(parts)
