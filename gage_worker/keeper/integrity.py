"""Only the submitter can change a submitted run: the checks before it starts.

Everyone who submits shares the runs dir, and a run executes as the
worker's account, so a local user who could change someone else's queued
run could run their code with that run's name on it. Staging protects a
run by modes alone (`gage_runs.fsmode`): its files are `0o444` and its
submitter's, in directories with the sticky bit, so nobody else can edit,
rename or delete them. The keeper does not trust that blindly; right
before the run starts (after any wait for a slot) `check_run_files`
raises `TamperedRunError`, and the run ends `error` (`cannot-start`)
without running, unless:

- the runs dir and every dir above it is not writable by others, or
  sticky (else anyone could swap the whole run for one of their own);
- the submitter (the owner of `<id>.meta`) owns the run dir and
  `<id>.meta/proc`, each not writable by others or sticky;
- `opdef.json`, `config.json`, `proc/cmd.json` and `proc/env.json` are
  regular files of the submitter's, not writable by group or others, and
  so is `queue/depends.json` where there is one (it says which runs'
  files the keeper copies in);
- everything in the run dir (walked without following links) is the
  submitter's: regular files not writable by group or others, dirs not
  writable by others or sticky, symlinks, nothing else (no FIFO);
- every source file (type `s` in the manifest) has the digest it had when
  staged. Only source code is hashed: it is small, and it is what the
  command runs; runtime and dependency files (a venv, data) can be large,
  and their modes and owner are checked instead.

What this does not cover: the run's dirs stay writable (the worker's runs
write there), so a file someone adds after this check (while the run
starts) is not seen; and files the queue keeps writable until finalize
(`log/runner`, `manifest`, `queue/*`) can be changed by others in `world`
mode (a forged time limit, a cancel): they decide when a run stops, never
what it runs.
"""

from __future__ import annotations

import errno
import os
import pwd
import stat

from gage_queue.layout import DEPENDS, queue_file
from gage_runs.errors import GageRunsError
from gage_runs.files_log import SOURCE, RunManifest, file_sha256
from gage_runs.types import Run

PROTECTED_META = ("opdef.json", "config.json", "proc/cmd.json", "proc/env.json")
OTHERS_WRITE = stat.S_IWGRP | stat.S_IWOTH


class TamperedRunError(GageRunsError):
    """A run's files are not as its submitter staged them; it must not start."""


def check_run_files(run: Run, runs_dir: str) -> None:
    """TamperedRunError unless the run's files are its submitter's, as staged."""
    _check_ancestors(runs_dir)
    owner = os.lstat(run.meta_dir).st_uid
    for path in (run.meta_dir, os.path.join(run.meta_dir, "proc")):
        _check_dir(path, owner)
    for name in PROTECTED_META:
        _check_file(os.path.join(run.meta_dir, *name.split("/")), owner)
    if os.path.lexists(depends := queue_file(run, DEPENDS)):
        _check_file(depends, owner)
    # A run that staged no files may have no run dir yet: exec creates it.
    walked = _walk(run.run_dir, owner) if os.path.lexists(run.run_dir) else {}
    _check_digests(run, walked)


def _check_ancestors(runs_dir: str) -> None:
    path = os.path.realpath(runs_dir)
    while True:
        st = os.stat(path)
        if st.st_mode & OTHERS_WRITE and not st.st_mode & stat.S_ISVTX:
            raise TamperedRunError(
                f"{path} is writable by others without the sticky bit, so anyone could "
                f"replace a run in it (chmod +t {path})"
            )
        parent = os.path.dirname(path)
        if parent == path:
            return
        path = parent


def _check_dir(path: str, owner: int) -> os.stat_result:
    st = _lstat(path)
    if not stat.S_ISDIR(st.st_mode):
        raise TamperedRunError(f"{path} is not a directory")
    _check_owner(path, st, owner)
    if st.st_mode & OTHERS_WRITE and not st.st_mode & stat.S_ISVTX:
        raise TamperedRunError(f"{path} is writable by others without the sticky bit")
    return st


def _check_file(path: str, owner: int) -> os.stat_result:
    st = _lstat(path)
    if not stat.S_ISREG(st.st_mode):
        raise TamperedRunError(f"{path} is not a regular file")
    _check_owner(path, st, owner)
    if st.st_mode & OTHERS_WRITE:
        raise TamperedRunError(f"{path} is writable by others (mode {stat.S_IMODE(st.st_mode):o})")
    return st


def _check_owner(path: str, st: os.stat_result, owner: int) -> None:
    if st.st_uid != owner:
        raise TamperedRunError(
            f"{path} belongs to {_user(st.st_uid)}, not to the run's submitter {_user(owner)}"
        )


def _walk(run_dir: str, owner: int) -> dict[str, os.stat_result]:
    """Check everything in the run dir; its regular files by relative path."""
    files: dict[str, os.stat_result] = {}
    pending = [("", _check_dir(run_dir, owner))]
    while pending:
        rel, _ = pending.pop()
        with os.scandir(os.path.join(run_dir, rel)) as entries:
            for entry in entries:
                path, child = entry.path, os.path.join(rel, entry.name)
                st = entry.stat(follow_symlinks=False)
                if stat.S_ISDIR(st.st_mode):
                    pending.append((child, _check_dir(path, owner)))
                elif stat.S_ISREG(st.st_mode):
                    files[child] = _check_file(path, owner)
                elif stat.S_ISLNK(st.st_mode):
                    _check_owner(path, st, owner)
                else:
                    raise TamperedRunError(f"{path} is not a regular file, dir or symlink")
    return files


def _check_digests(run: Run, walked: dict[str, os.stat_result]) -> None:
    for entry in RunManifest(run):
        if entry.type != SOURCE:
            continue
        path = os.path.join(run.run_dir, entry.path)
        st = walked.get(os.path.normpath(entry.path))
        if st is None:
            if not os.path.lexists(path):
                raise TamperedRunError(f"staged source file {path} is missing")
            continue  # reached through a symlink the submitter staged: its owner is checked
        if _digest(path, st) != entry.digest:
            raise TamperedRunError(f"source file {path} does not match its staged digest")


def _digest(path: str, walked: os.stat_result) -> str:
    """The file's sha256, if it is still the file walked (never a FIFO or a link)."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if (st.st_dev, st.st_ino) != (walked.st_dev, walked.st_ino):
            raise TamperedRunError(f"{path} was replaced while it was checked")
        return file_sha256(f"/proc/self/fd/{fd}")
    finally:
        os.close(fd)


def _lstat(path: str) -> os.stat_result:
    try:
        return os.lstat(path)
    except OSError as e:
        if e.errno in (errno.ENOENT, errno.ENOTDIR):
            raise TamperedRunError(f"{path} is missing") from None
        raise


def _user(uid: int) -> str:
    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"
