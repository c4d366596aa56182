"""Shared test helpers."""

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))  # the oracles module


def assert_array(actual, expected, *, dtype=None, rtol=1e-6, atol=1e-6):
    """Check shape, then dtype, then values within explicit tolerances."""
    actual = np.asarray(actual)
    expected = np.asarray(expected)
    assert actual.shape == expected.shape, f"shape {actual.shape} != {expected.shape}"
    if dtype is not None:
        assert actual.dtype == dtype, f"dtype {actual.dtype} != {dtype}"
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol)
