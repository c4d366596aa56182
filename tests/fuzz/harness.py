"""Fuzz harness for cnn's readers: images, kernel and model JSON, .npy/.npz/dense weights.

Each target takes bytes, hands them to one reader and lets CnnError pass: a reader may raise
CnnError (and its subclasses) and nothing else, as Pillow's own fuzz tests accept a fixed set of
exceptions. Any other exception, anything printed on stderr (cnn's one error line is the CLI's to
print), or an input that takes over ``--slow`` seconds (2), is a finding.

    python tests/fuzz/harness.py image --seconds 120 [--seed 1]     # built-in mutator
    python tests/fuzz/harness.py npz --seconds 60 --atheris         # coverage-guided, if installed
    python tests/fuzz/harness.py model --runs 300 --seed 0 --no-save --no-corpus  # what the tests run
    python tests/fuzz/harness.py --replay                           # every corpus file, one JSON line each

Targets: image, kernel, model, npy, npz, dense, paths (expand_images on folder trees with
links, built in the temporary folder), and onnx (load_onnx, then a forward pass, from a folder
with an external data file and a link out of it; tests/fuzz/onnx_target.py). Seeds are made here, in code (tiny images in many Pillow
modes, JSON documents, arrays, trees); the corpus of tests/fuzz/corpus/TARGET/ joins them.
A finding is written to tests/fuzz/corpus/TARGET/<sha1 prefix>.bin, after shrinking it, once per
kind (exception type and where it was raised); the harness writes nowhere else (the files the
model and dense targets need live in a temporary folder that is removed at exit). tests/test_fuzz.py
replays the corpus and runs a short seeded fuzz per target.

The built-in mutator is structure-aware where it pays: PNG chunks (CRCs fixed so a change reaches
the decoder), TIFF/EXIF directory entries, JPEG and RIFF segments, .npy headers, zip members and
headers, and parsed JSON documents. It is guided by outcomes instead of coverage: an input whose
result (a decoded mode, or an error message with its numbers blanked) has not been seen before
joins the pool that later inputs are mutated from.
"""

from __future__ import annotations

import argparse
import copy
import functools
import hashlib
import io
import json
import math
import os
import random
import re
import signal
import struct
import sys
import tempfile
import threading
import time
import traceback
import warnings
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
CORPUS = HERE / "corpus"
SLOW_SECONDS = 2.0  # an input that takes longer is a finding (a hang)
TIMEOUT_SECONDS = 10.0  # an input still running is interrupted and saved as a hang
MAX_INPUT = 32 << 10  # mutated inputs are cut to this many bytes
FUZZ_MAX_PIXELS = 1 << 20  # tight limits, as ImageMagick's harnesses install before fuzzing:
FUZZ_MAX_MEMORY = 512 << 20  # a rejection by a limit is correct behaviour, and the runs stay fast


# --------------------------------------------------------------------------------------------
# Targets: one per reader. Each returns a short description of what happened, which the
# mutator uses to tell a new behaviour from a known one; CnnError is an allowed outcome.
# --------------------------------------------------------------------------------------------

_WORKDIR: Path | None = None


def _workdir() -> Path:
    """A private temporary folder, removed at exit, holding the weights the model seeds name."""
    global _WORKDIR
    if _WORKDIR is None:
        import atexit
        import shutil

        _WORKDIR = Path(tempfile.mkdtemp(prefix="cnn-fuzz-"))
        atexit.register(shutil.rmtree, _WORKDIR, True)
        (_WORKDIR / "tiny.npz").write_bytes(_tiny_model_weights())
        bundled = _bundled_models()
        if (bundled / "digits.npz").is_file():
            (_WORKDIR / "digits.npz").write_bytes((bundled / "digits.npz").read_bytes())
        (_WORKDIR / "folder").mkdir()
    return _WORKDIR


def _bundled_models() -> Path:
    import cnncli

    return Path(cnncli.__file__).parent / "models"


@functools.cache
def _tight(func: Callable) -> dict[str, Any]:
    """Keyword arguments giving ``func`` the fuzzing limits, in whichever form it takes them."""
    import inspect

    params = inspect.signature(func).parameters
    if "limits" in params:
        from cnncli.io.limits import Limits

        return {"limits": Limits(max_pixels=FUZZ_MAX_PIXELS, max_memory=FUZZ_MAX_MEMORY)}
    return {"max_pixels": FUZZ_MAX_PIXELS} if "max_pixels" in params else {}


def _variant(data: bytes) -> int:
    """Options derived from the input itself, so a replayed input takes the same path."""
    return zlib.crc32(data)


def _message(err: Exception) -> str:
    """An error message with its numbers and quoted values blanked: one 'feature' per kind of error."""
    text = getattr(err, "message", str(err))
    text = re.sub(r"'[^']*'|\"[^\"]*\"|<[^<>]*>|0x[0-9a-fA-F]+", "'…'", text)  # also reprs, addresses
    return re.sub(r"-?\d+(\.\d+)?(e[-+]?\d+)?", "#", text)[:160]


def target_image(data: bytes) -> str:
    """cnncli.io.images.read_image with options picked from the input's CRC."""
    import numpy as np

    from cnncli.errors import CnnError
    from cnncli.io.images import read_image

    v = _variant(data)
    try:
        image = read_image(
            "fuzz", data,
            color=("gray", "rgb")[v & 1],
            alpha=("drop", "white", "black", "keep")[(v >> 1) & 3],
            scale=("raw", "unit")[(v >> 3) & 1],
            dtype=(np.float32, np.float64)[(v >> 4) & 1],
            **_tight(read_image),
        )
    except CnnError as err:
        return "error " + _message(err)
    return f"ok {image.format} {image.mode} " + _message(ValueError("; ".join(image.notes)))


def target_kernel(data: bytes) -> str:
    """cnncli.io.jsonspec.loads, then cnncli.io.kernels.parse_kernel."""
    from cnncli.io import jsonspec
    from cnncli.errors import CnnError
    from cnncli.io.kernels import parse_kernel

    try:
        kernel = parse_kernel(jsonspec.loads(data, "fuzz.json"), "fuzz.json")
    except CnnError as err:
        return "error " + _message(err)
    return f"ok {kernel.raw.ndim}-D {sorted(kernel.settings)} bias={kernel.bias is not None}"


def target_model(data: bytes) -> str:
    """cnncli.io.jsonspec.loads, then cnncli.io.modelfile.parse_model, in a folder holding tiny.npz and digits.npz."""
    from cnncli.io import jsonspec
    from cnncli.errors import CnnError
    from cnncli.io.modelfile import parse_model

    try:
        model = parse_model(jsonspec.loads(data, "fuzz.json"), "fuzz.json", _workdir(), **_tight(parse_model))
    except CnnError as err:
        return "error " + _message(err)
    return "ok " + " ".join(layer.type for layer in model.network.layers)


def target_npy(data: bytes) -> str:
    """cnncli.io.reading.load_npy."""
    from cnncli.errors import CnnError, SpecError
    from cnncli.io.reading import load_npy

    try:
        array = load_npy(data, "fuzz.npy", SpecError)
    except CnnError as err:
        return "error " + _message(err)
    return f"ok {array.dtype.str} ndim={array.ndim} fortran={array.flags.f_contiguous}"


def target_npz(data: bytes) -> str:
    """cnncli.io.reading.load_npz, with the fuzzing memory limit as its inflation limit."""
    from cnncli.errors import CnnError, SpecError
    from cnncli.io.reading import load_npz

    try:
        arrays = load_npz(data, "fuzz.npz", SpecError, FUZZ_MAX_MEMORY)
    except CnnError as err:
        return "error " + _message(err)
    return "ok " + " ".join(sorted(f"{a.dtype.str}/{a.ndim}" for a in arrays.values()))


def target_dense(data: bytes) -> str:
    """cnncli.io.saving.read_dense_weights on a temporary file named .npy, .npz or .json after the input's magic."""
    from cnncli.errors import CnnError
    from cnncli.io.saving import read_dense_weights

    suffix = ".npy" if data.startswith(b"\x93NUMPY") else ".npz" if data.startswith(b"PK") else ".json"
    path = _workdir() / f"weights{suffix}"
    path.write_bytes(data)
    try:
        weight, bias = read_dense_weights(path, **_tight(read_dense_weights))
    except CnnError as err:
        return "error " + _message(err)
    finally:
        path.unlink(missing_ok=True)
    return f"ok {suffix} {weight.shape[0] > 1} bias={bias is not None}"


def target_paths(data: bytes) -> str:
    """cnncli.io.paths.expand_images on a folder tree and arguments that the input describes as JSON:
    {"tree": ["d/a.png", "d/sub/", "d/x -> ..", ...], "args": ["d/**/*.png", ...]}, built in a
    temporary folder (links may only lead inside it). Besides raising only CnnError, each glob must
    give files in sorted order, each file once; and on a tree without links, what glob.glob gives."""
    import glob
    import shutil

    from cnncli.errors import CnnError
    from cnncli.io.paths import expand_images, glob_files

    try:
        document = json.loads(data)
    except ValueError:
        return "not JSON"
    if not isinstance(document, dict):
        return "not an object"
    root = Path(tempfile.mkdtemp(prefix="paths-", dir=_workdir()))
    try:
        linked = _build_tree(root, document.get("tree"))
        given = [a for a in document.get("args", []) if isinstance(a, str)][:8] \
            if isinstance(document.get("args"), list) else []
        args = [a if a == "-" else str(root / _inside(a)) for a in given]
        try:
            paths, batch = expand_images(args)
        except CnnError as err:
            return "error " + _message(err)
        for arg in args:
            if arg == "-" or os.path.lexists(arg) or not set("*?[") & set(arg):
                continue
            found = glob_files(arg)
            assert found == sorted(found), f"not sorted: {found}"
            files = [os.stat(p) for p in found]
            assert len({(f.st_dev, f.st_ino) for f in files}) == len(found), f"a file twice: {found}"
            if not linked:
                expected = sorted({p for p in glob.glob(arg, recursive=True) if os.path.isfile(p)})
                assert found == expected, f"{arg}: {found} != glob's {expected}"
        return f"ok {min(len(paths), 9)} batch={batch} links={linked > 0}"
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _inside(text: str) -> str:
    """A relative path with no NUL, no '..' and no leading separator: it stays in the tree's folder."""
    parts = [part for part in text.replace("\0", "").split("/") if part not in ("..",)]
    return "/".join(parts).lstrip("/")[:200] or "."


def _build_tree(root: Path, tree: Any) -> int:
    """Make the files ("a/b.png"), folders ("a/sub/") and links ("a/x -> ..") of ``tree``; return the links made."""
    links = 0
    for entry in (tree if isinstance(tree, list) else [])[:64]:
        if not isinstance(entry, str):
            continue
        name, _, target = entry.partition(" -> ")
        path = root / _inside(name)
        if path == root:
            continue
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            if target:
                target = target.replace("\0", "").lstrip("/")[:200] or "."
                if not os.path.realpath(path.parent / target).startswith(os.path.realpath(root)):
                    continue  # a link out of the tree would send a glob through the whole file system
                os.symlink(target, path)
                links += 1
            elif name.endswith("/"):
                path.mkdir(exist_ok=True)
            else:
                path.write_bytes(b"")
        except (OSError, ValueError):
            continue  # a name in the way of another, too long, or not valid here
    return links


def _onnx_target() -> Any:
    """tests/fuzz/onnx_target.py, imported beside this file however this file was loaded."""
    if str(HERE) not in sys.path:
        sys.path.insert(0, str(HERE))
    import onnx_target

    return onnx_target


def _onnx_folder() -> Path:
    """The folder the onnx target's models are read from: inside the private temporary folder, so
    that its tiny.npz is a file just outside it."""
    folder = _workdir() / "onnx"
    if not folder.is_dir():
        _onnx_target().write_folder(folder)
    return folder


def _prepare_onnx() -> None:
    """Import onnx (about 1.5 s here) and the importer, and make the folder, before an input's clock starts."""
    _onnx_target().prepare()
    _onnx_folder()


def target_onnx(data: bytes) -> str:
    """cnncli.io.onnx_import.load_onnx from _onnx_folder(), then forward on a small input; and any
    external data file it read lies inside that folder (onnx_target.run)."""
    from cnncli.io.onnx_import import load_onnx

    return _onnx_target().run(data, _onnx_folder(), _tight(load_onnx)["limits"], _message)


# What a target imports or makes once, done before the first input is timed (replaying one corpus
# file must not count seconds of imports as a slow input).
PREPARE: dict[str, Callable[[], None]] = {"onnx": _prepare_onnx}

TARGETS: dict[str, Callable[[bytes], str]] = {
    "image": target_image,
    "kernel": target_kernel,
    "model": target_model,
    "npy": target_npy,
    "npz": target_npz,
    "dense": target_dense,
    "paths": target_paths,
    "onnx": target_onnx,
}


# --------------------------------------------------------------------------------------------
# Seeds, made here in code.
# --------------------------------------------------------------------------------------------

def _encode(image, fmt: str, **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def _exif(orientation: int) -> bytes:
    from PIL import Image

    exif = Image.Exif()
    exif[0x0112] = orientation
    exif[0x010F] = "cnn"  # Make: a string entry beside the short one
    return exif.tobytes()


def image_seeds() -> list[bytes]:
    """Tiny PNG, GIF (animated), JPEG, BMP, TIFF and WEBP files in several Pillow modes, some with EXIF."""
    import numpy as np
    from PIL import Image

    y, x = np.mgrid[0:3, 0:4]
    rgb = np.stack([x * 60, y * 100, (x + y) * 30], axis=-1).astype(np.uint8)  # H, W, 3
    base = Image.fromarray(rgb)
    rgba = Image.fromarray(np.dstack([rgb, (x * 80).astype(np.uint8)]))  # H, W, 4
    gray = base.convert("L")
    wide = Image.fromarray((x * 20000 + y * 1000).astype(np.uint16))  # I;16
    deep = Image.fromarray((x * 70000 - y * 90000).astype(np.int32))  # I
    flt = Image.fromarray((x * 0.5 - y).astype(np.float32))  # F
    pal = base.convert("P")
    pal_t = pal.copy()
    pal_t.info["transparency"] = 0
    images = {"1": gray.convert("1"), "L": gray, "LA": rgba.convert("LA"), "P": pal, "RGB": base,
              "RGBA": rgba, "I;16": wide, "I": deep, "F": flt, "CMYK": base.convert("CMYK"),
              "YCbCr": base.convert("YCbCr"), "LAB": Image.merge("LAB", base.split()),  # convert("LAB") is not
              "PA": rgba.convert("PA")}  # byte-for-byte repeatable
    seeds = []
    for mode in ("1", "L", "LA", "P", "RGB", "RGBA", "I;16"):
        seeds.append(_encode(images[mode], "PNG"))
    seeds.append(_encode(pal_t, "PNG"))
    seeds.append(_encode(base, "PNG", exif=_exif(6)))
    seeds.append(_encode(rgba, "PNG", exif=_exif(8)))
    frames = [base, base.transpose(Image.Transpose.FLIP_LEFT_RIGHT), gray.convert("RGB")]
    seeds.append(_encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=[10, 20, 30],
                         loop=0, disposal=2))
    seeds.append(_encode(pal_t, "GIF"))
    for mode in ("L", "RGB", "CMYK"):
        seeds.append(_encode(images[mode], "JPEG", quality=80))
    seeds.append(_encode(base, "JPEG", exif=_exif(3), progressive=True))
    seeds.append(_encode(gray, "JPEG", exif=_exif(6), subsampling=0))
    for mode in ("1", "L", "P", "RGB", "RGBA"):
        seeds.append(_encode(images[mode], "BMP"))
    for mode in ("1", "L", "LA", "P", "RGB", "RGBA", "CMYK", "YCbCr", "LAB", "I;16", "I", "F", "PA"):
        seeds.append(_encode(images[mode], "TIFF"))
    for compression in ("tiff_lzw", "packbits", "tiff_deflate"):
        seeds.append(_encode(base, "TIFF", compression=compression))
    seeds.append(_encode(base, "TIFF", compression="jpeg"))
    seeds.append(_encode(base, "TIFF", exif=_exif(5)))
    seeds.append(_encode(wide, "TIFF", compression="tiff_lzw", tiffinfo={274: 7}))
    seeds.append(_encode(base, "TIFF", save_all=True, append_images=[gray.convert("RGB")]))
    seeds.append(_encode(base, "WEBP", quality=50))
    seeds.append(_encode(rgba, "WEBP", lossless=True, exif=_exif(6)))
    seeds.append(_encode(frames[0], "WEBP", save_all=True, append_images=frames[1:2], duration=10, lossless=True))
    return seeds


KERNEL_KEYS = ("name", "description", "weights", "divisor", "bias", "stride", "padding", "padding_mode",
               "dilation", "flip")


def kernel_seeds() -> list[bytes]:
    """Kernel files: a bare array, objects with every key, banks of 2-D kernels and 4-D weights."""
    docs: list[Any] = [
        [[0, 0, 0], [0, 1, 0], [0, 0, 0]],
        {"name": "blur", "description": "box", "weights": [[1, 1, 1], [1, 1, 1], [1, 1, 1]], "divisor": 9,
         "bias": 0.5, "stride": 1, "padding": "same", "padding_mode": "reflect", "dilation": 1, "flip": False},
        {"weights": [[[1, 0], [0, -1]], [[0, 1], [-1, 0]]], "bias": [0, 1], "stride": [2, 1],
         "padding": [1, 0], "dilation": [1, 2], "flip": True, "padding_mode": "replicate"},
        {"weights": [[[[0.25, -0.5], [1e-3, 2]]], [[[1, 2], [3, 4]]]], "padding": [0, 1, 2, 0],
         "padding_mode": "circular", "divisor": -2.5},
        {"name": "x", "weights": [[1.5]], "padding": "full", "bias": [1]},
        {"weights": [[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], "padding": 2, "padding_mode": "zeros"},
    ]
    return [json.dumps(doc).encode() for doc in docs] + [json.dumps(docs[1], indent=2).encode()]


def _tiny_model() -> dict:
    return {
        "format": "cnn-model", "version": 1, "name": "tiny", "description": "every layer type",
        "input": {"size": [6, 6], "color": "rgb", "scale": "raw", "invert": True, "mean": [0.5, 0.25, 0],
                  "std": [0.5]},
        "labels": ["a", "b", "c"], "weights": "tiny.npz",
        "layers": [
            {"name": "conv1", "type": "conv2d", "in_channels": 3, "out_channels": 4, "kernel_size": 3,
             "padding": 1, "stride": 1},
            {"name": "bn1", "type": "batchnorm2d", "num_features": 4, "eps": 1e-5, "momentum": 0.1},
            {"name": "act", "type": "leaky_relu", "negative_slope": 0.1},
            {"name": "pool1", "type": "maxpool2d", "kernel_size": 2, "dilation": 1},
            {"name": "conv2", "type": "conv2d", "out_channels": 4, "kernel_size": [2, 2], "groups": 4,
             "bias": False, "padding": [1, 1], "padding_mode": "reflect", "dilation": [1, 1]},
            {"name": "sig", "type": "sigmoid"},
            {"name": "pool2", "type": "avgpool2d", "kernel_size": 2, "stride": 2, "ceil_mode": True,
             "count_include_pad": False, "padding": 0},
            {"name": "gap", "type": "globalavgpool2d"},
            {"name": "flat", "type": "flatten"},
            {"name": "bn2", "type": "batchnorm1d", "affine": False},
            {"name": "drop", "type": "dropout", "p": 0.1},
            {"name": "fc", "type": "linear", "in_features": 4, "out_features": 3},
            {"name": "th", "type": "tanh"},
            {"name": "relu", "type": "relu"},
            {"name": "sm", "type": "softmax"},
        ],
        "metadata": {"note": "fuzz seed", "numbers": [1, 2.5]},
    }


def _tiny_model_weights() -> bytes:
    """The tiny.npz that _tiny_model() names, with the shapes its layers imply."""
    import numpy as np

    rng = np.random.default_rng(0)
    arrays = {
        "conv1.weight": rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "conv1.bias": np.zeros(4, np.float32),
        "bn1.running_mean": np.zeros(4), "bn1.running_var": np.ones(4), "bn1.weight": np.ones(4),
        "bn1.bias": np.zeros(4), "bn1.num_batches_tracked": np.array(3),
        "conv2.weight": rng.standard_normal((4, 1, 2, 2)),
        "bn2.running_mean": np.zeros(4, np.float32), "bn2.running_var": np.full(4, 2, np.float32),
        "fc.weight": rng.standard_normal((3, 4)).astype(np.float16), "fc.bias": np.arange(3, dtype=np.int8),
    }
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def model_seeds() -> list[bytes]:
    """Model files: every layer type with weights in tiny.npz, an inline model, and the bundled digits model."""
    inline = {
        "format": "cnn-model", "version": 1, "name": "inline", "input": {"size": [3, 3], "scale": "raw"},
        "layers": [
            {"name": "c", "type": "conv2d", "out_channels": 1, "kernel_size": 2,
             "weight": [[[[1, 0], [0, -1]]]], "bias": [1]},
            {"type": "relu"}, {"type": "flatten"},
            {"name": "d", "type": "linear", "out_features": 2, "weight": [[1, 1, 1, 1], [0, 0, 0, -1]],
             "bias": [0.5, 2]},
            {"name": "b", "type": "batchnorm1d", "running_mean": [0, 1], "running_var": [1, 2],
             "weight": [1, 1], "bias": [0, 0]},
        ],
    }
    docs = [_tiny_model(), inline]
    digits = _bundled_models() / "digits.json"
    seeds = [json.dumps(doc).encode() for doc in docs]
    if digits.is_file():
        seeds.append(digits.read_bytes())
    return seeds


def _npy(array, version=None) -> bytes:
    import numpy as np

    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, np.asanyarray(array), version=version, allow_pickle=True)
    return buffer.getvalue()


def npy_seeds() -> list[bytes]:
    """.npy files of many dtypes, shapes, byte orders and format versions 1.0, 2.0 and 3.0."""
    import numpy as np

    a = np.arange(6)
    seeds = [_npy(a.astype(dtype).reshape(2, 3)) for dtype in
             ("<f4", "<f8", ">f8", "<f2", "|i1", "<u2", ">i4", "<i8", "|b1", "<c8", "|u1", "<U3", "|S2",
              "<M8[s]", "<m8[ms]")]
    seeds += [
        _npy(np.asfortranarray(a.astype(np.float32).reshape(2, 3))),
        _npy(np.float64(2.5)),
        _npy(np.zeros((0,), np.float32)),
        _npy(np.ones((1, 2, 2, 2), np.float32)),
        _npy(np.zeros(2, dtype=[("a", "<i4"), ("b", "<f8", (2,))])),
        _npy(a.astype(np.float32), version=(2, 0)),
        _npy(np.zeros(2, dtype=[("é", "<f4")]), version=(3, 0)),
        _npy(np.array([1, "x"], dtype=object)),  # an object header: refused before unpickling
    ]
    return seeds


def _zip(members: list[tuple[str, bytes, int]]) -> bytes:
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, content, compression in members:
            archive.writestr(zipfile.ZipInfo(name, (2020, 1, 1, 0, 0, 0)), content, compress_type=compression)
    return buffer.getvalue()


def npz_seeds() -> list[bytes]:
    """.npz archives: stored, deflated, bzip2 and lzma members, one to three of them, and odd names."""
    import zipfile

    import numpy as np

    w = _npy(np.arange(6, dtype=np.float32).reshape(2, 3))
    b = _npy(np.array([0.5, -1.0]))
    i = _npy(np.arange(4, dtype=">i2"))
    stored, deflated = zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED
    return [
        _zip([("weight.npy", w, stored)]),
        _zip([("weight.npy", w, stored), ("bias.npy", b, stored)]),
        _zip([("weight.npy", w, deflated), ("bias.npy", b, deflated), ("x.npy", i, deflated)]),
        _zip([("weight.npy", w, zipfile.ZIP_BZIP2)]),
        _zip([("weight.npy", w, zipfile.ZIP_LZMA), ("bias", b, stored)]),
        _zip([("dir/", b"", stored), ("a.npy", _npy(np.float16(1)), stored)]),
        _zip([]),
    ]


def dense_seeds() -> list[bytes]:
    """Dense weights as .npy (2-D and 1-D), .npz (weight, weight and bias) and JSON (array and object)."""
    import numpy as np

    w = np.arange(6, dtype=np.float32).reshape(2, 3)
    return [
        _npy(w), _npy(np.array([0.5, 1, -2])),
        npz_seeds()[0], npz_seeds()[1], npz_seeds()[2],
        b"[[1, 2, 3], [4, 5, 6]]", b"[0.5, -1e-3]",
        json.dumps({"weight": [[1, 0], [0, 1], [1, 1]], "bias": [0, 1, 2]}).encode(),
        json.dumps({"weight": [2.5]}).encode(),
    ]


def paths_seeds() -> list[bytes]:
    """Folder trees with images, hidden names, loops of links and links to files, and globs over them."""
    docs = [
        {"tree": ["d/a.png", "d/b.jpg", "d/.h.png", "d/sub/c.png", "d/sub/deeper/e.tif", "d/x.txt"],
         "args": ["d/**/*.png", "d", "d/*/*.png", "d/.*", "**", "missing.png"]},
        {"tree": ["d/a.png", "d/sub/b.png", "d/x -> .", "d/sub/up -> ..", "d/link.png -> a.png"],
         "args": ["d/**/*.png", "d/**", "d", "d/*/*/*.png"]},
        {"tree": ["shared/s.png", "d/l1 -> ../shared", "d/l2 -> ../shared", "d/a.png"],
         "args": ["d/**/*.png", "d/*/*.png", "-", "d/[al]*"]},
        {"tree": ["a-b/c.png", "a.png", "a/f.png", "10.png", "9.png", ".hid/g.png"],
         "args": ["**/*.png", "*.png", "?.png", "**/", "-", "-"]},
    ]
    return [json.dumps(doc).encode() for doc in docs]


SEEDS: dict[str, Callable[[], list[bytes]]] = {
    "image": image_seeds, "kernel": kernel_seeds, "model": model_seeds,
    "npy": npy_seeds, "npz": npz_seeds, "dense": dense_seeds, "paths": paths_seeds,
    "onnx": lambda: _onnx_target().seeds(),
}


# --------------------------------------------------------------------------------------------
# Mutations.
# --------------------------------------------------------------------------------------------

BOUNDARY = (0, 1, 2, 7, 8, 15, 16, 31, 32, 63, 64, 127, 128, 255, 256, 0x7FFF, 0x8000, 0xFFFF, 0x10000,
            0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 1 << 32, (1 << 63) - 1, 1 << 63, (1 << 64) - 1, -1, -2, -128,
            -(1 << 31), -(1 << 63))
MAGIC = (b"IHDR", b"IDAT", b"IEND", b"PLTE", b"tRNS", b"eXIf", b"acTL", b"fcTL", b"fdAT", b"gAMA", b"sBIT",
         b"iCCP", b"zTXt", b"iTXt", b"Exif\x00\x00", b"MM\x00*", b"II*\x00", b"\xff\xd8\xff", b"\xff\xc0",
         b"\xff\xc2", b"\xff\xc4", b"\xff\xda", b"\xff\xdd", b"\xff\xe1", b"GIF89a", b"NETSCAPE2.0", b"!\xf9\x04",
         b"RIFF", b"WEBP", b"VP8 ", b"VP8L", b"VP8X", b"ANIM", b"ANMF", b"ALPH", b"BM", b"\x93NUMPY",
         b"PK\x03\x04", b"PK\x01\x02", b"PK\x05\x06", b"PK\x06\x06", b"PK\x06\x07", b"\x00" * 8, b"\xff" * 8)


def _pack_int(value: int, width: int, big: bool) -> bytes:
    return (value % (1 << (8 * width))).to_bytes(width, "big" if big else "little")


def mutate_bytes(data: bytes, rng: random.Random, pool: list[bytes] | None = None) -> bytes:
    """One generic byte-level mutation: flips, boundary integers, chunks inserted, deleted or repeated, cuts."""
    buf = bytearray(data)
    n = len(buf)
    # Headers are where most fields live: half the positions fall in the first 64 bytes.
    pos = (lambda: rng.randrange(min(n, 64)) if rng.random() < 0.5 else rng.randrange(n)) if n else (lambda: 0)
    op = rng.randrange(12)
    if n == 0 or op == 0:  # insert random bytes or a magic token
        piece = rng.choice(MAGIC) if rng.random() < 0.5 else rng.randbytes(rng.choice((1, 2, 4, 16, 64)))
        at = pos()
        buf[at:at] = piece
    elif op == 1:  # flip a bit
        i = pos()
        buf[i] ^= 1 << rng.randrange(8)
    elif op == 2:  # set a byte
        buf[pos()] = rng.choice((0, 1, 0x7F, 0x80, 0xFF, rng.randrange(256)))
    elif op in (3, 4):  # overwrite an integer with a boundary value
        width = rng.choice((1, 2, 4, 8))
        i = pos()
        value = rng.choice(BOUNDARY)
        if rng.random() < 0.3:  # or nudge the one there
            old = int.from_bytes(buf[i:i + width].ljust(width, b"\0"), "little")
            value = old + rng.choice((-1, 1, -8, 8, 1 << 8, -(1 << 8)))
        buf[i:i + width] = _pack_int(value, width, rng.random() < 0.5)
    elif op == 5:  # delete a chunk
        i = pos()
        del buf[i:i + rng.choice((1, 2, 4, 8, 16, 64, 256))]
    elif op == 6:  # duplicate a chunk in place
        i = pos()
        piece = buf[i:i + rng.choice((1, 4, 16, 64, 256))]
        buf[i:i] = piece
    elif op == 7:  # copy a chunk elsewhere
        i, j = pos(), pos()
        piece = buf[i:i + rng.choice((2, 4, 8, 32))]
        buf[j:j + len(piece)] = piece
    elif op == 8:  # truncate
        del buf[rng.randrange(n):]
    elif op == 9:  # repeat a chunk many times
        i = pos()
        piece = buf[i:i + rng.choice((1, 2, 4, 12))]
        buf[i:i] = piece * rng.choice((8, 64, 500))
    elif op == 10 and pool:  # splice with another input
        other = rng.choice(pool)
        if other:
            cut_a, cut_b = rng.randrange(n + 1), rng.randrange(len(other) + 1)
            buf = buf[:cut_a] + other[cut_b:]
    else:  # random bytes over a span
        i = pos()
        span = rng.choice((1, 2, 4, 8))
        buf[i:i + span] = rng.randbytes(span)
    return bytes(buf)


# ---- PNG: chunks, with CRCs fixed so the change reaches the decoder ----

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _png_chunks(data: bytes) -> list[list[bytes]] | None:
    if not data.startswith(PNG_SIGNATURE):
        return None
    chunks, i = [], 8
    while i + 8 <= len(data):
        length = int.from_bytes(data[i:i + 4], "big")
        kind, body = data[i + 4:i + 8], data[i + 8:i + 8 + length]
        chunks.append([kind, body])
        i += 12 + length
    return chunks


def _png_join(chunks: list[list[bytes]], fix_crc: bool = True) -> bytes:
    out = bytearray(PNG_SIGNATURE)
    for kind, body in chunks:
        crc = zlib.crc32(kind + body) if fix_crc else zlib.crc32(body)
        out += struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)
    return bytes(out)


def mutate_png(data: bytes, rng: random.Random, pool: list[bytes]) -> bytes | None:
    chunks = _png_chunks(data)
    if not chunks:
        return None
    op = rng.randrange(8)
    i = rng.randrange(len(chunks))
    if op <= 2:  # mutate inside one chunk (IHDR's integers most of all)
        if rng.random() < 0.3:
            i = 0
        kind, body = chunks[i]
        if kind == b"IDAT" and rng.random() < 0.5:  # mutate the inflated pixels, then deflate again
            try:
                raw = zlib.decompress(b"".join(b for k, b in chunks if k == b"IDAT"))
                chunks = [c for c in chunks if c[0] != b"IDAT"]
                chunks.insert(min(i, len(chunks)), [b"IDAT", zlib.compress(mutate_bytes(raw, rng))])
                return _png_join(chunks)
            except zlib.error:
                pass
        chunks[i][1] = mutate_bytes(body, rng) if body else rng.randbytes(4)
    elif op == 3:  # delete a chunk
        del chunks[i]
    elif op == 4:  # duplicate a chunk
        chunks.insert(i, list(chunks[i]))
    elif op == 5:  # move a chunk
        chunk = chunks.pop(i)
        chunks.insert(rng.randrange(len(chunks) + 1), chunk)
    elif op == 6:  # add a chunk: from another PNG, or an ancillary one made here
        donors = [c for other in pool if (c := _png_chunks(other))]
        if donors and rng.random() < 0.5:
            chunk = list(rng.choice(rng.choice(donors)))
        else:
            kind = rng.choice((b"tRNS", b"eXIf", b"acTL", b"fcTL", b"sBIT", b"gAMA", b"PLTE", b"IDAT", b"pHYs"))
            chunk = [kind, rng.randbytes(rng.choice((0, 1, 2, 6, 8, 26, 768)))]
        chunks.insert(rng.randrange(1, len(chunks) + 1), chunk)
    else:  # change a chunk's type
        chunks[i][0] = rng.choice((b"IHDR", b"IDAT", b"IEND", b"PLTE", b"tRNS", b"eXIf", b"fdAT", b"iCCP",
                                   b"zTXt", b"iTXt", b"tEXt", b"bKGD", b"cHRM", b"sRGB", b"aBcD"))
    if rng.random() < 0.1:  # and sometimes its length field lies
        out = bytearray(_png_join(chunks))
        at = 8 + sum(12 + len(body) for _, body in chunks[:i])
        if at + 4 <= len(out):
            out[at:at + 4] = _pack_int(rng.choice(BOUNDARY), 4, True)
        return bytes(out)
    return _png_join(chunks, fix_crc=rng.random() < 0.95)


# ---- TIFF directories: the TIFF file itself and EXIF blocks in JPEG, PNG and WEBP ----

TIFF_TAGS = (256, 257, 258, 259, 262, 266, 273, 274, 277, 278, 279, 284, 317, 320, 322, 323, 324, 325, 338, 339,
             530, 531, 532, 34665, 34853, 700, 33723, 34377, 37724, 50838, 50839, 0, 65535)
TIFF_VALUES = {
    258: (0, 1, 2, 4, 8, 12, 16, 24, 32, 64, 65535), 259: (1, 2, 3, 4, 5, 6, 7, 8, 32773, 32946, 34712, 50000),
    262: (0, 1, 2, 3, 4, 5, 6, 8, 9, 10, 32844, 32845, 99), 274: (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 65535),
    277: (0, 1, 2, 3, 4, 5, 8, 255, 65535), 284: (0, 1, 2, 3), 317: (1, 2, 3, 4), 338: (0, 1, 2, 3),
    339: (0, 1, 2, 3, 4, 5, 6), 266: (0, 1, 2, 3), 278: (0, 1, 2, 0xFFFFFFFF),
}


def _tiff_entries(data: bytes, base: int) -> tuple[bool, list[int]] | None:
    """Whether the TIFF at ``base`` is big-endian, and the offsets of its IFD entries (IFD0 and a few more)."""
    head = data[base:base + 8]
    if len(head) < 8:
        return None
    if head[:4] == b"II*\x00":
        big = False
    elif head[:4] == b"MM\x00*":
        big = True
    else:
        return None
    order = ">" if big else "<"
    entries, ifd, seen = [], struct.unpack(order + "I", head[4:8])[0], set()
    while ifd and ifd not in seen and len(seen) < 4 and base + ifd + 2 <= len(data):
        seen.add(ifd)
        count = struct.unpack(order + "H", data[base + ifd:base + ifd + 2])[0]
        start = base + ifd + 2
        for k in range(min(count, 64)):
            at = start + 12 * k
            if at + 12 > len(data):
                break
            entries.append(at)
            tag = struct.unpack(order + "H", data[at:at + 2])[0]
            if tag in (34665, 34853):  # a sub-IFD (EXIF, GPS): follow it too
                sub = struct.unpack(order + "I", data[at + 8:at + 12])[0]
                if sub not in seen and base + sub + 2 <= len(data):
                    scount = struct.unpack(order + "H", data[base + sub:base + sub + 2])[0]
                    entries += [base + sub + 2 + 12 * j for j in range(min(scount, 32))
                                if base + sub + 2 + 12 * j + 12 <= len(data)]
        end = start + 12 * count
        ifd = struct.unpack(order + "I", data[end:end + 4])[0] if end + 4 <= len(data) else 0
    return big, entries


def mutate_tiff(data: bytes, rng: random.Random) -> bytes | None:
    """Change one IFD entry of a TIFF structure (a TIFF file, or the EXIF inside another format)."""
    bases = [m.start() for m in re.finditer(rb"II\*\x00|MM\x00\*", data)]
    if not bases:
        return None
    base = rng.choice(bases)
    found = _tiff_entries(data, base)
    if not found or not found[1]:
        return None
    big, entries = found
    order = ">" if big else "<"
    buf = bytearray(data)
    at = rng.choice(entries)
    tag, kind, count = struct.unpack(order + "HHI", buf[at:at + 8])
    op = rng.randrange(5)
    if op == 0 or (op == 1 and tag in TIFF_VALUES):  # an interesting value for the tag, or any boundary value
        value = rng.choice(TIFF_VALUES.get(tag, BOUNDARY))
        if kind == 3 and count <= 2:
            buf[at + 8:at + 10] = _pack_int(value, 2, big)
        else:
            buf[at + 8:at + 12] = _pack_int(value, 4, big)
    elif op == 1:
        buf[at + 8:at + 12] = _pack_int(rng.choice(BOUNDARY), 4, big)
    elif op == 2:  # another type (1..13, or nonsense)
        buf[at + 2:at + 4] = _pack_int(rng.choice((1, 2, 3, 4, 5, 7, 9, 10, 11, 12, 13, 16, 0, 99)), 2, big)
    elif op == 3:  # another count
        buf[at + 4:at + 8] = _pack_int(rng.choice(BOUNDARY + (count + 1, count * 2, 3)), 4, big)
    else:  # another tag
        buf[at:at + 2] = _pack_int(rng.choice(TIFF_TAGS), 2, big)
    out = bytes(buf)
    if data.startswith(PNG_SIGNATURE):  # keep the eXIf chunk's CRC right
        chunks = _png_chunks(out)
        out = _png_join(chunks) if chunks else out
    return out


# ---- JPEG segments and RIFF (WEBP) chunks ----

def mutate_jpeg(data: bytes, rng: random.Random) -> bytes | None:
    if not data.startswith(b"\xff\xd8"):
        return None
    segments, i = [], 2
    while i + 4 <= len(data) and data[i] == 0xFF:
        marker = data[i + 1]
        length = int.from_bytes(data[i + 2:i + 4], "big")
        segments.append((i, marker, length))
        if marker == 0xDA:  # entropy-coded data follows
            break
        i += 2 + length
    if not segments:
        return None
    at, marker, length = rng.choice(segments)
    buf = bytearray(data)
    op = rng.randrange(4)
    if op == 0:  # the length field
        buf[at + 2:at + 4] = _pack_int(rng.choice(BOUNDARY + (length - 1, length + 1)), 2, True)
    elif op == 1:  # a field inside (SOF: precision, height, width, components)
        j = at + 4 + rng.randrange(max(1, min(length - 2, 12)))
        width = rng.choice((1, 2))
        buf[j:j + width] = _pack_int(rng.choice(BOUNDARY), width, True)
    elif op == 2:  # repeat the segment
        buf[at:at] = data[at:at + 2 + length]
    else:  # drop it
        del buf[at:at + 2 + length]
    return bytes(buf)


def mutate_riff(data: bytes, rng: random.Random) -> bytes | None:
    if not (data.startswith(b"RIFF") and data[8:12] == b"WEBP"):
        return None
    chunks, i = [], 12
    while i + 8 <= len(data):
        size = int.from_bytes(data[i + 4:i + 8], "little")
        chunks.append((i, size))
        i += 8 + size + (size & 1)
    if not chunks:
        return None
    at, size = rng.choice(chunks)
    buf = bytearray(data)
    op = rng.randrange(3)
    if op == 0:
        buf[at + 4:at + 8] = _pack_int(rng.choice(BOUNDARY + (size - 1, size + 1)), 4, False)
    elif op == 1:  # a header field of the chunk (VP8X flags and canvas size, ANMF offsets...)
        j = at + 8 + rng.randrange(max(1, min(size, 24)))
        width = rng.choice((1, 2, 3))
        buf[j:j + width] = _pack_int(rng.choice(BOUNDARY), width, False)
    else:
        del buf[at:at + 8 + size]
    if rng.random() < 0.8:  # the RIFF size, made right again
        buf[4:8] = _pack_int(len(buf) - 8, 4, False)
    return bytes(buf)


def mutate_image(data: bytes, rng: random.Random, pool: list[bytes]) -> bytes:
    """A structure-aware mutation when the format is known, else a byte-level one."""
    if rng.random() < 0.6:
        for mutator in rng.sample((mutate_png, mutate_tiff, mutate_jpeg, mutate_riff), 4):
            out = mutator(data, rng, pool) if mutator is mutate_png else mutator(data, rng)
            if out is not None:
                return out
    return mutate_bytes(data, rng, pool)


# ---- JSON documents, mutated as parsed trees ----

class Raw(str):
    """JSON text written as it is: NaN, Infinity, 1e999, an integer too long for Python to convert."""


class Pairs(list):
    """A JSON object as [key, value] pairs, so a key can repeat."""


def _parse_tree(text: bytes) -> Any:
    return json.loads(text, parse_constant=Raw, object_pairs_hook=lambda items: Pairs([list(i) for i in items]))


def dump_tree(value: Any) -> str:
    """JSON text of a tree from _parse_tree, keeping repeated keys and non-finite numbers."""
    if isinstance(value, Raw):
        return str(value)
    if isinstance(value, Pairs):
        return "{" + ", ".join(f"{json.dumps(k)}: {dump_tree(v)}" for k, v in value) + "}"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)}: {dump_tree(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(dump_tree(v) for v in value) + "]"
    if isinstance(value, float):
        return "NaN" if math.isnan(value) else "Infinity" if value == math.inf else \
            "-Infinity" if value == -math.inf else repr(value)
    return json.dumps(value)


JSON_STRINGS = ("", "x", "valid", "same", "full", "zeros", "reflect", "replicate", "circular", "gray", "rgb",
                "raw", "unit", "cnn-model", "tiny.npz", "digits.npz", "folder", "..", "/", "missing.npz",
                "a\u0000b", "tiny.npz\u0000", "/dev/null", "conv2d", "dense", "linear", "relu", "leaky_relu",
                "leakyrelu", "sigmoid", "tanh", "maxpool2d", "avgpool2d", "globalavgpool2d", "flatten",
                "batchnorm2d", "batchnorm1d", "dropout", "softmax", "conv1", "fc", "bn1", "weight", "bias",
                "\ud800", "é" * 50, "x" * 300)
LAYER_TYPES = ("conv2d", "dense", "linear", "relu", "leaky_relu", "leakyrelu", "sigmoid", "tanh", "maxpool2d",
               "avgpool2d", "globalavgpool2d", "flatten", "batchnorm2d", "batchnorm1d", "dropout", "softmax")
JSON_KEYS = KERNEL_KEYS + (
    "format", "version", "input", "labels", "layers", "metadata", "size", "color", "scale", "invert", "mean",
    "std", "type", "in_channels", "out_channels", "kernel_size", "groups", "in_features", "out_features",
    "num_features", "eps", "momentum", "affine", "running_mean", "running_var", "negative_slope", "p",
    "ceil_mode", "count_include_pad", "weight")


def _json_values(rng: random.Random, donors: list[Any]) -> Any:
    """A replacement value: a boundary number, a non-finite literal, a string, a nesting, or another node."""
    choice = rng.randrange(12)
    if choice == 0:
        return Raw(rng.choice(("NaN", "Infinity", "-Infinity", "1e999", "-1e999", "1E+400", "-0", "-0.0",
                               "4.9e-324", "1e-400", "0.0", "1" + "0" * 400 + ".5", "9" * 4300, "9" * 4301)))
    if choice in (1, 2):
        return rng.choice(BOUNDARY + (3, 5, 1 << 14, (1 << 14) + 1, 1 << 16, (1 << 16) + 1, 1 << 24, 1 << 53))
    if choice == 3:
        return rng.choice((0.5, -0.5, 1e-300, 1e308, -1e308, 1.7976931348623157e308, 2.5, 1e-5, 0.0, -0.0))
    if choice == 4:
        return rng.choice(JSON_STRINGS)
    if choice == 5:
        return rng.choice((True, False, None, [], Pairs(), [[]], [[1]], [1, 2], [1, 2, 3, 4], [[1, 2], [3]]))
    if choice == 6:  # deep nesting, around the readers' limit of 32
        depth = rng.choice((8, 30, 31, 32, 33, 40, 200))
        value: Any = rng.choice((1, [], Pairs()))
        for _ in range(depth):
            value = [value] if rng.random() < 0.8 else Pairs([["weights", value]])
        return value
    if choice == 7:  # a long row or a big matrix
        return [rng.choice((0, 1.5, -1))] * rng.choice((1, 9, 100, 1000)) if rng.random() < 0.5 else \
            [[0.5] * rng.choice((1, 3, 50))] * rng.choice((1, 3, 50))
    if choice == 8:  # a layer of any type
        layer = Pairs([["type", rng.choice(LAYER_TYPES)]])
        for key in rng.sample(JSON_KEYS, rng.randrange(4)):
            layer.append([key, rng.choice(BOUNDARY[:12])])
        return layer
    return copy.deepcopy(rng.choice(donors)) if donors else 0


def _slots(tree: Any, limit: int = 4000) -> list[tuple[Any, Any]]:
    """(container, index) of every node, breadth first; (None, None) is the root."""
    slots: list[tuple[Any, Any]] = [(None, None)]
    queue = [tree]
    while queue and len(slots) < limit:
        node = queue.pop(0)
        if isinstance(node, Pairs):
            for pair in node:
                slots.append((pair, 1))
                queue.append(pair[1])
        elif isinstance(node, list):
            for i, item in enumerate(node):
                slots.append((node, i))
                queue.append(item)
    return slots


def mutate_json(data: bytes, rng: random.Random, pool: list[bytes]) -> bytes:
    """Mutate the parsed document (values, keys, lists), else the text; the result may be any JSON or none."""
    if rng.random() < 0.15:
        return mutate_bytes(data, rng, pool)
    try:
        tree = _parse_tree(data)
    except (ValueError, RecursionError):
        return mutate_bytes(data, rng, pool)
    for _ in range(1 + int(rng.expovariate(1.5))):
        slots = _slots(tree)
        parent, index = rng.choice(slots)
        current = tree if parent is None else parent[index]
        donors = [s[0][s[1]] for s in rng.sample(slots[1:], min(5, len(slots) - 1))]
        op = rng.randrange(10)
        new: Any = current
        if op <= 3:
            new = _json_values(rng, donors)
        elif op == 4 and isinstance(current, Pairs) and current:  # delete a key
            del current[rng.randrange(len(current))]
        elif op == 5 and isinstance(current, Pairs):  # add a key, or repeat one
            if current and rng.random() < 0.3:
                current.append(list(rng.choice(current)))
            else:
                current.insert(rng.randrange(len(current) + 1), [rng.choice(JSON_KEYS), _json_values(rng, donors)])
        elif op == 6 and isinstance(current, Pairs) and current:  # rename a key
            rng.choice(current)[0] = rng.choice(JSON_KEYS + ("", "Weights", "x"))
        elif op == 7 and isinstance(current, list) and not isinstance(current, Pairs):
            if current and rng.random() < 0.5:  # drop or repeat an item
                i = rng.randrange(len(current))
                if rng.random() < 0.5:
                    del current[i]
                else:
                    current.insert(i, copy.deepcopy(current[i]))
            else:
                current.append(_json_values(rng, donors))
        elif op == 8:  # wrap in a list, or unwrap
            if isinstance(current, list) and not isinstance(current, Pairs) and current:
                new = current[0]
            else:
                new = [current]
        elif isinstance(current, (int, float)) and not isinstance(current, bool):  # nudge a number
            new = rng.choice((current + 1, current - 1, -current, current * 2, 0, current * 10 ** 300))
            if isinstance(new, float) and not math.isfinite(new):
                new = Raw("NaN" if math.isnan(new) else "1e999")
        else:
            new = _json_values(rng, donors)
        if parent is None:
            tree = new
        else:
            parent[index] = new
    try:
        text = dump_tree(tree)
    except (ValueError, RecursionError):  # an int too long to write: leave the document as it was
        return data
    if rng.random() < 0.05:
        text = rng.choice(("\ufeff", " ", "\n")) + text
    out = text.encode("utf-8", "surrogatepass")
    return mutate_bytes(out, rng, pool) if rng.random() < 0.1 else out


# ---- .npy headers and zip archives ----

NPY_DESCRS = ("<f4", "<f8", ">f8", "<f2", "<f16", "<c32", "|b1", "|i1", "<u8", "|O", "<U0", "|S0", "|V0", "|V8",
              "<U2147483647", "|S4294967296", "<M8", "<M8[Y]", "<m8[as]", "<M8[xx]", "f", "float32", "int",
              "", "?", "x", [("a", "<f4")], [("a", "<f4", (2,))], [("", "<f4")], [("a", "|O")],
              [("a", [("b", "<i2")])], [("a", "<f4", (2147483648,))], [("a", "<f4"), ("a", "<f4")], [],
              ("<f4", (2, 2)), 123, None, {"names": ["a"], "formats": ["<f4"]}, [["a", "<f4"]])
NPY_SHAPES = ((), (0,), (1,), (2, 3), (3, 2), (6,), (2147483648,), (1 << 63,), (1 << 64,), (-1,), (0, -1),
              (0, 1 << 63), (0, 1 << 62, 4), (1 << 32, 1 << 32), (0,) * 40, (1,) * 64, (1,) * 65, (True,),
              (1.5,), [2, 3], "2", None, (2, 3, 0))


def _npy_split(data: bytes) -> tuple[bytes, str, bytes] | None:
    """(magic and version, header text, array bytes) of a .npy, or None."""
    if not data.startswith(b"\x93NUMPY") or len(data) < 10:
        return None
    major = data[6]
    width = 2 if major == 1 else 4
    if len(data) < 8 + width:
        return None
    length = int.from_bytes(data[8:8 + width], "little")
    header = data[8 + width:8 + width + length]
    return data[:8], header.decode("latin1"), data[8 + width + length:]


def _npy_join(prefix: bytes, header: str, body: bytes) -> bytes:
    raw = header.encode("utf8" if prefix[6] >= 3 else "latin1", "replace")
    width = 2 if prefix[6] == 1 else 4
    if width == 2 and len(raw) >= 1 << 16:
        raw = raw[:(1 << 16) - 1]
    return prefix + len(raw).to_bytes(width, "little") + raw + body


def mutate_npy(data: bytes, rng: random.Random, pool: list[bytes]) -> bytes:
    """Mutate a .npy header as a dict (descr, shape, fortran_order), its version or length, or its bytes."""
    parts = _npy_split(data)
    if parts is None or rng.random() < 0.2:
        return mutate_bytes(data, rng, pool)
    prefix, header, body = parts
    op = rng.randrange(8)
    if op <= 2:
        import ast

        try:
            fields = ast.literal_eval(header.strip())
        except (ValueError, SyntaxError, MemoryError, RecursionError, TypeError):
            fields = None
        if not isinstance(fields, dict):
            fields = {"descr": "<f4", "fortran_order": False, "shape": (2, 3)}
        key = rng.choice(("descr", "shape", "fortran_order", "descr", "shape", "extra"))
        if rng.random() < 0.1:
            fields.pop(key, None)
        elif key == "descr":
            fields[key] = rng.choice(NPY_DESCRS)
        elif key == "shape":
            fields[key] = rng.choice(NPY_SHAPES)
        elif key == "fortran_order":
            fields[key] = rng.choice((True, False, 1, "x", None))
        else:
            fields[rng.choice(("extra", "descr2"))] = 1
        header = repr(fields)
        header += " " * rng.choice((0, (64 - (10 + len(header) + 1) % 64) % 64)) + "\n"
    elif op == 3:  # deeply nested or chained expressions for the header's literal parser
        token = rng.choice(("-", "(", "[", "{'a':", "not ", "~", "+", "1+"))
        count = rng.choice((50, 199, 201, 1000, 3000, 6000))
        at = rng.randrange(len(header) + 1)
        header = header[:at] + token * count + header[at:]
    elif op == 4:  # the version
        prefix = prefix[:6] + bytes(rng.choice(((1, 0), (2, 0), (3, 0), (4, 0), (0, 0), (255, 255), (1, 1))))
    elif op == 5:  # the array bytes
        body = mutate_bytes(body, rng, pool) if body else rng.randbytes(8)
    elif op == 6:  # non-ASCII or control characters in the header
        at = rng.randrange(len(header) + 1)
        header = header[:at] + rng.choice(("\x00", "é", "\u2028", "\\", "'", "L", "\x7f", "\udc80")) + header[at:]
    else:  # a header length that lies, or the header cut
        out = bytearray(_npy_join(prefix, header, body))
        width = 2 if prefix[6] == 1 else 4
        out[8:8 + width] = _pack_int(rng.choice(BOUNDARY), width, False)
        return bytes(out)
    try:
        return _npy_join(prefix, header, body)
    except (UnicodeEncodeError, ValueError):
        return data


def _zip_members(data: bytes) -> list[tuple[str, bytes, int]] | None:
    import zipfile

    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            return [(info.filename, archive.read(info), info.compress_type) for info in archive.infolist()]
    except Exception:  # noqa: BLE001 - any broken archive: mutate its bytes instead
        return None


def mutate_zip_headers(data: bytes, rng: random.Random) -> bytes | None:
    """Change one field of a local or central header, or of the end record, sometimes in both places."""
    import zipfile

    locals_ = [m.start() for m in re.finditer(rb"PK\x03\x04", data)]
    centrals = [m.start() for m in re.finditer(rb"PK\x01\x02", data)]
    ends = [m.start() for m in re.finditer(rb"PK\x05\x06", data)]
    if not (locals_ or centrals or ends):
        return None
    buf = bytearray(data)
    # field: (offset in a local header, offset in a central header, width)
    fields = {"flags": (6, 8, 2), "method": (8, 10, 2), "crc": (14, 16, 4), "csize": (18, 20, 4),
              "usize": (22, 24, 4), "namelen": (26, 28, 2), "extralen": (28, 30, 2)}
    name = rng.choice(tuple(fields) + ("end",))
    if name == "end" and ends:
        at = rng.choice(ends)
        off = rng.choice((8, 10, 12, 16, 20))
        width = 4 if off in (12, 16) else 2
        buf[at + off:at + off + width] = _pack_int(rng.choice(BOUNDARY), width, False)
        return bytes(buf)
    local_off, central_off, width = fields.get(name, fields["method"])
    if name == "flags":
        value = rng.choice((0x1, 0x8, 0x20, 0x40, 0x800, 0x2000, 0xFFFF, 0))
    elif name == "method":
        value = rng.choice((zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA, 1, 6,
                            9, 97, 98, 99, 0xFFFF))
    else:
        value = rng.choice(BOUNDARY)
    where = rng.random()
    if locals_ and where < 0.7:
        at = rng.choice(locals_)
        buf[at + local_off:at + local_off + width] = _pack_int(value, width, False)
    if centrals and where > 0.3:
        at = rng.choice(centrals)
        buf[at + central_off:at + central_off + width] = _pack_int(value, width, False)
    return bytes(buf)


def mutate_zip(data: bytes, rng: random.Random, pool: list[bytes]) -> bytes:
    """Rebuild an archive with mutated members (their .npy bytes, names, compression), or mutate its headers."""
    import zipfile

    op = rng.random()
    if op < 0.3:
        out = mutate_zip_headers(data, rng)
        if out is not None:
            return out
    members = _zip_members(data) if op < 0.85 else None
    if members is None:
        return mutate_bytes(data, rng, pool)
    choice = rng.randrange(6)
    if not members or choice == 0:
        members.append((rng.choice(("weight.npy", "bias.npy", "x.npy", "weight", "", "a/b.npy", "é.npy")),
                        rng.choice(npy_seeds()), zipfile.ZIP_STORED))
    elif choice <= 2:  # a member's .npy
        i = rng.randrange(len(members))
        name, content, compression = members[i]
        members[i] = (name, mutate_npy(content, rng, pool), compression)
    elif choice == 3:  # a member's name
        i = rng.randrange(len(members))
        members[i] = (rng.choice(("weight.npy", "bias.npy", "weight", "bias", ".npy", "x" * 300, "dir/",
                                  members[0][0], "../w.npy")),) + members[i][1:]
    elif choice == 4:  # its compression
        i = rng.randrange(len(members))
        members[i] = members[i][:2] + (rng.choice((zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2,
                                                   zipfile.ZIP_LZMA)),)
    else:  # drop or repeat one
        i = rng.randrange(len(members))
        if rng.random() < 0.5:
            del members[i]
        else:
            members.insert(i, members[i])
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "Duplicate name"
            out = _zip(members)
    except (ValueError, OSError, OverflowError):
        return data
    return mutate_zip_headers(out, rng) or out if rng.random() < 0.3 else out


def mutate_dense(data: bytes, rng: random.Random, pool: list[bytes]) -> bytes:
    if data.startswith(b"\x93NUMPY"):
        return mutate_npy(data, rng, pool)
    if data.startswith(b"PK"):
        return mutate_zip(data, rng, pool)
    return mutate_json(data, rng, pool)


PATH_NAMES = ("a.png", "b.PNG", "c.jpeg", ".h.png", "x.txt", "sub", "deeper", ".hid", "a-b", "a.b", "10.png", "[1].png",
              "*.png", "d", "e", "f.tiff", "g.webp")
PATH_TARGETS = (".", "..", "../..", "sub", "a.png", "../a.png", "../sub", "nowhere", "sub/..", "../d", "d/sub")
PATH_PATTERNS = ("**", "*", "**/*.png", "*.png", "?.png", "[ab]*", "[!a]*", ".*", "*/", "**/", "*/**/*", "**/**")


def mutate_paths(data: bytes, rng: random.Random, pool: list[bytes]) -> bytes:
    """Add, change or drop a file, folder or link of the tree, or an argument; else mutate the JSON."""
    try:
        document = json.loads(data)
        tree, args = document["tree"], document["args"]
        assert isinstance(tree, list) and isinstance(args, list)
    except (ValueError, KeyError, TypeError, AssertionError):
        return mutate_json(data, rng, pool)
    folder = "/".join(rng.choice(PATH_NAMES[5:10]) for _ in range(rng.randrange(3)))
    name = "/".join(filter(None, (folder, rng.choice(PATH_NAMES))))
    op = rng.randrange(8)
    if op == 0:
        tree.append(name)
    elif op == 1:
        tree.append(f"{name} -> {rng.choice(PATH_TARGETS)}")
    elif op == 2:
        tree.append(name + "/")
    elif op == 3 and tree:
        del tree[rng.randrange(len(tree))]
    elif op == 4:
        args.append("/".join(filter(None, (folder, *rng.sample(PATH_PATTERNS + PATH_NAMES, rng.randrange(1, 3))))))
    elif op == 5 and args:
        args[rng.randrange(len(args))] = rng.choice(("-", folder or ".", name))
    elif op == 6 and args:
        del args[rng.randrange(len(args))]
    else:
        return mutate_json(data, rng, pool)
    return json.dumps(document).encode()


def mutate_onnx(data: bytes, rng: random.Random, pool: list[bytes]) -> bytes:
    return _onnx_target().mutate(data, rng, pool, mutate_bytes)


MUTATORS: dict[str, Callable[[bytes, random.Random, list[bytes]], bytes]] = {
    "image": mutate_image, "kernel": mutate_json, "model": mutate_json,
    "npy": mutate_npy, "npz": mutate_zip, "dense": mutate_dense, "paths": mutate_paths, "onnx": mutate_onnx,
}


_MUTATOR_FAILURES: set[str] = set()


def mutate(target: str, data: bytes, rng: random.Random, pool: list[bytes]) -> bytes:
    """One to four stacked mutations of ``data``, cut to MAX_INPUT bytes."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # SyntaxWarning from parsing mutated .npy headers
        for _ in range(1 + min(3, int(rng.expovariate(1.2)))):
            try:
                data = MUTATORS[target](data, rng, pool)
            except Exception as err:  # noqa: BLE001 - a mistake in this harness: say so once, go on
                sig, detail = signature(err)
                if sig not in _MUTATOR_FAILURES:
                    _MUTATOR_FAILURES.add(sig)
                    print(f"harness: the {target} mutator failed: {detail}", flush=True)
                data = mutate_bytes(data, rng, pool)
    return data[:MAX_INPUT]


# --------------------------------------------------------------------------------------------
# Running one input: classify the outcome, with a time limit.
# --------------------------------------------------------------------------------------------

class Hang(BaseException):
    """Raised by the timer inside a target that runs past the timeout (a BaseException, so no
    `except Exception` in a library swallows it)."""


@dataclass
class Outcome:
    kind: str  # "ok" (the reader returned or raised CnnError), "bug", "noisy", "slow" or "hang"
    feature: str  # what happened, for novelty; for a bug, its signature
    detail: str = ""  # the exception and the line it came from
    seconds: float = 0.0

    @property
    def finding(self) -> bool:
        return self.kind != "ok"


def _short(filename: str) -> str:
    for marker in ("/site-packages/", "/lib/python3", f"{HERE.parent.parent.parent}/"):
        if marker in filename:
            filename = filename.split(marker, 1)[1]
    return filename.split("/", 1)[1] if filename.startswith(".") else filename


def signature(err: BaseException) -> tuple[str, str]:
    """(signature, detail): the exception type and the function it came from (also the last cnncli
    frame), and the same with file lines and the message, for a person."""
    frames = traceback.extract_tb(err.__traceback__)
    inner = frames[-1] if frames else None
    ours = next((f for f in reversed(frames) if "/cnncli/" in f.filename), None)
    name = type(err).__name__
    where = f"{_short(inner.filename)}:{inner.name}" if inner else "?"
    via = f" via {_short(ours.filename)}:{ours.name}" if ours and ours is not inner else ""
    sig = f"{name} in {where}{via}"
    line = f"{_short(inner.filename)}:{inner.lineno}" if inner else "?"
    via_line = f" (via {_short(ours.filename)}:{ours.lineno})" if ours and ours is not inner else ""
    message = str(err).splitlines()[0][:120] if str(err) else ""
    return sig, f"{name}: {message} at {line}{via_line}"


def _on_alarm(signum, frame):
    raise Hang()


def run_one(target: str, data: bytes, slow: float = SLOW_SECONDS, timeout: float = TIMEOUT_SECONDS) -> Outcome:
    """Run ``data`` through ``target``; only CnnError (caught by the target) is an allowed failure."""
    PREPARE.get(target, lambda: None)()
    timed = threading.current_thread() is threading.main_thread() and timeout > 0
    if timed:
        previous = signal.signal(signal.SIGALRM, _on_alarm)
        signal.setitimer(signal.ITIMER_REAL, timeout)
    _RUNNING.update(since=time.monotonic(), target=target, data=data)
    start = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            feature = TARGETS[target](data)
        outcome = Outcome("ok", feature)
    except Hang as err:
        sig, detail = signature(err)
        outcome = Outcome("hang", f"hang in {sig.split(' in ', 1)[1]}", f"interrupted after {timeout:g} s {detail}")
    except KeyboardInterrupt:
        raise
    except BaseException as err:  # noqa: BLE001 - everything but CnnError is a finding
        sig, detail = signature(err)
        outcome = Outcome("bug", sig, detail)
    finally:
        _RUNNING["since"] = None
        if timed:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
    outcome.seconds = time.perf_counter() - start
    if _STDERR_SINK is not None and os.fstat(_STDERR_SINK.fileno()).st_size:
        printed = " | ".join(_printed_since(0).split("\n"))[:200]
        if outcome.kind == "ok":
            outcome = Outcome("noisy", f"noisy {target}", f"printed on stderr: {printed}", outcome.seconds)
    if outcome.kind == "ok" and outcome.seconds > slow:
        outcome = Outcome("slow", f"slow {target}", f"took {outcome.seconds:.1f} s (over {slow:g} s)",
                          outcome.seconds)
    return outcome


# --------------------------------------------------------------------------------------------
# The fuzz loop, shrinking and saving findings, and replay.
# --------------------------------------------------------------------------------------------

def corpus_files(target: str | None = None) -> list[Path]:
    folders = [CORPUS / target] if target else sorted(p for p in CORPUS.iterdir() if p.is_dir()) \
        if CORPUS.is_dir() else []
    return sorted(p for folder in folders if folder.is_dir() for p in folder.iterdir()
                  if p.is_file() and not p.name.startswith("."))


def save_finding(target: str, data: bytes) -> Path:
    folder = CORPUS / target
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{hashlib.sha1(data).hexdigest()[:16]}.bin"
    path.write_bytes(data)
    return path


def shrink(target: str, data: bytes, sig: str, seconds: float = 5.0) -> bytes:
    """Cut chunks (halves, quarters... single bytes) out of ``data`` while it still fails the same way."""
    deadline = time.monotonic() + seconds
    best, chunk = data, max(1, len(data) // 2)
    while chunk >= 1 and time.monotonic() < deadline:
        i = 0
        while i < len(best) and time.monotonic() < deadline:
            candidate = best[:i] + best[i + chunk:]
            outcome = run_one(target, candidate, timeout=3.0) if candidate else None
            if outcome and outcome.kind == "bug" and outcome.feature == sig:
                best = candidate
            else:
                i += chunk
        chunk //= 2
    return best


@dataclass
class Stats:
    runs: int = 0
    findings: int = 0
    new: int = 0
    seconds: float = 0.0


def fuzz(target: str, *, seconds: float | None = None, runs: int | None = None, seed: int = 0, save: bool = True,
         use_corpus: bool = True, slow: float = SLOW_SECONDS, timeout: float = TIMEOUT_SECONDS,
         out=sys.stdout) -> Stats:
    """Mutate inputs for ``seconds`` or ``runs`` inputs; print one line per new kind of finding."""
    rng = random.Random(seed)
    known: dict[str, str] = {}  # signature -> where it is saved
    features: set[str] = set()
    pool: list[bytes] = []
    stats = Stats()

    def found(data: bytes, outcome: Outcome) -> None:
        stats.findings += 1
        if outcome.feature in known:
            return
        if outcome.kind == "bug" and save:
            data = shrink(target, data, outcome.feature)
        name = save_finding(target, data).name if save else f"not saved, sha1 {hashlib.sha1(data).hexdigest()[:16]}"
        known[outcome.feature] = name
        stats.new += 1
        where = CORPUS.relative_to(HERE.parent.parent) / target / name if save else name
        print(f"finding: {target}: {outcome.kind}: {outcome.detail}; {len(data)} bytes -> {where}", file=out,
              flush=True)

    for path in corpus_files(target) if use_corpus else []:  # known findings, and inputs that go deep
        data = path.read_bytes()
        outcome = run_one(target, data, slow, timeout)
        if outcome.finding:
            known[outcome.feature] = path.name
        else:
            features.add(outcome.feature)
            pool.append(data)
    for data in SEEDS[target]():
        outcome = run_one(target, data, slow, timeout)
        if outcome.finding:
            found(data, outcome)
        features.add(outcome.feature)
        pool.append(data)
    fixed = len(pool)
    start = time.monotonic()
    while (runs is None or stats.runs < runs) and (seconds is None or time.monotonic() - start < seconds):
        recent = pool[fixed:][-64:]
        parent = rng.choice(recent) if recent and rng.random() < 0.4 else rng.choice(pool)
        data = mutate(target, parent, rng, pool)
        outcome = run_one(target, data, slow, timeout)
        stats.runs += 1
        if outcome.finding:
            found(data, outcome)
        elif outcome.feature not in features:
            features.add(outcome.feature)
            pool.append(data)
            if len(pool) > fixed + 4000:  # keep the pool bounded: drop an old discovery
                del pool[fixed + rng.randrange(len(pool) - fixed - 64)]
    stats.seconds = time.monotonic() - start
    print(f"done: {target}: {stats.runs} inputs in {stats.seconds:.1f} s ({stats.runs / max(stats.seconds, 1e-9):.0f}"
          f"/s), {stats.findings} failing ({stats.new} new kinds, {len(known)} known), {len(features)} behaviours, "
          f"pool {len(pool)}", file=out, flush=True)
    return stats


def replay(paths: list[Path], slow: float, timeout: float, out=sys.stdout) -> int:
    """Run each corpus file through the target named by its folder; one JSON line per file."""
    failures = 0
    for path in paths:
        target = path.parent.name
        if target not in TARGETS:
            record = {"file": str(path), "target": target, "kind": "bug", "detail": "no such target", "seconds": 0}
        else:
            outcome = run_one(target, path.read_bytes(), slow, timeout)
            record = {"file": str(path), "target": target, "kind": outcome.kind,
                      "detail": outcome.detail or outcome.feature, "seconds": round(outcome.seconds, 3)}
        failures += record["kind"] != "ok"
        print(json.dumps(record), file=out, flush=True)
    return failures


_STDERR_SINK: Any = None  # where file descriptor 2 points while fuzzing, see _capture_stderr


def _capture_stderr() -> None:
    """Point file descriptor 2 (and sys.stderr with it) at a temporary file, so that a reader that
    prints there (Pillow's log records, libtiff's C messages) is caught: `cnn` promises one line on
    stderr per error, and that line is the CLI's to print, never a reader's. The harness's own
    crash still reaches the real stderr."""
    global _STDERR_SINK
    _STDERR_SINK = tempfile.TemporaryFile()
    real = os.fdopen(os.dup(2), "w", buffering=1)
    sys.stderr.flush()
    os.dup2(_STDERR_SINK.fileno(), 2)
    sys.excepthook = lambda kind, value, tb: traceback.print_exception(kind, value, tb, file=real)


def _printed_since(offset: int) -> str:
    """What reached file descriptor 2 after ``offset`` bytes, and rewinds it to there."""
    _STDERR_SINK.seek(offset)
    text = _STDERR_SINK.read(4096).decode("utf-8", "replace")
    _STDERR_SINK.seek(offset)
    _STDERR_SINK.truncate()
    return text


def _limit_memory(megabytes: int) -> None:
    if megabytes > 0:
        import resource

        limit = megabytes << 20
        _, hard = resource.getrlimit(resource.RLIMIT_AS)
        if hard == resource.RLIM_INFINITY or hard > limit:
            resource.setrlimit(resource.RLIMIT_AS, (limit, hard))


_RUNNING: dict[str, Any] = {"since": None, "target": None, "data": b"", "save": False}


def _watchdog(grace: float) -> None:
    """A thread that ends the process when the timer could not interrupt an input (stuck in C code),
    saving that input first when findings are being saved."""

    def watch() -> None:
        while True:
            time.sleep(0.5)
            since = _RUNNING["since"]
            if since is not None and time.monotonic() - since > grace:
                target, data = _RUNNING["target"], _RUNNING["data"]
                where = save_finding(target, data) if _RUNNING["save"] else "not saved"
                print(f"finding: {target}: hang: ran over {grace:g} s and could not be interrupted; "
                      f"{len(data)} bytes -> {where}", flush=True)
                if _WORKDIR is not None:  # os._exit skips the atexit that removes it
                    import shutil

                    shutil.rmtree(_WORKDIR, ignore_errors=True)
                os._exit(3)

    threading.Thread(target=watch, daemon=True).start()


# --------------------------------------------------------------------------------------------
# atheris (optional): the same targets, coverage-guided, with this mutator offered as well.
# --------------------------------------------------------------------------------------------

def run_atheris(target: str, seconds: float, seed: int, timeout: float) -> int:
    """Run atheris in a child process, with seeds and libFuzzer's files in a temporary folder."""
    import shutil
    import subprocess

    scratch = Path(tempfile.mkdtemp(prefix="cnn-atheris-"))
    try:
        (scratch / "seeds").mkdir()
        (scratch / "new").mkdir()
        for i, data in enumerate(SEEDS[target]() + [p.read_bytes() for p in corpus_files(target)]):
            (scratch / "seeds" / f"{i:04d}").write_bytes(data)
        args = [sys.executable, str(Path(__file__).resolve()), target, "--atheris-child", str(scratch),
                "--seconds", str(seconds), "--seed", str(seed), "--timeout", str(timeout)]
        code = subprocess.call(args, cwd=scratch)
        # libFuzzer's own artifacts (a crash in C, a timeout, running out of memory) become findings.
        for artifact in sorted(scratch.glob("*-*")):
            if artifact.is_file() and artifact.name.split("-")[0] in ("crash", "timeout", "oom", "leak"):
                path = save_finding(target, artifact.read_bytes())
                print(f"finding: {target}: libFuzzer {artifact.name.split('-')[0]} -> {path}", flush=True)
        return code
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _atheris_child(target: str, scratch: Path, seconds: float, seed: int, timeout: float) -> None:
    import atheris

    with atheris.instrument_imports():
        import cnncli.io.saving
        import cnncli.io.images
        import cnncli.io.reading
        import cnncli.io.jsonspec
        import cnncli.io.kernels
        import cnncli.io.modelfile
        import cnncli.io.paths
        import cnncli.io.onnx_import.build
        import cnncli.io.onnx_import.external
        import cnncli.io.onnx_import.ops
        import cnncli.io.onnx_import.tensors  # noqa: F401 - imported to be instrumented
    known: set[str] = set()
    rng = random.Random(seed)
    pool = SEEDS[target]()
    count = [0]

    def one_input(data: bytes) -> None:
        count[0] += 1
        outcome = run_one(target, data, SLOW_SECONDS, timeout)
        if outcome.finding and outcome.feature not in known:
            known.add(outcome.feature)
            path = save_finding(target, data)
            print(f"finding: {target}: {outcome.kind}: {outcome.detail}; {len(data)} bytes -> {path}", flush=True)

    def custom_mutator(data: bytes, max_size: int, seed: int) -> bytes:
        rng.seed(seed)
        if rng.random() < 0.5:
            return atheris.Mutate(data, max_size)
        return mutate(target, data, rng, pool)[:max_size]

    atheris.Setup([sys.argv[0], f"-max_total_time={int(seconds)}", "-rss_limit_mb=2048", f"-seed={seed}",
                   f"-timeout={int(timeout * 3)}", f"-max_len={MAX_INPUT}", f"-artifact_prefix={scratch}/",
                   "-print_final_stats=1", str(scratch / "new"), str(scratch / "seeds")],
                  one_input, custom_mutator=custom_mutator)
    atheris.Fuzz()


# --------------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("target", nargs="?", choices=sorted(TARGETS), help="the reader to fuzz")
    parser.add_argument("--seconds", type=float, help="fuzz for this long")
    parser.add_argument("--runs", type=int, help="fuzz this many inputs (deterministic with --seed)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--no-save", action="store_true", help="report findings without writing them")
    parser.add_argument("--no-corpus", action="store_true", help="start from the generated seeds only")
    parser.add_argument("--slow", type=float, default=SLOW_SECONDS, help="seconds after which an input is a finding")
    parser.add_argument("--timeout", type=float, default=TIMEOUT_SECONDS,
                        help="seconds after which an input is interrupted")
    parser.add_argument("--rss-limit-mb", type=int, default=2048,
                        help="address-space limit, so a memory bomb is a MemoryError (0: none)")
    parser.add_argument("--replay", nargs="*", type=Path, metavar="FILE",
                        help="run corpus files (default: all of them) and print one JSON line each")
    parser.add_argument("--atheris", action="store_true", help="fuzz under atheris (coverage-guided)")
    parser.add_argument("--atheris-child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.atheris_child:
        _atheris_child(args.target, args.atheris_child, args.seconds or 60, args.seed, args.timeout)
        return 0
    if args.atheris:
        if not args.target:
            parser.error("--atheris needs a target")
        try:
            import atheris  # noqa: F401
        except ImportError:
            parser.error("atheris is not installed (pip install atheris); the built-in mutator needs nothing")
        return run_atheris(args.target, args.seconds or 60, args.seed, args.timeout)
    _limit_memory(args.rss_limit_mb)
    _watchdog(args.timeout + 20)
    _capture_stderr()
    if args.replay is not None:
        replay([p.resolve() for p in args.replay] or corpus_files(args.target), args.slow, args.timeout)
        return 0
    if not args.target:
        parser.error("give a target, or --replay")
    if args.seconds is None and args.runs is None:
        parser.error("give --seconds or --runs")
    _RUNNING["save"] = not args.no_save
    fuzz(args.target, seconds=args.seconds, runs=args.runs, seed=args.seed, save=not args.no_save,
         use_corpus=not args.no_corpus, slow=args.slow, timeout=args.timeout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
