"""gage_runs: Gage 0.1.2's staged-run lifecycle and on-disk run format.

`from gage_runs import *` gives Gage's names, so Gage users feel at home.
Names load on first use, so a command that needs one module does not pay
for importing all of them.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "ConfigError": "errors",
    "GageFileError": "errors",
    "GageRunsError": "errors",
    "OpCmd": "types",
    "OpDef": "types",
    "OpDefError": "errors",
    "OpNotFound": "errors",
    "OpRef": "types",
    "Run": "types",
    "RunExecError": "errors",
    "RunFormatError": "errors",
    "RunLookupError": "errors",
    "RunManifest": "files_log",
    "RunSummary": "types",
    "RunsDirError": "errors",
    "SourcePatternError": "errors",
    "apply_config": "lifecycle",
    "associate_project": "sidecars",
    "check_runs_dir": "runs_dir",
    "exec_run": "execute",
    "finalize_run": "lifecycle",
    "finalize_staged_run": "lifecycle",
    "find_run": "runs_dir",
    "init_run_meta": "meta",
    "is_run_id": "names",
    "list_runs": "runs_dir",
    "log_user_attrs": "sidecars",
    "make_run": "meta",
    "make_run_id": "names",
    "meta_config": "meta",
    "meta_opcmd": "meta",
    "meta_opdef": "meta",
    "resolve_run_id": "runs_dir",
    "run_for_meta_dir": "meta",
    "select_runs": "runs_dir",
    "run_meta_path": "meta",
    "run_name_for_id": "names",
    "run_status": "status",
    "run_user_attrs": "sidecars",
    "stage_dependencies": "lifecycle",
    "stage_op": "staging",
    "stage_run": "lifecycle",
    "stage_runtime": "lifecycle",
    "stage_sourcecode": "lifecycle",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    try:
        module = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module 'gage_runs' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value
