"""--preset imagenet prepares a picture exactly as torchvision's ImageNet recipe on PIL images does:
Resize(256) (shorter side, bilinear on 8-bit pixels, the longer side truncated), CenterCrop(224),
ToTensor (/255), Normalize. Reference: tests/data/torchvision_imagenet.npz, written by torchvision
(tests/fixtures/make_torchvision_preset.py): the cropped 8-bit pixels must be equal, and the
normalised values within float32 rounding (1e-6)."""

import json

import numpy as np
import pytest
from conftest import ROOT

from cnncli import api
from cnncli.cli import main

REFERENCE = np.load(ROOT / "tests" / "data" / "torchvision_imagenet.npz")
PICTURES = list(REFERENCE["names"])
MEAN = np.array([0.485, 0.456, 0.406], np.float32)[:, None, None]
STD = np.array([0.229, 0.224, 0.225], np.float32)[:, None, None]


@pytest.fixture(scope="module")
def imagenet_model(tmp_path_factory):
    document = {"format": "cnn-model", "version": 2, "name": "probe",
                "input": {"size": [224, 224], "color": "rgb"},
                "layers": [{"name": "pool", "type": "globalavgpool2d"}, {"name": "flat", "type": "flatten"}]}
    path = tmp_path_factory.mktemp("preset") / "probe.json"
    path.write_text(json.dumps(document))
    return path


@pytest.mark.parametrize("index", range(len(PICTURES)))
def test_preset_imagenet_equals_torchvision(imagenet_model, index):
    model = api.load_model(imagenet_model, preset="imagenet")
    got = model.prepare(str(ROOT / PICTURES[index])).array
    assert got.shape == (3, 224, 224) and got.dtype == np.float32
    pixels = REFERENCE[f"pixels{index}"].astype(np.float32)
    expected = (pixels / np.float32(255) - MEAN) / STD  # ToTensor, then Normalize, in float32
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)  # so the 8-bit crop is the same
    np.testing.assert_allclose(got[:, :32, :32], REFERENCE[f"corner{index}"], rtol=0, atol=1e-6)


def test_the_model_file_input_rule_says_the_same(tmp_path):
    document = {"format": "cnn-model", "version": 2, "layers": [{"type": "globalavgpool2d"}],
                "input": {"size": [224, 224], "color": "rgb", "resize": 256, "mean": [0.485, 0.456, 0.406],
                          "std": [0.229, 0.224, 0.225]}}
    (tmp_path / "m.json").write_text(json.dumps(document))
    got = api.load_model(tmp_path / "m.json").prepare(str(ROOT / PICTURES[0])).array
    np.testing.assert_allclose(got[:, :32, :32], REFERENCE["corner0"], rtol=0, atol=1e-6)


def test_the_header_says_each_step(imagenet_model, capsys):
    code = main(["run", str(ROOT / "sample_images" / "photo_chelsea.jpg"), "-m", str(imagenet_model), "--preset",
                 "imagenet", "-f", "json", "--values", "none"])
    notes = json.loads(capsys.readouterr().out)["image"]["notes"]
    assert code == 0
    assert notes[-4:] == ["resized 192x128 -> 384x256 (shorter side 256, bilinear, as torchvision)",
                          "centre 224x224 cropped", "values scaled to 0..1 (divided by 255)",
                          "normalised (x - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225]"]


def test_a_model_of_another_input_shape_refuses_the_preset(capsys):
    code = main(["run", str(ROOT / "sample_images" / "digit_7.png"), "-m", "digits", "--preset", "imagenet"])
    err = capsys.readouterr().err
    assert code == 2 and "--preset" in err and "(3, 224, 224)" in err and "(1, 8, 8)" in err


def test_a_kernel_run_takes_the_preset_too(capsys):
    """A kernel run's image is prepared by the preset before the kernels: 3 channels of 224x224, normalised."""
    code = main(["run", str(ROOT / PICTURES[0]), "-k", "identity", "--pool", "none", "--activation", "none",
                 "--preset", "imagenet", "-f", "json", "--values", "none"])
    document = json.loads(capsys.readouterr().out)
    assert code == 0 and document["image"]["shape"] == [3, 224, 224]
    assert document["image"]["notes"][-1] == "normalised (x - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225]"


def test_a_thin_picture_is_refused_before_its_longer_side_grows(imagenet_model, tmp_path, capsys):
    """1x20000 pixels: the shorter side to 256 makes the longer 5,120,000; the memory check counts the
    resized planes (about 22 GiB with their float copy) before Pillow allocates them."""
    from PIL import Image

    Image.fromarray(np.zeros((1, 20000, 3), np.uint8)).save(tmp_path / "thin.png")
    code = main(["run", str(tmp_path / "thin.png"), "-m", str(imagenet_model), "--preset", "imagenet"])
    err = capsys.readouterr().err
    assert code == 1 and "over the memory limit" in err and "thin.png" in err
