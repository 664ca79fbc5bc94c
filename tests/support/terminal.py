"""Running a command on a real terminal (a pty), as a user at a shell runs it."""

from __future__ import annotations

import fcntl
import os
import pty
import select
import signal
import struct
import subprocess
import termios
import time
from pathlib import Path

from .submit_runs import Runs


def terminal_env(runs: Runs, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GAGE_", "CELERY_"))}
    env.pop("NO_COLOR", None)
    return {**env, "GAGE_RUNS": str(runs.runs_dir), "TERM": "xterm-256color", "COLUMNS": "150",
            "LINES": "40", **extra}


def on_terminal(argv: list[str], cwd: Path, env: dict[str, str], *, answer: bytes = b"",
                prompt: bytes = b"?", while_running=None, timeout: float = 60) -> tuple[int, str]:
    """Run `argv` with stdin, stdout and stderr on one terminal (a pty); its exit code and
    all it wrote. `answer` is typed once `prompt` shows; `while_running(text_so_far)` is
    called as output comes, and may return True once it has done its part."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 150, 0, 0))
    proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=follower, stdout=follower,
                            stderr=follower, start_new_session=True)
    os.close(follower)
    out = b""
    answered = not answer
    done = while_running is None
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([leader], [], [], 0.1)
            if ready:
                try:
                    chunk = os.read(leader, 4096)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not chunk:
                    break
                out += chunk
            if not answered and prompt in out:
                os.write(leader, answer)
                answered = True
            if not done:
                done = bool(while_running(out.decode(errors="replace")))
        else:
            os.killpg(proc.pid, signal.SIGKILL)
            raise AssertionError(f"{argv} did not end: {out.decode(errors='replace')}")
        return proc.wait(30), out.decode(errors="replace")
    finally:
        os.close(leader)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
