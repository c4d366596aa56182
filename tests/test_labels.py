"""--labels FILE names the output vector's classes, one per line, for models and kernel runs."""

import json

import pytest

from cnncli.cli import main

DIGIT = "sample_images/digit_7.png"
NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def run(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(autouse=True)
def at_root(monkeypatch):
    from conftest import ROOT

    monkeypatch.chdir(ROOT)


def test_labels_replace_a_models_own_in_the_chart_and_the_records(tmp_path, capsys):
    path = tmp_path / "names.txt"
    path.write_text("\n".join(NAMES) + "\n\n")  # blank lines at the end are ignored
    code, out, err = run(capsys, "run", DIGIT, "-m", "digits", "--labels", path, "-f", "json")
    assert code == 0, err
    trace = json.loads(out)
    assert trace["model"]["labels"] == NAMES and trace["predictions"][0]["label"] == "seven"
    code, out, _ = run(capsys, "run", DIGIT, "-m", "digits", "--labels", path, "--top", "1")
    assert code == 0 and "Prediction: seven" in out


def test_labels_name_a_kernel_runs_dense_outputs(tmp_path, capsys):
    path = tmp_path / "names.txt"
    path.write_text("crane\ncrane\n")  # names may repeat, as ImageNet's two cranes
    code, out, err = run(capsys, "run", DIGIT, "-k", "sobel_x", "--dense-random", "2", "--labels", path,
                         "--top", "2", "-f", "json")
    assert code == 0, err
    assert [p["label"] for p in json.loads(out)["predictions"]] == ["crane", "crane"]


@pytest.mark.parametrize("text, args, code, words", [
    ("a\nb\n", ("-m", "digits"), 2, ["--labels", "2 names", "10 values"]),
    ("a\n\nb\n", ("-m", "digits"), 1, ["line 2 is blank"]),
    ("a\x1b[31m\n", ("-m", "digits"), 1, ["line 1", "control character"]),
    ("", ("-m", "digits"), 1, ["no class names"]),
    ("a\nb\n", ("-k", "sobel_x"), 2, ["--labels", "ends in a map"]),
])
def test_bad_labels_are_one_line(tmp_path, capsys, text, args, code, words):
    path = tmp_path / "names.txt"
    path.write_text(text)
    got, out, err = run(capsys, "run", DIGIT, *args, "--labels", path)
    assert got == code and out == "" and len(err.strip().splitlines()) == 1, err
    for word in words:
        assert word in err


def test_bad_labels_end_a_batch_before_any_image(tmp_path, capsys):
    path = tmp_path / "names.txt"
    path.write_text("a\nb\n")
    code, out, err = run(capsys, "run", DIGIT, "sample_images/digit_3.png", "-m", "digits", "--labels", path,
                         "-f", "jsonl")
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1 and "2 names" in err


def test_a_kernel_runs_csv_names_its_classes(tmp_path, capsys):
    path = tmp_path / "names.txt"
    path.write_text("cat\ndog\n")
    code, out, err = run(capsys, "run", DIGIT, "-k", "sobel_x", "--dense-random", "2", "--labels", path,
                         "-f", "csv", "--values", "final")
    assert code == 0, err
    assert {"cat", "dog"} <= {row.split(",")[3] for row in out.splitlines()[1:]}, out[:300]


def _section(out, title):
    """The lines of one layer's table in `cnn run`'s output, from its title to the blank line after it."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(title))
    end = next(i for i in range(start, len(lines)) if not lines[i].strip())
    return lines[start:end]


def test_the_dense_and_softmax_tables_name_their_classes(tmp_path, capsys):
    """fc2 (logits) and softmax print a label column with --labels' names; fc1's 64 units, which are no
    classes, print none; the JSON trace is unchanged by it (no "channels" on a vector layer)."""
    path = tmp_path / "names.txt"
    path.write_text("\n".join(NAMES) + "\n")
    code, out, err = run(capsys, "run", DIGIT, "-m", "digits", "--labels", path)
    assert code == 0 and err == ""
    for title in ("fc2 (dense)", "softmax ->"):
        table = _section(out, title)
        assert table[1].split() == ["unit", "label", "value"]
        assert [row.split()[:2] for row in table[3:13]] == [[str(i), name] for i, name in enumerate(NAMES)]
    assert "label" not in " ".join(_section(out, "fc1 (dense)"))
    code, out, _ = run(capsys, "run", DIGIT, "-m", "digits", "--labels", path, "-f", "json")
    assert code == 0 and all("channels" not in layer for layer in json.loads(out)["layers"][9:])


def test_inspect_pictures_of_the_class_scores_carry_the_labels(tmp_path, capsys):
    """inspect --save draws fc2 and softmax with their class names: the same picture layer_montage draws
    given the labels, not the one without them."""
    import numpy as np
    from PIL import Image

    from cnncli.views.pictures import layer_montage

    path = tmp_path / "names.txt"
    path.write_text("\n".join(NAMES) + "\n")
    code, _, err = run(capsys, "inspect", DIGIT, "-m", "digits", "--labels", path, "--save", tmp_path / "acts")
    assert code == 0, err
    for name, caption in (("13_fc2", "layer 13: fc2 (dense) -> 10\n64 -> 10"), ("14_softmax", "layer 14: softmax -> 10")):
        saved = np.asarray(Image.open(tmp_path / "acts" / f"{name}.png"))
        values = np.load(tmp_path / "acts" / f"{name}.npy")
        assert np.array_equal(saved, np.asarray(layer_montage(values, NAMES, caption)))
        assert not np.array_equal(saved, np.asarray(layer_montage(values, (), caption)))
