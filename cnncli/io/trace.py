"""What a forward pass produced, as plain data: per-layer records, the JSON trace and CSV rows.

The same record describes a layer in ``cnn run --format json`` and in the manifest that
``cnn inspect --save`` writes, so scripts read one layout; each document is built by one function
here (``layer_records``, ``document_head``, ``inspect_document``, ``summary_document``). The trace
and the CSV rows are written in pieces through a ``write(bytes)`` callable, so that the text of a
big map is never held whole. An image that failed in a batch keeps its place as an error record
(JSON) or an error row (CSV).

A layer's record names what it reads (``"inputs": ["conv2", "relu1"]``) only when the network is
not a chain; a record without ``inputs`` reads the record before it, as every version-1 model and
every kernel run does (their output is as it always was).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from .images import LoadedImage
from .input_rule import input_object
from .jsontext import dumps, float32_short, jsonable, number_texts, write_array
from ..engine.graph import Step, is_chain

if TYPE_CHECKING:
    from .modelfile import Model
    from ..engine.predictions import Prediction

Write = Callable[[bytes], Any]
TRACE_FORMAT = "cnn-trace"
INSPECT_FORMAT = "cnn-inspect"
SUMMARY_FORMAT = "cnn-summary"
TRACE_VERSION = 2
VALUES = ("all", "final", "none")  # which layers carry their values in a trace


def layer_record(step: Step, timing: bool = False, inputs: bool = False) -> dict[str, Any]:
    """A layer's name, type, settings, shape, counts, statistics and channel labels; its time with
    ``timing``; with ``inputs``, the names of the steps it read (the input reads none)."""
    record: dict[str, Any] = {"index": step.index, "name": step.name, "type": step.type}
    if inputs:
        record["inputs"] = list(step.inputs)
    record |= {
        "params": step.settings,
        "shape": list(step.output.shape),
        "parameters": step.params,
        "macs": step.macs,
    }
    if timing:
        record["seconds"] = round(step.seconds, 6)
    stats = dict(step.stats)
    if step.output.dtype == np.float32:  # the map's own values: their shortest float32 text
        stats["min"], stats["max"] = float32_short(stats["min"]), float32_short(stats["max"])
    record["stats"] = {key: value if math.isfinite(value) else None for key, value in stats.items()}
    if step.labels:
        record["channels"] = list(step.labels)
    return record


def layer_records(steps: Sequence[Step], timing: bool = False) -> list[dict[str, Any]]:
    """Every step's ``layer_record``, naming what each read when the steps are not a chain."""
    inputs = not is_chain(steps)
    return [layer_record(step, timing, inputs) for step in steps]


def document_head(format: str, image: LoadedImage, version: int = TRACE_VERSION) -> dict[str, Any]:
    """The keys every document about one image starts with: its format, version and image."""
    return {"format": format, "version": version, "image": image_record(image)}


def inspect_document(image: LoadedImage, layers: list[dict[str, Any]], extras: dict[str, Any] | None = None
                     ) -> dict[str, Any]:
    """``cnn inspect --format json`` and the manifest of ``--save`` (which adds each layer's files and
    their SHA-256): the image, the ``layer_records`` and the run's ``extras``."""
    return {**document_head(INSPECT_FORMAT, image), "layers": layers, **(extras or {})}


def summary_document(model: Model, rows: Sequence[dict[str, Any]], input_shape: Sequence[int],
                     chain: bool = True, outputs: Sequence[str] = ()) -> dict[str, Any]:
    """``cnn summary --format json``: a model's layers from shapes alone (``Network.table``), with
    ``inputs`` per layer unless the network is a ``chain``, and its extra ``outputs`` if it has any."""
    layers = []
    for row in rows:
        layer: dict[str, Any] = {"name": row["name"], "type": row["type"]}
        if not chain:
            layer["inputs"] = list(row["inputs"])
        layer |= {"params": row["settings"], "shape": list(row["shape"]), "parameters": row["params"],
                  "macs": row["macs"]}
        layers.append(layer)
    document = {"format": SUMMARY_FORMAT, "version": 1, "model": model_record(model), "input_shape": list(input_shape),
                "layers": layers, "total": {"parameters": model.params, "macs": sum(row["macs"] for row in rows)}}
    if outputs:
        document["outputs"] = list(outputs)
    return document


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
    """The model's name, files, input rule and labels; and the layers its file names as extra
    ``outputs`` (auxiliary heads), when it names any."""
    spec = model.input
    rule = input_object(spec)  # the model file's form; with resize or crop, the record gives both
    if spec.resize or spec.crop:  # only then: a rule that stretches writes the record it always wrote
        rule.pop("crop", None)  # put back after resize, in the order the record always had
        rule.update({"resize": spec.resize, "crop": list(spec.size)})
    record = {"name": model.name, "source": model.source, "weights": model.weights_source, "input": rule,
              "labels": list(model.labels)}
    if model.network.outputs:
        record["outputs"] = list(model.network.outputs)
    return record


def prediction_record(prediction: Prediction, output_dtype: np.dtype = np.dtype(np.float64)) -> dict[str, Any]:
    """A prediction's record; the output's own float32 values (the score, and the probability when the
    network ends in a softmax) in their shortest float32 text."""
    score, probability = prediction.score, prediction.probability
    if output_dtype == np.float32:
        probability = float32_short(probability) if probability == score else probability
        score = float32_short(score)
    return jsonable({"rank": prediction.rank, "index": prediction.index, "label": prediction.label,
                     "probability": probability, "score": score})


def run_extras(model: Model | None, predictions: Sequence[Prediction] | None,
               output_dtype: np.dtype = np.dtype(np.float64)) -> dict[str, Any]:
    """The keys a model run adds to a trace or a manifest: ``model`` and ``predictions``."""
    extras: dict[str, Any] = {}
    if model is not None:
        extras["model"] = model_record(model)
    if predictions is not None:
        extras["predictions"] = [prediction_record(p, output_dtype) for p in predictions]
    return extras


def with_values(steps: Sequence[Step], values: str) -> range:
    """The indices of the steps whose values an output carries, in order (``values``: all, final or none)."""
    return range({"all": 0, "final": len(steps) - 1}.get(values, len(steps)), len(steps))


def write_trace(write: Write, image: LoadedImage, steps: Sequence[Step], extras: dict[str, Any] | None = None,
                values: str = "all", timing: bool = False) -> None:
    """The whole forward pass as one line of JSON: the layout of ``--format json``.

    Every layer's record, with its values (nested lists, null where not finite) for the layers
    ``values`` picks; then the output's name and shape and the ``extras``.
    """
    carried = with_values(steps, values)
    head = dumps(document_head(TRACE_FORMAT, image))
    write(head[:-1] + b',"layers":[')
    inputs = not is_chain(steps)
    for i, step in enumerate(steps):
        record = dumps(layer_record(step, timing, inputs))
        if i in carried:
            write((b"," if i else b"") + record[:-1] + b',"values":')
            write_array(write, step.output)
            write(b"}")
        else:
            write((b"," if i else b"") + record)
    tail = dumps({"output": {"name": steps[-1].name, "shape": list(steps[-1].output.shape)}, **(extras or {})})
    write(b"]," + tail[1:])


INPUTS_MEMBER = "__inputs__"  # the .npz member naming what each layer read, for a network that is not a chain


def inputs_table(steps: Sequence[Step]) -> np.ndarray | None:
    """What an .npz of a network that is not a chain adds as ``INPUTS_MEMBER``: (L, 2) strings, each
    step's name and the JSON list of the names it read (the layer records' ``inputs``); None for a
    chain, whose archive is as it always was."""
    if is_chain(steps):
        return None
    return np.array([[step.name, dumps(list(step.inputs)).decode()] for step in steps], dtype=str)


def error_record(source: str, message: str, format: str = TRACE_FORMAT) -> dict[str, Any]:
    """What stands in a batch's JSON for an image that failed: its source and the error, in its place."""
    return {"format": format, "version": TRACE_VERSION, "image": {"source": source}, "error": message}


# --- CSV ----------------------------------------------------------------------------------------

CSV_HEADER = ("source", "layer", "channel", "label", "row", "column", "value", "error")


def csv_line(fields: Sequence[Any]) -> bytes:
    """One CSV row (RFC 4180 quoting), UTF-8; a file name keeps its own bytes, whatever they are."""
    out = []
    for field in fields:
        text = field if isinstance(field, str) else "" if field is None else str(field)
        data = text.encode("utf-8", "surrogateescape")
        if any(c in data for c in b',"\r\n'):
            data = b'"' + data.replace(b'"', b'""') + b'"'
        out.append(data)
    return b",".join(out) + b"\n"


def write_csv_maps(write: Write, source: str, steps: Sequence[Step], labels: Sequence[str] = ()) -> None:
    """The values of ``steps`` in long form, one value a row (columns CSV_HEADER, ``error`` blank),
    row-major per channel; a 1-D output has its index as the channel and blank row and column.

    ``labels`` name the channels (or a vector's entries, e.g. a model's classes) when a step has
    none. Values are the shortest text of each (float32 as float32), with inf, -inf and nan where
    a map overflowed (CSV has no null; a blank is a vector's missing row and column).
    """
    for step in steps:
        output = step.output
        names = step.labels or labels
        if output.ndim == 1:
            texts = number_texts(output)
            write(b"".join(csv_line((source, step.name, i, names[i] if i < len(names) else "", "", ""))[:-1]
                           + b"," + texts[i] + b",\n" for i in range(output.size)))
            continue
        planes = output.reshape(output.shape[0], -1, output.shape[-1])  # (C, H, W): any map as rows
        width = planes.shape[-1]
        columns = [b"%d," % j for j in range(width)]
        rows_per_chunk = max(1, (1 << 16) // width)
        for c, plane in enumerate(planes):
            prefix = csv_line((source, step.name, c, names[c] if c < len(names) else ""))[:-1] + b","
            for r0 in range(0, plane.shape[0], rows_per_chunk):
                r1 = min(r0 + rows_per_chunk, plane.shape[0])
                texts = number_texts(plane[r0:r1].reshape(-1))
                lines = []
                for r in range(r0, r1):
                    head = prefix + b"%d," % r
                    start = (r - r0) * width
                    lines.append(b"".join(head + column + text + b",\n"
                                          for column, text in zip(columns, texts[start:start + width])))
                write(b"".join(lines))


def csv_error_line(source: str, message: str, columns: int = len(CSV_HEADER)) -> bytes:
    """A row for an image that failed: its source, blanks, and the error in the last column."""
    return csv_line((source, *[""] * (columns - 2), message))


def predictions_header(k: int) -> tuple[str, ...]:
    """One row per image: the best class, then the next ``k - 1`` with their probabilities, then ``error``."""
    more = [name for rank in range(2, k + 1) for name in (f"label_{rank}", f"probability_{rank}")]
    return ("source", "label", "index", "probability", "score", *more, "error")


def predictions_line(source: str, predictions: Sequence[Prediction], k: int,
                     output_dtype: np.dtype = np.dtype(np.float64)) -> bytes:
    """An image's row of the predictions CSV (predictions_header); non-finite numbers as inf or nan."""
    records = [prediction_record(p, output_dtype) for p in predictions]
    fields: list[Any] = [source, records[0]["label"], records[0]["index"], _number(records[0]["probability"]),
                         _number(records[0]["score"])]
    for rank in range(1, k):
        if rank < len(records):
            fields += [records[rank]["label"], _number(records[rank]["probability"])]
        else:
            fields += ["", ""]
    return csv_line((*fields, ""))


def _number(value: float | None) -> str:
    """A record's number in CSV: its repr (already the shortest), nan where JSON would say null."""
    return "nan" if value is None else repr(value)


def nonfinite_warning(steps: Sequence[Step]) -> str | None:
    """The warning for a forward pass whose maps overflowed, naming the first such layer; else None."""
    for step in steps[1:]:
        # NaN makes the minimum NaN, and an infinity is the minimum or the maximum: two fast passes
        # (the statistics would take several, and are only computed where they are shown).
        low, high = float(step.output.min()), float(step.output.max())
        if not (math.isfinite(low) and math.isfinite(high)):
            remedy = "--dtype float64 or smaller weights" if step.output.dtype == np.float32 else "smaller weights"
            return f"{step.name} has infinite or NaN values (overflow in {step.output.dtype}; {remedy} may help)"
    return None
