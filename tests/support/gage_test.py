"""Helpers for Gage-style markdown doc tests (groktest), as `gage._internal.test`.

Unlike Gage's `ls(permissions=True)`, modes are shown as they are: no
group-write bit is borrowed from the user bits.
"""

from __future__ import annotations

import os
import stat
import tempfile

import natsort

__all__ = ["cat", "cd", "ls", "make_temp_dir", "write"]


def cd(path: str) -> None:
    os.chdir(os.path.expandvars(path))


def make_temp_dir(prefix: str = "gage-test-") -> str:
    return tempfile.mkdtemp(prefix=prefix)


def write(filename: str, contents: str, append: bool = False, force: bool = True) -> None:
    if force and os.path.exists(filename):
        os.chmod(filename, 0o600)
    with open(filename, "a" if append else "w") as f:
        f.write(contents)


def _walk_files(root: str, follow_links: bool, include_dirs: bool) -> list[str]:
    paths = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=follow_links):
        rel = os.path.relpath(dirpath, root)
        names = filenames + (dirnames if include_dirs else [])
        paths.extend(os.path.normpath(os.path.join(rel, name)) for name in names)
    return [path.replace(os.sep, "/") for path in paths]


def ls(
    root: str = ".",
    follow_links: bool = False,
    include_dirs: bool = False,
    permissions: bool = False,
) -> None:
    """Print the files under root, sorted naturally, optionally with modes."""
    paths = sorted(_walk_files(root, follow_links, include_dirs), key=natsort.natsort_key)
    if not paths:
        print("<empty>")
    for path in paths:
        if permissions:
            mode = stat.filemode(os.stat(os.path.join(root, path)).st_mode)
            print(f"{mode} {path}")
        else:
            print(path)


def cat(*parts: str) -> None:
    with open(os.path.join(*parts)) as f:
        text = f.read()
    print(text.removesuffix("\n") if text else "<empty>")
