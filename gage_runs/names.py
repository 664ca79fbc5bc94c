"""Run ids and run names."""

from __future__ import annotations

import os
import re

_RUN_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z")


def make_run_id() -> str:
    """A new random run id: a lowercase UUID4 string."""
    return random_uuid4()


def random_uuid4() -> str:
    """A random UUID4 string, as `str(uuid.uuid4())`."""
    return uuid4_string(int.from_bytes(os.urandom(16), "big"))


def uuid4_string(bits: int) -> str:
    """The 128 `bits` as a UUID4 string, its version and variant bits set, as
    `str(uuid.UUID(int=bits, version=4))` prints it (a test holds the two equal).

    Written out: importing `uuid` loads `platform`, a twentieth of a submit's imports.
    """
    bits = (bits & ~(0xF << 76)) | (4 << 76)  # version 4
    bits = (bits & ~(0x3 << 62)) | (0x2 << 62)  # RFC 4122 variant
    digits = f"{bits:032x}"
    return f"{digits[:8]}-{digits[8:12]}-{digits[12:16]}-{digits[16:20]}-{digits[20:]}"


def is_run_id(value: object) -> bool:
    """True if `value` is a canonical lowercase UUID string."""
    return isinstance(value, str) and _RUN_ID.match(value) is not None


def run_name_for_id(run_id: str) -> str:
    """The run's proquint name from the first 8 hex digits of its id.

    Raises ValueError if those are not hex, as Gage does. Encoded here, not with the
    `proquint` package Gage uses (a test holds the two equal): its import loads `socket`,
    a tenth of a submit's imports.
    """
    value = int(run_id[:8], 16)
    if value < 0:
        raise ValueError(f"not a run id: {run_id!r}")
    return f"{_quint(value >> 16)}-{_quint(value & 0xFFFF)}"


_CONSONANTS = "bdfghjklmnprstvz"
_VOWELS = "aiou"


def _quint(word: int) -> str:
    """The proquint of a 16-bit word: consonant, vowel, consonant, vowel, consonant."""
    return (_CONSONANTS[word >> 12] + _VOWELS[word >> 10 & 3] + _CONSONANTS[word >> 6 & 15]
            + _VOWELS[word >> 4 & 3] + _CONSONANTS[word & 15])
