"""--max-memory bounds the whole run, outputs included: text is written a chunk at a time, arrays
straight from the maps, a batch's stacked file image by image, and a model's input is checked
before the image is resized to it. Each case runs in a child process (tests/peak.py) under the
limit the issue's attack used, and its measured peak must stay within what `cnn` checked against
that limit (its maps, work buffers and output rendering) plus ALLOWANCE."""

import json

import numpy as np
import pytest
from conftest import ROOT
from PIL import Image
from peak import measure_peak

from cnncli.cli import main
from cnncli.io.limits import Limits

ALLOWANCE = 2 << 20  # malloc's free lists and arenas, page rounding (as in test_memory_bound)
WARMUP = ["run", str(ROOT / "sample_images" / "seed_5x5.png"), "-k", "sobel_x", "-f", "json"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return write_files(tmp_path_factory.mktemp("outputs"))


def write_files(path):
    """A 2000x2000 noise image, a folder of six 1000x1000 ones, and a model whose input is 8192x8192."""
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (2000, 2000), dtype=np.uint8)).save(path / "big.png", compress_level=1)
    (path / "batch").mkdir()
    for i in range(6):
        Image.fromarray(rng.integers(0, 256, (1000, 1000), dtype=np.uint8)).save(path / "batch" / f"{i}.png",
                                                                                 compress_level=1)
    model = {"format": "cnn-model", "version": 1, "name": "huge-input", "input": {"size": [8192, 8192]},
             "layers": [{"type": "conv2d", "name": "conv", "out_channels": 1, "kernel_size": 1, "weight": [[[[1.0]]]],
                         "bias": False}]}
    (path / "huge.json").write_text(json.dumps(model))
    return path


def checked_need(argv: list[str]) -> int:
    """The most memory `cnn` checks this command against --max-memory, for any of its steps."""
    seen = []
    real = Limits.check_memory

    def spy(self, estimate, source, what):
        seen.append(estimate)
        return real(self, estimate, source, what)

    Limits.check_memory = spy
    try:
        assert main(argv + ["--max-memory", "1T"]) == 0
    finally:
        Limits.check_memory = real
    return max(seen)


CASES = {  # the attacks on --max-memory and their limits
    "json of a 2000x2000 map": (["big.png", "-k", "sobel_x", "-f", "json"], "120M"),
    "csv of a 2000x2000 map": (["big.png", "-k", "sobel_x", "-f", "csv", "--values", "all"], "120M"),
    "jsonl of the final map": (["big.png", "-k", "sobel_x", "-f", "jsonl", "--values", "final"], "120M"),
    "a picture of the final map": (["big.png", "-k", "sobel_x", "-o", "{out}/final.png", "--force"], "120M"),
    "heatmap tables": (["big.png", "-k", "sobel_x", "--view", "heatmap", "-f", "table"], "200M"),
    "every layer in an npz": (["big.png", "-k", "sobel_x", "-o", "{out}/all.npz", "--force"], "120M"),
    "a batch into one npz": (["batch", "-k", "sobel_x", "-o", "{out}/batch.npz", "--force"], "60M"),
    "a batch into one stacked npy": (["batch", "-k", "sobel_x", "-o", "{out}/batch.npy", "--force"], "60M"),
}


@pytest.mark.parametrize("name", CASES)
def test_outputs_are_written_within_the_memory_limit(name, folder, capsys):
    args, limit = CASES[name]
    argv = ["run", *[str(folder / arg) if arg in ("big.png", "batch") else arg.format(out=folder) for arg in args]]
    need = checked_need(argv)
    capsys.readouterr()
    measured = measure_peak(argv + ["--max-memory", limit], warmup=WARMUP)
    detail = f"{name}: peak {measured.peak / 2**20:.1f} MiB, checked {need / 2**20:.1f} MiB, limit {limit}"
    assert measured.code == 0, measured.stderr
    assert measured.peak <= need + ALLOWANCE, detail
    assert need <= Limits(max_memory=int(limit[:-1]) << 20).max_memory, detail


def test_a_model_input_too_big_is_refused_before_the_image_is_resized(folder):
    """A model whose input is 8192x8192 is refused under 50M from its shapes, before reading the image."""
    measured = measure_peak(["run", str(ROOT / "sample_images" / "digit_1.png"), "-m", str(folder / "huge.json"),
                             "--max-memory", "50M", "-f", "npy"], warmup=WARMUP)
    assert measured.code == 1 and "huge.json: the run's maps and weights" in measured.stderr
    assert "--max-memory" in measured.stderr and measured.stderr.count("\n") == 1
    assert measured.peak < 8 << 20, f"{measured.peak / 2**20:.1f} MiB"
