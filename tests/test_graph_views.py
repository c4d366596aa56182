"""Every view names what a step read when the network is a graph, and leaves a chain's output as it was."""

import json
import zipfile

import numpy as np
import pytest
from conftest import ROOT
from PIL import Image
from typer.testing import CliRunner

from cnncli.cli import app
from cnncli.engine.graph import Network, Step, is_chain
from cnncli.engine.layers import Activation, Conv2d

SEED = str(ROOT / "sample_images" / "seed_5x5.png")
DIGIT = str(ROOT / "sample_images" / "digit_7.png")
DATA = ROOT / "tests" / "data"

# conv1 -> relu1 -> conv2 -> add(conv2, relu1) -> gate -> mul(add, gate) -> concat(mul, conv1) -> softmax,
# with an extra output (relu1).
GRAPH = {
    "format": "cnn-model", "version": 2, "name": "res", "input": {"size": [8, 8]}, "outputs": ["relu1"],
    "layers": [
        {"name": "conv1", "type": "conv2d", "out_channels": 2, "kernel_size": 3, "padding": 1,
         "weight": [[[[0, 0, 0], [0, 1, 0], [0, 0, -1]]], [[[0, 1, 0], [0, 2, 0], [0, 0, 0]]]], "bias": [0.5, -0.25]},
        {"name": "relu1", "type": "relu"},
        {"name": "conv2", "type": "conv2d", "out_channels": 2, "kernel_size": 1, "weight": [[[[1]], [[-1]]],
                                                                                             [[[0.5]], [[1]]]],
         "bias": False},
        {"name": "add", "type": "add", "inputs": ["conv2", "relu1"]},
        {"name": "gate", "type": "globalavgpool2d", "inputs": ["add"]},
        {"name": "mul", "type": "mul", "inputs": ["add", "gate"]},
        {"name": "cat", "type": "concat", "inputs": ["mul", "conv1"]},
        {"name": "sm", "type": "softmax"},
    ]}
READS = {"input": [], "conv1": ["input"], "relu1": ["conv1"], "conv2": ["relu1"], "add": ["conv2", "relu1"],
         "gate": ["add"], "mul": ["add", "gate"], "cat": ["mul", "conv1"], "sm": ["cat"]}


def invoke(*args):
    """Run the app in-process at 100 columns without colour; stdout and stderr stay separate."""
    return CliRunner(env={"COLUMNS": "100", "NO_COLOR": "1", "TERM": "dumb"}).invoke(app, list(args))


@pytest.fixture
def graph(tmp_path):
    path = tmp_path / "res.json"
    path.write_text(json.dumps(GRAPH))
    image = tmp_path / "ramp.png"
    Image.fromarray((np.arange(64).reshape(8, 8) * 4).astype(np.uint8)).save(image)
    return str(path), str(image)


# --- chains: byte for byte as before ----------------------------------------------------------------


def test_a_chain_trace_is_byte_identical_to_before(monkeypatch):
    """A kernel run's JSON trace is the bytes it was before graphs (no "inputs" anywhere)."""
    monkeypatch.chdir(ROOT)
    result = invoke("run", "sample_images/seed_5x5.png", "-k", "vertical_edge", "--format", "json")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == (DATA / "chain_run_kernel.json").read_text()


@pytest.mark.parametrize("command, golden", [
    (("inspect", "sample_images/seed_5x5.png", "-k", "vertical_edge", "--format", "json"), "chain_inspect_kernel.json"),
    (("explain", "sample_images/seed_5x5.png", "-k", "vertical_edge", "--at", "0,1", "--format", "json"),
     "chain_explain_kernel.json"),
])
def test_chain_inspect_and_explain_json_are_byte_identical_to_before(monkeypatch, command, golden):
    """cnn inspect and cnn explain of a kernel run write the bytes they wrote before graphs."""
    monkeypatch.chdir(ROOT)
    result = invoke(*command)
    assert result.exit_code == 0, result.stderr
    assert result.stdout == (DATA / golden).read_text()


def test_a_chain_summary_is_byte_identical_to_before():
    """`cnn summary digits --format json` is the bytes it was before graphs (written again for the
    retrained digits model, whose description and input rule changed)."""
    result = invoke("summary", "digits", "--format", "json")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == (DATA / "chain_summary_digits.json").read_text()


def test_chain_records_titles_and_archives_name_no_inputs(tmp_path):
    """A version-1 model's records (trace, inspect, manifest), titles and .npz carry no inputs."""
    trace = json.loads(invoke("run", DIGIT, "--model", "digits", "--format", "json", "--values", "none").stdout)
    inspected = json.loads(invoke("inspect", DIGIT, "--model", "digits", "--format", "json").stdout)
    assert all("inputs" not in layer for layer in trace["layers"] + inspected["layers"])
    tables = invoke("run", DIGIT, "--model", "digits").stdout
    assert "reads" not in tables
    assert "reads" not in invoke("summary", "digits").stdout
    assert "reads" not in invoke("inspect", DIGIT, "--model", "digits").stdout
    assert invoke("run", DIGIT, "--model", "digits", "-o", str(tmp_path / "a.npz")).exit_code == 0
    assert "__inputs__.npy" not in zipfile.ZipFile(tmp_path / "a.npz").namelist()


def test_is_chain_reads_a_missing_inputs_as_the_step_before():
    """Steps that name no inputs, or each the one before, are a chain; any other reading is not."""
    x = np.zeros((1, 3, 3), np.float32)
    assert is_chain([Step(0, "input", "input", x), Step(1, "a", "relu", x), Step(2, "b", "relu", x)])
    network = Network((Conv2d(np.ones((1, 1, 1, 1), np.float32), name="c"), Activation("relu", name="r")))
    assert is_chain(network.forward(x))
    assert not is_chain([Step(0, "input", "input", x), Step(1, "a", "relu", x, inputs=("input",)),
                         Step(2, "b", "relu", x, inputs=("input",))])


# --- graphs: every view names what each step read ---------------------------------------------------


@pytest.mark.parametrize("format", ["json", "jsonl"])
def test_a_graph_trace_names_each_layers_inputs(graph, format):
    """json and jsonl records carry "inputs" right after "type": the input reads none."""
    model, image = graph
    result = invoke("run", image, "--model", model, "--format", format)
    assert result.exit_code == 0, result.stderr
    trace = json.loads(result.stdout)
    assert {layer["name"]: layer["inputs"] for layer in trace["layers"]} == READS
    assert list(trace["layers"][4])[:4] == ["index", "name", "type", "inputs"]


def test_a_graph_manifest_and_inspect_json_name_inputs(graph, tmp_path):
    """inspect --format json and the --save manifest carry the same records, with inputs."""
    model, image = graph
    shown = json.loads(invoke("inspect", image, "--model", model, "--format", "json").stdout)
    assert invoke("inspect", image, "--model", model, "--save", str(tmp_path / "acts")).exit_code == 0
    manifest = json.loads((tmp_path / "acts" / "manifest.json").read_text())
    for document in (shown, manifest):
        assert {layer["name"]: layer["inputs"] for layer in document["layers"]} == READS
    strip = ("file", "picture", "seconds")
    assert [{k: v for k, v in layer.items() if k not in strip} for layer in manifest["layers"]] == \
        [{k: v for k, v in layer.items() if k not in strip} for layer in shown["layers"]]


def test_a_graph_npz_holds_an_inputs_table(graph, tmp_path):
    """The .npz of a graph adds __inputs__: each layer's name and the JSON list of what it read."""
    model, image = graph
    assert invoke("run", image, "--model", model, "-o", str(tmp_path / "g.npz")).exit_code == 0
    table = np.load(tmp_path / "g.npz")["__inputs__"]
    assert {name: json.loads(reads) for name, reads in table.tolist()} == READS


def test_graph_tables_and_heatmaps_title_each_map_with_what_it_read(graph):
    """Table and heatmap titles read "add (reads conv2, relu1)"; the input's title names nothing."""
    model, image = graph
    for view in ("table", "heatmap"):
        out = invoke("run", image, "--model", model, "--view", view).stdout
        assert "add (reads conv2, relu1) -> 2x8x8" in out
        assert "cat (concat, reads mul, conv1) -> 4x8x8" in out
        assert "\ninput -> 1x8x8" in out


def test_graph_summaries_have_a_reads_column_and_mark_extra_outputs(graph):
    """cnn summary and cnn inspect's table show a reads column; summary marks relu1, an extra output."""
    model, image = graph
    summary = invoke("summary", model).stdout
    assert "reads" in summary.splitlines()[1] + summary.splitlines()[2]
    assert "relu1 *" in summary and "* an output besides the last layer: relu1" in summary
    document = json.loads(invoke("summary", model, "--format", "json").stdout)
    assert {layer["name"]: layer["inputs"] for layer in document["layers"]} == {k: v for k, v in READS.items()
                                                                                if k != "input"}
    assert document["outputs"] == ["relu1"]
    assert "reads" in invoke("inspect", image, "--model", model).stdout


def test_graph_picture_captions_name_what_a_layer_read(graph):
    """A PNG montage's caption names what its layer read, when the network is a graph."""
    from cnncli.views.pictures import step_caption

    x = np.zeros((2, 3, 3), np.float32)
    step = Step(4, "add", "add", x, inputs=("conv2", "relu1"))
    assert step_caption(step, graph=True) == "layer 4: add (reads conv2, relu1) -> 2x3x3"
    assert step_caption(step) == "layer 4: add -> 2x3x3"
