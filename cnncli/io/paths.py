"""Which image files a command's arguments name: files as given, a folder's image files, and globs.

Globs are walked here rather than by Python's glob module, which follows a link to a folder
wherever it leads: a link to ``.`` inside the folder searched made ``d/**/*.png`` run forever
(and a few such links gave one image dozens of times before the path grew too long). Here a
folder is entered once per argument and place in the pattern, known by its device and inode
whatever its name, so a loop of links ends where it closes; and a file is given once per
argument, under the first of its names in sorted order (a link, a hard link, or one folder
reached by two links).
"""

from __future__ import annotations

import os
import stat

from ..errors import CnnError, UsageError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
_GLOB_CHARACTERS = frozenset("*?[")
_RECURSIVE = "**"  # a whole part of a pattern: zero or more folders


def expand_images(arguments: list[str]) -> tuple[list[str], bool]:
    """The image paths the arguments name, in order, and whether they make a batch.

    A folder gives its image files (by suffix, sorted, not descending into sub-folders); an
    argument that is not an existing path and holds * ? or [ is a glob (``**`` descends zero or
    more folders; a name starting with a dot matches only a part that starts with one, as in
    glob); anything else is kept as given, so that a missing file is reported in its turn. A
    folder or a glob gives each file once, under its first name in sorted order. Several
    arguments, a folder or a glob make a batch; one file alone (or -) does not.

    Raises UsageError (param "IMAGES") when - (stdin) is given twice, and CnnError naming the
    argument for a folder without image files or a glob that matches no file.
    """
    paths: list[str] = []
    batch = len(arguments) > 1
    stdin = False
    for argument in arguments:
        if argument == "-":
            if stdin:
                raise UsageError("stdin can be read once; give - at most once", param="IMAGES")
            stdin = True
            paths.append(argument)
        elif os.path.isdir(argument):
            batch = True
            paths += folder_images(argument)
        elif not os.path.lexists(argument) and not _GLOB_CHARACTERS.isdisjoint(argument):
            batch = True
            found = glob_files(argument)
            if not found:
                raise CnnError("no file matches this pattern", source=argument)
            paths += found
        else:
            paths.append(argument)
    return paths, batch


def folder_images(folder: str) -> list[str]:
    """The image files directly in ``folder`` (by suffix, links followed), sorted, each file once.

    Raises CnnError naming the folder when it cannot be read or holds no image file; when it
    holds folders, the message suggests the glob that reaches their images.
    """
    found: list[tuple[str, tuple[int, int]]] = []
    deeper = False
    try:
        with os.scandir(folder) as entries:
            for entry in entries:
                if entry.name.lower().endswith(IMAGE_SUFFIXES) and entry.is_file():
                    identity = _identity(entry)
                    if identity is not None:
                        found.append((entry.path, identity))
                elif not deeper and entry.is_dir():
                    deeper = True
    except OSError as err:
        raise CnnError(f"cannot read this folder: {err.strerror or err}", source=folder) from None
    if not found:
        hint = f"; for its sub-folders, give a glob: '{os.path.join(folder, '**', '*.png')}'" if deeper else ""
        raise CnnError(f"holds no image files ({', '.join(IMAGE_SUFFIXES)}){hint}", source=folder)
    return _once_each(found)


def glob_files(pattern: str) -> list[str]:
    """The files (not folders) that ``pattern`` matches, sorted, each file once.

    As glob.glob(pattern, recursive=True) keeps them, less its repeats: ``*``, ``?`` and ``[...]``
    match within one name, ``**`` as a whole part matches zero or more folders, and a name that
    starts with a dot is matched only by a part that starts with one (``**`` never enters such a
    folder). Links are followed, but each folder is entered at most once for each part of the
    pattern, so a loop of links ends. Folders that cannot be read are passed over, as glob does.
    """
    import heapq

    if pattern.endswith(os.sep) or (os.altsep and pattern.endswith(os.altsep)):
        return []  # a trailing separator matches folders only
    if os.altsep:
        pattern = pattern.replace(os.altsep, os.sep)
    drive, rest = os.path.splitdrive(pattern)
    root = drive + rest[:len(rest) - len(rest.lstrip(os.sep))]  # "", "/", or "C:\\"
    parts = [_part(text) for text in rest.split(os.sep) if text]
    last = len(parts) - 1
    files: list[tuple[str, tuple[int, int]]] = []
    entered: set[tuple[int, int, int]] = set()  # (device, inode, part) of each folder entered
    # Folders in the order of their paths: the first path by which a folder is entered is the
    # least of its paths, so the files kept under it are the first of their names in sorted order.
    waiting: list[tuple[str, int]] = [(root, 0)]
    while waiting:
        folder, index = heapq.heappop(waiting)
        if index > last:
            continue  # the pattern ends at a folder, which is no file
        try:
            status = os.stat(folder or os.curdir)
        except (OSError, ValueError):
            continue
        key = (status.st_dev, status.st_ino, index)
        if key in entered:
            continue
        entered.add(key)
        part = parts[index]
        if isinstance(part, str) and part != _RECURSIVE:  # a plain name
            path = os.path.join(folder, part)
            if index < last:
                heapq.heappush(waiting, (path, index + 1))
            else:
                try:
                    status = os.stat(path)
                except (OSError, ValueError):
                    continue
                if _is_file(status):
                    files.append((path, (status.st_dev, status.st_ino)))
            continue
        if part == _RECURSIVE:
            heapq.heappush(waiting, (folder, index + 1))  # zero folders
        for entry in _entries(folder):
            name = entry.name
            if part == _RECURSIVE:
                if name.startswith("."):
                    continue
                if _is_dir(entry):
                    heapq.heappush(waiting, (os.path.join(folder, name), index))
                elif index == last and _is_file_entry(entry):
                    _keep(files, entry, folder)
                continue
            match, dotted = part
            if (name.startswith(".") and not dotted) or not match(os.path.normcase(name)):
                continue
            if index < last:
                if _is_dir(entry):
                    heapq.heappush(waiting, (os.path.join(folder, name), index + 1))
            elif _is_file_entry(entry):
                _keep(files, entry, folder)
    return _once_each(files)


def _part(text: str):
    """One part of a pattern: a plain name, ``**``, or (match, whether it matches dot-names)."""
    if text == _RECURSIVE or _GLOB_CHARACTERS.isdisjoint(text):
        return text
    import fnmatch
    import re

    return re.compile(fnmatch.translate(os.path.normcase(text))).match, text.startswith(".")


def _entries(folder: str) -> list[os.DirEntry]:
    try:
        with os.scandir(folder or os.curdir) as entries:
            return list(entries)
    except (OSError, ValueError):
        return []


def _is_dir(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir()  # follows a link
    except OSError:
        return False


def _is_file_entry(entry: os.DirEntry) -> bool:
    try:
        return entry.is_file()  # follows a link
    except OSError:
        return False


def _is_file(status: os.stat_result) -> bool:
    return stat.S_ISREG(status.st_mode)


def _identity(entry: os.DirEntry) -> tuple[int, int] | None:
    """(device, inode) of the file an entry names, after links; None if it went away."""
    try:
        status = entry.stat()
    except OSError:
        return None
    return status.st_dev, status.st_ino


def _keep(files: list, entry: os.DirEntry, folder: str) -> None:
    identity = _identity(entry)
    if identity is not None:
        files.append((os.path.join(folder, entry.name), identity))


def _once_each(found: list[tuple[str, tuple[int, int]]]) -> list[str]:
    """Paths sorted, keeping the first of those that name one file (same device and inode)."""
    seen: set[tuple[int, int]] = set()
    kept = []
    for path, identity in sorted(found):
        if identity not in seen:
            seen.add(identity)
            kept.append(path)
    return kept
