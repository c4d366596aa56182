"""Time cnncli.engine.ops against SciPy, OpenCV, PyTorch and the seed tutorial's Python loop.

Run from the repository root (the script finds the package itself; PYTHONPATH=. works too):

    python benchmarks/bench_ops.py               # full run, about 20 s on 2 cores
    python benchmarks/bench_ops.py --quick       # smaller images, fewer repeats, no memory case
    python benchmarks/bench_ops.py --repeat 20   # best of 20 instead of 10
    python benchmarks/bench_ops.py --crossover   # taps vs gemm on 80 shapes, not 8

Both sides of a row run in this one process on the same seeded float32 input; a time is the best
of N calls after one warm-up call, and the warm-up outputs must agree. ratio = ours / reference.
Acceptance targets (other rows are informational):

1. 3x3 single-channel valid conv on 2048x2048: at least 5x faster than scipy.signal.correlate2d.
2. The same conv at least 300x faster than the tutorial's double loop (both on a 256x256 crop).
3. 64->64 3x3 conv, padding 1, on 56x56: at most 1.5x the time of torch.nn.functional.conv2d.
4. 2x2 stride-2 max-pool on (64, 112, 112) and (1, 2048, 2048): faster than torch.
5. 7x7 valid conv on 8192x8192: the whole process peaks under 2 GiB (run in a child process).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from scipy import signal

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from cnncli.engine import conv, ops  # noqa: E402

try:
    import torch
    import torch.nn.functional as F
except ImportError:
    torch = None
try:
    import cv2
except ImportError:
    cv2 = None

RNG = np.random.default_rng(0)
NOT_INSTALLED = "not installed"
# Targets on ratio = ours / reference: (shown text, test).
FIVE_TIMES_FASTER = ("<= 1/5", lambda ratio: ratio <= 1 / 5)
THREE_HUNDRED_TIMES_FASTER = ("<= 1/300", lambda ratio: ratio <= 1 / 300)
WITHIN_ONE_AND_HALF = ("<= 1.5", lambda ratio: ratio <= 1.5)
FASTER = ("< 1", lambda ratio: ratio < 1)
PEAK_LIMIT_MIB = 2048


def random(*shape: int) -> np.ndarray:
    """Standard normal float32 values from the benchmark's one seeded generator."""
    return RNG.standard_normal(shape, dtype=np.float32)


def settle_allocator() -> None:
    """Allocate and free one 24 MiB block before timing anything.

    glibc serves big blocks with fresh mmap pages (a page fault per 4 KiB on first touch) until a
    large block is freed, which raises its threshold. Without this, a row's time depends on what
    the process allocated before it (gemm at 256x256 measured 2.4 ms cold vs 0.44 ms settled).
    """
    np.ones(24 << 18, dtype=np.float32)


def best_ms(fn, repeat: int) -> tuple[float, object]:
    """Best wall time of ``repeat`` calls after one warm-up call, in ms, and the warm-up's result."""
    result = fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1e3 * min(times), result


def with_torch(fn, *arrays: np.ndarray):
    """A call of ``fn`` on tensors sharing the arrays' memory, returning NumPy; None without torch."""
    if torch is None:
        return None
    tensors = [torch.from_numpy(np.ascontiguousarray(a)) for a in arrays]

    def run():
        with torch.inference_mode():
            return fn(*tensors).numpy()

    return run


def agree(ours: np.ndarray, reference: np.ndarray) -> bool:
    """Same size and equal up to float32 rounding (relative to the reference's largest value)."""
    reference = np.asarray(reference, dtype=np.float64).ravel()
    ours = np.asarray(ours, dtype=np.float64).ravel()
    scale = np.abs(reference).max()
    return ours.size == reference.size and np.allclose(ours, reference, rtol=1e-3, atol=1e-4 * scale)


def compare(case: str, ours, ref_name: str, reference, repeat: int, target=None) -> list[str]:
    """One table row; ``reference`` is None when its library is not installed."""
    ours_ms, ours_out = best_ms(ours, repeat)
    target_text = target[0] if target else "-"
    if reference is None:
        return [case, f"{ours_ms:.3f}", ref_name, NOT_INSTALLED, "-", target_text, "n.a."]
    ref_ms, ref_out = best_ms(reference, repeat)
    ratio = ours_ms / ref_ms
    if not agree(ours_out, ref_out):
        verdict = "FAIL (outputs differ)"
    elif target is None:
        verdict = "n.a."
    else:
        verdict = "PASS" if target[1](ratio) else "FAIL"
    return [case, f"{ours_ms:.3f}", ref_name, f"{ref_ms:.3f}", f"{ratio:.4g}", target_text, verdict]


def tutorial_conv(image: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """The seed tutorial's valid cross-correlation: a Python double loop over output pixels."""
    kh, kw = kernel.shape
    out = np.zeros((image.shape[0] - kh + 1, image.shape[1] - kw + 1), dtype=image.dtype)
    for i in range(out.shape[0]):
        for j in range(out.shape[1]):
            out[i, j] = np.sum(image[i:i + kh, j:j + kw] * kernel)
    return out


def torch_conv(**settings):
    """torch's conv2d with fixed settings (resolved only when torch is installed)."""
    return lambda t, w: F.conv2d(t, w, **settings)


def single_channel_rows(size: int, crop: int, repeat: int) -> list[list[str]]:
    """Cases 1 and 2: one 3x3 kernel over one grey image, valid padding."""
    image, kernel = random(size, size), random(3, 3)
    x, w = image[None], kernel[None, None]
    ours = lambda: ops.conv2d(x, w)  # noqa: E731
    opencv = cv2 and (lambda: cv2.filter2D(image, -1, kernel, borderType=cv2.BORDER_CONSTANT)[1:-1, 1:-1])
    small = np.ascontiguousarray(image[:crop, :crop])
    case = f"1ch 3x3 valid {size}x{size}"
    return [
        compare(case, ours, "scipy correlate2d", lambda: signal.correlate2d(image, kernel, "valid"),
                repeat, FIVE_TIMES_FASTER),
        compare(case, ours, "cv2.filter2D (same size, cropped)", opencv, repeat),
        compare(case, ours, "torch F.conv2d", with_torch(torch_conv(), x[None], w), repeat),
        compare(f"1ch 3x3 valid {crop}x{crop} crop", lambda: ops.conv2d(small[None], w),
                "tutorial double loop", lambda: tutorial_conv(small, kernel), repeat,
                THREE_HUNDRED_TIMES_FASTER),
    ]


def conv_vs_torch(case: str, shape, weight_shape, repeat: int, target=None, **settings) -> list[str]:
    x, w = random(*shape), random(*weight_shape)
    return compare(case, lambda: ops.conv2d(x, w, **settings), "torch F.conv2d",
                   with_torch(torch_conv(**settings), x[None], w), repeat, target)


def pool_vs_torch(case: str, shape, repeat: int, kind: str, target=None, **settings) -> list[str]:
    x = random(*shape)
    ours = getattr(ops, kind)
    return compare(case, lambda: ours(x, **settings), f"torch F.{kind}",
                   with_torch(lambda t: getattr(F, kind)(t, **settings), x[None]), repeat, target)


def layer_rows(big_pool: int, repeat: int) -> list[list[str]]:
    """Cases 3, 4 and 6: CNN-sized layers against torch."""
    return [
        conv_vs_torch("64->64 3x3 pad 1 56x56", (64, 56, 56), (64, 64, 3, 3), repeat,
                      WITHIN_ONE_AND_HALF, padding=1),
        pool_vs_torch("max-pool 2x2/2 (64,112,112)", (64, 112, 112), repeat, "max_pool2d", FASTER,
                      kernel_size=2, stride=2),
        pool_vs_torch(f"max-pool 2x2/2 (1,{big_pool},{big_pool})", (1, big_pool, big_pool), repeat,
                      "max_pool2d", FASTER, kernel_size=2, stride=2),
        conv_vs_torch("depthwise 3x3 pad 1 (32,112,112)", (32, 112, 112), (32, 1, 3, 3), repeat,
                      padding=1, groups=32),
        conv_vs_torch("RGB 3->8 3x3 pad 1 512x512", (3, 512, 512), (8, 3, 3, 3), repeat, padding=1),
        conv_vs_torch("64->128 3x3 stride 2 pad 1 56x56", (64, 56, 56), (128, 64, 3, 3), repeat,
                      padding=1, stride=2),
        pool_vs_torch("avg-pool 3x3/2 pad 1 (64,112,112)", (64, 112, 112), repeat, "avg_pool2d",
                      kernel_size=3, stride=2, padding=1),
    ]


MEMORY_CHILD = """
import json, resource, sys, time, tracemalloc
import numpy as np
from cnncli.engine import ops

def peak_rss():
    # ru_maxrss also counts the parent's RSS from before exec on Linux; VmHWM is this process's own.
    try:
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith("VmHWM")) * 1024
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

size, k = int(sys.argv[1]), int(sys.argv[2])
rng = np.random.default_rng(0)
x = rng.standard_normal((1, size, size), dtype=np.float32)
w = rng.standard_normal((1, 1, k, k), dtype=np.float32)
before = peak_rss()
start = time.perf_counter()
output = ops.conv2d(x, w, padding="valid").nbytes
seconds = time.perf_counter() - start
after = peak_rss()
tracemalloc.start()  # a second, untimed call: tracing slows the threaded path down
ops.conv2d(x, w, padding="valid")
traced = tracemalloc.get_traced_memory()[1]
print(json.dumps(dict(ms=1e3 * seconds, output=output, traced=traced, before=before, after=after)))
"""


def memory_row(size: int, kernel: int) -> list[str]:
    """Case 5: peak memory of one big conv, in a fresh child process so that peaks are its own."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    child = subprocess.run([sys.executable, "-c", MEMORY_CHILD, str(size), str(kernel)],
                           env=env, capture_output=True, text=True, check=True)
    result = json.loads(child.stdout)
    mib = {key: value / 2**20 for key, value in result.items() if key != "ms"}
    extra = mib["after"] - mib["before"]
    return [f"1ch {kernel}x{kernel} valid {size}x{size}", f"{result['ms']:.0f}", f"{mib['output']:.0f}",
            f"{extra:.0f} ({extra / mib['output']:.2f}x)",
            f"{mib['traced']:.0f} ({mib['traced'] / mib['output']:.2f}x)",
            f"{mib['after']:.0f}", f"< {PEAK_LIMIT_MIB}", "PASS" if mib["after"] < PEAK_LIMIT_MIB else "FAIL"]


def auto_method(x: np.ndarray, w: np.ndarray, **settings) -> str:
    """The path ``method="auto"`` takes, seen by counting calls of the taps kernel."""
    taps = getattr(conv, "_conv_taps", None)  # where conv2d looks it up
    if taps is None:
        return "?"
    calls = []
    conv._conv_taps = lambda *args: calls.append(1) or taps(*args)
    try:
        ops.conv2d(x, w, **settings)
    finally:
        conv._conv_taps = taps
    return "taps" if calls else "gemm"


def crossover_row(size: int, channels: int, filters: int, k: int, groups: int, repeat: int) -> list[str]:
    """Taps vs gemm on one shape; auto counts as right when its pick is within 10% of the best."""
    x, w = random(channels, size, size), random(filters, channels // groups, k, k)
    settings = dict(padding=k // 2, groups=groups)
    times = {method: best_ms(lambda method=method: ops.conv2d(x, w, method=method, **settings), repeat)[0]
             for method in ("taps", "gemm")}
    faster = min(times, key=times.get)
    auto = auto_method(x, w, **settings)
    right = auto in times and times[auto] <= 1.1 * times[faster]
    shape = f"{channels}->{filters} {k}x{k}{f' groups {groups}' if groups > 1 else ''} {size}x{size}"
    return [shape, str(channels * filters * k * k // groups**2), f"{times['taps']:.3f}", f"{times['gemm']:.3f}",
            f"{times['taps'] / times['gemm']:.2f}", faster, auto, "yes" if right else "NO"]


def crossover_shapes(grid: bool) -> list[tuple[int, int, int, int, int]]:
    """(size, C, F, k, groups): a few telling shapes, or with ``grid`` a scan over C, F, k and size."""
    if grid:
        return [(size, c, f, k, 1) for size in (256, 56) for k in (3, 5)
                for c in (1, 2, 4, 8) for f in (1, 2, 4, 8, 16)]
    return [(2048, 1, 1, 3, 1), (2048, 1, 1, 7, 1), (256, 1, 1, 3, 1), (256, 1, 8, 3, 1), (256, 8, 1, 5, 1),
            (56, 1, 8, 3, 1), (112, 32, 32, 3, 32), (28, 128, 128, 3, 128)]


def print_table(title: str, headers, rows) -> None:
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows)]
    line = lambda cells: "  ".join(str(c).ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    print(f"\n{title}\n{line(headers)}\n{line('-' * w for w in widths)}")
    for row in rows:
        print(line(row))


def cpu_seconds() -> tuple[float, float] | None:
    """(busy CPU seconds of the whole machine, of this process and its children); None off Linux."""
    try:
        with open("/proc/stat") as stat:
            ticks = [int(v) for v in stat.readline().split()[1:9]]
    except OSError:
        return None
    own = os.times()
    busy = (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")  # minus idle and iowait
    return busy, own.user + own.system + own.children_user + own.children_system


def report_other_load(before, wall: float) -> None:
    """Say how much of the machine other processes used meanwhile: the numbers are noisy if much."""
    after = cpu_seconds()
    if before is None or after is None:
        return
    share = ((after[0] - before[0]) - (after[1] - before[1])) / (wall * (os.cpu_count() or 1))
    warning = "; results are noisy, re-run on a quiet machine" if share > 0.05 else ""
    print(f"\nOther processes used {max(share, 0):.0%} of the CPU during this run{warning}.")


def describe_setup() -> str:
    versions = [f"numpy {np.__version__}", f"cores {os.cpu_count()}"]
    versions.append(f"torch {torch.__version__} ({torch.get_num_threads()} threads)" if torch
                    else f"torch {NOT_INSTALLED}")
    versions.append(f"cv2 {cv2.__version__} ({cv2.getNumThreads()} threads)" if cv2 else f"cv2 {NOT_INSTALLED}")
    return ", ".join(versions)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller images, fewer repeats, no memory case")
    parser.add_argument("--repeat", type=int, help="timed calls per measurement (default 10, quick 3)")
    parser.add_argument("--crossover", action="store_true", help="scan taps vs gemm over a grid of shapes")
    args = parser.parse_args()
    repeat = args.repeat or (3 if args.quick else 10)
    size, crop = (512, 128) if args.quick else (2048, 256)

    settle_allocator()
    started, load_before = time.perf_counter(), cpu_seconds()
    print(f"{describe_setup()}; best of {repeat} after a warm-up; ratio = ours / reference")
    rows = single_channel_rows(size, crop, repeat) + layer_rows(size, repeat)
    print_table("Speed", ("case", "ours (ms)", "reference", "reference (ms)", "ratio", "target", "verdict"), rows)
    if not args.quick:
        print_table("Memory (child process; MiB)",
                    ("case", "ours (ms)", "output", "peak RSS extra", "tracemalloc peak",
                     "process peak", "target", "verdict"),
                    [memory_row(8192, 7)])
    print_table("taps vs gemm (method='auto' is right when within 10% of the faster)",
                ("shape", "(C/g)*(F/g)*K*K", "taps (ms)", "gemm (ms)", "taps/gemm", "faster", "auto", "right"),
                [crossover_row(*shape, repeat) for shape in crossover_shapes(args.crossover)])
    report_other_load(load_before, time.perf_counter() - started)


if __name__ == "__main__":
    main()
