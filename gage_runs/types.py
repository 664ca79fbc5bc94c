"""Gage's run and operation types: `OpRef`, `OpCmd`, `OpDef`, `Run`."""

from __future__ import annotations

import os
from typing import Any, Literal

Data = dict[str, Any]
CmdArgs = str | list[str]

RunStatus = Literal[
    "running", "completed", "error", "terminated", "staged", "pending", "unknown"
]


class OpRef:
    """An operation reference: a namespace (the project) and an op name."""

    def __init__(self, op_ns: str, op_name: str):
        self.op_ns = op_ns
        self.op_name = op_name

    def get_full_name(self) -> str:
        return f"{self.op_ns}:{self.op_name}" if self.op_ns else self.op_name

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, OpRef)
            and (self.op_ns, self.op_name) == (other.op_ns, other.op_name)
        )

    def __hash__(self) -> int:
        return hash((self.op_ns, self.op_name))

    def __repr__(self) -> str:
        return f'<OpRef ns="{self.op_ns}" name="{self.op_name}">'


class OpCmd:
    """A run command: a shell string or an argument list, and extra env."""

    def __init__(self, args: CmdArgs, env: dict[str, str]):
        self.args = args
        self.env = env

    def __repr__(self) -> str:
        return f"<OpCmd args={self.args!r} env={self.env!r}>"


class _Section:
    """A read-only view of one mapping section of an op definition."""

    def __init__(self, data: Data):
        self._data = data

    def as_json(self) -> Data:
        return self._data


class _PhaseSection(_Section):
    """A section keyed by phase: `stage-sourcecode`, ..., `run`, `finalize`."""

    def get_stage_sourcecode(self) -> Any:
        return self._data.get("stage-sourcecode")

    def get_stage_runtime(self) -> Any:
        return self._data.get("stage-runtime")

    def get_stage_dependencies(self) -> Any:
        return self._data.get("stage-dependencies")

    def get_run(self) -> Any:
        return self._data.get("run")

    def get_finalize(self) -> Any:
        return self._data.get("finalize")


class OpDefExec(_PhaseSection):
    """The `exec` section: a command (str or list) per phase."""


class OpDefProgress(_PhaseSection):
    """The `progress` section: a progress parser name per phase."""


class OpDefConfig(_Section):
    """One config entry: `keys` (a spec or a list of specs) and a description."""

    def get_description(self) -> str | None:
        return self._data.get("description")

    def get_keys(self) -> list[str]:
        keys = self._data.get("keys")
        if keys is None:
            return []
        if isinstance(keys, str):
            return [keys]
        return list(keys)


class OpDefDependency(_Section):
    """One `depends` entry (Gage 0.1.2 declares them; the queue resolves them)."""

    def get_type(self) -> str:
        if self._data.get("type"):
            return self._data["type"]
        if self._data.get("run-select"):
            return "run-files"
        if self._data.get("files"):
            return "project-files"
        return ""

    def get_files(self) -> list[str]:
        """The `files` patterns (a pattern or a list of them)."""
        files = self._data.get("files") or []
        return [files] if isinstance(files, str) else list(files)

    def get_run_select(self) -> str | None:
        return self._data.get("run-select")

    def get_runs_select(self) -> str | None:
        return self._data.get("runs-select")

    def get_summary_filename(self) -> str | None:
        return self._data.get("summary-filename")


class OpDefSummary(_Section):
    """The `summary` section: where the run writes its summary."""

    def get_filename(self) -> str | None:
        return self._data.get("filename")


def _phase_section(value: Any) -> Data:
    if value is None:
        return {}
    if isinstance(value, (str, list)):
        return {"run": value}
    return value


class OpDef:
    """An operation definition, as one entry of a Gage file."""

    def __init__(self, name: str, data: Data, src: str | None = None):
        self.name = name
        self._data = data
        self._src = src

    def __repr__(self) -> str:
        return f'<OpDef name="{self.name}">'

    def as_json(self) -> Data:
        return self._data

    def get_src(self) -> str:
        if self._src is None:
            raise TypeError("OpDef was not created with src")
        return self._src

    def get_description(self) -> str | None:
        return self._data.get("description")

    def get_default(self) -> bool:
        return bool(self._data.get("default"))

    def get_exec(self) -> OpDefExec:
        return OpDefExec(_phase_section(self._data.get("exec")))

    def get_progress(self) -> OpDefProgress:
        return OpDefProgress(_phase_section(self._data.get("progress")))

    def get_sourcecode(self) -> list[str] | bool | None:
        value = self._data.get("sourcecode")
        if value is None or isinstance(value, bool):
            return value
        if isinstance(value, str):
            return [value]
        return list(value)

    def get_config(self) -> list[OpDefConfig]:
        value = self._data.get("config")
        if value is None:
            entries: list = []
        elif isinstance(value, str):
            entries = [{"keys": value}]
        elif isinstance(value, dict):
            entries = [value]
        elif all(isinstance(item, str) for item in value):
            entries = [{"keys": list(value)}]
        else:
            entries = [{"keys": item} if isinstance(item, str) else item for item in value]
        return [OpDefConfig(entry) for entry in entries]

    def get_dependencies(self) -> list[OpDefDependency]:
        value = self._data.get("depends")
        if value is None:
            value = []
        elif isinstance(value, dict):
            value = [value]
        return [OpDefDependency(item) for item in value]

    def get_summary(self) -> OpDefSummary:
        return OpDefSummary(self._data.get("summary") or {})


class Run:
    """A run: its id, op reference, meta dir, run dir and proquint name."""

    def __init__(self, id: str, opref: OpRef, meta_dir: str, run_dir: str, name: str):
        self.id = id
        self.opref = opref
        self.meta_dir = meta_dir
        self.run_dir = run_dir
        self.name = name
        self._cache: dict[str, Any] = {}

    def __repr__(self) -> str:
        return f'<Run id="{self.id}" name="{self.name}">'

    @property
    def brief(self) -> str:
        """How logs name the run: `1a2b3c4d (lapis-rabbit)`."""
        return f"{self.id[:8]} ({self.name})"

    @property
    def runs_dir(self) -> str:
        """The runs dir that holds the run (absolute)."""
        return os.path.dirname(os.path.abspath(self.run_dir))


class RunSummary(_Section):
    """A run's summary: attributes, metrics and run attributes."""

    def get_attributes(self) -> Data:
        return self._data.get("attributes") or {}

    def get_metrics(self) -> Data:
        return self._data.get("metrics") or {}

    def get_run_attrs(self) -> Data:
        return self._data.get("run") or {}
