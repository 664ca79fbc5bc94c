"""Phase output capture: `output/NN_name` and its `.index` (Gage's format).

Output is written as it arrives, unbuffered, so `tail -f` on another host
sees it while the run is going. A line ends at `\\n` or `\\r` and keeps its
terminator; bytes below 9 are dropped; every line gets a 9-byte index
record (epoch milliseconds, stream 0). Both files are opened when the
capture starts, never through a symlink (`fsmode.open_regular`).
"""

from __future__ import annotations

import os
import re
import struct
import threading
import time
from typing import IO

from .fsmode import open_regular, write_all

_DROPPED = bytes(range(9))
_LINE = re.compile(rb"[^\r\n]*[\r\n]")
_CHUNK = 65536
_MAX_PENDING = 1 << 20  # flush a line this long even without a terminator
_OUTPUT_MODE = 0o644


def _open_for_write(path: str) -> int:
    fd = open_regular(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, _OUTPUT_MODE)
    return fd


class OutputCapture:
    """Copy a process's merged output into an output file and its index."""

    def __init__(self, filename: str, stream: IO[bytes]):
        self.filename = filename
        self._stream = stream
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._fds: tuple[int, int] | None = None

    def start(self) -> None:
        """Open the output files and start copying.

        A symlink or other non-regular file where they go is an
        UnsafePathError, raised here with the stream closed.
        """
        try:
            out_fd = _open_for_write(self.filename)
            try:
                index_fd = _open_for_write(self.filename + ".index")
            except BaseException:
                os.close(out_fd)
                raise
        except BaseException:
            self._stream.close()
            raise
        self._fds = (out_fd, index_fd)
        self._thread.start()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the stream to close; True if it did within `timeout`."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _run(self) -> None:
        assert self._fds is not None
        out_fd, index_fd = self._fds
        in_fd = self._stream.fileno()
        pending = b""
        try:
            while True:
                chunk = os.read(in_fd, _CHUNK)
                if not chunk:
                    break
                pending += chunk.translate(None, _DROPPED)
                end = max(pending.rfind(b"\n"), pending.rfind(b"\r")) + 1
                lines = _LINE.findall(pending, 0, end)
                pending = pending[end:]
                if len(pending) >= _MAX_PENDING:
                    lines.append(pending)
                    pending = b""
                if lines:
                    _write_lines(out_fd, index_fd, lines)
            if pending:
                _write_lines(out_fd, index_fd, [pending])
        finally:
            os.close(out_fd)
            os.close(index_fd)
            self._stream.close()


def _write_lines(out_fd: int, index_fd: int, lines: list[bytes]) -> None:
    record = struct.pack("!QB", time.time_ns() // 1_000_000, 0)
    write_all(out_fd, b"".join(lines))
    write_all(index_fd, record * len(lines))


def read_output_index(filename: str) -> list[tuple[int, int]]:
    """The (epoch ms, stream) records of an output index file."""
    with open(filename, "rb") as f:
        data = f.read()
    return [struct.unpack_from("!QB", data, i) for i in range(0, len(data) - 8, 9)]
