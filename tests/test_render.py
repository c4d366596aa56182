"""cnncli.views.tables: tables fit the terminal, elide big maps with a note, and colour by value."""

import numpy as np
import pytest
from rich.console import Console

from cnncli.views import tables as render


def _text(renderable, width=80):
    console = Console(width=width, record=True, color_system=None)
    console.print(renderable)
    return console.export_text()


@pytest.mark.parametrize("shape", [(5, 5), (40, 300), (300, 40), (1000, 1000)])
@pytest.mark.parametrize("width", [40, 80, 132])
@pytest.mark.parametrize("scale", [9, 255, 1000])
def test_map_tables_fit_the_width(shape, width, scale):
    """Every line of a map's table fits the console width, and no number or label is cut short."""
    plane = np.round(np.random.default_rng(0).random(shape) * scale).astype(np.float32)
    text = _text(render.map_table(plane, "t", width, False, False, (0.0, float(scale))), width)
    lines = text.splitlines()
    assert max(len(line.rstrip()) for line in lines) <= width
    rule = next(i for i, line in enumerate(lines) if line.startswith("─"))
    caption = next(i for i, line in enumerate(lines) if line.startswith("min "))
    for line in lines[rule - 1:caption]:  # the header and every row
        for token in line.split():
            assert token in ("…", "⋮") or "…" not in token, f"cut short: {line!r}"
    row_labels = [line.split()[0] for line in lines[rule + 1:caption]]
    assert row_labels[0] == "0" and row_labels[-1] == str(shape[0] - 1)


def test_big_map_is_elided_with_a_note_and_full_shows_all():
    """A 100x100 map shows its first and last rows and says how much it shows; full shows everything."""
    plane = np.arange(10000, dtype=np.float32).reshape(100, 100)
    elided = _text(render.map_table(plane, "t", 80, False, False, (0.0, 9999.0)))
    assert "showing 15 of 100 rows" in elided and "--full" in elided
    assert " 0 " in elided and "9999" in elided and "5050" not in elided
    full = _text(render.map_table(plane, "t", 2000, True, False, (0.0, 9999.0)), 2000)
    assert "5050" in full and "showing" not in full


def test_number_format_shows_whole_numbers_plainly():
    """Integral maps print as integers, others with decimals fitted to their magnitude."""
    assert render.number_format(np.array([-6.0, 12.0]))(12.0) == "12"
    assert render.number_format(np.array([0.5, 0.25]))(0.25) == "0.250"
    assert render.number_format(np.array([150.5]))(150.5) == "150.5"
    assert render.number_format(np.array([1e-5]))(1e-5) == "1.00e-05"


def test_heat_styles_diverge_around_zero():
    """Signed maps: negative cells blue, positive red, zero white; unsigned maps go dark to bright."""
    assert render.heat_style(-1.0, (-1.0, 1.0), True) == "white on rgb(5,48,97)"
    assert render.heat_style(1.0, (-1.0, 1.0), True) == "white on rgb(103,0,31)"
    assert render.heat_style(0.0, (-1.0, 1.0), True) == "black on rgb(255,255,255)"
    assert render.heat_style(0.0, (0.0, 5.0), False).startswith("white on")
    assert render.heat_style(5.0, (0.0, 5.0), False).startswith("black on")


def test_basic_palette_keeps_the_sign_visible():
    """On 8/16-colour terminals negative and positive cells get different named colours, zero none."""
    styles = [render.heat_style(v, (-6.0, 6.0), True, "basic") for v in (-6.0, -2.0, 0.0, 2.0, 6.0)]
    assert styles == ["white on blue", "black on cyan", "", "black on yellow", "white on red"]
    assert render.heat_style(0.0, (0.0, 9.0), False, "basic") == ""
    assert render.heat_style(9.0, (0.0, 9.0), False, "basic") == "black on yellow"


def _map_step(output, labels=()):
    from cnncli.engine.graph import Step

    return Step(index=1, name="conv1", type="conv2d", output=np.asarray(output, dtype=np.float32), labels=labels)


def test_a_layer_has_one_number_format_for_all_its_channels():
    """A channel of values below 1 (3 decimals alone) takes the layer's 1 decimal, set by 150.5 in the
    other channel: 0.75 shows as 0.8, never 0.750."""
    output = np.array([[[150.5, 120.0]], [[0.75, 0.5]]])
    text = _text(render.step_view(_map_step(output), 80, palette="none"))
    assert "150.5" in text and "0.8" in text and "0.5" in text
    assert "0.750" not in text and "0.500" not in text


def test_channels_go_side_by_side_when_the_width_holds_them():
    """Four 3x3 channels: at 120 columns their headings share lines (as many as fit, a blank line between
    rows of tables), each statistic whole; at 40 (two blocks of 24 and a gap need 51) each table stands
    alone; no line passes the width."""
    output = np.arange(36, dtype=np.float32).reshape(4, 3, 3) - 10
    wide = _text(render.step_view(_map_step(output, ("a", "b", "c", "d")), 120, palette="none"), 120)
    lines = wide.splitlines()
    heading = next(line for line in lines if "channel 0: a" in line)
    assert "channel 1: b" in heading and "channel 2: c" in heading and "channel 3: d" in heading
    assert max(len(line.rstrip()) for line in lines) <= 120
    for word in ("min -10", "max -2", "mean -6", "zeros 0%"):  # channel 0's statistics, no pair split
        assert word in wide
    narrow = _text(render.step_view(_map_step(output, ("a", "b", "c", "d")), 40, palette="none"), 40)
    headings = [line for line in narrow.splitlines() if line.startswith("channel ")]
    assert headings == ["channel 0: a", "channel 1: b", "channel 2: c", "channel 3: d"]
    assert max(len(line.rstrip()) for line in narrow.splitlines()) <= 40


def test_side_by_side_tables_wrap_into_rows_of_as_many_as_fit():
    """Eight 2x2 channels of one-digit numbers (tables 6 wide) at 80 columns: blocks of MIN_BLOCK (24)
    columns, three to a row (3 x 24 + 2 gaps of 3 = 78 <= 80 < 105), so three rows of headings with
    blank lines between."""
    output = np.arange(32, dtype=np.float32).reshape(8, 2, 2) % 10
    text = _text(render.step_view(_map_step(output), 80, palette="none"), 80)
    lines = text.splitlines()
    headings = [line.split() for line in lines if line.startswith("channel")]
    assert headings == [["channel", "0", "channel", "1", "channel", "2"], ["channel", "3", "channel", "4", "channel", "5"],
                        ["channel", "6", "channel", "7"]]
    assert lines[lines.index(next(line for line in lines if line.startswith("channel 3"))) - 1] == ""
    assert "min 0  max 3  mean 1.5" in text and "std 1.118  zeros 25%" in text  # whole pairs, packed to the width


@pytest.mark.parametrize("shape, width", [((3, 3), 80), ((20, 30), 80), ((12, 200), 120), ((200, 5), 60)])
@pytest.mark.parametrize("scale", [1.0, 9.0, -1000.0])
def test_the_width_a_table_is_laid_out_by_is_the_width_rich_draws_it(shape, width, scale):
    """_map_parts' own count of a table's width (row labels, each column and its space) equals Rich's
    measure of the table, NaN and infinities included, elided or not."""
    plane = np.random.default_rng(1).random(shape) * scale
    plane[0, 0], plane[-1, -1] = np.nan, -np.inf
    heading, table, _, counted = render._map_parts(plane, "t", width, False, scale < 0, (-1.0, 1.0), "none", None, None)
    assert counted == render.natural_width(table)
