"""cnncli.views.heatmap: whole maps in half blocks at terminal width, and a plain fallback."""

import io
import math
import re

import numpy as np
import pytest
from rich.console import Console

from cnncli.views import colors
from cnncli.engine.graph import Step
from cnncli.views.heatmap import MAX_CHANNELS, UPPER_HALF, draw, fit, heatmap_view

ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _render(output, width, color_system=None, labels=(), full=False):
    step = Step(index=1, name="conv1", type="conv2d", output=np.asarray(output, dtype=np.float32), labels=labels)
    console = Console(file=io.StringIO(), color_system=color_system, width=width,
                      force_terminal=color_system is not None)
    console.print(heatmap_view(step, width, color_system, full))
    return console.file.getvalue()


def _smooth(rows, cols):
    y, x = np.mgrid[0:rows, 0:cols]
    return (np.sin(x / 7.0) * np.cos(y / 5.0))[None]  # (1, rows, cols)


@pytest.mark.parametrize("shape, width, lines, columns", [
    ((5, 5), 80, 23, 45),  # blown up 9x: 45 pixel rows, the last one alone on its line
    ((28, 28), 80, 14, 28),
    ((300, 100), 80, 60, 40),  # taller than 120 pixel rows: averaged down to 120x40
    ((100, 300), 80, 13, 80),  # wider than the terminal: averaged down to 26x80
    ((1024, 1024), 80, 40, 80),
    ((1024, 1024), 200, 60, 120),  # a whole big map on one screen
])
def test_a_map_takes_the_expected_lines_and_columns(shape, width, lines, columns):
    """Title, channel title, ceil(rows/2) map lines and two scale lines; the map is as wide as fit() says."""
    text = _render(_smooth(*shape), width)
    out = text.splitlines()
    assert len(out) == 2 + lines + 2
    map_lines = out[2:2 + lines]
    assert {len(line) for line in map_lines} <= {columns} | set(range(columns))  # trailing blanks are trimmed
    assert max(len(line) for line in map_lines) == columns
    assert max(len(line) for line in out) <= width


@pytest.mark.parametrize("rows, cols", [(5, 5), (8, 8), (28, 28), (3, 500), (500, 3), (1024, 1024), (1, 1)])
@pytest.mark.parametrize("width", [20, 80, 132])
def test_fit_keeps_within_width_and_lines_and_the_aspect_ratio(rows, cols, width):
    """Never wider than the terminal nor taller than 60 lines; a tiny map is blown up by a whole factor."""
    height, columns, factor = fit(rows, cols, width)
    assert 1 <= columns <= width and 1 <= height <= 120
    if factor:
        assert (height, columns) == (rows * factor, cols * factor) and columns <= max(cols, 48)
    else:  # averaged down until one bound is met, each side rounded down by less than a pixel
        assert height <= rows and columns <= cols and (columns == width or height == 120)
        assert abs(height * cols - columns * rows) <= max(rows, cols)


def test_plain_output_has_no_escape_codes_and_uses_the_shade_ramp():
    """Without a colour system each cell is a shade character; the lowest is blank, the highest '@'."""
    text = _render(_smooth(40, 40) * 10, 80)
    assert "\x1b" not in text and UPPER_HALF not in text
    assert "@" in text and "[ .:-=+*#%@]" in text


def test_colour_output_is_half_blocks_with_24_bit_colours():
    """With truecolor each cell is an upper half block with a foreground and a background colour."""
    text = _render(_smooth(40, 40), 80, "truecolor")
    assert "\x1b[38;2;" in text and "\x1b[48;2;" in text and UPPER_HALF in text
    visible = ANSI.sub("", text).splitlines()
    assert max(len(line) for line in visible) <= 80
    assert sum(UPPER_HALF in line for line in visible) == 20  # 40 rows, 2 a line


def test_a_cell_is_the_upper_pixel_in_front_and_the_lower_behind():
    """A 2x1 map [[low], [high]] is one half block: foreground the low colour, background the high."""
    (line,) = draw(np.array([[0.0], [1.0]]), 0.0, 1.0, False, True)
    assert line.plain == UPPER_HALF
    (span,) = line.spans
    low, high = colors.SEQUENTIAL[0].tolist(), colors.SEQUENTIAL[255].tolist()
    assert list(span.style.color.get_truecolor()) == low and list(span.style.bgcolor.get_truecolor()) == high


def test_runs_of_one_colour_are_one_span():
    """A row of equal cells is a single styled span, not one per cell."""
    (line,) = draw(np.zeros((2, 50)), 0.0, 1.0, False, True)
    assert len(line.spans) == 1 and line.plain == UPPER_HALF * 50


def test_nan_shows_as_a_question_mark_without_colour():
    """NaN is grey in colour and '?' in the shade ramp; the scale comes from the finite values."""
    plane = np.ones((1, 4, 4))
    plane[0, :2, :2] = np.nan
    text = _render(plane, 40)
    assert "?" in text and "values 1 .. 1" in text


def test_a_signed_layer_has_a_scale_symmetric_about_zero():
    """The scale of a map with negative values runs -m..m, m the largest magnitude."""
    text = _render(np.array([[[-1.0, 4.0], [0.0, 2.0]]]), 80)
    assert "-4 [ .:-=+*#%@] 4" in text


def test_several_channels_go_side_by_side_and_many_are_elided_unless_full():
    """Small maps share lines; past MAX_CHANNELS a note says how many more; full shows them all."""
    layer = np.random.default_rng(0).standard_normal((MAX_CHANNELS + 4, 8, 8))
    text = _render(layer, 100, labels=tuple(f"k{i}" for i in range(MAX_CHANNELS + 4)))
    assert "channel 0: k0" in text and "channel 1: k1" in text.splitlines()[1]
    assert f"channel {MAX_CHANNELS - 1}: " in text and f"channel {MAX_CHANNELS}: " not in text
    assert "4 more channels" in text
    full = _render(layer, 100, full=True)
    assert f"channel {MAX_CHANNELS + 3}" in full and "more channels" not in full
    assert max(len(line) for line in full.splitlines()) <= 100


@pytest.mark.parametrize("count, width", [(10, 80), (200, 80), (100_000, 120)])
def test_a_vector_is_one_row_of_cells(count, width):
    """A (N,) output is one line of cells no wider than the terminal, then its indices."""
    values = np.linspace(-1, 1, count)
    out = _render(values, width).splitlines()
    assert len(out) == 1 + 2 + 2 and max(len(line) for line in out) <= width
    assert out[2].startswith("0") and out[2].rstrip().endswith(str(count - 1) if count > 10 else "9")


def test_short_vectors_name_each_cell():
    """Labels short enough to fit are written under their cells."""
    out = _render(np.arange(3.0), 80, labels=("cat", "dog", "ox")).splitlines()
    assert out[2].split() == ["cat", "dog", "ox"]


def test_a_big_map_is_drawn_quickly_in_colour():
    """A 1024x1024 map at width 200 renders in colour (vectorised: this runs in well under a second)."""
    text = _render(_smooth(1024, 1024), 200, "truecolor")
    assert sum(UPPER_HALF in line for line in text.splitlines()) == math.ceil(120 / 2)


def test_a_tiny_map_blown_up_shows_only_its_own_shades_without_colour():
    """Rows blown up 9x straddle lines; each line shows its upper row, never a made-up in-between shade."""
    plane = np.repeat(np.arange(5.0)[:, None], 5, axis=1)[None]  # (1, 5, 5) rows of 0, 1, 2, 3, 4
    out = _render(plane, 80).splitlines()
    map_lines = out[2:2 + 23]
    assert set("".join(map_lines)) <= set(" :+#@")  # entries 0, 64, 128, 192, 255 of the ramp
    assert [line[:1] or " " for line in map_lines[::5]] == [" ", ":", "+", "#", "@"]


def _render_input(output, labels, width=80, color_system=None):
    step = Step(index=0, name="input", type="input", output=np.asarray(output, dtype=np.float32), labels=labels)
    console = Console(file=io.StringIO(), color_system=color_system, width=width,
                      force_terminal=color_system is not None)
    console.print(heatmap_view(step, width, color_system))
    return console.file.getvalue()


def test_an_rgb_input_is_drawn_in_its_own_colours():
    """A 2x2 RGB input: half blocks whose colours are its pixels' own, the top row's lines above the bottom
    row's, in one drawing, not three channels on a heat scale; the caption says so."""
    output = np.array([(200, 30, 90), (10, 120, 250), (250, 250, 5), (60, 60, 60)], np.float32).T.reshape(3, 2, 2)
    text = _render_input(output, ("R", "G", "B"), color_system="truecolor")
    codes = [f"\x1b[38;2;{c};48;2;{c}m" for c in ("200;30;90", "10;120;250", "250;250;5", "60;60;60")]
    assert all(code in text for code in codes)
    assert text.index(codes[0]) < text.index(codes[1]) < text.index(codes[2]) < text.index(codes[3])
    plain = ANSI.sub("", text)
    assert "channel" not in plain and "drawn as the picture: RGB 0..255" in plain
    table = {f"2;{r};{g};{b}m" for r, g, b in colors.SEQUENTIAL.tolist()}
    assert not any(code in text for code in table)


def test_a_gray_input_is_drawn_in_grays_and_plain_as_shades_of_its_lightness():
    """A gray 0..1 input: 0 black, 1 white, 0.5 gray 128 (round(127.5)), with a black-to-white bar; without
    colour, shades of the same ramp as maps: 0 blank, 1 '@'."""
    output = np.array([[[0.0, 1.0], [0.5, 0.5]]])
    text = _render_input(output, ("gray",), color_system="truecolor")
    for gray in (0, 255, 128):
        assert f"\x1b[38;2;{gray};{gray};{gray};48;2;{gray};{gray};{gray}m" in text
    assert "drawn as the picture: gray 0..1" in ANSI.sub("", text)
    plain = _render_input(np.array([[[0.0, 1.0]]]), ("gray",))
    lines = plain.splitlines()
    assert "\x1b" not in plain and lines[1].startswith(" ") and lines[1].rstrip().endswith("@")


def test_a_normalised_input_is_drawn_on_the_heat_scale_with_the_reason():
    """An RGB input normalised below 0 is three channels on the blue-white-red scale, and says why."""
    text = _render_input(np.linspace(-2, 2, 12).reshape(3, 2, 2), ("R", "G", "B"))
    assert "channel 0: R" in text and "(0 in the middle)" in text
    assert "normalised (values below 0): drawn on the heat scale" in " ".join(text.split())


def test_long_channel_names_that_share_a_beginning_keep_what_tells_them_apart():
    """Three 14x14 maps side by side at 60 columns: gabor:theta=0/45/90 cut at the end all read "ga…";
    their shared beginning goes instead, and each title keeps its angle."""
    output = np.random.default_rng(0).random((3, 14, 14))
    titles = [line for line in _render(output, 60, labels=("gabor:theta=0", "gabor:theta=45", "gabor:theta=90"))
              .splitlines() if "channel 0" in line]
    assert titles and all(f"channel {c}: …{angle}" in titles[0] for c, angle in enumerate((0, 45, 90))), titles
