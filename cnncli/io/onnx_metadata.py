"""What a model file holds and ONNX has no field for, kept in an ONNX file's ``metadata_props``.

`cnn export` writes, beside the network, under keys of their own::

    cnn.name      the model's name, as text (exporters name graphs torch_jit or main_graph, so an
                  import names a model by its file unless this key says otherwise)
    cnn.input     the input rule: the model file's "input" object, as JSON
    cnn.labels    the class names, a JSON list (when the model has them)
    cnn.metadata  the model file's free-form "metadata", a JSON object (when it has any)

and the description in ONNX's own ``doc_string``. Importing the file reads them back as strictly
as a model file's fields are read: a bad value is a SpecError naming the key and the field
(``metadata cnn.input.size: ...``), and so is a ``cnn.`` key this cnn does not know. Other
tools' keys are left alone, and a file without these keys imports as any ONNX file does.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

from ..errors import SpecError
from .input_rule import input_object, read_input_spec
from .jsonspec import Reader, loads

if TYPE_CHECKING:
    from .modelfile import Model

PREFIX = "cnn."
KEYS = ("cnn.name", "cnn.input", "cnn.labels", "cnn.metadata")
IMPORTER_KEY = "onnx"  # the import's own facts about the file it read, in a model's metadata: not carried over


def metadata_entries(model: Model) -> list[tuple[str, str]]:
    """The (key, value) pairs of ``model`` to write into an ONNX file's metadata_props."""
    entries = [("cnn.name", model.name), ("cnn.input", json.dumps(input_object(model.input)))]
    if model.labels:
        entries.append(("cnn.labels", json.dumps(list(model.labels))))
    free = {key: value for key, value in model.metadata.items() if key != IMPORTER_KEY}
    if free:
        entries.append(("cnn.metadata", json.dumps(free)))
    return entries


def with_metadata(model: Model, props: Iterable[Any], source: str) -> Model:
    """``model``, as imported from the ONNX file ``source``, with the rule, labels, name and metadata
    that the file's metadata_props (StringStringEntryProtos) give under ``cnn.`` keys.

    The rule's size and colour must be the graph's input; there must be one label per output value.
    Raises SpecError for a value that is not valid JSON or not what a model file takes in that
    field, for a ``cnn.`` key given twice, and for one this cnn does not know.
    """
    given = _cnn_entries(props, source)
    if not given:
        return model
    read = Reader(source, "metadata cnn")  # paths read "metadata cnn.input.size", as "input.size" in a model file
    spec = model.input
    if "cnn.input" in given:
        spec = read_input_spec(read.within("input"), _json(given["cnn.input"], "cnn.input", source), graph=spec)
    labels = model.labels
    if "cnn.labels" in given:
        from .modelfile import labels_field

        value = _json(given["cnn.labels"], "cnn.labels", source)
        if not isinstance(value, list) or not value:  # never a file's name, as a model file's may be
            raise read.fail("labels", "expected a JSON list of class names")
        labels, _ = labels_field(read, value, model.network.shapes(spec.shape)[-1], Path())
    name = read.text(given["cnn.name"], "name", empty=False) if "cnn.name" in given else model.name
    metadata = dict(model.metadata)
    if "cnn.metadata" in given:
        free = _json(given["cnn.metadata"], "cnn.metadata", source)
        if not isinstance(free, dict):
            raise read.fail("metadata", "expected a JSON object (free-form: data set, accuracy, ...)")
        read.unicode(free, "metadata")
        metadata = {**free, **metadata}  # the import's own "onnx" facts win, as for a model file's "graph"
    if "cnn.input" in given and IMPORTER_KEY in metadata:
        metadata[IMPORTER_KEY] = {**metadata[IMPORTER_KEY], "preprocessing": "the input rule in the file (cnn.input)"}
    return replace(model, name=name, input=spec, labels=labels, metadata=metadata)


def _cnn_entries(props: Iterable[Any], source: str) -> dict[str, str]:
    """The ``cnn.`` entries of metadata_props, by key; each known, given once and valid UTF-8."""
    given: dict[str, str] = {}
    for entry in props:
        key, value = entry.key, entry.value  # protobuf hands text that is not valid UTF-8 over as bytes
        if not (key.startswith(PREFIX) if isinstance(key, str) else bytes(key).startswith(PREFIX.encode())):
            continue  # another tool's: left alone
        shown = key if isinstance(key, str) and key.isprintable() else repr(key)
        if key not in KEYS:
            import difflib  # only errors pay for its import

            hint = difflib.get_close_matches(str(key), KEYS, n=1)
            suggestion = f" (did you mean {hint[0]}?)" if hint else ""
            raise SpecError(f"metadata {shown}: unknown key{suggestion}; cnn writes and reads {', '.join(KEYS)}",
                            source=source)
        if key in given:
            raise SpecError(f"metadata {shown}: is given twice; expected one entry of each key", source=source)
        if not isinstance(value, str):
            raise SpecError(f"metadata {shown}: is not valid UTF-8; expected text", source=source)
        given[key] = value
    return given


def _json(text: str, key: str, source: str) -> Any:
    """The JSON value of ``key``: strict, as a model file's (no NaN, no repeated keys)."""
    try:
        return loads(text, source)
    except SpecError as err:
        raise SpecError(f"metadata {key}: {err.message}", source=source) from None
