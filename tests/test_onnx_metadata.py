"""`cnn export` keeps a model's input rule, labels, name and metadata in the ONNX file's
metadata_props (cnn.input, cnn.labels, cnn.name, cnn.metadata), and loading the file reads them
back: the exported file answers as the model file does. References: the model file run by cnn
(the same rule, labels and name; predictions within 1e-5), and ONNX Runtime (graph optimisations
off) running the exported file on the input cnn prepared, to cnn's output within 1e-5 of its
scale. Bad values are refused in one line; files without the keys load as before."""

import json

import numpy as np
import pytest
from conftest import ROOT

from cnncli.cli import main
from cnncli.io.input_rule import InputSpec
from cnncli.io.modelfile import bundled_models, load_model

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper  # noqa: E402

SAMPLES = ROOT / "sample_images"


def _model_files(folder):
    return [str(p) for p in sorted(folder.rglob("*.json")) if json.loads(p.read_text()).get("format") == "cnn-model"]


# Every bundled model and every model file of docs/examples and tests/data, as test_onnx_export.py lists them.
MODELS = [*(path.stem for path in bundled_models()), *_model_files(ROOT / "docs" / "examples"),
          *_model_files(ROOT / "tests" / "data")]


def cnn(capsysbinary, *args):
    code = main([str(arg) for arg in args])
    captured = capsysbinary.readouterr()
    return code, captured.out, captured.err.decode()


def export(capsysbinary, model, target):
    """``cnn export model -o target``: exit 0, nothing on stdout, one line on stderr saying so."""
    code, out, err = cnn(capsysbinary, "export", model, "-o", target)
    assert (code, out) == (0, b""), err
    assert err.count("\n") == 1 and err.startswith("wrote ") and err.rstrip().endswith(f" to {target}")
    return target


def run_json(capsysbinary, image, model, *options):
    """``cnn run image -m model -f json``: the trace, with the final layer's values."""
    code, out, err = cnn(capsysbinary, "run", image, "-m", model, "-f", "json", "--values", "final", *options)
    assert code == 0, err
    return json.loads(out)


def assert_same_run(ours, theirs):
    """Two traces of one image: the same rule, labels and name in their model record, the same
    classes in the same order, probabilities and final values within 1e-5."""
    for key in ("name", "input", "labels"):
        assert ours["model"][key] == theirs["model"][key], key
    assert ("predictions" in ours) == ("predictions" in theirs)  # none for a network that ends in a map
    ranked = ours.get("predictions", []), theirs.get("predictions", [])
    assert [p["label"] for p in ranked[0]] == [p["label"] for p in ranked[1]]
    np.testing.assert_allclose([p["probability"] for p in ranked[0]], [p["probability"] for p in ranked[1]],
                               rtol=0, atol=1e-5)
    np.testing.assert_allclose(np.asarray(ours["layers"][-1]["values"], np.float64),
                               np.asarray(theirs["layers"][-1]["values"], np.float64), rtol=0, atol=1e-5)


def ort_output(path, x):
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return session.run(None, {"input": x})[0]


def sample_for(model):
    return str(SAMPLES / ("digit_7.png" if model.input.channels == 1 else "photo_chelsea.jpg"))


# -- the round trip ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("spec", MODELS, ids=[p.rsplit("/", 1)[-1] for p in MODELS])
def test_every_model_round_trips_its_rule_labels_and_answers(spec, tmp_path, capsysbinary):
    """Exported and loaded back: the same input shape, rule, labels, name and description; `cnn run`
    on a sample image gives the same classes and probabilities (1e-5) as the model file; ONNX
    Runtime runs the file, on the input cnn prepared, to cnn's output (1e-5 of its scale)."""
    original = load_model(spec)
    target = export(capsysbinary, spec, tmp_path / "m.onnx")
    back = load_model(str(target))
    assert back.input == original.input and back.input.shape == original.input.shape
    assert (back.labels, back.name, back.description) == (original.labels, original.name, original.description)
    assert {k: v for k, v in back.metadata.items() if k != "onnx"} == original.metadata
    assert back.metadata["onnx"]["preprocessing"] == "the input rule in the file (cnn.input)"
    image = sample_for(original)
    ours, theirs = run_json(capsysbinary, image, spec), run_json(capsysbinary, image, target)
    assert_same_run(ours, theirs)
    from cnncli import api

    x = api.load_model(str(target)).prepare(image).array[None]  # 1, C, H, W: as cnn run prepared it
    output = np.asarray(theirs["layers"][-1]["values"], np.float32)
    expected = ort_output(target, x)[0]
    assert expected.shape == output.shape
    np.testing.assert_allclose(expected, output, rtol=0, atol=1e-5 * max(1.0, float(np.abs(output).max())))


def test_the_digits_model_exported_reads_seven_as_the_original(tmp_path, capsysbinary):
    """The report that started this: digits.onnx read digit_7.png as 8 (98.5%); now 7 as `-m digits`."""
    target = export(capsysbinary, "digits", tmp_path / "digits.onnx")
    ours = run_json(capsysbinary, SAMPLES / "digit_7.png", "digits")
    theirs = run_json(capsysbinary, SAMPLES / "digit_7.png", target)
    assert theirs["predictions"][0]["label"] == "7" and theirs["predictions"][0]["probability"] > 0.999
    assert_same_run(ours, theirs)
    meta = {entry.key: entry.value for entry in onnx.load(str(target)).metadata_props}
    assert set(meta) == {"cnn.name", "cnn.input", "cnn.labels", "cnn.metadata"}
    assert json.loads(meta["cnn.input"]) == json.loads((ROOT / "cnncli" / "models" / "digits.json").read_text())["input"]
    assert json.loads(meta["cnn.labels"]) == [str(i) for i in range(10)] and meta["cnn.name"] == "digits"


def test_residual_tiny_exported_names_its_classes(tmp_path, capsysbinary):
    """The second report: residual_tiny exported printed "1"; the table names the class again."""
    target = export(capsysbinary, str(ROOT / "docs" / "examples" / "residual_tiny.json"), tmp_path / "r.onnx")
    code, out, err = cnn(capsysbinary, "run", SAMPLES / "shapes.png", "-m", target)
    assert code == 0, err
    assert b"horizontal edges" in out and b"vertical edges" in out


# Input rules of every kind, on a small model: each exported and read back as the same rule.
RULES = {
    "stretch": {"size": [6, 5], "color": "rgb", "mean": [0.5, 0.4, 0.3], "std": [0.2, 0.25, 0.3]},
    "resize_and_crop": {"size": [6, 5], "color": "rgb", "resize": 7},
    "crop_alone": {"crop": [6, 5], "color": "rgb", "scale": "raw", "mean": 100, "std": 50},
    "resize_crop_given": {"size": [6, 5], "crop": [6, 5], "resize": 9, "color": "rgb"},
    "gray_inverted": {"size": [6, 5], "invert": True, "scale": "raw"},
    "gray_invert_auto": {"size": [6, 5], "invert": "auto"},
    "fit_ink": {"size": [6, 5], "fit": "ink"},
    "fit_ink_dark": {"size": [6, 5], "fit": "ink", "invert": False, "mean": 0.1, "std": 0.9},
}


def small_model(tmp_path, rule):
    channels = 3 if rule.get("color") == "rgb" else 1
    rng = np.random.default_rng(7)
    document = {"format": "cnn-model", "version": 2, "name": "small", "description": "a rule's round trip",
                "input": rule, "labels": ["cat", "dog", "bird"], "metadata": {"trained": "never"},
                "layers": [{"type": "conv2d", "out_channels": 2, "kernel_size": 3,
                            "weight": rng.standard_normal((2, channels, 3, 3)).round(3).tolist(), "bias": [0.1, -0.1]},
                           {"type": "relu"}, {"type": "flatten"},
                           {"type": "dense", "out_features": 3, "weight": rng.standard_normal((3, 24)).round(3).tolist(),
                            "bias": [0.0, 0.1, 0.2]},
                           {"type": "softmax"}]}
    path = tmp_path / "small.json"
    path.write_text(json.dumps(document))
    return str(path)


@pytest.mark.parametrize("rule", RULES.values(), ids=RULES)
def test_every_kind_of_rule_round_trips(rule, tmp_path, capsysbinary):
    """Resize and crop, a crop alone, raw scale, inverting (yes, auto), fitting the ink, per-channel
    mean and std: read back as the same InputSpec, and `cnn run` answers as the model file (1e-5)."""
    spec = small_model(tmp_path, rule)
    original = load_model(spec)
    target = export(capsysbinary, spec, tmp_path / "small.onnx")
    back = load_model(str(target))
    assert back.input == original.input and (back.labels, back.name) == (original.labels, "small")
    image = sample_for(original)
    assert_same_run(run_json(capsysbinary, image, spec), run_json(capsysbinary, image, target))


@pytest.mark.parametrize("options", [("--invert", "no"), ("--crop", "8", "--std", "0.5"), ("--scale", "raw")],
                         ids=["invert", "crop_std", "scale"])
def test_options_override_the_files_rule_field_by_field(options, tmp_path, capsysbinary):
    """--invert, --crop, --std, --scale change the exported file's rule as they change the model file's."""
    target = export(capsysbinary, "digits", tmp_path / "digits.onnx")
    image = SAMPLES / "digit_3.png"
    ours, theirs = run_json(capsysbinary, image, "digits", *options), run_json(capsysbinary, image, target, *options)
    assert_same_run(ours, theirs)
    assert theirs["model"]["input"] != run_json(capsysbinary, image, target)["model"]["input"]  # the option took


def test_preset_and_labels_override_the_files_own(tmp_path, capsysbinary):
    """--preset replaces the exported file's whole rule and --labels its names, as for the model file."""
    spec = str(ROOT / "docs" / "examples" / "residual_tiny.json")
    target = export(capsysbinary, spec, tmp_path / "r.onnx")
    names = tmp_path / "names.txt"
    names.write_text("up\ndown\n")
    image = SAMPLES / "shapes.png"
    options = ("--labels", names, "--preset", "imagenet", "--color", "gray", "--crop", "32", "--resize", "40",
               "--mean", "0.5", "--std", "0.25")
    ours, theirs = run_json(capsysbinary, image, spec, *options), run_json(capsysbinary, image, target, *options)
    assert_same_run(ours, theirs)
    assert theirs["model"]["labels"] == ["up", "down"] and theirs["model"]["input"]["resize"] == 40


def test_a_model_file_naming_the_export_as_its_graph_keeps_its_labels(tmp_path, capsysbinary):
    """A model JSON whose "graph" is an exported file and that gives no labels takes the file's own."""
    export(capsysbinary, "digits", tmp_path / "digits.onnx")
    (tmp_path / "wrap.json").write_text(json.dumps({"format": "cnn-model", "version": 2, "graph": "digits.onnx"}))
    assert load_model(str(tmp_path / "wrap.json")).labels == tuple(str(i) for i in range(10))
    (tmp_path / "own.json").write_text(json.dumps({"format": "cnn-model", "version": 2, "graph": "digits.onnx",
                                                   "labels": list("abcdefghij")}))
    assert load_model(str(tmp_path / "own.json")).labels == tuple("abcdefghij")


# -- the export command's output ---------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["digits.onx", "digits", "digits.onnx.json", ""])
def test_export_refuses_a_name_not_ending_in_onnx(name, tmp_path, capsysbinary, monkeypatch):
    """-o must end in .onnx (or be -): one line naming --output, exit 2, nothing written."""
    monkeypatch.chdir(tmp_path)
    code, out, err = cnn(capsysbinary, "export", "digits", "-o", name)
    assert (code, out) == (2, b"") and err.count("\n") == 1
    assert "--output" in err and "expected a file name ending in .onnx, or - for stdout" in err
    assert list(tmp_path.iterdir()) == []


def test_export_to_stdout_writes_the_file_there_and_says_nothing(capsysbinary):
    """-o - writes the ONNX bytes, with their metadata, to stdout and nothing to stderr."""
    code, out, err = cnn(capsysbinary, "export", "digits", "-o", "-")
    assert (code, err) == (0, "")
    assert {entry.key for entry in onnx.load_model_from_string(out).metadata_props} >= {"cnn.input", "cnn.labels"}


def test_export_says_what_it_wrote(tmp_path, capsysbinary):
    """One line on stderr: the model, the format and what its metadata keeps (labels only if it has them)."""
    code, out, err = cnn(capsysbinary, "export", "digits", "-o", tmp_path / "d.ONNX")
    assert (code, out) == (0, b"")
    assert err == f"wrote digits as ONNX (opset 17; input rule and 10 labels in its metadata) to {tmp_path / 'd.ONNX'}\n"
    code, out, err = cnn(capsysbinary, "export", ROOT / "docs" / "examples" / "unet_small.json", "-o",
                         tmp_path / "u.onnx")
    assert code == 0 and err == f"wrote unet_small as ONNX (opset 17; input rule in its metadata) to {tmp_path / 'u.onnx'}\n"


# -- files made by hand ------------------------------------------------------------------------------------
def hand_made(tmp_path, props=(), name="hand.onnx"):
    """A 1x4x4 gray image through Flatten and Softmax (16 classes), with ``props`` as metadata_props."""
    graph = helper.make_graph([helper.make_node("Flatten", ["image"], ["flat"], axis=1),
                               helper.make_node("Softmax", ["flat"], ["probs"], axis=1)], "main_graph",
                              [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 1, 4, 4])],
                              [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", 16])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    for key, value in props:
        model.metadata_props.add(key=key, value=value)
    path = tmp_path / name
    path.write_bytes(model.SerializeToString())
    return path


def test_a_file_without_the_keys_loads_as_before(tmp_path):
    """No cnn. keys (none, or other tools' only): the rule the graph implies (0..1, not normalised),
    no labels, the file's name, and the note that preprocessing is not in the file."""
    plain = load_model(str(hand_made(tmp_path)))
    others = load_model(str(hand_made(tmp_path, [("author", "someone"), ("cnnx", "{"), ("onnx.cnn.input", "[]")],
                                      name="others.onnx")))
    for model, name in ((plain, "hand"), (others, "others")):
        assert model.input == InputSpec((4, 4), "gray", "unit", False, (0.0,), (1.0,))
        assert (model.labels, model.name, model.description) == ((), name, "")
        assert model.metadata["onnx"]["preprocessing"].startswith("not in the file")
        assert set(model.metadata) == {"onnx"}


def test_a_hand_made_file_with_good_keys_loads_them(tmp_path):
    """cnn. keys written by hand (the rule partly given: size and colour from the graph) are read."""
    labels = [f"class {i}" for i in range(16)]
    model = load_model(str(hand_made(tmp_path, [("cnn.input", '{"invert": true, "mean": 0.5}'),
                                                ("cnn.labels", json.dumps(labels)), ("cnn.name", "by hand"),
                                                ("producer note", "left alone")])))
    assert model.input == InputSpec((4, 4), "gray", "unit", True, (0.5,), (1.0,))
    assert model.labels == tuple(labels) and model.name == "by hand"


BAD = {
    "not_json": ([("cnn.input", "{size: 4}")], "metadata cnn.input: invalid JSON at line 1 column 2"),
    "not_an_object": ([("cnn.input", "[4, 4]")], "metadata cnn.input: expected an object, got a list"),
    "other_size": ([("cnn.input", '{"size": [8, 8]}')],
                   "metadata cnn.input.size: is [8, 8] but the ONNX graph's input is [4, 4]"),
    "other_color": ([("cnn.input", '{"color": "rgb"}')], "metadata cnn.input.color: is rgb, 3 channels"),
    "unknown_field": ([("cnn.input", '{"szie": [4, 4]}')], "metadata cnn.input.szie: unknown key (did you mean 'size'?)"),
    "zero_std": ([("cnn.input", '{"std": 0}')], "metadata cnn.input.std: must be above 0, got 0"),
    "nan_mean": ([("cnn.input", '{"mean": NaN}')], "metadata cnn.input.mean: NaN is not a finite number"),
    "labels_count": ([("cnn.labels", '["a", "b"]')], "metadata cnn.labels: has 2 names but the network's output"),
    "labels_file": ([("cnn.labels", '"classes.txt"')], "metadata cnn.labels: expected a JSON list of class names"),
    "labels_twice": ([("cnn.labels", json.dumps(["a"] * 16))], "metadata cnn.labels[1]: 'a' is also labels[0]"),
    "name_line_break": ([("cnn.name", "two\nlines")], "metadata cnn.name: holds '\\n' at character 3"),
    "metadata_list": ([("cnn.metadata", "[]")], "metadata cnn.metadata: expected a JSON object"),
    "unknown_key": ([("cnn.inputs", "{}")], "metadata cnn.inputs: unknown key (did you mean cnn.input?)"),
    "given_twice": ([("cnn.name", "a"), ("cnn.name", "b")], "metadata cnn.name: is given twice"),
}


@pytest.mark.parametrize("case", BAD.values(), ids=BAD)
def test_a_bad_value_is_refused_in_one_line(case, tmp_path, capsysbinary):
    """A cnn. key whose value a model file would refuse in that field, an unknown cnn. key or one
    given twice: `cnn: FILE: metadata KEY...: what`, exit 1, for run and summary alike."""
    props, message = case
    path = hand_made(tmp_path, props)
    for command in (("run", SAMPLES / "digit_7.png", "-m", path), ("summary", path)):
        code, out, err = cnn(capsysbinary, *command)
        assert (code, out) == (1, b"")
        assert err.count("\n") == 1 and err.startswith(f"cnn: {path}: {message}"), err


def test_bytes_that_are_not_utf8_are_refused_in_cnns_keys_only(tmp_path, capsysbinary):
    """protobuf hands such a value over as bytes: in cnn.name it is one line, exit 1; in another
    tool's key it is left alone."""
    for key, name in (("cnn.name", "ours.onnx"), ("theirs", "theirs.onnx")):
        path = hand_made(tmp_path, [(key, "QQQQ")], name=name)
        path.write_bytes(path.read_bytes().replace(b"QQQQ", b"\xff\xfe\xfd\xfc"))
    code, out, err = cnn(capsysbinary, "summary", tmp_path / "ours.onnx")
    assert (code, out, err) == (1, b"", f"cnn: {tmp_path / 'ours.onnx'}: metadata cnn.name: is not valid UTF-8; "
                                        "expected text\n")
    assert load_model(str(tmp_path / "theirs.onnx")).name == "theirs"
