"""Hostile input: every bad file, option and fault gives one `cnn:` line, an exit code and no output.

One table holds every case. Each runs the command line in-process through main(), as the console
script does, with an output (`-o` or `--save`) into an empty folder, and asserts: the exit code;
that stderr is exactly one line starting with `cnn: ` and holding the expected words; that there is
no traceback; that nothing was written to stdout; and that the output folder is as it was. The bad
files are made here (tests/badfiles.py), not committed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from badfiles import (animated_gif, conv, encode, gif_growing_frame, model, noise, npy, npy_claiming, npy_header, npz,
                      pickle_bytes, pickled_npy, png_claiming, zip_bomb)
from PIL import Image

from cnncli.cli import main


@dataclass
class Case:
    id: str
    args: str  # split on spaces; {d} is the folder of input files, {o} the output folder
    code: int
    words: tuple[str, ...]
    files: dict = field(default_factory=dict)  # name -> bytes or text; "out/name" goes in the output folder


def png(image: Image.Image) -> bytes:
    return encode(image, "PNG")


IMG = {"img.png": png(noise())}
RUN = "run {d}/img.png -k sobel_x"
DENSE_OK = np.ones((2, 49)).tolist()  # sobel_x on 16x16, then 2x2 max-pool: 1 x 7 x 7


def kernel_case(id, text, *words, code=1):
    """A kernel file holding ``text``, used on a good image."""
    return Case(id, "run {d}/img.png -k {d}/k.json", code, ("k.json", *words), {**IMG, "k.json": text})


def model_case(id, text, *words, weights=None):
    """A model file holding ``text`` (and weights.npz if given), run on a good image."""
    files = {**IMG, "m.json": text}
    if weights is not None:
        files["weights.npz"] = weights
    return Case(id, "run {d}/img.png -m {d}/m.json", 1, words, files)


def good_layers():
    """conv 3x3 (2 channels) -> relu -> max-pool 2 -> flatten -> dense 18 -> 3, on 8x8 gray."""
    return [conv(2, name="conv1"), {"type": "relu"}, {"type": "maxpool2d", "kernel_size": 2}, {"type": "flatten"},
            {"type": "dense", "name": "fc", "out_features": 3, "weight": np.ones((3, 18)).tolist(),
             "bias": [0, 0, 0]}]


def with_layer(index, **changes):
    layers = good_layers()
    layers[index] = {**layers[index], **changes}
    return layers


def without(index, key):
    layers = good_layers()
    del layers[index][key]
    return layers


WEIGHT_NAMES = ["conv1.weight", "fc.weight", "fc.bias"]


def npz_model_case(id, arrays, *words):
    """The good model with its arrays in weights.npz: ``arrays`` replaces the good ones."""
    layers = good_layers()
    for layer in (layers[0], layers[4]):
        del layer["weight"], layer["bias"]
    layers[0]["bias"] = False
    good = {"conv1.weight": np.ones((2, 1, 3, 3)), "fc.weight": np.ones((3, 18)), "fc.bias": np.zeros(3)}
    arrays = {name: value for name, value in {**good, **arrays}.items() if value is not None}  # None: left out
    return model_case(id, model(layers, weights="weights.npz"), *words, weights=npz(**arrays))


CASES = [
    # --- images -----------------------------------------------------------------------------------
    Case("image-not-an-image", "run {d}/notes.png -k sobel_x", 1, ("notes.png", "not a supported image"),
         {"notes.png": "just some text\n"}),
    Case("image-empty", "run {d}/empty.png -k sobel_x", 1, ("empty.png", "is empty"), {"empty.png": b""}),
    Case("image-truncated-png", "run {d}/cut.png -k sobel_x", 1, ("cut.png", "cannot decode the PNG"),
         {"cut.png": png(noise((64, 64)))[:300]}),
    Case("image-truncated-jpeg", "run {d}/cut.jpg -k sobel_x", 1, ("cut.jpg", "cannot decode the JPEG"),
         {"cut.jpg": encode(noise((64, 64)), "JPEG")[:400]}),
    Case("image-random-bytes", "run {d}/r.png -k sobel_x", 1, ("r.png", "not a supported image"),
         {"r.png": bytes(np.random.default_rng(1).integers(0, 256, 300, dtype=np.uint8))}),
    Case("image-format-ico", "run {d}/i.ico -k sobel_x", 1, ("i.ico", "not a supported image", "PNG, JPEG"),
         {"i.ico": encode(noise(), "ICO")}),
    Case("image-format-pdf", "run {d}/i.png -k sobel_x", 1, ("i.png", "not a supported image"),
         {"i.png": encode(noise().convert("RGB"), "PDF")}),
    Case("image-format-ppm", "run {d}/i.ppm -k sobel_x", 1, ("i.ppm", "not a supported image"),
         {"i.ppm": encode(noise(), "PPM")}),
    Case("image-format-eps-named-png", "run {d}/e.png -k sobel_x", 1, ("e.png", "not a supported image"),
         {"e.png": b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n"}),
    Case("image-decompression-bomb", "run {d}/bomb.png -k sobel_x", 1,
         ("bomb.png", "400,000,000 pixels", "over the limit", "--max-pixels"), {"bomb.png": png_claiming(20000, 20000)}),
    Case("image-gif-frame-grows-canvas", "run {d}/g.gif -k sobel_x", 1, ("g.gif", "4,294,836,225 pixels", "--max-pixels"),
         {"g.gif": gif_growing_frame()}),
    Case("image-zero-width", "run {d}/zero.png -k sobel_x", 1, ("zero.png",), {"zero.png": png_claiming(0, 5)}),
    Case("image-over-max-pixels-flag", RUN + " --max-pixels 255", 1, ("img.png", "claims 256 pixels", "over the limit of 255", "--max-pixels"), IMG),
    Case("image-under-pixel-cap-too-big-in-floats", "run {d}/big.png -k sobel_x --color rgb --max-memory 50M", 1,
         ("big.png", "decoding 3000x3000 pixels", "memory limit", "--max-memory"), {"big.png": png_claiming(3000, 3000)}),
    Case("image-over-max-file-size", RUN + " --max-file-size 100", 1,
         ("img.png", "over the limit of 100 bytes", "--max-file-size"), IMG),
    Case("image-endless-device", "run /dev/zero -k sobel_x --max-file-size 1M", 1,
         ("/dev/zero", "holds more than the limit of 1.0 MiB", "--max-file-size")),
    Case("image-missing", "run {d}/nope.png -k sobel_x", 1, ("nope.png", "no such file")),
    Case("image-folder-without-images", "run {d} -k sobel_x", 1, ("holds no image files", ".png")),
    Case("image-glob-matching-nothing", "run {d}/*.png -k sobel_x", 1, ("no file matches",)),
    Case("image-float-nan", "run {d}/f.tif -k sobel_x", 1, ("f.tif", "NaN"),
         {"f.tif": encode(Image.fromarray(np.full((4, 4), np.nan, np.float32)), "TIFF")}),
    Case("image-gif-truncated-in-frame-1", "run {d}/a.gif -k sobel_x", 1, ("a.gif", "cannot decode the GIF"),
         {"a.gif": animated_gif()[:900]}),
    Case("image-smaller-than-kernel", "run {d}/tiny.png -k gaussian_5x5", 1, ("tiny.png", "conv1", "kernel"),
         {"tiny.png": png(noise((3, 3)))}),
    Case("image-channels-for-4d-kernel", "run {d}/img.png -k {d}/k.json", 1, ("3", "channel"),
         {**IMG, "k.json": json.dumps({"weights": np.ones((1, 3, 3, 3)).tolist()})}),
    # --- kernel JSON ------------------------------------------------------------------------------
    kernel_case("kernel-syntax", "[[1, 2], [3 4]]", "invalid JSON at line 1 column"),
    kernel_case("kernel-syntax-line", '{\n  "weights": [[1, 2]\n  "stride": 1\n}', "line 3 column"),
    kernel_case("kernel-nan", "[[NaN, 1], [1, 1]]", "NaN", "finite"),
    kernel_case("kernel-infinity", "[[Infinity, 1], [1, 1]]", "Infinity", "finite"),
    kernel_case("kernel-minus-infinity", '{"weights": [[1, 1], [-Infinity, 1]]}', "weights[1][0]", "finite"),
    kernel_case("kernel-1e400", "[[1e400, 1], [1, 1]]", "[0][0]", "finite"),
    kernel_case("kernel-huge-integer", "[[" + "9" * 5000 + "]]", "digits"),
    kernel_case("kernel-huge-stride", '{"weights": [[1]], "stride": 100000000000000000000000000000}', "stride",
                "at most"),
    kernel_case("kernel-deep-nesting", "[" * 100000 + "]" * 100000, "nested deeper"),
    kernel_case("kernel-duplicate-key", '{"weights": [[1]], "stride": 1, "stride": 2}', "'stride' appears twice"),
    kernel_case("kernel-typo-key", '{"weights": [[1]], "strid": 2}', "strid", "did you mean 'stride'"),
    kernel_case("kernel-string-value", '[["1", 2], [3, 4]]', "[0][0]", "expected a number, got the string '1'"),
    kernel_case("kernel-boolean-value", "[[true, 2], [3, 4]]", "[0][0]", "expected a number"),
    kernel_case("kernel-null-value", "[[null, 2], [3, 4]]", "[0][0]", "expected a number"),
    kernel_case("kernel-ragged", "[[1, 2], [3]]", "[1]", "rows must match"),
    kernel_case("kernel-empty", "[]", "weights", "got 1-D with shape (0,)"),
    kernel_case("kernel-empty-row", "[[]]", "empty"),
    kernel_case("kernel-scalar", "5", "expected"),
    kernel_case("kernel-5d", json.dumps(np.ones((1, 1, 1, 2, 2)).tolist()), "5-D"),
    kernel_case("kernel-not-utf8", b"[[1, 2], [3, \xff]]", "not UTF-8"),
    kernel_case("kernel-stride-zero", '{"weights": [[1]], "stride": 0}', "stride", "at least 1"),
    kernel_case("kernel-stride-negative", '{"weights": [[1]], "stride": [1, -2]}', "stride[1]", "at least 1"),
    kernel_case("kernel-dilation-zero", '{"weights": [[1]], "dilation": 0}', "dilation", "at least 1"),
    kernel_case("kernel-padding-negative", '{"weights": [[1]], "padding": -1}', "padding", "at least 0"),
    kernel_case("kernel-padding-mode", '{"weights": [[1]], "padding": 1, "padding_mode": "mirror"}', "padding_mode",
                "expected one of"),
    Case("kernel-bigger-than-padded-input", "run {d}/img.png -k {d}/k.json", 1,
         ("img.png", "conv1", "kernel reaches 20x20", "only 16x16"), {**IMG, "k.json": json.dumps(np.ones((20, 20)).tolist())}),
    kernel_case("kernel-wrong-top-level-type", '{"weights": "sobel"}', "weights", "expected"),
    Case("kernel-inline-ragged", "run {d}/img.png -k [[1,2],[3]]", 1, ("--kernel", "rows must match"), IMG),
    Case("kernel-unknown-name", "run {d}/img.png -k sobell_x", 1, ("sobell_x", "did you mean sobel_x"), IMG),
    Case("kernel-over-max-file-size", "run {d}/img.png -k {d}/k.json --max-file-size 500", 1,
         ("k.json", "over the limit of 500 bytes", "--max-file-size"), {**IMG, "k.json": json.dumps([[1] * 200] * 2)}),
    # --- options (usage errors, exit 2) ---------------------------------------------------------
    Case("option-stride-zero", RUN + " --stride 0", 2, ("--stride",), IMG),
    Case("option-dilation-negative", RUN + " --dilation -1", 2, ("--dilation",), IMG),
    Case("option-padding-negative", RUN + " --padding -1", 2, ("--padding",), IMG),
    Case("option-padding-words", RUN + " --padding lots", 2, ("--padding", "lots"), IMG),
    Case("option-pool-size-zero", RUN + " --pool-size 0", 2, ("--pool-size",), IMG),
    Case("option-max-memory-unit", RUN + " --max-memory 12Q", 2, ("--max-memory", "12Q"), IMG),
    Case("option-format", RUN + " --format xml", 2, ("--format", "xml"), IMG),
    Case("option-unknown", RUN + " --strid 2", 2, ("--strid",), IMG),
    Case("option-model-and-kernel", "run {d}/img.png -m digits -k sobel_x", 2, ("--kernel", "--model"), IMG),
    Case("option-top-without-vector", RUN + " --top 3", 2, ("--top",), IMG),
    Case("option-softmax-without-dense", RUN + " --softmax", 2, ("--softmax",), IMG),
    # --- layer settings ---------------------------------------------------------------------------
    Case("layers-pool-bigger-than-map", RUN + " --pool-size 20", 1, ("maxpool1", "pool"), IMG),
    Case("layers-padding-too-large-for-memory", RUN + " --padding 100000", 1, ("img.png", "--max-memory"), IMG),
    Case("layers-run-over-max-memory", RUN + " --max-memory 10K", 1, ("img.png", "memory limit", "--max-memory"), IMG),
    Case("layers-dense-weights-mismatch", RUN + " --dense {d}/w.npy", 1, ("dense1", "49"),
         {**IMG, "w.npy": npy(np.ones((2, 50)))}),
    Case("layers-dense-random-over-memory", RUN + " --dense-random 100000000", 1, ("--dense-random", "--max-memory"),
         IMG),
    # --- model JSON -------------------------------------------------------------------------------
    model_case("model-syntax", '{"format": "cnn-model",', "m.json", "invalid JSON"),
    model_case("model-version", model(good_layers(), version=3), "m.json", "version", "reads versions 1 to 2"),
    model_case("model-stride-zero", model(with_layer(2, stride=0)), "layers[2].stride", "at least 1"),
    model_case("model-typo", model(with_layer(0, strid=2)), "layers[0].strid", "did you mean 'stride'"),
    model_case("model-unknown-layer", model(with_layer(1, type="relu7")), "layers[1].type", "expected one of"),
    model_case("model-missing-key", model(without(0, "out_channels")), "layers[0]", "out_channels"),
    model_case("model-wrong-type", model(with_layer(0, kernel_size="3")), "layers[0].kernel_size", "whole number"),
    model_case("model-boolean-size", model(with_layer(0, kernel_size=True)), "layers[0].kernel_size", "whole number"),
    model_case("model-null-stride", model(with_layer(0, stride=None)), "layers[0].stride"),
    model_case("model-map-shrinks-to-nothing",
               model([conv(1), *[{"type": "maxpool2d", "kernel_size": 2} for _ in range(4)]]), "layers[3]"),
    model_case("model-in-channels", model(with_layer(0, in_channels=3)), "layers[0].in_channels", "gives 1"),
    model_case("model-dense-features", model(with_layer(4, weight=np.ones((3, 20)).tolist())), "layers[4].weight",
               "(3, 18)"),
    model_case("model-groups", model(with_layer(0, groups=2)), "layers[0].groups", "must divide"),
    model_case("model-pool-padding", model(with_layer(2, padding=2)), "layers[2]", "padding"),
    model_case("model-labels-count", model(good_layers(), labels=["a", "b"]), "labels", "3"),
    model_case("model-input-size-zero", model(good_layers(), size=(0, 8)), "input.size", "at least 1"),
    model_case("model-deep-nesting", '{"layers": ' + "[" * 50 + "]" * 50 + "}", "nested deeper"),
    model_case("model-missing-weights-file", model(good_layers(), weights="nope.npz"), "weights", "nope.npz",
               "no such file"),
    model_case("model-over-max-file-size", model(good_layers()), "m.json"),
    Case("model-summary-over-max-file-size", "summary {d}/m.json --max-file-size 64", 1,
         ("m.json", "over the limit of 64 bytes", "--max-file-size"), {"m.json": model(good_layers())}),
    # --- weights ----------------------------------------------------------------------------------
    model_case("weights-not-a-zip", model(good_layers(), weights="weights.npz"), "weights.npz", "not a readable .npz",
               weights=b"PK\x03\x04 but not really a zip"),
    model_case("weights-pickle-file", model(good_layers(), weights="weights.npz"), "weights.npz", "not a readable",
               weights=pickle_bytes()),
    npz_model_case("weights-pickled-member", {"conv1.weight": pickled_npy()}, "conv1.weight", "Python objects"),
    npz_model_case("weights-forged-header", {"fc.weight": npy_claiming((100000, 100000))}, "fc.weight",
                   "header claims"),
    npz_model_case("weights-missing-array", {"fc.bias": None}, "fc.bias"),
    npz_model_case("weights-extra-array", {"fc2.weight": np.ones(3)}, "fc2.weight", "no layer uses"),
    npz_model_case("weights-wrong-shape", {"conv1.weight": np.ones((2, 1, 3, 2))}, "conv1.weight", "(2, 1, 3, 3)"),
    npz_model_case("weights-complex-dtype", {"fc.bias": np.zeros(3, complex)}, "fc.bias", "real numbers"),
    npz_model_case("weights-bool-dtype", {"fc.bias": np.zeros(3, bool)}, "fc.bias", "real numbers"),
    npz_model_case("weights-non-finite", {"fc.weight": np.full((3, 18), np.inf)}, "fc.weight", "NaN or infinite"),
    npz_model_case("weights-truncated-member", {"fc.weight": npy(np.ones((3, 18)))[:-8]}, "fc.weight"),
    Case("weights-zip-bomb", "run {d}/img.png -k sobel_x --dense {d}/w.npz --max-memory 4M", 1,
         ("w.npz", "inflated", "--max-memory"), {**IMG, "w.npz": zip_bomb()}),
    Case("weights-dense-pickled-npy", RUN + " --dense {d}/w.npy", 1, ("w.npy", "Python objects"),
         {**IMG, "w.npy": pickled_npy()}),
    Case("weights-dense-forged-header", RUN + " --dense {d}/w.npy", 1, ("w.npy", "header claims"),
         {**IMG, "w.npy": npy_claiming((10**6, 10**6))}),
    Case("weights-dense-garbage", RUN + " --dense {d}/w.npy", 1, ("w.npy", "not a readable .npy"),
         {**IMG, "w.npy": b"\x93NUMPY garbage"}),
    Case("weights-dense-header-syntax", RUN + " --dense {d}/w.npy", 1, ("w.npy", "not a readable .npy"),
         {**IMG, "w.npy": npy_header("{'descr': '<f8', 'fortran_order': False, 'shape': (3,")}),
    Case("weights-dense-header-deep", RUN + " --dense {d}/w.npy", 1, ("w.npy", "not a readable .npy"),
         {**IMG, "w.npy": npy_header("[" * 3000)}),
    Case("weights-dense-negative-shape", RUN + " --dense {d}/w.npy", 1, ("w.npy", "shape (-2, 3)", "whole numbers"),
         {**IMG, "w.npy": npy_header("{'descr': '<f8', 'fortran_order': False, 'shape': (-2, 3)}")}),
    Case("weights-lzma-member", RUN + " --dense {d}/w.npz", 1, ("w.npz", "zip method 14", "stored or deflated"),
         {**IMG, "w.npz": npz(zipfile.ZIP_LZMA, weight=DENSE_OK)}),
    Case("weights-dense-over-max-file-size", RUN + " --dense {d}/w.npy --max-file-size 500", 1,
         ("w.npy", "--max-file-size"), {**IMG, "w.npy": npy(DENSE_OK)}),
    # --- outputs ----------------------------------------------------------------------------------
    Case("output-exists", RUN + " -o {o}/old.npy", 1, ("old.npy", "already exists", "--force"),
         {**IMG, "out/old.npy": b"keep me"}),
    Case("output-is-the-input", RUN + " -o {d}/img.png --force", 1, ("img.png", "also an input"), IMG),
    Case("output-is-the-kernel-by-a-link", "run {d}/img.png -k {d}/k.json -o {o}/k.npy --force", 1,
         ("k.npy", "also an input"), {**IMG, "k.json": "[[1]]", "out/k.npy": "link:{d}/k.json"}),
    Case("output-folder-picture-exists", RUN + " -o {o}/sub", 1, ("img.png", "already exists", "--force"),
         {**IMG, "out/sub/": None, "out/sub/img.png": b"old"}),
    Case("output-in-missing-folder", RUN + " -o {o}/no/such/y.npy", 1,
         ("y.npy", "cannot write here: the folder", "/no/such does not exist; create it first"), IMG),
    Case("output-in-missing-folder-csv-on-stdout", RUN + " -f csv -o {o}/no/y.npy", 1, ("y.npy", "cannot write here"),
         IMG),
    Case("output-disk-full", RUN + " -o /dev/full", 1, ("/dev/full", "No space left on device"), IMG),
    Case("output-folder-holding-the-inputs", "run {d} -k sobel_x -o {d}/ --force", 1,
         ("img.png", "also an input of this run"), {**IMG, "img2.png": IMG["img.png"]}),
    Case("output-folder-link-to-an-input", "run {d}/img.png {d}/img2.png -k sobel_x -o {o}/ --force", 1,
         ("img.png", "also an input of this run"),
         {**IMG, "img2.png": IMG["img.png"], "out/img.png": "link:{d}/img.png"}),
    Case("option-seed-negative", RUN + " --dense-random 2 --seed -1", 2, ("--seed",), IMG),
    Case("option-values-for-a-picture", "run {d}/img.png -k sobel_x --values none -o {o}/y.png", 2,
         ("--values",), IMG),
    Case("batch-stdin-twice", "run - {d}/img.png - -k sobel_x", 2, ("stdin can be read once",), IMG),
    Case("batch-workers-zero", RUN + " --workers 0", 2, ("--workers", "0"), IMG),
    Case("batch-png-to-stdout", "run {d}/img.png {d}/img2.png -k sobel_x -f png", 2, ("-o FOLDER/",),
         {**IMG, "img2.png": IMG["img.png"]}),
    Case("batch-output-exists", "run {d}/img.png {d}/img2.png -k sobel_x -o {o}/all.jsonl", 1,
         ("all.jsonl", "already exists", "--force"), {**IMG, "img2.png": IMG["img.png"], "out/all.jsonl": b"old"}),
    Case("batch-npy-of-different-shapes", "run {d}/img.png {d}/small.png -k sobel_x -f npy", 1,
         ("small.png would give an output of shape (1, 3, 3)", "img.png gives (1, 7, 7)", "npz"),
         {**IMG, "small.png": encode(noise((8, 8)), "PNG")}),
    Case("format-unknown", RUN + " -f xml", 2, ("--format", "xml"), IMG),
    Case("view-unknown", RUN + " --view pie", 2, ("--view", "pie"), IMG),
    Case("explain-at-outside", "explain {d}/img.png -k sobel_x --at 99,0", 2, ("--at", "99,0"), IMG),
    Case("explain-at-not-numbers", "explain {d}/img.png -k sobel_x --at a,b", 2, ("--at",), IMG),
    Case("output-unknown-type", RUN + " -o {o}/y.txt", 2, ("y.txt", "--output", ".npy"), IMG),
    Case("output-earlier-inspection", "inspect {d}/img.png -k sobel_x --save {o}", 1,
         ("manifest.json", "--force"), {**IMG, "out/manifest.json": "{}"}),
    Case("output-inspection-file-in-the-way", "inspect {d}/img.png -k sobel_x --save {o}", 1,
         ("00_input.npy", "already exists"), {**IMG, "out/00_input.npy": b"not mine"}),
]


def _make_files(case: Case, inputs: Path, out: Path) -> None:
    for name, content in case.files.items():
        path = out / name[4:] if name.startswith("out/") else inputs / name
        if name.endswith("/"):
            path.mkdir(parents=True)
        elif isinstance(content, str) and content.startswith("link:"):
            path.symlink_to(content[5:].format(d=inputs))
        else:
            path.write_bytes(content.encode() if isinstance(content, str) else content)


def _snapshot(folder: Path) -> dict:
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() and not p.is_symlink() else None)
            for p in sorted(folder.rglob("*"))}


def _arguments(case: Case, inputs: Path, out: Path) -> list[str]:
    args = [part.format(d=inputs, o=out) for part in case.args.split(" ")]
    if args[0] == "run" and "-o" not in args:
        args += ["-o", str(out / "y.npy")]
    if args[0] == "inspect" and "--save" not in args:
        args += ["--save", str(out / "saved")]
    return args


def test_the_table_has_every_kind_of_case():
    """At least 60 cases, with unique ids, covering images, JSON, weights, options, layers and outputs."""
    ids = [case.id for case in CASES]
    assert len(ids) >= 60 and len(set(ids)) == len(ids)
    for kind in ("image", "kernel", "model", "weights", "option", "layers", "output"):
        assert sum(i.startswith(kind + "-") for i in ids) >= 3, kind


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_input_is_one_line_an_exit_code_and_no_output(case, tmp_path, capsys):
    """Exit code as listed, one `cnn:` line with the expected words, no traceback, the output folder untouched."""
    inputs, out = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    out.mkdir()
    _make_files(case, inputs, out)
    if case.id == "model-over-max-file-size":
        case = Case(case.id, case.args + " --max-file-size 64", case.code, case.words + ("--max-file-size",))
    before = _snapshot(out)
    code = main(_arguments(case, inputs, out))
    captured = capsys.readouterr()
    assert code == case.code, captured.err
    assert captured.err.startswith("cnn: ") and captured.err.count("\n") == 1, captured.err
    assert "Traceback" not in captured.err and "internal error" not in captured.err, captured.err
    for word in case.words:
        assert word.format(d=inputs, o=out) in captured.err, f"{word!r} not in {captured.err!r}"
    assert captured.out == ""
    assert _snapshot(out) == before, "the output folder changed"


DEEP = {"I;16": np.uint16, "I": np.int32, "F": np.float32}


@pytest.mark.parametrize("mode", ["1", "L", "LA", "P", "P+transparency", "RGB", "RGBA", "CMYK", "I;16", "I", "F"])
def test_every_pillow_mode_runs_end_to_end(mode, tmp_path, capsys):
    """Each Pillow mode a file opens in is read, run and written: exit 0, a (1, 7, 7) array saved.

    PA is what a palette with transparency becomes in memory; no writer keeps it, so its file is a
    P image with a transparency entry (test_images covers PA itself)."""
    if mode in DEEP:
        image = Image.fromarray(np.arange(256, dtype=DEEP[mode]).reshape(16, 16))
    else:
        image = noise(mode="RGBA" if "A" in mode else "RGB").convert(mode.split("+")[0])
    path = tmp_path / ("img.tif" if mode in ("CMYK", "I", "F") else "img.png")
    image.save(path, **({"transparency": 0} if "transparency" in mode else {}))
    with Image.open(path) as opened:
        assert opened.mode == mode.split("+")[0] and ("transparency" in opened.info) == ("transparency" in mode)
    code = main(["run", str(path), "-k", "sobel_x", "-o", str(tmp_path / "y.npy")])
    captured = capsys.readouterr()
    assert code == 0 and "Traceback" not in captured.err, captured.err
    assert np.load(tmp_path / "y.npy").shape == (1, 7, 7)


def test_broken_exif_and_rotated_images_run(tmp_path, capsys):
    """EXIF orientation 6 turns a 16x8 image to 8x16; an unreadable EXIF block is not an error."""
    image = noise((16, 8))
    exif = Image.Exif()
    exif[0x0112] = 6
    image.save(tmp_path / "turned.jpg", exif=exif.tobytes())
    image.save(tmp_path / "broken.jpg", exif=b"Exif\x00\x00II*\x00\xff\xff\xff\x7f")
    assert main(["run", str(tmp_path / "turned.jpg"), "-k", "identity", "--pool", "none", "-o",
                 str(tmp_path / "t.npy")]) == 0
    assert np.load(tmp_path / "t.npy").shape == (1, 14, 6)  # 8 wide, 16 tall, less the 3x3 border
    code = main(["run", str(tmp_path / "broken.jpg"), "-k", "identity", "-o", str(tmp_path / "b.npy")])
    assert code == 0, capsys.readouterr().err
    assert os.path.exists(tmp_path / "b.npy")


# --- faults of the system, in real processes ---------------------------------------------------


def _process(*args, **popen):
    """Start `python -m cnncli` with ``args``; stderr is captured."""
    env = {**os.environ, "COLUMNS": "80"}
    env.pop("CNN_DEBUG", None)
    return subprocess.Popen([sys.executable, "-m", "cnncli", *args], stderr=subprocess.PIPE, env=env, **popen)


@pytest.mark.parametrize("signal_number, code, word", [(signal.SIGINT, 130, "interrupted"),
                                                       (signal.SIGTERM, 143, "terminated")])
def test_a_signal_while_waiting_for_input_exits_cleanly(signal_number, code, word, tmp_path):
    """Ctrl-C (or SIGTERM) while reading a FIFO that no one writes: the signal's exit code, one line, no files."""
    fifo, out = tmp_path / "image.png", tmp_path / "out"
    os.mkfifo(fifo)
    out.mkdir()
    process = _process("run", str(fifo), "-k", "sobel_x", "-o", str(out / "y.npy"), stdout=subprocess.PIPE)
    time.sleep(1.0)  # start-up, then blocked in open()
    process.send_signal(signal_number)
    _, err = process.communicate(timeout=30)
    assert process.returncode == code
    assert err.decode() == f"cnn: {word}\n"
    assert os.listdir(out) == []


def test_ctrl_c_while_saving_an_inspection_leaves_nothing(tmp_path, capsys, monkeypatch):
    """Ctrl-C while the third layer file is being written: exit 130, and no folder or temporary file is left."""
    from cnncli.io import saving as files

    written = []

    real = files.write_npy

    def interrupted_after_two(stream, array):
        if len(written) == 2:
            raise KeyboardInterrupt
        written.append(array)
        real(stream, array)

    monkeypatch.setattr(files, "write_npy", interrupted_after_two)
    seed = str(Path(__file__).resolve().parents[1] / "sample_images" / "seed_5x5.png")
    code = main(["inspect", seed, "-k", "vertical_edge", "--save", str(tmp_path / "saved")])
    assert code == 130 and capsys.readouterr().err == "cnn: interrupted\n"
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("output", [["--full"], ["-o", "-", "--pool", "none", "--dtype", "float64"]],
                         ids=["tables", "npy"])
def test_a_closed_pipe_ends_quietly(output, tmp_path):
    """`cnn ... | head -c 10` on megabytes of output: the reader leaves, cnn stops with 1 and says nothing."""
    path = tmp_path / "big.png"
    noise((100, 100) if "--full" in output else (1000, 1000)).save(path)
    process = _process("run", str(path), "-k", "identity", *output, stdout=subprocess.PIPE)
    assert len(process.stdout.read(10)) == 10
    process.stdout.close()
    _, err = process.communicate(timeout=60)
    assert err == b""
    # Python's text layer does not report a write cut short by the reader leaving, so the tables
    # may end with 0; the .npy bytes are written until the pipe refuses them.
    assert process.returncode == 1 or (process.returncode == 0 and "--full" in output)


def test_a_terminal_is_never_read_as_an_image_nor_given_binary_output(tmp_path):
    """stdin that is a terminal is refused for `-`; .npy bytes are refused for a terminal stdout."""
    import pty

    leader, follower = pty.openpty()
    try:
        seed = str(Path(__file__).resolve().parents[1] / "sample_images" / "seed_5x5.png")
        reading = _process("run", "-", "-k", "sobel_x", stdin=follower, stdout=subprocess.DEVNULL)
        writing = _process("run", seed, "-k", "sobel_x", "-o", "-", stdout=follower)
        for process, words in ((reading, "cnn: stdin: is a terminal"), (writing, "cnn: stdout: is a terminal")):
            _, err = process.communicate(timeout=30)
            assert process.returncode == 1 and err.decode().startswith(words) and err.count(b"\n") == 1
    finally:
        os.close(leader)
        os.close(follower)


def test_stdin_is_read_only_up_to_the_file_size_limit(tmp_path):
    """An image piped in is refused once it passes --max-file-size, as a file would be; empty stdin too."""
    data = png(noise((64, 64)))
    for stdin, words in ((data, "cnn: stdin: holds more than the limit of 1.0 KiB for an image"), (b"", "cnn: stdin: is empty")):
        process = subprocess.run([sys.executable, "-m", "cnncli", "run", "-", "-k", "sobel_x", "--max-file-size",
                                  "1K"], input=stdin, capture_output=True, timeout=30)
        err = process.stderr.decode()
        assert process.returncode == 1 and err.startswith(words) and err.count("\n") == 1, err


def test_debug_shows_the_traceback_then_the_line(tmp_path):
    """--debug (or CNN_DEBUG=1) adds the traceback before the usual one line; the exit code is the same."""
    for args, env in ((["--debug"], {}), ([], {"CNN_DEBUG": "1"})):
        process = subprocess.run([sys.executable, "-m", "cnncli", *args, "run", str(tmp_path / "no.png"), "-k",
                                  "sobel_x"], capture_output=True, env={**os.environ, **env}, timeout=30)
        err = process.stderr.decode()
        assert process.returncode == 1 and "Traceback" in err and err.endswith("no.png: no such file\n")


def test_an_unexpected_error_is_one_line_naming_a_bug(capsys, monkeypatch):
    """A bug (here a ZeroDivisionError planted in the engine) is one `internal error` line and exit 1."""
    from cnncli.engine import ops

    def broken(*args, **kwargs):
        return 1 / 0

    monkeypatch.setattr(ops, "conv2d", broken)
    seed = str(Path(__file__).resolve().parents[1] / "sample_images" / "seed_5x5.png")
    code = main(["run", seed, "-k", "sobel_x"])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1
    assert err.startswith("cnn: internal error: ZeroDivisionError: division by zero") and "--debug" in err


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes to read-only folders")
def test_a_read_only_folder_is_an_error_and_stays_empty(tmp_path, capsys):
    """-o into a folder without write permission: 'Permission denied', exit 1, nothing left."""
    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        seed = str(Path(__file__).resolve().parents[1] / "sample_images" / "seed_5x5.png")
        code = main(["run", seed, "-k", "sobel_x", "-o", str(folder / "y.npy")])
        assert code == 1 and "Permission denied" in capsys.readouterr().err
        assert os.listdir(folder) == []
    finally:
        folder.chmod(0o755)


def test_a_folder_that_refuses_files_is_an_error_and_stays_empty(tmp_path, capsys, monkeypatch):
    """The read-only case as root sees it: creating the temporary file fails with EACCES; exit 1, nothing left."""
    from cnncli.io import targets

    def refused(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(targets, "temporary_beside", refused)
    seed = str(Path(__file__).resolve().parents[1] / "sample_images" / "seed_5x5.png")
    code = main(["run", seed, "-k", "sobel_x", "-o", str(tmp_path / "y.npy")])
    assert code == 1 and capsys.readouterr().err.endswith("y.npy: cannot write here: Permission denied\n")
    assert os.listdir(tmp_path) == []
