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


# -- nodes held to the onnx reference evaluator, where ONNX Runtime departs from the spec ----------------
def pool_net(tmp_path, opset=13, count_include_pad=1, ceil_mode=1):
    """conv -> average pool (kernel 3, stride 2, pads 1 on an 8x8 map: 5x5 out with ceil_mode, its
    last window one cell past the padding) -> relu -> add of the relu with itself."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal((2, 1, 3, 3)).astype(np.float32), "W")]
    nodes = [helper.make_node("Conv", ["x", "W"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("AveragePool", ["c"], ["p"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1],
                              ceil_mode=ceil_mode, count_include_pad=count_include_pad),
             helper.make_node("Relu", ["p"], ["r"]),
             helper.make_node("Add", ["r", "r"], ["a"])]
    graph = helper.make_graph(nodes, "t", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 8, 8])],
                              [helper.make_tensor_value_info("a", TensorProto.FLOAT, None)], inits)
    path = tmp_path / f"pool{opset}.onnx"
    path.write_bytes(helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)]).SerializeToString())
    return str(path)


@pytest.fixture
def departing_onnxruntime(monkeypatch):
    """ONNX Runtime as 1.22 runs pool_net's pool (checked by hand against onnxruntime 1.22.0): every
    window divided by the whole kernel, the cell past the padding counted as a pad. Made here by
    running the pool without ceil_mode and with one more end pad, on the installed ONNX Runtime."""
    from cnncli.io.onnx_import import check

    real = check._run_onnxruntime

    def departing(model, feeds, wanted, source, folder=None):
        model = onnx.load_model_from_string(model.SerializeToString())
        for node in model.graph.node:
            if node.op_type == "AveragePool":
                node.CopyFrom(helper.make_node("AveragePool", node.input, node.output, kernel_shape=[3, 3],
                                               strides=[2, 2], pads=[1, 1, 2, 2], count_include_pad=1))
        return real(model, feeds, wanted, source, folder)

    monkeypatch.setattr(check, "_run_onnxruntime", departing)


def whole_kernel_pool(self, x, *args, **kwargs):
    """cnn's average pool made to depart as ONNX Runtime 1.22 does: the cell past the padding
    counted, so every window divided by the whole kernel."""
    from cnncli.engine import ops

    padded = np.pad(x, [(0, 0)] * (x.ndim - 2) + [(0, 1), (0, 1)])  # (C, H + 1, W + 1)
    return ops.avg_pool2d(padded, self.kernel_size, self.stride, self.padding, False, True)


def test_an_average_pool_with_ceil_mode_is_held_to_the_onnx_reference(tmp_path, capsys):
    """AveragePool with ceil_mode=1 and count_include_pad=1 at opset 13 is compared with the onnx
    reference evaluator (1e-5 + 1e-4 x scale), the other nodes with ONNX Runtime; the JSON says
    which for every node and why."""
    code = main(["check", pool_net(tmp_path), DIGIT, "-f", "json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0 and report["failed"] == 0
    assert [(n["name"], n["reference"], n["passed"]) for n in report["nodes"]] == [
        ("c", "onnxruntime", True), ("p", "onnx reference", True), ("r", "onnxruntime", True),
        ("a", "onnxruntime", True)]
    assert len(report["onnx_reference"]) == 1 and "microsoft/onnxruntime#16203" in report["onnx_reference"][0]


def test_the_table_names_the_reference_of_each_node_and_says_why(tmp_path, capsys):
    code = main(["check", pool_net(tmp_path), DIGIT])
    out = capsys.readouterr().out
    rows = {line.split()[-1]: line for line in out.splitlines() if line.split()[-1:] in (["c"], ["p"], ["r"], ["a"])}
    assert code == 0 and "onnx ref" in rows["p"] and " ORT " in rows["r"]  # the node's name is the last column
    caption = " ".join(out.split())  # as wrapped to the console's width
    assert "3 nodes against ONNX Runtime, 1 against the onnx reference evaluator" in caption
    assert "onnx reference: AveragePool with ceil_mode=1 and count_include_pad=1 before opset 19" in caption


@pytest.mark.parametrize("opset, count_include_pad, ceil_mode", [(19, 1, 1), (13, 0, 1), (13, 1, 0)])
def test_other_average_pools_stay_with_onnx_runtime(tmp_path, capsys, opset, count_include_pad, ceil_mode):
    """Whether a node is held is decided by its opset and attributes: from opset 19, with
    count_include_pad=0 or without ceil_mode, ONNX Runtime computes the spec and is the reference."""
    code = main(["check", pool_net(tmp_path, opset, count_include_pad, ceil_mode), DIGIT, "-f", "json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0 and {n["reference"] for n in report["nodes"]} == {"onnxruntime"}
    assert report["onnx_reference"] == []


def test_where_onnx_runtime_departs_cnn_passes_and_later_nodes_are_run_from_the_reference(
        tmp_path, capsys, departing_onnxruntime):
    """With ONNX Runtime dividing the pool's last windows by the whole kernel, the pool passes
    against the onnx reference, the note says ONNX Runtime departs, and the relu and add after it,
    which ONNX Runtime runs again from the reference's pool, pass too."""
    code = main(["check", pool_net(tmp_path), DIGIT, "-f", "json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0 and report["failed"] == 0
    pool = report["nodes"][1]
    assert pool["reference"] == "onnx reference" and "ONNX Runtime differs by" in pool["note"]
    assert all(n["max_rel"] <= 1e-6 for n in report["nodes"])


def test_cnn_departing_as_onnx_runtime_does_still_fails(tmp_path, capsys, monkeypatch, departing_onnxruntime):
    """cnn made to divide by the whole kernel agrees with the departing ONNX Runtime, but the pool
    is held to the onnx reference: it fails, and the note says which to believe."""
    from cnncli.engine.layers import core

    monkeypatch.setattr(core.Pool2d, "forward", whole_kernel_pool)
    code = main(["check", pool_net(tmp_path), DIGIT, "-f", "json"])
    captured = capsys.readouterr()
    pool = json.loads(captured.out)["nodes"][1]
    assert code == 1 and not pool["passed"] and pool["reference"] == "onnx reference"
    assert pool["note"].startswith("cnn agrees with ONNX Runtime, not with the onnx reference: believe the onnx")
    assert "differ from their reference" in captured.err


def test_a_wrong_pool_fails_against_the_onnx_reference(tmp_path, capsys, monkeypatch):
    """cnn's pool with its last column halved fails against the onnx reference, and ONNX Runtime
    (which computes the spec here) differs too."""
    from cnncli.engine.layers import core

    forward = core.Pool2d.forward

    def last_column_halved(self, x, *args, **kwargs):
        y = forward(self, x, *args, **kwargs).copy()
        y[..., -1] *= 0.5
        return y

    monkeypatch.setattr(core.Pool2d, "forward", last_column_halved)
    code = main(["check", pool_net(tmp_path), DIGIT, "-f", "json"])
    pool = json.loads(capsys.readouterr().out)["nodes"][1]
    assert code == 1 and not pool["passed"] and pool["reference"] == "onnx reference"
    assert pool["note"].startswith("ONNX Runtime differs too")


@pytest.mark.parametrize("size, stride, pads, expected", [
    (6, 2, 1, [1, 3, 5, 3]),  # windows from -1, 1, 3, 5: the last holds 6 and a pad, 6 / 2
    (7, 3, 0, [2, 5, 7]),  # the last window holds 7 alone and hangs 2 cells past: the evaluator's own shifts
])
def test_the_onnx_reference_value_of_a_ceil_mode_pool_is_the_spec(size, stride, pads, expected):
    """Hand-worked averages of 1..size, kernel 3, count_include_pad=1: pads count, cells past them
    do not."""
    from cnncli.io.onnx_import.check import AveragePoolCeilMode

    node = helper.make_node("AveragePool", ["x"], ["y"], kernel_shape=[3], strides=[stride], pads=[pads, pads],
                            ceil_mode=1, count_include_pad=1)
    x = np.arange(1, size + 1, dtype=np.float32).reshape(1, 1, size)
    np.testing.assert_allclose(AveragePoolCeilMode().evaluate(node, x, 13), [[expected]], rtol=1e-6)


def test_the_reference_evaluator_runs_only_for_held_nodes_and_within_its_budget(tmp_path, monkeypatch):
    """A model without held nodes never starts the evaluator and runs ONNX Runtime once; a node of a
    held kind past the budget stays with ONNX Runtime (a departing one then fails), and its note
    says why."""
    from pathlib import Path

    from cnncli.io.modelfile import load_model
    from cnncli.io.onnx_import import check

    def no_evaluator(*args):
        raise AssertionError("the reference evaluator ran")

    runs = []
    real = check._run_onnxruntime
    monkeypatch.setattr(check, "_run_reference", no_evaluator)
    monkeypatch.setattr(check, "_run_onnxruntime", lambda *args: runs.append(1) or real(*args))
    x = np.random.default_rng(1).random((1, 8, 8)).astype(np.float32)
    for path, budget in ((small_net(tmp_path), check.REFERENCE_BUDGET), (pool_net(tmp_path), 100)):
        steps = load_model(path).network.forward(x)
        held = check.references(Path(path).read_bytes(), x, [s.name for s in steps[1:]], path, budget=budget)
        checks = check.check_steps(steps, held.values, held.ops, held=held)
        assert not held.held and all(c.reference == "onnxruntime" for c in checks)
    assert len(runs) == 2
    assert "past its budget" in held.not_held["p"] and "past its budget" in checks[1].note


def test_onnx_runtimes_own_warnings_stay_off_the_users_stderr(tmp_path, capfd):
    """A model file with a ceil_mode max-pool, exported in memory: ONNX Runtime's shape inference
    disagrees with onnx's about the pool's size and logs a warning to the process's stderr (fd 2) at
    its default level; cnn check asks it for errors only, so the run prints nothing there."""
    document = {"format": "cnn-model", "version": 2, "input": {"size": [7, 7]},
                "layers": [{"name": "pool", "type": "maxpool2d", "kernel_size": 2, "stride": 2, "padding": 1,
                            "ceil_mode": True},
                           {"name": "relu", "type": "relu"}]}
    path = tmp_path / "m.json"
    path.write_text(json.dumps(document))
    code = main(["check", str(path), DIGIT, "-f", "json"])
    captured = capfd.readouterr()
    assert code == 0 and json.loads(captured.out)["failed"] == 0
    assert captured.err == ""
