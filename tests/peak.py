"""Measure what a piece of work really costs in memory: run it in a fresh child process and read
the child's peak resident set size (RSS) before and after.

    >>> code, stderr, peak = measure_peak(["run", "img.png", "-k", "sobel_x", "-o", "out.npy", "-f", "npy"])

The child imports the modules (and runs ``warmup``, when given, e.g. a tiny run that loads
Pillow's plugins, builds the Typer command and starts BLAS's threads), then reads its RSS,
calls ``target(argv)`` and reads its peak RSS again. ``peak`` is the difference: what the work
added to the process at its highest, allocator slack included, imports and warm-up excluded.

The peak is Linux's VmHWM, reset to the current RSS just before the work (``/proc/self/clear_refs``).
``ru_maxrss`` would do where that is missing, but on Linux it starts from the parent's peak:
a child of a 500 MB pytest process reports 500 MB before doing anything.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import NamedTuple, Sequence

ROOT = Path(__file__).resolve().parent.parent

# What `cnn run` imports on its way (some only inside functions), so that none of it counts as the work.
PRELOAD = ("numpy", "PIL.Image", "PIL.PngImagePlugin", "rich.console", "concurrent.futures", "cnncli.cli",
           "cnncli.cli.run", "cnncli.cli.options", "cnncli.cli.output", "cnncli.cli.batch", "cnncli.io.saving",
           "cnncli.io.images", "cnncli.io.reading", "cnncli.io.kernels", "cnncli.engine.graph", "cnncli.io.modelfile", "cnncli.engine.ops",
           "cnncli.io.trace")

_CHILD = r"""
import gc, importlib, io, json, os, resource, sys
spec = json.loads(sys.argv[1])
for name in spec["preload"]:
    importlib.import_module(name)
module, _, function = spec["target"].partition(":")
target = getattr(importlib.import_module(module), function)


def call(argv):
    try:
        code = target(argv)
    except SystemExit as exit:
        code = exit.code
    return code if isinstance(code, int) else (0 if code is None else 1)


def status(key):
    try:
        with open("/proc/self/status") as lines:
            for line in lines:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def maxrss():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def hwm():
    return status("VmHWM")


def reset_hwm():
    with open("/proc/self/clear_refs", "w") as reset:
        reset.write("5")  # VmHWM := VmRSS


marks, before = {}, []


def mark(path):
    # Measure the first call of the function at ``module:Class.method`` on its own: the peak is
    # reset when it starts and read when it returns (the peak before it is kept for the total).
    module, _, qualname = path.partition(":")
    owner = importlib.import_module(module)
    *outer, name = qualname.split(".")
    for part in outer:
        owner = getattr(owner, part)
    original = getattr(owner, name)

    def wrapped(*args, **kwargs):
        if path in marks or not exact:
            return original(*args, **kwargs)
        before.append(hwm())
        reset_hwm()
        result = original(*args, **kwargs)
        marks[path] = hwm()
        return result

    setattr(owner, name, wrapped)


if spec["warmup"] is not None:
    saved = sys.stderr
    sys.stderr = io.StringIO()  # the warm-up's messages are not the work's
    try:
        call(spec["warmup"])
    finally:
        sys.stderr = saved
gc.collect()
start = status("VmRSS")
try:
    reset_hwm()
    exact = True
except OSError:
    exact, start = False, maxrss()
for path in spec["marks"]:
    mark(path)
code = call(spec["argv"])
end = max([hwm(), *before]) if exact else maxrss()
marks = {key: value - start for key, value in marks.items()}
with open(spec["report"], "w") as report:
    json.dump({"code": code, "peak": end - start, "start": start, "marks": marks, "exact": exact}, report)
"""


class Peak(NamedTuple):
    code: int  # the target's exit code (its return value, or SystemExit's)
    stderr: str
    peak: int  # bytes: the child's peak RSS during the work, above its RSS before it


class Measured(Peak):
    """A Peak that also holds ``marks``: for each "module:function" asked for, the peak while its
    first call ran, above the RSS at the start of the work (e.g. the forward pass of a run: what
    the process held then, without what reading the model or writing the output needed at
    other times). Only where the peak can be reset (Linux); empty elsewhere."""

    marks: dict


def measure_peak(argv: Sequence[str], target: str = "cnncli.cli:main", *, warmup: Sequence[str] | None = None,
                 marks: Sequence[str] = (), preload: Sequence[str] = PRELOAD, cwd: str | Path = ROOT,
                 timeout: float = 120) -> Measured:
    """Run ``target(argv)`` (``"module:function"``) in a fresh Python and measure its peak memory.

    stdout goes to /dev/null (give ``-o FILE`` for anything to keep); stderr is returned. Raises
    RuntimeError when the child dies without reporting (a crash, or the kernel's OOM killer).
    """
    with tempfile.TemporaryDirectory() as folder:
        report = Path(folder) / "report.json"
        spec = {"target": target, "argv": list(argv), "warmup": None if warmup is None else list(warmup),
                "marks": list(marks), "preload": list(preload), "report": str(report)}
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
                   NO_COLOR="1")
        done = subprocess.run([sys.executable, "-c", _CHILD, json.dumps(spec)], cwd=cwd, env=env,
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              text=True, timeout=timeout)
        if not report.exists():
            raise RuntimeError(f"the child exited with {done.returncode} without a report:\n{done.stderr}")
        result = json.loads(report.read_text())
    measured = Measured(result["code"], done.stderr, result["peak"])
    measured.marks = result["marks"]
    return measured
