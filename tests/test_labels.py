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
