"""The parts of an input rule as options (--resize, --crop, --mean, --std, --color, --scale), for a
model and for a kernel run, and as a model file's input object. References: torchvision's own
pipeline (tests/data/torchvision_imagenet.npz, written by tests/fixtures/make_torchvision_preset.py:
the resized and cropped 8-bit pixels must be equal, normalised values within float32 rounding,
1e-6), and small images worked by hand (exact)."""

import json

import numpy as np
import pytest
from conftest import ROOT
from PIL import Image

from cnncli import api
from cnncli.cli import main
from cnncli.errors import UsageError
from cnncli.run import LayerOptions, prepare

REFERENCE = np.load(ROOT / "tests" / "data" / "torchvision_imagenet.npz")
PICTURES = list(REFERENCE["names"])
MEAN = np.array([0.485, 0.456, 0.406], np.float32)[:, None, None]
STD = np.array([0.229, 0.224, 0.225], np.float32)[:, None, None]
CHELSEA = str(ROOT / "sample_images" / "photo_chelsea.jpg")  # 192x128 RGB
DIGIT_7 = str(ROOT / "sample_images" / "digit_7.png")


def run(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def kernel_input(path, **options):
    """The image a kernel run feeds its kernels, prepared by the given options."""
    return prepare(LayerOptions(image=str(path), kernels=["identity"], padding="same", pool="none", **options)).image


@pytest.fixture(scope="module")
def probe_model(tmp_path_factory):
    """A 224x224 RGB model that only pools: its input is what the rule made of the picture."""
    document = {"format": "cnn-model", "version": 2, "name": "probe", "input": {"size": [224, 224], "color": "rgb"},
                "layers": [{"name": "pool", "type": "globalavgpool2d"}, {"name": "flat", "type": "flatten"}]}
    path = tmp_path_factory.mktemp("rule") / "probe.json"
    path.write_text(json.dumps(document))
    return path


@pytest.fixture()
def grid(tmp_path):
    """A 4x6 gray picture whose pixel at row r, column c is 10 r + c (hand-workable crops)."""
    pixels = (10 * np.arange(4)[:, None] + np.arange(6)[None, :]).astype(np.uint8)
    path = tmp_path / "grid.png"
    Image.fromarray(pixels).save(path)
    return path


# -- against torchvision ---------------------------------------------------------------------------
@pytest.mark.parametrize("index", range(len(PICTURES)))
def test_resize_and_crop_options_equal_torchvision_on_a_model(probe_model, index):
    """--resize 256 --crop 224 --mean --std on an RGB model (no preset) is torchvision's Resize, CenterCrop,
    ToTensor, Normalize."""
    model = api.load_model(probe_model, resize=256, crop=(224, 224), mean=[0.485, 0.456, 0.406],
                           std="0.229,0.224,0.225")
    got = model.prepare(str(ROOT / PICTURES[index])).array
    expected = (REFERENCE[f"pixels{index}"].astype(np.float32) / np.float32(255) - MEAN) / STD
    assert got.shape == expected.shape and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("index", range(len(PICTURES)))
def test_resize_and_crop_options_equal_torchvision_before_kernels(index):
    """A kernel run's --color rgb --resize 256 --crop 224 gives torchvision's cropped 8-bit pixels exactly
    (raw 0..255, a kernel run's scale)."""
    image = kernel_input(ROOT / PICTURES[index], color="rgb", resize=256, crop="224")
    np.testing.assert_array_equal(image.array, REFERENCE[f"pixels{index}"].astype(np.float32))


def test_a_preset_is_overridden_field_by_field(probe_model):
    """--preset imagenet --std 1 keeps the preset's resize, crop and mean and divides by 1."""
    got = api.load_model(probe_model, preset="imagenet", std=1).prepare(CHELSEA).array
    expected = REFERENCE["pixels0"].astype(np.float32) / np.float32(255) - MEAN
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)
    raw = api.load_model(probe_model, preset="imagenet", scale="raw", mean=0, std=1).prepare(CHELSEA).array
    np.testing.assert_array_equal(raw, REFERENCE["pixels0"].astype(np.float32))  # 0..255, not normalised


def test_a_preset_override_reaches_the_header_and_the_record(probe_model, capsys):
    """--preset imagenet --resize 300: every step in order with its numbers, and the record says the rule used."""
    code, out, err = run(capsys, "run", CHELSEA, "-m", probe_model, "--preset", "imagenet", "--resize", "300",
                         "--std", "0.5", "-f", "json", "--values", "none")
    assert code == 0, err
    document = json.loads(out)
    assert document["image"]["notes"] == [
        "resized 192x128 -> 450x300 (shorter side 300, bilinear, as torchvision)", "centre 224x224 cropped",
        "values scaled to 0..1 (divided by 255)", "normalised (x - [0.485, 0.456, 0.406]) / 0.5"]
    assert document["model"]["input"] == {"size": [224, 224], "color": "rgb", "scale": "unit", "invert": False,
                                          "mean": [0.485, 0.456, 0.406], "std": [0.5, 0.5, 0.5], "resize": 300,
                                          "crop": [224, 224]}


def test_the_table_header_lists_each_step(probe_model, capsys):
    """The run's header line names the file's size and every step done to it, in order."""
    code, out, err = run(capsys, "run", CHELSEA, "-m", probe_model, "--resize", "224", "--mean", "0.5", "--std",
                         "0.25")
    assert code == 0, err
    assert "input shorter side 224, centre crop, 224x224 rgb, 0..1, (x - 0.5) / 0.25" in " ".join(out.split())
    assert ("JPEG 192x128 RGB -> R/G/B float32 (resized 192x128 -> 336x224 (shorter side 224, bilinear, as "
            "torchvision); centre 224x224 cropped; values scaled to 0..1 (divided by 255); normalised (x - 0.5) / "
            "0.25)") in " ".join(out.split())


# -- worked by hand --------------------------------------------------------------------------------
def test_crop_cuts_the_centre_as_torchvision_rounds(grid):
    """4x6 cut to 2x4: top round(2/2) = 1, left round(2/2) = 1; to 1x5: top round(1.5) = 2, left round(0.5) = 0
    (Python's round, as torchvision's CenterCrop)."""
    image = kernel_input(grid, crop="2,4")
    np.testing.assert_array_equal(image.array, [[[11, 12, 13, 14], [21, 22, 23, 24]]])
    assert image.notes[-1] == "centre 4x2 cropped" and image.file_size == (6, 4)
    np.testing.assert_array_equal(kernel_input(grid, crop="1,5").array, [[[20, 21, 22, 23, 24]]])


def test_a_crop_larger_than_the_picture_pads_with_zeros(grid):
    """4x6 to 6x6: one zero row above and one below (floor half before), nothing cut."""
    image = kernel_input(grid, crop="6")
    expected = np.zeros((1, 6, 6))
    expected[0, 1:5] = 10 * np.arange(4)[:, None] + np.arange(6)
    np.testing.assert_array_equal(image.array, expected)
    assert image.notes[-1] == "zero-padded 6x4 -> 6x6 (smaller than the crop, as torchvision)"


def test_mean_and_std_apply_last_on_the_chosen_scale(grid):
    """(x - 10) / 4 on 0..255 values; on 0..1 values, (x / 255 - 0.1) / 0.5."""
    pixels = 10 * np.arange(4)[:, None] + np.arange(6)[None, :]
    raw = kernel_input(grid, mean="10", std="4")
    np.testing.assert_allclose(raw.array[0], (pixels - 10) / 4, rtol=0, atol=1e-6)
    assert raw.notes == ("normalised (x - 10) / 4",)
    unit = kernel_input(grid, scale="unit", mean="0.1", std="0.5")
    np.testing.assert_allclose(unit.array[0], (pixels / 255 - 0.1) / 0.5, rtol=0, atol=1e-6)
    assert unit.notes == ("values scaled to 0..1 (divided by 255)", "normalised (x - 0.1) / 0.5")


def test_per_channel_mean_and_std_on_rgb(tmp_path):
    """One mean and std per channel, R G B in order: a flat (30, 60, 90) picture becomes (0, 1, 2)."""
    Image.new("RGB", (3, 2), (30, 60, 90)).save(tmp_path / "flat.png")
    image = kernel_input(tmp_path / "flat.png", color="rgb", mean="30,50,70", std="1,10,10")
    np.testing.assert_allclose(image.array[:, 0, 0], [0, 1, 2], rtol=0, atol=1e-6)


def test_resize_alone_keeps_the_aspect_ratio_before_kernels():
    """A kernel run's --resize 64 on 192x128: 96x64, nothing cropped, the kernels then run on it."""
    image = kernel_input(CHELSEA, resize=64)
    assert image.array.shape == (1, 64, 96)
    assert image.notes[-1] == "resized 192x128 -> 96x64 (shorter side 64, bilinear, as torchvision)"


def test_crop_alone_on_a_model_cuts_instead_of_stretching(tmp_path):
    """digits with --crop 8 on a 12x10 picture: the centre 8x8 (top 1, left 2), not the whole picture stretched
    nor its ink fitted (a crop replaces the fit); told to invert, it inverts."""
    pixels = np.arange(120, dtype=np.uint8).reshape(10, 12)
    Image.fromarray(pixels).save(tmp_path / "p.png")
    got = api.load_model("digits", crop=8, invert="yes").prepare(str(tmp_path / "p.png")).array
    np.testing.assert_allclose(got[0], 1 - pixels[1:9, 2:10] / np.float32(255), rtol=0, atol=1e-6)  # it inverts


def test_a_model_file_says_the_same_with_crop(tmp_path, grid):
    """"crop": [2, 4] in a model file (size taken from it) is --crop 2,4 on the same model."""
    document = {"format": "cnn-model", "version": 2, "input": {"crop": [2, 4], "scale": "raw", "mean": 10},
                "layers": [{"type": "relu"}]}
    (tmp_path / "m.json").write_text(json.dumps(document))
    got = api.load_model(tmp_path / "m.json").prepare(str(grid)).array
    np.testing.assert_array_equal(got, [[[1, 2, 3, 4], [11, 12, 13, 14]]])


def test_a_batch_of_pictures_cropped_alike_stacks(tmp_path, grid, capsys):
    """Pictures of different sizes cropped to one size give one stacked .npy, checked ahead of the work."""
    Image.fromarray(np.full((7, 9), 200, np.uint8)).save(tmp_path / "big.png")
    code, _, err = run(capsys, "run", grid, tmp_path / "big.png", "-k", "identity", "--crop", "3",
                       "--activation", "none", "--pool", "none", "-o", tmp_path / "out.npy")
    assert code == 0, err
    assert np.load(tmp_path / "out.npy").shape == (2, 1, 1, 1)


# -- bad values ------------------------------------------------------------------------------------
@pytest.mark.parametrize("args, line", [
    (["-m", "digits", "--mean", "1,2"], "--mean: expected 1 number (the image is gray), got 2"),
    (["-m", "digits", "--std", "0.5,0.5"], "--std: expected 1 number (the image is gray), got 2"),
    (["-k", "sobel_x", "--color", "rgb", "--mean", "1,2"], "--mean: expected 1 or 3 numbers (one per channel), got 2"),
    (["-m", "digits", "--mean", "x"], "--mean: expected one number, or one per channel separated by commas, got 'x'"),
    (["-m", "digits", "--mean", "inf"], "--mean: expected finite numbers, got 'inf'"),
    (["-m", "digits", "--std", "0"], "--std: must be above 0, got 0; (x - mean) / std divides by it"),
    (["-k", "sobel_x", "--std", "1,-2,1"], "--std: must be above 0, got -2; (x - mean) / std divides by it"),
    (["-m", "digits", "--crop", "9"],
     "--crop: is 9,9 (H,W) but the model digits takes 8,8: its input size is fixed, so leave the crop out or give that"),
    (["-k", "sobel_x", "--crop", "0"],
     "--crop: expected H or H,W, whole numbers of pixels from 1 to 16,384, got '0'"),
    (["-k", "sobel_x", "--crop", "2,3,4"],
     "--crop: expected H or H,W, whole numbers of pixels from 1 to 16,384, got '2,3,4'"),
    (["-k", "sobel_x", "--resize", "32", "--crop", "48"],
     "--crop: is 48,48 (H,W), larger than the shorter side 32 of the resize; expected at most 32 on each side"),
    (["-m", "digits", "--resize", "4"], "--resize: is 4, shorter than the 8,8 (H,W) crop; expected at least 8"),
    (["-k", "sobel_x", "--resize", "0"],
     "--resize: expected a whole number of pixels from 1 to 16,384 (the shorter side's length), got 0"),
    (["-m", "digits", "--color", "rgb"], "--color: is rgb (3 channels), but the model digits takes 1 (gray); expected gray"),
    (["-m", "digits", "--preset", "imagenet"], "--preset: imagenet prepares (3, 224, 224) inputs, but the model digits "
                                               "takes (1, 8, 8)"),
])
def test_each_bad_value_is_one_usage_line(capsys, args, line):
    """A bad part of an input rule ends the run with one line naming the option and what was expected, exit 2."""
    code, out, err = run(capsys, "run", CHELSEA if "-k" in args else DIGIT_7, *args)
    assert (code, out, err) == (2, "", f"cnn: Invalid value for {line}\n")


def test_a_preset_whose_values_the_colour_does_not_fit(probe_model, tmp_path, capsys):
    """--preset imagenet --color gray on a gray 224 model: the preset's three means fit no gray image."""
    document = json.loads(probe_model.read_text())
    document["input"]["color"] = "gray"
    (tmp_path / "gray.json").write_text(json.dumps(document))
    code, _, err = run(capsys, "run", CHELSEA, "-m", tmp_path / "gray.json", "--preset", "imagenet", "--color", "gray")
    assert code == 2 and err.startswith("cnn: Invalid value for --color: gives 1 channel, but the mean of the rule")
    code, out, err = run(capsys, "run", CHELSEA, "-m", tmp_path / "gray.json", "--preset", "imagenet", "--color", "gray",
                         "--mean", "0.449", "--std", "0.226", "-f", "json", "--values", "none")
    assert code == 0, err
    assert json.loads(out)["image"]["notes"][-1] == "normalised (x - 0.449) / 0.226"


def test_the_parts_are_refused_for_a_tensor(tmp_path, capsys):
    """A .npy tensor is used as given: --mean (like --color) has nothing to prepare."""
    np.save(tmp_path / "x.npy", np.zeros((1, 8, 8), np.float32))
    code, _, err = run(capsys, "run", tmp_path / "x.npy", "-m", "digits", "--mean", "0.5")
    assert code == 2 and "--mean" in err and "tensor" in err


def test_the_api_names_the_argument():
    """load_model's UsageError names the keyword argument, as the CLI names the flag."""
    with pytest.raises(UsageError) as caught:
        api.load_model("digits", std=[1, 0])
    assert str(caught.value) == "std: must be above 0, got 0; (x - mean) / std divides by it"
    assert caught.value.param == "std"
    with pytest.raises(UsageError, match=r"^resize: expected a whole number"):
        api.load_model("digits", resize=True)


@pytest.mark.parametrize("value, message", [
    ({"size": [8, 8], "crop": [8, 6]}, "input.crop: is [8, 6] but size is [8, 8]"),
    ({"size": [8, 8], "resize": 6}, "input.resize: is 6, shorter than the [8, 8] crop; expected at least 8"),
    ({"crop": 0}, "input.crop: must be at least 1, got 0"),
])
def test_a_model_files_bad_crop_or_resize_names_the_field(tmp_path, capsys, value, message):
    document = {"format": "cnn-model", "version": 2, "input": value, "layers": [{"type": "relu"}]}
    path = tmp_path / "m.json"
    path.write_text(json.dumps(document))
    code, _, err = run(capsys, "summary", path)
    assert code == 1 and err.startswith(f"cnn: {path}: {message}") and err.count("\n") == 1


def test_check_takes_the_parts_too(capsys):
    """cnn check prepares its image with the same options (here a bundled model, exported in memory)."""
    pytest.importorskip("onnxruntime")
    code, out, err = run(capsys, "check", "digits", CHELSEA, "--crop", "8", "--std", "0.5", "-f", "json")
    assert code == 0, err
    assert json.loads(out)["failed"] == 0
    code, _, err = run(capsys, "check", "digits", CHELSEA, "--crop", "9")
    assert code == 2 and "--crop" in err


def test_an_input_that_is_not_an_object_is_one_line(tmp_path, capsys):
    """"input": 3.5 (found by the fuzz harness) is a field error, not an internal one."""
    path = tmp_path / "m.json"
    path.write_text(json.dumps({"format": "cnn-model", "version": 2, "input": 3.5, "layers": [{"type": "relu"}]}))
    code, _, err = run(capsys, "summary", path)
    assert (code, err) == (1, f"cnn: {path}: input: expected an object, got the number 3.5\n")


# -- fitting the ink, and --invert ---------------------------------------------------------------------
@pytest.mark.parametrize("value, message", [
    ({"size": [8, 8], "fit": "box"}, "input.fit: expected one of ink, got 'box'"),
    ({"size": [8, 8], "fit": "ink", "resize": 32}, "input.fit: is ink: it crops the picture to its ink, so leave out "
                                                   "resize"),
    ({"size": [8, 8], "fit": "ink", "crop": 8}, "input.fit: is ink: it crops the picture to its ink, so leave out "
                                                "crop"),
    ({"size": [8, 8], "fit": "ink", "color": "rgb"}, "input.fit: is ink, which finds ink in one gray channel, but "
                                                     "color is rgb; expected gray"),
    ({"size": [8, 8], "invert": "yes"}, "input.invert: expected true, false or \"auto\" (from the picture's border), "
                                        "got the string 'yes'"),
    ({"size": [8, 8], "invert": 1}, "input.invert: expected true, false or \"auto\" (from the picture's border), "
                                    "got the number 1"),
])
def test_a_model_files_bad_fit_or_invert_names_the_field(tmp_path, capsys, value, message):
    """One line naming the file, the field and what was expected; exit 1."""
    document = {"format": "cnn-model", "version": 2, "input": value, "layers": [{"type": "relu"}]}
    path = tmp_path / "m.json"
    path.write_text(json.dumps(document))
    code, _, err = run(capsys, "summary", path)
    assert code == 1 and err == f"cnn: {path}: {message}\n"


def test_a_rule_that_fits_ink_finds_it_by_itself_unless_told(tmp_path):
    """"fit": "ink" alone means invert "auto"; "invert": true finds dark ink only; the record says both."""
    document = {"format": "cnn-model", "version": 2, "input": {"size": [4, 4], "fit": "ink"},
                "layers": [{"type": "relu"}]}
    (tmp_path / "auto.json").write_text(json.dumps(document))
    document["input"]["invert"] = True
    (tmp_path / "dark.json").write_text(json.dumps(document))
    assert api.load_model(tmp_path / "auto.json").file.input.invert == "auto"
    assert api.load_model(tmp_path / "dark.json").file.input.invert is True
    assert api.load_model(tmp_path / "auto.json", invert="no").file.input.invert is False


@pytest.mark.parametrize("invert, expected", [("auto", 1), ("yes", 1), ("no", 0)])
def test_invert_on_a_kernel_run(grid, tmp_path, invert, expected):
    """--invert on a kernel run (raw 0..255): yes is 255 - x; auto inverts a picture whose border is light
    (a white page with one black pixel); no leaves it. The identity kernel shows the picture it got."""
    pixels = np.full((5, 5), 255, np.uint8)
    pixels[2, 2] = 0
    Image.fromarray(pixels).save(tmp_path / "dot.png")
    image = kernel_input(tmp_path / "dot.png", invert=invert)
    want = 255 - pixels.astype(np.float32) if expected else pixels.astype(np.float32)
    np.testing.assert_array_equal(image.array[0], want)
    if invert == "auto":
        assert "dark ink on light paper, from the border" in image.notes


def test_invert_auto_leaves_a_dark_page_alone(tmp_path):
    """A black page with one white pixel: its border is dark, so auto does not invert it."""
    pixels = np.zeros((5, 5), np.uint8)
    pixels[2, 2] = 255
    Image.fromarray(pixels).save(tmp_path / "dot.png")
    image = kernel_input(tmp_path / "dot.png", invert="auto")
    np.testing.assert_array_equal(image.array[0], pixels.astype(np.float32))
    assert "light ink on dark paper, from the border" in image.notes


def test_a_bad_invert_is_one_usage_line(capsys):
    """--invert takes yes, no or auto (Click says so, exit 2); load_model(invert=) names the argument."""
    code, out, err = run(capsys, "run", DIGIT_7, "-m", "digits", "--invert", "maybe")
    assert code == 2 and out == "" and "--invert" in err and "maybe" in err
    with pytest.raises(UsageError, match=r"^invert: is 'maybe'; expected yes, no or auto"):
        api.load_model("digits", invert="maybe")


def test_invert_is_refused_for_a_tensor(tmp_path, capsys):
    """A .npy tensor is used as given: --invert has nothing to prepare either."""
    np.save(tmp_path / "x.npy", np.zeros((1, 8, 8), np.float32))
    code, _, err = run(capsys, "run", tmp_path / "x.npy", "-m", "digits", "--invert", "yes")
    assert code == 2 and "--invert" in err and "tensor" in err


def test_a_resize_or_a_crop_replaces_the_fit():
    """digits with --resize 8 or --crop 8 prepares the picture as those say, not by its ink; --invert alone
    keeps the fit."""
    assert api.load_model("digits", resize=8).file.input.fit is None
    assert api.load_model("digits", crop=8).file.input.fit is None
    assert api.load_model("digits", invert="yes").file.input.fit == "ink"
