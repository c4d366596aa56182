"""Many images and pipelines: folders and globs, one record per image, a broken image reported while
the batch goes on, --workers giving the same output, machine formats alone on stdout, plain text in
pipes, and the exit codes scripts rely on."""

from __future__ import annotations

import csv
import io
import json
import os
import pty
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import on_a_terminal

from cnncli.cli import main
from cnncli.cli.batch import unique_names
from cnncli.io.paths import expand_images
from cnncli.errors import CnnError

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "sample_images"
DIGITS = sorted(str(p) for p in SAMPLES.glob("digit_*.png"))


def cnn(capsysbinary, *args: str) -> tuple[int, bytes, str]:
    code = main([str(arg) for arg in args])
    captured = capsysbinary.readouterr()
    return code, captured.out, captured.err.decode()


def process(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cnncli", *map(str, args)], capture_output=True, cwd=ROOT,
                          timeout=120, **kwargs)


@pytest.fixture
def folder(tmp_path) -> Path:
    """Three digits and one file that is not an image, sorted so that the broken one is in the middle."""
    for name, source in (("a.png", "digit_1.png"), ("b.png", "digit_2.png"), ("d.png", "digit_3.png")):
        shutil.copy(SAMPLES / source, tmp_path / name)
    (tmp_path / "c.png").write_bytes(b"not a picture")
    (tmp_path / "notes.txt").write_text("not an image suffix: skipped")
    return tmp_path


def records(stdout: bytes) -> list[dict]:
    return [json.loads(line) for line in stdout.decode().splitlines()]


# --- which files a command reads ------------------------------------------------------------------


def test_a_folder_gives_its_images_sorted_and_makes_a_batch(folder):
    paths, batch = expand_images([str(folder)])
    assert batch and [Path(p).name for p in paths] == ["a.png", "b.png", "c.png", "d.png"]


def test_a_glob_a_file_and_a_missing_file_keep_their_order():
    paths, batch = expand_images([str(SAMPLES / "digit_[12].png"), str(SAMPLES / "shapes.png"), "nope.png"])
    assert batch and [Path(p).name for p in paths] == ["digit_1.png", "digit_2.png", "shapes.png", "nope.png"]


def test_a_folder_of_folders_suggests_a_glob(tmp_path):
    (tmp_path / "inner").mkdir()
    shutil.copy(SAMPLES / "seed_5x5.png", tmp_path / "inner" / "a.png")
    with pytest.raises(CnnError, match=r"for its sub-folders, give a glob: '.*\*\*/\*\.png'"):
        expand_images([str(tmp_path)])
    assert expand_images([str(tmp_path / "**" / "*.png")])[0] == [str(tmp_path / "inner" / "a.png")]


def test_one_file_is_not_a_batch():
    assert expand_images([DIGITS[0]]) == ([DIGITS[0]], False)


def test_stdin_twice_is_a_usage_error():
    from cnncli.errors import UsageError

    with pytest.raises(UsageError, match="stdin can be read once"):
        expand_images(["-", "x.png", "-"])


def test_a_glob_through_a_loop_of_links_runs_each_image_once(capsysbinary, tmp_path):
    """`cnn run 'd/**/*.png'` with `ln -s . d/x` inside: it ends, and each image is run once."""
    folder = tmp_path / "d"
    (folder / "sub").mkdir(parents=True)
    shutil.copy(DIGITS[1], folder / "one.png")
    shutil.copy(DIGITS[2], folder / "sub" / "two.png")
    (folder / "x").symlink_to(".")
    (folder / "sub" / "up").symlink_to("..")
    code, out, err = cnn(capsysbinary, "run", f"{folder}/**/*.png", "--model", "digits", "-f", "jsonl")
    got = [json.loads(line)["image"]["source"] for line in out.decode().splitlines()]
    assert code == 0 and got == [str(folder / "one.png"), str(folder / "sub" / "two.png")], err


@pytest.mark.parametrize("arguments, words", [
    (["{empty}"], "holds no image files"),
    (["{empty}/*.png"], "no file matches"),
])
def test_inputs_that_name_nothing_are_errors(tmp_path, arguments, words):
    with pytest.raises(CnnError, match=words):
        expand_images([argument.format(empty=tmp_path) for argument in arguments])


def test_unique_names_add_the_folder_then_a_number():
    names = unique_names(["x/a.png", "y/a.png", "y/a.jpg", "b.png", "-", "b.png"])
    assert names == ["x_a", "y_a", "y_a_2", "b", "stdin", "b_2"]


# --- a batch ------------------------------------------------------------------------------------


def test_jsonl_is_one_record_per_image_in_order(capsysbinary):
    code, out, err = cnn(capsysbinary, "run", *DIGITS, "--model", "digits", "-f", "jsonl")
    assert code == 0 and err == ""
    got = records(out)
    assert [r["image"]["source"] for r in got] == DIGITS
    assert [r["predictions"][0]["label"] for r in got] == [Path(p).stem[-1] for p in DIGITS]
    assert all(r["format"] == "cnn-trace" and r["version"] == 2 for r in got)


def test_a_broken_image_is_named_keeps_its_place_and_the_batch_goes_on(capsysbinary, folder):
    """The broken image is one stderr line and, in the JSON Lines, a record with its error in its place."""
    code, out, err = cnn(capsysbinary, "run", folder, "--model", "digits", "-f", "jsonl")
    assert code == 1
    got = records(out)
    assert [Path(r["image"]["source"]).name for r in got] == ["a.png", "b.png", "c.png", "d.png"]
    assert ["error" in r for r in got] == [False, False, True, False]
    assert got[2]["error"].endswith("c.png: not a supported image; expected one of PNG, JPEG, BMP, GIF, TIFF, WEBP")
    assert got[2]["format"] == "cnn-trace" and "layers" not in got[2]
    lines = err.splitlines()
    assert len(lines) == 2 and "c.png: not a supported image" in lines[0]
    assert lines[1] == "cnn: batch: 1 of 4 images failed; each is named above"


def test_fail_fast_stops_at_the_broken_image_and_marks_the_rest_not_run(capsysbinary, folder):
    code, out, err = cnn(capsysbinary, "run", folder, "--model", "digits", "-f", "jsonl", "--fail-fast")
    got = records(out)
    assert code == 1 and "--fail-fast" in err and len(err.splitlines()) == 2
    assert ["error" in r for r in got] == [False, False, True, True] and "not run" in got[3]["error"]


def test_two_workers_print_what_one_prints(capsysbinary, folder):
    """The same bytes in the same order: no timing fields unless --timing asks for them."""
    one = cnn(capsysbinary, "run", folder, "-k", "sobel_x", "-f", "jsonl")
    two = cnn(capsysbinary, "run", folder, "-k", "sobel_x", "-f", "jsonl", "--workers", "2")
    assert one[0] == two[0] == 1 and one[2] == two[2]
    assert one[1] == two[1]
    timed = records(cnn(capsysbinary, "run", folder, "-k", "sobel_x", "-f", "jsonl", "--timing")[1])
    assert all("seconds" in layer for record in timed if "layers" in record for layer in record["layers"])


def test_json_for_a_batch_is_one_list(capsysbinary):
    code, out, _ = cnn(capsysbinary, "run", *DIGITS[:3], "--model", "digits", "-f", "json")
    documents = json.loads(out)
    assert code == 0 and [d["image"]["source"] for d in documents] == DIGITS[:3]


def test_csv_is_the_final_map_one_value_a_row(capsysbinary):
    """Header once; rows in channel, row, column order; values equal to the .npy's."""
    code, out, _ = cnn(capsysbinary, "run", SAMPLES / "shapes.png", SAMPLES / "checkerboard.png",
                       "-k", "sobel_x", "-k", "sobel_y", "-f", "csv")
    rows = list(csv.DictReader(io.StringIO(out.decode())))
    code_npy, npy, _ = cnn(capsysbinary, "run", SAMPLES / "shapes.png", "-k", "sobel_x", "-k", "sobel_y",
                           "-f", "npy")
    final = np.load(io.BytesIO(npy))  # (2, 31, 31)
    shapes = [r for r in rows if r["source"].endswith("shapes.png")]
    assert code == code_npy == 0 and len(shapes) == final.size
    assert [float(r["value"]) for r in shapes] == final.reshape(-1).tolist()
    assert shapes[final.shape[2]]["row"] == "1" and shapes[0]["label"] == "sobel_x"
    assert {r["layer"] for r in rows} == {"maxpool1"}


def test_csv_of_a_model_is_one_row_of_predictions_per_image(capsysbinary, folder):
    """source,label,index,probability,score,error: the best class of each image, a failed one in its place."""
    code, out, _ = cnn(capsysbinary, "run", folder, "--model", "digits", "-f", "csv")
    rows = list(csv.DictReader(io.StringIO(out.decode())))
    assert code == 1 and list(rows[0]) == ["source", "label", "index", "probability", "score", "error"]
    assert [Path(r["source"]).name for r in rows] == ["a.png", "b.png", "c.png", "d.png"]
    assert [r["label"] for r in rows] == ["1", "2", "", "3"] and "not a supported image" in rows[2]["error"]
    assert float(rows[0]["probability"]) > 0.9 and rows[0]["error"] == ""
    code, out, _ = cnn(capsysbinary, "run", DIGITS[3], "--model", "digits", "-f", "csv", "--top", "3")
    header, row = out.decode().splitlines()
    assert header == "source,label,index,probability,score,label_2,probability_2,label_3,probability_3,error"


def test_csv_of_a_model_with_values_final_labels_its_classes(capsysbinary):
    code, out, _ = cnn(capsysbinary, "run", DIGITS[3], "--model", "digits", "-f", "csv", "--values", "final")
    rows = list(csv.DictReader(io.StringIO(out.decode())))
    assert [r["label"] for r in rows] == [str(i) for i in range(10)] and rows[0]["row"] == ""
    assert max(rows, key=lambda r: float(r["value"]))["label"] == "3"


def test_npy_of_a_batch_is_stacked_and_npz_keeps_every_layer(capsysbinary):
    code, out, _ = cnn(capsysbinary, "run", *DIGITS[:4], "--model", "digits", "-f", "npy")
    assert code == 0 and np.load(io.BytesIO(out)).shape == (4, 10)
    code, out, _ = cnn(capsysbinary, "run", *DIGITS[:2], "--model", "digits", "-f", "npz")
    with np.load(io.BytesIO(out)) as archive:
        assert "digit_0/softmax" in archive.files and "digit_1/input" in archive.files


def test_npy_of_images_of_different_shapes_says_to_use_npz(capsysbinary):
    code, out, err = cnn(capsysbinary, "run", SAMPLES / "shapes.png", SAMPLES / "seed_5x5.png", "-k", "sobel_x",
                         "--pool", "none", "-f", "npy")
    assert code == 1 and out == b"" and err.count("\n") == 1 and "npz" in err
    assert "seed_5x5.png would give an output of shape (1, 3, 3) but" in err and "shapes.png gives (1, 62, 62)" in err


def test_output_file_of_a_batch_holds_every_image(capsysbinary, tmp_path):
    """-o all.jsonl holds a record per image; -f jsonl names the file's own format, so stdout stays empty,
    and -f json, another format, prints the batch there too."""
    target = tmp_path / "all.jsonl"
    code, out, err = cnn(capsysbinary, "run", *DIGITS[:3], "--model", "digits", "-o", target, "-f", "jsonl")
    assert code == 0 and len(records(target.read_bytes())) == 3 and out == b""
    code, out, err = cnn(capsysbinary, "run", *DIGITS[:3], "--model", "digits", "-o", target, "-f", "json", "--force")
    assert code == 0 and len(records(target.read_bytes())) == 3 and len(json.loads(out)) == 3


def test_inspect_saves_one_folder_per_image(capsysbinary, tmp_path):
    code, out, err = cnn(capsysbinary, "inspect", *DIGITS[:2], "--model", "digits", "--save", tmp_path / "acts",
                         "-f", "jsonl")
    assert code == 0 and len(records(out)) == 2
    for name in ("digit_0", "digit_1"):
        manifest = json.loads((tmp_path / "acts" / name / "manifest.json").read_text())
        assert manifest["image"]["source"].endswith(f"{name}.png")


# --- pipes --------------------------------------------------------------------------------------


def test_stdin_image_to_npy_on_stdout():
    """The issue's pipeline: cat x.png | cnn run - -k sobel_x --format npy -o - > y.npy."""
    data = (SAMPLES / "seed_5x5.png").read_bytes()
    result = process("run", "-", "-k", "vertical_edge", "--format", "npy", "-o", "-", input=data)
    assert result.returncode == 0 and result.stderr == b""
    assert np.load(io.BytesIO(result.stdout)).tolist() == [[[12]]]


def test_head_ends_a_batch_quietly():
    result = subprocess.run(f"{sys.executable} -m cnncli run sample_images -k sobel_x -f jsonl | head -1",
                            shell=True, capture_output=True, cwd=ROOT, timeout=120)
    assert result.returncode == 0 and result.stderr == b"" and len(result.stdout.splitlines()) == 1


def test_piped_tables_have_no_escape_codes():
    result = process("run", SAMPLES / "shapes.png", "-k", "sobel_x", env=dict(os.environ, FORCE_COLOR=""))
    assert result.returncode == 0 and b"\x1b" not in result.stdout and b"channel 0: sobel_x" in result.stdout


def _on_a_terminal(*args: str, env: dict | None = None) -> bytes:
    """stdout of cnn run with stdout a pseudo-terminal."""
    return on_a_terminal([sys.executable, "-m", "cnncli", *args], "stdout", cwd=ROOT,
                         env={**os.environ, "COLUMNS": "100", **(env or {})})[1]


@pytest.mark.parametrize("flag, env", [((), {"NO_COLOR": "1"}), (("--no-color",), {})])
def test_no_color_and_NO_COLOR_drop_colours_on_a_terminal(flag, env):
    args = ("run", "sample_images/shapes.png", "-k", "sobel_x")
    coloured = _on_a_terminal(*args)
    plain = _on_a_terminal(*args, *flag, env=env)
    assert b"\x1b[38;" in coloured or b"\x1b[3" in coloured
    assert b"\x1b[38;" not in plain and b"\x1b[48;" not in plain and b"channel 0: sobel_x" in plain


def test_binary_format_to_a_terminal_is_refused():
    leader, follower = pty.openpty()
    result = subprocess.run([sys.executable, "-m", "cnncli", "run", "sample_images/seed_5x5.png", "-k", "sobel_x",
                             "-f", "npz"], stdout=follower, stderr=subprocess.PIPE, cwd=ROOT, timeout=60)
    os.close(follower)
    os.close(leader)
    assert result.returncode == 1 and b"cnn: stdout: is a terminal" in result.stderr and b"npz" in result.stderr


def _keys(value, path="") -> set[str]:
    """Every key path of a JSON value, lists seen through their first item: {"layers[].name", ...}."""
    if isinstance(value, dict):
        return {p for key, item in value.items() for p in {f"{path}.{key}"} | _keys(item, f"{path}.{key}")}
    if isinstance(value, list) and value and isinstance(value[0], (dict, list)):
        return _keys(value[0], f"{path}[]")
    return set()


def test_json_has_the_layout_readme_documents(capsysbinary):
    """The example under README's "Output for scripts" has exactly the keys a real trace has (a
    conv layer's record standing for every layer), so scripts can trust the documented layout."""
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Output for scripts"):]
    example = json.loads(section[section.index("```json") + 7:section.index("```", section.index("```json") + 7)])
    code, out, _ = cnn(capsysbinary, "run", SAMPLES / "seed_5x5.png", "-k", "vertical_edge", "-f", "json")
    trace = json.loads(out)
    trace["layers"] = [layer for layer in trace["layers"] if layer["type"] == "conv2d"]
    assert code == 0 and _keys(trace) == _keys(example)
    assert (trace["format"], trace["version"]) == (example["format"], example["version"])


def test_progress_bar_only_when_stderr_is_a_terminal():
    """A batch draws its bar (images done of the total) on a terminal's stderr; in a pipe, stderr stays empty."""
    args = [sys.executable, "-m", "cnncli", "run", "sample_images", "-k", "sobel_x", "-f", "jsonl"]
    code, drawn = on_a_terminal(args, cwd=ROOT, env={**os.environ, "COLUMNS": "100"})
    assert code == 0
    count = len(expand_images([str(SAMPLES)])[0])
    assert b"images" in drawn and f"/{count}".encode() in drawn
    piped = subprocess.run(args, capture_output=True, cwd=ROOT, timeout=60)
    assert piped.returncode == 0 and piped.stderr == b""


# --- pictures through the command line --------------------------------------------------------


def _png(data: bytes):
    from PIL import Image

    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def test_run_o_png_writes_the_final_map_as_a_picture(capsysbinary, tmp_path):
    """Three 62x62 channels are drawn 3x each (186 px) in a 2-column grid, so the picture is wider than two tiles."""
    target = tmp_path / "x.png"
    code, out, err = cnn(capsysbinary, "run", SAMPLES / "shapes.png", "-k", "sobel_x", "-k", "sobel_y",
                         "-k", "laplacian_8", "--pool", "none", "-o", target)
    picture = _png(target.read_bytes())
    assert code == 0 and out == b"" and "wrote relu1 (3, 62, 62)" in err  # -o takes the output off stdout
    assert picture.format == "PNG" and picture.mode == "RGB" and picture.width >= 2 * 186 and picture.height >= 2 * 186


def test_format_png_on_stdout_and_one_png_per_image_in_a_folder(capsysbinary, tmp_path):
    code, out, _ = cnn(capsysbinary, "run", DIGITS[3], "--model", "digits", "-f", "png")
    assert code == 0 and _png(out).mode == "RGB"
    code, _, err = cnn(capsysbinary, "run", *DIGITS[:3], "--model", "digits", "-o", f"{tmp_path / 'pics'}/")
    assert code == 0 and sorted(p.name for p in (tmp_path / "pics").iterdir()) == [
        "digit_0.png", "digit_1.png", "digit_2.png"]
    assert all(_png(p.read_bytes()).width > 100 for p in (tmp_path / "pics").iterdir())


def test_png_of_a_batch_on_stdout_is_refused(capsysbinary):
    code, out, err = cnn(capsysbinary, "run", *DIGITS[:2], "--model", "digits", "-f", "png")
    assert code == 2 and out == b"" and "-o FOLDER/" in err


def test_inspect_save_writes_a_picture_per_layer(capsysbinary, tmp_path):
    code, _, _ = cnn(capsysbinary, "inspect", DIGITS[5], "--model", "digits", "--save", tmp_path / "acts")
    manifest = json.loads((tmp_path / "acts" / "manifest.json").read_text())
    assert code == 0
    for layer in manifest["layers"]:
        assert _png((tmp_path / "acts" / layer["picture"]).read_bytes()).mode == "RGB"
        assert layer["picture"] == layer["file"].replace(".npy", ".png")


def test_heatmap_view_shows_a_big_map_whole_within_the_width(capsysbinary):
    """A 512x512 map fits 100 columns as blocks, where the table view elides it."""
    import tempfile

    from PIL import Image

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "big.png"
        Image.fromarray((np.indices((512, 512)).sum(0) % 256).astype(np.uint8)).save(path)
        code, out, _ = cnn(capsysbinary, "run", path, "-k", "sobel_x", "--pool", "none", "--view", "heatmap")
    lines = out.decode().splitlines()
    assert code == 0 and max(len(line) for line in lines) <= 100 and "⋮" not in out.decode()


def test_inspect_no_pictures_writes_only_arrays_and_the_manifest(capsysbinary, tmp_path):
    code, _, _ = cnn(capsysbinary, "inspect", DIGITS[5], "--model", "digits", "--save", tmp_path, "--force",
                     "--no-pictures")
    assert code == 0 and not list(tmp_path.glob("*.png")) and list(tmp_path.glob("*.npy"))
    assert all("picture" not in layer for layer in json.loads((tmp_path / "manifest.json").read_text())["layers"])


# --- from a new user's trial ------------------------------------------------------------------


def test_progress_bar_leaves_stdout_to_the_pipe():
    """With stderr a terminal and stdout a pipe, every record reaches the pipe (Rich's progress
    display would otherwise route stdout onto the terminal)."""
    leader, follower = pty.openpty()
    result = subprocess.run([sys.executable, "-m", "cnncli", "run", "sample_images", "-k", "sobel_x", "-f", "jsonl"],
                            stdout=subprocess.PIPE, stderr=follower, cwd=ROOT, timeout=60)
    os.close(follower)
    os.close(leader)
    assert result.returncode == 0
    assert len(result.stdout.splitlines()) == len(expand_images([str(SAMPLES)])[0])


def test_the_same_image_twice_gets_two_pictures(capsysbinary, tmp_path):
    code, _, err = cnn(capsysbinary, "run", DIGITS[1], DIGITS[1], "--model", "digits", "-o", f"{tmp_path}/")
    assert code == 0, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["digit_1.png", "digit_1_2.png"]


def test_o_folder_with_one_image_writes_into_the_folder(capsysbinary, tmp_path):
    code, _, err = cnn(capsysbinary, "run", DIGITS[1], "--model", "digits", "-o", f"{tmp_path / 'loop'}/")
    assert code == 0 and [p.name for p in (tmp_path / "loop").iterdir()] == ["digit_1.png"]


def test_o_png_file_for_several_images_is_refused(capsysbinary, tmp_path):
    code, out, err = cnn(capsysbinary, "run", *DIGITS[:2], "--model", "digits", "-o", tmp_path / "mix.png")
    assert code == 2 and "name a folder" in err and not (tmp_path / "mix.png").exists()


def test_a_glob_of_one_image_is_still_a_batch(capsysbinary):
    """A script's output has one shape however many files its glob matched."""
    code, out, _ = cnn(capsysbinary, "run", str(SAMPLES / "digit_3*.png"), "--model", "digits", "-f", "npy")
    assert code == 0 and np.load(io.BytesIO(out)).shape == (1, 10)


def test_dev_stdout_is_stdout():
    result = process("run", "sample_images/seed_5x5.png", "-k", "vertical_edge", "-o", "/dev/stdout")
    assert result.returncode == 0 and np.load(io.BytesIO(result.stdout)).tolist() == [[[12]]]


@pytest.mark.parametrize("options, flag", [
    (["--seed", "3"], "--seed"),
    (["--negative-slope", "0.2"], "--negative-slope"),
    (["--pool", "none", "--pool-size", "3"], "--pool-size"),
    (["--pool", "none", "--ceil-mode"], "--ceil-mode"),
    (["--view", "heatmap", "-f", "json"], "--view"),
])
def test_options_that_would_change_nothing_are_refused(capsysbinary, options, flag):
    code, out, err = cnn(capsysbinary, "run", DIGITS[0], "-k", "sobel_x", *options)
    assert code == 2 and out == b"" and flag in err


def test_piped_text_keeps_long_lines_whole_without_trailing_spaces(capsysbinary, tmp_path):
    deep = tmp_path / ("long_folder_name_" * 5)
    deep.mkdir()
    shutil.copy(SAMPLES / "seed_5x5.png", deep / "seed.png")
    code, out, _ = cnn(capsysbinary, "run", deep / "seed.png", "-k", "vertical_edge")
    lines = out.decode().splitlines()
    assert code == 0 and lines[0].startswith(str(deep)) and lines[0].endswith("-> gray float32")
    assert not [line for line in lines if line != line.rstrip()]


def test_csv_writes_inf_where_a_map_overflowed(capsysbinary):
    code, out, _ = cnn(capsysbinary, "run", SAMPLES / "seed_5x5.png", "-k", "[[1e38, 1e38], [1e38, 1e38]]",
                       "--pool", "none", "-f", "csv")
    values = [row["value"] for row in csv.DictReader(io.StringIO(out.decode()))]
    assert code == 0 and "inf" in values and "" not in values


def test_limits_are_immutable_hashable_and_survive_pickling():
    """Readers are cached per (file, limits), and limits travel to worker processes."""
    import pickle

    from cnncli.io.limits import Limits

    limits = Limits(max_memory=5 << 20)
    assert pickle.loads(pickle.dumps(limits)) == limits and hash(limits) == hash(Limits(max_memory=5 << 20))
    assert limits != Limits() and limits.max_pixels == Limits().max_pixels
    with pytest.raises(AttributeError):
        limits.max_memory = 1


def test_a_batch_saved_over_a_single_inspection_needs_force_and_leaves_no_stale_layer(capsysbinary, tmp_path):
    acts = tmp_path / "acts"
    assert cnn(capsysbinary, "inspect", DIGITS[0], "--model", "digits", "--save", acts)[0] == 0
    code, _, err = cnn(capsysbinary, "inspect", *DIGITS[:2], "--model", "digits", "--save", acts)
    assert code == 1 and "earlier inspection" in err and (acts / "manifest.json").exists()
    code, _, err = cnn(capsysbinary, "inspect", *DIGITS[:2], "--model", "digits", "--save", acts, "--force")
    assert code == 0, err
    assert sorted(p.name for p in acts.iterdir()) == ["digit_0", "digit_1"]


def _slow_images(folder: Path, count: int = 24, side: int = 384) -> Path:
    from PIL import Image

    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(count):  # about 0.15 s each as JSON: still running when the signal comes
        Image.fromarray(rng.integers(0, 256, (side, side), dtype=np.uint8)).save(folder / f"{i:03d}.png",
                                                                                 compress_level=1)
    return folder


def _children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _wait_for_workers(pid: int, count: int, seconds: float = 20.0) -> list[int]:
    import time

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        children = _children(pid)
        if len(children) >= count:
            return children
        time.sleep(0.05)
    raise AssertionError(f"no {count} workers under {pid}")


@pytest.mark.parametrize("how, output", [("ctrl-c", "all.jsonl"), ("sigterm", "all.jsonl"),
                                         ("sigterm-group", "all.npz"), ("sigterm-group", "all.npy")])
def test_stopping_a_batch_with_workers_leaves_no_file_and_no_process(tmp_path, how, output):
    """Ctrl-C (to the whole process group, as a terminal sends it), SIGTERM to cnn alone or to its
    whole group (as a service manager does) ends a two-worker batch with 130 or 143 and one line;
    its -o file is never half-written and no process is left."""
    import signal
    import time

    images = _slow_images(tmp_path / "images", 30)
    target = tmp_path / output
    # JSON Lines of fractions on stdout too, for the time they take: images are still running when the signal comes
    child = subprocess.Popen([sys.executable, "-m", "cnncli", "run", str(images), "-k", "gaussian_3x3", "-o",
                              str(target), "--workers", "2", "-f", "jsonl"], stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, cwd=ROOT, start_new_session=True)
    workers = _wait_for_workers(child.pid, 2)
    time.sleep(0.3)
    if how == "ctrl-c":
        os.killpg(child.pid, signal.SIGINT)
    elif how == "sigterm":
        child.send_signal(signal.SIGTERM)
    else:
        os.killpg(child.pid, signal.SIGTERM)
    err = child.communicate(timeout=30)[1].decode()
    assert child.returncode == (130 if how == "ctrl-c" else 143), err
    assert err.splitlines() == ["cnn: interrupted" if how == "ctrl-c" else "cnn: terminated"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["images"]
    for pid in workers:
        assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()
    with pytest.raises(ProcessLookupError):
        os.killpg(child.pid, 0)  # no worker of the group is left running


def test_a_worker_killed_mid_batch_fails_its_image_and_the_batch_goes_on(tmp_path):
    """SIGKILL to a worker (as the OOM killer sends it): the image it ran is one line naming the signal
    and keeps its place (a NaN row), a new worker takes over, and the batch ends with 1, no process left."""
    import signal
    import time

    images = _slow_images(tmp_path / "images", 16)
    target = tmp_path / "all.npy"
    with open(tmp_path / "out.jsonl", "wb") as stdout:
        # gaussian_3x3 gives fractions: their JSON text takes long enough for the kill to find work going on
        child = subprocess.Popen([sys.executable, "-m", "cnncli", "run", str(images), "-k", "gaussian_3x3", "--pool",
                                  "none", "-o", str(target), "--workers", "2", "-f", "jsonl"], stdout=stdout,
                                 stderr=subprocess.PIPE, cwd=ROOT, start_new_session=True)
        victim = _wait_for_workers(child.pid, 2)[0]
        time.sleep(0.3)
        os.kill(victim, signal.SIGKILL)
        err = child.communicate(timeout=60)[1]
    out = (tmp_path / "out.jsonl").read_bytes()
    lines = err.decode().splitlines()
    assert child.returncode == 1, lines
    assert len(lines) == 3 and "the worker process running it was killed by SIGKILL (out of memory?)" in lines[0]
    assert lines[1] == f"wrote npy of 16 images to {target} (1 failure in place)"
    assert lines[2] == "cnn: batch: 1 of 16 images failed; each is named above"
    records = [json.loads(line) for line in out.decode().splitlines()]
    failed = [i for i, r in enumerate(records) if "error" in r]
    stacked = np.load(target)
    assert len(records) == 16 and len(failed) == 1 and stacked.shape == (16, 1, 382, 382)
    assert np.isnan(stacked[failed[0]]).all() and not np.isnan(np.delete(stacked, failed[0], axis=0)).any()
    with pytest.raises(ProcessLookupError):
        os.killpg(child.pid, 0)


def test_a_bad_option_ends_a_batch_as_a_usage_error(capsysbinary):
    """An option the core refuses per image (--top of a kernel run without a dense layer) ends a
    batch with exit 2 and one usage line, as for one image: it is not each image's failure."""
    code, out, err = cnn(capsysbinary, "run", *DIGITS[:3], "-k", "sobel_x", "--top", "2", "-f", "jsonl")
    assert code == 2 and out == b""
    assert err == ("cnn: Invalid value for --top: needs an output vector of class scores: a --model, or "
                   "--dense/--dense-random\n")


def _slow_second(position: int, source: str):
    """A job whose image 2 takes half a second and the others no time."""
    import time

    from cnncli.pool import Outcome

    if position == 2:
        time.sleep(0.5)
    return Outcome({})


def test_the_pool_goes_on_when_the_awaited_result_comes_back_last(monkeypatch):
    """With one image ahead per worker (a window of 4), the other worker runs images 3 to 5 while
    image 2 is slow; image 2 then fills the window at once. The pool sends the next images instead
    of waiting for results it never asked for (it hung there before: a hand-traced case, and 1 run
    in 15 of a real 200-image batch)."""
    import signal

    from cnncli import pool

    monkeypatch.setattr(pool, "AHEAD", 1)

    def stalled(signum, frame):
        raise TimeoutError("the pool stalled")

    previous = signal.signal(signal.SIGALRM, stalled)
    signal.alarm(10)
    try:
        results = list(pool.ordered_results(_slow_second, [str(i) for i in range(12)], 2, str, lambda o, f: o))
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    assert [result.position for result in results] == list(range(12))
    assert all(result.error is None for result in results)
