"""How well the memory limit's estimates hold: estimated bytes against the peak actually allocated.

Run from the repository root:

    python benchmarks/bench_memory.py              # both tables, about 15 s
    python benchmarks/bench_memory.py --traced     # the first table only

`--max-memory` refuses a run from two estimates made before allocating: decoding the image
(images.decoding_bytes, from the header) and the forward pass (Network.memory_estimate, from the
shapes). First table: for each case this runs the same steps as `cnn run` in this process under
tracemalloc, which sees every NumPy array (Pillow's own buffers are outside it), and prints the
peak of each step beside its estimate. ratio = peak / estimate; the limit is safe while every
ratio is <= 1.

Second table: the cases of tests/test_memory_bound.py (the attacks on the limit) as whole
processes. Each runs `cnn run ... -o OUT.npy -f npy --max-memory M` in a fresh child with M set
to the run's own estimate (the lowest limit that admits it), and reads the child's peak RSS
(tests/peak.py): "engine" is the peak while the forward pass ran, "whole" the peak of the whole
command (reading a model's weights and writing the output included), both above the RSS after
the imports. engine / limit must stay at or under 1 (the test allows 2 MiB of allocator slack).

Third table: the attacks on the output side (tests/test_memory_outputs.py): JSON and CSV of a
2000x2000 map, pictures, heatmaps, a batch into one .npz or .npy, each under the limit the attack
used; the peak must stay within what cnn checked against it.
"""

from __future__ import annotations

import sys
import tempfile
from functools import partial
import tracemalloc
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from cnncli.run import LayerOptions, forward, prepare  # noqa: E402
from cnncli.io.images import decoding_bytes, read_image  # noqa: E402

sys.path.insert(0, str(REPO / "tests"))

CASES = [
    ("shapes.png 64x64, sobel_x", "shapes", ["sobel_x"], {}),
    ("1024x1024 gray, sobel_x + sobel_y, same", (1024, 1024, "L"), ["sobel_x", "sobel_y"], {"padding": "same"}),
    ("2048x2048 RGB, gaussian_5x5 depthwise", (2048, 2048, "RGB"), ["gaussian_5x5"], {"color": "rgb"}),
    ("1536x1536 gray, 7x7, stride 2, dilation 2, float64", (1536, 1536, "L"), ["box_blur"],
     {"stride": 2, "dilation": 2, "dtype": "float64"}),
    ("digit_3.png through the digits model", "digit_3", None, {"model": "digits"}),
]


def image_file(spec, folder: Path) -> str:
    if isinstance(spec, str):
        return str(REPO / "sample_images" / f"{spec}.png")
    width, height, mode = spec
    pixels = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    path = folder / f"noise_{width}x{height}_{mode}.png"
    Image.fromarray(pixels).convert(mode).save(path)
    return str(path)


def peak_of(step) -> tuple[object, int]:
    tracemalloc.start()
    tracemalloc.reset_peak()
    result = step()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return result, peak


def traced_table() -> None:
    rows = []
    read_image(str(REPO / "sample_images" / "shapes.png"))  # imports Pillow's plugins outside the measures
    with tempfile.TemporaryDirectory() as folder:
        for title, spec, kernels, settings in CASES:
            options = LayerOptions(image=image_file(spec, Path(folder)), kernels=kernels, **settings)
            dtype = np.float64 if options.dtype == "float64" else np.float32
            loaded, decode_peak = peak_of(partial(read_image, options.image, color=options.color or "gray",
                                                  dtype=dtype))
            _, h, w = loaded.array.shape
            decode_estimate = decoding_bytes(w, h, loaded.array.shape[0], np.dtype(dtype))
            prepared = prepare(options)
            image = prepared.image
            run_estimate = prepared.network.memory_estimate(image.array.shape, image.array.itemsize)
            _, run_peak = peak_of(partial(forward, prepared))
            run_peak += image.array.nbytes  # the input map, allocated before the forward pass and kept
            rows.append((title, decode_peak, decode_estimate, run_peak, run_estimate))
    print(f"{'case':48} {'decode peak':>12} {'estimate':>10} {'ratio':>6}   {'run peak':>10} {'estimate':>10} "
          f"{'ratio':>6}")
    for title, decode_peak, decode_estimate, run_peak, run_estimate in rows:
        print(f"{title:48} {decode_peak / 2**20:10.1f}MB {decode_estimate / 2**20:8.1f}MB "
              f"{decode_peak / decode_estimate:6.2f}   {run_peak / 2**20:8.1f}MB {run_estimate / 2**20:8.1f}MB "
              f"{run_peak / run_estimate:6.2f}")
    worst = max(max(d / de, r / re) for _, d, de, r, re in rows)
    print(f"\nworst ratio {worst:.2f}: {'estimates hold' if worst <= 1 else 'AN ESTIMATE IS TOO LOW'}")


def process_table() -> None:
    """The attack cases as child processes, limited to their own estimate: peak RSS against the limit."""
    import contextlib
    import io

    from test_memory_bound import ALLOWANCE, CASES, measure, write_files

    print("\nProcess peaks (child process, RSS above the imports; limit = the run's estimate; MiB)")
    header = f"{'case':38} {'limit':>7} {'engine':>7} {'whole':>7} {'output':>7} {'engine/limit':>13}  verdict"
    print(header)
    print("-" * len(header))
    worst = 0.0
    with tempfile.TemporaryDirectory() as folder:
        write_files(Path(folder))
        for case in CASES:
            with contextlib.redirect_stderr(io.StringIO()):  # the estimate's run stops with a message
                result = measure(case, Path(folder))
            if result["code"] != 0:
                print(f"{case.name:38} failed: {result['stderr'].strip()}")
                continue
            ratio = result["engine"] / result["estimate"]
            worst = max(worst, ratio)
            verdict = "PASS" if result["engine"] <= result["estimate"] + ALLOWANCE else "OVER"
            print(f"{case.name:38} {result['estimate'] / 2**20:7.2f} {result['engine'] / 2**20:7.2f} "
                  f"{result['whole'] / 2**20:7.2f} {result['output'] / 2**20:7.2f} {ratio:13.2f}  {verdict}")
    print(f"\nworst engine / limit {worst:.2f}: {'the limit holds' if worst <= 1 else 'OVER THE LIMIT'}")


def outputs_table() -> None:
    """The output attacks (tests/test_memory_outputs.py) as child processes under the issue's limits:
    peak RSS against what cnn checked, and against the limit."""
    import contextlib
    import io

    from peak import measure_peak
    from test_memory_outputs import ALLOWANCE, CASES, WARMUP, checked_need, write_files

    print("\nOutputs (child process, RSS above the imports; the limit as the attack gave it; MiB)")
    header = f"{'case':34} {'limit':>6} {'checked':>8} {'peak':>7} {'peak/checked':>13}  verdict"
    print(header)
    print("-" * len(header))
    with tempfile.TemporaryDirectory() as folder:
        path = write_files(Path(folder))
        for name, (args, limit) in CASES.items():
            argv = ["run", *[str(path / a) if a in ("big.png", "batch") else a.format(out=folder) for a in args]]
            sink = io.TextIOWrapper(io.BytesIO())  # cnn writes machine formats to stdout's bytes
            with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(io.StringIO()):
                need = checked_need(argv)
            measured = measure_peak(argv + ["--max-memory", limit], warmup=WARMUP)
            verdict = "PASS" if measured.code == 0 and measured.peak <= need + ALLOWANCE else "OVER"
            print(f"{name:34} {limit:>6} {need / 2**20:8.1f} {measured.peak / 2**20:7.1f} "
                  f"{measured.peak / need:13.2f}  {verdict}")


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--traced", action="store_true", help="only the first table (tracemalloc, in this process)")
    args = parser.parse_args()
    traced_table()
    if not args.traced:
        process_table()
        outputs_table()


if __name__ == "__main__":
    main()
