"""Files a model JSON names beside it: an ONNX graph that is its whole network (``"graph"``), a
text file of its class names (``"labels"``), and (read by modelfile) its weights (``"weights"``).

An ONNX file holds a network, but neither how its images were prepared nor what its classes are
called. A model JSON whose ``graph`` names one carries both::

    {"format": "cnn-model", "version": 2, "name": "resnet18",
     "input": {"resize": 256, "color": "rgb", "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]},
     "labels": "imagenet_classes.txt", "graph": "resnet18.onnx"}

A named file must be inside the model JSON's folder: a relative path without "..", which no
symbolic link leads out of, so that a model file cannot make cnn read files elsewhere.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path, PurePath
from typing import Any

from ..errors import CnnError, LimitError, SpecError
from .input_rule import read_input_spec, rule_size
from .jsonspec import Reader
from .limits import Limits
from .modelfile import ONNX_MAGIC, Model, labels_field
from .reading import open_regular, read_labels

NOT_WITH_GRAPH = ("layers", "weights", "outputs")  # what the ONNX file is instead


def graph_model(read: Reader, document: dict, version: int, folder: Path, limits: Limits,
                size: tuple[int, int] | None = None) -> Model:
    """The network of the ONNX file that ``graph`` names, with the document's input rule (size and
    colour default to the ONNX input's, and must agree with it) and labels. Name, description and
    metadata are the caller's (parse_model).

    A height or width the graph leaves free is ``size``, the caller's options' (a crop, a preset),
    else the rule's own ``size`` (or ``crop``): options replace a model's rule field by field, and
    here the network can take either. A dimension the graph fixes must agree with the rule.

    Raises SpecError naming the model file and the field for a graph file that is missing, outside
    the folder, not ONNX or not importable (the ONNX file's own message follows), a free height or
    width that nothing gives, or a field that does not fit the ONNX network; LimitError for a file
    over the limits.
    """
    for key in NOT_WITH_GRAPH:
        if key in document:
            raise read.fail(key, 'cannot be given with "graph": the ONNX file is the whole network, its layers and '
                                 "weights")
    if version < 2:
        raise read.fail("graph", f'needs "version": 2, got {version}')
    path = file_in_folder(read, document["graph"], "graph", folder)
    own_size = rule_size(read.within("input"), document.get("input"))
    from .onnx_import import FreeSizeError  # onnx itself is imported only to read the file

    try:
        with open_regular(path, kind="onnx", error=SpecError, expected="an ONNX file",
                          limits=limits) as (stream, _):  # named by the file: never a device or FIFO
            first = stream.read(1)
        if first != ONNX_MAGIC:
            raise SpecError("is not an ONNX file; expected the .onnx network the model file describes",
                            source=str(path))
        from .onnx_import import load_onnx_file

        model = load_onnx_file(path, str(path), limits, size or own_size)  # its external data files are beside it
    except LimitError:
        raise
    except FreeSizeError as err:  # nothing gave the size: say where it goes
        raise read.fail("input", f"the graph {path.name} leaves the {err.dims} of its input {err.input!r} free; "
                                 "expected \"size\": [H, W] here, or --crop H,W or --preset imagenet (crop=(H, W) or "
                                 "preset= in Python)") from None
    except CnnError as err:  # say which model file named it
        raise read.fail("graph", str(err)) from None
    spec = model.input
    if "input" in document:
        graph = model.input
        if size is not None and own_size is not None:  # the rule is checked at its own size where the graph is free
            free = [isinstance(dim, str) for dim in model.metadata["onnx"]["input_shape"][2:]]  # height, width
            height, width = (own if loose else fixed for own, fixed, loose in zip(own_size, graph.size, free))
            graph = replace(graph, size=(height, width))
        spec = replace(read_input_spec(read.within("input"), document["input"], graph=graph), size=model.input.size)
    out_shape = model.network.shapes(spec.shape)[-1]
    labels, label_paths = labels_field(read, document.get("labels"), out_shape, folder, limits)
    onnx = {**model.metadata.get("onnx", {}), "preprocessing": f"the input rule of {read.source}"}
    return replace(model, input=spec, labels=labels or model.labels,  # else the ONNX file's own (cnn.labels)
                   metadata={"onnx": onnx}, paths=(path, *model.paths, *label_paths), onnx_file=path)


def labels_file(read: Reader, value: Any, folder: Path, limits: Limits) -> tuple[tuple[str, ...], Path]:
    """The class names in the text file that ``labels`` names, one per line, and its path."""
    path = file_in_folder(read, value, "labels", folder)
    try:
        return read_labels(str(path), limits, regular_only=True), path
    except LimitError:
        raise
    except CnnError as err:
        raise read.fail("labels", str(err)) from None


def file_in_folder(read: Reader, value: Any, key: str, folder: Path) -> Path:
    """The path of the file that field ``key`` names, which must lie inside ``folder``.

    Raises SpecError for an absolute path, a path that goes up (``..``), or one that a symbolic
    link leads out of the folder. A missing file is left for the reader to report.
    """
    name = read.text(value, key, empty=False)
    relative = PurePath(name)
    if relative.is_absolute() or relative.drive:
        raise read.fail(key, f"{name!r} is an absolute path; expected a file name relative to the model file's folder")
    if ".." in relative.parts:
        raise read.fail(key, f"{name!r} goes up a folder (..); expected a file inside the model file's folder")
    path = folder / relative
    try:
        inside = path.resolve().is_relative_to(folder.resolve())
    except (OSError, RuntimeError, ValueError):  # a loop of links, a NUL byte: reading it says what is wrong
        inside = True
    if not inside:
        raise read.fail(key, f"{name!r} leads out of the model file's folder through a symbolic link; expected a "
                             "file inside it")
    return path
