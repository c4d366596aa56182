"""ONNX models in: graphs built with onnx.helper, read by cnn and compared node by node with ONNX Runtime."""

import json

import numpy as np
import pytest
from conftest import ROOT
from test_cli import invoke, run_main

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from cnncli.errors import CnnError  # noqa: E402
from cnncli.io.images import read_image  # noqa: E402
from cnncli.io.modelfile import load_model  # noqa: E402

RNG = np.random.default_rng(12)
DIGIT_7 = str(ROOT / "sample_images" / "digit_7.png")


# -- helpers ------------------------------------------------------------------------------------------
def weights(**arrays):
    """Initializers from keyword arrays; a shape tuple means seeded normal values of that shape."""
    made = []
    for name, value in arrays.items():
        array = RNG.standard_normal(value).astype(np.float32) if isinstance(value, tuple) else np.asarray(value)
        made.append(numpy_helper.from_array(array, name))
    return made


def graph_model(nodes, inits, *, channels=3, size=(8, 8), outputs=None, opset=13, batch="N"):
    """A model reading ``x`` (batch, channels, H, W) and giving ``outputs`` (default: the last node's output)."""
    outputs = outputs or [nodes[-1].output[0]]
    graph = helper.make_graph(nodes, "test", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                            [batch, channels, *size])],
                              [helper.make_tensor_value_info(name, TensorProto.FLOAT, None) for name in outputs],
                              inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def save(model, tmp_path, name="net.onnx"):
    path = tmp_path / name
    path.write_bytes(model.SerializeToString())
    return path


def ort_values(model, x, names):
    """ORT's value of each tensor in ``names`` (every one made a graph output), with no graph optimisation."""
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    present = {value.name for value in probe.graph.output}
    probe.graph.output.extend(helper.make_tensor_value_info(name, TensorProto.FLOAT, None)
                              for name in names if name not in present)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(probe.SerializeToString(), options, providers=["CPUExecutionProvider"])
    wanted = [value.name for value in probe.graph.output]
    return dict(zip(wanted, session.run(wanted, {"x": x[None]})))


def compare(model, tmp_path, *, expect_layers=None):
    """Every layer's output matches ORT's tensor of the same name (1e-4 of the tensor's scale), the final
    outputs to 1e-5; returns the loaded cnn model."""
    loaded = load_model(str(save(model, tmp_path)))
    shape = loaded.input.shape
    x = RNG.random(shape).astype(np.float32)
    steps = loaded.network.forward(x)
    tensors = {output for node in model.graph.node for output in node.output}
    names = [step.name for step in steps[1:] if step.name in tensors]
    reference = ort_values(model, x, names)
    finals = {value.name for value in model.graph.output}
    checked = 0
    for step in steps[1:]:
        if step.name not in reference:
            continue
        expected = reference[step.name][0]
        assert step.output.shape == expected.shape, step.name
        assert step.output.dtype == np.float32, step.name
        rtol = 1e-5 if step.name in finals else 1e-4
        scale = max(float(np.abs(expected).max()), 1e-30)
        error = float(np.abs(step.output - expected).max())
        assert error <= rtol * scale, f"{step.name}: max error {error:g} at scale {scale:g}"
        checked += 1
    assert checked >= 1
    if expect_layers is not None:
        assert [layer.type for layer in loaded.network.layers] == expect_layers
    return loaded


def chain_nodes(softmax_axis=-1):
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["conv1"], pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["conv1", "s", "bb", "m", "v"], ["bn1"], epsilon=1e-3),
        helper.make_node("Relu", ["bn1"], ["relu1"]),
        helper.make_node("MaxPool", ["relu1"], ["pool1"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Flatten", ["pool1"], ["flat"], axis=1),
        helper.make_node("Gemm", ["flat", "fw", "fb"], ["fc"], transB=1),
        helper.make_node("Softmax", ["fc"], ["prob"], axis=softmax_axis),
    ]
    inits = weights(w1=(4, 3, 3, 3), b1=(4,), s=np.float32([0.5, 1, 1.5, 2]), bb=(4,), m=(4,),
                    v=np.float32([0.2, 1, 2, 0.5]), fw=(5, 64), fb=(5,))
    return nodes, inits


# -- node by node against ONNX Runtime -----------------------------------------------------------------
@pytest.mark.parametrize("opset, axis", [(13, -1), (11, 1)])
def test_conv_bn_relu_pool_gemm_chain_matches_ort(tmp_path, opset, axis):
    """A conv-bn-relu-pool-gemm-softmax chain matches ORT at every node, at opsets 11 and 13."""
    nodes, inits = chain_nodes(axis)
    loaded = compare(graph_model(nodes, inits, opset=opset), tmp_path,
                     expect_layers=["conv2d", "batchnorm2d", "relu", "maxpool2d", "flatten", "dense", "softmax"])
    assert loaded.network.is_chain
    assert loaded.input.shape == (3, 8, 8) and loaded.input.color == "rgb" and loaded.input.scale == "unit"
    assert not loaded.input.normalises and loaded.labels == ()


def test_pytorch_flatten_chain_is_folded(tmp_path):
    """Shape -> Gather -> Unsqueeze -> Concat -> Reshape (x.view(x.size(0), -1)) folds to one flatten."""
    nodes, inits = chain_nodes()
    nodes[4:5] = [
        helper.make_node("Shape", ["pool1"], ["shape"]),
        helper.make_node("Constant", [], ["zero"], value=numpy_helper.from_array(np.array(0, np.int64))),
        helper.make_node("Gather", ["shape", "zero"], ["n"], axis=0),
        helper.make_node("Unsqueeze", ["n", "axes"], ["n1"]),
        helper.make_node("Concat", ["n1", "minus1"], ["target"], axis=0),
        helper.make_node("Reshape", ["pool1", "target"], ["flat"]),
    ]
    inits += weights(axes=np.array([0], np.int64), minus1=np.array([-1], np.int64))
    compare(graph_model(nodes, inits), tmp_path,
            expect_layers=["conv2d", "batchnorm2d", "relu", "maxpool2d", "flatten", "dense", "softmax"])


def test_residual_block_matches_ort(tmp_path):
    """conv-relu-conv plus the block's input, then relu and a global average pool, match ORT."""
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], pads=[1, 1, 1, 1]),
        helper.make_node("Add", ["c2", "x"], ["sum"]),
        helper.make_node("Relu", ["sum"], ["r2"]),
        helper.make_node("GlobalAveragePool", ["r2"], ["gap"]),
        helper.make_node("Flatten", ["gap"], ["out"]),
    ]
    loaded = compare(graph_model(nodes, weights(w1=(3, 3, 3, 3), w2=(3, 3, 3, 3), b2=(3,))), tmp_path)
    assert loaded.network.reads[3] == ("c2", "input")


def test_squeeze_excitation_gate_matches_ort(tmp_path):
    """An SE gate (global pool, 1x1 convs, HardSigmoid with ONNX's 0.2/0.5 defaults, Mul) matches ORT."""
    nodes = [
        helper.make_node("Conv", ["x", "w0", "b0"], ["feat"], pads=[1, 1, 1, 1]),
        helper.make_node("GlobalAveragePool", ["feat"], ["squeeze"]),
        helper.make_node("Conv", ["squeeze", "w1", "b1"], ["reduce"]),
        helper.make_node("Relu", ["reduce"], ["reduce_relu"]),
        helper.make_node("Conv", ["reduce_relu", "w2", "b2"], ["expand"]),
        helper.make_node("HardSigmoid", ["expand"], ["gate"]),
        helper.make_node("Mul", ["feat", "gate"], ["scaled"]),
    ]
    inits = weights(w0=(8, 3, 3, 3), b0=(8,), w1=(2, 8, 1, 1), b1=(2,), w2=(8, 2, 1, 1), b2=(8,))
    loaded = compare(graph_model(nodes, inits), tmp_path)
    gate = loaded.network.layers[5]
    assert (gate.alpha, gate.beta) == (pytest.approx(0.2), 0.5)


def test_inception_concat_matches_ort(tmp_path):
    """Inception-style branches (1x1, 3x3, pooled 1x1) joined by Concat on channels, with LRN and an
    average pool that counts or skips its padding, match ORT."""
    nodes = [
        helper.make_node("LRN", ["x"], ["lrn"], size=3, alpha=1e-2, beta=0.75, bias=2.0),
        helper.make_node("Conv", ["lrn", "wa"], ["branch_a"]),
        helper.make_node("Conv", ["lrn", "wb"], ["branch_b"], pads=[1, 1, 1, 1]),
        helper.make_node("MaxPool", ["lrn"], ["pooled"], kernel_shape=[3, 3], strides=[1, 1], pads=[1, 1, 1, 1]),
        helper.make_node("Conv", ["pooled", "wc"], ["branch_c"]),
        helper.make_node("AveragePool", ["lrn"], ["avg_in"], kernel_shape=[3, 3], pads=[1, 1, 1, 1],
                         count_include_pad=1),
        helper.make_node("AveragePool", ["lrn"], ["avg_ex"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Concat", ["branch_a", "branch_b", "branch_c", "avg_in", "avg_ex"], ["mixed"], axis=1),
    ]
    loaded = compare(graph_model(nodes, weights(wa=(2, 3, 1, 1), wb=(4, 3, 3, 3), wc=(2, 3, 1, 1))), tmp_path)
    assert loaded.network.shapes(loaded.input.shape)[-1] == (14, 8, 8)


@pytest.mark.parametrize("opset", [6, 13])
def test_clip_bounds_as_attributes_and_as_inputs(tmp_path, opset):
    """Clip reads min/max as attributes before opset 11 and as inputs after; 0..6 is relu6."""
    if opset < 11:
        clips = [helper.make_node("Clip", ["c"], ["six"], min=0.0, max=6.0),
                 helper.make_node("Clip", ["six"], ["band"], min=-0.5, max=0.5)]
        inits = []
    else:
        clips = [helper.make_node("Clip", ["c", "zero", "six_value"], ["six"]),
                 helper.make_node("Clip", ["six", "low", ""], ["band"])]
        inits = weights(zero=np.float32(0), six_value=np.float32(6), low=np.float32(0.5))
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]), *clips]
    inits += weights(w=np.float32(RNG.standard_normal((2, 3, 3, 3)) * 4))
    loaded = compare(graph_model(nodes, inits, opset=opset), tmp_path)
    assert [layer.type for layer in loaded.network.layers] == ["conv2d", "relu6", "hardtanh"]


def test_softmax_over_channels_at_opset_13_matches_ort(tmp_path):
    """From opset 13 Softmax takes one axis: axis 1 of a map is each pixel's channels."""
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"]), helper.make_node("Softmax", ["c"], ["p"], axis=1)]
    loaded = compare(graph_model(nodes, weights(w=(4, 3, 3, 3))), tmp_path)
    assert loaded.network.layers[-1].dim == 1


def test_softmax_before_13_over_a_map_is_refused(tmp_path):
    """Before opset 13 Softmax on a map normalises C*H*W at once: refused, not run as a channel softmax."""
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"]), helper.make_node("Softmax", ["c"], ["p"], axis=1)]
    path = save(graph_model(nodes, weights(w=(4, 3, 3, 3)), opset=11), tmp_path)
    with pytest.raises(CnnError, match=r"Softmax \(node p: opset 11 Softmax at axis 1"):
        load_model(str(path))


@pytest.mark.parametrize("mode", ["SAME_UPPER", "SAME_LOWER", "VALID"])
def test_conv_auto_pad_matches_ort(tmp_path, mode):
    """auto_pad SAME_UPPER/SAME_LOWER (the odd cell at the end or the start) and VALID match ORT."""
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], auto_pad=mode, strides=[2, 2]),
             helper.make_node("MaxPool", ["c"], ["p"], kernel_shape=[2, 2], auto_pad=mode)]
    compare(graph_model(nodes, weights(w=(2, 3, 4, 4)), size=(9, 9)), tmp_path)


def test_grouped_dilated_strided_conv_with_uneven_pads_matches_ort(tmp_path):
    """Conv pads [top, left, bottom, right] map to ours; groups, dilations and strides carry over."""
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], group=3, dilations=[2, 1], strides=[1, 2],
                              pads=[0, 1, 2, 3])]
    compare(graph_model(nodes, weights(w=(6, 1, 3, 3)), size=(9, 10)), tmp_path)


@pytest.mark.parametrize("opset", [12, 19])
def test_ceil_mode_and_dilated_pools_match_ort(tmp_path, opset):
    """MaxPool with ceil_mode and dilations, AveragePool with ceil_mode (padding counted or not) match ORT
    (ORT's average pool follows the spec's ceil_mode divisor from opset 19)."""
    nodes = [
        helper.make_node("MaxPool", ["x"], ["max_ceil"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1],
                         dilations=[1, 2], ceil_mode=1),
        helper.make_node("AveragePool", ["max_ceil"], ["avg_ceil"], kernel_shape=[2, 2], strides=[2, 2],
                         ceil_mode=1),
        helper.make_node("AveragePool", ["avg_ceil"], ["avg_pad"], kernel_shape=[3, 3], strides=[2, 2],
                         pads=[1, 1, 1, 1], ceil_mode=1, count_include_pad=int(opset == 19)),
    ]
    compare(graph_model(nodes, [], size=(11, 12), opset=opset), tmp_path)


def test_pointwise_and_arithmetic_operators_match_ort(tmp_path):
    """Activations, arithmetic with constants, MatMul+Add as one dense, Pad, Dropout, Identity, Sum, Mean,
    GlobalMaxPool and uneven MaxPool pads match ORT."""
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("LeakyRelu", ["c"], ["leaky"], alpha=0.2),
        helper.make_node("Elu", ["leaky"], ["elu"], alpha=0.7),
        helper.make_node("Softplus", ["elu"], ["softplus"]),
        helper.make_node("Sigmoid", ["c"], ["sig"]),
        helper.make_node("Tanh", ["c"], ["tanh"]),
        helper.make_node("HardSwish", ["c"], ["hswish"]),
        helper.make_node("HardSigmoid", ["c"], ["hsig"], alpha=1 / 6, beta=0.5),
        helper.make_node("PRelu", ["c", "slope"], ["prelu"]),
        helper.make_node("Sum", ["softplus", "sig", "tanh"], ["total"]),
        helper.make_node("Mean", ["total", "hswish", "hsig", "prelu"], ["mean"]),
        helper.make_node("Sub", ["mean", "offset"], ["centred"]),
        helper.make_node("Div", ["centred", "spread"], ["scaled"]),
        helper.make_node("Mul", ["scaled", "two"], ["doubled"]),
        helper.make_node("Sub", ["one", "doubled"], ["flipped"]),
        helper.make_node("Pad", ["flipped", "pads"], ["padded"], mode="reflect"),
        helper.make_node("Dropout", ["padded"], ["dropped"]),
        helper.make_node("Identity", ["dropped"], ["same"]),
        helper.make_node("MaxPool", ["same"], ["uneven"], kernel_shape=[2, 2], strides=[2, 2], pads=[0, 0, 1, 1]),
        helper.make_node("GlobalMaxPool", ["uneven"], ["gmax"]),
        helper.make_node("Flatten", ["gmax"], ["flat"]),
        helper.make_node("MatMul", ["flat", "mw"], ["mm"]),
        helper.make_node("Add", ["mm", "mb"], ["logits"]),
    ]
    inits = weights(w=(4, 3, 3, 3), slope=np.float32([0.1, 0.2, 0.3, 0.4]).reshape(4, 1, 1),
                    offset=np.float32([0.1, -0.1, 0.2, 0]).reshape(1, 4, 1, 1), spread=np.float32(1.5),
                    two=np.float32(2), one=np.float32(1), pads=np.array([0, 0, 1, 2, 0, 0, 2, 1], np.int64),
                    mw=(4, 3), mb=(3,))
    loaded = compare(graph_model(nodes, inits, opset=14), tmp_path)  # HardSwish is from opset 14
    assert loaded.network.layers[-1].type == "dense" and loaded.network.layers[-1].name == "logits"
    assert "mm" not in [layer.name for layer in loaded.network.layers]


@pytest.mark.parametrize("opset", [13, 18])
def test_math_operators_max_min_and_reductions_match_ort(tmp_path, opset):
    """Exp, Log, Sqrt, Neg, Abs, Erf, Reciprocal, Pow (constant exponents), Max and Min of several maps,
    LogSoftmax over channels, and ReduceMean / ReduceMax over [2, 3] (axes as attribute before 18,
    as input from it) match ORT node by node."""
    if opset < 18:
        reduce_mean = helper.make_node("ReduceMean", ["low"], ["rmean"], axes=[2, 3], keepdims=1)
        reduce_max = helper.make_node("ReduceMax", ["low"], ["rmax"], axes=[-1, -2])
        inits = []
    else:
        reduce_mean = helper.make_node("ReduceMean", ["low", "hw"], ["rmean"], keepdims=1)
        reduce_max = helper.make_node("ReduceMax", ["low", "hw_neg"], ["rmax"])
        inits = weights(hw=np.array([2, 3], np.int64), hw_neg=np.array([-1, -2], np.int64))
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Abs", ["c"], ["abs"]),
        helper.make_node("Sqrt", ["abs"], ["sqrt"]),
        helper.make_node("Exp", ["c"], ["exp"]),
        helper.make_node("Log", ["exp"], ["log"]),
        helper.make_node("Neg", ["log"], ["neg"]),
        helper.make_node("Erf", ["c"], ["erf"]),
        helper.make_node("Reciprocal", ["exp"], ["recip"]),
        helper.make_node("Pow", ["c", "three"], ["cube"]),
        helper.make_node("Pow", ["exp", "half"], ["root"]),
        helper.make_node("Pow", ["c", "two_int"], ["square"]),
        helper.make_node("Max", ["sqrt", "neg", "erf"], ["high"]),
        helper.make_node("Min", ["high", "recip", "cube", "root", "square"], ["low"]),
        helper.make_node("LogSoftmax", ["low"], ["lsm"], axis=1),
        reduce_mean, reduce_max,
        helper.make_node("Max", ["rmean", "rmax"], ["gate"]),
        helper.make_node("Mul", ["lsm", "gate"], ["out"]),
    ]
    inits += weights(w=(4, 3, 3, 3), three=np.float32(3), half=np.float32([0.5]), two_int=np.int64(2))
    loaded = compare(graph_model(nodes, inits, opset=opset), tmp_path)
    types = [layer.type for layer in loaded.network.layers]
    assert types[1:] == ["abs", "sqrt", "exp", "log", "neg", "erf", "reciprocal", "pow", "pow", "pow", "max", "min",
                         "logsoftmax", "globalavgpool2d", "globalmaxpool2d", "max", "mul"]
    assert [layer.exponent for layer in loaded.network.layers[8:11]] == [3.0, 0.5, 2.0]


@pytest.mark.parametrize("opset", [11, 13])
def test_logsoftmax_of_a_vector_matches_ort_at_opsets_11_and_13(tmp_path, opset):
    """LogSoftmax of (N, F) at axis 1 is one axis at every opset: logsoftmax over the features."""
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"]), helper.make_node("Flatten", ["c"], ["f"]),
             helper.make_node("LogSoftmax", ["f"], ["lsm"], axis=1)]
    loaded = compare(graph_model(nodes, weights(w=(2, 3, 3, 3)), opset=opset), tmp_path)
    assert loaded.network.layers[-1].type == "logsoftmax" and loaded.network.layers[-1].dim == 1


@pytest.mark.parametrize("node, inits, opset, why", [
    (helper.make_node("LogSoftmax", ["c"], ["bad"], axis=1), {}, 11, "opset 11 LogSoftmax at axis 1"),
    (helper.make_node("Pow", ["c", "c"], ["bad"]), {}, 13, "the exponent Y ('c') is computed by the network"),
    (helper.make_node("Pow", ["c", "e"], ["bad"]), {"e": np.float32([2, 3])}, 13, "exponent of shape (2,)"),
    (helper.make_node("ReduceMean", ["c"], ["bad"], axes=[1]), {}, 13, "axes [1]: cnn reduces axes [2, 3]"),
    (helper.make_node("ReduceMean", ["c"], ["bad"]), {}, 13, "no axes"),
    (helper.make_node("ReduceMax", ["c", "a"], ["bad"]), {"a": np.array([3], np.int64)}, 18, "axes [3]"),
])
def test_math_and_reductions_that_cnn_does_not_compute_are_refused_naming_the_node(tmp_path, capsys, node, inits,
                                                                                    opset, why):
    """A computed or multi-valued exponent, other reduction axes, an old LogSoftmax over a map."""
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"]), node]
    err = _bad(capsys, save(graph_model(nodes, weights(w=(2, 3, 3, 3), **inits), opset=opset), tmp_path))
    assert f"cannot import 1 node: {node.op_type} (node bad: " in err and why in err, err


@pytest.mark.parametrize("opset", [7, 11, 18])
def test_pad_squeeze_reshape_and_gemm_across_opsets_match_ort(tmp_path, opset):
    """Pad (attributes before 11, inputs from it, axes from 18), Squeeze to (N, C), Reshape to (0, -1),
    Gemm with transB=0, alpha, beta and a (1, M) C, and Dropout's ratio match ORT."""
    if opset < 11:
        pad = helper.make_node("Pad", ["c"], ["padded"], mode="edge", pads=[0, 0, 2, 1, 0, 0, 0, 3])
        squeeze = helper.make_node("Squeeze", ["gap"], ["squeezed"], axes=[2, 3])
        inits = []
    elif opset < 18:
        pad = helper.make_node("Pad", ["c", "pads", "fill"], ["padded"])
        squeeze = helper.make_node("Squeeze", ["gap"], ["squeezed"], axes=[2, 3])
        inits = weights(pads=np.array([0, 0, 2, 1, 0, 0, 0, 3], np.int64), fill=np.float32(-0.5))
    else:
        pad = helper.make_node("Pad", ["c", "pads", "", "axes"], ["padded"], mode="wrap")
        squeeze = helper.make_node("Squeeze", ["gap", "squeeze_axes"], ["squeezed"])
        inits = weights(pads=np.array([2, 1, 0, 3], np.int64), axes=np.array([2, 3], np.int64),
                        squeeze_axes=np.array([2, 3], np.int64))
    dropout = (helper.make_node("Dropout", ["gemm"], ["dropped"], ratio=0.3) if opset < 12 else
               helper.make_node("Dropout", ["gemm", "ratio"], ["dropped"]))
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"]), pad,
        helper.make_node("Reshape", ["padded", "keep_batch"], ["flat"]),
        helper.make_node("Gemm", ["flat", "gw", "gc"], ["gemm"], alpha=0.5, beta=2.0), dropout,
        helper.make_node("GlobalAveragePool", ["padded"], ["gap"]), squeeze,
        helper.make_node("Concat", ["dropped", "squeezed"], ["out"], axis=-1),
    ]
    inits += weights(w=(2, 3, 3, 3), keep_batch=np.array([0, -1], np.int64), gw=(2 * 8 * 10, 3), gc=(1, 3),
                     ratio=np.float32(0.3))
    loaded = compare(graph_model(nodes, inits, opset=opset), tmp_path)
    assert [layer.type for layer in loaded.network.layers] == [
        "conv2d", "pad", "flatten", "dense", "dropout", "globalavgpool2d", "flatten", "concat"]


def test_gelu_and_old_broadcast_matches_ort(tmp_path):
    """Gelu (opset 20) matches ORT; an opset-6 Add with broadcast=1, axis=1 aligns a (C,) bias with channels."""
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"]), helper.make_node("Gelu", ["c"], ["g"])]
    compare(graph_model(nodes, weights(w=(2, 3, 3, 3)), opset=20), tmp_path)
    old = [helper.make_node("Conv", ["x", "w"], ["c"]),
           helper.make_node("Add", ["c", "bias"], ["biased"], broadcast=1, axis=1)]
    path = save(graph_model(old, weights(w=(2, 3, 3, 3), bias=np.float32([1, -1])), opset=6), tmp_path, "old.onnx")
    loaded = load_model(str(path))
    x = RNG.random((3, 8, 8)).astype(np.float32)
    steps = loaded.network.forward(x)
    assert np.allclose(steps[2].output - steps[1].output, np.float32([1, -1])[:, None, None])


def test_graph_outputs_become_network_outputs_and_dead_nodes_are_dropped(tmp_path):
    """Each graph output is an output of the network; nodes that reach none are left out."""
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"]), helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("Sigmoid", ["c"], ["unused"]), helper.make_node("Tanh", ["r"], ["t"])]
    loaded = load_model(str(save(graph_model(nodes, weights(w=(2, 3, 3, 3)), outputs=["t", "r"]), tmp_path)))
    assert [layer.name for layer in loaded.network.layers] == ["c", "r", "t"]
    assert loaded.network.outputs == ("r",)


def test_batch_inference_matches_the_traced_forward(tmp_path):
    """Network.predict on a batch (conv-bn folding, dropped dropout) gives what forward gives per image."""
    nodes, inits = chain_nodes()
    loaded = load_model(str(save(graph_model(nodes, inits), tmp_path)))
    batch = RNG.random((3, 3, 8, 8)).astype(np.float32)
    predicted = loaded.network.predict(batch)
    for image, row in zip(batch, predicted):
        assert np.allclose(loaded.network.forward(image)[-1].output, row, rtol=1e-5, atol=1e-7)


def test_the_file_is_recognised_by_its_first_bytes(tmp_path):
    """An ONNX file without the .onnx suffix is read as ONNX, not as JSON."""
    nodes, inits = chain_nodes()
    path = tmp_path / "net.bin"
    path.write_bytes(graph_model(nodes, inits).SerializeToString())
    assert load_model(str(path)).network.layers[0].type == "conv2d"


def _as_onnx(network, opset):
    """The nodes and initializers of a chain of conv2d/batchnorm2d/relu/maxpool2d/flatten/dropout/dense/
    softmax layers, written as a PyTorch export writes them (a test helper: cnn does not export)."""
    nodes, inits, last = [], [], "x"
    for layer in network.layers:
        name, kind = layer.name, layer.type
        if kind == "conv2d":
            top, bottom, left, right = (layer.padding,) * 4 if isinstance(layer.padding, int) else layer.padding * 2
            inits += weights(**{f"{name}.weight": layer.weight, f"{name}.bias": layer.bias})
            nodes.append(helper.make_node("Conv", [last, f"{name}.weight", f"{name}.bias"], [name],
                                          pads=[top, left, bottom, right], strides=list(layer.stride)))
        elif kind == "batchnorm2d":
            keys = ("weight", "bias", "running_mean", "running_var")
            inits += weights(**{f"{name}.{key}": getattr(layer, key) for key in keys})
            nodes.append(helper.make_node("BatchNormalization", [last, *(f"{name}.{key}" for key in keys)], [name],
                                          epsilon=layer.eps))
        elif kind == "maxpool2d":
            nodes.append(helper.make_node("MaxPool", [last], [name], kernel_shape=list(layer.kernel_size),
                                          strides=list(layer.stride or layer.kernel_size)))
        elif kind == "dense":
            inits += weights(**{f"{name}.weight": layer.weight, f"{name}.bias": layer.bias})
            nodes.append(helper.make_node("Gemm", [last, f"{name}.weight", f"{name}.bias"], [name], transB=1))
        else:
            op = {"relu": "Relu", "flatten": "Flatten", "dropout": "Dropout", "softmax": "Softmax"}[kind]
            nodes.append(helper.make_node(op, [last], [name], **({"axis": 1} if op == "Softmax" else {})))
        last = name
    return graph_model(nodes, inits, channels=1, opset=opset)


@pytest.mark.parametrize("opset", [11, 13])
def test_the_bundled_digits_network_written_as_onnx_gives_the_same_maps(tmp_path, opset):
    """The trained digits network, written as ONNX, gives every map the model file gives, and ORT agrees."""
    digits = load_model("digits")
    model = _as_onnx(digits.network, opset)
    loaded = compare(model, tmp_path)
    assert [layer.type for layer in loaded.network.layers] == [layer.type for layer in digits.network.layers]
    x = digits.input.apply(read_image(DIGIT_7, color="gray", scale="unit")).array  # as `cnn run` makes it
    for ours, theirs in zip(loaded.network.forward(x), digits.network.forward(x)):
        assert ours.name == theirs.name and np.allclose(ours.output, theirs.output, rtol=1e-5, atol=1e-6)
    assert int(np.argmax(loaded.network.forward(x)[-1].output)) == 7


def test_initializers_listed_as_inputs_are_weights_not_inputs(tmp_path):
    """Old files (IR < 4) list every initializer among the graph's inputs: the input is the one left."""
    nodes, inits = chain_nodes()
    model = graph_model(nodes, inits)
    model.graph.input.extend(helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)) for t in inits)
    loaded = compare(model, tmp_path)
    assert loaded.name == "net" and loaded.metadata["onnx"]["input"] == "x"


def test_loading_modules_does_not_import_onnx():
    """The model reader imports onnx only when it reads an .onnx file: `cnn` starts without it."""
    import subprocess
    import sys

    code = ("import sys, cnncli.cli, cnncli.io.modelfile, cnncli.io.onnx_import, cnncli.io.onnx_import.ops, "
            "cnncli.io.onnx_export, cnncli.cli.check; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('onnx', 'onnxruntime')))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert result.stdout.strip() == "[]"


# -- the command line ------------------------------------------------------------------------------------
def test_cli_run_json_with_an_onnx_model(tmp_path):
    """`cnn run img.png --model x.onnx -f json` gives every map and the prediction as JSON."""
    nodes, inits = chain_nodes()
    inits = [i for i in inits if i.name != "w1"] + weights(w1=(4, 1, 3, 3))
    path = save(graph_model(nodes, inits, channels=1), tmp_path)
    result = invoke("run", DIGIT_7, "--model", str(path), "-f", "json")
    assert result.exit_code == 0, result.stderr
    trace = json.loads(result.stdout)
    assert trace["model"]["input"]["size"] == [8, 8] and trace["model"]["input"]["color"] == "gray"
    names = [layer["name"] for layer in trace["layers"]]
    assert names[-3:] == ["flat", "fc", "prob"]
    assert len(trace["predictions"]) == 5


def test_cli_summary_of_an_onnx_model(tmp_path):
    """`cnn summary x.onnx` lists each imported layer with its shape."""
    nodes, inits = chain_nodes()
    path = save(graph_model(nodes, inits), tmp_path)
    result = invoke("summary", str(path))
    assert result.exit_code == 0, result.stderr
    for name in ("conv1", "bn1", "relu1", "pool1", "flat", "fc", "prob"):
        assert name in result.stdout
    data = json.loads(invoke("summary", str(path), "-f", "json").stdout)
    assert data["layers"][-1]["shape"] == [5]


# -- bad files: one `cnn:` line naming the file (and the node), exit 1 -----------------------------------
def _bad(capsys, path):
    code, out, err = run_main(capsys, "summary", str(path))
    assert code == 1 and out == ""
    assert err.startswith(f"cnn: {path}: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    return err


def test_truncated_protobuf_is_one_error(tmp_path, capsys):
    """A file cut short is not a readable ONNX model."""
    nodes, inits = chain_nodes()
    data = graph_model(nodes, inits).SerializeToString()
    path = tmp_path / "cut.onnx"
    path.write_bytes(data[:len(data) // 2])
    err = _bad(capsys, path)
    assert "is not a readable ONNX model (field 7 needs" in err and "the file is cut short or damaged)" in err


def test_an_initializer_without_values_says_so(tmp_path, capsys):
    """A weight with dims and no values (a file saved without its weights) is named, not a NumPy reshape error."""
    nodes, inits = chain_nodes()
    for tensor in inits:
        if tensor.name == "fw":
            tensor.ClearField("raw_data")
            tensor.ClearField("float_data")
    err = _bad(capsys, save(graph_model(nodes, inits), tmp_path))
    assert "tensor 'fw' has dims" in err and "but no values (a file saved without its weights?)" in err


def test_missing_initializer_names_the_node(tmp_path, capsys):
    """A weight that no initializer or node provides is named, with its node."""
    nodes, inits = chain_nodes()
    inits = [i for i in inits if i.name != "fw"]
    err = _bad(capsys, save(graph_model(nodes, inits), tmp_path))
    assert "node fc (Gemm): input 'fw' is neither an initializer" in err


def test_conv_weight_that_does_not_fit_names_the_node(tmp_path, capsys):
    """A conv weight for 2 input channels on a 3-channel input is refused, naming the node and the shapes."""
    nodes, inits = chain_nodes()
    inits = [i for i in inits if i.name != "w1"] + weights(w1=(4, 2, 3, 3))
    err = _bad(capsys, save(graph_model(nodes, inits), tmp_path))
    assert "node conv1 (Conv): weight 'w1' of shape (4, 2, 3, 3) with group 1 takes 2 input channels" in err


def test_unsupported_operators_are_listed_at_once(tmp_path, capsys):
    """Every unsupported op type is listed with its nodes in one error, before anything runs."""
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"]),
             helper.make_node("Hardmax", ["c"], ["ls1"], axis=1),
             helper.make_node("Relu", ["ls1"], ["r"]),
             helper.make_node("Hardmax", ["c"], ["ls2"], axis=1),
             helper.make_node("Einsum", ["c"], ["e"], equation="nchw->nchw"),
             helper.make_node("Sum", ["r", "ls2", "e"], ["out"])]
    inits = weights(w=(2, 3, 3, 3))
    err = _bad(capsys, save(graph_model(nodes, inits), tmp_path))
    assert "cannot import 3 nodes: Hardmax (nodes ls1, ls2); Einsum (node e)" in err


def test_an_operator_newer_than_the_models_opset_is_refused(tmp_path, capsys):
    """HardSwish exists from opset 14: a model declaring 13 is refused as ORT refuses it."""
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"]), helper.make_node("HardSwish", ["c"], ["h"])]
    err = _bad(capsys, save(graph_model(nodes, weights(w=(2, 3, 3, 3)), opset=13), tmp_path))
    assert "node h (HardSwish): HardSwish is defined from opset 14, but the model declares opset 13" in err


def test_a_shape_that_would_be_huge_is_not_folded(tmp_path, capsys):
    """ConstantOfShape claiming 2 * 10^12 values is refused before anything is allocated."""
    nodes = [helper.make_node("ConstantOfShape", ["dims"], ["big"]), helper.make_node("Conv", ["x", "w"], ["c"]),
             helper.make_node("Add", ["c", "big"], ["out"])]
    inits = weights(dims=np.array([1, 2, 10**6, 10**6], np.int64), w=(2, 3, 3, 3))
    err = _bad(capsys, save(graph_model(nodes, inits), tmp_path))
    assert "ConstantOfShape (node big: makes a constant too large to fold" in err


def test_huge_declared_dimension_is_refused(tmp_path, capsys):
    """An input dimension of 2^40 is refused before anything is allocated."""
    nodes, inits = chain_nodes()
    model = graph_model(nodes, inits)
    model.graph.input[0].type.tensor_type.shape.dim[3].dim_value = 1 << 40
    err = _bad(capsys, save(model, tmp_path))
    assert "input 'x': dimension 3 (width) is 1,099,511,627,776; expected 1 to 16,384" in err


def test_damaged_files_give_a_cnn_error_or_a_model_never_a_crash(tmp_path):
    """Files with bytes flipped, cut or repeated either load or raise a CnnError naming the file."""
    nodes, inits = chain_nodes()
    data = bytearray(graph_model(nodes, inits).SerializeToString())
    rng = np.random.default_rng(5)
    outcomes = {"loaded": 0, "refused": 0}
    for trial in range(120):
        damaged = bytearray(data)
        if trial % 3 == 0:
            for at in rng.integers(0, len(damaged), size=3):
                damaged[at] = int(rng.integers(0, 256))
        elif trial % 3 == 1:
            damaged = damaged[:int(rng.integers(1, len(damaged)))]
        else:
            at = int(rng.integers(0, len(damaged)))
            damaged = damaged[:at] + damaged[at:at + 40] + damaged[at:]
        path = tmp_path / f"damaged{trial}.onnx"
        path.write_bytes(bytes(damaged))
        try:
            load_model(str(path))
            outcomes["loaded"] += 1
        except CnnError as err:
            assert str(path) in str(err)
            outcomes["refused"] += 1
    assert outcomes["refused"] > 0


def test_a_channels_last_input_is_refused_with_a_hint(tmp_path, capsys):
    """An (N, H, W, C) input, as tf2onnx writes, is refused saying so."""
    nodes = [helper.make_node("Relu", ["x"], ["r"])]
    err = _bad(capsys, save(graph_model(nodes, [], channels=16, size=(16, 3)), tmp_path))
    assert "input 'x' has 16 channels; cnn feeds images as 1 (gray) or 3 (rgb) (it looks channels-last" in err


def test_without_the_onnx_package_the_error_says_how_to_get_it(tmp_path, capsys, monkeypatch):
    """With onnx not importable, loading an .onnx file is one line naming the extra to install."""
    import sys

    nodes, inits = chain_nodes()
    path = save(graph_model(nodes, inits), tmp_path)
    monkeypatch.setitem(sys.modules, "onnx", None)
    err = _bad(capsys, path)
    assert err == (f"cnn: {path}: reading ONNX models needs the onnx package: pip install 'cnncli[onnx]'\n")


# -- ConvTranspose, Resize and Upsample ----------------------------------------------------------------
@pytest.mark.parametrize("attrs, w_shape, size", [
    ({"strides": [2, 2]}, (3, 4, 3, 3), (5, 6)),
    ({"strides": [2, 3], "pads": [1, 2, 1, 0], "output_padding": [1, 0]}, (3, 2, 3, 4), (5, 6)),
    ({"strides": [2, 2], "auto_pad": "SAME_UPPER"}, (3, 2, 4, 4), (5, 4)),
    ({"strides": [2, 2], "auto_pad": "SAME_LOWER"}, (3, 2, 3, 3), (5, 4)),
    ({"strides": [3, 3], "auto_pad": "SAME_LOWER"}, (3, 2, 5, 5), (5, 4)),
    ({"group": 3, "dilations": [2, 1], "strides": [2, 2], "pads": [2, 1, 1, 1]}, (3, 2, 3, 3), (4, 5)),
    ({"strides": [2, 2], "output_shape": [10, 11]}, (3, 2, 3, 3), (5, 5)),
    ({"strides": [3, 2], "output_shape": [12, 9], "auto_pad": "SAME_UPPER"}, (3, 2, 3, 3), (4, 5)),
    ({"strides": [2, 2], "auto_pad": "VALID", "kernel_shape": [4, 4]}, (3, 2, 4, 4), (3, 4)),
])
def test_conv_transpose_matches_ort(tmp_path, attrs, w_shape, size):
    """ConvTranspose (weight (C_in, C_out/group, kH, kW)) with groups, dilations, strides, uneven pads,
    output_padding and output_shape matches ORT."""
    nodes = [helper.make_node("ConvTranspose", ["x", "w", "b"], ["up"], **attrs), helper.make_node("Relu", ["up"], ["r"])]
    inits = weights(w=w_shape, b=(w_shape[1] * attrs.get("group", 1),))
    loaded = compare(graph_model(nodes, inits, size=size), tmp_path, expect_layers=["conv_transpose2d", "relu"])
    assert loaded.network.layers[0].weight.shape == w_shape


def _resize_node(opset, mode, *, scales=None, sizes=None, axes=None, op="Resize", **attrs):
    """A Resize or Upsample node on ``c`` with its constant inputs, written as the opset writes them."""
    inits, extra = [], ({"axes": axes} if axes is not None else {})
    if op == "Upsample" and opset < 9:
        return helper.make_node("Upsample", ["c"], ["up"], mode=mode, scales=scales), inits
    if op == "Upsample" or opset < 11:
        return helper.make_node(op, ["c", "scales"], ["up"], mode=mode), weights(scales=np.float32(scales))
    if opset < 13:  # roi and scales are required inputs: scales empty when sizes are given
        inits = weights(roi=np.float32([]), scales=np.float32(scales if scales is not None else []))
        names = ["c", "roi", "scales"]
    else:
        inits = weights(scales=np.float32(scales)) if scales is not None else []
        names = ["c", "", "scales" if scales is not None else ""]
    if sizes is not None:
        inits += weights(sizes=np.array(sizes, np.int64))
        names.append("sizes")
    return helper.make_node("Resize", names, ["up"], mode=mode, **extra, **attrs), inits


NEAREST = {"coordinate_transformation_mode": "asymmetric", "nearest_mode": "floor"}


@pytest.mark.parametrize("opset, mode, given, attrs", [
    (13, "linear", {"scales": [1, 1, 2, 2]}, {}),
    (13, "linear", {"scales": [1, 1, 1.5, 0.75]}, {"coordinate_transformation_mode": "half_pixel"}),
    (11, "linear", {"sizes": [1, 2, 13, 5]}, {"coordinate_transformation_mode": "align_corners"}),
    (11, "linear", {"scales": [1, 1, 2.5, 1.25]}, {"coordinate_transformation_mode": "pytorch_half_pixel"}),
    (13, "linear", {"scales": [1, 1, 1.05, 2]}, {"coordinate_transformation_mode": "align_corners"}),
    (19, "linear", {"sizes": [1, 2, 3, 20]}, {"coordinate_transformation_mode": "pytorch_half_pixel"}),
    (18, "linear", {"sizes": [5, 11], "axes": [2, 3]}, {}),
    (13, "nearest", {"scales": [1, 1, 3, 2]}, NEAREST),
    (19, "nearest", {"scales": [1, 1, 0.5, 0.625]}, NEAREST),
    (13, "nearest", {"sizes": [1, 2, 20, 12]}, NEAREST),
    (18, "nearest", {"scales": [1.5, 2], "axes": [-2, -1]}, NEAREST),
    (10, "nearest", {"scales": [1, 1, 2, 3]}, {}),
])
def test_resize_matches_ort(tmp_path, opset, mode, given, attrs):
    """Resize, nearest (asymmetric, floor) and linear (half_pixel, pytorch_half_pixel, align_corners), by
    integer and fractional scales or by sizes, at opsets 10 to 19, matches ORT as one upsample layer."""
    node, inits = _resize_node(opset, mode, **given, **attrs)
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]), node]
    loaded = compare(graph_model(nodes, inits + weights(w=(2, 3, 3, 3)), opset=opset), tmp_path,
                     expect_layers=["conv2d", "upsample"])
    up = loaded.network.layers[1]
    assert up.mode == ("nearest" if mode == "nearest" else "bilinear")
    assert up.align_corners == (attrs.get("coordinate_transformation_mode") == "align_corners")


@pytest.mark.parametrize("opset, scales", [(7, [1.0, 1.0, 3.0, 2.0]), (9, [1, 1, 2, 2.5])])
def test_upsample_matches_ort(tmp_path, opset, scales):
    """Upsample (scales as an attribute at opset 7, as an input at 9), nearest, matches ORT."""
    node, inits = _resize_node(opset, "nearest", scales=scales, op="Upsample")
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]), node]
    compare(graph_model(nodes, inits + weights(w=(2, 3, 3, 3)), opset=opset), tmp_path,
            expect_layers=["conv2d", "upsample"])


@pytest.mark.parametrize("opset", [11, 13])
def test_unet_like_upsample_and_concat_matches_ort(tmp_path, opset):
    """A U-Net step (down by a pool, up by Resize x2 or ConvTranspose, joined to the skip by Concat) matches
    ORT at every node."""
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["enc"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["enc"], ["enc_relu"]),
        helper.make_node("MaxPool", ["enc_relu"], ["down"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Conv", ["down", "w2", "b2"], ["mid"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["mid"], ["mid_relu"]),
        helper.make_node("Resize", ["mid_relu", "roi", "scales"], ["up"], mode="linear"),
        helper.make_node("ConvTranspose", ["mid_relu", "wt", "bt"], ["up_t"], strides=[2, 2]),
        helper.make_node("Concat", ["enc_relu", "up", "up_t"], ["joined"], axis=1),
        helper.make_node("Conv", ["joined", "w3", "b3"], ["dec"], pads=[1, 1, 1, 1]),
    ]
    inits = weights(w1=(4, 3, 3, 3), b1=(4,), w2=(6, 4, 3, 3), b2=(6,), roi=np.float32([]),
                    scales=np.float32([1, 1, 2, 2]), wt=(6, 3, 2, 2), bt=(3,), w3=(2, 13, 3, 3), b3=(2,))
    loaded = compare(graph_model(nodes, inits, opset=opset), tmp_path)
    assert [layer.type for layer in loaded.network.layers] == [
        "conv2d", "relu", "maxpool2d", "conv2d", "relu", "upsample", "conv_transpose2d", "concat", "conv2d"]
    assert loaded.network.shapes(loaded.input.shape)[-2] == (13, 8, 8)


@pytest.mark.parametrize("opset, mode, given, attrs, why", [
    (13, "nearest", {"scales": [1, 1, 2, 2]}, {},
     "mode 'nearest' with coordinate_transformation_mode 'half_pixel' and nearest_mode 'round_prefer_floor'"),
    (11, "nearest", {"scales": [1, 1, 2, 2]}, {"coordinate_transformation_mode": "asymmetric",
                                               "nearest_mode": "round_prefer_ceil"}, "nearest_mode 'round_prefer_ceil'"),
    (13, "linear", {"scales": [1, 1, 2, 2]}, {"coordinate_transformation_mode": "tf_crop_and_resize"},
     "coordinate_transformation_mode 'tf_crop_and_resize'"),
    (13, "linear", {"scales": [1, 1, 2, 2]}, {"coordinate_transformation_mode": "asymmetric"},
     "coordinate_transformation_mode 'asymmetric'"),
    (13, "cubic", {"scales": [1, 1, 2, 2]}, {}, "mode 'cubic'"),
    (18, "linear", {"scales": [1, 1, 0.5, 0.5]}, {"antialias": 1}, "antialias=1"),
    (18, "linear", {"sizes": [1, 2, 4, 6]}, {"keep_aspect_ratio_policy": "not_larger"},
     "keep_aspect_ratio_policy 'not_larger'"),
    (13, "linear", {"scales": [1, 1, 2, 2]}, {"exclude_outside": 1}, "exclude_outside=1"),
    (13, "linear", {"scales": [1, 2, 2, 2]}, {}, "scales [1, 2, 2, 2] resize the batch or the channels"),
    (13, "linear", {"sizes": [2, 2, 16, 16]}, {}, "sizes [2, 2, 16, 16] resize the batch or the channels"),
    (13, "linear", {"sizes": [1, 2, 1, 16]}, {"coordinate_transformation_mode": "pytorch_half_pixel"},
     "'pytorch_half_pixel' to a side of 1"),
    (13, "linear", {"scales": [1, 1, 1.05, 2]}, {}, "scale 1.05 keeps H at 8"),
    (13, "nearest", {"scales": [1, 1, 2.1, 1]}, NEAREST, "nearest H 8 to 16 (scale 2.1): ONNX takes cell"),
    (10, "nearest", {"scales": [1, 1, 0.5, 1]}, {}, "ONNX Runtime rounds up when it shrinks"),
    (10, "linear", {"scales": [1, 1, 2, 2]}, {}, "mode 'linear' at opset 10 (Resize) uses asymmetric coordinates"),
])
def test_resize_that_upsample_does_not_compute_is_refused(tmp_path, capsys, opset, mode, given, attrs, why):
    """A Resize combination whose cells differ from nn.Upsample's is refused naming the node and the attribute."""
    node, inits = _resize_node(opset, mode, **given, **attrs)
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]), node]
    err = _bad(capsys, save(graph_model(nodes, inits + weights(w=(2, 3, 3, 3)), opset=opset), tmp_path))
    assert "cannot import 1 node: Resize (node up: " in err and why in err, err


def test_a_scale_whose_size_onnx_runtime_rounds_otherwise_is_refused(tmp_path, capsys):
    """floor(10 x 0.7) is 6, but ORT multiplies in float32 and makes 7 columns: refused, not guessed."""
    node, inits = _resize_node(13, "linear", scales=[1, 1, 1, 0.7])
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]), node]
    path = save(graph_model(nodes, inits + weights(w=(2, 3, 3, 3)), size=(8, 10)), tmp_path)
    assert "scale 0.7 of W 10: floor(10 x 0.7) is 6, but ONNX Runtime computes 7 in float32" in _bad(capsys, path)


def test_upsample_linear_is_refused(tmp_path, capsys):
    """Upsample's linear uses asymmetric coordinates, which no upsample layer computes."""
    node, inits = _resize_node(9, "linear", scales=[1, 1, 2, 2], op="Upsample")
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]), node]
    err = _bad(capsys, save(graph_model(nodes, inits + weights(w=(2, 3, 3, 3)), opset=9), tmp_path))
    assert "Upsample (node up: mode 'linear' at opset 9 (Upsample) uses asymmetric coordinates" in err


@pytest.mark.parametrize("attrs, why", [
    ({"strides": [2, 2], "pads": [0, 0, 1, 1]}, "pads begin [0, 0], end [1, 1] with output_padding [0, 0]"),
    ({"strides": [2, 2], "output_shape": [20, 20]}, "output_shape [20, 20] is larger than the 17x17 cells"),
    ({"strides": [2, 2], "output_shape": [1, 2, 16, 16]}, "output_shape [1, 2, 16, 16]: cnn reads it as the 2"),
    ({"strides": [1, 2], "dilations": [2, 1], "output_padding": [1, 0]},
     "output_padding [1, 0] is not below strides [1, 2], which ONNX Runtime refuses"),
])
def test_conv_transpose_that_conv_transpose2d_does_not_compute_is_refused(tmp_path, capsys, attrs, why):
    """Pads with more at the end than at the start, an output_shape beyond the full output, or an output_padding
    ORT refuses (not below the stride, though PyTorch allows it below the dilation) are refused."""
    nodes = [helper.make_node("ConvTranspose", ["x", "w"], ["up"], **attrs)]
    err = _bad(capsys, save(graph_model(nodes, weights(w=(3, 2, 3, 3))), tmp_path))
    assert "ConvTranspose (node up: " in err and why in err, err


def test_conv_transpose_weight_that_does_not_fit_names_the_node(tmp_path, capsys):
    """A ConvTranspose weight for 4 input channels on a 3-channel input is refused, naming the node."""
    nodes = [helper.make_node("ConvTranspose", ["x", "w"], ["up"], strides=[2, 2])]
    err = _bad(capsys, save(graph_model(nodes, weights(w=(4, 2, 3, 3))), tmp_path))
    assert "node up (ConvTranspose): weight 'w' of shape (4, 2, 3, 3) (C_in, C_out/group, kH, kW)" in err


# -- cutting and shuffling channels (ShuffleNet) ------------------------------------------------------------
@pytest.mark.parametrize("opset", [9, 13, 18])
def test_slice_split_and_channel_shuffle_match_ort(tmp_path, opset):
    """ShuffleNetV2's unit as PyTorch exports it: Split (or Slice) of the channels in two halves, a
    conv on one, Concat, then Reshape to (N, 2, C/2, H, W), Transpose 0,2,1,3,4 and Reshape back; and a
    Slice of rows with a step and an end past the size, and a mean over H, W without keepdims."""
    if opset >= 10:
        slice_inputs = weights(st=np.int64([1, -7]), en=np.int64([7, 1 << 62]), ax=np.int64([2, 3]),
                               sp=np.int64([2, 1]))
        cut = helper.make_node("Slice", ["shuffled", "st", "en", "ax", "sp"], ["cut"])
    else:
        slice_inputs = []
        cut = helper.make_node("Slice", ["shuffled"], ["cut"], starts=[1, -7], ends=[7, 1 << 62], axes=[2, 3])
    split_sizes = weights(sizes=np.int64([2, 2])) if opset >= 13 else []
    split = (helper.make_node("Split", ["conv0", "sizes"], ["left", "right"], axis=1) if opset >= 13
             else helper.make_node("Split", ["conv0"], ["left", "right"], axis=1, split=[2, 2]))
    if opset >= 18:
        split = helper.make_node("Split", ["conv0"], ["left", "right"], axis=1, num_outputs=2)
    nodes = [
        helper.make_node("Conv", ["x", "w0"], ["conv0"]),
        split,
        helper.make_node("Conv", ["right", "w1"], ["branch"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["branch"], ["relu"]),
        helper.make_node("Concat", ["left", "relu"], ["joined"], axis=1),
        helper.make_node("Reshape", ["joined", "grouped_shape"], ["grouped"]),
        helper.make_node("Transpose", ["grouped"], ["swapped"], perm=[0, 2, 1, 3, 4]),
        helper.make_node("Reshape", ["swapped", "flat_shape"], ["shuffled"]),
        cut,
        helper.make_node("ReduceMean", ["cut"], ["pooled"], axes=[2, 3], keepdims=0) if opset < 18 else
        helper.make_node("ReduceMean", ["cut", "axes"], ["pooled"], keepdims=0),
    ]
    inits = weights(w0=(4, 3, 1, 1), w1=(2, 2, 3, 3), grouped_shape=np.int64([1, 2, 2, 8, 8]),
                    flat_shape=np.int64([1, -1, 8, 8]), axes=np.int64([2, 3])) + slice_inputs + split_sizes
    loaded = compare(graph_model(nodes, inits, opset=opset), tmp_path)
    types = [layer.type for layer in loaded.network.layers]
    assert types.count("slice") == 4 and "channel_shuffle" in types  # two halves, rows, columns
    layers = {layer.name: layer for layer in loaded.network.layers}
    assert layers["shuffled"].groups == 2


@pytest.mark.parametrize("nodes, why", [
    ([helper.make_node("Reshape", ["x", "five"], ["v"]), helper.make_node("Transpose", ["v"], ["t"], perm=[0, 1, 2, 4, 3]),
      helper.make_node("Reshape", ["t", "four"], ["y"])], "perm [0, 1, 2, 4, 3]"),
    ([helper.make_node("Reshape", ["x", "five"], ["v"]), helper.make_node("Relu", ["v"], ["y"])], "5-D view"),
    ([helper.make_node("Transpose", ["x"], ["y"], perm=[0, 1, 3, 2])], "within a channel shuffle"),
    ([helper.make_node("Slice", ["x", "s", "e", "a", "neg"], ["y"])], "forwards only"),
    ([helper.make_node("Slice", ["x", "s", "e", "zero"], ["y"])], "slices the batch"),
])
def test_reshapes_and_slices_cnn_does_not_compute_are_refused(tmp_path, capsys, nodes, why):
    inits = weights(five=np.int64([1, 3, 1, 8, 8]), four=np.int64([1, 3, 8, 8]), s=np.int64([0]), e=np.int64([1]),
                    a=np.int64([1]), neg=np.int64([-1]), zero=np.int64([0]))
    message = _bad(capsys, save(graph_model(nodes, inits), tmp_path))
    assert why in message and "cannot import" in message


# -- real files as they come: narrow and wide float weights, Casts, batch dims, several outputs ------------
def _float_tensor(values, kind, name, stored):
    """A TensorProto of ``values`` as ``kind`` (FLOAT16, DOUBLE, BFLOAT16), ``stored`` in raw_data or in the typed
    field exporters use (float16 and bfloat16 as their bits in int32_data, float64 in double_data)."""
    values = np.asarray(values, np.float32)
    if kind == TensorProto.BFLOAT16:
        bits = (values.view(np.uint32) >> 16).astype(np.uint16)  # truncation keeps the test exact: values are bf16
        exact = (bits.astype(np.uint32) << 16).view(np.float32)
    elif kind == TensorProto.FLOAT16:
        bits, exact = values.astype(np.float16).view(np.uint16), values.astype(np.float16).astype(np.float32)
    else:
        bits, exact = None, values.astype(np.float64)
    tensor = TensorProto(name=name, data_type=kind, dims=values.shape)
    if stored == "raw":
        tensor.raw_data = (bits if bits is not None else exact).tobytes()
    elif kind == TensorProto.DOUBLE:
        tensor.double_data.extend(exact.ravel().tolist())
    else:
        tensor.int32_data.extend(bits.ravel().astype(np.int32).tolist())
    return tensor, exact.astype(np.float32)


@pytest.mark.parametrize("kind, stored", [(TensorProto.FLOAT16, "raw"), (TensorProto.FLOAT16, "typed"),
                                          (TensorProto.DOUBLE, "raw"), (TensorProto.DOUBLE, "typed"),
                                          (TensorProto.BFLOAT16, "raw"), (TensorProto.BFLOAT16, "typed")])
def test_float16_float64_and_bfloat16_weights_match_ort(tmp_path, kind, stored):
    """Weights stored as float16, float64 or bfloat16, in raw_data or in int32_data/double_data, each Cast to
    float for the Conv and Gemm as exporters write them, match ORT at every node; cnn holds them as float32."""
    w, w_exact = _float_tensor(RNG.standard_normal((4, 3, 3, 3)), kind, "w_stored", stored)
    fw, fw_exact = _float_tensor(RNG.standard_normal((5, 64)), kind, "fw_stored", stored)
    nodes = [helper.make_node("Cast", ["w_stored"], ["w"], to=TensorProto.FLOAT),
             helper.make_node("Cast", ["fw_stored"], ["fw"], to=TensorProto.FLOAT),
             helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("MaxPool", ["r"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("Flatten", ["p"], ["f"]), helper.make_node("Gemm", ["f", "fw"], ["logits"], transB=1)]
    loaded = compare(graph_model(nodes, [w, fw]), tmp_path, expect_layers=["conv2d", "relu", "maxpool2d", "flatten",
                                                                            "dense"])
    conv, dense = loaded.network.layers[0], loaded.network.layers[-1]
    assert conv.weight.dtype == np.float32 and np.array_equal(conv.weight, w_exact)
    assert np.array_equal(dense.weight, fw_exact)


def _ort_every(model, x):
    """ORT's value of every node output of ``model`` (whatever its type) for the batch ``x``."""
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    present = {value.name for value in probe.graph.output}
    probe.graph.output.extend(helper.make_value_info(name, onnx.TypeProto()) for node in probe.graph.node
                              for name in node.output if name not in present)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(probe.SerializeToString(), options, providers=["CPUExecutionProvider"])
    wanted = [value.name for value in probe.graph.output]
    return dict(zip(wanted, session.run(wanted, {"x": x})))


def _half_model(dtype, casts):
    """conv-relu-pool-flatten-gemm in ``dtype`` (FLOAT16 or FLOAT); with ``casts`` its float32 input and output are
    Cast to and from it, as onnxconverter-common's float16 conversion (keep_io_types) writes them."""
    rng = np.random.default_rng(3)
    arrays = {"w": rng.standard_normal((4, 3, 3, 3)), "b": rng.standard_normal(4), "fw": rng.standard_normal((5, 64)) / 8}
    np_type = np.float16 if dtype == TensorProto.FLOAT16 else np.float32
    inits = [numpy_helper.from_array(a.astype(np.float16).astype(np_type), name) for name, a in arrays.items()]
    nodes = [helper.make_node("Conv", ["xh", "w", "b"], ["c"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("MaxPool", ["r"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("Flatten", ["p"], ["f"]), helper.make_node("Gemm", ["f", "fw"], ["logits"], transB=1)]
    if casts:
        nodes = [helper.make_node("Cast", ["x"], ["xh"], to=dtype), *nodes,
                 helper.make_node("Cast", ["logits"], ["out"], to=TensorProto.FLOAT)]
    else:
        nodes[0].input[0] = "x"
    io_type = TensorProto.FLOAT if casts else dtype
    graph = helper.make_graph(nodes, "half", [helper.make_tensor_value_info("x", io_type, ["N", 3, 8, 8])],
                              [helper.make_tensor_value_info(nodes[-1].output[0], io_type, None)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("casts", [False, True])
def test_a_float16_model_is_computed_in_float32_from_its_exact_weights(tmp_path, casts):
    """A float16 model (float16 input, or float32 input and output Cast around float16 nodes) gives, at every node,
    what ORT gives for its float32 twin (the same float16 weights, widened) to 1e-5 of the tensor's scale, and
    what ORT's own float16 run gives to 1e-2 (float16's precision, about 1e-3, over sums of 27 and 64 terms)."""
    model = _half_model(TensorProto.FLOAT16, casts)
    loaded = load_model(str(save(model, tmp_path)))
    x = RNG.random((3, 8, 8)).astype(np.float32)
    steps = {step.name: step.output for step in loaded.network.forward(x)[1:]}
    twin = _ort_every(_half_model(TensorProto.FLOAT, False), x[None])
    half = _ort_every(model, x[None] if casts else x[None].astype(np.float16))
    for name in ("c", "r", "p", "f", "logits"):
        scale = float(np.abs(twin[name]).max())
        assert np.abs(steps[name] - twin[name][0]).max() <= 1e-5 * scale, name
        assert np.abs(steps[name] - half[name][0].astype(np.float32)).max() <= 1e-2 * scale, name
    assert loaded.network.layers[-1].name == ("out" if casts else "logits")


def test_a_cast_of_a_map_to_integers_is_refused(tmp_path, capsys):
    """Cast of a computed map to int64 is listed as unsupported: cnn computes maps as floats."""
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"]), helper.make_node("Cast", ["c"], ["i"], to=TensorProto.INT64)]
    err = _bad(capsys, save(graph_model(nodes, weights(w=(2, 3, 3, 3))), tmp_path))
    assert "Cast (node i: casts a map to data type 7; cnn computes maps as floats)" in err


@pytest.mark.parametrize("batch", ["N", "batch_size", None, 1])
def test_a_dynamic_or_fixed_batch_dimension_is_read_as_one_image(tmp_path, batch):
    """The batch dimension may be a name ('N', 'batch_size'), missing or 1: each gives the same model, and ORT agrees."""
    nodes, inits = chain_nodes()
    model = graph_model(nodes, inits, batch="N")
    dim = model.graph.input[0].type.tensor_type.shape.dim[0]
    if batch is None:
        dim.Clear()
    elif isinstance(batch, int):
        dim.dim_value = batch
    else:
        dim.dim_param = batch
    assert dim.WhichOneof("value") == (None if batch is None else "dim_value" if batch == 1 else "dim_param")
    loaded = compare(model, tmp_path)
    assert loaded.input.shape == (3, 8, 8)


def _two_headed(order):
    """A network with two heads, a softmax of 'logits' and a sigmoid of the features: the graph's outputs are
    listed in ``order``."""
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("GlobalAveragePool", ["r"], ["gap"]), helper.make_node("Flatten", ["gap"], ["feat"]),
             helper.make_node("Gemm", ["feat", "fw"], ["logits"], transB=1),
             helper.make_node("Softmax", ["logits"], ["prob"], axis=1),
             helper.make_node("Sigmoid", ["feat"], ["aux"])]
    rng = np.random.default_rng(4)
    inits = weights(w=rng.standard_normal((4, 3, 3, 3)).astype(np.float32), fw=rng.standard_normal((5, 4)).astype(np.float32))
    return graph_model(nodes, inits, outputs=list(order))


@pytest.mark.parametrize("order, last", [(["prob", "aux"], "prob"), (["aux", "prob"], "aux"),
                                         (["logits", "prob"], "prediction")])
def test_the_first_of_several_outputs_is_the_prediction_and_all_are_shown(tmp_path, order, last):
    """With several graph outputs, the first is the network's last step (its prediction) and the others are its
    outputs; every one matches ORT. An output that a later one reads is copied to a last step, 'prediction'."""
    model = _two_headed(order)
    loaded = compare(model, tmp_path)
    network = loaded.network
    assert network.layers[-1].name == last
    assert set(network.outputs) == set(order) - {last}
    x = RNG.random((3, 8, 8)).astype(np.float32)
    steps = network.forward(x)
    reference = ort_values(model, x, [])
    assert np.allclose(steps[-1].output, reference[order[0]][0], rtol=1e-5, atol=1e-7)


def test_cli_run_json_shows_each_output_and_predicts_from_the_first(tmp_path):
    """`cnn run -f json` with a two-output model: each output is a layer with its values' statistics, the model
    lists the other output, and the predictions come from the first output (its 5 classes, ranked)."""
    path = save(_two_headed(["prob", "aux"]), tmp_path)
    image = tmp_path / "x.npy"
    x = RNG.random((3, 8, 8)).astype(np.float32)
    np.save(image, x)
    result = invoke("run", str(image), "--model", str(path), "-f", "json")
    assert result.exit_code == 0, result.stderr
    trace = json.loads(result.stdout)
    layers = {layer["name"]: layer for layer in trace["layers"]}
    assert trace["layers"][-1]["name"] == "prob" and "aux" in layers
    assert trace["model"]["outputs"] == ["aux"]
    reference = ort_values(_two_headed(["prob", "aux"]), x, [])
    assert layers["aux"]["shape"] == [4] and layers["prob"]["shape"] == [5]
    assert layers["aux"]["stats"]["max"] == pytest.approx(float(reference["aux"].max()), rel=1e-5)
    ranked = [p["index"] for p in trace["predictions"]]
    assert ranked == list(np.argsort(-reference["prob"][0], kind="stable"))


# -- external data: tensors in files beside the model, inside its folder only ------------------------------
def save_external(model, folder, *, one_file=True, location="weights.bin", attributes=False):
    """``model`` saved by onnx.save_model with its tensors as external data in ``folder`` (the model itself is left
    as it was); returns the .onnx path."""
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    folder.mkdir(exist_ok=True)
    path = folder / "net.onnx"
    onnx.save_model(copy, str(path), save_as_external_data=True, all_tensors_to_one_file=one_file, location=location,
                    size_threshold=0, convert_attribute=attributes)
    return path


def _external_chain():
    """chain_nodes with a Constant node's tensor and float16 weights (Cast to float) among its tensors."""
    nodes, inits = chain_nodes()
    half = numpy_helper.from_array(RNG.standard_normal((5,)).astype(np.float16), "fb_half")
    inits = [i for i in inits if i.name != "fb"] + [half]
    offset = numpy_helper.from_array(RNG.standard_normal((5,)).astype(np.float32), "offset_value")
    nodes[5:5] = [helper.make_node("Cast", ["fb_half"], ["fb"], to=TensorProto.FLOAT),
                  helper.make_node("Constant", [], ["offset"], value=offset)]
    nodes.insert(-1, helper.make_node("Add", ["fc", "offset"], ["shifted"]))
    nodes[-1].input[0] = "shifted"
    return graph_model(nodes, inits)


@pytest.mark.parametrize("one_file", [True, False])
def test_external_data_in_one_file_or_one_per_tensor_matches_ort(tmp_path, one_file):
    """A model saved by onnx.save_model(save_as_external_data=True), its tensors (a Constant's too) all in one file
    or one file each, is read from its folder and matches ORT, which reads the same files, at every node."""
    model = _external_chain()
    path = save_external(model, tmp_path / "model", one_file=one_file, attributes=True)
    stored = onnx.load(str(path), load_external_data=False)
    assert all(t.data_location == TensorProto.EXTERNAL for t in stored.graph.initializer)
    loaded = load_model(str(path))
    x = RNG.random(loaded.input.shape).astype(np.float32)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    expected = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"]).run(None, {"x": x[None]})
    steps = loaded.network.forward(x)
    assert steps[-1].name == "prob"
    assert np.allclose(steps[-1].output, expected[0][0], rtol=1e-5, atol=1e-7)
    inline = {step.name: step.output for step in compare(model, tmp_path).network.forward(x)}
    for step in steps[1:]:
        assert np.array_equal(step.output, inline[step.name]), step.name  # as the same model with its data inside
    assert loaded.paths[0] == path  # then the data files, which no output may overwrite
    assert sorted(p.name for p in loaded.paths[1:]) == (["weights.bin"] if one_file else sorted(
        ["w1", "b1", "s", "bb", "m", "v", "fw", "fb_half", "offset_value"]))


def test_external_data_through_a_link_inside_the_folder_is_read(tmp_path):
    """A data file reached through a symbolic link that stays inside the model's folder is read."""
    path = save_external(_external_chain(), tmp_path / "model", location="real.bin")
    (tmp_path / "model" / "data").mkdir()
    (tmp_path / "model" / "real.bin").rename(tmp_path / "model" / "data" / "real.bin")
    (tmp_path / "model" / "real.bin").symlink_to("data/real.bin")
    assert load_model(str(path)).network.layers[0].type == "conv2d"


def _edit_external(path, name="w1", **fields):
    """Rewrite the external_data entries of initializer ``name`` in the .onnx file at ``path`` (a value of None
    removes the key)."""
    model = onnx.load(str(path), load_external_data=False)
    tensor = next(t for t in model.graph.initializer if t.name == name)
    entries = {entry.key: entry.value for entry in tensor.external_data}
    entries.update(fields)
    del tensor.external_data[:]
    for key, value in entries.items():
        if value is not None:
            tensor.external_data.add(key=key, value=str(value))
    path.write_bytes(model.SerializeToString())


def _outside(folder):
    """A file of the right size for w1 (4*3*3*3 float32) beside the model's folder, not in it."""
    secret = folder.parent / "secret.bin"
    secret.write_bytes(np.ones(108, np.float32).tobytes())
    return secret


@pytest.mark.parametrize("case, why", [
    ("dotdot", "initializer w1: external data location '../secret.bin' climbs out with '..'; expected a file inside "
               "the model's folder"),
    ("inner dotdot", "initializer w1: external data location 'sub/../../secret.bin' climbs out with '..'"),
    ("absolute", "initializer w1: external data location '/"),
    ("link out", "initializer w1: external data location 'link.bin' is a symbolic link (or passes through one) that "
                 "leads outside the model's folder"),
    ("folder link out", "initializer w1: external data location 'up/secret.bin' is a symbolic link (or passes"),
    ("missing", "initializer w1: external data file 'gone.bin': no such file"),
    ("a folder", "initializer w1: external data file 'sub': is a folder"),
    ("a fifo", "initializer w1: external data file 'pipe': is a named pipe (FIFO); expected an ONNX external data "
               "file (a regular file)"),
    ("offset past the end", "initializer w1: external data offset 100,000 is past the end of 'weights.bin'"),
    ("length past the end", "initializer w1: external data length 432 from offset "),
    ("wrong length", "initializer w1: external data in 'weights.bin' holds 8 bytes; its dims (4, 3, 3, 3) of float "
                     "need 432"),
    ("no length, the rest", "initializer w1: external data in 'weights.bin' holds "),
    ("negative offset", "initializer w1: external_data offset '-4' is not a whole number of bytes from 0"),
    ("unknown key", "initializer w1: external_data key 'compression' is not one of location, offset, length"),
    ("no location", "initializer w1: is stored as external data but names no file"),
    ("NUL", "initializer w1: external data location 'a\\x00b' holds a NUL character"),
])
def test_hostile_or_broken_external_data_is_one_error_naming_the_initializer(tmp_path, capsys, case, why):
    """External data outside the model's folder (by '..', an absolute path, a link out of it), missing, not a regular
    file, with a range past the file's end or a size that is not its dims', or written wrong: one line naming the
    model file and the initializer, exit 1; the file outside the folder, which would fit w1, is never used."""
    import os

    folder = tmp_path / "model"
    path = save_external(_external_chain(), folder)
    secret = _outside(folder)
    edits = {"dotdot": {"location": "../secret.bin", "offset": 0},
             "inner dotdot": {"location": "sub/../../secret.bin", "offset": 0},
             "absolute": {"location": str(secret), "offset": 0},
             "link out": {"location": "link.bin", "offset": 0},
             "folder link out": {"location": "up/secret.bin", "offset": 0},
             "missing": {"location": "gone.bin"}, "a folder": {"location": "sub"}, "a fifo": {"location": "pipe"},
             "offset past the end": {"offset": 100_000}, "length past the end": {"length": 432, "offset": None},
             "wrong length": {"length": 8}, "no length, the rest": {"length": None},
             "negative offset": {"offset": -4}, "unknown key": {"compression": "zlib"},
             "no location": {"location": None}, "NUL": {"location": "a\0b"}}[case]
    (folder / "sub").mkdir()
    (folder / "link.bin").symlink_to(secret)
    (folder / "up").symlink_to(secret.parent)
    os.mkfifo(folder / "pipe")
    if case == "length past the end":
        offset = next(int(e.value) for t in onnx.load(str(path), load_external_data=False).graph.initializer
                      if t.name == "w1" for e in t.external_data if e.key == "offset")
        edits["offset"] = (folder / "weights.bin").stat().st_size - 400 if offset == 0 else offset
    _edit_external(path, **edits)
    err = _bad(capsys, path)
    assert err.startswith(f"cnn: {path}: {why}"), err


@pytest.mark.parametrize("flag, factor, over", [("--max-file-size", 1, "over the limit"),
                                                ("--max-memory", 3, "over what the memory limit leaves")])
def test_external_data_counts_toward_the_model_file_size_limit(tmp_path, capsys, flag, factor, over):
    """The model and its data files are held together: over --max-file-size (or a third of --max-memory, the room
    an ONNX file's bytes get), one line names the limit and its flag; with exactly room for both, it loads."""
    path = save_external(_external_chain(), tmp_path / "model")
    size = path.stat().st_size + (path.parent / "weights.bin").stat().st_size
    code, out, err = run_main(capsys, "summary", str(path), flag, str((size - 1) * factor))
    assert code == 1 and out == "" and err.count("\n") == 1
    assert err.startswith(f"cnn: {path}: initializer ") and "with its external data file 'weights.bin' the model " \
        f"comes to {size / 1024:.1f} KiB ({size:,} bytes), {over}" in err and f"({flag} raises it)" in err, err
    code, _, err = run_main(capsys, "summary", str(path), flag, str(size * factor))
    assert code == 0, err


def test_external_data_of_a_model_given_as_bytes_is_refused(tmp_path):
    """load_onnx on bytes alone (no folder) refuses external data instead of guessing a folder."""
    from cnncli.io.onnx_import import load_onnx

    path = save_external(_external_chain(), tmp_path / "model")
    with pytest.raises(CnnError, match=r"initializer w1: is stored in the external data file 'weights.bin', which cnn "
                                       r"reads only beside a model file"):
        load_onnx(path.read_bytes(), "net.onnx")


# -- bad files, more of them: one `cnn:` line naming the file (and the node), exit 1 --------------------------
def test_nodes_out_of_topological_order_are_sorted_as_ort_sorts_them(tmp_path):
    """ONNX asks for nodes in topological order, but ORT sorts a graph that is not (and runs it): so does cnn, and
    every node matches ORT."""
    nodes, inits = chain_nodes()
    shuffled = [nodes[i] for i in (6, 2, 0, 5, 1, 4, 3)]
    loaded = compare(graph_model(shuffled, inits, outputs=["prob"]), tmp_path,
                     expect_layers=["conv2d", "batchnorm2d", "relu", "maxpool2d", "flatten", "dense", "softmax"])
    assert loaded.network.is_chain


@pytest.mark.parametrize("nodes, why", [
    ([helper.make_node("Add", ["x", "b"], ["a"]), helper.make_node("Relu", ["a"], ["b"]),
      helper.make_node("Relu", ["b"], ["out"])],
     "has a cycle: node b (Relu) -> node a (Add) -> node b (Relu), each reading the one before; an ONNX graph has none"),
    ([helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Mul", ["r", "m"], ["m"]),
      helper.make_node("Relu", ["m"], ["out"])],
     "has a cycle: node m (Mul) -> node m (Mul)"),
    ([helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Sigmoid", ["x"], ["r"]),
      helper.make_node("Relu", ["r"], ["out"])],
     "node r (Sigmoid): writes 'r', which node r (Relu) writes too; each tensor has one writer"),
    ([helper.make_node("Relu", ["x"], ["w"], name="relu"), helper.make_node("Conv", ["x", "w"], ["out"])],
     "node relu (Relu): writes 'w', which is an initializer; each tensor has one writer"),
    ([helper.make_node("Relu", ["x"], ["r"]), helper.make_node("", ["r"], ["out"])],
     "node out: has an empty op_type; expected the operator it runs (Conv, Relu, ...)"),
])
def test_cycles_two_writers_and_empty_ops_are_one_error_naming_the_nodes(tmp_path, capsys, nodes, why):
    """A cycle (as ORT: 'the graph is not acyclic'), a tensor written twice (ORT: 'Duplicate definition'), a node
    with no op_type (ORT: 'required to be non-empty'): each refused naming its nodes, before anything runs."""
    model = graph_model(nodes, weights(w=(2, 3, 3, 3)), outputs=["out"])
    with pytest.raises(Exception, match="not acyclic|Duplicate definition|required to be non-empty"):
        ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    err = _bad(capsys, save(model, tmp_path))
    assert why in err, err


def test_an_initializer_given_twice_is_refused(tmp_path, capsys):
    """Two initializers of one name: ORT warns that it takes one of them; cnn refuses rather than guess which."""
    nodes, inits = chain_nodes()
    inits += weights(w1=np.zeros((4, 3, 3, 3), np.float32))
    assert "initializer w1: is given twice; expected one tensor of each name" in _bad(capsys, save(graph_model(nodes, inits), tmp_path))


def _opsets(model, *opsets):
    del model.opset_import[:]
    model.opset_import.extend(helper.make_opsetid(domain, version) for domain, version in opsets)
    return model


@pytest.mark.parametrize("change, why", [
    (lambda m: _opsets(m, ("", onnx.defs.onnx_opset_version() + 1)),
     f"declares opset {onnx.defs.onnx_opset_version() + 1} of the default ONNX domain; the installed onnx "
     f"{onnx.__version__} knows opsets up to {onnx.defs.onnx_opset_version()} (pip install -U onnx)"),
    (lambda m: _opsets(m, ("", 11), ("ai.onnx", 13)), "declares the default ONNX domain at opsets [11, 13]; expected one"),
    (lambda m: _opsets(m, ("com.example", 1)), "declares no opset of the default ONNX domain"),
    (lambda m: setattr(m, "ir_version", onnx.IR_VERSION + 1),
     f"has IR version {onnx.IR_VERSION + 1}; the installed onnx {onnx.__version__} reads IR versions up to "
     f"{onnx.IR_VERSION} (pip install -U onnx)"),
    (lambda m: m.graph.input[0].type.tensor_type.__setattr__("elem_type", TensorProto.INT64),
     "input 'x' takes int64 values; cnn feeds images as floats (float, float16, double or bfloat16)"),
    (lambda m: m.graph.input[0].type.sequence_type.elem_type.tensor_type.__setattr__("elem_type", 1),
     "input 'x' is not a tensor (sequence_type); cnn feeds images as float tensors"),
])
def test_versions_onnx_does_not_know_and_inputs_that_are_not_float_images_are_refused(tmp_path, capsys, change, why):
    """An opset or IR version newer than the installed onnx knows (ORT refuses them too), the default domain declared
    twice or not at all, an input of integers or of sequences: one line each."""
    nodes, inits = chain_nodes()
    model = graph_model(nodes, inits)
    change(model)
    assert why in _bad(capsys, save(model, tmp_path))


def test_an_opset_of_a_custom_domain_is_accepted_and_its_nodes_listed(tmp_path, capsys):
    """A custom domain's opset_import (com.microsoft, ai.onnx.ml) does not stop a model that uses none of its
    operators; a node in such a domain is listed as unsupported, naming the domain."""
    nodes, inits = chain_nodes()
    model = _opsets(graph_model(nodes, inits), ("", 13), ("com.microsoft", 1), ("ai.onnx.ml", 3))
    compare(model, tmp_path)
    nodes[2] = helper.make_node("FusedRelu", ["bn1"], ["relu1"], domain="com.microsoft")
    model = _opsets(graph_model(nodes, inits), ("", 13), ("com.microsoft", 1))
    assert "cannot import 1 node: FusedRelu (node relu1: domain com.microsoft)" in _bad(capsys, save(model, tmp_path))


@pytest.mark.parametrize("content, what", [
    (b"", "empty (0 bytes)"),
    (json.dumps({"format": "cnn-model", "version": 1}).encode(), "JSON text (a model JSON file?)"),
    (b"\xef\xbb\xbf\n  [1, 2]", "JSON text"),
    (b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01", "a PNG image"),
    (b"\xff\xd8\xff\xe0\0\x10JFIF", "a JPEG image"),
    (b"PK\x03\x04\x14\0\0\0", "a zip archive (an .npz?)"),
])
def test_files_that_are_not_onnx_under_an_onnx_name_say_what_they_are(tmp_path, capsys, content, what):
    """An empty file, JSON, a PNG, a JPEG or a zip named .onnx: one line saying what the file is."""
    path = tmp_path / "net.onnx"
    path.write_bytes(content)
    assert _bad(capsys, path) == f"cnn: {path}: is {what}, not an ONNX model; expected a protobuf ModelProto (.onnx)\n"


@pytest.mark.parametrize("dims, why", [
    ([1 << 40], "initializer w: tensor 'w' holds 432 bytes of values; its dims (1099511627776,) need "
                "4,398,046,511,104"),
    ([4, -1, 3, 3], "initializer w: tensor 'w' has dims (4, -1, 3, 3), one of them negative"),
])
def test_an_initializer_claiming_2_to_the_40_values_or_a_negative_dim_is_refused(tmp_path, capsys, dims, why):
    """Dims of 2^40 values over 108 stored values, or a -1 (which numpy would fill in), are refused naming the
    initializer, before anything is allocated for them."""
    nodes = [helper.make_node("Conv", ["x", "w"], ["out"])]
    tensor = numpy_helper.from_array(RNG.standard_normal((4, 3, 3, 3)).astype(np.float32), "w")
    del tensor.dims[:]
    tensor.dims.extend(dims)
    assert why in _bad(capsys, save(graph_model(nodes, [tensor]), tmp_path))


def test_external_data_claiming_2_to_the_40_values_is_refused_before_reading(tmp_path, capsys):
    """An external initializer whose dims claim 2^40 float32 values (4 TiB) is refused by its byte count."""
    path = save_external(_external_chain(), tmp_path / "model")
    model = onnx.load(str(path), load_external_data=False)
    tensor = next(t for t in model.graph.initializer if t.name == "w1")
    del tensor.dims[:]
    tensor.dims.extend([1 << 40])
    path.write_bytes(model.SerializeToString())
    err = _bad(capsys, path)
    assert "initializer w1: external data in 'weights.bin' holds 432 bytes; its dims (1099511627776,) of float need " \
           "4,398,046,511,104" in err


def test_cnn_check_runs_onnx_runtime_on_a_model_with_external_data(tmp_path, capsys):
    """ONNX Runtime, given the model's bytes, finds its data files in the model's folder: every node
    passes (the reference is ORT on the same files)."""
    path = save_external(_external_chain(), tmp_path / "model")
    image = tmp_path / "x.npy"
    np.save(image, RNG.random((3, 8, 8)).astype(np.float32))
    code, out, err = run_main(capsys, "check", str(path), str(image), "-f", "json")
    assert code == 0, err
    report = json.loads(out)
    assert report["failed"] == 0 and len(report["nodes"]) >= 6


def test_loading_a_file_holds_its_weights_about_once(tmp_path):
    """The weights are read from the file into their arrays one by one (wire.py), not through the
    file's bytes and a parse of them: tracemalloc's peak while a 16 MB model loads stays within 1.25
    times its weights (it was 3 times), and the arrays are those stored (the reference: the
    initializers as onnx reads them)."""
    import tracemalloc

    big = RNG.standard_normal((256, 256, 8, 8)).astype(np.float32)  # 16 MiB
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[4, 4, 3, 3]),
             helper.make_node("Conv", ["c", "w2"], ["y"], pads=[4, 4, 3, 3])]
    model = graph_model(nodes, [numpy_helper.from_array(big[:, :3].copy(), "w"), numpy_helper.from_array(big, "w2"),
                                ], size=(8, 8))
    path = save(model, tmp_path)
    tracemalloc.start()
    try:
        loaded = load_model(str(path))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    weights = big.nbytes + big[:, :3].nbytes
    assert peak <= 1.25 * weights, f"peak {peak:,} for {weights:,} bytes of weights"
    convs = [layer for layer in loaded.network.layers if layer.type == "conv2d"]
    assert np.array_equal(convs[1].weight, big) and np.array_equal(convs[0].weight, big[:, :3])
