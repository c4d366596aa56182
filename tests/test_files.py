"""cnncli.io.saving: dense weights in (never unpickled), atomic outputs out."""

import json
import os

import numpy as np
import pytest
from badfiles import npy_claiming

from cnncli.errors import LimitError, OutputError, SpecError
from cnncli.io.saving import (
    random_dense,
    read_dense_weights,
    save_json,
    save_npy,
    write_atomic,
)
from cnncli.io.limits import Limits


def test_dense_weights_from_npy_npz_and_json(tmp_path):
    """(out, in) weights with an optional bias load from each format; 1-D weights are one unit."""
    weight, bias = np.arange(6.0).reshape(2, 3), np.array([0.5, -0.5])
    np.save(tmp_path / "w.npy", weight)
    np.savez(tmp_path / "w.npz", weight=weight, bias=bias)
    (tmp_path / "w.json").write_text(json.dumps({"weight": weight.tolist(), "bias": bias.tolist()}))
    (tmp_path / "v.json").write_text("[1, 2, 3]")
    assert np.array_equal(read_dense_weights(tmp_path / "w.npy")[0], weight)
    for name in ("w.npz", "w.json"):
        loaded_weight, loaded_bias = read_dense_weights(tmp_path / name)
        assert np.array_equal(loaded_weight, weight) and np.array_equal(loaded_bias, bias)
    assert read_dense_weights(tmp_path / "v.json")[0].shape == (1, 3)


def test_pickled_arrays_are_refused_not_loaded(tmp_path):
    """An object array (which needs pickle) is an error; allow_pickle stays False."""
    np.save(tmp_path / "evil.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(SpecError, match="evil.npy: holds Python objects, which would need unpickling"):
        read_dense_weights(tmp_path / "evil.npy")


@pytest.mark.parametrize("name, make, words", [
    ("missing.npy", None, "no such file"),
    ("w.txt", lambda p: p.write_text("1 2 3"), "expected a .npy, .npz or .json"),
    ("w.npz", lambda p: np.savez(p, W=np.ones((2, 2))), "expected 'weight' and optionally 'bias'"),
    ("w.npz", lambda p: np.savez(p, weight=np.ones((2, 3)), bias=np.ones(3)), "bias has shape (3,); expected (2,)"),
    ("w.npy", lambda p: np.save(p, np.ones((2, 2, 2))), "expected (out, in)"),
    ("w.npy", lambda p: np.save(p, np.array([[1.0, np.nan]])), "NaN or infinite"),
    ("w.npy", lambda p: np.save(p, np.array([["a"]])), "must be numbers"),
    ("w.npy", lambda p: p.write_bytes(b"\x93NUMPY garbage"), "not a readable .npy array"),
    ("w.npz", lambda p: p.write_bytes(b"PK not really a zip"), "not a readable .npz archive"),
    ("w.json", lambda p: p.write_text('{"weight": [[1, 2]], "bais": [1]}'), "did you mean 'bias'"),
])
def test_bad_weight_files_name_the_file_and_the_problem(tmp_path, name, make, words):
    """Each malformed weights file is a SpecError naming the file."""
    path = tmp_path / name
    if make is not None:
        make(path)
    with pytest.raises(SpecError) as caught:
        read_dense_weights(path)
    assert str(caught.value).startswith(str(path)) and words in str(caught.value)


def test_random_dense_is_reproducible_from_its_seed():
    """The same seed gives the same weights; another seed does not."""
    first, again, other = random_dense(3, 4, 0), random_dense(3, 4, 0), random_dense(3, 4, 1)
    assert np.array_equal(first[0], again[0]) and not np.array_equal(first[0], other[0])
    assert first[0].shape == (3, 4) and first[1].shape == (3,)


def test_a_failed_write_leaves_no_file_behind(tmp_path):
    """When writing fails half-way, neither the target nor a temporary file remains."""
    def fail(stream):
        stream.write(b"half")
        raise OSError(28, "No space left on device")

    with pytest.raises(OutputError, match="out.npy: cannot write: No space left on device"):
        write_atomic(tmp_path / "out.npy", fail)
    assert os.listdir(tmp_path) == []


def test_an_existing_file_is_kept_unless_forced_then_replaced_whole(tmp_path):
    """save_npy refuses an existing file, and with force replaces it in one step; save_json writes parseable JSON."""
    target = tmp_path / "y.npy"
    save_npy(target, np.zeros(3))
    with pytest.raises(OutputError, match="y.npy: already exists; --force replaces it"):
        save_npy(target, np.ones(3))
    assert np.load(target).tolist() == [0, 0, 0]
    save_npy(target, np.ones((2, 2), np.float32), force=True)
    assert np.load(target).tolist() == [[1, 1], [1, 1]] and sorted(os.listdir(tmp_path)) == ["y.npy"]
    save_json(tmp_path / "m.json", {"a": [[1, 2], [3, 4]]})
    assert json.loads((tmp_path / "m.json").read_text()) == {"a": [[1, 2], [3, 4]]}


def test_a_missing_folder_is_an_output_error(tmp_path):
    """Writing into a folder that does not exist names the file."""
    with pytest.raises(OutputError, match="cannot write here"):
        save_npy(tmp_path / "no" / "such" / "y.npy", np.zeros(1))


def test_new_files_get_the_umask_mode_and_keep_an_old_mode(tmp_path):
    """A new output is 0666 less the umask (not the temporary file's 0600); a replaced one keeps its mode."""
    old = os.umask(0o022)
    try:
        save_npy(tmp_path / "new.npy", np.zeros(1))
        kept = tmp_path / "kept.npy"
        kept.write_bytes(b"")
        kept.chmod(0o640)
        save_npy(kept, np.zeros(1), force=True)
    finally:
        os.umask(old)
    assert (tmp_path / "new.npy").stat().st_mode & 0o777 == 0o644
    assert kept.stat().st_mode & 0o777 == 0o640


def test_a_symlink_has_its_target_replaced(tmp_path):
    """Writing through a link replaces the file it points to and leaves the link a link."""
    target, link = tmp_path / "target.npy", tmp_path / "link.npy"
    link.symlink_to(target)
    save_npy(link, np.ones(2))
    assert link.is_symlink() and np.load(target).tolist() == [1, 1]


def test_devices_are_written_in_place_not_replaced(tmp_path):
    """/dev/null stays a device; /dev/full gives a clean error and stays a device."""
    import stat

    save_npy("/dev/null", np.ones(2))
    with pytest.raises(OutputError, match="/dev/full: cannot write: No space left on device"):
        save_npy("/dev/full", np.ones(2))
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode) and stat.S_ISCHR(os.stat("/dev/full").st_mode)


def test_an_output_not_named_npy_is_refused(tmp_path):
    """-o out.txt would hold .npy bytes under a misleading name: refused, nothing written."""
    with pytest.raises(OutputError, match="ending in .npy"):
        save_npy(tmp_path / "out.txt", np.ones(2))
    assert os.listdir(tmp_path) == []


def test_a_forged_header_claiming_a_huge_shape_is_refused_before_allocating(tmp_path):
    """A 100-byte .npy claiming 10^6 x 10^6 float64 (8 TB) is refused from its header, at once."""
    path = tmp_path / "forged.npy"
    path.write_bytes(npy_claiming((10**6, 10**6)))
    with pytest.raises(SpecError, match=r"header claims shape \(1000000, 1000000\) of float64"):
        read_dense_weights(path)


def test_npz_bombs_and_crowds_are_refused(tmp_path, monkeypatch):
    """An archive inflating past the limit, one with too many members, or a forged member, is a SpecError."""
    import zipfile

    import cnncli.io.reading as inputs

    bomb = tmp_path / "bomb.npz"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("weight.npy", bytes(1 << 24))  # 16 MiB of zeros deflates to a few KiB
    with pytest.raises(LimitError, match=r"its 1 arrays \(inflated\) would need about 32.0 MiB, over the memory limit"):
        read_dense_weights(bomb, Limits(max_memory=1 << 20))
    crowd = tmp_path / "crowd.npz"
    np.savez(crowd, **{f"a{i}": np.zeros(1) for i in range(5)})
    monkeypatch.setattr(inputs, "MAX_NPZ_MEMBERS", 4)
    with pytest.raises(SpecError, match="holds 5 arrays, over the limit of 4"):
        read_dense_weights(crowd)
    forged = tmp_path / "forged.npz"
    with zipfile.ZipFile(forged, "w") as archive:
        archive.writestr("weight.npy", npy_claiming((10**9,)))
    with pytest.raises(SpecError, match="forged.npz: weight: its header claims"):
        read_dense_weights(forged)


def test_pickled_member_of_an_npz_is_refused(tmp_path):
    """An object array inside an .npz is refused like a pickled .npy."""
    path = tmp_path / "evil.npz"
    np.savez(path, weight=np.array([{"a": 1}], dtype=object))
    with pytest.raises(SpecError, match="weight: holds Python objects"):
        read_dense_weights(path)
