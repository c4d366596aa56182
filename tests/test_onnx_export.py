"""`cnn export`: model files written as ONNX run in ONNX Runtime (the reference) to the outputs of
Network.predict, within float32 rounding relative to the output's scale (1e-5); and `cnn check`
on a model file compares every layer through that export."""

import json

import numpy as np
import pytest
from conftest import ROOT

from cnncli.cli import main
from cnncli.io.modelfile import load_model

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from cnncli.io.onnx_export import export_model  # noqa: E402

MODELS = ["digits", *sorted(str(p) for p in (ROOT / "docs" / "examples").glob("*.json")),
          *sorted(str(p) for p in (ROOT / "tests" / "data" / "graphs").glob("*.json"))]


def ort_outputs(data, x):
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    return session.run(None, {"input": x})


def layer_tensors(model, x):
    """ONNX Runtime's tensor of every layer of the exported model, by the layer's name (cnn check's reference)."""
    from cnncli.io.onnx_import.check import reference_values

    names = [layer.name for layer in model.network.layers]
    return reference_values(export_model(model), x[0], names, "test")[0]


@pytest.mark.parametrize("spec", MODELS, ids=[p.rsplit("/", 1)[-1] for p in MODELS])
def test_every_model_file_round_trips_through_onnx_runtime(spec):
    model = load_model(spec)
    x = np.random.default_rng(4).random((3, *model.input.shape)).astype(np.float32)
    ours = model.network.predict(x)
    theirs = ort_outputs(export_model(model), x)[0]
    assert theirs.shape == ours.shape
    np.testing.assert_allclose(theirs, ours, rtol=0, atol=1e-5 * max(1.0, float(np.abs(ours).max())))


def test_each_exportable_layer_type(tmp_path):
    """A graph of the pointwise types, merges, a padded conv with reflect padding and upsampling,
    every layer's output compared with ONNX Runtime's tensor of the same name."""
    rng = np.random.default_rng(2)
    conv = {"type": "conv2d", "out_channels": 4, "kernel_size": 3, "padding": 1, "padding_mode": "reflect",
            "weight": rng.standard_normal((4, 2, 3, 3)).round(3).tolist(), "bias": [0.1, -0.2, 0.3, 0.0]}
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
    document = {"format": "cnn-model", "version": 2, "input": {"size": [6, 6], "color": "gray"},
                "layers": [{"name": "two", "type": "concat", "inputs": ["input", "input"]}] + layers}
    path = tmp_path / "every.json"
    path.write_text(json.dumps(document))
    model = load_model(str(path))
    x = np.random.default_rng(3).standard_normal((1, 1, 6, 6)).astype(np.float32)
    theirs = layer_tensors(model, x)
    for step in model.network.forward(x[0])[1:]:
        expected = theirs[step.name][0]
        scale = max(1.0, float(np.abs(expected).max()))
        np.testing.assert_allclose(step.output, expected, rtol=0, atol=1e-5 * scale, err_msg=step.name)


def test_the_math_types_and_max_min_merges_round_trip(tmp_path):
    """exp, log, sqrt, neg, abs, erf, pow, reciprocal, logsoftmax, max and min written as ONNX: every
    layer's output matches ONNX Runtime's tensor of the same name, and the export imports back to the
    same types."""
    from cnncli.io.onnx_import import load_onnx

    layers = [{"name": "a", "type": "abs"}, {"name": "s", "type": "sqrt"}, {"name": "e", "type": "exp"},
              {"name": "l", "type": "log"}, {"name": "n", "type": "neg", "inputs": ["input"]},
              {"name": "f", "type": "erf"}, {"name": "p", "type": "pow", "exponent": 3, "inputs": ["input"]},
              {"name": "h", "type": "pow", "exponent": 0.5, "inputs": ["e"]},
              {"name": "r", "type": "reciprocal", "inputs": ["e"]},
              {"name": "hi", "type": "max", "inputs": ["l", "f", "p"]},
              {"name": "lo", "type": "min", "inputs": ["hi", "r", "h"]},
              {"name": "ls", "type": "logsoftmax"}, {"name": "lsw", "type": "logsoftmax", "dim": -1}]
    document = {"format": "cnn-model", "version": 2, "input": {"size": [5, 6], "color": "rgb"}, "layers": layers}
    path = tmp_path / "math.json"
    path.write_text(json.dumps(document))
    model = load_model(str(path))
    data = export_model(model)
    x = np.random.default_rng(5).standard_normal((1, 3, 5, 6)).astype(np.float32)
    theirs = layer_tensors(model, x)
    for step in model.network.forward(x[0])[1:]:
        expected = theirs[step.name][0]
        finite = np.isfinite(expected)
        assert (np.isnan(step.output) == np.isnan(expected)).all(), step.name
        scale = max(1.0, float(np.abs(expected[finite]).max()))
        np.testing.assert_allclose(step.output[finite], expected[finite], rtol=0, atol=1e-5 * scale,
                                   err_msg=step.name)
    back = load_onnx(data, "math.onnx")
    assert [layer.type for layer in back.network.layers] == [layer.type for layer in model.network.layers]


def test_a_type_without_a_writer_is_named(tmp_path, capsys):
    document = {"format": "cnn-model", "version": 2, "input": {"size": [4, 4]},
                "layers": [{"name": "ln", "type": "layernorm", "normalized_shape": [4], "elementwise_affine": False},
                           {"name": "sh", "type": "channel_shuffle", "groups": 1}]}
    (tmp_path / "m.json").write_text(json.dumps(document))
    code = main(["export", str(tmp_path / "m.json"), "-o", str(tmp_path / "m.onnx")])
    assert code == 1 and not (tmp_path / "m.onnx").exists()
    err = capsys.readouterr().err
    assert "cannot write 2 layers as ONNX yet" in err and "layernorm (ln)" in err and "channel_shuffle (sh)" in err


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
