"""Hostile input found by the attack of issue "Outputs scripts can trust", input side: each case, through
main() where the CLI reaches it, ends in one `cnn:` line, the exit code, no traceback and no output.

The cases of tests/test_hostile.py's table share its rules; they are kept here, with the readers'
own tests of each defect, so that the two files change apart.
"""

from __future__ import annotations

import io
import json
import os
import re
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from badfiles import (conv, encode, gif_of_frames, model, noise, npz, tiff_chain, tiff_directory_offset, with_zip64_end,
                      with_zip_end, zip_of_many_entries)

from cnncli.cli import main
from cnncli.errors import ImageError, LimitError, SpecError
from cnncli.io.images import gif_frames, read_image, tiff_frames
from cnncli.io.reading import load_npz, read_bytes
from cnncli.io.jsonspec import Reader, _depth_exceeds
from cnncli.io.limits import MAX_SIZE, Limits, parse_size
from cnncli.io.modelfile import MAX_LAYERS, load_model


def run(capsys, *args: str) -> tuple[int, str]:
    """main(args): the exit code and stderr, after checking the rules every failure keeps."""
    code = main([str(arg) for arg in args])
    captured = capsys.readouterr()
    if code != 0:
        assert captured.err.startswith("cnn: ") and captured.err.count("\n") == 1, captured.err
        assert "Traceback" not in captured.err and "internal error" not in captured.err, captured.err
        assert captured.out == ""
    return code, captured.err


@pytest.fixture
def image(tmp_path) -> Path:
    path = tmp_path / "img.png"
    path.write_bytes(encode(noise(), "PNG"))
    return path


# --- sizes: --max-memory and --max-file-size -------------------------------------------------------


@pytest.mark.parametrize("flag", ["--max-memory", "--max-file-size"])
@pytest.mark.parametrize("value, words", [
    ("9" * 400, ("is over 1 EiB", "(400 characters)")),
    ("1" + "0" * 5000 + "K", ("is over 1 EiB",)),
    ("1048577T", ("is over 1 EiB",)),
    ("0", ("less than 1 byte",)),
    ("0.0001K", ("less than 1 byte",)),
    ("1e9", ("expected a size",)),
], ids=["400-digits", "5000-digits", "over-1-EiB", "zero", "under-a-byte", "exponent"])
def test_a_size_out_of_range_is_a_usage_error_naming_the_flag(capsys, image, flag, value, words):
    """A size of 400 digits, over 1 EiB or of 0 bytes: exit 2, one line naming the flag and the accepted form."""
    code, err = run(capsys, "run", image, "-k", "sobel_x", flag, value)
    assert code == 2
    assert flag in err and "from 1 byte to 1 EiB" in err
    for word in words:
        assert word in err
    assert len(err) < 400


@pytest.mark.parametrize("text, size", [
    ("512M", 512 << 20), ("1.5G", 3 << 29), ("1.5GiB", 3 << 29), ("64KB", 64 << 10), ("1048576", 1 << 20),
    ("0.5K", 512), ("1.9999999999999999999999999999999999999999999999K", 2047), ("007", 7), ("1048576T", MAX_SIZE),
    (" 3 k ", 3072),
])
def test_sizes_are_parsed_exactly(text, size):
    """Integers stay integers and decimals are exact: a fraction of a byte is dropped, never rounded up by a float."""
    assert parse_size(text) == size


def test_a_size_at_the_limit_runs(capsys, image):
    """--max-memory 1048576T (1 EiB, the largest) and --max-file-size 1.5G are accepted."""
    assert run(capsys, "run", image, "-k", "sobel_x", "--max-memory", "1048576T", "--max-file-size", "1.5G",
               "-f", "json")[0] == 0


# --- reads within the memory limit; a weights file named by a model is a regular file ---------------


def model_naming(tmp_path: Path, weights: str) -> Path:
    """A model file whose weights are the file ``weights`` names (its layers need none, so any file fits)."""
    path = tmp_path / "m.json"
    path.write_text(model([conv(1), {"type": "flatten"}], weights=weights))
    return path


def weights_named(tmp_path: Path, kind: str) -> str:
    """What a model's "weights" names: a device, a link to one, a folder, or a file up a folder."""
    if kind == "link-to-device":
        os.symlink("/dev/zero", tmp_path / "zero.npz")
        return "zero.npz"
    if kind == "folder":
        (tmp_path / "folder.npz").mkdir()
        return "folder.npz"
    if kind == "up":
        return "../w.npz"
    return "/dev/zero"


@pytest.mark.parametrize("kind, words", [
    ("device", ("'/dev/zero' is an absolute path; expected a file name relative to the model file's folder",)),
    ("link-to-device", ("'zero.npz' leads out of the model file's folder through a symbolic link",)),
    ("folder", ("folder.npz: is a folder",)),
    ("up", ("'../w.npz' goes up a folder (..); expected a file inside the model file's folder",)),
])
def test_a_model_naming_a_device_or_folder_as_weights_is_refused_before_reading(capsys, tmp_path, image, kind, words):
    """"weights": "/dev/zero" (or a link to it, or a folder) is one line naming the model's weights field, at
    once: a model file names files inside its own folder only, as for "graph" and "labels"."""
    path = model_naming(tmp_path, weights_named(tmp_path, kind))
    start = time.perf_counter()
    code, err = run(capsys, "run", image, "-m", path, "--max-memory", "50M")
    assert time.perf_counter() - start < 2.0  # it read 1 GiB of zeros before
    assert code == 1 and "m.json: weights: " in err
    for word in words:
        assert word in err


def test_a_model_naming_a_fifo_as_weights_is_refused_without_waiting_for_a_writer(tmp_path, image):
    """A FIFO named as weights, with no writer: refused at once (it was opened, and would block, before)."""
    os.mkfifo(tmp_path / "pipe.npz")
    path = model_naming(tmp_path, "pipe.npz")
    result = subprocess.run([sys.executable, "-m", "cnncli", "run", str(image), "-m", str(path)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert result.stderr == f"cnn: {path}: weights: {tmp_path / 'pipe.npz'}: is a named pipe (FIFO); expected a .npz " \
                            "weights file (a regular file)\n"


def test_a_device_named_on_the_command_line_is_read_only_up_to_the_memory_limit(capsys):
    """`cnn run /dev/zero --max-memory 50M`: refused after 50 MiB, naming --max-memory (not the 256 MiB file limit)."""
    code, err = run(capsys, "run", "/dev/zero", "-k", "sobel_x", "--max-memory", "50M")
    assert code == 1
    assert err == "cnn: /dev/zero: holds more than the memory limit of 50.0 MiB for reading it whole " \
                  "(--max-memory raises it)\n"


def test_the_lower_of_the_two_limits_is_the_one_named(capsys, tmp_path):
    """A 3 MB file: over --max-memory 2M names --max-memory; over --max-file-size 2M names that."""
    path = tmp_path / "big.png"
    path.write_bytes(bytes(3_000_000))
    for flag in ("--max-memory", "--max-file-size"):
        code, err = run(capsys, "run", path, "-k", "sobel_x", flag, "2M")
        assert code == 1 and "big.png: is 2.9 MiB (3,000,000 bytes), over the " in err and f"({flag} raises it)" in err


def test_reading_a_device_holds_no_more_than_the_limit():
    """read_bytes of /dev/zero under a 16 MiB memory limit: LimitError for max_memory, and under 40 MiB allocated."""
    import tracemalloc

    tracemalloc.start()
    try:
        with pytest.raises(LimitError) as caught:
            read_bytes("/dev/zero", kind="weights", error=SpecError, expected="weights", limits=Limits(max_memory=16 << 20))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert caught.value.limit == "max_memory"
    assert peak < 40 << 20, peak


@pytest.mark.skipif(not os.path.exists("/proc/self/pagemap"), reason="needs Linux's /proc")
def test_a_regular_file_that_says_it_is_empty_is_still_read_only_up_to_the_limit():
    """/proc/self/pagemap is a 'regular' file of size 0 that holds gigabytes: it is read up to the limit, no further."""
    with pytest.raises(LimitError, match="holds more than the limit of 1.0 MiB"):
        read_bytes("/proc/self/pagemap", kind="image", error=SpecError, expected="an image file",
                   limits=Limits(max_file_size=1 << 20))


def test_stdin_is_read_only_up_to_the_memory_limit():
    """An image piped in is refused once it passes --max-memory, when that is below the file-size limit."""
    result = subprocess.run([sys.executable, "-m", "cnncli", "run", "-", "-k", "sobel_x", "--max-memory", "1M"],
                            input=bytes(3 << 20), capture_output=True, timeout=60)
    assert result.returncode == 1
    assert result.stderr.decode() == "cnn: stdin: holds more than the memory limit of 1.0 MiB for reading it whole " \
                                     "(--max-memory raises it)\n"


def test_kernel_and_dense_files_are_read_within_the_memory_limit(capsys, tmp_path, image):
    """Kernel and dense weight files over --max-memory (below their file-size limits) are refused naming it."""
    kernel = tmp_path / "k.json"
    kernel.write_text("[[1]]" + " " * (2 << 20))
    dense = tmp_path / "w.npy"
    dense.write_bytes(bytes(3 << 20))
    ends = ("over the 160.0 KiB that the memory limit of 2.5 MiB leaves for parsing it (JSON takes about 16 bytes a "
            "byte) (--max-memory raises it)\n",
            "over the memory limit of 2.5 MiB for reading it whole (--max-memory raises it)\n")
    for (args, size), end in zip(((["-k", kernel], "k.json: is 2.0 MiB"),
                                  (["-k", "sobel_x", "--dense", dense], "w.npy: is 3.0 MiB")), ends):
        code, err = run(capsys, "run", image, *args, "--max-memory", "2.5M")
        assert code == 1 and size in err, err
        assert err.endswith(end), err


# --- .npz: the zip's directory is sized from its end record before zipfile reads it -----------------

WEIGHTS = {"weight": np.ones((2, 49)), "bias": np.zeros(2)}  # dense weights for sobel_x on 16x16, max-pooled


def load(data: bytes) -> dict:
    return load_npz(data, "w.npz", SpecError, 1 << 30)


@pytest.mark.parametrize("data, words", [
    (with_zip64_end(npz(**WEIGHTS), entries=1_000_000), "holds 1,000,000 arrays, over the limit of 1,024 (as its zip"),
    (with_zip_end(npz(**WEIGHTS), entries=65_000), "holds 65,000 arrays"),
    (with_zip64_end(npz(**WEIGHTS), entries=1_000_000, comment=b"PK a comment"), "holds 1,000,000 arrays"),
    (with_zip_end(npz(**WEIGHTS), entries=65_000, comment=b"a comment after the end record"), "holds 65,000 arrays"),
    (with_zip_end(npz(**WEIGHTS), size=50 << 20), "directory is 52,428,800 bytes, over the 1,048,576"),
    (with_zip64_end(npz(**WEIGHTS), size=1 << 40), "directory is 1,099,511,627,776 bytes"),
], ids=["zip64-million", "classic-65000", "zip64-with-comment", "classic-with-comment", "directory-50MB",
        "zip64-directory-1TB"])
def test_a_forged_end_record_is_refused_before_zipfile_reads_the_directory(data, words):
    """A small .npz whose end record (classic or ZIP64, with a comment after it or not) claims too many entries or
    too large a directory: refused from the claim, whatever follows."""
    assert len(data) < 2000
    with pytest.raises(SpecError, match=re.escape(words)):
        load(data)


def test_a_real_zip_of_1025_members_is_refused_from_its_end_record(monkeypatch):
    """1,025 arrays (written by zipfile): refused with the count, and zipfile never opens it."""
    import zipfile

    data = npz(**{f"a{i}": np.zeros(1) for i in range(1025)})

    def not_opened(*args, **kwargs):
        raise AssertionError("zipfile read the directory")

    monkeypatch.setattr(zipfile, "ZipFile", not_opened)
    with pytest.raises(SpecError, match="holds 1,025 arrays, over the limit of 1,024"):
        load(data)


def test_a_directory_of_200000_entries_is_refused_fast_and_small():
    """A real zip listing 200,000 entries (ZIP64): refused in well under a second, allocating almost nothing
    (zipfile built 200,000 ZipInfo objects, about 100 MB, before the count was checked)."""
    import tracemalloc

    data = zip_of_many_entries(200_000)
    tracemalloc.start()
    start = time.perf_counter()
    try:
        with pytest.raises(SpecError, match="holds 200,000 arrays"):
            load(data)
        elapsed, peak = time.perf_counter() - start, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert elapsed < 0.5 and peak < 1 << 20, (elapsed, peak)


@pytest.mark.parametrize("data", [
    with_zip64_end(npz(**WEIGHTS)), with_zip64_end(npz(**WEIGHTS), comment=b"PK\x06\x07 PK a comment"),
    with_zip_end(npz(**WEIGHTS), comment=b"made by hand"), npz(**{f"a{i}": np.zeros(1) for i in range(1024)}),
], ids=["zip64", "zip64-with-comment", "comment", "1024-members"])
def test_good_archives_with_zip64_records_or_comments_still_load(data):
    """A ZIP64 end record, a comment after the end record, or exactly 1,024 members: read as before."""
    arrays = load(data)
    assert len(arrays) in (2, 1024)


def test_a_forged_npz_through_the_command_line(capsys, tmp_path, image):
    """--dense w.npz whose end record claims a million arrays: one line naming the file, exit 1."""
    path = tmp_path / "w.npz"
    path.write_bytes(with_zip64_end(npz(**WEIGHTS), entries=1_000_000))
    assert run(capsys, "run", image, "-k", "sobel_x", "--dense", path) == (
        1, f"cnn: {path}: holds 1,000,000 arrays, over the limit of 1,024 (as its zip directory's end record says)\n")


# --- frames: counted in linear time, up to MAX_FRAMES ------------------------------------------------

TIFF_KINDS = [(False, "<"), (False, ">"), (True, "<")]  # Pillow reads no big-endian BigTIFF ("MM\0+")
TIFF_IDS = ["classic-II", "classic-MM", "bigtiff-II"]


@pytest.mark.parametrize("bigtiff, order", TIFF_KINDS, ids=TIFF_IDS)
def test_a_tiff_of_50000_frames_is_read_in_well_under_a_second(bigtiff, order):
    """50,000 chained 1x1 frame directories: the first frame in under a second (31 s before: Pillow's
    n_frames looks each new offset up in a list), noted as over 10,000 frames."""
    data = tiff_chain(50_000, bigtiff, order)
    start = time.perf_counter()
    loaded = read_image("t.tif", data)
    elapsed = time.perf_counter() - start
    assert elapsed < 1.0, f"{elapsed:.2f} s"  # about 0.01 s on the project's machine
    assert loaded.notes[0] == "first of over 10,000 frames" and loaded.array.ravel().tolist() == [128]


@pytest.mark.parametrize("bigtiff, order", TIFF_KINDS + [(True, ">")], ids=TIFF_IDS + ["bigtiff-MM"])
def test_tiff_frames_are_counted_in_both_byte_orders_and_a_cycle_ends(bigtiff, order):
    """3 directories: 3 frames; a last one pointing back to the second or to itself ends the chain there, as
    Pillow's reader ends it (a cycle of 50,000 is counted at once)."""
    assert tiff_frames(tiff_chain(3, bigtiff, order)) == 3
    assert tiff_frames(tiff_chain(3, bigtiff, order, last_next=tiff_directory_offset(1, bigtiff))) == 3
    assert tiff_frames(tiff_chain(3, bigtiff, order, last_next=tiff_directory_offset(2, bigtiff))) == 3
    looped = tiff_chain(5000, bigtiff, order, last_next=tiff_directory_offset(0, bigtiff))
    start = time.perf_counter()
    assert tiff_frames(looped) == 5000 and time.perf_counter() - start < 0.5


def test_a_cyclic_tiff_reads_its_first_frame(capsys, tmp_path):
    """Through the command line: a TIFF whose last directory points back to the first runs, noting 3 frames."""
    path = tmp_path / "loop.tif"
    path.write_bytes(tiff_chain(3, last_next=tiff_directory_offset(0)))
    code = main(["inspect", str(path), "-k", "[[1]]", "--pool", "none"])
    captured = capsys.readouterr()
    assert code == 0 and captured.err == "", captured.err
    assert "first of 3 frames" in captured.out


@pytest.mark.parametrize("frames", [2, 3, 7])
def test_the_tiff_and_gif_counts_are_pillows(frames):
    """On files Pillow writes, the walked counts equal Pillow's n_frames."""
    from PIL import Image

    images = [noise((4 + i, 3), seed=i) for i in range(frames)]
    for fmt in ("TIFF", "GIF"):
        data = encode(images[0], fmt, save_all=True, append_images=images[1:])
        with Image.open(io.BytesIO(data)) as im:
            assert (tiff_frames(data) if fmt == "TIFF" else gif_frames(data)) == im.n_frames == frames


def test_every_cut_in_a_later_tiff_directory_is_an_image_error():
    """A 3-frame TIFF cut anywhere in the second or third directory, or pointing past its end: an ImageError
    naming the frame (Pillow's walk let some through with a wrong count and 'Corrupt EXIF' notes)."""
    data = tiff_chain(3)
    for cut in range(tiff_directory_offset(1), tiff_directory_offset(3)):
        with pytest.raises(ImageError, match=r"cannot decode the TIFF: frame [23]'s directory"):
            read_image("t.tif", data[:cut])
    with pytest.raises(ImageError, match="past the end of the file"):
        read_image("t.tif", tiff_chain(2, last_next=1 << 30))


def test_a_first_tiff_directory_cut_short_is_left_to_pillow():
    """A first directory claiming more entries than the file holds: read as far as Pillow can, as before (its
    warnings become notes), not refused by the frame count; one frame."""
    data = bytearray(tiff_chain(1))
    struct.pack_into("<H", data, 8, 20)  # 20 entries claimed, 9 present
    assert tiff_frames(bytes(data)) == 1
    loaded = read_image("t.tif", bytes(data))
    assert loaded.array.ravel().tolist() == [128] and not any("frames" in note for note in loaded.notes)


@pytest.mark.parametrize("extension", [b"\x21\xf9\x00", b"\x21\xfe\x00", b"\x21\x01\x00",
                                       b"\x21\xf9\x00\x05\x00\x00\x00\x00\x00\x00"],
                         ids=["empty-control", "empty-comment", "empty-plain-text", "empty-control-then-blocks"])
def test_a_gif_extension_that_starts_empty_is_walked_as_pillow_walks_it(extension):
    """An extension whose first sub-block is the empty one: Pillow reads on past it (a comment's excepted), so
    what follows is counted as Pillow counts it (found by comparing the two on mutated files)."""
    from PIL import Image

    data = gif_of_frames(8)
    data = data[:34] + extension + data[34:]  # after the first frame
    with Image.open(io.BytesIO(data)) as im:
        assert gif_frames(data) == im.n_frames


def test_a_bigtiff_directory_claiming_2_to_the_40_entries_is_refused_at_once():
    """Pillow reads the first directory entry by entry while they last (1.2 s for 19 MB); over 65,535 is refused."""
    data = b"II" + struct.pack("<HHHQ", 43, 8, 0, 16) + struct.pack("<Q", 1 << 40) + bytes(20) * 100_000
    start = time.perf_counter()
    with pytest.raises(ImageError, match="claims 1,099,511,627,776 entries; expected at most 65,535"):
        read_image("b.tif", data)
    assert time.perf_counter() - start < 0.5


def test_a_gif_of_a_million_frames_is_read_in_well_under_a_second():
    """1,000,000 frames of 15 bytes: the first frame at once (2.8 s before, and a minute for 256 MB)."""
    data = gif_of_frames(1_000_000)
    start = time.perf_counter()
    loaded = read_image("g.gif", data)
    assert time.perf_counter() - start < 1.0
    assert loaded.notes[0] == "first of over 10,000 frames"
    assert read_image("g.gif", gif_of_frames(10_000)).notes[0] == "first of 10,000 frames"


@pytest.mark.parametrize("cut", [1, 5, 10, 11], ids=["in-descriptor", "in-descriptor-5", "before-code-size",
                                                     "no-data"])
def test_a_gif_cut_in_a_later_frame_header_is_an_image_error(cut):
    """A GIF whose third frame's descriptor or code size is cut off: an ImageError naming frame 3."""
    data = gif_of_frames(3)[:-1]
    third = len(data) - 15
    if cut < 11:
        with pytest.raises(ImageError, match="cannot decode the GIF: frame 3"):
            read_image("g.gif", data[:third + cut])
    else:  # its sub-blocks may end with the file, as Pillow reads them
        assert read_image("g.gif", data[:third + cut]).notes[0] == "first of 3 frames"


def test_an_apng_claiming_millions_of_frames_is_noted_as_over_the_count():
    """APNG states its frame count (Pillow does not walk it): a claim of 2**31 - 1 reads as 'over 10,000'."""
    images = [noise(seed=i) for i in range(2)]
    data = bytearray(encode(images[0], "PNG", save_all=True, append_images=images[1:]))
    at = data.index(b"acTL")
    data[at + 4:at + 8] = struct.pack(">I", (1 << 31) - 1)
    data[at + 12:at + 16] = struct.pack(">I", zlib.crc32(bytes(data[at:at + 12])))
    assert read_image("a.png", bytes(data)).notes[0] == "first of over 10,000 frames"


# --- text from kernel and model files: valid Unicode, and printable where people see it -------------

SURROGATE, CLEAR_SCREEN, RIGHT_TO_LEFT = "\ud800", "\u001b[2J", "\u202e"  # json.dumps writes them as \u escapes


def good_model(**top) -> dict:
    layers = [conv(1, name="conv1"), {"type": "flatten"},
              {"type": "dense", "name": "fc", "out_features": 2, "weight": np.ones((2, 196)).tolist(), "bias": [0, 0]}]
    return {"format": "cnn-model", "version": 1, "name": "m", "input": {"size": [16, 16]}, "labels": ["a", "b"],
            "layers": layers, **top}


KERNEL_TEXT_CASES = [
    ({"name": SURROGATE}, "name: holds a lone surrogate '\\ud800' at character 0, which is not valid Unicode"),
    ({"name": "ok" + CLEAR_SCREEN}, "name: holds '\\x1b' at character 2; expected printable text"),
    ({"name": ""}, "name: is empty"),
    ({"description": "a\ud800b"}, "description: holds a lone surrogate '\\ud800' at character 1"),
    ({"description": "two\nlines"}, "description: holds '\\n' at character 3"),
    ({"name": "abc" + RIGHT_TO_LEFT}, "name: holds '\\u202e' at character 3"),
    ({"padding_mode": SURROGATE}, "padding_mode: holds a lone surrogate"),
]


@pytest.mark.parametrize("fields, words", KERNEL_TEXT_CASES, ids=["name-surrogate", "name-escape", "name-empty",
                                                                  "description-surrogate", "description-newline",
                                                                  "name-bidi", "padding-mode-surrogate"])
@pytest.mark.parametrize("output", ["table", "csv", "json"])
def test_kernel_text_that_no_output_can_show_is_refused_naming_the_field(capsys, tmp_path, image, fields, words, output):
    """A kernel name or description with a lone surrogate (every output crashed with UnicodeEncodeError) or escape
    codes (written raw into tables, CSV and charts): one line naming the field, exit 1, in every format."""
    kernel = tmp_path / "k.json"
    kernel.write_text(json.dumps({"weights": [[1]], **fields}))  # ASCII: \ud800 and \u001b as JSON escapes
    code, err = run(capsys, "run", image, "-k", kernel, "-f", output)
    assert code == 1 and err.startswith(f"cnn: {kernel}: {words}"), err


MODEL_TEXT_CASES = [
    ({"name": SURROGATE}, "name: holds a lone surrogate"),
    ({"name": CLEAR_SCREEN}, "name: holds '\\x1b' at character 0"),
    ({"description": SURROGATE}, "description: holds a lone surrogate"),
    ({"description": "tab\there"}, "description: holds '\\t' at character 3"),
    ({"labels": ["a", SURROGATE]}, "labels[1]: holds a lone surrogate"),
    ({"labels": [CLEAR_SCREEN, "b"]}, "labels[0]: holds '\\x1b'"),
    ({"labels": ["a", ""]}, "labels[1]: is empty"),
    ({"weights": "w" + CLEAR_SCREEN + ".npz"}, "weights: holds '\\x1b' at character 1"),
    ({"metadata": {"note": SURROGATE}}, "metadata.note: holds a lone surrogate"),
    ({"metadata": {"list": [1, {SURROGATE: 2}]}}, "metadata.list[1]['\\ud800']: holds a lone surrogate"),
]


@pytest.mark.parametrize("fields, words", MODEL_TEXT_CASES, ids=[
    "name-surrogate", "name-escape", "description-surrogate", "description-tab", "label-surrogate", "label-escape",
    "label-empty", "weights-escape", "metadata-surrogate", "metadata-key-surrogate"])
def test_model_text_that_no_output_can_show_is_refused_naming_the_field(capsys, tmp_path, image, fields, words):
    """A model's name, description, labels[i], weights or metadata with a lone surrogate or an escape code: one
    line naming the field's path, exit 1."""
    path = tmp_path / "m.json"
    path.write_text(json.dumps(good_model(**fields)))
    code, err = run(capsys, "run", image, "-m", path, "-f", "csv")
    assert code == 1 and err.startswith(f"cnn: {path}: {words}"), err


def test_a_layer_name_with_a_surrogate_or_escape_is_refused_naming_it(capsys, tmp_path, image):
    """Layer names were already required printable; a lone surrogate is refused too, naming layers[0].name."""
    for name, words in ((SURROGATE, "holds a lone surrogate"), (CLEAR_SCREEN, "holds '\\x1b'")):
        document = good_model()
        document["layers"][0]["name"] = name
        path = tmp_path / "m.json"
        path.write_text(json.dumps(document))
        code, err = run(capsys, "run", image, "-m", path)
        assert code == 1 and err.startswith(f"cnn: {path}: layers[0].name: {words}"), err


def test_printable_text_in_any_script_is_kept(capsys, tmp_path, image):
    """Names and labels in other scripts, with emoji and spaces, are printable: they run and reach the CSV as given."""
    path = tmp_path / "m.json"
    path.write_text(json.dumps(good_model(name="Zürich 🙂", description="Ünïcode — fine", labels=["猫", "chien 🐕"])))
    code = main(["run", str(image), "-m", str(path), "-f", "csv", "--values", "final"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "猫" in captured.out and "chien 🐕" in captured.out
    kernel = tmp_path / "k.json"
    kernel.write_text(json.dumps({"weights": [[1]], "name": "κ 1", "description": "größer"}))
    assert main(["run", str(image), "-k", str(kernel), "-f", "csv"]) == 0
    assert "κ 1" in capsys.readouterr().out


def test_the_reader_checks_unicode_in_every_string_it_reads():
    """Reader.string refuses a lone surrogate for any field; Reader.text also refuses what is not printable."""
    read = Reader("f.json")
    for method in (read.string, read.text):
        with pytest.raises(SpecError, match=re.escape("f.json: a.b: holds a lone surrogate '\\udfff' at character 2")):
            method("ok\udfff", "a.b")
    assert read.string("tab\t", "x") == "tab\t" and read.text("é 🙂", "x") == "é 🙂"
    with pytest.raises(SpecError, match="holds '\\\\x7f'"):
        read.text("del\x7f", "x")


# --- model size: at most MAX_LAYERS layers, refused before any is built ------------------------------


def relu_model(layers: int) -> str:
    return json.dumps({"format": "cnn-model", "version": 1, "input": {"size": [4, 4]}, "layers": [{"type": "relu"}] * layers})


def test_300000_layers_are_refused_quickly_and_within_modest_memory(tmp_path):
    """A model file of 300,000 relu layers (5 MB) is refused naming `layers` and the limit, in about a second and
    under 150 MB, all of it parsing the JSON (it ended in 'internal error: SystemError' after 5.8 GB)."""
    import tracemalloc

    path = tmp_path / "many.json"
    path.write_text(relu_model(300_000))
    tracemalloc.start()
    start = time.perf_counter()
    try:
        with pytest.raises(SpecError) as caught:
            load_model(str(path))
        elapsed, peak = time.perf_counter() - start, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert str(caught.value) == f"{path}: layers: has 300,000 layers, over the limit of 10,000 for a model file"
    assert elapsed < 5.0 and peak < 150 << 20, (elapsed, peak)  # 1.5 s and 80 MB traced here


def test_10000_layers_are_accepted(tmp_path):
    """MAX_LAYERS layers load: real networks (EfficientNet-B7 exported node by node, about 2,000) fit."""
    path = tmp_path / "many.json"
    path.write_text(relu_model(MAX_LAYERS))
    assert MAX_LAYERS == 10_000
    assert len(load_model(str(path)).network.layers) == MAX_LAYERS
    (tmp_path / "more.json").write_text(relu_model(MAX_LAYERS + 1))
    with pytest.raises(SpecError, match="has 10,001 layers, over the limit of 10,000"):
        load_model(str(tmp_path / "more.json"))


def test_a_model_over_the_layer_limit_through_the_command_line(capsys, tmp_path, image):
    """`cnn run -m` and `cnn summary` on 20,000 layers: one line naming the file and `layers`, exit 1."""
    path = tmp_path / "many.json"
    path.write_text(relu_model(20_000))
    for args in (["run", image, "-m", path], ["summary", path]):
        assert run(capsys, *args) == (1, f"cnn: {path}: layers: has 20,000 layers, over the limit of 10,000 for a "
                                         "model file\n")


def naive_depth_exceeds(text: str, limit: int) -> bool:
    """The loop over characters that jsonspec used: the oracle for its vectorised check."""
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
            if deepest > limit:
                return True
        elif char in "]}":
            depth -= 1
    return False


TOKENS = st.sampled_from(list("[]{} ,1é")) | st.text(alphabet='[]{}"\\ a\n', max_size=6).map(json.dumps)
UNTERMINATED = st.text(alphabet='[]{}"\\ a', max_size=6).map(lambda t: '"' + t.replace('"', "").replace("\\", ""))


@settings(max_examples=400, deadline=None)
@given(st.lists(TOKENS, max_size=30).map("".join), st.just("") | UNTERMINATED, st.integers(0, 6))
def test_the_nesting_check_is_the_loop_it_replaced(text, tail, limit):
    """_depth_exceeds (vectorised) agrees with the character loop on brackets among strings holding brackets,
    quotes and escapes, with an unterminated string at the end or not. (Outside strings, where JSON allows no
    backslash, the two may read one differently; json.loads refuses it either way.)"""
    assert _depth_exceeds(text + tail, limit) == naive_depth_exceeds(text + tail, limit)


def test_the_nesting_check_is_fast_on_large_text():
    """A 5 MB model text and 100,000 nested brackets are checked in well under a second each."""
    for text, deep in ((relu_model(300_000), False), ("[" * 100_000 + "]" * 100_000, True)):
        start = time.perf_counter()
        assert _depth_exceeds(text, 32) == deep
        assert time.perf_counter() - start < 1.0
