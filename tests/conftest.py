"""Shared test helpers."""

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))  # the oracles module


def traced_forward(network, x):
    """The steps of ``network.forward(x)`` and tracemalloc's peak while it ran and every map's
    statistics were computed, as `cnn run` does."""
    import tracemalloc

    tracemalloc.start()
    try:
        steps = network.forward(x)
        for step in steps:
            _ = step.stats
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return steps, peak


def assert_array(actual, expected, *, dtype=None, rtol=1e-6, atol=1e-6):
    """Check shape, then dtype, then values within explicit tolerances."""
    actual = np.asarray(actual)
    expected = np.asarray(expected)
    assert actual.shape == expected.shape, f"shape {actual.shape} != {expected.shape}"
    if dtype is not None:
        assert actual.dtype == dtype, f"dtype {actual.dtype} != {dtype}"
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol)


def on_a_terminal(args, stream="stderr", **popen):
    """Run ``args`` with its ``stream`` ("stdout" or "stderr") on a pseudo-terminal and its other
    output discarded unless ``popen`` says otherwise; its exit code and all it drew on the terminal."""
    import os
    import pty
    import subprocess

    leader, follower = pty.openpty()
    other = "stdout" if stream == "stderr" else "stderr"
    child = subprocess.Popen(args, **{stream: follower, other: subprocess.DEVNULL, **popen})
    os.close(follower)
    drawn = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the child closed its end
            break
        if not chunk:
            break
        drawn += chunk
    code = child.wait(timeout=60)
    os.close(leader)
    return code, drawn
