"""The output side under attack (a tester's trial of this build): closed streams with workers, a
worker dying while the parent writes, readers that leave, stdout that is an input, .npz on broken
streams, crafted manifests, odd targets. Each test is one reported reproduction."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cnncli.cli import main

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "sample_images"
SEED = str(SAMPLES / "seed_5x5.png")
SHAPES = str(SAMPLES / "shapes.png")
DIGITS = sorted(str(p) for p in SAMPLES.glob("digit_*.png"))


def cnn(capsysbinary, *args) -> tuple[int, bytes, str]:
    code = main([str(arg) for arg in args])
    captured = capsysbinary.readouterr()
    return code, captured.out, captured.err.decode()


def shell(command: str, cwd, timeout: float = 60, **kwargs) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "80"}
    env.pop("CNN_DEBUG", None)
    env.update(kwargs.pop("env", {}))
    return subprocess.run(["bash", "-c", f"cnn() {{ {sys.executable} -m cnncli \"$@\"; }}; {command}"], cwd=cwd,
                          capture_output=True, timeout=timeout, env=env, **kwargs)


def noise_images(folder: Path, count: int, side: int = 300) -> Path:
    folder.mkdir(exist_ok=True)
    for i in range(count):
        pixels = np.random.default_rng(i).integers(0, 256, (side, side), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"i{i:02d}.png", compress_level=1)
    return folder


def test_workers_with_stderr_or_stdout_closed_still_write_every_image(tmp_path):
    noise_images(tmp_path / "imgs", 4)
    done = shell("cnn run imgs -k sobel_x -f json --workers 2 2>&- > out.json", tmp_path)
    assert done.returncode == 0 and len(json.loads((tmp_path / "out.json").read_text())) == 4
    done = shell("cnn run imgs -k sobel_x -o o.csv --workers 2 >&-", tmp_path)
    assert done.returncode == 0 and (tmp_path / "o.csv").read_text().count("i03.png") > 0, done.stderr


def test_a_worker_that_dies_while_the_parent_waits_on_a_slow_reader_fails_only_its_image(tmp_path):
    """The parent blocks writing to a slow reader while a worker is killed; sending it the next image
    fails (EPIPE): that must not read as stdout's reader leaving."""
    noise_images(tmp_path / "imgs", 10, 400)
    shutil.copy(SEED, tmp_path / "imgs" / "a00.png")  # the parent's own first image fits the pipe: workers start
    reader = subprocess.Popen(["sh", "-c", "sleep 4; wc -c"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    run = subprocess.Popen([sys.executable, "-m", "cnncli", "run", "imgs", "-k", "sobel_x", "--workers", "2", "-f",
                            "json"], stdout=reader.stdin, stderr=subprocess.PIPE, cwd=tmp_path)
    reader.stdin.close()
    time.sleep(2.5)
    children = Path(f"/proc/{run.pid}/task/{run.pid}/children").read_text().split()
    os.kill(int(children[0]), signal.SIGKILL)
    err = run.communicate(timeout=60)[1].decode()
    reader.wait(timeout=60)
    lines = err.splitlines()
    assert run.returncode == 1 and len(lines) == 2, err
    assert "was killed by SIGKILL" in lines[0] and lines[1].startswith("cnn: batch: 1 of 11 images failed")


def test_a_failed_batch_keeps_an_earlier_single_inspection(capsysbinary, tmp_path):
    """inspect A B --save DIR --force replaces DIR's earlier inspection only once a new one is saved."""
    keep = tmp_path / "keep"
    assert cnn(capsysbinary, "inspect", SEED, "-k", "sobel_x", "--save", keep)[0] == 0
    before = sorted(p.name for p in keep.iterdir())
    (tmp_path / "bad.png").write_bytes(b"junk")
    code, _, _ = cnn(capsysbinary, "inspect", tmp_path / "bad.png", SAMPLES / "README.md", "-k", "sobel_x",
                     "--save", keep, "--force")
    assert code == 1 and sorted(p.name for p in keep.iterdir()) == before
    code, _, _ = cnn(capsysbinary, "inspect", SEED, DIGITS[0], "-k", "sobel_x", "--save", keep, "--force")
    assert code == 0 and sorted(p.name for p in keep.iterdir()) == ["digit_0", "seed_5x5"]


def test_the_file_is_written_whole_when_stdouts_reader_leaves(tmp_path):
    done = shell(f"cnn run {' '.join(DIGITS)} --model digits -o scores.csv -f jsonl | head -1 > /dev/null; "
                 "echo ${PIPESTATUS[0]}", tmp_path)
    assert done.stdout.decode().strip() == "1"
    rows = (tmp_path / "scores.csv").read_text().splitlines()
    assert len(rows) == 11 and rows[-1].startswith(DIGITS[-1])


def test_a_stacked_npy_with_stdin_of_another_shape_leaves_stdout_empty(tmp_path):
    done = shell(f"cnn run {SEED} - -k sobel_x -f npy < {SHAPES} > mixed.npy", tmp_path)
    assert done.returncode == 1 and (tmp_path / "mixed.npy").read_bytes() == b""
    assert done.stderr.count(b"\n") == 1 and b"one .npy stacks outputs of one shape" in done.stderr
    done = shell(f"cnn run {SEED} - -k sobel_x -f npy < {SEED} > same.npy", tmp_path)
    assert done.returncode == 0 and np.load(tmp_path / "same.npy").shape == (2, 1, 1, 1)


def test_stdout_opened_on_an_input_is_refused(tmp_path):
    shutil.copy(SEED, tmp_path / "a.png")
    for name in ("/dev/fd/1", "-"):
        done = shell(f"cnn run a.png -k sobel_x -o {name} -f npy 1<>a.png", tmp_path)
        assert done.returncode == 1 and b"stdout: is a.png, one of this run's inputs" in done.stderr
        assert (tmp_path / "a.png").read_bytes() == Path(SEED).read_bytes()


@pytest.mark.parametrize("command", ["cnn run {shapes} -k sobel_x -f npz | head -c 100 > /dev/null",
                                     "cnn run {shapes} -k sobel_x -o /dev/full -f npz > /dev/null",
                                     "cnn run {shapes} {seed} -k sobel_x -o /dev/full -f npz > /dev/null"])
def test_npz_on_a_broken_stream_is_one_line_at_most(tmp_path, command):
    done = shell(command.format(shapes=SHAPES, seed=SEED), tmp_path)
    err = done.stderr.decode()
    assert "Traceback" not in err and "Exception ignored" not in err and err.count("\n") <= 1, err
    if "/dev/full" in command:
        assert err.startswith("cnn: /dev/full: cannot write: No space left on device")


def test_npz_into_dev_null_and_into_a_pipe_by_its_fd_path(tmp_path):
    done = shell(f"cnn run {SHAPES} -k sobel_x -o /dev/null -f npz > /dev/null", tmp_path)
    assert done.returncode == 0, done.stderr
    done = shell(f"cnn run {SHAPES} -k sobel_x -f npz -o /dev/fd/3 3>&1 > /dev/null | wc -c", tmp_path)
    assert done.returncode == 0 and int(done.stdout) > 1000, done.stderr
    done = shell(f"cnn run {SEED} -k sobel_x -o >(wc -c > count.txt) -f npy; sleep 0.5", tmp_path)
    assert done.returncode == 0 and int((tmp_path / "count.txt").read_text()) == 132, done.stderr


def test_npz_member_names_are_safe_whatever_the_file_and_layer_names(capsysbinary, tmp_path):
    odd = os.path.join(os.fsencode(tmp_path), b"x\xff.png")
    shutil.copy(SEED, odd)
    model = {"format": "cnn-model", "version": 1, "name": "evil", "input": {"size": [4, 4]},
             "layers": [{"name": "../../../tmp/x", "type": "relu"}, {"name": "/abs", "type": "relu"}]}
    (tmp_path / "evil.json").write_text(json.dumps(model))
    code, _, err = cnn(capsysbinary, "run", os.fsdecode(odd), SEED, "-m", tmp_path / "evil.json", "-o",
                       tmp_path / "n.npz")
    assert code == 0, err
    names = zipfile.ZipFile(tmp_path / "n.npz").namelist()
    assert all(part not in ("", ".", "..") for name in names for part in name.split("/")), names
    assert "x_udcff/_abs.npy" in names and "x_udcff/_.._.._.._tmp_x.npy" in names
    with np.load(tmp_path / "n.npz") as archive:
        assert list(archive["sources"]) == [os.fsdecode(odd), SEED]


def test_a_crafted_manifest_that_nests_deep_or_is_a_fifo_or_huge_is_not_ours(capsysbinary, tmp_path):
    deep, fifo, huge = tmp_path / "deep", tmp_path / "fifo", tmp_path / "huge"
    for folder in (deep, fifo, huge):
        folder.mkdir()
    (deep / "manifest.json").write_text("[" * 100_000 + "]" * 100_000)
    os.mkfifo(fifo / "manifest.json")
    names = ",".join(f'"{i:08d}_x.npy":"0"' for i in range(300_000))
    (huge / "manifest.json").write_text('{"format":"cnn-inspect","sha256":{' + names + "}}")
    for folder in (deep, fifo, huge):
        started = time.monotonic()
        code, _, err = cnn(capsysbinary, "inspect", SEED, "-k", "sobel_x", "--save", folder, "--force",
                           "--max-memory", "100M")
        assert code == 0 and time.monotonic() - started < 10, err


def test_debug_with_stderr_closed_leaves_stdout_to_the_data(tmp_path):
    done = shell(f"CNN_DEBUG=1 cnn run {SEED} {SAMPLES / 'README.md'} -k sobel_x -f jsonl 2>&-", tmp_path)
    assert b"Traceback" not in done.stdout and len(done.stdout.splitlines()) == 2


def test_top_is_clamped_to_the_classes_and_values_none_keeps_the_predictions(capsysbinary):
    code, out, _ = cnn(capsysbinary, "run", *DIGITS[:2], "--model", "digits", "-f", "csv", "--top", "3000000")
    header = out.decode().splitlines()[0].split(",")
    assert code == 0 and header[-3:] == ["label_10", "probability_10", "error"]
    code, out, _ = cnn(capsysbinary, "run", *DIGITS[:2], "--model", "digits", "-f", "csv", "--values", "none")
    assert code == 0 and len(out.decode().splitlines()) == 3
    code, _, err = cnn(capsysbinary, "run", SEED, "-k", "sobel_x", "-f", "csv", "--values", "none")
    assert code == 2 and "--values" in err


def test_a_long_output_name_gets_a_temporary_name_that_fits(capsysbinary, tmp_path):
    target = tmp_path / ("x" * 240 + ".npy")
    code, _, err = cnn(capsysbinary, "run", SEED, "-k", "sobel_x", "-o", target)
    assert code == 0 and target.exists(), err


def test_a_bad_kernel_in_a_batch_is_one_line_before_any_output(capsysbinary, tmp_path):
    target = tmp_path / "k.json"
    target.write_text("keep me")
    code, out, err = cnn(capsysbinary, "run", *DIGITS[:3], "-k", "[[1,2],[3]]", "-o", target, "--force")
    assert code == 1 and err.count("\n") == 1 and "rows must match" in err
    assert target.read_text() == "keep me" and out == b""


def test_binary_output_to_a_terminal_path_is_refused():
    import pty

    leader, follower = pty.openpty()
    try:
        done = subprocess.run([sys.executable, "-m", "cnncli", "run", SEED, "-k", "sobel_x", "-o",
                               os.ttyname(follower)], capture_output=True, timeout=60)
        assert done.returncode == 1 and b"is a terminal" in done.stderr
    finally:
        os.close(leader)
        os.close(follower)


def test_an_inspection_meeting_a_fifo_of_its_own_names_is_refused_before_the_work(capsysbinary, tmp_path):
    os.mkfifo(tmp_path / "01_conv1.npy")
    code, _, err = cnn(capsysbinary, "inspect", SEED, "-k", "sobel_x", "--save", tmp_path)
    assert code == 1 and "01_conv1.npy: already exists; --force replaces it" in err


@pytest.mark.parametrize("args, code, words", [
    (["-o", "{tmp}/out.npy"], 1, "out.npy: is a folder"),
    (["-o", ""], 2, "--output"),
    (["--view", "heatmap", "-o", "{tmp}/x.npy"], 2, "-o without --format"),
    (["-o", "{tmp}/x.npy", "--timing"], 2, "--timing"),
])
def test_odd_output_options_are_one_clear_line(capsysbinary, tmp_path, args, code, words):
    (tmp_path / "out.npy").mkdir()
    got, _, err = cnn(capsysbinary, "run", SEED, "-k", "sobel_x", *[a.format(tmp=tmp_path) for a in args])
    assert got == code and words in err and err.count("\n") == 1, err


def test_closed_stdin_and_float64_overflow_say_what_they_are(tmp_path):
    done = shell("cnn run - -k sobel_x <&-", tmp_path)
    assert done.returncode == 1 and done.stderr.startswith(b"cnn: stdin: is closed")
    done = shell(f"cnn run {SEED} -k '[[1e308]]' --dtype float64 -f json > /dev/null", tmp_path)
    assert b"(overflow in float64; smaller weights may help)" in done.stderr


def test_a_columns_value_too_narrow_for_any_table_is_ignored():
    """COLUMNS=1 would leave no room for a single value: it prints as if COLUMNS were unset (80 in a pipe)."""
    def tables(columns: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "cnncli", "run", SEED, "-k", "vertical_edge"], capture_output=True,
                              env={**os.environ, "COLUMNS": columns}, timeout=60)

    narrow = tables("1")
    assert narrow.returncode == 0 and narrow.stdout == tables("80").stdout


def test_interrupting_a_batch_to_a_folder_of_pictures_keeps_only_whole_pictures(tmp_path):
    noise_images(tmp_path / "imgs", 40, 600)
    run = subprocess.Popen([sys.executable, "-m", "cnncli", "run", "imgs", "-k", "sobel_x", "-o", "pics/"],
                           cwd=tmp_path, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and len(list((tmp_path / "pics").glob("*.png")) if (tmp_path / "pics").exists()
                                               else []) < 2:
        time.sleep(0.05)
    run.send_signal(signal.SIGINT)
    assert run.communicate(timeout=60)[1] == b"cnn: interrupted\n"
    for picture in (tmp_path / "pics").iterdir():
        assert not picture.name.startswith(".") and Image.open(picture).size[0] > 0
