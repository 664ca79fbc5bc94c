"""gage_runs: Gage 0.1.2's staged-run lifecycle and on-disk run format.

`from gage_runs import *` gives Gage's names, so Gage users feel at home.
"""

from .errors import (
    ConfigError,
    GageFileError,
    GageRunsError,
    OpDefError,
    OpNotFound,
    RunExecError,
    RunFormatError,
    RunLookupError,
    RunsDirError,
    SourcePatternError,
)
from .files_log import RunManifest
from .lifecycle import (
    apply_config,
    exec_run,
    finalize_run,
    finalize_staged_run,
    stage_dependencies,
    stage_run,
    stage_runtime,
    stage_sourcecode,
)
from .meta import (
    init_run_meta,
    make_run,
    meta_config,
    meta_opcmd,
    meta_opdef,
    run_for_meta_dir,
    run_meta_path,
)
from .names import is_run_id, make_run_id, run_name_for_id
from .runs_dir import check_runs_dir, find_run, list_runs, resolve_run_id
from .sidecars import associate_project, log_user_attrs, run_user_attrs
from .staging import stage_op
from .status import run_status
from .types import OpCmd, OpDef, OpRef, Run, RunSummary

__all__ = [
    "ConfigError",
    "GageFileError",
    "GageRunsError",
    "OpCmd",
    "OpDef",
    "OpDefError",
    "OpNotFound",
    "OpRef",
    "Run",
    "RunExecError",
    "RunFormatError",
    "RunLookupError",
    "RunManifest",
    "RunSummary",
    "RunsDirError",
    "SourcePatternError",
    "apply_config",
    "associate_project",
    "check_runs_dir",
    "exec_run",
    "finalize_run",
    "finalize_staged_run",
    "find_run",
    "init_run_meta",
    "is_run_id",
    "list_runs",
    "log_user_attrs",
    "make_run",
    "make_run_id",
    "meta_config",
    "meta_opcmd",
    "meta_opdef",
    "resolve_run_id",
    "run_for_meta_dir",
    "run_meta_path",
    "run_name_for_id",
    "run_status",
    "run_user_attrs",
    "stage_dependencies",
    "stage_op",
    "stage_run",
    "stage_runtime",
    "stage_sourcecode",
]
