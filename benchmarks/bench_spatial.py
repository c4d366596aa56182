"""Time the spatial ops (cnncli.engine.transpose and .resample) against a plain conv of the same
work, and against PyTorch when it is installed.

Run from the repository root (the script finds the package itself):

    python benchmarks/bench_spatial.py               # best of 10, about 10 s on 2 cores
    python benchmarks/bench_spatial.py --repeat 30
    /work/venv-torch/bin/python benchmarks/bench_spatial.py   # adds PyTorch's times (CPU build)

A time is the best of N calls after one warm-up call, float32, one map (C, H, W) unless the row
says batch. The transposed conv's row is set beside the conv it is the gradient of (the same
multiply-adds: 64 x 56 x 56 inputs times 32 x 3 x 3 weights) and beside the stride-1 conv of the
same input and output channels.

Measured on 2 cores shared with other jobs (load 7-9), one OpenBLAS thread, best of 30 interleaved:
conv_transpose2d (64,56,56) -> (32,112,112), 3x3 stride 2: 2.36 ms, against 2.32 ms for conv2d
(32,112,112) -> (64,56,56) 3x3 stride 2 (the same multiply-adds); a batch of 8: 48 ms against
36 ms. PyTorch 2.13's conv_transpose2d took 1.7-1.8 ms in quiet runs. Under that load, times with
two BLAS threads vary 3-10x from run to run; compare rows of one run only.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from cnncli.engine import ops, resample, transpose  # noqa: E402

try:
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(2)
except ImportError:
    torch = None


def best(function, repeat: int) -> float:
    function()
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return min(times) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=10)
    repeat = parser.parse_args().repeat
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 56, 56)).astype(np.float32)
    w = rng.standard_normal((64, 32, 3, 3)).astype(np.float32)
    b = rng.standard_normal(32).astype(np.float32)
    big = rng.standard_normal((32, 112, 112)).astype(np.float32)
    batch = rng.standard_normal((8, 64, 56, 56)).astype(np.float32)
    w4 = rng.standard_normal((64, 32, 4, 4)).astype(np.float32)
    rows = [
        ("conv_transpose2d (64,56,56)->32, 3x3 s2 p1 op1", lambda: transpose.conv_transpose2d(
            x, w, b, (2, 2), (1, 1), (1, 1)),
         None if torch is None else (lambda: F.conv_transpose2d(tx, tw, tb, 2, 1, 1))),
        ("  conv2d (32,112,112)->64, 3x3 s2 p1 (same MACs)", lambda: ops.conv2d(big, w, None, 2, 1), None),
        ("  conv2d (64,56,56)->32, 3x3 s1 p1", lambda: ops.conv2d(x, w.transpose(1, 0, 2, 3), b, 1, 1), None),
        ("conv_transpose2d 4x4 s2 p1", lambda: transpose.conv_transpose2d(x, w4, b, (2, 2), (1, 1)),
         None if torch is None else (lambda: F.conv_transpose2d(tx, torch.from_numpy(w4), tb, 2, 1))),
        ("conv_transpose2d batch of 8, 3x3 s2 p1 op1", lambda: transpose.conv_transpose2d(
            batch, w, b, (2, 2), (1, 1), (1, 1)),
         None if torch is None else (lambda: F.conv_transpose2d(torch.from_numpy(batch), tw, tb, 2, 1, 1))),
        ("adaptiveavgpool2d (64,56,56) -> 7x7", lambda: resample.adaptive_pool2d(x, (7, 7), "avg"),
         None if torch is None else (lambda: F.adaptive_avg_pool2d(tx, 7))),
        ("adaptiveavgpool2d (64,56,56) -> 5x5", lambda: resample.adaptive_pool2d(x, (5, 5), "avg"),
         None if torch is None else (lambda: F.adaptive_avg_pool2d(tx, 5))),
        ("adaptivemaxpool2d (64,56,56) -> 5x5", lambda: resample.adaptive_pool2d(x, (5, 5), "max"),
         None if torch is None else (lambda: F.adaptive_max_pool2d(tx, 5))),
        ("globalmaxpool2d (64,56,56)", lambda: resample.global_max_pool2d(x),
         None if torch is None else (lambda: F.adaptive_max_pool2d(tx, 1))),
        ("upsample nearest x2", lambda: resample.upsample(x, None, (2.0, 2.0), "nearest"),
         None if torch is None else (lambda: F.interpolate(tx, scale_factor=2.0, mode="nearest"))),
        ("upsample bilinear x2", lambda: resample.upsample(x, None, (2.0, 2.0), "bilinear"),
         None if torch is None else (lambda: F.interpolate(tx, scale_factor=2.0, mode="bilinear"))),
        ("upsample bilinear x1.5, align_corners", lambda: resample.upsample(x, None, (1.5, 1.5), "bilinear", True),
         None if torch is None else (lambda: F.interpolate(tx, scale_factor=1.5, mode="bilinear",
                                                           align_corners=True))),
    ]
    if torch is not None:
        tx, tw, tb = torch.from_numpy(x)[None], torch.from_numpy(w), torch.from_numpy(b)
    print(f"{'op':52} {'cnn ms':>8} {'torch ms':>9}")
    with (torch.no_grad() if torch is not None else _Nothing()):
        for name, ours, theirs in rows:
            mine = best(ours, repeat)
            other = f"{best(theirs, repeat):9.2f}" if theirs is not None else f"{'':9}"
            print(f"{name:52} {mine:8.2f} {other}")


class _Nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *args: object) -> None:
        return None


if __name__ == "__main__":
    main()
