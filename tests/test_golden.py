"""Chain networks give the same machine output across the graph engine: each command's stdout as
the build before graphs wrote it (tests/data/golden/, from commit 12da5ae; no timing fields).
The commands that run the digits model were written again when it was retrained to read any
picture of a digit (its "fit": "ink" input rule, on the digits-ink branch): its weights, input and
notes changed, so these now pin the retrained model's outputs through the same engine.

The graph engine alone left these bytes unchanged. Faster conv paths since then (one im2col
product for small maps, where shift-and-add summed the taps in another order) change the last
bits of some float32 values, as another BLAS would; so where the bytes differ, the documents must
still match in every key, string and shape, and every number within float32 rounding carried
through the network's sums: 1e-5 absolute (the digits model's maps and logits are of magnitude 1 to
10; its largest change, in fc1, is 1.1e-6), or 1e-5 relative for larger values."""

import json
import math
import shlex

import pytest
from conftest import ROOT

from cnncli.cli import main

GOLDEN = ROOT / "tests" / "data" / "golden"
COMMANDS = [line.split("\t") for line in (GOLDEN / "commands.tsv").read_text().splitlines()]


def _same(got, want, where="$"):
    if isinstance(want, float) or isinstance(got, float):
        assert isinstance(got, (int, float)) and math.isclose(got, want, rel_tol=1e-5, abs_tol=1e-5), where
    elif isinstance(want, dict):
        assert isinstance(got, dict) and list(got) == list(want), where
        for key in want:
            _same(got[key], want[key], f"{where}.{key}")
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), where
        for i, (a, b) in enumerate(zip(got, want)):
            _same(a, b, f"{where}[{i}]")
    else:
        assert got == want, where


def _cells(line):
    out = []
    for cell in line.split(","):
        try:
            out.append(float(cell))
        except ValueError:
            out.append(cell)
    return out


@pytest.mark.parametrize("name, command", COMMANDS, ids=[name for name, _ in COMMANDS])
def test_chain_output_is_the_same_as_the_build_before_graphs(name, command, capsysbinary, monkeypatch):
    monkeypatch.chdir(ROOT)  # the commands name sample images relative to the repository, as the files record
    assert main(shlex.split(command)) == 0
    got = capsysbinary.readouterr().out
    want = (GOLDEN / f"{name}.out").read_bytes()
    if got == want:
        return
    got_lines, want_lines = got.decode().splitlines(), want.decode().splitlines()
    assert len(got_lines) == len(want_lines)
    for a, b in zip(got_lines, want_lines):
        if "-f csv" in command:
            _same(_cells(a), _cells(b))
        else:
            _same(json.loads(a), json.loads(b))
