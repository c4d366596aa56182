"""ResNet-18 through cnncli's engine, side by side with PyTorch's eval forward (issue 11).

Run from the repository root:

    python benchmarks/resnet18.py                                  # threads 2 and 1, best of 10
    python benchmarks/resnet18.py --threads 2 --repeat 20
    python benchmarks/resnet18.py --torch-python /path/to/venv/bin/python
    python benchmarks/resnet18.py --layers                         # our slowest layers too

A ResNet-18-shaped model file (version 2: conv 7x7/2 + bn + relu + max-pool 3x3/2 pad 1, four
stages of two BasicBlocks with 64/128/256/512 channels, stride-2 blocks with a 1x1 conv + bn
shortcut, residual ``add`` layers, global average pool, flatten, dense 1000) and a .npz of random
seeded weights under PyTorch's state_dict names are written to a temporary folder at run time
(45 MB: never committed). The same network is built in PyTorch from the same arrays (a
hand-written BasicBlock; torchvision is not needed).

Timed, each side in its own fresh process (PyTorch's OpenMP threads keep spinning after its calls
and would slow whatever runs next), with the same thread count for both (OpenBLAS's and OpenMP's
threads set through the environment, and torch.set_num_threads):

1. one 224x224 RGB image: ``Network.forward``, which keeps every map as ``cnn run`` does, against
   PyTorch's eval forward under ``torch.no_grad()``. Target: at most 1.5x.
2. a batch of 8: ``Network.predict`` against the same PyTorch forward on the batch (informational).

Each process times the best of N calls after one warm-up call; several processes a side run
alternately (``--rounds``), and the best of each side counts, with the range beside it. The
logits must agree within 1e-3 of the largest logit's magnitude (float32 both sides). PyTorch
runs with the interpreter given by ``--torch-python`` (default: this one, when it imports torch).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
STAGES = ((64, 1), (128, 2), (256, 2), (512, 2))  # channels, stride of each stage's first block
TARGET = 1.5
TOLERANCE = 1e-3  # largest logit difference, relative to the largest logit


# --- The model: the file for cnn, the arrays for both -------------------------------------------


def conv_bn(layers: list, shapes: dict, name: str, bn: str, c_in: int, c_out: int, k: int, stride: int,
            reads: str | None, relu: str | None) -> str:
    """Append conv (no bias) + batch norm (+ relu) to ``layers``; return the name of the last one."""
    conv = {"name": name, "type": "conv2d", "out_channels": c_out, "kernel_size": k, "stride": stride,
            "padding": k // 2, "bias": False}
    if reads is not None:
        conv["inputs"] = [reads]
    layers += [conv, {"name": bn, "type": "batchnorm2d"}]
    shapes[f"{name}.weight"] = (c_out, c_in, k, k)
    for key in ("weight", "bias", "running_mean", "running_var"):
        shapes[f"{bn}.{key}"] = (c_out,)
    if relu:
        layers.append({"name": relu, "type": "relu"})
        return relu
    return bn


def resnet18_layers() -> tuple[list[dict], dict[str, tuple[int, ...]]]:
    """The model file's layers, and the shape of every array under its state_dict name."""
    layers: list[dict] = []
    shapes: dict[str, tuple[int, ...]] = {}
    last = conv_bn(layers, shapes, "conv1", "bn1", 3, 64, 7, 2, None, "relu")
    layers.append({"name": "maxpool", "type": "maxpool2d", "kernel_size": 3, "stride": 2, "padding": 1})
    last, channels = "maxpool", 64
    for stage, (width, stride) in enumerate(STAGES, start=1):
        for block in range(2):
            p = f"layer{stage}.{block}"
            s = stride if block == 0 else 1
            inner = conv_bn(layers, shapes, f"{p}.conv1", f"{p}.bn1", channels, width, 3, s, None, f"{p}.relu1")
            out = conv_bn(layers, shapes, f"{p}.conv2", f"{p}.bn2", width, width, 3, 1, inner, None)
            shortcut = last
            if s != 1 or channels != width:
                shortcut = conv_bn(layers, shapes, f"{p}.downsample.0", f"{p}.downsample.1", channels, width, 1, s,
                                   last, None)
            layers += [{"name": f"{p}.add", "type": "add", "inputs": [out, shortcut]},
                       {"name": f"{p}.relu2", "type": "relu"}]
            last, channels = f"{p}.relu2", width
        # the first conv of a block reads the block's input: the layer before it in the list
        # (maxpool or the previous block's relu2), so only the shortcut and conv2 name inputs
    layers += [{"name": "avgpool", "type": "globalavgpool2d"}, {"name": "flatten", "type": "flatten"},
               {"name": "fc", "type": "dense", "out_features": 1000}]
    shapes["fc.weight"], shapes["fc.bias"] = (1000, 512), (1000,)
    return layers, shapes


def resnet18_weights(seed: int = 0) -> dict[str, np.ndarray]:
    """Random float32 weights: He-scaled convs, batch norm statistics near (0, 1), a small dense."""
    rng = np.random.default_rng(seed)
    _, shapes = resnet18_layers()
    weights = {}
    for name, shape in shapes.items():
        if name.endswith("running_var"):
            value = rng.uniform(0.5, 1.5, shape)
        elif name.endswith("running_mean") or (len(shape) == 1 and name.endswith("bias")):
            value = 0.1 * rng.standard_normal(shape)
        elif len(shape) == 1:  # a batch norm's scale
            value = rng.uniform(0.5, 1.0, shape)
        else:
            value = rng.standard_normal(shape) * np.sqrt(2.0 / np.prod(shape[1:]))
        weights[name] = value.astype(np.float32)
    return weights


def write_model(folder: Path, seed: int = 0) -> Path:
    """resnet18.json and resnet18.npz in ``folder``; the JSON's path."""
    layers, _ = resnet18_layers()
    np.savez(folder / "resnet18.npz", **resnet18_weights(seed))
    document = {"format": "cnn-model", "version": 2, "name": "resnet18",
                "input": {"size": [224, 224], "color": "rgb"}, "weights": "resnet18.npz", "layers": layers}
    path = folder / "resnet18.json"
    path.write_text(json.dumps(document))
    return path


def inputs(seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """One (3, 224, 224) image and a batch of 8, float32, roughly normalised."""
    rng = np.random.default_rng(seed)
    batch = rng.standard_normal((8, 3, 224, 224), dtype=np.float32)
    return batch[0].copy(), batch


# --- The timed children --------------------------------------------------------------------------


def best_ms(call, repeat: int) -> tuple[float, object]:
    result = call()  # warm-up
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return min(times) * 1e3, result


def child_ours(folder: Path, repeat: int, layers: bool) -> dict:
    sys.path.insert(0, str(REPO))
    from cnncli.io.modelfile import load_model

    model = load_model(str(folder / "resnet18.json"))
    network = model.network
    image, batch = inputs()
    forward_ms, steps = best_ms(lambda: network.forward(image), repeat)
    predict_ms, out = best_ms(lambda: network.predict(batch), repeat)
    np.save(folder / "ours_forward.npy", steps[-1].output)
    np.save(folder / "ours_predict.npy", out)
    result = {"forward_ms": forward_ms, "predict_ms": predict_ms}
    if layers:  # per layer, the best of a few forwards
        runs = [network.forward(image) for _ in range(5)]
        seconds = np.min([[step.seconds for step in run[1:]] for run in runs], axis=0)
        result["layers"] = [(step.name, step.type, list(step.output.shape), float(ms * 1e3))
                            for step, ms in zip(runs[0][1:], seconds)]
    return result


def child_torch(folder: Path, repeat: int, threads: int) -> dict:
    import torch
    from torch import nn

    torch.set_num_threads(threads)

    class BasicBlock(nn.Module):
        def __init__(self, c_in: int, c_out: int, stride: int):
            super().__init__()
            self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(c_out)
            self.relu = nn.ReLU(inplace=True)
            self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(c_out)
            self.downsample = None
            if stride != 1 or c_in != c_out:
                self.downsample = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

        def forward(self, x):
            out = self.relu(self.bn1(self.conv1(x)))
            out = self.bn2(self.conv2(out))
            return self.relu(out + (x if self.downsample is None else self.downsample(x)))

    class ResNet18(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
            self.bn1 = nn.BatchNorm2d(64)
            self.relu = nn.ReLU(inplace=True)
            self.maxpool = nn.MaxPool2d(3, 2, 1)
            channels = 64
            for stage, (width, stride) in enumerate(STAGES, start=1):
                setattr(self, f"layer{stage}", nn.Sequential(BasicBlock(channels, width, stride),
                                                             BasicBlock(width, width, 1)))
                channels = width
            self.avgpool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(512, 1000)

        def forward(self, x):
            x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
            x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
            return self.fc(torch.flatten(self.avgpool(x), 1))

    net = ResNet18()
    stored = np.load(folder / "resnet18.npz")
    missing, unexpected = net.load_state_dict({k: torch.from_numpy(stored[k]) for k in stored.files}, strict=False)
    if unexpected or [k for k in missing if not k.endswith("num_batches_tracked")]:
        raise SystemExit(f"state_dict mismatch: missing {missing}, unexpected {unexpected}")
    net.eval()
    image, batch = inputs()
    one, many = torch.from_numpy(image[None]), torch.from_numpy(batch)

    def run(x):
        with torch.no_grad():
            return net(x).numpy()

    forward_ms, logits = best_ms(lambda: run(one), repeat)
    predict_ms, out = best_ms(lambda: run(many), repeat)
    np.save(folder / "torch_forward.npy", logits[0])
    np.save(folder / "torch_predict.npy", out)
    return {"forward_ms": forward_ms, "predict_ms": predict_ms, "version": torch.__version__,
            "threads": torch.get_num_threads()}


# --- The parent ----------------------------------------------------------------------------------


def thread_env(threads: int) -> dict[str, str]:
    env = dict(os.environ)
    for key in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env[key] = str(threads)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def spawn(python: str, side: str, folder: Path, threads: int, repeat: int, layers: bool = False) -> dict:
    command = [python, __file__, "--child", side, "--folder", str(folder), "--threads", str(threads),
               "--repeat", str(repeat)] + (["--layers"] if layers else [])
    done = subprocess.run(command, env=thread_env(threads), capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{side} child failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def torch_python(given: str | None) -> str | None:
    candidates = [given] if given else [sys.executable]
    for python in candidates:
        if subprocess.run([python, "-c", "import torch"], capture_output=True).returncode == 0:
            return python
    return None


def relative_error(ours: np.ndarray, reference: np.ndarray) -> float:
    return float(np.max(np.abs(ours - reference)) / np.max(np.abs(reference)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, action="append", help="thread count (repeatable; default 2 and 1)")
    parser.add_argument("--repeat", type=int, default=10, help="timed calls per process (default 10)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="processes per side and thread count, alternating ours and PyTorch (default 3)")
    parser.add_argument("--torch-python", help="the Python to run PyTorch with (default: this one)")
    parser.add_argument("--layers", action="store_true", help="print our slowest layers (forward, best of 5)")
    parser.add_argument("--child", choices=("ours", "torch"), help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        result = (child_ours(args.folder, args.repeat, args.layers) if args.child == "ours"
                  else child_torch(args.folder, args.repeat, args.threads[0]))
        print(json.dumps(result))
        return
    from bench_ops import cpu_seconds, report_other_load

    python = torch_python(args.torch_python)
    started, load_before = time.perf_counter(), cpu_seconds()
    with tempfile.TemporaryDirectory(prefix="cnn-resnet18-") as name:
        folder = Path(name)
        write_model(folder)
        print(f"ResNet-18, 224x224 RGB, float32; each process times the best of {args.repeat} calls after a "
              f"warm-up; {args.rounds} processes a side, ours and PyTorch alternating; ratio = ours / PyTorch")
        for threads in args.threads or [2, 1]:
            ours, refs, agree = [], [], [0.0, 0.0]
            for round_ in range(args.rounds):
                ours.append(spawn(sys.executable, "ours", folder, threads, args.repeat, args.layers and round_ == 0))
                if python is not None:
                    refs.append(spawn(python, "torch", folder, threads, args.repeat))
                    for i, key in enumerate(("forward", "predict")):
                        agree[i] = max(agree[i], relative_error(np.load(folder / f"ours_{key}.npy"),
                                                                np.load(folder / f"torch_{key}.npy")))
            version = f"torch {refs[0]['version']}" if refs else "torch not installed"
            print(f"\nthreads {threads}, {version}")
            for i, (key, what) in enumerate((("forward_ms", "1 image, Network.forward (every map kept)"),
                                             ("predict_ms", "batch of 8, Network.predict"))):
                mine = [run[key] for run in ours]
                line = f"  {what:44s} ours {min(mine):8.2f} ms ({min(mine):.1f}-{max(mine):.1f})"
                if refs:
                    theirs = [run[key] for run in refs]
                    ratio = min(mine) / min(theirs)
                    ratios = [a / b for a, b in zip(mine, theirs)]
                    verdict = ("PASS" if ratio <= TARGET else "FAIL") if i == 0 else "n.a."
                    if agree[i] > TOLERANCE:
                        verdict = "FAIL (outputs differ)"
                    line += (f"  torch {min(theirs):8.2f} ms ({min(theirs):.1f}-{max(theirs):.1f})"
                             f"  ratio of bests {ratio:4.2f} (rounds {min(ratios):.2f}-{max(ratios):.2f})"
                             f"  logits differ by {agree[i]:.1e}  {verdict}")
                print(line)
            if "layers" in ours[0]:
                print("  slowest layers of our forward (ms):")
                for name, kind, shape, ms in sorted(ours[0]["layers"], key=lambda r: -r[3])[:15]:
                    print(f"    {name:24s} {kind:12s} {str(shape):18s} {ms:7.2f}")
                print(f"    total {sum(r[3] for r in ours[0]['layers']):.2f}")
        print(f"\ntarget: forward <= {TARGET}x PyTorch (ratio of the bests)")
    report_other_load(load_before, time.perf_counter() - started)


if __name__ == "__main__":
    main()
