"""Text from runs and users, made safe to show and checked at the door.

Anyone who can write to a shared runs dir can put text into every other
user's terminal: labels, op and run names, flag values, output lines,
schedule job names. `shown` escapes what is read before it is displayed
(a terminal, a pipe or a log line): control characters, including ESC,
CR, LF, DEL, the C1 range and Unicode's bidirectional overrides, become
visible escapes, and a long text is cut with an ellipsis. `--json`
output stays exact: JSON escapes control characters itself.
`check_user_text` refuses such text when a user sets it.
"""

from __future__ import annotations

import re

from gage_queue.errors import QueueError

LABEL_LIMIT = 200  # characters in a label; a longer one is refused at submit
SHOWN_LIMIT = 400  # characters of one field shown in a table or a log line

# C0 (but for TAB), DEL, C1, and the bidi controls that can reorder what a line shows.
_UNSAFE = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


class BadText(QueueError):
    """User-set text with a control character, or too long: exit 2."""


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    code = ord(char)
    return {"\n": "\\n", "\r": "\\r"}.get(char) or (
        f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")


def shown(text: object, limit: int | None = SHOWN_LIMIT) -> str:
    """`text` as it may be displayed: control characters escaped, at most `limit` chars."""
    value = _UNSAFE.sub(_escape, str(text)).replace("\t", " ")
    if limit is not None and len(value) > limit:
        return value[: limit - 1] + "…"
    return value


def has_control(text: str) -> bool:
    return _UNSAFE.search(text) is not None or "\t" in text


def check_user_text(text: str, what: str, limit: int = LABEL_LIMIT) -> str:
    """`text` if it is fit to be shown to others; BadText naming `what` otherwise."""
    if has_control(text):
        raise BadText(f"{what} {shown(text, 60)!s} has a control character: not allowed")
    if len(text) > limit:
        raise BadText(f"{what} is {len(text)} characters long: at most {limit}")
    return text
