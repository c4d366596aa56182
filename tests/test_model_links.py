"""A model JSON whose "graph" names an ONNX file beside it: the ONNX network with the JSON's input rule,
labels and name. Reference: the same .onnx file loaded directly with the same input rule given as
options (the maps must be equal, exactly: one code path), and ONNX Runtime through `cnn check`."""

import json
import os

import numpy as np
import pytest
from conftest import ROOT

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from cnncli import api  # noqa: E402
from cnncli.cli import main  # noqa: E402

CHELSEA = str(ROOT / "sample_images" / "photo_chelsea.jpg")  # 192x128 RGB
RULE = {"resize": 20, "mean": [0.5, 0.4, 0.3], "std": 0.25}


def run(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture()
def folder(tmp_path):
    """net.onnx (3x16x16 in, conv -> relu -> pool -> 3 logits) and tiny.json naming it, with a rule and labels."""
    rng = np.random.default_rng(3)
    inits = [numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "w"),
             numpy_helper.from_array(rng.standard_normal((4, 3)).astype(np.float32), "fc")]
    nodes = [helper.make_node("Conv", ["x", "w"], ["conv"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["conv"], ["relu"]),
             helper.make_node("GlobalAveragePool", ["relu"], ["gap"]), helper.make_node("Flatten", ["gap"], ["flat"]),
             helper.make_node("MatMul", ["flat", "fc"], ["logits"])]
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 16, 16])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, None)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    (tmp_path / "net.onnx").write_bytes(model.SerializeToString())
    write(tmp_path, "tiny.json", input=RULE, labels=["cat", "dog", "fox"])
    return tmp_path


def write(folder, name, **fields):
    document = {"format": "cnn-model", "version": 2, "name": "tiny", "graph": "net.onnx", **fields}
    (folder / name).write_text(json.dumps(document))
    return folder / name


def test_the_json_gives_the_onnx_maps_with_its_rule(folder):
    """Every map of the JSON-backed model equals the .onnx file's with the same rule as options."""
    backed = api.load_model(folder / "tiny.json").run(CHELSEA)
    direct = api.load_model(folder / "net.onnx", resize=20, mean=[0.5, 0.4, 0.3], std=0.25).run(CHELSEA)
    assert list(backed.maps) == list(direct.maps) == ["input", "conv", "relu", "gap", "flat", "logits"]
    for name, array in direct.maps.items():
        np.testing.assert_array_equal(backed.maps[name], array)
    assert backed.notes == direct.notes and backed.notes[-1] == "normalised (x - [0.5, 0.4, 0.3]) / 0.25"
    plain = api.load_model(folder / "net.onnx").run(CHELSEA)  # the ONNX default rule: stretched, 0..1
    assert not np.allclose(plain.maps["input"], backed.maps["input"])


def test_the_cli_run_gives_the_same_maps_and_the_jsons_labels(folder, capsys):
    """cnn run -f json: the model's name and rule from the JSON, its labels on the top-k."""
    code, out, err = run(capsys, "run", CHELSEA, "-m", folder / "tiny.json", "-f", "json", "--top", "3")
    assert code == 0, err
    document = json.loads(out)
    assert document["model"]["name"] == "tiny" and document["model"]["input"]["resize"] == 20
    code, direct, err = run(capsys, "run", CHELSEA, "-m", folder / "net.onnx", "--resize", "20", "--mean",
                            "0.5,0.4,0.3", "--std", "0.25", "-f", "json", "--top", "3")
    assert code == 0, err
    assert [layer["values"] for layer in document["layers"]] == [layer["values"] for layer in json.loads(direct)["layers"]]
    logits = np.array(document["layers"][-1]["values"])
    assert [p["label"] for p in document["predictions"]] == [["cat", "dog", "fox"][i] for i in np.argsort(-logits)]


def test_labels_from_a_file_beside_it(folder, capsys):
    """"labels": "classes.txt" reads one name per line, as --labels does."""
    (folder / "classes.txt").write_text("cat\ndog\nfox\n")
    write(folder, "named.json", labels="classes.txt")
    assert api.load_model(folder / "named.json").labels == ("cat", "dog", "fox")


def test_without_input_the_onnx_rule_stays(folder):
    """No input object: the ONNX file's own rule (its size, rgb, 0..1, not normalised)."""
    model = api.load_model(write(folder, "bare.json"))
    assert model.file.input == api.load_model(folder / "net.onnx").file.input and model.name == "tiny"


def test_check_runs_onnx_runtime_on_the_named_file(folder, capsys):
    """cnn check on the JSON compares the ONNX file's own nodes (not an export) with ONNX Runtime."""
    pytest.importorskip("onnxruntime")
    code, out, err = run(capsys, "check", folder / "tiny.json", CHELSEA, "-f", "json")
    assert code == 0, err
    document = json.loads(out)
    assert [node["name"] for node in document["nodes"]] == ["conv", "relu", "gap", "flat", "logits"]
    assert document["failed"] == 0


@pytest.mark.parametrize("fields, message", [
    ({"graph": "missing.onnx"}, "graph: {folder}/missing.onnx: no such file"),
    ({"graph": "/etc/hostname"}, "graph: '/etc/hostname' is an absolute path; expected a file name relative to the "
                                 "model file's folder"),
    ({"graph": "../x/net.onnx"}, "graph: '../x/net.onnx' goes up a folder (..); expected a file inside the model "
                                 "file's folder"),
    ({"graph": "link.onnx"}, "graph: 'link.onnx' leads out of the model file's folder through a symbolic link; "
                             "expected a file inside it"),
    ({"graph": "tiny.json"}, "graph: {folder}/tiny.json: is not an ONNX file; expected the .onnx network the model "
                             "file describes"),
    ({"graph": 7}, "graph: expected a string, got the number 7"),
    ({"version": 1}, 'graph: needs "version": 2, got 1'),
    ({"layers": [{"type": "relu"}]}, 'layers: cannot be given with "graph": the ONNX file is the whole network'),
    ({"weights": "w.npz"}, 'weights: cannot be given with "graph"'),
    ({"input": {"size": [8, 8]}}, "input.size: is [8, 8] but the ONNX graph's input is [16, 16]; give that or leave "
                                  "it out"),
    ({"input": {"color": "gray"}}, "input.color: is gray, 1 channel, but the ONNX graph's input has 3; expected rgb"),
    ({"input": {"mean": [0, 1]}}, "input.mean: expected 1 or 3 values (one per channel), got 2"),
    ({"input": {"resize": 8}}, "input.resize: is 8, shorter than the [16, 16] crop; expected at least 16"),
    ({"labels": ["a", "b"]}, "labels: has 2 names but the network's output has shape (3,); expected one name per "
                             "output value"),
    ({"labels": "../classes.txt"}, "labels: '../classes.txt' goes up a folder (..)"),
])
def test_each_bad_case_is_one_line_naming_the_file_and_field(folder, capsys, fields, message):
    os.symlink(ROOT / "README.md", folder / "link.onnx")
    path = write(folder, "bad.json", **fields)
    code, out, err = run(capsys, "summary", path)
    assert code == 1 and out == ""
    assert err.startswith(f"cnn: {path}: {message.format(folder=folder)}") and err.count("\n") == 1, err


def test_a_link_inside_the_folder_is_fine(folder):
    """A symbolic link that stays in the folder is followed."""
    os.symlink("net.onnx", folder / "alias.onnx")
    assert api.load_model(write(folder, "alias.json", graph="alias.onnx")).input_shape == (3, 16, 16)


def test_without_the_onnx_package_the_json_says_how_to_get_it(folder, capsys, monkeypatch):
    """With onnx not importable, one line names the model file, the field, the ONNX file and the extra."""
    import sys

    monkeypatch.setitem(sys.modules, "onnx", None)
    code, _, err = run(capsys, "summary", folder / "tiny.json")
    assert code == 1
    assert err == (f"cnn: {folder}/tiny.json: graph: {folder}/net.onnx: reading ONNX models needs the onnx package: "
                   "pip install 'cnncli[onnx]'\n")


def test_the_files_read_are_inputs_no_output_may_replace(folder, capsys):
    """-o naming the ONNX file of a model JSON is refused (the run reads it)."""
    code, _, err = run(capsys, "run", CHELSEA, "-m", folder / "tiny.json", "-o", folder / "net.onnx", "-f", "npy",
                       "--force")
    assert code == 1 and err == f"cnn: {folder}/net.onnx: is also an input of this run; write the output elsewhere\n"
    assert (folder / "net.onnx").read_bytes()[:1] == b"\x08"
