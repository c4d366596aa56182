"""cnncli.io.paths: the image files that files, folders and globs name; loops of links end, each file once."""

from __future__ import annotations

import glob
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cnncli.errors import CnnError, UsageError
from cnncli.io.paths import IMAGE_SUFFIXES, expand_images, folder_images, glob_files


def touch(root: Path, *names: str) -> None:
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")


def link(root: Path, name: str, target: str) -> None:
    (root / name).parent.mkdir(parents=True, exist_ok=True)
    os.symlink(target, root / name)


def names(paths: list[str], root: Path) -> list[str]:
    return [os.path.relpath(path, root) for path in paths]


def python_glob(pattern: str) -> list[str]:
    """What glob.glob gave, as the CLI used it: files only, sorted."""
    return sorted(path for path in glob.glob(pattern, recursive=True) if os.path.isfile(path))


# --- links ----------------------------------------------------------------------------------------


def test_a_link_to_its_own_folder_ends_and_gives_each_image_once(tmp_path):
    """`ln -s . d/x` inside d: 'd/**/*.png' ends at once and gives each image once, by its plain name."""
    touch(tmp_path, "d/a.png", "d/sub/b.png")
    link(tmp_path, "d/x", ".")
    assert len(python_glob(str(tmp_path / "d" / "**" / "*.png"))) > 2  # what the glob module does: repeats
    start = time.perf_counter()
    found = glob_files(str(tmp_path / "d" / "**" / "*.png"))
    assert time.perf_counter() - start < 1.0
    assert names(found, tmp_path) == ["d/a.png", "d/sub/b.png"]


def test_a_link_to_a_parent_folder_ends(tmp_path):
    """d/sub/up -> .. makes a loop through two folders; each image comes once."""
    touch(tmp_path, "d/a.png", "d/sub/b.png")
    link(tmp_path, "d/sub/up", "..")
    assert names(glob_files(str(tmp_path / "d" / "**" / "*.png")), tmp_path) == ["d/a.png", "d/sub/b.png"]
    assert names(glob_files(str(tmp_path / "d" / "**")), tmp_path) == ["d/a.png", "d/sub/b.png"]


def test_two_links_to_one_folder_give_its_images_once_under_the_first_name(tmp_path):
    """d/l1 and d/l2 both lead to shared/: its images come once, under d/l1 (first in sorted order)."""
    touch(tmp_path, "shared/s.png", "shared/deep/t.png", "d/a.png")
    link(tmp_path, "d/l2", "../shared")
    link(tmp_path, "d/l1", "../shared")
    expected = ["d/a.png", "d/l1/deep/t.png", "d/l1/s.png"]
    assert names(glob_files(str(tmp_path / "d" / "**" / "*.png")), tmp_path) == expected
    assert names(glob_files(str(tmp_path / "d" / "*" / "*.png")), tmp_path) == ["d/l1/s.png"]


def test_many_links_to_the_next_folder_stay_linear(tmp_path):
    """A chain of 20 folders, each with two links to the next: 2**20 paths, but each folder is entered once."""
    for level in range(20):
        touch(tmp_path, f"c{level}/img{level}.png")
        link(tmp_path, f"c{level}/a", f"../c{level + 1}")
        link(tmp_path, f"c{level}/b", f"../c{level + 1}")
    (tmp_path / "c20").mkdir()
    start = time.perf_counter()
    found = glob_files(str(tmp_path / "c0" / "**" / "*.png"))
    assert time.perf_counter() - start < 2.0
    assert len(found) == 20
    assert names(found[:2], tmp_path) == ["c0/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/img19.png",
                                          "c0/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/img18.png"]


def test_a_link_to_a_file_gives_the_file_once(tmp_path):
    """z.png -> a.png and a hard link h.png: one image, named a.png, in a folder and in a glob."""
    touch(tmp_path, "d/a.png", "d/b.png", "outside.png")
    link(tmp_path, "d/z.png", "a.png")
    os.link(tmp_path / "d" / "a.png", tmp_path / "d" / "h.png")
    link(tmp_path, "d/y.png", "../outside.png")
    expected = ["d/a.png", "d/b.png", "d/y.png"]
    assert names(folder_images(str(tmp_path / "d")), tmp_path) == expected
    assert names(glob_files(str(tmp_path / "d" / "*.png")), tmp_path) == expected


def test_a_broken_link_is_no_file(tmp_path):
    """A link to nothing is not matched, as the glob module with isfile did not keep it."""
    touch(tmp_path, "d/a.png")
    link(tmp_path, "d/gone.png", "nowhere.png")
    assert names(glob_files(str(tmp_path / "d" / "*.png")), tmp_path) == ["d/a.png"]
    assert names(folder_images(str(tmp_path / "d")), tmp_path) == ["d/a.png"]


def test_files_repeat_across_arguments_but_not_within_one(tmp_path):
    """The same folder given twice gives its images twice (the user asked twice); a glob's repeats go."""
    touch(tmp_path, "d/a.png")
    folder = str(tmp_path / "d")
    assert names(expand_images([folder, folder])[0], tmp_path) == ["d/a.png", "d/a.png"]
    assert names(expand_images([str(tmp_path / "d" / "**" / "**" / "*.png")])[0], tmp_path) == ["d/a.png"]


# --- the glob module's rules, kept -----------------------------------------------------------------

TREE = ("d/a.png", "d/B.png", "d/a-b/c.png", "d/a.b/e.png", "d/a/f.png", "d/10.png", "d/9.png", "d/x.txt",
        "d/.h.png", "d/.hid/g.png", "d/sub/deeper/h.png", "d/sub/.i.png", "d/sub/j.jpg", "e/k.png", "top.png")
PATTERNS = ("d/*.png", "d/**/*.png", "d/**", "**/*.png", "**", "d/*/*.png", "d/**/deeper/*.png", "d/**/.*",
            "d/.*", "d/.hid/*.png", "d/[aB]*", "d/?.png", "*/sub/**/*", "d/**/*.jpg", "./d/*.png", "d//*.png",
            "d/*/", "missing/**/*.png", "d/a*/*", "**/sub/**")


@pytest.mark.parametrize("pattern", PATTERNS)
def test_without_links_a_glob_gives_what_the_glob_module_gives(tmp_path, monkeypatch, pattern):
    """On a tree without links, the files and their order are glob.glob's (recursive, files only, sorted)."""
    touch(tmp_path, *TREE)
    monkeypatch.chdir(tmp_path)
    assert glob_files(pattern) == python_glob(pattern)
    absolute = str(tmp_path / pattern)
    assert glob_files(absolute) == python_glob(absolute)


def test_hidden_names_match_only_a_dotted_part(tmp_path):
    """'*.png' and '**' pass over .h.png and .hid/; '.*.png' and a plain '.hid' reach them."""
    touch(tmp_path, "d/a.png", "d/.h.png", "d/.hid/g.png")
    d = tmp_path / "d"
    assert names(glob_files(str(d / "*.png")), tmp_path) == ["d/a.png"]
    assert names(glob_files(str(d / "**" / "*.png")), tmp_path) == ["d/a.png"]
    assert names(glob_files(str(d / ".*.png")), tmp_path) == ["d/.h.png"]
    assert names(glob_files(str(d / ".hid" / "*.png")), tmp_path) == ["d/.hid/g.png"]
    assert names(folder_images(str(d)), tmp_path) == ["d/.h.png", "d/a.png"]  # a folder gives all its images


def test_double_star_at_the_start_middle_and_end(tmp_path, monkeypatch):
    """'**' matches zero or more folders wherever it stands; at the end it matches every file below."""
    touch(tmp_path, "a.png", "d/b.png", "d/sub/c.png", "d/sub/x.txt")
    monkeypatch.chdir(tmp_path)
    assert glob_files("**/*.png") == ["a.png", "d/b.png", "d/sub/c.png"]
    assert glob_files("d/**/c.png") == ["d/sub/c.png"]
    assert glob_files("**/sub/*.png") == ["d/sub/c.png"]
    assert glob_files("d/**") == ["d/b.png", "d/sub/c.png", "d/sub/x.txt"]


def test_results_are_sorted_as_strings(tmp_path):
    """Sorted by the whole path as glob's results were: 'a-b/c' before 'a.png' before 'a/f'."""
    touch(tmp_path, "d/a/f.png", "d/a.png", "d/a-b/c.png")
    assert names(glob_files(str(tmp_path / "d" / "**" / "*.png")), tmp_path) == ["d/a-b/c.png", "d/a.png",
                                                                                "d/a/f.png"]


# --- arguments -------------------------------------------------------------------------------------


def test_files_folders_globs_and_missing_files_keep_their_order(tmp_path):
    """A file, a folder, a glob and a missing file give their images in the order given; a missing file stays."""
    touch(tmp_path, "one.png", "d/b.png", "d/a.png", "g/x1.png", "g/x2.png")
    paths, batch = expand_images([str(tmp_path / "one.png"), str(tmp_path / "d"), str(tmp_path / "g" / "x?.png"),
                                  "nope.png"])
    assert batch
    assert names(paths[:-1], tmp_path) == ["one.png", "d/a.png", "d/b.png", "g/x1.png", "g/x2.png"]
    assert paths[-1] == "nope.png"


def test_one_file_is_not_a_batch(tmp_path):
    """One file (or -) alone is not a batch; a name with glob characters that exists is a file, not a glob."""
    touch(tmp_path, "a[1].png")
    assert expand_images([str(tmp_path / "a[1].png")]) == ([str(tmp_path / "a[1].png")], False)
    assert expand_images(["-"]) == (["-"], False)


def test_stdin_twice_is_a_usage_error_naming_images():
    """- given twice raises UsageError (a CnnError, no typer), with param IMAGES."""
    with pytest.raises(UsageError, match="stdin can be read once") as caught:
        expand_images(["-", "x.png", "-"])
    assert caught.value.param == "IMAGES" and isinstance(caught.value, CnnError)


def test_arguments_that_name_nothing_are_errors(tmp_path):
    """A folder without images (with a hint when it has sub-folders) and a glob matching nothing are CnnErrors."""
    with pytest.raises(CnnError, match="holds no image files") as caught:
        expand_images([str(tmp_path)])
    assert "give a glob" not in str(caught.value)
    touch(tmp_path, "inner/a.png")
    with pytest.raises(CnnError, match=r"for its sub-folders, give a glob: '.*\*\*/\*\.png'"):
        expand_images([str(tmp_path)])
    with pytest.raises(CnnError, match="no file matches this pattern") as caught:
        expand_images([str(tmp_path / "*.jpg")])
    assert caught.value.source == str(tmp_path / "*.jpg")


def test_image_suffixes_are_the_readers_formats():
    """The suffixes a folder is searched for, lower case, one per format's usual names."""
    assert IMAGE_SUFFIXES == (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


def test_a_folder_that_cannot_be_read_is_passed_over_by_a_glob_and_named_when_given(tmp_path, monkeypatch):
    """A glob skips a folder it may not list (as glob did); given as an argument, it is one CnnError naming it."""
    touch(tmp_path, "d/a.png", "d/locked/b.png")
    locked = str(tmp_path / "d" / "locked")
    scandir = os.scandir

    def refusing(path="."):  # what chmod 0 does, for root too
        if os.fspath(path).rstrip(os.sep) == locked:
            raise PermissionError(13, "Permission denied", path)
        return scandir(path)

    monkeypatch.setattr(os, "scandir", refusing)
    assert names(glob_files(str(tmp_path / "d" / "**" / "*.png")), tmp_path) == ["d/a.png"]
    with pytest.raises(CnnError, match="cannot read this folder: Permission denied"):
        folder_images(locked)


def test_two_thousand_files_are_found_fast(tmp_path):
    """2,000 images in 40 folders (and a loop link): a recursive glob takes well under a second."""
    for i in range(40):
        folder = tmp_path / "d" / f"f{i:02d}" / "g"
        folder.mkdir(parents=True)
        for j in range(50):
            (folder if j % 2 else folder.parent).joinpath(f"{j:03d}.png").write_bytes(b"")
    link(tmp_path, "d/loop", ".")
    start = time.perf_counter()
    found = glob_files(str(tmp_path / "d" / "**" / "*.png"))
    elapsed = time.perf_counter() - start
    assert len(found) == 2000 and found == sorted(found)
    assert elapsed < 1.0, f"{elapsed:.2f} s"  # about 0.02 s on the project's machine


def test_the_module_needs_no_cli_libraries():
    """Importing cnncli.io.paths loads neither typer, rich nor click."""
    code = ("import sys, cnncli.io.paths; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('typer', 'rich', 'click')))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
