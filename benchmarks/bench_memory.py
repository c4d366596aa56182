"""How well the memory limit's estimates hold: estimated bytes against the peak actually allocated.

Run from the repository root:

    python benchmarks/bench_memory.py

`--max-memory` refuses a run from two estimates made before allocating: decoding the image
(images.decoding_bytes, from the header) and the forward pass (Network.memory_estimate, from the
shapes). For each case this runs the same steps as `cnn run` in this process under tracemalloc,
which sees every NumPy array (Pillow's own buffers are outside it), and prints the peak of each
step beside its estimate. ratio = peak / estimate; the limit is safe while every ratio is <= 1.
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

from cnncli.cli.options import LayerOptions, forward, prepare  # noqa: E402
from cnncli.images import decoding_bytes, read_image  # noqa: E402

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


def main() -> None:
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


if __name__ == "__main__":
    main()
