"""`cnn filters` and cnncli.views.filters: a conv layer's learned weights as a picture grid, tables and JSON.

References: the normalisations worked by hand for small known weight tensors (exact uint8 values);
the blue-white-red entry of each weight computed here from its formula, floor(256 (w + m) / 2m)
clipped to 0..255; a transposed conv's filters gathered by an explicit loop over PyTorch's layout;
the bundled digits model's weights read from its .npz with NumPy alone.
"""

import io
import json

import numpy as np
import pytest
from conftest import ROOT
from PIL import Image

from cnncli.cli import main
from cnncli.errors import SpecError, UsageError
from cnncli.io.modelfile import load_model
from cnncli.views import colors, filters as views

DIGITS = np.load(ROOT / "cnncli" / "models" / "digits.npz")


def run(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def write_model(folder, layers, color="rgb", size=(6, 6), name="tiny"):
    document = {"format": "cnn-model", "version": 1, "name": name, "input": {"size": list(size), "color": color},
                "layers": layers}
    path = folder / f"{name}.json"
    path.write_text(json.dumps(document))
    return path


def conv(weight, name=None, **settings):
    weight = np.asarray(weight, dtype=np.float64)
    layer = {"type": "conv2d", "out_channels": weight.shape[0], "kernel_size": list(weight.shape[2:]),
             "weight": weight.tolist(), "bias": False, **settings}
    return layer | ({"name": name} if name else {})


# A known RGB bank: 2 filters of 1x2 over R, G, B, weights -1 .. 3 (min -1, max 3 for the layer).
RGB_BANK = np.array([[[[-1, 3]], [[1, 0]], [[2, -1]]],
                     [[[0, 0]], [[3, 1]], [[-1, 2]]]], dtype=np.float32)  # (2, 3, 1, 2)


def test_rgb_tiles_scale_the_whole_layer_by_one_min_and_max():
    """round(255 (w + 1) / 4) by hand: -1 -> 0, 0 -> 63.75 -> 64, 1 -> 127.5 -> 128, 2 -> 191.25 -> 191,
    3 -> 255; a filter's R, G, B planes become one pixel's red, green and blue."""
    tiles = views.rgb_tiles(RGB_BANK)
    assert tiles.dtype == np.uint8 and tiles.shape == (2, 1, 2, 3)
    assert tiles.tolist() == [[[[0, 128, 191], [255, 64, 0]]],
                              [[[64, 255, 0], [64, 128, 191]]]]


def test_a_constant_layer_is_mid_grey_without_dividing_by_zero():
    with np.errstate(all="raise"):
        assert views.rgb_tiles(np.full((1, 3, 2, 2), 0.7)).tolist() == [[[[128] * 3] * 2] * 2]


def _filters(bank, rgb):
    class Layer:
        name, type, bias, groups = "conv1", "conv2d", None, 1
        weight = bank

    return views.Filters(Layer(), 1, np.asarray(bank), rgb)


def test_rgb_grid_lays_out_tiles_with_one_pixel_white_lines():
    """Two 1x2 colour tiles in a 1x2 grid, each weight 32x32 (TILE_TARGET 64 // 2, capped at MAX_FACTOR 16:
    16x16): tile q at rows 1..16, columns 1 + 33 q .. 32 + 33 q; white lines around and between."""
    grid, factor, shown = views.grid_pixels(_filters(RGB_BANK, rgb=True))
    assert factor == 16 and shown == (1, 2)
    assert grid.shape == (1 * (16 + 1) + 1, 2 * (32 + 1) + 1, 3)
    tiles = views.rgb_tiles(RGB_BANK)
    for q in range(2):
        expected = np.repeat(np.repeat(tiles[q], 16, axis=0), 16, axis=1)  # (16, 32, 3)
        assert np.array_equal(grid[1:17, 1 + 33 * q:33 + 33 * q], expected)
    lines = np.ones(grid.shape[:2], bool)
    lines[1:17, 1:33] = lines[1:17, 34:66] = False
    assert np.all(grid[lines] == 255)


def _diverging_entry(w, m):
    """The colour table's entry for weight w on the scale -m..m, from the formula in colors.color_indices."""
    return int(np.clip(np.floor(256 * (w + m) / (2 * m)), 0, 255))


def test_a_deeper_layer_is_a_grid_of_filters_by_input_channels_on_a_scale_symmetric_about_0():
    """2 filters x 2 channels of 2x2 weights (largest magnitude 4): tile (f, c) holds kernel [f, c], each
    weight the blue-white-red colour of floor(256 (w + 4) / 8), 0 white; grey lines between tiles."""
    bank = np.array([[[[-4, 0], [1, 2]], [[3, -1], [0, 0]]],
                     [[[2, 2], [-2, 4]], [[0.5, -0.5], [1, -3]]]], dtype=np.float32)  # (2, 2, 2, 2)
    grid, factor, shown = views.grid_pixels(_filters(bank, rgb=False))
    assert factor == 16 and shown == (2, 2) and grid.shape == (2 * 33 + 1, 2 * 33 + 1, 3)
    for f in range(2):
        for c in range(2):
            tile = grid[1 + 33 * f:33 + 33 * f, 1 + 33 * c:33 + 33 * c]
            for (i, j), w in np.ndenumerate(bank[f, c]):
                block = tile[16 * i:16 * (i + 1), 16 * j:16 * (j + 1)]
                assert np.all(block == colors.DIVERGING[_diverging_entry(float(w), 4.0)])
    assert np.all(grid[0] == views.CHANNEL_GAP) and np.all(grid[:, 33] == views.CHANNEL_GAP)
    assert colors.DIVERGING[_diverging_entry(0.0, 4.0)].tolist() == [255, 255, 255]


def test_one_input_channel_makes_a_square_grid_of_filters():
    """Five 1-channel 3x3 filters: 2 rows of 3 (ceil(sqrt(5)) columns), filter k at row k // 3, column k % 3."""
    bank = np.arange(45, dtype=np.float32).reshape(5, 1, 3, 3) - 20
    filters = _filters(bank, rgb=False)
    assert views.grid_shape(filters) == (2, 3)
    grid, factor, _ = views.grid_pixels(filters)
    pitch = 3 * factor + 1
    tiles = views.channel_tiles(bank)[:, 0]
    for k in range(5):
        r, q = divmod(k, 3)
        tile = grid[1 + r * pitch:1 + r * pitch + 3 * factor, 1 + q * pitch:1 + q * pitch + 3 * factor]
        assert np.array_equal(tile, np.repeat(np.repeat(tiles[k], factor, axis=0), factor, axis=1))
    assert np.all(grid[1 + pitch:, 1 + 2 * pitch:] == views.CHANNEL_GAP)  # the sixth place is empty


def test_a_grid_too_big_for_the_picture_keeps_its_first_rows_and_columns():
    """64 filters x 512 channels of 3x3 at a 1200-pixel cap: one pixel a weight, 300 columns of 4 pixels."""
    bank = np.ones((64, 512, 3, 3), np.float32)
    grid, factor, shown = views.grid_pixels(_filters(bank, rgb=False), max_side=1200)
    assert factor == 1 and shown == (64, 299) and grid.shape == (64 * 4 + 1, 299 * 4 + 1, 3)


def test_only_a_first_layer_reading_an_rgb_picture_is_drawn_in_colour(tmp_path):
    """RGB: 3 channels, no groups, reading the input of an rgb model. A later layer of 3 channels, a gray
    model's first layer and a grouped first layer are drawn per channel."""
    three = np.zeros((3, 3, 1, 1))
    path = write_model(tmp_path, [conv(three, "first"), conv(three, "second"), conv(np.zeros((3, 1, 1, 1)), "grouped",
                                                                                     groups=3)])
    model = load_model(str(path))
    assert [views.find_filters(model, name).rgb for name in ("first", "second", "grouped")] == [True, False, False]
    gray = load_model(str(write_model(tmp_path, [conv(np.zeros((2, 1, 1, 1)))], color="gray", name="gray")))
    assert views.find_filters(gray).rgb is False and views.find_filters(gray).name == "conv1"


def test_a_transposed_convs_filters_are_its_output_channels():
    """PyTorch stores a transposed conv (C, F/groups, KH, KW); filter f of group g reads input channel
    g*C/groups + c through weight[g*C/groups + c, f mod F/groups]: gathered here by a loop."""
    rng = np.random.default_rng(5)

    class Layer:
        type = "conv_transpose2d"

    for groups, channels, per_group in ((1, 2, 3), (2, 4, 3), (4, 4, 1)):
        layer = Layer()
        layer.groups, layer.weight = groups, rng.standard_normal((channels, per_group, 2, 2))
        bank = views.filter_bank(layer)
        expected = np.empty((groups * per_group, channels // groups, 2, 2))
        for f in range(groups * per_group):
            g = f // per_group
            for c in range(channels // groups):
                expected[f, c] = layer.weight[g * channels // groups + c, f % per_group]
        assert np.array_equal(bank, expected)


def test_errors_name_the_conv_layers(tmp_path):
    model = load_model("digits")
    with pytest.raises(UsageError) as caught:
        views.find_filters(model, "fc1")
    assert caught.value.param == "layer" and caught.value.message == (
        "fc1 is a dense layer, which has no filters; expected a conv layer: conv1 (#1), conv2 (#5)")
    assert views.find_filters(model, "5").name == "conv2" and views.find_filters(model).name == "conv1"
    plain = load_model(str(write_model(tmp_path, [{"type": "flatten"}, {"type": "dense", "out_features": 2,
                                                                        "weight": [[0.0] * 36] * 2, "bias": False}],
                                       color="gray")))
    with pytest.raises(SpecError, match="has no conv layer, expected a model with a conv2d"):
        views.find_filters(plain)


@pytest.mark.parametrize("args, code, line", [
    (("--layer", "fc1"), 2, "cnn: Invalid value for --layer: fc1 is a dense layer, which has no filters; expected a "
                            "conv layer: conv1 (#1), conv2 (#5)"),
    (("--layer", "nope"), 2, "cnn: Invalid value for --layer: no layer 'nope' in digits; expected a conv layer: "
                             "conv1 (#1), conv2 (#5)"),
    (("--layer", "0"), 2, "cnn: Invalid value for --layer: no layer '0' in digits; expected a conv layer: conv1 (#1), "
                          "conv2 (#5)"),
    (("-o", "filters.jpg"), 1, "cnn: filters.jpg: expected a file name ending in .png (the picture is written as PNG)"),
])
def test_bad_layers_and_outputs_are_one_line(capsys, tmp_path, monkeypatch, args, code, line):
    monkeypatch.chdir(tmp_path)
    got, out, err = run(capsys, "filters", "digits", *args)
    assert (got, out, err.splitlines()) == (code, "", [line])


def test_a_model_without_conv_layers_is_one_line(capsys, tmp_path):
    path = write_model(tmp_path, [{"type": "relu"}])
    assert run(capsys, "filters", path) == (1, "", f"cnn: {path}: has no conv layer, expected a model with a conv2d "
                                                   "or conv_transpose2d layer whose weights are filters\n")


def test_the_picture_is_written_once_and_replaced_only_with_force(capsys, tmp_path):
    """-o writes the PNG filters_picture draws (and nothing to stdout); again, it is refused; --force replaces."""
    target = tmp_path / "filters.png"
    assert run(capsys, "filters", "digits", "--layer", "conv2", "-o", target) == (
        0, "", f"wrote the 32 filters of conv2 to {target}\n")
    drawn = views.filters_picture(views.find_filters(load_model("digits"), "conv2"), "digits")
    assert np.array_equal(np.asarray(Image.open(target)), np.asarray(drawn))
    assert run(capsys, "filters", "digits", "-o", target) == (1, "", f"cnn: {target}: already exists; --force "
                                                                     "replaces it\n")
    assert np.array_equal(np.asarray(Image.open(target)), np.asarray(drawn))  # untouched
    code, _, err = run(capsys, "filters", "digits", "-o", target, "--force")
    assert code == 0 and Image.open(target).size != drawn.size  # conv1's picture now


def test_the_picture_on_stdout(capsysbinary):
    code = main(["filters", "digits", "-o", "-"])
    out = capsysbinary.readouterr().out
    assert code == 0 and Image.open(io.BytesIO(out)).mode == "RGB"


def test_json_holds_every_weight_exactly(capsys):
    """--format json: conv2's weights (32, 16, 3, 3) and bias, read back equal to the .npz's float32 values."""
    code, out, err = run(capsys, "filters", "digits", "--layer", "conv2", "-f", "json")
    assert code == 0 and err == ""
    document = json.loads(out)
    assert document["format"] == "cnn-filters" and document["version"] == 1
    assert document["layer"] == {"name": "conv2", "index": 5, "type": "conv2d",
                                 "settings": load_model("digits").network.layers[4].settings()}
    assert document["shape"] == [32, 16, 3, 3] and document["drawn"] == "per channel"
    assert np.array_equal(np.array(document["weights"], np.float32), DIGITS["conv2.weight"])
    assert np.array_equal(np.array(document["bias"], np.float32), DIGITS["conv2.bias"])
    assert document["min"] == float(DIGITS["conv2.weight"].min()) and document["model"]["name"] == "digits"


def test_json_of_an_rgb_layer_says_how_it_is_drawn_and_a_missing_bias_is_null(capsys, tmp_path):
    path = write_model(tmp_path, [conv(RGB_BANK)])
    code, out, _ = run(capsys, "filters", path, "-f", "json")
    document = json.loads(out)
    assert code == 0 and document["drawn"] == "rgb" and document["bias"] is None
    assert "(w - min) / (max - min) over the layer: min -1 black, max 3 white" in document["how"]
    assert document["weights"] == RGB_BANK.tolist()


def test_the_table_writes_each_weight_rounded_coloured_on_the_layers_scale(capsys):
    """digits conv1 (16 small kernels): numbers, one format for the layer (3 decimals), each filter's rows
    as the .npz holds them; plain text when piped."""
    code, out, err = run(capsys, "filters", "digits")
    assert code == 0 and err == "" and "\x1b" not in out
    assert out.splitlines()[0] == "conv1 (conv2d), layer #1 of digits: 16 filters x 1 input channel, 3x3"
    text = " ".join(out.split())
    for f in (0, 7, 15):
        for row in DIGITS["conv1.weight"][f, 0]:
            assert " ".join(f"{w:.3f}" for w in row) in text
        assert f"bias {DIGITS['conv1.bias'][f]:.3g}" in text


def test_many_kernels_are_drawn_and_the_rest_elided_with_a_note(capsys, monkeypatch):
    """conv2's 512 kernels: half-block drawings, a row per filter, channels to the width, then a note."""
    monkeypatch.setenv("COLUMNS", "80")
    code, out, _ = run(capsys, "filters", "digits", "--layer", "conv2")
    lines = out.splitlines()
    assert code == 0 and max(len(line) for line in lines) <= 80
    header = next(line for line in lines if line.startswith("filter "))
    assert header.split()[:3] == ["filter", "in", "0"] and header.rstrip().endswith("\u2026")
    assert "... input channels 7 to 15 not shown (the terminal is 80 columns)" in out and "filters 32 to" not in out
    assert "-o filters.png draws every filter and channel" in out
    numbers = run(capsys, "filters", "digits", "--layer", "conv2", "--view", "table")[1]
    assert f"{DIGITS['conv2.weight'][0, 0, 0, 0]:.3f}" in numbers
