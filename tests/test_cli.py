"""The `cnn` command line: CliRunner for results, main() and subprocesses for errors and pipes."""

import json
import os
import re
import shlex
import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT
from typer.testing import CliRunner

from cnncli import __version__
from cnncli.cli import app, main

SEED = str(ROOT / "sample_images" / "seed_5x5.png")
SHAPES = str(ROOT / "sample_images" / "shapes.png")


def invoke(*args, **kwargs):
    """Run the app in-process at 80 columns without colour; stdout and stderr stay separate."""
    env = {"COLUMNS": "80", "NO_COLOR": "1", "TERM": "dumb"}
    return CliRunner(env=env).invoke(app, list(args), **kwargs)


def run_main(capsys, *args):
    """Run main() as the console script does; return (exit code, stdout, stderr)."""
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def run_process(*args, stdin=None):
    """Run `python -m cnncli` in a real subprocess (pipes, stdin, stdout)."""
    env = {**os.environ, "COLUMNS": "80"}
    env.pop("FORCE_COLOR", None)
    return subprocess.run([sys.executable, "-m", "cnncli", *args], input=stdin, capture_output=True, env=env,
                          cwd=ROOT, timeout=60)


def test_run_prints_the_seed_maps():
    """The seed example's conv, ReLU and pool values appear in the tables, in order."""
    result = invoke("run", SEED, "--kernel", "vertical_edge")
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    assert out.index("conv1 (conv2d)") < out.index("relu1 (relu)") < out.index("maxpool1 (maxpool2d)")
    assert "0 -6 12 12" in out and "2 -6  6  6" in out and "0 12" in out
    assert result.stderr == ""


def test_run_json_is_the_whole_trace():
    """--format json is one document with every layer's type, settings, shape, stats and values."""
    result = invoke("run", SEED, "-k", "vertical_edge", "--format", "json")
    assert result.exit_code == 0
    trace = json.loads(result.stdout)
    assert trace["format"] == "cnn-trace" and trace["version"] == 2
    assert [layer["type"] for layer in trace["layers"]] == ["input", "conv2d", "relu", "maxpool2d"]
    conv = trace["layers"][1]
    assert conv["values"] == [[[-6, 12, 12], [-6, 8, 8], [-6, 6, 6]]]
    assert conv["params"]["operation"] == "cross-correlation" and conv["shape"] == [1, 3, 3]
    assert conv["stats"]["min"] == -6 and conv["stats"]["max"] == 12
    assert trace["layers"][-1]["values"] == [[[12]]] and trace["output"]["name"] == "maxpool1"


def test_output_npy_holds_the_final_array(tmp_path):
    """-o FILE.npy writes the final map; the message goes to stderr."""
    target = tmp_path / "y.npy"
    result = invoke("run", SEED, "-k", "vertical_edge", "--pool", "none", "-o", str(target))
    assert result.exit_code == 0
    assert np.load(target).tolist() == [[[0, 12, 12], [0, 8, 8], [0, 6, 6]]]
    assert "wrote relu1" in result.stderr


def test_options_reach_the_engine():
    """Stride, padding, mode, dilation, flip, activation and pooling options shape the layers."""
    result = invoke("run", SHAPES, "-k", "sobel_x", "-k", "sobel_y", "--stride", "2", "--padding", "1",
                    "--padding-mode", "reflect", "--dilation", "2", "--flip", "--activation", "tanh",
                    "--pool", "avg", "--pool-size", "3", "--pool-stride", "2", "--ceil-mode", "--format", "json")
    assert result.exit_code == 0, result.stderr
    layers = json.loads(result.stdout)["layers"]
    conv = layers[1]["params"]
    assert conv["stride"] == [2, 2] and conv["padding"] == 1 and conv["padding_mode"] == "reflect"
    assert conv["dilation"] == [2, 2] and conv["operation"] == "convolution"
    assert layers[1]["shape"] == [2, 31, 31]  # (64 + 2 - 2*2 - 1) // 2 + 1
    assert layers[2]["type"] == "tanh" and layers[3]["type"] == "avgpool2d"
    assert layers[3]["shape"] == [2, 15, 15]  # ceil((31 - 3) / 2) + 1


def test_kernel_file_settings_apply_unless_an_option_overrides(tmp_path):
    """A kernel file's stride is used; --stride on the command line wins."""
    kernel = tmp_path / "k.json"
    kernel.write_text(json.dumps({"weights": [[1, 0], [0, 1]], "stride": 2, "padding": "valid"}))
    from_file = json.loads(invoke("run", SHAPES, "-k", str(kernel), "--pool", "none", "-f", "json").stdout)
    overridden = json.loads(invoke("run", SHAPES, "-k", str(kernel), "--stride", "1", "--pool", "none",
                                   "-f", "json").stdout)
    assert from_file["layers"][1]["shape"] == [1, 32, 32]
    assert overridden["layers"][1]["shape"] == [1, 63, 63]


def test_rgb_with_a_2d_kernel_gives_one_map_per_channel():
    """--color rgb with sobel_x: three depthwise maps labelled by channel."""
    result = invoke("run", str(ROOT / "sample_images" / "rgb_bars.png"), "-k", "sobel_x", "--color", "rgb",
                    "-f", "json")
    conv = json.loads(result.stdout)["layers"][1]
    assert conv["channels"] == ["R:sobel_x", "G:sobel_x", "B:sobel_x"] and conv["params"]["groups"] == 3


def test_dense_layer_from_a_file_and_at_random(tmp_path):
    """--dense reads (out, in) weights; --dense-random is reproducible from --seed."""
    weights = tmp_path / "w.npy"
    np.save(weights, np.array([[2.0], [-1.0]]))
    trace = json.loads(invoke("run", SEED, "-k", "vertical_edge", "--dense", str(weights), "-f", "json").stdout)
    assert trace["layers"][-1]["values"] == [24, -12]
    first = invoke("run", SEED, "-k", "vertical_edge", "--dense-random", "4", "--seed", "7", "-f", "json").stdout
    again = invoke("run", SEED, "-k", "vertical_edge", "--dense-random", "4", "--seed", "7", "-f", "json").stdout
    dense = json.loads(first)["layers"][-1]
    assert dense["values"] == json.loads(again)["layers"][-1]["values"]
    assert dense["params"]["weights"] == "random (seed 7)"


def test_inspect_saves_a_manifest_and_one_npy_per_layer(tmp_path):
    """--save writes manifest.json (documented keys, layers in order) and float32 arrays."""
    result = invoke("inspect", SEED, "-k", "vertical_edge", "--dense-random", "2", "--save", str(tmp_path / "acts"))
    assert result.exit_code == 0, result.stderr
    assert "conv1" in result.stdout and "mult-adds" in result.stdout
    manifest = json.loads((tmp_path / "acts" / "manifest.json").read_text())
    layers = manifest["layers"]
    assert [layer["type"] for layer in layers] == ["input", "conv2d", "relu", "maxpool2d", "flatten", "dense"]
    for layer in layers:
        assert {"index", "name", "type", "params", "shape", "file", "stats"} <= set(layer)
        array = np.load(tmp_path / "acts" / layer["file"])
        assert array.dtype == np.float32 and list(array.shape) == layer["shape"]
    assert np.load(tmp_path / "acts" / layers[1]["file"]).tolist() == [[[-6, 12, 12], [-6, 8, 8], [-6, 6, 6]]]


def test_inspect_json_lists_the_layers():
    """inspect --format json gives the manifest's records on stdout."""
    records = json.loads(invoke("inspect", SEED, "-k", "vertical_edge", "-f", "json").stdout)
    assert [layer["name"] for layer in records["layers"]] == ["input", "conv1", "relu1", "maxpool1"]
    assert records["layers"][1]["macs"] == 81 and records["layers"][1]["parameters"] == 9


def test_kernels_lists_the_library_and_exports_it(tmp_path):
    """`cnn kernels` shows every built-in kernel with its weights; --export writes loadable files."""
    from cnncli.io.kernels import LIBRARY, load_kernel_file

    shown = invoke("kernels", "--format", "json")
    assert [k["name"] for k in json.loads(shown.stdout)] == list(LIBRARY)
    assert "sobel_x" in invoke("kernels").stdout
    invoke("kernels", "--export", str(tmp_path))
    assert np.array_equal(load_kernel_file(tmp_path / "gaussian_5x5.json").weights, LIBRARY["gaussian_5x5"].weights)


def test_kernels_export_again_needs_force_and_says_so(capsys, tmp_path):
    """A second --export into the same folder is refused naming --force, which the command takes."""
    assert run_main(capsys, "kernels", "sobel_x", "--export", str(tmp_path))[0] == 0
    code, _, err = run_main(capsys, "kernels", "sobel_x", "--export", str(tmp_path))
    assert code == 1 and "sobel_x.json: already exists; --force replaces it" in err and err.count("\n") == 1
    assert run_main(capsys, "kernels", "sobel_x", "--export", str(tmp_path), "--force")[0] == 0
    code, _, err = run_main(capsys, "kernels", "--force")
    assert code == 2 and "give --export DIR" in err


@pytest.mark.parametrize("command", [[], ["run"], ["inspect"], ["kernels"]])
def test_help_of_every_command(command):
    """--help works for the app and each command, and names the key options."""
    result = invoke(*command, "--help")
    assert result.exit_code == 0 and "Usage" in result.stdout
    if command in (["run"], ["inspect"]):
        for option in ("--kernel", "--stride", "--padding", "--padding-mode", "--pool-size", "--color"):
            assert option in result.stdout


def test_version_flag(capsys):
    """--version prints the version."""
    code, out, _ = run_main(capsys, "--version")
    assert code == 0 and out.strip() == f"cnn {__version__}"


@pytest.mark.parametrize("args, code, words", [
    (["run", "missing.png", "-k", "sobel_x"], 1, "missing.png: no such file"),
    (["run", str(ROOT / "README.md"), "-k", "sobel_x"], 1, "README.md: not a supported image"),
    (["run", SEED, "-k", "sobelx"], 1, "did you mean sobel_x"),
    (["run", SEED, "-k", "[[1, 0], [1]]"], 1, "--kernel: weights[1]"),
    (["run", SEED, "-k", "gaussian_5x5", "-k", "sobel_x"], 1, "share one size"),
    (["run", SEED, "-k", "gaussian:sigma=2", "-k", "gabor:theta=45"], 1,
     "gaussian:sigma=2 is 17x17, gabor:theta=45 is 37x37; a kernel formula takes size=N, e.g. size=37"),
    (["run", SEED, "-k", "[[1,1,1,1,1,1,1],[1,1,1,1,1,1,1]]", "--pool", "none"], 1,
     "seed_5x5.png: conv1: kernel reaches 2x7 but the padded input is only 5x5"),
    (["run", SEED, "-k", "vertical_edge"], 1, "maxpool1"),  # placeholder replaced below
    (["run", SEED, "-k", "sobel_x", "--stride", "0"], 2, "--stride"),
    (["run", SEED, "-k", "sobel_x", "--padding-mode", "reflect"], 2,
     "--padding-mode: fills the padding, and there is none (valid); add --padding same or a number"),
    (["run", SEED, "-k", "sobel_x", "--padding", "lots"], 2, "--padding"),
    (["run", SEED, "-k", "sobel_x", "--strid", "2"], 2, "--strid"),
    (["run", SEED], 2, "give at least one kernel"),
    (["run", SEED, "-k", "sobel_x", "--dense", "w.npy", "--dense-random", "2"], 2, "not both"),
])
def test_errors_are_one_line_with_an_exit_code(capsys, args, code, words):
    """Each bad input gives exactly one `cnn:` line on stderr naming the culprit, and the exit code."""
    if args[-1] == "vertical_edge":
        args = args + ["--pool-size", "4"]  # a 4x4 pool on a 3x3 map
    exit_code, out, err = run_main(capsys, *args)
    assert exit_code == code
    assert err.count("\n") == 1 and err.startswith("cnn: ") and words in err, err
    assert "Traceback" not in err and out == ""


def test_malformed_kernel_file_names_the_file(tmp_path, capsys):
    """A kernel file with invalid JSON names the file, line and column."""
    bad = tmp_path / "bad.json"
    bad.write_text('{"weights": [[1, 2], [3, 4]],\n "stride": }')
    code, _, err = run_main(capsys, "run", SEED, "-k", str(bad))
    assert code == 1 and f"{bad}: invalid JSON at line 2 column 12" in err


def test_a_kernel_file_given_as_model_and_a_model_given_as_kernel_say_which_option(tmp_path, capsys):
    """Each file names the option it belongs to, instead of a key the other format lacks."""
    kernel = tmp_path / "k.json"
    kernel.write_text('{"name": "k", "weights": [[1, 0], [0, -1]]}')
    code, _, err = run_main(capsys, "run", SEED, "--model", str(kernel))
    assert code == 1 and err == (f'cnn: {kernel}: is a kernel file (weights, no "format": "cnn-model" and no layers); '
                                 "give it as --kernel, not --model\n")
    model = ROOT / "docs" / "examples" / "resnet_tiny.json"
    code, _, err = run_main(capsys, "run", SEED, "-k", str(model))
    assert code == 1 and err == (f'cnn: {model}: is a model file ("format": "cnn-model", layers); give it as --model, '
                                 "not --kernel\n")


def test_stdin_image_and_piped_output_has_no_escape_codes():
    """`-` reads the image from stdin; piped table output is plain text."""
    image = (ROOT / "sample_images" / "seed_5x5.png").read_bytes()
    result = run_process("run", "-", "-k", "vertical_edge", stdin=image)
    assert result.returncode == 0, result.stderr
    assert b"0 -6 12 12" in result.stdout and b"\x1b[" not in result.stdout
    assert result.stdout.startswith(b"stdin: PNG 5x5 L")


def test_empty_stdin_is_an_error():
    """An empty stdin is one clear line, exit 1."""
    result = run_process("run", "-", "-k", "sobel_x", stdin=b"")
    assert result.returncode == 1 and result.stderr == b"cnn: stdin: is empty; expected an image\n"


def test_json_through_a_pipe_parses():
    """--format json through a real pipe is valid JSON and nothing else."""
    result = run_process("run", "sample_images/seed_5x5.png", "-k", "vertical_edge", "-f", "json")
    assert json.loads(result.stdout)["layers"][1]["values"][0][0] == [-6, 12, 12] and result.stderr == b""


def _readme_examples():
    """(command, expected first lines or None) for every `cnn` example in README.md."""
    text = (ROOT / "README.md").read_text()
    examples = []
    for lang, body in re.findall(r"```(sh|console)\n(.*?)```", text, flags=re.S):
        if lang == "console":  # one or more `$ command` lines, each followed by what it prints
            for part in re.split(r"^\$ ", body.rstrip("\n"), flags=re.M)[1:]:
                command, *expected = part.rstrip("\n").split("\n")
                examples.append((command, expected))
        else:
            for line in body.splitlines():
                command = line.split("#")[0].strip() if " #" in line else line.strip()
                if command.startswith(("cnn ", "python -m cnncli")):
                    examples.append((command, None))
    return examples


@pytest.mark.parametrize("command, expected", _readme_examples(), ids=lambda v: v if isinstance(v, str) else "")
def test_readme_examples_run_and_show_what_readme_says(command, expected, tmp_path, monkeypatch, capsys):
    """Every README example exits 0, and a shown output is what the command prints (no staleness);
    an example that shows a `cnn:` error line fails with exactly that line."""
    for name in ("sample_images", "kernels", "docs", "README.md"):
        (tmp_path / name).symlink_to(ROOT / name)
    monkeypatch.chdir(tmp_path)
    words = shlex.split(command)
    words = words[3:] if words[:3] == ["python", "-m", "cnncli"] else words[1:]
    if expected and expected[0].startswith("cnn: "):
        code, _, err = run_main(capsys, *words)
        assert code != 0 and err.splitlines() == expected
        return
    result = invoke(*words)
    assert result.exit_code == 0, result.stderr
    if expected is not None:
        actual = [line.rstrip() for line in result.stdout.splitlines()]
        assert actual[:len(expected)] == [line.rstrip() for line in expected]


def test_ci_runs_the_readme_test_command():
    """.ci/run ends with exactly the install-and-test part of README's test command."""
    readme = (ROOT / "README.md").read_text()
    ci_command = (ROOT / ".ci" / "run").read_text().strip().splitlines()[-1]
    assert ci_command in readme


def test_inspect_refuses_an_earlier_save_unless_forced(tmp_path, capsys):
    """A second --save into one folder is refused; --force replaces it and leaves no stale layer."""
    folder = str(tmp_path / "acts")
    assert run_main(capsys, "inspect", SEED, "-k", "vertical_edge", "--dense-random", "2", "--save", folder)[0] == 0
    code, _, err = run_main(capsys, "inspect", SEED, "-k", "vertical_edge", "--save", folder)
    assert code == 1 and "--force" in err
    assert run_main(capsys, "inspect", SEED, "-k", "vertical_edge", "--save", folder, "--force")[0] == 0
    layers = ["00_input", "01_conv1", "02_relu1", "03_maxpool1"]
    assert sorted(os.listdir(folder)) == sorted([f"{name}.{kind}" for name in layers for kind in ("npy", "png")]
                                                + ["manifest.json"])


def test_overflow_gives_valid_json_and_a_warning(capsys):
    """Infinite values are null in the JSON, and stderr names the layer that overflowed."""
    code, out, err = run_main(capsys, "run", SEED, "-k", "[[1e38]]", "-f", "json")
    trace = json.loads(out)
    assert code == 0 and trace["layers"][1]["stats"]["max"] is None and None in trace["layers"][1]["values"][0][1]
    assert err.count("\n") == 1 and "warning: " + SEED + ": conv1 has infinite or NaN values" in err


@pytest.mark.parametrize("args, words", [
    (["--padding", "100000"], "would need about"),
    (["--dense-random", "100000000"], "--dense-random: its weights would need"),
])
def test_runs_too_big_for_memory_are_refused_before_allocating(capsys, args, words):
    """The memory a run needs is estimated from its shapes and refused over the limit, one line, exit 1."""
    code, _, err = run_main(capsys, "run", SHAPES, "-k", "sobel_x", *args)
    assert code == 1 and words in err and err.count("\n") == 1


def test_full_is_refused_for_huge_maps(capsys):
    """--full on a photo would print 100,000s of cells: refused with the way to get them all."""
    code, _, err = run_main(capsys, "run", str(ROOT / "sample_images" / "photo_camera.png"), "-k", "sobel_x", "--full")
    assert code == 1 and "cnn: --full:" in err and "--format json" in err


def test_full_prints_every_column_however_narrow_the_terminal():
    """--full keeps every number whole, in tables wider than the terminal."""
    out = invoke("run", SHAPES, "-k", "sobel_x", "--pool", "none", "--full").stdout
    assert "…" not in out and "⋮" not in out and max(len(line) for line in out.splitlines()) > 80


def test_channel_labels_follow_activation_and_pooling():
    """relu and maxpool maps keep the kernel names of the conv before them; the input has its channels."""
    trace = json.loads(invoke("run", SHAPES, "-k", "sobel_x", "-k", "sobel_y", "-f", "json").stdout)
    assert [layer.get("channels") for layer in trace["layers"]] == [["gray"]] + [["sobel_x", "sobel_y"]] * 3


def test_npy_to_stdout_through_a_pipe():
    """-o - writes the final array as .npy on stdout and nothing else."""
    import io

    result = run_process("run", "sample_images/seed_5x5.png", "-k", "vertical_edge", "-o", "-")
    assert result.returncode == 0 and np.load(io.BytesIO(result.stdout)).tolist() == [[[12]]]


def test_closed_stdout_is_an_error():
    """Started with stdout closed, cnn says so and exits 1 rather than losing its output."""
    result = subprocess.run(f"{sys.executable} -m cnncli run sample_images/seed_5x5.png -k vertical_edge >&-",
                            shell=True, capture_output=True, cwd=ROOT, timeout=60)
    assert result.returncode == 1 and b"stdout: is closed" in result.stderr


def test_only_the_command_being_run_is_built(monkeypatch):
    """Typer builds the options of every registered command on each start; main() hands it an app
    with the one command named (or none, for --version), and the whole app for help, completion
    and a mistyped command, whose suggestions need the others."""
    from cnncli.cli import _app_for, app

    def names(typer_app):
        return [info.callback.__name__ for info in typer_app.registered_commands]

    assert names(_app_for(["--debug", "run", "x.png", "-k", "sobel_x"])) == ["run"]
    assert names(_app_for(["--version"])) == []
    assert _app_for(["--help"]) is app and _app_for(["rn"]) is app and _app_for([]) is app
    monkeypatch.setenv("_CNN_COMPLETE", "complete_bash")
    assert _app_for(["run"]) is app
