"""Time `cnn run` on the seed's 5x5 image against Python importing what cnn needs.

Run from the repository root, in the venv where cnn is installed:

    python benchmarks/bench_startup.py            # median of 21 runs of each
    python benchmarks/bench_startup.py --runs 51

On a 5x5 image the work is nothing; what is left is start-up. Target: the median `cnn run` takes at
most 1.5x the median `python -c "import numpy, PIL.Image, typer, rich"`. Both run as fresh
processes, interleaved, so that a noisy moment slows both alike.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TARGET = 1.5


def elapsed(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, cwd=REPO)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=21)
    runs = parser.parse_args().runs
    cnn = shutil.which("cnn") or str(Path(sys.executable).with_name("cnn"))
    commands = {
        "imports": [sys.executable, "-c", "import numpy, PIL.Image, typer, rich"],
        "cnn run": [cnn, "run", "sample_images/seed_5x5.png", "--kernel", "vertical_edge"],
        "cnn --version": [cnn, "--version"],
    }
    times: dict[str, list[float]] = {name: [] for name in commands}
    for command in commands.values():
        elapsed(command)  # warm the file cache
    for _ in range(runs):
        for name, command in commands.items():
            times[name].append(elapsed(command))
    base = statistics.median(times["imports"])
    print(f"median of {runs} runs; ratio = time / imports")
    for name, samples in times.items():
        median = statistics.median(samples)
        print(f"{name:<15} {median * 1e3:7.1f} ms   ratio {median / base:.2f}")
    ratio = statistics.median(times["cnn run"]) / base
    print(f"target: cnn run <= {TARGET}x imports -> {'PASS' if ratio <= TARGET else 'FAIL'}")


if __name__ == "__main__":
    main()
