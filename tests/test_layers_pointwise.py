"""The activation, normalisation and shaping layers (engine/layers/activations.py, norms.py, shaping.py).

Reference: PyTorch 2.13's modules (torch.nn.ReLU6, Hardtanh, Hardswish, Hardsigmoid, SiLU, GELU, ELU,
PReLU, Softplus, Mish, Identity, ChannelShuffle, LayerNorm, GroupNorm, InstanceNorm2d,
LocalResponseNorm and torch.nn.functional.pad), whose float32 outputs tests/fixtures/
make_torch_pointwise.py stored in tests/data/torch_pointwise.npz; compared at float32 tolerance,
rtol = atol = 1e-5, and live when torch is importable. Besides: small cases worked by hand, and
formulas from scipy.special (erf, expit) and NumPy (logaddexp) in float64.
"""

import json
import math
import sys
import tracemalloc
import warnings

import numpy as np
import pytest
from conftest import ROOT, assert_array, traced_forward
from PIL import Image

from cnncli.engine.layers import (
    ELU, GELU, ChannelShuffle, GroupNorm, Hardsigmoid, Hardswish, Hardtanh, Identity, InstanceNorm2d, LayerNorm,
    LocalResponseNorm, Mish, Pad, PReLU, ReLU6, Reshape, SiLU, Slice, Softplus, layer_class,
)
from cnncli.engine.layers.base import keys_of
from cnncli.engine import pointwise
from cnncli.errors import ShapeError
from cnncli.io.jsonspec import Reader
from cnncli.io.modelfile import LayerSpec, _Weights, load_model

sys.path.insert(0, str(ROOT / "tests" / "fixtures"))
from make_torch_pointwise import torch_output  # noqa: E402

FIXTURE = np.load(ROOT / "tests" / "data" / "torch_pointwise.npz", allow_pickle=False)
CASES = json.loads(str(FIXTURE["cases"]))
TOLERANCE = {"rtol": 1e-5, "atol": 1e-5}  # float32
NEW_TYPES = ("relu6", "hardtanh", "hardswish", "hardsigmoid", "silu", "gelu", "elu", "prelu", "softplus", "mish",
             "identity", "channel_shuffle", "pad", "layernorm", "groupnorm", "instancenorm2d", "lrn")


def build(item, shape, stored=None):
    """The layer a model file's layer object makes on an input of ``shape``, its arrays inline or in
    ``stored`` (a weights file's ``<name>.<key>``), through the model reader's own checks."""
    kind = item["type"]
    cls = layer_class(kind)
    read = Reader("model.json", "layers[0]")
    read.object(item, "", ("name", "type", "inputs") + keys_of(cls, kind), cls.required)
    weights = _Weights(stored or {}, "weights.npz" if stored else None)
    layer = cls.from_spec(LayerSpec(read, item, kind, item.get("name", kind), (tuple(shape),), weights))
    weights.check_all_used()
    return layer


def fixture_case(case):
    """(layer, x, PyTorch's y, the case's arrays) for one stored case; the arrays go in as a weights file."""
    prefix = case["id"] + "/"
    arrays = {key[len(prefix):]: FIXTURE[key] for key in FIXTURE.files
              if key.startswith(prefix) and key[len(prefix):] not in ("x", "y")}
    x, y = FIXTURE[prefix + "x"], FIXTURE[prefix + "y"]
    item = dict(case["layer"], name="layer")
    layer = build(item, x.shape[1:], {f"layer.{key}": value for key, value in arrays.items()})
    return layer, x, y, arrays


def compare_with_torch(layer, x, y):
    """Our batch and per-sample outputs against PyTorch's ``y``: shape, dtype float32, rtol/atol 1e-5.

    Where PyTorch's float32 overflows to inf from a finite input (x * 6 in hardswish, x * (1 + erf)
    in gelu, for x near 3e38) ours is the true value, x itself; checked as such."""
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        out = layer.forward(x, batched=True)
    overflowed = np.isinf(y) & np.isfinite(x) if x.shape == y.shape else np.zeros(y.shape, bool)
    if overflowed.any():
        assert layer.type in ("hardswish", "gelu"), f"{layer.type}: PyTorch overflowed where not expected"
        assert_array(out[overflowed], x[overflowed], rtol=0, atol=0)
        y = np.where(overflowed, x, y)
    assert_array(out, y, dtype=np.float32, **TOLERANCE)
    for i in range(x.shape[0]):
        assert_array(layer.forward(x[i]), y[i], dtype=np.float32, **TOLERANCE)
    assert layer.output_shape(x.shape[1:]) == y.shape[1:]


def test_fixture_covers_every_new_type_with_several_settings():
    """PyTorch's outputs are stored for each new type, at least twice (settings or input ranges)."""
    kinds = [layer_class(case["layer"]["type"]).types[0] for case in CASES]
    assert {kind: kinds.count(kind) for kind in NEW_TYPES if kinds.count(kind) < 2} == {}
    assert str(FIXTURE["torch_version"]).startswith("2.13")


@pytest.mark.parametrize("case", CASES, ids=[case["id"] for case in CASES])
def test_matches_pytorch_fixture(case):
    """Reference: PyTorch's float32 output stored in tests/data/torch_pointwise.npz (rtol/atol 1e-5)."""
    layer, x, y, _ = fixture_case(case)
    compare_with_torch(layer, x, y)


def test_matches_pytorch_live():
    """Reference: PyTorch itself, when installed, on the fixture's inputs: the stored outputs are its own."""
    torch = pytest.importorskip("torch")
    for case in CASES:
        layer, x, _, arrays = fixture_case(case)
        compare_with_torch(layer, x, torch_output(torch, case["layer"], x, arrays))


# --- Worked by hand ------------------------------------------------------------------------------------

def _f32(values):
    return np.asarray(values, dtype=np.float32)


def test_clipping_activations_by_hand():
    """relu6 clips to [0, 6]; hardtanh to its bounds; hardsigmoid is (x + 3) / 6 clipped to [0, 1];
    hardswish is x times that: -3 -> 0, 0 -> 0, 1 -> 4/6, 3 -> 3."""
    x = _f32([-4, -3, 0, 1, 3, 7])
    assert_array(ReLU6().forward(x), _f32([0, 0, 0, 1, 3, 6]), dtype=np.float32, rtol=0, atol=0)
    assert_array(Hardtanh(-2, 2.5).forward(x), _f32([-2, -2, 0, 1, 2.5, 2.5]), rtol=0, atol=0)
    assert_array(Hardsigmoid().forward(x), _f32([0, 0, 0.5, 4 / 6, 1, 1]), rtol=1e-7, atol=0)
    assert_array(Hardswish().forward(x), _f32([0, 0, 0, 4 / 6, 3, 7]), rtol=1e-7, atol=0)


def test_exponential_activations_by_hand():
    """elu(ln 0.5) = alpha (0.5 - 1); softplus(0) = ln 2 / beta and, past the threshold, x;
    silu(0) = 0 and silu(ln 3) = ln 3 * 3/4; gelu(0) = 0, gelu(1) = Phi(1) = 0.8413447;
    mish(0) = 0; prelu scales negatives of each channel by its own slope."""
    assert_array(ELU(2.0).forward(_f32([math.log(0.5), 0, 2])), _f32([-1, 0, 2]), rtol=1e-6, atol=1e-7)
    assert_array(Softplus(2.0, 5.0).forward(_f32([0, 2, 3])), _f32([math.log(2) / 2, math.log1p(math.exp(4)) / 2, 3]),
                 rtol=1e-6, atol=0)
    assert_array(SiLU().forward(_f32([0, math.log(3)])), _f32([0, 0.75 * math.log(3)]), rtol=1e-6, atol=0)
    assert_array(GELU().forward(_f32([0, 1, -1])), _f32([0, 0.8413447, -0.1586553]), rtol=1e-6, atol=0)
    assert_array(Mish().forward(_f32([0])), _f32([0]), rtol=0, atol=0)
    x = _f32([[[-1, 2]], [[-4, -0.5]]])  # 2 channels of 1 x 2
    assert_array(PReLU(_f32([0.5, 0.25])).forward(x), _f32([[[-0.5, 2]], [[-1, -0.125]]]), rtol=0, atol=0)


def test_shaping_layers_by_hand():
    """channel_shuffle of 6 channels in 2 groups orders them 0, 3, 1, 4, 2, 5; pad [1, 0, 0, 1]
    adds a column on the left and a row at the bottom; reflect mirrors without the edge (dcb|abcd);
    identity returns its input itself."""
    x = np.arange(6, dtype=np.float32).reshape(6, 1, 1)
    assert_array(ChannelShuffle(2).forward(x).reshape(-1), _f32([0, 3, 1, 4, 2, 5]), rtol=0, atol=0)
    row = _f32([[[1, 2, 3, 4]]])
    assert_array(Pad((1, 0, 0, 1), value=9).forward(row), _f32([[[9, 1, 2, 3, 4], [9, 9, 9, 9, 9]]]), rtol=0, atol=0)
    assert_array(Pad((3, 1, 0, 0), "reflect").forward(row), _f32([[[4, 3, 2, 1, 2, 3, 4, 3]]]), rtol=0, atol=0)
    assert_array(Pad((2, 2, 0, 0), "circular").forward(row), _f32([[[3, 4, 1, 2, 3, 4, 1, 2]]]), rtol=0, atol=0)
    assert Identity().forward(row) is row


def test_reshape_is_numpys_row_major_reshape_of_each_sample():
    """reshape [2, 1, -1] of a 6-vector gives numpy's x.reshape(2, 1, 3); a batch keeps its axis;
    [-1] of a map is its flatten; the output is a view (nothing copied)."""
    x = np.arange(6, dtype=np.float32)
    assert_array(Reshape((2, 1, -1)).forward(x), x.reshape(2, 1, 3), rtol=0, atol=0)
    batch = np.stack([x, -x])
    assert_array(Reshape((2, 1, 3)).forward(batch, batched=True), batch.reshape(2, 2, 1, 3), rtol=0, atol=0)
    cube = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    flat = Reshape((-1,)).forward(cube)
    assert_array(flat, cube.reshape(-1), rtol=0, atol=0)
    assert np.shares_memory(flat, cube)
    with pytest.raises(ShapeError, match="do not fill"):
        Reshape((5, 1, 1)).output_shape((6,))
    with pytest.raises(ShapeError, match="a vector"):
        Reshape((2, 3)).output_shape((6,))


def test_slice_cuts_as_python_slicing_does():
    """slice dim 1 [1:5:2] of 6 channels keeps channels 1 and 3; negative ends count from the end, and
    an end beyond the size (ONNX's INT64_MAX) is clamped; on a batch dim 1 is still the channels."""
    x = np.arange(6 * 2 * 3, dtype=np.float32).reshape(6, 2, 3)
    assert_array(Slice(1, 1, 5, 2).forward(x), x[1:5:2], rtol=0, atol=0)
    assert_array(Slice(3, -2, 1 << 62).forward(x), x[:, :, -2:], rtol=0, atol=0)
    assert_array(Slice(-2, 0, 1).forward(x), x[:, :1], rtol=0, atol=0)
    assert Slice(1, 1, 5, 2).output_shape((6, 2, 3)) == (2, 2, 3)
    batch = np.stack([x, -x])
    assert_array(Slice(1, 2, 4).forward(batch, batched=True), batch[:, 2:4], rtol=0, atol=0)
    assert Slice(1, 2, 4).forward(x).flags.c_contiguous
    with pytest.raises(ShapeError, match="leave nothing"):
        Slice(1, 4, 2).output_shape((6, 2, 3))


def test_normalisations_by_hand():
    """[1, 2, 3, 4] has mean 2.5 and (biased) variance 1.25, so layernorm gives (x - 2.5) / sqrt(1.25 + eps);
    groupnorm with one group and instancenorm of a one-channel map give the same; lrn of size 1,
    alpha 1, beta 1, k 1 on one channel is x / (1 + x^2)."""
    x = _f32([1, 2, 3, 4])
    expected = (x - 2.5) / np.sqrt(np.float32(1.25 + 1e-5))
    assert_array(LayerNorm((4,)).forward(x), expected, dtype=np.float32, rtol=1e-6, atol=1e-7)
    assert_array(GroupNorm(1).forward(x.reshape(1, 2, 2)), expected.reshape(1, 2, 2), rtol=1e-6, atol=1e-7)
    assert_array(InstanceNorm2d().forward(x.reshape(1, 2, 2)), expected.reshape(1, 2, 2), rtol=1e-6, atol=1e-7)
    scaled = LayerNorm((4,), _f32([1, 2, 1, 2]), _f32([0, 0, 1, 1])).forward(x)
    assert_array(scaled, expected * _f32([1, 2, 1, 2]) + _f32([0, 0, 1, 1]), rtol=1e-6, atol=1e-7)
    assert_array(LocalResponseNorm(1, 1.0, 1.0, 1.0).forward(x.reshape(1, 1, 4)), (x / (1 + x * x)).reshape(1, 1, 4),
                 rtol=1e-6, atol=0)


def test_lrn_sums_the_window_of_neighbouring_channels():
    """With size 3 (one channel each side), alpha 3 (alpha / size = 1), beta 1, k 0 on channels of
    ones, twos and threes: channel 0 divides by 1 + 4, channel 1 by 1 + 4 + 9, channel 2 by 4 + 9."""
    x = np.repeat(_f32([1, 2, 3]), 4).reshape(3, 2, 2)
    expected = np.repeat(_f32([1 / 5, 2 / 14, 3 / 13]), 4).reshape(3, 2, 2)
    assert_array(LocalResponseNorm(3, 3.0, 1.0, 0.0).forward(x), expected, rtol=1e-6, atol=0)


# --- Formulas in float64 ----------------------------------------------------------------------------------

def test_activations_match_scipy_and_numpy_formulas_in_float64():
    """Reference: scipy.special.erf and erfc (exact gelu), expit (silu), np.logaddexp (softplus, mish), in
    float64 over -30..30 and beyond; gelu to rtol 1e-6 (its erfc is Numerical Recipes', fractional error
    < 1.2e-7), also where x * Phi(x) is tiny (1 + erf(x / sqrt 2) cancels there: erfc is the reference)."""
    import scipy.special as special
    x = np.concatenate([np.linspace(-30, 30, 6001), [-700.0, -1e5, 1e5, 700.0]])
    gelu = GELU().forward(x)
    assert_array(gelu, 0.5 * x * special.erfc(-x / np.sqrt(2)), dtype=np.float64, rtol=1e-6, atol=0)
    near = x >= -5
    assert_array(gelu[near], 0.5 * x[near] * (1 + special.erf(x[near] / np.sqrt(2))), rtol=1e-6, atol=0)
    inner = np.sqrt(2 / np.pi) * (x + 0.044715 * np.clip(x, -1e3, 1e3) ** 3)
    assert_array(GELU("tanh").forward(x), 0.5 * x * (1 + np.tanh(inner)), dtype=np.float64, rtol=1e-12, atol=1e-300)
    assert_array(SiLU().forward(x), x * special.expit(x), dtype=np.float64, rtol=1e-14, atol=0)
    assert_array(Softplus().forward(x), np.where(x > 20, x, np.logaddexp(0, x)), rtol=1e-14, atol=0)
    assert_array(Softplus(3.0, 12.0).forward(x), np.where(3 * x > 12, x, np.logaddexp(0, 3 * x) / 3), rtol=1e-14,
                 atol=0)
    assert_array(Mish().forward(x), x * np.tanh(np.logaddexp(0, x)), rtol=1e-14, atol=0)
    assert_array(ELU(0.7).forward(x), np.where(x > 0, x, 0.7 * np.expm1(np.minimum(x, 0))), rtol=1e-15, atol=0)


ACTIVATION_FUNCTIONS = {
    "relu6": pointwise.relu6, "hardtanh": pointwise.hardtanh, "hardswish": pointwise.hardswish,
    "hardsigmoid": pointwise.hardsigmoid, "silu": pointwise.silu, "gelu": pointwise.gelu,
    "gelu_tanh": lambda x: pointwise.gelu(x, "tanh"), "elu": pointwise.elu, "softplus": pointwise.softplus,
    "softplus_beta": lambda x: pointwise.softplus(x, 10.0, 100.0), "mish": pointwise.mish,
    "prelu": lambda x: pointwise.prelu(x, np.full(1, 0.25)),
}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind", sorted(ACTIVATION_FUNCTIONS))
def test_activations_stay_finite_and_quiet_on_huge_inputs(kind, dtype):
    """Inputs up to the dtype's largest give no overflow, no NaN and no warning, in the input's dtype;
    NaN stays NaN."""
    function = ACTIVATION_FUNCTIONS[kind]
    big = np.finfo(dtype).max
    x = np.array([-big, -1e30, -1e4, -100, -1, -0.0, 0, 1, 100, 1e4, 1e30, big], dtype=dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(over="raise", invalid="raise", divide="raise"):
            out = function(x)
    assert out.dtype == dtype and out.shape == x.shape
    assert np.isfinite(out).all()
    assert np.isnan(function(np.array([np.nan], dtype))).all()


def test_every_activation_has_its_memory_counted():
    """pointwise.WORK names every activation function the layers call (and gelu's tanh form)."""
    assert set(pointwise.WORK) == {kind for kind in ACTIVATION_FUNCTIONS if kind != "softplus_beta"}


# --- Through model files and the command line --------------------------------------------------------------

def _every_type_model(tmp_path):
    """A version-2 model on a 3 x 6 x 7 rgb image using every new type, in a graph, to 3 classes."""
    rng = np.random.default_rng(5)
    w = lambda *shape: rng.uniform(-1, 1, shape).round(3).tolist()  # noqa: E731
    layers = [
        {"name": "conv", "type": "conv2d", "out_channels": 4, "kernel_size": 1, "weight": w(4, 3, 1, 1), "bias": w(4)},
        {"name": "relu6", "type": "relu6"},
        {"name": "hardtanh", "type": "hardtanh", "min_val": -0.5, "max_val": 2.0, "inputs": ["conv"]},
        {"name": "sum1", "type": "add", "inputs": ["relu6", "hardtanh"]},
        {"name": "hardswish", "type": "hardswish"},
        {"name": "hardsigmoid", "type": "hardsigmoid", "inputs": ["conv"]},
        {"name": "gate", "type": "mul", "inputs": ["hardswish", "hardsigmoid"]},
        {"name": "silu", "type": "silu"},
        {"name": "gelu", "type": "gelu", "approximate": "tanh"},
        {"name": "gelu_exact", "type": "gelu"},
        {"name": "elu", "type": "elu", "alpha": 0.5},
        {"name": "prelu", "type": "prelu", "num_parameters": 4, "weight": w(4)},
        {"name": "softplus", "type": "softplus", "beta": 2, "threshold": 10},
        {"name": "mish", "type": "mish"},
        {"name": "identity", "type": "identity"},
        {"name": "shuffle", "type": "channel_shuffle", "groups": 2},
        {"name": "pad", "type": "pad", "padding": [1, 0, 2, 1], "mode": "reflect"},
        {"name": "ln", "type": "layernorm", "normalized_shape": [9, 8], "weight": w(9, 8), "bias": w(9, 8)},
        {"name": "gn", "type": "groupnorm", "num_groups": 2, "num_channels": 4, "weight": w(4), "bias": w(4)},
        {"name": "in", "type": "instancenorm2d", "affine": True, "weight": w(4), "bias": w(4)},
        {"name": "lrn", "type": "lrn", "size": 3, "alpha": 0.1, "k": 2},
        {"name": "gap", "type": "globalavgpool2d"},
        {"name": "flat", "type": "flatten"},
        {"name": "fc", "type": "dense", "out_features": 3, "weight": w(3, 4), "bias": w(3)},
    ]
    document = {"format": "cnn-model", "version": 2, "name": "every", "input": {"size": [6, 7], "color": "rgb"},
                "labels": ["a", "b", "c"], "layers": layers}
    path = tmp_path / "every.json"
    path.write_text(json.dumps(document))
    return path, document


def test_model_file_with_every_type_runs_forward_and_predict(tmp_path):
    """Parses; forward gives each layer's map; predict on a batch of 3 equals forward sample by sample."""
    path, document = _every_type_model(tmp_path)
    model = load_model(str(path))
    types = {layer.type for layer in model.network.layers}
    assert set(NEW_TYPES) <= types
    batch = np.random.default_rng(6).uniform(0, 1, (3, 3, 6, 7)).astype(np.float32)
    steps = model.network.forward(batch[0])
    assert [step.name for step in steps[1:]] == [layer["name"] for layer in document["layers"]]
    assert steps[[s.name for s in steps].index("pad")].output.shape == (4, 9, 8)
    assert all(step.output.dtype == np.float32 and np.isfinite(step.output).all() for step in steps)
    together = model.network.predict(batch)
    assert together.shape == (3, 3)
    for i in range(3):
        assert_array(together[i], model.network.forward(batch[i])[-1].output, dtype=np.float32, rtol=1e-5, atol=1e-6)
    assert model.network.memory_estimate((3, 6, 7), 4) > 0
    rows = model.network.table((3, 6, 7))
    assert {row["type"] for row in rows} >= set(NEW_TYPES)


def test_cli_runs_the_model_as_json(tmp_path):
    """`cnn run IMG -m FILE -f json` exits 0 with JSON naming each layer's type."""
    from test_cli import invoke

    path, document = _every_type_model(tmp_path)
    image = tmp_path / "in.png"
    Image.fromarray(np.random.default_rng(7).integers(0, 255, (6, 7, 3), dtype=np.uint8)).save(image)
    result = invoke("run", str(image), "-m", str(path), "-f", "json")
    assert result.exit_code == 0, result.stderr
    types = {layer["type"] for layer in json.loads(result.stdout)["layers"]}
    assert types >= set(NEW_TYPES)


def test_weights_from_the_weights_file_equal_inline_ones(tmp_path, capsys):
    """prelu, layernorm, groupnorm and instancenorm2d read ``<name>.weight`` and ``<name>.bias`` from the
    .npz as conv does, giving the same network as inline arrays; a wrong shape there names the array."""
    from test_cli import run_main

    path, document = _every_type_model(tmp_path)
    stored = {}
    for layer in document["layers"]:
        if layer["type"] in ("prelu", "layernorm", "groupnorm", "instancenorm2d"):
            for key in ("weight", "bias"):
                if key in layer:
                    stored[f"{layer['name']}.{key}"] = np.asarray(layer.pop(key), np.float32)
    assert len(stored) == 7
    np.savez(tmp_path / "w.npz", **stored)
    document["weights"] = "w.npz"
    from_file = tmp_path / "from_file.json"
    from_file.write_text(json.dumps(document))
    x = np.random.default_rng(11).uniform(0, 1, (3, 6, 7)).astype(np.float32)
    inline, loaded = load_model(str(path)), load_model(str(from_file))
    for a, b in zip(inline.network.forward(x), loaded.network.forward(x)):
        assert_array(b.output, a.output, rtol=1e-6, atol=1e-7)
    stored["prelu.weight"] = stored["prelu.weight"][:3]
    np.savez(tmp_path / "w.npz", **stored)
    image = tmp_path / "in.png"
    Image.new("RGB", (7, 6)).save(image)
    code, out, err = run_main(capsys, "run", str(image), "-m", str(from_file))
    assert code == 1 and out == ""
    assert err == (f"cnn: {tmp_path / 'w.npz'}: prelu.weight: has shape (3,), but layer prelu needs (4,) from the "
                   "layers before it\n")


BAD = [  # (layer, the JSON path, words of the message); on a 4 x 6 x 7 map (after the conv)
    ({"type": "gelu", "approximate": "fast"}, "layers[1].approximate", "expected one of none, tanh"),
    ({"type": "hardtanh", "min_val": 1, "max_val": 1}, "layers[1].max_val", "above min_val"),
    ({"type": "elu", "alpha": "big"}, "layers[1].alpha", "expected a number"),
    ({"type": "softplus", "beta": 0}, "layers[1].beta", "above 0"),
    ({"type": "prelu", "num_parameters": 3}, "layers[1].num_parameters", "1 or the 4 channels"),
    ({"type": "prelu", "num_parameters": 4, "weight": [1, 2]}, "layers[1].weight", "has shape (2,)"),
    ({"type": "channel_shuffle", "groups": 3}, "layers[1].groups", "must divide the 4 channels"),
    ({"type": "pad", "padding": [1, 2]}, "layers[1].padding", "[left, right, top, bottom]"),
    ({"type": "pad", "padding": [7, 0, 0, 0], "mode": "reflect"}, "layers[1].padding", "below the map's size"),
    ({"type": "pad", "padding": 8, "mode": "circular"}, "layers[1].padding", "at most the map's size"),
    ({"type": "pad", "padding": 1, "mode": "edge"}, "layers[1].mode", "expected one of constant"),
    ({"type": "pad", "padding": 1, "mode": "reflect", "value": 2}, "layers[1].value", "constant only"),
    ({"type": "pad", "padding": -1}, "layers[1].padding", "at least 0"),
    ({"type": "layernorm", "normalized_shape": [6]}, "layers[1].normalized_shape", "last dimensions"),
    ({"type": "layernorm", "normalized_shape": [7], "elementwise_affine": False, "weight": [1] * 7},
     "layers[1].weight", "elementwise_affine is false"),
    ({"type": "groupnorm", "num_groups": 3, "affine": False}, "layers[1].num_groups", "must divide the 4 channels"),
    ({"type": "groupnorm", "num_groups": 2, "num_channels": 8}, "layers[1].num_channels", "gives 4"),
    ({"type": "groupnorm", "num_groups": 2}, "layers[1]", "needs 'weight'"),
    ({"type": "instancenorm2d", "running_mean": [0, 0, 0, 0]}, "layers[1].running_mean", "track_running_stats"),
    ({"type": "instancenorm", "num_features": 3}, "layers[1].num_features", "gives 4"),
    ({"type": "lrn", "size": 0}, "layers[1].size", "at least 1"),
    ({"type": "reshape", "shape": [5, -1]}, "layers[1].shape", "expected a vector (F,) or a map"),
    ({"type": "reshape", "shape": [5, 1, 1]}, "layers[1].shape", "do not fill shape"),
    ({"type": "reshape", "shape": [-1, -1, 8]}, "layers[1].shape", "one of them -1 at most"),
    ({"type": "reshape", "shape": "4x42"}, "layers[1].shape", "expected a list"),
    ({"type": "slice", "dim": 0, "start": 0, "end": 1}, "layers[1].dim", "dim 0 is the batch"),
    ({"type": "slice", "dim": 4, "start": 0, "end": 1}, "layers[1].dim", "out of range"),
    ({"type": "slice", "dim": 1, "start": 3, "end": 3}, "layers[1].end", "leave nothing"),
    ({"type": "slice", "dim": 1, "start": 0, "end": 2, "step": 0}, "layers[1].step", "at least 1"),
    ({"type": "slice", "dim": 1, "start": 0}, "layers[1]", "missing key 'end'"),
    ({"type": "lrn"}, "layers[1]", "missing key 'size'"),
    ({"type": "localresponsenorm", "size": 2, "beta": True}, "layers[1].beta", "expected a number"),
]


@pytest.mark.parametrize("layer, where, words", BAD, ids=[f"{b[0]['type']}-{i}" for i, b in enumerate(BAD)])
def test_bad_settings_are_one_cnn_line_naming_the_json_path(capsys, tmp_path, layer, where, words):
    """Exit 1 and one `cnn: FILE: layers[1].key: ...` line on stderr, nothing on stdout."""
    from test_cli import run_main

    document = {"format": "cnn-model", "version": 2, "input": {"size": [6, 7], "color": "rgb"},
                "layers": [{"type": "conv2d", "out_channels": 4, "kernel_size": 1, "bias": False,
                            "weight": [[[[1]]] * 3] * 4}, layer]}
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(document))
    image = tmp_path / "in.png"
    Image.new("RGB", (7, 6)).save(image)
    code, out, err = run_main(capsys, "run", str(image), "-m", str(path), "-f", "json")
    assert code == 1 and out == ""
    assert err.startswith(f"cnn: {path}: {where}") and words in err and len(err.strip().splitlines()) == 1, err


def test_shapes_that_do_not_fit_are_shape_errors():
    """output_shape says what does not fit, for layers built in Python and applied elsewhere."""
    cases = [
        (GroupNorm(3), (4, 5, 5), "do not split into 3 groups"),
        (LayerNorm((5,)), (4, 5, 6), "not the last dimensions"),
        (PReLU(np.ones(3, np.float32)), (4, 5, 5), "expected 1 or one per channel"),
        (Pad((5, 0, 0, 0), "reflect"), (1, 5, 5), "below the map's size"),
        (ChannelShuffle(3), (4, 2, 2), "do not split into 3 groups"),
        (InstanceNorm2d(num_features=2), (4, 2, 2), "normalises 2 channels"),
        (LocalResponseNorm(3), (4,), "(C, H, W) map"),
    ]
    for layer, shape, words in cases:
        with pytest.raises(ShapeError, match=words.replace("(", r"\(").replace(")", r"\)")):
            layer.output_shape(shape)


def test_settings_describe_and_params():
    """settings() is JSON with PyTorch's keys; describe() one line; params counts learned values only."""
    layers = [build({"type": "prelu", "num_parameters": 4, "weight": [0.1, 0.2, 0.3, 0.4]}, (4, 3, 3)),
              build({"type": "layernorm", "normalized_shape": [3, 3], "weight": [[1] * 3] * 3, "bias": False},
                    (4, 3, 3)),
              build({"type": "instancenorm2d", "affine": True, "track_running_stats": True, "weight": [1] * 4,
                     "bias": [0] * 4, "running_mean": [0] * 4, "running_var": [1] * 4}, (4, 3, 3)),
              build({"type": "gelu", "approximate": "tanh"}, (4, 3, 3)),
              build({"type": "pad", "padding": 2, "mode": "replicate"}, (4, 3, 3))]
    assert [layer.params for layer in layers] == [4, 9, 8, 0, 0]
    assert layers[1].settings() == {"normalized_shape": [3, 3], "eps": 1e-5, "elementwise_affine": True,
                                    "bias": False}
    assert layers[2].settings()["track_running_stats"] is True
    assert layers[4].settings() == {"padding": [2, 2, 2, 2], "mode": "replicate"}
    for layer in layers:
        json.dumps(layer.settings())
        assert "\n" not in layer.describe()
    assert layers[3].describe() == "tanh approximation" and layers[4].describe() == "2, replicate"


# --- Memory ---------------------------------------------------------------------------------------------------

def _every_layer(channels):
    rng = np.random.default_rng(8)
    ones = np.ones(channels, np.float32)
    return [
        ReLU6(), Hardtanh(-2, 2), Hardswish(), Hardsigmoid(), SiLU(), Mish(), GELU(), GELU("tanh"), ELU(0.5),
        PReLU(np.full(1, 0.25, np.float32)), PReLU(rng.uniform(0, 1, channels)), Softplus(), Softplus(2.0, 3.0),
        Identity(), ChannelShuffle(4), Pad((1, 2, 3, 4)), Pad((3, 3, 3, 3), "reflect"), Pad((0, 0, 0, 0)),
        LayerNorm((64,), np.ones(64, np.float32), np.zeros(64, np.float32)), LayerNorm((channels, 64, 64)),
        GroupNorm(4, ones, ones), GroupNorm(channels), InstanceNorm2d(), InstanceNorm2d(ones, ones, 1e-5, ones, ones),
        LocalResponseNorm(5, 1e-4, 0.75, 2.0), LocalResponseNorm(40), Slice(1, 1, channels, 2), Slice(3, 5, -5),
    ]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_forward_stays_within_working_bytes(dtype):
    """For every type: tracemalloc's peak during forward on a (16, 64, 64) map (and a batch of 2 of
    them) is at most working_bytes, the honest upper bound the memory estimate adds up."""
    rng = np.random.default_rng(9)
    x = rng.standard_normal((16, 64, 64)).astype(dtype)
    batch = rng.standard_normal((2, 16, 64, 64)).astype(dtype)
    for layer in _every_layer(16):
        for given, batched in ((x, False), (batch, True)):
            shape = given.shape[1:] if batched else given.shape
            bound = layer.working_bytes(shape, itemsize=given.itemsize) * (given.shape[0] if batched else 1)
            tracemalloc.start()
            try:
                out = layer.forward(given, batched=batched)
                peak = tracemalloc.get_traced_memory()[1]
            finally:
                tracemalloc.stop()
            assert out.dtype == dtype
            assert peak <= bound, f"{layer.type} {layer.describe()}: peak {peak:,} > working_bytes {bound:,}"
            assert peak >= 0.9 * out.nbytes * (out is not given), f"{layer.type}: the output was not traced"


def test_memory_estimate_of_a_network_of_every_type_bounds_its_forward():
    """A conv then every new layer on 64 x 64 maps: Network.memory_estimate, which adds up each layer's
    working_bytes, stays above tracemalloc's peak of forward plus every map's statistics (as `cnn run`)."""
    from cnncli.engine.graph import Network
    from cnncli.engine.layers import Conv2d

    layers = [layer for layer in _every_layer(16) if not isinstance(layer, Pad)]
    layers += [Pad((1, 2, 3, 4), "replicate"), Pad((3, 3, 3, 3), "reflect")]
    rng = np.random.default_rng(10)
    conv = Conv2d(rng.standard_normal((16, 3, 3, 3)).astype(np.float32), padding=1, name="conv")
    network = Network((conv, *(_renamed(layer, f"l{i}") for i, layer in enumerate(layers))))
    x = rng.standard_normal((3, 64, 64)).astype(np.float32)
    estimate = network.memory_estimate(x.shape, 4)
    steps, peak = traced_forward(network, x)
    assert steps[-1].output.shape == (8, 77, 63)  # the slices keep 8 channels and 54 columns; the pads add 13, 9
    assert peak <= estimate, f"peak {peak:,} > estimate {estimate:,}"


def _renamed(layer, name):
    from dataclasses import replace

    return replace(layer, name=name)


def _random_item(rng, kind):
    """A layer object of ``kind`` with random settings, some of them out of range."""
    pick = lambda *values: values[int(rng.integers(len(values)))]  # noqa: E731
    small = lambda: int(rng.integers(-1, 7))  # noqa: E731
    settings = {
        "hardtanh": lambda: {"min_val": float(rng.uniform(-3, 1)), "max_val": float(rng.uniform(-1, 3))},
        "gelu": lambda: {"approximate": pick("none", "tanh", "fast")},
        "elu": lambda: {"alpha": float(rng.uniform(-2, 3))},
        "softplus": lambda: {"beta": float(rng.uniform(-1, 4)), "threshold": float(rng.uniform(-5, 30))},
        "prelu": lambda: {"num_parameters": pick(1, 2, 3, 4, 8), "init": float(rng.uniform(-1, 1))},
        "channel_shuffle": lambda: {"groups": small()},
        "pad": lambda: {"padding": pick(small(), [small() for _ in range(4)], [1, 2]),
                        "mode": pick("constant", "reflect", "replicate", "circular")},
        "layernorm": lambda: {"normalized_shape": [small() for _ in range(int(rng.integers(1, 4)))],
                              "elementwise_affine": False, "eps": float(rng.uniform(0, 1e-3))},
        "groupnorm": lambda: {"num_groups": small(), "affine": False},
        "instancenorm2d": lambda: {"eps": float(rng.uniform(0, 1e-2))},
        "lrn": lambda: {"size": small(), "alpha": float(rng.uniform(0, 1)), "beta": float(rng.uniform(0, 1)),
                        "k": float(rng.uniform(0.5, 2))},
    }.get(kind, dict)()
    return {"type": kind, **settings}


def test_random_settings_build_and_run_in_the_shape_they_promise_or_fail_cleanly():
    """Over 600 random layers of the new types on random maps and vectors: either a one-line CnnError,
    or forward on a sample and on a batch of 2 gives output_shape's shape, in the input's dtype, and the
    batch's rows equal the samples'."""
    from cnncli.errors import CnnError

    rng = np.random.default_rng(12)
    built = 0
    for trial in range(600):
        kind = NEW_TYPES[trial % len(NEW_TYPES)]
        item = _random_item(rng, kind)
        shape = tuple(int(v) for v in rng.integers(1, 7, int(rng.choice([1, 3]))))
        try:
            layer = build(item, shape)
            out_shape = layer.output_shape(shape)
        except CnnError as err:
            assert "\n" not in str(err)
            continue
        dtype = (np.float32, np.float64)[trial % 2]
        batch = rng.standard_normal((2, *shape)).astype(dtype)
        together = layer.forward(batch, batched=True)
        assert together.shape == (2, *out_shape) and together.dtype == dtype, (item, shape)
        for i in range(2):
            alone = layer.forward(batch[i])
            assert alone.shape == out_shape and alone.dtype == dtype, (item, shape)
            assert_array(together[i], alone, rtol=1e-6, atol=1e-6)
        built += 1
    assert 300 < built < 600
