"""Fuzzing: every file of the corpus replayed, and a short seeded fuzz run of each reader.

A reader may raise CnnError and nothing else, as Pillow's test_fuzzers.py accepts a fixed set of
exceptions; an input that takes over SLOW seconds counts as a hang. Both run tests/fuzz/harness.py
in child processes, started together so the two cores share them: a crash or a hang in a C
decoder then fails one test instead of the whole run, and an address-space limit turns a memory
bomb into a MemoryError instead of a visit from the OOM killer.

A failing corpus file is a bug to fix in cnncli, not a file to delete. A failing seeded run is
reproduced, and its inputs written to the corpus, by the command its message gives.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
from functools import cache
from pathlib import Path

import pytest

HARNESS = Path(__file__).resolve().parent / "fuzz" / "harness.py"
CORPUS = HARNESS.parent / "corpus"
SLOW = 2.0  # seconds one input may take
SEED = 1
# Inputs per target, about a second of one core each (with the child's start-up).
RUNS = {"image": 400, "kernel": 1500, "model": 700, "npy": 1000, "npz": 1200, "dense": 600}
HAS_ONNX = importlib.util.find_spec("onnx") is not None  # the onnx target needs the optional extra
if HAS_ONNX:
    RUNS["onnx"] = 1000  # after about 1.5 s importing onnx
FILES = sorted(p for p in CORPUS.glob("*/*") if p.is_file() and not p.name.startswith(".")
               and (HAS_ONNX or p.parent.name != "onnx"))
CHILD_TIMEOUT = 120  # seconds; the harness's own watchdog ends a stuck child well before


def _command(*args: str) -> list[str]:
    return [sys.executable, str(HARNESS), "--slow", str(SLOW), "--timeout", "5", *args]


@cache
def _scratch() -> str:
    """The TMPDIR of every child: it must be empty again when they are done."""
    return tempfile.mkdtemp(prefix="cnn-test-fuzz-")


def _start(args: list[str]) -> subprocess.Popen:
    env = dict(os.environ, PYTHONHASHSEED="0", TMPDIR=_scratch())
    return subprocess.Popen(_command(*args), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


@cache
def _children() -> tuple[list[Path], dict[str, subprocess.Popen]]:
    """Start the corpus replay and every seeded run at once; the corpus as it was before them."""
    before = sorted(p for p in CORPUS.rglob("*") if p.is_file())
    runs = {target: _start([target, "--runs", str(runs), "--seed", str(SEED), "--no-save", "--no-corpus"])
            for target, runs in RUNS.items()}
    return before, runs


def _finish(child: subprocess.Popen) -> tuple[int | None, str, str]:
    try:
        out, err = child.communicate(timeout=CHILD_TIMEOUT)
    except subprocess.TimeoutExpired:
        child.kill()
        out, err = child.communicate()
        return None, out, err
    return child.returncode, out, err


@cache
def _replayed() -> dict[Path, dict]:
    """One record per corpus file; a file during which the harness died is recorded as a crash."""
    _children()
    results: dict[Path, dict] = {}
    remaining = list(FILES)
    while remaining:
        code, out, err = _finish(_start(["--replay", *map(str, remaining)]))
        for line in out.splitlines():
            if line.startswith("{"):
                record = json.loads(line)
                results[Path(record["file"])] = record
        remaining = [p for p in remaining if p not in results]
        if remaining:  # the harness died on the first file it did not report
            why = "timed out" if code is None else f"exited with {code}"
            results[remaining.pop(0)] = {"kind": "crash", "detail": f"the harness {why}: {err[-500:]}", "seconds": 0}
    return results


@pytest.mark.parametrize("path", FILES, ids=[f"{p.parent.name}/{p.name}" for p in FILES])
def test_corpus_file_raises_only_cnnerror(path):
    """Each corpus file gives a result or a CnnError, within SLOW seconds."""
    record = _replayed()[path]
    assert record["kind"] == "ok", f"{path.parent.name}/{path.name}: {record['kind']}: {record['detail']}"
    assert record["seconds"] < SLOW


@pytest.mark.parametrize("target", sorted(RUNS))
def test_seeded_fuzz_finds_nothing(target):
    """A fixed-seed run of RUNS[target] mutated inputs finds no exception but CnnError, and no hang."""
    code, out, err = _finish(_children()[1][target])
    findings = [line for line in out.splitlines() if line.startswith("finding:")]
    again = f"python tests/fuzz/harness.py {target} --runs {RUNS[target]} --seed {SEED} --no-corpus"
    assert not findings, "\n".join(findings) + f"\nto write them to the corpus: {again}"
    assert code == 0, f"the harness {'timed out' if code is None else f'exited with {code}'}: {err[-2000:]}"
    assert f"done: {target}: {RUNS[target]} inputs" in out


def test_fuzzing_leaves_no_files():
    """The runs above write nothing: not in their temporary folder, not in the corpus."""
    before, runs = _children()
    for child in runs.values():
        _finish(child)
    _replayed()
    scratch = Path(_scratch())
    left = sorted(p.name for p in scratch.iterdir())
    shutil.rmtree(scratch, ignore_errors=True)
    assert left == []
    assert sorted(p for p in CORPUS.rglob("*") if p.is_file()) == before


def test_seeds_cover_every_format_and_are_read():
    """The generated seeds are read without a finding, and the image seeds span the six formats."""
    spec = importlib.util.spec_from_file_location("fuzz_harness", HARNESS)
    harness = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = harness  # dataclasses look their module up there
    spec.loader.exec_module(harness)
    formats = set()
    for target, make in harness.SEEDS.items():
        if target == "onnx" and not HAS_ONNX:
            continue
        outcomes = [harness.run_one(target, data) for data in make()]
        assert [o.detail for o in outcomes if o.finding] == [], target
        assert any(o.feature.startswith("ok") for o in outcomes), target
        if target == "image":
            formats = {o.feature.split()[1] for o in outcomes if o.feature.startswith("ok")}
    assert formats == {"PNG", "GIF", "JPEG", "BMP", "TIFF", "WEBP"}
