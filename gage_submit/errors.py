"""Errors raised by gage_submit, each with a one-line message for users."""

from __future__ import annotations

from gage_runs.errors import GageRunsError


class SubmitError(GageRunsError):
    """Bad input to a gage-submit command: an unknown flag, a bad value, a too big grid."""


class WaitTimeout(GageRunsError):
    """Runs did not stop within the time given to `wait`."""


class StagingFailed(GageRunsError):
    """A run could not be staged (a stage hook failed, say); it stays pending."""
