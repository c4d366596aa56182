"""The harness's `onnx` target: ONNX files through cnncli.io.onnx_import.load_onnx, then forward.

Seeds are small valid models made here with onnx.helper (a conv chain, residual and gated
branches, Resize / ConvTranspose / Pad, an opset-9 file listing its initializers as inputs,
PyTorch's flatten chain with float16 weights, Split / Slice / a channel shuffle, two outputs, and
weights in an external data file). The mutator changes their bytes, or parses them and changes
one protobuf field: an initializer's dims, data type, raw_data or external_data entries; a node's
attributes, inputs, outputs, op_type, domain or place; the opsets, the IR version, the graph's
input and outputs.

A model that loads runs forward on a small input (the input at most 64K values, the whole run at
most 5e7 multiply-adds and within the fuzzing memory limit); every outcome must be a model or a
CnnError. Besides, every external data file a loaded model read must lie inside its folder: the
folder (``write_folder``) holds the seed's data file, a link leading out of it and a subfolder,
and the file outside it has the size of a weight.

This module has no state of its own; tests/fuzz/harness.py passes the folder, the limits and its
message normaliser in.
"""

from __future__ import annotations

import math
import os
import random
import zlib
from pathlib import Path
from typing import Any, Callable

EXTERNAL_FILE = "data.bin"
MAX_VALUES = 1 << 16  # values of the input a loaded model runs forward on
MAX_MACS = 50_000_000  # multiply-adds of that forward pass (about 0.1 s)
BOUNDARY_DIMS = (0, 1, 2, 3, 7, 8, 16, 255, 1 << 14, (1 << 14) + 1, 1 << 31, 1 << 40, (1 << 62), -1, -2, -(1 << 40))
OPSETS = (0, 1, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 17, 18, 19, 21, 23, 28, 29, 99, -1, 1 << 40)
OP_TYPES = ("Conv", "Relu", "Add", "Mul", "Sub", "Div", "MaxPool", "AveragePool", "GlobalAveragePool", "Gemm",
            "MatMul", "Flatten", "Reshape", "Transpose", "Concat", "Split", "Slice", "Softmax", "LogSoftmax",
            "BatchNormalization", "Resize", "Upsample", "ConvTranspose", "Pad", "Clip", "Sigmoid", "HardSigmoid",
            "HardSwish", "LeakyRelu", "PRelu", "Squeeze", "Unsqueeze", "Identity", "Dropout", "Cast", "Constant",
            "ConstantOfShape", "Shape", "Gather", "Range", "Expand", "ReduceMean", "ReduceMax", "LRN", "Sum",
            "Mean", "Max", "Min", "Pow", "Erf", "Gelu", "Tile", "Where", "Einsum", "Loop", "If", "", "Bogus")
ATTRIBUTES = ("kernel_shape", "pads", "strides", "dilations", "group", "axis", "axes", "perm", "to", "mode",
              "auto_pad", "ceil_mode", "count_include_pad", "epsilon", "alpha", "beta", "transA", "transB",
              "keepdims", "split", "num_outputs", "output_padding", "output_shape", "value", "value_float",
              "value_ints", "coordinate_transformation_mode", "nearest_mode", "scales", "size", "bias", "min",
              "max", "starts", "ends", "broadcast", "storage_order", "spatial", "training_mode", "noop_with_empty_axes")
STRINGS = ("", "NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID", "nearest", "linear", "cubic", "constant", "reflect",
           "edge", "wrap", "half_pixel", "align_corners", "asymmetric", "pytorch_half_pixel", "floor", "ceil",
           "x" * 300, "é")
INTS = (0, 1, 2, 3, -1, -2, 4, 7, 64, 255, 1 << 14, 1 << 31, (1 << 63) - 1, -(1 << 63), 1 << 40)
FLOATS = (0.0, 1.0, -1.0, 0.5, 1e-5, 1e30, -1e30, float("inf"), float("-inf"), float("nan"), 1e-45, 6.0)
LOCATIONS = (EXTERNAL_FILE, "../tiny.npz", "/etc/hostname", "/dev/zero", "out.bin", "sub", "sub/../data.bin",
             "./data.bin", "sub/../../tiny.npz", "missing.bin", "", ".", "..", "data.bin\0", "a" * 300, "\\..\\x")


# ---- the target ------------------------------------------------------------------------------

def run(data: bytes, folder: Path, limits: Any, message: Callable[[Exception], str]) -> str:
    """Load ``data`` as the ONNX file fuzz.onnx in ``folder``; run what loads on a small input."""
    import numpy as np

    from cnncli.errors import CnnError
    from cnncli.io.onnx_import import load_onnx
    from cnncli.stage import check_network_memory

    try:
        model = load_onnx(data, "fuzz.onnx", limits, folder)
    except CnnError as err:
        return "error " + message(err)
    base = os.path.realpath(folder)
    for path in model.paths:
        real = os.path.realpath(path)
        assert os.path.commonpath([real, base]) == base, f"read {path} ({real}), outside {folder}"
    types = " ".join(sorted({layer.type for layer in model.network.layers}))
    shape = model.input.shape
    if math.prod(shape) > MAX_VALUES:
        return f"ok {types}; too large to run"
    try:
        check_network_memory(model.network, shape, 4, limits, "fuzz.onnx")
        macs = sum(row["macs"] for row in model.network.table(shape))
        if macs > MAX_MACS:
            return f"ok {types}; too much work to run"
        x = np.random.default_rng(zlib.crc32(data)).random(shape, dtype=np.float32)
        steps = model.network.forward(x)
    except CnnError as err:
        return f"ok {types}; run: error " + message(err)
    assert len(steps) == len(model.network.layers) + 1
    return f"ok {types}; ran to {steps[-1].type} {steps[-1].output.ndim}-D"


def prepare() -> None:
    """Import what a first input would: onnx, its reference evaluator (constant folding), the converters."""
    import onnx.numpy_helper  # noqa: F401
    import onnx.reference  # noqa: F401

    import cnncli.io.onnx_import.math_ops  # noqa: F401
    import cnncli.io.onnx_import.spatial_ops  # noqa: F401
    import cnncli.io.onnx_import.tensor_ops  # noqa: F401
    import cnncli.stage  # noqa: F401


def write_folder(folder: Path) -> None:
    """The model folder: the external seed's data file, a link out of the folder to ../tiny.npz (which
    the harness's folder holds), and an empty subfolder."""
    folder.mkdir(exist_ok=True)
    (folder / EXTERNAL_FILE).write_bytes(_external_model()[1])
    (folder / "sub").mkdir(exist_ok=True)
    if not (folder / "out.bin").is_symlink():
        (folder / "out.bin").symlink_to("../tiny.npz")


# ---- seeds -------------------------------------------------------------------------------------

def _model(nodes: list, inits: list, *, channels: int = 3, size: tuple[int, int] = (8, 8), opset: int = 13,
           outputs: tuple[str, ...] | None = None, inputs_too: bool = False) -> Any:
    from onnx import TensorProto, helper

    outputs = outputs or (nodes[-1].output[0],)
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", channels, *size])]
    if inputs_too:  # as IR < 4 files list them
        inputs += [helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)) for t in inits]
    graph = helper.make_graph(nodes, "fuzz", inputs,
                              [helper.make_tensor_value_info(name, TensorProto.FLOAT, None) for name in outputs], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    if opset < 9:
        model.ir_version = 3
    return model


def _weights(rng: Any, **shapes: Any) -> list:
    import numpy as np
    from onnx import numpy_helper

    made = []
    for name, value in shapes.items():
        array = rng.standard_normal(value).astype(np.float32) if isinstance(value, tuple) else np.asarray(value)
        made.append(numpy_helper.from_array(array, name))
    return made


def _external_model() -> tuple[bytes, bytes]:
    """A conv-relu-gemm model whose two weights live in data.bin (offsets 0 and 216), and that file's bytes."""
    import numpy as np
    from onnx import TensorProto, helper

    rng = np.random.default_rng(7)
    w = rng.standard_normal((2, 3, 3, 3)).astype(np.float32)
    fw = rng.standard_normal((3, 2 * 6 * 6)).astype(np.float16)
    inits = []
    offset = 0
    for name, array in (("w", w), ("fw_half", fw)):
        tensor = TensorProto(name=name, data_type=helper.np_dtype_to_tensor_dtype(array.dtype), dims=array.shape)
        tensor.data_location = TensorProto.EXTERNAL
        for key, value in (("location", EXTERNAL_FILE), ("offset", str(offset)), ("length", str(array.nbytes))):
            tensor.external_data.add(key=key, value=value)
        inits.append(tensor)
        offset += array.nbytes
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"]), helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("Flatten", ["r"], ["f"]), helper.make_node("Cast", ["fw_half"], ["fw"], to=1),
             helper.make_node("Gemm", ["f", "fw"], ["out"], transB=1)]
    return _model(nodes, inits).SerializeToString(), w.tobytes() + fw.tobytes()


def seeds() -> list[bytes]:
    """Small valid models over most converters, opsets 9 to 18, and the forms real files take."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    node = helper.make_node
    made = []
    chain = [node("Conv", ["x", "w", "b"], ["conv"], pads=[1, 1, 1, 1]),
             node("BatchNormalization", ["conv", "s", "bb", "m", "v"], ["bn"], epsilon=1e-3),
             node("Relu", ["bn"], ["relu"]), node("MaxPool", ["relu"], ["pool"], kernel_shape=[2, 2], strides=[2, 2]),
             node("Flatten", ["pool"], ["flat"]), node("Gemm", ["flat", "fw", "fb"], ["fc"], transB=1),
             node("Softmax", ["fc"], ["prob"], axis=1)]
    chain_weights = dict(w=(4, 3, 3, 3), b=(4,), s=np.float32([0.5, 1, 1.5, 2]), bb=(4,), m=(4,),
                         v=np.float32([0.2, 1, 2, 0.5]), fw=(5, 64), fb=(5,))
    made.append(_model(chain, _weights(rng, **chain_weights)))
    made.append(_model([node("Conv", ["x", "w1"], ["c1"], pads=[1, 1, 1, 1]), node("Relu", ["c1"], ["r1"]),
                        node("Conv", ["r1", "w2", "b2"], ["c2"], pads=[1, 1, 1, 1], group=3),
                        node("Add", ["c2", "x"], ["sum"]), node("GlobalAveragePool", ["sum"], ["gap"]),
                        node("HardSigmoid", ["gap"], ["gate"]), node("Mul", ["sum", "gate"], ["scaled"]),
                        node("Concat", ["scaled", "x"], ["joined"], axis=1), node("HardSwish", ["joined"], ["out"])],
                       _weights(rng, w1=(3, 3, 3, 3), w2=(3, 1, 3, 3), b2=(3,)), opset=14))
    made.append(_model([node("Conv", ["x", "w"], ["c"], strides=[2, 2], auto_pad="SAME_UPPER"),
                        node("Resize", ["c", "", "scales"], ["up"], mode="linear"),
                        node("ConvTranspose", ["c", "wt"], ["upt"], strides=[2, 2]),
                        node("Pad", ["x", "pads"], ["padded"], mode="reflect"),
                        node("Conv", ["padded", "wp"], ["cp"]),
                        node("Concat", ["up", "upt", "cp"], ["out"], axis=1)],
                       _weights(rng, w=(2, 3, 3, 3), scales=np.float32([1, 1, 2, 2]), wt=(2, 2, 2, 2),
                                pads=np.int64([0, 0, 1, 1, 0, 0, 1, 1]), wp=(2, 3, 3, 3))))
    made.append(_model([node("Conv", ["x", "w"], ["c"]), node("Upsample", ["c", "scales"], ["up"], mode="nearest"),
                        node("Dropout", ["up"], ["d"], ratio=0.3), node("AveragePool", ["d"], ["out"],
                                                                        kernel_shape=[3, 3], pads=[1, 1, 1, 1])],
                       _weights(rng, w=(2, 1, 3, 3), scales=np.float32([1, 1, 2, 2])), channels=1, opset=9,
                       inputs_too=True))
    half = numpy_helper.from_array(rng.standard_normal((5, 4 * 6 * 6)).astype(np.float16), "fw_half")
    made.append(_model([node("Conv", ["x", "w"], ["c"]), node("Shape", ["c"], ["shape"]),
                        node("Gather", ["shape", "zero"], ["n"], axis=0), node("Unsqueeze", ["n", "axes"], ["n1"]),
                        node("Concat", ["n1", "minus1"], ["target"], axis=0),
                        node("Reshape", ["c", "target"], ["flat"]), node("Cast", ["fw_half"], ["fw"], to=1),
                        node("MatMul", ["flat", "fw_t"], ["mm"]), node("Add", ["mm", "mb"], ["out"]),
                        node("Transpose", ["fw"], ["fw_t"], perm=[1, 0])],  # out of order: sorted when read
                       _weights(rng, w=(4, 3, 3, 3), zero=np.int64(0), axes=np.int64([0]), minus1=np.int64([-1]),
                                mb=(5,)) + [half], outputs=("out",)))
    made.append(_model([node("Conv", ["x", "w0"], ["c0"]), node("Split", ["c0", "sizes"], ["left", "right"], axis=1),
                        node("Relu", ["right"], ["r"]), node("Concat", ["left", "r"], ["joined"], axis=1),
                        node("Reshape", ["joined", "grouped"], ["g"]),
                        node("Transpose", ["g"], ["t"], perm=[0, 2, 1, 3, 4]),
                        node("Reshape", ["t", "flat_shape"], ["shuffled"]),
                        node("Slice", ["shuffled", "st", "en", "ax"], ["cut"]),
                        node("ReduceMean", ["cut"], ["out"], axes=[2, 3], keepdims=1)],
                       _weights(rng, w0=(4, 3, 1, 1), sizes=np.int64([2, 2]), grouped=np.int64([1, 2, 2, 8, 8]),
                                flat_shape=np.int64([1, -1, 8, 8]), st=np.int64([1]), en=np.int64([7]),
                                ax=np.int64([2]))))
    made.append(_model([node("Conv", ["x", "w"], ["c"]), node("GlobalMaxPool", ["c"], ["g"]),
                        node("Flatten", ["g"], ["f"]), node("Gemm", ["f", "fw"], ["logits"], transB=1),
                        node("LogSoftmax", ["logits"], ["lsm"], axis=1), node("Sigmoid", ["f"], ["aux"]),
                        node("Constant", [], ["k"], value=helper.make_tensor("k", TensorProto.FLOAT, [1], [2.0])),
                        node("Clip", ["c", "zero_f", "k"], ["clipped"]), node("Erf", ["clipped"], ["e"]),
                        node("Sum", ["e", "c"], ["side"])],
                       _weights(rng, w=(4, 3, 3, 3), fw=(5, 4), zero_f=np.float32(0)), opset=18,
                       outputs=("lsm", "aux", "side")))
    return [model.SerializeToString() for model in made] + [_external_model()[0]]


# ---- the mutator ---------------------------------------------------------------------------------

def mutate(data: bytes, rng: random.Random, pool: list[bytes], mutate_bytes: Callable[..., bytes]) -> bytes:
    """One change to a field of the parsed model (3 times in 4), else to its bytes."""
    from onnx import ModelProto

    if rng.random() < 0.25:
        return mutate_bytes(data, rng, pool)
    model = ModelProto()
    try:
        model.ParseFromString(data)
    except Exception:  # noqa: BLE001 - not a model any more: mutate its bytes
        return mutate_bytes(data, rng, pool)
    change = rng.choice((_dims, _data_type, _raw_data, _external, _attribute, _attribute, _names, _names, _op_type,
                         _opsets, _graph_io, _order, _outputs))
    try:
        change(model, rng)
        return model.SerializeToString()
    except Exception:  # noqa: BLE001 - a value protobuf will not take (out of range, not UTF-8): try the bytes
        return mutate_bytes(data, rng, pool)


def _tensors(model: Any) -> list:
    """The initializers and the tensors of Constant nodes."""
    found = list(model.graph.initializer)
    for node in model.graph.node:
        found += [a.t for a in node.attribute if a.HasField("t")]
    return found


def _dims(model: Any, rng: random.Random) -> None:
    tensors = _tensors(model)
    if not tensors:
        return
    tensor = rng.choice(tensors)
    op = rng.randrange(4)
    if op == 0 and tensor.dims:
        tensor.dims[rng.randrange(len(tensor.dims))] = rng.choice(BOUNDARY_DIMS)
    elif op == 1:
        tensor.dims.append(rng.choice(BOUNDARY_DIMS[:8]))
    elif op == 2 and tensor.dims:
        del tensor.dims[rng.randrange(len(tensor.dims))]
    else:
        dims = list(tensor.dims)
        rng.shuffle(dims)
        del tensor.dims[:]
        tensor.dims.extend(dims)


def _data_type(model: Any, rng: random.Random) -> None:
    tensors = _tensors(model)
    if tensors:
        rng.choice(tensors).data_type = rng.randrange(28)


def _raw_data(model: Any, rng: random.Random) -> None:
    tensors = [t for t in _tensors(model) if t.raw_data or t.float_data or t.int64_data or t.int32_data]
    if not tensors:
        return
    tensor = rng.choice(tensors)
    op = rng.randrange(5)
    if op == 0:
        tensor.raw_data = tensor.raw_data[:rng.randrange(len(tensor.raw_data) + 1)]
    elif op == 1:
        tensor.raw_data = tensor.raw_data + rng.randbytes(rng.choice((1, 2, 4, 8, 100)))
    elif op == 2:  # values moved to (or added in) a typed field beside raw_data
        tensor.float_data.extend(rng.choice(FLOATS) for _ in range(rng.choice((1, 4, 27))))
    elif op == 3:
        tensor.int32_data.extend(rng.choice(INTS[:8]) for _ in range(rng.choice((1, 3, 27))))
    else:
        tensor.raw_data = bytes(rng.choice((b"\xff", b"\x00", b"\x7f\x80"))) * rng.choice((4, 27, 108))


def _external(model: Any, rng: random.Random) -> None:
    """Move a tensor to external data, or change an entry of one that is there already."""
    from onnx import TensorProto

    tensors = _tensors(model)
    if not tensors:
        return
    tensor = rng.choice(tensors)
    if tensor.data_location != TensorProto.EXTERNAL or rng.random() < 0.3:
        tensor.ClearField("raw_data")
        tensor.data_location = TensorProto.EXTERNAL
        del tensor.external_data[:]
        tensor.external_data.add(key="location", value=rng.choice(LOCATIONS))
        return
    key = rng.choice(("location", "offset", "length", "checksum", "basepath", "bogus"))
    value = (rng.choice(LOCATIONS) if key == "location" else
             rng.choice(("0", "1", "4", "216", "108", "-1", "abc", "1e3", "9" * 30, "", " 4", "216\n")))
    entries = {entry.key: entry.value for entry in tensor.external_data}
    if rng.random() < 0.2:
        entries.pop(key, None)
    else:
        entries[key] = value
    del tensor.external_data[:]
    for k, v in entries.items():
        tensor.external_data.add(key=k, value=v)
    if rng.random() < 0.1:
        tensor.external_data.add(key=key, value=value)  # a key twice


def _attribute(model: Any, rng: random.Random) -> None:
    from onnx import AttributeProto, helper

    if not model.graph.node:
        return
    node = rng.choice(model.graph.node)
    op = rng.randrange(4)
    if op == 0 or not node.attribute:  # add one (or replace one of the same name)
        name = rng.choice(ATTRIBUTES)
        value: Any = rng.choice((rng.choice(INTS), rng.choice(FLOATS), rng.choice(STRINGS),
                                 [rng.choice(INTS[:8]) for _ in range(rng.choice((1, 2, 4, 5, 8)))],
                                 [rng.choice(FLOATS) for _ in range(rng.choice((1, 4)))]))
        kept = [a for a in node.attribute if a.name != name]
        del node.attribute[:]
        node.attribute.extend([*kept, helper.make_attribute(name, value)])
        return
    attribute = rng.choice(node.attribute)
    if op == 1:
        node.attribute.remove(attribute)
    elif attribute.type == AttributeProto.INT:
        attribute.i = rng.choice(INTS)
    elif attribute.type == AttributeProto.FLOAT:
        attribute.f = rng.choice(FLOATS)
    elif attribute.type == AttributeProto.INTS and attribute.ints:
        if rng.random() < 0.3:
            attribute.ints.append(rng.choice(INTS))
        else:
            attribute.ints[rng.randrange(len(attribute.ints))] = rng.choice(INTS)
    elif attribute.type == AttributeProto.STRING:
        attribute.s = rng.choice(STRINGS).encode()
    else:  # another type under the same name
        attribute.type = rng.choice((AttributeProto.INT, AttributeProto.INTS, AttributeProto.FLOAT,
                                     AttributeProto.STRING, AttributeProto.TENSOR, AttributeProto.GRAPH))


def _names(model: Any, rng: random.Random) -> None:
    """Point a node's input (or output) at another tensor, nothing, or an unknown name; add or drop one."""
    graph = model.graph
    if not graph.node:
        return
    names = ["x", "", "unknown", *(t.name for t in graph.initializer), *(o for n in graph.node for o in n.output)]
    node = rng.choice(graph.node)
    field = node.output if rng.random() < 0.2 else node.input
    op = rng.randrange(4)
    if op == 0 or not field:
        field.append(rng.choice(names))
    elif op == 1:
        del field[rng.randrange(len(field))]
    elif op == 2 and len(field) > 1:
        i, j = rng.sample(range(len(field)), 2)
        field[i], field[j] = field[j], field[i]
    else:
        field[rng.randrange(len(field))] = rng.choice(names)


def _op_type(model: Any, rng: random.Random) -> None:
    if not model.graph.node:
        return
    node = rng.choice(model.graph.node)
    if rng.random() < 0.15:
        node.domain = rng.choice(("com.microsoft", "ai.onnx.ml", "ai.onnx", "", "x"))
    else:
        node.op_type = rng.choice(OP_TYPES)


def _opsets(model: Any, rng: random.Random) -> None:
    from onnx import helper

    op = rng.randrange(4)
    if op <= 1 and model.opset_import:
        model.opset_import[0].version = rng.choice(OPSETS)
    elif op == 2:
        model.opset_import.append(helper.make_opsetid(rng.choice(("", "ai.onnx", "com.microsoft")),
                                                      rng.choice(OPSETS)))
    else:
        model.ir_version = rng.choice((0, 1, 3, 4, 7, 8, 9, 10, 11, 12, 13, 14, 15, 99, -1, 1 << 40))


def _graph_io(model: Any, rng: random.Random) -> None:
    """Change the graph input's element type or one of its dims (a number, a name, nothing), or add an input."""
    from onnx import helper

    graph = model.graph
    if not graph.input or rng.random() < 0.1:
        graph.input.append(helper.make_tensor_value_info(rng.choice(("y", "x", "w")), 1, [1, 3, 8, 8]))
        return
    value = graph.input[0]
    tensor_type = value.type.tensor_type
    if rng.random() < 0.3:
        tensor_type.elem_type = rng.randrange(28)
        return
    dims = tensor_type.shape.dim
    if not dims or rng.random() < 0.1:
        dims.add().dim_value = rng.choice(BOUNDARY_DIMS[:8])
        return
    dim = dims[rng.randrange(len(dims))]
    op = rng.randrange(3)
    if op == 0:
        dim.dim_value = rng.choice(BOUNDARY_DIMS)
    elif op == 1:
        dim.dim_param = rng.choice(("N", "batch_size", "", "H"))
    else:
        dim.Clear()


def _order(model: Any, rng: random.Random) -> None:
    """Move, drop, repeat or shuffle the nodes."""
    nodes = list(model.graph.node)
    if not nodes:
        return
    op = rng.randrange(4)
    if op == 0:
        nodes.insert(rng.randrange(len(nodes) + 1), nodes.pop(rng.randrange(len(nodes))))
    elif op == 1:
        del nodes[rng.randrange(len(nodes))]
    elif op == 2:
        copy = type(nodes[0])()
        copy.CopyFrom(rng.choice(nodes))
        nodes.insert(rng.randrange(len(nodes) + 1), copy)
    else:
        rng.shuffle(nodes)
    del model.graph.node[:]
    model.graph.node.extend(nodes)


def _outputs(model: Any, rng: random.Random) -> None:
    from onnx import helper

    graph = model.graph
    names = ["x", "unknown", *(t.name for t in graph.initializer), *(o for n in graph.node for o in n.output)]
    op = rng.randrange(3)
    if op == 0 or not graph.output:
        graph.output.append(helper.make_tensor_value_info(rng.choice(names), 1, None))
    elif op == 1:
        del graph.output[rng.randrange(len(graph.output))]
    else:
        graph.output[rng.randrange(len(graph.output))].name = rng.choice(names)
