"""--max-memory bounds what a run allocates: measured in a child process, the peak stays within a
limit set to the run's own estimate, and a limit one byte under the estimate refuses the run.

Each case is `cnn run IMAGE ... -o OUT.npy -f npy` (stdout to /dev/null). The limit M is the
estimate `Network.memory_estimate` gives for that run, read from the same command line: the
lowest limit that admits the run. Checked:

- the engine's part: the peak while the forward pass runs (the image, the network, the maps,
  every work buffer), above the RSS before the command, is at most M + ALLOWANCE;
- the whole run: at most M + ALLOWANCE + the .npy written (the margin a writer may take). A
  --model run reads its .npz whole and holds a member's bytes beside its array before the engine
  starts; that reading is checked on its own (inputs.load_npz), and M is the larger of the two;
- with M - 1 the run stops before the work: exit 1 and one `cnn: ... --max-memory` line.
"""

import json
from dataclasses import dataclass, field

import numpy as np
import pytest
from conftest import ROOT
from PIL import Image
from peak import measure_peak

from cnncli.cli import main
from cnncli.engine.graph import Network

# What the process may hold beyond the estimate: malloc's free lists and arenas (memory freed by
# one layer and not yet reused by the next), page rounding, and the Python objects the command
# makes around the engine (options, kernels, the model file's parse, messages). None of these
# cases has needed it so far: their forward passes peaked at 0.67-0.93 of the estimate.
ALLOWANCE = 2 << 20
ENGINE = "cnncli.engine.graph:Network.forward"
DILATED = '{"weights": [[1,0,1],[0,1,0],[1,0,1]], "dilation": 40}'
DILATED_BANK = '{"weights": [[[1,0,1],[0,1,0],[1,0,1]], [[0,1,0],[1,0,1],[0,1,0]], [[1,1,1],[1,0,1],[1,1,1]]]}'
FAR = '{"weights": [[[1,0,1],[0,1,0],[1,0,1]], [[0,1,0],[1,0,1],[0,1,0]], [[1,1,1],[1,0,1],[1,1,1]]], "dilation": 1000}'
PHOTO = str(ROOT / "sample_images" / "photo_camera.png")  # 192 x 192 gray


@dataclass(frozen=True)
class Case:
    name: str
    image: str  # a sample image's path, or the name of an image the fixture makes
    args: tuple = ()
    model: dict | None = field(default=None, hash=False)  # a model file written for the case


def _relus(count: int) -> list:
    return [{"type": "relu", "name": f"relu{i}"} for i in range(count)]


CASES = [
    Case("dilated conv, taps", PHOTO, ("-k", DILATED, "--padding", "300")),
    Case("dilated conv, gemm", PHOTO, ("-k", DILATED_BANK, "--dilation", "40", "--padding", "300")),
    Case("dilated conv, reflect, taps", PHOTO,
         ("-k", DILATED, "--dilation", "20", "--padding", "191", "--padding-mode", "reflect")),
    Case("dilated conv, circular, gemm", PHOTO,
         ("-k", DILATED_BANK, "--dilation", "40", "--padding", "150", "--padding-mode", "circular")),
    Case("dilation 1000, gemm per kernel row", "gray256", ("-k", FAR, "--padding", "1100")),
    Case("dilated conv, stride 2", PHOTO, ("-k", DILATED, "--padding", "300", "--stride", "2")),
    Case("rgb 3->8, 4-D kernel", "rgb512", ("-k", "rgb8", "--color", "rgb", "--padding", "same")),
    Case("leaky_relu on a big map", "gray512", ("-k", "sharpen", "--padding", "256", "--activation", "leaky_relu")),
    Case("sigmoid on a big map", "gray512", ("-k", "sharpen", "--padding", "256", "--activation", "sigmoid")),
    Case("big avgpool with padding", "gray512", model={
        "input": {"size": [512, 512], "scale": "raw"},
        "layers": [{"type": "conv2d", "name": "conv1", "out_channels": 4, "kernel_size": 3, "padding": 1},
                   {"type": "avgpool2d", "name": "avg1", "kernel_size": 9, "stride": 1, "padding": 4},
                   {"type": "maxpool2d", "name": "max1", "kernel_size": 3, "stride": 2, "padding": 1,
                    "ceil_mode": True}]}),
    Case("batch norm and dense", "gray256", model={
        "input": {"size": [128, 128], "scale": "unit"},
        "layers": [{"type": "conv2d", "name": "conv1", "out_channels": 8, "kernel_size": 3, "padding": 1},
                   {"type": "batchnorm2d", "name": "bn1"}, {"type": "relu", "name": "relu1"},
                   {"type": "maxpool2d", "name": "pool1", "kernel_size": 2}, {"type": "flatten", "name": "flat"},
                   {"type": "dense", "name": "fc1", "out_features": 64}, {"type": "batchnorm1d", "name": "bn2"},
                   {"type": "tanh", "name": "tanh1"}, {"type": "dense", "name": "fc2", "out_features": 10},
                   {"type": "softmax", "name": "softmax"}]}),
    Case("2,000 relu layers", "gray64", model={
        "input": {"size": [64, 64], "scale": "raw"},
        "layers": [{"type": "conv2d", "name": "conv1", "out_channels": 1, "kernel_size": 3, "padding": 1}]
                  + _relus(2000)}),
]


def _weights(document: dict) -> dict:
    """Seeded float32 weights for every conv, dense and batch norm layer of a model document."""
    rng = np.random.default_rng(0)
    arrays, shape = {}, (1, *document["input"]["size"])
    for layer in document["layers"]:
        name, kind = layer["name"], layer["type"]
        if kind == "conv2d":
            k = layer["kernel_size"]
            arrays[f"{name}.weight"] = rng.standard_normal((layer["out_channels"], shape[0], k, k)) / (3 * k)
            arrays[f"{name}.bias"] = rng.standard_normal(layer["out_channels"])
            shape = (layer["out_channels"], *shape[1:])
        elif kind.startswith("batchnorm"):
            arrays.update({f"{name}.running_mean": rng.standard_normal(shape[0]),
                           f"{name}.running_var": rng.uniform(0.5, 2, shape[0]),
                           f"{name}.weight": rng.standard_normal(shape[0]),
                           f"{name}.bias": rng.standard_normal(shape[0])})
        elif kind == "maxpool2d" and layer["kernel_size"] == 2:
            shape = (shape[0], shape[1] // 2, shape[2] // 2)
        elif kind == "flatten":
            shape = (int(np.prod(shape)),)
        elif kind == "dense":
            arrays[f"{name}.weight"] = rng.standard_normal((layer["out_features"], shape[0])) / np.sqrt(shape[0])
            arrays[f"{name}.bias"] = rng.standard_normal(layer["out_features"])
            shape = (layer["out_features"],)
    return {key: value.astype(np.float32) for key, value in arrays.items()}


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return write_files(tmp_path_factory.mktemp("memory"))


def write_files(path):
    """Noise images, the 3->8 kernel file and each case's model file, in ``path``."""
    rng = np.random.default_rng(0)
    for name, size, mode in [("gray64", 64, "L"), ("gray256", 256, "L"), ("gray512", 512, "L"), ("rgb512", 512, "RGB")]:
        pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
        Image.fromarray(pixels).convert(mode).save(path / f"{name}.png")
    weights = (rng.standard_normal((8, 3, 3, 3)) / 9).round(3).tolist()
    (path / "rgb8.json").write_text(json.dumps({"name": "rgb8", "weights": weights}))
    for case in CASES:
        if case.model is not None:
            document = {"format": "cnn-model", "version": 1, "weights": f"{_slug(case)}.npz", **case.model}
            (path / f"{_slug(case)}.json").write_text(json.dumps(document))
            np.savez(path / f"{_slug(case)}.npz", **_weights(document))
    return path


def _slug(case: Case) -> str:
    return "".join(c if c.isalnum() else "_" for c in case.name)


def argv_of(case: Case, folder) -> list[str]:
    image = case.image if "/" in case.image else str(folder / f"{case.image}.png")
    args = ["-m", str(folder / f"{_slug(case)}.json")] if case.model is not None else list(case.args)
    args = [str(folder / "rgb8.json") if arg == "rgb8" else arg for arg in args]
    return ["run", image, *args, "-o", str(folder / f"{_slug(case)}.npy"), "-f", "npy", "--force"]


class _Estimated(BaseException):
    """Stops a command at its memory check, once the estimate is known."""


def estimate_of(argv: list[str]) -> int:
    """The estimate that `cnn` checks against --max-memory for this command line (its messages go
    to stderr: capture them)."""
    seen = []
    real = Network.memory_estimate

    def spy(self, shape, itemsize, keep_maps=True):
        seen.append(real(self, shape, itemsize, keep_maps))
        raise _Estimated

    Network.memory_estimate = spy
    try:
        main(argv + ["--max-memory", "1T"])
    finally:
        Network.memory_estimate = real
    assert len(seen) == 1, "the command never reached its memory check"
    return seen[0]


def weights_need(case: Case, folder) -> int:
    """What reading a model case's weights file needs (inputs.load_npz's own check): the file's
    bytes, every array, and the largest member twice; 0 for a --kernel case."""
    if case.model is None:
        return 0
    import zipfile

    path = folder / f"{_slug(case)}.npz"
    sizes = [member.file_size for member in zipfile.ZipFile(path).infolist()]
    return path.stat().st_size + sum(sizes) + max(sizes)


def measure(case: Case, folder) -> dict:
    """Run the case under --max-memory set to its estimate (or to what reading its weights needs, if
    more), in a child; the peaks and sizes, in bytes."""
    argv = argv_of(case, folder)
    estimate = max(estimate_of(argv), weights_need(case, folder))
    warmup = ["run", str(ROOT / "sample_images" / "seed_5x5.png"), "-k", "sobel_x", "-o",
              str(folder / "warmup.npy"), "-f", "npy", "--force"]
    measured = measure_peak(argv + ["--max-memory", str(estimate)], warmup=warmup, marks=[ENGINE])
    output = folder / f"{_slug(case)}.npy"
    return {"code": measured.code, "stderr": measured.stderr, "estimate": estimate,
            "engine": measured.marks.get(ENGINE), "whole": measured.peak,
            "output": output.stat().st_size if output.exists() else 0}


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_measured_peak_stays_within_the_estimate(case, folder, capsys):
    """The run, limited to its own estimate, peaks within it (plus ALLOWANCE, and the writer's copy)."""
    result = measure(case, folder)
    capsys.readouterr()
    assert result["code"] == 0, result["stderr"]
    estimate, engine, whole, written = result["estimate"], result["engine"], result["whole"], result["output"]
    detail = (f"{case.name}: engine {engine / 2**20:.2f} MiB, whole {whole / 2**20:.2f} MiB, "
              f"estimate {estimate / 2**20:.2f} MiB, output {written / 2**20:.2f} MiB")
    assert engine <= estimate + ALLOWANCE, detail
    assert whole <= estimate + ALLOWANCE + written, detail


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_a_byte_under_the_estimate_refuses_the_run(case, folder, monkeypatch, capsys):
    """--max-memory one byte under the estimate: exit 1, one line naming --max-memory, no output file."""
    argv = argv_of(case, folder)
    estimate = estimate_of(argv)
    capsys.readouterr()
    if weights_need(case, folder) > estimate:  # refused while reading its weights, before the network's check
        estimate = weights_need(case, folder)
        monkeypatch.setattr(Network, "memory_estimate", lambda self, *a: 0)  # only the weights' check counts
    output = folder / f"{_slug(case)}.npy"
    output.unlink(missing_ok=True)
    checked = []
    real = Network.memory_estimate
    monkeypatch.setattr(Network, "memory_estimate", lambda self, *a: checked.append(1) or real(self, *a))
    code = main(argv + ["--max-memory", str(estimate - 1)])
    captured = capsys.readouterr()
    assert code == 1
    assert checked or weights_need(case, folder), "refused before the forward pass's check (the image's decoding "\
                                                  "estimate is larger)"
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("cnn: ") and "--max-memory" in lines[0], captured.err
    assert captured.out == "" and not output.exists()
