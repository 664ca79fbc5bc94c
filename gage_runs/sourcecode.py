"""Copy an operation's source code into a run dir (run-format §4.1)."""

from __future__ import annotations

import errno
import os
import shutil
import stat
from collections.abc import Iterable

from gage_runs.errors import SourcePatternError
from gage_runs.file_select import select_files
from gage_runs.fsmode import make_dirs
from gage_runs.types import OpDef

__all__ = [
    "DEFAULT_PATTERNS",
    "copy_sourcecode",
    "sourcecode_patterns",
]

DEFAULT_PATTERNS = [
    "**/* text size<100000 max-matches=500",
    "-**/.* dir",  # prune dot-directories (dot files are kept)
    "-**/* dir sentinel=bin/activate",  # prune virtualenvs
    "-**/* dir sentinel=.nocopy",  # prune dirs holding .nocopy
    "-summary.json",  # a top-level summary.json only
]


_NO_SENDFILE = (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP)
_CHUNK_SIZE = 1 << 20


def sourcecode_patterns(opdef: OpDef) -> list[str]:
    """The patterns that select `opdef`'s source code.

    `True` or missing: the defaults. `False` or `[]`: nothing. A list
    with an include is used as is; a list of excludes only is appended
    to the defaults.
    """
    patterns = opdef.get_sourcecode()
    if patterns is True or patterns is None:
        return list(DEFAULT_PATTERNS)
    if not patterns:
        return []
    _check_strings(patterns)
    if any(not p.startswith("-") for p in patterns):
        return patterns
    return DEFAULT_PATTERNS + patterns


def _check_strings(patterns: list) -> None:
    for p in patterns:
        if not isinstance(p, str):
            raise SourcePatternError(f"source code pattern must be a string, not {p!r}")


def copy_sourcecode(
    project_dir: str,
    run_dir: str,
    opdef: OpDef,
    exclude_dirs: Iterable[str] | None = None,
) -> list[str]:
    """Copy the source files `opdef` selects from `project_dir` to `run_dir`.

    Returns the copied relative paths, sorted. Each copy keeps its
    source's mode bits; parent dirs get the shared dir mode (`fsmode`).
    `run_dir` and each dir in `exclude_dirs` (pass the runs dir when it
    lies inside the project) are never walked, so a run is never copied
    into itself.
    """
    patterns = sourcecode_patterns(opdef)
    excluded = [run_dir, *(exclude_dirs or ())]
    paths = select_files(project_dir, patterns, exclude_dirs=excluded)
    copy_files(project_dir, run_dir, paths)
    return paths


def copy_files(src_dir: str, dest_dir: str, relpaths: list[str]) -> None:
    """Copy each relative path from `src_dir` to `dest_dir` (`_copy_file`), making dirs."""
    made_dirs: set[str] = set()
    for relpath in relpaths:
        dest = os.path.join(dest_dir, relpath)
        parent = os.path.dirname(dest)
        if parent not in made_dirs:
            make_dirs(parent)
            made_dirs.add(parent)
        _copy_file(os.path.join(src_dir, relpath), dest)


def _copy_file(src: str, dest: str) -> None:
    """`shutil.copyfile` + `shutil.copymode` in a third of the syscalls.

    Copies the content of a regular file (following links) and its mode
    bits; anything else raises `shutil.SpecialFileError`, as copyfile
    does. `O_NONBLOCK` keeps a FIFO from blocking the open.
    """
    src_fd = os.open(src, os.O_RDONLY | os.O_NONBLOCK)
    try:
        st = os.fstat(src_fd)
        if not stat.S_ISREG(st.st_mode):
            raise shutil.SpecialFileError(f"`{src}` is not a regular file")
        dest_fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            _send_all(src_fd, dest_fd, st.st_size)
            os.fchmod(dest_fd, stat.S_IMODE(st.st_mode))
        finally:
            os.close(dest_fd)
    finally:
        os.close(src_fd)


def _send_all(src_fd: int, dest_fd: int, size: int) -> None:
    offset = 0
    while offset < size:
        try:
            sent = os.sendfile(dest_fd, src_fd, offset, size - offset)
        except OSError as e:
            if offset or e.errno not in _NO_SENDFILE:
                raise
            _write_all(src_fd, dest_fd)
            return
        if not sent:  # the file shrank while copying
            return
        offset += sent


def _write_all(src_fd: int, dest_fd: int) -> None:
    """Copy by read and write, for file systems without `sendfile`."""
    while chunk := os.read(src_fd, _CHUNK_SIZE):
        view = memoryview(chunk)
        while view:
            view = view[os.write(dest_fd, view) :]
