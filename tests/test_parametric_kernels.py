"""Kernels made from a formula (cnncli.io.parametric), each against an independent reference: scipy's
Gaussian filters on an impulse, the formulas written out cell by cell, OpenCV's getGaborKernel and
scikit-image's gabor_kernel and disk as their sources define them, and the built-in Sobel kernels."""

import math

import numpy as np
import pytest
import scipy.ndimage as ndi
from conftest import ROOT
from test_cli import run_main

from cnncli.errors import SpecError
from cnncli.io.kernels import resolve_kernel


def impulse_response(filter_, size, **kwargs):
    """What a scipy.ndimage filter makes of a unit impulse: its kernel, (size, size)."""
    impulse = np.zeros((size, size))
    impulse[size // 2, size // 2] = 1
    return filter_(impulse, mode="constant", **kwargs)


@pytest.mark.parametrize("sigma", [0.5, 1.0, 1.5, 3.2])
def test_gaussian_equals_scipys_gaussian_filter(sigma):
    """Same size (radius int(4 sigma + 0.5)) and the same weights as scipy.ndimage.gaussian_filter's,
    to 1e-12; sums to 1."""
    kernel = resolve_kernel(f"gaussian:sigma={sigma}").weights
    radius = int(4 * sigma + 0.5)
    assert kernel.shape == (2 * radius + 1,) * 2
    np.testing.assert_allclose(kernel, impulse_response(ndi.gaussian_filter, 2 * radius + 1, sigma=sigma),
                               rtol=0, atol=1e-12)
    assert kernel.sum() == pytest.approx(1, abs=1e-12)


def test_a_given_size_and_a_bare_value():
    """gaussian:2,size=5 is sigma 2 in a 5x5 window; box:5 is a 5x5 mean."""
    kernel = resolve_kernel("gaussian:2,size=5").weights
    x = np.arange(-2, 3)
    expected = np.exp(-(x[:, None] ** 2 + x[None] ** 2) / 8)
    np.testing.assert_allclose(kernel, expected / expected.sum(), rtol=0, atol=1e-15)
    np.testing.assert_array_equal(resolve_kernel("box:5").weights, np.full((5, 5), 1 / 25))


def test_laplacian_of_gaussian_is_the_formula_and_scipys_shape():
    """Cell by cell -(1/(pi s^4)) (1 - r^2/(2 s^2)) exp(-r^2/(2 s^2)) minus its mean (sums to 0); it
    has the shape of scipy.ndimage.gaussian_laplace's kernel (correlation above 0.99: scipy takes the
    second differences of a sampled Gaussian, another discretisation)."""
    sigma = 2.0
    kernel = resolve_kernel(f"log:sigma={sigma}").weights
    size = kernel.shape[0]
    expected = np.empty((size, size))
    for row in range(size):
        for col in range(size):
            r2 = ((row - size // 2) ** 2 + (col - size // 2) ** 2) / (2 * sigma ** 2)
            expected[row, col] = -(1 - r2) * math.exp(-r2) / (math.pi * sigma ** 4)
    np.testing.assert_allclose(kernel, expected - expected.mean(), rtol=0, atol=1e-15)
    assert abs(kernel.sum()) < 1e-12 and kernel[size // 2, size // 2] < 0
    scipy_kernel = impulse_response(ndi.gaussian_laplace, size, sigma=sigma)
    assert np.corrcoef(kernel.ravel(), scipy_kernel.ravel())[0, 1] > 0.99


def test_difference_of_gaussians_is_two_scipy_gaussians():
    kernel = resolve_kernel("dog:sigma1=1,sigma2=2").weights
    size = 2 * int(4 * 2 + 0.5) + 1
    expected = (impulse_response(ndi.gaussian_filter, size, sigma=1, truncate=8.0)
                - impulse_response(ndi.gaussian_filter, size, sigma=2))
    # scipy truncates sigma 1 at its own radius (4): the cells beyond it are the sampled Gaussian's tail
    inner = slice(size // 2 - 4, size // 2 + 5)
    np.testing.assert_allclose(kernel[inner, inner], expected[inner, inner], rtol=0, atol=1e-9)
    assert abs(kernel.sum()) < 1e-12


def opencv_gabor(size, sigma, theta, lambd, gamma, psi):
    """OpenCV's getGaborKernel (modules/imgproc/src/gabor.cpp) as written: y from ymin to ymax, x
    likewise, each value stored at (ymax - y, xmax - x)."""
    half = size // 2
    c, s = math.cos(theta), math.sin(theta)
    kernel = np.empty((size, size))
    for y in range(-half, half + 1):
        for x in range(-half, half + 1):
            xr, yr = x * c + y * s, -x * s + y * c
            value = math.exp(-0.5 * (xr * xr + gamma * gamma * yr * yr) / (sigma * sigma))
            kernel[half - y, half - x] = value * math.cos(2 * math.pi * xr / lambd + psi)
    return kernel


def skimage_gabor_real(size, frequency, theta, sigma_x, sigma_y):
    """The real part of scikit-image's filters.gabor_kernel (skimage/filters/_gabor.py) as written,
    times 2 pi sigma_x sigma_y (its normalisation)."""
    half = size // 2
    y, x = np.mgrid[-half:half + 1, -half:half + 1]
    rotx = x * np.cos(theta) + y * np.sin(theta)
    roty = -x * np.sin(theta) + y * np.cos(theta)
    g = np.exp(-0.5 * (rotx ** 2 / sigma_x ** 2 + roty ** 2 / sigma_y ** 2))
    return g * np.cos(2 * np.pi * frequency * rotx)


@pytest.mark.parametrize("theta", [0, 30, 45, 90, 135])
def test_gabor_equals_opencv_and_scikit_image(theta):
    """gabor:theta,lambda,sigma,gamma equals OpenCV's kernel (psi 0, where its reversed storage makes
    no difference) and scikit-image's real part (sigma_y = sigma / gamma, frequency 1 / lambda), 1e-12."""
    kernel = resolve_kernel(f"gabor:theta={theta},lambda=8,sigma=3,gamma=0.5,size=21").weights
    np.testing.assert_allclose(kernel, opencv_gabor(21, 3, math.radians(theta), 8, 0.5, 0), rtol=0, atol=1e-12)
    np.testing.assert_allclose(kernel, skimage_gabor_real(21, 1 / 8, math.radians(theta), 3, 6), rtol=0, atol=1e-12)


def test_disk_is_scikit_images_disk_averaged():
    """skimage.morphology.disk(r): the cells with x^2 + y^2 <= r^2 in a (2r + 1) square; here their mean."""
    for radius in (1, 2, 3.5, 5):
        r = int(radius)
        y, x = np.mgrid[-r:r + 1, -r:r + 1]
        inside = (x ** 2 + y ** 2 <= radius ** 2).astype(float)
        np.testing.assert_allclose(resolve_kernel(f"disk:radius={radius}").weights, inside / inside.sum(),
                                   rtol=0, atol=1e-15)


def test_sobel_at_an_angle_is_the_directional_derivative():
    """angle 0 is the built-in sobel_x, 90 sobel_y (down), 180 -sobel_x; on a ramp a*x + b*y (x right,
    y down) every angle gives Sobel's gain 8 times a cos + b sin."""
    sobel_x, sobel_y = resolve_kernel("sobel_x").weights, resolve_kernel("sobel_y").weights
    np.testing.assert_array_equal(resolve_kernel("sobel:angle=0").weights, sobel_x)
    np.testing.assert_array_equal(resolve_kernel("sobel:angle=90").weights, sobel_y)
    np.testing.assert_array_equal(resolve_kernel("sobel:angle=180").weights, -sobel_x)
    rows, cols = np.mgrid[0:3, 0:3]
    ramp = 0.7 * cols - 1.3 * rows
    for angle in (0, 30, 45, 120, 200, 315):
        response = float((resolve_kernel(f"sobel:angle={angle}").weights * ramp).sum())
        a = math.radians(angle)
        assert response == pytest.approx(8 * (0.7 * math.cos(a) - 1.3 * math.sin(a)), abs=1e-12)


def test_a_list_makes_a_bank_named_by_its_values():
    bank = resolve_kernel("sobel:angles=0,45,90,135")
    assert bank.raw.shape == (4, 3, 3) and bank.names == ("sobel:angle=0", "sobel:angle=45", "sobel:angle=90",
                                                          "sobel:angle=135")
    for i, angle in enumerate((0, 45, 90, 135)):
        np.testing.assert_array_equal(bank.weights[i], resolve_kernel(f"sobel:angle={angle}").weights)
    gabors = resolve_kernel("gabor:thetas=0,90,lambda=6,size=15")
    assert gabors.raw.shape == (2, 15, 15) and gabors.names[1] == "gabor:theta=90,lambda=6,size=15"


@pytest.mark.parametrize("spec, words", [
    ("gaussian:sigma=0", "sigma must be above 0"),
    ("gaussian:sigma=nan", "not a finite number"),
    ("gaussian:sigma=x", "sigma='x' is not a number"),
    ("gaussian:sigma=100", "over 255"),
    ("gaussian:size=4", "size must be an odd whole number"),
    ("gaussian:sigma=1,,size=3", "an empty argument"),
    ("gaussian:sigma=1,sigma=2", "sigma is given twice"),
    ("gabor:theta=1,2,lambda=3,4", "only one argument may list several values"),
    ("gaussian:radius=2", "unknown argument 'radius'; expected sigma, size"),
    ("sobel:angles=" + ",".join(map(str, range(65))), "at most 64"),
    ("gaussian:sigmas=1,2", "different sizes"),
])
def test_bad_arguments_are_one_line_naming_the_family(spec, words):
    with pytest.raises(SpecError) as error:
        resolve_kernel(spec)
    assert words in str(error.value) and "\n" not in str(error.value)


def test_a_name_that_starts_like_several_kernels_suggests_them_all(capsys):
    code, out, err = run_main(capsys, "run", str(ROOT / "sample_images" / "seed_5x5.png"), "-k", "sobel")
    assert code == 1 and out == ""
    assert err == ("cnn: --kernel: 'sobel' is neither a kernel file nor a built-in kernel (did you mean sobel_x, "
                   "sobel_y or sobel:...?)\n")


def test_a_family_works_wherever_a_kernel_does(capsys, tmp_path):
    """-k with a bank on an RGB picture: each channel by each angle, the maps named by both."""
    out_file = tmp_path / "edges.npz"
    code, _, err = run_main(capsys, "run", str(ROOT / "sample_images" / "shapes.png"), "--color", "rgb", "-k",
                            "sobel:angles=0,90", "--activation", "none", "--pool", "none", "-o", str(out_file))
    assert code == 0, err
    saved = np.load(out_file)
    maps = saved["conv1"]
    assert maps.shape == (6, 62, 62)  # R, G, B, each by the two angles
    # reference: scipy's valid cross-correlation of the red channel with sobel_y (angle 90)
    from scipy.signal import correlate2d
    np.testing.assert_allclose(maps[1], correlate2d(saved["input"][0], resolve_kernel("sobel_y").weights, "valid"),
                               rtol=1e-5, atol=1e-5)
    code, out, err = run_main(capsys, "kernels", "gabor:theta=30,lambda=6")
    assert code == 0 and "gabor:theta=30" in out and "-0.686 .. 1" in out


def test_cnn_kernels_draws_an_all_positive_kernel_dark_to_bright_and_a_signed_one_about_zero(capsys):
    """Without colour the drawing is the shade ramp " .:-=+*#%@": a Gaussian (every weight above 0) runs
    from blank corners to "@" at its centre, as a map without negatives does; a Sobel kernel (signed)
    (a Gabor filter, signed) keeps the scale about 0: its near-zero corner is a middle shade, "+" or "="."""
    code, out, _ = run_main(capsys, "kernels", "gaussian:sigma=1.5")
    drawing = [line[31:57] for line in out.splitlines()[4:17]]  # the weights column: 13 lines of 26 characters
    assert code == 0 and drawing[0].strip() == "" and "@@" in drawing[6] and "+" not in "".join(drawing)
    code, out, _ = run_main(capsys, "kernels", "gabor:theta=0")
    assert code == 0 and out.splitlines()[4][26] in "+="
