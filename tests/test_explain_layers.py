"""`cnn explain` on every layer type (cnncli.engine.explain_layer): the working of any cell recomputes the
forward pass's own value, and each kind's working matches an independent reference (scipy, NumPy's own
padding, a brute-force loop kept here, or a hand-worked case)."""

import itertools
import json
import math

import numpy as np
import pytest
import scipy.special
from rich.console import Console

from cnncli import load_model
from cnncli.engine.explain_at import extreme_cell, find_layer, resolve_cell
from cnncli.engine.explain_layer import LayerExplanation, explain_layer, explainer_of
from cnncli.engine.graph import Network
from cnncli.engine.layers import Activation, BatchNorm, Dense, Flatten, GlobalAvgPool2d, Pool2d, Softmax, base
from cnncli.views.explain_layer import fill, layer_explanation_view


def every_type_document():
    """A version-2 model on a 3 x 6 x 7 rgb image using every registered layer class (each type name
    or alias at least once), in a graph with many outputs, to 3 labelled classes."""
    rng = np.random.default_rng(5)
    w = lambda *shape: rng.uniform(-1, 1, shape).round(3).tolist()  # noqa: E731
    pos = lambda *shape: rng.uniform(0.5, 2, shape).round(3).tolist()  # noqa: E731
    bn = ["bn"]
    layers = [
        {"name": "conv", "type": "conv2d", "out_channels": 4, "kernel_size": 3, "padding": 1, "weight": w(4, 3, 3, 3),
         "bias": w(4)},
        {"name": "bn", "type": "batchnorm2d", "running_mean": w(4), "running_var": pos(4), "weight": w(4),
         "bias": w(4)},
        {"name": "relu", "type": "relu"},
        {"name": "leaky", "type": "leaky_relu", "negative_slope": 0.1, "inputs": bn},
        {"name": "sig", "type": "sigmoid", "inputs": bn},
        {"name": "tanh", "type": "tanh", "inputs": bn},
        {"name": "relu6", "type": "relu6", "inputs": bn},
        {"name": "hardtanh", "type": "hardtanh", "min_val": -0.5, "max_val": 2.0, "inputs": bn},
        {"name": "hardswish", "type": "hardswish", "inputs": bn},
        {"name": "hardsigmoid", "type": "hardsigmoid", "inputs": bn},
        {"name": "hardsigmoid_onnx", "type": "hardsigmoid", "alpha": 0.2, "beta": 0.5, "inputs": bn},
        {"name": "silu", "type": "silu", "inputs": bn},
        {"name": "gelu", "type": "gelu", "approximate": "tanh", "inputs": bn},
        {"name": "gelu_exact", "type": "gelu", "inputs": bn},
        {"name": "elu", "type": "elu", "alpha": 0.5, "inputs": bn},
        {"name": "prelu", "type": "prelu", "num_parameters": 4, "weight": w(4), "inputs": bn},
        {"name": "softplus", "type": "softplus", "beta": 2, "threshold": 1, "inputs": bn},
        {"name": "mish", "type": "mish", "inputs": bn},
        {"name": "sum", "type": "add", "inputs": ["relu", "leaky", "sig"]},
        {"name": "diff", "type": "sub", "inputs": ["tanh", "relu6"]},
        {"name": "avg", "type": "mean", "inputs": ["hardtanh", "hardswish"]},
        {"name": "most", "type": "max", "inputs": ["hardsigmoid", "silu", "gelu"]},
        {"name": "least", "type": "min", "inputs": ["gelu_exact", "elu"]},
        {"name": "gap", "type": "globalavgpool2d", "inputs": ["prelu"]},
        {"name": "gated", "type": "mul", "inputs": ["softplus", "gap"]},
        {"name": "cat", "type": "concat",
         "inputs": ["sum", "diff", "avg", "most", "least", "gated", "mish", "hardsigmoid_onnx"]},
        {"name": "half", "type": "slice", "dim": 1, "start": 1, "end": 32, "step": 2},
        {"name": "shuffle", "type": "channel_shuffle", "groups": 4},
        {"name": "pad", "type": "pad", "padding": [1, 0, 2, 1], "mode": "reflect"},
        {"name": "pad0", "type": "pad", "padding": 1, "value": 0.5, "inputs": ["shuffle"]},
        {"name": "padc", "type": "pad", "padding": [0, 1, 1, 0], "mode": "circular", "inputs": ["shuffle"]},
        {"name": "padr", "type": "pad", "padding": [2, 0, 0, 1], "mode": "replicate", "inputs": ["shuffle"]},
        {"name": "ident", "type": "identity", "inputs": ["pad"]},
        {"name": "regrid", "type": "reshape", "shape": [8, -1, 6], "inputs": ["padr"]},
        {"name": "drop", "type": "dropout", "p": 0.2, "inputs": ["ident"]},
        {"name": "ln", "type": "layernorm", "normalized_shape": [9, 8], "weight": w(9, 8), "bias": w(9, 8)},
        {"name": "ln_all", "type": "layernorm", "normalized_shape": [16, 9, 8], "elementwise_affine": False,
         "inputs": ["drop"]},
        {"name": "gn", "type": "groupnorm", "num_groups": 4, "num_channels": 16, "weight": w(16), "bias": w(16),
         "inputs": ["drop"]},
        {"name": "in", "type": "instancenorm2d", "affine": True, "weight": w(16), "bias": w(16), "inputs": ["drop"]},
        {"name": "in_stats", "type": "instancenorm", "track_running_stats": True, "running_mean": w(16),
         "running_var": pos(16), "inputs": ["drop"]},
        {"name": "lrn", "type": "lrn", "size": 3, "alpha": 0.1, "k": 2, "inputs": ["drop"]},
        {"name": "lrn5", "type": "localresponsenorm", "size": 5, "alpha": 0.5, "beta": 0.5, "k": 1, "inputs": ["drop"]},
        {"name": "aff", "type": "affine", "scale": w(16), "shift": 0.25, "inputs": ["ln"]},
        {"name": "absval", "type": "abs", "inputs": ["aff"]},
        {"name": "logv", "type": "log", "inputs": ["absval"]},
        {"name": "sqrtv", "type": "sqrt", "inputs": ["absval"]},
        {"name": "expv", "type": "exp", "inputs": ["gn"]},
        {"name": "negv", "type": "neg", "inputs": ["in"]},
        {"name": "erfv", "type": "erf", "inputs": ["in_stats"]},
        {"name": "cube", "type": "pow", "exponent": 3, "inputs": ["lrn"]},
        {"name": "root", "type": "pow", "exponent": 0.5, "inputs": ["sqrtv"]},
        {"name": "inv", "type": "reciprocal", "inputs": ["expv"]},
        {"name": "maxpool", "type": "maxpool2d", "kernel_size": 3, "stride": 2, "padding": 1, "inputs": ["negv"]},
        {"name": "maxpool_ceil", "type": "maxpool2d", "kernel_size": 2, "stride": 2, "dilation": 2, "ceil_mode": True,
         "inputs": ["erfv"]},
        {"name": "avgpool", "type": "avgpool2d", "kernel_size": 3, "stride": 2, "padding": 1, "inputs": ["cube"]},
        {"name": "avgpool_ex", "type": "avgpool2d", "kernel_size": 3, "stride": 2, "padding": 1,
         "count_include_pad": False, "ceil_mode": True, "inputs": ["root"]},
        {"name": "gmp", "type": "globalmaxpool2d", "inputs": ["inv"]},
        {"name": "adavg", "type": "adaptiveavgpool2d", "output_size": [4, 3], "inputs": ["lrn5"]},
        {"name": "adavg_up", "type": "adaptiveavgpool2d", "output_size": [12, 11], "inputs": ["lrn5"]},
        {"name": "admax", "type": "adaptivemaxpool2d", "output_size": 3, "inputs": ["ln_all"]},
        {"name": "up", "type": "upsample", "scale_factor": 2, "mode": "nearest", "inputs": ["adavg"]},
        {"name": "up_bilinear", "type": "upsample", "size": [7, 5], "mode": "bilinear", "inputs": ["adavg"]},
        {"name": "up_corners", "type": "upsamplingbilinear2d", "scale_factor": 1.5, "inputs": ["admax"]},
        {"name": "up_near", "type": "upsamplingnearest2d", "size": [5, 7], "inputs": ["admax"]},
        {"name": "deconv", "type": "conv_transpose2d", "out_channels": 4, "kernel_size": 3, "stride": 2,
         "padding": 1, "output_padding": 1, "groups": 2, "weight": w(16, 2, 3, 3), "bias": w(4), "inputs": ["up"]},
        {"name": "deconv2", "type": "convtranspose2d", "out_channels": 2, "kernel_size": [2, 3], "dilation": 2,
         "bias": False, "weight": w(16, 2, 2, 3), "inputs": ["up_near"]},
        {"name": "chsoftmax", "type": "softmax", "dim": 1, "inputs": ["deconv"]},
        {"name": "rowlogsoftmax", "type": "logsoftmax", "dim": -1, "inputs": ["deconv"]},
        {"name": "pool_out", "type": "globalavgpool2d", "inputs": ["maxpool"]},
        {"name": "flat", "type": "flatten"},
        {"name": "bn1d", "type": "batchnorm1d", "running_mean": w(16), "running_var": pos(16), "affine": False},
        {"name": "fc", "type": "dense", "out_features": 3, "weight": w(3, 16), "bias": w(3)},
        {"name": "logprobs", "type": "logsoftmax", "inputs": ["fc"]},
        {"name": "probs", "type": "softmax", "inputs": ["fc"]},
    ]
    heads = [layer["name"] for layer in layers if layer["name"] in (
        "logprobs", "gmp", "adavg_up", "up_bilinear", "up_corners", "deconv2", "chsoftmax", "rowlogsoftmax",
        "maxpool_ceil", "avgpool", "avgpool_ex", "padc", "padr", "pad0", "lrn", "logv", "erfv", "regrid")]
    return {"format": "cnn-model", "version": 2, "name": "every", "input": {"size": [6, 7], "color": "rgb"},
            "labels": ["cat", "dog", "fox"], "layers": layers, "outputs": heads}


@pytest.fixture(scope="module")
def every_model(tmp_path_factory):
    path = tmp_path_factory.mktemp("every") / "every.json"
    path.write_text(json.dumps(every_type_document()))
    return load_model(str(path))


# The layers computing erf (exactly, or inside GELU) use Numerical Recipes' erfc, good to 1.2e-7:
# in float64 their values differ from the formula by that much, every other layer by rounding alone.
APPROXIMATE = {"erf", "gelu"}


def test_every_registered_layer_class_has_an_explainer():
    """Each class of the registry (every family loaded) has its explainer (conv has explain_cell, its term-by-term
    patch x kernel): no type falls back to "cannot explain"."""
    from cnncli.engine.layers import Conv2d

    missing = sorted({cls.__name__ for cls in base.all_types().values() if cls is not Conv2d and explainer_of(cls)
                      is None})
    assert missing == []


def test_the_every_type_model_uses_every_registered_class_and_name(every_model):
    """The acceptance model below holds a layer of each registered class, and each type name or alias appears."""
    assert {type(layer) for layer in every_model.network.layers} == set(base.all_types().values())
    names = {layer["type"] for layer in every_type_document()["layers"]}
    assert set(base.all_types()) <= names


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_random_cells_of_every_layer_type_recompute_the_forward_pass(every_model, dtype):
    """Reference: the forward pass's own map. For 10 random cells and the largest one of each of the 72 layers
    (every registered class), the working's float64 value equals the layer's output at that cell within float32
    rounding (rel and abs 2e-5), or for float64 within 1e-11 (3e-7 for erf and GELU, whose layers approximate
    erf to 1.2e-7); ``layer_value`` is the map's value exactly, and the record is JSON."""
    rng = np.random.default_rng(11)
    steps = every_model.network.forward(rng.uniform(-1, 1, (3, 6, 7)).astype(dtype))
    checked = set()
    for step in steps[1:]:
        shape = step.output.shape
        cells = [tuple(int(rng.integers(0, size)) for size in shape) for _ in range(10)]
        cells.append(extreme_cell(step.output, "max"))
        tolerance = 2e-5 if dtype == np.float32 else 3e-7 if step.type in APPROXIMATE else 1e-11
        for cell in cells:
            e = explain_layer(steps, step.index, cell, every_model.labels)
            expected = float(step.output[cell])
            assert e.layer_value == expected
            assert e.value == pytest.approx(expected, rel=tolerance, abs=tolerance), (step.name, cell)
            json.dumps(e.record(), allow_nan=False)
        checked.add(type(step.layer))
    assert checked == set(base.all_types().values())


def test_every_cell_of_small_layers_and_every_view_renders(every_model):
    """Every cell of every layer of a second input explains without error, and each layer's view renders at 60
    and 120 columns (the view is text only: no colour codes with NO_COLOR-like palette "none")."""
    steps = every_model.network.forward(np.random.default_rng(3).uniform(0, 1, (3, 6, 7)).astype(np.float32))
    for step in steps[1:]:
        for cell in itertools.islice(itertools.product(*map(range, step.output.shape)), 400):
            explain_layer(steps, step.index, cell, every_model.labels)
        e = explain_layer(steps, step.index, extreme_cell(step.output, "min"), every_model.labels)
        if isinstance(e, LayerExplanation):
            for width in (60, 120):
                console = Console(width=width, record=True, color_system=None)
                console.print(layer_explanation_view(e, steps, width, "none"))
                text = console.export_text()
                assert f"Cell: {step.name}" in text and "\x1b" not in text


def test_overflowing_and_nan_inputs_explain_without_an_internal_error(every_model):
    """Huge, tiny, NaN and infinite inputs: every layer's cells still explain (their check allows what the
    forward pass's own overflow does), never RuntimeError."""
    for scale, dtype in ((1e30, np.float32), (3e38, np.float32), (1e-40, np.float32), (1e308, np.float64)):
        x = (np.random.default_rng(4).uniform(-1, 1, (3, 6, 7)) * scale).astype(dtype)
        x[0, 0, 0], x[1, 1, 1], x[2, 4, 4] = np.nan, np.inf, -np.inf
        steps = every_model.network.forward(x)
        for step in steps[1:]:
            for cell in itertools.islice(itertools.product(*map(range, step.output.shape)), 0, None, 7):
                explain_layer(steps, step.index, cell, every_model.labels)


# --- Dense ------------------------------------------------------------------------------------


def test_a_dense_unit_is_its_inputs_times_weights_largest_first():
    """Hand-worked: x = (1, -2, 3), weights (0.5, 0.25, -1), bias 2: terms -3, 0.5, -0.5 (|.| largest first,
    ties in input order), sum -3, value -1; each input named by the map cell it was flattened from."""
    x = np.array([1, -2, 3], dtype=np.float32).reshape(3, 1, 1)
    dense = Dense(np.array([[0, 0, 0], [0.5, 0.25, -1]], dtype=np.float32), np.array([0, 2], dtype=np.float32),
                  name="fc")
    steps = Network((Flatten(name="flat"), dense)).forward(x)
    e = explain_layer(steps, 2, (1,))
    assert [row[0] for row in e.working.terms.rows] == [2, 0, 1]
    assert e.working.terms.rows[0] == (2, "input[2, 0, 0]", 3.0, -1.0, -3.0)
    assert (e.working.numbers["sum"], e.working.numbers["bias"], e.value, e.layer_value) == (-3, 2, -1, -1)
    assert [fill(line, e.working.numbers) for line in e.working.lines] == [
        "y = x[0] * weight[1, 0] + ... + x[2] * weight[1, 2] + bias", "  = (-3) + 2", "  = -1"]


def test_the_digits_models_units_are_numpys_matrix_product(every_model):
    """Reference: NumPy's float64 product x @ W^T + b of the bundled digits model's own weights, for every unit
    of fc1 and fc2; fc2's units carry the class labels, and fc1's inputs name pool2's cells."""
    model = load_model("digits")
    x = np.random.default_rng(2).uniform(0, 1, (1, 8, 8)).astype(np.float32)
    steps = model.network.forward(x)
    for name in ("fc1", "fc2"):
        step = next(s for s in steps if s.name == name)
        inputs = steps[step.index - 1].output.astype(np.float64)
        expected = inputs @ step.layer.weight.astype(np.float64).T + step.layer.bias.astype(np.float64)
        for unit in range(step.output.size):
            e = explain_layer(steps, step.index, (unit,), model.labels)
            assert e.value == pytest.approx(expected[unit], rel=1e-12, abs=1e-12)
            assert e.label == (str(unit) if name == "fc2" else "") and e.is_class == (name == "fc2")
    e = explain_layer(steps, find_layer(model.network.layers, "fc1"), (0,), model.labels)
    assert e.working.terms.columns[1] == "from" and {row[1][:6] for row in e.working.terms.rows} == {"pool2["}


# --- Pooling ----------------------------------------------------------------------------------

SEED_IMAGE = np.array([[1, 2, 3, 0, 1], [4, 5, 6, 1, 2], [7, 8, 9, 2, 3], [1, 2, 3, 4, 5], [6, 7, 8, 5, 6]],
                      dtype=np.float32)[None]  # 1, 5, 5


def pooled(*layers):
    return Network(layers).forward(SEED_IMAGE)


def test_a_max_pool_cell_shows_its_padded_window_and_the_winner():
    """Hand-worked on the seed image: a 3x3, stride-2, padding-1 max pool's corner cell reads rows and cols -1..1;
    row and col -1 are padding; the max, 5, is at row 1, col 1."""
    e = explain_layer(pooled(Pool2d("max", (3, 3), (2, 2), (1, 1), name="pool")), 1, (0, 0, 0))
    window = e.working.window
    assert (window.rows, window.cols) == ((-1, 0, 1), (-1, 0, 1))
    np.testing.assert_array_equal(window.padding, [[True] * 3, [True, False, False], [True, False, False]])
    np.testing.assert_array_equal(window.values[1:, 1:], [[1, 2], [4, 5]])
    assert window.winners == ((2, 2),) and e.value == 5.0
    assert "at input channel 0, row 1, col 1" in e.working.text and "padding takes no part" in e.working.text


@pytest.mark.parametrize("include, divisor", [(True, 9), (False, 4)])
def test_an_average_pool_divides_as_count_include_pad_says(include, divisor):
    """Hand-worked: the corner window holds 1 + 2 + 4 + 5 = 12 and 5 padding cells; PyTorch's divisor is 9 with
    count_include_pad, 4 without."""
    e = explain_layer(pooled(Pool2d("avg", (3, 3), (2, 2), (1, 1), count_include_pad=include, name="pool")), 1,
                      (0, 0, 0))
    assert (e.working.numbers["sum"], e.working.numbers["divisor"]) == (12, divisor)
    assert e.value == pytest.approx(12 / divisor) and e.layer_value == pytest.approx(12 / divisor)
    assert ("count_include_pad" in e.working.text) and (("false" in e.working.text) != include)


def test_adaptive_bins_are_pytorchs():
    """PyTorch's documented bins for 5 -> 3: [floor(i*5/3), ceil((i+1)*5/3)) = [0, 2), [1, 4), [3, 5); the
    average of each rectangle, its max for the max kind."""
    from cnncli.engine.layers import AdaptivePool2d

    steps = pooled(AdaptivePool2d("avg", (3, 3), name="pool"))
    for i, j in itertools.product(range(3), range(3)):
        e = explain_layer(steps, 1, (0, i, j))
        rows = range(math.floor(i * 5 / 3), math.ceil((i + 1) * 5 / 3))
        cols = range(math.floor(j * 5 / 3), math.ceil((j + 1) * 5 / 3))
        assert (e.working.window.rows, e.working.window.cols) == (tuple(rows), tuple(cols))
        assert e.value == pytest.approx(SEED_IMAGE[0][np.ix_(rows, cols)].mean())
    e = explain_layer(pooled(AdaptivePool2d("max", (3, 3), name="pool")), 1, (0, 1, 1))
    assert e.value == 9.0 and e.working.window.winners == ((1, 1),)


def test_global_pools_are_numpys_mean_and_max():
    """Reference: NumPy's mean and max over the whole plane."""
    from cnncli.engine.layers import GlobalMaxPool2d

    mean = explain_layer(pooled(GlobalAvgPool2d("gap")), 1, (0, 0, 0))
    assert mean.value == pytest.approx(SEED_IMAGE.mean()) and mean.working.numbers["divisor"] == 25
    top = explain_layer(pooled(GlobalMaxPool2d("gmp")), 1, (0, 0, 0))
    assert top.value == 9.0 and top.working.window.winners == ((2, 2),)


# --- Normalisations ---------------------------------------------------------------------------


def test_batch_norm_writes_its_formula_with_its_numbers():
    """Hand-worked: (x - mean) / sqrt(var + eps) * weight + bias with mean 1, var 3, eps 1, weight 3, bias 0.5:
    at x = 5, (5 - 1) / 2 * 3 + 0.5 = 6.5, written out step by step."""
    norm = BatchNorm(np.array([1.0]), np.array([3.0]), np.array([3.0]), np.array([0.5]), eps=1.0, name="bn")
    e = explain_layer(Network((norm,)).forward(SEED_IMAGE.astype(np.float64)), 1, (0, 1, 1))
    assert e.value == 6.5 == e.layer_value
    assert [fill(line, e.working.numbers) for line in e.working.lines] == [
        "y = (x - mean) / sqrt(var + eps) * weight + bias", "  = (5 - 1) / sqrt(3 + 1) * 3 + 0.5",
        "  = 4 / 2 * 3 + 0.5", "  = 6.5"]


@pytest.mark.parametrize("kind", ["layernorm", "groupnorm", "instancenorm"])
def test_norms_use_the_biased_statistics_of_the_values_they_normalise_together(kind):
    """Reference: NumPy's mean and var (ddof 0) of the block PyTorch normalises together: the last two dimensions
    (layernorm [5, 6]), each group of 2 channels (groupnorm, 2 groups), each channel (instancenorm)."""
    from cnncli.engine.layers import GroupNorm, InstanceNorm2d, LayerNorm

    rng = np.random.default_rng(8)
    x = rng.normal(size=(4, 5, 6))
    layer = {"layernorm": LayerNorm((5, 6), rng.normal(size=(5, 6)), rng.normal(size=(5, 6)), name="n"),
             "groupnorm": GroupNorm(2, rng.normal(size=4), rng.normal(size=4), name="n"),
             "instancenorm": InstanceNorm2d(name="n")}[kind]
    steps = Network((layer,)).forward(x)
    for cell in [(0, 0, 0), (1, 2, 3), (3, 4, 5)]:
        block = {"layernorm": x[cell[0]], "groupnorm": x[cell[0] // 2 * 2:cell[0] // 2 * 2 + 2],
                 "instancenorm": x[cell[0]]}[kind]
        e = explain_layer(steps, 1, cell)
        assert e.working.numbers["mean"] == pytest.approx(block.mean(), abs=1e-14)
        assert e.working.numbers["var"] == pytest.approx(np.var(block, ddof=0), rel=1e-13)
        expected = (x[cell] - block.mean()) / math.sqrt(np.var(block) + 1e-5)
        if kind == "layernorm":
            expected = expected * layer.weight[cell[1:]] + layer.bias[cell[1:]]
        elif kind == "groupnorm":
            expected = expected * layer.weight[cell[0]] + layer.bias[cell[0]]
        assert e.value == pytest.approx(expected, rel=1e-12)


def test_local_response_norm_sums_the_squares_of_its_neighbouring_channels():
    """Reference: a loop over channels c - size//2 .. c + (size-1)//2 that exist, as PyTorch's formula
    x / (k + alpha/size * sum x^2)^beta."""
    from cnncli.engine.layers import LocalResponseNorm

    x = np.random.default_rng(9).normal(size=(6, 2, 3))
    steps = Network((LocalResponseNorm(4, 0.3, 0.75, 2.0, name="lrn"),)).forward(x)
    for c, h, w in itertools.product(range(6), range(2), range(3)):
        e = explain_layer(steps, 1, (c, h, w))
        near = [n for n in range(c - 2, c + 2) if 0 <= n < 6]
        assert [row[0] for row in e.working.terms.rows] == near
        assert e.value == pytest.approx(x[c, h, w] / (2 + 0.3 / 4 * sum(x[n, h, w] ** 2 for n in near)) ** 0.75,
                                        rel=1e-12)


# --- Activations and element-wise math ---------------------------------------------------------

X = np.array([-30.0, -3.5, -1.0, -0.25, 0.0, 0.4, 1.0, 2.5, 7.0, 40.0])


def _activation(type_name, **settings):
    from cnncli.engine.layers import layer_class

    cls = layer_class(type_name) if type_name != "none" else Activation
    return cls(**settings, name="act") if type_name not in ("relu", "leaky_relu", "sigmoid", "tanh", "none") else \
        Activation(type_name, settings.get("negative_slope", 0.01), name="act")


REFERENCES = [  # type, settings, the scipy / hand formula of x
    ("relu", {}, lambda x: np.maximum(x, 0)),
    ("none", {}, lambda x: x),
    ("leaky_relu", {"negative_slope": 0.2}, lambda x: np.where(x >= 0, x, 0.2 * x)),
    ("sigmoid", {}, scipy.special.expit),
    ("tanh", {}, np.tanh),
    ("relu6", {}, lambda x: np.minimum(np.maximum(x, 0), 6)),
    ("hardtanh", {"min_val": -2.0, "max_val": 1.5}, lambda x: np.clip(x, -2, 1.5)),
    ("hardswish", {}, lambda x: x * np.clip(x + 3, 0, 6) / 6),
    ("hardsigmoid", {}, lambda x: np.clip(x + 3, 0, 6) / 6),
    ("silu", {}, lambda x: x * scipy.special.expit(x)),
    ("mish", {}, lambda x: x * np.tanh(np.logaddexp(0, x))),
    ("gelu", {}, lambda x: x * scipy.special.ndtr(x)),
    ("gelu", {"approximate": "tanh"}, lambda x: 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)))),
    ("elu", {"alpha": 0.7}, lambda x: np.where(x > 0, x, 0.7 * np.expm1(np.minimum(x, 0)))),
    ("softplus", {"beta": 2.0, "threshold": 5.0}, lambda x: np.where(2 * x > 5, x, np.logaddexp(0, 2 * x) / 2)),
    ("exp", {}, np.exp),
    ("neg", {}, np.negative),
    ("abs", {}, np.abs),
    ("erf", {}, scipy.special.erf),
    ("pow", {"exponent": 3.0}, lambda x: x ** 3),
]


@pytest.mark.parametrize("type_name, settings, reference", REFERENCES,
                         ids=[f"{r[0]}{'-' + '-'.join(map(str, r[1].values())) if r[1] else ''}" for r in REFERENCES])
def test_activations_and_math_match_scipy_and_their_formulas(type_name, settings, reference):
    """Reference: scipy.special (expit, ndtr, erf) or the function's formula in NumPy, at x from -30 to 40 in
    float64: the working's value within 1e-12 (3e-7 for erf and GELU, approximated in the layer to 1.2e-7)."""
    x = X.reshape(1, 2, 5)
    steps = Network((_activation(type_name, **settings),)).forward(x)
    tolerance = 3e-7 if type_name in APPROXIMATE and settings.get("approximate") != "tanh" else 1e-12
    for cell in itertools.product(range(1), range(2), range(5)):
        e = explain_layer(steps, 1, cell)
        assert e.value == pytest.approx(float(reference(x[cell])), rel=tolerance, abs=tolerance), cell
        assert e.working.numbers["x"] == x[cell] and e.working.lines[0].startswith("y = ")


def test_a_prelu_uses_its_channels_slope():
    """Channel c's learned slope scales its negative values; positive ones pass."""
    from cnncli.engine.layers import PReLU

    x = -np.arange(1, 7, dtype=np.float64).reshape(3, 1, 2)
    steps = Network((PReLU(np.array([0.5, 2.0, -1.0]), name="act"),)).forward(x)
    for c in range(3):
        e = explain_layer(steps, 1, (c, 0, 1))
        assert e.working.numbers["weight"] == [0.5, 2.0, -1.0][c] and e.value == x[c, 0, 1] * [0.5, 2.0, -1.0][c]


@pytest.mark.parametrize("dim", [1, -1])
def test_softmax_and_log_softmax_are_scipys(dim):
    """Reference: scipy.special.softmax / log_softmax of the cell's vector along dim (the channels, or the row);
    the table lists each value's exp(x - max), the largest x first, with the cell's own row marked."""
    from cnncli.engine.layers import LogSoftmax

    x = np.random.default_rng(12).normal(size=(4, 2, 5)) * 3
    along = 0 if dim == 1 else 2
    for layer, reference in ((Softmax("sm", dim), scipy.special.softmax), (LogSoftmax("lsm", dim),
                                                                           scipy.special.log_softmax)):
        steps = Network((layer,)).forward(x)
        for cell in [(0, 0, 0), (3, 1, 4), (2, 1, 2)]:
            e = explain_layer(steps, 1, cell)
            vector = x[tuple(slice(None) if k == along else i for k, i in enumerate(cell))]
            assert e.value == pytest.approx(reference(vector)[cell[along]], rel=1e-12)
            terms = e.working.terms
            assert [row[1] for row in terms.rows] == sorted(vector, reverse=True)
            assert terms.rows[terms.marked][0] == cell[along]
            assert e.working.numbers["sum"] == pytest.approx(np.exp(vector - vector.max()).sum(), rel=1e-13)


# --- Merges and moves --------------------------------------------------------------------------


def graph(layers, reads, x):
    return Network(tuple(layers), tuple(reads)).forward(x)


def test_a_merge_shows_each_inputs_value_and_where_a_gate_was_read():
    """mul(map, gate): the gate (C, 1, 1) is read at (c, 0, 0), said to be broadcast; max names the winner."""
    from cnncli.engine.layers import Max, Mul

    x = np.arange(12, dtype=np.float64).reshape(3, 2, 2)
    steps = graph([GlobalAvgPool2d("gate"), Mul("mul"), Max("top")], [("input",), ("input", "gate"),
                                                                     ("input", "mul")], x)
    e = explain_layer(steps, 2, (2, 1, 0))
    assert [(s.step, s.cell, s.note) for s in e.working.sources] == [
        ("input", (2, 1, 0), ""), ("gate", (2, 0, 0), "broadcast over rows and cols")]
    assert e.value == 10 * 9.5 and fill(e.working.lines[1], e.working.numbers) == "  = 10 * 9.5"
    top = explain_layer(steps, 3, (0, 0, 1))  # max(1, 1 x 1.5)
    assert top.value == 1.5 and "mul's value is the largest" in top.working.text


def test_moves_name_the_input_cell_each_value_came_from():
    """flatten: np.unravel_index; slice: start + i*step; channel shuffle: ShuffleNet's out[i*G + g] = in[g*C/G + i];
    concat: the input holding the index, less the sizes before it."""
    from cnncli.engine.layers import ChannelShuffle, Concat, Slice

    x = np.random.default_rng(1).normal(size=(6, 2, 3))
    network = Network((Flatten("flat"), Slice(1, 1, 6, 2, name="odd"), ChannelShuffle(3, name="mix"), Concat("cat")),
                      (("input",), ("input",), ("input",), ("odd", "input")), outputs=("flat", "mix"))
    steps = network.forward(x)
    for unit in (0, 7, 35):
        (source,) = explain_layer(steps, 1, (unit,)).working.sources
        assert source.cell == tuple(int(i) for i in np.unravel_index(unit, x.shape))
    for channel in range(3):
        (source,) = explain_layer(steps, 2, (channel, 1, 2)).working.sources
        assert source.cell == (1 + 2 * channel, 1, 2)
    for channel in range(6):
        (source,) = explain_layer(steps, 3, (channel, 0, 0)).working.sources
        i, g = divmod(channel, 3)
        assert source.cell == (g * 2 + i, 0, 0)
    (source,) = explain_layer(steps, 4, (4, 1, 1)).working.sources
    assert (source.step, source.cell) == ("input", (1, 1, 1))


@pytest.mark.parametrize("mode", ["constant", "reflect", "replicate", "circular"])
def test_a_padded_cell_is_numpys_padding(mode):
    """Reference: np.pad with the matching mode (constant 0.5, reflect, edge, wrap): every output cell's value,
    and the input cell it names holds that value."""
    from cnncli.engine.layers import Pad

    x = np.random.default_rng(2).normal(size=(2, 3, 4))
    pad = Pad((2, 1, 1, 2), mode, 0.5 if mode == "constant" else 0.0, name="pad")
    steps = Network((pad,)).forward(x)
    numpy_mode = {"constant": "constant", "reflect": "reflect", "replicate": "edge", "circular": "wrap"}[mode]
    extra = {"constant_values": 0.5} if mode == "constant" else {}
    expected = np.pad(x, [(0, 0), (1, 2), (2, 1)], mode=numpy_mode, **extra)
    for cell in itertools.product(*map(range, expected.shape)):
        e = explain_layer(steps, 1, cell)
        assert e.value == expected[cell]
        for source in e.working.sources:
            assert x[source.cell] == expected[cell]


def test_a_transposed_conv_cell_sums_exactly_the_scattered_terms():
    """Reference: a brute-force scatter kept here: every input cell and tap whose product lands on the output
    cell (h*stride - padding + i*dilation), grouped channels; the terms listed are exactly those."""
    from cnncli.engine.layers import ConvTranspose2d

    rng = np.random.default_rng(6)
    x = rng.normal(size=(4, 3, 3))
    layer = ConvTranspose2d(rng.normal(size=(4, 3, 3, 2)), rng.normal(size=6), (2, 1), (1, 0), (1, 0), 2, (1, 2),
                            name="up")
    steps = Network((layer,)).forward(x)
    out = steps[1].output
    for f, row, col in itertools.product(*map(range, out.shape)):
        group = f // 3
        expected = {(c, h, w, f"{i},{j}") for c in range(group * 2, group * 2 + 2) for h in range(3)
                    for w in range(3) for i in range(3) for j in range(2)
                    if h * 2 - 1 + i == row and w * 1 - 0 + j * 2 == col}
        e = explain_layer(steps, 1, (f, row, col))
        assert {row_[:4] for row_ in e.working.terms.rows} == expected
        total = sum(x[c, h, w] * layer.weight[c, f - group * 3, int(t[0]), int(t[2])] for c, h, w, t in expected)
        assert e.value == pytest.approx(total + layer.bias[f], rel=1e-12, abs=1e-12)


def test_bilinear_upsampling_weights_the_four_nearest_cells():
    """Hand-worked: doubling a row without align_corners, output col 1 sits at input col (1 + 0.5) / 2 - 0.5 =
    0.25: cols 0 and 1 weighted 0.75 and 0.25; nearest takes col floor(1 / 2) = 0."""
    from cnncli.engine.layers import Upsample

    x = np.array([[[1.0, 5.0, 9.0]]])
    bilinear = explain_layer(Network((Upsample(scale_factor=(1.0, 2.0), mode="bilinear", name="up"),)).forward(x),
                             1, (0, 0, 1))
    weights = {(row[0], row[1]): row[2] for row in bilinear.working.terms.rows}  # one row: its two taps are one
    assert weights == {(0, 0): pytest.approx(0.75), (0, 1): pytest.approx(0.25)}
    assert bilinear.value == pytest.approx(0.75 * 1 + 0.25 * 5)
    nearest = explain_layer(Network((Upsample(scale_factor=(1.0, 2.0), name="up"),)).forward(x), 1, (0, 0, 1))
    assert nearest.working.sources[0].cell == (0, 0, 0)


# --- Cells, layers, fallbacks ------------------------------------------------------------------


def test_cells_are_resolved_for_maps_and_vectors():
    """ROW,COL takes --channel (0 by default); CHANNEL,ROW,COL names it; a vector takes one INDEX; max/min later."""
    assert resolve_cell((4, 3, 3), (1, 2), None, "c") == (0, 1, 2)
    assert resolve_cell((4, 3, 3), (1, 2), 3, "c") == (3, 1, 2)
    assert resolve_cell((4, 3, 3), (3, 1, 2), None, "c") == (3, 1, 2)
    assert resolve_cell((10,), (7,), None, "fc") == (7,)
    assert resolve_cell((10,), None, None, "fc") is None
    assert extreme_cell(np.array([3.0, np.nan, 9.0, 9.0]), "max") == (2,)
    assert extreme_cell(np.arange(12.0).reshape(3, 2, 2), "min", channel=2) == (2, 0, 0)


def test_a_layer_without_an_explainer_says_so_with_its_value():
    """A layer class no explainer knows (one added later) gets its forward value and a sentence, not an error."""

    class Twice(base.Elementwise):
        name = "twice"
        types = ("twice",)

        def forward(self, x, batched=False):
            return x * 2

    steps = Network((Twice(),)).forward(SEED_IMAGE)
    e = explain_layer(steps, 1, (0, 2, 2))
    assert e.value == 18.0 and "cannot yet write out" in e.working.text


def test_a_transposed_conv_cell_no_input_reaches_holds_its_bias():
    """Stride 3 with a 1x1 kernel: output rows and cols 1 and 2 of each 3 get no input cell, only the bias; the
    view says so without an empty table."""
    from cnncli.engine.layers import ConvTranspose2d

    layer = ConvTranspose2d(np.ones((1, 1, 1, 1)), np.array([0.25]), (3, 3), name="up")
    steps = Network((layer,)).forward(np.arange(4.0).reshape(1, 2, 2))
    e = explain_layer(steps, 1, (0, 1, 2))
    assert e.working.terms.rows == () and e.value == 0.25 == e.layer_value
    assert "no input cell's kernel reaches row 1, col 2" in e.working.text
    console = Console(width=80, record=True, color_system=None)
    console.print(layer_explanation_view(e, steps, 80, "none"))
    text = console.export_text()
    assert "terms" not in text and "  = 0 + 0.25\n  = 0.25" in text
