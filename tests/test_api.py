"""The Python API (cnncli.load_model, read_image, Model.run -> Trace, Model.predict): the same
arrays as `cnn run`, clear CnnErrors, a cheap `import cnncli`, and README's examples run as written."""

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import cnncli
from cnncli.cli import main

ROOT = Path(__file__).resolve().parent.parent
DIGIT = str(ROOT / "sample_images" / "digit_7.png")
RESIDUAL = str(ROOT / "docs" / "examples" / "residual_tiny.json")


def _library_blocks() -> list[str]:
    """The ```python blocks of README's "As a Python library" section, in order."""
    text = (ROOT / "README.md").read_text()
    section = text.split("\n## As a Python library\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


def _run_block(block: str, namespace: dict) -> int:
    """Run one block statement by statement; an expression line ending in ``# -> REPR`` must have
    that repr. Return how many such results were checked."""
    lines = block.splitlines()
    checked = 0
    for statement in ast.parse(block).body:
        code = compile(ast.Module([statement], []), "README.md", "exec")
        shown = re.search(r"# -> (.*)$", lines[statement.end_lineno - 1])
        if isinstance(statement, ast.Expr) and shown:
            value = eval(compile(ast.Expression(statement.value), "README.md", "eval"), namespace)
            assert repr(value) == shown.group(1), ast.unparse(statement)
            checked += 1
        else:
            exec(code, namespace)
    return checked


def test_readme_library_examples_run_and_show_what_readme_says(monkeypatch, capsys):
    """Every code block of README's library section runs, and each `# -> value` is what it gives."""
    monkeypatch.chdir(ROOT)
    blocks = _library_blocks()
    assert len(blocks) >= 5
    namespace: dict = {}
    checked = sum(_run_block(block, namespace) for block in blocks)
    assert checked >= 15
    assert "conv2" in capsys.readouterr().out  # the loop over trace.steps printed every layer


def _cli_trace(capsysbinary, *args) -> dict:
    code = main(["run", *args, "-f", "json"])
    captured = capsysbinary.readouterr()
    assert code == 0, captured.err
    return json.loads(captured.out)


def _assert_same_as_cli(trace, document) -> None:
    assert [step.name for step in trace.steps] == [layer["name"] for layer in document["layers"]]
    for step, layer in zip(trace.steps, document["layers"]):
        expected = np.asarray(layer["values"], dtype=np.float64)
        assert step.output.shape == expected.shape, step.name
        np.testing.assert_allclose(step.output, expected, rtol=1e-6, atol=1e-7, err_msg=step.name)
    assert [(p.label, p.index) for p in trace.predictions[:5]] == \
        [(p["label"], p["index"]) for p in document["predictions"]]
    np.testing.assert_allclose([p.probability for p in trace.predictions[:5]],
                               [p["probability"] for p in document["predictions"]], rtol=1e-6)


@pytest.mark.parametrize("kind", ["path", "pil", "array"])
def test_path_pil_and_array_give_what_cnn_run_json_gives(kind, capsysbinary):
    """A path, the PIL image of it, and its prepared array give every map and prediction of `cnn run -f json`."""
    document = _cli_trace(capsysbinary, DIGIT, "--model", "digits")
    model = cnncli.load_model("digits")
    image = {"path": DIGIT, "pil": Image.open(DIGIT),
             "array": model.prepare(DIGIT).array if kind == "array" else None}[kind]
    trace = model.run(image)
    _assert_same_as_cli(trace, document)
    if kind != "array":
        assert list(trace.notes) == document["image"]["notes"]


def test_residual_model_runs_as_the_cli_does(capsysbinary):
    """The README's residual example model gives, from Python, what `cnn run --model FILE` gives."""
    document = _cli_trace(capsysbinary, str(ROOT / "sample_images" / "shapes.png"), "--model", RESIDUAL)
    trace = cnncli.load_model(Path(RESIDUAL)).run(str(ROOT / "sample_images" / "shapes.png"))
    _assert_same_as_cli(trace, document)
    add = next(step for step in trace.steps if step.type == "add")
    assert add.inputs == ("conv2", "relu1")


def test_trace_fields():
    """A trace's steps start with the input; maps, output and predictions agree with them."""
    trace = cnncli.load_model("digits").run(DIGIT)
    assert trace.steps[0].name == "input" and trace.steps[0].output is trace.image.array
    assert trace.image.array.dtype == np.float32 and trace.image.array.shape == (1, 8, 8)
    assert list(trace.maps) == [step.name for step in trace.steps]
    assert trace.output is trace.steps[-1].output
    assert [p.rank for p in trace.predictions] == list(range(1, 11))
    assert sum(p.probability for p in trace.predictions) == pytest.approx(1.0, abs=1e-5)
    assert set(trace.steps[1].stats) == {"min", "max", "mean", "std", "zeros"}
    assert trace.warnings == ()
    assert "digit_7.png" in repr(trace) and "'digits'" in repr(trace.model)


def test_predict_matches_run_on_each_image():
    """predict on a stacked batch gives each image's run output."""
    model = cnncli.load_model("digits")
    paths = [str(ROOT / "sample_images" / f"digit_{d}.png") for d in range(4)]
    batch = np.stack([model.prepare(path).array for path in paths])  # (4, 1, 8, 8)
    outputs = model.predict(batch)  # (4, 10)
    assert outputs.shape == (4, 10)
    for row, path in zip(outputs, paths):
        np.testing.assert_allclose(row, model.run(path).output, rtol=1e-5, atol=1e-6)


def test_float64_runs_in_float64():
    """dtype="float64" reads and runs the image in float64."""
    trace = cnncli.load_model("digits").run(DIGIT, dtype="float64")
    assert trace.image.array.dtype == np.float64 and trace.output.dtype == np.float64


def test_read_image_gives_the_array_and_its_notes():
    """read_image reads as `cnn run --kernel` does: (C, H, W) float32 with its conversions in notes."""
    image = cnncli.read_image(ROOT / "sample_images" / "rgb_bars.png")
    assert image.array.shape[0] == 1 and image.array.dtype == np.float32
    assert any("converted to gray" in note for note in image.notes)
    assert cnncli.read_image(ROOT / "sample_images" / "rgb_bars.png", color="rgb").array.shape[0] == 3


def test_an_inverted_looking_image_warns_in_the_trace():
    """An image that looks inverted for the model gives the CLI's warning in trace.warnings: the digits
    model told to invert (--invert yes) and to resize rather than fit the ink; as it comes, the model
    finds no ink in a photo, and says that instead."""
    photo = str(ROOT / "sample_images" / "photo_chelsea.jpg")
    trace = cnncli.load_model("digits", resize=8, invert=True).run(photo)
    assert len(trace.warnings) == 1 and "mostly dark" in trace.warnings[0]
    trace = cnncli.load_model("digits").run(photo)
    assert len(trace.warnings) == 1 and "no ink found" in trace.warnings[0]


@pytest.mark.parametrize("call, error, message", [
    (lambda: cnncli.load_model("digitz"), "SpecError", "'digitz' is neither a model file nor a bundled model"),
    (lambda: cnncli.load_model("digits").run("no_such.png"), "ImageError", "no_such.png: no such file"),
    (lambda: cnncli.load_model("digits").run(np.zeros((8, 8), np.float32)), "ShapeError",
     "image array of shape (8, 8): expected the input shape of the model digits, (1, 8, 8)"),
    (lambda: cnncli.load_model("digits").run(np.zeros((1, 9, 8), np.float32)), "ShapeError",
     "image array of shape (1, 9, 8)"),
    (lambda: cnncli.load_model("digits").run(np.zeros((1, 8, 8), np.uint8)), "UsageError",
     "image holds uint8 values; expected floats"),
    (lambda: cnncli.load_model("digits").run(7), "UsageError", "image is of type int; expected a path"),
    (lambda: cnncli.load_model("digits").run(DIGIT, dtype="float16"), "UsageError", "dtype is 'float16'"),
    (lambda: cnncli.load_model("digits").predict(np.zeros((2, 8, 8), np.float32)), "ShapeError",
     "batch of shape (2, 8, 8): expected (N, 1, 8, 8)"),
    (lambda: cnncli.load_model("digits").predict(np.zeros((0, 1, 8, 8), np.float32)), "ShapeError",
     "batch of shape (0, 1, 8, 8): expected (N, 1, 8, 8), N >= 1"),
    (lambda: cnncli.load_model("digits").run(np.full((1, 8, 8), np.inf, np.float32)), "UsageError",
     "image holds NaN or infinite values"),
    (lambda: cnncli.load_model("digits").predict(np.full((2, 1, 8, 8), np.nan, np.float32)), "UsageError",
     "batch holds NaN or infinite values"),
    (lambda: cnncli.load_model(42), "UsageError", "name_or_path is of type int"),
    (lambda: cnncli.read_image(DIGIT, color="cmyk"), "UsageError", "color is 'cmyk'"),
    (lambda: cnncli.read_image(str(ROOT / "README.md")), "ImageError", "README.md: not a supported image"),
])
def test_errors_are_cnn_errors_with_clear_messages(call, error, message):
    """Each kind of bad input raises its CnnError subclass, with a message that says what was wrong."""
    with pytest.raises(cnncli.CnnError) as caught:
        call()
    assert type(caught.value).__name__ == error
    assert isinstance(caught.value, getattr(cnncli, error))
    assert message in str(caught.value)


def test_errors_name_their_parameter_as_data():
    """An error about an argument names it in ``param``, not as a flag in its message."""
    with pytest.raises(cnncli.SpecError) as caught:
        cnncli.load_model("digitz")
    assert caught.value.param == "model" and "--model" not in str(caught.value)
    with pytest.raises(cnncli.ShapeError) as caught:
        cnncli.load_model("digits").run(np.zeros((8, 8), np.float32))
    assert caught.value.param == "image"


def test_a_network_ending_in_a_map_has_no_predictions(tmp_path):
    """A model whose output is a map gives an empty predictions list, not an error."""
    path = tmp_path / "edges.json"
    path.write_text(json.dumps({
        "format": "cnn-model", "version": 2, "name": "edges", "input": {"size": [6, 6]},
        "layers": [{"name": "conv1", "type": "conv2d", "out_channels": 1, "kernel_size": 3,
                    "weight": [[[[0, 0, 0], [0, 1, 0], [0, 0, 0]]]], "bias": [0]}]}))
    trace = cnncli.load_model(path).run(np.ones((1, 6, 6), np.float32))
    assert trace.predictions == [] and trace.output.shape == (1, 4, 4)


def test_import_cnncli_loads_no_numpy_typer_or_rich():
    """`import cnncli` is as cheap as before the API: no NumPy, Pillow, Typer, Rich or Click."""
    code = ("import sys, cnncli; print(sorted({m.split('.')[0] for m in sys.modules} & "
            "{'numpy', 'PIL', 'typer', 'rich', 'click'}))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_the_api_loads_no_cli_libraries():
    """Using the API (a run and a prediction) imports neither Typer, Rich nor Click."""
    code = (f"import sys, cnncli; cnncli.load_model('digits').run({DIGIT!r}); "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'typer', 'rich', 'click'}))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_public_names():
    """Every name in __all__ resolves, and an unknown one is an AttributeError."""
    for name in cnncli.__all__:
        getattr(cnncli, name)  # raises AttributeError for a name the lazy table lacks
    assert callable(cnncli.load_model) and callable(cnncli.read_image)
    assert issubclass(cnncli.ShapeError, cnncli.CnnError) and isinstance(cnncli.__version__, str)
    with pytest.raises(AttributeError):
        cnncli.no_such_name  # noqa: B018


def test_trace_outputs_name_the_extra_outputs(tmp_path):
    """A model file's ``outputs`` (an auxiliary head) are outputs of the trace too, after the last layer's."""
    document = {"format": "cnn-model", "version": 2, "input": {"size": [4, 4]}, "outputs": ["aux"],
                "layers": [{"name": "a", "type": "relu"}, {"name": "aux", "type": "sigmoid"},
                           {"name": "b", "type": "tanh", "inputs": ["a"]}]}
    path = tmp_path / "aux.json"
    path.write_text(json.dumps(document))
    trace = cnncli.load_model(str(path)).run(np.ones((1, 4, 4), np.float32))
    assert list(trace.outputs) == ["b", "aux"]
    np.testing.assert_array_equal(trace.outputs["aux"], 1 / (1 + np.exp(np.float32(-1))) * np.ones((1, 4, 4)))
