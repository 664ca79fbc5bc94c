"""Process plumbing for the keeper: subreaper, parent-death signal, descendants.

The keeper is a child subreaper (`PR_SET_CHILD_SUBREAPER`), so every
process the run starts, even one that calls `setsid` and double-forks out
of the run's process group, stays a descendant of the keeper until it
exits. "Every process of the run" is therefore exactly the keeper's
descendants, read from `/proc/<pid>/task/<tid>/children` (no psutil: the
keeper starts once per run and must start fast).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal

from gage_runs.meta import read_small

PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_SET_CHILD_SUBREAPER = 36

_libc = ctypes.CDLL(None, use_errno=True)


def _prctl(option: int, value: int) -> None:
    if _libc.prctl(option, value, 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def become_subreaper() -> None:
    """Adopt every orphaned descendant instead of letting init adopt it."""
    _prctl(PR_SET_CHILD_SUBREAPER, 1)


def not_dumpable() -> None:
    """No core dumps and no ptrace or /proc/<pid>/environ reads by the run's uid."""
    _prctl(PR_SET_DUMPABLE, 0)


def die_with_parent() -> None:
    """For a child, between fork and exec: SIGKILL it when its parent dies."""
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


SETPRIV = shutil.which("setpriv", path="/usr/bin:/bin")  # util-linux; never the run's PATH


def dying_with_parent() -> tuple[list[str], dict[str, object]]:
    """How to spawn a child that is SIGKILLed when its parent (the keeper) dies.

    The argv prefix and Popen options: `setpriv --pdeathsig KILL --` execs
    the command with the signal set, so Popen can vfork (a `preexec_fn`
    forces a full fork of the keeper: ~2 ms more CPU a run); without
    setpriv, `die_with_parent` as the `preexec_fn`.
    """
    if SETPRIV:
        return [SETPRIV, "--pdeathsig", "KILL", "--"], {}
    return [], {"preexec_fn": die_with_parent}


def children(pid: int) -> list[int]:
    """The direct children of `pid` (all its threads'), [] if it is gone."""
    found: list[int] = []
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for tid in tids:
        try:
            found.extend(int(p) for p in read_small(f"/proc/{pid}/task/{tid}/children").split())
        except OSError:
            continue
    return found


def descendants(pid: int | None = None) -> list[int]:
    """Every live descendant of `pid` (default: this process), zombies included."""
    todo = children(os.getpid() if pid is None else pid)
    found: list[int] = []
    while todo:
        child = todo.pop()
        found.append(child)
        todo.extend(children(child))
    return found


def signal_all(pids: list[int], sig: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def reap_children(keep: int | None = None) -> None:
    """Collect the exit status of exited children (adopted ones too), but `keep`'s.

    `keep` is the run command while its Popen has not waited for it: its
    exit status belongs to Popen, which would read 0 if we took it.
    """
    for pid in children(os.getpid()):
        if pid == keep:
            continue
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)


def alive_descendants(keep: int | None = None) -> list[int]:
    """Descendants that are not zombies waiting to be reaped (see reap_children)."""
    reap_children(keep)
    return [pid for pid in descendants() if not _is_zombie(pid)]


def _stat_fields(pid: int) -> list[str]:
    """`/proc/<pid>/stat` after the command name (field 3, the state, first)."""
    return read_small(f"/proc/{pid}/stat").rpartition(")")[2].split()


def _is_zombie(pid: int) -> bool:
    try:
        return _stat_fields(pid)[0] in ("Z", "X")
    except (OSError, IndexError):
        return True


def process_start_time(pid: int) -> float | None:
    """The process's start time in clock ticks since boot, against pid reuse."""
    try:
        return float(_stat_fields(pid)[19])
    except (OSError, IndexError, ValueError):
        return None


def is_alive(pid: int | None, start_time: float | None) -> bool:
    """True if `pid` runs and is the process that started at `start_time`."""
    if pid is None:
        return False
    started = process_start_time(pid)
    return started is not None and (start_time is None or started == start_time)
