"""`cnn explain`: one conv output cell, term by term, in the core (cnncli.engine.explain) and on the command line."""

import itertools
import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT
from typer.testing import CliRunner

from cnncli.engine import ops
from cnncli.cli import app, main
from cnncli.engine.explain import CellError, check_cell, explain_cell, find_conv_layer
from cnncli.engine.graph import Network
from cnncli.engine.layers import Activation, BatchNorm, Conv2d, GlobalAvgPool2d, Pool2d

SEED = str(ROOT / "sample_images" / "seed_5x5.png")
DIGIT = str(ROOT / "sample_images" / "digit_7.png")
# The seed tutorial's image and kernel (README.md's first example).
SEED_IMAGE = np.array([[1, 2, 3, 0, 1], [4, 5, 6, 1, 2], [7, 8, 9, 2, 3], [1, 2, 3, 4, 5], [6, 7, 8, 5, 6]],
                      dtype=np.float32)[None]  # 1, 5, 5
VERTICAL_EDGE = np.array([[1, 0, -1]] * 3, dtype=np.float32)[None, None]  # 1, 1, 3, 3
SEED_TERMS = "sum: (2x1) + (3x0) + (0x-1) + (5x1) + (6x0) + (1x-1) + (8x1) + (9x0) + (2x-1)"


def seed_steps(**conv):
    """The seed example's conv -> relu -> 2x2 max-pool on the seed image."""
    network = Network((Conv2d(VERTICAL_EDGE, name="conv1", labels=("vertical_edge",), **conv),
                       Activation("relu", name="relu1"), Pool2d("max", (2, 2), name="maxpool1")))
    return network.forward(SEED_IMAGE, ("gray",))


def invoke(*args):
    """Run the app in-process at 80 columns without colour; stdout and stderr stay separate."""
    return CliRunner(env={"COLUMNS": "80", "NO_COLOR": "1", "TERM": "dumb"}).invoke(app, list(args))


# --- The core ------------------------------------------------------------------------------------


def test_the_seed_cell_is_the_hand_worked_sum():
    """Cell (0, 1) of the seed conv: patch rows 0..2, cols 1..3 times the vertical edge sums to 12."""
    e = explain_cell(seed_steps(), 1, 0, 0, 1)
    assert (e.rows, e.cols) == ((0, 1, 2), (1, 2, 3))
    np.testing.assert_array_equal(e.patch[0], [[2, 3, 0], [5, 6, 1], [8, 9, 2]])
    np.testing.assert_array_equal(e.kernel[0], [[1, 0, -1]] * 3)
    np.testing.assert_array_equal(e.products[0], [[2, 0, 0], [5, 0, -1], [8, 0, -2]])
    assert e.patch.dtype == np.float64 and not e.padding.any()
    assert (e.total, e.bias, e.value, e.layer_value) == (12.0, None, 12.0, 12.0)
    assert (e.label, e.in_labels, e.in_channels) == ("vertical_edge", ("gray",), (0,))
    relu, pool = e.after
    assert (relu.name, relu.before, relu.after) == ("relu1", 12.0, 12.0)
    (cell,) = pool.cells
    assert (cell.row, cell.col, cell.value, cell.rows, cell.cols) == (0, 0, 12.0, (0, 1), (0, 1))
    assert cell.is_max and not cell.tied


def test_a_negative_seed_cell_is_zeroed_by_relu_and_loses_the_pool():
    """Cell (0, 0) is -6: ReLU makes it 0, and the pool's max (12) comes from another cell."""
    e = explain_cell(seed_steps(), 1, 0, 0, 0)
    assert e.value == -6.0
    relu, pool = e.after
    assert (relu.before, relu.after) == (-6.0, 0.0)
    assert pool.cells[0].value == 12.0 and pool.cells[0].is_max is False


def test_a_cell_the_pool_drops_feeds_no_window():
    """The 3x3 map's last row and column fall outside every 2x2, stride-2 window."""
    pool = explain_cell(seed_steps(), 1, 0, 2, 2).after[-1]
    assert pool.name == "maxpool1" and pool.cells == ()


def test_reflect_padding_copies_the_mirrored_cells():
    """With 'same' reflect padding, cell (0, 0) reads row and column -1 as copies of row and column 1."""
    e = explain_cell(seed_steps(padding="same", padding_mode="reflect"), 1, 0, 0, 0)
    assert (e.rows, e.cols, e.source_rows, e.source_cols) == ((-1, 0, 1), (-1, 0, 1), (1, 0, 1), (1, 0, 1))
    np.testing.assert_array_equal(e.padding, [[True] * 3, [True, False, False], [True, False, False]])
    np.testing.assert_array_equal(e.patch[0], [[5, 4, 5], [2, 1, 2], [5, 4, 5]])
    assert e.value == e.layer_value == 0.0


def test_dilation_and_stride_pick_every_other_cell_and_zero_padding():
    """Stride 2, dilation 2, padding 1: cell (1, 1) reads rows and cols 1, 3, 5, and 5 is zero padding."""
    e = explain_cell(seed_steps(stride=(2, 2), dilation=(2, 2), padding=1), 1, 0, 1, 1)
    assert (e.rows, e.cols, e.source_rows[-1]) == ((1, 3, 5), (1, 3, 5), None)
    np.testing.assert_array_equal(e.patch[0], [[5, 1, 0], [2, 4, 0], [0, 0, 0]])
    assert e.padding[:, 2].all() and e.padding[2].all() and not e.padding[:2, :2].any()
    assert e.value == e.layer_value == 7.0


def test_a_flipping_layer_shows_the_flipped_kernel():
    """A true convolution multiplies by the kernel turned 180 degrees, and says so."""
    e = explain_cell(seed_steps(flip=True), 1, 0, 0, 1)
    assert e.flipped
    np.testing.assert_array_equal(e.kernel[0], [[-1, 0, 1]] * 3)
    assert e.value == e.layer_value == -12.0


def padded(x, pads, mode):
    """The input padded by NumPy's own modes (not ops.pad2d): the oracle of the patches."""
    top, bottom, left, right = pads
    numpy_mode = {"zeros": "constant", "reflect": "reflect", "replicate": "edge", "circular": "wrap"}[mode]
    return np.pad(x.astype(np.float64), [(0, 0), (top, bottom), (left, right)], mode=numpy_mode)


CONVS = [  # in channels, filters, kernel, groups, stride, dilation, padding, padding mode, flip, bias
    (1, 2, (3, 3), 1, (1, 1), (1, 1), "valid", "zeros", False, True),
    (3, 4, (3, 3), 1, (2, 2), (1, 1), "same", "zeros", False, True),
    (3, 2, (3, 2), 1, (1, 2), (2, 1), "same", "reflect", False, False),
    (2, 3, (2, 3), 1, (2, 1), (1, 2), (1, 2, 0, 3), "replicate", True, True),
    (4, 4, (3, 3), 2, (1, 1), (2, 2), 2, "circular", False, True),
    (3, 6, (3, 3), 3, (2, 2), (1, 1), "full", "zeros", False, True),  # depthwise, two filters per channel
    (3, 3, (5, 5), 3, (1, 1), (1, 1), "same", "reflect", True, False),
    (2, 1, (1, 1), 1, (3, 3), (1, 1), (0, 1), "zeros", False, True),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("setting", CONVS, ids=lambda s: f"c{s[0]}f{s[1]}g{s[3]}s{s[4]}d{s[5]}-{s[6]}-{s[7]}")
def test_every_cell_sums_to_the_layer_output(setting, dtype):
    """For every cell of random convs, patch x kernel summed plus bias is the layer's output, and the
    patch is the padded input (padded by NumPy, the oracle) under the dilated, strided taps."""
    channels, filters, (kh, kw), groups, stride, dilation, padding, mode, flip, with_bias = setting
    rng = np.random.default_rng(sum(map(ord, str(setting))))
    x = rng.normal(size=(channels, 7, 8)).astype(dtype)
    weight = rng.normal(size=(filters, channels // groups, kh, kw)).astype(dtype)
    bias = rng.normal(size=filters).astype(dtype) if with_bias else None
    conv = Conv2d(weight, bias, stride, padding, mode, dilation, groups, flip, "conv")
    steps = Network((conv,)).forward(x)
    pads, _ = ops.conv_geometry(x.shape, weight.shape, stride, padding, dilation, groups, mode)
    xp = padded(x, pads, mode)
    per_group = filters // groups
    tolerance = 1e-4 if dtype == np.float32 else 1e-10
    for f, r, c in itertools.product(*map(range, steps[1].output.shape)):
        e = explain_cell(steps, 1, f, r, c)
        group = f // per_group
        assert e.in_channels == tuple(range(group * (channels // groups), (group + 1) * (channels // groups)))
        taps = np.ix_(e.in_channels, [r * stride[0] + i * dilation[0] for i in range(kh)],
                      [c * stride[1] + j * dilation[1] for j in range(kw)])
        np.testing.assert_array_equal(e.patch, xp[taps])
        kernel = weight[f, :, ::-1, ::-1] if flip else weight[f]
        np.testing.assert_array_equal(e.kernel, kernel.astype(np.float64))
        np.testing.assert_array_equal(e.products, e.patch * e.kernel)
        np.testing.assert_allclose(e.sums, e.products.sum(axis=(1, 2)))
        assert e.value == pytest.approx(e.total + (0.0 if bias is None else float(bias[f])), abs=1e-12)
        assert e.value == pytest.approx(float(steps[1].output[f, r, c]), rel=tolerance, abs=tolerance)
        assert e.layer_value == float(steps[1].output[f, r, c])
        rows_outside = [not 0 <= row < x.shape[1] for row in e.rows]
        cols_outside = [not 0 <= col < x.shape[2] for col in e.cols]
        np.testing.assert_array_equal(e.padding, np.logical_or.outer(rows_outside, cols_outside))


@pytest.mark.parametrize("pool", [Pool2d("max", (3, 3), (2, 2), name="pool"), Pool2d("max", (2, 2), name="pool"),
                                  Pool2d("avg", (3, 3), (2, 2), (1, 1), name="pool"),
                                  Pool2d("max", (2, 2), (1, 1), dilation=(2, 2), name="pool"),
                                  Pool2d("avg", (2, 2), ceil_mode=True, count_include_pad=False, name="pool")],
                         ids=["max3s2", "max2", "avg3s2p1", "max2s1d2", "avg2ceil"])
def test_the_pooling_cells_are_exactly_the_windows_holding_the_cell(pool):
    """Brute force over every pooling window: the cells listed are those whose window holds the cell,
    a max pool says whether the cell is the max, an average pool gives PyTorch's divisor."""
    rng = np.random.default_rng(7)
    x = rng.integers(-3, 4, size=(2, 8, 9)).astype(np.float32)  # small integers: ties happen
    conv = Conv2d(rng.normal(size=(2, 2, 2, 2)).round().astype(np.float32), name="conv")
    steps = Network((conv, pool)).forward(x)
    plane = steps[1].output
    k, s, d, p, out, _ = ops.pool_geometry(plane.shape[1:], pool.kernel_size, pool.stride, pool.padding,
                                           pool.dilation if pool.kind == "max" else 1, pool.ceil_mode)
    for f, r, c in itertools.product(*map(range, plane.shape)):
        (found,) = explain_cell(steps, 1, f, r, c).after
        expected = [(i, j) for i in range(out[0]) for j in range(out[1])
                    if r in [i * s[0] - p[0] + a * d[0] for a in range(k[0])]
                    and c in [j * s[1] - p[1] + b * d[1] for b in range(k[1])]]
        assert [(cell.row, cell.col) for cell in found.cells] == expected
        for cell in found.cells:
            assert cell.value == steps[2].output[f, cell.row, cell.col]
            if pool.kind == "max":
                assert cell.is_max == (plane[f, r, c] == cell.value)
                assert cell.value == np.nanmax(cell.window)
            else:
                inside = ~np.isnan(cell.window)
                total = cell.window[inside].sum()
                assert total / cell.divisor == pytest.approx(cell.value, abs=1e-5)


def test_batch_norm_leaky_relu_and_global_pool_follow_the_cell():
    """A batch norm is before x scale + shift; a leaky ReLU keeps a slope; a global pool feeds (c, 0, 0)."""
    rng = np.random.default_rng(3)
    norm = BatchNorm(rng.normal(size=2), rng.uniform(0.5, 2, size=2), rng.normal(size=2), rng.normal(size=2),
                     name="bn")
    network = Network((Conv2d(rng.normal(size=(2, 1, 3, 3)), rng.normal(size=2), name="conv"), norm,
                       Activation("leaky_relu", 0.1, name="act"), GlobalAvgPool2d()))
    steps = network.forward(rng.normal(size=(1, 6, 6)))
    bn, act, gap = explain_cell(steps, 1, 1, 2, 3).after
    assert bn.before == pytest.approx(float(steps[1].output[1, 2, 3]))
    assert bn.before * bn.scale + bn.shift == pytest.approx(bn.after)
    assert act.negative_slope == 0.1 and act.after == pytest.approx(act.before if act.before >= 0 else act.before * 0.1)
    (cell,) = gap.cells
    assert (cell.row, cell.col, cell.divisor, gap.kind) == (0, 0, 16, "global")
    assert cell.value == pytest.approx(float(steps[4].output[1, 0, 0]))


def test_a_second_conv_layer_reads_the_maps_before_it():
    """Explaining a later conv uses the previous step's output as its input, and stops at the next conv."""
    rng = np.random.default_rng(5)
    network = Network((Conv2d(rng.normal(size=(3, 1, 3, 3)), name="c1"), Activation("relu", name="r1"),
                       Conv2d(rng.normal(size=(2, 3, 3, 3)), rng.normal(size=2), padding=1, name="c2"),
                       Conv2d(rng.normal(size=(1, 2, 1, 1)), name="c3")))
    steps = network.forward(rng.normal(size=(1, 6, 6)))
    assert find_conv_layer(network.layers) == 1 and find_conv_layer(network.layers, "c2") == 3
    e = explain_cell(steps, 3, 1, 0, 3)
    assert e.in_channels == (0, 1, 2) and e.after == ()
    np.testing.assert_array_equal(e.patch[:, 1:, :2], steps[2].output[:, 0:2, 2:4])  # rows -1 and col 4: padding
    assert e.padding[0].all() and e.padding[:, 2].all()


def test_a_layer_that_is_not_a_conv_or_a_cell_outside_the_map_is_refused():
    """find_conv_layer lists the conv layers; check_cell names the range; each error names its option."""
    network = Network((Conv2d(VERTICAL_EDGE, name="conv1"), Activation("relu", name="relu1")))
    with pytest.raises(CellError, match=r"relu1 is a relu layer, not a convolution; the conv layers are conv1 \(#1\)"):
        find_conv_layer(network.layers, "relu1")
    with pytest.raises(CellError, match="no layer called 'conv7'") as raised:
        find_conv_layer(network.layers, "conv7")
    assert raised.value.param == "layer"
    with pytest.raises(CellError, match=r"expected ROW in 0\.\.2 and COL in 0\.\.2") as raised:
        check_cell((1, 3, 3), 0, 3, 0, "conv1")
    assert raised.value.param == "at"
    with pytest.raises(CellError, match=r"has 4 output channels; expected 0\.\.3, got 4") as raised:
        check_cell((4, 3, 3), 4, 0, 0, "conv1")
    assert raised.value.param == "channel"
    with pytest.raises(CellError, match="not a conv layer"):
        explain_cell(seed_steps(), 2, 0, 0, 0)


def test_a_wrong_recomputation_is_reported_as_a_bug():
    """The recomputed value is checked against the forward pass: a mismatch raises, never shows a wrong sum."""
    steps = seed_steps()
    steps[1].output[0, 0, 1] = 13.0
    with pytest.raises(RuntimeError, match="recomputes to 12.0 but the forward pass gave 13.0"):
        explain_cell(steps, 1, 0, 0, 1)


def test_the_core_does_not_import_the_cli_libraries():
    """cnncli.engine.explain leaves typer and rich unloaded."""
    code = ("import sys, cnncli.engine.explain; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('typer', 'rich', 'click')))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


# --- The command line ----------------------------------------------------------------------------


def test_the_seed_cell_is_written_out_as_a_sum():
    """The table view shows the patch, the sum term by term, the ReLU and the pool, as plain text."""
    result = invoke("explain", SEED, "-k", "vertical_edge", "--at", "0,1")
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    assert "Cell: conv1 channel 0 (vertical_edge), row 0, col 1 = 12" in out
    assert "input rows 0..2, cols 1..3" in out
    assert f"{SEED_TERMS}\n  = 12\n" in out  # too long for 80 columns: the result on a line of its own
    assert "no bias: 12" in out and "conv1's table shows 12 at channel 0, row 0, col 1" in out
    assert "relu1 (relu): relu(12) = 12" in out
    words = " ".join(out.split())  # long lines wrap at 80 columns
    assert "maxpool1 (maxpool2d): feeds cell row 0, col 0 = 12, the max of rows 0..1, cols 0..1: this cell is " \
           "that max" in words
    assert "0 2 3 0" in out and "2 8 9 2" in out  # the patch's rows, headed by input rows 0 and 2
    assert "\x1b" not in out and result.stderr == ""


def test_padding_is_marked_and_its_source_named():
    """Reflect padding: padded cells in parentheses, and a note saying which row and column they copy."""
    result = invoke("explain", SEED, "-k", "vertical_edge", "--padding", "same", "--padding-mode", "reflect",
                    "--at", "0,0")
    assert result.exit_code == 0, result.stderr
    assert "(v) marks padding, reflect mode: row -1 holds row 1, col -1 holds col 1." in result.stdout
    assert "-1 (5) (4) (5)" in result.stdout
    assert "(5x1) + (4x0) + (5x-1) + (2x1) + (1x0) + (2x-1) + (5x1) + (4x0) + (5x-1)" in result.stdout


def test_the_json_document_holds_every_term():
    """--format json: format cnn-explain version 1, the cell, one record per input channel, sum, bias, value."""
    result = invoke("explain", SEED, "-k", "vertical_edge", "--at", "0,1", "--format", "json")
    assert result.exit_code == 0, result.stderr
    document = json.loads(result.stdout)
    assert (document["format"], document["version"]) == ("cnn-explain", 1)
    assert document["image"]["source"] == SEED
    assert document["layer"]["name"] == "conv1" and document["layer"]["operation"] == "cross-correlation"
    assert document["cell"] == {"channel": 0, "row": 0, "col": 1, "label": "vertical_edge"}
    (channel,) = document["channels"]
    assert channel["patch"] == [[2, 3, 0], [5, 6, 1], [8, 9, 2]]
    assert channel["kernel"] == [[1, 0, -1]] * 3 and channel["products"] == [[2, 0, 0], [5, 0, -1], [8, 0, -2]]
    assert (channel["sum"], document["sum"], document["bias"], document["value"], document["layer_value"]) == \
        (12, 12, None, 12, 12)
    assert (document["rows"], document["cols"]) == ([0, 1, 2], [1, 2, 3])
    assert [step["name"] for step in document["after"]] == ["relu1", "maxpool1"]
    assert document["after"][1]["cells"] == [{"row": 0, "col": 0, "value": 12, "rows": [0, 1], "cols": [0, 1],
                                              "window": [[0, 12], [0, 8]], "is_max": True, "tied": False}]


def test_the_json_value_is_the_run_trace_value():
    """An RGB depthwise run: explain's value at a cell is the value `cnn run --format json` gives there."""
    args = [str(ROOT / "sample_images" / "rgb_bars.png"), "-k", "sobel_x", "--color", "rgb", "--stride", "2",
            "--padding", "same", "--padding-mode", "replicate"]
    trace = json.loads(invoke("run", *args, "--format", "json").stdout)
    values = np.array(trace["layers"][1]["values"])
    for channel, at in [(0, "0,0"), (1, "5,11"), (2, "23,23")]:
        result = invoke("explain", *args, "--channel", str(channel), "--at", at, "--format", "json")
        assert result.exit_code == 0, result.stderr
        document = json.loads(result.stdout)
        row, col = map(int, at.split(","))
        assert [c["index"] for c in document["channels"]] == [channel]  # depthwise: one input channel
        assert document["value"] == pytest.approx(values[channel, row, col], abs=1e-3)


def test_at_max_explains_the_strongest_cell():
    """--at max picks the channel's largest cell, the first on a tie, in row-major order."""
    document = json.loads(invoke("explain", SEED, "-k", "vertical_edge", "--at", "max", "-f", "json").stdout)
    assert (document["cell"]["row"], document["cell"]["col"], document["value"]) == (0, 1, 12)
    document = json.loads(invoke("explain", SEED, "-k", "vertical_edge", "--at", "min", "-f", "json").stdout)
    assert (document["cell"]["row"], document["cell"]["col"], document["value"]) == (0, 0, -6)


def test_a_model_layer_is_explained_through_batch_norm_relu_and_pool():
    """--model digits --layer conv2: 16 input channels (8 shown), a bias, then bn2, relu2 and pool2."""
    result = invoke("explain", DIGIT, "--model", "digits", "--layer", "conv2", "--channel", "5", "--at", "2,0")
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    assert "Model digits" in out and "all 16 channels" in out and "+ bias:" in out
    assert "8 more input channels (8..15) not shown" in out
    assert "bn2 (batchnorm2d):" in out and "relu2 (relu): relu(" in out and "pool2 (maxpool2d): feeds cell" in out
    full = invoke("explain", DIGIT, "-m", "digits", "--layer", "5", "--channel", "5", "--at", "2,0", "--full")
    assert "input channel 15" in full.stdout and "not shown" not in full.stdout
    document = json.loads(invoke("explain", DIGIT, "-m", "digits", "--layer", "conv2", "--channel", "5", "--at", "2,0",
                                 "-f", "json").stdout)
    assert document["model"]["name"] == "digits" and len(document["channels"]) == 16
    assert document["value"] == pytest.approx(document["layer_value"], abs=1e-5)
    assert [step["name"] for step in document["after"]] == ["bn2", "relu2", "pool2"]


def test_the_default_layer_is_the_first_conv():
    """Without --layer, a model's first conv layer is explained."""
    document = json.loads(invoke("explain", DIGIT, "-m", "digits", "--at", "0,0", "-f", "json").stdout)
    assert document["layer"]["name"] == "conv1" and document["layer"]["index"] == 1


def test_a_narrow_terminal_stacks_the_grids():
    """Grids too wide to stand side by side are drawn one under the other, and a big kernel is elided."""
    kernel = json.dumps(np.arange(121).reshape(11, 11).tolist())
    result = CliRunner(env={"COLUMNS": "40", "NO_COLOR": "1"}).invoke(
        app, ["explain", str(ROOT / "sample_images" / "shapes.png"), "-k", kernel, "--at", "3,4"])
    assert result.exit_code == 0, result.stderr
    assert "\u2026" in result.stdout and "the 121 products add up to" in result.stdout
    assert result.stdout.index("input patch") < result.stdout.index("kernel\n") < result.stdout.index("input x kernel")


BAD = [
    (["--at", "1"], "--at", "expected ROW,COL"),
    (["--at", "a,b"], "--at", "expected ROW,COL"),
    (["--at", "-1,0"], "--at", "expected ROW,COL"),
    (["--at", "3,0"], "--at", "outside conv1's 3x3 output; expected ROW in 0..2 and COL in 0..2"),
    (["--at", "0,9"], "--at", "expected ROW in 0..2 and COL in 0..2"),
    (["--at", "1,2,3,4"], "--at", "expected ROW,COL"),
    (["--at", "1,0,0"], "--at", "outside conv1's 1x3x3 output; expected CHANNEL in 0..0, ROW in 0..2, COL in 0..2"),
    (["--at", "0", "--layer", "relu1"], "--at", "relu1's output is a 1x3x3 map; expected ROW,COL (with --channel)"),
    (["--at", "0,1", "--layer", "conv2"], "--layer",
     "no layer called 'conv2'; the layers are conv1 (#1), relu1 (#2), maxpool1 (#3)"),
    (["--at", "0,1", "--layer", "0"], "--layer", "#0 is the input"),
    (["--at", "0,1", "--layer", "9"], "--layer", "no layer #9: the network has 3"),
    (["--at", "0,1", "--channel", "1"], "--channel", "conv1 has 1 output channel; expected 0, got 1"),
    (["--channel", "1"], "--channel", "conv1 has 1 output channel; expected 0, got 1"),
    (["--at", "1,0,0", "--channel", "0"], "--channel", "name different channels"),
    (["--dense-random", "3", "--layer", "dense1", "--at", "0,1"], "--at",
     "dense1's output is a vector of 3 values; expected INDEX, got 0,1"),
    (["--dense-random", "3", "--layer", "dense1", "--at", "3"], "--at", "expected INDEX in 0..2"),
    (["--dense-random", "3", "--layer", "dense1", "--channel", "0"], "--channel", "which has no channels"),
]


@pytest.mark.parametrize("args, option, words", BAD, ids=[" ".join(case[0]) for case in BAD])
def test_a_bad_cell_layer_or_channel_is_one_line_and_exit_2(args, option, words, capsys):
    """Bad --at, --layer or --channel: exit 2, one `cnn:` line naming the option and the valid range, no output."""
    code = main(["explain", SEED, "-k", "vertical_edge", *args])
    captured = capsys.readouterr()
    assert code == 2
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("cnn: ")
    assert option in lines[0] and words in lines[0]


def test_without_at_the_layers_largest_value_is_explained():
    """No --at: the cell holding the layer's largest value, across all its channels (the first on a tie)."""
    trace = json.loads(invoke("run", DIGIT, "-m", "digits", "-f", "json").stdout)
    values = np.array(trace["layers"][5]["values"])  # conv2: 32 x 4 x 4
    document = json.loads(invoke("explain", DIGIT, "-m", "digits", "--layer", "conv2", "-f", "json").stdout)
    cell = document["cell"]
    assert (cell["channel"], cell["row"], cell["col"]) == np.unravel_index(np.argmax(values), values.shape)
    assert document["value"] == pytest.approx(values.max(), abs=1e-5)
    with_channel = json.loads(invoke("explain", DIGIT, "-m", "digits", "--layer", "conv2", "--channel", "5",
                                     "-f", "json").stdout)["cell"]
    assert with_channel["channel"] == 5
    assert (with_channel["row"], with_channel["col"]) == np.unravel_index(np.argmax(values[5]), (4, 4))


def test_help():
    """`cnn explain --help` names the cell options."""
    result = invoke("explain", "--help")
    assert result.exit_code == 0
    assert "--at" in result.stdout and "--layer" in result.stdout and "--channel" in result.stdout
    assert "INDEX" in result.stdout and "dense" in result.stdout


# --- Graphs ---------------------------------------------------------------------------------------


def graph_steps(seed=0):
    """A residual block with a gate and a concat, whose conv ``side`` reads the input, not the step before.

    input -> conv_a -> relu_a -> conv_b -> add(conv_b, relu_a) -> bn -> gate -> mul(bn, gate)
          -> side (conv on the input) -> cat(mul, side) -> maxpool
    """
    from cnncli.engine.layers import Add, Concat, Mul

    rng = np.random.default_rng(seed)

    def conv(f, c, k, name, **settings):
        return Conv2d(rng.standard_normal((f, c, k, k)).astype(np.float32), rng.standard_normal(f).astype(np.float32),
                      name=name, **settings)

    layers = (conv(3, 2, 3, "conv_a", padding=1), Activation("relu", name="relu_a"),
              conv(3, 3, 1, "conv_b"), Add("add"),
              BatchNorm(np.zeros(3, np.float32), np.full(3, 4.0, np.float32), np.full(3, 2.0, np.float32),
                        np.ones(3, np.float32), name="bn"),
              GlobalAvgPool2d("gate"), Mul("mul"),
              conv(2, 2, 3, "side", padding=1, stride=(1, 1)), Concat("cat"), Pool2d("max", (2, 2), name="pool"))
    reads = (("input",), ("conv_a",), ("relu_a",), ("conv_b", "relu_a"), ("add",), ("bn",), ("bn", "gate"),
             ("input",), ("mul", "side"), ("cat",))
    network = Network(layers, reads)
    return network.forward(rng.standard_normal((2, 6, 6)).astype(np.float32))


@pytest.mark.parametrize("name", ["conv_a", "conv_b", "side"])
def test_convs_in_a_graph_recompute_their_own_output_from_what_they_read(name):
    """Every cell of every conv in a graph recomputes to the forward pass's value, from the step it read."""
    steps = graph_steps()
    index = next(step.index for step in steps if step.name == name)
    source = {"conv_a": "input", "conv_b": "relu_a", "side": "input"}[name]
    for channel, row, col in itertools.product(range(steps[index].output.shape[0]), range(6), range(6)):
        e = explain_cell(steps, index, channel, row, col)
        assert e.value == pytest.approx(e.layer_value, rel=1e-5, abs=1e-5)
        assert steps[e.source_index].name == source
    if name == "side":  # the input, though the step before is mul
        assert steps[index - 1].name == "mul" and e.record()["layer"]["inputs"] == ["input"]


def test_a_conv_cell_is_followed_into_every_consumer():
    """conv_a's cell goes into relu_a, then add (with conv_b's value), bn, the gate, mul and cat; side's into cat."""
    steps = graph_steps()
    by_name = {step.name: step for step in steps}
    e = explain_cell(steps, by_name["conv_a"].index, 1, 2, 3)
    names = [after.name for after in e.after]
    assert names == ["relu_a", "add", "bn", "gate", "mul", "cat", "pool"]
    add = e.after[1]
    assert add.reads == "relu_a" and [name for name, _ in add.terms] == ["conv_b", "relu_a"]
    assert add.value == pytest.approx(sum(value for _, value in add.terms), rel=1e-6)
    assert add.value == pytest.approx(float(by_name["add"].output[1, 2, 3]))
    mul = e.after[4]
    assert mul.terms[1] == ("gate", pytest.approx(float(by_name["gate"].output[1, 0, 0])))
    assert mul.value == pytest.approx(mul.terms[0][1] * mul.terms[1][1], rel=1e-6)
    assert e.after[5].cell == (1, 2, 3) and e.after[5].offset == 0
    side = explain_cell(steps, by_name["side"].index, 1, 2, 3)
    assert [(after.name, after.cell, after.offset) for after in side.after[:1]] == [("cat", (4, 2, 3), 3)]
    assert side.after[1].name == "pool" and side.after[1].reads == "cat"
    json.dumps(e.record(), allow_nan=False)  # the records are JSON


def test_explain_on_a_graph_model_from_the_command_line(tmp_path):
    """cnn explain --layer conv2 on a version-2 model shows the add with both values, and its JSON has inputs."""
    from test_graph_views import GRAPH
    from PIL import Image

    model = tmp_path / "res.json"
    model.write_text(json.dumps(GRAPH))
    image = tmp_path / "ramp.png"
    Image.fromarray((np.arange(64).reshape(8, 8) * 4).astype(np.uint8)).save(image)
    args = (str(image), "--model", str(model), "--layer", "conv2", "--at", "3,4")
    shown = invoke("explain", *args)
    assert shown.exit_code == 0, shown.stderr
    assert "conv2 (conv2d, reads relu1)" in shown.stdout and "add (reads conv2, relu1): conv2 " in shown.stdout
    document = json.loads(invoke("explain", *args, "--format", "json").stdout)
    assert document["layer"]["inputs"] == ["relu1"]
    assert document["after"][0]["name"] == "add" and document["after"][0]["input"] == "conv2"


# --- Every layer ----------------------------------------------------------------------------------


def test_a_dense_unit_shows_its_largest_terms_its_bias_and_its_class():
    """--layer fc2 --at 7 on the digits model: the class label, the 12 largest of 64 inputs x weights, what the
    rest add up to, the sum plus bias, and the softmax share it becomes; its value is the run's."""
    result = invoke("explain", DIGIT, "-m", "digits", "--layer", "fc2", "--at", "7")
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    assert "Cell: fc2 unit 7 (class 7) = " in out and "64 terms, the largest |x * weight| first" in out
    assert "input      x   weight   x * weight" in out and "the other 52 add up to " in out
    assert "y = x[0] * weight[7, 0] + ... + x[63] * weight[7, 63] + bias" in out
    assert "fc2's table shows" in out and "softmax: " in out and "becomes" in out
    trace = json.loads(invoke("run", DIGIT, "-m", "digits", "-f", "json").stdout)
    document = json.loads(invoke("explain", DIGIT, "-m", "digits", "--layer", "fc2", "--at", "7", "-f", "json").stdout)
    assert document["cell"] == {"index": 7, "label": "7", "class": True}
    assert document["layer"] == {"index": 13, "name": "fc2", "type": "dense", "input_shapes": [[64]],
                                 "output_shape": [10]}
    assert len(document["terms"]["rows"]) == 64 and document["terms"]["columns"][-1] == "x * weight"
    assert document["value"] == pytest.approx(trace["layers"][13]["values"][7], abs=1e-5)
    assert document["numbers"]["sum"] + document["numbers"]["bias"] == pytest.approx(document["value"], rel=1e-12)


def test_a_first_dense_layers_inputs_name_the_pooled_cells_they_were_flattened_from():
    """fc1 reads the flattened pool2 (through dropout): each input is named by pool2's channel, row and col."""
    document = json.loads(invoke("explain", DIGIT, "-m", "digits", "--layer", "fc1", "--at", "0", "-f", "json").stdout)
    assert document["terms"]["columns"] == ["input", "from", "x", "weight", "x * weight"]
    index, origin = document["terms"]["rows"][0][:2]
    channel, row, col = np.unravel_index(index, (32, 2, 2))
    assert origin == f"pool2[{channel}, {row}, {col}]"


def test_a_pooling_cell_shows_its_window_and_which_cell_won():
    """--layer pool1 (its largest value, by default): the 2x2 window on relu1 under it, and the max's
    place; the JSON's window holds the value (a ReLU's zeros may tie elsewhere, not at the maximum)."""
    document = json.loads(invoke("explain", DIGIT, "-m", "digits", "--layer", "pool1", "-f", "json").stdout)
    channel, row, col = (document["cell"][key] for key in ("channel", "row", "col"))
    result = invoke("explain", DIGIT, "-m", "digits", "--layer", "pool1", "--at", f"{channel},{row},{col}")
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    assert f"Cell: pool1 channel {channel}, row {row}, col {col} = " in out
    assert f"window on relu1 channel {channel}, rows {2 * row}..{2 * row + 1}, cols {2 * col}..{2 * col + 1}" in out
    words = " ".join(out.split())  # long lines wrap at 80 columns
    assert f"the largest of the 4 values in its 2x2 window (stride 2): at relu1 channel {channel}, row " in words
    assert "y = max of the window's values" in out
    window = document["window"]
    assert (window["rows"], window["cols"], len(window["winners"])) == ([2 * row, 2 * row + 1],
                                                                        [2 * col, 2 * col + 1], 1)
    (i, j), = window["winners"]
    assert window["values"][i][j] == document["value"] == max(max(r) for r in window["values"]) > 0


def test_a_vectors_default_cell_is_its_largest_and_softmax_marks_it():
    """--layer softmax without --at: the predicted class, its exponential's share, its row marked in the table."""
    trace = json.loads(invoke("run", DIGIT, "-m", "digits", "-f", "json").stdout)
    predicted = int(np.argmax(trace["layers"][14]["values"]))
    result = invoke("explain", DIGIT, "-m", "digits", "--layer", "softmax")
    assert result.exit_code == 0, result.stderr
    assert f"Cell: softmax unit {predicted} (class {predicted}) = " in result.stdout
    assert "<- this cell" in result.stdout and "y = exp(x - max) / (the sum of exp(x - max)" in result.stdout
    marked = next(line for line in result.stdout.splitlines() if "<- this cell" in line)
    assert marked.split()[:2] == [str(predicted), str(predicted)]


def test_batch_norm_and_activation_write_their_formulas_with_numbers():
    """bn2 writes (x - mean) / sqrt(var + eps) * weight + bias with the channel's numbers; relu3 max(x, 0)."""
    out = invoke("explain", DIGIT, "-m", "digits", "--layer", "bn2", "--at", "5,2,0").stdout
    assert "y = (x - mean) / sqrt(var + eps) * weight + bias\n  = (" in out and " + 1e-05) * " in out
    assert "mean and var are channel 5's running statistics" in out and "x = " in out and "is conv2's value" in out
    out = invoke("explain", DIGIT, "-m", "digits", "--layer", "relu3", "--at", "0").stdout
    assert "y = max(x, 0)\n  = max(" in out and "is fc1's value at unit 0" in out


def test_every_layer_of_a_model_with_every_type_explains_from_the_command_line(tmp_path):
    """`cnn explain --layer NAME` for each layer of the every-type model: exit 0 and a Cell line, as a table; the
    JSON of each parses with its value equal to its layer_value within float32 rounding."""
    from PIL import Image
    from test_explain_layers import every_type_document

    document = every_type_document()
    model = tmp_path / "every.json"
    model.write_text(json.dumps(document))
    image = tmp_path / "in.png"
    Image.fromarray(np.random.default_rng(7).integers(0, 255, (6, 7, 3), dtype=np.uint8)).save(image)
    for layer in document["layers"]:
        result = invoke("explain", str(image), "-m", str(model), "--layer", layer["name"], "--at", "min")
        assert result.exit_code == 0, (layer["name"], result.stderr)
        assert f"Cell: {layer['name']} " in result.stdout and result.stderr == ""
        shown = json.loads(invoke("explain", str(image), "-m", str(model), "--layer", layer["name"], "-f",
                                  "json").stdout)
        assert shown["value"] == pytest.approx(shown["layer_value"], rel=2e-5, abs=2e-5)


def test_full_shows_every_term_and_the_default_the_largest_twelve():
    """Without --full a dense unit's table holds its 12 largest terms and what the rest add up to; with it, all 64."""
    short = invoke("explain", DIGIT, "-m", "digits", "--layer", "fc2", "--at", "3").stdout
    full = invoke("explain", DIGIT, "-m", "digits", "--layer", "fc2", "--at", "3", "--full").stdout

    def rows(out):
        table = out.split("x * weight\n")[1].split("\n\n")[0]
        return [line for line in table.splitlines()[1:] if line.strip() and line.split()[0].isdigit()]

    assert len(rows(short)) == 12 and "the other 52 add up to" in short
    assert len(rows(full)) == 64 and "the other" not in full
    assert sorted(int(line.split()[0]) for line in rows(full)) == list(range(64))
