"""cnncli.engine.ops against PyTorch itself, when it is installed (it is not a test dependency: a CUDA
build is several GB). Install the CPU build to run these: pip install torch==2.13.0."""

import numpy as np
import pytest
from conftest import assert_array

from cnncli.engine import ops

torch = pytest.importorskip("torch")
F = torch.nn.functional
# torch warns that 'same' with even kernels makes a padded copy: true, and not our concern.
pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same':UserWarning")


def test_conv2d_matches_torch_over_random_settings():
    """Reference: torch.nn.Conv2d in float64, 150 random shapes, strides, paddings, modes, dilations, groups."""
    rng = np.random.default_rng(0)
    checked = 0
    for _ in range(150):
        groups = int(rng.choice([1, 2, 3]))
        group_channels, per_group = (int(v) for v in rng.integers(1, 4, 2))
        kernel = tuple(int(v) for v in rng.integers(1, 5, 2))
        stride, dilation = tuple(int(v) for v in rng.integers(1, 4, 2)), tuple(int(v) for v in rng.integers(1, 3, 2))
        padding = tuple(int(v) for v in rng.integers(0, 3, 2))
        mode = str(rng.choice(["zeros", "reflect", "replicate", "circular"]))
        x = rng.standard_normal((2, groups * group_channels, *(int(v) for v in rng.integers(6, 16, 2))))
        conv = torch.nn.Conv2d(x.shape[1], groups * per_group, kernel, stride, padding, dilation, groups,
                               padding_mode=mode).double()
        try:
            expected = conv(torch.from_numpy(x)).detach().numpy()
        except RuntimeError:
            continue  # settings torch itself refuses
        weight, bias = conv.weight.detach().numpy(), conv.bias.detach().numpy()
        for method in ("taps", "gemm"):
            actual = ops.conv2d(x, weight, bias, stride, padding, dilation, groups, mode, method=method)
            assert_array(actual, expected, rtol=1e-10, atol=1e-10)
        checked += 1
    assert checked > 100


@pytest.mark.parametrize("kernel, dilation", [((2, 2), (1, 1)), ((3, 4), (1, 1)), ((4, 2), (2, 1)), ((5, 5), (2, 2))])
def test_same_padding_matches_torch(kernel, dilation):
    """Reference: F.conv2d(padding='same'), even kernels included (the odd cell goes after)."""
    rng = np.random.default_rng(1)
    x, w = rng.standard_normal((1, 2, 11, 9)), rng.standard_normal((3, 2, *kernel))
    expected = F.conv2d(torch.from_numpy(x), torch.from_numpy(w), padding="same", dilation=dilation).numpy()
    assert_array(ops.conv2d(x, w, padding="same", dilation=dilation), expected, rtol=1e-10, atol=1e-10)


def test_pooling_matches_torch_over_random_settings():
    """Reference: F.max_pool2d and F.avg_pool2d, 200 random kernels, strides, paddings and ceil_mode."""
    rng = np.random.default_rng(2)
    for _ in range(200):
        kernel = tuple(int(v) for v in rng.integers(1, 5, 2))
        stride = tuple(int(v) for v in rng.integers(1, 4, 2))
        padding = tuple(int(rng.integers(0, k // 2 + 1)) for k in kernel)
        dilation = tuple(int(v) for v in rng.integers(1, 3, 2))
        ceil, include = bool(rng.integers(0, 2)), bool(rng.integers(0, 2))
        x = rng.standard_normal((2, 3, *(int(v) for v in rng.integers(5, 14, 2))))
        xt = torch.from_numpy(x)
        try:
            expected = F.max_pool2d(xt, kernel, stride, padding, dilation, ceil_mode=ceil).numpy()
        except RuntimeError:
            expected = None
        if expected is not None:
            assert_array(ops.max_pool2d(x, kernel, stride, padding, dilation, ceil), expected, rtol=0, atol=0)
        try:
            expected = F.avg_pool2d(xt, kernel, stride, padding, ceil, include).numpy()
        except RuntimeError:
            continue
        assert_array(ops.avg_pool2d(x, kernel, stride, padding, ceil, include), expected, rtol=1e-12, atol=1e-12)


def test_float32_conv_is_within_float32_rounding_of_torch():
    """In float32 both sum in a different order: agreement to 1e-5 relative of the largest value."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((64, 28, 28)).astype(np.float32)
    w = rng.standard_normal((32, 64, 3, 3)).astype(np.float32)
    expected = F.conv2d(torch.from_numpy(x)[None], torch.from_numpy(w), padding=1)[0].numpy()
    actual = ops.conv2d(x, w, padding=1)
    assert actual.dtype == np.float32
    assert np.abs(actual - expected).max() <= 1e-5 * np.abs(expected).max()


def _load_training_script():
    import importlib.util

    from conftest import ROOT

    spec = importlib.util.spec_from_file_location("train_digits", ROOT / "training" / "train_digits.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_digits_model_logits_equal_the_training_networks():
    """Reference: training/train_digits.py's DigitsNet with the shipped state_dict, in eval mode, live
    (the stored-logits test in test_modelfile.py checks the same without torch). 1e-5 relative."""
    from conftest import ROOT

    from cnncli.io.modelfile import load_model

    net = _load_training_script().DigitsNet()
    weights = np.load(ROOT / "cnncli" / "models" / "digits.npz", allow_pickle=False)
    net.load_state_dict({k: torch.from_numpy(weights[k]) for k in weights.files})
    net.eval()
    inputs = np.load(ROOT / "tests" / "data" / "digits_heldout.npz", allow_pickle=False)["inputs"]
    with torch.inference_mode():
        expected = torch.softmax(net(torch.from_numpy(inputs)), dim=1).numpy()
    model = load_model("digits")
    assert_array(model.network.predict(inputs), expected, rtol=1e-5, atol=1e-6)
    for i in range(0, len(inputs), 50):  # the forward pass that keeps every map, one image at a time
        assert_array(model.network.forward(inputs[i])[-1].output, expected[i], rtol=1e-5, atol=1e-6)


def test_a_pytorch_state_dict_runs_as_a_model_file(tmp_path):
    """Every layer type with non-default settings, exported with numpy.savez(**state_dict) as the
    README says, gives PyTorch's output (float64, 1e-10)."""
    import json

    from cnncli.io.modelfile import load_model

    nn = torch.nn
    torch.manual_seed(0)
    net = nn.Sequential()
    layers = [
        ("conv1", nn.Conv2d(3, 6, (3, 2), stride=(1, 2), padding=(2, 1), dilation=(2, 1), padding_mode="reflect"),
         {"type": "conv2d", "out_channels": 6, "kernel_size": [3, 2], "stride": [1, 2], "padding": [2, 1],
          "dilation": [2, 1], "padding_mode": "reflect"}),
        ("bn1", nn.BatchNorm2d(6, eps=1e-3), {"type": "batchnorm2d", "eps": 1e-3}),
        ("act1", nn.LeakyReLU(0.2), {"type": "leaky_relu", "negative_slope": 0.2}),
        ("conv2", nn.Conv2d(6, 4, 3, groups=2, bias=False, padding="same"),
         {"type": "conv2d", "out_channels": 4, "kernel_size": 3, "groups": 2, "bias": False, "padding": "same"}),
        ("pool1", nn.AvgPool2d(3, 2, padding=1, ceil_mode=True, count_include_pad=False),
         {"type": "avgpool2d", "kernel_size": 3, "stride": 2, "padding": 1, "ceil_mode": True,
          "count_include_pad": False}),
        ("act2", nn.Tanh(), {"type": "tanh"}),
        ("pool2", nn.MaxPool2d(2, 1, dilation=2), {"type": "maxpool2d", "kernel_size": 2, "stride": 1, "dilation": 2}),
        ("flatten", nn.Flatten(), {"type": "flatten"}),
        ("drop", nn.Dropout(0.3), {"type": "dropout", "p": 0.3}),
        ("fc1", nn.Linear(4 * 3 * 2, 7), {"type": "linear", "out_features": 7}),
        ("bn2", nn.BatchNorm1d(7), {"type": "batchnorm1d"}),
        ("act3", nn.Sigmoid(), {"type": "sigmoid"}),
        ("fc2", nn.Linear(7, 3), {"type": "dense", "out_features": 3}),
        ("softmax", nn.Softmax(dim=1), {"type": "softmax"}),
    ]
    for name, module, _ in layers:
        net.add_module(name, module)
    with torch.no_grad():  # running statistics that are not the defaults 0 and 1
        for bn in (net.bn1, net.bn2):
            bn.running_mean.uniform_(-1, 1)
            bn.running_var.uniform_(0.5, 2)
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.5, 0.5)
    net = net.double().eval()
    np.savez(tmp_path / "w.npz", **{k: v.numpy() for k, v in net.state_dict().items()})
    document = {"format": "cnn-model", "version": 1, "name": "everything", "weights": "w.npz",
                "input": {"size": [9, 12], "color": "rgb"},
                "layers": [{"name": name, **spec} for name, _, spec in layers]}
    (tmp_path / "net.json").write_text(json.dumps(document))
    model = load_model(str(tmp_path / "net.json"))
    x = np.random.default_rng(4).standard_normal((5, 3, 9, 12))
    with torch.inference_mode():
        expected = net(torch.from_numpy(x)).numpy()
    assert_array(model.network.predict(x), expected, rtol=1e-10, atol=1e-12)
    assert_array(model.network.forward(x[0])[-1].output, expected[0], rtol=1e-10, atol=1e-12)
