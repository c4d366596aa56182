"""A .npy file given as the image is a tensor: the network's input exactly as given, for --model
and --kernel alike, and for Model.run. References: the same array given to Model.run as an array,
and ops.conv2d on it."""

import json

import numpy as np
import pytest

import cnncli
from cnncli.cli import main
from cnncli.engine import ops

RNG = np.random.default_rng(5)


def run(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("leading", [False, True])
def test_a_tensor_is_the_models_input_as_given(tmp_path, capsys, leading):
    x = RNG.random((1, 8, 8)).astype(np.float32)
    path = tmp_path / "x.npy"
    np.save(path, x[None] if leading else x)  # (1, C, H, W) or (C, H, W)
    code, out, err = run(capsys, "run", path, "-m", "digits", "-f", "json")
    assert code == 0, err
    trace = json.loads(out)
    assert trace["image"]["format"] == "NPY" and trace["image"]["notes"] == ["a tensor, used as given"]
    np.testing.assert_array_equal(np.array(trace["layers"][0]["values"], np.float32), x)  # neither inverted nor resized
    best = int(cnncli.load_model("digits").network.predict(x[None])[0].argmax())  # batch inference: another path
    assert trace["predictions"][0]["index"] == best


def test_a_tensor_runs_through_kernels_unchanged(tmp_path, capsys):
    x = (RNG.random((3, 9, 7)) * 300 - 100).astype(np.float32)  # any range: nothing is scaled
    np.save(tmp_path / "x.npy", x)
    code, out, err = run(capsys, "run", tmp_path / "x.npy", "-k", "sobel_x", "--activation", "none", "--pool",
                         "none", "-f", "json")
    assert code == 0, err
    sobel = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], np.float32)
    weight = np.broadcast_to(sobel, (3, 1, 3, 3)).copy()  # each channel on its own, as for an RGB image
    got = np.array(json.loads(out)["layers"][1]["values"], np.float32)
    np.testing.assert_allclose(got, ops.conv2d(x, weight, groups=3), rtol=1e-6, atol=1e-4)


def test_a_tensor_through_the_api_path_equals_the_array(tmp_path):
    x = RNG.random((1, 8, 8)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    model = cnncli.load_model("digits")
    np.testing.assert_array_equal(model.run(str(tmp_path / "x.npy")).output, model.run(x).output)


@pytest.mark.parametrize("array, args, words", [
    (np.zeros((3, 8, 8), np.float32), ("-m", "digits"), ["x.npy", "shape (3, 8, 8)", "takes (1, 8, 8)"]),
    (np.zeros((8, 8), np.float32), ("-k", "sobel_x"), ["x.npy", "shape (8, 8)", "(C, H, W)"]),
    (np.zeros((2, 1, 8, 8), np.float32), ("-k", "sobel_x"), ["shape (2, 1, 8, 8)"]),
    (np.full((1, 4, 4), np.nan, np.float32), ("-k", "sobel_x"), ["NaN or infinite"]),
    (np.zeros((1, 4, 4), bool), ("-k", "sobel_x"), ["holds bool values"]),
    (np.zeros((1, 4, 4), complex), ("-k", "sobel_x"), ["holds complex128 values"]),
])
def test_bad_tensors_are_one_line(tmp_path, capsys, array, args, words):
    np.save(tmp_path / "x.npy", array)
    code, out, err = run(capsys, "run", tmp_path / "x.npy", *args)
    assert code == 1 and out == "" and len(err.strip().splitlines()) == 1, err
    for word in words:
        assert word in err


def test_image_options_are_refused_for_a_tensor(tmp_path, capsys):
    np.save(tmp_path / "x.npy", np.zeros((1, 4, 4), np.float32))
    code, _, err = run(capsys, "run", tmp_path / "x.npy", "-k", "sobel_x", "--color", "rgb")
    assert code == 2 and "--color" in err and "tensor" in err


def test_a_pickled_npy_is_refused(tmp_path, capsys):
    np.save(tmp_path / "x.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    code, _, err = run(capsys, "run", tmp_path / "x.npy", "-k", "sobel_x")
    assert code == 1 and "Python objects" in err

