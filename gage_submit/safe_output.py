"""A run's output made safe to print: what `logs` and `--follow` write by default.

A run's output is its own bytes, but anyone who can write to a shared
runs dir (or a run's program itself) can put escape sequences in it that
would retitle a terminal, rewrite what it shows or write its clipboard.
So `logs` and `--follow` print it as text with every control character
escaped (`gage_queue.text.shown`: `\\x1b[31m` shows as the characters
`\\x1b[31m`), in a terminal and in a pipe alike, as every other command
shows run text. Lines end where Gage's output format ends them (at
`\\n` or `\\r`, `\\r\\n` counting once, `gage_runs.output`), so a progress
bar redrawn with `\\r` shows as one line per redraw; tabs become spaces
to the next multiple of 8; bytes that are not UTF-8 show as `\\xNN`.
`logs --raw` writes the bytes unchanged (for `> file`, or a run you
trust in a terminal).
"""

from __future__ import annotations

import codecs
from collections.abc import Callable

from gage_queue.text import shown


class EscapedOutput:
    """Writes output bytes, fed in chunks of any size, as escaped text lines.

    Call it with each chunk, then `close()`; nothing is held back but an
    incomplete UTF-8 sequence at a chunk's end (and a `\\r`, until the
    next chunk says whether `\\n` follows), so a followed run's partial
    line shows at once.
    """

    def __init__(self, write: Callable[[bytes], None]):
        self._write = write
        self._decode = codecs.getincrementaldecoder("utf-8")(errors="backslashreplace").decode
        self._after_cr = False  # the last chunk ended a line with `\r`: skip a `\n` next
        self._column = 0  # where the current line is, for tabs

    def __call__(self, data: bytes) -> None:
        self._emit(self._decode(data))

    def close(self) -> None:
        self._emit(self._decode(b"", final=True))

    def _emit(self, text: str) -> None:
        if self._after_cr and text.startswith("\n"):
            text = text[1:]
        if not text:
            return
        self._after_cr = text.endswith("\r")
        pieces = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
        out = []
        for n, piece in enumerate(pieces):
            if n:
                self._column = 0
            if "\t" in piece:
                piece = (" " * self._column + piece).expandtabs(8)[self._column :]
            piece = shown(piece, None)
            self._column += len(piece)
            out.append(piece)
        self._write("\n".join(out).encode("utf-8"))


def escaped_output(data: bytes) -> bytes:
    """`data`, a whole output, as `EscapedOutput` writes it."""
    chunks: list[bytes] = []
    escaped = EscapedOutput(chunks.append)
    escaped(data)
    escaped.close()
    return b"".join(chunks)
