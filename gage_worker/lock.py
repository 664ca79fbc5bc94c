"""The run lock: an exclusive POSIX record lock on `<id>.meta/queue/lock`.

Every phase (exec, finalize) and every recovery action holds it. POSIX
record locks (`fcntl.lockf`, i.e. F_SETLK) work across hosts on NFSv3 (NLM)
and NFSv4, and the kernel (or the NFS server's lease) drops them when the
holder dies, which makes the lock the liveness signal of a run.

POSIX locks belong to a process and are all released when the process
closes *any* descriptor of the file. So this module keeps a registry of the
locks this process holds and never opens a held lock file again: a probe of
a lock this process holds answers from the registry, and other probes use
F_GETLK, which tests without taking the lock (taking it, even briefly,
would make a concurrent delivery think the run is busy and drop it).
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import logging
import os
import threading

from gage_runs.fsmode import make_dirs, writable_file_mode
from gage_runs.types import Run

from .queue_meta import queue_path

log = logging.getLogger(__name__)

_registry_lock = threading.Lock()
_held: dict[str, int] = {}


class _Flock(ctypes.Structure):
    """`struct flock` (Linux, 64-bit off_t)."""

    _fields_ = [
        ("l_type", ctypes.c_short),
        ("l_whence", ctypes.c_short),
        ("l_start", ctypes.c_longlong),
        ("l_len", ctypes.c_longlong),
        ("l_pid", ctypes.c_int),
    ]


class RunLock:
    """A held run lock; release it, or use it as a context manager."""

    def __init__(self, path: str, fd: int):
        self.path = path
        self._fd: int | None = fd

    def release(self) -> None:
        with _registry_lock:
            if self._fd is None:
                return
            _held.pop(self.path, None)
            os.close(self._fd)  # closing the descriptor drops the lock
            self._fd = None

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def lock_path(run: Run) -> str:
    return os.path.realpath(queue_path(run, "lock"))


def try_lock(run: Run) -> RunLock | None:
    """Take the run's lock without blocking; None if someone holds it."""
    path = lock_path(run)
    with _registry_lock:
        if path in _held:
            return None
        try:
            fd = _open_for_lock(path)
        except PermissionError as e:
            log.warning("cannot open run lock %s: %s", path, e)
            return None
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # EAGAIN / EACCES: held elsewhere
            os.close(fd)
            return None
        _held[path] = fd
        return RunLock(path, fd)


def is_locked(run: Run) -> bool:
    """True if any process, on any host, holds the run's lock."""
    path = lock_path(run)
    with _registry_lock:
        if path in _held:
            return True
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return False
        try:
            probe = _Flock(fcntl.F_WRLCK, os.SEEK_SET, 0, 0, 0)
            result = _Flock.from_buffer_copy(fcntl.fcntl(fd, fcntl.F_GETLK, bytes(probe)))
            return result.l_type != fcntl.F_UNLCK
        finally:
            os.close(fd)


def _open_for_lock(path: str) -> int:
    try:
        return os.open(path, os.O_RDWR)
    except FileNotFoundError:
        pass
    make_dirs(os.path.dirname(path))
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    with contextlib.suppress(PermissionError):
        os.fchmod(fd, writable_file_mode())
    return fd


def _after_fork_in_child() -> None:
    """A forked child owns none of its parent's locks; forget them."""
    global _registry_lock
    _registry_lock = threading.Lock()
    for fd in _held.values():
        with contextlib.suppress(OSError):
            os.close(fd)
    _held.clear()


os.register_at_fork(after_in_child=_after_fork_in_child)
