"""Errors raised by gage_runs.

Every error carries a one-line message fit for a user: commands print
`str(err)` and exit non-zero, never a traceback.
"""

from __future__ import annotations


class GageRunsError(Exception):
    """Base class of every error gage_runs raises on bad input."""


class RunExecError(GageRunsError):
    """A phase process exited non-zero."""

    def __init__(self, phase_name: str, proc_args: str | list[str], exit_code: int):
        super().__init__(phase_name, proc_args, exit_code)
        self.phase_name = phase_name
        self.proc_args = proc_args
        self.exit_code = exit_code

    def __str__(self) -> str:
        return f"{self.phase_name} failed with exit code {self.exit_code}"


class RunFormatError(GageRunsError):
    """A run's meta dir is missing, incomplete or malformed."""


class OpDefError(GageRunsError):
    """An operation definition is malformed."""


class SourcePatternError(GageRunsError):
    """A source code pattern cannot be parsed."""


class ConfigError(GageRunsError):
    """A config file cannot be read or patched, or a config value is bad."""


class GageFileError(GageRunsError):
    """A Gage file is missing, malformed or invalid."""


class OpNotFound(GageRunsError):
    """A Gage file has no such operation."""


class RunsDirError(GageRunsError):
    """A runs dir is missing or unusable."""


class RunLookupError(GageRunsError):
    """No run, or more than one run, matches a run spec."""
