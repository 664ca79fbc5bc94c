"""Errors raised by gage_submit, each with a one-line message for users.

Which exit code each gets is `gage_queue.exits.exit_code_for`: bad input
2, a staging failure 1, a `wait` that timed out 4.
"""

from __future__ import annotations

from gage_queue.errors import CommandFailed, QueueError, TimedOut


class SubmitError(QueueError):
    """Bad input to a gage-submit command: an unknown flag, a bad value, a too big grid."""


class WaitTimeout(TimedOut):
    """Runs did not stop within the time given to `wait`."""


class StagingFailed(CommandFailed):
    """A run could not be staged (a stage hook failed, say); it stays pending."""
