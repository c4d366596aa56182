"""ONNX tensors as NumPy arrays: floats of every width as float32 (what the engine computes in),
integers as they are (4- and 2-bit ones widened to a byte)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ...errors import SpecError, describe

# TensorProto data types by what they become: FLOAT, FLOAT16, DOUBLE, BFLOAT16, the FLOAT8 kinds,
# FLOAT4E2M1 and FLOAT8E8M0 as float32 (onnx gives the narrow ones as ml_dtypes arrays, kind "V");
# UINT4, INT4, UINT2, INT2 as a byte; the rest of the integers and BOOL as onnx gives them.
FLOATS = frozenset({1, 10, 11, 16, 17, 18, 19, 20, 23, 24})
NARROW_INTS = {21: np.uint8, 22: np.int8, 25: np.uint8, 26: np.int8}
INTS = frozenset({2, 3, 4, 5, 6, 7, 9, 12, 13})


def to_array(tensor: Any, source: str, where: str, external: Any = None) -> np.ndarray:
    """The values of a TensorProto; SpecError naming ``where`` (an initializer or a node) if they
    cannot be read. Values stored in an external file are read through ``external``
    (external.ExternalData, None when the model came without its folder), with its checks."""
    from onnx import TensorProto, numpy_helper

    if tensor.data_location == TensorProto.EXTERNAL:
        from ..limits import DEFAULT_LIMITS
        from .external import ExternalData

        tensor = (external or ExternalData(None, source, DEFAULT_LIMITS, 0)).inline(tensor, where)
    kind = tensor.data_type
    if kind not in FLOATS and kind not in NARROW_INTS and kind not in INTS:
        name = TensorProto.DataType.Name(kind) if kind in TensorProto.DataType.values() else f"type {kind}"
        raise SpecError(f"{where}: tensor {tensor.name!r} holds {name.lower()} values; expected numbers",
                        source=source)
    if any(d < 0 for d in tensor.dims):  # numpy would read a -1 as "whatever is left"
        raise SpecError(f"{where}: tensor {tensor.name!r} has dims {tuple(tensor.dims)}, one of them negative",
                        source=source)
    stored = len(tensor.raw_data) or sum(len(values) for values in (
        tensor.float_data, tensor.int32_data, tensor.int64_data, tensor.double_data, tensor.uint64_data))
    if not stored and len(tensor.dims) and all(tensor.dims):  # not a scalar, no dimension 0: values are due
        raise SpecError(f"{where}: tensor {tensor.name!r} has dims {tuple(tensor.dims)} but no values (a file saved "
                        "without its weights?)", source=source)
    try:
        array = numpy_helper.to_array(tensor)
    except Exception as err:  # onnx's errors on a tensor whose data does not match its dims or type
        raise SpecError(f"{where}: tensor {tensor.name!r} cannot be read: {describe(err)}", source=source) from None
    if kind in FLOATS:
        return array.astype(np.float32)
    if kind in NARROW_INTS:
        return array.astype(NARROW_INTS[kind])
    return array

