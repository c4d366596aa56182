"""Batch inference of whole models through cnncli's engine, side by side with PyTorch.

Run from the repository root:

    python benchmarks/bench_models.py              # best of 30 after a warm-up
    python benchmarks/bench_models.py --repeat 100

Both sides run in this one process, on the same float32 batch and the same weights; PyTorch runs
in inference mode with its default threads, after every case of ours has been timed (PyTorch's
spinning OpenMP threads would slow ours otherwise; see time_ours). Each time is for the whole batch (N, C, H, W) in one
call, ending in a softmax on both sides; the outputs must agree. ratio = ours / PyTorch.
Acceptance targets:

1. The bundled digits model on the whole held-out set (tests/data): at most 1.25x PyTorch's time.
2. A LeNet-5-sized network (conv 1->6 5x5 pad 2, max-pool, conv 6->16 5x5, max-pool, dense
   400->120->84->10, ReLU) on a batch of 64 28x28 images: at most 1.25x PyTorch's time.

Without PyTorch the engine's own times and images per second are still printed.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import tempfile
import time
from pathlib import Path

import numpy as np
from bench_ops import (NOT_INSTALLED, REPO, best_ms, cpu_seconds, describe_setup, print_table, report_other_load,
                       settle_allocator, torch)

from cnncli.io.modelfile import load_model

WITHIN = ("<= 1.25", lambda ratio: ratio <= 1.25)


def digits_case():
    """(our model, torch module or None, the held-out inputs)."""
    inputs = np.load(REPO / "tests" / "data" / "digits_heldout.npz", allow_pickle=False)["inputs"]
    return load_model("digits"), digits_torch, inputs


def digits_torch():
    """The training script's DigitsNet with the shipped weights."""
    net = None
    if torch is not None:
        spec = importlib.util.spec_from_file_location("train_digits", REPO / "training" / "train_digits.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        net = module.DigitsNet()
        weights = np.load(REPO / "cnncli" / "models" / "digits.npz", allow_pickle=False)
        net.load_state_dict({k: torch.from_numpy(weights[k]) for k in weights.files})
    return net


LENET_LAYERS = [
    {"name": "conv1", "type": "conv2d", "out_channels": 6, "kernel_size": 5, "padding": 2},
    {"name": "relu1", "type": "relu"},
    {"name": "pool1", "type": "maxpool2d", "kernel_size": 2},
    {"name": "conv2", "type": "conv2d", "out_channels": 16, "kernel_size": 5},
    {"name": "relu2", "type": "relu"},
    {"name": "pool2", "type": "maxpool2d", "kernel_size": 2},
    {"name": "flatten", "type": "flatten"},
    {"name": "fc1", "type": "dense", "out_features": 120},
    {"name": "relu3", "type": "relu"},
    {"name": "fc2", "type": "dense", "out_features": 84},
    {"name": "relu4", "type": "relu"},
    {"name": "fc3", "type": "dense", "out_features": 10},
    {"name": "softmax", "type": "softmax"},
]


def lenet_weights(rng: np.random.Generator) -> dict[str, np.ndarray]:
    shapes = {"conv1": (6, 1, 5, 5), "conv2": (16, 6, 5, 5), "fc1": (120, 400), "fc2": (84, 120), "fc3": (10, 84)}
    weights = {}
    for name, shape in shapes.items():
        fan_in = int(np.prod(shape[1:]))
        weights[f"{name}.weight"] = (rng.standard_normal(shape) / np.sqrt(fan_in)).astype(np.float32)
        weights[f"{name}.bias"] = (0.1 * rng.standard_normal(shape[0])).astype(np.float32)
    return weights


def lenet_case(batch: int):
    """LeNet-5 written as a model file with a .npz of state_dict names, loaded as a user's would be."""
    rng = np.random.default_rng(0)
    weights = lenet_weights(rng)
    folder = Path(tempfile.mkdtemp(prefix="cnn-bench-"))
    np.savez(folder / "lenet5.npz", **weights)
    document = {"format": "cnn-model", "version": 1, "name": "lenet5", "input": {"size": [28, 28]},
                "weights": "lenet5.npz", "layers": LENET_LAYERS}
    (folder / "lenet5.json").write_text(json.dumps(document))
    model = load_model(str(folder / "lenet5.json"))
    inputs = rng.random((batch, 1, 28, 28), dtype=np.float32)
    return model, lambda: lenet_torch(weights), inputs


def lenet_torch(weights: dict[str, np.ndarray]):
    net = None
    if torch is not None:
        nn = torch.nn
        net = nn.Sequential()
        modules = {"conv1": nn.Conv2d(1, 6, 5, padding=2), "relu1": nn.ReLU(), "pool1": nn.MaxPool2d(2),
                   "conv2": nn.Conv2d(6, 16, 5), "relu2": nn.ReLU(), "pool2": nn.MaxPool2d(2),
                   "flatten": nn.Flatten(), "fc1": nn.Linear(400, 120), "relu3": nn.ReLU(), "fc2": nn.Linear(120, 84),
                   "relu4": nn.ReLU(), "fc3": nn.Linear(84, 10)}
        for name, module in modules.items():
            net.add_module(name, module)
        net.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()})
    return net


# PyTorch's OpenMP threads keep spinning on the cores after its calls (its default wait policy);
# timed after PyTorch, OpenBLAS's threads in our products ran 2.5x slower (LeNet-5: 5.1 ms, not
# 2.0). So every case of ours is timed first, before PyTorch runs anything, and PyTorch then runs
# with its defaults: each side has the machine to itself.


def time_ours(model, inputs: np.ndarray, repeat: int) -> tuple[float, np.ndarray]:
    return best_ms(lambda: model.network.predict(inputs), repeat)


def row(case: str, ours_ms: float, ours: np.ndarray, make_net, inputs: np.ndarray, repeat: int) -> list[str]:
    rate = f"{len(inputs) / ours_ms * 1e3:,.0f}"
    net = make_net()
    if net is None:
        return [case, f"{ours_ms:.3f}", rate, NOT_INSTALLED, "-", "-", WITHIN[0], "n.a."]
    net.eval()
    tensor = torch.from_numpy(inputs)

    def reference():
        with torch.inference_mode():
            return torch.softmax(net(tensor), dim=1).numpy()

    ref_ms, expected = best_ms(reference, repeat)
    ratio = ours_ms / ref_ms
    agrees = np.allclose(ours, expected, rtol=1e-4, atol=1e-5)
    verdict = "FAIL (outputs differ)" if not agrees else ("PASS" if WITHIN[1](ratio) else "FAIL")
    return [case, f"{ours_ms:.3f}", rate, f"{ref_ms:.3f}", f"{len(inputs) / ref_ms * 1e3:,.0f}", f"{ratio:.3f}",
            WITHIN[0], verdict]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=30, help="timed calls per measurement (default 30)")
    args = parser.parse_args()
    settle_allocator()
    started, load_before = time.perf_counter(), cpu_seconds()
    print(f"{describe_setup()}; best of {args.repeat} after a warm-up; ratio = ours / PyTorch")
    cases = [digits_case(), lenet_case(64)]
    names = [f"digits, held-out batch {len(cases[0][2])}x1x8x8", "LeNet-5, batch 64x1x28x28"]
    ours = [time_ours(model, inputs, args.repeat) for model, _, inputs in cases]
    rows = [row(name, ms, out, make_net, inputs, args.repeat)
            for name, (ms, out), (_, make_net, inputs) in zip(names, ours, cases)]
    print_table("Batch inference (whole batch per call)",
                ("case", "ours (ms)", "ours (img/s)", "torch (ms)", "torch (img/s)", "ratio", "target", "verdict"),
                rows)
    report_other_load(load_before, time.perf_counter() - started)


if __name__ == "__main__":
    main()
