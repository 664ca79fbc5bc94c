"""Run ids and run names."""

from __future__ import annotations

import re
import uuid

import proquint

_RUN_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z")


def make_run_id() -> str:
    """A new random run id: a lowercase UUID4 string."""
    return str(uuid.uuid4())


def is_run_id(value: object) -> bool:
    """True if `value` is a canonical lowercase UUID string."""
    return isinstance(value, str) and _RUN_ID.match(value) is not None


def run_name_for_id(run_id: str) -> str:
    """The run's proquint name from the first 8 hex digits of its id.

    Raises ValueError if those are not hex, as Gage does.
    """
    return proquint.uint2quint(int(run_id[:8], 16))
