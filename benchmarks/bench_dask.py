"""Throughput of a batch on a Dask cluster (`--scheduler`) against this machine's pool (`--workers 2`).

Run from the repository root, with the dask extra (`pip install -e '.[test]'` has it):

    python benchmarks/bench_dask.py                    # 2,000 images of 256x256, best of 2
    python benchmarks/bench_dask.py --images 400 --repeat 3

Target (issue 14): a LocalCluster of two single-threaded worker processes gives at least 0.85x the
throughput of `--workers 2`. Two workloads over one folder of noise images: the digits model
(`-f jsonl`: a small network's trace) and one Sobel stage (`-o edges.npy`: an array of 127x127 per
image comes back through Dask, and an image takes 2 ms, so Dask's costs weigh most).

Each setting runs `python -m cnncli run ...` as a whole process (importing Dask and connecting
included), alternating the settings so that a noisy moment slows both alike; the best wall time of
the repeats counts. The cluster is started once, before the timings, as a running cluster is (with
the settings `--scheduler local` gives its own: no worker profiler); what starting and closing one
costs is printed apart. Because the machine may be shared, the CPU time of every process the run
used is counted too: the pool's parent and workers, or the client, the scheduler (with the
nannies) and the workers.

Two ratios: of the whole commands over all the images (what a user waits), and of the rates once
running: the same commands on 4 images give each setting's fixed cost (start-up, Dask's import and
the connection), and (time - fixed) / (images - 4) the time an image adds. The overhead per image
is the difference of those, in ms.
"""

from __future__ import annotations

import argparse
import logging
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
TARGET = 0.85
TICK = os.sysconf("SC_CLK_TCK")
FEW = 4  # images of the runs that measure each setting's fixed cost (the pool forks its workers from 3)


def make_images(folder: Path, count: int, size: int = 256) -> None:
    """Noise between 128 and 255: light paper, as the digits model expects (no warning per image)."""
    rng = np.random.default_rng(0)
    for i in range(count):
        Image.fromarray(rng.integers(128, 256, (size, size), dtype=np.uint8)).save(folder / f"img_{i:05d}.png",
                                                                                   compress_level=1)


def _cpu(usage: resource.struct_rusage) -> float:
    return usage.ru_utime + usage.ru_stime


def _process_cpu(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / TICK  # utime, stime
    return total


def _children() -> list[int]:
    """This process's children, whichever of its threads started them (the nannies' threads start the workers)."""
    return [int(pid) for task in Path("/proc/self/task").iterdir() for pid in (task / "children").read_text().split()]


def time_run(arguments: list[str]) -> tuple[float, float]:
    """Wall seconds and CPU seconds of every process of the run: the cnn process and what it waited
    for (the pool's workers), and this process (a LocalCluster's scheduler and nannies) and its
    other children (the cluster's workers)."""
    workers = _children()
    before = _cpu(resource.getrusage(resource.RUSAGE_CHILDREN)), _cpu(resource.getrusage(resource.RUSAGE_SELF)), \
        _process_cpu(workers)
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "cnncli", "run", *arguments], cwd=REPO, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE)
    elapsed = time.perf_counter() - started
    after = _cpu(resource.getrusage(resource.RUSAGE_CHILDREN)), _cpu(resource.getrusage(resource.RUSAGE_SELF)), \
        _process_cpu(workers)
    if done.returncode != 0:
        raise SystemExit(f"cnn run {' '.join(arguments)} exited with {done.returncode}: {done.stderr.decode()}")
    return elapsed, sum(a - b for a, b in zip(after, before))


def main_bench() -> None:
    import dask
    from distributed import LocalCluster

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="cnn-bench-dask-") as name:
        folder = Path(name) / "images"
        folder.mkdir()
        make_images(folder, args.images)
        few = Path(name) / "few"
        few.mkdir()
        for image in sorted(folder.iterdir())[:FEW]:
            (few / image.name).symlink_to(image)
        started = time.perf_counter()
        with dask.config.set({"distributed.worker.profile.enabled": False}):
            cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
                                   silence_logs=logging.CRITICAL)
        cluster_start = time.perf_counter() - started
        try:
            workloads = {
                "digits model, -f jsonl": [str(folder), "--model", "digits", "-f", "jsonl"],
                "sobel_x stage, -o edges.npy": [str(folder), "-k", "sobel_x", "-o", str(Path(name) / "edges.npy"),
                                                "--force"],
            }
            settings = {"--workers 2": ["--workers", "2"], "--scheduler": ["--scheduler", cluster.scheduler_address]}
            wall = {(w, s): float("inf") for w in workloads for s in settings}
            fixed = dict(wall)
            cpu: dict[tuple[str, str], list[float]] = {(w, s): [] for w in workloads for s in settings}
            for arguments in workloads.values():  # warm-up: the page cache, the workers' imports
                for extra in settings.values():
                    time_run(arguments + extra)
            for _ in range(args.repeat):
                for workload, arguments in workloads.items():
                    for setting, extra in settings.items():
                        seconds, used = time_run(arguments + extra)
                        wall[workload, setting] = min(wall[workload, setting], seconds)
                        cpu[workload, setting].append(used)
                        seconds, _ = time_run([str(few)] + arguments[1:] + extra)
                        fixed[workload, setting] = min(fixed[workload, setting], seconds)
        finally:
            started = time.perf_counter()
            cluster.close()
            cluster_close = time.perf_counter() - started
    load_after = os.getloadavg()
    n = args.images
    print(f"{n:,} images of 256x256, best of {args.repeat}; os.cpu_count() = {os.cpu_count()}; load average "
          f"(1, 5, 15 min) before {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}, "
          f"after {load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f}")
    verdicts = []
    for workload in workloads:
        local, remote = wall[workload, "--workers 2"], wall[workload, "--scheduler"]
        cpu_local, cpu_remote = min(cpu[workload, "--workers 2"]), min(cpu[workload, "--scheduler"])
        fixed_local, fixed_remote = fixed[workload, "--workers 2"], fixed[workload, "--scheduler"]
        each_local, each_remote = (local - fixed_local) / (n - FEW), (remote - fixed_remote) / (n - FEW)
        ratio, running = local / remote, each_local / each_remote
        verdicts.append(running >= TARGET)
        print(f"{workload}:")
        for label, seconds, start, each, used in (("--workers 2", local, fixed_local, each_local, cpu_local),
                                                  ("LocalCluster of 2", remote, fixed_remote, each_remote, cpu_remote)):
            print(f"  {label:18} {seconds:6.2f} s ({n / seconds:4.0f}/s); fixed {start:4.2f} s, then "
                  f"{each * 1000:5.2f} ms an image ({1 / each:4.0f}/s); CPU {used * 1000 / n:5.2f} ms an image")
        print(f"  throughput ratio once running {running:.2f} (target >= {TARGET}) -> "
              f"{'PASS' if running >= TARGET else 'FAIL'}; whole commands {ratio:.2f}; "
              f"CPU {cpu_local / cpu_remote:.2f}; overhead an image {(each_remote - each_local) * 1000:+.2f} ms wall, "
              f"{(cpu_remote - cpu_local) * 1000 / n:+.2f} ms CPU")
    print(f"starting a LocalCluster of 2 took {cluster_start:.2f} s and closing it {cluster_close:.2f} s "
          "(what --scheduler local adds to a run)")
    print("overall:", "PASS" if all(verdicts) else "FAIL")


if __name__ == "__main__":
    main_bench()
