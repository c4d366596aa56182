"""Hostile input found by the attack of issue "Outputs scripts can trust", input side: each case, through
main() where the CLI reaches it, ends in one `cnn:` line, the exit code, no traceback and no output.

The cases of tests/test_hostile.py's table share its rules; they are kept here, with the readers'
own tests of each defect, so that the two files change apart.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from badfiles import encode, noise

from cnncli.cli import main
from cnncli.limits import MAX_SIZE, parse_size


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
