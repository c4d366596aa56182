"""Real architectures (tests/data/zoo for the tests, benchmarks/zoo for the speed benchmarks; made by
tests/fixtures/make_zoo.py), with their weights drawn again: each stripped initializer gets seeded
normal values with its recorded mean and standard deviation, clipped to its recorded range."""

import json
import zlib
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

ROOT = Path(__file__).resolve().parents[1]
TESTED, BENCHMARKED = ROOT / "tests" / "data" / "zoo", ROOT / "benchmarks" / "zoo"
MARK = "cnn-zoo-stats "


def inflate(path: Path) -> onnx.ModelProto:
    """The model in ``path`` with values in every initializer; the same values on every call."""
    model = onnx.load_model(str(path))
    for index, tensor in enumerate(model.graph.initializer):
        if not tensor.doc_string.startswith(MARK):
            continue
        stats = json.loads(tensor.doc_string[len(MARK):])
        rng = np.random.default_rng(zlib.crc32(tensor.name.encode()))
        values = rng.standard_normal(tuple(tensor.dims), dtype=np.float32)
        values *= np.float32(stats["std"])
        values += np.float32(stats["mean"])
        np.clip(values, stats["min"], stats["max"], out=values)
        dtype = helper.tensor_dtype_to_np_dtype(tensor.data_type)
        model.graph.initializer[index].CopyFrom(numpy_helper.from_array(values.astype(dtype, copy=False),
                                                                        tensor.name))
    return model


def zoo_names() -> list[str]:
    return sorted(path.stem for path in TESTED.glob("*.onnx"))
