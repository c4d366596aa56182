"""ONNX's InstanceNormalization, LayerNormalization, GroupNormalization, Selu and Mish read by cnn, each
node compared with ONNX Runtime (the reference) as tests/test_onnx_import.py does."""

import numpy as np
import pytest

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
from onnx import helper  # noqa: E402
from test_onnx_import import _bad, compare, graph_model, save, weights  # noqa: E402

RNG = np.random.default_rng(31)


def _conv_then(node, inits, opset=18):
    """A conv to 4 channels of 6x6, then ``node`` reading it as "c"."""
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]), node]
    return graph_model(nodes, weights(w=(4, 3, 3, 3), **inits), size=(6, 6), opset=opset)


def test_instance_normalization_matches_ort(tmp_path):
    model = _conv_then(helper.make_node("InstanceNormalization", ["c", "s", "b"], ["y"], epsilon=1e-3),
                       {"s": (4,), "b": (4,)}, opset=13)
    assert compare(model, tmp_path).network.layers[-1].type == "instancenorm2d"


@pytest.mark.parametrize("axis, scale_shape", [(-1, (6,)), (-2, (6, 6)), (1, (4, 6, 6)), (2, (1, 6))])
def test_layer_normalization_over_its_axes_matches_ort(tmp_path, axis, scale_shape):
    """Scale and B of the normalised axes' shape, or one that broadcasts to it (1, 6)."""
    node = helper.make_node("LayerNormalization", ["c", "s", "b"], ["y"], axis=axis, epsilon=1e-4)
    model = _conv_then(node, {"s": scale_shape, "b": scale_shape}, opset=17)
    assert compare(model, tmp_path).network.layers[-1].type == "layernorm"


@pytest.mark.parametrize("opset, per", [(18, 2), (21, 4)])
def test_group_normalization_matches_ort(tmp_path, opset, per):
    """Opset 18 gives scale and bias per group, opset 21 per channel."""
    node = helper.make_node("GroupNormalization", ["c", "s", "b"], ["y"], num_groups=2, epsilon=1e-5)
    loaded = compare(_conv_then(node, {"s": (per,), "b": (per,)}, opset=opset), tmp_path)
    assert loaded.network.layers[-1].type == "groupnorm"


def test_selu_and_mish_match_ort(tmp_path):
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Selu", ["c"], ["selu"]),
             helper.make_node("Selu", ["c"], ["selu2"], alpha=0.5, gamma=2.0),
             helper.make_node("Mish", ["selu2"], ["mish"]),
             helper.make_node("Add", ["selu", "mish"], ["y"])]
    model = graph_model(nodes, weights(w=(4, 3, 3, 3)), size=(6, 6), opset=18)
    assert {"elu", "affine", "mish"} <= {layer.type for layer in compare(model, tmp_path).network.layers}


def test_norms_that_do_not_fit_are_one_line(tmp_path, capsys):
    node = helper.make_node("GroupNormalization", ["c", "s", "b"], ["y"], num_groups=3)
    message = _bad(capsys, save(_conv_then(node, {"s": (3,), "b": (3,)}), tmp_path))
    assert "num_groups 3 does not divide the 4 channels" in message
    node = helper.make_node("InstanceNormalization", ["c", "s", "b"], ["y"])
    message = _bad(capsys, save(_conv_then(node, {"s": (3,), "b": (4,)}, opset=13), tmp_path))
    assert "the scale 's' has shape (3,); expected (4,)" in message


@pytest.mark.parametrize("opset", [11, 13])
def test_unsqueeze_reshape_and_squeeze_to_maps_match_ort(tmp_path, opset):
    """A gate computed as a vector and put back as (N, C, 1, 1) by Unsqueeze (Keras exports); a dense
    layer's output reshaped into a map for a conv (a generator's first layer); ReduceSum over H and W,
    with and without keepdims (its axes an input from opset 13)."""
    unsqueeze = (helper.make_node("Unsqueeze", ["gate", "axes23"], ["gate_map"]) if opset >= 13
                 else helper.make_node("Unsqueeze", ["gate"], ["gate_map"], axes=[2, 3]))
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("ReduceSum", ["c"], ["summed"], axes=[2, 3], keepdims=0) if opset < 13 else
        helper.make_node("ReduceSum", ["c", "axes23"], ["summed"], keepdims=0),
        helper.make_node("Sigmoid", ["summed"], ["gate"]),
        unsqueeze,
        helper.make_node("Mul", ["c", "gate_map"], ["gated"]),
        helper.make_node("ReduceSum", ["gated"], ["total"], axes=[2, 3], keepdims=1) if opset < 13 else
        helper.make_node("ReduceSum", ["gated", "axes23"], ["total"], keepdims=1),
        helper.make_node("Flatten", ["total"], ["flat"]),
        helper.make_node("Gemm", ["flat", "fw", "fb"], ["dense"], transB=1),
        helper.make_node("Reshape", ["dense", "map_shape"], ["as_map"]),
        helper.make_node("Conv", ["as_map", "w2"], ["y"], pads=[1, 1, 1, 1]),
    ]
    inits = weights(w=(4, 3, 3, 3), fw=(2 * 5 * 5, 4), fb=(50,), w2=(3, 2, 3, 3),
                    axes23=np.int64([2, 3]), map_shape=np.int64([0, 2, 5, 5]))
    model = graph_model(nodes, inits, size=(6, 6), opset=opset)
    loaded = compare(model, tmp_path)
    layers = {layer.name: layer for layer in loaded.network.layers}
    assert layers["gate_map"].type == "reshape" and layers["as_map"].type == "reshape"
    assert layers["summed"].type == "flatten" and layers["summed/sum"].type == "affine"


def test_a_reshape_to_another_rank_is_refused_naming_it(tmp_path, capsys):
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"]), helper.make_node("Reshape", ["c", "s"], ["y"])]
    inits = weights(w=(4, 3, 3, 3), s=np.int64([1, 4, 36]))
    message = _bad(capsys, save(graph_model(nodes, inits, size=(8, 8)), tmp_path))
    assert "reshape of (N, 4, 6, 6) to [1, 4, 36]: cnn's samples are vectors (N, F) or maps (N, C, H, W)" in message
