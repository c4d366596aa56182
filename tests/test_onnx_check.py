"""`cnn check`: an ONNX model's every node, run by cnn and by ONNX Runtime (the reference), compared."""

import json

import numpy as np
import pytest
from conftest import ROOT

from cnncli.cli import main

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

DIGIT = str(ROOT / "sample_images" / "digit_7.png")


def small_net(tmp_path, scale=1.0):
    """conv -> relu -> max-pool -> residual add of the pool with itself, scaled by ``scale``."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array((rng.standard_normal((4, 1, 3, 3)) * scale).astype(np.float32), "W"),
             numpy_helper.from_array(rng.standard_normal(4).astype(np.float32), "B")]
    nodes = [helper.make_node("Conv", ["x", "W", "B"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("MaxPool", ["r"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("Add", ["p", "p"], ["a"])]
    graph = helper.make_graph(nodes, "t", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 8, 8])],
                              [helper.make_tensor_value_info("a", TensorProto.FLOAT, None)], inits)
    path = tmp_path / "net.onnx"
    path.write_bytes(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]).SerializeToString())
    return str(path)


def test_every_node_agrees_with_onnx_runtime(tmp_path, capsys):
    code = main(["check", small_net(tmp_path), DIGIT, "-f", "json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0 and report["failed"] == 0
    assert [(n["name"], n["op"], n["passed"]) for n in report["nodes"]] == [
        ("c", "Conv", True), ("r", "Relu", True), ("p", "MaxPool", True), ("a", "Add", True)]
    assert all(n["max_rel"] <= 1e-6 for n in report["nodes"])


def test_a_node_beyond_the_tolerance_fails_and_the_rest_pass(tmp_path):
    """check_steps judges each node against atol + rtol x its tensor's largest magnitude: a reference
    moved by 2e-4 of its scale fails at rtol 1e-4 and passes at 1e-3."""
    from pathlib import Path

    from cnncli.io.modelfile import load_model
    from cnncli.io.onnx_import.check import check_steps, reference_values

    path = small_net(tmp_path)
    model = load_model(path)
    x = np.random.default_rng(1).random((1, 8, 8)).astype(np.float32)
    steps = model.network.forward(x)
    data = Path(path).read_bytes()
    reference, ops = reference_values(data, x, [s.name for s in steps[1:]], path)
    moved = dict(reference)
    moved["r"] = reference["r"] + 2e-4 * np.abs(reference["r"]).max()
    verdicts = {c.name: c.passed for c in check_steps(steps, moved, ops, rtol=1e-4, atol=0)}
    assert verdicts == {"c": True, "r": False, "p": True, "a": True}
    assert all(c.passed for c in check_steps(steps, moved, ops, rtol=1e-3, atol=0))


def test_a_missing_model_is_one_line(capsys):
    code = main(["check", "no_such.onnx", DIGIT])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and "no_such.onnx" in err


def test_a_layer_the_importer_added_is_not_asked_of_onnx_runtime(tmp_path, capsys):
    """A max-pool with uneven pads imports as a pad layer then a pool: the pad has no ONNX tensor of
    its name, so only the ONNX nodes are compared."""
    rng = np.random.default_rng(3)
    inits = [numpy_helper.from_array(rng.standard_normal((2, 1, 3, 3)).astype(np.float32), "W")]
    nodes = [helper.make_node("Conv", ["x", "W"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("MaxPool", ["c"], ["p"], kernel_shape=[2, 2], strides=[2, 2], pads=[0, 0, 1, 1])]
    graph = helper.make_graph(nodes, "t", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 8, 8])],
                              [helper.make_tensor_value_info("p", TensorProto.FLOAT, None)], inits)
    path = tmp_path / "uneven.onnx"
    path.write_bytes(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]).SerializeToString())
    code = main(["check", str(path), DIGIT, "-f", "json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0 and [n["name"] for n in report["nodes"]] == ["c", "p"]
