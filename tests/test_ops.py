"""cnncli.engine.ops against hand-worked answers, scipy (signal, ndimage, special) and the loop oracle."""

import numpy as np
import pytest
import scipy.ndimage as ndi
import scipy.signal as signal
import scipy.special as special
from conftest import assert_array

import oracles
from cnncli.engine import conv_gemm, conv_taps, ops, scratch
from cnncli.errors import ShapeError

SEED_IMAGE = np.array([[1, 2, 3, 0, 1], [4, 5, 6, 1, 2], [7, 8, 9, 2, 3], [1, 2, 3, 4, 5], [6, 7, 8, 5, 6]],
                      dtype=np.float32)
SEED_KERNEL = np.array([[1, 0, -1], [1, 0, -1], [1, 0, -1]], dtype=np.float32)
METHODS = ["taps", "gemm"]


def test_seed_example_reproduces_exactly():
    """The seed tutorial's 5x5 example: conv, ReLU and 2x2/2 max-pool give its printed numbers."""
    conv = ops.conv2d(SEED_IMAGE[None], SEED_KERNEL[None, None])
    assert_array(conv, [[[-6, 12, 12], [-6, 8, 8], [-6, 6, 6]]], dtype=np.float32, rtol=0, atol=0)
    activated = ops.relu(conv)
    assert_array(activated, [[[0, 12, 12], [0, 8, 8], [0, 6, 6]]], rtol=0, atol=0)
    assert_array(ops.max_pool2d(activated, 2, 2), [[[12]]], rtol=0, atol=0)


def test_seed_dense_layer_equals_the_tutorials_dot_product():
    """Dense with 1-D weights is the seed's np.dot(flat, weights) + bias."""
    rng = np.random.default_rng(3)
    features = rng.standard_normal((2, 3, 3))
    weights, bias = rng.standard_normal(18), rng.standard_normal()
    expected = np.dot(features.flatten(), weights) + bias
    assert_array(ops.linear(ops.flatten(features), weights[None], np.array([bias])), [expected], rtol=1e-12)


@pytest.mark.parametrize("method", METHODS)
def test_hand_worked_stride_two_with_bias(method):
    """A 4x4 ramp, 2x2 ones kernel, stride 2, bias 1: each output is its block's sum plus 1."""
    x = np.arange(16, dtype=np.float64).reshape(1, 4, 4)
    out = ops.conv2d(x, np.ones((1, 1, 2, 2)), np.array([1.0]), stride=2, method=method)
    # blocks: [0,1,4,5]=10, [2,3,6,7]=18, [8,9,12,13]=42, [10,11,14,15]=50
    assert_array(out, [[[11, 19], [43, 51]]], rtol=0, atol=0)


@pytest.mark.parametrize("method", METHODS)
def test_identity_kernel_and_zero_input(method):
    """The identity kernel with same padding returns the input; a zero image gives the bias."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 7, 9)).astype(np.float32)
    identity = np.zeros((2, 1, 3, 3), np.float32)
    identity[:, 0, 1, 1] = 1
    assert_array(ops.conv2d(x, identity, padding="same", groups=2, method=method), x, rtol=0, atol=0)
    zero = ops.conv2d(np.zeros((1, 5, 5)), np.ones((3, 1, 3, 3)), np.array([1.0, -2.0, 0.5]), method=method)
    assert_array(zero, np.broadcast_to(np.array([1.0, -2.0, 0.5])[:, None, None], (3, 3, 3)))


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("mode", ["valid", "full", "same"])
def test_single_channel_matches_scipy_correlate2d(method, mode):
    """Reference: scipy.signal.correlate2d with the same output-size mode (odd kernels, stride 1)."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((23, 31))
    for size in [(1, 1), (3, 3), (5, 3), (7, 7)]:
        kernel = rng.standard_normal(size)
        expected = signal.correlate2d(x, kernel, mode=mode)
        assert_array(ops.conv2d(x[None], kernel[None, None], padding=mode, method=method)[0], expected, rtol=1e-10,
                     atol=1e-10)


@pytest.mark.parametrize("method", METHODS)
def test_flip_is_true_convolution_as_scipy_convolve2d(method):
    """Reference: scipy.signal.convolve2d (which flips the kernel) equals flip=True."""
    rng = np.random.default_rng(2)
    x, kernel = rng.standard_normal((12, 10)), rng.standard_normal((3, 4))
    actual = ops.conv2d(x[None], kernel[None, None], flip=True, method=method)[0]
    assert_array(actual, signal.convolve2d(x, kernel, mode="valid"), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("mode, scipy_mode", [("zeros", "constant"), ("reflect", "mirror"),
                                              ("replicate", "nearest"), ("circular", "wrap")])
def test_padding_modes_match_scipy_ndimage(method, mode, scipy_mode):
    """Reference: scipy.ndimage.correlate borders; PyTorch's reflect is ndimage's mirror (dcb|abcd)."""
    rng = np.random.default_rng(4)
    x = rng.standard_normal((9, 11))
    for size in [(3, 3), (5, 5), (3, 5)]:
        kernel = rng.standard_normal(size)
        expected = ndi.correlate(x, kernel, mode=scipy_mode, cval=0.0)
        actual = ops.conv2d(x[None], kernel[None, None], padding="same", padding_mode=mode, method=method)[0]
        assert_array(actual, expected, rtol=1e-10, atol=1e-10)


def _random_case(rng):
    groups = int(rng.choice([1, 1, 2, 3]))
    group_channels, per_group = int(rng.integers(1, 4)), int(rng.integers(1, 4))
    kh, kw = (int(v) for v in rng.integers(1, 5, 2))
    stride = tuple(int(v) for v in rng.integers(1, 4, 2))
    dilation = tuple(int(v) for v in rng.integers(1, 3, 2))
    pads = tuple(int(v) for v in rng.integers(0, 3, 4))
    size = (int(rng.integers(dilation[0] * (kh - 1) + 1, 14)), int(rng.integers(dilation[1] * (kw - 1) + 1, 14)))
    x = rng.standard_normal((groups * group_channels, *size))
    weight = rng.standard_normal((groups * per_group, group_channels, kh, kw))
    return x, weight, rng.standard_normal(groups * per_group), stride, pads, dilation, groups


@pytest.mark.parametrize("method", METHODS)
def test_random_settings_match_loop_oracle(method):
    """Reference: the naive loop oracle, over 60 seeded random shapes, strides, pads, dilations, groups."""
    rng = np.random.default_rng(5)
    for _ in range(60):
        x, weight, bias, stride, pads, dilation, groups = _random_case(rng)
        expected = oracles.conv2d(x, weight, bias, stride, pads, dilation, groups)
        actual = ops.conv2d(x, weight, bias, stride, pads, dilation, groups, method=method)
        assert_array(actual, expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("gather", [1 << 20, 0], ids=["taps gathered", "tap by tap"])
@pytest.mark.parametrize("block", [1 << 15, 40, 1])
def test_depthwise_method_matches_loop_oracle(monkeypatch, block, gather):
    """Method "depthwise" (stride phases, flat rows, channel blocks) over 60 seeded random cases:
    strides 1-3, dilations 1-3, kernels 1x1 to 5x4, uneven pads, channel multipliers 1-3, bias or
    none, a batch; small blocks force many channel blocks and blocks of one channel; each block's
    taps summed by one product per channel (short channels) or by passes tap by tap (long ones).
    Reference: the naive loop oracle in float64 (1e-10), and float32 within float32 rounding."""
    monkeypatch.setattr(conv_taps, "_DEPTHWISE_BLOCK", block)
    monkeypatch.setattr(conv_taps, "_DEPTHWISE_GATHER_LENGTH", gather)
    rng = np.random.default_rng(23)
    for _ in range(60):
        channels, multiplier = int(rng.integers(1, 6)), int(rng.integers(1, 4))
        kh, kw = int(rng.integers(1, 6)), int(rng.integers(1, 5))
        stride = tuple(int(v) for v in rng.integers(1, 4, 2))
        dilation = tuple(int(v) for v in rng.integers(1, 4, 2))
        pads = tuple(int(v) for v in rng.integers(0, 3, 4))
        height = int(rng.integers((kh - 1) * dilation[0] + 1, 14))
        width = int(rng.integers((kw - 1) * dilation[1] + 1, 14))
        x = rng.standard_normal((2, channels, height, width))
        weight = rng.standard_normal((channels * multiplier, 1, kh, kw))
        bias = rng.standard_normal(channels * multiplier) if rng.random() < 0.5 else None
        expected = np.stack([oracles.conv2d(image, weight, bias, stride, pads, dilation, channels) for image in x])
        actual = ops.conv2d(x, weight, bias, stride, pads, dilation, channels, method="depthwise")
        assert_array(actual, expected, rtol=1e-10, atol=1e-10)
        single = ops.conv2d(x[0].astype(np.float32), weight.astype(np.float32), bias, stride, pads, dilation,
                            channels, method="depthwise")
        assert single.dtype == np.float32
        assert_array(single, expected[0], rtol=1e-4, atol=1e-4)


def test_depthwise_padding_modes_match_the_gemm_method():
    """Reflect, replicate and circular padding on a depthwise layer, stride 1 and 2; reference: method
    "gemm" on the same float64 input (1e-12)."""
    rng = np.random.default_rng(24)
    x = rng.standard_normal((6, 11, 9))
    weight = rng.standard_normal((6, 1, 3, 3))
    for mode in ("reflect", "replicate", "circular"):
        for stride in (1, 2):
            expected = ops.conv2d(x, weight, None, stride, 1, 1, 6, padding_mode=mode, method="gemm")
            actual = ops.conv2d(x, weight, None, stride, 1, 1, 6, padding_mode=mode, method="depthwise")
            assert_array(actual, expected, rtol=1e-12, atol=1e-12)


def test_batch_equals_images_one_by_one_in_float32():
    """(N, C, H, W) gives each image's own result; float32 stays float32 (tolerance for float32 sums)."""
    rng = np.random.default_rng(6)
    batch = rng.standard_normal((3, 4, 10, 12)).astype(np.float32)
    weight = rng.standard_normal((5, 4, 3, 3)).astype(np.float32)
    out = ops.conv2d(batch, weight, stride=2, padding=1)
    assert out.dtype == np.float32 and out.shape == (3, 5, 5, 6)
    for n in range(3):
        expected = oracles.conv2d(batch[n].astype(np.float64), weight.astype(np.float64), stride=(2, 2), pads=(1,) * 4)
        assert_array(out[n], expected, rtol=1e-4, atol=1e-4)


# (layout, batch, budget, images per product): 9x11 maps take the im2col windows, 40x40 ones over
# 13 channels the products per kernel row (conv_gemm._uses_windows); the budgets give one stack of
# all 7 images, stacks of 3 with a partial last one, or each image alone in blocks of rows (0).
STACKINGS = [("windows", (7, 3, 9, 11), 1 << 23, 7), ("windows", (7, 3, 9, 11), 7000, 3),
             ("windows", (7, 3, 9, 11), 300, 0), ("rows", (7, 13, 40, 40), 1 << 23, 7),
             ("rows", (7, 13, 40, 40), 160000, 3), ("rows", (7, 13, 40, 40), 2000, 0)]


@pytest.mark.parametrize("layout, shape, budget, images", STACKINGS)
@pytest.mark.parametrize("mode", ["zeros", "reflect", "circular"])
def test_stacked_batch_equals_images_one_by_one(monkeypatch, layout, shape, budget, images, mode):
    """Both GEMM layouts stack small images of a batch into one product; small block budgets force
    several stacks, a partial last stack, and one image per product (the plan is checked, so a case
    cannot drift to another branch). Reference: the same convolution image by image with method
    "taps" (float64, so the comparison is tight)."""
    monkeypatch.setattr(scratch, "IM2COL_ELEMENTS", budget)
    rng = np.random.default_rng(16)
    batch = rng.standard_normal(shape)
    channels = shape[1]
    weight = rng.standard_normal((4, channels, 3, 2))
    bias = rng.standard_normal(4)
    out = ops.conv2d(batch, weight, bias, padding=(2, 1), dilation=(1, 2), padding_mode=mode, method="gemm")
    (hp, wp), (out_h, out_w) = (shape[2] + 4, shape[3] + 2), out.shape[2:]
    assert conv_gemm._uses_windows((1, 1), hp, wp, out_h, out_w, channels * 2) == (layout == "windows")
    plan = (conv_gemm._windows_plan(7, 4, channels * 3 * 2, out_h, out_w) if layout == "windows"
            else conv_gemm._rows_plan(7, channels, 4, hp, wp, (3, 2), (1, 2), out_h))
    assert plan.images == images
    for n in range(7):
        expected = ops.conv2d(batch[n], weight, bias, padding=(2, 1), dilation=(1, 2), padding_mode=mode,
                              method="taps")
        assert_array(out[n], expected, rtol=1e-12, atol=1e-12)


def test_large_image_runs_in_strips_and_threads():
    """A map big enough for several strips and two threads equals scipy's correlate2d."""
    rng = np.random.default_rng(7)
    x = rng.standard_normal((1100, 1000)).astype(np.float32)
    kernel = rng.standard_normal((3, 3)).astype(np.float32)
    expected = signal.correlate2d(x.astype(np.float64), kernel.astype(np.float64), mode="valid")
    assert_array(ops.conv2d(x[None], kernel[None, None])[0], expected, dtype=np.float32, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("weight_shape, stride, padding", [((24, 4, 1, 1), 1, 0), ((6, 3, 7, 7), 2, 3)],
                         ids=["1x1 widening", "7x7 stride 2 over colours"])
def test_bias_taken_into_the_product_matches_scipy(weight_shape, stride, padding):
    """A product that takes the bias as one more column of weights against a row of ones (a 1x1 conv
    that widens the channels; a 7x7 conv over three colours, by windows) equals the bias added after.
    Reference: the sum over input channels of scipy.signal.correlate2d, sampled at the stride, plus
    the bias (float64, 1e-12); and float32 within float32 rounding."""
    rng = np.random.default_rng(26)
    n_filters, channels, kh, kw = weight_shape
    x = rng.standard_normal((channels, 40, 37))
    weight, bias = rng.standard_normal(weight_shape), rng.standard_normal(n_filters)
    out = ops.conv2d(x, weight, bias, stride, padding)
    assert conv_gemm._folds_bias(channels * kh * kw, n_filters, out.shape[1] * out.shape[2])
    padded = np.pad(x, ((0, 0), (padding, padding), (padding, padding)))
    expected = np.stack([sum(signal.correlate2d(padded[c], weight[f, c], mode="valid") for c in range(channels))
                         [::stride, ::stride] + bias[f] for f in range(n_filters)])
    assert_array(out, expected, rtol=1e-12, atol=1e-12)
    single = ops.conv2d(x.astype(np.float32), weight.astype(np.float32), bias.astype(np.float32), stride, padding)
    assert_array(single, expected, rtol=1e-5, atol=1e-5)


def test_same_padding_puts_the_odd_cell_after():
    """Even kernel, stride 1: PyTorch pads (k-1)//2 before and the rest after; stride 2 gives ceil(H/2)."""
    assert ops.conv_padding("same", (4, 2), in_size=(10, 10)) == (1, 2, 0, 1)
    pads = ops.conv_padding("same", (3, 3), stride=(2, 2), in_size=(7, 8))
    out = ops.conv2d(np.ones((1, 7, 8)), np.ones((1, 1, 3, 3)), stride=2, padding="same")
    assert pads == (1, 1, 0, 1) and out.shape == (1, 4, 4)


@pytest.mark.parametrize("kwargs, words", [
    ({"stride": 0}, "stride"),
    ({"dilation": -1}, "dilation"),
    ({"padding": -1}, "padding"),
    ({"padding": "middle"}, "valid, same, full"),
    ({"padding": 5, "padding_mode": "reflect"}, "reflect padding"),
    ({"groups": 2}, "groups=2"),
    ({"padding_mode": "mirror"}, "zeros, reflect"),
])
def test_bad_settings_raise_shape_errors(kwargs, words):
    """Out-of-range settings are ShapeErrors naming the setting, never a NumPy exception."""
    with pytest.raises(ShapeError, match=words):
        ops.conv2d(np.ones((3, 5, 5)), np.ones((1, 3, 3, 3)), **kwargs)


def test_kernel_larger_than_padded_input_is_an_error():
    """A 7x7 kernel on a 5x5 image names both sizes."""
    with pytest.raises(ShapeError, match="7x7 but the padded input is only 5x5"):
        ops.conv2d(np.ones((1, 5, 5)), np.ones((1, 1, 7, 7)))


def test_channel_mismatch_names_both_counts():
    """A weight for 3 channels on a 1-channel map says so."""
    with pytest.raises(ShapeError, match="expects 3 input channels, input has 1"):
        ops.conv2d(np.ones((1, 5, 5)), np.ones((2, 3, 3, 3)))


def _random_pool(rng):
    kernel = tuple(int(v) for v in rng.integers(1, 5, 2))
    stride = tuple(int(v) for v in rng.integers(1, 4, 2))
    padding = tuple(int(rng.integers(0, k // 2 + 1)) for k in kernel)
    dilation = tuple(int(v) for v in rng.integers(1, 3, 2))
    size = tuple(int(rng.integers(d * (k - 1) + 1, 14)) for k, d in zip(kernel, dilation))
    return rng.standard_normal((2, *size)), kernel, stride, padding, dilation, bool(rng.integers(0, 2))


def test_max_pool_matches_loop_oracle():
    """Reference: the loop oracle, over 80 random kernels, strides, paddings, dilations and ceil_mode."""
    rng = np.random.default_rng(8)
    for _ in range(80):
        x, kernel, stride, padding, dilation, ceil = _random_pool(rng)
        expected = oracles.pool2d(x, "max", kernel, stride, padding, dilation, ceil)
        assert_array(ops.max_pool2d(x, kernel, stride, padding, dilation, ceil), expected, rtol=0, atol=0)


@pytest.mark.parametrize("count_include_pad", [True, False])
def test_avg_pool_matches_loop_oracle(count_include_pad):
    """Reference: the loop oracle's PyTorch divisor rule, with and without counting the padding."""
    rng = np.random.default_rng(9)
    for _ in range(80):
        x, kernel, stride, padding, _, ceil = _random_pool(rng)
        expected = oracles.pool2d(x, "avg", kernel, stride, padding, (1, 1), ceil, count_include_pad)
        actual = ops.avg_pool2d(x, kernel, stride, padding, ceil, count_include_pad)
        assert_array(actual, expected, rtol=1e-12, atol=1e-12)


def test_max_pool_matches_scipy_maximum_filter():
    """Reference: scipy.ndimage.maximum_filter sampled every 3rd cell is a 3x3/3 max-pool."""
    rng = np.random.default_rng(10)
    x = rng.standard_normal((30, 27))
    expected = ndi.maximum_filter(x, size=3)[1:-1:3, 1:-1:3]
    assert_array(ops.max_pool2d(x[None], 3)[0], expected, rtol=0, atol=0)


def test_odd_sizes_floor_or_ceil_as_pytorch():
    """5x5 with 2x2/2: floor gives 2x2, ceil_mode gives 3x3 whose last window holds one cell."""
    x = np.arange(25, dtype=np.float64).reshape(1, 5, 5)
    assert ops.max_pool2d(x, 2).shape == (1, 2, 2)
    ceil = ops.max_pool2d(x, 2, ceil_mode=True)
    assert ceil.shape == (1, 3, 3) and ceil[0, 2, 2] == 24
    assert ops.avg_pool2d(x, 2, ceil_mode=True)[0, 2, 2] == 24  # divisor 1, not 4


def test_pool_padding_over_half_the_kernel_is_an_error():
    """PyTorch's rule: pool padding at most half the kernel size."""
    with pytest.raises(ShapeError, match="half the kernel"):
        ops.max_pool2d(np.ones((1, 6, 6)), 2, padding=2)


def test_global_avg_pool_is_the_mean_of_each_channel():
    """(C, H, W) -> (C, 1, 1) holding each channel's mean."""
    x = np.random.default_rng(11).standard_normal((3, 4, 5))
    assert_array(ops.global_avg_pool2d(x), x.mean(axis=(1, 2))[:, None, None], rtol=1e-12)


def test_activations_match_scipy_special():
    """Reference: scipy.special.expit and softmax; relu, leaky_relu and tanh by definition."""
    x = np.linspace(-800, 800, 2001)
    assert_array(ops.sigmoid(x), special.expit(x), rtol=1e-12, atol=1e-300)
    assert_array(ops.softmax(x), special.softmax(x), rtol=1e-12, atol=1e-300)
    assert_array(ops.relu(x), np.where(x > 0, x, 0), rtol=0, atol=0)
    assert_array(ops.leaky_relu(x, 0.1), np.where(x > 0, x, 0.1 * x), rtol=1e-15)
    assert_array(ops.tanh(x), np.tanh(x), rtol=0, atol=0)


def test_relu_in_chunks_equals_the_plain_maximum():
    """A map bigger than one chunk, with NaN, infinities and -0.0: the same bits as np.maximum(x, 0)."""
    rng = np.random.default_rng(17)
    for dtype in (np.float32, np.float64):
        x = rng.standard_normal((3, 150, 170)).astype(dtype)
        x.flat[[0, 5, 70_000]] = [np.nan, -np.inf, np.inf]
        x.flat[9] = -0.0
        expected = np.maximum(x, 0)
        actual = ops.relu(x)
        assert actual.dtype == dtype and actual.shape == x.shape
        assert np.array_equal(actual.view(np.uint8), expected.view(np.uint8))


@pytest.mark.parametrize("shape", [(2, 3, 8, 8), (1, 2, 7, 9), (4, 1, 2, 2), (1, 1, 3, 2)])
def test_two_by_two_max_pool_fast_path_matches_loop_oracle(shape):
    """2x2 stride 2 runs in two long passes; odd sides drop their last row or column as PyTorch does."""
    x = np.random.default_rng(18).standard_normal(shape)
    actual = ops.max_pool2d(x, 2)
    for n in range(shape[0]):
        expected = oracles.pool2d(x[n], "max", (2, 2), (2, 2), (0, 0))
        np.testing.assert_array_equal(actual[n], expected)
    x.flat[0] = np.nan  # a NaN in a window makes its maximum NaN, as in PyTorch
    assert np.isnan(ops.max_pool2d(x, 2).flat[0])


@pytest.mark.parametrize("settings", [
    {}, {"padding": 1}, {"stride": 2, "padding": (1, 0)}, {"dilation": 2, "padding": 2},
    {"groups": 2}, {"padding": 1, "padding_mode": "reflect"}, {"padding": 1, "padding_mode": "circular"},
])
def test_unrolled_matrix_is_the_same_convolution(settings):
    """x.ravel() @ M equals conv2d(x) for every setting; reference: the loop oracle for zero padding,
    conv2d itself (checked against scipy.ndimage elsewhere) for the other modes."""
    rng = np.random.default_rng(19)
    x = rng.standard_normal((2, 6, 5))
    weight = rng.standard_normal((4, 2 // settings.get("groups", 1), 3, 3))
    matrix = ops.unrolled_conv_matrix(x.shape, weight, **settings)
    expected = ops.conv2d(x, weight, **settings)
    assert matrix.shape == (x.size, expected.size)
    assert_array((x.reshape(-1) @ matrix).reshape(expected.shape), expected, rtol=1e-12, atol=1e-12)
    if settings.get("padding_mode", "zeros") == "zeros":
        stride, dilation = ops.pair(settings.get("stride", 1), "stride"), ops.pair(settings.get("dilation", 1), "dilation")
        pads = ops.conv_padding(settings.get("padding", 0), (3, 3), stride, dilation, x.shape[1:])
        oracle = oracles.conv2d(x, weight, None, stride, pads, dilation, settings.get("groups", 1))
        assert_array(expected, oracle, rtol=1e-12, atol=1e-12)


def test_sigmoid_and_softmax_never_overflow_in_float32():
    """Huge inputs give finite float32 results with no overflow or invalid operation."""
    x = np.array([-1e30, -100, 0, 100, 1e30], dtype=np.float32)
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        assert np.all(np.isfinite(ops.sigmoid(x))) and ops.sigmoid(x).dtype == np.float32
        assert np.all(np.isfinite(ops.softmax(x)))


def test_flatten_order_is_channel_row_column():
    """Flatten is C order, as PyTorch's torch.flatten on (C, H, W)."""
    x = np.arange(24).reshape(2, 3, 4)
    assert ops.flatten(x).tolist() == list(range(24))
    assert ops.flatten(x[None], batched=True).shape == (1, 24)


def test_linear_is_x_times_w_transposed_plus_b():
    """y = x W^T + b for one vector and a batch; a wrong input size is a ShapeError."""
    rng = np.random.default_rng(12)
    x, w, b = rng.standard_normal((4, 6)), rng.standard_normal((3, 6)), rng.standard_normal(3)
    assert_array(ops.linear(x, w, b), np.einsum("ni,oi->no", x, w) + b, rtol=1e-12)
    assert_array(ops.linear(x[0], w, b), w @ x[0] + b, rtol=1e-12)
    with pytest.raises(ShapeError, match="does not take 5 inputs"):
        ops.linear(np.ones(5), w)


# --- Working memory: what each op allocates, against its *_workspace formula ------------------


def _traced_peak(call) -> int:
    """Bytes NumPy allocated at once during ``call()`` (its result included), from a clean start."""
    import tracemalloc

    ops.release_buffers()
    tracemalloc.start()
    try:
        result = call()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    del result
    ops.release_buffers()
    return peak


def _conv_case(shape, weight_shape, stride=1, padding=0, dilation=1, groups=1, mode="zeros", flip=False,
               method="auto", dtype=np.float32, weight_dtype=np.float64, bias=True):
    rng = np.random.default_rng(20)
    x = rng.standard_normal(shape).astype(dtype)
    weight = rng.standard_normal(weight_shape).astype(weight_dtype)
    values = rng.standard_normal(weight_shape[0]).astype(weight_dtype) if bias else None
    itemsize, weight_itemsize = np.dtype(dtype).itemsize, np.dtype(weight_dtype).itemsize

    def call():
        return ops.conv2d(x, weight, values, stride, padding, dilation, groups, mode, flip, method)

    bound = ops.conv2d_workspace(shape, weight_shape, stride, padding, dilation, groups, mode, flip, method, itemsize,
                                 weight_itemsize, bias)
    return call, bound


WORKSPACE_CASES = {
    # the attack: a dilated kernel with big padding, each method, padding mode and stride
    "dilated taps": lambda: _conv_case((1, 192, 192), (1, 1, 3, 3), 1, 300, 40, method="taps"),
    "dilated gemm": lambda: _conv_case((1, 192, 192), (3, 1, 3, 3), 1, 300, 40, method="gemm"),
    "dilated gemm reflect": lambda: _conv_case((1, 192, 192), (3, 1, 3, 3), 1, 150, 40, mode="reflect", method="gemm"),
    "dilated taps circular": lambda: _conv_case((1, 192, 192), (1, 1, 3, 3), 1, 150, 40, mode="circular",
                                                method="taps"),
    "dilated stride 2": lambda: _conv_case((1, 192, 192), (1, 1, 3, 3), 2, 300, 40, method="gemm", flip=True),
    "dilation 300, one-row blocks": lambda: _conv_case((16, 100, 700), (16, 16, 3, 3), 1, 300, 300, method="gemm"),
    "rgb 3->8 5x5": lambda: _conv_case((3, 300, 257), (8, 3, 5, 5), 1, 2, mode="replicate"),
    "depthwise float64": lambda: _conv_case((4, 300, 300), (4, 1, 3, 3), 1, 1, groups=4, dtype=np.float64),
    "depthwise 5x5 stride 2, multiplier 2": lambda: _conv_case((48, 57, 57), (96, 1, 5, 5), 2, 2, groups=48),
    "depthwise 144 channels, threads": lambda: _conv_case((144, 112, 112), (144, 1, 3, 3), 1, 1, groups=144),
    "depthwise dilated reflect": lambda: _conv_case((8, 64, 64), (8, 1, 3, 3), 1, 4, 2, mode="reflect", groups=8),
    "64->64 taps, threads": lambda: _conv_case((2, 600, 600), (2, 2, 3, 3), 1, 1, method="taps"),
    "64->128 stride 2": lambda: _conv_case((64, 56, 56), (128, 64, 3, 3), 2, 1, weight_dtype=np.float32),
    "1x1 16->96, bias folded": lambda: _conv_case((16, 112, 112), (96, 16, 1, 1), weight_dtype=np.float32),
    "1x1 16->96, no bias": lambda: _conv_case((16, 112, 112), (96, 16, 1, 1), weight_dtype=np.float32, bias=False),
    "7x7 stride 2 3->64, bias folded": lambda: _conv_case((3, 224, 224), (64, 3, 7, 7), 2, 3),
}


def _other_case(name):
    rng = np.random.default_rng(21)
    x = rng.standard_normal((3, 501, 333)).astype(np.float32)
    dense = rng.standard_normal((30, 100_000))
    big = rng.standard_normal((3, 1024, 700)).astype(np.float32)  # padded, over _POOL_COPY_ELEMENTS
    cases = {
        "max-pool 2x2": (lambda: ops.max_pool2d(x, 2), ops.pool2d_workspace("max", x.shape, 2)),
        "max-pool 3/2 pad 1 ceil": (lambda: ops.max_pool2d(x, 3, 2, 1, 1, True),
                                    ops.pool2d_workspace("max", x.shape, 3, 2, 1, 1, True)),
        "avg-pool 7/1 pad 3": (lambda: ops.avg_pool2d(x, 7, 1, 3), ops.pool2d_workspace("avg", x.shape, 7, 1, 3)),
        "big max-pool 3/2 pad 1": (lambda: ops.max_pool2d(big, 3, 2, 1),
                                   ops.pool2d_workspace("max", big.shape, 3, 2, 1)),
        "big avg-pool 5/1 pad 2": (lambda: ops.avg_pool2d(big, 5, 1, 2, True, False),
                                   ops.pool2d_workspace("avg", big.shape, 5, 1, 2, 1, True)),
        "relu": (lambda: ops.relu(x), ops.activation_workspace("relu", x.shape)),
        "leaky_relu": (lambda: ops.leaky_relu(x, 0.2), ops.activation_workspace("leaky_relu", x.shape)),
        "sigmoid": (lambda: ops.sigmoid(x), ops.activation_workspace("sigmoid", x.shape)),
        "tanh": (lambda: ops.tanh(x), ops.activation_workspace("tanh", x.shape)),
        "softmax": (lambda: ops.softmax(x), ops.softmax_workspace(x.shape)),
        "batch norm": (lambda: ops.batch_norm(x, np.zeros(3), np.ones(3), np.ones(3), np.zeros(3)),
                       ops.batch_norm_workspace(x.shape, 3)),
        "global avg-pool": (lambda: ops.global_avg_pool2d(x), ops.global_avg_pool2d_workspace(x.shape)),
        "dense, float64 weights": (lambda: ops.linear(x.reshape(-1)[:100_000], dense, dense[0, :30]),
                                   ops.linear_workspace((100_000,), (30, 100_000), 4, 8)),
    }
    return cases[name]


OTHER_CASES = ["max-pool 2x2", "max-pool 3/2 pad 1 ceil", "avg-pool 7/1 pad 3", "big max-pool 3/2 pad 1",
               "big avg-pool 5/1 pad 2", "relu", "leaky_relu", "sigmoid", "tanh",
               "softmax", "batch norm", "global avg-pool", "dense, float64 weights"]


@pytest.mark.parametrize("name", list(WORKSPACE_CASES) + OTHER_CASES)
def test_workspace_bounds_what_the_op_allocates(name):
    """Reference: tracemalloc's peak of the call (NumPy reports every array to it). The formula is
    never below it, and above it by at most a fifth plus the fixed per-call and per-thread terms."""
    call, bound = WORKSPACE_CASES[name]() if name in WORKSPACE_CASES else _other_case(name)
    peak = _traced_peak(call)
    fixed = 2 * (scratch._call_bytes(8) + scratch.THREAD_BYTES)
    assert peak <= bound <= 1.2 * peak + fixed, f"{name}: traced {peak:,}, formula {bound:,}"


def test_big_dilation_copies_each_kernel_row_not_the_reach():
    """A one-row block under dilation 300: the column shifts hold the block's rows once per kernel
    row (at most IM2COL_ELEMENTS), not the 600 rows the kernel reaches; same bits as before."""
    pads, (_, out_h, _) = ops.conv_geometry((16, 100, 700), (16, 16, 3, 3), 1, 300, 300)
    plan = conv_gemm._rows_plan(1, 16, 16, 700, 1300, (3, 3), (300, 300), out_h)
    assert plan.tiled and plan.rows == 1 and plan.cols <= scratch.IM2COL_ELEMENTS
    assert plan.cols == 16 * 3 * 1300  # C * KW * one padded row


@pytest.mark.parametrize("budget", [300, 2000])
@pytest.mark.parametrize("dilation", [(1, 1), (5, 2), (9, 1)])
def test_gemm_blocks_per_kernel_row_equal_shift_and_add(monkeypatch, budget, dilation):
    """Small block budgets force blocks of a few rows or one, and copies per kernel row where the
    dilation is longer than the block (a map big enough for the per-kernel-row layout, checked, not
    im2col); reference: method "taps" in float64, and for one case the loop oracle (slow over 13 channels)."""
    monkeypatch.setattr(scratch, "IM2COL_ELEMENTS", budget)
    rng = np.random.default_rng(22)
    x = rng.standard_normal((13, 80, 60))  # 13 channels by 2 columns a kernel row: deep enough for rows
    weight, bias = rng.standard_normal((4, 13, 3, 2)), rng.standard_normal(4)
    out = ops.conv2d(x, weight, bias, padding=(4, 2), dilation=dilation, method="gemm")
    (hp, wp), (out_h, out_w) = (80 + 8, 60 + 4), out.shape[1:]
    assert not conv_gemm._uses_windows((1, 1), hp, wp, out_h, out_w, 13 * 2)
    plan = conv_gemm._rows_plan(1, 13, 4, hp, wp, (3, 2), dilation, out_h)
    assert plan.rows < out_h and plan.tiled == (dilation[0] > 1)
    assert_array(out, ops.conv2d(x, weight, bias, padding=(4, 2), dilation=dilation, method="taps"), rtol=1e-12,
                 atol=1e-12)
    if (dilation, budget) == ((5, 2), 2000):
        oracle = oracles.conv2d(x, weight, bias, (1, 1), (4, 4, 2, 2), dilation)
        assert_array(out, oracle, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("mode", ["zeros", "reflect", "replicate", "circular"])
def test_pad2d_equals_numpy_pad(mode):
    """Reference: np.pad's constant, reflect, edge and wrap modes, bit for bit, up to the largest pads
    PyTorch allows; a batch's leading axes are kept."""
    x = np.random.default_rng(23).standard_normal((2, 3, 7, 5))
    x[0, 0, 0, 0] = -0.0
    largest = (6, 6, 4, 4) if mode == "reflect" else (7, 7, 5, 5) if mode == "circular" else (9, 0, 3, 11)
    numpy_mode = {"zeros": "constant", "reflect": "reflect", "replicate": "edge", "circular": "wrap"}[mode]
    for pads in [(1, 2, 3, 0), (0, 0, 0, 1), largest]:
        expected = np.pad(x, [(0, 0), (0, 0), pads[:2], pads[2:]], mode=numpy_mode)
        assert np.array_equal(ops.pad2d(x, pads, mode).view(np.uint8), expected.view(np.uint8))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_chunked_activations_equal_their_formulas(dtype):
    """leaky_relu, sigmoid and softmax work in place in chunks; reference: their formulas on whole
    arrays (np.where, exp), bit for bit, with NaN, infinities and -0.0."""
    rng = np.random.default_rng(24)
    x = (rng.standard_normal((3, 150, 170)) * 30).astype(dtype)
    x.flat[[0, 5, 70_000, 9]] = [np.nan, -np.inf, np.inf, -0.0]
    slope = np.asarray(0.1, dtype=dtype)
    with np.errstate(all="ignore"):
        e = np.exp(-np.abs(x))
        shifted = np.exp(x - x.max(-1, keepdims=True))
        expected = {"leaky_relu": np.where(x >= 0, x, x * slope),
                    "sigmoid": np.where(x >= 0, 1 / (1 + e), e / (1 + e)),
                    "softmax": shifted / shifted.sum(-1, keepdims=True)}
        actual = {"leaky_relu": ops.leaky_relu(x, 0.1), "sigmoid": ops.sigmoid(x), "softmax": ops.softmax(x)}
    for name, value in actual.items():
        assert value.dtype == dtype, name
        assert np.array_equal(value.view(np.uint8), expected[name].astype(dtype).view(np.uint8)), name


@pytest.mark.parametrize("shape", [(1, 2048, 2047), (70, 33, 64), (1, 5, 9000)])
def test_two_by_two_max_pool_in_passes_equals_whole_arrays(shape):
    """The 2x2 max-pool runs a few rows (or maps) per pass; reference: the maximum of the four
    strided views of the whole map."""
    x = np.random.default_rng(25).standard_normal(shape).astype(np.float32)
    h, w = shape[1] // 2, shape[2] // 2
    quads = [x[:, i:2 * h:2, j:2 * w:2] for i in (0, 1) for j in (0, 1)]
    expected = np.maximum(np.maximum(quads[0], quads[2]), np.maximum(quads[1], quads[3]))
    np.testing.assert_array_equal(ops.max_pool2d(x, 2), expected)


@pytest.mark.parametrize("shape, weight_shape, stride, padding, groups", [
    ((6, 9, 7), (8, 3, 1, 1), 1, 0, 2),  # 1x1: one product on the image's own layout
    ((2, 6, 9, 7), (4, 6, 1, 1), 1, 0, 1),
    ((8, 7, 7), (16, 8, 3, 3), 1, 1, 1),  # a small padded map: whole windows, straight into the output
    ((3, 8, 7, 7), (16, 8, 3, 3), 1, 1, 1),  # a batch of them: several images per product
    ((3, 8, 14, 14), (6, 4, 3, 3), 2, 1, 2),  # strided, two groups
])
def test_gemm_paths_equal_shift_and_add(shape, weight_shape, stride, padding, groups):
    """The 1x1 product, the windows product of small maps (one image or several per product) and the
    strided one; reference: method "taps" in float64, and the loop oracle."""
    rng = np.random.default_rng(23)
    x, weight, bias = rng.standard_normal(shape), rng.standard_normal(weight_shape), rng.standard_normal(weight_shape[0])
    out = ops.conv2d(x, weight, bias, stride, padding, groups=groups, method="gemm")
    assert_array(out, ops.conv2d(x, weight, bias, stride, padding, groups=groups, method="taps"), rtol=1e-12, atol=1e-12)
    oracle = oracles.conv2d(x if x.ndim == 3 else x[-1], weight, bias, (stride, stride), (padding,) * 4, (1, 1), groups)
    assert_array(out if x.ndim == 3 else out[-1], oracle, rtol=1e-12, atol=1e-12)
