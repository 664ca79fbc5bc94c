"""Errors of the queue, each with a one-line message for users.

Which exit code each gets is `exits.exit_code_for`.
"""

from __future__ import annotations

from gage_runs.errors import GageRunsError


class QueueError(GageRunsError):
    """Bad input or state for the queue: exit 2 unless a subclass says otherwise."""


class SettingsError(QueueError):
    """A setting from the environment or the command line is invalid."""


class BrokerUnavailable(QueueError):
    """The broker cannot be reached to send a task: exit 3."""


class CommandFailed(QueueError):
    """The input was fine but the work failed (a stage hook, say): exit 1."""


class TimedOut(QueueError):
    """What a command waited for did not happen in the time given: exit 4."""


class Interrupted(QueueError):
    """Ctrl-C stopped a command part way; the message says what was done: exit 130."""
