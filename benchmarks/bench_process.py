"""Whole processes: `cnn run` on a 2048x2048 PNG against ImageMagick's convolution of it, and
`cnn --help` against Python importing what cnn needs.

Run from the repository root, in the venv where cnn is installed (ImageMagick from the system:
`apt-get install imagemagick`):

    python benchmarks/bench_process.py             # median of 15 interleaved runs of each
    python benchmarks/bench_process.py --runs 31

Targets:
- `cnn run big.png -k sobel_x --activation none --pool none -o out.npy` takes at most 0.5x the
  wall time of `convert big.png -morphology Convolve Sobel out.miff` (the same 3x3 Sobel
  correlation, read from a PNG and written to a raw array file);
- `cnn --help` takes at most 1.2x `python -c "import numpy, PIL.Image, typer, rich"`.

The "floor" row is what any program on cnn's stack pays before its own work: importing NumPy,
Typer and Pillow and decoding the PNG. Every command runs as a fresh process, the kinds
interleaved, so that a noisy moment slows all alike; the image is made here, smooth noise standing
for a photo (PNG-compressed as a photo is).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TARGETS = {"cnn run": ("convert", 0.5), "cnn --help": ("imports", 1.2)}


def elapsed(command: list[str], cwd: Path) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, cwd=cwd)
    return time.perf_counter() - started


def photo(path: Path, side: int = 2048) -> None:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    small = rng.integers(0, 256, (side // 16, side // 16), dtype=np.uint8)
    image = Image.fromarray(small).resize((side, side), Image.Resampling.BICUBIC)
    noise = rng.integers(-6, 7, (side, side))
    Image.fromarray(np.clip(np.asarray(image, dtype=np.int16) + noise, 0, 255).astype(np.uint8)).save(path)


def imagemagick() -> str | None:
    """The real ImageMagick convert (not a stand-in of the same name), or None."""
    for candidate in ("/usr/bin/convert", shutil.which("convert"), shutil.which("magick")):
        if candidate and Path(candidate).exists():
            version = subprocess.run([candidate, "-version"], capture_output=True, text=True).stdout
            if "ImageMagick" in version:
                return candidate
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    runs = parser.parse_args().runs
    cnn = shutil.which("cnn") or str(Path(sys.executable).with_name("cnn"))
    convert = imagemagick()
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        photo(work / "big.png")
        commands = {
            "cnn run": [cnn, "run", "big.png", "-k", "sobel_x", "--activation", "none", "--pool", "none",
                        "-o", "out.npy", "--force"],
            "cnn --help": [cnn, "--help"],
            "imports": [sys.executable, "-c", "import numpy, PIL.Image, typer, rich"],
            # What any tool on this stack pays before its own work: the imports and Pillow decoding the PNG.
            "floor": [sys.executable, "-c", "import numpy, typer; from PIL import Image; "
                                            "numpy.asarray(Image.open('big.png'))"],
        }
        if convert:
            commands["convert"] = [convert, "big.png", "-morphology", "Convolve", "Sobel", "out.miff"]
        else:
            print("ImageMagick not found (apt-get install imagemagick): its row is skipped")
        times: dict[str, list[float]] = {name: [] for name in commands}
        for command in commands.values():
            elapsed(command, work)  # warm the file cache
        for _ in range(runs):
            for name, command in commands.items():
                times[name].append(elapsed(command, work))
    medians = {name: statistics.median(samples) for name, samples in times.items()}
    print(f"median of {runs} interleaved runs (min .. max)")
    for name, samples in times.items():
        print(f"{name:<12} {medians[name] * 1e3:7.1f} ms   ({min(samples) * 1e3:.1f} .. {max(samples) * 1e3:.1f})")
    for name, (reference, target) in TARGETS.items():
        if reference in medians:
            ratio = medians[name] / medians[reference]
            verdict = "PASS" if ratio <= target else "FAIL"
            print(f"target: {name} <= {target}x {reference}: {ratio:.2f} -> {verdict}")
    if "convert" in medians:
        print(f"floor / convert: {medians['floor'] / medians['convert']:.2f} (imports and decoding alone)")


if __name__ == "__main__":
    main()
