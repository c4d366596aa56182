"""The graph engine: networks whose layers name their inputs, merges, and batch inference rewrites
that stay valid in a graph. References: numbers worked by hand, scipy.special.softmax, and per-sample
forward for predict. Whole networks against PyTorch are in tests/test_graph_networks.py."""

import json

import numpy as np
import pytest
from conftest import traced_forward
from scipy.special import softmax as scipy_softmax

from cnncli.engine.graph import INPUT, Network
from cnncli.engine.layers import Activation, Add, BatchNorm, Concat, Conv2d, Dropout, Mean, Mul, Pool2d, Softmax, Sub
from cnncli.engine.layers import GlobalAvgPool2d
from cnncli.errors import CnnError, GraphError, ShapeError
from cnncli.io.modelfile import load_model

RNG = np.random.default_rng(11)


def conv(name, c_in=2, c_out=2, k=3, padding=1, seed=0):
    rng = np.random.default_rng(seed)
    return Conv2d(rng.standard_normal((c_out, c_in, k, k)).astype(np.float32),
                  rng.standard_normal(c_out).astype(np.float32), padding=padding, name=name)


def batch_norm(name, c=2, seed=0):
    rng = np.random.default_rng(seed)
    return BatchNorm(rng.standard_normal(c).astype(np.float32), rng.uniform(0.5, 2, c).astype(np.float32),
                     rng.standard_normal(c).astype(np.float32), rng.standard_normal(c).astype(np.float32), name=name)


def test_a_network_without_inputs_is_a_chain():
    net = Network((conv("c1"), Activation("relu", name="r1"), conv("c2", seed=1)))
    assert net.reads == ((INPUT,), ("c1",), ("r1",)) and net.is_chain
    assert net.consumers == {INPUT: ("c1",), "c1": ("r1",), "r1": ("c2",), "c2": ()}


def test_residual_add_and_gate_worked_by_hand():
    """x = [[1, 2], [3, 4]] in 2 channels (the second doubled); relu(x) + x = 2x; a (2, 1, 1) gate of
    channel means (2.5 and 5.0 for 2x: 5, 10) multiplies each channel: 2x * mean(2x)."""
    x = np.array([[[1, 2], [3, 4]], [[2, 4], [6, 8]]], np.float32)
    net = Network((Activation("relu", name="r"), Add("add"), GlobalAvgPool2d("gate"), Mul("mul")),
                  ((INPUT,), ("r", INPUT), ("add",), ("add", "gate")))
    steps = net.forward(x)
    assert [s.inputs for s in steps[1:]] == [(INPUT,), ("r", INPUT), ("add",), ("add", "gate")]
    np.testing.assert_array_equal(steps[2].output, 2 * x)
    np.testing.assert_array_equal(steps[3].output.ravel(), [5, 10])
    np.testing.assert_array_equal(steps[4].output, 2 * x * np.array([5, 10], np.float32)[:, None, None])
    np.testing.assert_array_equal(net.predict(x[None])[0], steps[-1].output)


def test_sub_mean_concat_worked_by_hand():
    a = np.arange(8, dtype=np.float32).reshape(2, 2, 2)
    net = Network((Activation("relu", name="r"), Sub("sub"), Mean("mean"), Concat("cat"), Concat("rows", dim=2)),
                  ((INPUT,), ("r", INPUT), ("r", INPUT, "sub"), ("mean", INPUT), ("cat", "cat")))
    steps = {s.name: s.output for s in net.forward(a)}
    np.testing.assert_array_equal(steps["sub"], np.zeros_like(a))
    np.testing.assert_array_equal(steps["mean"], (a + a + 0) / 3)
    assert steps["cat"].shape == (4, 2, 2) and steps["rows"].shape == (4, 4, 2)
    np.testing.assert_array_equal(steps["cat"][2:], a)
    np.testing.assert_array_equal(steps["rows"][:, 2:], steps["cat"])


def test_softmax_normalises_the_channels_of_a_map():
    """dim=1 (the default) is the channels, as in PyTorch on (N, C, H, W): each pixel's channels sum
    to 1 (scipy.special.softmax on axis 0 of the sample); dim=-1 is the width."""
    x = RNG.standard_normal((3, 4, 5)).astype(np.float32)
    out = Network((Softmax("s"),)).forward(x)[-1].output
    np.testing.assert_allclose(out, scipy_softmax(x.astype(np.float64), axis=0), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(out.sum(axis=0), 1, rtol=1e-6)
    width = Network((Softmax("s", dim=-1),)).forward(x)[-1].output
    np.testing.assert_allclose(width, scipy_softmax(x.astype(np.float64), axis=-1), rtol=1e-6, atol=1e-7)
    batch = Network((Softmax("s"),)).predict(np.stack([x, x]))
    np.testing.assert_allclose(batch[1], out, rtol=1e-6)
    with pytest.raises(ShapeError, match="dim 0 is the batch"):
        Network((Softmax("s", dim=0),)).shapes((3, 4, 5))
    with pytest.raises(ShapeError, match="out of range"):
        Network((Softmax("s", dim=4),)).shapes((3, 4, 5))


@pytest.mark.parametrize("layers, reads, outputs, words", [
    ((Activation("relu", name="a"), Activation("relu", name="a")), None, (), ["'a'", "unique"]),
    ((Activation("relu", name=INPUT),), None, (), ["network's input"]),
    ((Activation("relu", name="a"), Add("b")), ((INPUT,), ("a", "c")), (), ["'c'", "names no layer"]),
    ((Activation("relu", name="a"), Add("b")), (("b",), ("a", INPUT)), (), ["'b'", "comes later"]),
    ((Add("a"),), (("a", INPUT),), (), ["reads itself"]),
    ((Add("a"),), ((INPUT,),), (), ["reads 1 input", "at least 2"]),
    ((Activation("relu", name="a"),), ((INPUT, INPUT),), (), ["reads 2 inputs", "expected 1"]),
    ((Activation("relu", name="a"), Activation("relu", name="b")), ((INPUT,), (INPUT,)), (), ["a", "reaches no output"]),
    ((Activation("relu", name="a"),), None, ("z",), ["'z'", "names no layer"]),
])
def test_bad_graphs_name_the_layer(layers, reads, outputs, words):
    with pytest.raises(GraphError) as caught:
        Network(layers, reads, outputs)
    for word in words:
        assert word in str(caught.value)


def test_merges_check_shapes_before_running():
    net = Network((Pool2d("max", name="p"), Add("add")), ((INPUT,), ("p", INPUT)))
    with pytest.raises(ShapeError, match="do not broadcast"):
        net.shapes((2, 4, 4))
    cat = Network((Pool2d("max", name="p"), Concat("cat")), ((INPUT,), ("p", INPUT)))
    with pytest.raises(ShapeError, match="differ outside dim 1"):
        cat.shapes((2, 4, 4))
    gate = Network((GlobalAvgPool2d("g"), Mul("m")), ((INPUT,), (INPUT, "g")))
    assert gate.shapes((3, 5, 7))[-1] == (3, 5, 7)


def test_a_conv_that_also_feeds_a_residual_add_is_not_folded_into_its_batch_norm():
    """conv -> bn, and the conv's own output added to the bn's: folding the bn into the conv would
    change what the add reads. A conv that feeds only its bn is folded."""
    net = Network((conv("c1"), batch_norm("bn1"), Add("add"), conv("c2", seed=2), batch_norm("bn2", seed=3)),
                  ((INPUT,), ("c1",), ("bn1", "c1"), ("add",), ("c2",)))
    planned = [layer.name for layer in net.inference_layers]
    assert planned == ["c1", "bn1", "add", "c2"]  # bn2 folded into c2
    x = RNG.standard_normal((3, 2, 6, 6)).astype(np.float32)
    expected = np.stack([net.forward(sample)[-1].output for sample in x])
    np.testing.assert_allclose(net.predict(x), expected, rtol=1e-5, atol=1e-5)


def test_relu_read_by_more_than_its_max_pool_stays_before_it():
    net = Network((conv("c1"), Activation("relu", name="r"), Pool2d("max", name="p"), Pool2d("max", name="q"),
                   Concat("cat")), ((INPUT,), ("c1",), ("r",), ("r",), ("p", "q")))
    assert [layer.type for layer in net.inference_layers][:3] == ["conv2d", "relu", "maxpool2d"]
    chain = Network((conv("c1"), Activation("relu", name="r"), Pool2d("max", name="p")))
    assert [layer.type for layer in chain.inference_layers] == ["conv2d", "maxpool2d", "relu"]
    for network in (net, chain):
        x = RNG.standard_normal((2, 2, 8, 8)).astype(np.float32)
        expected = np.stack([network.forward(sample)[-1].output for sample in x])
        np.testing.assert_allclose(network.predict(x), expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("last", ["dropout", "bn", "pool"])
def test_a_rewritten_last_layer_still_gives_the_output(last):
    ends = {"dropout": [Dropout(name="d")], "bn": [batch_norm("bn")],
            "pool": [Activation("relu", name="r"), Pool2d("max", name="p")]}
    net = Network((conv("c1"), *ends[last]))
    x = RNG.standard_normal((2, 2, 6, 6)).astype(np.float32)
    expected = np.stack([net.forward(sample)[-1].output for sample in x])
    np.testing.assert_allclose(net.predict(x), expected, rtol=1e-5, atol=1e-5)


def test_a_relu_moved_past_two_max_pools_in_a_row_gives_the_forward_pass():
    """relu -> max-pool -> max-pool: the relu moves after the first pool, then after the second (a
    name made up for the first move is looked up as the pool it stands for). The reference: the
    forward pass, sample by sample."""
    net = Network((conv("c1"), Activation("relu", name="r"), Pool2d("max", 2, name="p1"), Pool2d("max", 1, name="p2")))
    x = RNG.standard_normal((2, 2, 8, 8)).astype(np.float32)
    expected = np.stack([net.forward(sample)[-1].output for sample in x])
    np.testing.assert_allclose(net.predict(x), expected, rtol=1e-6, atol=1e-6)
    assert [layer.type for layer, _, _ in net.inference_plan] == ["conv2d", "maxpool2d", "maxpool2d", "relu"]


def test_predict_lets_each_value_go_after_its_last_reader():
    net = Network((conv("c1"), Activation("relu", name="r"), conv("c2", seed=1), Add("add"), conv("c3", seed=2)),
                  ((INPUT,), ("c1",), ("r",), ("c2", "r"), ("add",)))
    freed = [name for _, _, done in net.inference_plan for name in done]
    assert sorted(freed) == sorted([INPUT, "c1", "r", "c2", "add"])  # all but the output (c3), once each
    position = {layer.name: i for i, (layer, _, _) in enumerate(net.inference_plan)}
    assert "r" in net.inference_plan[position["add"]][2]  # r lives until the add has read it


def test_graph_forward_memory_stays_within_the_estimate():
    net = Network((conv("c1", 3, 8), Activation("relu", name="r"), conv("c2", 8, 8, seed=1), Add("add"),
                   GlobalAvgPool2d("g"), Mul("gate"), Concat("cat")),
                  ((INPUT,), ("c1",), ("r",), ("c2", "r"), ("add",), ("add", "g"), ("gate", "c1")))
    x = RNG.standard_normal((3, 96, 96)).astype(np.float32)
    _, peak = traced_forward(net, x)
    assert peak <= net.memory_estimate(x.shape, 4)


def test_a_forward_that_keeps_no_maps_lets_each_go_after_its_last_reader():
    """keep_maps=False (a run writing its output alone): the same outputs, bit for bit, as the full
    forward; only the input and the outputs come back; tracemalloc's peak stays within the lean
    estimate, which is below the full one by more than two maps (they are not all held at once)."""
    import tracemalloc

    net = Network((conv("c1", 3, 8), Activation("relu", name="r"), conv("c2", 8, 8, seed=1), Add("add"),
                   Activation("relu", name="r2"), conv("c3", 8, 8, seed=2), GlobalAvgPool2d("g"), Mul("gate"),
                   Concat("cat")),
                  ((INPUT,), ("c1",), ("r",), ("c2", "r"), ("add",), ("r2",), ("c3",), ("r2", "g"), ("gate", "c1")),
                  outputs=("g",))
    x = RNG.standard_normal((3, 96, 96)).astype(np.float32)
    full = net.forward(x)
    tracemalloc.start()
    try:
        lean = net.forward(x, keep_maps=False)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert [step.name for step in lean] == [INPUT, "g", "cat"]
    by_name = {step.name: step.output for step in full}
    for step in lean:
        assert np.array_equal(step.output, by_name[step.name])
    one_map = 8 * 96 * 96 * 4
    assert peak <= net.memory_estimate(x.shape, 4, keep_maps=False) < net.memory_estimate(x.shape, 4) - 2 * one_map


def _model(tmp_path, layers, version=2, **top):
    document = {"format": "cnn-model", "version": version, "input": {"size": [4, 4]}, "layers": layers, **top}
    path = tmp_path / "g.json"
    path.write_text(json.dumps(document))
    return str(path)


RELU = {"type": "relu"}


@pytest.mark.parametrize("layers, top, words", [
    ([{"name": "a", "type": "relu"}, {"type": "add", "inputs": ["a", "b"]}], {}, ["layers[1].inputs[1]", "'b'", "names no layer"]),
    ([{"name": "a", "type": "relu", "inputs": ["b"]}, {"name": "b", "type": "relu"}], {}, ["layers[0].inputs[0]", "comes later"]),
    ([{"name": "a", "type": "relu", "inputs": ["a"]}], {}, ["layers[0].inputs[0]", "reads itself"]),
    ([{"name": "a", "type": "relu"}, {"name": "b", "type": "relu", "inputs": ["input"]}], {}, ["layers[0]", "reaches no output"]),
    ([{"name": "a", "type": "relu"}, {"type": "add", "inputs": ["a"]}], {}, ["layers[1].inputs", "at least 2"]),
    ([{"name": "a", "type": "maxpool2d", "kernel_size": 2}, {"type": "concat", "inputs": ["a", "input"]}], {},
     ["layers[1]", "differ outside dim 1"]),
    ([{"name": "a", "type": "maxpool2d", "kernel_size": 2}, {"type": "add", "inputs": ["a", "input"]}], {},
     ["layers[1]", "do not broadcast"]),
    ([RELU, {"name": "input", "type": "relu"}], {}, ["layers[1].name", "network's input"]),
    ([RELU | {"name": "a"}, RELU | {"name": "a"}], {}, ["layers[1].name", "unique"]),
    ([RELU], {"outputs": ["nope"]}, ["outputs[0]", "'nope'"]),
    ([RELU, {"type": "relu"}], {"outputs": ["relu1", "relu1"]}, ["outputs[1]", "also outputs[0]"]),
    ([RELU, {"type": "relu", "inputs": "input"}], {"version": 1}, ["layers[1].inputs", "version\": 2"]),
])
def test_bad_graph_files_name_the_json_path(tmp_path, layers, top, words):
    version = top.pop("version", 2)
    with pytest.raises(CnnError) as caught:
        load_model(_model(tmp_path, layers, version, **top))
    message = str(caught.value)
    for word in words:
        assert word in message, message


def test_extra_outputs_keep_their_branch(tmp_path):
    layers = [{"name": "a", "type": "relu"}, {"name": "aux", "type": "sigmoid"},
              {"name": "b", "type": "tanh", "inputs": ["a"]}]
    model = load_model(_model(tmp_path, layers, outputs=["aux"]))
    assert model.network.outputs == ("aux",)
    assert [s.name for s in model.network.forward(np.ones((1, 4, 4), np.float32))] == [INPUT, "a", "aux", "b"]
