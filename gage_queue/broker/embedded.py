"""The embedded broker's transport: kombu's filesystem transport, woken by inotify, acked on disk.

A message is a file in `messages/`, written under a hidden name and renamed
into place, so a consumer never reads half a message. A consumer claims it
by renaming it into its own folder under `claimed/` (atomic on one file
system: two consumers never both take one message), and deletes it on ack.
A consumer that closes cleanly renames its unacked messages back. Each
claim folder holds a lock file that its consumer keeps locked (flock) while
it lives; `restore_orphaned` renames the messages of folders whose lock is
free (a consumer killed with -9) back into `messages/`. A consumer does
that when it starts, and reconcile on every pass, so no message is lost
across a worker restart. A file that is not a kombu message is moved to
`rejected/` with a warning, not delivered.

A consumer waits on an inotify watch of `messages/` (and on a pipe written
when it acks, which frees a prefetch slot) instead of sleeping between
polls, so a message is taken within a millisecond or two of its rename.
It still re-lists the folder every `polling_interval` seconds: that is
how it sees messages written by other hosts (NFS sends no inotify events).
Where inotify is missing (not Linux) it re-lists every 0.05 s instead. inotify is reached with ctypes
(two libc calls; the fd is only drained, its events never parsed):
`inotify_simple` finds libc with `ctypes.util.find_library`, which runs
`ldconfig` in a subprocess in the worker.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import select
import socket
import time
import uuid
from queue import Empty
from typing import Any

from kombu.exceptions import ChannelError
from kombu.transport import filesystem
from kombu.utils.json import dumps, loads

log = logging.getLogger(__name__)

CLAIM_LOCK = "lock"
BROADCAST_SUFFIX = ".celery.pidbox.msg"
HIDDEN = "."
BLIND_POLL = 0.05  # seconds between re-scans where inotify is missing
IN_MOVED_TO = 0x80  # <sys/inotify.h>

_own_locks: set[int] = set()  # lock fds of this process's claims


def _close_inherited_locks() -> None:
    """In a forked child: let go of the parent's claim locks, so they die with the parent."""
    for fd in _own_locks:
        with contextlib.suppress(OSError):
            os.close(fd)
    _own_locks.clear()


os.register_at_fork(after_in_child=_close_inherited_locks)


def claimed_folder(root: str) -> str:
    return os.path.join(root, "claimed")


def messages_folder(root: str) -> str:
    return os.path.join(root, "messages")


def restore_orphaned(root: str) -> int:
    """Move the messages claimed by consumers that died back to `messages/`; how many."""
    claimed, messages = claimed_folder(root), messages_folder(root)
    restored = 0
    for entry in _scandir(claimed):
        if entry.name.startswith(HIDDEN) or not entry.is_dir():
            continue
        try:
            lock = os.open(os.path.join(entry.path, CLAIM_LOCK), os.O_RDWR)
        except FileNotFoundError:
            continue  # being removed by its consumer or another restorer
        try:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # its consumer is alive
            restored += _move_back(entry.path, messages)
            with contextlib.suppress(FileNotFoundError):
                os.remove(os.path.join(entry.path, CLAIM_LOCK))
            with contextlib.suppress(OSError):
                os.rmdir(entry.path)
        finally:
            os.close(lock)
    return restored


def prune_broadcasts(root: str, max_age: float = 600.0) -> int:
    """Delete broadcast (`celery inspect`/`control`) messages older than `max_age` seconds.

    A broadcast is put on the pidbox queue of every worker that ever
    started on the folder, so those of workers gone for good pile up.
    """
    cutoff = time.time() - max_age
    count = 0
    for entry in _scandir(messages_folder(root)):
        if not entry.name.endswith(BROADCAST_SUFFIX):
            continue
        with contextlib.suppress(FileNotFoundError):
            if entry.stat().st_mtime < cutoff:
                os.remove(entry.path)
                count += 1
    return count


def _move_back(folder: str, messages: str) -> int:
    count = 0
    for entry in _scandir(folder):
        if entry.name == CLAIM_LOCK:
            continue
        with contextlib.suppress(FileNotFoundError):
            os.rename(entry.path, os.path.join(messages, entry.name))
            count += 1
    return count


def _scandir(folder: str) -> list[os.DirEntry]:
    try:
        with os.scandir(folder) as entries:
            return list(entries)
    except FileNotFoundError:
        return []


class Claim:
    """A consumer's claim folder, locked for as long as the consumer lives."""

    def __init__(self, root: str):
        name = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        claimed = claimed_folder(root)
        new = os.path.join(claimed, HIDDEN + name)
        os.makedirs(new)
        self._lock = os.open(os.path.join(new, CLAIM_LOCK), os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(self._lock, fcntl.LOCK_EX)
        _own_locks.add(self._lock)
        self.folder = os.path.join(claimed, name)
        os.rename(new, self.folder)  # visible to restorers only once locked

    def close(self, messages: str) -> None:
        """Put back what is left and remove the folder."""
        _move_back(self.folder, messages)
        with contextlib.suppress(FileNotFoundError):
            os.remove(os.path.join(self.folder, CLAIM_LOCK))
        with contextlib.suppress(OSError):
            os.rmdir(self.folder)
        if self._lock in _own_locks:
            _own_locks.discard(self._lock)
            os.close(self._lock)


class Channel(filesystem.Channel):
    """Filesystem channel with atomic puts, claims in a locked folder, and acks on disk."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._claim: Claim | None = None
        self._claimed: dict[str, str] = {}  # delivery tag -> claimed file
        self._no_ack_queues: set[str] = set()

    @property
    def root(self) -> str:
        return os.path.dirname(self.data_folder_in)

    def _put(self, queue: str, payload: Any, **kwargs: Any) -> None:
        name = f"{time.time_ns():020d}_{uuid.uuid4().hex}.{queue}.msg"
        hidden = os.path.join(self.data_folder_out, f"{HIDDEN}{name}.tmp")
        try:
            with open(hidden, "wb") as f:
                f.write(dumps(payload).encode())
            os.rename(hidden, os.path.join(self.data_folder_out, name))
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.remove(hidden)
            raise ChannelError(f"cannot add a message to {queue!r}: {exc}") from exc

    def _get(self, queue: str) -> Any:
        if self._claim is None:
            restore_orphaned(self.root)
            self._claim = Claim(self.root)
        suffix = f"{queue}.msg"
        for name in sorted(os.listdir(self.data_folder_in)):
            if name.partition(".")[2] != suffix:
                continue
            path = os.path.join(self._claim.folder, name)
            try:
                os.rename(os.path.join(self.data_folder_in, name), path)
            except FileNotFoundError:
                continue  # taken by another consumer
            try:
                with open(path, "rb") as f:
                    payload = loads(f.read())
                tag = payload["properties"]["delivery_tag"]
            except (ValueError, TypeError, KeyError):
                self._reject_unreadable(path)
                continue
            if queue in self._no_ack_queues:
                os.remove(path)
            else:
                self._claimed[tag] = path
            return payload
        raise Empty()

    def _reject_unreadable(self, path: str) -> None:
        """Move a message that is not a kombu message aside, to `rejected/`."""
        rejected = os.path.join(self.root, "rejected")
        os.makedirs(rejected, exist_ok=True)
        os.rename(path, os.path.join(rejected, os.path.basename(path)))
        log.warning("embedded broker: moved unreadable message %s to %s", path, rejected)

    def basic_consume(self, queue: str, no_ack: bool, *args: Any, **kwargs: Any) -> Any:
        if no_ack:
            self._no_ack_queues.add(queue)
        return super().basic_consume(queue, no_ack, *args, **kwargs)

    def basic_get(self, queue: str, no_ack: bool = False, **kwargs: Any) -> Any:
        message = super().basic_get(queue, no_ack=no_ack, **kwargs)
        if message is not None and no_ack:
            self._forget(message.delivery_tag)
        return message

    def basic_ack(self, delivery_tag: str, multiple: bool = False) -> None:
        super().basic_ack(delivery_tag, multiple)
        self._forget(delivery_tag)
        self._wake()

    def basic_reject(self, delivery_tag: str, requeue: bool = False) -> None:
        super().basic_reject(delivery_tag, requeue)
        self._forget(delivery_tag)
        self._wake()

    def _wake(self) -> None:
        """A prefetch slot is free: wake the consumer waiting for messages."""
        transport = self.connection
        if transport is not None:
            transport.wake()

    def _restore(self, message: Any) -> None:
        path = self._claimed.pop(message.delivery_tag, None)
        if path is None:
            super()._restore(message)
            return
        with contextlib.suppress(FileNotFoundError):
            os.rename(path, os.path.join(self.data_folder_in, os.path.basename(path)))

    def _forget(self, delivery_tag: str) -> None:
        path = self._claimed.pop(delivery_tag, None)
        if path is not None:
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)

    def close(self) -> None:
        super().close()  # restores unacked messages
        if self._claim is not None:
            self._claim.close(self.data_folder_in)
            self._claim = None


class Transport(filesystem.Transport):
    """The filesystem transport, blocking on inotify and on acks between polls."""

    Channel = Channel

    def __init__(self, client: Any, **kwargs: Any):
        super().__init__(client, **kwargs)
        self._waker: Waker | None = None

    def wake(self) -> None:
        if self._waker is not None:
            self._waker.wake()

    def drain_events(self, connection: Any, timeout: float | None = None) -> None:
        if self._waker is None:
            folder = self.client.transport_options["data_folder_in"]
            self._waker = Waker(folder)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            try:
                return self.cycle.get(self._deliver, timeout=timeout)
            except Empty:
                pass
            wait = self.polling_interval if self._waker.watching else BLIND_POLL
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError()
                wait = min(wait, left)
            self._waker.wait(wait)

    def close_connection(self, connection: Any) -> None:
        super().close_connection(connection)
        if self._waker is not None:
            self._waker.close()
            self._waker = None


class Waker:
    """Blocks until a message may have arrived in `folder`, an ack happened, or a timeout."""

    def __init__(self, folder: str):
        self._read, self._write = os.pipe()
        os.set_blocking(self._read, False)
        os.set_blocking(self._write, False)
        self._inotify = _watch(folder)
        self.watching = self._inotify is not None
        self._fds = [self._read] + ([] if self._inotify is None else [self._inotify])
        self._poll = select.poll()
        for fd in self._fds:
            self._poll.register(fd, select.POLLIN)

    def wake(self) -> None:
        with contextlib.suppress(BlockingIOError):
            os.write(self._write, b"\0")

    def wait(self, timeout: float) -> None:
        for fd, _ in self._poll.poll(timeout * 1000):
            with contextlib.suppress(BlockingIOError):
                os.read(fd, 65536)

    def close(self) -> None:
        if self._inotify is not None:
            os.close(self._inotify)
        os.close(self._read)
        os.close(self._write)


def _watch(folder: str) -> int | None:
    """A non-blocking inotify fd watching renames into `folder`, or None without inotify."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    init = getattr(libc, "inotify_init1", None)
    if init is None:  # not Linux
        return None
    fd = init(os.O_NONBLOCK | os.O_CLOEXEC)
    if fd < 0:  # out of inotify instances
        return None
    if libc.inotify_add_watch(fd, os.fsencode(folder), IN_MOVED_TO) < 0:
        os.close(fd)
        return None
    return fd
