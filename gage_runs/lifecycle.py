"""The run lifecycle: stage, exec and finalize a run (Gage 0.1.2's order).

Each public step reloads the opdef and config from the meta dir, so a
staged run does not depend on its project.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from .config import apply_config as patch_config_files
from .datafile import DataFileError, load_data_file
from .depends import copy_project_files
from .errors import GageRunsError
from .files_log import (
    DEPENDENCY,
    GENERATED,
    RUNTIME,
    SOURCE,
    apply_to_files_log,
    write_manifest,
)
from .fsmode import make_dirs, set_readonly, write_text
from .meta import (
    encode_json,
    meta_config,
    meta_opdef,
    run_meta_path,
    runner_log,
    write_meta,
    write_timestamp,
)
from .sourcecode import copy_sourcecode, sourcecode_patterns
from .types import OpDef, Run, RunSummary


def stage_run(run: Run, project_dir: str) -> None:
    """Stage a run: source code, config, runtime, dependencies, manifest."""
    stage_sourcecode(run, project_dir, _log_files=False)
    apply_config(run)
    stage_runtime(run, project_dir)
    stage_dependencies(run, project_dir)
    finalize_staged_run(run)


def stage_sourcecode(run: Run, project_dir: str, _log_files: bool = True) -> None:
    """Copy the op's source code into the run dir and run its hook."""
    opdef = meta_opdef(run)
    runner_log(run, f"Copying source code (see log/files): {sourcecode_patterns(opdef)}")
    runs_dir = run.runs_dir
    copy_sourcecode(project_dir, run.run_dir, opdef, exclude_dirs=[runs_dir])
    _run_hook(run, opdef.get_exec().get_stage_sourcecode(), "stage-sourcecode",
              "10_sourcecode", project_dir)
    if _log_files:
        apply_to_files_log(run, SOURCE)


def apply_config(run: Run) -> None:
    """Patch config files in the run dir with the run's config.json."""
    runner_log(run, "Applying configuration (see log/patched)")
    try:
        diff = patch_config_files(run.run_dir, meta_opdef(run), meta_config(run))
    except GageRunsError as e:
        runner_log(run, f"Error applying configuration: {e}")
        raise
    if diff:
        write_text(run_meta_path(run, "log", "patched"), diff)
    apply_to_files_log(run, SOURCE)


def stage_runtime(run: Run, project_dir: str) -> None:
    """Run the stage-runtime hook and log the files it made."""
    hook = meta_opdef(run).get_exec().get_stage_runtime()
    _run_hook(run, hook, "stage-runtime", "20_runtime", project_dir)
    apply_to_files_log(run, RUNTIME)


def stage_dependencies(run: Run, project_dir: str) -> None:
    """Copy `project-files` dependencies, run the stage-dependencies hook, log the files.

    Gage 0.1.2 resolves no dependency; `run-files` and `runs-summary` wait
    for other runs, so the queue resolves them when the run starts
    (`depends`)."""
    copy_project_files(run, project_dir)
    hook = meta_opdef(run).get_exec().get_stage_dependencies()
    _run_hook(run, hook, "stage-dependencies", "30_dependencies", project_dir)
    apply_to_files_log(run, DEPENDENCY)


def finalize_staged_run(run: Run) -> None:
    """Make staged files read-only, write the manifest and `staged`."""
    runner_log(run, "Finalizing staged files (see manifest)")
    write_manifest(run, finalizing=False)
    write_timestamp(run, "staged")


def finalize_run(
    run: Run, exit_code: int = 0, *, base_env: Mapping[str, str] | None = None
) -> None:
    """Write summary, stopped and exit code; make every run file read-only.

    Gage's order, step for step (its log/runner is compared byte for byte
    in the interop tests). Every step can be redone, so a finalize that
    died half-way can be run again; the queue counts a run as finalized
    only once all of them are done (`gage_worker.finalize`).
    """
    opdef = meta_opdef(run)
    make_dirs(run.run_dir)
    summary = _load_run_summary(run, opdef)
    write_meta(run, "summary.json", encode_json(summary.as_json()), log_as="summary")
    for name in ("40_run", "40_run.index"):
        path = run_meta_path(run, "output", name)
        if os.path.exists(path):
            set_readonly(path)
    write_timestamp(run, "stopped")
    write_meta(run, "proc/exit", str(exit_code))
    _run_hook(run, opdef.get_exec().get_finalize(), "finalize", "50_finalize",
              None, base_env)
    apply_to_files_log(run, GENERATED)
    set_readonly(run_meta_path(run, "log", "files"))
    runner_log(run, "Finalizing run files (see manifest)")
    write_manifest(run, finalizing=True)
    set_readonly(run_meta_path(run, "manifest"))
    set_readonly(run_meta_path(run, "log", "runner"))


def _load_run_summary(run: Run, opdef: OpDef) -> RunSummary:
    name = opdef.get_summary().get_filename() or "summary.json"
    path = os.path.join(run.run_dir, name)
    if not os.path.exists(path):
        return RunSummary({})
    runner_log(run, f"Using run summary {name}")
    try:
        data = load_data_file(path)
    except (DataFileError, OSError) as e:
        runner_log(run, f"Error reading run summary {name}: {e}")
        return RunSummary({})
    if not isinstance(data, dict):
        runner_log(run, f"Error reading run summary {name}: not a mapping")
        return RunSummary({})
    return RunSummary(data)


def _run_hook(
    run: Run,
    exec_cmd: str | list[str] | None,
    phase_name: str,
    output_name: str,
    project_dir: str | None,
    base_env: Mapping[str, str] | None = None,
) -> None:
    if not exec_cmd:
        return
    from .phase import run_phase_exec  # and subprocess: only an op with a hook pays for it

    env = {
        **(os.environ if base_env is None else base_env),
        "run_id": run.id,
        "run_dir": run.run_dir,
        **({"project_dir": project_dir} if project_dir else {}),
    }
    run_phase_exec(run, phase_name, exec_cmd, env, output_name)
