"""File modes that do not depend on the umask (design §2.1).

On a shared runs dir the submitting user and the worker's service account
differ, so files that stay writable until finalize are world-writable and
directories are world-writable too. `GAGE_SHARED_MODE=group` narrows both
to a shared Unix group (`0o660` files, setgid `0o2770` directories).
Read-only files are always `0o444`, as in Gage.
"""

from __future__ import annotations

import contextlib
import os
import threading

from .errors import GageRunsError

READONLY = 0o444

_MODES = {
    "world": (0o666, 0o777),
    "group": (0o660, 0o2770),
}


class SharedModeError(GageRunsError, ValueError):
    """GAGE_SHARED_MODE is neither `world` nor `group`."""


def check_shared_mode() -> None:
    """SharedModeError if GAGE_SHARED_MODE is bad; commands call it before writing anything."""
    _shared_modes()


def _shared_modes() -> tuple[int, int]:
    name = os.environ.get("GAGE_SHARED_MODE", "world") or "world"
    try:
        return _MODES[name]
    except KeyError:
        raise SharedModeError(
            f"GAGE_SHARED_MODE must be 'world' or 'group', not {name!r}"
        ) from None


def writable_file_mode() -> int:
    """Mode of meta files that stay writable until the run is finalized."""
    return _shared_modes()[0]


def dir_mode() -> int:
    """Mode of directories created for a run."""
    return _shared_modes()[1]


def set_readonly(path: str) -> None:
    """Make `path` read-only for everyone (exactly `0o444`)."""
    os.chmod(path, READONLY)


def make_dirs(path: str) -> None:
    """Create `path` and missing parents with the shared directory mode."""
    if os.path.isdir(path):
        return
    parent = os.path.dirname(path)
    if parent and parent != path:
        make_dirs(parent)
    try:
        os.mkdir(path)
    except FileExistsError:
        return
    os.chmod(path, dir_mode())


def make_new_dir(path: str) -> None:
    """Create `path`, which must not exist, with missing parents."""
    make_dirs(os.path.dirname(path))
    os.mkdir(path)
    os.chmod(path, dir_mode())


def write_text(path: str, text: str, *, readonly: bool = True) -> None:
    """Write `text` to `path` atomically, creating parent dirs.

    The file is read-only (`0o444`) or shared-writable; an existing file is
    replaced even if it is read-only.
    """
    make_dirs(os.path.dirname(path))
    tmp = f"{path}.{os.getpid()}.{threading.get_ident()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, READONLY if readonly else writable_file_mode())
        os.replace(tmp, path)
    except BaseException:
        _remove_quietly(tmp)
        raise


def open_shared_append(path: str):
    """Open `path` for appending text, creating it shared-writable."""
    make_dirs(os.path.dirname(path))
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    if os.fstat(fd).st_size == 0:
        _chmod_fd(fd, writable_file_mode())
    return os.fdopen(fd, "a")


def _chmod_fd(fd: int, mode: int) -> None:
    with contextlib.suppress(PermissionError):
        os.fchmod(fd, mode)


def _remove_quietly(path: str) -> None:
    with contextlib.suppress(OSError):
        os.remove(path)
