"""cnncli.views.colors: one colour scale, so a value looks the same in a table, a heatmap and a picture."""

import io
import re

import numpy as np
import pytest
from rich.color import Color
from rich.console import Console
from rich.style import Style
from rich.table import Table

from cnncli.engine.graph import Step
from cnncli.views import colors, pictures, tables
from cnncli.views.heatmap import heatmap_view

RGB = re.compile(r"rgb\((\d+),(\d+),(\d+)\)")


def _table_cells(plane, palette="rgb"):
    """The background colour of every cell of a map's table, row by row."""
    step = Step(1, "conv1", "conv2d", plane[None].astype(np.float32))
    group = tables.step_view(step, 200, palette=palette)
    grid = next(part for part in group.renderables[1].renderables if isinstance(part, Table))
    cells = []
    for column in grid.columns[1:]:
        cells.append([cell.style for cell in column._cells])
    return [list(row) for row in zip(*cells)]


@pytest.mark.parametrize("plane", [
    np.array([[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]),  # sequential
    np.array([[-2.0, -1.0, 0.0], [0.5, 1.0, 3.0]]),  # diverging
    np.array([[-4.0, -3.0], [-2.0, -1.0]]),  # every value negative: still diverging, as in pictures
])
def test_a_value_has_one_colour_in_table_heatmap_and_picture(plane):
    """The table cell's background, the heatmap's half block and the PNG pixel of a value are one RGB."""
    low, high, diverging = colors.value_range(plane)
    pixels = colors.colorize(plane, low, high, diverging)  # what layer_montage paints
    styles = _table_cells(plane)
    for r in range(plane.shape[0]):
        for c in range(plane.shape[1]):
            table_rgb = tuple(int(v) for v in RGB.search(styles[r][c]).groups())
            assert table_rgb == tuple(pixels[r, c].tolist())
    # The heatmap of a one-row map draws each value as a cell's foreground colour.
    row = plane[:1]
    step = Step(1, "conv1", "conv2d", row[None].astype(np.float32))
    console = Console(file=io.StringIO(), color_system="truecolor", width=80, force_terminal=True)
    low, high, diverging = colors.value_range(row)
    expected = {tuple(colors.colorize(row, low, high, diverging)[0, c].tolist()) for c in range(row.shape[1])}
    console.print(heatmap_view(step, 80, "truecolor"))
    drawn = {tuple(int(v) for v in m) for m in re.findall(r"38;2;(\d+);(\d+);(\d+)", console.file.getvalue())}
    assert expected <= drawn


def test_pictures_and_heatmaps_use_the_shared_tables():
    """pictures and heatmap draw with colors' table; tables' rich styles are its entries with readable ink."""
    assert pictures.color_table is colors.color_table
    for diverging in (False, True):
        table = colors.color_table(diverging)
        for index in (0, 64, 128, 255, -1):
            rgb = table[index].tolist()
            style = Style.parse(colors.rich_style(index, diverging))
            assert style.bgcolor.get_truecolor() == Color.from_rgb(*rgb).get_truecolor()
            assert style.color.name == colors.ink(rgb)


def test_basic_palette_steps_follow_the_table_entries():
    """8/16-colour terminals: the table entry picks one of 5 (diverging) or 4 (sequential) named colours."""
    assert [colors.basic_style(i, True) for i in (0, 100, 128, 170, 255)] == list(colors.BASIC_DIVERGING)
    assert [colors.basic_style(i, False) for i in (0, 64, 128, 255)] == list(colors.BASIC_SEQUENTIAL)
    assert colors.basic_style(-1, True) == "reverse"


def test_no_color_tables_have_no_styles_but_bold_non_finite():
    """With no colour the cells are plain; a value that is not finite stays bold."""
    assert tables.heat_style(1.0, (0.0, 2.0), False, "none") == ""
    assert tables.heat_style(float("inf"), (0.0, 2.0), False, "none") == "bold"


XTERM_CUBE = (0, 95, 135, 175, 215, 255)


def test_256_colour_terminals_get_the_nearest_colour_that_keeps_the_hue():
    """Every entry of the blue-white-red scale becomes an xterm colour (its 6x6x6 cube and greys, as
    xterm defines them: the reference) that is grey or keeps the entry's side, with green between red
    and blue, so the cells about 0 never turn yellow or mint; the middle ones are white, the ends
    dark blue and dark red."""
    numbers = colors.xterm_indices(True)
    for entry, number in zip(colors.color_table(True).tolist(), numbers):
        assert 16 <= number <= 255
        if number < 232:
            r, g, b = (XTERM_CUBE[(number - 16) // 36], XTERM_CUBE[(number - 16) // 6 % 6], XTERM_CUBE[(number - 16) % 6])
        else:
            r = g = b = 8 + 10 * (number - 232)
        assert (r, g, b) == tuple(colors.XTERM_RGB[number])
        if not r == g == b:
            assert (b > r) == (entry[2] > entry[0]) and min(r, b) <= g < max(r, b), (entry, (r, g, b))
    assert numbers[120:137] == (231,) * 17 or set(numbers[120:137]) <= {231, 255, 254}
    assert tuple(colors.XTERM_RGB[numbers[0]]) == (0, 0, 95) and tuple(colors.XTERM_RGB[numbers[255]]) == (95, 0, 0)


def test_a_256_colour_table_and_heatmap_paint_zero_white():
    """A diverging map on a 256-colour console: the 0 cell's background is colour 231 (white) in the
    table and the heatmap, and no colour outside the chosen ones appears."""
    plane = np.array([[-2.0, 0.0, 2.0]])
    styles = _table_cells(plane, "256")
    assert "color(231)" in styles[0][1]
    step = Step(1, "conv1", "conv2d", plane[None].astype(np.float32))
    console = Console(file=io.StringIO(), color_system="256", width=80, force_terminal=True)
    console.print(heatmap_view(step, 80, "256"))
    used = {int(n) for n in re.findall(r"[34]8;5;(\d+)", console.file.getvalue())}
    assert 231 in used and used <= set(colors.xterm_indices(True))
