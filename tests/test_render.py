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
