"""Graph networks as model files, each equal to the same network in PyTorch layer by layer; bad
graphs at the command line.

Reference: PyTorch 2.13 (CPU). tests/fixtures/make_graph_networks.py defines each network as an
nn.Module (seeded weights, non-trivial batch-norm statistics, eval mode) and stores in
tests/data/graphs/ the model file read off its trace, its state_dict (NAME.npz) and the output of
every module as PyTorch computes it in float32 on a seeded (3, 32, 32) input (NAME_ref.npz). Our
float32 maps must equal PyTorch's to rtol 1e-4 and atol 1e-4 (measured: at most 7.2e-7 apart).
When torch is importable the networks are rebuilt and run live too, and the stored files checked
to be what the script writes now.
"""

import importlib.util
import json
import re
import shlex

import numpy as np
import pytest
from conftest import ROOT, assert_array
from test_cli import invoke, run_main

from cnncli.engine.graph import Network
from cnncli.engine.layers import Activation, Add, BatchNorm, Pool2d
from cnncli.io.modelfile import load_model

GRAPHS = ROOT / "tests" / "data" / "graphs"
EXAMPLES = ROOT / "docs" / "examples"
PHOTO = str(ROOT / "sample_images" / "photo_chelsea.jpg")
NETWORKS = ("residual", "inception", "squeeze_excite", "depthwise", "unet")
NOT_LAYERS = ("input", "input_b", "output_b")  # the keys of NAME_ref.npz that are not layer names
RTOL = ATOL = 1e-4  # against PyTorch: float32 on both sides, summed in different orders
BATCH_TOL = 1e-5  # batch inference against our own forward: the same ops, rewritten
def network_and_reference(name):
    model = load_model(str(GRAPHS / f"{name}.json"))
    return model, dict(np.load(GRAPHS / f"{name}_ref.npz", allow_pickle=False))


@pytest.mark.parametrize("name", NETWORKS)
def test_every_layer_equals_pytorchs_map(name):
    """Every layer's map from Network.forward equals PyTorch's module output, name by name."""
    model, reference = network_and_reference(name)
    steps = model.network.forward(reference["input"])
    assert [step.name for step in steps[1:]] == [layer.name for layer in model.network.layers]
    assert {step.name for step in steps[1:]} == set(reference) - set(NOT_LAYERS)
    for step in steps[1:]:
        assert_array(step.output, reference[step.name], dtype=np.float32, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("name", NETWORKS)
def test_batch_inference_equals_one_input_at_a_time(name):
    """Network.predict on a batch of two equals forward on each, and PyTorch's output on each."""
    model, reference = network_and_reference(name)
    batch = np.stack([reference["input"], reference["input_b"]])  # (2, 3, 32, 32)
    predicted = model.network.predict(batch)
    last = model.network.layers[-1].name
    for row, key in zip(predicted, ("input", "input_b")):
        assert_array(row, model.network.forward(reference[key])[-1].output, dtype=np.float32, rtol=BATCH_TOL,
                     atol=BATCH_TOL)
    assert_array(predicted[0], reference[last], rtol=RTOL, atol=ATOL)
    assert_array(predicted[1], reference["output_b"], rtol=RTOL, atol=ATOL)


def test_batch_norm_stays_apart_from_a_conv_that_an_add_also_reads():
    """In the residual network layer3.0.conv feeds both layer3.0.bn and layer3.0.add: batch
    inference keeps that batch norm and the conv's own weights; every other batch norm is folded."""
    model, _ = network_and_reference("residual")
    planned = {layer.name: layer for layer in model.network.inference_layers}
    assert [name for name, layer in planned.items() if isinstance(layer, BatchNorm)] == ["layer3.0.bn"]
    conv = next(layer for layer in model.network.layers if layer.name == "layer3.0.conv")
    assert planned["layer3.0.conv"] is conv
    assert model.network.consumers["layer3.0.conv"] == ("layer3.0.bn", "layer3.0.add")


def test_folding_that_batch_norm_would_have_changed_the_result():
    """The check above has teeth: the add reading the folded (normalised) conv gives another output."""
    model, reference = network_and_reference("residual")
    layers, reads = list(model.network.layers), list(model.network.reads)
    at = {layer.name: i for i, layer in enumerate(layers)}
    # What a careless fold makes: the add reads the batch norm where it read the conv.
    i = at["layer3.0.add"]
    reads[i] = tuple("layer3.0.bn" if name == "layer3.0.conv" else name for name in reads[i])
    wrong = Network(tuple(layers), tuple(reads)).forward(reference["input"])[-1].output
    assert np.abs(wrong - reference[layers[-1].name]).max() > 1e-3


def test_relu_and_max_pool_swap_only_where_the_pool_alone_reads_the_relu():
    """The residual stem's relu feeds only its max-pool: batch inference pools first. The U-Net's
    enc1.relu also feeds a skip concatenation: it stays before its pool."""
    model, _ = network_and_reference("residual")
    order = [layer.name for layer in model.network.inference_layers]
    assert order.index("maxpool") < order.index("maxpool/relu")
    model, _ = network_and_reference("unet")
    order = [layer.name for layer in model.network.inference_layers]
    assert order.index("enc1.relu") < order.index("pool1") and "pool1/relu" not in order


def test_the_swapped_relus_name_is_not_taken_from_a_layer():
    """Fixed bug: the relu moved after a max-pool ran as "<pool>/relu" even when a layer of the
    network had that name, and batch inference then gave that layer's map to the pool's readers."""
    layers = (Activation("relu", name="r"), Pool2d("max", (2, 2), name="p"), Pool2d("avg", (2, 2), name="q"),
              Activation("sigmoid", name="p/relu"), Add("sum"))
    network = Network(layers, (("input",), ("r",), ("input",), ("q",), ("p", "p/relu")))
    x = np.random.default_rng(0).standard_normal((2, 4, 4)).astype(np.float32)
    assert_array(network.predict(x[None])[0], network.forward(x)[-1].output, rtol=1e-6, atol=1e-6)


# --- Live against torch, when it is installed --------------------------------------------------------

def _fixture_script():
    spec = importlib.util.spec_from_file_location("make_graph_networks",
                                                  ROOT / "tests" / "fixtures" / "make_graph_networks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", NETWORKS)
def test_live_pytorch_gives_the_stored_maps_and_files(name):
    """Rebuilt in PyTorch now, each network gives the stored maps, weights and model file, and ours
    equals its every module's output."""
    pytest.importorskip("torch")
    script = _fixture_script()
    cls, seed, _ = script.NETWORKS[name]
    torch_model = script.build(cls, seed)
    x, x_b = script.inputs(seed)
    stored = dict(np.load(GRAPHS / f"{name}_ref.npz", allow_pickle=False))
    assert_array(x, stored["input"], rtol=0, atol=0)
    assert_array(x_b, stored["input_b"], rtol=0, atol=0)
    traced, maps, _ = script.trace(torch_model, x)
    for key, array in script.weights_of(torch_model).items():
        assert_array(np.load(GRAPHS / f"{name}.npz")[key], array, rtol=0, atol=0)
    document = json.loads((GRAPHS / f"{name}.json").read_text())
    assert [layer for layer in document["layers"]] == [json.loads(json.dumps(layer)) for layer in
                                                       script.model_document(name, "", traced, 32, "", {})["layers"]]
    for key, array in maps.items():
        assert_array(stored[key], array, rtol=1e-6, atol=1e-6)
    steps = load_model(str(GRAPHS / f"{name}.json")).network.forward(x)
    for step in steps[1:]:
        assert_array(step.output, maps[step.name], dtype=np.float32, rtol=RTOL, atol=ATOL)


# --- The command line on each network ----------------------------------------------------------------

@pytest.mark.parametrize("name", NETWORKS)
def test_cnn_run_json_on_each_network(name):
    """`cnn run PHOTO -m NAME.json -f json` exits 0 with every layer's map in its JSON."""
    result = invoke("run", PHOTO, "-m", str(GRAPHS / f"{name}.json"), "-f", "json")
    assert result.exit_code == 0, result.stderr
    assert result.stderr == ""
    document = json.loads(result.stdout)
    names = [layer["name"] for layer in json.loads((GRAPHS / f"{name}.json").read_text())["layers"]]
    assert [layer["name"] for layer in document["layers"]] == ["input", *names]


@pytest.mark.parametrize("name", NETWORKS)
def test_cnn_summary_lists_every_layer(name):
    """`cnn summary NAME.json` exits 0 and lists every layer by name, in order."""
    path = str(GRAPHS / f"{name}.json")
    result = invoke("summary", path, env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.stderr
    names = [layer["name"] for layer in json.loads((GRAPHS / f"{name}.json").read_text())["layers"]]
    rows = [line.split()[1] for line in result.stdout.splitlines() if line.split()[:1] and
            line.split()[0].isdigit()]
    assert rows == ["input", *names]
    listed = json.loads(invoke("summary", path, "-f", "json").stdout)["layers"]
    assert [layer["name"] for layer in listed] == names


# --- Bad graphs: one line, the layer and its JSON path, exit 1 ---------------------------------------

def _conv(name, channels_in, channels_out):
    return {"name": name, "type": "conv2d", "out_channels": channels_out, "kernel_size": 1,
            "weight": np.ones((channels_out, channels_in, 1, 1)).tolist(), "bias": [0.0] * channels_out}


BAD_GRAPHS = {
    "a layer naming a later one (a cycle)": (
        [{"name": "a", "type": "relu", "inputs": ["b"]}, {"name": "b", "type": "relu", "inputs": ["a"]}], {},
        "layers[0].inputs[0]: layer a reads 'b', which comes later (layers[1])"),
    "a layer naming itself": (
        [{"name": "a", "type": "relu"}, {"name": "b", "type": "add", "inputs": ["a", "b"]}], {},
        "layers[1].inputs[1]: layer b reads itself"),
    "a missing input name": (
        [{"name": "a", "type": "relu"}, {"name": "b", "type": "add", "inputs": ["a", "nope"]}], {},
        "layers[1].inputs[1]: layer b reads 'nope', which names no layer"),
    "a branch that goes nowhere": (
        [{"name": "a", "type": "relu"}, {"name": "dead", "type": "sigmoid", "inputs": ["a"]},
         {"name": "b", "type": "tanh", "inputs": ["a"]}], {},
        "layers[1].name: layer dead: reaches no output"),
    "concat of mismatched sizes": (
        [{"name": "half", "type": "maxpool2d", "kernel_size": 2}, {"name": "cat", "type": "concat",
                                                                   "inputs": ["half", "input"]}], {},
        "layer cat (layers[1]): inputs (3, 4, 4), (3, 8, 8) differ outside dim 1"),
    "add of unbroadcastable shapes": (
        [_conv("wide", 3, 4), {"name": "sum", "type": "add", "inputs": ["wide", "input"]}], {},
        "layer sum (layers[1]): inputs (4, 8, 8), (3, 8, 8) do not broadcast"),
    "a name used twice": (
        [{"name": "a", "type": "relu"}, {"name": "a", "type": "tanh"}], {},
        "layers[1].name: 'a' is also the name of layers[0]; names must be unique"),
    "inputs in a version-1 file": (
        [{"name": "a", "type": "relu", "inputs": ["input"]}], {"version": 1},
        'layers[0].inputs: layer a names its inputs, which needs "version": 2'),
    "an unknown name in outputs": (
        [{"name": "a", "type": "relu"}], {"outputs": ["a", "ghost"]},
        "outputs[1]: 'ghost' names no layer"),
}


@pytest.mark.parametrize("command", ["summary", "run"])
@pytest.mark.parametrize("case", BAD_GRAPHS)
def test_bad_graphs_are_one_line_naming_the_layer_and_its_path(tmp_path, capsys, case, command):
    """Each bad graph: exit 1, one `cnn:` line on stderr with the file, the JSON path and the
    layer, nothing on stdout, no traceback."""
    layers, top, words = BAD_GRAPHS[case]
    path = tmp_path / "graph.json"
    path.write_text(json.dumps({"format": "cnn-model", "version": 2, "input": {"size": [8, 8], "color": "rgb"},
                                "layers": layers, **top}))
    args = ["summary", str(path)] if command == "summary" else ["run", PHOTO, "-m", str(path)]
    code, out, err = run_main(capsys, *args)
    assert code == 1
    assert err.startswith(f"cnn: {path}: ") and err.count("\n") == 1, err
    assert words in err, err
    assert "Traceback" not in err and out == ""


# --- The examples in docs/examples -------------------------------------------------------------------

def readme_commands():
    """The `cnn ...` commands of docs/examples/README.md, by the example model they use."""
    text = (EXAMPLES / "README.md").read_text()
    commands = re.findall(r"`(cnn [^`]+)`", text)
    return {re.search(r"(\w+)\.json", command).group(1): command for command in commands}


def test_readme_has_one_command_per_example():
    """docs/examples/README.md gives a command for each example model file there."""
    assert sorted(readme_commands()) == sorted(path.stem for path in EXAMPLES.glob("*.json"))


@pytest.mark.parametrize("name", ["resnet_tiny", "unet_small"])
def test_readme_commands_run(name, tmp_path):
    """Each README command exits 0 (photo.png: a sample photo; acts/: a fresh folder): resnet_tiny
    ends in 10 probabilities, unet_small in per-pixel probabilities of 2 classes at 64x64."""
    command = readme_commands()[name].replace("photo.png", PHOTO).replace("acts/", str(tmp_path / "acts"))
    result = invoke(*shlex.split(command)[1:], "-f", "json") if " run " in command else invoke(
        *shlex.split(command)[1:])
    assert result.exit_code == 0, result.stderr
    if name == "resnet_tiny":
        document = json.loads(result.stdout)
        assert len(document["layers"]) == 29 and len(document["predictions"]) == 5
        assert_array(sum(document["layers"][-1]["values"]), 1.0, rtol=1e-5, atol=1e-5)
    else:
        last = np.load(sorted((tmp_path / "acts").glob("*_softmax.npy"))[0])
        assert last.shape == (2, 64, 64)
        assert_array(last.sum(axis=0), np.ones((64, 64), np.float32), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name, network", [("resnet_tiny", "residual"), ("unet_small", "unet")])
def test_examples_are_the_tested_networks(name, network):
    """The examples have the layers and weights of the networks checked against PyTorch above."""
    example = json.loads((EXAMPLES / f"{name}.json").read_text())
    tested = json.loads((GRAPHS / f"{network}.json").read_text())
    assert example["layers"] == tested["layers"] and example["input"]["size"] == [64, 64]
    ours, theirs = np.load(EXAMPLES / f"{name}.npz"), np.load(GRAPHS / f"{network}.npz")
    assert sorted(ours.files) == sorted(theirs.files)
    for key in ours.files:
        assert_array(ours[key], theirs[key], rtol=0, atol=0)
