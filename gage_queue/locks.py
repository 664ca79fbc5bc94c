"""File locks: the run lock on `<id>.meta/queue/lock`, and slot and host locks.

All are open file description (OFD) locks (`F_OFD_SETLK`): whole-file
POSIX byte-range locks that belong to the open file, not to the process.
That gives what a run lock needs:

- they work across hosts wherever POSIX record locks do (NFSv3 through
  NLM, NFSv4, GlusterFS through the brick), and the file system drops
  them when the holder's host dies;
- a child inherits them with the descriptor: the keeper passes the run
  lock to the run command, so the lock stays held while any process of
  the run lives, even one that outlived its keeper;
- closing some other descriptor of the same file does not drop them (a
  classic POSIX lock is dropped by *any* close in the process), so
  probing and reading a held lock file is always safe;
- a probe (`F_OFD_GETLK`) tests without taking the lock.

The run lock's content is the run record (`record`), written and, for
decisions, read through the locked descriptor, with `O_DIRECT` where the
file system has it: taking a lock makes an NFS client revalidate its
cache, but a FUSE client (GlusterFS) keeps serving its page cache, and
only direct I/O reaches the brick (tests/test_multihost_bed.py shows
plain reads losing updates there, and direct ones losing none). Only the
submitter creates the lock file; nobody else ever does, so a run that
deletes its own lock file cannot make another worker take the run for
free.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import mmap
import os
import struct

from gage_queue.layout import LOCK, host_alive_lock, queue_file
from gage_queue.record import RECORD_SIZE_LIMIT, RunRecord, decode_record
from gage_queue.states import ENDED, Event, RunState, check_transition
from gage_runs.fsmode import UnsafePathError, make_dirs, open_regular, writable_file_mode
from gage_runs.types import Run

F_OFD_GETLK = getattr(fcntl, "F_OFD_GETLK", 36)
F_OFD_SETLK = getattr(fcntl, "F_OFD_SETLK", 37)
_FLOCK = "hhqqi"  # struct flock on Linux: type, whence, start, len, pid
_BLOCK = 4096  # direct I/O moves whole, aligned blocks


class LockFileMissing(Exception):
    """The run has no usable lock file: never submitted, deleted, or replaced by a link."""


def _flock(lock_type: int) -> bytes:
    return struct.pack(_FLOCK, lock_type, os.SEEK_SET, 0, 0, 0)


def lock_fd(fd: int, *, shared: bool = False) -> bool:
    """Take an OFD lock on `fd` without blocking; False if another holds it."""
    try:
        fcntl.fcntl(fd, F_OFD_SETLK, _flock(fcntl.F_RDLCK if shared else fcntl.F_WRLCK))
    except OSError as e:
        if e.errno in (errno.EAGAIN, errno.EACCES):
            return False
        raise
    return True


def probe_fd(fd: int) -> bool:
    """True if any open file, on any host, holds a lock on `fd`'s file."""
    result = fcntl.fcntl(fd, F_OFD_GETLK, _flock(fcntl.F_WRLCK))
    return struct.unpack(_FLOCK, result)[0] != fcntl.F_UNLCK


def hold_host_alive(runs_dir: str, host: str) -> int:
    """Share `host`'s alive lock (`layout.host_alive_lock`); the descriptor.

    Every worker and keeper of a host holds it while it lives, so others
    can tell a lost worker (the lock still held) from a lost host.
    """
    fd = open_lock_file(host_alive_lock(runs_dir, host), create=True)
    lock_fd(fd, shared=True)
    return fd


def probe_path(path: str) -> bool:
    """True if the file at `path` is locked; False if free or missing."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError):
        return False
    try:
        return probe_fd(fd)
    finally:
        os.close(fd)


def open_lock_file(path: str, *, create: bool) -> int:
    """Open `path` read-write for locking: a regular file, never through a symlink."""
    if not create:
        return open_regular(path, os.O_RDWR | os.O_CLOEXEC)
    make_dirs(os.path.dirname(path))
    fd = open_regular(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    with contextlib.suppress(PermissionError):
        os.fchmod(fd, writable_file_mode())
    return fd


class RunLock:
    """A held run lock: read and commit the record through it, then release."""

    def __init__(self, run: Run, fd: int):
        self.run = run
        self.path = lock_path(run)
        self.fd = fd
        self._direct = _try_direct_io(fd)

    def record(self) -> RunRecord:
        """The committed record, read through the locked descriptor."""
        return decode_record(self._read()) or RunRecord()

    def commit(self, record: RunRecord, *, durable: bool = True) -> None:
        """Write `record` through the lock; `durable`: and flush it to stable storage.

        Other hosts see the write either way (direct I/O, or the lock's
        release); `durable` is for a state change that must survive a
        crash of the file server, not for an informational update.
        """
        data = record.encode()
        if len(data) > RECORD_SIZE_LIMIT:
            raise ValueError(f"run record of {len(data)} bytes is too large")
        if self._direct:
            size = -(-len(data) // _BLOCK) * _BLOCK
            buf = mmap.mmap(-1, size)  # page-aligned, as O_DIRECT needs
            buf[:] = data.ljust(size)  # padded with blanks, which decoding skips
            os.pwritev(self.fd, [buf], 0)
            os.ftruncate(self.fd, size)
        else:
            os.pwrite(self.fd, data, 0)
            os.ftruncate(self.fd, len(data))
        if durable:
            os.fsync(self.fd)

    def advance(self, record: RunRecord, event: Event, state: RunState, *,
                current: RunState | None = None, durable: bool = True,
                **changes: object) -> RunRecord:
        """The one commit step: move `record` by `event` to `state` and commit it.

        The move is checked against `states.TRANSITIONS` from `current`
        (default: the state `record` holds; a lost run is committed
        running). `IllegalTransition` and nothing written otherwise.
        """
        target = check_transition(current or record.state, event, state)
        new = record.but(state=target, **changes)
        self.commit(new, durable=durable)
        return new

    def _read(self) -> bytes:
        return _read_record_bytes(self.fd, self._direct)

    def linked(self) -> bool:
        """True while the lock file at the run's path is the file we hold."""
        try:
            st = os.stat(self.path, follow_symlinks=False)
        except OSError:
            return False
        held = os.fstat(self.fd)
        return (st.st_dev, st.st_ino) == (held.st_dev, held.st_ino)

    def relink(self) -> int:
        """Put a locked lock file back at the run's path (a run deleted it).

        The new file holds the same record and is locked before it is
        renamed into place, so nobody ever finds the path unlocked. The
        old descriptor stays open (the run's processes share it); the
        returned new one is the lock from now on.
        """
        tmp = f"{self.path}.{os.getpid()}.relink"
        fd = open_lock_file(tmp, create=True)
        try:
            if not lock_fd(fd):
                raise OSError(errno.EAGAIN, "cannot lock the new lock file", tmp)
            record = self.record()
            self.fd, self._direct = fd, _try_direct_io(fd)
            self.commit(record)
            os.replace(tmp, self.path)
        except BaseException:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.remove(tmp)
            raise
        return fd

    def release(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)  # the last descriptor of the description drops the lock
            self.fd = -1

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _try_direct_io(fd: int) -> bool:
    """Switch `fd` to O_DIRECT; False where the file system has no direct I/O (tmpfs)."""
    flags = fcntl.fcntl(fd, fcntl.F_GETFL)
    try:
        fcntl.fcntl(fd, fcntl.F_SETFL, flags | os.O_DIRECT)
    except OSError:
        return False
    return bool(fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_DIRECT)


def lock_path(run: Run) -> str:
    return queue_file(run, LOCK)


def create_lock_file(run: Run, record: RunRecord | None = None) -> None:
    """Create the run's lock file, holding `record` (default: queued); the submitter's job.

    Not flushed to stable storage: nothing else a submit writes is (nor is
    the message), and a record lost in a crash reads as queued all the same
    (an empty record is a queued one to the keeper).
    """
    fd = open_lock_file(lock_path(run), create=True)
    try:
        if os.fstat(fd).st_size == 0 and lock_fd(fd):
            RunLock(run, fd).commit(record or RunRecord(), durable=False)
    finally:
        os.close(fd)


def try_lock(run: Run) -> RunLock | None:
    """Take the run's lock without blocking; None if someone holds it.

    LockFileMissing if the run has no lock file (never submitted, or its
    lock file was deleted): such a run is nobody's to run, finalize or kill.
    """
    try:
        fd = open_lock_file(lock_path(run), create=False)
    except (FileNotFoundError, NotADirectoryError):
        raise LockFileMissing("not submitted to the queue (it has no lock file)") from None
    except (UnsafePathError, IsADirectoryError) as e:
        raise LockFileMissing(f"its lock file is not a regular file: {e}") from None
    try:
        if lock_fd(fd):
            return RunLock(run, fd)
    except BaseException:
        os.close(fd)
        raise
    os.close(fd)
    return None


def is_locked(run: Run) -> bool:
    """True if any process, on any host, holds the run's lock."""
    return probe_path(lock_path(run))


def read_record(run: Run) -> RunRecord | None:
    """The record as last written, without the lock: for display only.

    Read with direct I/O where there is some, so that a laptop's view
    through a FUSE client's page cache is as fresh as the file (GlusterFS),
    unless a cached read already says the run ended: nothing follows
    completed, error or terminated (`states.TRANSITIONS`), so a cache can
    only be older than that, never wrong. A listing of many finished runs
    then reads no disk block per run.
    """
    try:
        fd = os.open(lock_path(run), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        cached = decode_record(os.pread(fd, RECORD_SIZE_LIMIT, 0))
        if cached is not None and cached.state in ENDED:
            return cached
        return decode_record(_read_record_bytes(fd, _try_direct_io(fd)))
    except OSError:
        return None
    finally:
        os.close(fd)


def _read_record_bytes(fd: int, direct: bool) -> bytes:
    if not direct:
        return os.pread(fd, RECORD_SIZE_LIMIT, 0)
    buf = mmap.mmap(-1, RECORD_SIZE_LIMIT)  # page-aligned, as O_DIRECT needs
    count = os.preadv(fd, [buf], 0)
    return bytes(buf[:count])
