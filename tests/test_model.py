"""cnncli.engine.graph: whole-network shape checks and the forward pass that keeps every map."""

import math

import numpy as np
import pytest
from conftest import assert_array, traced_forward

import oracles
from cnncli.engine import graph as model_module
from cnncli.engine.layers import core as core_layers
from cnncli.errors import ShapeError
from cnncli.engine.graph import Network, StageOptions, single_stage
from cnncli.engine.layers import Activation, Conv2d, Dense, Flatten, GlobalAvgPool2d, Pool2d, Softmax

SEED_IMAGE = np.array([[[1, 2, 3, 0, 1], [4, 5, 6, 1, 2], [7, 8, 9, 2, 3], [1, 2, 3, 4, 5], [6, 7, 8, 5, 6]]],
                      dtype=np.float32)
VERTICAL_EDGE = np.array([[[[1, 0, -1], [1, 0, -1], [1, 0, -1]]]], dtype=np.float32)


def test_single_stage_follows_the_seed_and_keeps_every_map():
    """Default options (valid conv, ReLU, 2x2/2 max-pool) give the seed's maps, input first."""
    steps = single_stage(VERTICAL_EDGE, None, 1, ["vertical_edge"], StageOptions()).forward(SEED_IMAGE)
    assert [(s.index, s.name, s.type) for s in steps] == [
        (0, "input", "input"), (1, "conv1", "conv2d"), (2, "relu1", "relu"), (3, "maxpool1", "maxpool2d")]
    assert steps[1].output.tolist() == [[[-6, 12, 12], [-6, 8, 8], [-6, 6, 6]]]
    assert steps[3].output.tolist() == [[[12]]]
    assert steps[1].params == 9 and steps[1].macs == 81


def test_dense_and_softmax_finish_the_stage():
    """flatten -> dense -> softmax after pooling; probabilities sum to 1."""
    rng = np.random.default_rng(0)
    dense = Dense(rng.standard_normal((4, 1)), rng.standard_normal(4), "dense1")
    options = StageOptions(softmax=True)
    steps = single_stage(VERTICAL_EDGE, None, 1, [], options, dense).forward(SEED_IMAGE)
    assert [s.type for s in steps[-3:]] == ["flatten", "dense", "softmax"]
    assert_array(steps[-2].output, dense.weight[:, 0] * 12 + dense.bias, rtol=1e-6)
    assert abs(float(steps[-1].output.sum()) - 1) < 1e-6


def _network(rng):
    """A random chain of layers, which may or may not fit a random input."""
    layers = []
    channels = int(rng.integers(1, 4))
    for index in range(int(rng.integers(1, 4))):
        filters, groups = int(rng.integers(1, 4)), 1
        k = int(rng.integers(1, 6))
        layers.append(Conv2d(rng.standard_normal((filters, channels, k, k)), None, (int(rng.integers(1, 3)),) * 2,
                             str(rng.choice(["valid", "same", "full"])) if rng.integers(0, 2) else int(rng.integers(0, 3)),
                             str(rng.choice(["zeros", "reflect", "replicate", "circular"])), (int(rng.integers(1, 3)),) * 2,
                             groups, name=f"conv{index}"))
        channels = filters
        layers.append(Activation(str(rng.choice(["relu", "sigmoid", "tanh", "leaky_relu", "none"])), name=f"act{index}"))
        if rng.integers(0, 2):
            k = int(rng.integers(1, 4))
            layers.append(Pool2d(str(rng.choice(["max", "avg"])), (k, k), None, (int(rng.integers(0, k // 2 + 1)),) * 2,
                                 ceil_mode=bool(rng.integers(0, 2)), name=f"pool{index}"))
    if rng.integers(0, 2):
        layers.append(GlobalAvgPool2d())
    return Network(tuple(layers)), (layers[0].weight.shape[1], int(rng.integers(1, 20)), int(rng.integers(1, 20)))


def test_shape_checker_predicts_every_shape_or_refuses():
    """Over 300 random networks: shapes() equals the forward pass's shapes, or it raises ShapeError first."""
    rng = np.random.default_rng(1)
    ran = refused = 0
    for _ in range(300):
        network, shape = _network(rng)
        x = rng.standard_normal(shape)
        try:
            predicted = network.shapes(shape)
        except ShapeError:
            refused += 1
            continue
        assert [s.output.shape for s in network.forward(x)] == predicted
        ran += 1
    assert ran > 50 and refused > 20  # both paths were exercised


def test_shape_error_names_the_layer_and_its_input():
    """A dense layer of the wrong width is reported with both shapes before anything runs."""
    network = Network((Conv2d(np.ones((2, 1, 3, 3)), name="conv1"), Flatten(), Dense(np.ones((3, 10)), name="fc1")))
    with pytest.raises(ShapeError, match=r"fc1: weight \(3, 10\) takes 10 inputs, but the layer before gives 18"):
        network.shapes((1, 5, 5))


def test_forward_of_a_two_stage_network_matches_the_oracle():
    """conv -> relu -> maxpool -> conv(stride 2, pad 1) -> avgpool, against loop oracles."""
    rng = np.random.default_rng(2)
    w1, b1 = rng.standard_normal((4, 3, 3, 3)), rng.standard_normal(4)
    w2 = rng.standard_normal((2, 4, 3, 3))
    network = Network((Conv2d(w1, b1, name="c1"), Activation("relu", name="r1"), Pool2d("max", (2, 2), name="p1"),
                       Conv2d(w2, None, (2, 2), 1, name="c2"), Pool2d("avg", (2, 2), (1, 1), name="p2")))
    x = rng.standard_normal((3, 14, 13))
    expected = oracles.conv2d(x, w1, b1)
    expected = oracles.pool2d(np.maximum(expected, 0), "max", (2, 2), (2, 2), (0, 0))
    expected = oracles.conv2d(expected, w2, None, (2, 2), (1, 1, 1, 1))
    expected = oracles.pool2d(expected, "avg", (2, 2), (1, 1), (0, 0))
    assert_array(network.forward(x)[-1].output, expected, rtol=1e-10, atol=1e-10)


def test_softmax_layer_and_settings_are_plain_data():
    """Every layer's settings() is JSON-ready and describe() is text."""
    import json

    layers = (Conv2d(np.ones((1, 1, 3, 3)), padding=(1, 2, 0, 0)), Activation("leaky_relu", 0.2),
              Pool2d("avg", (2, 2)), GlobalAvgPool2d(), Flatten(), Dense(np.ones((2, 1))), Softmax())
    for layer in layers:
        json.dumps(layer.settings())
        assert isinstance(layer.describe(), str)


def test_map_stats_match_numpy_across_chunks():
    """Reference: numpy's min/max/mean/std in float64, on a float32 map spanning three stats chunks."""
    from cnncli.engine.graph import map_stats

    rng = np.random.default_rng(3)
    x = (rng.standard_normal((5, 700, 700)) * 100 + 50).astype(np.float32)
    x[0, :10] = 0
    stats = map_stats(x)
    exact = x.astype(np.float64)
    assert stats["min"] == exact.min() and stats["max"] == exact.max()
    assert abs(stats["mean"] - exact.mean()) < 1e-9 * abs(exact.mean()) + 1e-9
    assert abs(stats["std"] - exact.std()) < 1e-9 * exact.std()
    assert stats["zeros"] == np.count_nonzero(exact == 0) / exact.size


@pytest.mark.parametrize("unrolled_limit", [0, 1 << 18])
def test_predict_with_inference_rewrites_equals_forward(monkeypatch, unrolled_limit):
    """predict folds batch norm into the conv, drops dropout, moves ReLU after a max-pool and may run a
    conv as one matrix product; reference: forward, one image at a time, which runs every layer as written."""
    from cnncli.engine.layers import BatchNorm, Dropout

    monkeypatch.setattr(core_layers, "UNROLLED_MAX_ELEMENTS", unrolled_limit)
    rng = np.random.default_rng(21)
    net = Network((
        Conv2d(rng.standard_normal((4, 2, 3, 3)), None, padding=1, name="c1"),
        BatchNorm(rng.standard_normal(4), rng.uniform(0.5, 2, 4), None, None, 1e-3, "bn1"),
        Activation("relu", name="r1"), Pool2d("max", (2, 2), name="p1"),
        Conv2d(rng.standard_normal((3, 4, 3, 3)), rng.standard_normal(3), name="c2"),
        BatchNorm(rng.standard_normal(3), rng.uniform(0.5, 2, 3), rng.standard_normal(3), rng.standard_normal(3),
                  1e-5, "bn2"),
        Activation("relu", name="r2"), Dropout(0.5), Flatten(), Dense(rng.standard_normal((5, 18)), rng.standard_normal(5)),
    ))
    assert [layer.type for layer in net.inference_layers] == ["conv2d", "maxpool2d", "relu", "conv2d", "relu",
                                                              "flatten", "dense"]
    batch = rng.standard_normal((6, 2, 8, 10))
    together = net.predict(batch)
    for i in range(6):
        assert_array(together[i], net.forward(batch[i])[-1].output, rtol=1e-10, atol=1e-10)


def test_predict_runs_relu_in_place_only_on_what_nothing_else_holds():
    """A ReLU reading the batch itself, a flattened view whose conv output a dense layer also reads,
    and a residual branch: predict leaves the caller's batch untouched and equals forward."""
    from cnncli.engine.layers import Add

    rng = np.random.default_rng(24)
    layers = (Activation("relu", name="r0"), Conv2d(rng.standard_normal((3, 2, 3, 3)), None, padding=1, name="c1"),
              Activation("relu", name="r1"), Add("sum"), Flatten("f"), Activation("relu", name="r2"),
              Dense(rng.standard_normal((4, 48)), None, "d1"), Flatten("f2"),
              Dense(rng.standard_normal((4, 48)), None, "d2"), Add("out"))
    # r2 alone reads f, a view of sum, which f2 reads after it: r2 must not write into sum
    reads = (("input",), ("r0",), ("c1",), ("r1", "c1"), ("sum",), ("f",), ("r2",), ("sum",), ("f2",), ("d1", "d2"))
    net = Network(layers, reads)
    batch = rng.standard_normal((5, 2, 4, 4))
    kept = batch.copy()
    together = net.predict(batch)
    np.testing.assert_array_equal(batch, kept)
    for i in range(5):
        assert_array(together[i], net.forward(batch[i])[-1].output, rtol=1e-10, atol=1e-10)


def _traced_forward(network, x):
    return traced_forward(network, x)[1]


def test_memory_estimate_bounds_forward_of_random_networks():
    """Over random networks (every layer type, padding mode, pooling with padding and ceil_mode),
    in float32 and float64: the estimate is above tracemalloc's peak of forward plus statistics."""
    from cnncli.engine.layers import BatchNorm, Dropout

    rng = np.random.default_rng(26)
    checked = 0
    while checked < 40:
        network, shape = _network(rng)
        shape = (shape[0], shape[1] * 8, shape[2] * 8)  # maps big enough for the chunked paths
        try:
            out = network.shapes(shape)[-1]
        except ShapeError:
            continue
        extra = [BatchNorm(rng.standard_normal(out[0]), rng.uniform(0.5, 2, out[0]))] if len(out) == 3 else []
        network = Network(network.layers + tuple(extra) + (Dropout(), Flatten(),
                          Dense(rng.standard_normal((7, math.prod(out)))), Softmax()))
        dtype = (np.float32, np.float64)[checked % 2]
        x = rng.standard_normal(shape).astype(dtype)
        estimate = network.memory_estimate(shape, x.itemsize)
        assert _traced_forward(network, x) <= estimate
        checked += 1


def test_view_layers_add_no_map():
    """Flatten, dropout and the activation "none" return their input: the estimate adds only their
    Python objects (a layer's, and a Step's once the maps are all there), not a 360 KiB map."""
    from cnncli.engine.layers import Dropout

    rng = np.random.default_rng(27)
    conv = Conv2d(rng.standard_normal((2, 1, 3, 3)), name="c")
    plain = Network((conv, Activation("relu")))
    views = Network((conv, Activation("relu"), Activation("none", name="none"), Dropout(), Flatten()))
    added = views.memory_estimate((1, 300, 300), 4) - plain.memory_estimate((1, 300, 300), 4)
    assert 3 * model_module.LAYER_BYTES <= added <= 3 * (model_module.LAYER_BYTES + model_module.STEP_BYTES)


def test_forward_lets_the_work_buffers_go():
    """ops keeps work buffers between calls; forward lets them go after each layer, so a layer
    holds only its own and nothing is left once it returns."""
    from cnncli.engine import ops, scratch

    rng = np.random.default_rng(28)
    network = Network((Conv2d(rng.standard_normal((8, 3, 3, 3)), padding=1), Activation("relu")))
    ops.conv2d(rng.standard_normal((3, 40, 40)), rng.standard_normal((8, 3, 3, 3)), method="gemm")
    assert scratch._scratch.__dict__.get("buffers")
    network.forward(rng.standard_normal((3, 40, 40)))
    assert not scratch._scratch.__dict__.get("buffers")


def test_ten_thousand_layers_run_in_well_under_a_second():
    """A Conv2d and 10,000 activations: forward (with every map's statistics) in under a second,
    shapes and the memory estimate in linear time, and the estimate above tracemalloc's peak."""
    import time

    layers = (Conv2d(np.ones((1, 1, 3, 3), np.float32), name="conv"),)
    layers += tuple(Activation(("relu", "leaky_relu", "tanh", "none")[i % 4], name=f"act{i}") for i in range(10_000))
    network = Network(layers)
    x = np.random.default_rng(29).standard_normal((1, 18, 18)).astype(np.float32)
    started = time.perf_counter()
    estimate = network.memory_estimate(x.shape, 4)
    estimated = time.perf_counter() - started
    started = time.perf_counter()
    steps = network.forward(x)
    for step in steps:
        _ = step.stats  # computed, as cnn run does
    ran = time.perf_counter() - started
    assert len(steps) == 10_002 and steps[-1].output.shape == (1, 16, 16)
    assert estimated < 0.25 and ran < 1.0, f"estimate {estimated:.3f} s, forward {ran:.3f} s"
    del steps
    assert _traced_forward(network, x) <= estimate
