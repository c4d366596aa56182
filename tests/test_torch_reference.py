"""cnncli.ops against PyTorch itself, when it is installed (it is not a test dependency: a CUDA
build is several GB). Install the CPU build to run these: pip install torch==2.13.0."""

import numpy as np
import pytest
from conftest import assert_array

from cnncli import ops

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
