"""Model files: building and checking networks, the bundled digits model, input preparation.

References: hand-worked numbers for a tiny inline model; PyTorch's own logits, stored beside the
held-out digits by training/train_digits.py when it trained the model (tests/data); Pillow for
resizing.
"""

import dataclasses
import json

import numpy as np
import pytest
from conftest import ROOT, assert_array
from PIL import Image

from cnncli.engine import ops
from cnncli.errors import CnnError, ShapeError, SpecError
from cnncli.io.images import LoadedImage, read_image
from cnncli.engine.layers import Softmax
from cnncli.io.modelfile import load_model, parse_model
from cnncli.engine.predictions import top_k

HELD_OUT = np.load(ROOT / "tests" / "data" / "digits_heldout.npz", allow_pickle=False)


def write_model(folder, layers, weights=None, **top):
    """A model file (and a .npz of ``weights`` if given) in ``folder``; returns its path as a string."""
    document = {"format": "cnn-model", "version": 1, "name": "tiny", "input": {"size": [4, 4]}, "layers": layers}
    if weights is not None:
        np.savez(folder / "tiny.npz", **weights)
        document["weights"] = "tiny.npz"
    document.update(top)
    path = folder / "tiny.json"
    path.write_text(json.dumps(document))
    return str(path)


def error_of(path):
    with pytest.raises(CnnError) as caught:
        load_model(path)
    return str(caught.value)


def test_inline_model_worked_by_hand(tmp_path):
    """A 2x2 conv, ReLU, flatten and a dense layer on a 3x3 input, computed by hand: the conv
    [[1,0],[0,-1]] with bias 1 on [[1,2,3],[4,5,6],[7,8,9]] gives x[i][j] - x[i+1][j+1] + 1 = -4 + 1
    = -3 in every window; ReLU makes them 0, so the dense layer gives its bias, 0.5 and 2."""
    layers = [
        {"name": "c", "type": "conv2d", "out_channels": 1, "kernel_size": 2,
         "weight": [[[[1, 0], [0, -1]]]], "bias": [1]},
        {"type": "relu"},
        {"type": "flatten"},
        {"name": "d", "type": "linear", "out_features": 2, "weight": [[1, 1, 1, 1], [0, 0, 0, -1]], "bias": [0.5, 2]},
    ]
    path = write_model(tmp_path, layers, input={"size": [3, 3], "scale": "raw"})
    model = load_model(path)
    x = np.arange(1, 10, dtype=np.float32).reshape(1, 3, 3)
    steps = model.network.forward(x)
    assert_array(steps[1].output, np.full((1, 2, 2), -3.0), rtol=0, atol=0)
    assert_array(steps[2].output, np.zeros((1, 2, 2)), rtol=0, atol=0)
    assert_array(steps[-1].output, [0.5, 2.0], rtol=0, atol=0)
    # Flip the conv's sign and the maps become 3 (= 4 - 1): dense gives 12.5 and -1.
    layers[0]["weight"], layers[0]["bias"] = [[[[-1, 0], [0, 1]]]], [-1]
    steps = load_model(write_model(tmp_path, layers, input={"size": [3, 3]})).network.forward(x)
    assert_array(steps[-1].output, [12.5, -1.0], rtol=0, atol=0)


def test_unnamed_layers_are_named_by_type_and_count_as_the_kernel_stages_are(tmp_path):
    """Layers without a name get their type without "2d", numbered from 1 among layers of that type
    (written out by hand here): conv1, relu1, maxpool1, conv2, ...; a number a given name takes is
    skipped, relu6 reads relu6_1, and the weights file is keyed by the made names."""
    conv = {"type": "conv2d", "out_channels": 1, "kernel_size": 1}
    layers = [conv, {"type": "relu"}, {"type": "maxpool2d", "kernel_size": 2}, conv, {"type": "relu6"},
              {"type": "globalavgpool2d"}, {"name": "relu2", "type": "relu"}, {"type": "relu"}, {"type": "flatten"},
              {"type": "linear", "out_features": 2}, {"type": "softmax"}]
    weights = {"conv1.weight": np.ones((1, 1, 1, 1)), "conv1.bias": np.zeros(1), "conv2.weight": np.ones((1, 1, 1, 1)),
               "conv2.bias": np.zeros(1), "dense1.weight": np.ones((2, 1)), "dense1.bias": np.zeros(2)}
    model = load_model(write_model(tmp_path, layers, weights))
    assert [layer.name for layer in model.network.layers] == [
        "conv1", "relu1", "maxpool1", "conv2", "relu6_1", "globalavgpool1", "relu2", "relu3", "flatten1", "dense1",
        "softmax1"]


def test_digits_has_the_layers_and_counts_of_its_weights():
    """13,802 parameters: the npz's arrays without BatchNorm's running statistics and counter."""
    model = load_model("digits")
    arrays = np.load(ROOT / "cnncli" / "models" / "digits.npz", allow_pickle=False)
    learned = sum(arrays[k].size for k in arrays.files if not k.endswith(("running_mean", "running_var", "tracked")))
    assert model.params == learned == 13_802
    assert model.labels == tuple("0123456789") and model.input.size == (8, 8) and model.input.invert
    rows = model.network.table(model.input.shape)
    assert [row["shape"] for row in rows][:5] == [(16, 8, 8)] * 3 + [(16, 4, 4), (32, 4, 4)]
    assert rows[0]["macs"] == 16 * 8 * 8 * 9  # every output cell of conv1: 1 channel x 3 x 3


def _digits_logits(model, inputs):
    body = [layer for layer in model.network.layers if not isinstance(layer, Softmax)]
    x = inputs
    for layer in body:
        x = layer.forward(x, batched=True)
    return x


def test_digits_logits_equal_pytorchs_on_the_same_weights():
    """Reference: PyTorch's eval-mode logits on the held-out inputs, saved at training time. To 1e-5
    relative to each image's largest logit; this proves the conversion, flatten order included."""
    model = load_model("digits")
    logits = _digits_logits(model, HELD_OUT["inputs"])
    expected = HELD_OUT["logits"]
    scale = np.abs(expected).max(axis=1, keepdims=True)
    assert np.all(np.abs(logits - expected) <= 1e-5 * scale)


def test_digits_held_out_accuracy_from_the_pixels():
    """At least 97% on the held-out digits, from their 8-bit pixels through the model's own input rule."""
    model = load_model("digits")
    unit = HELD_OUT["pixels"].astype(np.float32)[:, None] / np.float32(255)  # as read_image's unit scale
    x = np.stack([model.input.apply(LoadedImage(image, "held-out", "PNG", "L", ("gray",), ())).array
                  for image in unit])
    probabilities = model.network.predict(x)
    accuracy = float(np.mean(probabilities.argmax(axis=1) == HELD_OUT["labels"]))
    assert len(HELD_OUT["labels"]) >= 300 and accuracy >= 0.97


def test_batch_predict_equals_one_image_at_a_time():
    model = load_model("digits")
    batch = HELD_OUT["inputs"][:20]
    together = model.network.predict(batch)
    for i in range(20):
        assert_array(together[i], model.network.forward(batch[i])[-1].output, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("digit", range(10))
def test_sample_digits_are_recognised_through_the_whole_input_path(digit):
    """sample_images/digit_N.png -> read, invert -> the model says N."""
    model = load_model("digits")
    image = model.input.apply(read_image(str(ROOT / "sample_images" / f"digit_{digit}.png"), color="gray",
                                         scale="unit"))
    assert image.array.shape == (1, 8, 8)
    best = top_k(model.network.forward(image.array)[-1].output, model.labels, 1, True)[0]
    assert best.label == str(digit)


def test_a_bigger_image_is_resized_by_area_average(tmp_path):
    """A digit drawn 4x bigger (each pixel a 4x4 block) fits as the 8x8 digit does: its ink box, centre of
    mass and areas all scale by 4. Without the fit (the stretching rule, inverting) it averages back to
    exactly the 8x8 digit, inverted, and a picture of another shape is said to be stretched."""
    model = load_model("digits")
    small = np.asarray(Image.open(ROOT / "sample_images" / "digit_3.png"))
    path = tmp_path / "big.png"
    Image.fromarray(np.kron(small, np.ones((4, 4), dtype=np.uint8))).save(path)
    big = model.input.apply(read_image(str(path), scale="unit"))
    direct = model.input.apply(read_image(str(ROOT / "sample_images" / "digit_3.png"), scale="unit"))
    assert_array(big.array, direct.array, rtol=0, atol=1e-6)
    assert "ink box 20x32 at (8, 0)" in big.notes and "ink box 5x8 at (2, 0)" in direct.notes
    stretch = dataclasses.replace(model.input, fit=None, invert=True)
    stretched = stretch.apply(read_image(str(path), scale="unit"))
    assert_array(stretched.array[0], 1 - small / np.float32(255), rtol=0, atol=1e-6)
    assert "resized 32x32 -> 8x8 (area average)" in stretched.notes and "inverted (1 - x)" in stretched.notes
    Image.fromarray(np.zeros((10, 20), dtype=np.uint8)).save(path)
    assert any("aspect ratio not kept" in note for note in stretch.apply(read_image(str(path), scale="unit")).notes)


def test_normalisation_is_per_channel(tmp_path):
    document = {"format": "cnn-model", "version": 1,
                "input": {"size": [2, 2], "color": "rgb", "scale": "raw", "mean": [10, 20, 30], "std": [1, 2, 5]},
                "layers": [{"type": "flatten"}]}
    model = parse_model(document, "m.json", tmp_path)
    path = tmp_path / "rgb.png"
    Image.fromarray(np.full((2, 2, 3), (20, 40, 80), dtype=np.uint8)).save(path)
    image = model.input.apply(read_image(str(path), color="rgb", scale="raw"))
    assert_array(image.array[:, 0, 0], [10, 10, 10], rtol=0, atol=1e-6)


def test_pytorch_state_dict_names_and_batchnorm(tmp_path):
    """BatchNorm in eval mode from state_dict arrays; num_batches_tracked is accepted and unused.
    Reference: the formula (x - mean) / sqrt(var + eps) * w + b, written out here."""
    rng = np.random.default_rng(1)
    weights = {"features.0.weight": rng.standard_normal((3, 1, 3, 3)).astype(np.float32),
               "features.0.bias": rng.standard_normal(3).astype(np.float32),
               "features.1.weight": rng.standard_normal(3).astype(np.float32),
               "features.1.bias": rng.standard_normal(3).astype(np.float32),
               "features.1.running_mean": rng.standard_normal(3).astype(np.float32),
               "features.1.running_var": rng.uniform(0.5, 2, 3).astype(np.float32),
               "features.1.num_batches_tracked": np.array(7)}
    layers = [{"name": "features.0", "type": "conv2d", "out_channels": 3, "kernel_size": 3, "padding": "same"},
              {"name": "features.1", "type": "batchnorm2d", "eps": 1e-3}]
    model = load_model(write_model(tmp_path, layers, weights))
    x = rng.standard_normal((1, 4, 4)).astype(np.float32)
    conv = ops.conv2d(x.astype(np.float64), weights["features.0.weight"], weights["features.0.bias"], padding="same")
    w, b, m, v = (weights[f"features.1.{k}"].astype(np.float64)[:, None, None]
                  for k in ("weight", "bias", "running_mean", "running_var"))
    assert_array(model.network.forward(x)[-1].output, (conv - m) / np.sqrt(v + 1e-3) * w + b, rtol=1e-5, atol=1e-5)


# --- Errors: each names the file, the layer or JSON path, and what was expected ------------------


def test_missing_and_extra_and_misshapen_arrays(tmp_path):
    layers = [{"name": "conv1", "type": "conv2d", "out_channels": 2, "kernel_size": 3}]
    good = {"conv1.weight": np.zeros((2, 1, 3, 3), np.float32), "conv1.bias": np.zeros(2, np.float32)}
    message = error_of(write_model(tmp_path, layers, {"conv1.weight": good["conv1.weight"]}))
    assert "tiny.npz" in message and "'conv1.bias'" in message and "(2,)" in message
    message = error_of(write_model(tmp_path, layers, {**good, "conv9.weight": np.zeros(1)}))
    assert "no layer uses: conv9.weight" in message
    message = error_of(write_model(tmp_path, layers, {**good, "conv1.weight": np.zeros((2, 3, 3, 3), np.float32)}))
    assert "conv1.weight" in message and "(2, 3, 3, 3)" in message and "(2, 1, 3, 3)" in message
    message = error_of(write_model(tmp_path, layers, {**good, "conv1.bias": np.array([np.nan, 0], np.float32)}))
    assert "conv1.bias" in message and "NaN" in message


def test_pickled_weights_are_never_loaded(tmp_path):
    layers = [{"name": "conv1", "type": "conv2d", "out_channels": 1, "kernel_size": 1, "bias": False}]
    path = write_model(tmp_path, layers, {"conv1.weight": np.array([[[[1.0]]]])})
    np.savez(tmp_path / "tiny.npz", **{"conv1.weight": np.array([object()], dtype=object)})
    assert "Python objects" in error_of(path)


@pytest.mark.parametrize("layers, words", [
    ([{"type": "conv2d", "out_channels": 1, "kernel_size": 3, "strid": 2}], ["layers[0].strid", "did you mean 'stride'"]),
    ([{"type": "relu"}, {"type": "maxpool2d", "kernel_size": 2, "stride": 0}], ["layers[1].stride", "at least 1"]),
    ([{"type": "conv"}], ["layers[0].type", "conv2d"]),
    ([{"type": "dense", "out_features": 3}], ["layer dense1 (layers[0])", "flatten"]),
    ([{"type": "conv2d", "out_channels": 1, "kernel_size": 9}], ["layers[0]", "kernel reaches 9x9", "4x4"]),
    ([{"type": "maxpool2d", "kernel_size": 2}] * 3, ["layers[2]", "(input (1, 1, 1))"]),
    ([{"type": "batchnorm2d", "num_features": 3}], ["layers[0].num_features", "gives 1"]),
    ([{"type": "dropout", "p": 1.5}], ["layers[0].p", "between 0 and 1"]),
    ([{"type": "batchnorm2d", "affine": False, "weight": [1], "running_mean": [0], "running_var": [1]}],
     ["layers[0].weight", "affine is false"]),
    ([{"type": "batchnorm2d", "affine": False, "running_mean": [0], "running_var": [-1]}],
     ["layers[0].running_var", "at least 0"]),
    ([{"type": "relu", "name": "a"}, {"type": "relu", "name": "a"}], ["layers[1].name", "unique"]),
    ([], ["layers", "expected a list of layers"]),
    ([{"type": "conv2d", "kernel_size": 3}], ["layers[0]", "missing key 'out_channels'"]),
    ([{"type": "flatten"}, {"type": "dense"}], ["layers[1]", "missing key 'out_features'"]),
    ([{"type": "avgpool2d"}], ["layers[0]", "missing key 'kernel_size'"]),
    ([{"name": "x"}], ["layers[0]", "missing key 'type'"]),
])
def test_bad_layers_name_the_json_path(tmp_path, layers, words):
    message = error_of(write_model(tmp_path, layers))
    assert message.startswith(str(tmp_path / "tiny.json"))
    for word in words:
        assert word in message, message


def test_missing_weights_without_a_file_say_how_to_give_them(tmp_path):
    message = error_of(write_model(tmp_path, [{"name": "c", "type": "conv2d", "out_channels": 1, "kernel_size": 1}]))
    assert "layers[0]" in message and "inline" in message


@pytest.mark.parametrize("top, words", [
    ({"format": "keras"}, ["format", "cnn-model"]),
    ({"version": 3}, ["version", "reads versions 1 to 2"]),
    ({"input": {"size": [4, 4], "std": [0]}}, ["input.std[0]", "above 0"]),
    ({"input": {"size": [4, 4], "mean": [1, 2]}}, ["input.mean", "expected 1 value, got 2"]),
    ({"input": {"size": [4, 4], "color": "rgb", "std": [1, 2]}}, ["input.std", "1 or 3 values (one per channel)"]),
    ({"labels": ["a"] * 16}, ["labels[1]", "'a' is also labels[0]"]),
    ({"input": {"sise": [4, 4]}}, ["input.sise", "did you mean 'size'"]),
    ({"labels": ["a", "b"]}, ["labels", "2 names", "(16,)"]),
    ({"metadata": [1]}, ["metadata", "object"]),
])
def test_bad_top_level_fields(tmp_path, top, words):
    message = error_of(write_model(tmp_path, [{"type": "flatten"}], **top))
    for word in words:
        assert word in message, message


def test_a_missing_weights_file_is_named_with_the_key_that_asks_for_it(tmp_path):
    path = tmp_path / "m.json"
    path.write_text(json.dumps({"format": "cnn-model", "version": 1, "input": {"size": [2, 2]}, "weights": "gone.npz",
                                "layers": [{"type": "flatten"}]}))
    assert error_of(str(path)) == f"{path}: weights: {tmp_path / 'gone.npz'}: no such file"


def test_unknown_bundled_name_suggests_the_closest():
    with pytest.raises(SpecError, match="did you mean digits"):
        load_model("digit")


def test_shape_errors_are_shape_errors(tmp_path):
    with pytest.raises(ShapeError):
        load_model(write_model(tmp_path, [{"type": "conv2d", "out_channels": 1, "kernel_size": 9,
                                           "weight": np.zeros((1, 1, 9, 9)).tolist()}]))


def test_top_k_orders_and_uses_softmax_for_logits():
    predictions = top_k(np.array([1.0, 3.0, 2.0]), ["a", "b", "c"], 2, is_probability=False)
    assert [p.label for p in predictions] == ["b", "c"]
    e = np.exp([1.0, 3.0, 2.0])
    assert predictions[0].probability == pytest.approx(e[1] / e.sum(), rel=1e-12)
    assert predictions[0].score == 3.0
    assert [p.label for p in top_k(np.array([0.2, 0.5, 0.3]), [], 5, True)] == ["1", "2", "0"]
