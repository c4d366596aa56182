"""cnncli.views.pictures: colour tables, colouring planes, montages of a layer, and PNG files."""

import io
import json
import math
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
from conftest import ROOT
from PIL import Image

from cnncli.views import colors, pictures
from cnncli.views import steps as step_views
from cnncli.errors import OutputError
from cnncli.io.saving import save_inspection
from cnncli.io.images import LoadedImage
from cnncli.engine.graph import Step

WHITE = [255, 255, 255]


def _luma(rgb):
    rgb = np.asarray(rgb, dtype=np.float64)
    return 0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]


def test_sequential_table_runs_dark_to_bright():
    """256 uint8 colours from viridis' dark purple to its yellow, brightening all the way."""
    table = colors.SEQUENTIAL
    assert table.shape == (256, 3) and table.dtype == np.uint8
    assert table[0].tolist() == [68, 1, 84] and table[-1].tolist() == [253, 231, 37]
    assert np.all(np.diff(_luma(table)) >= -1.0)  # monotone within rounding


def test_diverging_table_is_blue_white_red_with_white_in_the_middle():
    """Dark blue at the bottom, dark red at the top, pure white at both middle entries."""
    table = colors.DIVERGING
    assert table.shape == (256, 3) and table.dtype == np.uint8
    assert table[0].tolist() == [5, 48, 97] and table[-1].tolist() == [103, 0, 31]
    assert table[127].tolist() == WHITE and table[128].tolist() == WHITE
    assert table[0, 2] > table[0, 0] and table[-1, 0] > table[-1, 2]
    # Symmetric in lightness: a value and its negative look equally strong.
    assert np.allclose(_luma(table[:128]), _luma(table[128:][::-1]), atol=25)


def test_colorize_matches_a_hand_worked_sequential_case():
    """Over 0..1: 0 -> entry 0, 0.25 -> 64, 0.5 -> 128, 1 -> 255 (floor(256 t), clipped)."""
    plane = np.array([[0.0, 0.5], [1.0, 0.25]], dtype=np.float32)
    expected = colors.SEQUENTIAL[[[0, 128], [255, 64]]]
    rgb = colors.colorize(plane, 0.0, 1.0, False)
    assert rgb.shape == (2, 2, 3) and rgb.dtype == np.uint8
    assert np.array_equal(rgb, expected)


def test_colorize_diverging_is_symmetric_about_zero():
    """vmin -2, vmax 1 becomes -2..2: -2 is the blue end, 0 white, 1 entry 192, 2 the red end."""
    plane = np.array([-2.0, 0.0, 1.0, 2.0])
    assert colors.color_indices(plane, -2.0, 1.0, True).tolist() == [0, 128, 192, 255]
    rgb = colors.colorize(plane, -2.0, 1.0, True)
    assert rgb[1].tolist() == WHITE
    assert np.array_equal(rgb[0], colors.DIVERGING[0]) and np.array_equal(rgb[3], colors.DIVERGING[255])


def test_colorize_handles_every_value_of_a_big_plane_like_the_small_case():
    """Chunked work gives the same answer as one formula over the whole plane."""
    plane = np.random.default_rng(0).standard_normal((1500, 1000)).astype(np.float32)
    low, high = float(plane.min()), float(plane.max())
    expected = np.clip(np.floor((plane.astype(np.float64) - low) / (high - low) * 256), 0, 255)
    assert np.array_equal(colors.color_indices(plane, low, high, False), expected)


@pytest.mark.parametrize("value, diverging, entry", [(5.0, False, 0), (0.0, True, 128), (-3.0, True, 0)])
def test_a_constant_map_is_one_colour_without_warnings(value, diverging, entry):
    """A constant map (vmin == vmax) is one colour, without dividing by zero; all zeros is white."""
    plane = np.full((3, 4), value)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        index = colors.color_indices(plane, value, value, diverging)
        rgb = colors.colorize(plane, value, value, diverging)
    assert np.all(index == entry)
    assert np.all(rgb == rgb[0, 0]) and (value != 0 or rgb[0, 0].tolist() == WHITE)


def test_nan_is_grey_and_infinities_clip_to_the_ends():
    """NaN takes a grey in neither table; -inf and +inf take the two ends."""
    plane = np.array([np.nan, -np.inf, np.inf, 0.5])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for diverging in (False, True):
            rgb = colors.colorize(plane, 0.0, 1.0, diverging)
            table = colors.DIVERGING if diverging else colors.SEQUENTIAL
            assert rgb[0].tolist() == list(colors.NAN_COLOR)
            assert np.array_equal(rgb[1], table[0]) and np.array_equal(rgb[2], table[255])
    assert not np.any(np.all(colors.SEQUENTIAL == colors.NAN_COLOR, axis=1))
    assert not np.any(np.all(colors.DIVERGING == colors.NAN_COLOR, axis=1))


def test_value_range_ignores_non_finite_values():
    """The range is over finite values; any negative value asks for the diverging scale."""
    assert colors.value_range(np.array([1.0, np.nan, 3.0, np.inf])) == (1.0, 3.0, False)
    assert colors.value_range(np.array([-1.0, 2.0])) == (-1.0, 2.0, True)
    assert colors.value_range(np.array([np.nan])) == (0.0, 0.0, False)


def _area_oracle(plane, height, width):
    """A loop over output cells: the mean of the block of input pixels each covers."""
    rows, cols = plane.shape
    out = np.empty((height, width))
    for i in range(height):
        for j in range(width):
            r0, r1 = i * rows // height, (i + 1) * rows // height
            c0, c1 = j * cols // width, (j + 1) * cols // width
            out[i, j] = plane[r0:r1, c0:c1].mean()
    return out


@pytest.mark.parametrize("shape, size", [((7, 5), (3, 2)), ((8, 8), (4, 4)), ((10, 3), (10, 1)), ((5, 9), (1, 1))])
def test_area_resize_averages_blocks(shape, size):
    """Each output cell is the mean of the input block it covers (checked against a loop)."""
    plane = np.random.default_rng(1).random(shape).astype(np.float32)
    np.testing.assert_allclose(pictures.area_resize(plane, *size), _area_oracle(plane, *size), rtol=1e-6)


def _layer(channels, side, seed=0):
    return np.random.default_rng(seed).standard_normal((channels, side, side)).astype(np.float32)


@pytest.mark.parametrize("channels, side, factor", [(1, 5, 38), (3, 8, 24), (64, 8, 8), (4, 28, 6)])  # 64: MONTAGE_PIXELS
def test_montage_holds_every_tile_blown_up_plus_labels_and_scale(channels, side, factor):
    """A grid of ceil(sqrt(C)) columns of tiles blown up by a whole factor, with room for text."""
    image = pictures.layer_montage(_layer(channels, side), [f"k{i}" for i in range(channels)], "conv1 (conv2d)")
    cols = math.ceil(math.sqrt(channels))
    rows = math.ceil(channels / cols)
    tile = side * factor
    assert image.mode == "RGB"
    assert image.width >= cols * tile + 2 * pictures.MARGIN
    assert image.height > rows * tile + pictures.BAR_HEIGHT + 2 * pictures.MARGIN + 3 * 12  # title, labels, text
    assert max(image.size) <= pictures.MAX_SIDE


def test_labels_and_title_are_drawn():
    """Changing a channel's label or the title changes the picture; a title adds height."""
    layer = _layer(2, 5)
    base = np.asarray(pictures.layer_montage(layer, ["sobel_x", "sobel_y"], "t"))
    relabelled = np.asarray(pictures.layer_montage(layer, ["blur", "sobel_y"], "t"))
    untitled = np.asarray(pictures.layer_montage(layer, ["sobel_x", "sobel_y"], ""))
    assert base.shape == relabelled.shape and not np.array_equal(base, relabelled)
    assert base.shape[0] > untitled.shape[0]
    ink = base[:, :, :].min(axis=2) < 100  # dark pixels: text (the tiles are blue, red or white)
    assert ink[: pictures.MARGIN + 40].any()


def test_a_vector_is_a_strip_of_cells():
    """A (N,) output gives one row of N cells of VECTOR_CELL pixels, with text beneath."""
    image = pictures.layer_montage(np.linspace(0, 1, 10), [str(i) for i in range(10)], "softmax")
    assert image.width >= 10 * pictures.VECTOR_CELL and image.height < 400
    long = pictures.layer_montage(np.arange(1000.0), (), "dense")
    assert long.height > 20 * 10 and max(long.size) <= pictures.MAX_SIDE


def test_a_huge_layer_is_capped_at_4096_pixels():
    """16 channels of 2048x2048 are averaged down so that the montage is at most 4096 each way."""
    plane = np.random.default_rng(2).random((1, 2048, 2048), dtype=np.float32)
    layer = np.broadcast_to(plane, (16, 2048, 2048))  # 16 channels without 256 MB of memory
    image = pictures.layer_montage(layer, (), "big")
    assert max(image.size) <= 4096 and min(image.size) > 3000


@pytest.mark.parametrize("output", [np.zeros((1, 1, 3000)), np.zeros((5000, 3, 3)), np.arange(3_000_000.0),
                                    np.zeros(0), np.full((2, 3, 3), np.nan)],
                         ids=["line", "many", "long", "empty", "nan"])
def test_awkward_shapes_stay_within_the_cap(output):
    """Thin, crowded, very long, empty and all-NaN outputs all give a picture within the cap."""
    image = pictures.layer_montage(output, (), "x")
    assert image.mode == "RGB" and max(image.size) <= pictures.MAX_SIDE


def test_png_bytes_open_as_rgb_of_the_same_size():
    """The PNG bytes decode with Pillow to the same RGB picture."""
    image = pictures.layer_montage(_layer(3, 8), ("a", "b", "c"), "t")
    data = pictures.png_bytes(image)
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    decoded = Image.open(io.BytesIO(data))
    assert decoded.mode == "RGB" and decoded.size == image.size
    assert np.array_equal(np.asarray(decoded), np.asarray(image))


def test_save_png_is_atomic_named_png_and_refuses_to_overwrite(tmp_path):
    """save_png writes a .png, refuses other names, and replaces a file only with force."""
    image = pictures.layer_montage(_layer(1, 5), (), "t")
    target = tmp_path / "x.png"
    pictures.save_png(target, image)
    assert Image.open(target).size == image.size
    with pytest.raises(OutputError, match="already exists"):
        pictures.save_png(target, image)
    pictures.save_png(target, image, force=True)
    with pytest.raises(OutputError, match="ending in .png"):
        pictures.save_png(tmp_path / "x.jpg", image)
    assert sorted(os.listdir(tmp_path)) == ["x.png"]


def test_step_picture_is_titled_with_the_layer():
    """A step's caption names index, layer, type and shape."""
    step = Step(index=3, name="relu1", type="relu", output=np.ones((2, 4, 4), np.float32))
    assert pictures.step_caption(step) == "layer 3: relu1 (relu) -> 2x4x4"
    assert pictures.step_picture(step).mode == "RGB"


def _steps():
    rng = np.random.default_rng(3)
    return [Step(index=0, name="input", type="input", output=rng.random((1, 6, 6), dtype=np.float32), labels=("gray",)),
            Step(index=1, name="conv1", type="conv2d", output=rng.standard_normal((2, 4, 4)).astype(np.float32),
                 labels=("sobel_x", "sobel_y")),
            Step(index=2, name="dense1", type="dense", output=rng.standard_normal(3).astype(np.float32))]


def _image():
    return LoadedImage(array=np.zeros((1, 6, 6), np.float32), source="x.png", format="PNG", mode="L",
                       channel_names=("gray",), notes=())


def test_save_inspection_writes_a_picture_beside_each_array(tmp_path):
    """Each layer gets NN_name.png beside NN_name.npy, listed as "picture"; no temporary file is left."""
    folder = tmp_path / "acts"
    manifest = save_inspection(folder, _image(), _steps(), picture=pictures.step_pngs(_steps()))
    assert sorted(os.listdir(folder)) == ["00_input.npy", "00_input.png", "01_conv1.npy", "01_conv1.png",
                                          "02_dense1.npy", "02_dense1.png", "manifest.json"]
    on_disk = json.loads((folder / "manifest.json").read_text())
    assert on_disk == json.loads(json.dumps(manifest))
    for layer in on_disk["layers"]:
        assert layer["picture"] == layer["file"][:-4] + ".png"
        assert Image.open(folder / layer["picture"]).mode == "RGB"


def test_save_inspection_without_pictures_and_stale_pictures_removed(tmp_path):
    """Without a picture renderer only arrays are written; a forced save removes the pictures an old
    manifest listed."""
    folder = tmp_path / "acts"
    save_inspection(folder, _image(), _steps(), picture=pictures.step_pngs(_steps()))
    save_inspection(folder, _image(), _steps()[:2], force=True)
    assert sorted(os.listdir(folder)) == ["00_input.npy", "01_conv1.npy", "manifest.json"]
    assert "picture" not in json.loads((folder / "manifest.json").read_text())["layers"][0]


def test_a_failed_picture_leaves_nothing(tmp_path):
    """A failure while drawing the second layer's picture leaves no folder and no temporary file."""
    calls = []

    def failing(step):
        if calls:
            raise OSError(28, "No space left on device")
        calls.append(step)
        return pictures.layer_montage(step.output, (), "")

    with pytest.raises(OutputError, match="No space left"):
        save_inspection(tmp_path / "acts", _image(), _steps(), picture=lambda step: pictures.png_bytes(failing(step)))
    assert os.listdir(tmp_path) == []


def test_importing_pictures_loads_neither_pillow_nor_the_cli_libraries():
    """pictures imports Pillow only to draw, and never Typer or Rich."""
    code = ("import sys, cnncli.views.pictures; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'PIL', 'typer', 'rich', 'click'}))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert result.stdout.strip() == "[]"


def _vector_steps(*layers):
    """Steps of a chain from (name, type, size) triples, each reading the one before, after an 8x8 input."""
    steps = [Step(index=0, name="input", type="input", output=np.zeros((1, 8, 8), np.float32), labels=("gray",))]
    for index, (name, kind, size) in enumerate(layers, start=1):
        steps.append(Step(index=index, name=name, type=kind, output=np.zeros(size, np.float32),
                          inputs=(steps[-1].name,)))
    return steps


def test_class_labels_go_on_the_scores_and_the_dense_layer_that_made_them():
    """The labels name softmax, dropout and the dense layer before them; not an earlier dense layer of
    the same size, nor one of another size, nor the input; steps with labels of their own keep them."""
    steps = _vector_steps(("fc1", "dense", 3), ("fc2", "dense", 3), ("drop", "dropout", 3), ("softmax", "softmax", 3))
    labelled = step_views.with_class_labels(steps, ("cat", "dog", "ox"))
    assert [step.labels for step in labelled] == [("gray",), (), ("cat", "dog", "ox"), ("cat", "dog", "ox"),
                                                  ("cat", "dog", "ox")]
    assert step_views.with_class_labels(steps, ()) == steps
    other = _vector_steps(("fc1", "dense", 4), ("relu", "relu", 4), ("fc2", "dense", 3))
    assert [step.labels for step in step_views.with_class_labels(other, ("a", "b", "c"))][1:] == [(), (), ("a", "b", "c")]
    maps = _vector_steps(("conv", "conv2d", (3, 2, 2)))  # a map is no vector of classes
    assert step_views.with_class_labels(maps, ("a", "b", "c"))[1].labels == ()


def _input_step(output, labels):
    return Step(index=0, name="input", type="input", output=np.asarray(output, dtype=np.float32), labels=labels)


@pytest.mark.parametrize("values, labels, kind, top, why", [
    (np.full((1, 2, 2), 0.5), ("gray",), "gray", 1.0, ""),
    (np.full((1, 2, 2), 1.0), ("gray",), "gray", 1.0, ""),
    (np.full((3, 2, 2), 200.0), ("R", "G", "B"), "RGB", 255.0, ""),
    (np.full((3, 2, 2), -0.1), ("R", "G", "B"), "RGB", None, "normalised (values below 0)"),
    (np.full((1, 2, 2), 300.0), ("gray",), "gray", None, "values above 255"),
])
def test_an_input_image_is_drawn_as_the_picture_when_its_values_are_the_pictures(values, labels, kind, top, why):
    """Gray or RGB input of 0..1 has white at 1, of 0..255 at 255; normalised values are not a picture's."""
    picture = step_views.input_picture(_input_step(values, labels))
    assert (picture.kind, picture.top) == (kind, top) and why in picture.note
    assert ("drawn as the picture" in picture.note) == (top is not None)


@pytest.mark.parametrize("step", [
    Step(index=1, name="conv1", type="conv2d", output=np.zeros((1, 2, 2), np.float32), labels=("gray",)),
    _input_step(np.zeros((4, 2, 2)), ("R", "G", "B", "alpha")),  # alpha kept: four channels, no picture
    _input_step(np.zeros((2, 2, 2)), ("c0", "c1")),  # a .npy tensor
])
def test_other_maps_are_no_picture(step):
    assert step_views.input_picture(step) is None


def test_picture_pixels_are_the_values_scaled_to_0_255_by_hand():
    """round(255 v / top): 0 -> 0, 0.5 -> 128 (127.5 rounds to even), 1 -> 255, 0.2 -> 51; 0..255 as is."""
    gray = step_views.input_picture(_input_step(np.array([[[0.0, 0.5], [1.0, 0.2]]]), ("gray",)))
    assert gray.rgb(np.array([[[0.0, 0.5], [1.0, 0.2]]])).tolist() == [[[0] * 3, [128] * 3], [[255] * 3, [51] * 3]]
    rgb = np.array([[[200.0]], [[30.0]], [[90.0]]])  # (3, 1, 1)
    assert step_views.input_picture(_input_step(rgb, ("R", "G", "B"))).rgb(rgb).tolist() == [[[200, 30, 90]]]


def _framed_tile(image, side):
    """The side x side tile inside the first grey frame (pictures.FRAME) of a montage."""
    frame = np.all(image == pictures.FRAME, axis=-1)  # (H, W)
    top = int(np.flatnonzero(frame.sum(axis=1) >= side)[0]) + 1  # the frame's top line, then the tile
    left = int(np.flatnonzero(frame[top])[0]) + 1
    assert frame[top - 1, left - 1:left + side + 1].all() and frame[top + side, left - 1:left + side + 1].all()
    return image[top:top + side, left:left + side]


def test_an_rgb_input_montage_is_the_image_blown_up_with_no_scale_bar():
    """A 2x2 RGB input is one tile of its own four colours, each pixel a 96x96 block (TILE_TARGET 192 / 2),
    not three heat-coloured channels; and no colour bar is drawn (no viridis or blue-white-red entry)."""
    colours = [(200, 30, 90), (10, 120, 250), (250, 250, 5), (60, 60, 60)]
    output = np.array(colours, dtype=np.float32).T.reshape(3, 2, 2)  # pixel k at (k // 2, k % 2)
    image = np.asarray(pictures.step_picture(_input_step(output, ("R", "G", "B"))))
    expected = np.repeat(np.repeat(np.array(colours, np.uint8).reshape(2, 2, 3), 96, axis=0), 96, axis=1)
    assert np.array_equal(_framed_tile(image, 192), expected)
    scales = {tuple(c) for c in colors.SEQUENTIAL.tolist()} | {tuple(c) for c in colors.DIVERGING.tolist()}
    assert not scales & set(map(tuple, image.reshape(-1, 3).tolist())) - {(255, 255, 255)}


def test_a_gray_input_montage_is_gray_with_a_black_to_white_bar():
    """A gray 0..1 input is one tile of grays round(255 v) (0.25 -> 63.75 -> 64, 0.75 -> 191.25 -> 191),
    each pixel 96x96; every pixel of the picture, the bar's too, is a gray: no heat colour anywhere."""
    output = np.array([[[0.0, 0.25], [0.75, 1.0]]], dtype=np.float32)
    image = np.asarray(pictures.step_picture(_input_step(output, ("gray",))))
    expected = np.repeat(np.repeat(np.array([[0, 64], [191, 255]], np.uint8), 96, axis=0), 96, axis=1)
    assert np.array_equal(_framed_tile(image, 192), np.stack([expected] * 3, axis=-1))
    assert np.array_equal(image[..., 0], image[..., 1]) and np.array_equal(image[..., 1], image[..., 2])
    assert {(0, 0, 0), (255, 255, 255), (128, 128, 128)} <= set(map(tuple, image.reshape(-1, 3).tolist()))


def test_a_normalised_input_keeps_the_heat_scale_and_says_why():
    """An RGB input normalised below 0 is three channels on the diverging scale, as every map is."""
    output = np.linspace(-2, 2, 12, dtype=np.float32).reshape(3, 2, 2)
    step = _input_step(output, ("R", "G", "B"))
    assert np.array_equal(np.asarray(pictures.step_picture(step)),
                          np.asarray(pictures.layer_montage(output, ("R", "G", "B"), pictures.step_caption(step),
                                                            step_views.input_picture(step))))
    image = np.asarray(pictures.step_picture(step))
    assert {tuple(c) for c in colors.DIVERGING[[0, 255]].tolist()} <= set(map(tuple, image.reshape(-1, 3).tolist()))
