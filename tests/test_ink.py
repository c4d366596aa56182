"""Fitting a picture's ink (cnncli/io/ink.py, the input rule "fit": "ink") on hand-made pictures:
squares and rectangles whose fitted 8x8 is worked out by hand (exact, or 1e-6 for float32 sums),
properties that hold for any picture (centre of mass at the centre, ink conserved by the area
reduction), and connected components against scipy.ndimage.label (the same partition)."""

import json

import numpy as np
import pytest
from conftest import ROOT, assert_array
from PIL import Image

from cnncli import api
from cnncli.cli import main
from cnncli.io.ink import area_matrix, fit_ink, label_components

DIGIT_3 = ROOT / "sample_images" / "digit_3.png"


def page(height, width, paper=1.0):
    return np.full((height, width), paper, dtype=np.float32)


def centre_of_mass(array):
    """(x, y) of a (H, W) array, in pixel-edge units: the centre of an 8x8 frame is (4, 4)."""
    rows, cols = np.indices(array.shape) + 0.5
    return float((array * cols).sum() / array.sum()), float((array * rows).sum() / array.sum())


# -- hand-worked pictures -------------------------------------------------------------------------------
def test_a_centred_square_fills_the_frame():
    """A 10x10 black square on a 40x40 white page: box 10x10 at (15, 15), scale 0.8, all 8x8 full ink."""
    picture = page(40, 40)
    picture[15:25, 15:25] = 0
    fitted = fit_ink(picture, (8, 8))
    assert fitted.dark_ink and fitted.polarity_from == "border"
    assert fitted.box == (15, 15, 10, 10) and fitted.scale == pytest.approx(0.8) and fitted.shift == (0.0, 0.0)
    assert_array(fitted.array, np.ones((8, 8)), dtype=np.float32, rtol=0, atol=1e-6)
    assert fitted.warnings == () and fitted.blobs == 1


@pytest.mark.parametrize("top, left", [(2, 3), (37, 36), (20, 10)])
def test_a_rectangle_anywhere_keeps_its_aspect_ratio_centred(top, left):
    """A 20-high, 10-wide rectangle anywhere on a 60x50 page: scale 0.4, 8 rows by 4 columns of ink in
    columns 2 to 5 (2 of margin each side), whatever its place."""
    picture = page(60, 50)
    picture[top:top + 20, left:left + 10] = 0
    fitted = fit_ink(picture, (8, 8))
    expected = np.zeros((8, 8), np.float32)
    expected[:, 2:6] = 1
    assert fitted.box == (left, top, 10, 20) and fitted.scale == pytest.approx(0.4)
    assert_array(fitted.array, expected, rtol=0, atol=1e-6)


def test_light_ink_on_dark_paper_is_found_from_the_border():
    """The same square, white on black: the border says light ink, and the fitted 8x8 is the same."""
    picture = page(40, 40, paper=0.0)
    picture[15:25, 15:25] = 1
    fitted = fit_ink(picture, (8, 8))
    assert not fitted.dark_ink and fitted.notes[0] == "light ink on dark paper (found from the border, 0.00)"
    assert_array(fitted.array, np.ones((8, 8)), rtol=0, atol=1e-6)


def test_grey_paper_and_grey_ink_become_0_and_1():
    """Ink at 0.3 on paper at 0.7 (a 20x10 rectangle): paper 0, ink 1, as on white paper with black ink."""
    picture = page(60, 50, paper=0.7)
    picture[20:40, 20:30] = 0.3
    fitted = fit_ink(picture, (8, 8))
    assert fitted.paper == pytest.approx(0.7) and fitted.ink == pytest.approx(0.3)
    assert_array(fitted.array[:, 2:6], np.ones((8, 4)), rtol=0, atol=1e-6)
    assert_array(fitted.array[:, [0, 1, 6, 7]], np.zeros((8, 4)), rtol=0, atol=1e-6)


def test_the_centre_of_mass_goes_to_the_centre():
    """An L-like shape 16 high and 8 wide (left half full height, right half only its bottom 4 rows):
    centre of mass 2.8 px from its left against a box centre of 4, so it moves 1.2 x 0.5 = 0.6 output
    px right of box-centring; the fitted ink's centre of mass is then the frame's centre (4, 4 across;
    down, the box fills the frame and cannot move), and its mass is the shape's area x 0.5^2 = 20."""
    picture = page(40, 40)
    picture[10:26, 12:16] = 0  # left half: 16 rows x 4 columns
    picture[22:26, 16:20] = 0  # right half: the bottom 4 rows
    fitted = fit_ink(picture, (8, 8))
    assert fitted.box == (12, 10, 8, 16) and fitted.scale == pytest.approx(0.5)
    assert fitted.shift == pytest.approx((0.6, 0.0), abs=1e-6)
    assert centre_of_mass(fitted.array)[0] == pytest.approx(4.0, abs=1e-5)
    assert fitted.array.sum() == pytest.approx(20.0, abs=1e-4)  # no cell was darkened: column 3 is full ink
    assert fitted.array.max() == pytest.approx(1.0)


def test_a_thin_stroke_is_darkened_to_full_ink():
    """A 1-pixel line 40 long, scaled by 0.2: the frame's cells are 5 pixels wide, from 10.5 (its centre
    of mass, 30.5, less 20), so the line's pixel [30, 31) is half in column 3 and half in column 4: 0.1
    ink each. The darkest cell becomes 1 (x10), as every training digit has a cell of full ink."""
    picture = page(60, 60)
    picture[10:50, 30] = 0
    fitted = fit_ink(picture, (8, 8))
    expected = np.zeros((8, 8), np.float32)
    expected[:, 3:5] = 1
    assert_array(fitted.array, expected, rtol=0, atol=1e-5)
    assert fitted.notes[-1] == "ink darkened x10 (its darkest cell to 1)"


def test_a_blown_up_picture_fits_as_the_small_one():
    """digit_3.png (8x8) and the same drawn 4x bigger (each pixel a 4x4 block) give the same 8x8:
    the box, the centre of mass and the areas all scale by 4. 1e-6."""
    small = np.asarray(Image.open(DIGIT_3), dtype=np.float32) / 255
    big = np.kron(small, np.ones((4, 4), np.float32))
    assert_array(fit_ink(big, (8, 8)).array, fit_ink(small, (8, 8)).array, rtol=0, atol=1e-6)


def test_raw_values_fit_as_unit_ones():
    """A 0..255 picture with full_scale 255 fits as the same picture in 0..1."""
    picture = np.asarray(Image.open(DIGIT_3), dtype=np.float32)
    assert_array(fit_ink(picture, (8, 8), full_scale=255).array, fit_ink(picture / 255, (8, 8)).array,
                 rtol=0, atol=1e-6)


def test_a_frame_of_another_shape_keeps_the_aspect_ratio():
    """A 10x10 square into a 4-high, 8-wide frame: scale 0.4, a 4x4 block of ink in columns 2 to 5."""
    picture = page(30, 30)
    picture[10:20, 10:20] = 0
    expected = np.zeros((4, 8), np.float32)
    expected[:, 2:6] = 1
    assert_array(fit_ink(picture, (4, 8)).array, expected, rtol=0, atol=1e-6)


# -- what the notes and warnings say ------------------------------------------------------------------
def test_an_empty_page_has_no_ink():
    """A blank page, and one of noise only (5 grey levels): zeros, no box, one warning that no ink was found."""
    noise = np.clip(0.9 + np.random.default_rng(0).normal(0, 5 / 255, (50, 40)), 0, 1).astype(np.float32)
    for picture in (page(50, 40, 0.8), noise):
        fitted = fit_ink(picture, (8, 8))
        assert fitted.box is None
        assert_array(fitted.array, np.zeros((8, 8)), rtol=0, atol=0)
        assert len(fitted.warnings) == 1 and fitted.warnings[0].startswith("no ink found: nothing stands out")


def test_two_blobs_are_both_fitted_with_a_warning():
    """Two squares far apart: both in the box (24 wide, 10 high), and a warning that names 2 blobs."""
    picture = page(40, 50)
    picture[10:20, 5:15] = 0
    picture[10:20, 19:29] = 0
    fitted = fit_ink(picture, (8, 8))
    assert fitted.blobs == 2 and fitted.box == (5, 10, 24, 10)
    assert fitted.warnings == ("2 separate blobs of ink; the model reads one symbol, so the answer may be wrong",)


def test_a_speck_is_left_out():
    """A square and a 1-pixel speck of dust far from it: the speck holds 1% of the ink, so the box is the
    square's and the 8x8 is the square alone's; no warning."""
    picture = page(60, 60)
    picture[15:25, 15:25] = 0
    alone = fit_ink(picture, (8, 8))
    picture[55, 55] = 0
    fitted = fit_ink(picture, (8, 8))
    assert fitted.box == (15, 15, 10, 10) and fitted.warnings == () and fitted.blobs == 1
    assert_array(fitted.array, alone.array, rtol=0, atol=0)


def test_a_speck_alone_is_nearly_blank():
    """An 8x8 dot on a 200x200 page: ink 4% of the page's side, under 5%: a warning says it is nearly blank.
    A 2x2 dot (under 0.1% of the pixels, the share taken as the ink's level) is no ink at all."""
    picture = page(200, 200)
    picture[100:108, 50:58] = 0
    (warning,) = fit_ink(picture, (8, 8)).warnings
    assert warning.startswith("nearly blank: the only ink is a speck (8x8 px in a 200x200 picture)")
    picture = page(200, 200)
    picture[100:102, 50:52] = 0
    (warning,) = fit_ink(picture, (8, 8)).warnings
    assert warning.startswith("no ink found")


def test_ink_given_against_the_border_is_warned_about():
    """Told the ink is light (invert no) on a white page with black ink: nothing is lighter than the
    paper, so no ink is found, and the one warning says the border looks like light paper. On grey paper
    (0.5) with a black square (0) and a lighter one (0.8), the black one is the border's ink, and light
    ink is found, with a warning."""
    picture = page(40, 40)
    picture[15:25, 15:25] = 0
    fitted = fit_ink(picture, (8, 8), dark_ink=False)
    assert fitted.polarity_from == "given" and not fitted.dark_ink and fitted.box is None
    assert fitted.warnings == ("no light ink found, as given, but its border looks like light paper (1.00), "
                               "with dark ink; the answer means nothing",)
    picture = page(40, 40, paper=0.5)
    picture[5:15, 5:15] = 0
    picture[20:30, 20:30] = 0.8
    fitted = fit_ink(picture, (8, 8), dark_ink=False)
    assert fitted.box == (20, 20, 10, 10)
    assert fitted.warnings == ("its border looks like grey paper with dark ink, but light ink was taken (as "
                               "given); the answer may be wrong",)


def test_the_notes_say_each_step_with_its_numbers():
    """Polarity and how it was found, paper and ink levels, the box, the scale, the centre shift, the reduction."""
    picture = page(40, 40)
    picture[10:30, 15:25] = 0.2
    assert fit_ink(picture, (8, 8)).notes == (
        "dark ink on light paper (found from the border, 1.00)", "paper 1.00 -> 0, ink 0.20 -> 1",
        "ink box 10x20 at (15, 10)", "scaled x0.4, aspect ratio kept (longer side 20 -> 8 px)",
        "centred by its centre of mass (+0.00 px right, +0.00 px down of the box's centre)",
        "reduced to 8x8 by area averaging")


# -- the pieces -----------------------------------------------------------------------------------------
def test_area_matrix_by_hand():
    """Cells of 1.5 pixels from 0.5 over 4 pixels: [1/3, 2/3, 0, 0] and [0, 0, 2/3, 1/3]; a cell past the
    picture's edge averages paper (0) in."""
    assert_array(area_matrix(0.5, 1.5, 2, 4), [[1 / 3, 2 / 3, 0, 0], [0, 0, 2 / 3, 1 / 3]], rtol=0, atol=1e-7)
    assert_array(area_matrix(-1.0, 2.0, 1, 3), [[0.5, 0, 0]], rtol=0, atol=0)


@pytest.mark.parametrize("seed, density", [(0, 0.3), (1, 0.5), (2, 0.6), (3, 0.05)])
def test_components_are_scipys(seed, density):
    """Reference: scipy.ndimage.label with 8-connectivity on random masks: the same partition of the pixels."""
    from scipy import ndimage

    mask = np.random.default_rng(seed).random((37, 53)) < density
    ours = label_components(mask)
    theirs, count = ndimage.label(mask, structure=np.ones((3, 3)))
    assert len(np.unique(ours[mask])) == count
    pairs = set(zip(ours[mask].tolist(), theirs[mask].tolist()))
    assert len(pairs) == count  # one of theirs for each of ours, and back
    assert np.all(ours[~mask] == mask.size)


def test_a_long_winding_component_is_one():
    """A snake over a 64x64 grid (one path through every other row): one component, in few rounds."""
    mask = np.zeros((64, 64), bool)
    mask[::2] = True
    mask[1::4, -1] = True
    mask[3::4, 0] = True
    labels = label_components(mask)
    assert np.all(labels[mask] == 0)


# -- through the model -----------------------------------------------------------------------------------
def test_the_digits_model_reads_a_big_white_on_black_digit(tmp_path):
    """The issue's case: a big light 3 on black, drawn at 8 times the data set's size, anywhere on a larger
    page, reads as 3; the header says the ink was light on dark paper."""
    small = 1 - np.asarray(Image.open(DIGIT_3), dtype=np.float32) / 255  # ink high: light on dark
    picture = np.zeros((120, 90), np.float32)
    picture[40:104, 10:74] = np.kron(small, np.ones((8, 8), np.float32))
    trace = api.load_model("digits").run(Image.fromarray((picture * 255).astype(np.uint8)))
    assert trace.predictions[0].label == "3" and trace.warnings == ()
    assert any(note.startswith("light ink on dark paper (found from the border") for note in trace.image.notes)


def test_invert_yes_against_the_border_is_one_note(tmp_path, capsys):
    """cnn run with --invert yes on white ink on black: the run goes on, with a note on stderr."""
    picture = np.zeros((40, 40), np.uint8)
    picture[10:30, 15:25] = 255
    path = tmp_path / "light.png"
    Image.fromarray(picture).save(path)
    assert main(["run", str(path), "--model", "digits", "--invert", "yes", "-f", "json", "--values", "none"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["model"]["input"]["invert"] is True
    assert err == (f"cnn: warning: {path}: no dark ink found, as given, but its border looks like dark paper "
                   "(0.00), with light ink; the answer means nothing\n")
