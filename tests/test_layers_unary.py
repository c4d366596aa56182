"""The element-wise math layers (engine/layers/unary.py) and the max/min merges (merge.py).

Reference: NumPy's ufuncs and scipy.special.erf / logsumexp in float64, compared at float32
tolerance (rtol = atol = 1e-5 relative to the float64 value), on a sample and on a batch.
"""

import json
import tracemalloc

import numpy as np
import pytest
from conftest import assert_array
from PIL import Image

from cnncli.engine.layers import (
    Abs, Erf, Exp, Log, LogSoftmax, Max, Min, Neg, Pow, Reciprocal, Sqrt, layer_class,
)
from cnncli.io.modelfile import load_model

import scipy.special as special  # noqa: E402  (the reference; scipy is in the test extra)

TOLERANCE = {"rtol": 1e-5, "atol": 1e-5}
RNG = np.random.default_rng(21)


def _positive(shape):
    return RNG.uniform(0.05, 4, shape)


def _any(shape):
    return RNG.uniform(-4, 4, shape)


CASES = [  # (layer, input maker, float64 reference)
    (Exp(), _any, np.exp),
    (Log(), _positive, np.log),
    (Sqrt(), _positive, np.sqrt),
    (Neg(), _any, np.negative),
    (Abs(), _any, np.abs),
    (Erf(), _any, special.erf),
    (Pow(3.0), _any, lambda x: x ** 3),
    (Pow(2.0), _any, np.square),
    (Pow(-0.5), _positive, lambda x: x ** -0.5),
    (Reciprocal(), _positive, lambda x: 1 / x),
    (LogSoftmax(), _any, lambda x: x - special.logsumexp(x, axis=1, keepdims=True)),
    (LogSoftmax(dim=-1), _any, lambda x: x - special.logsumexp(x, axis=-1, keepdims=True)),
]


@pytest.mark.parametrize("layer, make, reference", CASES, ids=[f"{c[0].type}-{i}" for i, c in enumerate(CASES)])
def test_matches_numpy_and_scipy_on_a_sample_and_a_batch(layer, make, reference):
    """float32 in, float32 out, within 1e-5 of the float64 formula; each sample of a batch as the batch."""
    x64 = make((3, 4, 5, 6))
    x = x64.astype(np.float32)
    expected = reference(x.astype(np.float64))
    batch = layer.forward(x, batched=True)
    assert_array(batch, expected, dtype=np.float32, **TOLERANCE)
    for i in range(3):
        assert_array(layer.forward(x[i]), expected[i], dtype=np.float32, **TOLERANCE)
    assert layer.output_shape((4, 5, 6)) == (4, 5, 6)


def test_erf_by_hand_and_at_the_extremes():
    """erf(0) = 0, odd, 1 far out, nan stays nan; and close to scipy on a fine grid, small values included."""
    x = np.float32([0, 1e-6, -1e-3, 0.5, -2, 30, -3e38, np.inf, -np.inf, np.nan])
    out = Erf().forward(x)
    assert out[0] == 0 and out[5] == 1 and out[6] == -1 and out[7] == 1 and out[8] == -1 and np.isnan(out[9])
    grid = np.linspace(-6, 6, 10001).astype(np.float32)
    assert_array(Erf().forward(grid), special.erf(grid.astype(np.float64)), dtype=np.float32, rtol=0, atol=5e-7)
    small = np.float32([1e-30, -1e-6, 3e-3, -0.1, 0.3, 0.4999, 0.5])  # digits kept where 1 - erfc would lose them
    assert_array(Erf().forward(small), special.erf(small.astype(np.float64)), dtype=np.float32, rtol=3e-7, atol=0)
    series = small[:-1].astype(np.float64)  # below 0.5: the series, to ~3e-11 in float64
    assert_array(Erf().forward(series), special.erf(series), dtype=np.float64, rtol=3e-11, atol=0)


def test_out_of_domain_values_behave_as_numpy_quietly():
    """log(-1) nan, log(0) -inf, sqrt(-1) nan, 1/0 inf, 0^-1 inf, exp(100) inf: no warning, no error."""
    x = np.float32([-1, 0, 1])
    with np.errstate(all="raise"):
        assert np.isnan(Log().forward(x)[0]) and Log().forward(x)[1] == -np.inf
        assert np.isnan(Sqrt().forward(x)[0])
        assert Reciprocal().forward(x)[1] == np.inf
        assert Pow(-1.0).forward(x)[1] == np.inf and np.isnan(Pow(0.5).forward(x)[0])
        assert Exp().forward(np.float32([100]))[0] == np.inf


def test_logsoftmax_is_stable_for_huge_and_tiny_values():
    """Values near float32's largest give finite logs (log(1) = 0 at the max), as log(softmax) would not."""
    x = np.float32([[[3e38]], [[-3e38]], [[0]]])
    with np.errstate(all="raise"):
        out = LogSoftmax().forward(x)  # -3e38 - 3e38 overflows to -inf in float32, as in PyTorch
    assert_array(out[:, 0, 0], np.float32([0, -np.inf, -3e38]), dtype=np.float32, rtol=1e-7, atol=0)
    far = LogSoftmax().forward(np.float32([[[1000]], [[0]]]))  # log(softmax) would give log(0) = -inf
    assert_array(far[:, 0, 0], np.float32([0, -1000]), dtype=np.float32, rtol=1e-7, atol=0)
    assert_array(np.exp(LogSoftmax().forward(_any((5, 2, 2)).astype(np.float32))).sum(axis=0), np.ones((2, 2)),
                 rtol=1e-5, atol=1e-5)


def test_max_and_min_merges_broadcast_as_add():
    """Two or more inputs, a (C, 1, 1) gate broadcasting over (C, H, W), on a sample and a batch."""
    a, b, c = _any((4, 3, 3)).astype(np.float32), _any((4, 1, 1)).astype(np.float32), _any((4, 3, 3)).astype(np.float32)
    for layer, reference in ((Max("m"), np.maximum), (Min("m"), np.minimum)):
        assert layer.output_shape(a.shape, b.shape, c.shape) == (4, 3, 3)
        assert_array(layer.forward(a, b, c), reference(reference(a, b), c), dtype=np.float32, rtol=0, atol=0)
        assert_array(layer.forward(a[None], b[None], batched=True), reference(a, b)[None], rtol=0, atol=0)
    assert layer_class("max").inputs == (2, None)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_forward_stays_within_working_bytes(dtype):
    """tracemalloc's peak during forward on a (16, 64, 64) map and a batch of 2 is at most working_bytes."""
    x = RNG.uniform(0.1, 2, (2, 16, 64, 64)).astype(dtype)
    for layer in [case[0] for case in CASES] + [LogSoftmax(dim=3)]:
        for given, batched in ((x[0], False), (x, True)):
            shape = given.shape[1:] if batched else given.shape
            bound = layer.working_bytes(shape, itemsize=given.itemsize) * (given.shape[0] if batched else 1)
            tracemalloc.start()
            try:
                out = layer.forward(given, batched=batched)
                peak = tracemalloc.get_traced_memory()[1]
            finally:
                tracemalloc.stop()
            assert out.dtype == dtype
            assert peak <= bound, f"{layer.type}: peak {peak:,} > working_bytes {bound:,}"


def _model(tmp_path, extra=None):
    layers = [{"name": "a", "type": "abs"}, {"name": "s", "type": "sqrt"}, {"name": "l", "type": "log"},
              {"name": "e", "type": "exp", "inputs": ["input"]}, {"name": "n", "type": "neg"},
              {"name": "f", "type": "erf"}, {"name": "p", "type": "pow", "exponent": 2},
              {"name": "r", "type": "reciprocal", "inputs": ["e"]},
              {"name": "hi", "type": "max", "inputs": ["l", "f", "p"]}, {"name": "lo", "type": "min", "inputs": ["hi", "r"]},
              {"name": "ls", "type": "logsoftmax"}]
    document = {"format": "cnn-model", "version": 2, "input": {"size": [5, 6], "color": "rgb"},
                "layers": layers + (extra or [])}
    path = tmp_path / "unary.json"
    path.write_text(json.dumps(document))
    image = tmp_path / "in.png"
    Image.fromarray(RNG.integers(0, 255, (5, 6, 3), dtype=np.uint8)).save(image)
    return path, image


def test_model_file_runs_through_the_cli_and_predict_equals_forward(tmp_path):
    """`cnn run IMG -m FILE -f json` exits 0 naming every type; predict on a batch equals forward per sample."""
    from test_cli import invoke

    path, image = _model(tmp_path)
    result = invoke("run", str(image), "-m", str(path), "-f", "json")
    assert result.exit_code == 0, result.stderr
    types = {layer["type"] for layer in json.loads(result.stdout)["layers"]}
    assert types >= {"abs", "sqrt", "log", "exp", "neg", "erf", "pow", "reciprocal", "max", "min", "logsoftmax"}
    model = load_model(str(path))
    batch = RNG.uniform(0, 1, (2, 3, 5, 6)).astype(np.float32)
    together = model.network.predict(batch)
    for i in range(2):
        assert_array(together[i], model.network.forward(batch[i])[-1].output, dtype=np.float32, rtol=1e-5, atol=1e-6)
    rows = model.network.table((3, 5, 6))
    assert [row["type"] for row in rows][-1] == "logsoftmax"


BAD = [
    ({"type": "pow"}, "layers[11]", "missing key 'exponent'"),
    ({"type": "pow", "exponent": "two"}, "layers[11].exponent", "expected a number"),
    ({"type": "logsoftmax", "dim": 0}, "layers[11]", "dim 0 is the batch"),
    ({"type": "exp", "base": 2}, "layers[11]", "base"),
]


@pytest.mark.parametrize("layer, where, words", BAD, ids=[f"{b[0]['type']}-{i}" for i, b in enumerate(BAD)])
def test_bad_settings_are_one_cnn_line(capsys, tmp_path, layer, where, words):
    """Exit 1 and one `cnn: FILE: layers[11]...` line on stderr naming what is wrong, nothing on stdout."""
    from test_cli import run_main

    path, image = _model(tmp_path, [layer])
    code, out, err = run_main(capsys, "run", str(image), "-m", str(path), "-f", "json")
    assert code == 1 and out == ""
    assert err.startswith(f"cnn: {path}: ") and where in err and words in err and len(err.strip().splitlines()) == 1, err


def test_settings_and_describe():
    """settings() is JSON with PyTorch's keys; describe() one line."""
    assert Pow(2.5).settings() == {"exponent": 2.5} and Pow(2.5).describe() == "x^2.5"
    assert LogSoftmax(dim=-1).settings() == {"dim": -1} and LogSoftmax().describe() == "channels"
    assert Exp().settings() == {} and Max("m").settings() == {}
