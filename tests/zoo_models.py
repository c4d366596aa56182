"""Real architectures (tests/data/zoo for the tests, benchmarks/zoo for the speed benchmarks; made by
tests/fixtures/make_zoo.py), with their weights drawn again: each stripped initializer gets seeded
uniform values with its recorded mean and standard deviation, clipped to its recorded range (so a
variance stays positive)."""

import json
import math
import zlib
from pathlib import Path

import numpy as np
import onnx
from onnx import helper

ROOT = Path(__file__).resolve().parents[1]
TESTED, BENCHMARKED = ROOT / "tests" / "data" / "zoo", ROOT / "benchmarks" / "zoo"
MARK = "cnn-zoo-stats "


def inflate(path: Path) -> onnx.ModelProto:
    """The model in ``path`` with values in every initializer; the same values on every call."""
    model = onnx.load_model(str(path))
    for tensor in model.graph.initializer:
        if not tensor.doc_string.startswith(MARK):
            continue
        stats = json.loads(tensor.doc_string[len(MARK):])
        rng = np.random.default_rng(zlib.crc32(tensor.name.encode()))
        values = rng.random(tuple(tensor.dims), dtype=np.float32)  # uniform: 3x faster to draw than normal
        values *= np.float32(2 * math.sqrt(3) * stats["std"])  # a width of 2 sqrt(3) std has that std
        values += np.float32(stats["mean"] - math.sqrt(3) * stats["std"])
        np.clip(values, stats["min"], stats["max"], out=values)
        dtype = helper.tensor_dtype_to_np_dtype(tensor.data_type)
        tensor.raw_data = values.astype(dtype.newbyteorder("<"), copy=False).tobytes()  # ONNX stores little-endian
        tensor.doc_string = ""
    return model


def zoo_names() -> list[str]:
    return sorted(path.stem for path in TESTED.glob("*.onnx"))
