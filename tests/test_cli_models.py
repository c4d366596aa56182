"""`cnn run/inspect --model`, `cnn summary` and `cnn models` through the command line."""

import json

import numpy as np
import pytest
from conftest import ROOT
from PIL import Image
from test_cli import invoke, run_main

DIGIT_7 = str(ROOT / "sample_images" / "digit_7.png")
SEED = str(ROOT / "sample_images" / "seed_5x5.png")


def test_run_model_shows_every_map_then_the_prediction():
    result = invoke("run", DIGIT_7, "--model", "digits")
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    assert out.startswith("Model digits (bundled)")
    assert out.index("conv1 (conv2d)") < out.index("bn1 (batchnorm2d)") < out.index("fc2 (dense)")
    assert "dark ink on light paper (found from the border" in out  # the header says how the input was made
    prediction = out[out.index("Prediction: "):]
    assert prediction.startswith("Prediction: 7 (")
    assert len([line for line in prediction.splitlines()[1:] if line.strip()]) == 5  # the default top 5
    assert "█" in prediction


def test_top_chooses_how_many_classes():
    result = invoke("run", DIGIT_7, "-m", "digits", "--top", "2")
    tail = result.stdout[result.stdout.index("Prediction: "):].splitlines()
    labels = [line.split()[0] for line in tail[1:] if line.strip()]
    assert labels[0] == "7" and labels[1] != "7"
    assert len(labels) == 2


def test_run_json_has_model_and_predictions():
    result = invoke("run", DIGIT_7, "--model", "digits", "--format", "json", "--top", "3")
    trace = json.loads(result.stdout)
    assert trace["model"]["name"] == "digits" and trace["model"]["labels"][7] == "7"
    assert trace["model"]["input"] == {"size": [8, 8], "color": "gray", "scale": "unit", "invert": "auto",
                                       "mean": [0.0], "std": [1.0], "fit": "ink"}
    best = trace["predictions"][0]
    assert best["rank"] == 1 and best["label"] == "7" and best["index"] == 7
    assert len(trace["predictions"]) == 3
    assert best["probability"] == pytest.approx(trace["layers"][-1]["values"][7], rel=1e-12)
    assert [layer["name"] for layer in trace["layers"]][:3] == ["input", "conv1", "bn1"]


def test_inspect_model_saves_every_layer_and_the_prediction(tmp_path):
    folder = tmp_path / "acts"
    result = invoke("inspect", str(ROOT / "sample_images" / "digit_3.png"), "--model", "digits", "--save", str(folder))
    assert result.exit_code == 0, result.stderr
    assert "Prediction: 3" in result.stdout
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["predictions"][0]["label"] == "3"
    assert len(manifest["layers"]) == 15
    conv1 = np.load(folder / manifest["layers"][1]["file"])
    assert conv1.shape == (16, 8, 8)


def test_kernel_run_with_a_dense_layer_can_rank_its_outputs():
    result = invoke("run", SEED, "-k", "vertical_edge", "--dense-random", "4", "--softmax", "--top", "2",
                    "--format", "json")
    predictions = json.loads(result.stdout)["predictions"]
    assert [p["rank"] for p in predictions] == [1, 2] and predictions[0]["label"] in "0123"


@pytest.mark.parametrize("args, option", [
    (["--model", "digits", "--kernel", "sobel_x"], "--kernel"),
    (["--model", "digits", "--pool", "avg"], "--pool"),
    (["--model", "digits", "--color", "rgb"], "--color"),
    (["-k", "sobel_x", "--top", "3"], "--top"),
    (["--model", "digits", "--alpha", "keep"], "--alpha"),
])
def test_options_that_clash_with_a_model_are_usage_errors(capsys, args, option):
    code, out, err = run_main(capsys, "run", DIGIT_7, *args)
    assert code == 2 and out == ""
    assert err.startswith("cnn: ") and option in err and len(err.strip().splitlines()) == 1


def test_bad_model_is_one_line_naming_the_file(capsys, tmp_path):
    path = tmp_path / "net.json"
    path.write_text('{"format": "cnn-model", "version": 1, "input": {"size": [8, 8]},'
                    ' "layers": [{"type": "maxpool2d", "kernel_size": 2, "strid": 2}]}')
    code, out, err = run_main(capsys, "run", DIGIT_7, "--model", str(path))
    assert code == 1 and out == ""
    assert err == f"cnn: {path}: layers[0].strid: unknown key (did you mean 'stride'?)\n"
    code, out, err = run_main(capsys, "summary", "digts")
    assert code == 1 and "did you mean digits" in err


def test_summary_table_and_json():
    result = invoke("summary", "digits")
    assert result.exit_code == 0, result.stderr
    for words in ("conv1", "batchnorm2d", "16x8x8", "13,802", "multiply-adds per image: 93,312", "activations"):
        assert words in result.stdout
    document = json.loads(invoke("summary", "digits", "--format", "json").stdout)
    assert document["total"] == {"parameters": 13_802, "macs": 93_312}
    assert document["layers"][0]["shape"] == [16, 8, 8] and document["layers"][0]["macs"] == 9_216


def test_models_lists_the_bundled_ones():
    result = invoke("models")
    assert result.exit_code == 0 and "digits" in result.stdout and "13,802" in result.stdout
    listing = json.loads(invoke("models", "--format", "json").stdout)
    assert listing["format"] == "cnn-models" and listing["version"] == 1
    models = listing["models"]
    assert [m["name"] for m in models] == ["digits"] and models[0]["metadata"]["held_out_accuracy"] >= 0.97


def _seven_drawn(tmp_path, name, size, ink, paper, mode="L"):
    """The sample 7, each pixel a block, with ``ink`` strokes on ``paper`` (RGBA paper may be transparent)."""
    small = np.asarray(Image.open(DIGIT_7), dtype=np.float64) / 255  # 1 is paper, 0 is ink
    blocks = np.kron(small, np.ones((size // 8, size // 8)))
    ink, paper = np.array(ink, dtype=np.float64), np.array(paper, dtype=np.float64)
    pixels = blocks[..., None] * paper + (1 - blocks[..., None]) * ink
    path = tmp_path / name
    Image.fromarray(np.round(pixels.squeeze()).astype(np.uint8), mode).save(path)
    return str(path)


def test_a_big_drawing_is_resized_and_the_header_gives_the_file_size(tmp_path):
    result = invoke("run", _seven_drawn(tmp_path, "big.png", 64, 0, 255), "--model", "digits", "--format", "json")
    trace = json.loads(result.stdout)
    assert trace["predictions"][0]["label"] == "7"
    assert "reduced to 8x8 by area averaging" in trace["image"]["notes"]
    table = invoke("run", _seven_drawn(tmp_path, "big.png", 64, 0, 255), "--model", "digits").stdout
    assert "PNG 64x64 L -> gray" in " ".join(table.split())  # however the header wraps


def test_transparent_paper_counts_as_white_for_a_model_that_inverts(tmp_path):
    """Black ink on transparent paper (RGBA (0,0,0,0)): dropping alpha would make it all ink."""
    path = _seven_drawn(tmp_path, "clear.png", 32, (0, 0, 0, 255), (0, 0, 0, 0), "RGBA")
    trace = json.loads(invoke("run", path, "--model", "digits", "--format", "json").stdout)
    assert trace["predictions"][0]["label"] == "7"
    assert any("white" in note for note in trace["image"]["notes"])


def test_light_ink_on_dark_paper_is_read_as_such(capsys, tmp_path):
    """digits finds the ink's polarity from the border: a light 7 on black reads as 7, silently; with a
    model that inverts whatever the picture (--resize replaces the ink fitting, --invert yes), the
    picture looks inverted and a warning says so."""
    negative = _seven_drawn(tmp_path, "negative.png", 32, 255, 0)
    code, out, err = run_main(capsys, "run", negative, "-m", "digits", "-f", "json")
    trace = json.loads(out)
    assert code == 0 and trace["predictions"][0]["label"] == "7" and err == ""
    assert "light ink on dark paper (found from the border, 0.00)" in trace["image"]["notes"]
    code, out, err = run_main(capsys, "run", negative, "-m", "digits", "--resize", "8", "--invert", "yes", "-f", "json")
    assert code == 0 and json.loads(out)["predictions"]
    assert err.startswith("cnn: warning: ") and "dark ink on a light background" in err
    code, out, err = run_main(capsys, "run", DIGIT_7, "-m", "digits", "-f", "json")
    assert err == ""
