"""Tests for cnncli.io.kernels and cnncli.io.jsonspec: the library, kernel files, filter banks and strict JSON.

Cross-correlation is checked against scipy.signal.correlate2d, an independent reference.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from numpy.testing import assert_allclose, assert_array_equal
from scipy.signal import correlate2d

from cnncli.io import jsonspec
from cnncli.errors import ShapeError, SpecError
from cnncli.io.kernels import (
    LIBRARY,
    Kernel,
    build_filter_bank,
    load_kernel_file,
    merged_settings,
    parse_kernel,
    resolve_kernel,
)

KERNEL_DIR = Path(__file__).resolve().parents[1] / "kernels"
GRADIENTS = ["sobel_x", "sobel_y", "prewitt_x", "prewitt_y", "scharr_x", "scharr_y", "vertical_edge", "horizontal_edge"]
LAPLACIANS = ["laplacian_4", "laplacian_8"]
BLURS = ["box_blur", "gaussian_3x3", "gaussian_5x5"]
SOBEL_X = [[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]]


def write(tmp_path: Path, name: str, text: str | bytes) -> Path:
    """Write a kernel file into tmp_path and return its path."""
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def kernel_from(tmp_path: Path, name: str, document) -> Kernel:
    """Write ``document`` as JSON to tmp_path/name and load it as a kernel file."""
    return load_kernel_file(write(tmp_path, name, json.dumps(document)))


# --- the library and its files ------------------------------------------------------------------


def test_kernel_folder_holds_exactly_the_library():
    """kernels/ has one JSON file per built-in kernel and nothing else."""
    assert sorted(p.stem for p in KERNEL_DIR.glob("*.json")) == sorted(LIBRARY)


@pytest.mark.parametrize("path", sorted(KERNEL_DIR.glob("*.json")), ids=lambda p: p.stem)
def test_kernel_file_equals_the_builtin(path):
    """Each file in kernels/ parses to the built-in kernel of the same name: weights, divisor, description."""
    loaded = load_kernel_file(path)
    builtin = LIBRARY[path.stem]
    assert loaded.name == builtin.name
    assert loaded.raw.shape == builtin.raw.shape
    assert_array_equal(loaded.raw, builtin.raw)
    assert loaded.divisor == builtin.divisor
    assert loaded.description == builtin.description
    assert loaded.bias is None and dict(loaded.settings) == {}
    assert loaded.source == str(path)


@pytest.mark.parametrize("name", sorted(LIBRARY))
def test_builtin_to_json_parses_back_unchanged(name):
    """Kernel.to_json gives a document that parse_kernel turns back into the same kernel."""
    builtin = LIBRARY[name]
    again = parse_kernel(json.loads(jsonspec.dumps(builtin.to_json())), "export.json")
    assert (again.name, again.divisor, again.description) == (builtin.name, builtin.divisor, builtin.description)
    assert_array_equal(again.raw, builtin.raw)


@pytest.mark.parametrize("name", GRADIENTS + LAPLACIANS)
def test_gradients_and_laplacians_sum_to_zero(name):
    """Gradient and Laplacian kernels sum to 0, so a flat image gives 0."""
    assert LIBRARY[name].weights.sum() == 0


@pytest.mark.parametrize("name", BLURS)
def test_blurs_sum_to_one_after_the_divisor(name):
    """Blur kernels sum to 1 after the divisor, so a flat image keeps its value."""
    kernel = LIBRARY[name]
    assert kernel.divisor != 1
    assert kernel.weights.sum() == pytest.approx(1.0, abs=1e-12)


def test_identity_leaves_an_image_unchanged():
    """identity applied by cross-correlation (scipy correlate2d, mode 'same') returns the image."""
    image = np.random.default_rng(0).normal(size=(9, 11))
    out = correlate2d(image, LIBRARY["identity"].weights, mode="same")
    assert out.shape == image.shape
    assert_allclose(out, image, rtol=0, atol=1e-12)


def step(axis: int) -> np.ndarray:
    """An 8x8 image, 0 on the left (top for axis 0) half and 10 on the other half."""
    image = np.zeros((8, 8))
    if axis == 1:
        image[:, 4:] = 10
    else:
        image[4:, :] = 10
    return image


@pytest.mark.parametrize(
    ("name", "axis", "sign"),
    [("sobel_x", 1, 1), ("prewitt_x", 1, 1), ("scharr_x", 1, 1), ("vertical_edge", 1, -1),
     ("sobel_y", 0, 1), ("prewitt_y", 0, 1), ("scharr_y", 0, 1), ("horizontal_edge", 0, -1)],
)
def test_documented_signs_on_a_step(name, axis, sign):
    """On a dark-to-bright step, *_x/*_y respond positively and vertical/horizontal_edge negatively."""
    out = correlate2d(step(axis), LIBRARY[name].weights, mode="valid")  # 6, 6
    assert out.shape == (6, 6)
    assert np.all(sign * out >= 0)
    assert (sign * out).max() > 0
    flat = correlate2d(np.full((5, 5), 7.0), LIBRARY[name].weights, mode="valid")
    assert_allclose(flat, 0, atol=1e-12)


def test_sobel_x_hand_value_on_the_step():
    """sobel_x at the step column gives 4 * 10 = 40, as worked by hand."""
    out = correlate2d(step(1), LIBRARY["sobel_x"].weights, mode="valid")  # 6, 6
    assert_array_equal(out[0], [0, 0, 40, 40, 0, 0])


# --- parse_kernel: what it accepts --------------------------------------------------------------


def test_bare_2d_list():
    """A bare 2-D list is a kernel with defaults: divisor 1, no bias, no settings."""
    kernel = parse_kernel(SOBEL_X, "k.json", default_name="mine")
    assert kernel.name == "mine" and kernel.source == "k.json"
    assert kernel.raw.shape == (3, 3) and kernel.raw.dtype == np.float64
    assert_array_equal(kernel.weights, SOBEL_X)
    assert kernel.divisor == 1 and kernel.bias is None and dict(kernel.settings) == {}
    assert kernel.planar and kernel.filters == 1 and tuple(kernel.size) == (3, 3)


def test_object_with_3d_weights_is_a_bank():
    """weights (F, KH, KW) is a bank of F planar kernels."""
    kernel = parse_kernel({"name": "pair", "weights": [SOBEL_X, np.eye(3).tolist()]}, "k.json")
    assert kernel.raw.shape == (2, 3, 3) and kernel.planar and kernel.filters == 2


def test_object_with_4d_weights_mixes_channels():
    """weights (F, C, KH, KW) is a full conv weight, not planar."""
    weights = np.arange(2 * 3 * 2 * 2).reshape(2, 3, 2, 2).tolist()
    kernel = parse_kernel({"weights": weights}, "k.json")
    assert kernel.raw.shape == (2, 3, 2, 2) and not kernel.planar and kernel.filters == 2


def test_divisor_divides_every_weight():
    """divisor divides the weights; raw keeps them as written."""
    kernel = parse_kernel({"weights": [[1, 2, 1], [2, 4, 2], [1, 2, 1]], "divisor": 16}, "k.json")
    assert kernel.divisor == 16
    assert_array_equal(kernel.raw[1], [2, 4, 2])
    assert_allclose(kernel.weights.sum(), 1.0, rtol=0, atol=1e-12)


def test_scalar_bias_broadcasts_to_every_filter():
    """A scalar bias gives one equal bias per filter."""
    kernel = parse_kernel({"weights": [SOBEL_X, SOBEL_X, SOBEL_X], "bias": 0.5}, "k.json")
    assert_array_equal(kernel.bias, [0.5, 0.5, 0.5])
    assert_array_equal(parse_kernel({"weights": SOBEL_X, "bias": -1}, "k.json").bias, [-1.0])


def test_list_bias_one_per_filter():
    """A list bias gives each filter its own bias."""
    kernel = parse_kernel({"weights": [SOBEL_X, SOBEL_X], "bias": [1, -2.5]}, "k.json")
    assert_array_equal(kernel.bias, [1.0, -2.5])


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ({"stride": 2}, {"stride": [2, 2]}),
        ({"stride": [1, 3]}, {"stride": [1, 3]}),
        ({"dilation": 2}, {"dilation": [2, 2]}),
        ({"dilation": [2, 1]}, {"dilation": [2, 1]}),
        ({"padding": "valid"}, {"padding": "valid"}),
        ({"padding": "same"}, {"padding": "same"}),
        ({"padding": "full"}, {"padding": "full"}),
        ({"padding": 0}, {"padding": 0}),
        ({"padding": 1}, {"padding": 1}),
        ({"padding": [1, 2]}, {"padding": [1, 2]}),
        ({"padding": [0, 1, 2, 3]}, {"padding": [0, 1, 2, 3]}),
        ({"padding_mode": "reflect"}, {"padding_mode": "reflect"}),
        ({"flip": True}, {"flip": True}),
        ({"stride": 2, "padding": "same", "padding_mode": "circular", "dilation": 1, "flip": False},
         {"stride": [2, 2], "padding": "same", "padding_mode": "circular", "dilation": [1, 1], "flip": False}),
    ],
)
def test_settings_are_read_in_one_form(given, expected):
    """Conv settings in a kernel file are read; stride and dilation integers become [rows, cols] pairs."""
    assert dict(parse_kernel({"weights": SOBEL_X, **given}, "k.json").settings) == expected


# --- parse and load errors ----------------------------------------------------------------------

NESTED_100 = "[" * 100 + "1" + "]" * 100
BAD_FILES = [
    # (id, file text, fragments the message must contain besides the file's path)
    ("invalid-json", '{"weights": [[1, 2], [3, 4]],}', ["invalid JSON", "line 1", "column 30"]),
    ("nan", '{"weights": [[1, NaN]]}', ["weights[0][1]", "NaN", "finite number"]),
    ("infinity", '{"weights": [[1, Infinity]]}', ["weights[0][1]", "Infinity", "finite number"]),
    ("minus-infinity", '{"weights": [[1, -Infinity]]}', ["weights[0][1]", "-Infinity", "finite number"]),
    ("1e400", '{"weights": [[1, 1e400]]}', ["weights[0][1]", "1e400", "finite number"]),
    ("10**400", '{"weights": [[1, ' + str(10**400) + "]]}", ["weights[0][1]", "too large", "finite number"]),
    ("5000-digits", '{"weights": [[1, ' + "9" * 5000 + "]]}", ["digits", "expected a number"]),
    ("nested-100", NESTED_100, ["nested deeper than 32 levels"]),
    ("duplicate-key", '{"weights": [[1]], "weights": [[2]]}', ["'weights'", "appears twice"]),
    ("unknown-key", '{"weights": [[1]], "strid": 2}', ["strid: unknown key", "did you mean 'stride'"]),
    ("string", '{"weights": [[1, 2, 3], [4, 5, "6"]]}', ["weights[1][2]", "expected a number", "string '6'"]),
    ("boolean", '{"weights": [[1, 2, 3], [4, 5, true]]}', ["weights[1][2]", "expected a number", "true"]),
    ("null", '{"weights": [[1, 2, 3], [4, 5, null]]}', ["weights[1][2]", "expected a number", "null"]),
    ("ragged", '{"weights": [[1, 2, 3], [4, 5]]}', ["weights[1]", "shape [2]", "weights[0] has [3]"]),
    ("empty-list", "[]", ["weights", "2-D or 3-D or 4-D", "shape (0,)"]),
    ("empty-row", '{"weights": [[]]}', ["weights", "is empty", "(1, 0)"]),
    ("1-d", '{"weights": [1, 2, 3]}', ["weights", "2-D or 3-D or 4-D", "got 1-D"]),
    ("5-d", '{"weights": [[[[[1]]]]]}', ["weights", "got 5-D", "(1, 1, 1, 1, 1)"]),
    ("missing-weights", '{"name": "x"}', ["missing key 'weights'"]),
    ("not-an-object", "7", ["expected an object", "number 7"]),
    ("divisor-0", '{"weights": [[1]], "divisor": 0}', ["divisor", "must not be 0"]),
    ("divisor-string", '{"weights": [[1]], "divisor": "9"}', ["divisor", "expected a number"]),
    ("bias-length", '{"weights": [[[1]], [[2]]], "bias": [1, 2, 3]}', ["bias", "3 values", "one per filter (2)"]),
    ("padding-mode", '{"weights": [[1]], "padding_mode": "mirror"}',
     ["padding_mode", "expected one of zeros, reflect, replicate, circular", "'mirror'"]),
    ("padding-word", '{"weights": [[1]], "padding": "middle"}', ["padding", "expected one of valid, same, full"]),
    ("padding-negative", '{"weights": [[1]], "padding": -1}', ["padding", "at least 0"]),
    ("stride-0", '{"weights": [[1]], "stride": 0}', ["stride", "at least 1, got 0"]),
    ("stride-pair-0", '{"weights": [[1]], "stride": [1, 0]}', ["stride[1]", "at least 1, got 0"]),
    ("stride-float", '{"weights": [[1]], "stride": 1.5}', ["stride", "whole number"]),
    ("dilation-3-values", '{"weights": [[1]], "dilation": [1, 2, 3]}', ["dilation", "[rows, cols]", "3 values"]),
    ("flip-number", '{"weights": [[1]], "flip": 1}', ["flip", "true or false"]),
    ("name-number", '{"weights": [[1]], "name": 5}', ["name", "expected a string"]),
]


@pytest.mark.parametrize(("text", "fragments"), [case[1:] for case in BAD_FILES], ids=[c[0] for c in BAD_FILES])
def test_bad_kernel_file_is_a_spec_error(tmp_path, text, fragments):
    """A malformed kernel file raises SpecError naming the file, the field and what was expected."""
    path = write(tmp_path, "bad.json", text)
    with pytest.raises(SpecError) as caught:
        load_kernel_file(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: ")
    for fragment in fragments:
        assert fragment in message


def test_not_utf8_is_a_spec_error(tmp_path):
    """A kernel file that is not UTF-8 raises SpecError naming the file and the byte."""
    path = write(tmp_path, "latin1.json", '{"name": "café", "weights": [[1]]}'.encode("latin-1"))
    with pytest.raises(SpecError, match="not UTF-8 text") as caught:
        load_kernel_file(path)
    assert str(path) in str(caught.value) and "byte 13" in str(caught.value)


def test_utf8_bom_is_accepted(tmp_path):
    """A UTF-8 file that starts with a byte-order mark still parses."""
    path = write(tmp_path, "bom.json", b"\xef\xbb\xbf" + json.dumps({"weights": SOBEL_X}).encode())
    assert_array_equal(load_kernel_file(path).raw, SOBEL_X)


def test_missing_kernel_file(tmp_path):
    """A missing kernel file raises SpecError "no such file" naming it."""
    path = tmp_path / "absent.json"
    with pytest.raises(SpecError, match="no such file") as caught:
        load_kernel_file(path)
    assert str(path) in str(caught.value)


def test_folder_as_kernel_file(tmp_path):
    """A folder given as a kernel file raises SpecError saying it is a folder."""
    with pytest.raises(SpecError, match="is a folder") as caught:
        load_kernel_file(tmp_path)
    assert str(tmp_path) in str(caught.value)


def test_default_name_is_the_file_stem(tmp_path):
    """A kernel file without a name takes the file's stem as its name."""
    assert load_kernel_file(write(tmp_path, "my_edge.json", json.dumps(SOBEL_X))).name == "my_edge"


# --- resolve_kernel -----------------------------------------------------------------------------


def test_resolve_builtin_name():
    """A built-in name resolves to the library kernel itself."""
    assert resolve_kernel("sobel_x") is LIBRARY["sobel_x"]


def test_resolve_path(tmp_path):
    """A path resolves to the kernel in that file."""
    path = write(tmp_path, "edge.json", json.dumps({"weights": SOBEL_X, "divisor": 2}))
    kernel = resolve_kernel(str(path))
    assert kernel.source == str(path) and kernel.name == "edge"
    assert_array_equal(kernel.weights, np.array(SOBEL_X) / 2)


def test_resolve_inline_json():
    """Inline JSON text resolves to that kernel, named "inline", sourced from --kernel."""
    kernel = resolve_kernel("[[1,0,-1],[1,0,-1],[1,0,-1]]")
    assert kernel.name == "inline" and kernel.source == "--kernel"
    assert_array_equal(kernel.raw, LIBRARY["vertical_edge"].raw)


def test_resolve_bad_inline_json_names_kernel_option():
    """Malformed inline JSON raises SpecError naming --kernel and the position."""
    with pytest.raises(SpecError, match=r"^--kernel: invalid JSON at line 1 column"):
        resolve_kernel("[[1,0,-1],[1,0,-1]")


def test_resolve_unknown_name_suggests_the_close_one():
    """An unknown name close to a built-in one raises SpecError with "did you mean"."""
    with pytest.raises(SpecError) as caught:
        resolve_kernel("sobelx")
    assert "did you mean sobel_x" in str(caught.value) and "'sobelx'" in str(caught.value)


# --- build_filter_bank --------------------------------------------------------------------------

FULL_RGB = parse_kernel({"name": "mix", "weights": np.ones((2, 3, 3, 3)).tolist()}, "mix.json")


def test_gray_image_two_kernels():
    """Two 3x3 kernels on a gray image give weight (2, 1, 3, 3), groups 1, labelled by name."""
    bank = build_filter_bank([LIBRARY["sobel_x"], LIBRARY["sobel_y"]], ("gray",))
    assert bank.weight.shape == (2, 1, 3, 3) and bank.groups == 1
    assert bank.labels == ("sobel_x", "sobel_y")
    assert_array_equal(bank.weight[0, 0], LIBRARY["sobel_x"].weights)
    assert_array_equal(bank.weight[1, 0], LIBRARY["sobel_y"].weights)
    assert bank.bias is None


def test_rgb_image_one_planar_kernel_is_depthwise():
    """One 2-D kernel on an RGB image gives weight (3, 1, 3, 3), groups 3, labels per channel."""
    bank = build_filter_bank([LIBRARY["sobel_x"]], ("R", "G", "B"))
    assert bank.weight.shape == (3, 1, 3, 3) and bank.groups == 3
    assert bank.labels == ("R:sobel_x", "G:sobel_x", "B:sobel_x")
    for f in range(3):
        assert_array_equal(bank.weight[f, 0], LIBRARY["sobel_x"].weights)


def test_rgb_image_two_planar_kernels_are_grouped_by_channel():
    """Two 2-D kernels on RGB give 6 filters, channel-major, so group c holds channel c's filters."""
    bank = build_filter_bank([LIBRARY["sobel_x"], LIBRARY["box_blur"]], ("R", "G", "B"))
    assert bank.weight.shape == (6, 1, 3, 3) and bank.groups == 3
    assert bank.labels == ("R:sobel_x", "R:box_blur", "G:sobel_x", "G:box_blur", "B:sobel_x", "B:box_blur")
    for f, label in enumerate(bank.labels):
        assert_array_equal(bank.weight[f, 0], LIBRARY[label.split(":")[1]].weights)


def test_bank_of_2d_kernels_is_labelled_by_index():
    """A 3-D kernel (a bank) gives one filter per 2-D slice, labelled name[i]."""
    kernel = parse_kernel({"name": "pair", "weights": [SOBEL_X, SOBEL_X]}, "pair.json")
    bank = build_filter_bank([kernel], ("gray",))
    assert bank.weight.shape == (2, 1, 3, 3) and bank.labels == ("pair[0]", "pair[1]")


def test_rgb_image_4d_kernel_mixes_channels():
    """A 4-D kernel with C=3 on an RGB image gives its own weight and groups 1."""
    bank = build_filter_bank([FULL_RGB], ("R", "G", "B"))
    assert bank.weight.shape == (2, 3, 3, 3) and bank.groups == 1
    assert bank.labels == ("mix[0]", "mix[1]")


def test_4d_kernel_on_gray_image_is_a_shape_error():
    """A 4-D kernel for 3 channels on a 1-channel image raises ShapeError naming both counts and the file."""
    with pytest.raises(ShapeError) as caught:
        build_filter_bank([FULL_RGB], ("gray",))
    message = str(caught.value)
    assert message.startswith("mix.json: ")
    assert "3 input channel(s)" in message and "the image has 1" in message and "(2, 3, 3, 3)" in message
    assert "--color rgb" in message


def test_mixing_planar_and_4d_kernels_is_a_shape_error():
    """Stacking a 2-D kernel with a 4-D one raises ShapeError naming both."""
    with pytest.raises(ShapeError) as caught:
        build_filter_bank([LIBRARY["sobel_x"], FULL_RGB], ("R", "G", "B"))
    message = str(caught.value)
    assert "sobel_x" in message and "mix" in message and "mix.json" in message


def test_different_sizes_are_a_shape_error():
    """Stacking a 3x3 and a 5x5 kernel raises ShapeError naming both sizes."""
    with pytest.raises(ShapeError) as caught:
        build_filter_bank([LIBRARY["sobel_x"], LIBRARY["gaussian_5x5"]], ("gray",))
    message = str(caught.value)
    assert "sobel_x is 3x3" in message and "gaussian_5x5 is 5x5" in message


def test_no_kernels_is_a_spec_error():
    """An empty list of kernels raises SpecError."""
    with pytest.raises(SpecError, match="no kernel given"):
        build_filter_bank([], ("gray",))


def test_biases_are_stacked_with_zeros_for_kernels_without_one():
    """Biases line up with filters; a kernel without bias contributes zeros; RGB repeats per channel."""
    with_bias = parse_kernel({"name": "b", "weights": [SOBEL_X, SOBEL_X], "bias": [1, 2]}, "b.json")
    gray = build_filter_bank([with_bias, LIBRARY["sobel_y"]], ("gray",))
    assert_array_equal(gray.bias, [1, 2, 0])
    rgb = build_filter_bank([LIBRARY["sobel_y"], with_bias], ("R", "G", "B"))
    assert_array_equal(rgb.bias, [0, 1, 2] * 3)
    assert rgb.weight.shape[0] == len(rgb.bias) == len(rgb.labels)


# --- merged_settings ----------------------------------------------------------------------------


def test_agreeing_settings_merge(tmp_path):
    """Two kernel files that give the same stride, and different other keys, merge into one dict."""
    first = kernel_from(tmp_path, "a.json", {"weights": SOBEL_X, "stride": 2, "padding": "same"})
    second = kernel_from(tmp_path, "b.json", {"weights": SOBEL_X, "stride": [2, 2], "flip": True})
    assert merged_settings([first, second, LIBRARY["identity"]]) == {
        "stride": [2, 2], "padding": "same", "flip": True,
    }


def test_conflicting_stride_names_both_files(tmp_path):
    """Two kernel files with different strides raise SpecError naming both files and the option."""
    first = kernel_from(tmp_path, "a.json", {"weights": SOBEL_X, "stride": 1})
    second = kernel_from(tmp_path, "b.json", {"weights": SOBEL_X, "stride": 2})
    with pytest.raises(SpecError) as caught:
        merged_settings([first, second])
    message = str(caught.value)
    assert str(tmp_path / "a.json") in message and str(tmp_path / "b.json") in message
    assert "stride is [1, 1]" in message and "[2, 2]" in message and "--stride" in message


# --- jsonspec.dumps -----------------------------------------------------------------------------


def test_dumps_puts_each_row_on_one_line():
    """dumps writes a kernel document that json.loads reads back, one row of numbers per line."""
    document = LIBRARY["gaussian_5x5"].to_json()
    document.update({"bias": [0.5], "stride": [1, 2], "flip": False})
    text = jsonspec.dumps(document)
    assert json.loads(text) == document
    lines = [line.strip().rstrip(",") for line in text.splitlines()]
    for row in document["weights"]:
        assert json.dumps(row) in lines
    assert '"stride": [1, 2]' in lines


def test_dumps_of_a_4d_array_keeps_innermost_rows_inline():
    """A 4-D array is laid out one innermost row per line and parses back equal."""
    weights = np.arange(2 * 3 * 2 * 2).reshape(2, 3, 2, 2).tolist()
    text = jsonspec.dumps({"weights": weights})
    assert json.loads(text) == {"weights": weights}
    lines = [line.strip().rstrip(",") for line in text.splitlines()]
    rows = [line for line in lines if line.startswith("[") and line != "["]
    assert rows == [json.dumps(row) for block in weights for kernel in block for row in kernel]


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner),
    max_leaves=30,
)


@given(JSON_VALUES)
def test_dumps_parses_back_to_the_same_document(document):
    """For any finite JSON document, json.loads(dumps(document)) equals the document."""
    assert json.loads(jsonspec.dumps(document)) == document
