"""What a forward pass produced, as plain data: per-layer statistics and JSON-ready records.

The same record describes a layer in ``cnn run --format json`` and in the manifest that
``cnn inspect --save`` writes, so scripts read one layout.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from .images import LoadedImage
from .model import Step

if TYPE_CHECKING:
    from .modelfile import Model
    from .predictions import Prediction

TRACE_FORMAT = "cnn-trace"
TRACE_VERSION = 1


def layer_record(step: Step) -> dict[str, Any]:
    """A layer's name, type, settings, shape, counts, statistics and channel labels."""
    record = {
        "index": step.index,
        "name": step.name,
        "type": step.type,
        "params": step.settings,
        "shape": list(step.output.shape),
        "parameters": step.params,
        "macs": step.macs,
        "seconds": round(step.seconds, 6),
        "stats": {key: value if math.isfinite(value) else None for key, value in step.stats.items()},
    }
    if step.labels:
        record["channels"] = list(step.labels)
    return record


def image_record(image: LoadedImage) -> dict[str, Any]:
    return {
        "source": image.source,
        "format": image.format,
        "mode": image.mode,
        "channels": list(image.channel_names),
        "shape": list(image.array.shape),
        "dtype": str(image.array.dtype),
        "notes": list(image.notes),
    }


def model_record(model: Model) -> dict[str, Any]:
    spec = model.input
    return {"name": model.name, "source": model.source, "weights": model.weights_source,
            "input": {"size": list(spec.size), "color": spec.color, "scale": spec.scale, "invert": spec.invert,
                      "mean": list(spec.mean), "std": list(spec.std)},
            "labels": list(model.labels)}


def run_extras(model: Model | None, predictions: Sequence[Prediction] | None) -> dict[str, Any]:
    """The keys a model run adds to a trace or a manifest: ``model`` and ``predictions``."""
    extras: dict[str, Any] = {}
    if model is not None:
        extras["model"] = model_record(model)
    if predictions is not None:
        extras["predictions"] = [p.record() for p in predictions]
    return extras


def trace_document(image: LoadedImage, steps: Sequence[Step], extras: dict[str, Any] | None = None) -> dict[str, Any]:
    """The whole forward pass with every layer's values: the layout of ``--format json``."""
    layers = []
    for step in steps:
        record = layer_record(step)
        record["values"] = json_values(step.output)
        layers.append(record)
    return {
        "format": TRACE_FORMAT,
        "version": TRACE_VERSION,
        "image": image_record(image),
        "layers": layers,
        "output": {"name": steps[-1].name, "shape": list(steps[-1].output.shape)},
        **(extras or {}),
    }


def json_values(array: np.ndarray) -> Any:
    """Nested lists of Python floats (exactly the array's values); NaN and infinities become null."""
    values = np.asarray(array, dtype=np.float64)
    if np.all(np.isfinite(values)):
        return values.tolist()
    objects = values.astype(object)
    objects[~np.isfinite(values)] = None
    return objects.tolist()


CSV_HEADER = ("source", "layer", "channel", "label", "row", "column", "value")


def csv_rows(source: str, step: Step, labels: Sequence[str] = ()) -> str:
    """A map's values as CSV rows in long form (one value a row, columns CSV_HEADER), row-major
    per channel; a 1-D output has its index as the channel and blank row and column.

    ``labels`` name the channels (or a vector's entries, e.g. a model's classes) when the step has none.
    Values are written as the float64 number equal to each (as JSON does), with inf, -inf and nan
    where a map overflowed (CSV has no null; a blank is a vector's missing row and column).
    """
    import csv
    import io

    output = step.output
    planes = output.reshape(output.shape[0], -1) if output.ndim > 1 else output.reshape(-1, 1)  # (C, H*W)
    width = output.shape[-1] if output.ndim > 1 else 1
    values = np.asarray(planes, dtype=np.float64).tolist()  # repr: exact, and inf or nan where they are
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    labels = step.labels or labels
    for channel, plane in enumerate(values):
        label = labels[channel] if channel < len(labels) else ""
        if output.ndim == 1:
            writer.writerow((source, step.name, channel, label, "", "", repr(plane[0])))
            continue
        writer.writerows((source, step.name, channel, label, i // width, i % width, repr(value))
                         for i, value in enumerate(plane))
    return buffer.getvalue()
