"""`cnn export`: model files written as ONNX run in ONNX Runtime (the reference; graph optimisations
off) to the outputs of Network.forward, within float32 rounding relative to the tensor's scale
(1e-5, the scale at least 1); every layer type has a writer; the export imports back to the same
maps; `cnn check` on a model file compares every layer through that export."""

import json

import numpy as np
import pytest
from conftest import ROOT

from cnncli.cli import main
from cnncli.engine.layers import base
from cnncli.errors import CnnError, SpecError
from cnncli.io.modelfile import bundled_models, load_model

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from cnncli.io import onnx_export  # noqa: E402
from cnncli.io.onnx_export import export_model  # noqa: E402
from cnncli.io.onnx_import import load_onnx  # noqa: E402


def _model_files(folder):
    return [str(p) for p in sorted(folder.rglob("*.json")) if json.loads(p.read_text()).get("format") == "cnn-model"]


BUNDLED = [path.stem for path in bundled_models()]  # by name, as `cnn export digits` takes them
MODELS = [*BUNDLED, *_model_files(ROOT / "docs" / "examples"), *_model_files(ROOT / "tests" / "data")]
ONNX_FILES = sorted((ROOT / "tests" / "data").rglob("*.onnx"))  # the zoo: exported in tests/test_zoo.py


def session(data):
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 3  # not its notes on shapes it infers otherwise than the file (ceil_mode pools)
    return ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])


def ort_outputs(data, x):
    return session(data).run(None, {"input": x})


def ort_tensors(data, names, x):
    """ONNX Runtime's tensor of each name in ``names`` for the batch ``x``: each made a graph output."""
    model = onnx.load_model_from_string(data)
    present = {value.name for value in model.graph.output}
    model.graph.output.extend(onnx.helper.make_value_info(name, onnx.TypeProto()) for name in names
                              if name not in present)
    wanted = [value.name for value in model.graph.output]
    return dict(zip(wanted, session(model.SerializeToString()).run(wanted, {"input": x})))


def assert_close(actual, expected, name):
    """Shape, then values within 1e-5 of the expected tensor's scale (its largest finite magnitude, at least 1)."""
    assert actual.shape == expected.shape, f"{name}: shape {actual.shape} != {expected.shape}"
    finite = np.isfinite(expected)
    scale = max(1.0, float(np.abs(expected[finite]).max(initial=0.0)))
    np.testing.assert_allclose(actual, expected, rtol=0, atol=1e-5 * scale, err_msg=name)


def write(tmp_path, document, name="m.json"):
    path = tmp_path / name
    path.write_text(json.dumps(document))
    return load_model(str(path))


@pytest.mark.parametrize("spec", MODELS, ids=[p.rsplit("/", 1)[-1] for p in MODELS])
def test_every_model_file_round_trips_through_onnx_runtime(spec):
    """The bundled models and every model file of docs/examples and tests/data: ONNX Runtime's outputs
    equal Network.predict's; imported back, every layer of the same name gives the same map."""
    model = load_model(spec)
    x = np.random.default_rng(4).random((3, *model.input.shape)).astype(np.float32)
    ours = model.network.predict(x)
    data = export_model(model)
    theirs = ort_outputs(data, x)[0]
    assert_close(ours, theirs, "output")
    back = load_onnx(data, "back.onnx")
    again = {step.name: step.output for step in back.network.forward(x[0])}
    for step in model.network.forward(x[0])[1:]:
        assert_close(again[step.name], step.output, step.name)


def test_the_round_trips_cover_every_model_file():
    """Every file of docs/examples and tests/data that loads as a model, and every bundled model, is in
    the lists above or (the zoo's real architectures) exported in tests/test_zoo.py: nothing is left out."""
    listed = {*MODELS, *(str(p) for p in ONNX_FILES)}
    assert "digits" in BUNDLED and len(ONNX_FILES) >= 10 and len(MODELS) >= 9
    for folder in (ROOT / "docs" / "examples", ROOT / "tests" / "data"):
        for path in sorted(folder.rglob("*")):
            if path.suffix not in (".json", ".onnx"):
                continue
            try:
                load_model(str(path))
            except CnnError:
                continue
            assert str(path) in listed, path


# -- every layer type ------------------------------------------------------------------------------------
def _weights(rng, *shape):
    return rng.standard_normal(shape).round(3).tolist()


def _graph(size, color, layers):
    """A model document whose layers are all outputs but the ones another layer reads."""
    read = {name for layer in layers for name in layer.get("inputs", [])}
    read |= {layers[i - 1]["name"] for i, layer in enumerate(layers) if i and "inputs" not in layer}
    outputs = [layer["name"] for layer in layers[:-1] if layer["name"] not in read]
    return {"format": "cnn-model", "version": 2, "input": {"size": size, "color": color}, "layers": layers,
            **({"outputs": outputs} if outputs else {})}


def _every_type_document():
    """The pointwise types, merges, a padded conv with reflect padding and upsampling."""
    rng = np.random.default_rng(2)
    conv = {"type": "conv2d", "out_channels": 4, "kernel_size": 3, "padding": 1, "padding_mode": "reflect",
            "weight": _weights(rng, 4, 2, 3, 3), "bias": [0.1, -0.2, 0.3, 0.0]}
    layers = [dict(conv, name="conv"), {"name": "r6", "type": "relu6"}, {"name": "hs", "type": "hardswish"},
              {"name": "hg", "type": "hardsigmoid", "inputs": ["conv"]}, {"name": "si", "type": "silu"},
              {"name": "el", "type": "elu", "alpha": 0.5}, {"name": "ht", "type": "hardtanh", "min_val": -0.5},
              {"name": "pr", "type": "prelu", "num_parameters": 4, "weight": [0.1, 0.2, 0.3, 0.4]},
              {"name": "lr", "type": "leaky_relu", "negative_slope": 0.2},
              {"name": "sum", "type": "add", "inputs": ["hs", "lr", "r6"]},
              {"name": "gate", "type": "globalmaxpool2d", "inputs": ["sum"]},
              {"name": "prod", "type": "mul", "inputs": ["sum", "gate"]},
              {"name": "diff", "type": "sub", "inputs": ["prod", "si"]},
              {"name": "avg", "type": "mean", "inputs": ["diff", "el"]},
              {"name": "up", "type": "upsample", "scale_factor": 2, "mode": "bilinear"},
              {"name": "near", "type": "upsample", "size": [12, 12], "inputs": ["avg"]},
              {"name": "near_down", "type": "maxpool2d", "kernel_size": 2},
              {"name": "down", "type": "avgpool2d", "kernel_size": 2, "inputs": ["up"]},
              {"name": "both", "type": "concat", "inputs": ["down", "near_down"]},
              {"name": "pool", "type": "maxpool2d", "kernel_size": 3, "stride": 2, "padding": 1, "ceil_mode": True},
              {"name": "sm", "type": "softmax"}]
    return {"format": "cnn-model", "version": 2, "input": {"size": [6, 6], "color": "gray"},
            "layers": [{"name": "two", "type": "concat", "inputs": ["input", "input"]}] + layers}


def _math_document():
    layers = [{"name": "a", "type": "abs"}, {"name": "s", "type": "sqrt"}, {"name": "e", "type": "exp"},
              {"name": "l", "type": "log"}, {"name": "n", "type": "neg", "inputs": ["input"]},
              {"name": "f", "type": "erf"}, {"name": "p", "type": "pow", "exponent": 3, "inputs": ["input"]},
              {"name": "h", "type": "pow", "exponent": 0.5, "inputs": ["e"]},
              {"name": "r", "type": "reciprocal", "inputs": ["e"]},
              {"name": "hi", "type": "max", "inputs": ["l", "f", "p"]},
              {"name": "lo", "type": "min", "inputs": ["hi", "r", "h"]},
              {"name": "ls", "type": "logsoftmax"}, {"name": "lsw", "type": "logsoftmax", "dim": -1}]
    return {"format": "cnn-model", "version": 2, "input": {"size": [5, 6], "color": "rgb"}, "layers": layers}


def _chain_document():
    """The types of a classic chain: conv, batch norms, the four basic activations, a global average
    pool, dense layers, dropout and identity."""
    rng = np.random.default_rng(6)
    layers = [{"name": "conv", "type": "conv2d", "out_channels": 3, "kernel_size": 3, "padding": 1,
               "weight": _weights(rng, 3, 1, 3, 3), "bias": _weights(rng, 3)},
              {"name": "bn", "type": "batchnorm2d", "weight": _weights(rng, 3), "bias": _weights(rng, 3),
               "running_mean": _weights(rng, 3), "running_var": np.abs(_weights(rng, 3)).tolist()},
              {"name": "relu", "type": "relu"}, {"name": "same", "type": "identity"}, {"name": "tanh", "type": "tanh"},
              {"name": "gap", "type": "globalavgpool2d"}, {"name": "flat", "type": "flatten"},
              {"name": "fc", "type": "dense", "out_features": 5, "weight": _weights(rng, 5, 3), "bias": _weights(rng, 5)},
              {"name": "bn1", "type": "batchnorm1d", "affine": False, "running_mean": _weights(rng, 5),
               "running_var": np.abs(_weights(rng, 5)).tolist()},
              {"name": "drop", "type": "dropout", "p": 0.3}, {"name": "gate", "type": "sigmoid"}]
    return _graph([6, 6], "gray", layers)


def _six_channels(rng):
    return {"name": "c6", "type": "conv2d", "out_channels": 6, "kernel_size": 1, "weight": _weights(rng, 6, 3, 1, 1),
            "bias": _weights(rng, 6)}


def _moves_document():
    """Types whose ONNX nodes the importer reads back: pads in every mode, shuffle, slices, affine,
    transposed convs (output_padding below the stride, above it cropped less, above it past the full
    output), adaptive pools whose bins tile or overlap, the upsampling classes, LRN of odd and even
    size, instance norm with stored statistics, gelu, mish and softplus as PyTorch's defaults."""
    rng = np.random.default_rng(7)
    on = {"inputs": ["c6"]}
    layers = [
        _six_channels(rng),
        {"name": "pad_c", "type": "pad", "padding": [1, 2, 0, 3], "value": -2.5, **on},
        {"name": "pad_r", "type": "pad", "padding": [2, 1, 1, 2], "mode": "reflect", **on},
        {"name": "pad_e", "type": "pad", "padding": 1, "mode": "replicate", **on},
        {"name": "pad_w", "type": "pad", "padding": [3, 1, 2, 4], "mode": "circular", **on},
        {"name": "pad_whole", "type": "pad", "padding": [9, 0, 7, 0], "mode": "circular", **on},
        {"name": "shuffle", "type": "channel_shuffle", "groups": 3, **on},
        {"name": "split", "type": "slice", "dim": 1, "start": 1, "end": 5, "step": 2},
        {"name": "rows", "type": "slice", "dim": -2, "start": -5, "end": 100, "step": 2, **on},
        {"name": "scaled", "type": "affine", "scale": _weights(rng, 6), "shift": _weights(rng, 6), **on},
        {"name": "doubled", "type": "affine", "scale": 2},
        {"name": "up", "type": "conv_transpose2d", "out_channels": 4, "kernel_size": 3, "stride": 2, "padding": 1,
         "output_padding": 1, "groups": 2, "weight": _weights(rng, 6, 2, 3, 3), "bias": _weights(rng, 4), **on},
        {"name": "up_fill", "type": "convtranspose2d", "out_channels": 2, "kernel_size": 2, "dilation": 3,
         "output_padding": 2, "weight": _weights(rng, 6, 2, 2, 2), "bias": _weights(rng, 2), **on},
        {"name": "up_crop", "type": "conv_transpose2d", "out_channels": 2, "kernel_size": 3, "dilation": 2,
         "padding": 2, "output_padding": 1, "bias": False, "weight": _weights(rng, 6, 2, 3, 3), **on},
        {"name": "avg_tiles", "type": "adaptiveavgpool2d", "output_size": [7, 3], **on},
        {"name": "avg_overlaps", "type": "adaptiveavgpool2d", "output_size": [3, 4], **on},
        {"name": "max_rows", "type": "adaptivemaxpool2d", "output_size": [5, None], **on},
        {"name": "max_more", "type": "adaptivemaxpool2d", "output_size": [9, 2], **on},
        {"name": "max_one", "type": "adaptivemaxpool2d", "output_size": 1, **on},
        {"name": "avg_one", "type": "adaptiveavgpool2d", "output_size": 1, **on},
        {"name": "nearest", "type": "upsamplingnearest2d", "scale_factor": 2, **on},
        {"name": "bilinear", "type": "upsamplingbilinear2d", "size": [10, 12], **on},
        {"name": "lrn_odd", "type": "lrn", "size": 3, "alpha": 0.5, "k": 1.5, **on},
        {"name": "lrn_even", "type": "localresponsenorm", "size": 4, "alpha": 0.5, "beta": 0.6, "k": 2, **on},
        {"name": "stats", "type": "instancenorm2d", "track_running_stats": True, "affine": True,
         "weight": _weights(rng, 6), "bias": _weights(rng, 6), "running_mean": _weights(rng, 6),
         "running_var": np.abs(_weights(rng, 6)).tolist(), **on},
        {"name": "gelu", "type": "gelu", **on}, {"name": "gelu_tanh", "type": "gelu", "approximate": "tanh", **on},
        {"name": "mish", "type": "mish", **on}, {"name": "softplus", "type": "softplus", **on},
        {"name": "as_vector", "type": "reshape", "shape": [-1], **on},
        {"name": "as_map", "type": "reshape", "shape": [3, 9, -1]},
    ]
    return _graph([7, 9], "rgb", layers)


def _norms_document():
    """Layer norm (LayerNormalization) and instance norm with the map's own statistics
    (InstanceNormalization), on maps and a vector."""
    rng = np.random.default_rng(8)
    on = {"inputs": ["c6"]}
    layers = [
        _six_channels(rng),
        {"name": "ln", "type": "layernorm", "normalized_shape": [6], "weight": _weights(rng, 6),
         "bias": _weights(rng, 6), **on},
        {"name": "ln_map", "type": "layernorm", "normalized_shape": [6, 5, 6], "elementwise_affine": False, **on},
        {"name": "own", "type": "instancenorm2d", **on},
        {"name": "own_affine", "type": "instancenorm", "affine": True, "weight": _weights(rng, 6),
         "bias": _weights(rng, 6), **on},
        {"name": "flat", "type": "flatten", **on},
        {"name": "ln_vector", "type": "layernorm", "normalized_shape": [180], "elementwise_affine": False},
    ]
    return _graph([5, 6], "rgb", layers)


def _formulas_document():
    """Types written with operators the importer does not read yet: group norm (a 3-D Reshape around
    InstanceNormalization), softplus with another beta or threshold (Where), upsampling by a scale that
    is not size out / size in (Gather, MatMul)."""
    rng = np.random.default_rng(8)
    on = {"inputs": ["c6"]}
    layers = [
        _six_channels(rng),
        {"name": "gn", "type": "groupnorm", "num_groups": 3, "weight": _weights(rng, 6), "bias": _weights(rng, 6), **on},
        {"name": "gn_plain", "type": "groupnorm", "num_groups": 2, "affine": False, "eps": 0.1, **on},
        {"name": "sp_beta", "type": "softplus", "beta": 2, "threshold": 3, **on},
        {"name": "sp_low", "type": "softplus", "threshold": 1, **on},
        {"name": "sp_half", "type": "softplus", "beta": 0.5, **on},
        {"name": "up_nearest", "type": "upsample", "scale_factor": 1.75, **on},  # 5 rows: 1/1.75 apart, not 5/8
        {"name": "up_linear", "type": "upsample", "scale_factor": [1.5, 0.75], "mode": "bilinear", **on},
        {"name": "flat", "type": "flatten", **on},
        {"name": "gn_vector", "type": "groupnorm", "num_groups": 4, "affine": False, "inputs": ["flat"]},
    ]
    return _graph([5, 6], "rgb", layers)


DOCUMENTS = {"every": _every_type_document, "math": _math_document, "chain": _chain_document,
             "moves": _moves_document, "norms": _norms_document, "formulas": _formulas_document}
SAME_TYPES = ("math", "chain")  # documents whose layers import back as their own types (but dropout)
# What the layers of the moves document import back as, where that is sure: their last node's type.
IMPORTED_AS = {"pad_c": "pad", "pad_r": "pad", "pad_e": "pad", "pad_w": "concat",
               "pad_whole": "concat", "shuffle": "channel_shuffle",
               "split": "slice", "rows": "slice", "up": "conv_transpose2d", "up_crop": "conv_transpose2d",
               "up_fill": "affine", "avg_tiles": "avgpool2d", "max_one": "globalmaxpool2d", "nearest": "upsample",
               "bilinear": "upsample", "lrn_odd": "lrn", "stats": "batchnorm2d", "softplus": "softplus",
               "scaled": "affine", "doubled": "affine", "as_vector": "flatten", "as_map": "reshape",
               "ln": "layernorm", "ln_map": "layernorm", "ln_vector": "layernorm", "own": "instancenorm2d",
               "own_affine": "instancenorm2d"}


def test_every_registered_layer_type_has_a_writer():
    """Each type name and alias of the registry has an ONNX writer (none is refused as a type)."""
    registered = set(base.all_types())
    assert registered - set(onnx_export.WRITERS) - set(onnx_export.NEEDS_OUTPUT_SHAPE) == set()


def test_every_registered_layer_type_is_exported_here():
    """The documents of these tests use every type name and alias the registry has."""
    used = {layer["type"] for make in DOCUMENTS.values() for layer in make()["layers"]}
    assert set(base.all_types()) - used == set()


@pytest.mark.parametrize("name", sorted(DOCUMENTS))
def test_each_layer_type_matches_onnx_runtime(name, tmp_path):
    """Every layer's map, for each of a batch of two, equals ONNX Runtime's tensor of the layer's name."""
    model = write(tmp_path, DOCUMENTS[name]())
    x = (np.random.default_rng(3).standard_normal((2, *model.input.shape)) * 3).astype(np.float32)
    data = export_model(model)
    theirs = ort_tensors(data, [layer.name for layer in model.network.layers], x)
    for sample in range(2):
        for step in model.network.forward(x[sample])[1:]:
            expected = theirs[step.name][sample]
            assert (np.isnan(step.output) == np.isnan(expected)).all(), step.name  # log and sqrt of negatives
            keep = ~np.isnan(expected)
            assert_close(np.where(keep, step.output, 0), np.where(keep, expected, 0), step.name)


@pytest.mark.parametrize("name", ["every", "math", "chain", "moves", "norms"])
def test_the_export_imports_back_to_the_same_maps(name, tmp_path):
    """Export, then import: every layer's name is back and gives the same map (within 1e-5 of its
    scale: gelu comes back as its arithmetic); where a layer's last node is its own operator, as its type."""
    model = write(tmp_path, DOCUMENTS[name]())
    back = load_onnx(export_model(model), f"{name}.onnx")
    x = np.random.default_rng(9).standard_normal(model.input.shape).astype(np.float32)
    again = {step.name: step.output for step in back.network.forward(x)}
    types = {layer.name: layer.type for layer in back.network.layers}
    for step, layer in zip(model.network.forward(x)[1:], model.network.layers):
        finite = np.isfinite(step.output)
        assert (np.isfinite(again[step.name]) == finite).all(), step.name
        assert_close(np.where(finite, again[step.name], 0), np.where(finite, step.output, 0), step.name)
        if name in SAME_TYPES:
            assert types[step.name] == {"dropout": "identity"}.get(layer.type, layer.type), step.name
        elif name in ("moves", "norms") and step.name in IMPORTED_AS:
            assert types[step.name] == IMPORTED_AS[step.name], step.name


def test_the_formulas_the_importer_does_not_read_yet_are_named(tmp_path):
    """The operators the formulas document is written with are ones the importer refuses today (this
    fails when it learns them: then the document joins the round trip above)."""
    model = write(tmp_path, _formulas_document())
    with pytest.raises(SpecError) as refused:
        load_onnx(export_model(model), "formulas.onnx")
    for op in ("Reshape", "Greater", "Gather", "MatMul"):
        assert op in refused.value.message, op


# -- writers in detail --------------------------------------------------------------------------------------
def nodes(model):
    return onnx.load_model_from_string(export_model(model)).graph.node


def test_opset_17_operators_only(tmp_path):
    """No operator newer than opset 17 (GroupNormalization 18, Mish 18, Gelu 20) and no Pad in mode
    wrap (19): the checker's opset-17 schemas accept every node."""
    for make in DOCUMENTS.values():
        written = nodes(write(tmp_path, make()))
        ops = {node.op_type for node in written}
        assert not ops & {"GroupNormalization", "Mish", "Gelu"}
        assert all(attribute.s != b"wrap" for node in written for attribute in node.attribute)


def test_a_layers_last_node_and_tensor_take_its_name(tmp_path):
    """Whatever nodes a layer takes, the last is named by the layer and outputs the layer's tensor."""
    for make in DOCUMENTS.values():
        model = write(tmp_path, make())
        written = {node.output[0]: node.name for node in nodes(model)}
        for layer in model.network.layers:
            assert written[layer.name] == layer.name


def test_lrn_of_an_even_size_sums_pytorchs_window(tmp_path):
    """Hand-worked: size 2 over 3 channels of ones, alpha 2, beta 1, k 1: PyTorch's window for channel c
    is c-1 and c, so channel 0 sums one square (1 + 2/2 * 1 = 2) and channels 1, 2 two (3): 1/2, 1/3, 1/3."""
    document = {"format": "cnn-model", "version": 2, "input": {"size": [1, 1], "color": "rgb"},
                "layers": [{"name": "n", "type": "lrn", "size": 2, "alpha": 2, "beta": 1, "k": 1}]}
    model = write(tmp_path, document)
    x = np.ones((1, 3, 1, 1), np.float32)
    np.testing.assert_allclose(ort_outputs(export_model(model), x)[0].reshape(-1), [1 / 2, 1 / 3, 1 / 3], rtol=1e-6)
    np.testing.assert_allclose(model.network.predict(x).reshape(-1), [1 / 2, 1 / 3, 1 / 3], rtol=1e-6)


def test_softplus_past_its_threshold_is_x(tmp_path):
    """Hand-worked: beta 2, threshold 3: x = 2 is past it (2x = 4 > 3) and stays 2; x = 1 gives
    log(1 + e^2) / 2; PyTorch's defaults give x itself from x = 20 on, as ONNX's Softplus does in float32."""
    layers = [{"name": "sp", "type": "softplus", "beta": 2, "threshold": 3},
              {"name": "plain", "type": "softplus", "inputs": ["input"]}]
    model = write(tmp_path, _graph([1, 4], "gray", layers))
    x = np.array([1.0, 2.0, 25.0, 1e6], np.float32).reshape(1, 1, 1, 4)
    theirs = ort_tensors(export_model(model), ["sp", "plain"], x)
    ours = {step.name: step.output.reshape(-1) for step in model.network.forward(x[0])}
    for values in (theirs["sp"].reshape(-1), ours["sp"]):
        np.testing.assert_allclose(values[:2], [np.log1p(np.exp(2.0)) / 2, 2.0], rtol=1e-6)
    for values in (theirs["plain"].reshape(-1), ours["plain"]):
        np.testing.assert_array_equal(values[2:], [25.0, 1e6])


def test_channel_shuffle_is_written_as_pytorch_writes_it(tmp_path):
    """Reshape (N, G, C/G, H, W) with 0 copying the batch, Transpose (0, 2, 1, 3, 4), Reshape back."""
    model = write(tmp_path, {"format": "cnn-model", "version": 2, "input": {"size": [2, 3], "color": "rgb"},
                             "layers": [{"name": "sh", "type": "channel_shuffle", "groups": 3}]})
    data = onnx.load_model_from_string(export_model(model))
    constants = {t.name: onnx.numpy_helper.to_array(t).tolist() for t in data.graph.initializer}
    written = [(node.op_type, [constants.get(i) for i in node.input[1:]]) for node in data.graph.node]
    assert written == [("Reshape", [[0, 3, 1, 2, 3]]), ("Transpose", []), ("Reshape", [[0, -1, 2, 3]])]
    assert list(data.graph.node[1].attribute[0].ints) == [0, 2, 1, 3, 4]


# -- refusals -------------------------------------------------------------------------------------------
def test_a_type_without_a_writer_is_named(tmp_path, capsys, monkeypatch):
    """A type with no writer (as a new one would be) is refused by type, every one at once, nothing written."""
    monkeypatch.delitem(onnx_export.WRITERS, "mish")
    monkeypatch.delitem(onnx_export.WRITERS, "channel_shuffle")
    document = {"format": "cnn-model", "version": 2, "input": {"size": [4, 4]},
                "layers": [{"name": "m", "type": "mish"}, {"name": "sh", "type": "channel_shuffle", "groups": 1}]}
    (tmp_path / "m.json").write_text(json.dumps(document))
    code = main(["export", str(tmp_path / "m.json"), "-o", str(tmp_path / "m.onnx")])
    assert code == 1 and not (tmp_path / "m.onnx").exists()
    err = capsys.readouterr().err
    assert "cannot write 2 layers as ONNX yet" in err and "mish (m)" in err and "channel_shuffle (sh)" in err


def test_a_setting_no_writer_expresses_is_refused(tmp_path, capsys):
    """Adaptive pooling into more than 512 overlapping bins along an axis (a Slice and a pool each) is
    refused with its reason, in one line, exit 1, nothing written."""
    document = {"format": "cnn-model", "version": 2, "input": {"size": [2, 1000]},
                "layers": [{"name": "fine", "type": "adaptiveavgpool2d", "output_size": [1, 999]},
                           {"name": "ok", "type": "adaptivemaxpool2d", "output_size": [1, 500]}]}
    (tmp_path / "m.json").write_text(json.dumps(document))
    code = main(["export", str(tmp_path / "m.json"), "-o", str(tmp_path / "m.onnx")])
    assert code == 1 and not (tmp_path / "m.onnx").exists()
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"cnn: {tmp_path / 'm.json'}: cannot write 1 layer as ONNX: ")
    assert "fine (adaptiveavgpool2d): output_size 999 does not divide the input's 1000 columns" in err
    assert "at most 512" in err and "ok (" not in err


def test_export_writes_a_file_once_and_check_agrees(tmp_path, capsys):
    target = tmp_path / "digits.onnx"
    assert main(["export", "digits", "-o", str(target)]) == 0
    assert main(["export", "digits", "-o", str(target)]) == 1 and "--force" in capsys.readouterr().err
    assert main(["export", "digits", "-o", str(target), "--force"]) == 0
    digit = str(ROOT / "sample_images" / "digit_7.png")
    for model in (str(target), "digits"):  # the file, and the model file exported in memory
        assert main(["check", model, digit, "-f", "json"]) == 0
        report = json.loads(capsys.readouterr().out)
        assert report["failed"] == 0 and len(report["nodes"]) == 14
