"""globalmaxpool2d, adaptiveavgpool2d, adaptivemaxpool2d, upsample and conv_transpose2d.

References: PyTorch 2.13's own outputs (nn.AdaptiveMaxPool2d(1), nn.AdaptiveAvgPool2d,
nn.AdaptiveMaxPool2d, nn.Upsample, nn.UpsamplingNearest2d/Bilinear2d, nn.ConvTranspose2d), stored
in tests/data/torch_spatial.npz by tests/fixtures/make_torch_spatial.py and compared at float32
tolerance (rtol 1e-5, atol 1e-5), and live when torch is installed; hand-worked arrays;
scipy.ndimage.zoom; loop oracles kept here (one output cell, or one input cell, at a time).
"""

import json
import math
import tracemalloc

import numpy as np
import pytest
from conftest import ROOT, assert_array
from test_cli import run_main

from cnncli.engine import resample, transpose
from cnncli.engine.layers import AdaptivePool2d, ConvTranspose2d, GlobalMaxPool2d, Upsample, layer_class
from cnncli.errors import ShapeError
from cnncli.io.jsonspec import Reader
from cnncli.io.modelfile import LayerSpec, _Weights, load_model

FIXTURES = np.load(ROOT / "tests" / "data" / "torch_spatial.npz", allow_pickle=False)
CASES = sorted({key.split(".")[0] for key in FIXTURES.files if key.startswith("case")})
TOLERANCE = {"rtol": 1e-5, "atol": 1e-5}  # float32: PyTorch sums and rounds in its own order
DIGIT_7 = str(ROOT / "sample_images" / "digit_7.png")


def build(item, shape):
    """The layer a model file's object ``item`` makes for an input of ``shape`` (weights inline)."""
    spec = LayerSpec(Reader("test.json").within("layers[0]"), item, item["type"], "layer", (tuple(shape),),
                     _Weights({}, None))
    return layer_class(item["type"]).from_spec(spec)


def fixture(name):
    settings = json.loads(str(FIXTURES[f"{name}.settings"]))
    item = dict(settings)
    for key in ("weight", "bias"):
        if f"{name}.{key}" in FIXTURES.files:
            item[key] = FIXTURES[f"{name}.{key}"].tolist()
    return item, FIXTURES[f"{name}.x"], FIXTURES[f"{name}.y"]


# ------------------------------------------------------------------------------------ against PyTorch


def test_fixtures_cover_every_type_and_setting():
    """The stored cases hold every type, fractional scales, both align_corners, and every conv_transpose2d key."""
    items = [fixture(name)[0] for name in CASES]
    kinds = {item["type"] for item in items}
    assert kinds == {"globalmaxpool2d", "adaptiveavgpool2d", "adaptivemaxpool2d", "upsample", "upsamplingnearest2d",
                     "upsamplingbilinear2d", "conv_transpose2d"}
    scales = {item["scale_factor"] for item in items if not isinstance(item.get("scale_factor", []), list)}
    assert {0.5, 1.5, 1.2, 2.1, 0.7} <= scales
    assert {item.get("align_corners") for item in items if item.get("mode") == "bilinear"} == {None, True, False}
    transposed = [item for item in items if item["type"] == "conv_transpose2d"]
    for key in ("stride", "padding", "output_padding", "groups", "dilation", "bias"):
        assert any(key in item for item in transposed), key
    assert FIXTURES["torch_version"].item().startswith("2.13")


@pytest.mark.parametrize("name", CASES)
def test_layer_matches_pytorch(name):
    """Reference: PyTorch's output for the same settings, weights and (2, C, H, W) input; the batch
    (predict) and each map alone (forward) both match it, and output_shape gives its shape."""
    item, x, expected = fixture(name)
    layer = build(item, x.shape[1:])
    assert layer.output_shape(x.shape[1:]) == expected.shape[1:]
    assert_array(layer.forward(x, batched=True), expected, dtype=np.float32, **TOLERANCE)
    for sample, want in zip(x, expected):
        assert_array(layer.forward(sample), want, dtype=np.float32, **TOLERANCE)


def test_layers_match_live_pytorch_over_random_settings():
    """Reference: torch itself, when installed, on 200 random settings in float32 and float64."""
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    rng = np.random.default_rng(40)
    for trial in range(200):
        dtype = (np.float32, np.float64)[trial % 2]
        tol = TOLERANCE if dtype == np.float32 else {"rtol": 1e-10, "atol": 1e-10}
        h, w = (int(v) for v in rng.integers(1, 12, 2))
        x = rng.standard_normal((2, 2, h, w)).astype(dtype)
        kind = trial % 3
        if kind == 0:
            size = tuple(int(v) for v in rng.integers(1, 15, 2))
            for pool, function in (("avg", F.adaptive_avg_pool2d), ("max", F.adaptive_max_pool2d)):
                expected = function(torch.from_numpy(x), size).numpy()
                assert_array(resample.adaptive_pool2d(x, size, pool), expected, **tol)
        elif kind == 1:
            mode = ("nearest", "bilinear")[int(rng.integers(0, 2))]
            corners = bool(rng.integers(0, 2)) if mode == "bilinear" else None
            scale = tuple(float(v) for v in np.round(rng.uniform(0.2, 4, 2), int(rng.integers(1, 4))))
            if min(math.floor(h * scale[0]), math.floor(w * scale[1])) < 1:
                continue
            recompute = bool(rng.integers(0, 2))
            expected = F.interpolate(torch.from_numpy(x), scale_factor=scale, mode=mode, align_corners=corners,
                                     recompute_scale_factor=recompute).numpy()
            assert_array(resample.upsample(x, None, scale, mode, bool(corners), recompute), expected, **tol)
        else:
            channels = int(rng.integers(1, 4))
            groups = int(rng.choice([1, channels]))
            filters = groups * int(rng.integers(1, 3))
            kernel, stride, dilation = (tuple(int(v) for v in rng.integers(1, n, 2)) for n in (5, 4, 3))
            padding = tuple(int(v) for v in rng.integers(0, 3, 2))
            extra = tuple(int(rng.integers(0, max(s, d))) for s, d in zip(stride, dilation))
            x = rng.standard_normal((2, channels, h, w)).astype(dtype)
            weight = rng.standard_normal((channels, filters // groups, *kernel)).astype(dtype)
            bias = rng.standard_normal(filters).astype(dtype)
            try:
                expected = F.conv_transpose2d(torch.from_numpy(x), torch.from_numpy(weight), torch.from_numpy(bias),
                                              stride, padding, extra, groups, dilation).numpy()
            except RuntimeError:  # settings one of torch's backends refuses ("could not construct a memory descriptor")
                continue
            if expected.size == 0:  # torch gives an empty map; cnn refuses an output below 1x1
                with pytest.raises(ShapeError):
                    transpose.conv_transpose2d(x, weight, bias, stride, padding, extra, groups, dilation)
                continue
            actual = transpose.conv_transpose2d(x, weight, bias, stride, padding, extra, groups, dilation)
            assert_array(actual, expected, rtol=1e-5 if dtype == np.float32 else 1e-10, atol=1e-4 if dtype ==
                         np.float32 else 1e-10)


# ------------------------------------------------------------------------------------ worked by hand


def test_nearest_upsample_2x2_to_4x4_by_hand():
    """[[1, 2], [3, 4]] doubled: each cell becomes a 2x2 block, by size and by scale_factor."""
    x = np.array([[[1, 2], [3, 4]]], np.float32)
    expected = [[[1, 1, 2, 2], [1, 1, 2, 2], [3, 3, 4, 4], [3, 3, 4, 4]]]
    assert_array(Upsample(size=(4, 4)).forward(x), expected, dtype=np.float32, rtol=0, atol=0)
    assert_array(Upsample(scale_factor=(2.0, 2.0)).forward(x), expected, rtol=0, atol=0)


def test_fractional_nearest_uses_one_over_the_scale_factor():
    """5 cells by 1.5 give 7 (floor 7.5), cell i copying floor(i / 1.5): 0 0 1 2 2 3 4; given as
    size 7 the ratio is 5/7: 0 0 1 2 2 3 4 too; 3 cells by 1.2 give 3, copied (PyTorch's special case)."""
    x = np.arange(5, dtype=np.float32).reshape(1, 1, 5)
    assert_array(Upsample(scale_factor=(1.0, 1.5)).forward(x)[0, 0], [0, 0, 1, 2, 2, 3, 4], rtol=0, atol=0)
    assert_array(Upsample(size=(1, 7)).forward(x)[0, 0], [0, 0, 1, 2, 2, 3, 4], rtol=0, atol=0)
    assert_array(resample.nearest_indices(3, 3, 1.2), [0, 1, 2], rtol=0, atol=0)
    assert_array(resample.nearest_indices(6, 3, 0.5), [0, 2, 4], rtol=0, atol=0)


def test_bilinear_by_hand():
    """[0, 1] to 3 cells: align_corners gives 0, 0.5, 1; without, the cell centres at 1/3 and 2/3 of
    the way land on src -1/6 (clamped to 0), 0.5, 7/6 (past the last cell: 1)."""
    x = np.array([[[0.0, 1.0]]])
    assert_array(Upsample(size=(1, 3), mode="bilinear", align_corners=True).forward(x)[0, 0], [0, 0.5, 1],
                 rtol=0, atol=1e-15)
    assert_array(Upsample(size=(1, 3), mode="bilinear").forward(x)[0, 0], [0, 0.5, 1], rtol=0, atol=1e-15)
    x = np.array([[[0.0, 4.0]]])  # to 4: src = 0.5*(i + 0.5) - 0.5 = -0.25, 0.25, 0.75, 1.25
    assert_array(Upsample(scale_factor=(1.0, 2.0), mode="bilinear").forward(x)[0, 0], [0, 1, 3, 4], rtol=0, atol=1e-12)


def test_adaptive_pools_by_hand():
    """Five cells into three bins [0, 2), [1, 4), [3, 5): overlapping, as PyTorch's; into seven:
    bins of one or two cells."""
    x = np.array([[[1.0, 5.0, 2.0, 8.0, 3.0]]])
    assert_array(AdaptivePool2d("avg", (1, 3)).forward(x)[0, 0], [3.0, 5.0, 5.5], rtol=0, atol=1e-15)
    assert_array(AdaptivePool2d("max", (1, 3)).forward(x)[0, 0], [5.0, 8.0, 8.0], rtol=0, atol=0)
    start, end = resample.adaptive_bins(5, 7)
    assert start.tolist() == [0, 0, 1, 2, 2, 3, 4] and end.tolist() == [1, 2, 3, 3, 4, 5, 5]
    assert_array(AdaptivePool2d("avg", (1, 7)).forward(x)[0, 0], [1, 3, 3.5, 2, 5, 5.5, 3], rtol=0, atol=1e-15)
    assert_array(AdaptivePool2d("max", (None, 2)).forward(x)[0, 0], [5, 8], rtol=0, atol=0)


def test_global_max_pool_by_hand_and_nan():
    """Each channel's largest value; a NaN anywhere in a channel makes it NaN, as in PyTorch."""
    x = np.array([[[1, -2], [7, 3]], [[-1, -5], [-3, -4]]], np.float32)
    assert_array(GlobalMaxPool2d().forward(x), [[[7]], [[-1]]], dtype=np.float32, rtol=0, atol=0)
    x[1, 0, 1] = np.nan
    assert np.isnan(GlobalMaxPool2d().forward(x)[1, 0, 0])
    assert np.isnan(AdaptivePool2d("max", (2, 1)).forward(x)[1, 0, 0])


def test_transposed_conv_one_channel_2x2_by_hand():
    """Input [[1, 2], [3, 4]], kernel [[1, 10], [100, 1000]], stride 2: each cell stamps the kernel
    times itself into its own 2x2 block; stride 1: the stamps overlap and add."""
    x = np.array([[[1, 2], [3, 4]]], np.float32)
    k = np.array([[[[1, 10], [100, 1000]]]], np.float32)  # (C=1, F=1, 2, 2)
    stamped = [[[1, 10, 2, 20], [100, 1000, 200, 2000], [3, 30, 4, 40], [300, 3000, 400, 4000]]]
    assert_array(ConvTranspose2d(k, stride=(2, 2)).forward(x), stamped, dtype=np.float32, rtol=0, atol=0)
    overlapped = [[[1, 12, 20], [103, 1234, 2040], [300, 3400, 4000]]]
    assert_array(ConvTranspose2d(k).forward(x), overlapped, rtol=0, atol=0)
    # padding 1 crops a cell off each side; output_padding 1 gives back the bottom row and right column.
    cropped = ConvTranspose2d(k, stride=(2, 2), padding=(1, 1), output_padding=(1, 1)).forward(x)
    assert_array(cropped, [[[1000, 200, 2000], [30, 4, 40], [3000, 400, 4000]]], rtol=0, atol=0)
    # stride 3 leaves a gap between stamps; output_padding 1 adds a last row and column: only the bias there.
    gapped = ConvTranspose2d(k, np.array([0.5], np.float32), (3, 3), output_padding=(1, 1)).forward(x) - 0.5
    rows = [[1, 10, 0, 2, 20, 0], [100, 1000, 0, 200, 2000, 0], [0] * 6,
            [3, 30, 0, 4, 40, 0], [300, 3000, 0, 400, 4000, 0], [0] * 6]
    assert_array(gapped, [rows], rtol=0, atol=0)


def _transposed_oracle(x, weight, bias, stride, padding, extra, groups, dilation):
    """One input cell at a time: it adds its value times the kernel at h*stride + i*dilation - padding."""
    c, h, w = x.shape
    _, per_group, kh, kw = weight.shape
    out_h = (h - 1) * stride[0] - 2 * padding[0] + dilation[0] * (kh - 1) + extra[0] + 1
    out_w = (w - 1) * stride[1] - 2 * padding[1] + dilation[1] * (kw - 1) + extra[1] + 1
    out = np.zeros((per_group * groups, out_h, out_w))
    for ch in range(c):
        group = ch // (c // groups)
        for f in range(per_group):
            for r in range(h):
                for s in range(w):
                    for i in range(kh):
                        for j in range(kw):
                            y, z = r * stride[0] + i * dilation[0] - padding[0], s * stride[1] + j * dilation[1] - padding[1]
                            if 0 <= y < out_h and 0 <= z < out_w:
                                out[group * per_group + f, y, z] += x[ch, r, s] * weight[ch, f, i, j]
    return out + (0 if bias is None else bias[:, None, None])


def test_transposed_conv_matches_a_loop_oracle():
    """Reference: the scatter written as six loops, 60 random tiny settings in float64, banded
    tiles forced (columns of one input row at a time) on every other one."""
    rng = np.random.default_rng(41)
    for trial in range(60):
        channels, groups = ((2, 2), (3, 1), (4, 2), (1, 1))[trial % 4]
        per_group = int(rng.integers(1, 3))
        kernel, stride, dilation = (tuple(int(v) for v in rng.integers(1, n, 2)) for n in (4, 4, 3))
        padding = tuple(int(v) for v in rng.integers(0, 2, 2))
        extra = tuple(int(rng.integers(0, max(s, d))) for s, d in zip(stride, dilation))
        x = rng.standard_normal((channels, *(int(v) for v in rng.integers(1, 5, 2))))
        weight = rng.standard_normal((channels, per_group, *kernel))
        bias = rng.standard_normal(per_group * groups) if trial % 3 else None
        try:
            expected = _transposed_oracle(x, weight, bias, stride, padding, extra, groups, dilation)
        except ValueError:
            continue
        if min(expected.shape) < 1:
            continue
        limit = transpose.COLUMNS_ELEMENTS
        try:
            transpose.COLUMNS_ELEMENTS = 1 if trial % 2 else limit
            actual = transpose.conv_transpose2d(x, weight, bias, stride, padding, extra, groups, dilation)
        finally:
            transpose.COLUMNS_ELEMENTS = limit
        assert_array(actual, expected, dtype=np.float64, rtol=1e-12, atol=1e-12)


def _adaptive_oracle(x, out, kind):
    """One output cell at a time, over its bin [floor(i*H/out), ceil((i+1)*H/out))."""
    h, w = x.shape[-2:]
    y = np.empty(x.shape[:-2] + out)
    for i in range(out[0]):
        for j in range(out[1]):
            cell = x[..., i * h // out[0]:-(-(i + 1) * h // out[0]), j * w // out[1]:-(-(j + 1) * w // out[1])]
            y[..., i, j] = cell.max(axis=(-2, -1)) if kind == "max" else cell.mean(axis=(-2, -1))
    return y


def test_adaptive_pools_match_a_loop_oracle():
    """Reference: each output cell pooled over its bin by a loop; 80 random sizes down and up."""
    rng = np.random.default_rng(42)
    for _ in range(80):
        x = rng.standard_normal((2, 3, *(int(v) for v in rng.integers(1, 14, 2))))
        out = tuple(int(v) for v in rng.integers(1, 16, 2))
        for kind in ("avg", "max"):
            assert_array(resample.adaptive_pool2d(x, out, kind), _adaptive_oracle(x, out, kind), dtype=np.float64,
                         rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_upsample_matches_scipy_zoom(scale):
    """Reference: scipy.ndimage.zoom by whole factors: order 0 and 1 on pixel centres (grid_mode,
    edges extended) for nearest and bilinear; order 1 corner to corner for align_corners."""
    import scipy.ndimage as ndimage
    rng = np.random.default_rng(43 + scale)
    x = rng.standard_normal((3, 5, 7))
    factors = (1, scale, scale)
    centres = {"grid_mode": True, "mode": "nearest"}
    assert_array(resample.upsample(x, None, (scale, scale), "nearest"), ndimage.zoom(x, factors, order=0, **centres),
                 rtol=0, atol=0)
    assert_array(resample.upsample(x, None, (scale, scale), "bilinear"), ndimage.zoom(x, factors, order=1, **centres),
                 rtol=1e-12, atol=1e-12)
    out = (5 * scale, 7 * scale)
    assert_array(resample.upsample(x, out, None, "bilinear", align_corners=True),
                 ndimage.zoom(x, factors, order=1, mode="nearest"), rtol=1e-12, atol=1e-12)


# ------------------------------------------------------------------------------------ through model files


def _model_document():
    """A version-2 graph on a 6x6 gray input using every new type: a transposed conv (weights from
    the .npz) beside a nearest upsample of the input, joined, then bilinear, adaptive and global pools."""
    layers = [
        {"name": "up", "type": "convtranspose2d", "in_channels": 1, "out_channels": 4, "kernel_size": 3, "stride": 2,
         "padding": 1, "output_padding": 1},  # 12x12
        {"name": "near", "type": "upsample", "inputs": ["input"], "size": [12, 12]},
        {"name": "both", "type": "concat", "inputs": ["up", "near"]},  # (5, 12, 12)
        {"name": "smooth", "type": "upsample", "scale_factor": 1.5, "mode": "bilinear", "align_corners": False},
        {"name": "rows", "type": "adaptivemaxpool2d", "output_size": [5, None]},  # (5, 5, 18)
        {"name": "grid", "type": "adaptiveavgpool2d", "output_size": 3},  # (5, 3, 3)
        {"name": "half", "type": "upsamplingbilinear2d", "scale_factor": 2},  # (5, 6, 6)
        {"name": "down", "type": "conv_transpose2d", "out_channels": 2, "kernel_size": [1, 2], "bias": False,
         "weight": np.linspace(-1, 1, 20).reshape(5, 2, 1, 2).tolist()},  # (2, 6, 7)
        {"name": "peak", "type": "globalmaxpool2d"},
        {"type": "flatten"},
        {"name": "fc", "type": "linear", "out_features": 3},
    ]
    rng = np.random.default_rng(44)
    weights = {"up.weight": rng.standard_normal((1, 4, 3, 3)).astype(np.float32),
               "up.bias": rng.standard_normal(4).astype(np.float32),
               "fc.weight": rng.standard_normal((3, 2)).astype(np.float32), "fc.bias": np.zeros(3, np.float32)}
    return {"format": "cnn-model", "version": 2, "name": "spatial", "input": {"size": [6, 6]},
            "labels": ["a", "b", "c"], "layers": layers, "weights": "spatial.npz"}, weights


def _write(folder, document, weights):
    np.savez(folder / "spatial.npz", **weights)
    path = folder / "spatial.json"
    path.write_text(json.dumps(document))
    return str(path)


def test_model_file_with_every_type_builds_runs_and_predicts(tmp_path):
    """Each type parses from a model file; forward gives the shapes output_shape promised; predict on
    a batch of 3 equals each map's forward."""
    path = _write(tmp_path, *_model_document())
    model = load_model(path)
    types = [layer.type for layer in model.network.layers]
    assert types[:9] == ["conv_transpose2d", "upsample", "concat", "upsample", "adaptivemaxpool2d",
                         "adaptiveavgpool2d", "upsample", "conv_transpose2d", "globalmaxpool2d"]
    shapes = model.network.shapes((1, 6, 6))
    assert shapes[1:10] == [(4, 12, 12), (1, 12, 12), (5, 12, 12), (5, 18, 18), (5, 5, 18), (5, 3, 3), (5, 6, 6),
                            (2, 6, 7), (2, 1, 1)]
    rng = np.random.default_rng(45)
    batch = rng.standard_normal((3, 1, 6, 6)).astype(np.float32)
    steps = model.network.forward(batch[0])
    assert [step.output.shape for step in steps] == shapes
    together = model.network.predict(batch)
    for i in range(3):
        assert_array(together[i], model.network.forward(batch[i])[-1].output, dtype=np.float32, rtol=1e-5, atol=1e-6)
    rows = model.network.table((1, 6, 6))
    assert rows[0]["macs"] == 1 * 6 * 6 * 4 * 9 and rows[0]["params"] == 40  # each input cell x 4 filters x 3x3
    assert rows[0]["describe"] == "3x3, stride 2, padding 1, output_padding 1"
    assert rows[3]["settings"] == {"mode": "bilinear", "scale_factor": [1.5, 1.5], "recompute_scale_factor": False,
                                   "align_corners": False}
    assert rows[6]["describe"] == "bilinear x2, align_corners" and rows[5]["describe"] == "to 3x3"
    assert rows[4]["describe"] == "to 5 rows (columns kept)" and rows[4]["settings"] == {"output_size": [5, None]}


def test_cli_runs_a_model_with_every_type(tmp_path):
    """`cnn run IMG -m FILE -f json` and `cnn summary FILE` run the model: exit 0, JSON with every layer."""
    from test_cli import invoke

    path = _write(tmp_path, *_model_document())
    result = invoke("run", DIGIT_7, "-m", path, "-f", "json")
    assert result.exit_code == 0, result.stderr
    trace = json.loads(result.stdout)
    names = [layer["name"] for layer in trace["layers"]]
    assert names[:4] == ["input", "up", "near", "both"] and "peak" in names
    assert [p["label"] for p in trace["predictions"]] and trace["predictions"][0]["label"] in ("a", "b", "c")
    result = invoke("summary", path)
    assert result.exit_code == 0, result.stderr
    assert "conv_transpose2d" in result.stdout and "adaptivemaxpool2d" in result.stdout


BAD = [  # (layer index, change to its object, JSON path named, words of the message)
    (0, {"output_padding": 2}, "layers[0].output_padding", "smaller than either stride (2) or dilation (1)"),
    (0, {"padding_mode": "reflect"}, "layers[0].padding_mode", "only 'zeros'"),
    (0, {"groups": 3}, "layers[0].groups", "must divide"),
    (0, {"in_channels": 3}, "layers[0].in_channels", "gives 1 channels"),
    (0, {"padding": 9}, "layers[0]", "crops the 14x14 cells that the 6x6 input spreads to down to -4x-4"),
    (7, {"weight": [[[[1, 2]]]]}, "layers[7].weight", "has shape (1, 1, 1, 2)"),
    (1, {"scale_factor": 2}, "layers[1].scale_factor", "is given with size"),
    (1, {"size": None}, "layers[1]", "needs size or scale_factor"),
    (1, {"align_corners": True}, "layers[1].align_corners", "bilinear only"),
    (1, {"recompute_scale_factor": True}, "layers[1].recompute_scale_factor", "with scale_factor only"),
    (1, {"mode": "bicubic"}, "layers[1].mode", "expected one of nearest, bilinear"),
    (3, {"scale_factor": -1}, "layers[3].scale_factor", "must be above 0"),
    (3, {"scale_factor": [1, 2, 3]}, "layers[3].scale_factor", "got 3 values"),
    (3, {"scale_factor": 0.01}, "layers[3]", "at least 1x1"),
    (4, {"output_size": [0, None]}, "layers[4].output_size[0]", "at least 1"),
    (4, {"output_size": None}, "layers[4].output_size", "expected a whole number"),
    (4, {"return_indices": True}, "layers[4].return_indices", "must be false"),
    (5, {"output_size": [1, 2, 3]}, "layers[5].output_size", "got 3 values"),
    (6, {"mode": "nearest"}, "layers[6].mode", "unknown key"),
    (8, {"output_size": 1}, "layers[8].output_size", "unknown key"),
]


@pytest.mark.parametrize("index, change, path, words", BAD)
def test_bad_settings_are_one_line_naming_the_json_path(capsys, tmp_path, index, change, path, words):
    """Each bad setting: exit 1, nothing on stdout, one `cnn:` line naming the file and the layer's JSON path."""
    document, weights = _model_document()
    document["layers"][index].update(change)
    model = _write(tmp_path, document, weights)
    code, out, err = run_main(capsys, "run", DIGIT_7, "-m", model, "-f", "json")
    assert code == 1 and out == ""
    assert err.startswith(f"cnn: {model}: ") and err.endswith("\n") and len(err.splitlines()) == 1, err
    assert path in err and words in err, err


def test_layers_built_by_hand_check_their_shapes():
    """Built without a model file, the layers still refuse shapes that do not fit, naming what is wrong."""
    weight = np.ones((2, 3, 3, 3), np.float32)
    with pytest.raises(ShapeError, match="takes 2 input channels, the input has 4"):
        ConvTranspose2d(weight).output_shape((4, 5, 5))
    with pytest.raises(ShapeError, match="output_padding 2 must be smaller than either stride 2 or dilation 1"):
        ConvTranspose2d(weight, stride=(2, 2), output_padding=(2, 2)).output_shape((2, 5, 5))
    with pytest.raises(ShapeError, match="padding 2 on each side crops the 3x3 cells that the 1x1 input spreads to "
                                         "down to -1x-1; expected at least 1x1"):
        ConvTranspose2d(weight, padding=(2, 2)).output_shape((2, 1, 1))
    with pytest.raises(ShapeError, match="exactly one of size and scale_factor"):
        Upsample().output_shape((1, 4, 4))
    with pytest.raises(ShapeError, match="exactly one of size and scale_factor"):
        Upsample(size=(2, 2), scale_factor=(2.0, 2.0)).output_shape((1, 4, 4))
    with pytest.raises(ShapeError, match=r"at least 1x1, got 0x1 \(scale_factor 0.2 of 4x5\)"):
        Upsample(scale_factor=(0.2, 0.2)).output_shape((1, 4, 5))
    with pytest.raises(ShapeError, match="at least 1x1"):
        AdaptivePool2d("avg", (0, 3)).output_shape((1, 4, 4))
    with pytest.raises(ShapeError, match=r"takes a \(C, H, W\) map"):
        GlobalMaxPool2d().output_shape((10,))


def test_transposed_conv_counts_as_fvcore():
    """Multiply-adds: each input value times its (F/groups)*KH*KW weights (fvcore's count), from the
    output shape alone; parameters: weight and bias."""
    layer = ConvTranspose2d(np.zeros((64, 16, 3, 3), np.float32), np.zeros(32, np.float32), (2, 2), (1, 1), (1, 1),
                            groups=2)
    out = layer.output_shape((64, 56, 56))
    assert out == (32, 112, 112)
    assert layer.macs(out) == 64 * 56 * 56 * 16 * 9 and layer.params == 64 * 16 * 9 + 32
    assert layer.settings()["out_channels"] == 32 and layer.describe() == "3x3, stride 2, padding 1, output_padding 1, groups 2"


# ------------------------------------------------------------------------------------ memory


def _traced_peak(function):
    tracemalloc.start()
    try:
        result = function()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return peak, result


MEMORY = [  # (layer, input shape of one map)
    (GlobalMaxPool2d(), (16, 40, 33)),
    (AdaptivePool2d("avg", (7, 7)), (16, 56, 56)),
    (AdaptivePool2d("max", (5, None)), (16, 57, 43)),
    (AdaptivePool2d("avg", (60, 11)), (8, 40, 33)),
    (AdaptivePool2d("max", (90, 90)), (8, 40, 33)),
    (Upsample(scale_factor=(2.0, 2.0)), (16, 40, 33)),
    (Upsample(scale_factor=(1.5, 0.5), mode="bilinear"), (16, 40, 33)),
    (Upsample(size=(97, 61), mode="bilinear", align_corners=True), (16, 40, 33)),
    (ConvTranspose2d(np.ones((16, 8, 3, 3), np.float32), np.ones(8, np.float32), (2, 2), (1, 1), (1, 1)), (16, 40, 33)),
    (ConvTranspose2d(np.ones((64, 32, 4, 4), np.float32), None, (2, 2), (1, 1)), (64, 56, 56)),  # banded tiles
    (ConvTranspose2d(np.ones((16, 1, 3, 3)), groups=16, dilation=(2, 2)), (16, 40, 33)),  # float64 weights
]


@pytest.mark.parametrize("layer, shape", MEMORY, ids=[f"{layer.type}-{i}" for i, (layer, _) in enumerate(MEMORY)])
@pytest.mark.parametrize("n", [None, 3])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_forward_stays_within_working_bytes(layer, shape, n, dtype):
    """tracemalloc's peak while forward runs, on a map or a batch of 3, is at most working_bytes."""
    rng = np.random.default_rng(46)
    full = shape if n is None else (n, *shape)
    x = rng.standard_normal(full).astype(dtype)
    peak, y = _traced_peak(lambda: layer.forward(x, batched=n is not None))
    assert y.shape == ((*layer.output_shape(shape),) if n is None else (n, *layer.output_shape(shape)))
    bound = layer.working_bytes(full, itemsize=x.itemsize)
    assert peak <= bound, f"peak {peak:,} over the estimate {bound:,}"
    assert bound <= 4 * peak + (1 << 20), f"estimate {bound:,} far above the peak {peak:,}"  # honest, not loose


def test_network_estimate_bounds_a_forward_with_every_type(tmp_path):
    """Network.memory_estimate, from the layers' working_bytes, is above tracemalloc's peak of a forward."""
    model = load_model(_write(tmp_path, *_model_document()))
    x = np.random.default_rng(47).standard_normal((1, 6, 6)).astype(np.float32)

    def run():
        steps = model.network.forward(x)
        for step in steps:
            _ = step.stats  # computed, as cnn run does
        return steps

    peak, _ = _traced_peak(run)
    assert peak <= model.network.memory_estimate(x.shape, 4)
