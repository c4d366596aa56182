"""Real architectures as PyTorch exports them (torchvision's ResNet-18, MobileNetV2, MobileNetV3-Small,
EfficientNet-B0, SqueezeNet 1.1, DenseNet-121, GoogLeNet, ShuffleNetV2, VGG-11 and AlexNet at opsets 9
to 17; tests/fixtures/make_zoo.py), read by cnn and compared node by node with ONNX Runtime."""

import json

import numpy as np
import pytest
from conftest import ROOT
from test_cli import invoke

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
from zoo_models import TESTED, inflate, zoo_names  # noqa: E402

from cnncli.io.modelfile import load_model  # noqa: E402
from cnncli.io.onnx_export import export_model  # noqa: E402
from cnncli.io.onnx_import.check import check_steps, reference_values  # noqa: E402

# Layers each architecture must have become: what makes it that network, not a chain that happens to load.
CHARACTERISTIC = {
    "alexnet": {"conv2d", "maxpool2d", "dense"},
    "vgg11": {"conv2d", "maxpool2d", "avgpool2d", "dense"},
    "resnet18": {"conv2d", "add", "globalavgpool2d"},
    "squeezenet1_1": {"conv2d", "concat", "maxpool2d"},
    "googlenet": {"conv2d", "concat", "maxpool2d"},
    "densenet121": {"batchnorm2d", "concat", "avgpool2d"},
    "mobilenet_v2": {"conv2d", "relu6", "add"},
    "mobilenet_v3_small": {"hardswish", "hardsigmoid", "mul"},
    "shufflenet_v2_x1_0": {"channel_shuffle", "slice", "concat"},
    "efficientnet_b0": {"sigmoid", "mul", "add"},
}


@pytest.fixture(scope="module")
def zoo_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("zoo")

    def path(name):
        target = folder / f"{name}.onnx"
        if not target.exists():
            target.write_bytes(inflate(TESTED / f"{name}.onnx").SerializeToString())
        return target
    return path


def test_every_zoo_file_is_tested():
    assert zoo_names() == sorted(CHARACTERISTIC)


@pytest.mark.parametrize("name", sorted(CHARACTERISTIC))
def test_every_node_of_a_real_architecture_matches_onnx_runtime(name, zoo_files):
    """Every node within 1e-4 of the tensor's scale of ONNX Runtime's (graph optimisations off), the
    logits within 1e-5; the network keeps the layers that make the architecture what it is; and
    `cnn export` writes it back to a file that ONNX Runtime runs to the same logits (1e-5)."""
    path = zoo_files(name)
    model = load_model(str(path))
    x = np.random.default_rng(5).random(model.input.shape, dtype=np.float32)
    steps = model.network.forward(x)
    reference, ops = reference_values(path.read_bytes(), x, [step.name for step in steps], str(path))
    checks = check_steps(steps, reference, ops, rtol=1e-4, atol=0.0)
    failed = [check for check in checks if not check.passed]
    assert not failed, failed[:3]
    assert len(checks) >= 0.95 * (len(steps) - 1)  # only layers the importer adds (pads, pools) have no node
    logits = next(check for check in checks if check.name == "logits")
    assert logits.max_rel <= 1e-5
    assert CHARACTERISTIC[name] <= {layer.type for layer in model.network.layers}
    # Written back as ONNX by `cnn export`: ONNX Runtime runs it to the original's logits.
    exported, _ = reference_values(export_model(model), x, [], "exported")
    scale = float(np.abs(reference["logits"]).max())
    assert float(np.abs(exported["logits"] - reference["logits"]).max()) <= 1e-5 * scale


def test_cnn_check_passes_on_a_real_architecture(zoo_files, tmp_path):
    """`cnn check` on ShuffleNetV2 (channel shuffles, splits, shape arithmetic) with a real photo: exit 0."""
    result = invoke("check", str(zoo_files("shufflenet_v2_x1_0")), str(ROOT / "sample_images" / "photo_chelsea.jpg"),
                    "-f", "json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert len(report["nodes"]) > 150 and all(node["passed"] for node in report["nodes"])
