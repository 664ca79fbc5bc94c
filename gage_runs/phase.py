"""Running one phase process: a staging hook, the run, or the finalize hook."""

from __future__ import annotations

import contextlib
import os
import select
import shlex
import signal
import subprocess
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from .errors import RunExecError
from .fsmode import make_dirs, set_readonly, write_text
from .meta import run_meta_path, runner_log
from .output import OutputCapture
from .types import CmdArgs, Run

TICK_SECONDS = 0.5
DRAIN_SECONDS = 2.0


class PhaseWatcher(Protocol):
    """Observes a phase process; the worker's supervisor is one."""

    def started(self, proc: subprocess.Popen) -> None: ...

    def tick(self, proc: subprocess.Popen) -> None: ...

    def finished(self, proc: subprocess.Popen, exit_code: int) -> None: ...


def proc_args(exec_cmd: CmdArgs) -> tuple[str | list[str], bool]:
    """Popen args and whether they need a shell.

    A list runs as is; a string runs in a shell, unless its first line is a
    `#!` interpreter line: then the interpreter gets the rest, line breaks
    kept, with `-c` (Gage joined the lines without breaks; design §2.3).
    """
    if isinstance(exec_cmd, list):
        return [str(arg) for arg in exec_cmd], False
    first, _, rest = exec_cmd.partition("\n")
    if first.startswith("#!"):
        return [*shlex.split(first[2:]), "-c", rest], False
    return exec_cmd, True


def run_phase_exec(
    run: Run,
    phase_name: str,
    exec_cmd: CmdArgs,
    env: Mapping[str, str],
    output_name: str,
    watcher: PhaseWatcher | None = None,
    popen_options: Mapping[str, Any] | None = None,
    argv_prefix: Sequence[str] = (),
) -> None:
    """Run `exec_cmd` in the run dir, capturing output; raise on non-zero exit.

    `argv_prefix` is a program that sets the process up and execs the
    command (a supervisor's `setpriv --pdeathsig KILL --`); a shell
    command then runs as `[*argv_prefix, "/bin/sh", "-c", exec_cmd]`.

    The process starts in a new session (its pgid is its pid) so a watcher
    can signal the whole group. `proc/lock` holds its pid while it runs.
    When it exits, whatever is left in its group is killed; a process that
    left the group and still holds the output is not waited for longer
    than DRAIN_SECONDS (a supervisor that adopts such processes, like the
    worker's keeper, stops them in `finished`).
    """
    runner_log(run, f"Starting {phase_name} (see output/{output_name}): {exec_cmd}")
    args, shell = proc_args(exec_cmd)
    if argv_prefix:
        args, shell = [*argv_prefix, *(["/bin/sh", "-c", args] if shell else args)], False
    make_dirs(run.run_dir)
    try:
        proc = subprocess.Popen(
            args,
            shell=shell,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            cwd=run.run_dir,
            env=dict(env),
            start_new_session=True,
            **(popen_options or {}),
        )
    except OSError as e:
        runner_log(run, f"Error starting {phase_name}: {e}")
        raise RunExecError(phase_name, args, 127) from None
    try:
        runner_log(run, "Writing meta proc/lock")
        write_text(run_meta_path(run, "proc", "lock"), str(proc.pid))
        make_dirs(run_meta_path(run, "output"))
        output_filename = run_meta_path(run, "output", output_name)
        assert proc.stdout is not None
        capture = OutputCapture(output_filename, proc.stdout)
        capture.start()
    except BaseException:  # nothing runs that is not captured and watched
        _kill_group(proc.pid)
        proc.wait()
        raise
    exit_code = _wait(proc, watcher)
    if not capture.join(DRAIN_SECONDS):
        _kill_group(proc.pid)
        if not capture.join(DRAIN_SECONDS):
            runner_log(run, f"Output of {phase_name} still held by an escaped process; not waiting")
    runner_log(run, f"Exit code for {phase_name}: {exit_code}")
    set_readonly(output_filename)
    set_readonly(output_filename + ".index")
    _delete_proc_lock(run)
    if exit_code != 0:
        raise RunExecError(phase_name, args, exit_code)


def _wait(proc: subprocess.Popen, watcher: PhaseWatcher | None) -> int:
    if watcher:
        watcher.started(proc)
    pidfd = _pidfd(proc)
    try:
        while not _exited_within(proc, pidfd, TICK_SECONDS):
            if watcher:
                watcher.tick(proc)
    finally:
        if pidfd is not None:
            os.close(pidfd)
    exit_code = proc.wait()
    if watcher:
        watcher.finished(proc, exit_code)
    return exit_code


def _pidfd(proc: subprocess.Popen) -> int | None:
    """A pidfd for `proc` (Linux 5.3+), opened once per phase; None elsewhere."""
    try:
        return os.pidfd_open(proc.pid)
    except (AttributeError, OSError):
        return None


def _exited_within(proc: subprocess.Popen, pidfd: int | None, seconds: float) -> bool:
    """Wait up to `seconds` for `proc` to exit, waking the moment it does.

    Popen.wait(timeout) polls with sleeps of up to 50 ms, which adds that
    much to every short run; polling a pidfd wakes at once.
    """
    if pidfd is None:
        try:
            proc.wait(seconds)
            return True
        except subprocess.TimeoutExpired:
            return False
    poller = select.poll()
    poller.register(pidfd, select.POLLIN)
    return bool(poller.poll(seconds * 1000))


def _kill_group(pgid: int) -> None:
    """Kill what is left of a phase's process group (it holds the output)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def _delete_proc_lock(run: Run) -> None:
    runner_log(run, "Deleting meta proc/lock")
    try:
        os.remove(run_meta_path(run, "proc", "lock"))
    except OSError as e:
        runner_log(run, f"Error deleting proc/lock: {e}")
