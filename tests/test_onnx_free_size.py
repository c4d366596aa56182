"""ONNX graphs whose input leaves height and width free (PyTorch's dynamic_axes {0: N, 2: H, 3: W}): the input
rule's size fixes them before the import. Reference: ONNX Runtime on the same input, every node within 1e-5 of
the tensor's scale; error lines checked word for word."""

import json

import numpy as np
import pytest
from conftest import ROOT
from test_cli import run_main

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

import cnncli  # noqa: E402

PHOTO = str(ROOT / "sample_images" / "photo_chelsea.jpg")
DIGIT_7 = str(ROOT / "sample_images" / "digit_7.png")
RTOL = 1e-5  # of each tensor's largest magnitude: float32 sums of at most a few thousand terms
SIZES = [(12, 12), (17, 23)]  # two sizes of one file: square, and odd and unequal


# -- models ------------------------------------------------------------------------------------------------
def _inits(rng, **shapes):
    return [numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32), name)
            for name, shape in shapes.items()]


def _model(nodes, inits, dims, extra=()):
    graph = helper.make_graph(nodes, "free", [helper.make_tensor_value_info("x", TensorProto.FLOAT, dims)],
                              [helper.make_tensor_value_info(nodes[-1].output[0], TensorProto.FLOAT, None)],
                              [*inits, *extra])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def gap_net(channels=3, dims=None):
    """Conv -> Relu -> GlobalAveragePool -> Flatten -> Gemm: runs at any height and width."""
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["conv"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["conv"], ["relu"]),
             helper.make_node("GlobalAveragePool", ["relu"], ["gap"]),
             helper.make_node("Flatten", ["gap"], ["flat"]),
             helper.make_node("Gemm", ["flat", "fw", "fb"], ["logits"], transB=1)]
    inits = _inits(np.random.default_rng(1), w=(4, channels, 3, 3), b=(4,), fw=(5, 4), fb=(5,))
    return _model(nodes, inits, dims or ["N", channels, "H", "W"])


def reshape_net():
    """A map flattened to (N, C*H*W) by a Reshape whose target is computed from its Shape (H*W: only known once
    the size is), gated, and put back to (N, C, H, W) by the Shape of the map: every target depends on the size."""
    nodes = [helper.make_node("Conv", ["x", "w"], ["conv"], strides=[2, 2], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["conv"], ["relu"]),
             helper.make_node("Shape", ["relu"], ["shape"]),
             helper.make_node("Gather", ["shape", "i0"], ["n"], axis=0),
             helper.make_node("Gather", ["shape", "i1"], ["c"], axis=0),
             helper.make_node("Gather", ["shape", "i2"], ["h"], axis=0),
             helper.make_node("Gather", ["shape", "i3"], ["w_"], axis=0),
             helper.make_node("Mul", ["c", "h"], ["ch"]),
             helper.make_node("Mul", ["ch", "w_"], ["chw"]),
             helper.make_node("Unsqueeze", ["n", "ax0"], ["n1"]),
             helper.make_node("Unsqueeze", ["chw", "ax0"], ["chw1"]),
             helper.make_node("Concat", ["n1", "chw1"], ["flat_shape"], axis=0),
             helper.make_node("Reshape", ["relu", "flat_shape"], ["flat"]),
             helper.make_node("Sigmoid", ["flat"], ["gate"]),
             helper.make_node("Reshape", ["gate", "shape"], ["unflat"]),
             helper.make_node("Mul", ["unflat", "relu"], ["gated"]),
             helper.make_node("GlobalAveragePool", ["gated"], ["gap"]),
             helper.make_node("Flatten", ["gap"], ["pooled"]),
             helper.make_node("Gemm", ["pooled", "fw"], ["logits"], transB=1)]
    consts = [numpy_helper.from_array(np.array(i, np.int64), f"i{i}") for i in range(4)]
    consts.append(numpy_helper.from_array(np.array([0], np.int64), "ax0"))
    return _model(nodes, _inits(np.random.default_rng(2), w=(6, 3, 3, 3), fw=(4, 6)), ["N", 3, "H", "W"], consts)


def dense_net(size):
    """PyTorch's x.view(x.size(0), -1) then a Linear layer: its weight fits one size only, ``size`` (H, W)."""
    nodes = [helper.make_node("Conv", ["x", "w"], ["conv"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["conv"], ["relu"]),
             helper.make_node("Shape", ["relu"], ["shape"]),
             helper.make_node("Gather", ["shape", "i0"], ["n"], axis=0),
             helper.make_node("Unsqueeze", ["n", "ax0"], ["n1"]),
             helper.make_node("Concat", ["n1", "minus1"], ["target"], axis=0),
             helper.make_node("Reshape", ["relu", "target"], ["flat"]),
             helper.make_node("Gemm", ["flat", "fw", "fb"], ["logits"], transB=1)]
    consts = [numpy_helper.from_array(np.array(0, np.int64), "i0"),
              numpy_helper.from_array(np.array([0], np.int64), "ax0"),
              numpy_helper.from_array(np.array([-1], np.int64), "minus1")]
    inits = _inits(np.random.default_rng(3), w=(2, 3, 3, 3), fw=(3, 2 * size[0] * size[1]), fb=(3,))
    return _model(nodes, inits, ["N", 3, "H", "W"], consts)


def save(model, folder, name="dyn.onnx"):
    path = folder / name
    path.write_bytes(model.SerializeToString())
    return path


def ort_every(model, x):
    """ONNX Runtime's value of every node's first output for the batch of one x[None], no graph optimisation."""
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    present = {value.name for value in probe.graph.output}
    probe.graph.output.extend(helper.make_value_info(node.output[0], onnx.TypeProto())  # any type: Shape's too
                              for node in model.graph.node if node.output[0] not in present)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 4  # fatal only: the refused Gemm below is expected
    session = ort.InferenceSession(probe.SerializeToString(), options, providers=["CPUExecutionProvider"])
    names = [value.name for value in probe.graph.output]
    return dict(zip(names, session.run(names, {"x": x[None].astype(np.float32)})))


def assert_every_map_matches_ort(maps, model, x):
    """Each of cnn's maps that ONNX Runtime has a float tensor of the same name for: shape, then values within
    RTOL of the tensor's scale. Returns how many were compared."""
    reference = ort_every(model, x)
    compared = 0
    for name, ours in maps.items():
        theirs = reference.get(name)
        if theirs is None or theirs.dtype.kind != "f":
            continue
        assert ours.shape == theirs.shape[1:], name
        scale = max(float(np.abs(theirs).max()), 1e-30)
        assert float(np.abs(ours - theirs[0]).max()) <= RTOL * scale, name
        compared += 1
    return compared


def trace(capsys, *args):
    code, out, err = run_main(capsys, "run", *args, "-f", "json")
    assert code == 0, err
    return json.loads(out)


def bad(capsys, *args):
    code, out, err = run_main(capsys, *args)
    assert out == "" and err.count("\n") == 1 and "Traceback" not in err, err
    return code, err.rstrip("\n")


# -- the size from the input rule ----------------------------------------------------------------------------
@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("build, layers", [(gap_net, 5), (reshape_net, 9)])
def test_the_crop_fixes_a_free_height_and_width_and_every_node_matches_ort(tmp_path, capsys, build, layers, size):
    """`cnn run IMAGE -m dyn.onnx --crop H,W`: the input, and every layer after it, has the crop's size; each map
    matches ONNX Runtime's tensor of the same name on the same (prepared) input, the shape arithmetic folded."""
    model = build()
    path = save(model, tmp_path)
    document = trace(capsys, PHOTO, "-m", str(path), "--crop", f"{size[0]},{size[1]}")
    maps = {layer["name"]: np.array(layer["values"], np.float32) for layer in document["layers"]}
    assert maps["input"].shape == (3, *size)
    assert maps["relu"].shape[1:] == (size if build is gap_net else ((size[0] + 1) // 2, (size[1] + 1) // 2))
    assert len(document["layers"]) - 1 == layers  # the Shape, Gather, Mul, Unsqueeze and Concat nodes folded
    assert assert_every_map_matches_ort(maps, model, maps["input"]) == layers


@pytest.mark.parametrize("size", SIZES)
def test_the_api_crop_fixes_the_size_and_every_node_matches_ort(tmp_path, size):
    """cnncli.load_model(path, crop=(H, W)) reads the graph at that size; Model.run on an array of that shape
    gives every map as ONNX Runtime does."""
    model = reshape_net()
    loaded = cnncli.load_model(save(model, tmp_path), crop=size)
    assert loaded.input_shape == (3, *size)
    x = np.random.default_rng(7).random((3, *size), dtype=np.float32)
    assert assert_every_map_matches_ort(loaded.run(x).maps, model, x) == 9


def test_the_api_without_a_size_says_how_to_give_one(tmp_path):
    """cnncli.load_model on a free graph without crop or preset is a SpecError naming the ways, crop= included."""
    path = save(gap_net(), tmp_path)
    with pytest.raises(cnncli.SpecError, match=r"crop=\(H, W\) or preset= in Python"):
        cnncli.load_model(path)
    assert cnncli.load_model(path, preset="imagenet").input_shape == (3, 224, 224)


def test_the_imagenet_preset_gives_224_by_224(tmp_path, capsys):
    """--preset imagenet fixes the free size at its 224x224 crop, and the run's maps match ONNX Runtime."""
    model = gap_net()
    document = trace(capsys, PHOTO, "-m", str(save(model, tmp_path)), "--preset", "imagenet")
    maps = {layer["name"]: np.array(layer["values"], np.float32) for layer in document["layers"]}
    assert maps["conv"].shape == (4, 224, 224)
    assert assert_every_map_matches_ort(maps, model, maps["input"]) == 5


def test_a_size_dependent_flatten_fits_its_dense_layer_at_its_size_only(tmp_path, capsys):
    """Reshape to (N, -1) then Gemm: at the size the Gemm was made for every node matches ONNX Runtime; at another
    the dense layer's weight does not fit, one line naming the node and both sizes (ONNX Runtime fails too)."""
    model = dense_net((10, 14))
    path = save(model, tmp_path)
    document = trace(capsys, PHOTO, "-m", str(path), "--crop", "10,14")
    maps = {layer["name"]: np.array(layer["values"], np.float32) for layer in document["layers"]}
    assert maps["flat"].shape == (2 * 10 * 14,)
    assert assert_every_map_matches_ort(maps, model, maps["input"]) == 4
    code, err = bad(capsys, "run", PHOTO, "-m", str(path), "--crop", "10,12")
    assert code == 1 and err.startswith(f"cnn: {path}: node logits (Gemm): ") and "240" in err and "280" in err, err
    with pytest.raises(ort.capi.onnxruntime_pybind11_state.InvalidArgument, match=r"W: \{3,280\} K: 240"):
        ort_every(model, np.zeros((3, 10, 12), np.float32))  # ONNX Runtime refuses the mismatch as well


def test_a_free_batch_stays_free(tmp_path, capsys):
    """A batch dimension left free alongside a fixed height and width runs with no size given, as before."""
    model = gap_net(dims=["batch", 3, 9, 11])
    document = trace(capsys, PHOTO, "-m", str(save(model, tmp_path)))
    assert document["layers"][0]["shape"] == [3, 9, 11]


def test_summary_check_and_filters_take_the_size(tmp_path, capsys):
    """`cnn summary --crop`, `cnn check --crop` and `cnn filters --crop` read the graph at that size; check feeds
    ONNX Runtime the same size, and every node passes."""
    path = save(reshape_net(), tmp_path)
    code, out, err = run_main(capsys, "summary", str(path), "--crop", "17,23", "-f", "json")
    assert code == 0, err
    summary = json.loads(out)
    assert summary["input_shape"] == [3, 17, 23] and summary["layers"][0]["shape"] == [6, 9, 12]
    code, out, err = run_main(capsys, "check", str(path), PHOTO, "--crop", "17,23", "-f", "json")
    assert code == 0, err
    report = json.loads(out)
    assert report["failed"] == 0 and len(report["nodes"]) == 9
    assert {tuple(node["shape"]) for node in report["nodes"] if node["op"] == "Conv"} == {(6, 9, 12)}
    code, out, err = run_main(capsys, "filters", str(path), "--crop", "17,23", "-f", "json")
    assert code == 0, err


# -- a model JSON's input.size -------------------------------------------------------------------------------
def _wrapper(folder, model, **input_rule):
    save(model, folder)
    document = {"format": "cnn-model", "version": 2, "name": "wrapped", "graph": "dyn.onnx"}
    if input_rule:
        document["input"] = input_rule
    path = folder / "wrapped.json"
    path.write_text(json.dumps(document))
    return path


def test_a_model_json_size_fixes_the_free_size(tmp_path, capsys):
    """A model JSON's input.size fixes the graph's free height and width: the run's maps have that size and match
    ONNX Runtime; its crop does the same; --crop replaces the JSON's size, as options replace a rule's fields."""
    model = gap_net(channels=1)
    path = _wrapper(tmp_path, model, size=[28, 28])
    document = trace(capsys, DIGIT_7, "-m", str(path))
    maps = {layer["name"]: np.array(layer["values"], np.float32) for layer in document["layers"]}
    assert maps["conv"].shape == (4, 28, 28)
    assert assert_every_map_matches_ort(maps, model, maps["input"]) == 5
    assert trace(capsys, DIGIT_7, "-m", str(_wrapper(tmp_path, model, crop=[20, 16])))["layers"][0]["shape"] \
        == [1, 20, 16]
    document = trace(capsys, DIGIT_7, "-m", str(path), "--crop", "16,20")
    maps = {layer["name"]: np.array(layer["values"], np.float32) for layer in document["layers"]}
    assert maps["conv"].shape == (4, 16, 20)
    assert assert_every_map_matches_ort(maps, model, maps["input"]) == 5


# -- errors ---------------------------------------------------------------------------------------------------
def test_without_a_size_one_line_says_which_dimensions_and_how(tmp_path, capsys):
    """No size anywhere: one line naming the input, its free dimensions, the options and the model JSON field."""
    path = save(gap_net(), tmp_path)
    code, err = bad(capsys, "run", PHOTO, "-m", str(path))
    assert code == 1
    assert err == (f"cnn: {path}: input 'x' leaves its height (dimension 2, 'H') and width (dimension 3, 'W') free; "
                   "expected a size from the input rule: --crop H,W or --preset imagenet (crop=(H, W) or preset= in "
                   "Python), or \"size\": [H, W] in the \"input\" of a model JSON whose \"graph\" is this file")
    assert bad(capsys, "summary", str(path)) == (code, err)
    wrapper = _wrapper(tmp_path, gap_net(channels=1), color="gray")
    assert bad(capsys, "run", DIGIT_7, "-m", str(wrapper)) == (1, (
        f"cnn: {wrapper}: input: the graph dyn.onnx leaves the height (dimension 2, 'H') and width (dimension 3, "
        "'W') of its input 'x' free; expected \"size\": [H, W] here, or --crop H,W or --preset imagenet "
        "(crop=(H, W) or preset= in Python)"))


def test_an_unnamed_free_width_is_named_as_such(tmp_path, capsys):
    """A width with neither value nor name is free too, and said to be unnamed; the fixed height stays."""
    model = gap_net(dims=["N", 3, 9, "W"])
    model.graph.input[0].type.tensor_type.shape.dim[3].Clear()
    path = save(model, tmp_path)
    code, err = bad(capsys, "run", PHOTO, "-m", str(path))
    assert code == 1 and f"cnn: {path}: input 'x' leaves its width (dimension 3, unnamed) free; " in err


def test_a_size_contradicting_a_fixed_dimension_is_one_error_naming_both(tmp_path, capsys):
    """A height the file fixes (9) with a free width: a --crop of another height is one usage error naming both
    sizes, and so is a model JSON's size; the fixed height with any width runs."""
    model = gap_net(dims=["N", 3, 9, "W"])
    path = save(model, tmp_path)
    assert trace(capsys, PHOTO, "-m", str(path), "--crop", "9,13")["layers"][0]["shape"] == [3, 9, 13]
    assert bad(capsys, "run", PHOTO, "-m", str(path), "--crop", "12,13") == (2, (
        "cnn: Invalid value for --crop: is 12,13 (H,W) but the model dyn takes 9,13: its input size is fixed, so "
        "leave the crop out or give that"))
    wrapper = _wrapper(tmp_path, model, size=[12, 13], color="rgb")
    assert bad(capsys, "run", PHOTO, "-m", str(wrapper)) == (1, (
        f"cnn: {wrapper}: input.size: is [12, 13] but the ONNX graph's input is [9, 13]; give that or leave it out"))


def test_a_fixed_size_contradicted_is_the_same_error_as_before(tmp_path, capsys):
    """A graph that fixes its height and width ignores the size when it loads; a --crop of another size is the
    error it always was."""
    path = save(gap_net(dims=["N", 3, 9, 11]), tmp_path)
    assert bad(capsys, "run", PHOTO, "-m", str(path), "--crop", "12") == (2, (
        "cnn: Invalid value for --crop: is 12,12 (H,W) but the model dyn takes 9,11: its input size is fixed, so "
        "leave the crop out or give that"))


def test_a_free_channel_dimension_stays_an_error(tmp_path, capsys):
    """Channels left free cannot come from a size: one line, whatever crop is given."""
    path = save(gap_net(dims=["N", "C", "H", "W"]), tmp_path)
    code, err = bad(capsys, "run", PHOTO, "-m", str(path), "--crop", "12")
    assert code == 1 and err == (f"cnn: {path}: input 'x': dimension 1 (channels) is C; cnn needs a fixed number of "
                                 "channels, 1 (gray) or 3 (rgb)")
