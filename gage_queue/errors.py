"""Errors raised by gage_worker, each with a one-line message for users."""

from __future__ import annotations

from gage_runs.errors import GageRunsError


class GageWorkerError(GageRunsError):
    """Base class of the errors gage_worker raises on bad input or state."""


class SettingsError(GageWorkerError):
    """A setting from the environment or the command line is invalid."""


class BrokerUnavailable(GageWorkerError):
    """The broker cannot be reached to send a task."""
