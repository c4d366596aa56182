"""Throughput of `cnn run` over a folder of small images with one worker and with two.

Run from the repository root:

    python benchmarks/bench_batch.py                  # 1,000 images of 28x28, best of 3
    python benchmarks/bench_batch.py --images 300 --repeat 5

Target (issue 4): on a 2-core machine two workers give at least 1.7x the throughput of one.
Each setting runs `cnn run FOLDER -k sobel_x -k sobel_y --format jsonl --workers N` through
cnncli.cli.main in this process, stdout to /dev/null, alternating the settings so that a noisy
moment slows both alike; the best of the repeats counts. As a ceiling, the same pool runs a pure
Python CPU loop on one and two processes: no program gets more from this machine than that.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from cnncli.cli import main  # noqa: E402

TARGET = 1.7


def make_images(folder: Path, count: int, size: int = 28) -> None:
    rng = np.random.default_rng(0)
    for i in range(count):
        Image.fromarray(rng.integers(0, 256, (size, size), dtype=np.uint8)).save(folder / f"img_{i:05d}.png")


def time_batch(folder: Path, workers: int) -> float:
    arguments = ["run", str(folder), "-k", "sobel_x", "-k", "sobel_y", "--format", "jsonl", "--workers", str(workers)]
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
        started = time.perf_counter()
        code = main(arguments)
        elapsed = time.perf_counter() - started
    assert code == 0, f"cnn {' '.join(arguments)} exited with {code}"
    return elapsed


def _burn(n: int) -> int:
    total = 0
    for i in range(n):
        total += i * i
    return total


def time_ceiling(workers: int) -> float:
    started = time.perf_counter()
    with ProcessPoolExecutor(workers) as pool:
        list(pool.map(_burn, [2_000_000] * 8))
    return time.perf_counter() - started


def main_bench() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cnn-bench-batch-") as name:
        folder = Path(name)
        make_images(folder, args.images)
        time_batch(folder, 1)  # warm-up: imports, kernels, Pillow's plugins
        best = {1: float("inf"), 2: float("inf")}
        ceiling = {1: float("inf"), 2: float("inf")}
        for _ in range(args.repeat):
            for workers in (1, 2):
                best[workers] = min(best[workers], time_batch(folder, workers))
                ceiling[workers] = min(ceiling[workers], time_ceiling(workers))
    print(f"{args.images} images of 28x28, best of {args.repeat}; os.cpu_count() = {os.cpu_count()}")
    for workers in (1, 2):
        print(f"workers {workers}: {best[workers]:6.2f} s  {args.images / best[workers]:7.0f} images/s")
    speedup = best[1] / best[2]
    print(f"speed-up with 2 workers: {speedup:.2f}x (target >= {TARGET}x) -> {'PASS' if speedup >= TARGET else 'FAIL'}")
    print(f"ceiling, a pure CPU loop on the same pool: {ceiling[1] / ceiling[2]:.2f}x")


if __name__ == "__main__":
    main_bench()
