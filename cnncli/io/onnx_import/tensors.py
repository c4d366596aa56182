"""ONNX tensors as NumPy arrays: floats as float32 (what the engine computes in), integers as they are."""

from __future__ import annotations

from typing import Any

import numpy as np

from ...errors import SpecError, describe


def to_array(tensor: Any, source: str, where: str) -> np.ndarray:
    """The values of a TensorProto; SpecError naming ``where`` (an initializer or a node) if they
    are stored outside the file or cannot be read."""
    from onnx import TensorProto, numpy_helper

    if tensor.data_location == TensorProto.EXTERNAL:
        raise SpecError(f"{where}: tensor {tensor.name!r} is stored in an external data file, which cnn does not "
                        "read yet", source=source)
    try:
        array = numpy_helper.to_array(tensor)
    except Exception as err:  # onnx's errors on a tensor whose data does not match its dims or type
        raise SpecError(f"{where}: tensor {tensor.name!r} cannot be read: {describe(err)}", source=source) from None
    if array.dtype.kind == "f":
        array = array.astype(np.float32)
    elif array.dtype.kind not in "iub":
        raise SpecError(f"{where}: tensor {tensor.name!r} holds {array.dtype} values; expected numbers",
                        source=source)
    return array
