"""Kernels made from a formula, named with their arguments wherever a kernel is taken:
``gaussian:sigma=1.5``, ``log:sigma=2``, ``dog:sigma1=1,sigma2=2``, ``gabor:theta=45,lambda=8``,
``box:5``, ``disk:radius=3``, ``sobel:angle=45``.

Arguments are ``key=value`` pairs separated by commas; a first value without a key is the family's
main argument (``box:5`` is ``box:size=5``, ``gaussian:2`` is ``gaussian:sigma=2``). A value that
continues with more commas is a list (``sobel:angles=0,45,90,135``), and a list argument makes a
bank: one kernel per value, in order, each named by its value. Angles are in degrees from the +x
axis (right) towards +y (down the picture: clockwise as seen), as in OpenCV and scikit-image, so
``sobel:angle=90`` is ``sobel_y`` and a Gabor's theta is theirs.

Sizes follow scipy.ndimage: a Gaussian's radius is int(4 sigma + 0.5) unless ``size`` is given (odd).
"""

from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np

from ..errors import SpecError

MAX_SIZE = 255  # a side; a sigma of 60 already reaches it
MAX_BANK = 64  # kernels from one list argument
TRUNCATE = 4.0  # scipy.ndimage.gaussian_filter's default radius, in sigmas
# Plurals read better for a bank (sobel:angles=0,45,90,135); any argument takes a list either way.
ALIASES = {"angles": "angle", "thetas": "theta", "sigmas": "sigma", "lambdas": "lambda", "wavelength": "lambda",
           "sizes": "size", "radii": "radius", "psis": "psi", "gammas": "gamma"}


def is_parametric(spec: str) -> bool:
    """Whether ``spec`` names a formula family (``name:args``), not a file or a built-in kernel."""
    family = spec.split(":", 1)[0].strip().lower()
    return ":" in spec and family in FAMILIES


def parametric_kernel(spec: str, option: str) -> Any:
    """The Kernel (a single one, or a bank for a list argument) that ``spec`` names.

    Raises SpecError naming the option, the argument and what was expected.
    """
    from .kernels import Kernel

    family, _, text = spec.partition(":")
    family = family.strip().lower()
    make, main, allowed, description = FAMILIES[family]
    args = _arguments(text, main, option, family)
    unknown = sorted(set(args) - set(allowed))
    if unknown:
        raise SpecError(f"{family}: unknown argument {unknown[0]!r}; expected {', '.join(allowed)}", source=option)
    lists = [key for key, values in args.items() if len(values) > 1]
    if len(lists) > 1:
        raise SpecError(f"{family}: only one argument may list several values (a bank), got {', '.join(lists)}",
                        source=option)
    if lists and len(args[lists[0]]) > MAX_BANK:
        raise SpecError(f"{family}: {lists[0]} lists {len(args[lists[0]])} values; at most {MAX_BANK}", source=option)
    varied = lists[0] if lists else None
    kernels, names = [], []
    for index in range(len(args[varied]) if varied else 1):
        single = {key: values[index if key == varied else 0] for key, values in args.items()}
        try:
            kernels.append(make(single))
        except (ValueError, TypeError) as err:
            raise SpecError(f"{family}: {err}", source=option) from None
        names.append(_name(family, single))
    sizes = {k.shape for k in kernels}
    if len(sizes) > 1:
        raise SpecError(f"{family}: the bank's kernels come out in different sizes ({', '.join(map(str, sizes))}); "
                        "give size", source=option)
    if varied:
        label = f"{family}:{varied}={','.join(_text(v) for v in args[varied])}"
        return Kernel(label, np.stack(kernels), 1.0, description, names=tuple(names))
    return Kernel(names[0], kernels[0], 1.0, description)


def _arguments(text: str, main: str, option: str, family: str) -> dict[str, list[float]]:
    """``k=v,k=v1,v2`` (and a leading bare value for ``main``) as {key: [numbers]}."""
    args: dict[str, list[float]] = {}
    key = None
    for token in (t.strip() for t in text.split(",")):
        if not token:
            raise SpecError(f"{family}: an empty argument in {text!r}; expected key=value pairs separated by commas",
                            source=option)
        if "=" in token:
            key, _, token = (part.strip() for part in token.partition("="))
            key = ALIASES.get(key.lower(), key.lower())
            if key in args:
                raise SpecError(f"{family}: {key} is given twice", source=option)
            args[key] = []
        elif key is None:
            key = main
            args[key] = []
        try:
            number = float(token)
        except ValueError:
            raise SpecError(f"{family}: {key}={token!r} is not a number", source=option) from None
        if not math.isfinite(number):
            raise SpecError(f"{family}: {key}={token} is not a finite number", source=option)
        args[key].append(number)
    return args


def _text(value: float) -> str:
    return f"{value:g}"


def _name(family: str, args: dict[str, float]) -> str:
    return f"{family}:" + ",".join(f"{key}={_text(value)}" for key, value in args.items()) if args else family


# -- the families ---------------------------------------------------------------------------------------
def _positive(args: dict[str, float], key: str, default: float | None = None, maximum: float = 1e4) -> float:
    value = args.get(key, default)
    if value is None:
        raise ValueError(f"needs {key}")
    if not 0 < value <= maximum:
        raise ValueError(f"{key} must be above 0 and at most {maximum:g}, got {_text(value)}")
    return float(value)


def _size(args: dict[str, float], sigma: float | None = None, default: int = 3) -> int:
    """The odd side: ``size`` when given, else 2 * int(4 sigma + 0.5) + 1 (scipy.ndimage's)."""
    if "size" in args:
        size = args["size"]
        if size != int(size) or int(size) % 2 == 0 or not 1 <= size <= MAX_SIZE:
            raise ValueError(f"size must be an odd whole number from 1 to {MAX_SIZE}, got {_text(size)}")
        return int(size)
    side = default if sigma is None else 2 * int(TRUNCATE * sigma + 0.5) + 1
    if side > MAX_SIZE:
        raise ValueError(f"a sigma of {_text(sigma or 0)} makes a {side}x{side} kernel, over {MAX_SIZE}; give a "
                         "smaller sigma or size")
    return side


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Offsets from the centre: x to the right (columns), y down (rows), each (size, size)."""
    r = size // 2
    rows, cols = np.mgrid[-r:r + 1, -r:r + 1].astype(np.float64)
    return cols, rows


def _gaussian(sigma: float, size: int) -> np.ndarray:
    x, y = _grid(size)
    g = np.exp(-(x * x + y * y) / (2 * sigma * sigma))
    return g / g.sum()


def gaussian(args: dict[str, float]) -> np.ndarray:
    """exp(-(x^2 + y^2) / (2 sigma^2)), normalised to sum 1 (a blur that keeps the brightness)."""
    sigma = _positive(args, "sigma", 1.0)
    return _gaussian(sigma, _size(args, sigma))


def laplacian_of_gaussian(args: dict[str, float]) -> np.ndarray:
    """-(1 / (pi sigma^4)) (1 - r^2 / (2 sigma^2)) exp(-r^2 / (2 sigma^2)), its mean taken out so that it
    sums to 0 (a flat region gives 0): negative in the centre, a blob detector as scipy's gaussian_laplace."""
    sigma = _positive(args, "sigma", 1.0)
    x, y = _grid(_size(args, sigma))
    r2 = (x * x + y * y) / (2 * sigma * sigma)
    k = -(1 - r2) * np.exp(-r2) / (math.pi * sigma ** 4)
    return k - k.mean()


def difference_of_gaussians(args: dict[str, float]) -> np.ndarray:
    """gaussian(sigma1) - gaussian(sigma2), both at the size of the wider one: sums to 0."""
    sigma1 = _positive(args, "sigma1", 1.0)
    sigma2 = _positive(args, "sigma2", 1.6 * sigma1)
    size = _size(args, max(sigma1, sigma2))
    return _gaussian(sigma1, size) - _gaussian(sigma2, size)


def gabor(args: dict[str, float]) -> np.ndarray:
    """exp(-(x'^2 + gamma^2 y'^2) / (2 sigma^2)) cos(2 pi x' / lambda + psi), with x' = x cos(theta) +
    y sin(theta) and y' = -x sin(theta) + y cos(theta) (OpenCV's getGaborKernel and the real part of
    scikit-image's gabor_kernel, unnormalised): stripes across the direction theta, lambda pixels apart."""
    theta = math.radians(args.get("theta", 0.0))
    wavelength = _positive(args, "lambda", 8.0)
    sigma = _positive(args, "sigma", 0.56 * wavelength)  # about one octave of bandwidth
    gamma = _positive(args, "gamma", 0.5)
    psi = math.radians(args.get("psi", 0.0))
    x, y = _grid(_size(args, sigma))
    xr = x * math.cos(theta) + y * math.sin(theta)
    yr = -x * math.sin(theta) + y * math.cos(theta)
    return np.exp(-(xr * xr + gamma * gamma * yr * yr) / (2 * sigma * sigma)) * np.cos(2 * math.pi * xr / wavelength
                                                                                       + psi)


def box(args: dict[str, float]) -> np.ndarray:
    """The mean of a size x size neighbourhood."""
    size = _size(args, default=3)
    return np.full((size, size), 1.0 / (size * size))


def disk(args: dict[str, float]) -> np.ndarray:
    """The mean over the cells within ``radius`` of the centre (x^2 + y^2 <= radius^2, as
    scikit-image's morphology.disk), 2 * floor(radius) + 1 wide."""
    radius = _positive(args, "radius", 1.0, maximum=(MAX_SIZE - 1) / 2)
    x, y = _grid(2 * int(radius) + 1)
    inside = (x * x + y * y <= radius * radius).astype(np.float64)
    return inside / inside.sum()


SOBEL_X = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], dtype=np.float64)
SOBEL_Y = SOBEL_X.T  # brighter downwards, the built-in sobel_y


def sobel(args: dict[str, float]) -> np.ndarray:
    """cos(angle) sobel_x + sin(angle) sobel_y: the gradient along the direction ``angle`` (0: to the
    right, sobel_x; 90: down, sobel_y; 180: to the left)."""
    angle = math.radians(args.get("angle", 0.0))
    # cos(90) is 6e-17, not 0: snapped, so that 90, 180 and 270 give the built-in kernels exactly
    c, s = (0.0 if abs(v) < 1e-12 else v for v in (math.cos(angle), math.sin(angle)))
    return c * SOBEL_X + s * SOBEL_Y


# family: (maker, the argument a bare first value gives, the arguments it takes, description)
FAMILIES: dict[str, tuple[Callable[[dict[str, float]], np.ndarray], str, tuple[str, ...], str]] = {
    "gaussian": (gaussian, "sigma", ("sigma", "size"), "Gaussian blur, normalised to sum 1."),
    "log": (laplacian_of_gaussian, "sigma", ("sigma", "size"),
            "Laplacian of Gaussian: blobs about sigma*sqrt(2) in radius; sums to 0."),
    "dog": (difference_of_gaussians, "sigma1", ("sigma1", "sigma2", "size"),
            "Difference of Gaussians (sigma1 minus sigma2), an approximation of the LoG; sums to 0."),
    "gabor": (gabor, "theta", ("theta", "lambda", "sigma", "gamma", "psi", "size"),
              "Gabor filter: stripes across the direction theta, lambda pixels apart, in a Gaussian window."),
    "box": (box, "size", ("size",), "Mean of the size x size neighbourhood."),
    "disk": (disk, "radius", ("radius",), "Mean over a disk of the given radius."),
    "sobel": (sobel, "angle", ("angle",), "Sobel gradient along the direction angle (degrees)."),
}
