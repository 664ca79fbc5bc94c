"""File modes that do not depend on the umask (design §2.1).

On a shared runs dir the submitting user and the worker's service account
differ, so files that stay writable until finalize are world-writable and
directories are world-writable too. `GAGE_SHARED_MODE=group` narrows both
to a shared Unix group (`0o660` files, setgid `0o2770` directories).
Read-only files are always `0o444`, as in Gage.

Only the submitter can change a submitted run: every directory created
for runs (a run's own dirs, and the runs dir or its parents when created
here) also has the sticky bit (`0o1777`, `0o3770`). The worker's runs can
still create files in them, but nobody but a file's owner (or root) can
rename or delete it, so nobody can swap a staged file (`proc/cmd.json`, a
source file: `0o444`, the submitter's) for one of their own. The keeper
checks that before it starts a run (`gage_worker.keeper.integrity`).
Directories under `.gage-queue/` (the embedded broker, host locks, beat)
stay without it: the embedded broker claims a message by renaming a file
another user wrote.

No symlink games: everyone who can write the runs dir can plant a symlink
where a worker writes, so every write here opens without following one.
Below a run's meta side (`<id>.meta/`, `<id>.user/`) no component is
followed; elsewhere (the run dir, the runs dir's own files) the last
component is not. A symlink found there is an `UnsafePathError`, never a
write elsewhere. Files are written to an exclusive temp name and renamed;
appends and truncating opens refuse anything but a regular file.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import stat
import threading
from collections.abc import Iterator

from .errors import GageRunsError

READONLY = 0o444
_NOFOLLOW = os.O_NOFOLLOW | os.O_CLOEXEC
_DIR = os.O_RDONLY | os.O_DIRECTORY
_RUN_META_ENTRY = re.compile(
    r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\.(meta|user)\Z"
)
QUEUE_DIR = ".gage-queue"  # the queue's own files in a runs dir: no sticky bit below it


class UnsafePathError(GageRunsError):
    """A symlink (or another non-regular file) where gage-queue writes."""


_MODES = {  # writable files, dirs (`dir_mode` adds the sticky bit)
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
    """Mode of directories created for runs: shared, and sticky (see above)."""
    return _shared_modes()[1] | stat.S_ISVTX


def queue_dir_mode() -> int:
    """Mode of directories created under `.gage-queue/`: shared, not sticky."""
    return _shared_modes()[1]


def set_readonly(path: str) -> bool:
    """Make `path` read-only for everyone (exactly `0o444`); never through a symlink.

    Only a file's owner may change its mode: a worker account finalizing a
    run another user staged cannot chmod that user's files (`log/files`,
    `manifest`, `log/runner`). Those keep their owner's mode, and the
    result is False; any other failure raises.
    """
    fd = open_nofollow(path, os.O_PATH)
    try:
        st = os.fstat(fd)
        if stat.S_ISLNK(st.st_mode):
            raise UnsafePathError(f"refusing to follow the symlink {path}")
        try:
            os.chmod(f"/proc/self/fd/{fd}", READONLY)  # chmod of the opened file itself
        except PermissionError:
            if st.st_uid == os.geteuid():
                raise
            return False
        return True
    finally:
        os.close(fd)


def make_dirs(path: str) -> None:
    """Create `path` and missing parents with the shared directory mode.

    Existing directories are left as they are; on a run's meta side a
    symlink on the way is an UnsafePathError.
    """
    parts = _split(path)
    if _run_meta_start(parts, len(parts)) == len(parts):  # not on a run's meta side
        _make_plain_dirs(parts, len(parts))
        return
    with _dir(parts, len(parts), create=True):
        pass


def make_new_dir(path: str) -> None:
    """Create `path`, which must not exist, with missing parents."""
    parts = _split(path)
    with _dir(parts, len(parts) - 1, create=True) as parent:
        os.mkdir(parts[-1], 0o700, dir_fd=parent)
        _chmod_dir_at(parent, parts[-1], path)


def open_nofollow(path: str, flags: int, mode: int = 0o600) -> int:
    """`os.open(path, flags, mode)`, following no symlink where gage-queue writes.

    The last component, and on a run's meta side every component below the
    runs dir, must not be a symlink: UnsafePathError if one is. Flags may
    include `os.O_PATH`, which opens a symlink as itself (check with fstat).
    """
    parts = _split(path)
    with _dir(parts, len(parts) - 1) as dir_fd:
        return _open_at(dir_fd, parts[-1], flags, mode, path)


def open_regular(path: str, flags: int, mode: int = 0o600) -> int:
    """`open_nofollow` for a regular file: a FIFO, device or dir is an UnsafePathError."""
    parts = _split(path)
    with _dir(parts, len(parts) - 1) as dir_fd:
        return _open_regular_at(dir_fd, parts[-1], flags, mode, path)


def touch_shared(path: str) -> None:
    """Make an empty shared-writable file (its dirs too) if it is missing;
    never follows a symlink. An entry or a request marker: its name says it."""
    make_dirs(os.path.dirname(path))
    fd = open_regular(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        with contextlib.suppress(PermissionError):
            os.fchmod(fd, writable_file_mode())
    finally:
        os.close(fd)


def _open_regular_at(dir_fd: int, name: str, flags: int, mode: int, path: str) -> int:
    try:
        fd = _open_at(dir_fd, name, flags | os.O_NONBLOCK | os.O_NOCTTY, mode, path)
    except OSError as e:
        if e.errno != errno.ENXIO:  # a FIFO without a reader, or a socket
            raise
        raise UnsafePathError(f"refusing to write {path}: not a regular file") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise UnsafePathError(f"refusing to write {path}: not a regular file")
    os.set_blocking(fd, True)
    return fd


def write_text(path: str, text: str, *, readonly: bool = True) -> None:
    """Write `text` to `path` atomically, creating parent dirs.

    The file is read-only (`0o444`) or shared-writable; an existing file is
    replaced even if it is read-only. It is written to an exclusive temp
    name and renamed over `path`; a symlink at `path` is an UnsafePathError.
    """
    parts = _split(path)
    name = parts[-1]
    tmp = f"{name}.{os.urandom(6).hex()}.tmp"  # not `secrets`: it loads OpenSSL
    with _dir(parts, len(parts) - 1, create=True) as dir_fd:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW, 0o600, dir_fd=dir_fd)
        try:
            try:
                write_all(fd, text.encode())
                os.fchmod(fd, READONLY if readonly else writable_file_mode())
            finally:
                os.close(fd)
            if _is_link_at(dir_fd, name):
                raise UnsafePathError(f"refusing to replace the symlink {path}")
            try:
                os.replace(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
            except PermissionError:
                _write_in_place(dir_fd, name, text, path)
                os.unlink(tmp, dir_fd=dir_fd)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=dir_fd)
            raise


def _write_in_place(dir_fd: int, name: str, text: str, path: str) -> None:
    """Overwrite another user's shared-writable file that a sticky dir keeps us from replacing."""
    fd = os.open(name, os.O_WRONLY | os.O_TRUNC | _NOFOLLOW, dir_fd=dir_fd)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise UnsafePathError(f"refusing to write {path}: not a regular file")
        write_all(fd, text.encode())
    finally:
        os.close(fd)


def append_text(path: str, text: str) -> None:
    """Append `text` to `path`, creating it shared-writable (never via a symlink).

    Inside `walk_once` the file stays open for the block's later appends
    (a run's `log/runner` gets a line per step): a descriptor opened
    without following a symlink stays as safe as a fresh open.
    """
    files = _walks.files
    fd = files.get(path, -1) if files is not None else -1
    if fd < 0:
        fd = _open_append(path)
        if files is not None:
            files[path] = fd
    try:
        write_all(fd, text.encode())
    finally:
        if files is None:
            os.close(fd)


def _open_append(path: str) -> int:
    parts = _split(path)
    with _dir(parts, len(parts) - 1, create=True) as dir_fd:
        fd = _open_regular_at(dir_fd, parts[-1], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600,
                              path)
    if os.fstat(fd).st_size == 0:
        _chmod_fd(fd, writable_file_mode())
    return fd


def write_all(fd: int, data: bytes) -> None:
    """Write all of `data` to `fd` (os.write may write less)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _split(path: str) -> list[str]:
    """The components of the absolute `path`, the first one `/`."""
    if not path.startswith(os.sep) or "/." in path or "//" in path:
        path = os.path.abspath(path)
    return [os.sep, *[part for part in path.split(os.sep) if part]]


def _join(parts: list[str]) -> str:
    """The path of `parts` (from `_split`): plain string joins, on every write's hot path."""
    return os.sep + os.sep.join(parts[1:])


def _run_meta_start(parts: list[str], end: int) -> int:
    """Index of the first component (before `end`) not to follow: a run's meta side, or `end`."""
    for index in range(1, end):
        if _RUN_META_ENTRY.match(parts[index]):
            return index
    return end


class _Walks(threading.local):
    """This thread's verified directory descriptors while `walk_once` is in force."""

    dirs: dict[str, int] | None = None
    files: dict[str, int] | None = None  # files open for appending (`append_text`)


_walks = _Walks()


@contextlib.contextmanager
def walk_once() -> Iterator[None]:
    """Within this block, in this thread, walk to each directory once, not on every write.

    Files appended to (`append_text`) stay open for the block likewise.

    A directory opened by a verified walk (no symlink followed) is kept
    open and reused for later writes below it: one run's staging, keeper
    or finalize writes a dozen files into the same few dirs, and each
    walk is a round trip per component on NFS. Reusing the descriptor is
    as safe as walking again: it is a real directory that was at its
    place when opened (a walk could be raced the same way), and a symlink
    planted later at its path is never followed. The descriptors are
    closed when the outermost block ends; an inner block shares them.
    Closing never raises: an error a file system reports only at close
    (NFS) is about lines already written, and must not fail the work the
    block did (a keeper's run is recorded by then).
    """
    if _walks.dirs is not None:
        yield
        return
    _walks.dirs, _walks.files = {}, {}
    try:
        yield
    finally:
        dirs, files = _walks.dirs, _walks.files
        _walks.dirs = _walks.files = None
        for fd in [*files.values(), *dirs.values()]:
            with contextlib.suppress(OSError):
                os.close(fd)


@contextlib.contextmanager
def _dir(parts: list[str], end: int, *, create: bool = False) -> Iterator[int]:
    """A dir fd for `parts[:end]`, not following symlinks on a run's meta side.

    `create`: make missing dirs on the way, with the shared modes. Inside
    `walk_once` the fd (and every dir on the way) is kept for reuse.
    """
    cache = _walks.dirs
    if cache is not None and (cached := cache.get(_join(parts[:end]), -1)) >= 0:
        yield cached
        return
    fd = _walk(parts, end, create, cache)
    try:
        yield fd
    finally:
        if cache is None:
            os.close(fd)


def _walk(parts: list[str], end: int, create: bool, cache: dict[str, int] | None) -> int:
    """Open `parts[:end]` from its longest prefix in `cache` (or from the meta side's start).

    `parts[:end]` itself is not in `cache` (`_dir` looked).
    """
    start = _run_meta_start(parts, end)
    if create:
        _make_plain_dirs(parts, start)
    first, dir_fd = start, -1
    if cache is not None:
        for first in range(end - 1, start - 1, -1):
            if (dir_fd := cache.get(_join(parts[:first]), -1)) >= 0:
                break
    if dir_fd < 0:
        first, dir_fd = start, os.open(_join(parts[:start]), _DIR | os.O_CLOEXEC)
        if cache is not None:
            cache[_join(parts[:start])] = dir_fd
    owned = cache is None
    try:
        for index in range(first, end):
            name, shown = parts[index], _join(parts[: index + 1])
            try:
                next_fd = _open_at(dir_fd, name, _DIR, 0, shown)
            except FileNotFoundError:
                if not create:
                    raise
                with contextlib.suppress(FileExistsError):
                    os.mkdir(name, 0o700, dir_fd=dir_fd)
                    _chmod_dir_at(dir_fd, name, shown)
                next_fd = _open_at(dir_fd, name, _DIR, 0, shown)
            if owned:
                os.close(dir_fd)
            dir_fd, owned = next_fd, cache is None
            if cache is not None:
                cache[shown] = dir_fd
    except BaseException:
        if owned:
            os.close(dir_fd)
        raise
    return dir_fd


def _open_at(dir_fd: int, name: str, flags: int, mode: int, shown: str) -> int:
    try:
        return os.open(name, flags | _NOFOLLOW, mode, dir_fd=dir_fd)
    except OSError as e:
        if e.errno in (errno.ELOOP, errno.ENOTDIR) and _is_link_at(dir_fd, name):
            raise UnsafePathError(f"refusing to follow the symlink {shown}") from None
        raise


def _is_link_at(dir_fd: int, name: str) -> bool:
    try:
        return stat.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
    except FileNotFoundError:
        return False


def _chmod_dir_at(dir_fd: int, name: str, shown: str) -> None:
    """Give the directory just made the shared mode, through an fd (never a symlink)."""
    fd = _open_at(dir_fd, name, _DIR, 0, shown)
    try:
        os.fchmod(fd, dir_mode())
    finally:
        os.close(fd)


def _make_plain_dirs(parts: list[str], end: int) -> None:
    """Create `parts[:end]` and missing parents (outside any run's meta side)."""
    path = _join(parts[:end])
    if os.path.isdir(path):
        return
    if end > 1:
        _make_plain_dirs(parts, end - 1)
    try:
        os.mkdir(path)
    except FileExistsError:
        return
    os.chmod(path, queue_dir_mode() if QUEUE_DIR in parts[:end] else dir_mode())


def _chmod_fd(fd: int, mode: int) -> None:
    with contextlib.suppress(PermissionError):
        os.fchmod(fd, mode)
