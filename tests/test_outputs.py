"""Outputs scripts can trust: every image keeps its place in a stacked output, an input is never a
target, an inspection never deletes what this tool did not write, two saves never both succeed,
and overflow, closed pipes and odd terminals are one line, never a crash."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cnncli.cli import main

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "sample_images"
SEED = str(SAMPLES / "seed_5x5.png")


def cnn(capsysbinary, *args) -> tuple[int, bytes, str]:
    code = main([str(arg) for arg in args])
    captured = capsysbinary.readouterr()
    return code, captured.out, captured.err.decode()


def process(*args, **kwargs) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "80"}
    env.pop("CNN_DEBUG", None)
    return subprocess.run([sys.executable, "-m", "cnncli", *map(str, args)], capture_output=True, cwd=ROOT,
                          timeout=120, env={**env, **kwargs.pop("env", {})}, **kwargs)


@pytest.fixture
def batch(tmp_path) -> Path:
    """Four images sorted so that the broken one is third: a, b (digits), c (not an image), d (a digit)."""
    folder = tmp_path / "batch"
    folder.mkdir()
    for name, source in (("a.png", "digit_1.png"), ("b.png", "digit_2.png"), ("d.png", "digit_3.png")):
        shutil.copy(SAMPLES / source, folder / name)
    (folder / "c.png").write_bytes(b"not a picture")
    return folder


def sources(folder: Path) -> list[str]:
    return [str(folder / name) for name in ("a.png", "b.png", "c.png", "d.png")]


# --- every image keeps its place ------------------------------------------------------------------


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_failed_image_is_a_row_of_nan_in_a_stacked_npy(capsysbinary, batch, tmp_path, workers):
    """(4, 10) for four images, the broken third one all NaN; every other row equals its image run alone."""
    target = tmp_path / "out.npy"
    code, out, err = cnn(capsysbinary, "run", batch, "--model", "digits", "-o", target, "-j", workers)
    stacked = np.load(target)
    assert code == 1 and out == b"" and stacked.shape == (4, 10) and stacked.dtype == np.float32
    assert np.isnan(stacked[2]).all() and not np.isnan(stacked[[0, 1, 3]]).any()
    for row, name in ((0, "a.png"), (3, "d.png")):
        cnn(capsysbinary, "run", batch / name, "--model", "digits", "-o", tmp_path / "one.npy", "--force")
        np.testing.assert_array_equal(stacked[row], np.load(tmp_path / "one.npy"))  # the same engine: exact
    assert f"wrote npy of 4 images to {target} (1 failure in place)" in err


def test_failures_before_the_first_success_keep_their_rows(capsysbinary, batch, tmp_path):
    """The header waits for the first array; the NaN rows of the images that failed before it follow it."""
    (batch / "a.png").write_bytes(b"broken too")
    code, out, _ = cnn(capsysbinary, "run", *sources(batch), "--model", "digits", "-f", "npy")
    stacked = np.load(io.BytesIO(out))
    assert code == 1 and stacked.shape == (4, 10)
    assert [bool(np.isnan(row).all()) for row in stacked] == [True, False, True, False]


def test_a_batch_where_every_image_fails_writes_no_npy(capsysbinary, tmp_path):
    for name in ("x.png", "y.png"):
        (tmp_path / name).write_bytes(b"nothing")
    code, out, err = cnn(capsysbinary, "run", tmp_path / "x.png", tmp_path / "y.png", "-k", "sobel_x", "-o",
                         tmp_path / "all.npy")
    assert code == 1 and not (tmp_path / "all.npy").exists() and "2 of 2 images failed" in err


def test_npz_names_the_failed_image_and_stores_the_sources(capsysbinary, batch, tmp_path):
    target = tmp_path / "all.npz"
    code, _, _ = cnn(capsysbinary, "run", batch, "--model", "digits", "-o", target)
    with np.load(target) as archive:
        assert list(archive["sources"]) == sources(batch)
        errors = list(archive["errors"])
        assert errors[2].endswith("c.png: not a supported image; expected one of PNG, JPEG, BMP, GIF, TIFF, WEBP")
        assert errors[:2] + errors[3:] == ["", "", ""]
        assert "a/softmax" in archive.files and "d/input" in archive.files
        assert not any(name.startswith("c/") for name in archive.files)
    assert code == 1


@pytest.mark.parametrize("format", ["json", "csv", "jsonl"])
def test_text_outputs_hold_an_error_record_in_the_failed_images_place(capsysbinary, batch, format):
    code, out, err = cnn(capsysbinary, "run", batch, "-k", "sobel_x", "-f", format)
    text = out.decode()
    if format == "json":
        records = json.loads(text)
    elif format == "jsonl":
        records = [json.loads(line) for line in text.splitlines()]
    else:
        rows = list(csv.DictReader(io.StringIO(text)))
        assert list(rows[0]) == ["source", "layer", "channel", "label", "row", "column", "value", "error"]
        records = [{"image": {"source": source}, **({"error": error} if error else {})}
                   for source, error in dict.fromkeys((r["source"], r["error"]) for r in rows)]
    assert code == 1 and [r["image"]["source"] for r in records] == sources(batch)
    assert ["error" in r for r in records] == [False, False, True, False]
    assert "c.png: not a supported image" in records[2]["error"]


def test_o_file_takes_the_output_off_stdout_unless_format_is_given(capsysbinary, tmp_path):
    code, out, err = cnn(capsysbinary, "run", SEED, "-k", "vertical_edge", "-o", tmp_path / "y.npy")
    assert code == 0 and out == b"" and err.startswith("wrote maxpool1")
    code, out, _ = cnn(capsysbinary, "run", SEED, "-k", "vertical_edge", "-o", tmp_path / "y.jsonl", "-f", "csv")
    assert code == 0 and out.startswith(b"source,layer") and (tmp_path / "y.jsonl").read_bytes().startswith(b"{")


def test_values_choose_which_layers_carry_values(capsysbinary):
    def values_of(*flags):
        trace = json.loads(cnn(capsysbinary, "run", SEED, "-k", "vertical_edge", "-f", "json", *flags)[1])
        return ["values" in layer for layer in trace["layers"]]

    assert values_of() == [True] * 4
    assert values_of("--values", "final") == [False, False, False, True]
    assert values_of("--values", "none") == [False] * 4
    code, _, err = cnn(capsysbinary, "run", SEED, "-k", "vertical_edge", "--values", "none")
    assert code == 2 and "--values" in err


def test_json_is_the_same_bytes_run_to_run_and_timing_is_asked_for(capsysbinary):
    first = cnn(capsysbinary, "run", SEED, "-k", "vertical_edge", "-f", "jsonl")[1]
    assert first == cnn(capsysbinary, "run", SEED, "-k", "vertical_edge", "-f", "jsonl")[1]
    assert b'"seconds"' not in first
    timed = json.loads(cnn(capsysbinary, "run", SEED, "-k", "vertical_edge", "-f", "json", "--timing")[1])
    assert all(layer["seconds"] >= 0 for layer in timed["layers"])


def test_float32_values_are_written_as_their_shortest_text(capsysbinary):
    """0.1 x 1 is float32 0.1: written 0.1, which reads back to the same float32, not 0.10000000149011612."""
    out = cnn(capsysbinary, "run", SEED, "-k", "[[0.1]]", "--pool", "none", "-f", "json")[1]
    trace = json.loads(out)
    assert b"0.10000000149011612" not in out and trace["layers"][1]["values"][0][0][:3] == [0.1, 0.2, 0.3]
    assert b'"max":0.90000004' in out  # 9 x float32(0.1), in its own shortest text
    csv_out = cnn(capsysbinary, "run", SEED, "-k", "[[0.1]]", "--pool", "none", "-f", "csv")[1].decode()
    assert "0,0,0.1," in csv_out and "0.10000000149011612" not in csv_out
    values64 = json.loads(cnn(capsysbinary, "run", SEED, "-k", "[[0.1]]", "--pool", "none", "-f", "json", "--dtype",
                              "float64")[1])["layers"][1]["values"][0][0]
    assert values64[2] == 0.30000000000000004  # float64 keeps float64's own shortest text


# --- an input is never a target -------------------------------------------------------------------


def _pictures(tmp_path) -> Path:
    pics = tmp_path / "pics"
    pics.mkdir()
    for name in ("a.png", "b.png"):
        shutil.copy(SEED, pics / name)
    return pics


def test_o_folder_holding_the_inputs_is_refused_even_with_force(capsysbinary, tmp_path):
    pics = _pictures(tmp_path)
    before = {p.name: p.read_bytes() for p in pics.iterdir()}
    code, _, err = cnn(capsysbinary, "run", pics, "-k", "sobel_x", "-o", f"{pics}/", "--force")
    assert code == 1 and "a.png: is also an input of this run" in err and err.count("\n") == 1
    assert {p.name: p.read_bytes() for p in pics.iterdir()} == before


def test_o_folder_with_a_link_to_an_input_is_refused(capsysbinary, tmp_path):
    pics, out = _pictures(tmp_path), tmp_path / "out"
    out.mkdir()
    (out / "a.png").symlink_to(pics / "a.png")
    code, _, err = cnn(capsysbinary, "run", pics / "a.png", pics / "b.png", "-k", "sobel_x", "-o", f"{out}/",
                       "--force")
    assert code == 1 and "is also an input of this run" in err
    assert (pics / "a.png").read_bytes() == Path(SEED).read_bytes() and not (out / "b.png").exists()


def test_dev_stdin_is_never_written_while_it_is_the_input(tmp_path):
    """`cnn run - ... -o /dev/stdin --force < victim.png`: the victim is the input, so it is refused."""
    victim = tmp_path / "victim.png"
    shutil.copy(SEED, victim)
    with open(victim, "rb") as stdin:
        done = process("run", "-", "-k", "sobel_x", "-f", "npy", "-o", "/dev/stdin", "--force", stdin=stdin)
    assert done.returncode == 1 and b"/dev/stdin: is also an input of this run (as stdin)" in done.stderr
    assert victim.read_bytes() == Path(SEED).read_bytes()


def test_inspect_force_never_deletes_what_a_crafted_manifest_lists(capsysbinary, tmp_path):
    """A manifest naming the input (or any file not named as this tool names layer files) removes nothing."""
    folder = tmp_path / "d"
    folder.mkdir()
    for name in ("photo.png", "07_photo.png"):
        shutil.copy(SEED, folder / name)
    (folder / "notes.txt").write_text("mine")
    crafted = {"format": "cnn-inspect", "version": 2,
               "layers": [{"file": "photo.png"}, {"file": "07_photo.png"}, {"picture": "notes.txt"}]}
    (folder / "manifest.json").write_text(json.dumps(crafted))
    for image in ("photo.png", "07_photo.png"):
        code, _, err = cnn(capsysbinary, "inspect", folder / image, "-k", "sobel_x", "--save", folder, "--force")
        assert code == 0, err
        (folder / "manifest.json").write_text(json.dumps(crafted))
    assert {"photo.png", "07_photo.png", "notes.txt"} <= {p.name for p in folder.iterdir()}
    code, _, err = cnn(capsysbinary, "inspect", folder / "photo.png", folder / "07_photo.png", "-k", "sobel_x",
                       "--save", folder, "--force")
    assert code == 0, err
    assert {"photo.png", "07_photo.png", "notes.txt", "photo", "07_photo"} <= {p.name for p in folder.iterdir()}


def test_inspect_force_removes_only_its_own_stale_layers(capsysbinary, tmp_path):
    """A saved inspection of more layers, saved over with fewer: its extra layer files go, nothing else."""
    folder = tmp_path / "acts"
    assert cnn(capsysbinary, "inspect", SEED, "-k", "vertical_edge", "--dense-random", "2", "--save", folder)[0] == 0
    (folder / "05_mine.txt").write_text("not a layer file")
    assert cnn(capsysbinary, "inspect", SEED, "-k", "vertical_edge", "--save", folder, "--force")[0] == 0
    names = sorted(p.name for p in folder.iterdir())
    assert "04_flatten1.npy" not in names and "05_dense1.png" not in names and "05_mine.txt" in names


def test_a_save_that_meets_another_runs_file_takes_back_what_it_placed(capsysbinary, tmp_path, monkeypatch):
    """Another run's layer file appears after this run checked the folder: exit 1, and only the other's file is left."""
    from cnncli.io import saving as files

    folder = tmp_path / "acts"
    real = files._place_all

    def raced(staged, force, inputs, source):
        (folder / "02_relu1.npy").write_bytes(b"the other run's")
        real(staged, force, inputs, source)

    monkeypatch.setattr(files, "_place_all", raced)
    code, _, err = cnn(capsysbinary, "inspect", SEED, "-k", "vertical_edge", "--save", folder)
    assert code == 1 and "02_relu1.npy appeared while this run was writing" in err
    assert [p.name for p in folder.iterdir()] == ["02_relu1.npy"]


def test_two_saves_at_once_never_both_succeed(tmp_path):
    """Two `cnn inspect X --save D` started together, without --force: at most one says it saved."""
    for attempt in range(3):
        folder = tmp_path / f"acts{attempt}"
        command = [sys.executable, "-m", "cnncli", "inspect", SEED, "-k", "vertical_edge", "--save", str(folder)]
        runs = [subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for _ in range(2)]
        codes = [run.wait(timeout=60) for run in runs]
        errors = [run.stderr.read().decode() for run in runs]
        assert sorted(codes) == [0, 1], errors
        manifest = json.loads((folder / "manifest.json").read_text())
        assert {layer["file"] for layer in manifest["layers"]} <= {p.name for p in folder.iterdir()}


# --- overflow, closed pipes, odd terminals ----------------------------------------------------------


def test_an_overflowing_run_gives_valid_json_with_null_predictions(capsysbinary):
    code, out, err = cnn(capsysbinary, "run", SEED, SEED, "-k", "[[1e38]]", "--dense-random", "3", "--top", "3",
                         "-f", "json")
    traces = json.loads(out)
    assert code == 0 and len(traces) == 2
    assert all(p["probability"] is None for p in traces[0]["predictions"])
    assert traces[0]["layers"][1]["stats"]["max"] is None
    assert err.count(f"cnn: warning: {SEED}: conv1 has infinite or NaN values") == 2


@pytest.mark.parametrize("change", ["zero-variance", "tiny-std"])
def test_a_model_whose_values_overflow_still_gives_json(capsysbinary, tmp_path, change):
    layers = [{"type": "conv2d", "name": "conv", "out_channels": 1, "kernel_size": 1, "weight": [[[[1.0]]]],
               "bias": False},
              {"type": "batchnorm2d", "name": "bn", "eps": 0.0 if change == "zero-variance" else 1e-5,
               "running_mean": [0.0], "running_var": [0.0 if change == "zero-variance" else 1.0],
               "weight": [1.0], "bias": [0.0]},
              {"type": "flatten"}, {"type": "dense", "name": "fc", "out_features": 2,
                                    "weight": [[1.0] * 64, [-1.0] * 64], "bias": [0.0, 0.0]}]
    model = {"format": "cnn-model", "version": 1, "name": "overflows",
             "input": {"size": [8, 8], "std": 1e-320 if change == "tiny-std" else 1.0}, "layers": layers}
    (tmp_path / "m.json").write_text(json.dumps(model))
    code, out, err = cnn(capsysbinary, "run", SAMPLES / "digit_1.png", SAMPLES / "digit_2.png", "-m",
                         tmp_path / "m.json", "-f", "jsonl")
    traces = [json.loads(line) for line in out.decode().splitlines()]
    assert code == 0 and len(traces) == 2 and "warning" in err and "internal error" not in err
    assert traces[1]["predictions"][0]["probability"] is None or traces[1]["predictions"][0]["probability"] >= 0


def test_seed_must_be_a_whole_number_from_zero(capsysbinary):
    code, _, err = cnn(capsysbinary, "run", SEED, "-k", "vertical_edge", "--dense-random", "3", "--seed", "-1")
    assert code == 2 and "--seed" in err and err.count("\n") == 1


def test_an_absurd_columns_value_is_ignored():
    done = process("--help", env={"COLUMNS": "99999999999999999999"})
    assert done.returncode == 0 and b"internal error" not in done.stderr and b"Usage" in done.stdout
    done = process("models", env={"COLUMNS": "99999999999999999999"})
    assert done.returncode == 0 and done.stdout == process("models", env={"COLUMNS": "80"}).stdout


@pytest.mark.parametrize("format", ["json", "jsonl", "csv"])
def test_a_closed_stdout_is_one_line(format):
    done = subprocess.run(f"{sys.executable} -m cnncli run {SEED} -k vertical_edge -f {format} >&-", shell=True,
                          capture_output=True, cwd=ROOT, timeout=60)
    assert done.returncode == 1 and done.stderr.decode().startswith("cnn: stdout: is closed")
    assert done.stderr.count(b"\n") == 1


def test_escape_codes_and_undecodable_bytes_in_file_names_are_shown_not_obeyed(tmp_path):
    folder = tmp_path / "odd"
    folder.mkdir()
    shutil.copy(SEED, folder / "a\x1b[2Jb.png")
    shutil.copy(SEED, os.path.join(os.fsencode(folder), b"\xffx.png"))
    done = process("run", folder, "-k", "vertical_edge")
    assert done.returncode == 0 and b"\x1b" not in done.stdout and b"a\\x1b[2Jb.png: PNG" in done.stdout
    assert b"\\udcffx.png: PNG" in done.stdout
    rows = process("run", folder, "-k", "vertical_edge", "-f", "csv").stdout
    assert b"\xffx.png,maxpool1" in rows  # data keeps the name's own bytes, to join on


def test_workers_are_capped_at_the_images_and_a_multiple_of_the_cores(capsys):
    from cnncli.cli.batch import WORKERS_PER_CORE, worker_count

    cores = os.cpu_count() or 1
    assert worker_count(3000, 2) == 2 and worker_count(2, 100) == 2
    assert worker_count(3000, 100_000) == WORKERS_PER_CORE * cores
    assert f"--workers 3,000 lowered to {WORKERS_PER_CORE * cores}" in capsys.readouterr().err


def test_a_model_of_a_thousand_layers_prints_the_first_and_last_tables(capsysbinary, tmp_path):
    """Tables of every one of 1,001 layers would take seconds and fill screens: 100 are shown, with a note."""
    layers = [{"type": "conv2d", "name": "conv", "out_channels": 1, "kernel_size": 1, "weight": [[[[1.0]]]],
               "bias": False}] + [{"type": "relu"} for _ in range(1000)]
    model = {"format": "cnn-model", "version": 1, "name": "deep", "input": {"size": [8, 8]}, "layers": layers}
    (tmp_path / "deep.json").write_text(json.dumps(model))
    code, out, _ = cnn(capsysbinary, "run", SAMPLES / "digit_1.png", "-m", tmp_path / "deep.json")
    text = out.decode()
    assert code == 0 and "... 902 layers not shown (50 to 951); --full shows every layer" in text
    assert text.count(" (relu) -> ") == 98 and "relu1000 (relu) -> 1x8x8" in text


@pytest.mark.parametrize("kind", ["json", "npz", "csv"])
def test_format_naming_the_files_own_format_writes_the_file_only(capsysbinary, tmp_path, kind):
    """-f json -o out.json (or -f npz with -o out.npz, binary, which stdout refuses on a terminal) is the
    file's format said twice: the file gets it, stdout stays empty. Reference: the same run to stdout."""
    target = tmp_path / f"out.{kind}"
    code, out, err = cnn(capsysbinary, "run", SAMPLES / "shapes.png", "-k", "sobel_x", "-f", kind, "-o", target)
    assert code == 0 and out == b"", err
    _, alone, _ = cnn(capsysbinary, "run", SAMPLES / "shapes.png", "-k", "sobel_x", "-f", kind)
    if kind == "npz":
        written, expected = np.load(target), np.load(io.BytesIO(alone))
        assert sorted(written) == sorted(expected) and all(np.array_equal(written[k], expected[k]) for k in written)
    else:
        assert target.read_bytes() == alone


def test_format_naming_the_file_when_its_name_does_not(capsysbinary, tmp_path):
    """-o scores.txt says no format; -f csv names it, and stdout stays empty."""
    target = tmp_path / "scores.txt"
    code, out, err = cnn(capsysbinary, "run", SAMPLES / "digit_7.png", "--model", "digits", "-f", "csv", "-o", target)
    assert code == 0 and out == b"", err
    assert target.read_text().startswith("source,label,index,probability")
